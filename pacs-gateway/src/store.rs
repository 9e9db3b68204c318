//! C-STORE SCP, and the C-GET requestor's side of its sub-operations:
//! wrap the received data set, unchanged, as a Part 10 file, hand it to
//! the application (the SCP streams it as it arrives), answer with its
//! status. The data set is
//! untrusted: the application must validate it (radhub scans it with
//! dicom-scan before anything else).

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::PresentationContextNegotiated;

use crate::association::Ctx;
use crate::command::{field, tag, Command};
use crate::handler::{Answer, Handler, StoreHeader, StoreRequest};
use crate::message::{self, Message, SendError};
use crate::sop_classes;
use crate::status::Status;

/// radhub's Implementation Class UID (PS3.7 D.3.3.2), under the UUID root.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.305828488182842179406785612937392049185";
pub const IMPLEMENTATION_VERSION_NAME: &str = "RADHUB_010";

/// A C-STORE being received by the SCP: each fragment of its data set goes
/// to a task on the blocking pool that writes it out (`Handler::receive`)
/// or, for a handler that does not stream, holds it; the association holds
/// at most `IN_FLIGHT` fragments of it.
pub(crate) struct Incoming {
    rq: Command,
    pc: u8,
    instance: String,
    received: usize,
    limit: usize,
    state: Receiving,
}

enum Receiving {
    /// Read through, then answered with this.
    Refused(Answer),
    /// `None` ends the data set; a channel closed without it abandons it.
    Writing { tx: tokio::sync::mpsc::Sender<Option<Vec<u8>>>, task: tokio::task::JoinHandle<Answer> },
}

/// Fragments handed on and not yet written: they bound the memory of one
/// association's C-STORE (each at most the max PDU length).
const IN_FLIGHT: usize = 4;

impl Incoming {
    pub fn begin(ctx: &Ctx, pc: &PresentationContextNegotiated, rq: Command) -> Self {
        let class = rq.str(tag::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
        let instance = rq.str(tag::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
        let limit = ctx.config.max_data_set_bytes;
        let state = match refusal(pc, &class, &instance, sop_classes::accepted_as_storage(&pc.abstract_syntax)) {
            Some(a) => Receiving::Refused(a),
            None => {
                let header = StoreHeader {
                    calling_ae: ctx.calling_ae.clone(),
                    sop_class_uid: class,
                    sop_instance_uid: instance.clone(),
                    transfer_syntax: pc.transfer_syntax.clone(),
                };
                let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
                let handler = ctx.handler.clone();
                Receiving::Writing { tx, task: tokio::task::spawn_blocking(move || write_out(&*handler, header, rx)) }
            }
        };
        Incoming { rq, pc: pc.id, instance, received: 0, limit, state }
    }

    /// The next fragment; waits while the writer is `IN_FLIGHT` behind.
    pub async fn push(&mut self, data: Vec<u8>) {
        self.received = self.received.saturating_add(data.len());
        if let Receiving::Writing { tx, .. } = &self.state {
            let over = self.received > self.limit;
            if over || tx.send(Some(data)).await.is_err() {
                let why = if over { format!("data set over {} bytes", self.limit) } else { "storage task failed".to_owned() };
                // Dropping the sender abandons what was written.
                self.state = Receiving::Refused(Answer::failure(Status::OUT_OF_RESOURCES, why));
            }
        }
    }

    /// The data set has arrived whole: stored (or refused), and answered.
    pub async fn finish<A, S>(self, assoc: &mut A, write_timeout: std::time::Duration) -> Result<(), SendError>
    where
        A: AsyncAssociation<S> + Send,
        S: crate::association::Stream,
    {
        let answer = match self.state {
            Receiving::Refused(a) => a,
            Receiving::Writing { tx, task } => {
                let _ = tx.send(None).await;
                drop(tx);
                task.await.unwrap_or_else(|_| Answer::failure(Status::OUT_OF_RESOURCES, "storage task failed"))
            }
        };
        respond(assoc, self.pc, &self.rq, &self.instance, answer, write_timeout).await
    }
}

/// The writer's side of `Incoming`: the file meta group, then each fragment.
fn write_out(handler: &dyn Handler, header: StoreHeader, mut rx: tokio::sync::mpsc::Receiver<Option<Vec<u8>>>) -> Answer {
    let meta = part10(&header.sop_class_uid, &header.sop_instance_uid, &header.transfer_syntax, &header.calling_ae, &[]);
    let abandoned = || Answer::failure(Status::OUT_OF_RESOURCES, "data set not received whole");
    match handler.receive(&header) {
        Some(mut file) => {
            file.write(&meta);
            loop {
                match rx.blocking_recv() {
                    Some(Some(d)) => file.write(&d),
                    Some(None) => return file.finish(),
                    None => return abandoned(),
                }
            }
        }
        None => {
            let mut buf = meta;
            loop {
                match rx.blocking_recv() {
                    Some(Some(d)) => buf.extend_from_slice(&d),
                    Some(None) => break,
                    None => return abandoned(),
                }
            }
            let StoreHeader { calling_ae, sop_class_uid, sop_instance_uid, transfer_syntax } = header;
            handler.store(StoreRequest { calling_ae, sop_class_uid, sop_instance_uid, transfer_syntax, file: buf })
        }
    }
}

/// Why a C-STORE on `pc` is refused before its data set is looked at.
fn refusal(pc: &PresentationContextNegotiated, class: &str, instance: &str, storage: bool) -> Option<Answer> {
    if !storage || class != pc.abstract_syntax {
        Some(Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "SOP class not supported on this context"))
    } else if instance.is_empty() {
        Some(Answer::failure(Status::CANNOT_UNDERSTAND, "no Affected SOP Instance UID"))
    } else {
        None
    }
}

/// Answers one C-STORE-RQ received whole on `pc` (by a C-GET requestor,
/// whose sub-operations come to it as ordinary messages): the data set
/// wrapped as Part 10 and handed to `store` on the blocking pool, its
/// answer sent back. `storage` says whether `pc` is a storage context;
/// `source_ae` is the sender's AE title; a data set over `limit` bytes was
/// dropped by the assembler and is refused here.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer_request<A, S>(
    assoc: &mut A,
    pc: &PresentationContextNegotiated,
    msg: Message,
    source_ae: &str,
    limit: usize,
    storage: bool,
    write_timeout: std::time::Duration,
    store: impl FnOnce(StoreRequest) -> Answer + Send + 'static,
) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let rq = &msg.command;
    let class = rq.str(tag::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let instance = rq.str(tag::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
    let answer = if msg.data_overflow {
        Answer::failure(Status::OUT_OF_RESOURCES, format!("data set over {limit} bytes"))
    } else if let Some(refused) = refusal(pc, &class, &instance, storage) {
        refused
    } else {
        match msg.data {
            None => Answer::failure(Status::CANNOT_UNDERSTAND, "no data set"),
            Some(data) => {
                let file = part10(&class, &instance, &pc.transfer_syntax, source_ae, &data);
                drop(data);
                let req = StoreRequest {
                    calling_ae: source_ae.to_owned(),
                    sop_class_uid: class.clone(),
                    sop_instance_uid: instance.clone(),
                    transfer_syntax: pc.transfer_syntax.clone(),
                    file,
                };
                tokio::task::spawn_blocking(move || store(req)).await.unwrap_or_else(|_| Answer::failure(Status::OUT_OF_RESOURCES, "storage task failed"))
            }
        }
    };
    respond(assoc, pc.id, rq, &instance, answer, write_timeout).await
}

pub(crate) async fn respond<A, S>(
    assoc: &mut A,
    pc: u8,
    rq: &Command,
    instance: &str,
    answer: Answer,
    write_timeout: std::time::Duration,
) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    if answer.status != Status::SUCCESS {
        tracing::info!(sop = %instance, status = format!("{:04X}", answer.status.0), comment = ?answer.comment, "C-STORE not plainly stored");
    }
    let mut rsp = Command::response_to(rq, field::C_STORE_RSP, answer.status, false);
    rsp.set_str(tag::AFFECTED_SOP_INSTANCE_UID, instance);
    if let Some(c) = &answer.comment {
        rsp.set_str(tag::ERROR_COMMENT, &comment(c));
    }
    message::send(assoc, pc, &rsp, None, write_timeout).await
}

