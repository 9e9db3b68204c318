//! C-FIND SCP: one pending response per match, C-CANCEL honoured between
//! responses, then the final status.

use dicom_ul::pdu::PresentationContextNegotiated;

use crate::association::{Assoc, Ctx};
use crate::command::{field, Command};
use crate::handler::{Answer, Model};
use crate::identifier;
use crate::message::{self, Interrupt, Message, SendError};
use crate::sop_classes;
use crate::status::Status;

pub(crate) async fn serve(assoc: &mut Assoc, ctx: &Ctx, pc: &PresentationContextNegotiated, msg: Message) -> Result<(), SendError> {
    let rq = &msg.command;
    let model = match pc.abstract_syntax.as_str() {
        sop_classes::PATIENT_ROOT_FIND => Model::PatientRoot,
        sop_classes::STUDY_ROOT_FIND => Model::StudyRoot,
        _ => return finish(assoc, pc.id, rq, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-FIND model")).await,
    };
    let query = match identifier::query(ctx, model, &msg, &pc.transfer_syntax) {
        Ok(q) => q,
        Err(a) => return finish(assoc, pc.id, rq, a).await,
    };
    tracing::debug!(level = query.level.as_str(), ?model, "C-FIND");
    let handler = ctx.handler.clone();
    let matches = match tokio::task::spawn_blocking(move || handler.find(&query)).await {
        Ok(Ok(m)) => m,
        Ok(Err(a)) => return finish(assoc, pc.id, rq, a).await,
        Err(_) => return finish(assoc, pc.id, rq, Answer::failure(Status::OUT_OF_RESOURCES, "query task failed")).await,
    };
    for m in &matches {
        match message::interrupted(assoc).await? {
            Interrupt::None => {}
            Interrupt::Cancel => return finish(assoc, pc.id, rq, Answer { status: Status::CANCEL, comment: None }).await,
        }
        let bytes = match identifier::encode(m, &pc.transfer_syntax) {
            Ok(b) => b,
            Err(e) => return finish(assoc, pc.id, rq, Answer::failure(Status::OUT_OF_RESOURCES, e)).await,
        };
        let rsp = Command::response_to(rq, field::C_FIND_RSP, Status::PENDING, true);
        message::send(assoc, pc.id, &rsp, Some(&bytes)).await?;
    }
    finish(assoc, pc.id, rq, Answer::success()).await
}

async fn finish(assoc: &mut Assoc, pc: u8, rq: &Command, a: Answer) -> Result<(), SendError> {
    message::answer(assoc, pc, rq, field::C_FIND_RSP, &a).await
}
