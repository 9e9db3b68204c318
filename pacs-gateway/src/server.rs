//! The listener: accepts TCP connections, reads each association request
//! within a short deadline and a budget of its own (overall and per source
//! address), checks access, and only then takes one of the association
//! slots; negotiates, and runs each association on its own task. Silent or
//! slow sockets therefore never hold the slots modalities need. Shutdown
//! stops accepting and lets in-flight messages finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
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
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
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
    /// Connections still sending their association request, overall and
    /// from one address; more are closed at once.
    pub max_pending: usize,
    pub max_pending_per_address: usize,
    /// Time a new connection has to send its A-ASSOCIATE-RQ.
    pub handshake_timeout: Duration,
    /// The largest PDU accepted; larger ones abort the association.
    pub max_pdu_length: u32,
    /// Time allowed to complete association negotiation (ARTIM).
    pub artim_timeout: Duration,
    /// An association silent for this long is aborted.
    pub idle_timeout: Duration,
    /// A write the peer does not take within this long aborts the association.
    pub write_timeout: Duration,
    /// Time a peer has to answer a request radhub sent it (a C-STORE
    /// sub-operation, DCMTK's "DIMSE timeout"); past it the peer is lost.
    pub dimse_timeout: Duration,
    /// Time allowed to connect to a move destination.
    pub connect_timeout: Duration,
    /// The longest one C-FIND, C-MOVE or C-GET may run.
    pub operation_timeout: Duration,
    /// Most C-FIND matches sent for one request; past it the answer ends
    /// with A700 (out of resources) and a comment to narrow the query.
    pub max_find_matches: usize,
    /// How long shutdown waits for in-flight associations.
    pub shutdown_grace: Duration,
    pub known_aes: Vec<KnownAe>,
    /// Accept any calling AE from anywhere (demos only).
    pub accept_any: bool,
    /// The largest data set held for one C-STORE.
    pub max_data_set_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ae_title: "RADHUB".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 11112)),
            max_associations: 32,
            max_pending: 128,
            max_pending_per_address: 16,
            handshake_timeout: Duration::from_secs(10),
            max_pdu_length: 256 << 10,
            artim_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(60),
            dimse_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(3600),
            max_find_matches: 10_000,
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

/// Known AEs' host names, resolved off the association path: at start and
/// every few minutes, never while a peer waits.
#[derive(Default)]
pub(crate) struct Resolved(RwLock<HashMap<String, Vec<IpAddr>>>);

const RESOLVE_EVERY: Duration = Duration::from_secs(300);

impl Resolved {
    /// The addresses of `host` (an address literal, or a name as last resolved).
    pub fn addrs(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip.to_canonical()];
        }
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(host).cloned().unwrap_or_default()
    }

    /// Resolves every known AE's host name at once, 5 s each at most.
    async fn refresh(&self, config: &Config) {
        let hosts: std::collections::BTreeSet<String> = config.known_aes.iter().map(|a| a.host.clone()).filter(|h| h.parse::<IpAddr>().is_err()).collect();
        let mut lookups = JoinSet::new();
        for host in hosts {
            lookups.spawn(async move {
                let found = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), 0))).await;
                let found = found.map(|r| r.map(|addrs| addrs.map(|a| a.ip().to_canonical()).collect::<Vec<IpAddr>>()));
                (host, found)
            });
        }
        while let Some(Ok((host, found))) = lookups.join_next().await {
            match found {
                Ok(Ok(ips)) => {
                    self.0.write().unwrap_or_else(|e| e.into_inner()).insert(host, ips);
                }
                // Keep what was known: a DNS outage must not lock peers out.
                Ok(Err(e)) => tracing::warn!(%host, error = %e, "cannot resolve a known AE's host"),
                Err(_) => tracing::warn!(%host, "resolving a known AE's host timed out"),
            }
        }
    }
}

pub struct Gateway {
    config: Arc<Config>,
    handler: Arc<dyn Handler>,
    resolved: Arc<Resolved>,
}

