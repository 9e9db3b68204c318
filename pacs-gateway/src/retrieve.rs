//! C-MOVE and C-GET SCP: select instances, send each with a C-STORE
//! sub-operation (to the move destination, or back on the requestor's own
//! association), report pending counts after each, and end with the status
//! PS3.4 C.4.2.1.5 / C.4.3.1.4 prescribe and the Failed SOP Instance UID List.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::PresentationContextNegotiated;
use tokio::net::TcpStream;

use crate::association::{Assoc, Ctx};
use crate::client::{self, SubResult};
use crate::command::{field, tag, Command};
use crate::handler::{Answer, InstanceRef, Model};
use crate::identifier::{self, FAILED_SOP_INSTANCE_UID_LIST};
use crate::message::{self, Interrupt, Message, SendError};
use crate::sop_classes;
use crate::status::{Category, Status};

#[derive(Default)]
struct Counts {
    remaining: u16,
    completed: u16,
    failed: u16,
    warning: u16,
    failed_uids: Vec<String>,
}

fn sat(n: usize) -> u16 {
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
            c.set_u16(tag::REMAINING, self.remaining);
        }
        c.set_u16(tag::COMPLETED, self.completed);
        c.set_u16(tag::FAILED, self.failed);
        c.set_u16(tag::WARNING, self.warning);
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
async fn select(ctx: &Ctx, model: Model, msg: &Message, ts: &str) -> Result<Vec<InstanceRef>, Answer> {
    let query = identifier::query(ctx, model, msg, ts)?;
    let handler = ctx.handler.clone();
    tokio::task::spawn_blocking(move || handler.select(&query)).await.unwrap_or_else(|_| Err(Answer::failure(Status::OUT_OF_RESOURCES, "query task failed")))
}

async fn open(ctx: &Ctx, inst: &InstanceRef) -> Result<Vec<u8>, String> {
    let (handler, inst) = (ctx.handler.clone(), inst.clone());
    tokio::task::spawn_blocking(move || handler.open(&inst)).await.unwrap_or_else(|_| Err("open task failed".into()))
}

pub(crate) async fn serve_move(assoc: &mut Assoc, ctx: &Ctx, pc: &PresentationContextNegotiated, msg: Message) -> Result<(), SendError> {
    let rq = &msg.command;
    let rsp_field = field::C_MOVE_RSP;
    let Some(model) = model_of(pc, sop_classes::PATIENT_ROOT_MOVE, sop_classes::STUDY_ROOT_MOVE) else {
        return refuse(assoc, pc.id, rq, rsp_field, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-MOVE model")).await;
    };
    let dest_title = rq.str(tag::MOVE_DESTINATION).unwrap_or_default();
    let Some(dest) = ctx.config.known(&dest_title).cloned() else {
        return refuse(assoc, pc.id, rq, rsp_field, Answer::failure(Status::MOVE_DESTINATION_UNKNOWN, format!("unknown destination {dest_title:?}"))).await;
    };
    let instances = match select(ctx, model, &msg, &pc.transfer_syntax).await {
        Ok(i) => i,
        Err(a) => return refuse(assoc, pc.id, rq, rsp_field, a).await,
    };
    tracing::info!(destination = %dest.title, instances = instances.len(), "C-MOVE");
    if instances.is_empty() {
        return finish(assoc, pc, rq, rsp_field, &Counts::default(), Status::SUCCESS).await;
    }
    let mut out = match client::connect(&ctx.config, &dest, &instances).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(destination = %dest.title, error = %e, "cannot open association to move destination");
            return refuse(assoc, pc.id, rq, rsp_field, Answer::failure(Status::OUT_OF_RESOURCES_SUB_OPERATIONS, "cannot reach the move destination")).await;
        }
    };
    let contexts = out.presentation_contexts().to_vec();
    let mut counts = Counts { remaining: sat(instances.len()), ..Default::default() };
    let originator = (ctx.calling_ae.as_str(), rq.message_id());
    let mut cancelled = false;
    for (n, inst) in instances.iter().enumerate() {
        if message::interrupted(assoc).await? == Interrupt::Cancel {
            cancelled = true;
            break;
        }
        let r = match open(ctx, inst).await {
            Ok(file) => client::store(&mut out, &ctx.handler, &contexts, sat(n + 1), inst, &file, Some(originator), &mut false).await,
            Err(e) => Ok(SubResult::Failed(e)),
        };
        match r {
            Ok(r) => counts.record(inst, &r),
            Err(e) => {
                // The destination's association broke: what remains fails.
                tracing::warn!(destination = %dest.title, error = %e, "move destination association failed");
                for rest in &instances[n..] {
                    counts.record(rest, &SubResult::Failed(format!("destination association lost: {e}")));
                }
                break;
            }
        }
        if counts.remaining > 0 {
            pending(assoc, pc.id, rq, rsp_field, &counts).await?;
        }
    }
    let _ = out.release().await;
    finish(assoc, pc, rq, rsp_field, &counts, if cancelled { Status::CANCEL } else { counts.final_status() }).await
}

