//! C-STORE as a service user: the one C-STORE sender of the crate, used by
//! `StoreAssociation`, by the C-MOVE SCP towards its destination and by
//! the C-GET SCP on the requestor's own association.
//!
//! Each SOP class is proposed with the uncompressed syntaxes, and each
//! syntax of its instances on a context of its own (so a peer that takes
//! it cannot pick another instead). An instance goes in
//! its own syntax where accepted; a native one (explicit or implicit LE,
//! big endian, deflate) is otherwise re-encoded to an accepted uncompressed
//! syntax; a compressed one only with a `Transcode`, else it is refused on
//! its own with `ScuError::NoContext` and the association goes on.

use std::collections::BTreeSet;
use std::sync::Arc;

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};

use super::link::{answer_of, Inbox, Limits, Link, MAX_CONTEXTS};
use super::{Peer, ScuConfig, ScuError};
use crate::command::{field, tag, Command};
use crate::handler::{Answer, InstanceRef};
use crate::identifier;
use crate::message::{self, MAX_IDENTIFIER};
use crate::sop_classes::{name, ts_name, NATIVE, UNCOMPRESSED};

const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Decodes a Part 10 file's pixel data into the (uncompressed) transfer
/// syntax given, returning the file re-encoded; runs on the blocking pool.
pub type Transcode = Arc<dyn Fn(&[u8], &str) -> Result<Vec<u8>, String> + Send + Sync>;

/// What a C-STORE carries beyond the instance.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// Move Originator AE Title and Message ID, for a C-MOVE sub-operation.
    pub move_originator: Option<(String, u16)>,
    /// How to send compressed pixel data the peer did not accept.
    pub transcode: Option<Transcode>,
}

/// A Part 10 file's SOP class, instance and transfer syntax, from its meta
/// group (PS3.10 7.1: they are the data set's; a file where they differ
/// gets the peer's A900).
pub fn describe(part10: &[u8]) -> Result<InstanceRef, ScuError> {
    let (meta, _, ts) = dicom_scan::file_meta(part10).map_err(|e| ScuError::Invalid(e.to_string()))?;
    let uid = |tag: u32, what: &str| {
        meta.iter()
            .find(|e| e.tag == tag)
            .and_then(|e| part10.get(e.start..e.end))
            .map(|v| String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).trim_start().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ScuError::Invalid(format!("no {what} in the file meta group")))
    };
    Ok(InstanceRef {
        sop_class_uid: uid(0x0002_0002, "Media Storage SOP Class UID")?,
        sop_instance_uid: uid(0x0002_0003, "Media Storage SOP Instance UID")?,
        transfer_syntax: ts,
    })
}

/// The SOP classes of `instances`, each with the transfer syntaxes they are in.
pub fn classes_of(instances: &[InstanceRef]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for i in instances {
        match out.iter_mut().find(|(c, _)| *c == i.sop_class_uid) {
            Some((_, ts)) if !ts.contains(&i.transfer_syntax) => ts.push(i.transfer_syntax.clone()),
            Some(_) => {}
            None => out.push((i.sop_class_uid.clone(), vec![i.transfer_syntax.clone()])),
        }
    }
    out
}

/// The presentation contexts to propose for `classes`: per class one with
/// the uncompressed syntaxes (the fallback), then each syntax its instances
/// are in alone (so that the peer, choosing, cannot pick another), at most
/// 128 in all: past that, instances are re-encoded or refused.
fn proposal(classes: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (class, _) in classes {
        if seen.insert(class.as_str()) {
            out.push((class.clone(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect()));
        }
    }
    let mut pairs = BTreeSet::new();
    for (class, syntaxes) in classes {
        for ts in syntaxes {
            if pairs.insert((class.as_str(), ts.as_str())) {
                out.push((class.clone(), vec![ts.clone()]));
            }
        }
    }
    out.truncate(MAX_CONTEXTS);
    out
}

/// The context to send `inst` on: its own syntax if accepted, else an
/// uncompressed one when the data set can be brought to it.
fn choose<'c>(contexts: &'c [PresentationContextNegotiated], inst: &InstanceRef, can_transcode: bool) -> Result<&'c PresentationContextNegotiated, ScuError> {
    let ok = |c: &&PresentationContextNegotiated| c.reason == PresentationContextResultReason::Acceptance && c.abstract_syntax == inst.sop_class_uid;
    if let Some(c) = contexts.iter().filter(ok).find(|c| c.transfer_syntax == inst.transfer_syntax) {
        return Ok(c);
    }
    let uncompressed = contexts.iter().filter(ok).find(|c| UNCOMPRESSED.contains(&c.transfer_syntax.as_str()));
    let class = name(&inst.sop_class_uid);
    match uncompressed {
        Some(c) if NATIVE.contains(&inst.transfer_syntax.as_str()) || can_transcode => Ok(c),
        Some(_) => {
            Err(ScuError::NoContext(format!("{} was not accepted for {class}, and compressed pixel data is not decoded here", ts_name(&inst.transfer_syntax))))
        }
        None => Err(ScuError::NoContext(format!("{class} was not accepted in {} nor uncompressed", ts_name(&inst.transfer_syntax)))),
    }
}

