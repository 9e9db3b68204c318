//! `radhub thumbs [--rebuild]`: series and study thumbnails for the whole
//! hub, in parallel, with a progress bar.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;

use crate::index::StudyFilter;
use crate::ingest::DuplicatePolicy;
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
    let thumbs = Thumbs::open(data)?;
    let mut work = Vec::new();
    for st in hub.index.find_studies(&StudyFilter::default())? {
        for se in hub.index.series_of(&st.uid)? {
            if a.rebuild || !thumbs.series_path(&se.uid).exists() {
                work.push((st.uid.clone(), se.uid));
            }
        }
    }
    let bar = super::progress(work.len() as u64, "series");
    let (made, placeholders) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = std::time::Instant::now();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.jobs.unwrap_or(0)).build()?;
    pool.install(|| {
        work.par_iter().for_each(|(study, series)| {
            match thumbs.make_series(&hub, study, series) {
                Ok(Made::Rendered) => {
                    made.fetch_add(1, Relaxed);
                }
                Ok(Made::Placeholder(why)) => {
                    placeholders.fetch_add(1, Relaxed);
                    bar.suspend(|| eprintln!("placeholder for series {series}: {why}"));
                }
                Err(e) => bar.suspend(|| eprintln!("series {series}: {e}")),
            }
            bar.inc(1);
        })
    });
    bar.finish_and_clear();
    println!("{} series thumbnails made, {} placeholders, in {:.1} s", made.load(Relaxed), placeholders.load(Relaxed), start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