pub(crate) async fn serve_get(assoc: &mut Assoc, ctx: &Ctx, pc: &PresentationContextNegotiated, msg: Message) -> Result<(), SendError> {
    let rq = &msg.command;
    let rsp_field = field::C_GET_RSP;
    let Some(model) = model_of(pc, sop_classes::PATIENT_ROOT_GET, sop_classes::STUDY_ROOT_GET) else {
        return refuse(assoc, pc.id, rq, rsp_field, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-GET model")).await;
    };
    let instances = match select(ctx, model, &msg, &pc.transfer_syntax).await {
        Ok(i) => i,
        Err(a) => return refuse(assoc, pc.id, rq, rsp_field, a).await,
    };
    tracing::info!(instances = instances.len(), "C-GET");
    let contexts = ctx.contexts.clone();
    let mut counts = Counts { remaining: sat(instances.len()), ..Default::default() };
    let mut cancelled = false;
    for (n, inst) in instances.iter().enumerate() {
        if cancelled || message::interrupted(assoc).await? == Interrupt::Cancel {
            cancelled = true;
            break;
        }
        let r = match open(ctx, inst).await {
            Ok(file) => client::store(assoc, &ctx.handler, &contexts, 0x8000 | sat(n + 1), inst, &file, None, &mut cancelled).await?,
            Err(e) => SubResult::Failed(e),
        };
        counts.record(inst, &r);
        if counts.remaining > 0 && !cancelled {
            pending(assoc, pc.id, rq, rsp_field, &counts).await?;
        }
    }
    finish(assoc, pc, rq, rsp_field, &counts, if cancelled { Status::CANCEL } else { counts.final_status() }).await
}

async fn pending<A>(assoc: &mut A, pc: u8, rq: &Command, rsp_field: u16, counts: &Counts) -> Result<(), SendError>
where
    A: AsyncAssociation<TcpStream> + Send,
{
    let mut rsp = Command::response_to(rq, rsp_field, Status::PENDING, false);
    counts.fill(&mut rsp, true);
    message::send(assoc, pc, &rsp, None).await
}

/// The final response; failures name their instances in an identifier.
async fn finish(assoc: &mut Assoc, pc: &PresentationContextNegotiated, rq: &Command, rsp_field: u16, counts: &Counts, status: Status) -> Result<(), SendError> {
    let identifier = (!counts.failed_uids.is_empty())
        .then(|| {
            let mut o = InMemDicomObject::new_empty();
            o.put(DataElement::new(FAILED_SOP_INSTANCE_UID_LIST, VR::UI, PrimitiveValue::Strs(counts.failed_uids.iter().cloned().collect())));
            identifier::encode(&o, &pc.transfer_syntax).ok()
        })
        .flatten();
    let mut rsp = Command::response_to(rq, rsp_field, status, identifier.is_some());
    counts.fill(&mut rsp, status == Status::CANCEL);
    message::send(assoc, pc.id, &rsp, identifier.as_deref()).await
}

async fn refuse(assoc: &mut Assoc, pc: u8, rq: &Command, rsp_field: u16, a: Answer) -> Result<(), SendError> {
    message::answer(assoc, pc, rq, rsp_field, &a).await
}
