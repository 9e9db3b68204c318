//! Query identifiers (C-FIND, C-MOVE, C-GET): validated with dicom-scan
//! before dicom-object parses them, and encoded back in the context's
//! transfer syntax with the character set they name.

use dicom_core::Tag;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::association::Ctx;
use crate::handler::{Answer, Level, Model, Query};
use crate::message::Message;
use crate::status::Status;

pub const QUERY_RETRIEVE_LEVEL: Tag = Tag(0x0008, 0x0052);
pub const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
pub const FAILED_SOP_INSTANCE_UID_LIST: Tag = Tag(0x0008, 0x0058);

pub fn parse(data: &[u8], ts_uid: &str) -> Result<InMemDicomObject, String> {
    dicom_scan::scan_dataset(data, ts_uid, &[]).map_err(|e| e.to_string())?;
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    InMemDicomObject::read_dataset_with_ts(data, ts).map_err(|e| e.to_string())
}

pub fn encode(obj: &InMemDicomObject, ts_uid: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let cs = obj
        .get(SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .and_then(|s| SpecificCharacterSet::from_code(s.split('\\').next().unwrap_or("").trim()))
        .unwrap_or_default();
    let mut out = Vec::new();
    obj.write_dataset_with_ts_cs(&mut out, ts, cs).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The identifier of a query message, with its model and level checked.
pub(crate) fn query(ctx: &Ctx, model: Model, msg: &Message, ts: &str) -> Result<Query, Answer> {
    let data = msg.data.as_deref().ok_or_else(|| Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "no identifier"))?;
    let identifier = parse(data, ts).map_err(|e| Answer::failure(Status::CANNOT_UNDERSTAND, e))?;
    let level = identifier
        .get(QUERY_RETRIEVE_LEVEL)
        .and_then(|e| e.to_str().ok())
        .and_then(|s| Level::parse(&s))
        .ok_or_else(|| Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "missing or unknown Query/Retrieve Level"))?;
    if model == Model::StudyRoot && level == Level::Patient {
        return Err(Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "Study Root has no PATIENT level"));
    }
    Ok(Query { calling_ae: ctx.calling_ae.clone(), model, level, identifier })
}
