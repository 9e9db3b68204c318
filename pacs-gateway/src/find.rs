//! C-FIND SCP: matches stream from the handler (on the blocking pool,
//! through a small channel) and go out one pending response each as they
//! come; C-CANCEL is honoured between responses; past the configured
//! number of matches or the operation deadline the answer ends with A700.

use dicom_ul::pdu::PresentationContextNegotiated;
use tokio::sync::mpsc;

use crate::association::{Assoc, Ctx};
use crate::command::{field, Command};
use crate::handler::{Answer, Matches, Model};
use crate::identifier;
use crate::message::{self, Interrupt, Message, SendError};
use crate::sop_classes;
use crate::status::Status;

/// Matches found ahead of the peer: enough to keep the sender busy.
const AHEAD: usize = 16;

pub(crate) async fn serve<S: crate::association::Stream>(
    assoc: &mut Assoc<S>,
    ctx: &Ctx,
    pc: &PresentationContextNegotiated,
    msg: Message,
) -> Result<(), SendError> {
    let Message { command: rq, data, data_overflow, .. } = msg;
    let rq = &rq;
    let model = match pc.abstract_syntax.as_str() {
        sop_classes::PATIENT_ROOT_FIND => Model::PatientRoot,
        sop_classes::STUDY_ROOT_FIND => Model::StudyRoot,
        _ => return finish(assoc, ctx, pc.id, rq, Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "not a C-FIND model")).await,
    };
    let query = match identifier::query(ctx, model, data, data_overflow, &pc.transfer_syntax).await {
        Ok(q) => q,
        Err(a) => return finish(assoc, ctx, pc.id, rq, a).await,
    };
    tracing::debug!(level = query.level.as_str(), ?model, "C-FIND");
    let deadline = tokio::time::Instant::now() + ctx.config.operation_timeout;
    let late = || Answer::failure(Status::OUT_OF_RESOURCES, format!("the query ran past {} s", ctx.config.operation_timeout.as_secs()));
    let (tx, mut rx) = mpsc::channel(AHEAD);
    let handler = ctx.handler.clone();
    let search = tokio::task::spawn_blocking(move || handler.find(&query, &Matches { tx }));
    let mut sent = 0usize;
    let end = loop {
        // Checked apart from the receive: with matches waiting, the receive
        // is always ready and its timeout would never fire.
        if tokio::time::Instant::now() >= deadline {
            break Some(late());
        }
        let (m, unsupported_keys) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => break None,
            Err(_) => break Some(late()),
        };
        if sent == ctx.config.max_find_matches {
            break Some(Answer::failure(Status::OUT_OF_RESOURCES, format!("more than {sent} matches: narrow the query")));
        }
        match message::interrupted(assoc).await? {
            Interrupt::None => {}
            Interrupt::Cancel => break Some(Answer { status: Status::CANCEL, comment: None }),
        }
        let bytes = match identifier::encode(&m, &pc.transfer_syntax) {
            Ok(b) => b,
            Err(e) => break Some(Answer::failure(Status::OUT_OF_RESOURCES, e)),
        };
        let pending = if unsupported_keys { Status::PENDING_OPTIONAL_KEYS } else { Status::PENDING };
        let rsp = Command::response_to(rq, field::C_FIND_RSP, pending, true);
        // A peer reading slowly enough to pass every write timeout still meets the deadline.
        match tokio::time::timeout_at(deadline, message::send(assoc, pc.id, &rsp, Some(&bytes), ctx.config.write_timeout)).await {
            Ok(r) => r?,
            Err(_) => return Err(SendError::Stalled(ctx.config.operation_timeout.as_secs())),
        }
        sent += 1;
    };
    // Dropping the receiver stops an unfinished search at its next match;
    // the answer does not wait for it.
    drop(rx);
    let answer = match end {
        Some(a) => a,
        None => match search.await {
            Ok(Ok(())) => Answer::success(),
            Ok(Err(a)) => a,
            Err(_) => Answer::failure(Status::OUT_OF_RESOURCES, "query task failed"),
        },
    };
    if answer.status == Status::OUT_OF_RESOURCES {
        tracing::warn!(sent, comment = ?answer.comment, "C-FIND ended early");
    }
    finish(assoc, ctx, pc.id, rq, answer).await
}

async fn finish<S: crate::association::Stream>(assoc: &mut Assoc<S>, ctx: &Ctx, pc: u8, rq: &Command, a: Answer) -> Result<(), SendError> {
    message::answer(assoc, pc, rq, field::C_FIND_RSP, &a, ctx.config.write_timeout).await
}
