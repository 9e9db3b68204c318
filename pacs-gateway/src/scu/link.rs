//! One association radhub requested: establishing it within the connect
//! timeout, message IDs, sending, receiving whole messages within the
//! DIMSE timeout and the operation's deadline, reading responses, and
//! ending it.

use std::collections::VecDeque;
use std::time::Duration;

use dicom_object::InMemDicomObject;
use dicom_ul::association::{AsyncAssociation, AsyncClientAssociation};
use dicom_ul::pdu::{AbortRQSource, PresentationContextNegotiated, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use tokio::time::Instant;

use super::connection::Connection;
use super::error::{from_establish, from_ul};
use super::{Peer, ScuConfig, ScuError};
use crate::command::{tag, Command};
use crate::handler::Answer;
use crate::message::{self, Assembler, Message};

/// dicom-ul's own socket timeouts sit this far past radhub's, so that
/// radhub's (which know what was awaited) fire first.
const BACKSTOP: Duration = Duration::from_secs(1);

/// Most presentation contexts one association may propose (PS3.8 9.3.2.2).
pub(crate) const MAX_CONTEXTS: usize = 128;

/// How long one wait on the peer may last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub dimse: Duration,
    pub deadline: Instant,
    pub operation: Duration,
}

impl Limits {
    pub fn new(dimse: Duration, operation: Duration) -> Self {
        Limits { dimse, deadline: Instant::now() + operation, operation }
    }
}

/// Whole messages from P-DATA, bounded by the assembler's limits; a PDU
/// may end one message and start the next, so finished ones queue here.
pub(crate) struct Inbox {
    asm: Assembler,
    ready: VecDeque<Message>,
}

impl Inbox {
    pub fn new(max_data: usize) -> Self {
        Inbox { asm: Assembler::lenient(max_data), ready: VecDeque::new() }
    }

    /// The next message, awaited for at most the DIMSE timeout and never
    /// past the deadline.
    pub async fn next<A, S>(&mut self, assoc: &mut A, limits: &Limits, what: &'static str) -> Result<Message, ScuError>
    where
        A: AsyncAssociation<S> + Send,
        S: crate::association::Stream,
    {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Ok(m);
            }
            let now = Instant::now();
            let (until, what, waited) = if now + limits.dimse <= limits.deadline {
                (now + limits.dimse, what, limits.dimse)
            } else {
                (limits.deadline, "end of the operation", limits.operation)
            };
            let pdu = match tokio::time::timeout_at(until, AsyncAssociation::receive(assoc)).await {
                Err(_) => return Err(ScuError::timeout(what, waited)),
                Ok(r) => r.map_err(|e| from_ul(e, Some((what, waited))))?,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Some(m) = self.asm.push(pdv).map_err(|e| ScuError::Protocol(e.to_string()))? {
                            self.ready.push_back(m);
                        }
                    }
                }
                Pdu::AbortRQ { source } => {
                    let by = match source {
                        AbortRQSource::ServiceUser => "service user".to_owned(),
                        AbortRQSource::ServiceProvider(r) => format!("service provider: {r}"),
                        AbortRQSource::Reserved => "reserved source".to_owned(),
                    };
                    return Err(ScuError::Aborted(format!("A-ABORT from the peer ({by})")));
                }
                Pdu::ReleaseRQ => return Err(ScuError::Protocol("an A-RELEASE request in the middle of an operation".into())),
                other => return Err(ScuError::Protocol(format!("an unexpected {}", other.short_description()))),
            }
        }
    }
}

/// The response to request `id` on context `pc`, of `field`, or a protocol error.
pub(crate) fn expect_response(m: &Message, pc: u8, field: u16, id: u16, name: &str) -> Result<(), ScuError> {
    let got = m.command.field().map_err(|e| ScuError::Protocol(e.to_string()))?;
    if got != field {
        return Err(ScuError::Protocol(format!("command {got:04X} while awaiting a {name}")));
    }
    if m.pc_id != pc || m.command.u16(tag::MESSAGE_ID_BEING_RESPONDED_TO) != Some(id) {
        return Err(ScuError::Protocol(format!("a {name} to another request")));
    }
    Ok(())
}

/// The status and Error Comment of a response.
pub(crate) fn answer_of(c: &Command) -> Result<Answer, ScuError> {
    let status = c.status().ok_or_else(|| ScuError::Protocol("a response without a Status".into()))?;
    Ok(Answer { status, comment: c.str(tag::ERROR_COMMENT).filter(|s| !s.is_empty()) })
}

/// An identifier the peer sent, read off the runtime.
pub(crate) async fn parse(data: Vec<u8>, ts: &str) -> Result<InMemDicomObject, ScuError> {
    match crate::identifier::parse_off_runtime(data, ts).await {
        Some(r) => r.map_err(|e| ScuError::Protocol(format!("an unreadable identifier: {e}"))),
        None => Err(ScuError::Protocol("reading an identifier failed".into())),
    }
}

