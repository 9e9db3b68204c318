//! Storage Commitment Push Model SCP (PS3.4 Annex J): N-ACTION-RQ asks
//! whether the listed instances are safely held; radhub answers N-ACTION-RSP,
//! then reports the outcome with N-EVENT-REPORT-RQ on the same association
//! (event 1: all committed; event 2: some failed, with reasons). A report
//! the requestor did not take there (it released first, or answered with a
//! failure) goes to the application (`Handler::commitment_undelivered`),
//! which keeps it and sends it on a new association (PS3.4 J.3.3.1.2,
//! `scu::report_commitment`), as with `Config::commitment_on_new_association`
//! for modalities that ask for it.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::PresentationContextNegotiated;

use crate::association::{Assoc, Ctx};
use crate::command::{field, tag, Command};
use crate::identifier;
use crate::message::{self, Message, SendError};
use crate::status::Status;

pub const PUSH_MODEL: &str = "1.2.840.10008.1.20.1";
pub const PUSH_MODEL_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

const TRANSACTION_UID: Tag = Tag(0x0008, 0x1195);
const REFERENCED_SOP_SEQUENCE: Tag = Tag(0x0008, 0x1199);
const FAILED_SOP_SEQUENCE: Tag = Tag(0x0008, 0x1198);
const REFERENCED_SOP_CLASS_UID: Tag = Tag(0x0008, 0x1150);
const REFERENCED_SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x1155);
const FAILURE_REASON: Tag = Tag(0x0008, 0x1197);
/// Action Type ID (0000,1008) and Event Type ID (0000,1002).
const ACTION_TYPE_ID: u16 = 0x1008;
const EVENT_TYPE_ID: u16 = 0x1002;
/// Failure Reasons (PS3.4 J.3.3.1): 0112H no such object instance,
/// 0110H processing failure.
const NO_SUCH_INSTANCE: u16 = 0x0112;
const PROCESSING_FAILURE: u16 = 0x0110;

fn text(o: &InMemDicomObject, t: Tag) -> Option<String> {
    o.get(t).and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
}

fn reference(class: &str, instance: &str, reason: Option<u16>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(REFERENCED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(class)));
    item.put(DataElement::new(REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(instance)));
    if let Some(r) = reason {
        item.put(DataElement::new(FAILURE_REASON, VR::US, PrimitiveValue::from(r)));
    }
    item
}

/// A commitment result (the N-EVENT-REPORT's event type and data set,
/// encoded in `transfer_syntax`) to send the requestor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub transaction_uid: String,
    pub event_type: u16,
    pub data: Vec<u8>,
    pub transfer_syntax: String,
}

/// The N-EVENT-REPORT-RQ command of a report.
pub(crate) fn event_command(message_id: u16, event_type: u16) -> Command {
    let mut ev = Command::default();
    ev.set_u16(tag::COMMAND_FIELD, field::N_EVENT_REPORT_RQ)
        .set_u16(tag::MESSAGE_ID, message_id)
        .set_u16(tag::COMMAND_DATA_SET_TYPE, crate::command::DATA_SET_PRESENT)
        .set_str(tag::AFFECTED_SOP_CLASS_UID, PUSH_MODEL)
        .set_str(tag::AFFECTED_SOP_INSTANCE_UID, PUSH_MODEL_INSTANCE)
        .set_u16(EVENT_TYPE_ID, event_type);
    ev
}

