//! What this machine can do at best, measured next to Reelay's figures: fsync of a 4 KiB write,
//! and sled durable writes one flush each and many writes per flush — the ceiling any durable
//! CreateJob can reach here.

use std::io::Write;
use std::time::{Duration, Instant};

use reelay_store::sled_store::{Schema, SledOptions};
use reelay_store::{SledStore, Store, WriteBatch};

use crate::stats::quantile;

const SCHEMA: Schema = Schema {
    kind: "bench",
    version: 1,
    trees: &["t"],
    upgrades: &[],
};

/// p50 of fsync after a 4 KiB write.
pub fn fsync_p50() -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("probe")).expect("file");
    let mut samples = Vec::new();
    for _ in 0..200 {
        file.write_all(&[7u8; 4096]).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fsync");
        samples.push(started.elapsed());
    }
    quantile(&mut samples, 0.5)
}

/// A fresh sled store in a temporary directory (removed when the directory is dropped).
pub fn temp_store() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(
        dir.path(),
        &SCHEMA,
        SledOptions {
            cache_bytes: 64 << 20,
        },
    )
    .expect("sled");
    (dir, store)
}

/// sled writes per second: (one flush per write, 1000 writes per flush).
pub fn sled_writes_per_second() -> (f64, f64) {
    let (_dir, store) = temp_store();
    let value = vec![1u8; 300];
    let started = Instant::now();
    let single = 2000;
    for n in 0..single {
        let mut batch = WriteBatch::default();
        batch.put("t", (n as u64).to_be_bytes().to_vec(), value.clone());
        store.commit(&batch).expect("commit");
        store.flush().expect("flush");
    }
    let one_each = f64::from(single) / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rounds = 50;
    for round in 0..rounds {
        let mut batch = WriteBatch::default();
        for n in 0..1000u64 {
            batch.put(
                "t",
                (1_000_000 + round * 1000 + n).to_be_bytes().to_vec(),
                value.clone(),
            );
        }
        store.commit(&batch).expect("commit");
        store.flush().expect("flush");
    }
    let grouped = (rounds * 1000) as f64 / started.elapsed().as_secs_f64();
    (one_each, grouped)
}

/// p50 of one atomic sled batch of four small writes, not flushed (what one progress event costs
/// the worker's event log and the coordinator's store): (a batch, the same four writes one by one).
pub fn sled_batch_p50() -> (Duration, Duration) {
    let (_dir, store) = temp_store();
    let value = vec![1u8; 300];
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for n in 0..2000u64 {
        let mut batch = WriteBatch::default();
        for k in 0..4 {
            batch.put("t", (n * 8 + k).to_be_bytes().to_vec(), value.clone());
        }
        let started = Instant::now();
        store.commit(&batch).expect("commit");
        batched.push(started.elapsed());
        let started = Instant::now();
        for k in 4..8 {
            let mut one = WriteBatch::default();
            one.put("t", (n * 8 + k).to_be_bytes().to_vec(), value.clone());
            store.commit(&one).expect("commit");
        }
        single.push(started.elapsed());
    }
    (quantile(&mut batched, 0.5), quantile(&mut single, 0.5))
}