pub(crate) struct Link {
    pub assoc: AsyncClientAssociation<Connection>,
    /// `AE@host:port`, for messages.
    pub peer: String,
    /// The AE title called.
    pub peer_ae: String,
    pub cfg: ScuConfig,
    pub inbox: Inbox,
    next_id: u16,
}

impl Link {
    /// Requests an association proposing `contexts` (abstract syntax,
    /// transfer syntaxes), offering to take the SCP role for `scp_roles`.
    pub async fn open(cfg: &ScuConfig, peer: &Peer, contexts: &[(String, Vec<String>)], scp_roles: &[String], max_data: usize) -> Result<Link, ScuError> {
        let name = peer.to_string();
        if contexts.len() > MAX_CONTEXTS {
            return Err(ScuError::Invalid(format!("{} presentation contexts: at most {MAX_CONTEXTS} fit one association", contexts.len())));
        }
        let mut o = ClientAssociationOptions::new()
            .calling_ae_title(cfg.calling_ae.clone())
            .called_ae_title(peer.ae_title.clone())
            .implementation(crate::store::IMPLEMENTATION_CLASS_UID, Some(crate::store::IMPLEMENTATION_VERSION_NAME))
            .max_pdu_length(cfg.max_pdu_length)
            .strict(true)
            .connection_timeout(cfg.connect_timeout)
            .read_timeout(cfg.dimse_timeout + BACKSTOP)
            .write_timeout(cfg.write_timeout + BACKSTOP);
        for (class, ts) in contexts {
            o = o.with_presentation_context(class.clone(), ts.clone());
        }
        for class in scp_roles {
            o = o.with_role_selection(class.clone(), false, true);
        }
        // The connection (TLS handshake included) and the A-ASSOCIATE-AC together, within the connect timeout.
        let establish = async {
            let conn = super::connection::connect(peer).await?;
            o.establish_on_async(conn).await.map_err(|e| from_establish(e, &name, cfg.connect_timeout))
        };
        let assoc = match tokio::time::timeout(cfg.connect_timeout, establish).await {
            Err(_) => return Err(ScuError::Connect { peer: name, reason: format!("no association within {} s", cfg.connect_timeout.as_secs()) }),
            Ok(r) => r?,
        };
        let link = Link { assoc, peer: name, peer_ae: peer.ae_title.clone(), cfg: cfg.clone(), inbox: Inbox::new(max_data), next_id: 1 };
        tracing::debug!(peer = %link.peer, contexts = link.assoc.presentation_contexts().len(), "association established");
        Ok(link)
    }

    /// A fresh message ID: 1, 2, ... 65535, then 1 again.
    pub fn next_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = id.checked_add(1).unwrap_or(1);
        id
    }

    pub fn accepted(&self) -> &[PresentationContextNegotiated] {
        self.assoc.presentation_contexts()
    }

    /// The accepted context for `class` (the first, if several).
    pub fn context(&self, class: &str) -> Result<PresentationContextNegotiated, ScuError> {
        self.accepted()
            .iter()
            .find(|c| c.abstract_syntax == class && c.reason == PresentationContextResultReason::Acceptance)
            .cloned()
            .ok_or_else(|| ScuError::NoContext(format!("{} did not accept {}", self.peer, crate::sop_classes::name(class))))
    }

    pub async fn send(&mut self, pc: u8, command: &Command, data: Option<&[u8]>) -> Result<(), ScuError> {
        Ok(message::send(&mut self.assoc, pc, command, data, self.cfg.write_timeout).await?)
    }

    pub async fn receive(&mut self, limits: &Limits, what: &'static str) -> Result<Message, ScuError> {
        self.inbox.next(&mut self.assoc, limits, what).await
    }

    /// Ends the association after `result`: released after a success (a
    /// failed release does not undo the outcome), aborted after an error.
    pub async fn finish<T>(self, result: Result<T, ScuError>) -> Result<T, ScuError> {
        match result {
            Ok(v) => {
                if let Err(e) = self.release().await {
                    tracing::debug!(error = %e, "release after the operation failed");
                }
                Ok(v)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// A-RELEASE, the answer awaited for at most the DIMSE timeout.
    pub async fn release(self) -> Result<(), ScuError> {
        let d = self.cfg.dimse_timeout;
        match tokio::time::timeout(d, self.assoc.release()).await {
            Err(_) => Err(ScuError::timeout("answer to the release request", d)),
            Ok(r) => r.map_err(|e| from_ul(e, Some(("answer to the release request", d)))),
        }
    }

    /// A-ABORT, given up on after the write timeout.
    pub async fn abort(self) {
        let _ = tokio::time::timeout(self.cfg.write_timeout, self.assoc.abort()).await;
    }
}
