//! `radhub testdata --out DIR`: synthetic studies from the three trusts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::testdata::{GenOptions, Plan, WriteSummary};

#[derive(clap::Args)]
pub struct Args {
    /// Folder to write into (one subfolder per site).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(clap::Args, Clone)]
pub struct GenArgs {
    #[arg(long, default_value_t = GenOptions::default().seed)]
    seed: u64,
    /// Distinct people; many are seen at two or three sites.
    #[arg(long, default_value_t = GenOptions::default().patients)]
    patients: usize,
    #[arg(long, default_value_t = GenOptions::default().studies_per_patient)]
    studies_per_patient: usize,
    /// Cap on CT/MR images per series.
    #[arg(long, default_value_t = GenOptions::default().max_slices)]
    max_slices: usize,
    /// CT matrix size (rows = columns).
    #[arg(long, default_value_t = GenOptions::default().ct_size)]
    ct_size: u16,
}

impl From<&GenArgs> for GenOptions {
    fn from(a: &GenArgs) -> Self {
        GenOptions { seed: a.seed, patients: a.patients, studies_per_patient: a.studies_per_patient, max_slices: a.max_slices, ct_size: a.ct_size }
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let s = generate(&a.out, &(&a.gen).into())?;
    println!("wrote {} files ({:.1} MB) to {}", s.files, s.bytes as f64 / 1e6, a.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn generate(out: &Path, opts: &GenOptions) -> anyhow::Result<WriteSummary> {
    let plan = Plan::new(opts);
    let bar = super::progress(plan.total_instances(), "files");
    let start = Instant::now();
    let s = plan.write_all(out, &|_| bar.inc(1)).with_context(|| format!("writing test data to {}", out.display()))?;
    bar.finish_and_clear();
    tracing::info!(files = s.files, seconds = start.elapsed().as_secs_f64(), "test data written");
    Ok(s)
}
