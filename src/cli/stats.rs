//! `radhub stats`: counts overall and per site.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::index::Counts;
use crate::ingest::{DuplicatePolicy, Hub};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Stats {
    schema_version: u32,
    total: Counts,
    sites: Vec<(String, Counts)>,
    /// NHS numbers whose patient is held at more than one site.
    linked_patients: u64,
    /// NHS-number link conflicts waiting for an admin (`radhub links`).
    link_conflicts: u64,
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    print(&hub, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print(hub: &Hub, json: bool) -> anyhow::Result<()> {
    let total = hub.index.counts()?;
    let sites = hub.index.counts_by_site()?;
    let mut by_nhs = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for p in hub.index.find_patients(&crate::index::PatientFilter { quarantine: true, ..Default::default() }) {
        let p = p?;
        if let Some(n) = p.nhs_number {
            by_nhs.entry(n).or_default().extend(p.sites.into_keys());
        }
    }
    let linked_patients = by_nhs.values().filter(|s| s.len() > 1).count() as u64;
    let link_conflicts = hub.index.link_conflicts()?.len() as u64;
    let s = Stats { schema_version: hub.index.schema_version(), total, sites, linked_patients, link_conflicts };
    if json {
        return super::print_json(&s);
    }
    println!("{:<10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12}", "site", "patients", "studies", "series", "instances", "held here", "MB");
    let row = |name: &str, c: &Counts| {
        println!("{:<10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12.1}", name, c.patients, c.studies, c.series, c.instances, c.local_instances, c.bytes as f64 / 1e6)
    };
    for (site, c) in &s.sites {
        row(site, c);
    }
    row("all", &s.total);
    println!("patients linked across sites by NHS number: {}", s.linked_patients);
    if s.link_conflicts > 0 {
        println!("NHS-number link conflicts for an admin: {} (radhub links conflicts)", s.link_conflicts);
    }
    Ok(())
}