/// Per connection: the calling AE must be known and connect from its host.
struct Access {
    config: Arc<Config>,
    resolved: Arc<Resolved>,
    peer: IpAddr,
}

impl Access {
    fn check(&self, this_ae: &str, calling_ae: &str, called_ae: &str) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae.trim() != this_ae {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.config.accept_any {
            return Ok(());
        }
        let known = self.config.known(calling_ae.trim()).ok_or(AssociationRJServiceUserReason::CallingAETitleNotRecognized)?;
        if self.resolved.addrs(&known.host).contains(&self.peer) {
            Ok(())
        } else {
            tracing::warn!(calling_ae, peer = %self.peer, expected = %known.host, "known AE title from an unexpected address");
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

impl AccessControl for Access {
    fn check_access(&self, this_ae: &str, calling_ae: &str, called_ae: &str, _user: Option<&UserIdentity>) -> Result<(), AssociationRJServiceUserReason> {
        self.check(this_ae, calling_ae, called_ae)
    }
}

/// SCU/SCP role selection as the requestor asks: C-GET needs the SCU to
/// take the SCP role for storage.
struct RolesAsRequested;

impl Negotiation for RolesAsRequested {
    fn negotiate_roles(&self, _sop_class_uid: &str, scu: bool, scp: bool) -> Option<RequestorRoles> {
        Some(RequestorRoles { scu, scp })
    }
}

/// Connections from one address still in their handshake; a slot is
/// given back when its guard drops.
#[derive(Default)]
struct PendingByAddress(Mutex<HashMap<IpAddr, usize>>);

struct PendingSlot {
    table: Arc<PendingByAddress>,
    addr: IpAddr,
}

impl PendingByAddress {
    fn take(table: &Arc<Self>, addr: IpAddr, max: usize) -> Option<PendingSlot> {
        let mut m = table.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(addr).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PendingSlot { table: table.clone(), addr })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.addr);
            }
        }
    }
}

/// What one connection holds while it negotiates.
struct Handshake {
    _overall: OwnedSemaphorePermit,
    _address: PendingSlot,
}

impl Gateway {
    pub fn new(config: Config, handler: Arc<dyn Handler>) -> Self {
        Gateway { config: Arc::new(config), handler, resolved: Arc::new(Resolved::default()) }
    }

    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.config.bind).await
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits (up
    /// to the grace period) for associations to finish their current message.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.resolved.refresh(&self.config).await;
        let (resolved, config) = (self.resolved.clone(), self.config.clone());
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESOLVE_EVERY).await;
                resolved.refresh(&config).await;
            }
        });
        let slots = Arc::new(Semaphore::new(self.config.max_associations));
        let pending = Arc::new(Semaphore::new(self.config.max_pending));
        let by_address = Arc::new(PendingByAddress::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors (EMFILE) and the like: wait, do not spin.
                            tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                            continue;
                        }
                    };
                    backoff = Duration::from_millis(10);
                    // An IPv4 peer of a dual-stack listener is the IPv4 address it is.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let Ok(overall) = pending.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = self.config.max_pending, "connection closed: too many association requests pending");
                        continue;
                    };
                    let Some(address) = PendingByAddress::take(&by_address, peer.ip(), self.config.max_pending_per_address) else {
                        tracing::warn!(%peer, limit = self.config.max_pending_per_address, "connection closed: too many pending from this address");
                        continue;
                    };
                    let hs = Handshake { _overall: overall, _address: address };
                    let (config, handler, resolved, slots, stop) = (self.config.clone(), self.handler.clone(), self.resolved.clone(), slots.clone(), stop_rx.clone());
                    tasks.spawn(connection(sock, peer, config, handler, resolved, slots, hs, stop));
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        refresher.abort();
        tracing::info!(in_flight = tasks.len(), "DICOM listener stopping");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.config.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(aborted = tasks.len(), "associations still open after the grace period");
            tasks.abort_all();
        }
    }
}

