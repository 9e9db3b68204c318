//! A storage commitment report (N-EVENT-REPORT) sent on a new association
//! to the AE that asked for it, radhub taking the SCP role of the Storage
//! Commitment Push Model (PS3.4 J.3.3.1.2; role selection, PS3.7 D.3.3.4).

use super::link::{answer_of, expect_response, Limits, Link};
use super::{Peer, ScuConfig, ScuError};
use crate::command::field;
use crate::commitment::{event_command, Report, PUSH_MODEL};
use crate::handler::Answer;
use crate::message::MAX_IDENTIFIER;

/// Sends `report` to `peer` on an association of its own; the peer's status.
pub async fn report_commitment(cfg: &ScuConfig, peer: &Peer, report: &Report) -> Result<Answer, ScuError> {
    let limits = Limits::new(cfg.dimse_timeout, cfg.operation_timeout);
    // The data set is encoded already: propose its transfer syntax only.
    let contexts = [(PUSH_MODEL.to_owned(), vec![report.transfer_syntax.clone()])];
    let roles = [PUSH_MODEL.to_owned()];
    let open = Link::open(cfg, peer, &contexts, &roles, MAX_IDENTIFIER);
    let mut link = match tokio::time::timeout_at(limits.deadline, open).await {
        Ok(l) => l?,
        Err(_) => return Err(ScuError::timeout("end of the N-EVENT-REPORT", cfg.operation_timeout)),
    };
    let r = match tokio::time::timeout_at(limits.deadline, exchange(&mut link, &limits, report)).await {
        Ok(r) => r,
        Err(_) => Err(ScuError::timeout("end of the N-EVENT-REPORT", cfg.operation_timeout)),
    };
    link.finish(r).await
}

async fn exchange(link: &mut Link, limits: &Limits, report: &Report) -> Result<Answer, ScuError> {
    let pc = link.context(PUSH_MODEL)?;
    let id = link.next_id();
    link.send(pc.id, &event_command(id, report.event_type), Some(&report.data)).await?;
    let m = link.receive(limits, "N-EVENT-REPORT response").await?;
    expect_response(&m, pc.id, field::N_EVENT_REPORT_RSP, id, "N-EVENT-REPORT response")?;
    answer_of(&m.command)
}
