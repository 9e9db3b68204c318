//! C-MOVE and C-GET as a service user: pending counts handed to the caller
//! as they come, C-CANCEL on request, the final counts and the Failed SOP
//! Instance UID List. A C-GET's sub-operations (C-STOREs on this same
//! association, for which radhub takes the SCP role) go to a `StoreSink`.

use std::ops::ControlFlow;
use std::sync::Arc;

use dicom_object::InMemDicomObject;

use super::link::{answer_of, parse, Limits, Link, MAX_CONTEXTS};
use super::{Peer, ScuConfig, ScuError};
use crate::command::{field, tag, Command};
use crate::handler::{Answer, Model, StoreRequest};
use crate::identifier::{self, FAILED_SOP_INSTANCE_UID_LIST};
use crate::message::MAX_IDENTIFIER;
use crate::sop_classes::{self, UNCOMPRESSED};
use crate::status::{Category, Status};

/// Where a C-GET's instances go. Called on tokio's blocking pool, one
/// sub-operation at a time; its answer is the C-STORE response's status
/// (a failure is counted as failed by the peer).
pub trait StoreSink: Send + Sync + 'static {
    fn store(&self, req: StoreRequest) -> Answer;
}

impl<F> StoreSink for F
where
    F: Fn(StoreRequest) -> Answer + Send + Sync + 'static,
{
    fn store(&self, req: StoreRequest) -> Answer {
        self(req)
    }
}

/// Sub-operation counts from a C-MOVE or C-GET response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Left out by some peers, and in most final responses.
    pub remaining: Option<u16>,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

impl Progress {
    /// The counts of `c`; those it leaves out are taken from `last`.
    fn of(c: &Command, last: &Progress) -> Progress {
        Progress {
            remaining: c.u16(tag::REMAINING),
            completed: c.u16(tag::COMPLETED).unwrap_or(last.completed),
            failed: c.u16(tag::FAILED).unwrap_or(last.failed),
            warning: c.u16(tag::WARNING).unwrap_or(last.warning),
        }
    }
}

/// How a C-MOVE or C-GET ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrieveOutcome {
    /// 0000, B000 (some sub-operations failed), FE00 after a cancel, or a failure.
    pub status: Status,
    pub comment: Option<String>,
    /// The final counts (a count the final response leaves out is the last one reported).
    pub counts: Progress,
    /// Pending responses seen.
    pub pending: usize,
    /// Failed SOP Instance UID List (0008,0058) of the final response.
    pub failed_uids: Vec<String>,
    pub cancelled: bool,
}

fn class(model: Model, get: bool) -> &'static str {
    match (model, get) {
        (Model::PatientRoot, false) => sop_classes::PATIENT_ROOT_MOVE,
        (Model::StudyRoot, false) => sop_classes::STUDY_ROOT_MOVE,
        (Model::PatientRoot, true) => sop_classes::PATIENT_ROOT_GET,
        (Model::StudyRoot, true) => sop_classes::STUDY_ROOT_GET,
    }
}

