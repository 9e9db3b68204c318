//! DIMSE service user: radhub calling other AEs (C-ECHO, C-STORE, C-FIND,
//! C-MOVE, C-GET), on the same command, message and identifier code as the
//! SCP side. Every wait on the peer is bounded.
//!
//! ```text
//! echo(&cfg, &peer) -> Answer
//! find(&cfg, &peer, model, &identifier, |m| ControlFlow) -> FindOutcome
//! move_to(&cfg, &peer, model, &identifier, "DEST_AE", |p| ControlFlow) -> RetrieveOutcome
//! get(&cfg, &peer, model, &identifier, &storage, sink, |p| ControlFlow) -> RetrieveOutcome
//! StoreAssociation::connect(&cfg, &peer, &classes)?.store(&part10) -> Answer
//! ```
//!
//! - Each call of `echo`, `find`, `move_to` and `get` opens one association,
//!   runs one operation and releases it (aborts it after a failure).
//!   `StoreAssociation` keeps one open for many C-STOREs, `FindAssociation`
//!   for many C-FINDs.
//! - The peer's final status comes back as it sent it, with its Error
//!   Comment (`Answer`, or the outcome's `status` and `comment`): a failure
//!   status is an outcome, not an `Err`. `Err(ScuError)` means the exchange
//!   itself failed (no connection, rejection, abort, timeout, protocol
//!   violation, nothing acceptable to send on).
//! - Limits (`ScuConfig`): `connect_timeout` covers the TCP connection and
//!   the association answer; `write_timeout` each step of a write;
//!   `dimse_timeout` each message awaited from the peer; `operation_timeout`
//!   the whole of one echo, find, move, get or store.
//! - Memory: C-FIND matches are handed over one at a time as they arrive,
//!   never collected; identifiers are held up to 1 MiB, C-GET data sets up
//!   to `max_data_set_bytes`; anything larger is read through and refused.
//! - Runs on any tokio runtime; CPU work (reading the peer's identifiers,
//!   re-encoding, transcoding) and the sink go to the blocking pool.
//! - Message IDs increase per association. A callback returning
//!   `ControlFlow::Break` sends C-CANCEL; the call then waits for the final
//!   response, as PS3.4 C.4 asks, and reports `cancelled`.

use std::time::Duration;

mod commitment;
mod connection;
mod echo;
mod error;
mod find;
pub(crate) mod link;
mod retrieve;
pub(crate) mod store;

pub use commitment::report_commitment;
pub use echo::echo;
pub use error::ScuError;
pub use find::{find, FindAssociation, FindOutcome};
pub use retrieve::{get, move_to, Progress, RetrieveOutcome, StoreSink};
pub use store::{classes_of, describe, StoreAssociation, StoreOptions, Transcode};

pub use crate::handler::{Answer, InstanceRef, Model, StoreRequest};

/// The AE called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// DICOM over TLS (PS3.15 B.9 BCP 195) to this peer, when set.
    pub tls: Option<PeerTls>,
}

/// How radhub talks TLS to one peer: the client configuration (the CA its
/// certificate must chain to, radhub's own certificate if it asks for one)
/// and the name the certificate must carry.
#[derive(Clone)]
pub struct PeerTls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub server_name: String,
}

impl PartialEq for PeerTls {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for PeerTls {}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer reached over plain TCP.
    pub fn new(ae_title: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Peer { ae_title: ae_title.into(), host: host.into(), port, tls: None }
    }

    pub fn with_tls(mut self, tls: Option<PeerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// `AE@host:port`, as dicom-ul takes it (an IPv6 address in brackets).
    fn address(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{}@{host}:{}", self.ae_title, self.port)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

impl From<&crate::server::KnownAe> for Peer {
    fn from(k: &crate::server::KnownAe) -> Self {
        Peer::new(k.title.clone(), k.host.clone(), k.port)
    }
}

#[derive(Clone, Debug)]
pub struct ScuConfig {
    pub calling_ae: String,
    /// The largest PDU radhub takes from the peer.
    pub max_pdu_length: u32,
    /// Time to have an association: TCP connection and the peer's answer.
    pub connect_timeout: Duration,
    /// Each step of a write must progress within this.
    pub write_timeout: Duration,
    /// Time the peer has for each message awaited from it.
    pub dimse_timeout: Duration,
    /// The longest one echo, find, move, get or store may take.
    pub operation_timeout: Duration,
    /// The largest data set a C-GET sub-operation may bring.
    pub max_data_set_bytes: usize,
}

impl Default for ScuConfig {
    fn default() -> Self {
        ScuConfig {
            calling_ae: "RADHUB".into(),
            max_pdu_length: 256 << 10,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            dimse_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(3600),
            max_data_set_bytes: 512 << 20,
        }
    }
}

/// The SCP's settings for the associations it opens itself (C-MOVE destinations).
impl From<&crate::server::Config> for ScuConfig {
    fn from(c: &crate::server::Config) -> Self {
        ScuConfig {
            calling_ae: c.ae_title.clone(),
            max_pdu_length: c.max_pdu_length,
            connect_timeout: c.connect_timeout,
            write_timeout: c.write_timeout,
            dimse_timeout: c.dimse_timeout,
            operation_timeout: c.operation_timeout,
            // A C-GET's sub-operations are held whole.
            max_data_set_bytes: c.max_data_set_bytes.min(ScuConfig::default().max_data_set_bytes),
        }
    }
}
