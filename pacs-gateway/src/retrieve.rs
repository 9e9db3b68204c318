//! C-MOVE and C-GET SCP: check the identifier's unique keys, select
//! instances, send each with a C-STORE sub-operation (to the move
//! destination, or back on the requestor's own association on a context
//! for which it took the SCP role), report pending counts after each, and
//! end with the status PS3.4 C.4.2.1.5 / C.4.3.1.4 prescribe and the
//! Failed SOP Instance UID List. Counts are kept in full and saturate at
//! 65535 on the wire.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};

use crate::association::{Assoc, Ctx};
use crate::command::{field, tag, Command};
use crate::handler::{Answer, InstanceRef, Model};
use crate::identifier::{self, FAILED_SOP_INSTANCE_UID_LIST};
use crate::message::{self, Interrupt, Message, SendError};
use crate::scu::link::Limits;
use crate::scu::store::{store_on, StoreAssociation, StoreOptions, Transcode};
use crate::scu::{Peer, ScuConfig, ScuError};
use crate::sop_classes;
use crate::status::{Category, Status};

/// The result of one C-STORE sub-operation.
#[derive(Debug)]
enum SubResult {
    /// The peer's status (success or warning).
    Done(Status),
    Failed(String),
}

impl SubResult {
    fn of(r: Result<Answer, ScuError>) -> SubResult {
        match r {
            Ok(a) if matches!(a.status.category(), Category::Success | Category::Warning) => SubResult::Done(a.status),
            Ok(a) => SubResult::Failed(format!("status {:04X} {}", a.status.0, a.comment.unwrap_or_default())),
            Err(e) => SubResult::Failed(e.to_string()),
        }
    }
}

/// The application's decoder, for peers that take no compressed syntax.
fn transcoder(ctx: &Ctx) -> Transcode {
    let h = ctx.handler.clone();
    std::sync::Arc::new(move |file: &[u8], ts: &str| h.transcode(file, ts))
}

#[derive(Default)]
struct Counts {
    remaining: usize,
    completed: usize,
    failed: usize,
    warning: usize,
    failed_uids: Vec<String>,
}