/// One C-MOVE on an association of its own: the peer sends what
/// `identifier` names to `destination` (an AE it knows).
pub async fn move_to(
    cfg: &ScuConfig,
    peer: &Peer,
    model: Model,
    identifier: &InMemDicomObject,
    destination: &str,
    mut on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<RetrieveOutcome, ScuError> {
    if destination.is_empty() || destination.len() > 16 {
        return Err(ScuError::Invalid(format!("move destination {destination:?}: an AE title has 1 to 16 characters")));
    }
    let class = class(model, false);
    let contexts = [(class.to_owned(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect())];
    let op = Op { class, limits: Limits::new(cfg.dimse_timeout, cfg.operation_timeout), what: "end of the C-MOVE" };
    let open = Link::open(cfg, peer, &contexts, &[], MAX_IDENTIFIER);
    let mut link = tokio::time::timeout_at(op.limits.deadline, open).await.map_err(|_| op.late())??;
    let run = exchange(&mut link, &op, identifier, Some(destination), None, &mut on_progress);
    let r = tokio::time::timeout_at(op.limits.deadline, run).await.unwrap_or_else(|_| Err(op.late()));
    link.finish(r).await
}

/// One C-GET on an association of its own. `storage` lists the SOP
/// classes to take, each with the transfer syntaxes to accept them in (one
/// presentation context each, with the SCP role asked for); each
/// sub-operation's data set goes to `sink` as a Part 10 file.
pub async fn get(
    cfg: &ScuConfig,
    peer: &Peer,
    model: Model,
    identifier: &InMemDicomObject,
    storage: &[(String, Vec<String>)],
    sink: Arc<dyn StoreSink>,
    mut on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<RetrieveOutcome, ScuError> {
    if storage.is_empty() || storage.len() >= MAX_CONTEXTS {
        return Err(ScuError::Invalid(format!("{} storage contexts: a C-GET takes 1 to {}", storage.len(), MAX_CONTEXTS - 1)));
    }
    let class = class(model, true);
    let mut contexts = vec![(class.to_owned(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect())];
    contexts.extend(storage.iter().cloned());
    let mut roles: Vec<String> = storage.iter().map(|(c, _)| c.clone()).collect();
    roles.sort();
    roles.dedup();
    let op = Op { class, limits: Limits::new(cfg.dimse_timeout, cfg.operation_timeout), what: "end of the C-GET" };
    let open = Link::open(cfg, peer, &contexts, &roles, cfg.max_data_set_bytes);
    let mut link = tokio::time::timeout_at(op.limits.deadline, open).await.map_err(|_| op.late())??;
    let run = exchange(&mut link, &op, identifier, None, Some((&roles, sink)), &mut on_progress);
    let r = tokio::time::timeout_at(op.limits.deadline, run).await.unwrap_or_else(|_| Err(op.late()));
    link.finish(r).await
}

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

struct Op {
    class: &'static str,
    limits: Limits,
    what: &'static str,
}

impl Op {
    fn late(&self) -> ScuError {
        ScuError::timeout(self.what, self.limits.operation)
    }
}

async fn exchange(
    link: &mut Link,
    op: &Op,
    identifier: &InMemDicomObject,
    destination: Option<&str>,
    storage: Option<(&[String], Arc<dyn StoreSink>)>,
    on_progress: &mut impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<RetrieveOutcome, ScuError> {
    let pc = link.context(op.class)?;
    let data = identifier::encode(identifier, &pc.transfer_syntax).map_err(ScuError::Invalid)?;
    let id = link.next_id();
    let (rq_field, rsp_field, name) = match destination {
        Some(_) => (field::C_MOVE_RQ, field::C_MOVE_RSP, "C-MOVE response"),
        None => (field::C_GET_RQ, field::C_GET_RSP, "C-GET response"),
    };
    let mut rq = Command::request(rq_field, id, op.class, true);
    rq.set_u16(tag::PRIORITY, 0);
    if let Some(d) = destination {
        rq.set_str(tag::MOVE_DESTINATION, d);
    }
    link.send(pc.id, &rq, Some(&data)).await?;
    let mut last = Progress::default();
    let (mut pending, mut cancelled) = (0, false);
    loop {
        let m = link.receive(&op.limits, name).await?;
        let got = m.command.field().map_err(|e| ScuError::Protocol(e.to_string()))?;
        if got == field::C_STORE_RQ {
            // A C-GET sub-operation; anywhere else, a violation.
            let Some((classes, sink)) = &storage else {
                return Err(ScuError::Protocol("a C-STORE request on a C-MOVE association".into()));
            };
            sub_operation(link, classes, sink, m).await?;
            continue;
        }
        if got != rsp_field || m.pc_id != pc.id || m.command.u16(tag::MESSAGE_ID_BEING_RESPONDED_TO) != Some(id) {
            return Err(ScuError::Protocol(format!("command {got:04X} while awaiting a {name}")));
        }
        let answer = answer_of(&m.command)?;
        let counts = Progress::of(&m.command, &last);
        if answer.status.category() == Category::Pending {
            pending += 1;
            last = counts;
            if on_progress(&counts).is_break() && !cancelled {
                link.send(pc.id, &Command::cancel(id), None).await?;
                cancelled = true;
            }
            continue;
        }
        let failed_uids = match (m.data, m.data_overflow, m.extra) {
            (_, true, _) => return Err(ScuError::Protocol(format!("a final response identifier over {MAX_IDENTIFIER} bytes"))),
            (Some(d), false, _) => failed_list(d, &pc.transfer_syntax).await?,
            // Orthanc 1.10 sends the list inside the command set.
            (None, false, Some(x)) => failed_list(x, IMPLICIT_LE).await?,
            (None, false, None) => Vec::new(),
        };
        return Ok(RetrieveOutcome { status: answer.status, comment: answer.comment, counts, pending, failed_uids, cancelled });
    }
}

/// Failed SOP Instance UID List (0008,0058) of a final response's identifier.
async fn failed_list(data: Vec<u8>, ts: &str) -> Result<Vec<String>, ScuError> {
    let o = parse(data, ts).await?;
    Ok(o.get(FAILED_SOP_INSTANCE_UID_LIST)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| v.iter().map(|s| s.trim_end_matches(['\0', ' ']).to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default())
}

/// Answers a C-GET sub-operation: its data set, wrapped as Part 10, to the
/// sink on the blocking pool; the sink's answer back to the peer.
async fn sub_operation(link: &mut Link, classes: &[String], sink: &Arc<dyn StoreSink>, m: crate::message::Message) -> Result<(), ScuError> {
    let pc = link
        .accepted()
        .iter()
        .find(|c| c.id == m.pc_id)
        .cloned()
        .ok_or_else(|| ScuError::Protocol(format!("a C-STORE request on presentation context {}, which was not accepted", m.pc_id)))?;
    let storage = classes.contains(&pc.abstract_syntax);
    let sink = sink.clone();
    let (source, limit, write_timeout) = (link.peer_ae.clone(), link.cfg.max_data_set_bytes, link.cfg.write_timeout);
    crate::store::answer_request(&mut link.assoc, &pc, m, &source, limit, storage, write_timeout, move |req| sink.store(req)).await?;
    Ok(())
}
