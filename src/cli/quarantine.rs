//! `radhub quarantine list|file`: studies from senders with no configured
//! site (or naming another site's issuer), held apart from every trust's
//! records until an admin files each under the site that issued its IDs.

use std::path::Path;
use std::process::ExitCode;

use crate::index::StudyFilter;
use crate::ingest::DuplicatePolicy;
use crate::sites::QUARANTINE;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Quarantined studies, newest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// File a quarantined study under a site.
    File {
        study: String,
        #[arg(long)]
        site: String,
        /// Who filed it, for the log.
        #[arg(long, env = "USER", default_value = "admin")]
        by: String,
    },
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    match a.command {
        Command::List { limit, json } => {
            let f = StudyFilter { site: Some(QUARANTINE.to_owned()), ..Default::default() };
            let studies = hub.index.find_studies(&f).take(limit).collect::<Result<Vec<_>, _>>()?;
            if json {
                return super::print_json(&studies).map(|_| ExitCode::SUCCESS);
            }
            for s in studies {
                println!("{}\t{}\t{}\t{}\t{}\tinstances={}", s.date, s.patient, s.patient_name, s.description, s.uid, s.instances);
            }
        }
        Command::File { study, site, by } => {
            let site = super::site_arg(&site)?;
            let s = hub.index.study(&study)?.ok_or_else(|| anyhow::anyhow!("no study {study}"))?;
            anyhow::ensure!(s.site == QUARANTINE, "study {study} is held for {}, not in quarantine", s.site);
            let n = hub.refile_study(&study, site, &by)?;
            println!("filed {n} instances of {study} under {site}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
