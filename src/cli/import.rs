//! `radhub import PATH...`: walk, parse in parallel, store and index.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

use crate::ingest::{DuplicatePolicy, Hub, IngestError, Outcome};

/// Files larger than this are skipped unread (a PACS object of several GB is
/// a mistake, not an instance).
const DEFAULT_MAX_FILE: u64 = 4 << 30;

#[derive(clap::Args)]
pub struct Args {
    /// Files and folders to import (folders are walked).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The site holding these instances (a configured code: RBD, RD3, R0D in the demo). Without it (and
    /// without --site-folders) they are quarantined for an admin: the site
    /// is never taken from the data.
    #[arg(long, conflicts_with = "site_folders")]
    site: Option<String>,
    /// Each PATH holds one folder per site, named by its code (as
    /// `radhub testdata` writes them); each is imported for its site.
    #[arg(long)]
    site_folders: bool,
    /// When a SOP Instance UID is held already with different content.
    #[arg(long, value_enum, default_value_t = DuplicatePolicy::Keep)]
    policy: DuplicatePolicy,
    /// Parallel workers (parsing and fsync overlap).
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Print one line per instance as it becomes durable: `imported<TAB>uid<TAB>path`.
    #[arg(long)]
    list: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE)]
    max_file_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub conflicts_kept: u64,
    pub replaced: u64,
    pub rejected: u64,
    pub failed: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub files_per_second: f64,
    pub mb_per_second: f64,
    /// (path, reason) of every file skipped or refused.
    pub rejections: Vec<(String, String)>,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let site = a.site.as_deref().map(super::site_arg).transpose()?;
    let hub = super::open_hub(data, a.policy)?;
    let s = if a.site_folders {
        let mut all = Summary::default();
        for p in &a.paths {
            all.add(import_site_folders(&hub, p, a.jobs, a.max_file_bytes)?);
        }
        all
    } else {
        if site.is_none() {
            eprintln!("no --site: these instances go to the {} site for an admin to review", crate::sites::QUARANTINE);
        }
        import(&hub, &a.paths, site, a.jobs, a.list, a.max_file_bytes)?
    };
    if a.json {
        super::print_json(&s)?;
    } else {
        println!(
            "imported {} ({:.1} MB) · duplicates {} · conflicts kept {} · replaced {} · rejected {} · failed {} · {:.1} s ({:.0} files/s, {:.1} MB/s)",
            s.imported,
            s.bytes as f64 / 1e6,
            s.duplicates,
            s.conflicts_kept,
            s.replaced,
            s.rejected,
            s.failed,
            s.seconds,
            s.files_per_second,
            s.mb_per_second
        );
    }
    Ok(if s.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Imports `root/<site code>/...` for each site whose folder exists.
pub fn import_site_folders(hub: &Hub, root: &Path, jobs: usize, max_file: u64) -> anyhow::Result<Summary> {
    let mut all = Summary::default();
    let mut found = false;
    for site in crate::sites::all() {
        let dir = root.join(&site.code);
        if dir.is_dir() {
            found = true;
            all.add(import(hub, &[dir], Some(&site.code), jobs, false, max_file)?);
        }
    }
    let codes: Vec<&str> = crate::sites::all().iter().map(|s| s.code.as_str()).collect();
    anyhow::ensure!(found, "{} holds no folder named after a site ({})", root.display(), codes.join(", "));
    Ok(all)
}

impl Summary {
    fn add(&mut self, o: Summary) {
        self.files += o.files;
        self.imported += o.imported;
        self.duplicates += o.duplicates;
        self.conflicts_kept += o.conflicts_kept;
        self.replaced += o.replaced;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.bytes += o.bytes;
        self.seconds += o.seconds;
        self.rejections.extend(o.rejections);
        let secs = self.seconds.max(1e-9);
        self.files_per_second = (self.imported + self.replaced) as f64 / secs;
        self.mb_per_second = self.bytes as f64 / 1e6 / secs;
    }
}

/// Every file under `paths` (a file stands for itself), by name.
pub(super) fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                let entry = entry.with_context(|| format!("walking {}", p.display()))?;
                if entry.file_type().is_file() {
                    files.push(entry.into_path());
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Imports every file under `paths` into `hub`.
pub fn import(hub: &Hub, paths: &[PathBuf], site: Option<&str>, jobs: usize, list: bool, max_file: u64) -> anyhow::Result<Summary> {
    let files = collect(paths)?;
    let bar = super::progress(files.len() as u64, "files");
    let start = Instant::now();
    let c: [AtomicU64; 7] = Default::default();
    let [imported, duplicates, kept, replaced, rejected, failed, bytes] = &c;
    let rejections = Mutex::new(Vec::new());
    let stdout = Mutex::new(std::io::stdout());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build().context("starting import workers")?;
    pool.install(|| {
        files.par_iter().for_each(|path| {
            let result = read_bounded(path, max_file).map_err(|r| (r, false)).and_then(|b| {
                // One file that trips a bug is that file's failure, not the import's.
                let ingested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hub.ingest(&b, site)));
                match ingested {
                    Ok(Ok((outcome, meta))) => Ok((outcome, meta, b.len() as u64)),
                    Ok(Err(e @ (IngestError::Rejected(_) | IngestError::Identity(_)))) => Err((e.to_string(), false)),
                    Ok(Err(e)) => Err((e.to_string(), true)),
                    Err(_) => Err(("internal error while reading this file".to_owned(), true)),
                }
            });
            match result {
                Ok((outcome, meta, n)) => {
                    let counter = match outcome {
                        Outcome::Stored => imported,
                        Outcome::Identical => duplicates,
                        Outcome::KeptExisting => kept,
                        Outcome::Replaced => replaced,
                    };
                    counter.fetch_add(1, Relaxed);
                    if matches!(outcome, Outcome::Stored | Outcome::Replaced) {
                        bytes.fetch_add(n, Relaxed);
                    }
                    if list {
                        let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = writeln!(out, "{}\t{}\t{}", label(outcome), meta.sop_uid, path.display());
                    }
                }
                Err((reason, internal)) => {
                    if internal {
                        failed.fetch_add(1, Relaxed);
                        tracing::error!(path = %path.display(), %reason, "import failed");
                    } else {
                        rejected.fetch_add(1, Relaxed);
                    }
                    bar.suspend(|| eprintln!("skipped {}: {reason}", path.display()));
                    rejections.lock().unwrap_or_else(|p| p.into_inner()).push((path.display().to_string(), reason));
                }
            }
            bar.inc(1);
        });
    });
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let mut rejections = rejections.into_inner().unwrap_or_else(|p| p.into_inner());
    rejections.sort();
    let b = bytes.load(Relaxed);
    let stored = imported.load(Relaxed) + replaced.load(Relaxed);
    Ok(Summary {
        files: files.len() as u64,
        imported: imported.load(Relaxed),
        duplicates: duplicates.load(Relaxed),
        conflicts_kept: kept.load(Relaxed),
        replaced: replaced.load(Relaxed),
        rejected: rejected.load(Relaxed),
        failed: failed.load(Relaxed),
        bytes: b,
        seconds: secs,
        files_per_second: stored as f64 / secs,
        mb_per_second: b as f64 / 1e6 / secs,
        rejections,
    })
}

fn label(o: Outcome) -> &'static str {
    match o {
        Outcome::Stored => "imported",
        Outcome::Identical => "duplicate",
        Outcome::KeptExisting => "conflict-kept",
        Outcome::Replaced => "replaced",
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?.len();
    if len > max {
        return Err(format!("{len} bytes, over the {max}-byte limit"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}