/// The data set of `file` in `to`: as it is when the syntax matches,
/// re-encoded between native syntaxes, else transcoded; CPU work goes to
/// the blocking pool.
async fn data_set(file: &[u8], from: &str, to: &str, transcode: Option<&Transcode>) -> Result<Vec<u8>, ScuError> {
    let (_, start, _) = dicom_scan::file_meta(file).map_err(|e| ScuError::Invalid(e.to_string()))?;
    let body = file.get(start..).unwrap_or_default();
    if from == to {
        let mut d = body.to_vec();
        // A deflated stream of odd length is padded with one NUL (PS3.5
        // A.5): P-DATA fragments must be even (DCMTK aborts otherwise).
        if from == DEFLATED && d.len() % 2 == 1 {
            d.push(0);
        }
        return Ok(d);
    }
    let failed = |e: tokio::task::JoinError| ScuError::Invalid(format!("re-encoding failed: {e}"));
    if NATIVE.contains(&from) {
        let (d, from, target) = (body.to_vec(), from.to_owned(), to.to_owned());
        return tokio::task::spawn_blocking(move || identifier::encode(&identifier::parse(&d, &from)?, &target))
            .await
            .map_err(failed)?
            .map_err(|e| ScuError::Invalid(format!("cannot re-encode to {}: {e}", ts_name(to))));
    }
    let Some(t) = transcode else {
        return Err(ScuError::NoContext(format!("{} needs decoding to be sent in {}", ts_name(from), ts_name(to))));
    };
    let (t, f, target) = (t.clone(), file.to_vec(), to.to_owned());
    let out = tokio::task::spawn_blocking(move || t(&f, &target)).await.map_err(failed)?.map_err(ScuError::Invalid)?;
    let (_, start, got) = dicom_scan::file_meta(&out).map_err(|e| ScuError::Invalid(e.to_string()))?;
    if got != to {
        return Err(ScuError::Invalid(format!("transcoded to {got}, not {to}")));
    }
    Ok(out.get(start..).unwrap_or_default().to_vec())
}

/// One C-STORE on any association (radhub's own, or a C-GET requestor's):
/// picks the context, brings the data set to its syntax, sends it and
/// waits for the response. `cancelled`, where given, is set by a C-CANCEL
/// arriving meanwhile (the C-GET being cancelled); elsewhere that is a
/// protocol violation.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store_on<A, S>(
    assoc: &mut A,
    contexts: &[PresentationContextNegotiated],
    limits: &Limits,
    write_timeout: std::time::Duration,
    message_id: u16,
    file: &[u8],
    opts: &StoreOptions,
    mut cancelled: Option<&mut bool>,
) -> Result<Answer, ScuError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let inst = describe(file)?;
    let pc = choose(contexts, &inst, opts.transcode.is_some())?;
    let data = data_set(file, &inst.transfer_syntax, &pc.transfer_syntax, opts.transcode.as_ref()).await?;
    let mut rq = Command::request(field::C_STORE_RQ, message_id, &inst.sop_class_uid, true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, &inst.sop_instance_uid);
    rq.set_u16(tag::PRIORITY, 0);
    if let Some((ae, id)) = &opts.move_originator {
        rq.set_str(tag::MOVE_ORIGINATOR_AE, ae);
        rq.set_u16(tag::MOVE_ORIGINATOR_MESSAGE_ID, *id);
    }
    message::send(assoc, pc.id, &rq, Some(&data), write_timeout).await?;
    drop(data);
    // A response carries no data set: nothing large is held.
    let mut inbox = Inbox::new(MAX_IDENTIFIER);
    loop {
        let m = inbox.next(assoc, limits, "C-STORE response").await?;
        match m.command.field() {
            Ok(field::C_STORE_RSP) if m.command.u16(tag::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id) => return answer_of(&m.command),
            Ok(field::C_CANCEL_RQ) if cancelled.is_some() => {
                if let Some(c) = cancelled.as_deref_mut() {
                    *c = true;
                }
            }
            _ => return Err(ScuError::Protocol("an unexpected message while awaiting a C-STORE response".into())),
        }
    }
}

