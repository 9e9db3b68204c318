//! `radhub serve`: the hub's DICOM listener and HTTP API in one process,
//! until SIGTERM or Ctrl-C; in-flight C-STOREs and requests finish first.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pacs_gateway::{Config, Gateway, KnownAe};

use crate::dimse::HubHandler;
use crate::http::{AppState, Limits};
use crate::ingest::{DuplicatePolicy, Hub};

#[derive(clap::Args)]
pub struct Args {
    /// radhub's own AE title.
    #[arg(long, default_value = "RADHUB")]
    ae_title: String,
    /// Address of the DICOM listener.
    #[arg(long, default_value = "127.0.0.1:11112")]
    dicom_bind: SocketAddr,
    /// A known peer: TITLE@HOST:PORT, allowed to connect from HOST and a
    /// C-MOVE destination; `=SITE` appended names the site whose data it sends
    /// (e.g. CT01@10.1.2.9:104=RBD). Repeat for each peer. Each site's PACS
    /// in the sites file is a peer already.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Accept any calling AE from any address (demos only).
    #[arg(long)]
    accept_any: bool,
    #[arg(long, default_value_t = 32)]
    max_associations: usize,
    /// Seconds a new connection has to send its association request.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Connections still sending their association request, overall and
    /// from one address (a site behind NAT may need more); more are closed.
    #[arg(long, default_value_t = 128)]
    max_pending: usize,
    #[arg(long, default_value_t = 16)]
    max_pending_per_address: usize,
    /// Seconds a peer may take nothing radhub writes before its association is aborted.
    #[arg(long, default_value_t = 60)]
    write_timeout: u64,
    /// Seconds a peer has to answer a request radhub sent it (a C-STORE sub-operation).
    #[arg(long, default_value_t = 60)]
    dimse_timeout: u64,
    /// Most C-FIND matches sent for one request (then A700: narrow the query).
    #[arg(long, default_value_t = 10_000)]
    max_find_matches: usize,
    /// Send storage commitment reports on a new association to the
    /// requestor (its address from `--peer` or its site), never on its own
    /// (for modalities that release at once and listen as SCP). Reports a
    /// requestor does not take on its association go there anyway.
    #[arg(long)]
    commitment_on_new_association: bool,
    /// DICOM over TLS on the listener (PS3.15 B.1, BCP 195): this PEM
    /// certificate chain (read again on SIGHUP); every association then begins with a handshake.
    #[arg(long, requires = "dicom_tls_key")]
    dicom_tls_cert: Option<PathBuf>,
    /// The PEM private key of `--dicom-tls-cert`.
    #[arg(long, requires = "dicom_tls_cert")]
    dicom_tls_key: Option<PathBuf>,
    /// Require DICOM peers to present a certificate issued by this CA (PEM).
    #[arg(long, requires = "dicom_tls_cert")]
    dicom_tls_ca: Option<PathBuf>,
    /// Largest data set one C-STORE may bring, in bytes (then A700). Data
    /// sets are written to disk as they arrive: this bounds disk, not memory.
    #[arg(long, default_value_t = 4 << 30)]
    max_instance_bytes: u64,
    /// Largest PDU accepted, in bytes.
    #[arg(long, default_value_t = 256 << 10)]
    max_pdu: u32,
    /// Seconds allowed to complete association negotiation (ARTIM).
    #[arg(long, default_value_t = 30)]
    artim_timeout: u64,
    /// Seconds an association may stay silent before it is aborted.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// When a SOP Instance UID arrives again with different content.
    #[arg(long, value_enum, default_value_t = DuplicatePolicy::Keep)]
    policy: DuplicatePolicy,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    federation: FederationArgs,
}

