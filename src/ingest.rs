//! Ingest: the one path by which an instance enters radhub (import now;
//! C-STORE and STOW-RS later). Scan, store durably, index, sync: a success is
//! returned only when both the file and its index entry are durable.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dicom::{extract, ScanError};
use crate::index::model::InstanceMeta;
use crate::index::{Index, IndexError, SledIndex};
use crate::sites;
use crate::store::{FsStore, ObjectKey, ObjectStore, StoreError};

/// What to do when a SOP Instance UID arrives again with different bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DuplicatePolicy {
    /// Keep the copy already held; log the conflict.
    #[default]
    Keep,
    /// Replace the held copy with the new one; log it.
    Replace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    Stored,
    /// The same bytes were held already: success, nothing written.
    Identical,
    /// Different bytes under a held UID, kept per policy: nothing written.
    KeptExisting,
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is at fault; nothing was changed.
    #[error("rejected: {0}")]
    Rejected(#[from] ScanError),
    /// The data set is not what its command announced; nothing was changed.
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

const UID_LOCKS: usize = 64;

/// Storage and index together, with the rules that bind them.
pub struct Hub {
    pub store: Box<dyn ObjectStore>,
    pub index: Box<dyn Index>,
    pub policy: DuplicatePolicy,
    /// Serialises work on one SOP Instance UID (striped by key).
    uid_locks: Vec<Mutex<()>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl Hub {
    /// Opens (creating) a hub in `dir`: `dir/objects`, `dir/tmp`, `dir/index`,
    /// and finishes any write a crash interrupted.
    pub fn open(dir: &Path, policy: DuplicatePolicy) -> Result<Self, OpenError> {
        let store = FsStore::open(dir)?;
        let index = SledIndex::open(&dir.join("index"))?;
        let hub = Self::with(Box::new(store), Box::new(index), policy);
        hub.recover()?;
        Ok(hub)
    }

    pub fn with(store: Box<dyn ObjectStore>, index: Box<dyn Index>, policy: DuplicatePolicy) -> Self {
        Hub { store, index, policy, uid_locks: (0..UID_LOCKS).map(|_| Mutex::new(())).collect() }
    }

    /// Staged objects are the redo log: one whose index entry committed (same
    /// content hash) is published; any other was never acknowledged and is
    /// discarded.
    fn recover(&self) -> Result<Recovery, OpenError> {
        let mut r = Recovery::default();
        for staged in self.store.staged()? {
            let bytes = self.store.read_staged(&staged)?;
            let hash = *blake3::hash(&bytes).as_bytes();
            let committed = match extract::read_meta(&bytes) {
                Ok(meta) => self.index.instance(&meta.sop_uid)?.is_some_and(|i| i.content_hash == hash && ObjectKey::for_uid(&i.sop_uid) == staged.key),
                Err(_) => false,
            };
            if committed {
                self.store.publish(&staged)?;
                r.published += 1;
            } else {
                self.store.discard(&staged)?;
                r.discarded += 1;
            }
        }
        if r.published + r.discarded > 0 {
            tracing::warn!(published = r.published, discarded = r.discarded, "finished writes interrupted by a crash");
        }
        Ok(r)
    }

    fn lock(&self, key: &ObjectKey) -> MutexGuard<'_, ()> {
        let m = &self.uid_locks[usize::from(key.0[0]) % UID_LOCKS];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what the index records from `bytes`, with arrival facts filled.
    pub fn describe(bytes: &[u8], site: Option<&str>) -> Result<InstanceMeta, ScanError> {
        let mut meta = extract::read_meta(bytes)?;
        meta.site = sites::resolve(site, &meta.issuer_of_patient_id);
        meta.file_size = bytes.len() as u64;
        meta.content_hash = *blake3::hash(bytes).as_bytes();
        meta.received_ms = now_ms();
        Ok(meta)
    }

    /// Stores and indexes one Part 10 instance. Returns once the file and its
    /// index entry are durable: stage (fsync), index commit (group flush),
    /// publish (rename). A crash between steps is finished by `recover`.
    pub fn ingest(&self, bytes: &[u8], site: Option<&str>) -> Result<(Outcome, InstanceMeta), IngestError> {
        let meta = Self::describe(bytes, site)?;
        self.commit(bytes, meta)
    }

    /// As `ingest`, refusing a data set whose SOP Class and Instance UIDs
    /// are not the `(class, instance)` its C-STORE request announced.
    pub fn ingest_expecting(&self, bytes: &[u8], site: Option<&str>, (class, instance): (&str, &str)) -> Result<(Outcome, InstanceMeta), IngestError> {
        self.ingest_checked(bytes, site, |meta| {
            if meta.sop_uid != instance {
                return Err(format!("data set holds SOP Instance UID {}, not {instance}", meta.sop_uid));
            }
            if meta.sop_class_uid != class {
                return Err(format!("data set holds SOP Class UID {}, not {class}", meta.sop_class_uid));
            }
            Ok(())
        })
    }

    /// As `ingest`, refusing (`Mismatch`, nothing changed) a data set whose
    /// description `check` rejects: what the request around it announced.
    pub fn ingest_checked(
        &self,
        bytes: &[u8],
        site: Option<&str>,
        check: impl FnOnce(&InstanceMeta) -> Result<(), String>,
    ) -> Result<(Outcome, InstanceMeta), IngestError> {
        let meta = Self::describe(bytes, site)?;
        check(&meta).map_err(IngestError::Mismatch)?;
        self.commit(bytes, meta)
    }

    fn commit(&self, bytes: &[u8], meta: InstanceMeta) -> Result<(Outcome, InstanceMeta), IngestError> {
        let key = ObjectKey::for_uid(&meta.sop_uid);
        let _g = self.lock(&key);
        let outcome = match self.index.instance(&meta.sop_uid)? {
            Some(held) if held.content_hash == meta.content_hash && self.store.size(&key)? == Some(held.file_size) => {
                return Ok((Outcome::Identical, meta));
            }
            Some(held) if held.content_hash != meta.content_hash && self.policy == DuplicatePolicy::Keep => {
                tracing::warn!(sop = %meta.sop_uid, held_bytes = held.file_size, new_bytes = meta.file_size, "same SOP Instance UID, different content: kept the held copy");
                return Ok((Outcome::KeptExisting, meta));
            }
            Some(_) => {
                tracing::warn!(sop = %meta.sop_uid, "same SOP Instance UID, different content: replacing the held copy");
                Outcome::Replaced
            }
            None => Outcome::Stored,
        };
        let staged = self.store.stage(&key, bytes)?;
        if let Err(e) = self.index.upsert(&meta) {
            // Nothing committed: the staged copy must never become visible.
            let _ = self.store.discard(&staged);
            return Err(e.into());
        }
        // Should the flush fail, the staged copy stays: if the entry reaches
        // the disk anyway, recovery publishes it; if not, recovery drops it.
        self.index.sync()?;
        self.store.publish(&staged)?;
        Ok((outcome, meta))
    }
}

/// What `recover` did at open.
#[derive(Debug, Default)]
pub struct Recovery {
    pub published: u64,
    pub discarded: u64,
}
