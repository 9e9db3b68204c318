//! Local file system backend: `objects/ab/<64 hex>.dcm`, staging in
//! `tmp/pool/<n>.part`.
//!
//! Staging files are made ahead, empty, in batches on a thread of their
//! own, their names made durable by one directory fsync per batch: an
//! arrival takes one (no create, no directory fsync on its path), writes
//! it as its bytes arrive (starting the disk's writeback as it goes, so
//! that the fsync at its end has little left to do) and fsyncs it;
//! `publish` is one rename(2) into place, atomic, so a reader sees the old
//! object or the new one, never a part. With the pool empty a staging file
//! is made on the spot and the directory fsync is its own (shared among
//! concurrent writers).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{ObjectKey, ObjectStore, Staged, StagedBytes, StagingWriter, StoreError};
use crate::group_commit::GroupCommit;

pub struct FsStore {
    objects: PathBuf,
    /// Files moved out of the store for an admin (unreadable orphans).
    set_aside: PathBuf,
    tmp: PathBuf,
    pool: Arc<Pool>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_owned(), source }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync dir", dir))
}

/// Staging files made when fewer than `POOL_LOW` are ready.
const POOL_BATCH: usize = 64;
const POOL_LOW: usize = 24;

/// Empty staging files whose names are durable, ready to be written.
struct Pool {
    dir: PathBuf,
    seq: AtomicU64,
    ready: Mutex<Vec<PathBuf>>,
    refilling: AtomicBool,
    /// fsyncs of the directory for files made on the spot, shared.
    dir_sync: GroupCommit,
}

impl Pool {
    fn name(&self) -> PathBuf {
        self.dir.join(format!("{}.part", self.seq.fetch_add(1, Ordering::Relaxed)))
    }

    /// A new, empty staging file, opened to write and to map.
    fn create(path: &Path) -> Result<File, StoreError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(path).map_err(io("create", path))
    }

    /// A file made ahead (its name durable already), starting a refill
    /// when few are left.
    fn take(self: &Arc<Self>) -> Option<PathBuf> {
        let (path, left) = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            (ready.pop(), ready.len())
        };
        if left < POOL_LOW && !self.refilling.swap(true, Ordering::AcqRel) {
            let pool = self.clone();
            let started = std::thread::Builder::new().name("staging-pool".into()).spawn(move || {
                if let Err(e) = pool.refill() {
                    // Arrivals make their own files meanwhile, and meet the error themselves.
                    tracing::debug!(error = %e, "staging files not made ahead");
                }
                pool.refilling.store(false, Ordering::Release);
            });
            if started.is_err() {
                self.refilling.store(false, Ordering::Release);
            }
        }
        path
    }

    fn refill(&self) -> Result<(), StoreError> {
        let mut made = Vec::with_capacity(POOL_BATCH);
        let mut out = Ok(());
        for _ in 0..POOL_BATCH {
            let p = self.name();
            match Self::create(&p) {
                Ok(_) => made.push(p),
                Err(e) => {
                    out = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            for p in &made {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).extend(made);
        out
    }
}

impl FsStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        let pool_dir = tmp.join("pool");
        for d in [root, &objects, &tmp, &pool_dir] {
            fs::create_dir_all(d).map_err(io("create", d))?;
        }
        // Patient data: the hub's folder is for its own user only, whatever
        // made it (files inside are 0600 by the process umask, `cli::main`).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io("chmod", root))?;
        }
        // One level of 256 directories, made once: creating directories on
        // the hot path cost more than the writes (ext4 inode allocation),
        // and 256 keep even 10 million objects at ~40k per directory.
        if !objects.join("ff").is_dir() {
            for b in 0..=255u8 {
                let d = objects.join(format!("{b:02x}"));
                fs::create_dir_all(&d).map_err(io("create", &d))?;
            }
            sync_dir(&objects)?;
        }
        // Files made ahead by a run that ended were never written: not staged.
        for entry in fs::read_dir(&pool_dir).map_err(io("list", &pool_dir))? {
            let entry = entry.map_err(io("list", &pool_dir))?;
            if entry.metadata().is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = fs::remove_file(entry.path());
            }
        }
        // Names differ from any a crashed run left (the clock has moved on).
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let pool =
            Pool { dir: pool_dir, seq: AtomicU64::new(seed), ready: Mutex::default(), refilling: AtomicBool::new(false), dir_sync: GroupCommit::default() };
        Ok(FsStore { objects, tmp, set_aside: root.join("set-aside"), pool: Arc::new(pool) })
    }

    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let hex = key.hex();
        self.objects.join(&hex[0..2]).join(format!("{hex}.dcm"))
    }

    fn staged_path(&self, id: &str) -> PathBuf {
        self.tmp.join(id)
    }
}