/// How radhub harvests and fetches from the sites' PACS (`--sites`).
#[derive(clap::Args, Clone)]
pub struct FederationArgs {
    /// Seconds between quick harvests of each site's PACS (0: only when asked).
    #[arg(long, default_value_t = 300)]
    pub sync_interval: u64,
    /// Hours between full harvests (every date, back to the oldest study).
    #[arg(long, default_value_t = 24)]
    pub full_sync_hours: u64,
    /// C-FINDs a harvest has with one site at once.
    #[arg(long, default_value_t = 4)]
    pub harvest_per_site: usize,
    /// Seconds to connect to a site's PACS; also each message awaited from it is given 6×.
    #[arg(long, default_value_t = 5)]
    pub site_timeout: u64,
    /// Seconds a request waits for a study being fetched from its site.
    #[arg(long, default_value_t = 120)]
    pub fetch_wait: u64,
    /// Retrieves one fetch has with its site at once (a long series is
    /// split among them by SOP Instance UID; 1: one retrieve per fetch).
    #[arg(long, default_value_t = 3)]
    pub fetch_associations: usize,
    /// Priors fetched ahead when a recent study arrives for a patient (0: none).
    #[arg(long, default_value_t = 3)]
    pub priors: usize,
}

impl FederationArgs {
    pub fn options(&self) -> crate::federation::Options {
        crate::federation::Options {
            interval: (self.sync_interval > 0).then(|| std::time::Duration::from_secs(self.sync_interval)),
            full_every: std::time::Duration::from_secs(self.full_sync_hours.max(1) * 3600),
            per_site: self.harvest_per_site.max(1),
            connect_timeout: std::time::Duration::from_secs(self.site_timeout.max(1)),
            dimse_timeout: std::time::Duration::from_secs(self.site_timeout.max(1) * 6),
            fetch_wait: std::time::Duration::from_secs(self.fetch_wait.max(1)),
            fetch_associations: self.fetch_associations.max(1),
            priors: self.priors,
            ..crate::federation::Options::default()
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP API (DICOMweb, radhub's JSON, the viewer).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_bind: SocketAddr,
    /// Folder of the viewer's static files.
    #[arg(long, default_value = "viewer-wasm/www")]
    pub viewer_dir: PathBuf,
    /// Largest STOW-RS request body, in bytes (streamed to disk as it arrives).
    #[arg(long, default_value_t = 4 << 30)]
    pub max_body: usize,
    /// Site holding instances stored over STOW-RS; without it they are
    /// quarantined for an admin (the site is never taken from the data).
    #[arg(long)]
    pub stow_site: Option<String>,
    /// Most HTTP connections served at once (more wait).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most HTTP connections from one address (more are closed); behind a
    /// reverse proxy, raise it to the proxy's own limit.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Seconds a client has to send a request's headers; also how long an
    /// idle keep-alive connection is kept.
    #[arg(long, default_value_t = 20)]
    pub http_header_timeout: u64,
    /// Address of the HL7 v2 listener (MLLP) for the sites' RIS orders
    /// (ORM^O01, OMI^O23); none unless given.
    #[arg(long)]
    pub hl7_bind: Option<SocketAddr>,
    /// Seconds a critical finding may wait to be recorded as communicated
    /// before it escalates (listed for admins).
    #[arg(long, default_value_t = 1800)]
    pub escalate_critical: u64,
    /// The same for an urgent finding.
    #[arg(long, default_value_t = 86_400)]
    pub escalate_urgent: u64,
    /// The same for an unexpected significant finding.
    #[arg(long, default_value_t = 604_800)]
    pub escalate_unexpected: u64,
    /// Seconds a radiologist's claim on a study lasts unless renewed (each
    /// save of the draft renews it).
    #[arg(long, default_value_t = 1800)]
    pub claim_lease: u64,
    /// WADO-RS retrieves one user may have streaming at once.
    #[arg(long, default_value_t = 8)]
    pub retrieves_per_user: usize,
    /// Seconds an HTTP client may take nothing radhub sends before its
    /// connection is cut.
    #[arg(long, default_value_t = 60)]
    pub http_send_timeout: u64,
    /// The URL clients reach the HTTP API at, for the absolute URLs in
    /// DICOMweb answers (default: http:// and the bound address).
    #[arg(long)]
    pub public_url: Option<String>,
    /// An origin ("https://viewer.example.nhs.uk") whose pages may call the
    /// API with a bearer token (CORS); repeat for more. Cookies are never
    /// accepted from other origins.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Serve the HTTP API and viewer over HTTPS only, with this PEM
    /// certificate chain (read again on SIGHUP); plain HTTP is refused.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert` (read again on SIGHUP).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// An origin as browsers send it: scheme, host and port, nothing more.
fn cors_origin(o: &str) -> anyhow::Result<String> {
    let o = o.trim_end_matches('/');
    let ok = o.split_once("://").is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']));
    anyhow::ensure!(ok, "--cors-origin {o:?}: an origin is scheme://host[:port], as a browser sends it");
    Ok(o.to_owned())
}

fn parse_peer(s: &str) -> anyhow::Result<(KnownAe, Option<String>)> {
    let (ae, site) = match s.rsplit_once('=') {
        Some((ae, site)) => (ae, Some(crate::sites::known(site).map_err(anyhow::Error::msg)?.to_owned())),
        None => (s, None),
    };
    Ok((KnownAe::parse(ae).map_err(anyhow::Error::msg)?, site))
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = Arc::new(super::open_hub(data, a.policy)?);
    let mut known = Vec::new();
    // Each site's PACS is a peer storing for its site, and its other
    // configured senders (modalities) store for it too.
    let mut sites: HashMap<String, String> = crate::sites::senders();
    for s in crate::sites::all() {
        if let Some((title, host, port)) = s.pacs() {
            known.push(KnownAe { title: title.to_owned(), host: host.to_owned(), port });
        }
    }
    for p in &a.peers {
        let (ae, site) = parse_peer(p).with_context(|| format!("--peer {p}"))?;
        if let Some(site) = site {
            sites.insert(ae.title.clone(), site);
        }
        known.push(ae);
    }
    let dicom_tls = match (&a.dicom_tls_cert, &a.dicom_tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::DicomListener::load(cert, key, a.dicom_tls_ca.as_deref()).context("loading the DICOM TLS certificate")?),
        _ => None,
    };
    let config = Config {
        ae_title: a.ae_title.clone(),
        bind: a.dicom_bind,
        max_associations: a.max_associations,
        max_pdu_length: a.max_pdu,
        known_aes: known,
        accept_any: a.accept_any,
        artim_timeout: std::time::Duration::from_secs(a.artim_timeout),
        idle_timeout: std::time::Duration::from_secs(a.idle_timeout),
        handshake_timeout: std::time::Duration::from_secs(a.handshake_timeout),
        max_pending: a.max_pending.max(1),
        max_pending_per_address: a.max_pending_per_address.max(1),
        write_timeout: std::time::Duration::from_secs(a.write_timeout),
        dimse_timeout: std::time::Duration::from_secs(a.dimse_timeout),
        max_find_matches: a.max_find_matches,
        commitment_on_new_association: a.commitment_on_new_association,
        max_data_set_bytes: usize::try_from(a.max_instance_bytes).unwrap_or(usize::MAX),
        tls: dicom_tls.as_ref().map(crate::tls::DicomListener::handle),
        ..Config::default()
    };
    listen(data, hub, config, dicom_tls, sites, &a.http, &a.federation)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the DICOM listener and the HTTP API over `hub` until SIGTERM or
/// Ctrl-C.
/// `dicom_tls`: the listener's TLS (`config.tls`) and its files, read again at SIGHUP.
pub fn listen(
    data: &Path,
    hub: Arc<Hub>,
    config: Config,
    dicom_tls: Option<crate::tls::DicomListener>,
    sites: HashMap<String, String>,
    http: &HttpArgs,
    fed: &FederationArgs,
) -> anyhow::Result<()> {
    let (ae, bind) = (config.ae_title.clone(), config.bind);
    let tls = match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::Tls::load(cert, key).context("loading the HTTPS certificate")?)),
        _ => None,
    };
    let thumbs = Arc::new(crate::thumbs::Thumbs::open(data)?);
    // One rendering thread: ingest keeps the other core.
    let renderer = crate::thumbs::Renderer::start(hub.clone(), thumbs.clone(), 1);
    let app_db = crate::app_db::open(data).with_context(|| format!("opening {}", data.join("app").display()))?;
    let federation = crate::federation::Federation::new(hub.clone(), &app_db, &ae, fed.options()).context("the sites' PACS")?;
    let control_token = crate::auth::random_token();
    let reports = Arc::new(crate::reports::Reports::new(&app_db)?);
    let outbox = Arc::new(crate::delivery::Outbox::new(&app_db)?);
    let orders = Arc::new(crate::orders::Orders::new(&app_db)?);
    let worklist = Arc::new(crate::worklist::Worklist::open(&app_db, hub.clone(), reports.clone(), orders.clone()).context("the worklist")?);
    let commitments = Arc::new(crate::dimse::commitment::CommitmentReports::new(&app_db)?);
    // Where reports go on a new association: a site's PACS over its TLS, if it has that.
    let mut addresses: HashMap<String, pacs_gateway::scu::Peer> = config.known_aes.iter().map(|k| (k.title.clone(), k.into())).collect();
    for site in crate::sites::all() {
        if let Some(peer) = site.pacs_peer().with_context(|| format!("site {}", site.code))? {
            addresses.insert(peer.ae_title.clone(), peer);
        }
    }

    let delivery = Arc::new(crate::delivery::Delivery {
        hub: hub.clone(),
        reports: reports.clone(),
        outbox: outbox.clone(),
        scu: pacs_gateway::scu::ScuConfig { calling_ae: ae.clone(), ..Default::default() },
    });
    let audit = Arc::new(crate::audit::Audit::new(&app_db)?);
    let audit_log = {
        let hub = hub.clone();
        audit.clone().writer(move |study| hub.index.study(study).ok().flatten().map(|s| format!("{}/{}", s.patient.issuer, s.patient.patient_id)))
    };
    let handler = Arc::new(
        HubHandler::new(hub.clone(), &ae, sites, Some(renderer.clone()))
            .with_federation(federation.clone())
            .with_worklist(worklist.clone())
            .with_audit(Arc::new(crate::audit::DimseAudit::new(audit_log.clone())))
            .with_commitments(commitments.clone()),
    );
    let mut state = AppState {
        hub: hub.clone(),
        thumbs,
        renderer: Some(renderer),
        auth: Arc::new(crate::auth::Auth::new(&app_db)?),
        reports,
        outbox,
        orders: orders.clone(),
        worklist: worklist.clone(),
        findings: Arc::new(crate::findings::Findings::new(
            &app_db,
            crate::findings::Deadlines {
                critical: std::time::Duration::from_secs(http.escalate_critical),
                urgent: std::time::Duration::from_secs(http.escalate_urgent),
                unexpected: std::time::Duration::from_secs(http.escalate_unexpected),
            },
        )?),
        audit: audit.clone(),
        audit_log,
        claims: Arc::new(crate::claims::Claims::new(&app_db, std::time::Duration::from_secs(http.claim_lease.max(1)))?),
        limits: Limits {
            max_body: http.max_body,
            max_connections: http.max_connections,
            max_connections_per_address: http.max_connections_per_address.max(1),
            header_timeout: std::time::Duration::from_secs(http.http_header_timeout.max(1)),
            retrieves_per_user: http.retrieves_per_user.max(1),
            send_timeout: std::time::Duration::from_secs(http.http_send_timeout.max(1)),
            ..Limits::default()
        },
        viewer_dir: Some(http.viewer_dir.clone()).filter(|d| d.is_dir()),
        stow_site: http.stow_site.as_deref().map(super::site_arg).transpose()?.map(str::to_owned),
        public_url: String::new(),
        meta_cache: crate::http::MetaCache::new(256 << 20),
        stow_slots: tokio::sync::Semaphore::new(4),
        sign_in_slots: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        retrieves: Default::default(),
        federation: Some(federation.clone()),
        control_token: Some(control_token.clone()),
        cors_origins: http.cors_origins.iter().map(|o| cors_origin(o)).collect::<anyhow::Result<_>>()?,
    };
    raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let gateway = Gateway::new(config, handler);
        let listener = gateway.bind().await.with_context(|| format!("binding {bind}"))?;
        let dicom_addr = listener.local_addr()?;
        let http_listener = tokio::net::TcpListener::bind(http.http_bind).await.with_context(|| format!("binding {}", http.http_bind))?;
        let http_addr = http_listener.local_addr()?;
        // A wildcard bind is no address to give clients: name the host as localhost.
        let reachable = if http_addr.ip().is_unspecified() { format!("localhost:{}", http_addr.port()) } else { http_addr.to_string() };
        let scheme = if tls.is_some() { "https" } else { "http" };
        state.public_url = http.public_url.clone().unwrap_or_else(|| format!("{scheme}://{reachable}"));
        let state = Arc::new(state);
        // `radhub` commands run beside this server reach it through this
        // file: over HTTPS, on a plain listener of loopback's own.
        let control_listener = match tls {
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the control listener")?),
            None => None,
        };
        let control_url = match &control_listener {
            Some(l) => format!("http://{}", l.local_addr()?),
            None => format!("http://{reachable}"),
        };
        let control = Control { url: control_url, token: control_token };
        control.write(data).context("writing the control file")?;
        federation.start();
        federation.start_prefetch();
        tokio::spawn(delivery.run());
        tokio::spawn(commitments.clone().run(pacs_gateway::scu::ScuConfig { calling_ae: ae.clone(), ..Default::default() }, addresses));
        if let Some(bind) = http.hl7_bind {
            let l = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding the HL7 listener to {bind}"))?;
            tracing::info!(addr = %l.local_addr()?, "HL7 listening");
            tokio::spawn(crate::orders::mllp::serve(l, hub.clone(), orders, worklist));
        }
        let mut out = std::io::stdout();
        let _ = writeln!(out, "radhub: DICOM listening on {dicom_addr} as {ae}\nradhub: HTTP listening on {http_addr}").and_then(|_| out.flush());
        tracing::info!(%dicom_addr, %http_addr, %ae, "listening");
        tokio::spawn(async move {
            shutdown().await;
            let _ = stop_tx.send(true);
        });
        let limits = state.limits.clone();
        let router = crate::http::router(state);
        if let Some(l) = control_listener {
            let (router, limits, stop) = (router.clone(), limits.clone(), stopped());
            tokio::spawn(async move { crate::http::serve(l, router, &limits, None, stop).await });
        }
        if tls.is_some() || dicom_tls.is_some() {
            tokio::spawn(reload_on_hangup(tls.clone(), dicom_tls));
        }
        let http_stopped = stopped();
        let http_task = tokio::spawn(async move { crate::http::serve(http_listener, router, &limits, tls, http_stopped).await });
        gateway.serve(listener, stopped()).await;
        federation.stop();
        http_task.await.context("HTTP server task")?.context("HTTP server")?;
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(Control::path(data));
    served?;
    hub.index.sync()?;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the HTTPS and DICOM certificates and keys again at each SIGHUP;
/// one that does not load leaves the one in use.
async fn reload_on_hangup(https: Option<Arc<crate::tls::Tls>>, dicom: Option<crate::tls::DicomListener>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: TLS certificates are read at start only");
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &https {
            match tls.reload() {
                Ok(()) => tracing::info!("HTTPS certificate read again (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "HTTPS certificate not read again: the one in use stays"),
            }
        }
        if let Some(tls) = &dicom {
            match tls.reload() {
                Ok(()) => tracing::info!("DICOM TLS certificate read again (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "DICOM TLS certificate not read again: the one in use stays"),
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one: every connection
/// is a descriptor, and the default 1024 is soon reached.
fn raise_open_files() {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit write and read only the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
                let before = r.rlim_cur;
                r.rlim_cur = r.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
                    tracing::info!(from = before, to = r.rlim_cur, "raised the open-file limit");
                }
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `<data>/control.json`: where the running server is and the token its
/// own `radhub` commands use (readable by the hub's user only; removed at exit).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Control {
    pub url: String,
    pub token: String,
}

impl Control {
    pub fn path(data: &Path) -> PathBuf {
        data.join("control.json")
    }

    fn write(&self, data: &Path) -> std::io::Result<()> {
        let tmp = data.join("control.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(tmp, Self::path(data))
    }

    /// The running server's control file, if one is running.
    pub fn read(data: &Path) -> Option<Control> {
        serde_json::from_slice(&std::fs::read(Self::path(data)).ok()?).ok()
    }
}
