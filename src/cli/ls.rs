//! `radhub ls patients|studies|series|instances` with filters.

use std::path::Path;
use std::process::ExitCode;

use crate::index::matching::DateRange;
use crate::index::{PatientFilter, StudyFilter};
use crate::ingest::DuplicatePolicy;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Level {
    Patients,
    Studies,
    Series,
    Instances,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    level: Level,
    /// Patient ID (wildcards * and ? allowed).
    #[arg(long)]
    patient_id: Option<String>,
    /// Issuer of Patient ID.
    #[arg(long)]
    issuer: Option<String>,
    /// Patient name, case-insensitive (e.g. 'smith*').
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    accession: Option<String>,
    /// Study date or range: YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD, YYYYMMDD-.
    #[arg(long, value_parser = DateRange::parse)]
    date: Option<DateRange>,
    /// Modality in study (series: the series' modality).
    #[arg(long)]
    modality: Option<String>,
    /// Site code holding the data (RBD, RD3, R0D, QUARANTINE).
    #[arg(long)]
    site: Option<String>,
    /// NHS number (patients).
    #[arg(long)]
    nhs: Option<String>,
    /// Study Instance UID.
    #[arg(long)]
    study: Option<String>,
    /// Series Instance UID (instances).
    #[arg(long)]
    series: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let ix = &hub.index;
    let limit = a.limit.unwrap_or(usize::MAX);
    if let Level::Patients = a.level {
        let f = PatientFilter { patient_id: a.patient_id, issuer: a.issuer, patient_name: a.name, nhs_number: a.nhs, site: a.site, quarantine: true };
        let ps = ix.find_patients(&f).take(limit).collect::<Result<Vec<_>, _>>()?;
        if a.json {
            super::print_json(&ps)?;
        } else {
            for p in ps {
                let sites: Vec<&str> = p.sites.keys().map(String::as_str).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\tstudies={}",
                    sites.join(","),
                    p.key.issuer,
                    p.key.patient_id,
                    p.name,
                    p.birth_date,
                    p.sex,
                    p.nhs_number.unwrap_or_default(),
                    p.studies
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let f = StudyFilter {
        study_uids: a.study.into_iter().collect(),
        patient_id: a.patient_id,
        issuer: a.issuer,
        patient_name: a.name,
        accession: a.accession,
        date: a.date,
        modality: if matches!(a.level, Level::Studies) { a.modality.clone() } else { None },
        site: a.site,
        description: None,
        quarantine: true,
    };
    let studies = ix.find_studies(&f);
    match a.level {
        Level::Studies => {
            let studies = studies.take(limit).collect::<Result<Vec<_>, _>>()?;
            if a.json {
                super::print_json(&studies)?;
            } else {
                for s in studies {
                    let mods: Vec<_> = s.modalities.iter().map(String::as_str).collect();
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\tseries={} instances={}",
                        s.site,
                        s.date,
                        s.accession_number,
                        s.patient.patient_id,
                        s.patient_name,
                        mods.join("\\"),
                        s.description,
                        s.uid,
                        s.series,
                        s.instances
                    );
                }
            }
        }
        Level::Series => {
            let mut out = Vec::new();
            for s in studies {
                let s = s?;
                out.extend(
                    ix.series_of(&s.uid)?.into_iter().filter(|r| a.modality.as_deref().is_none_or(|m| crate::index::matching::wildcard(m, &r.modality))),
                );
                if out.len() >= limit {
                    break;
                }
            }
            out.truncate(limit);
            if a.json {
                super::print_json(&out)?;
            } else {
                let thumbs = crate::thumbs::Thumbs::open(data).ok();
                for r in out {
                    // An undecodable series says why, where its thumbnail would be.
                    let why = thumbs.as_ref().and_then(|t| t.failure(&r.uid)).map(|w| format!("\tthumbnail placeholder: {w}")).unwrap_or_default();
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\tinstances={}{why}",
                        r.site,
                        r.modality,
                        r.number.map(|n| n.to_string()).unwrap_or_default(),
                        r.description,
                        r.body_part_examined,
                        r.uid,
                        r.instances
                    );
                }
            }
        }
        Level::Instances => {
            let mut out = Vec::new();
            for s in studies {
                out.extend(ix.instances_of(&s?.uid, a.series.as_deref())?);
                if out.len() >= limit {
                    break;
                }
            }
            out.truncate(limit);
            if a.json {
                super::print_json(&out)?;
            } else {
                for i in out {
                    println!(
                        "{}\t{}\t{}\t{}\t{}x{}x{}\t{}\t{}",
                        i.site,
                        i.number.map(|n| n.to_string()).unwrap_or_default(),
                        i.sop_class_uid,
                        i.transfer_syntax,
                        i.columns,
                        i.rows,
                        i.frames,
                        i.file_size,
                        i.sop_uid
                    );
                }
            }
        }
        Level::Patients => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
