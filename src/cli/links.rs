//! `radhub links conflicts|log|decide`: the NHS-number links between each
//! trust's patient records: the conflicts waiting for an admin, the log of
//! every change, and an admin's decision on one record.

use std::path::Path;
use std::process::ExitCode;

use crate::index::link::Decision;
use crate::index::model::PatientKey;
use crate::ingest::DuplicatePolicy;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Records whose NHS-number link waits for an admin, and why.
    Conflicts {
        #[arg(long)]
        json: bool,
    },
    /// Every change to a link, oldest first.
    Log {
        /// Only changes after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Decide a record's link: `link` (by its conflict's number, or
    /// --nhs), `unlink`, or `dismiss` its conflict. Logged under --by.
    Decide {
        /// Issuer of Patient ID of the record.
        issuer: String,
        patient_id: String,
        #[arg(value_enum)]
        decision: Decision,
        #[arg(long)]
        nhs: Option<String>,
        /// Who decided, for the log.
        #[arg(long, env = "USER", default_value = "admin")]
        by: String,
    },
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let ix = &hub.index;
    match a.command {
        Command::Conflicts { json } => {
            let all = ix.link_conflicts()?;
            if json {
                return super::print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            for c in &all {
                println!("{}\tNHS {}\t{}", c.patient, c.nhs_number, serde_json::to_string(&c.conflict)?);
            }
            if all.is_empty() {
                println!("no link conflicts");
            }
        }
        Command::Log { after, limit, json } => {
            let log = ix.link_log(after, limit)?;
            if json {
                return super::print_json(&log).map(|_| ExitCode::SUCCESS);
            }
            for e in log {
                println!("{}\t{}\t{:?}\t{}\tNHS {}\t{}\tby {}", e.seq, e.at_ms, e.action, e.patient, e.nhs_number, e.detail, e.by);
            }
        }
        Command::Decide { issuer, patient_id, decision, nhs, by } => {
            let p = ix.decide_link(&PatientKey { issuer, patient_id }, decision, nhs.as_deref(), &by)?;
            println!("{}: linked by {}", p.key, p.nhs_number.as_deref().unwrap_or("no NHS number"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
