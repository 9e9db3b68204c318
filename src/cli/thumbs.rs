//! `radhub thumbs [--rebuild]`: series and study thumbnails for the whole
//! hub, in parallel, with a progress bar.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;

use crate::index::StudyFilter;
use crate::ingest::{DuplicatePolicy, Hub};
use crate::thumbs::{Made, Thumbs};

#[derive(clap::Args)]
pub struct Args {
    /// Remake every thumbnail, not only the missing ones.
    #[arg(long)]
    rebuild: bool,
    /// Rendering threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let start = std::time::Instant::now();
    let (made, placeholders) = make_all(&hub, data, a.rebuild, a.jobs.unwrap_or(0))?;
    println!("{made} series thumbnails made, {placeholders} placeholders, in {:.1} s", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Makes the missing (or, with `rebuild`, all) series thumbnails in
/// parallel; returns (made, placeholders).
pub fn make_all(hub: &Hub, data: &Path, rebuild: bool, jobs: usize) -> anyhow::Result<(u64, u64)> {
    let thumbs = Thumbs::open(data)?;
    let mut work = Vec::new();
    for st in hub.index.find_studies(&StudyFilter { quarantine: true, ..Default::default() }) {
        let st = st?;
        for se in hub.index.series_of(&st.uid)? {
            // Series held only at their site get theirs when fetched.
            if se.local_instances > 0 && (rebuild || !thumbs.series_path(&se.uid).exists()) {
                work.push((st.uid.clone(), se.uid));
            }
        }
    }
    let bar = super::progress(work.len() as u64, "series");
    let (made, placeholders) = (AtomicU64::new(0), AtomicU64::new(0));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
    pool.install(|| {
        work.par_iter().for_each(|(study, series)| {
            // A series that trips a bug is reported, and the others still made.
            let made_one = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thumbs.make_series(hub, study, series)));
            match made_one.unwrap_or_else(|_| Ok(Made::Placeholder("internal error".into()))) {
                Ok(Made::Rendered) => {
                    made.fetch_add(1, Relaxed);
                }
                Ok(Made::Placeholder(why)) => {
                    placeholders.fetch_add(1, Relaxed);
                    bar.suspend(|| eprintln!("placeholder for series {series}: {why}"));
                }
                Err(crate::thumbs::ThumbError::NotHere(_)) => {}
                Err(e) => bar.suspend(|| eprintln!("series {series}: {e}")),
            }
            bar.inc(1);
        })
    });
    bar.finish_and_clear();
    Ok((made.load(Relaxed), placeholders.load(Relaxed)))
}
