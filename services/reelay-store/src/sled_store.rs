//! The sled 0.34 engine behind [`Store`].
//!
//! Each logical tree is a keyspace of sled's default tree: its keys carry a one-byte prefix, the
//! tree's place in the schema. So a [`WriteBatch`] touching several logical trees is one plain
//! atomic sled batch. (Separate sled trees would need a sled transaction for that, measured here
//! at 7x the cost of a batch for five trees: 122 µs against 17 µs.) `flush` is sled's flush
//! followed by an `fsync` of the data file: sled alone uses `sync_file_range`, which does not
//! promise power-loss durability. `flush_async` is never used (it can hang under concurrent
//! callers, sled #1308).
//!
//! A batch of up to [`INTENT_MAX_WRITES`] writes is stored as an intent (see `intent`): its writes
//! as one value under a key outside every tree, then each write, then the intent removed. It is as
//! atomic as sled's own batch — after a crash the next open applies an intent found whole — and
//! under load several times cheaper. Commits hold a lock that every read takes too, so a reader
//! never sees a batch half applied.
//!
//! At open, a `meta` entry records which kind of database this is and its schema version. A
//! database that was there before but lacks it, or belongs to another kind, is refused with a
//! message, never silently treated as empty. One of an older version of the same kind is brought
//! up to date by the schema's [`Upgrade`] steps, each made durable before the new version is
//! recorded; one of a newer version is refused (there is no downgrade).
//!
//! sled itself takes a data file that was deleted, truncated or overwritten for a new, empty
//! database (its `conf` alone says nothing about the data). So a database also leaves a marker
//! file, [`MARKER_FILE`], next to sled's files once its schema record is durable: a directory with
//! the marker whose data file is gone, empty, or holds no schema record was damaged, and is refused.
//! A clean stop also writes the data file's size into the marker (cleared again at the next open,
//! before anything is written): a data file found shorter was cut, and sled would have recovered
//! what is left of it as if from a crash.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::intent;
use crate::{Bytes, Direction, Entry, Result, Store, StoreError, WriteBatch};

/// Name of the tree that holds the schema record (every schema has it).
pub const META_TREE: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema";
/// The file that says a directory holds a Reelay database (its schema tag, `reelay-<kind>:<version>`).
pub const MARKER_FILE: &str = "reelay.store";
/// sled's data file in its directory.
const DATA_FILE: &str = "db";
/// The key of the batch being applied as an intent: below no tree (their prefixes are smaller).
const INTENT_KEY: &[u8] = &[u8::MAX];
/// Batches of at most this many writes are stored as an intent, larger ones as a sled batch (an
/// intent writes every value twice: for the batches of a busy engine, sled's batch is cheaper).
pub const INTENT_MAX_WRITES: usize = 16;

/// What a database holds: its kind, schema version and trees.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// `coordinator` or `worker`.
    pub kind: &'static str,
    pub version: u32,
    /// Tree names; `meta` is added when missing.
    pub trees: &'static [&'static str],
    /// How databases of older versions of this kind are brought to `version` at open, one step
    /// per version. A database of a version with no path of upgrades to this one is refused.
    pub upgrades: &'static [Upgrade],
}

/// One step that brings a database of schema version `from` to `from + 1`, run when it is
/// opened. Once it returns, its writes are flushed and the new version recorded; a crash before
/// that leaves the old version recorded and the next open runs it again, so it must be safe to
/// run twice.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade {
    pub from: u32,
    /// What it changes, for the log.
    pub what: &'static str,
    pub run: fn(&dyn Store) -> Result<()>,
}

/// Options of the engine.
#[derive(Debug, Clone, Copy)]
pub struct SledOptions {
    /// Page cache size in bytes.
    pub cache_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 128 * 1024 * 1024,
        }
    }
}

/// A sled database with the trees of a [`Schema`].
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// The key prefix of each logical tree (its place in the schema).
    prefix_of: HashMap<&'static str, u8>,
    /// The data file, fsynced after each flush.
    data_file: Option<File>,
    path: PathBuf,
    /// The schema tag, once the database is open and checked: a clean stop records the data
    /// file's size under it. `None` while opening, so a refused database is left as it was.
    tag: Option<String>,
    /// Held for writing by a commit, for reading by each read: a batch applied as an intent is
    /// seen whole or not at all, and commits (which all rewrite the one intent key) never overlap.
    commits: RwLock<()>,
    /// A batch failed half way through its writes: every later commit is refused (they would
    /// replace its intent), until the next open completes it.
    half_applied: AtomicBool,
}

/// Where a test stops a batch stored as an intent, after how many of its writes.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// As if the process died there.
    #[cfg_attr(not(test), allow(dead_code))]
    Crash(usize),
    /// As if that write returned an error.
    #[cfg_attr(not(test), allow(dead_code))]
    Fail(usize),
}

/// What the marker file says: the schema tag and, after a clean stop, the data file's size.
#[derive(Debug)]
struct Marker {
    tag: String,
    clean_size: Option<u64>,
}

