//! Local file system backend: `objects/ab/<64 hex>.dcm`, staging in
//! `tmp/<h>/<64 hex>.<n>.part` (16 shards by the key's first hex digit).
//!
//! `stage` writes and fsyncs the file and its staging shard (shared among
//! concurrent writers); `publish` is one rename(2) into place, atomic, so a
//! reader sees the old object or the new one, never a part.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ObjectKey, ObjectStore, Staged, StoreError};
use crate::group_commit::GroupCommit;

pub struct FsStore {
    objects: PathBuf,
    /// Files moved out of the store for an admin (unreadable orphans).
    set_aside: PathBuf,
    tmp: PathBuf,
    seq: AtomicU64,
    /// fsyncs of each staging shard, shared among concurrent stages. Shards
    /// spread the directory locks that concurrent creates and renames take.
    tmp_sync: Vec<GroupCommit>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_owned(), source }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync dir", dir))
}

impl FsStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        for d in [root, &objects, &tmp] {
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
        for h in 0..16 {
            let d = tmp.join(format!("{h:x}"));
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        // Names differ from any a crashed run left (the clock has moved on).
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Ok(FsStore { objects, tmp, set_aside: root.join("set-aside"), seq: AtomicU64::new(seed), tmp_sync: (0..16).map(|_| GroupCommit::default()).collect() })
    }

    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let hex = key.hex();
        self.objects.join(&hex[0..2]).join(format!("{hex}.dcm"))
    }

    fn staged_path(&self, s: &Staged) -> PathBuf {
        self.tmp.join(&s.id)
    }
}

impl ObjectStore for FsStore {
    fn stage(&self, key: &ObjectKey, data: &[u8]) -> Result<Staged, StoreError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let hex = key.hex();
        let shard = usize::from(key.0[0] >> 4);
        let staged = Staged { key: *key, id: format!("{}/{hex}.{n}.part", &hex[..1]) };
        let path = self.staged_path(&staged);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path).map_err(io("create", &path))?;
        if let Err(e) = f.write_all(data).map_err(io("write", &path)).and_then(|()| f.sync_all().map_err(io("fsync", &path))) {
            // A disk that filled mid-write leaves no debris behind.
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let group = &self.tmp_sync[shard];
        let ticket = group.written();
        group.wait(ticket, || sync_dir(path.parent().unwrap_or(&self.tmp)))?;
        Ok(staged)
    }

    fn publish(&self, staged: &Staged) -> Result<bool, StoreError> {
        let dest = self.path_of(&staged.key);
        let existed = dest.exists();
        // Not fsynced: until it is durable, recovery publishes the staged copy again.
        fs::rename(self.staged_path(staged), &dest).map_err(io("rename", &dest))?;
        Ok(existed)
    }

    fn discard(&self, staged: &Staged) -> Result<(), StoreError> {
        let p = self.staged_path(staged);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", &p)(e)),
            _ => Ok(()),
        }
    }

    fn staged(&self) -> Result<Vec<Staged>, StoreError> {
        let mut out = Vec::new();
        for h in 0..16 {
            let shard = self.tmp.join(format!("{h:x}"));
            for entry in fs::read_dir(&shard).map_err(io("list", &shard))? {
                let entry = entry.map_err(io("list", &shard))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                match name.get(..64).and_then(ObjectKey::from_hex) {
                    Some(key) => out.push(Staged { key, id: format!("{h:x}/{name}") }),
                    // Not ours to interpret: leave it, but say so.
                    None => tracing::warn!(file = %entry.path().display(), "unexpected file in staging"),
                }
            }
        }
        Ok(out)
    }

    fn read_staged(&self, staged: &Staged) -> Result<Vec<u8>, StoreError> {
        let p = self.staged_path(staged);
        fs::read(&p).map_err(io("read", &p))
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
        assert_eq!(s.staged().unwrap(), vec![st.clone()]);
        assert!(!s.publish(&st).unwrap());
        assert_eq!(s.get(&k).unwrap().unwrap(), b"one");
        assert!(s.staged().unwrap().is_empty());
        assert!(s.put(&k, b"three").unwrap(), "replaces");
        assert_eq!(s.get(&k).unwrap().unwrap(), b"three");
        let keys: Vec<_> = s.keys().collect::<Result<_, _>>().unwrap();
        assert_eq!(keys, vec![k]);
        let st = s.stage(&k, b"four").unwrap();
        s.discard(&st).unwrap();
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
