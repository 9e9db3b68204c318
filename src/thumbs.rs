//! Thumbnails: one per series (its middle image, by Instance Number) and
//! one per study (its first series' thumbnail), as PNG in a cache under
//! `<data>/thumbs/`. The cache is derived data: written atomically, never
//! fsynced, rebuilt by `radhub thumbs --rebuild`. An image that cannot be
//! decoded gets a placeholder and its reason is kept beside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::index::model::{sort_instances, sort_series, InstanceRecord};
use crate::ingest::Hub;
use crate::render::{self, Format, Instance};
use crate::store::ObjectKey;

/// Thumbnail size: the longer side, in pixels.
pub const SIZE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("thumbnail cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("no such series")]
    NoSeries,
    /// Its image is held only at its site (fetched when someone opens it).
    #[error("series {0} is held only at its site")]
    NotHere(String),
}

/// What making a thumbnail gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Made {
    Rendered,
    /// The image could not be decoded: a placeholder, with the reason.
    Placeholder(String),
}

pub struct Thumbs {
    dir: PathBuf,
}

fn name(uid: &str) -> String {
    ObjectKey::for_uid(uid).hex()
}

impl Thumbs {
    pub fn open(data_dir: &Path) -> Result<Self, ThumbError> {
        let dir = data_dir.join("thumbs");
        for sub in ["series", "study"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|source| ThumbError::Io { path: d.clone(), source })?;
        }
        Ok(Thumbs { dir })
    }

    pub fn series_path(&self, series_uid: &str) -> PathBuf {
        self.dir.join("series").join(format!("{}.png", name(series_uid)))
    }

    pub fn study_path(&self, study_uid: &str) -> PathBuf {
        self.dir.join("study").join(format!("{}.png", name(study_uid)))
    }

    /// Why a series' thumbnail is a placeholder, if it is.
    pub fn failure(&self, series_uid: &str) -> Option<String> {
        std::fs::read_to_string(self.series_path(series_uid).with_extension("why")).ok()
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), ThumbError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|source| ThumbError::Io { path: path.to_owned(), source })
    }

    /// Renders the series' middle image (and the study's thumbnail, when
    /// this is its first series).
    pub fn make_series(&self, hub: &Hub, study_uid: &str, series_uid: &str) -> Result<Made, ThumbError> {
        let mut instances = hub.index.instances_of(study_uid, Some(series_uid))?;
        let middle = middle(&mut instances).ok_or(ThumbError::NoSeries)?;
        if !middle.local {
            return Err(ThumbError::NotHere(series_uid.to_owned()));
        }
        let file = hub.file(&middle.sop_uid)?;
        let (png, made) = match file.as_deref().map(thumbnail) {
            Some(Ok(png)) => (png, Made::Rendered),
            Some(Err(why)) => (placeholder_png(), Made::Placeholder(why)),
            None => (placeholder_png(), Made::Placeholder("instance file missing".into())),
        };
        let path = self.series_path(series_uid);
        self.write(&path, &png)?;
        let why = path.with_extension("why");
        match &made {
            Made::Placeholder(reason) => {
                tracing::warn!(series = series_uid, sop = %middle.sop_uid, %reason, "thumbnail placeholder");
                self.write(&why, reason.as_bytes())?;
            }
            Made::Rendered => {
                let _ = std::fs::remove_file(&why);
            }
        }
        // The study's thumbnail is its first series' (lowest Series Number).
        if first_series(hub, study_uid)?.is_some_and(|s| s == series_uid) {
            self.write(&self.study_path(study_uid), &png)?;
        }
        Ok(made)
    }

    /// The study's thumbnail (its first series'), made now if missing.
    pub fn study(&self, hub: &Hub, study_uid: &str) -> Result<Vec<u8>, ThumbError> {
        let path = self.study_path(study_uid);
        if !path.exists() {
            let first = first_series(hub, study_uid)?.ok_or(ThumbError::NoSeries)?;
            self.make_series(hub, study_uid, &first)?;
        }
        std::fs::read(&path).map_err(|source| ThumbError::Io { path, source })
    }

    /// The series' thumbnail, made now if missing.
    pub fn series(&self, hub: &Hub, study_uid: &str, series_uid: &str) -> Result<Vec<u8>, ThumbError> {
        let path = self.series_path(series_uid);
        if !path.exists() {
            self.make_series(hub, study_uid, series_uid)?;
        }
        std::fs::read(&path).map_err(|source| ThumbError::Io { path, source })
    }
}

