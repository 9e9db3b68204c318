//! `radhub demo`: the hub's main job on embedded defaults: generate three
//! sites' studies, import them, show the linked record, then serve DICOM
//! (accepting any calling AE) until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;

use crate::index::PatientFilter;
use crate::ingest::DuplicatePolicy;
use crate::testdata::GenOptions;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    gen: super::testdata::GenArgs,
    /// DICOM listener address.
    #[arg(long, default_value = "127.0.0.1:11112")]
    dicom_bind: std::net::SocketAddr,
    /// Stop after importing instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    http: super::serve::HttpArgs,
}

const DEMO_PASSWORD: &str = "demo-password";

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let incoming = data.join("demo-incoming");
    let opts: GenOptions = (&a.gen).into();
    println!("generating demo studies for {} people across RBD, RD3 and R0D into {}", opts.patients, incoming.display());
    let g = super::testdata::generate(&incoming, &opts)?;
    println!("generated {} files ({:.1} MB)", g.files, g.bytes as f64 / 1e6);
    let hub = super::open_hub(data, DuplicatePolicy::Keep)?;
    let s = super::import::import_site_folders(&hub, &incoming, 8, u64::MAX)?;
    println!("imported {} instances ({:.1} MB) in {:.1} s, {} duplicates, {} rejected", s.imported, s.bytes as f64 / 1e6, s.seconds, s.duplicates, s.rejected);
    let (made, placeholders) = super::thumbs::make_all(&hub, data, false, 0)?;
    println!("{made} series thumbnails made ({placeholders} placeholders) in {}", data.join("thumbs").display());
    super::stats::print(&hub, false)?;
    // Show a few people whose records the NHS number links across sites.
    let mut shown = 0;
    let mut seen = std::collections::BTreeSet::new();
    for p in hub.index.find_patients(&PatientFilter::default()) {
        let Some(nhs) = p?.nhs_number else { continue };
        if !seen.insert(nhs.clone()) {
            continue;
        }
        let linked = hub.index.patients_by_nhs(&nhs)?;
        if linked.len() < 2 {
            continue;
        }
        let ids: Vec<String> = linked.iter().map(|k| k.to_string()).collect();
        println!("NHS {}: {}", nhs, ids.join(", "));
        shown += 1;
        if shown == 5 {
            break;
        }
    }
    if a.no_serve {
        println!("hub data in {}; try `radhub --data {} ls studies`", data.display(), data.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Demo users, one per role, with a password printed here: demo only.
    let app_db = crate::app_db::open(data)?;
    let auth = crate::auth::Auth::new(&app_db)?;
    for role in crate::auth::Role::ALL {
        let name = format!("demo-{}", role.as_str());
        if auth.get(&name)?.is_none() {
            auth.add_user(&name, role, DEMO_PASSWORD)?;
        }
    }
    let token = auth.new_token("demo-clinician", "demo")?;
    drop(auth);
    drop(app_db);
    let port = a.dicom_bind.port();
    let http = a.http.http_bind;
    println!("serving DICOM as RADHUB (accepting any calling AE) and HTTP on http://{http}; Ctrl-C stops.");
    println!("users demo-clinician, demo-radiologist, demo-admin; password {DEMO_PASSWORD}. Try:");
    println!("  findscu -aec RADHUB -S -k QueryRetrieveLevel=STUDY -k PatientName='*' -k StudyDescription 127.0.0.1 {port}");
    println!("  curl -H 'Authorization: Bearer {token}' 'http://{http}/dicom-web/studies?PatientName=*&limit=5'");
    println!("  curl -H 'Authorization: Bearer {token}' 'http://{http}/api/studies?limit=5'");
    // The simulated trusts' modalities send for their sites; anyone else's data is quarantined.
    let sites = crate::testdata::modality_sites();
    let mut titles: Vec<&str> = sites.keys().map(String::as_str).collect();
    titles.sort();
    println!("  modalities {} store for their sites; other calling AEs are accepted into quarantine", titles.join(", "));
    let config = pacs_gateway::Config { ae_title: "RADHUB".into(), bind: a.dicom_bind, accept_any: true, ..Default::default() };
    super::serve::listen(data, std::sync::Arc::new(hub), config, sites, &a.http)?;
    Ok(ExitCode::SUCCESS)
}
