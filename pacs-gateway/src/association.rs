//! One accepted association: receive PDUs, assemble messages, dispatch each
//! to its service, until release, abort, idle timeout or shutdown. A
//! protocol violation aborts this association only.

use std::sync::Arc;

use dicom_ul::association::{Association, AsyncServerAssociation};
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason, UserVariableItem};
use dicom_ul::Pdu;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::command::{field, Command};
use crate::handler::{Answer, Handler};
use crate::message::{self, Assembler, Event, Message, SendError};
use crate::server::{Config, Resolved};
use crate::status::Status;
use crate::{find, retrieve, store};

/// What a service needs to know of the association it runs on.
pub(crate) struct Ctx {
    pub config: Arc<Config>,
    pub handler: Arc<dyn Handler>,
    pub calling_ae: String,
    pub contexts: Vec<PresentationContextNegotiated>,
    /// SOP classes for which the requestor took the SCP role (C-GET's
    /// sub-operations may be sent only on their contexts).
    pub scp_roles: Vec<String>,
    /// Known AEs' addresses, for move destinations.
    pub resolved: Arc<Resolved>,
}

impl Ctx {
    pub fn accepted(&self, id: u8) -> Option<&PresentationContextNegotiated> {
        self.contexts.iter().find(|c| c.id == id && c.reason == PresentationContextResultReason::Acceptance)
    }
}

/// What an association runs over: TCP, or TLS over TCP.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// The TCP connection beneath, to see whether the peer sent anything.
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

pub(crate) type Assoc<S> = AsyncServerAssociation<S>;

pub(crate) async fn run<S: crate::association::Stream>(
    assoc: Assoc<S>,
    config: Arc<Config>,
    handler: Arc<dyn Handler>,
    resolved: Arc<Resolved>,
    mut stop: watch::Receiver<bool>,
) {
    let scp_roles = assoc
        .user_variables()
        .iter()
        .filter_map(|v| match v {
            UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) if roles.scp => Some(uid.trim_end_matches(['\0', ' ']).to_owned()),
            _ => None,
        })
        .collect();
    let ctx =
        Ctx { calling_ae: assoc.peer_ae_title().trim().to_owned(), contexts: assoc.presentation_contexts().to_vec(), config, handler, scp_roles, resolved };
    tracing::debug!(contexts = ctx.contexts.len(), "association established");
    let mut pending = Vec::new();
    session(assoc, &ctx, &mut stop, &mut pending).await;
    // Commitment reports sent here and not answered with success go to a new association.
    for (_, report) in pending {
        crate::commitment::undelivered(&ctx, report).await;
    }
}

/// The association's messages until it ends; `pending` holds the
/// commitment reports sent on it and not yet answered.
async fn session<S: crate::association::Stream>(
    mut assoc: Assoc<S>,
    ctx: &Ctx,
    stop: &mut watch::Receiver<bool>,
    pending: &mut Vec<(u16, crate::commitment::Report)>,
) {
    let mut asm = Assembler::streaming();
    // The C-STORE whose data set is arriving.
    let mut incoming: Option<store::Incoming> = None;
    loop {
        // At shutdown, finish the message in progress, then abort.
        let pdu = tokio::select! {
            r = assoc.receive() => r,
            _ = stop.changed(), if asm.is_idle() => {
                tracing::info!("aborting association: shutting down");
                abort(assoc, ctx.config.write_timeout).await;
                return;
            }
        };
        match pdu {
            Ok(Pdu::PData { data }) => {
                for pdv in data {
                    let step = match asm.push_event(pdv) {
                        Ok(None) => Ok(()),
                        Ok(Some(Event::Message(msg))) => dispatch(&mut assoc, ctx, msg, pending).await,
                        Ok(Some(Event::StoreBegins { pc, command })) => match ctx.accepted(pc) {
                            Some(pc) => {
                                incoming = Some(store::Incoming::begin(ctx, pc, command));
                                Ok(())
                            }
                            None => Err(DispatchError::ContextNotAccepted(pc)),
                        },
                        Ok(Some(Event::StoreData { data, last })) => match incoming.take() {
                            Some(mut inc) => {
                                inc.push(data).await;
                                if last {
                                    inc.finish(&mut assoc, ctx.config.write_timeout).await.map_err(DispatchError::from)
                                } else {
                                    incoming = Some(inc);
                                    Ok(())
                                }
                            }
                            None => Err(DispatchError::Peer("a data set fragment with no C-STORE")),
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "protocol violation: aborting association");
                            abort(assoc, ctx.config.write_timeout).await;
                            return;
                        }
                    };
                    if let Err(e) = step {
                        tracing::warn!(error = %e, "aborting association");
                        abort(assoc, ctx.config.write_timeout).await;
                        return;
                    }
                }
            }
            Ok(Pdu::ReleaseRQ) => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                tracing::debug!("association released");
                return;
            }
            Ok(Pdu::AbortRQ { source }) => {
                tracing::info!(?source, "association aborted by peer");
                return;
            }
            Ok(other) => {
                tracing::warn!(pdu = %other.short_description(), "unexpected PDU: aborting association");
                abort(assoc, ctx.config.write_timeout).await;
                return;
            }
            Err(dicom_ul::association::Error::ConnectionClosed { .. }) => {
                tracing::info!("connection closed without release");
                return;
            }
            Err(e) => {
                // Idle timeout, oversized or malformed PDU.
                tracing::warn!(error = %e, "receive failed: aborting association");
                abort(assoc, ctx.config.write_timeout).await;
                return;
            }
        }
    }
}

