//! `radhub serve`: the hub's DICOM listener (HTTP joins it later), until
//! SIGTERM or Ctrl-C; in-flight C-STOREs finish before it stops.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pacs_gateway::{Config, Gateway, KnownAe};

use crate::dimse::HubHandler;
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
    /// (e.g. PACS_RBD@10.1.2.3:104=RBD). Repeat for each peer.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Accept any calling AE from any address (demos only).
    #[arg(long)]
    accept_any: bool,
    #[arg(long, default_value_t = 32)]
    max_associations: usize,
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
}

fn parse_peer(s: &str) -> anyhow::Result<(KnownAe, Option<String>)> {
    let (ae, site) = match s.rsplit_once('=') {
        Some((ae, site)) => (ae, Some(site.to_owned())),
        None => (s, None),
    };
    Ok((KnownAe::parse(ae).map_err(anyhow::Error::msg)?, site))
}

pub fn run(data: &Path, a: Args) -> anyhow::Result<ExitCode> {
    let hub = Arc::new(super::open_hub(data, a.policy)?);
    let mut known = Vec::new();
    let mut sites = HashMap::new();
    for p in &a.peers {
        let (ae, site) = parse_peer(p).with_context(|| format!("--peer {p}"))?;
        if let Some(site) = site {
            sites.insert(ae.title.clone(), site);
        }
        known.push(ae);
    }
    let config = Config {
        ae_title: a.ae_title.clone(),
        bind: a.dicom_bind,
        max_associations: a.max_associations,
        max_pdu_length: a.max_pdu,
        known_aes: known,
        accept_any: a.accept_any,
        artim_timeout: std::time::Duration::from_secs(a.artim_timeout),
        idle_timeout: std::time::Duration::from_secs(a.idle_timeout),
        ..Config::default()
    };
    listen(data, hub, config, sites)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the DICOM listener over `hub` until SIGTERM or Ctrl-C.
pub fn listen(data: &Path, hub: Arc<Hub>, config: Config, sites: HashMap<String, String>) -> anyhow::Result<()> {
    let (ae, bind) = (config.ae_title.clone(), config.bind);
    let thumbs = Arc::new(crate::thumbs::Thumbs::open(data)?);
    // One rendering thread: ingest keeps the other core.
    let renderer = crate::thumbs::Renderer::start(hub.clone(), thumbs, 1);
    let handler = Arc::new(HubHandler::new(hub.clone(), &ae, sites, Some(renderer)));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let gateway = Gateway::new(config, handler);
        let listener = gateway.bind().await.with_context(|| format!("binding {bind}"))?;
        let addr = listener.local_addr()?;
        // Scripts wait for this line; they may close the pipe after it.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "radhub: DICOM listening on {addr} as {ae}").and_then(|_| out.flush());
        tracing::info!(%addr, %ae, "DICOM listener up");
        gateway.serve(listener, shutdown()).await;
        anyhow::Ok(())
    })?;
    hub.index.sync()?;
    tracing::info!("stopped");
    Ok(())
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