fn options(config: Arc<Config>, resolved: Arc<Resolved>, peer: IpAddr) -> ServerAssociationOptions<'static, Access, RolesAsRequested> {
    let mut o = ServerAssociationOptions::new()
        .with_negotiation(RolesAsRequested)
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.max_pdu_length)
        .strict(true)
        .read_timeout(config.idle_timeout)
        .write_timeout(config.write_timeout);
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
    o.ae_access_control(Access { config, resolved, peer })
}

/// The largest association request looked at before negotiation; a larger
/// one (rare: long user identities) is negotiated without the early check.
const MAX_PEEKED_RQ: usize = 64 << 10;

/// What the association request says, read without consuming it (dicom-ul
/// reads it again to negotiate): calling and called AE titles.
async fn peek_request(sock: &TcpStream, max_pdu: u32) -> std::io::Result<Option<(String, String)>> {
    let mut buf = vec![0u8; MAX_PEEKED_RQ];
    loop {
        let n = sock.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if n >= 6 {
            if buf[0] != 0x01 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
            if len + 6 > buf.len() || len > max_pdu as usize + 6 {
                return Ok(None);
            }
            if n >= len + 6 {
                return Ok(match dicom_ul::read_pdu(&mut &buf[..n], max_pdu.max(16 << 10), false) {
                    Ok(Some(Pdu::AssociationRQ(rq))) => Some((rq.calling_ae_title, rq.called_ae_title)),
                    _ => None,
                });
            }
        }
        // Part of the request is in: give the rest a moment (peek would
        // return the same bytes at once).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    handler: Arc<dyn Handler>,
    resolved: Arc<Resolved>,
    slots: Arc<Semaphore>,
    handshake: Handshake,
    stop: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(true);
    let started = std::time::Instant::now();
    let request = match tokio::time::timeout(config.handshake_timeout, peek_request(&sock, config.max_pdu_length)).await {
        Ok(Ok(rq)) => rq,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "connection closed before an association request");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, timeout_s = config.handshake_timeout.as_secs(), "no association request in time: closed");
            return;
        }
    };
    let access = Access { config: config.clone(), resolved: resolved.clone(), peer: peer.ip() };
    // A slot is taken only by a request that passes access control; the
    // others are rejected by the negotiation below without one. A request
    // that could not be looked at first (over 64 KiB, or not one at all)
    // takes none until negotiation has checked it.
    let slot = match &request {
        Some((calling, called)) if access.check(&config.ae_title, calling, called).is_ok() => match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                reject_busy(sock, &config).await;
                return;
            }
        },
        _ => None,
    };
    let opts = options(config.clone(), resolved.clone(), peer.ip());
    // Within what is left of the handshake deadline (and never past ARTIM).
    let left = config.handshake_timeout.saturating_sub(started.elapsed()).min(config.artim_timeout);
    let established = tokio::time::timeout(left, opts.establish_async(sock)).await;
    drop(handshake);
    let assoc = match established {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "association not established");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "association request timed out");
            return;
        }
    };
    let slot = match slot.map_or_else(|| slots.try_acquire_owned().ok(), Some) {
        Some(s) => s,
        None => {
            tracing::warn!(%peer, limit = config.max_associations, "association aborted: limit reached");
            let _ = tokio::time::timeout(config.write_timeout, assoc.abort()).await;
            return;
        }
    };
    let span = tracing::info_span!("association", %peer, calling_ae = %assoc.peer_ae_title());
    association::run(assoc, config, handler, resolved, stop).instrument(span).await;
    drop(slot);
}

/// Answers an association request over the limit with A-ASSOCIATE-RJ
/// (transient, local limit exceeded), without reading more than the request.
async fn reject_busy(mut sock: TcpStream, config: &Config) {
    let _ = tokio::time::timeout(config.handshake_timeout, drain_request(&mut sock, config.max_pdu_length)).await;
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
        let _ = tokio::time::timeout(config.write_timeout, sock.write_all(&out)).await;
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
