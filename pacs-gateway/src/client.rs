//! The SCU side radhub needs as an SCP: an association to a C-MOVE
//! destination, and C-STORE sub-operations on any association (the
//! destination's, or the C-GET requestor's own).

use std::collections::BTreeSet;
use std::sync::Arc;

use dicom_ul::association::{AsyncAssociation, AsyncClientAssociation};
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use tokio::net::TcpStream;

use crate::command::{field, tag, Command};
use crate::handler::{Handler, InstanceRef};
use crate::identifier;
use crate::message::{self, Assembler, SendError};
use crate::server::{Config, KnownAe};
use crate::sop_classes::UNCOMPRESSED;
use crate::status::{Category, Status};

/// Most presentation contexts one association may propose (PS3.8 9.3.2.2).
const MAX_CONTEXTS: usize = 128;

/// Syntaxes whose data sets can be re-encoded without decoding pixel data.
const NATIVE: [&str; 4] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"];

/// Opens an association to `dest` (at `addr`, its address as last
/// resolved, else its host name) proposing, for each SOP class to send,
/// the stored transfer syntaxes and the uncompressed ones.
pub(crate) async fn connect(
    config: &Config,
    dest: &KnownAe,
    addr: Option<std::net::IpAddr>,
    instances: &[InstanceRef],
) -> Result<AsyncClientAssociation<TcpStream>, dicom_ul::association::Error> {
    let pairs: BTreeSet<(&str, &str)> = instances.iter().map(|i| (i.sop_class_uid.as_str(), i.transfer_syntax.as_str())).collect();
    let classes: BTreeSet<&str> = pairs.iter().map(|(c, _)| *c).collect();
    let mut o = ClientAssociationOptions::new()
        .calling_ae_title(config.ae_title.as_str())
        .called_ae_title(dest.title.as_str())
        .max_pdu_length(config.max_pdu_length)
        .read_timeout(config.idle_timeout)
        .write_timeout(config.write_timeout)
        .connection_timeout(config.connect_timeout);
    let mut n = 0;
    for class in &classes {
        if n + 1 > MAX_CONTEXTS {
            break;
        }
        o = o.with_presentation_context(*class, UNCOMPRESSED.to_vec());
        n += 1;
    }
    for (class, ts) in &pairs {
        if n + 1 > MAX_CONTEXTS || UNCOMPRESSED.contains(ts) {
            continue;
        }
        o = o.with_presentation_context(*class, vec![*ts]);
        n += 1;
    }
    let host = addr.map_or_else(|| dest.host.clone(), |ip| if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() });
    let mut a = o.establish_with_async(&format!("{}@{host}:{}", dest.title, dest.port)).await?;
    let _ = a.inner_stream().set_nodelay(true);
    Ok(a)
}

/// The result of one C-STORE sub-operation.
#[derive(Debug)]
pub(crate) enum SubResult {
    /// The peer's status (success or warning).
    Done(Status),
    Failed(String),
}

/// Picks a context for an instance: its own transfer syntax if accepted,
/// else an uncompressed one (the data set is then re-encoded).
fn choose<'c>(contexts: &'c [PresentationContextNegotiated], inst: &InstanceRef) -> Option<&'c PresentationContextNegotiated> {
    let ok = |c: &&PresentationContextNegotiated| c.reason == PresentationContextResultReason::Acceptance && c.abstract_syntax == inst.sop_class_uid;
    contexts
        .iter()
        .filter(ok)
        .find(|c| c.transfer_syntax == inst.transfer_syntax)
        .or_else(|| contexts.iter().filter(ok).find(|c| UNCOMPRESSED.contains(&c.transfer_syntax.as_str())))
}