/// One association to a storage SCP for many C-STOREs.
pub struct StoreAssociation {
    link: Link,
    /// Set while a store is under way and after one broke the association:
    /// a store dropped half-way (its caller's deadline) leaves it set.
    lost: Option<String>,
}

impl StoreAssociation {
    /// Proposes `classes` (SOP class, the transfer syntaxes its instances
    /// are in), as `classes_of` lists them.
    pub async fn connect(cfg: &ScuConfig, peer: &Peer, classes: &[(String, Vec<String>)]) -> Result<Self, ScuError> {
        let link = Link::open(cfg, peer, &proposal(classes), &[], MAX_IDENTIFIER).await?;
        Ok(StoreAssociation { link, lost: None })
    }

    /// The contexts the peer accepted.
    pub fn accepted(&self) -> &[PresentationContextNegotiated] {
        self.link.accepted()
    }

    /// Whether the association can still carry a C-STORE.
    pub fn is_usable(&self) -> bool {
        self.lost.is_none()
    }

    /// Sends one Part 10 file; the peer's status and comment. An instance
    /// that cannot go on this association fails on its own
    /// (`ScuError::NoContext`, `ScuError::Invalid`); any other error ends it.
    pub async fn store(&mut self, part10: &[u8]) -> Result<Answer, ScuError> {
        self.store_with(part10, &StoreOptions::default()).await
    }

    pub async fn store_with(&mut self, part10: &[u8], opts: &StoreOptions) -> Result<Answer, ScuError> {
        if let Some(why) = &self.lost {
            return Err(ScuError::Lost(why.clone()));
        }
        self.lost = Some("a C-STORE was interrupted".into());
        let cfg = &self.link.cfg;
        let (limits, write_timeout) = (Limits::new(cfg.dimse_timeout, cfg.operation_timeout), cfg.write_timeout);
        let id = self.link.next_id();
        let contexts = self.link.accepted().to_vec();
        let sent = store_on(&mut self.link.assoc, &contexts, &limits, write_timeout, id, part10, opts, None);
        let r = tokio::time::timeout_at(limits.deadline, sent).await.unwrap_or_else(|_| Err(ScuError::timeout("end of the C-STORE", limits.operation)));
        self.lost = match &r {
            Err(e) if e.ends_association() => Some(e.to_string()),
            _ => None,
        };
        r
    }

    /// Releases the association; one that was lost is aborted instead.
    pub async fn release(self) -> Result<(), ScuError> {
        if self.lost.is_some() {
            self.link.abort().await;
            return Ok(());
        }
        self.link.release().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_gets_an_uncompressed_fallback_and_each_of_its_syntaxes_alone() {
        let classes = vec![
            ("1.2.840.10008.5.1.4.1.1.2".to_owned(), vec!["1.2.840.10008.1.2".to_owned(), "1.2.840.10008.1.2.4.90".to_owned()]),
            ("1.2.840.10008.5.1.4.1.1.4".to_owned(), vec!["1.2.840.10008.1.2.1".to_owned()]),
        ];
        let p = proposal(&classes);
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].1, vec!["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]);
        assert!(p.contains(&("1.2.840.10008.5.1.4.1.1.2".to_owned(), vec!["1.2.840.10008.1.2".to_owned()])));
        let many: Vec<(String, Vec<String>)> = (0..200).map(|i| (format!("1.2.3.{i}"), vec!["1.2.840.10008.1.2.1".to_owned()])).collect();
        assert_eq!(proposal(&many).len(), MAX_CONTEXTS);
    }
}
