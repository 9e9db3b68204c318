//! The listener: accepts TCP connections, enforces the association limit
//! and access control, negotiates, and runs each association on its own
//! task. Shutdown stops accepting and lets in-flight messages finish.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::association::server::{AccessControl, Negotiation};
use dicom_ul::association::Association;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason, AssociationRJSource, RequestorRoles,
    UserIdentity,
};
use dicom_ul::{Pdu, ServerAssociationOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::association;
use crate::handler::Handler;
use crate::sop_classes;

/// A peer radhub knows: allowed to connect (from `host`), and a C-MOVE
/// destination at `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAe {
    pub title: String,
    pub host: String,
    pub port: u16,
}

impl KnownAe {
    /// Parses `TITLE@HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (title, addr) = s.split_once('@').ok_or_else(|| format!("{s:?}: want TITLE@HOST:PORT"))?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{s:?}: want TITLE@HOST:PORT"))?;
        let port = port.parse().map_err(|_| format!("{s:?}: bad port"))?;
        if title.is_empty() || title.len() > 16 {
            return Err(format!("{s:?}: an AE title has 1 to 16 characters"));
        }
        Ok(KnownAe { title: title.to_owned(), host: host.to_owned(), port })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub ae_title: String,
    pub bind: SocketAddr,
    /// Associations served at once; more are rejected (transient, local limit).
    pub max_associations: usize,
    /// The largest PDU accepted; larger ones abort the association.
    pub max_pdu_length: u32,
    /// Time allowed to complete association negotiation (ARTIM).
    pub artim_timeout: Duration,
    /// An association silent for this long is aborted.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight associations.
    pub shutdown_grace: Duration,
    pub known_aes: Vec<KnownAe>,
    /// Accept any calling AE from anywhere (demos only).
    pub accept_any: bool,
    /// The largest data set held for one message.
    pub max_data_set_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ae_title: "RADHUB".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 11112)),
            max_associations: 32,
            max_pdu_length: 256 << 10,
            artim_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            known_aes: Vec::new(),
            accept_any: false,
            max_data_set_bytes: 512 << 20,
        }
    }
}

impl Config {
    pub fn known(&self, title: &str) -> Option<&KnownAe> {
        self.known_aes.iter().find(|k| k.title == title)
    }
}

pub struct Gateway {
    config: Arc<Config>,
    handler: Arc<dyn Handler>,
}

/// Per connection: the calling AE must be known and connect from its host.
struct Access {
    config: Arc<Config>,
    peer: IpAddr,
}

impl AccessControl for Access {
    fn check_access(&self, this_ae: &str, calling_ae: &str, called_ae: &str, _user: Option<&UserIdentity>) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae.trim() != this_ae {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.config.accept_any {
            return Ok(());
        }
        let known = self.config.known(calling_ae.trim()).ok_or(AssociationRJServiceUserReason::CallingAETitleNotRecognized)?;
        if host_matches(&known.host, self.peer) {
            Ok(())
        } else {
            tracing::warn!(calling_ae, peer = %self.peer, expected = %known.host, "known AE title from an unexpected address");
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

fn host_matches(host: &str, peer: IpAddr) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip == peer;
    }
    // A name: resolve it (blocking resolution happens once per association).
    use std::net::ToSocketAddrs;
    (host, 0).to_socket_addrs().map(|mut addrs| addrs.any(|a| a.ip() == peer)).unwrap_or(false)
}

/// SCU/SCP role selection as the requestor asks: C-GET needs the SCU to
/// take the SCP role for storage.
struct RolesAsRequested;

impl Negotiation for RolesAsRequested {
    fn negotiate_roles(&self, _sop_class_uid: &str, scu: bool, scp: bool) -> Option<RequestorRoles> {
        Some(RequestorRoles { scu, scp })
    }
}

impl Gateway {
    pub fn new(config: Config, handler: Arc<dyn Handler>) -> Self {
        Gateway { config: Arc::new(config), handler }
    }

    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.config.bind).await
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits (up
    /// to the grace period) for associations to finish their current message.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.config.max_associations));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let permit = limit.clone().try_acquire_owned().ok();
                    let (config, handler, stop) = (self.config.clone(), self.handler.clone(), stop_rx.clone());
                    tasks.spawn(async move {
                        match permit {
                            Some(permit) => {
                                connection(sock, peer, config, handler, stop).await;
                                drop(permit);
                            }
                            None => reject_busy(sock, &config).await,
                        }
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!(in_flight = tasks.len(), "DICOM listener stopping");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.config.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(aborted = tasks.len(), "associations still open after the grace period");
            tasks.abort_all();
        }
    }
}

fn options(config: Arc<Config>, peer: IpAddr) -> ServerAssociationOptions<'static, Access, RolesAsRequested> {
    let mut o = ServerAssociationOptions::new()
        .with_negotiation(RolesAsRequested)
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.max_pdu_length)
        .strict(true)
        .read_timeout(config.idle_timeout);
    for uid in [
        sop_classes::VERIFICATION,
        sop_classes::PATIENT_ROOT_FIND,
        sop_classes::PATIENT_ROOT_MOVE,
        sop_classes::PATIENT_ROOT_GET,
        sop_classes::STUDY_ROOT_FIND,
        sop_classes::STUDY_ROOT_MOVE,
        sop_classes::STUDY_ROOT_GET,
        crate::commitment::PUSH_MODEL,
    ]
    .into_iter()
    .chain(sop_classes::STORAGE.iter().map(|(u, _)| *u))
    {
        o = o.with_abstract_syntax(uid);
    }
    for ts in sop_classes::STORAGE_TRANSFER_SYNTAXES {
        o = o.with_transfer_syntax(*ts);
    }
    o.ae_access_control(Access { config, peer })
}

async fn connection(sock: TcpStream, peer: SocketAddr, config: Arc<Config>, handler: Arc<dyn Handler>, stop: watch::Receiver<bool>) {
    let _ = sock.set_nodelay(true);
    let opts = options(config.clone(), peer.ip());
    let assoc = match tokio::time::timeout(config.artim_timeout, opts.establish_async(sock)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "association not established");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "association request timed out (ARTIM)");
            return;
        }
    };
    let span = tracing::info_span!("association", %peer, calling_ae = %assoc.peer_ae_title());
    association::run(assoc, config, handler, stop).instrument(span).await;
}

/// Answers an association request over the limit with A-ASSOCIATE-RJ
/// (transient, local limit exceeded), without reading more than the request.
async fn reject_busy(mut sock: TcpStream, config: &Config) {
    let _ = sock.set_nodelay(true);
    let _ = tokio::time::timeout(config.artim_timeout, drain_request(&mut sock, config.max_pdu_length)).await;
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
        let _ = sock.write_all(&out).await;
    }
    let _ = sock.shutdown().await;
    tracing::warn!(limit = config.max_associations, "association rejected: limit reached");
}

/// Reads (and drops) one A-ASSOCIATE-RQ, bounded by the PDU limit.
async fn drain_request(sock: &mut TcpStream, max: u32) -> std::io::Result<()> {
    let mut head = [0u8; 6];
    sock.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    if head[0] == 0x01 && len <= max {
        let mut rest = vec![0u8; len as usize];
        sock.read_exact(&mut rest).await?;
    }
    Ok(())
}
