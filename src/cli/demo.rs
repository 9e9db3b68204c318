//! `radhub demo`: the hub's main job on embedded defaults. Three simulated
//! site PACS (each a `radhub serve` of its own, holding one trust's
//! generated studies) are started beside the hub, which harvests them into
//! one index, links each person's records by NHS number and fetches a study
//! from its site when someone opens it. Once it is serving, each site's
//! PACS sends it today's new examinations, and the sites' RIS order some of
//! them over HL7: the county worklist. Serves DICOM and HTTP until Ctrl-C.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, ExitCode, Stdio};

use anyhow::Context;

use crate::ingest::DuplicatePolicy;
use crate::sites::{Retrieve, Site};
use crate::testdata::GenOptions;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    gen: super::testdata::GenArgs,
    /// The hub's DICOM listener; the simulated PACS listen on the next three ports.
    #[arg(long, default_value = "127.0.0.1:11112")]
    dicom_bind: std::net::SocketAddr,
    /// Stop once the sites are harvested instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    http: super::serve::HttpArgs,
    #[command(flatten)]
    federation: super::serve::FederationArgs,
}

const DEMO_PASSWORD: &str = "demo-password";

/// A simulated site PACS: a child `radhub serve`, stopped with the demo.
struct SitePacs {
    child: Child,
}