impl Marker {
    fn parse(text: &str) -> Marker {
        let mut lines = text.lines();
        let tag = lines.next().unwrap_or_default().trim().to_owned();
        let clean_size = lines
            .filter_map(|line| line.strip_prefix("clean-size "))
            .find_map(|size| size.trim().parse().ok());
        Marker { tag, clean_size }
    }
}

/// A write with its key as stored (tree prefix included); `None`: delete.
type Write<'a> = (Vec<u8>, Option<&'a [u8]>);

/// A sled batch of `writes`.
fn sled_batch<'a>(writes: impl IntoIterator<Item = Write<'a>>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (key, value) in writes {
        match value {
            Some(value) => batch.insert(key, value),
            None => batch.remove(key),
        }
    }
    batch
}

fn engine(err: sled::Error) -> StoreError {
    StoreError::Engine(err.to_string())
}

/// Checks `path` before sled touches it: a directory (or nothing yet), of this schema, and, when a
/// database was made here before, with its data file. Returns the marker when there is one.
fn check_files(path: &Path, schema: &Schema) -> Result<Option<Marker>> {
    if path.exists() && !path.is_dir() {
        return Err(StoreError::Unusable(format!(
            "{} is not a directory: the data directory must be a directory (it is created when missing); \
             move the file away or give another --data-dir",
            path.display()
        )));
    }
    let marker_path = path.join(MARKER_FILE);
    let marker = match std::fs::read(&marker_path) {
        Ok(bytes) => Marker::parse(&String::from_utf8_lossy(&bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(StoreError::Unusable(format!(
                "cannot read {}: {err}",
                marker_path.display()
            )));
        }
    };
    let expected = schema.tag();
    let tag = &marker.tag;
    if *tag != expected && schema.upgradable_from(tag).is_none() {
        return Err(wrong_schema(path, tag, schema));
    }
    let data_file = path.join(DATA_FILE);
    let size = std::fs::metadata(&data_file).map(|meta| meta.len());
    let problem = match (size, marker.clean_size) {
        (Ok(0), _) => "is empty".to_owned(),
        (Ok(size), Some(clean)) if size < clean => {
            format!(
                "has {size} bytes, fewer than the {clean} it had when the server last stopped: it was cut"
            )
        }
        (Ok(_), _) => return Ok(Some(marker)),
        (Err(err), _) if err.kind() == std::io::ErrorKind::NotFound => "is missing".to_owned(),
        (Err(_), _) => "cannot be read".to_owned(),
    };
    Err(StoreError::Unusable(format!(
        "{} held a {tag} database, but its data file {} {problem}; {RESTORE_HINT}",
        path.display(),
        data_file.display()
    )))
}

/// The database in `path` is tagged `found`, not `schema`'s tag: another kind's, or another
/// version's.
fn wrong_schema(path: &Path, found: &str, schema: &Schema) -> StoreError {
    let same_kind = found.strip_prefix(&format!("reelay-{}:", schema.kind));
    let message = match same_kind {
        Some(version) => format!(
            "{} holds a {} database of schema {version}, which this version of Reelay (schema {}) cannot \
             read; run the version that wrote it, or move the directory away to start with an empty one",
            path.display(),
            schema.kind,
            schema.version
        ),
        None => format!(
            "{} holds a {found} database, not {}: give each coordinator and worker its own --data-dir",
            path.display(),
            schema.tag()
        ),
    };
    StoreError::Unusable(message)
}

/// How long opening waits for another holder of the database's lock to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

fn is_lock_error(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Says why sled could not open the database in `path`.
fn open_error(path: &Path, err: &sled::Error) -> StoreError {
    let why = match err {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            "another process holds its lock: is another reelay process using this --data-dir?"
                .to_owned()
        }
        sled::Error::Io(io) => format!("{io}; check the directory's permissions and free space"),
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
            format!("its files are damaged ({err}); {RESTORE_HINT}")
        }
        other => format!("{other}; {RESTORE_HINT}"),
    };
    StoreError::Unusable(format!(
        "cannot open the database in {}: {why}",
        path.display()
    ))
}

/// Writes the marker file (write, fsync, rename), once the schema record is durable; with the data
/// file's size after a clean stop.
fn write_marker(path: &Path, tag: &str, clean_size: Option<u64>) -> Result<()> {
    let mut text = format!("{tag}\n");
    if let Some(size) = clean_size {
        text.push_str(&format!("clean-size {size}\n"));
    }
    let write = || -> std::io::Result<()> {
        let temp = path.join(format!("{MARKER_FILE}.tmp"));
        let mut file = File::create(&temp)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path.join(MARKER_FILE))?;
        File::open(path)?.sync_all()
    };
    write().map_err(|err| {
        StoreError::Unusable(format!(
            "cannot write {}: {err}",
            path.join(MARKER_FILE).display()
        ))
    })
}

