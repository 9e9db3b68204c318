//! C-ECHO: is the peer there, and does it take radhub's association?

use super::link::{answer_of, expect_response, Limits, Link};
use super::{Peer, ScuConfig, ScuError};
use crate::command::{field, Command};
use crate::handler::Answer;
use crate::message::MAX_IDENTIFIER;
use crate::sop_classes::{UNCOMPRESSED, VERIFICATION};

/// One C-ECHO on an association of its own; the peer's status and comment.
pub async fn echo(cfg: &ScuConfig, peer: &Peer) -> Result<Answer, ScuError> {
    let limits = Limits::new(cfg.dimse_timeout, cfg.operation_timeout);
    let contexts = [(VERIFICATION.to_owned(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect())];
    let open = Link::open(cfg, peer, &contexts, &[], MAX_IDENTIFIER);
    let mut link = match tokio::time::timeout_at(limits.deadline, open).await {
        Ok(l) => l?,
        Err(_) => return Err(ScuError::timeout("end of the C-ECHO", cfg.operation_timeout)),
    };
    let r = match tokio::time::timeout_at(limits.deadline, exchange(&mut link, &limits)).await {
        Ok(r) => r,
        Err(_) => Err(ScuError::timeout("end of the C-ECHO", cfg.operation_timeout)),
    };
    link.finish(r).await
}

async fn exchange(link: &mut Link, limits: &Limits) -> Result<Answer, ScuError> {
    let pc = link.context(VERIFICATION)?;
    let id = link.next_id();
    link.send(pc.id, &Command::request(field::C_ECHO_RQ, id, VERIFICATION, false), None).await?;
    let m = link.receive(limits, "C-ECHO response").await?;
    expect_response(&m, pc.id, field::C_ECHO_RSP, id, "C-ECHO response")?;
    answer_of(&m.command)
}
