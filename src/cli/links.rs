//! `radhub patients show|link|unlink|dismiss|conflicts|proposals|log|identity|undo`: each
//! trust's patient records and the NHS-number links between them: one
//! person's record across the sites, an admin's decisions (logged with who
//! and why), the conflicts waiting for one, the records that agree on
//! name, birth date and sex without an NHS number (proposed, never linked
//! by radhub), the log of every link change, and the identity log (merges,
//! changes of identifier and demographics from the sites' ADT), any entry
//! of which an admin can undo.

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

/// A record: Issuer of Patient ID and Patient ID.
#[derive(clap::Args)]
struct Record {
    issuer: String,
    patient_id: String,
    /// Who decided, for the log.
    #[arg(long, env = "USER", default_value = "admin")]
    by: String,
    /// Why, for the log (what was checked: the PAS, the patient, the referrer).
    #[arg(long)]
    why: String,
}

/// A stretch of a log.
#[derive(clap::Args)]
struct Page {
    /// Only changes after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// One person across the sites: by NHS number, or ISSUER/PATIENT_ID.
    Show {
        who: String,
        #[arg(long)]
        json: bool,
    },
    /// Link a record by an NHS number (its conflict's, or --nhs).
    Link {
        #[command(flatten)]
        record: Record,
        #[arg(long)]
        nhs: Option<String>,
    },
    /// Remove a record's link; its number is refused for it from then on.
    Unlink {
        #[command(flatten)]
        record: Record,
    },
    /// Leave a record as it is and refuse its conflict's number for it.
    Dismiss {
        #[command(flatten)]
        record: Record,
    },
    /// Records whose NHS-number link waits for an admin, and why.
    Conflicts {
        #[arg(long)]
        json: bool,
    },
    /// Records at different sites agreeing on name, birth date and sex with
    /// no NHS number linking them: for an admin to check and link by number.
    Proposals {
        #[arg(long)]
        json: bool,
    },
    /// Every change to a link, oldest first.
    Log(Page),
    /// Every change of patient identity (ADT merges, changes of identifier,
    /// demographics; admins' undos), oldest first.
    Identity(Page),
    /// Undo one identity change (by its sequence number in `identity`).
    Undo {
        seq: u64,
        #[arg(long, env = "USER", default_value = "admin")]
        by: String,
        #[arg(long)]
        why: String,
    },
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let ix = &hub.index;
    let decide = |r: Record, d: Decision, nhs: Option<String>| -> anyhow::Result<ExitCode> {
        anyhow::ensure!(!r.why.trim().is_empty(), "say why (--why): the log keeps it");
        let p = ix.decide_link(&PatientKey { issuer: r.issuer, patient_id: r.patient_id }, d, nhs.as_deref(), &r.by, &r.why)?;
        println!("{}: linked by {}", p.key, p.nhs_number.as_deref().unwrap_or("no NHS number"));
        Ok(ExitCode::SUCCESS)
    };
    match a.command {
        Command::Show { who, json } => {
            let keys = match who.split_once('/') {
                Some((issuer, id)) => {
                    let key = PatientKey { issuer: issuer.to_owned(), patient_id: id.to_owned() };
                    match ix.patient(&key)?.and_then(|p| p.nhs_number) {
                        Some(n) => ix.patients_by_nhs(&n)?,
                        None => vec![key],
                    }
                }
                None => {
                    let n = crate::nhs::normalise(&who).ok_or_else(|| anyhow::anyhow!("{who:?} is neither ISSUER/PATIENT_ID nor a valid NHS number"))?;
                    ix.patients_by_nhs(&n)?
                }
            };
            let mut records = Vec::new();
            let mut studies = Vec::new();
            for k in &keys {
                if let Some(p) = ix.patient(k)? {
                    records.push(p);
                }
                for uid in ix.studies_of_patient(k)? {
                    studies.extend(ix.study(&uid)?);
                }
            }
            anyhow::ensure!(!records.is_empty(), "no patient {who}");
            studies.sort_by(|a, b| (&b.date, &b.time).cmp(&(&a.date, &a.time)));
            if json {
                return super::print_json(&serde_json::json!({"records": records, "studies": studies})).map(|_| ExitCode::SUCCESS);
            }
            for p in &records {
                println!("{}\t{}\t{}\t{}\tNHS {}", p.key, p.name, p.birth_date, p.sex, p.nhs_number.as_deref().unwrap_or("-"));
            }
            for s in &studies {
                let held = if s.is_local() {
                    "here".to_owned()
                } else {
                    format!("at {} ({} of {} here)", s.held_at.iter().cloned().collect::<Vec<_>>().join(","), s.local_instances, s.instances)
                };
                println!("  {}\t{}\t{}\t{}\t{}\t{}", s.date, s.site, s.modalities.iter().cloned().collect::<Vec<_>>().join(","), s.description, held, s.uid);
            }
        }
        Command::Link { record, nhs } => return decide(record, Decision::Link, nhs),
        Command::Unlink { record } => return decide(record, Decision::Unlink, None),
        Command::Dismiss { record } => return decide(record, Decision::Dismiss, None),
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
        Command::Proposals { json } => {
            let all = crate::index::link::proposals(ix.as_ref())?;
            if json {
                return super::print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            for g in &all {
                let keys: Vec<String> = g.records.iter().map(|k| k.to_string()).collect();
                println!("{}\t{}\t{}\t{}", g.name, g.birth_date, g.sex, keys.join("  "));
            }
            if all.is_empty() {
                println!("no proposals");
            }
        }
        Command::Log(Page { after, limit, json }) => {
            let log = ix.link_log(after, limit)?;
            if json {
                return super::print_json(&log).map(|_| ExitCode::SUCCESS);
            }
            for e in log {
                println!("{}\t{}\t{:?}\t{}\tNHS {}\t{}\tby {}", e.seq, e.at_ms, e.action, e.patient, e.nhs_number, e.detail, e.by);
            }
        }
        Command::Identity(Page { after, limit, json }) => {
            let log = ix.identity_log(after, limit)?;
            if json {
                return super::print_json(&log).map(|_| ExitCode::SUCCESS);
            }
            for e in log {
                let undoes = e.undoes.map(|u| format!(" (undoes {u})")).unwrap_or_default();
                println!("{}\t{}\t{}{undoes}\tby {}", e.seq, crate::dates::iso_ms(e.at_ms), e.detail, e.by);
            }
        }
        Command::Undo { seq, by, why } => {
            anyhow::ensure!(!why.trim().is_empty(), "say why (--why): the log keeps it");
            let e = ix.undo_identity(seq, &by, &why)?;
            println!("{}: {}", e.seq, e.detail);
        }
    }
    Ok(ExitCode::SUCCESS)
}