impl Schema {
    /// The tag stored in the schema record and the marker file: `reelay-<kind>:<version>`.
    pub fn tag(&self) -> String {
        self.tag_of(self.version)
    }

    fn tag_of(&self, version: u32) -> String {
        format!("reelay-{}:{version}", self.kind)
    }

    /// The version of a database tagged `tag` when it is an older version of this kind that the
    /// upgrades bring to this one.
    fn upgradable_from(&self, tag: &str) -> Option<u32> {
        let from: u32 = tag
            .strip_prefix(&format!("reelay-{}:", self.kind))?
            .parse()
            .ok()?;
        (from < self.version)
            .then_some(from)
            .filter(|&from| (from..self.version).all(|version| self.upgrade(version).is_some()))
    }

    fn upgrade(&self, from: u32) -> Option<&Upgrade> {
        self.upgrades.iter().find(|upgrade| upgrade.from == from)
    }
}

/// What to do with a damaged database, for messages.
const RESTORE_HINT: &str =
    "restore the directory from a backup, or move it away to start with an empty database";

/// The schema tag of the Reelay database in `path`, if `path` holds one: the tag its marker file
/// names, or `sled database` for sled files without a marker. For servers that must not take
/// another server's directory for their own.
pub fn database_in(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path.join(MARKER_FILE)) {
        Ok(text) => Some(Marker::parse(&text).tag),
        Err(_) if path.join(DATA_FILE).is_file() && path.join("conf").is_file() => {
            Some("sled database".to_owned())
        }
        Err(_) => None,
    }
}