/// A count as DIMSE carries it (US): saturated, never wrapped.
fn wire(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Counts {
    fn record(&mut self, inst: &InstanceRef, r: &SubResult) {
        self.remaining = self.remaining.saturating_sub(1);
        match r {
            SubResult::Done(s) if s.category() == Category::Warning => self.warning += 1,
            SubResult::Done(_) => self.completed += 1,
            SubResult::Failed(why) => {
                tracing::warn!(sop = %inst.sop_instance_uid, %why, "sub-operation failed");
                self.failed += 1;
                self.failed_uids.push(inst.sop_instance_uid.clone());
            }
        }
    }

    fn final_status(&self) -> Status {
        match (self.completed, self.failed, self.warning) {
            (_, 0, 0) => Status::SUCCESS,
            (0, _, 0) => Status::OUT_OF_RESOURCES_SUB_OPERATIONS,
            _ => Status::SUB_OPERATIONS_WARNING,
        }
    }

    fn fill(&self, c: &mut Command, with_remaining: bool) {
        if with_remaining {
            c.set_u16(tag::REMAINING, wire(self.remaining));
        }
        c.set_u16(tag::COMPLETED, wire(self.completed));
        c.set_u16(tag::FAILED, wire(self.failed));
        c.set_u16(tag::WARNING, wire(self.warning));
    }
}

fn model_of(pc: &PresentationContextNegotiated, patient: &str, study: &str) -> Option<Model> {
    match pc.abstract_syntax.as_str() {
        s if s == patient => Some(Model::PatientRoot),
        s if s == study => Some(Model::StudyRoot),
        _ => None,
    }
}

/// The instances an identifier selects, or the answer that ends the request.
async fn select(ctx: &Ctx, model: Model, msg: Message, ts: &str) -> Result<Vec<InstanceRef>, Answer> {
    let query = identifier::query(ctx, model, msg.data, msg.data_overflow, ts).await?;
    identifier::check_unique_keys(&query)?;
    let handler = ctx.handler.clone();
    tokio::task::spawn_blocking(move || handler.select(&query)).await.unwrap_or_else(|_| Err(Answer::failure(Status::OUT_OF_RESOURCES, "query task failed")))
}

async fn open(ctx: &Ctx, inst: &InstanceRef) -> Result<Vec<u8>, String> {
    let (handler, inst) = (ctx.handler.clone(), inst.clone());
    tokio::task::spawn_blocking(move || handler.open(&inst)).await.unwrap_or_else(|_| Err("open task failed".into()))
}

pub(crate) async fn serve_move<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    pc: &PresentationContextNegotiated,
    msg: Message,
) -> Result<(), SendError> {
    let rq = msg.command.clone();
    let rq = &rq;
    let rsp_field = field::C_MOVE_RSP;
    let Some(model) = model_of(pc, sop_classes::PATIENT_ROOT_MOVE, sop_classes::STUDY_ROOT_MOVE) else {
        return refuse(assoc, ctx, pc.id, rq, rsp_field, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-MOVE model")).await;
    };
    let dest_title = rq.str(tag::MOVE_DESTINATION).unwrap_or_default();
    let Some(dest) = ctx.config.destination(&dest_title) else {
        return refuse(assoc, ctx, pc.id, rq, rsp_field, Answer::failure(Status::MOVE_DESTINATION_UNKNOWN, format!("unknown destination {dest_title:?}")))
            .await;
    };
    let instances = match select(ctx, model, msg, &pc.transfer_syntax).await {
        Ok(i) => i,
        Err(a) => return refuse(assoc, ctx, pc.id, rq, rsp_field, a).await,
    };
    tracing::info!(destination = %dest.title, instances = instances.len(), "C-MOVE");
    if instances.is_empty() {
        return finish(assoc, ctx, pc, rq, rsp_field, &Counts::default(), Status::SUCCESS).await;
    }
    // Its address as last resolved, else its host name.
    let host = match ctx.resolved.addrs(&dest.host).first() {
        Some(ip) => ip.to_string(),
        None => dest.host.clone(),
    };
    let peer = Peer::new(dest.title.clone(), host, dest.port);
    let mut out = match StoreAssociation::connect(&ScuConfig::from(ctx.config.as_ref()), &peer, &crate::scu::classes_of(&instances)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(destination = %dest.title, error = %e, "cannot open association to move destination");
            let a = Answer::failure(Status::OUT_OF_RESOURCES_SUB_OPERATIONS, "cannot reach the move destination");
            return refuse(assoc, ctx, pc.id, rq, rsp_field, a).await;
        }
    };
    let mut counts = Counts { remaining: instances.len(), ..Default::default() };
    let opts = StoreOptions { move_originator: Some((ctx.calling_ae.clone(), rq.message_id())), transcode: Some(transcoder(ctx)) };
    let deadline = tokio::time::Instant::now() + ctx.config.operation_timeout;
    let mut cancelled = false;
    for (n, inst) in instances.iter().enumerate() {
        if message::interrupted(assoc).await? == Interrupt::Cancel {
            cancelled = true;
            break;
        }
        let r = match open(ctx, inst).await {
            Ok(file) => match tokio::time::timeout_at(deadline, out.store_with(&file, &opts)).await {
                Ok(r) => SubResult::of(r),
                Err(_) => SubResult::Failed(format!("the C-MOVE ran past {} s", ctx.config.operation_timeout.as_secs())),
            },
            Err(e) => SubResult::Failed(e),
        };
        if !out.is_usable() {
            // The destination's association broke or stalled: what remains fails.
            tracing::warn!(destination = %dest.title, error = ?r, "move destination association failed");
            let why = match &r {
                SubResult::Failed(e) => e.clone(),
                SubResult::Done(_) => "destination association lost".into(),
            };
            for rest in &instances[n..] {
                counts.record(rest, &SubResult::Failed(format!("destination association lost: {why}")));
            }
            break;
        }
        counts.record(inst, &r);
        if counts.remaining > 0 {
            pending(assoc, ctx, pc.id, rq, rsp_field, &counts).await?;
        }
    }
    let _ = out.release().await;
    finish(assoc, ctx, pc, rq, rsp_field, &counts, if cancelled { Status::CANCEL } else { counts.final_status() }).await
}