/// Error Comment is LO: at most 64 characters, no backslash.
pub(crate) fn comment(s: &str) -> String {
    s.chars().filter(|c| *c != '\\' && !c.is_control()).take(64).collect()
}

/// A Part 10 file: preamble, file meta group (explicit VR little endian),
/// then the data set bytes exactly as received.
pub fn part10(sop_class: &str, sop_instance: &str, transfer_syntax: &str, source_ae: &str, data_set: &[u8]) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, elem: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend([0x02, 0x00]);
        out.extend(elem.to_le_bytes());
        out.extend(vr);
        if vr == b"OB" {
            out.extend([0, 0]);
            out.extend((v.len() as u32).to_le_bytes());
        } else {
            out.extend((v.len() as u16).to_le_bytes());
        }
        out.extend(v);
    }
    let mut meta = Vec::with_capacity(256);
    el(&mut meta, 0x0001, b"OB", &[0, 1], 0);
    el(&mut meta, 0x0002, b"UI", sop_class.as_bytes(), 0);
    el(&mut meta, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    el(&mut meta, 0x0010, b"UI", transfer_syntax.as_bytes(), 0);
    el(&mut meta, 0x0012, b"UI", IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    el(&mut meta, 0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.as_bytes(), b' ');
    if !source_ae.is_empty() {
        el(&mut meta, 0x0016, b"AE", source_ae.as_bytes(), b' ');
    }
    let mut out = Vec::with_capacity(132 + 12 + meta.len() + data_set.len());
    out.extend([0u8; 128]);
    out.extend(b"DICM");
    out.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend((meta.len() as u32).to_le_bytes());
    out.extend(meta);
    out.extend_from_slice(data_set);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part10_wrapper_scans_and_keeps_the_data_set() {
        // A data set of one element, (0008,0018) UI.
        let ds = [0x08, 0x00, 0x18, 0x00, b'U', b'I', 4, 0, b'1', b'.', b'2', 0];
        let f = part10("1.2.840.10008.5.1.4.1.1.7", "1.2", "1.2.840.10008.1.2.1", "MODALITY", &ds);
        let s = dicom_scan::scan(&f, &[]).unwrap();
        assert_eq!(s.transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(s.uid_of(0x0008_0018), Some("1.2"));
        assert!(f.ends_with(&ds));
        let group_len = u32::from_le_bytes(f[140..144].try_into().unwrap()) as usize;
        assert_eq!(144 + group_len + ds.len(), f.len());
    }

    #[test]
    fn comments_fit_lo() {
        assert_eq!(comment(&"x".repeat(100)).len(), 64);
        assert_eq!(comment("a\\b\nc"), "abc");
    }
}