/// Sends A-ABORT and closes, giving up after `timeout`: a peer that stopped
/// reading would otherwise hold the association in the abort itself.
async fn abort<S: crate::association::Stream>(assoc: Assoc<S>, timeout: std::time::Duration) {
    let _ = tokio::time::timeout(timeout, assoc.abort()).await;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("message on presentation context {0}, which was not accepted")]
    ContextNotAccepted(u8),
    #[error("peer sent {0}")]
    Peer(&'static str),
}

async fn dispatch<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    msg: Message,
    pending: &mut Vec<(u16, crate::commitment::Report)>,
) -> Result<(), DispatchError> {
    let pc = ctx.accepted(msg.pc_id).ok_or(DispatchError::ContextNotAccepted(msg.pc_id))?.clone();
    let Ok(f) = msg.command.field() else {
        return Err(DispatchError::Peer("a command without Command Field"));
    };
    match f {
        field::C_ECHO_RQ => {
            let rsp = Command::response_to(&msg.command, field::C_ECHO_RSP, Status::SUCCESS, false);
            message::send(assoc, pc.id, &rsp, None, ctx.config.write_timeout).await?;
        }
        // A C-STORE-RQ with its data set is an `Event::StoreBegins`.
        field::C_STORE_RQ => {
            let instance = msg.command.str(crate::command::tag::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
            let a = Answer::failure(Status::CANNOT_UNDERSTAND, "no data set");
            store::respond(assoc, pc.id, &msg.command, &instance, a, ctx.config.write_timeout).await?;
        }
        field::C_FIND_RQ => find::serve(assoc, ctx, &pc, msg).await?,
        field::C_MOVE_RQ => retrieve::serve_move(assoc, ctx, &pc, msg).await?,
        field::C_GET_RQ => retrieve::serve_get(assoc, ctx, &pc, msg).await?,
        field::N_ACTION_RQ if pc.abstract_syntax == crate::commitment::PUSH_MODEL => pending.extend(crate::commitment::serve(assoc, ctx, &pc, msg).await?),
        // A commitment report taken; one refused stays pending, for a new association.
        field::N_EVENT_REPORT_RSP => {
            let id = msg.command.u16(crate::command::tag::MESSAGE_ID_BEING_RESPONDED_TO);
            if msg.command.status() == Some(Status::SUCCESS) {
                pending.retain(|(p, _)| Some(*p) != id);
            } else {
                tracing::info!(status = ?msg.command.status(), "storage commitment report refused on the association");
            }
        }
        // A cancel for an operation already finished: nothing to do.
        field::C_CANCEL_RQ => {}
        // A response (e.g. N-EVENT-REPORT-RSP to a commitment report).
        f if f & 0x8000 != 0 => {
            tracing::debug!(field = format!("{f:04X}"), status = ?msg.command.status(), "response received");
        }
        other => {
            // PS3.7 C.5.5: unrecognised operation.
            let a = Answer::failure(Status(0x0211), "operation not supported");
            message::answer(assoc, pc.id, &msg.command, other | 0x8000, &a, ctx.config.write_timeout).await?;
        }
    }
    Ok(())
}