/// How much a staging writer writes before it asks the disk to start
/// writing it back.
const WRITEBACK_EVERY: u64 = 8 << 20;

struct FsStaging {
    id: String,
    path: PathBuf,
    file: Option<File>,
    /// Made on the spot: its name is durable only once the directory is synced.
    made_now: bool,
    written: u64,
    /// Bytes handed to writeback already.
    flushed: u64,
    pool: Arc<Pool>,
}

impl FsStaging {
    /// Starts writeback of what was written since the last call, without
    /// waiting for it: the final fsync then waits for little.
    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(f) = self.file.as_ref().filter(|_| self.written > self.flushed) {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a file descriptor this writer owns.
            let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), self.flushed as i64, (self.written - self.flushed) as i64, libc::SYNC_FILE_RANGE_WRITE) };
        }
        self.flushed = self.written;
    }
}

impl StagingWriter for FsStaging {
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let f = self.file.as_mut().ok_or_else(|| io("write", &self.path)(std::io::Error::other("staging file closed")))?;
        f.write_all(data).map_err(io("write", &self.path))?;
        self.written += data.len() as u64;
        if self.written - self.flushed >= WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(())
    }

    fn complete(&mut self) {
        self.start_writeback();
    }

    fn bytes(&mut self) -> Result<StagedBytes, StoreError> {
        let f = self.file.as_ref().ok_or_else(|| io("map", &self.path)(std::io::Error::other("staging file closed")))?;
        map(f, &self.path)
    }

    fn finish(mut self: Box<Self>, key: &ObjectKey) -> Result<Staged, StoreError> {
        let f = self.file.take().ok_or_else(|| io("fsync", &self.path)(std::io::Error::other("staging file closed")))?;
        f.sync_all().map_err(io("fsync", &self.path))?;
        if self.made_now {
            let group = &self.pool.dir_sync;
            let ticket = group.written();
            group.wait(ticket, || sync_dir(&self.pool.dir))?;
        }
        // Finished: no longer this writer's to remove.
        self.path = PathBuf::new();
        Ok(Staged { key: *key, id: std::mem::take(&mut self.id) })
    }
}

impl Drop for FsStaging {
    fn drop(&mut self) {
        // Unfinished (refused, abandoned, or the disk filled): no debris.
        if !self.path.as_os_str().is_empty() {
            self.file = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A file's bytes, mapped (an empty file has none to map).
fn map(f: &File, path: &Path) -> Result<StagedBytes, StoreError> {
    if f.metadata().map_err(io("stat", path))?.len() == 0 {
        return Ok(StagedBytes::Owned(Vec::new()));
    }
    // SAFETY: staging files are this process's own, written only through
    // their writer and never truncated; a mapping outlives a rename or unlink.
    let m = unsafe { memmap2::Mmap::map(f) }.map_err(io("map", path))?;
    Ok(StagedBytes::Mapped(m))
}

impl ObjectStore for FsStore {
    fn stage_writer(&self) -> Result<Box<dyn StagingWriter>, StoreError> {
        let (path, file, made_now) = match self.pool.take() {
            Some(p) => {
                let f = OpenOptions::new().read(true).write(true).open(&p).map_err(io("open", &p))?;
                (p, f, false)
            }
            None => {
                let p = self.pool.name();
                let f = Pool::create(&p)?;
                (p, f, true)
            }
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Box::new(FsStaging { id: format!("pool/{name}"), path, file: Some(file), made_now, written: 0, flushed: 0, pool: self.pool.clone() }))
    }

    fn publish(&self, staged: &Staged) -> Result<bool, StoreError> {
        let dest = self.path_of(&staged.key);
        let existed = dest.exists();
        // Not fsynced: until it is durable, recovery publishes the staged copy again.
        fs::rename(self.staged_path(&staged.id), &dest).map_err(io("rename", &dest))?;
        Ok(existed)
    }

    fn discard(&self, id: &str) -> Result<(), StoreError> {
        let p = self.staged_path(id);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", &p)(e)),
            _ => Ok(()),
        }
    }

    fn staged(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        // The pool, and the per-key shards `tmp/<h>/` of hubs before it.
        for entry in walkdir::WalkDir::new(&self.tmp).min_depth(2).max_depth(2) {
            let entry = entry.map_err(|e| StoreError::Io {
                op: "list",
                path: e.path().map(Path::to_path_buf).unwrap_or_default(),
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk error")),
            })?;
            let in_pool = entry.path().parent() == Some(self.pool.dir.as_path());
            // An empty file of the pool is one made ahead, not yet taken.
            if !entry.file_type().is_file() || (in_pool && entry.metadata().is_ok_and(|m| m.len() == 0)) {
                continue;
            }
            if let Ok(rel) = entry.path().strip_prefix(&self.tmp) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    fn read_staged(&self, id: &str) -> Result<StagedBytes, StoreError> {
        let p = self.staged_path(id);
        map(&File::open(&p).map_err(io("open", &p))?, &p)
    }

    fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.path_of(key);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &p)(e)),
        }
    }