pub(crate) async fn serve_get<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    pc: &PresentationContextNegotiated,
    msg: Message,
) -> Result<(), SendError> {
    let rq = msg.command.clone();
    let rq = &rq;
    let rsp_field = field::C_GET_RSP;
    let Some(model) = model_of(pc, sop_classes::PATIENT_ROOT_GET, sop_classes::STUDY_ROOT_GET) else {
        return refuse(assoc, ctx, pc.id, rq, rsp_field, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-GET model")).await;
    };
    let instances = match select(ctx, model, msg, &pc.transfer_syntax).await {
        Ok(i) => i,
        Err(a) => return refuse(assoc, ctx, pc.id, rq, rsp_field, a).await,
    };
    tracing::info!(instances = instances.len(), "C-GET");
    // Sub-operations go only where the requestor took the SCP role (PS3.4 C.4.3.1.3.1).
    let contexts: Vec<PresentationContextNegotiated> = ctx
        .contexts
        .iter()
        .filter(|c| c.reason == PresentationContextResultReason::Acceptance && ctx.scp_roles.contains(&c.abstract_syntax))
        .cloned()
        .collect();
    let mut counts = Counts { remaining: instances.len(), ..Default::default() };
    let limits = Limits::new(ctx.config.dimse_timeout, ctx.config.operation_timeout);
    let deadline = limits.deadline;
    let opts = StoreOptions { move_originator: None, transcode: Some(transcoder(ctx)) };
    let mut cancelled = false;
    for (n, inst) in instances.iter().enumerate() {
        if cancelled || message::interrupted(assoc).await? == Interrupt::Cancel {
            cancelled = true;
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            for rest in &instances[n..] {
                counts.record(rest, &SubResult::Failed(format!("the C-GET ran past {} s", ctx.config.operation_timeout.as_secs())));
            }
            break;
        }
        let r = if !contexts.iter().any(|c| c.abstract_syntax == inst.sop_class_uid) {
            SubResult::Failed(format!("the requestor did not take the SCP role for {}", inst.sop_class_uid))
        } else {
            match open(ctx, inst).await {
                Ok(file) => {
                    let id = 0x8000 | wire(n + 1);
                    let sub = store_on(assoc, &contexts, &limits, ctx.config.write_timeout, id, &file, &opts, Some(&mut cancelled));
                    // A sub-operation cut off mid-way leaves the association unusable: it is aborted.
                    match tokio::time::timeout_at(deadline, sub).await {
                        Ok(Err(e)) if e.ends_association() => return Err(e.into()),
                        Ok(r) => SubResult::of(r),
                        Err(_) => return Err(SendError::Stalled(ctx.config.operation_timeout.as_secs())),
                    }
                }
                Err(e) => SubResult::Failed(e),
            }
        };
        counts.record(inst, &r);
        if counts.remaining > 0 && !cancelled {
            pending(assoc, ctx, pc.id, rq, rsp_field, &counts).await?;
        }
    }
    finish(assoc, ctx, pc, rq, rsp_field, &counts, if cancelled { Status::CANCEL } else { counts.final_status() }).await
}

async fn pending<A, S>(assoc: &mut A, ctx: &Ctx, pc: u8, rq: &Command, rsp_field: u16, counts: &Counts) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let mut rsp = Command::response_to(rq, rsp_field, Status::PENDING, false);
    counts.fill(&mut rsp, true);
    message::send(assoc, pc, &rsp, None, ctx.config.write_timeout).await
}

/// The final response; failures name their instances in an identifier.
async fn finish<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    pc: &PresentationContextNegotiated,
    rq: &Command,
    rsp_field: u16,
    counts: &Counts,
    status: Status,
) -> Result<(), SendError> {
    let identifier = (!counts.failed_uids.is_empty())
        .then(|| {
            let mut o = InMemDicomObject::new_empty();
            o.put(DataElement::new(FAILED_SOP_INSTANCE_UID_LIST, VR::UI, PrimitiveValue::Strs(counts.failed_uids.iter().cloned().collect())));
            identifier::encode(&o, &pc.transfer_syntax).ok()
        })
        .flatten();
    let mut rsp = Command::response_to(rq, rsp_field, status, identifier.is_some());
    counts.fill(&mut rsp, status == Status::CANCEL);
    message::send(assoc, pc.id, &rsp, identifier.as_deref(), ctx.config.write_timeout).await
}

async fn refuse<S: crate::association::Stream>(assoc: &mut Assoc<S>, ctx: &Ctx, pc: u8, rq: &Command, rsp_field: u16, a: Answer) -> Result<(), SendError> {
    message::answer(assoc, pc, rq, rsp_field, &a, ctx.config.write_timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_past_65535_saturate_instead_of_wrapping() {
        let inst = InstanceRef { sop_class_uid: "1.2".into(), sop_instance_uid: "1.2.3".into(), transfer_syntax: "1.2.840.10008.1.2.1".into() };
        let mut c = Counts { remaining: 70_000, ..Default::default() };
        for _ in 0..70_000 {
            c.record(&inst, &SubResult::Done(Status::SUCCESS));
        }
        let mut cmd = Command::default();
        c.fill(&mut cmd, true);
        assert_eq!((cmd.u16(tag::COMPLETED), cmd.u16(tag::REMAINING)), (Some(u16::MAX), Some(0)));
        assert_eq!(c.final_status(), Status::SUCCESS);
    }
}