/// The middle image of a series by Instance Number (then SOP Instance UID).
fn middle(instances: &mut [InstanceRecord]) -> Option<&InstanceRecord> {
    sort_instances(instances);
    instances.get(instances.len() / 2)
}

/// The study's first series (lowest Series Number), whose thumbnail is the study's.
fn first_series(hub: &Hub, study_uid: &str) -> Result<Option<String>, ThumbError> {
    let mut series = hub.index.series_of(study_uid)?;
    sort_series(&mut series);
    Ok(series.into_iter().next().map(|s| s.uid))
}

/// A 256 px PNG of one instance's middle frame through the display pipeline.
/// A panic while rendering (a bug the input found) becomes an error, so the
/// series gets a placeholder with the reason instead of taking the
/// background pool, and with it the server, down.
pub fn thumbnail(part10: &[u8]) -> Result<Vec<u8>, String> {
    guarded(|| {
        let inst = Instance::open(part10).map_err(|e| e.to_string())?;
        let frame = inst.frames() / 2;
        let shown = inst.display(frame, None).map_err(|e| e.to_string())?;
        shown.fit(SIZE).encode(Format::Png).map_err(|e| e.to_string())
    })
}

/// Runs `f`, turning a panic into an error that names its message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| Err(format!("rendering panicked: {}", panic_message(p.as_ref()))))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

fn placeholder_png() -> Vec<u8> {
    render::placeholder(SIZE).encode(Format::Png).unwrap_or_default()
}

/// Renders series thumbnails in the background after ingest, on a rayon
/// pool, once a series has been quiet for a moment (its middle image
/// settles as instances arrive). Never blocks the caller: if the queue is
/// full the series is left for on-demand rendering.
#[derive(Clone)]
pub struct Renderer {
    tx: mpsc::SyncSender<(String, String)>,
}

const QUIET: Duration = Duration::from_millis(1500);

impl Renderer {
    pub fn start(hub: Arc<Hub>, thumbs: Arc<Thumbs>, threads: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<(String, String)>(65536);
        // Without a panic handler a panic in a spawned job aborts the process.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("thumbs-{i}"))
            .panic_handler(|p| tracing::error!(reason = panic_message(p.as_ref()), "thumbnail job panicked"))
            .build()
            .ok();
        std::thread::Builder::new()
            .name("thumbs".into())
            .spawn(move || {
                let mut dirty: HashMap<String, (String, Instant)> = HashMap::new();
                loop {
                    match rx.recv_timeout(Duration::from_millis(250)) {
                        Ok((study, series)) => {
                            dirty.insert(series, (study, Instant::now()));
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) if dirty.is_empty() => return,
                        Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(250)),
                    }
                    let ready: Vec<String> = dirty.iter().filter(|(_, (_, t))| t.elapsed() >= QUIET).map(|(s, _)| s.clone()).collect();
                    for series in ready {
                        let Some((study, _)) = dirty.remove(&series) else { continue };
                        let (hub, thumbs) = (hub.clone(), thumbs.clone());
                        let job = move || {
                            // `thumbnail` already turns rendering panics into placeholders;
                            // this catches the rest (index, store) so the job ends cleanly.
                            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thumbs.make_series(&hub, &study, &series)));
                            match made {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => tracing::warn!(%series, error = %e, "thumbnail failed"),
                                Err(p) => tracing::error!(%series, reason = panic_message(p.as_ref()), "thumbnail job panicked"),
                            }
                        };
                        match &pool {
                            Some(p) => p.spawn(job),
                            None => job(),
                        }
                    }
                }
            })
            .ok();
        Renderer { tx }
    }

    /// Notes that an instance of this series arrived.
    pub fn touch(&self, study_uid: &str, series_uid: &str) {
        let _ = self.tx.try_send((study_uid.to_owned(), series_uid.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_rendering_becomes_the_placeholder_reason() {
        let r: Result<(), String> = guarded(|| panic!("index out of bounds: the len is 3 but the index is 7"));
        assert_eq!(r, Err("rendering panicked: index out of bounds: the len is 3 but the index is 7".into()));
        let n = 7;
        let r: Result<(), String> = guarded(|| panic!("formatted {n}"));
        assert_eq!(r, Err("rendering panicked: formatted 7".into()));
        assert_eq!(guarded(|| Ok::<_, String>(5)), Ok(5));
    }
}
