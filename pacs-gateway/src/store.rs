//! C-STORE SCP, and the C-GET requestor's side of its sub-operations:
//! wrap the received data set, unchanged, as a Part 10 file, hand it to
//! the application, answer with its status. The data set is
//! untrusted: the application must validate it (radhub scans it with
//! dicom-scan before anything else).

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::PresentationContextNegotiated;
use tokio::net::TcpStream;

use crate::association::{Assoc, Ctx};
use crate::command::{field, tag, Command};
use crate::handler::{Answer, StoreRequest};
use crate::message::{self, Message, SendError};
use crate::sop_classes;
use crate::status::Status;

/// radhub's Implementation Class UID (PS3.7 D.3.3.2), under the UUID root.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.305828488182842179406785612937392049185";
pub const IMPLEMENTATION_VERSION_NAME: &str = "RADHUB_010";

pub(crate) async fn serve(assoc: &mut Assoc, ctx: &Ctx, pc: &PresentationContextNegotiated, msg: Message) -> Result<(), SendError> {
    let handler = ctx.handler.clone();
    let storage = sop_classes::accepted_as_storage(&pc.abstract_syntax);
    let limit = ctx.config.max_data_set_bytes;
    answer_request(assoc, pc, msg, &ctx.calling_ae, limit, storage, ctx.config.write_timeout, move |req| handler.store(req)).await
}

/// Answers one C-STORE-RQ received on `pc` (by the SCP, or by a C-GET
/// requestor): the data set wrapped as Part 10 and handed to `store` on
/// the blocking pool, its answer sent back. `storage` says whether `pc` is
/// a storage context; `source_ae` is the sender's AE title; a data set over
/// `limit` bytes was dropped by the assembler and is refused here.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer_request<A>(
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
    A: AsyncAssociation<TcpStream> + Send,
{
    let rq = &msg.command;
    let class = rq.str(tag::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let instance = rq.str(tag::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
    let answer = if msg.data_overflow {
        Answer::failure(Status::OUT_OF_RESOURCES, format!("data set over {limit} bytes"))
    } else if !storage || class != pc.abstract_syntax {
        Answer::failure(Status::SOP_CLASS_NOT_SUPPORTED, "SOP class not supported on this context")
    } else if instance.is_empty() {
        Answer::failure(Status::CANNOT_UNDERSTAND, "no Affected SOP Instance UID")
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
    if answer.status != Status::SUCCESS {
        tracing::info!(sop = %instance, status = format!("{:04X}", answer.status.0), comment = ?answer.comment, "C-STORE not plainly stored");
    }
    let mut rsp = Command::response_to(rq, field::C_STORE_RSP, answer.status, false);
    rsp.set_str(tag::AFFECTED_SOP_INSTANCE_UID, &instance);
    if let Some(c) = &answer.comment {
        rsp.set_str(tag::ERROR_COMMENT, &comment(c));
    }
    message::send(assoc, pc.id, &rsp, None, write_timeout).await
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
