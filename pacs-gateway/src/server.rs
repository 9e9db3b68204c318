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
/// destination at `host:port`. `host` may instead be a network in CIDR
/// notation ("10.1.5.0/24", "2001:db8::/32"): the AE may then call from
/// any address in it, and is no move destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAe {
    pub title: String,
    pub host: String,
    pub port: u16,
}

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("{0:?} is no IP address or network (ADDRESS or ADDRESS/PREFIX)")]
    Address(String),
    #[error("{0:?}: the prefix length is 0 to 32 for IPv4, 0 to 128 for IPv6")]
    Prefix(String),
}

impl Network {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address (`127.0.0.1`: /32, /128 for IPv6).
    pub fn parse(s: &str) -> Result<Network, NetworkError> {
        let s = s.trim();
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr = a.trim_matches(['[', ']']).parse::<IpAddr>().map_err(|_| NetworkError::Address(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| NetworkError::Prefix(s.to_owned()))?,
        };
        // An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is the IPv4 one it maps.
        match addr.to_canonical() {
            v4 @ IpAddr::V4(_) if addr.is_ipv6() && prefix >= 96 => Ok(Network { addr: v4, prefix: prefix - 96 }),
            _ => Ok(Network { addr, prefix }),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - u32::from(prefix))
            }
        }
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(u32::from(n).into(), 32, self.prefix) == masked(u32::from(a).into(), 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), 128, self.prefix) == masked(u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An AE allowed to call radhub from any of `from` (its hosts and
/// networks); not a move destination unless also configured as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub title: String,
    pub from: Vec<Network>,
}

/// A C-MOVE destination at `host:port`, not allowed to call radhub unless
/// also configured as a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub title: String,
    pub host: String,
    pub port: u16,
}

/// AEs the application configures besides `Config`'s (radhub: its sites
/// file), added when the gateway is made (`Handler::peers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    pub callers: Vec<Caller>,
    pub destinations: Vec<Destination>,
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
    /// Peers that may call (from their host) and are move destinations.
    pub known_aes: Vec<KnownAe>,
    /// AEs that may call from their networks (not move destinations).
    pub callers: Vec<Caller>,
    /// Move destinations (that may not call).
    pub move_destinations: Vec<Destination>,
    /// Accept any calling AE from anywhere (demos only).
    pub accept_any: bool,
    /// The largest data set one C-STORE may bring (written out as it
    /// arrives when the handler streams; else held).
    pub max_data_set_bytes: usize,
    /// Send every storage commitment report on a new association, never
    /// on the requestor's (PS3.4 J.3.3.1.2; modalities that release at
    /// once and listen as SCP).
    pub commitment_on_new_association: bool,
    /// DICOM over TLS (PS3.15 B.1): every association on the listener
    /// begins with a TLS handshake under this configuration.
    pub tls: Option<ServerTls>,
}

/// The listener's TLS configuration, replaceable while it runs (a renewed
/// certificate): each new association takes the one in place then.
#[derive(Clone, Debug)]
pub struct ServerTls(Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>);

impl ServerTls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        ServerTls(Arc::new(std::sync::RwLock::new(config)))
    }

    /// From the next association on.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
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
            callers: Vec::new(),
            move_destinations: Vec::new(),
            accept_any: false,
            max_data_set_bytes: 4 << 30,
            commitment_on_new_association: false,
            tls: None,
        }
    }
}

impl Config {
    pub fn known(&self, title: &str) -> Option<&KnownAe> {
        self.known_aes.iter().find(|k| k.title == title)
    }

