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
use crate::status::Status;

pub const QUERY_RETRIEVE_LEVEL: Tag = Tag(0x0008, 0x0052);
pub const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
pub const FAILED_SOP_INSTANCE_UID_LIST: Tag = Tag(0x0008, 0x0058);

pub fn parse(data: &[u8], ts_uid: &str) -> Result<InMemDicomObject, String> {
    dicom_scan::scan_dataset_ordered(data, ts_uid).map_err(|e| e.to_string())?;
    let ts = registered(ts_uid)?;
    InMemDicomObject::read_dataset_with_ts(data, ts).map_err(|e| e.to_string())
}

/// The registry's transfer syntax, or for one it lacks that the gateway
/// accepts (the retired JPEG processes) Explicit VR Little Endian, which
/// encodes every data set but the implicit, big endian and deflated ones
/// (PS3.5 10, A.4).
fn registered(ts_uid: &str) -> Result<&'static dicom_encoding::TransferSyntax, String> {
    let known = |uid: &str| TransferSyntaxRegistry.get(uid).ok_or_else(|| format!("unknown transfer syntax {ts_uid}"));
    match known(ts_uid) {
        Ok(ts) => Ok(ts),
        Err(e) if crate::sop_classes::ACCEPTED_TRANSFER_SYNTAXES.iter().any(|(u, _)| *u == ts_uid) => known(dicom_scan::TS_EXPLICIT_LE).map_err(|_| e),
        Err(e) => Err(e),
    }
}

pub fn encode(obj: &InMemDicomObject, ts_uid: &str) -> Result<Vec<u8>, String> {
    let ts = registered(ts_uid)?;
    let cs = obj
        .get(SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .and_then(|s| SpecificCharacterSet::from_code(s.split('\\').next().unwrap_or("").trim()))
        .unwrap_or_default();
    let mut out = Vec::new();
    obj.write_dataset_with_ts_cs(&mut out, ts, cs).map_err(|e| e.to_string())?;
    Ok(out)
}

/// `parse` on the blocking pool: a hostile identifier costs CPU, and the
/// async workers serve every association. `None` if the task itself failed.
pub(crate) async fn parse_off_runtime(data: Vec<u8>, ts_uid: &str) -> Option<Result<InMemDicomObject, String>> {
    let ts = ts_uid.to_owned();
    tokio::task::spawn_blocking(move || parse(&data, &ts)).await.ok()
}

/// The identifier of a query message, with its model and level checked,
/// parsed on the blocking pool (a hostile identifier costs CPU, and the
/// async workers serve every association).
pub(crate) async fn query(ctx: &Ctx, model: Model, data: Option<Vec<u8>>, overflow: bool, ts: &str) -> Result<Query, Answer> {
    if overflow {
        return Err(Answer::failure(Status::OUT_OF_RESOURCES, format!("identifier over {} bytes", crate::message::MAX_IDENTIFIER)));
    }
    let data = data.ok_or_else(|| Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "no identifier"))?;
    let identifier = parse_off_runtime(data, ts)
        .await
        .ok_or_else(|| Answer::failure(Status::OUT_OF_RESOURCES, "identifier parsing failed"))?
        .map_err(|e| Answer::failure(Status::CANNOT_UNDERSTAND, e))?;
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

pub const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
pub const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
pub const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
pub const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);

/// A C-MOVE or C-GET identifier must name what it retrieves by the unique
/// keys of its level and every level above (PS3.4 C.4.2.2.1): each
/// present, not empty, without wildcards, and a single value above the
/// retrieve level. Anything else (an empty Study Instance UID, a `*`)
/// would select the whole archive.
pub fn check_unique_keys(q: &Query) -> Result<(), Answer> {
    let mut needed: Vec<(Tag, &str, bool)> = Vec::new();
    let levels = [Level::Patient, Level::Study, Level::Series, Level::Image];
    for l in levels.iter().filter(|l| **l <= q.level) {
        let list = *l == q.level;
        match l {
            Level::Patient if q.model == Model::PatientRoot => needed.push((PATIENT_ID, "Patient ID", list)),
            Level::Patient => {}
            Level::Study => needed.push((STUDY_INSTANCE_UID, "Study Instance UID", list)),
            Level::Series => needed.push((SERIES_INSTANCE_UID, "Series Instance UID", list)),
            Level::Image => needed.push((SOP_INSTANCE_UID, "SOP Instance UID", list)),
        }
    }
    let refuse = |why: String| Err(Answer::failure(Status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, why));
    for (tag, name, list) in needed {
        let v = q.identifier.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim_matches([' ', '\0']).to_owned()).unwrap_or_default();
        if v.is_empty() {
            return refuse(format!("{name} is required to retrieve at {} level", q.level.as_str()));
        }
        let values: Vec<&str> = v.split('\\').map(str::trim).collect();
        if values.iter().any(|x| x.is_empty()) {
            return refuse(format!("{name} has an empty value"));
        }
        // Patient ID (LO) matches * and ? as wildcards; in a UID they are
        // no wildcard (PS3.4 C.2.2.2.4), so only a UID of nothing else is
        // taken as one (a UID an archive holds may contain them).
        let wild = |x: &&str| if tag == PATIENT_ID { x.contains(['*', '?']) } else { x.chars().all(|c| c == '*' || c == '?') };
        if values.iter().any(wild) {
            return refuse(format!("{name} is a unique key: no wildcards"));
        }
        if !list && values.len() > 1 {
            return refuse(format!("{name} takes one value above the retrieve level"));
        }
    }
    Ok(())
}
