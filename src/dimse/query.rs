//! C-FIND matching (PS3.4 C.2.2.2) over index rows, and the response
//! identifiers: only the requested keys, Specific Character Set set when a
//! value needs it.
//!
//! Person names match case-insensitively with Latin accents folded (the
//! standard leaves this to the SCP; radhub's choice, as in `radhub ls`).
//! Keys radhub does not hold are not used for matching and come back empty.

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;

use super::rows::{tags, Row};
use crate::index::matching::{self, DateRange};
use crate::index::StudyFilter;

/// One key of an identifier: tag, VR and the value asked for ("" for
/// return-only keys).
#[derive(Clone, Debug)]
pub struct Key {
    pub tag: Tag,
    pub vr: VR,
    pub value: String,
}

/// The keys of an identifier, sequences aside (radhub does not match on
/// sequence items).
pub fn keys(identifier: &InMemDicomObject) -> Vec<Key> {
    identifier
        .iter()
        .filter(|e| e.vr() != VR::SQ && e.tag() != tags::SPECIFIC_CHARACTER_SET && e.tag() != tags::QUERY_RETRIEVE_LEVEL)
        .map(|e| Key { tag: e.tag(), vr: e.vr(), value: e.to_str().map(|s| s.trim_matches([' ', '\0']).to_owned()).unwrap_or_default() })
        .collect()
}

pub fn value_of(keys: &[Key], tag: Tag) -> Option<&str> {
    keys.iter().find(|k| k.tag == tag).map(|k| k.value.as_str()).filter(|v| !v.is_empty())
}

/// Whether one row value matches one key (PS3.4 C.2.2.2.1–C.2.2.2.7).
fn key_matches(k: &Key, value: &str) -> bool {
    if k.value.is_empty() || k.value == "*" {
        return true;
    }
    match k.vr {
        // List of UID matching; a single UID is a list of one.
        VR::UI => k.value.split('\\').any(|u| u.trim_end_matches('\0') == value),
        VR::DA => DateRange::parse(&k.value).is_ok_and(|r| r.contains(value)),
        VR::TM => time_range(&k.value, value),
        VR::PN => matching::name_matches(&k.value, value),
        // A multi-valued key matches any of its values; a multi-valued
        // attribute (Modalities in Study) matches if any value does.
        _ => k.value.split('\\').any(|p| value.split('\\').any(|v| matching::wildcard(p, v))),
    }
}

/// TM range matching on HHMMSS prefixes.
fn time_range(query: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let norm = |t: &str| t.replace(':', "");
    let v = norm(value);
    match query.split_once('-') {
        None => v.starts_with(&norm(query)) || norm(query) == v,
        Some((a, b)) => {
            let (a, b) = (norm(a), norm(b));
            (a.is_empty() || v.as_str() >= a.as_str()) && (b.is_empty() || v.get(..b.len().min(v.len())).is_some_and(|p| p <= b.as_str()))
        }
    }
}

/// Whether a row matches every key it holds.
pub fn row_matches(keys: &[Key], row: &Row) -> bool {
    keys.iter().all(|k| row.get(&k.tag).is_none_or(|v| key_matches(k, v)))
}

/// The index filter that narrows study-level candidates: the most
/// selective keys go to secondary indexes; `row_matches` checks all.
pub fn study_filter(keys: &[Key]) -> StudyFilter {
    StudyFilter {
        study_uids: value_of(keys, tags::STUDY_INSTANCE_UID).map(|v| v.split('\\').map(|u| u.trim_end_matches('\0').to_owned()).collect()).unwrap_or_default(),
        patient_id: value_of(keys, tags::PATIENT_ID).filter(|v| !v.contains('\\')).map(str::to_owned),
        issuer: value_of(keys, tags::ISSUER_OF_PATIENT_ID).map(str::to_owned),
        patient_name: value_of(keys, tags::PATIENT_NAME).map(str::to_owned),
        accession: value_of(keys, tags::ACCESSION_NUMBER).filter(|v| !v.contains('\\')).map(str::to_owned),
        date: value_of(keys, tags::STUDY_DATE).and_then(|d| DateRange::parse(d).ok()),
        ..Default::default()
    }
}

/// The response identifier for a matching row: every requested key, with
/// the row's value or empty.
pub fn response(keys: &[Key], row: &Row, level: &str, retrieve_ae: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let mut non_ascii = false;
    for k in keys {
        let v = match k.tag {
            tags::RETRIEVE_AE_TITLE => retrieve_ae.to_owned(),
            tags::INSTANCE_AVAILABILITY => "ONLINE".to_owned(),
            t => row.get(&t).cloned().unwrap_or_default(),
        };
        non_ascii |= !v.is_ascii();
        o.put(DataElement::new(k.tag, k.vr, primitive(k.vr, v)));
    }
    o.put(DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, PrimitiveValue::from(level)));
    if non_ascii {
        o.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from("ISO_IR 192")));
    }
    o
}

fn primitive(vr: VR, v: String) -> PrimitiveValue {
    match vr {
        VR::US => v.split('\\').next().and_then(|n| n.parse::<u16>().ok()).map_or(PrimitiveValue::Empty, PrimitiveValue::from),
        VR::UL => v.split('\\').next().and_then(|n| n.parse::<u32>().ok()).map_or(PrimitiveValue::Empty, PrimitiveValue::from),
        _ if v.is_empty() => PrimitiveValue::Empty,
        // UIDs are padded with NUL, not space (PS3.5 9.1).
        VR::UI if v.len() % 2 == 1 => PrimitiveValue::from(format!("{v}\0")),
        _ => PrimitiveValue::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: Tag, vr: VR, v: &str) -> Key {
        Key { tag, vr, value: v.into() }
    }

    #[test]
    fn matching_per_vr() {
        let mut row = Row::new();
        row.insert(tags::PATIENT_NAME, "MÜLLER^JÖRG".into());
        row.insert(tags::STUDY_DATE, "20240315".into());
        row.insert(tags::STUDY_TIME, "101500".into());
        row.insert(tags::STUDY_INSTANCE_UID, "1.2.3".into());
        row.insert(tags::MODALITIES_IN_STUDY, "CT\\MR".into());
        let yes = [
            key(tags::PATIENT_NAME, VR::PN, "muller*"),
            key(tags::STUDY_DATE, VR::DA, "20240301-20240331"),
            key(tags::STUDY_TIME, VR::TM, "1000-1100"),
            key(tags::STUDY_INSTANCE_UID, VR::UI, "9.9\\1.2.3"),
            key(tags::MODALITIES_IN_STUDY, VR::CS, "MR"),
            key(tags::ACCESSION_NUMBER, VR::SH, "A*"),
        ];
        for k in &yes {
            assert!(row_matches(std::slice::from_ref(k), &row), "{k:?}");
        }
        let no = [
            key(tags::PATIENT_NAME, VR::PN, "SMITH*"),
            key(tags::STUDY_DATE, VR::DA, "2023-"),
            key(tags::STUDY_DATE, VR::DA, "-20231231"),
            key(tags::STUDY_TIME, VR::TM, "1100-"),
            key(tags::STUDY_INSTANCE_UID, VR::UI, "1.2"),
            key(tags::MODALITIES_IN_STUDY, VR::CS, "US"),
        ];
        for k in &no {
            assert!(!row_matches(std::slice::from_ref(k), &row), "{k:?}");
        }
    }
}
