//! What can go wrong calling a peer, in words an operator can act on.

use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::AssociationRJResult;
use dicom_ul::Pdu;

use crate::message::SendError;

#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    /// No TCP connection, or no answer to the association request, within
    /// the connect timeout.
    #[error("cannot connect to {peer}: {reason}")]
    Connect { peer: String, reason: String },
    #[error("{peer} rejected the association ({}): {reason}", if *permanent { "permanent" } else { "transient" })]
    Rejected { peer: String, permanent: bool, reason: String },
    /// The peer aborted the association or closed the connection.
    #[error("the association ended abruptly: {0}")]
    Aborted(String),
    #[error("no {what} within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
    /// Nothing the peer accepted to send this on; the association stays usable.
    #[error("no presentation context: {0}")]
    NoContext(String),
    /// What the caller asked to send cannot be sent; the association stays usable.
    #[error("cannot send this: {0}")]
    Invalid(String),
    #[error("connection failed: {0}")]
    Io(String),
    /// A `StoreAssociation` used after it was lost.
    #[error("the association was lost earlier: {0}")]
    Lost(String),
}

impl ScuError {
    /// Whether the association this happened on is gone (aborted, timed
    /// out, broken); `NoContext` and `Invalid` concern one request only.
    pub fn ends_association(&self) -> bool {
        !matches!(self, ScuError::NoContext(_) | ScuError::Invalid(_))
    }

    pub(crate) fn timeout(what: &'static str, d: std::time::Duration) -> Self {
        ScuError::Timeout { what, secs: d.as_secs() }
    }
}

/// An error and its causes, joined: dicom-ul's own messages leave the
/// cause (the OS error) out.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// A dicom-ul error on an established association.
/// `waited` names the wait a timeout ended, where known.
pub(crate) fn from_ul(e: UlError, waited: Option<(&'static str, std::time::Duration)>) -> ScuError {
    match e {
        UlError::ConnectionClosed { .. } => ScuError::Aborted("the peer closed the connection".into()),
        UlError::Timeout { .. } if waited.is_some() => waited.map_or_else(|| ScuError::Io(chain(&e)), |(what, d)| ScuError::timeout(what, d)),
        UlError::ReceivePdu { .. } | UlError::UnknownPdu { .. } | UlError::UnexpectedPdu { .. } | UlError::SendTooLongPdu { .. } => {
            ScuError::Protocol(chain(&e))
        }
        e => ScuError::Io(chain(&e)),
    }
}

/// A dicom-ul error while establishing the association with `peer`.
pub(crate) fn from_establish(e: UlError, peer: &str, connect_timeout: std::time::Duration) -> ScuError {
    let connect = |reason: String| ScuError::Connect { peer: peer.to_owned(), reason };
    match e {
        UlError::Rejected { association_rj, .. } => ScuError::Rejected {
            peer: peer.to_owned(),
            permanent: association_rj.result == AssociationRJResult::Permanent,
            reason: association_rj.source.to_string(),
        },
        UlError::NoAcceptedPresentationContexts { .. } => ScuError::NoContext(format!("{peer} accepted none of the presentation contexts proposed")),
        UlError::UnexpectedPdu { pdu, .. } if matches!(*pdu, Pdu::AbortRQ { .. }) => ScuError::Aborted(format!("{peer} aborted the association request")),
        UlError::Timeout { .. } => connect(format!("no association within {} s", connect_timeout.as_secs())),
        UlError::ConnectionClosed { .. } => connect("the peer closed the connection without answering".into()),
        UlError::Connect { .. } | UlError::ToAddress { .. } | UlError::WireSend { .. } | UlError::WireRead { .. } => connect(chain(&e)),
        e => ScuError::Protocol(chain(&e)),
    }
}

/// The SCP's send errors, for the SCU's callers.
impl From<SendError> for ScuError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Ul(e) => from_ul(e, None),
            SendError::Io(e) => ScuError::Io(e.to_string()),
            SendError::Unexpected(what) => ScuError::Protocol(format!("the peer sent {what}")),
            SendError::Stalled(secs) => ScuError::Timeout { what: "progress writing to the peer", secs },
            SendError::Unanswered(secs) => ScuError::Timeout { what: "answer from the peer", secs },
            SendError::Scu(e) => e,
        }
    }
}
