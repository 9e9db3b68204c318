//! `radhub verify [--repair] [--deep]`.

use std::path::Path;
use std::process::ExitCode;

use crate::ingest::DuplicatePolicy;

#[derive(clap::Args)]
pub struct Args {
    /// Mend what is found: index orphan files, drop entries without files.
    #[arg(long)]
    repair: bool,
    /// Also hash every file against the index (reads everything).
    #[arg(long)]
    deep: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let bar = super::progress(hub.index.counts()?.instances, "files");
    let r = crate::verify::verify(&hub, a.deep, a.repair, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if a.json {
        super::print_json(&r)?;
    } else {
        println!(
            "{} files, {} index entries: {} orphan files, {} entries without file, {} mismatched, counters {}{}",
            r.files,
            r.indexed,
            r.orphan_files.len(),
            r.missing_files.len(),
            r.mismatched.len(),
            if r.counters_agree { "agree" } else { "disagree" },
            if a.repair { format!(", {} repaired", r.repaired) } else { String::new() }
        );
        for k in &r.orphan_files {
            println!("orphan file {k}");
        }
        for u in &r.missing_files {
            println!("missing file for {u}");
        }
        for u in &r.mismatched {
            println!("mismatched {u}");
        }
        for (k, why) in &r.unreadable {
            println!("unreadable {k}: {why}");
        }
        for u in &r.nonconformant_uids {
            println!("held with a non-conformant UID (PS3.5 9.1): {u:?}");
        }
        println!(
            "{}",
            if r.consistent() {
                "consistent"
            } else if a.repair {
                "repaired: run verify again to confirm"
            } else {
                "INCONSISTENT"
            }
        );
    }
    Ok(if r.consistent() || a.repair { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