/// The data set of a Part 10 file, in `to`: as stored when it matches;
/// re-encoded when only the encoding differs; otherwise decoded by the
/// application (compressed pixel data), on the blocking pool.
async fn data_set(handler: &Arc<dyn Handler>, file: &[u8], to: &str) -> Result<Vec<u8>, String> {
    let (_, start, from) = dicom_scan::file_meta(file).map_err(|e| e.to_string())?;
    if from == to {
        return Ok(file[start..].to_vec());
    }
    if NATIVE.contains(&from.as_str()) {
        // A whole data set re-encoded: CPU work, off the async workers.
        let (d, from, to) = (file[start..].to_vec(), from.clone(), to.to_owned());
        return tokio::task::spawn_blocking(move || identifier::encode(&identifier::parse(&d, &from)?, &to))
            .await
            .map_err(|_| "re-encoding task failed".to_owned())?;
    }
    let (h, f, t) = (handler.clone(), file.to_vec(), to.to_owned());
    let out = tokio::task::spawn_blocking(move || h.transcode(&f, &t)).await.map_err(|_| "transcoding task failed".to_owned())??;
    let (_, start, got) = dicom_scan::file_meta(&out).map_err(|e| e.to_string())?;
    if got != to {
        return Err(format!("transcoded to {got}, not {to}"));
    }
    Ok(out[start..].to_vec())
}

/// Sends one instance with C-STORE on `assoc` and waits for its response.
/// `cancelled` is set if the peer cancels the enclosing C-GET meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store<A>(
    assoc: &mut A,
    handler: &Arc<dyn Handler>,
    config: &Config,
    contexts: &[PresentationContextNegotiated],
    message_id: u16,
    inst: &InstanceRef,
    file: &[u8],
    originator: Option<(&str, u16)>,
    cancelled: &mut bool,
) -> Result<SubResult, SendError>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let Some(pc) = choose(contexts, inst) else {
        return Ok(SubResult::Failed(format!("no accepted context for {} in {}", inst.sop_class_uid, inst.transfer_syntax)));
    };
    let data = match data_set(handler, file, &pc.transfer_syntax).await {
        Ok(d) => d,
        Err(e) => return Ok(SubResult::Failed(e)),
    };
    let mut rq = Command::request(field::C_STORE_RQ, message_id, &inst.sop_class_uid, true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, &inst.sop_instance_uid);
    rq.set_u16(tag::PRIORITY, 0);
    if let Some((ae, id)) = originator {
        rq.set_str(tag::MOVE_ORIGINATOR_AE, ae);
        rq.set_u16(tag::MOVE_ORIGINATOR_MESSAGE_ID, id);
    }
    message::send(assoc, pc.id, &rq, Some(&data), config.write_timeout).await?;
    let mut asm = Assembler::new(64 << 10);
    loop {
        let answer = tokio::time::timeout(config.dimse_timeout, AsyncAssociation::receive(assoc)).await;
        match answer.map_err(|_| SendError::Unanswered(config.dimse_timeout.as_secs()))?? {
            Pdu::PData { data } => {
                for pdv in data {
                    let Some(m) = asm.push(pdv).map_err(|_| SendError::Unexpected("a malformed message while awaiting C-STORE-RSP"))? else { continue };
                    match m.command.field() {
                        Ok(field::C_STORE_RSP) if m.command.u16(tag::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id) => {
                            let status = m.command.status().unwrap_or(Status::PROCESSING_FAILURE);
                            return Ok(match status.category() {
                                Category::Success | Category::Warning => SubResult::Done(status),
                                _ => SubResult::Failed(format!("status {:04X} {}", status.0, m.command.str(tag::ERROR_COMMENT).unwrap_or_default())),
                            });
                        }
                        Ok(field::C_CANCEL_RQ) => *cancelled = true,
                        _ => return Err(SendError::Unexpected("an unexpected message while awaiting C-STORE-RSP")),
                    }
                }
            }
            Pdu::AbortRQ { .. } => return Err(SendError::Unexpected("A-ABORT during a C-STORE sub-operation")),
            _ => return Err(SendError::Unexpected("an unexpected PDU during a C-STORE sub-operation")),
        }
    }
}
