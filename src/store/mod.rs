//! The instance store: whole Part 10 files, written once, addressed by a hash
//! of the SOP Instance UID. It owns bytes and durability, never metadata; it
//! must never derive a path from anything a peer sent.

mod fs;

pub use fs::FsStore;

use std::fmt;
use std::path::PathBuf;

/// Where an instance lives: BLAKE3 of its SOP Instance UID. A hostile UID
/// can never become a path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(pub [u8; 32]);

impl ObjectKey {
    pub fn for_uid(sop_instance_uid: &str) -> Self {
        ObjectKey(*blake3::hash(sop_instance_uid.as_bytes()).as_bytes())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ObjectKey(out))
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({})", self.hex())
    }
}

/// An object written durably to the staging area, not yet visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    pub key: ObjectKey,
    /// Backend-specific name of the staged copy.
    pub id: String,
}

/// The bytes of a staged object, mapped from its file where the backend
/// has one: an instance of gigabytes is read in place, never copied into memory.
pub enum StagedBytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for StagedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            StagedBytes::Owned(v) => v,
            StagedBytes::Mapped(m) => m,
        }
    }
}

/// An object being staged as its bytes arrive (a C-STORE data set, PDU by
/// PDU). Dropped unfinished, what it wrote is removed: nothing becomes
/// visible, nothing is left behind.
pub trait StagingWriter: Send {
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError>;
    /// Every byte is written: the backend may start making them durable
    /// (without waiting) while the caller reads them.
    fn complete(&mut self) {}
    /// What has been written so far, to read before it is finished.
    fn bytes(&mut self) -> Result<StagedBytes, StoreError>;
    /// Makes it durable in staging, as `stage` does, as the object under `key`.
    fn finish(self: Box<Self>, key: &ObjectKey) -> Result<Staged, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

impl StoreError {
    /// The file system is full (or the user's quota spent): a sender may
    /// try again later, unlike a fault.
    pub fn is_out_of_space(&self) -> bool {
        let StoreError::Io { source, .. } = self;
        out_of_space(source)
    }
}

/// ENOSPC or EDQUOT.
pub fn out_of_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded || matches!(e.raw_os_error(), Some(28 | 122))
}

/// A durable store of objects by key. Implementations: the local file system
/// today; object storage later.
///
/// Writing is two-phase so that the index can be the commit point: `stage`
/// makes the bytes durable but invisible; the caller commits its index entry;
/// `publish` makes the object visible. Staged objects left by a crash are
/// listed by `staged`, and the caller publishes those its index committed
/// and discards the rest.
pub trait ObjectStore: Send + Sync {
    /// Writes `data` durably to staging. Nothing is visible yet.
    fn stage(&self, key: &ObjectKey, data: &[u8]) -> Result<Staged, StoreError> {
        let mut w = self.stage_writer()?;
        w.write(data)?;
        w.finish(key)
    }
    /// Stages an object written piece by piece, its key given at the end
    /// (read from what was written).
    fn stage_writer(&self) -> Result<Box<dyn StagingWriter>, StoreError>;
    /// Atomically makes a staged object the object under its key, replacing
    /// any held one; returns whether one was replaced. Durability of this
    /// step is not required: until it is, `staged` still lists the object.
    fn publish(&self, staged: &Staged) -> Result<bool, StoreError>;
    /// Removes a staged object, by its `Staged::id`.
    fn discard(&self, id: &str) -> Result<(), StoreError>;
    /// The ids of objects staged and neither published nor discarded
    /// (after a crash); what each is, is read from its bytes.
    fn staged(&self) -> Result<Vec<String>, StoreError>;
    fn read_staged(&self, id: &str) -> Result<StagedBytes, StoreError>;

    fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// The object as a stream, for answers that need not hold it whole.
    fn reader(&self, key: &ObjectKey) -> Result<Option<Box<dyn std::io::Read + Send>>, StoreError> {
        Ok(self.get(key)?.map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::Read + Send>))
    }
    /// The first `max` bytes of an object (all of it if shorter), and its
    /// whole size: metadata is read without the pixel data after it.
    fn get_prefix(&self, key: &ObjectKey, max: usize) -> Result<Option<(Vec<u8>, u64)>, StoreError>;
    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError>;
    /// Removes the object; `false` if there was none.
    fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError>;
    /// Moves the object out of the store, kept for an admin to look at.
    fn set_aside(&self, key: &ObjectKey) -> Result<(), StoreError>;
    /// Every key present, in no particular order.
    fn keys(&self) -> Box<dyn Iterator<Item = Result<ObjectKey, StoreError>> + '_>;
    /// A local file path, where the backend has one (for zero-copy serving).
    fn local_path(&self, key: &ObjectKey) -> Option<PathBuf>;

    /// Stage and publish at once, for callers with no index to commit.
    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<bool, StoreError> {
        let s = self.stage(key, data)?;
        self.publish(&s)
    }
}