    /// Where a C-MOVE to `title` goes: a known AE with a host (not a
    /// network), else a configured move destination.
    pub fn destination(&self, title: &str) -> Option<Destination> {
        self.known_aes
            .iter()
            .filter(|k| k.title == title && !k.host.contains('/'))
            .map(|k| Destination { title: k.title.clone(), host: k.host.clone(), port: k.port })
            .chain(self.move_destinations.iter().filter(|d| d.title == title).cloned())
            .next()
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
        let hosts: std::collections::BTreeSet<String> = config
            .known_aes
            .iter()
            .map(|a| a.host.clone())
            .chain(config.move_destinations.iter().map(|d| d.host.clone()))
            .filter(|h| h.parse::<IpAddr>().is_err() && !h.contains('/'))
            .collect();
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
        let title = calling_ae.trim();
        let known: Vec<&KnownAe> = self.config.known_aes.iter().filter(|k| k.title == title).collect();
        let callers: Vec<&Caller> = self.config.callers.iter().filter(|c| c.title == title).collect();
        if known.is_empty() && callers.is_empty() {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        let from_host = known.iter().any(|k| match Network::parse(&k.host) {
            Ok(n) if k.host.contains('/') => n.contains(self.peer),
            _ => self.resolved.addrs(&k.host).contains(&self.peer),
        });
        if from_host || callers.iter().any(|c| c.from.iter().any(|n| n.contains(self.peer))) {
            Ok(())
        } else {
            tracing::warn!(calling_ae, peer = %self.peer, "known AE title from an address outside its hosts and networks");
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
/// take the SCP role for storage. SOP Class Extended Negotiation answered
/// for the query/retrieve classes (`extended_negotiation`).
struct RolesAsRequested;

impl Negotiation for RolesAsRequested {
    fn negotiate_roles(&self, _sop_class_uid: &str, scu: bool, scp: bool) -> Option<RequestorRoles> {
        Some(RequestorRoles { scu, scp })
    }

    fn extended_negotiation(&self, sop_class_uid: &str, input: &[u8]) -> Option<Vec<u8>> {
        extended_negotiation(sop_class_uid.trim_end_matches(['\0', ' ']), input)
    }
}

/// The options of SOP Class Extended Negotiation radhub takes, by byte
/// (PS3.4 C.5.1.1 for C-FIND, C.5.2.1 / C.5.3.1 for C-MOVE and C-GET):
/// C-FIND byte 1 relational queries (taken: keys of any level are matched
/// without the unique keys of the levels above); byte 2 combined date-time
/// matching, 3 fuzzy semantic matching of person names, 4 timezone query
/// adjustment, 5 enhanced multi-frame image conversion, 6 empty value
/// matching and 7 multiple value matching are declined (0). C-MOVE and
/// C-GET byte 1 relational retrieval is declined (a retrieve needs the
/// unique keys of every level above its own, C.4.2.2.1), byte 2 enhanced
/// multi-frame image conversion too. The answer has as many bytes as the
/// request (PS3.7 D.3.3.5); for any other SOP class no item is returned.
pub const FIND_EXTENDED_NEGOTIATION: &[(&str, bool)] = &[
    ("relational-queries", true),
    ("combined date-time matching", false),
    ("fuzzy semantic matching of person names", false),
    ("timezone query adjustment", false),
    ("enhanced multi-frame image conversion", false),
    ("empty value matching", false),
    ("multiple value matching", false),
];

/// C-MOVE and C-GET: relational retrieval, enhanced multi-frame image conversion.
pub const RETRIEVE_EXTENDED_NEGOTIATION: &[(&str, bool)] = &[("relational-retrieval", false), ("enhanced multi-frame image conversion", false)];

fn extended_negotiation(sop_class_uid: &str, input: &[u8]) -> Option<Vec<u8>> {
    let table = match sop_class_uid {
        sop_classes::PATIENT_ROOT_FIND | sop_classes::STUDY_ROOT_FIND => FIND_EXTENDED_NEGOTIATION,
        sop_classes::PATIENT_ROOT_MOVE | sop_classes::STUDY_ROOT_MOVE | sop_classes::PATIENT_ROOT_GET | sop_classes::STUDY_ROOT_GET => {
            RETRIEVE_EXTENDED_NEGOTIATION
        }
        _ => return None,
    };
    Some(input.iter().enumerate().map(|(i, asked)| u8::from(*asked == 1 && table.get(i).is_some_and(|(_, taken)| *taken))).collect())
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
    /// The gateway over `config`, with the callers and move destinations
    /// the handler configures (`Handler::peers`) added.
    pub fn new(mut config: Config, handler: Arc<dyn Handler>) -> Self {
        let more = handler.peers();
        config.callers.extend(more.callers);
        config.move_destinations.extend(more.destinations);
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

/// The association options for one connection. `proposed`: the abstract
/// syntaxes its request proposes, so that storage classes radhub cannot
/// list (private ones) are accepted when they are proposed.
fn options(config: Arc<Config>, resolved: Arc<Resolved>, peer: IpAddr, proposed: &[String]) -> ServerAssociationOptions<'static, Access, RolesAsRequested> {
    let mut o = ServerAssociationOptions::new()
        .with_negotiation(RolesAsRequested)
        .ae_title(config.ae_title.clone())
        .implementation_class_uid(crate::store::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(Some(crate::store::IMPLEMENTATION_VERSION_NAME.to_owned()))
        .accept_unregistered_transfer_syntaxes(true)
        .max_pdu_length(config.max_pdu_length)
        .strict(true)
        .read_timeout(config.idle_timeout)
        .write_timeout(config.write_timeout);
    for (uid, _) in sop_classes::SERVICES.iter().chain(sop_classes::STORAGE) {
        o = o.with_abstract_syntax(*uid);
    }
    for uid in proposed {
        if !sop_classes::is_storage(uid) && sop_classes::accepted_as_storage(uid) {
            o = o.with_abstract_syntax(uid.clone());
        }
    }
    for (ts, _) in sop_classes::ACCEPTED_TRANSFER_SYNTAXES {
        o = o.with_transfer_syntax(*ts);
    }
    o.ae_access_control(Access { config, resolved, peer })
}

/// The largest association request looked at before negotiation; a larger
/// one (rare: long user identities) is negotiated without the early check.
const MAX_PEEKED_RQ: usize = 64 << 10;

/// What an association request says, as far as the listener looks.
struct Peeked {
    calling: String,
    called: String,
    /// The abstract syntaxes of its presentation contexts, each once.
    abstract_syntaxes: Vec<String>,
}

/// What the association request says, read without consuming it (dicom-ul
/// reads it again to negotiate).
async fn peek_request(sock: &TcpStream, max_pdu: u32) -> std::io::Result<Option<Peeked>> {
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
                    Ok(Some(Pdu::AssociationRQ(rq))) => {
                        let mut abstract_syntaxes: Vec<String> = Vec::new();
                        for pc in &rq.presentation_contexts {
                            let uid = pc.abstract_syntax.trim_end_matches(['\0', ' ']);
                            if !abstract_syntaxes.iter().any(|u| u == uid) {
                                abstract_syntaxes.push(uid.to_owned());
                            }
                        }
                        Some(Peeked { calling: rq.calling_ae_title, called: rq.called_ae_title, abstract_syntaxes })
                    }
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
    if let Some(tls) = config.tls.as_ref().map(ServerTls::current) {
        // The request is inside TLS, not to be peeked at: access control
        // is negotiation's, and a slot is taken once established.
        let opts = options(config.clone(), resolved.clone(), peer.ip(), &[]).tls_config(tls);
        let left = config.handshake_timeout.min(config.artim_timeout);
        let established = tokio::time::timeout(left, opts.establish_tls_async(sock)).await;
        drop(handshake);
        if let Some(assoc) = established_or_log(established, peer) {
            serve_association(assoc, None, peer, config, handler, resolved, slots, stop).await;
        }
        return;
    }
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
        Some(rq) if access.check(&config.ae_title, &rq.calling, &rq.called).is_ok() => match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                reject_busy(sock, &config).await;
                return;
            }
        },
        _ => None,
    };
    let proposed = request.map(|rq| rq.abstract_syntaxes).unwrap_or_default();
    let opts = options(config.clone(), resolved.clone(), peer.ip(), &proposed);
    // Within what is left of the handshake deadline (and never past ARTIM).
    let left = config.handshake_timeout.saturating_sub(started.elapsed()).min(config.artim_timeout);
    let established = tokio::time::timeout(left, opts.establish_async(sock)).await;
    drop(handshake);
    if let Some(assoc) = established_or_log(established, peer) {
        serve_association(assoc, slot, peer, config, handler, resolved, slots, stop).await;
    }
}

fn established_or_log<S>(
    established: Result<Result<dicom_ul::association::AsyncServerAssociation<S>, dicom_ul::association::Error>, tokio::time::error::Elapsed>,
    peer: SocketAddr,
) -> Option<dicom_ul::association::AsyncServerAssociation<S>> {
    match established {
        Ok(Ok(a)) => Some(a),
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "association not established");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "association request timed out");
            None
        }
    }
}

