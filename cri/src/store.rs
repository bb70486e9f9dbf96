//! Metadata: pods, containers and daemon records in one embedded transactional database (`<root>/meta.db`).
//!
//! redb gives us crash-safe commits, so a `kill -9` mid-request leaves either the old record or the new one,
//! never half of each. The database is shared (one handle per process is all redb allows) with the snapshotter,
//! which keeps its image index in tables of its own.
//!
//! Records are JSON values keyed by id: the schema of a record can grow fields (serde defaults) without a
//! migration; a change that cannot be read by an older Berth bumps [`SCHEMA_VERSION`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bumped when stored records change in a way an older daemon cannot read.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// A table of JSON records keyed by id.
#[derive(Debug, Clone, Copy)]
pub struct Table(&'static str);

/// The daemon's own record of runtime configuration the kubelet pushed (`UpdateRuntimeConfig`).
pub const DAEMON: Table = Table("daemon");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open metadata database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "metadata database {path} has schema version {found}, newer than this berth understands ({SCHEMA_VERSION}); run a newer berth"
    )]
    NewerSchema { path: PathBuf, found: u32 },
    #[error("metadata database: {0}")]
    Db(String),
    #[error("metadata record {table}/{key} is corrupt: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database and checks its schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found: v,
                    });
                }
                Some(v) if v == SCHEMA_VERSION => {}
                _ => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(SCHEMA_KEY)?.map(|v| v.value()).unwrap_or(0))
    }

    /// The underlying database, for crates that keep tables of their own in it (the image index).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    pub fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(def(table))?;
            t.insert(key, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    table: table.0,
                    key: key.to_string(),
                    source,
                }),
            None => Ok(None),
        }
    }

    pub fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let existed = {
            let mut t = txn.open_table(def(table))?;
            t.remove(key)?.is_some()
        };
        txn.commit()?;
        Ok(existed)
    }

    /// Every record of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let key = k.value().to_string();
            let value =
                serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                    table: table.0,
                    key: key.clone(),
                    source,
                })?;
            out.push((key, value));
        }
        Ok(out)
    }
}

fn def(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_schema_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let s = Store::open(&path).unwrap();
            s.put(DAEMON, "pod_cidr", &"10.1.0.0/16").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            s.get::<String>(DAEMON, "pod_cidr").unwrap().as_deref(),
            Some("10.1.0.0/16")
        );
        assert_eq!(s.list::<String>(DAEMON).unwrap().len(), 1);
        assert!(s.delete(DAEMON, "pod_cidr").unwrap());
        assert!(s.get::<String>(DAEMON, "pod_cidr").unwrap().is_none());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path).err().expect("newer schema refused");
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
