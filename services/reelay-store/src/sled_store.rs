//! The sled 0.34 engine behind [`Store`].
//!
//! Each logical tree is a sled tree of one database, so a [`WriteBatch`] touching several trees is
//! one sled transaction (a batch on a single tree is a plain atomic batch). `flush` is sled's
//! flush followed by an `fsync` of the data file: sled alone uses `sync_file_range`, which does
//! not promise power-loss durability. `flush_async` is never used (it can hang under concurrent
//! callers, sled #1308).
//!
//! At open, a `meta` entry records which kind of database this is and its schema version. A
//! database that was there before but lacks it, or belongs to another kind, is refused with a
//! message, never silently treated as empty.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{Bytes, Direction, Entry, Result, Store, StoreError, WriteBatch};

/// Name of the tree that holds the schema record (every schema has it).
pub const META_TREE: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema";

/// What a database holds: its kind, schema version and trees.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// `coordinator` or `worker`.
    pub kind: &'static str,
    pub version: u32,
    /// Tree names; `meta` is added when missing.
    pub trees: &'static [&'static str],
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
    /// Every tree of the schema, in a fixed order (the transaction's order).
    trees: Vec<sled::Tree>,
    index_of: HashMap<&'static str, usize>,
    /// The data file, fsynced after each flush.
    data_file: Option<File>,
    path: PathBuf,
}

fn engine(err: sled::Error) -> StoreError {
    StoreError::Engine(err.to_string())
}

impl SledStore {
    /// Opens (or creates) the database in `path` and checks its schema.
    pub fn open(path: &Path, schema: &Schema, options: SledOptions) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|err| {
                StoreError::Unusable(format!(
                    "cannot open the database in {}: {err}. Is another reelay process using this --data-dir? \
                     If the files are damaged, restore them from a backup or move the directory away to start empty",
                    path.display()
                ))
            })?;
        let mut names: Vec<&'static str> = schema.trees.to_vec();
        if !names.contains(&META_TREE) {
            names.push(META_TREE);
        }
        let mut trees = Vec::with_capacity(names.len());
        let mut index_of = HashMap::new();
        for name in names {
            index_of.insert(name, trees.len());
            trees.push(db.open_tree(name).map_err(engine)?);
        }
        let data_file = File::open(path.join("db")).ok();
        let store = SledStore {
            db,
            trees,
            index_of,
            data_file,
            path: path.to_owned(),
        };
        store.check_schema(schema)?;
        Ok(store)
    }

    fn check_schema(&self, schema: &Schema) -> Result<()> {
        let expected = format!("reelay-{}:{}", schema.kind, schema.version);
        let meta = self.tree(META_TREE)?;
        match meta.get(SCHEMA_KEY).map_err(engine)? {
            Some(found) if found.as_ref() == expected.as_bytes() => Ok(()),
            Some(found) => {
                let found = String::from_utf8_lossy(&found).into_owned();
                Err(StoreError::Unusable(format!(
                    "{} holds a {found} database, not {expected}: give each coordinator and worker its own --data-dir",
                    self.path.display()
                )))
            }
            None if self.db.was_recovered() && self.has_data()? => {
                Err(StoreError::Unusable(format!(
                    "{} holds data but no Reelay schema record: it is damaged or not a Reelay database; \
                 restore it from a backup or move it away to start empty",
                    self.path.display()
                )))
            }
            None => {
                meta.insert(SCHEMA_KEY, expected.as_bytes())
                    .map_err(engine)?;
                self.flush()
            }
        }
    }

    fn has_data(&self) -> Result<bool> {
        for tree in &self.trees {
            if tree.first().map_err(engine)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn tree(&self, name: &str) -> Result<&sled::Tree> {
        self.index_of
            .get(name)
            .map(|&index| &self.trees[index])
            .ok_or_else(|| StoreError::UnknownTree(name.to_owned()))
    }

    /// Bytes on disk (for metrics).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store for SledStore {
    fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .tree(tree)?
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
        let range = self.tree(tree)?.range::<Bytes, _>((from, to));
        let convert = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                .map_err(engine)
        };
        Ok(match direction {
            Direction::Forward => Box::new(range.map(convert)),
            Direction::Reverse => Box::new(range.rev().map(convert)),
        })
    }

    fn commit(&self, batch: &WriteBatch) -> Result<()> {
        let mut per_tree: Vec<Option<sled::Batch>> = vec![None; self.trees.len()];
        for (tree, key, value) in batch.ops() {
            let index = *self
                .index_of
                .get(tree)
                .ok_or_else(|| StoreError::UnknownTree(tree.to_owned()))?;
            let tree_batch = per_tree[index].get_or_insert_with(sled::Batch::default);
            match value {
                Some(value) => tree_batch.insert(key, value),
                None => tree_batch.remove(key),
            }
        }
        let touched: Vec<usize> = (0..per_tree.len())
            .filter(|&index| per_tree[index].is_some())
            .collect();
        match touched.as_slice() {
            [] => Ok(()),
            [only] => {
                let tree_batch = per_tree[*only].take().unwrap_or_default();
                self.trees[*only].apply_batch(tree_batch).map_err(engine)
            }
            _ => {
                let result: Result<(), TransactionError<()>> =
                    self.trees.as_slice().transaction(|trees| {
                        for &index in &touched {
                            if let Some(tree_batch) = &per_tree[index] {
                                trees[index].apply_batch(tree_batch)?;
                            }
                        }
                        Ok::<(), ConflictableTransactionError<()>>(())
                    });
                result.map_err(|err| match err {
                    TransactionError::Storage(err) => engine(err),
                    TransactionError::Abort(()) => {
                        StoreError::Engine("transaction aborted".to_owned())
                    }
                })
            }
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
        };
        let err = SledStore::open(dir.path(), &other, SledOptions::default()).unwrap_err();
        assert!(err.to_string().contains("reelay-test:1"), "{err}");
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