/// Answers one N-ACTION-RQ. Returns the report sent on this association,
/// with its message ID, until the requestor's N-EVENT-REPORT-RSP; a report
/// kept for a new association goes to the handler at once.
pub(crate) async fn serve<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    pc: &PresentationContextNegotiated,
    msg: Message,
) -> Result<Option<(u16, Report)>, SendError> {
    let rq = &msg.command;
    let mut rsp = Command::default();
    rsp.set_u16(tag::COMMAND_FIELD, field::N_ACTION_RSP)
        .set_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id())
        .set_u16(tag::COMMAND_DATA_SET_TYPE, crate::command::NO_DATA_SET)
        .set_str(tag::AFFECTED_SOP_CLASS_UID, PUSH_MODEL)
        .set_str(tag::AFFECTED_SOP_INSTANCE_UID, PUSH_MODEL_INSTANCE)
        .set_u16(ACTION_TYPE_ID, 1);
    let ts = pc.transfer_syntax.clone();
    let request = match (msg.data_overflow, msg.data.clone()) {
        (true, _) => return refuse(assoc, ctx, pc.id, rsp, Status::OUT_OF_RESOURCES, "request over 1 MiB").await.map(|()| None),
        (false, None) => None,
        // Parsed off the async workers, as every identifier.
        (false, Some(d)) => Some(tokio::task::spawn_blocking(move || identifier::parse(&d, &ts)).await.unwrap_or_else(|_| Err("parse task failed".into()))),
    };
    let (transaction, refs) = match request {
        Some(Ok(o)) if rq.str(tag::REQUESTED_SOP_CLASS_UID).as_deref() == Some(PUSH_MODEL) && rq.u16(ACTION_TYPE_ID) == Some(1) => {
            let refs: Vec<(String, String)> = o
                .get(REFERENCED_SOP_SEQUENCE)
                .and_then(|e| e.items())
                .unwrap_or_default()
                .iter()
                .filter_map(|i| Some((text(i, REFERENCED_SOP_CLASS_UID)?, text(i, REFERENCED_SOP_INSTANCE_UID)?)))
                .collect();
            match text(&o, TRANSACTION_UID) {
                Some(t) if !refs.is_empty() => (t, refs),
                _ => return refuse(assoc, ctx, pc.id, rsp, Status(0x0120), "no Transaction UID or references").await.map(|()| None),
            }
        }
        Some(Err(e)) => return refuse(assoc, ctx, pc.id, rsp, Status::CANNOT_UNDERSTAND, &e).await.map(|()| None),
        _ => return refuse(assoc, ctx, pc.id, rsp, Status(0x0123), "not a storage commitment request").await.map(|()| None),
    };
    rsp.set_u16(tag::STATUS, Status::SUCCESS.0);
    message::send(assoc, pc.id, &rsp, None, ctx.config.write_timeout).await?;

    let (handler, asked, ae) = (ctx.handler.clone(), refs.clone(), ctx.calling_ae.clone());
    let held = tokio::task::spawn_blocking(move || handler.committed(&ae, &asked)).await.unwrap_or_else(|_| vec![Some(PROCESSING_FAILURE); refs.len()]);
    let mut report = InMemDicomObject::new_empty();
    report.put(DataElement::new(TRANSACTION_UID, VR::UI, PrimitiveValue::from(transaction.as_str())));
    // A reference the handler gave no answer for is not vouched for.
    let outcomes = refs.iter().zip(held.iter().copied().chain(std::iter::repeat(Some(NO_SUCH_INSTANCE))));
    let (ok, failed): (Vec<_>, Vec<_>) = outcomes.partition(|(_, h)| h.is_none());
    let seq = |items: Vec<InMemDicomObject>, t: Tag| DataElement::new(t, VR::SQ, dicom_core::value::DataSetSequence::from(items));
    if !ok.is_empty() {
        report.put(seq(ok.iter().map(|((c, i), _)| reference(c, i, None)).collect(), REFERENCED_SOP_SEQUENCE));
    }
    if !failed.is_empty() {
        report.put(seq(failed.iter().map(|((c, i), why)| reference(c, i, *why)).collect(), FAILED_SOP_SEQUENCE));
    }
    let data = identifier::encode(&report, &pc.transfer_syntax).map_err(|e| SendError::Io(std::io::Error::other(e)))?;
    let event_type = if failed.is_empty() { 1 } else { 2 };
    tracing::info!(transaction, committed = ok.len(), failed = failed.len(), "storage commitment");
    let report = Report { transaction_uid: transaction, event_type, data, transfer_syntax: pc.transfer_syntax.clone() };
    if ctx.config.commitment_on_new_association {
        undelivered(ctx, report).await;
        return Ok(None);
    }
    let id = rq.message_id().wrapping_add(0x4000);
    // The N-EVENT-REPORT-RSP comes back through the association loop.
    message::send(assoc, pc.id, &event_command(id, event_type), Some(&report.data), ctx.config.write_timeout).await?;
    Ok(Some((id, report)))
}

/// Hands a report the requestor has not taken to the application, to be
/// sent on a new association.
pub(crate) async fn undelivered(ctx: &Ctx, report: Report) {
    tracing::info!(transaction = %report.transaction_uid, calling_ae = %ctx.calling_ae, "storage commitment report for a new association");
    let (handler, ae) = (ctx.handler.clone(), ctx.calling_ae.clone());
    let _ = tokio::task::spawn_blocking(move || handler.commitment_undelivered(&ae, report)).await;
}

async fn refuse<S: crate::association::Stream>(assoc: &mut Assoc<S>, ctx: &Ctx, pc: u8, mut rsp: Command, status: Status, why: &str) -> Result<(), SendError> {
    rsp.set_u16(tag::STATUS, status.0);
    rsp.set_str(tag::ERROR_COMMENT, &crate::store::comment(why));
    message::send(assoc, pc, &rsp, None, ctx.config.write_timeout).await
}