/// Runs an established association in a slot (`slot`, or one free now).
#[allow(clippy::too_many_arguments)]
async fn serve_association<S: crate::association::Stream>(
    assoc: dicom_ul::association::AsyncServerAssociation<S>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    peer: SocketAddr,
    config: Arc<Config>,
    handler: Arc<dyn Handler>,
    resolved: Arc<Resolved>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_in_cidr_notation() {
        let n = |s: &str| Network::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(n("10.0.0.0/8").contains(ip("10.200.3.4")) && !n("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(n("127.0.0.1").contains(ip("127.0.0.1")) && !n("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(n("0.0.0.0/0").contains(ip("192.0.2.1")) && !n("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(n("2001:db8::/32").contains(ip("2001:db8:ffff::1")) && !n("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(n("::1").contains(ip("::1")) && n("[::1]/128").contains(ip("::1")));
        // An IPv4 peer of a dual-stack listener, and a mapped network.
        assert!(n("10.1.2.0/24").contains(ip("::ffff:10.1.2.9")));
        assert!(n("::ffff:10.1.2.0/120").contains(ip("10.1.2.9")) && !n("::ffff:10.1.2.0/120").contains(ip("10.1.3.9")));
        assert_eq!(Network::parse("10.0.0.0/33"), Err(NetworkError::Prefix("10.0.0.0/33".into())));
        assert!(matches!(Network::parse("pacs.example/24"), Err(NetworkError::Address(_))));
        assert_eq!(n("10.1.2.3/24").to_string(), "10.1.2.3/24");
    }

    #[test]
    fn callers_and_destinations_are_apart() {
        let net = |s: &str| Network::parse(s).unwrap();
        let config = Config {
            known_aes: vec![
                KnownAe { title: "PACS".into(), host: "127.0.0.1".into(), port: 104 },
                KnownAe { title: "CT".into(), host: "10.9.0.0/16".into(), port: 0 },
            ],
            callers: vec![Caller { title: "PACS".into(), from: vec![net("10.1.0.0/16")] }, Caller { title: "WS".into(), from: vec![net("2001:db8::/32")] }],
            move_destinations: vec![Destination { title: "VIEWER".into(), host: "10.2.0.7".into(), port: 11112 }],
            ..Config::default()
        };
        let access = |peer: &str| Access { config: Arc::new(config.clone()), resolved: Arc::new(Resolved::default()), peer: peer.parse().unwrap() };
        let ok = |peer: &str, ae: &str| access(peer).check("RADHUB", ae, "RADHUB").is_ok();
        assert!(ok("127.0.0.1", "PACS") && ok("10.1.4.4", "PACS") && !ok("10.3.0.1", "PACS"));
        assert!(ok("10.9.1.1", "CT") && !ok("10.8.1.1", "CT"));
        assert!(ok("2001:db8::5", "WS") && !ok("10.1.4.4", "WS"));
        assert!(!ok("10.2.0.7", "VIEWER"), "a move destination only may not call");
        assert_eq!(config.destination("VIEWER").map(|d| d.port), Some(11112));
        assert_eq!(config.destination("PACS").map(|d| d.host), Some("127.0.0.1".into()));
        assert_eq!(config.destination("WS"), None, "a caller only is no destination");
        assert_eq!(config.destination("CT"), None, "a network is no destination");
    }

    #[test]
    fn extended_negotiation_takes_relational_queries_only() {
        // Relational queries, combined date-time, fuzzy PN asked: relational taken.
        assert_eq!(extended_negotiation(sop_classes::STUDY_ROOT_FIND, &[1, 1, 1]), Some(vec![1, 0, 0]));
        assert_eq!(extended_negotiation(sop_classes::PATIENT_ROOT_FIND, &[0]), Some(vec![0]));
        // Seven bytes and more: the answer is as long as the request.
        assert_eq!(extended_negotiation(sop_classes::STUDY_ROOT_FIND, &[1; 9]), Some(vec![1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(extended_negotiation(sop_classes::STUDY_ROOT_MOVE, &[1, 1]), Some(vec![0, 0]));
        assert_eq!(extended_negotiation("1.2.840.10008.5.1.4.1.1.2", &[1]), None);
    }
}