    fn reader(&self, key: &ObjectKey) -> Result<Option<Box<dyn std::io::Read + Send>>, StoreError> {
        let p = self.path_of(key);
        match fs::File::open(&p) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("open", &p)(e)),
        }
    }

    fn get_prefix(&self, key: &ObjectKey, max: usize) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        use std::io::Read;
        let p = self.path_of(key);
        let f = match fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open", &p)(e)),
        };
        let size = f.metadata().map_err(io("stat", &p))?.len();
        let mut buf = Vec::with_capacity(max.min(size as usize));
        f.take(max as u64).read_to_end(&mut buf).map_err(io("read", &p))?;
        Ok(Some((buf, size)))
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        let p = self.path_of(key);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("stat", &p)(e)),
        }
    }

    fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let p = self.path_of(key);
        match fs::remove_file(&p) {
            Ok(()) => {
                if let Some(dir) = p.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("remove", &p)(e)),
        }
    }

    fn set_aside(&self, key: &ObjectKey) -> Result<(), StoreError> {
        fs::create_dir_all(&self.set_aside).map_err(io("create", &self.set_aside))?;
        let (from, to) = (self.path_of(key), self.set_aside.join(format!("{}.dcm", key.hex())));
        fs::rename(&from, &to).map_err(io("rename", &from))?;
        sync_dir(&self.set_aside)?;
        if let Some(dir) = from.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn keys(&self) -> Box<dyn Iterator<Item = Result<ObjectKey, StoreError>> + '_> {
        let walk = walkdir::WalkDir::new(&self.objects).min_depth(2).max_depth(2).into_iter();
        Box::new(walk.filter_map(|entry| match entry {
            Err(e) => Some(Err(StoreError::Io {
                op: "list",
                path: e.path().map(Path::to_path_buf).unwrap_or_default(),
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk error")),
            })),
            Ok(entry) => {
                let name = entry.file_name().to_str()?;
                ObjectKey::from_hex(name.strip_suffix(".dcm")?).map(Ok)
            }
        }))
    }

    fn local_path(&self, key: &ObjectKey) -> Option<PathBuf> {
        Some(self.path_of(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_publish_replace_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        let k = ObjectKey::for_uid("1.2.3");
        let st = s.stage(&k, b"one").unwrap();
        assert_eq!(s.get(&k).unwrap(), None, "staged objects are invisible");
        assert_eq!(s.staged().unwrap(), vec![st.id.clone()]);
        assert!(!s.publish(&st).unwrap());
        assert_eq!(s.get(&k).unwrap().unwrap(), b"one");
        assert!(s.staged().unwrap().is_empty());
        assert!(s.put(&k, b"three").unwrap(), "replaces");
        assert_eq!(s.get(&k).unwrap().unwrap(), b"three");
        let keys: Vec<_> = s.keys().collect::<Result<_, _>>().unwrap();
        assert_eq!(keys, vec![k]);
        let st = s.stage(&k, b"four").unwrap();
        s.discard(&st.id).unwrap();
        assert!(s.staged().unwrap().is_empty(), "files made ahead are not staged objects");
        // A writer dropped unfinished leaves nothing.
        let mut w = s.stage_writer().unwrap();
        w.write(b"half").unwrap();
        assert_eq!(&*w.bytes().unwrap(), b"half");
        assert_eq!(s.staged().unwrap().len(), 1);
        drop(w);
        assert!(s.staged().unwrap().is_empty());
        assert!(s.delete(&k).unwrap());
        assert_eq!(s.get(&k).unwrap(), None);
    }

    #[test]
    fn hostile_uid_never_reaches_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        let p = s.path_of(&ObjectKey::for_uid("../../etc/passwd"));
        assert!(p.starts_with(dir.path().join("objects")));
        assert!(!p.to_string_lossy().contains("passwd"));
    }
}