impl SledStore {
    /// Opens (or creates) the database in `path` and checks its schema.
    pub fn open(path: &Path, schema: &Schema, options: SledOptions) -> Result<Self> {
        let marker = check_files(path, schema)?;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .flush_every_ms(Some(500));
        // The lock of a database just closed is held until sled's background thread lets go of
        // it (and a process that is exiting holds it until it is gone): wait a moment for it.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(err) if is_lock_error(&err) && waited < LOCK_WAIT => {
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                Err(err) => return Err(open_error(path, &err)),
            }
        };
        let mut names: Vec<&'static str> = schema.trees.to_vec();
        if !names.contains(&META_TREE) {
            names.push(META_TREE);
        }
        if names.len() >= usize::from(u8::MAX) {
            return Err(StoreError::Engine(format!(
                "{} trees are more than a one-byte prefix holds",
                names.len()
            )));
        }
        let prefix_of = names
            .into_iter()
            .enumerate()
            .map(|(index, name)| (name, index as u8))
            .collect();
        let data_file = File::open(path.join(DATA_FILE)).ok();
        let store = SledStore {
            db,
            prefix_of,
            data_file,
            path: path.to_owned(),
            tag: None,
            commits: RwLock::new(()),
            half_applied: AtomicBool::new(false),
        };
        store.finish_interrupted_batch()?;
        store.check_schema(schema, marker.is_some())?;
        // A new database gets its marker; a clean stop's size is cleared before any write; an
        // upgraded one gets its new version.
        if marker.is_none_or(|marker| marker.clean_size.is_some() || marker.tag != schema.tag()) {
            write_marker(path, &schema.tag(), None)?;
        }
        let mut store = store;
        store.tag = Some(schema.tag());
        Ok(store)
    }

    /// Applies the batch a crash interrupted, if its intent survived: whole, with the intent
    /// removed in the same sled batch, and durably before anything reads.
    fn finish_interrupted_batch(&self) -> Result<()> {
        let Some(found) = self.db.get(INTENT_KEY).map_err(engine)? else {
            return Ok(());
        };
        let writes = intent::decode(&found).ok_or_else(|| {
            StoreError::Unusable(format!(
                "{} holds an unreadable record of an interrupted write ({} bytes): the database is \
                 damaged; {RESTORE_HINT}",
                self.path.display(),
                found.len()
            ))
        })?;
        let mut batch = sled_batch(
            writes
                .iter()
                .map(|(key, value)| (key.clone(), value.as_deref())),
        );
        batch.remove(INTENT_KEY);
        self.db.apply_batch(batch).map_err(engine)?;
        self.flush()?;
        tracing::info!(
            path = %self.path.display(),
            writes = writes.len(),
            "completed a write that a stop had interrupted"
        );
        Ok(())
    }

    /// One write, atomic by itself.
    fn write_one(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(value) => self.db.insert(key, value).map(drop),
            None => self.db.remove(key).map(drop),
        }
        .map_err(engine)
    }

    /// The writes of `batch` with their keys as stored (the values borrowed from it).
    fn stored_writes<'a>(&self, batch: &'a WriteBatch) -> Result<Vec<Write<'a>>> {
        batch
            .ops()
            .map(|(tree, key, value)| Ok((self.key(tree, key)?, value)))
            .collect()
    }

    fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.commits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The commit lock, unless a batch failed half way (checked under the lock, so no commit
    /// waiting for it slips past).
    fn committing(&self) -> Result<RwLockWriteGuard<'_, ()>> {
        let guard = self.commits.write().unwrap_or_else(PoisonError::into_inner);
        if self.half_applied.load(Ordering::SeqCst) {
            return Err(StoreError::Engine(format!(
                "an earlier write to {} failed half way; restart to complete it before writing more",
                self.path.display()
            )));
        }
        Ok(guard)
    }

    /// Stores `writes` as an intent, then one by one, then removes the intent (the caller holds
    /// the commit lock). `cut`: a crash or a failure after that many writes, for tests.
    fn commit_as_intent(&self, writes: &[Write<'_>], cut: Option<Cut>) -> Result<()> {
        let record = intent::encode(writes.iter().map(|(key, value)| (key.as_slice(), *value)));
        self.db.insert(INTENT_KEY, record).map_err(engine)?;
        let applied = (|| {
            for (done, (key, value)) in writes.iter().enumerate() {
                match cut {
                    Some(Cut::Crash(at)) if at == done => return Ok(false),
                    Some(Cut::Fail(at)) if at == done => {
                        return Err(StoreError::Engine("a write failed (test)".into()));
                    }
                    _ => {}
                }
                self.write_one(key, *value)?;
            }
            self.db.remove(INTENT_KEY).map_err(engine)?;
            Ok(true)
        })();
        if applied.is_err() {
            // Part of the batch is applied and its intent is the only record of the rest: no
            // other write may replace it. The next open completes the batch.
            self.half_applied.store(true, Ordering::SeqCst);
        }
        applied.map(drop)
    }

    /// Checks the schema record; `marked`: the directory's marker says a database was made here.
    fn check_schema(&self, schema: &Schema, marked: bool) -> Result<()> {
        let expected = schema.tag();
        let schema_key = self.key(META_TREE, SCHEMA_KEY)?;
        match self.db.get(&schema_key).map_err(engine)? {
            Some(found) if found.as_ref() == expected.as_bytes() => Ok(()),
            Some(found)
                if let Some(from) = schema.upgradable_from(&String::from_utf8_lossy(&found)) =>
            {
                self.upgrade(schema, from)
            }
            Some(found) => Err(wrong_schema(
                &self.path,
                &String::from_utf8_lossy(&found),
                schema,
            )),
            None if marked => Err(StoreError::Unusable(format!(
                "{} held a {expected} database, but its data file has no schema record: the data file \
                 was overwritten, truncated or replaced; {RESTORE_HINT}",
                self.path.display()
            ))),
            None if self.db.was_recovered() && self.has_data()? => {
                Err(StoreError::Unusable(format!(
                    "{} holds data but no Reelay schema record: it is damaged or not a Reelay database; \
                 restore it from a backup or move it away to start empty",
                    self.path.display()
                )))
            }
            None => {
                self.db
                    .insert(schema_key, expected.as_bytes())
                    .map_err(engine)?;
                self.flush()
            }
        }
    }

    /// Runs the schema's upgrades from version `from` on, recording each new version once the
    /// upgrade's writes are durable.
    fn upgrade(&self, schema: &Schema, from: u32) -> Result<()> {
        let schema_key = self.key(META_TREE, SCHEMA_KEY)?;
        for version in from..schema.version {
            let Some(upgrade) = schema.upgrade(version) else {
                return Err(wrong_schema(&self.path, &schema.tag_of(version), schema));
            };
            tracing::info!(
                path = %self.path.display(),
                "upgrading the {} database from schema {version} to {}: {}",
                schema.kind,
                version + 1,
                upgrade.what
            );
            (upgrade.run)(self)?;
            self.flush()?;
            self.db
                .insert(&schema_key, schema.tag_of(version + 1).as_bytes())
                .map_err(engine)?;
            self.flush()?;
        }
        Ok(())
    }

    fn has_data(&self) -> Result<bool> {
        if self.db.first().map_err(engine)?.is_some() {
            return Ok(true);
        }
        // A sled database made by other code may keep its data in named trees.
        for name in self.db.tree_names() {
            if name.as_ref() != b"__sled__default"
                && self
                    .db
                    .open_tree(&name)
                    .map_err(engine)?
                    .first()
                    .map_err(engine)?
                    .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn prefix(&self, tree: &str) -> Result<u8> {
        self.prefix_of
            .get(tree)
            .copied()
            .ok_or_else(|| StoreError::UnknownTree(tree.to_owned()))
    }

    /// `key` of logical tree `tree` as stored: prefixed with the tree's byte.
    fn key(&self, tree: &str, key: &[u8]) -> Result<Vec<u8>> {
        let mut stored = Vec::with_capacity(key.len() + 1);
        stored.push(self.prefix(tree)?);
        stored.extend_from_slice(key);
        Ok(stored)
    }

    /// Opens the closed database in `path` once more and closes it again, so that the next start
    /// is quick: sled 0.34 writes its page-table snapshot only when it opens a database, and replays
    /// at every open all it logged since the last snapshot (1.5 s after a million created jobs).
    /// Opening here, at a clean stop, moves that replay from the next start to this stop. The
    /// database must be closed (every handle dropped); the open waits for its lock like any open.
    pub fn checkpoint(path: &Path, schema: &Schema, options: SledOptions) -> Result<()> {
        drop(SledStore::open(path, schema, options)?);
        Ok(())
    }

    /// Bytes on disk (for metrics).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Drop for SledStore {
    /// A clean stop: flushes, then records the data file's size in the marker.
    fn drop(&mut self) {
        let Some(tag) = self.tag.take() else {
            return;
        };
        if let Err(err) = self.flush() {
            tracing::warn!(path = %self.path.display(), error = %err, "final flush failed");
            return;
        }
        let Ok(meta) = std::fs::metadata(self.path.join(DATA_FILE)) else {
            return;
        };
        if let Err(err) = write_marker(&self.path, &tag, Some(meta.len())) {
            tracing::warn!(error = %err, "cannot record the clean stop in the marker");
        }
    }
}

impl Store for SledStore {
    fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Bytes>> {
        let key = self.key(tree, key)?;
        let _reading = self.reading();
        Ok(self
            .db
            .get(key)
            .map_err(engine)?
            .map(|value| value.to_vec()))
    }

    fn scan<'a>(
        &'a self,
        tree: &'static str,
        from: Bound<Bytes>,
        to: Bound<Bytes>,
        direction: Direction,
    ) -> Result<Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>> {
        let prefix = self.prefix(tree)?;
        let with_prefix = |key: Bytes| {
            let mut stored = Vec::with_capacity(key.len() + 1);
            stored.push(prefix);
            stored.extend_from_slice(&key);
            stored
        };
        // The keyspace of `tree` is [prefix, prefix + 1): unbounded ends stop at its edges.
        let from = match from {
            Bound::Included(key) => Bound::Included(with_prefix(key)),
            Bound::Excluded(key) => Bound::Excluded(with_prefix(key)),
            Bound::Unbounded => Bound::Included(vec![prefix]),
        };
        let to = match to {
            Bound::Included(key) => Bound::Included(with_prefix(key)),
            Bound::Excluded(key) => Bound::Excluded(with_prefix(key)),
            Bound::Unbounded => Bound::Excluded(vec![prefix + 1]),
        };
        let mut range = self.db.range::<Bytes, _>((from, to));
        let convert = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(key, value)| (key[1..].to_vec(), value.to_vec()))
                .map_err(engine)
        };
        // Each step reads under the commit lock, as a `get` does.
        Ok(match direction {
            Direction::Forward => Box::new(std::iter::from_fn(move || {
                let _reading = self.reading();
                range.next().map(convert)
            })),
            Direction::Reverse => Box::new(std::iter::from_fn(move || {
                let _reading = self.reading();
                range.next_back().map(convert)
            })),
        })
    }

    fn commit(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() > INTENT_MAX_WRITES {
            let stored = sled_batch(self.stored_writes(batch)?);
            let _committing = self.committing()?;
            return self.db.apply_batch(stored).map_err(engine);
        }
        let writes = self.stored_writes(batch)?;
        let _committing = self.committing()?;
        match writes.as_slice() {
            [(key, value)] => self.write_one(key, *value),
            small => self.commit_as_intent(small, None),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(engine)?;
        if let Some(file) = &self.data_file {
            file.sync_data()
                .map_err(|err| StoreError::Engine(format!("fsync of the data file: {err}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: Schema = Schema {
        kind: "test",
        version: 1,
        trees: &["a", "b"],
        upgrades: &[],
    };

    fn open(dir: &Path) -> SledStore {
        SledStore::open(
            dir,
            &SCHEMA,
            SledOptions {
                cache_bytes: 1 << 20,
            },
        )
        .unwrap()
    }

    /// The log position of the newest page-table snapshot sled wrote (`snap.<lsn in hex>`).
    fn newest_snapshot(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let lsn = name.strip_prefix("snap.")?;
                u64::from_str_radix(lsn.split('.').next()?, 16).ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_checkpoint_snapshots_what_was_written_since_the_open_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let opened_at = newest_snapshot(dir.path());
        let mut batch = WriteBatch::default();
        for n in 0u32..20_000 {
            batch.put("a", n.to_be_bytes().to_vec(), vec![7; 64]);
        }
        store.commit(&batch).unwrap();
        drop(store);
        // Closing alone leaves the snapshot of the open: the next open would replay the writes.
        assert_eq!(newest_snapshot(dir.path()), opened_at);

        let options = SledOptions {
            cache_bytes: 1 << 20,
        };
        SledStore::checkpoint(dir.path(), &SCHEMA, options).unwrap();
        assert!(newest_snapshot(dir.path()) > opened_at);
        let store = open(dir.path());
        assert_eq!(
            store.get("a", &19_999u32.to_be_bytes()).unwrap(),
            Some(vec![7; 64])
        );
        let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert!(!marker.contains("clean-size"), "opened again: {marker}");
    }

    #[test]
    fn a_checkpoint_of_an_open_database_waits_then_says_it_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _store = open(dir.path());
        let options = SledOptions {
            cache_bytes: 1 << 20,
        };
        assert!(SledStore::checkpoint(dir.path(), &SCHEMA, options).is_err());
    }

    #[test]
    fn batches_span_trees_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let mut batch = WriteBatch::default();
            batch.put("a", b"k1".to_vec(), b"v1".to_vec());
            batch.put("b", b"k2".to_vec(), b"v2".to_vec());
            store.commit(&batch).unwrap();
            store.flush().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.get("a", b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(store.get("b", b"k2").unwrap(), Some(b"v2".to_vec()));
        assert!(matches!(
            store.get("zzz", b"k"),
            Err(StoreError::UnknownTree(_))
        ));
    }

    /// A batch of puts and a delete over both trees, small enough to be stored as an intent.
    fn small_batch() -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch.put("a", b"job".to_vec(), b"v2".to_vec());
        batch.delete("a", b"old".to_vec());
        batch.put("b", b"event-2".to_vec(), b"e2".to_vec());
        batch.put("b", b"cursor".to_vec(), b"2".to_vec());
        batch
    }

    fn state_of(store: &SledStore) -> Vec<(&'static str, Entry)> {
        let mut state = Vec::new();
        for tree in ["a", "b"] {
            for entry in store.scan_prefix(tree, b"", Direction::Forward).unwrap() {
                state.push((tree, entry.unwrap()));
            }
        }
        state
    }

    #[test]
    fn a_small_batch_cut_anywhere_after_its_intent_is_applied_whole_at_the_next_open() {
        let whole = {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            store.commit(&small_batch()).unwrap();
            assert_eq!(store.db.get(INTENT_KEY).unwrap(), None, "intent removed");
            state_of(&store)
        };
        assert_eq!(whole.len(), 3);
        for cut in 0..=small_batch().len() {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = open(dir.path());
                let mut before = WriteBatch::default();
                before.put("a", b"job".to_vec(), b"v1".to_vec());
                before.put("a", b"old".to_vec(), b"x".to_vec());
                store.commit(&before).unwrap();
                let batch = small_batch();
                let writes = store.stored_writes(&batch).unwrap();
                let _committing = store.committing().unwrap();
                store
                    .commit_as_intent(&writes, Some(Cut::Crash(cut)))
                    .unwrap();
                store.flush().unwrap();
            }
            let store = open(dir.path());
            assert_eq!(state_of(&store), whole, "cut after {cut} writes");
            assert_eq!(store.db.get(INTENT_KEY).unwrap(), None, "cut after {cut}");
        }
    }

    #[test]
    fn a_small_batch_that_fails_half_way_stops_later_writes_and_is_completed_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let batch = small_batch();
            let writes = store.stored_writes(&batch).unwrap();
            {
                let _committing = store.committing().unwrap();
                assert!(store.commit_as_intent(&writes, Some(Cut::Fail(2))).is_err());
            }
            let mut later = WriteBatch::default();
            later.put("a", b"later".to_vec(), b"x".to_vec());
            let err = store.commit(&later).unwrap_err();
            assert!(err.to_string().contains("restart"), "{err}");
            assert_eq!(store.get("a", b"later").unwrap(), None);
        }
        let store = open(dir.path());
        assert_eq!(store.get("a", b"job").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(store.get("b", b"cursor").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get("a", b"old").unwrap(), None);
        let mut later = WriteBatch::default();
        later.put("a", b"later".to_vec(), b"x".to_vec());
        store.commit(&later).unwrap();
    }

    #[test]
    fn an_unreadable_intent_is_refused_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store.db.insert(INTENT_KEY, &b"\0\0\0\x09cut"[..]).unwrap();
            store.flush().unwrap();
        }
        let err = SledStore::open(dir.path(), &SCHEMA, SledOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Unusable(_)), "{err}");
        assert!(err.to_string().contains("interrupted write"), "{err}");
    }

    #[test]
    fn readers_never_see_a_small_batch_half_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let rounds = 3_000u64;
        let write = |i: u64| {
            let mut batch = WriteBatch::default();
            batch.put("a", b"first".to_vec(), i.to_be_bytes().to_vec());
            batch.put("a", b"second".to_vec(), i.to_be_bytes().to_vec());
            store.commit(&batch).unwrap();
        };
        write(0);
        let read = |value: Option<Bytes>| u64::from_be_bytes(value.unwrap().try_into().unwrap());
        std::thread::scope(|scope| {
            scope.spawn(|| (1..=rounds).for_each(write));
            let mut seen = 0;
            while seen < rounds {
                // `first` is written before `second`: read in that order, a batch seen half
                // applied would show `first` ahead of `second`.
                let first = read(store.get("a", b"first").unwrap());
                let second = read(store.get("a", b"second").unwrap());
                assert!(second >= first, "get: first {first}, second {second}");
                let scanned: Vec<u64> = store
                    .scan_prefix("a", b"", Direction::Forward)
                    .unwrap()
                    .map(|entry| read(Some(entry.unwrap().1)))
                    .collect();
                assert!(scanned[1] >= scanned[0], "scan: {scanned:?}");
                seen = second;
            }
        });
    }

    #[test]
    fn scans_in_both_directions_and_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut batch = WriteBatch::default();
        for key in [b"x1".as_slice(), b"x2", b"x3", b"y1"] {
            batch.put("a", key.to_vec(), key.to_vec());
        }
        store.commit(&batch).unwrap();
        let keys = |dir| -> Vec<Bytes> {
            store
                .scan_prefix("a", b"x", dir)
                .unwrap()
                .map(|entry| entry.unwrap().0)
                .collect()
        };
        assert_eq!(
            keys(Direction::Forward),
            [b"x1".to_vec(), b"x2".to_vec(), b"x3".to_vec()]
        );
        assert_eq!(keys(Direction::Reverse)[0], b"x3".to_vec());
        assert_eq!(
            store.last_with_prefix("a", b"x").unwrap().unwrap().0,
            b"x3".to_vec()
        );
        assert!(store.last_with_prefix("a", b"z").unwrap().is_none());
        let mut delete = WriteBatch::default();
        delete.delete("a", b"x3".to_vec());
        store.commit(&delete).unwrap();
        assert_eq!(
            store.last_with_prefix("a", b"x").unwrap().unwrap().0,
            b"x2".to_vec()
        );
    }

    #[test]
    fn refuses_a_database_of_another_kind() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let other = Schema {
            kind: "other",
            version: 1,
            trees: &["a"],
            upgrades: &[],
        };
        let err = SledStore::open(dir.path(), &other, SledOptions::default()).unwrap_err();
        assert!(err.to_string().contains("reelay-test:1"), "{err}");
    }

    /// A database with data in it, closed.
    fn used(dir: &Path) {
        let store = open(dir);
        let mut batch = WriteBatch::default();
        for i in 0..500u32 {
            batch.put("a", i.to_be_bytes().to_vec(), vec![7; 100]);
        }
        store.commit(&batch).unwrap();
        store.flush().unwrap();
    }

    fn open_error(dir: &Path) -> String {
        let err = SledStore::open(dir, &SCHEMA, SledOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Unusable(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.display().to_string()),
            "names the directory: {message}"
        );
        message
    }

    #[test]
    fn a_new_database_leaves_a_marker_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        used(dir.path());
        assert_eq!(database_in(dir.path()).as_deref(), Some("reelay-test:1"));
        assert_eq!(database_in(&dir.path().join("nothing")), None);
        let store = open(dir.path());
        assert_eq!(
            store.get("a", &0u32.to_be_bytes()).unwrap(),
            Some(vec![7; 100])
        );
    }

    #[test]
    fn refuses_a_damaged_or_missing_data_file() {
        type Damage = fn(&Path);
        let damages: [(&str, Damage, &str); 5] = [
            (
                "truncated",
                |dir| {
                    File::options()
                        .write(true)
                        .open(dir.join("db"))
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                },
                "is empty",
            ),
            (
                "deleted",
                |dir| std::fs::remove_file(dir.join("db")).unwrap(),
                "is missing",
            ),
            (
                "cut short",
                |dir| {
                    File::options()
                        .write(true)
                        .open(dir.join("db"))
                        .unwrap()
                        .set_len(100)
                        .unwrap();
                },
                "it was cut",
            ),
            (
                "overwritten",
                |dir| {
                    let len = std::fs::metadata(dir.join("db")).unwrap().len() as usize;
                    std::fs::write(dir.join("db"), vec![0xa5; len]).unwrap();
                },
                "no schema record",
            ),
            (
                "zeroed",
                |dir| {
                    let len = std::fs::metadata(dir.join("db")).unwrap().len() as usize;
                    std::fs::write(dir.join("db"), vec![0; len]).unwrap();
                },
                "no schema record",
            ),
        ];
        for (what, damage, expected) in damages {
            let dir = tempfile::tempdir().unwrap();
            used(dir.path());
            damage(dir.path());
            let message = open_error(dir.path());
            assert!(message.contains(expected), "{what}: {message}");
            assert!(
                message.contains("restore"),
                "{what}: says what to do: {message}"
            );
            // Refused again: the failed open did not leave an empty database behind that passes.
            assert!(open_error(dir.path()).contains("reelay-test:1"), "{what}");
        }
    }

    #[test]
    fn a_data_file_cut_after_a_clean_stop_is_refused_and_clean_stops_reopen() {
        let dir = tempfile::tempdir().unwrap();
        // Many clean stops, with writes and deletes between them (sled frees and reuses
        // segments): each reopens.
        for round in 0..6u32 {
            let store = open(dir.path());
            let mut batch = WriteBatch::default();
            for i in 0..2000u32 {
                if round % 2 == 0 {
                    batch.put("a", i.to_be_bytes().to_vec(), vec![round as u8; 300]);
                } else {
                    batch.delete("a", i.to_be_bytes().to_vec());
                }
            }
            store.commit(&batch).unwrap();
        }
        let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert!(marker.contains("clean-size"), "{marker}");
        drop(open(dir.path()));
        let file = File::options()
            .write(true)
            .open(dir.path().join("db"))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len / 2).unwrap();
        let message = open_error(dir.path());
        assert!(message.contains("it was cut"), "{message}");
    }

    #[test]
    fn refuses_a_damaged_conf_and_keeps_data_when_sled_can_rebuild_it() {
        let dir = tempfile::tempdir().unwrap();
        used(dir.path());
        std::fs::write(dir.path().join("conf"), vec![0xa5; 64]).unwrap();
        let message = open_error(dir.path());
        assert!(message.contains("damaged"), "{message}");

        // An empty or missing conf is rewritten by sled from the settings; the data is intact.
        for damage in ["empty", "missing"] {
            let dir = tempfile::tempdir().unwrap();
            used(dir.path());
            if damage == "empty" {
                std::fs::write(dir.path().join("conf"), b"").unwrap();
            } else {
                std::fs::remove_file(dir.path().join("conf")).unwrap();
            }
            let store = open(dir.path());
            assert_eq!(
                store
                    .scan("a", Bound::Unbounded, Bound::Unbounded, Direction::Forward)
                    .unwrap()
                    .count(),
                500,
                "{damage}"
            );
        }
    }

    #[test]
    fn refuses_a_file_and_a_foreign_marker() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_error(&file).contains("not a directory"));

        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(MARKER_FILE), "reelay-worker:1\n").unwrap();
        let message = open_error(&other);
        assert!(
            message.contains("reelay-worker:1 database, not reelay-test:1"),
            "{message}"
        );
        assert!(!other.join("db").exists(), "refused before sled made files");
    }

    #[test]
    fn refuses_a_database_of_another_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let newer = Schema {
            kind: "test",
            version: 2,
            trees: &["a", "b"],
            upgrades: &[],
        };
        let err = SledStore::open(dir.path(), &newer, SledOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema 1") && err.contains("(schema 2) cannot read"),
            "{err}"
        );
    }

    /// Version 1's "a" keys move to "b" in version 2 (run twice, it finds nothing left to move).
    fn move_a_to_b(store: &dyn Store) -> Result<()> {
        let mut batch = WriteBatch::default();
        for entry in store.scan_prefix("a", b"", Direction::Forward)? {
            let (key, value) = entry?;
            batch.delete("a", key.clone());
            batch.put("b", key, value);
        }
        store.commit(&batch)
    }

    const UPGRADED: Schema = Schema {
        kind: "test",
        version: 2,
        trees: &["a", "b"],
        upgrades: &[Upgrade {
            from: 1,
            what: "a moves to b",
            run: move_a_to_b,
        }],
    };

    #[test]
    fn an_older_version_is_upgraded_at_open_and_then_opens_as_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let mut batch = WriteBatch::default();
            batch.put("a", b"k".to_vec(), b"v".to_vec());
            store.commit(&batch).unwrap();
            store.flush().unwrap();
        }
        for _ in 0..2 {
            let store = SledStore::open(dir.path(), &UPGRADED, SledOptions::default()).unwrap();
            assert_eq!(store.get("a", b"k").unwrap(), None);
            assert_eq!(store.get("b", b"k").unwrap(), Some(b"v".to_vec()));
            drop(store);
            assert_eq!(database_in(dir.path()).unwrap(), "reelay-test:2");
        }
        // The old version cannot read it any more, and says so.
        let err = SledStore::open(dir.path(), &SCHEMA, SledOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema 2") && err.contains("(schema 1) cannot read"),
            "{err}"
        );
    }

    #[test]
    fn an_upgrade_that_fails_leaves_the_old_version_to_retry() {
        fn fails(_: &dyn Store) -> Result<()> {
            Err(StoreError::Engine("disk full".into()))
        }
        const FAILING: Schema = Schema {
            upgrades: &[Upgrade {
                from: 1,
                what: "fails",
                run: fails,
            }],
            ..UPGRADED
        };
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let err = SledStore::open(dir.path(), &FAILING, SledOptions::default()).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(database_in(dir.path()).unwrap(), "reelay-test:1");
        drop(SledStore::open(dir.path(), &UPGRADED, SledOptions::default()).unwrap());
        assert_eq!(database_in(dir.path()).unwrap(), "reelay-test:2");
    }

    #[test]
    fn refuses_data_without_a_schema_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("a").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(dir.path(), &SCHEMA, SledOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no Reelay schema record"), "{err}");
    }
}