impl Drop for SitePacs {
    fn drop(&mut self) {
        // SIGTERM: it finishes what it is doing and exits.
        // SAFETY: kill only sends a signal to the child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// The demo's sites: the three Dorset trusts, each with its simulated PACS
/// on the ports after the hub's (Poole's retrieved by C-GET, the others by C-MOVE).
fn demo_sites(hub_port: u16) -> Vec<Site> {
    crate::sites::defaults()
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.ae_title = Some(format!("{}_PACS", s.code));
            s.host = Some("127.0.0.1".into());
            s.port = Some(hub_port + 1 + i as u16);
            s.retrieve = if s.code == "RD3" { Retrieve::CGet } else { Retrieve::CMove };
            s
        })
        .collect()
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub_port = a.dicom_bind.port();
    crate::sites::configure(demo_sites(hub_port)).context("the demo configures its own sites: leave out --sites")?;
    std::fs::create_dir_all(data)?;
    let opts: GenOptions = (&a.gen).into();
    let pacs_root = data.join("site-pacs");
    let mut children = Vec::new();
    for site in crate::sites::all() {
        let dir = pacs_root.join(&site.code);
        fill_site(data, &dir, site, &opts)?;
        children.push(start_site(&dir, site, a.dicom_bind)?);
    }
    let hub = std::sync::Arc::new(super::open_hub(data, DuplicatePolicy::Keep)?);
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
    let rad_token = auth.new_token("demo-radiologist", "demo")?;
    drop(auth);
    drop(app_db);
    if a.no_serve {
        // Harvest once here and show the result.
        drop(hub);
        let sync = super::sites::SyncArgs::all(a.federation.clone());
        let code = super::sites::sync(data, sync)?;
        super::stats::print(&super::open_hub(data, DuplicatePolicy::Keep)?, false)?;
        drop(children);
        return Ok(code);
    }
    let mut http_args = a.http.clone();
    // The sites' RIS order today's examinations here.
    let hl7 = *http_args.hl7_bind.get_or_insert(std::net::SocketAddr::new(a.dicom_bind.ip(), a.dicom_bind.port().saturating_add(10)));
    let http = http_args.http_bind;
    let d = data.display();
    println!("serving the hub: DICOM as RADHUB on {} and HTTP on http://{http}; Ctrl-C stops it and the three site PACS.", a.dicom_bind);
    println!("the sites' PACS (simulated, each a radhub of its own) are harvested now and every 5 minutes:");
    for s in crate::sites::all() {
        let (ae, host, port) = s.pacs().unwrap_or_default();
        println!("  {} {}: {ae}@{host}:{port}, retrieved by {}", s.code, s.name, if s.retrieve == Retrieve::CGet { "C-GET" } else { "C-MOVE" });
    }
    println!("users demo-clinician, demo-radiologist, demo-admin; password {DEMO_PASSWORD}.");
    println!("open the viewer at http://{http}/viewer/ (the county worklist; a patient: /viewer/?nhs=NHS_NUMBER; a study: /viewer/?study=UID)");
    println!("or try, in another terminal:");
    println!("  target/release/radhub --data {d} sites list                 # each site, its last harvest");
    println!("  target/release/radhub --data {d} sync --full                # harvest now, with progress");
    println!("  target/release/radhub --data {d} patients proposals         # records that may be one person");
    println!("  curl -H 'Authorization: Bearer {token}' 'http://{http}/api/patients?limit=5'   # people linked across sites");
    println!("  curl -H 'Authorization: Bearer {token}' 'http://{http}/api/patients/NHS_NUMBER'   # one record, every site's studies");
    println!("  curl -H 'Authorization: Bearer {token}' -o study.multipart 'http://{http}/dicom-web/studies/STUDY_UID'   # fetched from its site on demand");
    println!("  curl -H 'Authorization: Bearer {rad_token}' 'http://{http}/api/worklist?priority=S'   # the county worklist: today's studies, stat first");
    println!("RIS orders (HL7 v2 over MLLP) are taken on {hl7}.");
    let today = GenOptions { seed: opts.seed ^ 0x7ad4, patients: 3, studies_per_patient: 1, ..opts.clone() };
    let (today_dir, dicom) = (data.join("demo-today"), a.dicom_bind);
    std::thread::spawn(move || match send_today(&today_dir, &today, dicom, hl7) {
        Ok((n, ordered)) => {
            println!("today: the sites' PACS sent {n} new instances and their RIS ordered {ordered} of the studies stat: on the county worklist")
        }
        Err(e) => eprintln!("today's examinations were not sent: {e:#}"),
    });
    let sites = crate::testdata::modality_sites();
    let config = pacs_gateway::Config { ae_title: "RADHUB".into(), bind: a.dicom_bind, accept_any: true, ..Default::default() };
    let mut peers: Vec<pacs_gateway::KnownAe> = Vec::new();
    for s in crate::sites::all() {
        if let Some((title, host, port)) = s.pacs() {
            peers.push(pacs_gateway::KnownAe { title: title.to_owned(), host: host.to_owned(), port });
        }
    }
    let mut all_senders = crate::sites::senders();
    all_senders.extend(sites);
    let config = pacs_gateway::Config { known_aes: peers, ..config };
    let served = super::serve::listen(data, hub, config, None, all_senders, &http_args, &a.federation);
    drop(children);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Today's examinations: a few new studies per site, sent to the hub by
/// the site's PACS once the hub is listening, and for the first of each
/// site's a stat order from its RIS. Returns (instances sent, orders).
fn send_today(dir: &Path, opts: &GenOptions, hub: std::net::SocketAddr, hl7: std::net::SocketAddr) -> anyhow::Result<(usize, usize)> {
    use pacs_gateway::scu::{self, Peer, ScuConfig, StoreAssociation};
    if !dir.is_dir() {
        super::testdata::generate(dir, opts)?;
    }
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(hub).is_err() {
        anyhow::ensure!(t.elapsed() < std::time::Duration::from_secs(60), "the hub is not listening on {hub}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut sent, mut ordered) = (0, 0);
    for site in crate::sites::all() {
        let Some((ae, _, _)) = site.pacs() else { continue };
        let folder = dir.join(&site.code);
        if !folder.is_dir() {
            continue;
        }
        let files = super::import::collect(&[folder])?.iter().map(std::fs::read).collect::<Result<Vec<_>, _>>()?;
        if files.is_empty() {
            continue;
        }
        let refs = files.iter().map(|b| scu::describe(b)).collect::<Result<Vec<_>, _>>()?;
        let cfg = ScuConfig { calling_ae: ae.to_owned(), ..Default::default() };
        let peer = Peer::new("RADHUB", hub.ip().to_string(), hub.port());
        rt.block_on(async {
            let mut a = StoreAssociation::connect(&cfg, &peer, &scu::classes_of(&refs)).await?;
            for b in &files {
                a.store(b).await?;
            }
            a.release().await?;
            anyhow::Ok(())
        })?;
        sent += files.len();
        let first = crate::dicom::extract::read_meta(&files[0])?;
        if !first.accession_number.is_empty() {
            // The hub's ACK (AA) is checked: an order refused is not counted.
            let sent = rt.block_on(crate::delivery::hl7::send(&hl7.to_string(), &order(site, &first), std::time::Duration::from_secs(10)));
            match sent {
                Ok(()) => ordered += 1,
                Err(e) => eprintln!("{}'s order was not taken: {e}", site.code),
            }
        }
    }
    Ok((sent, ordered))
}

/// A stat ORM^O01 from the site's RIS for the study `m` is of.
fn order(site: &Site, m: &crate::index::model::InstanceMeta) -> String {
    crate::orders::orm(&crate::orders::OrmMessage {
        site: &site.code,
        control_id: &format!("DEMO{}", m.accession_number),
        order_control: "NW",
        patient_id: &m.patient_id,
        patient_name: &m.patient_name,
        accession: &m.accession_number,
        procedure: &format!("^{}", m.study_description),
        priority: "S",
        indication: "Collapse, ?stroke",
    })
}

/// Generates and imports one site's studies into its simulated PACS, once.
fn fill_site(data: &Path, dir: &Path, site: &Site, opts: &GenOptions) -> anyhow::Result<()> {
    let done = dir.join("filled");
    if done.exists() {
        return Ok(());
    }
    let incoming = data.join("demo-incoming");
    if !incoming.join(&site.code).is_dir() {
        println!("generating demo studies for {} people across RBD, RD3 and R0D into {}", opts.patients, incoming.display());
        let g = super::testdata::generate(&incoming, opts)?;
        println!("generated {} files ({:.1} MB)", g.files, g.bytes as f64 / 1e6);
    }
    let hub = super::open_hub(dir, DuplicatePolicy::Keep)?;
    let s = super::import::import(&hub, &[incoming.join(&site.code)], Some(&site.code), 8, false, u64::MAX)?;
    println!("{} {}: its PACS holds {} instances ({:.1} MB)", site.code, site.name, s.imported + s.duplicates, s.bytes as f64 / 1e6);
    drop(hub);
    std::fs::write(done, b"")?;
    Ok(())
}

/// Starts a site's simulated PACS: `radhub serve` over its own data,
/// answering the hub's C-FIND, C-MOVE (to the hub) and C-GET.
fn start_site(dir: &Path, site: &Site, hub: std::net::SocketAddr) -> anyhow::Result<SitePacs> {
    let (ae, host, port) = site.pacs().context("a demo site has a PACS")?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.env("RADHUB_LOG", "error")
        .arg("--data")
        .arg(dir)
        .args(["serve", "--ae-title", ae, "--dicom-bind", &format!("{host}:{port}"), "--http-bind", "127.0.0.1:0", "--accept-any"])
        .args(["--peer", &format!("RADHUB@{}:{}", hub.ip(), hub.port()), "--sync-interval", "0", "--priors", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl in the child before exec: it is stopped if the demo dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {}'s simulated PACS", site.code))?;
    let out = child.stdout.take().context("its output")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    let p = SitePacs { child };
    anyhow::ensure!(line.contains("DICOM listening"), "{}'s simulated PACS did not start: {line}", site.code);
    Ok(p)
}
