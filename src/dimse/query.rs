//! C-FIND identifiers: their keys for `query::each`, and the response
//! identifiers: the requested keys (and Issuer of Patient ID with any
//! Patient ID), Specific Character Set set when a value needs it.

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;

use crate::query::rows::{tags, Row};
use crate::query::Key;

/// The keys of an identifier, sequences aside (radhub does not match on
/// sequence items).
pub fn keys(identifier: &InMemDicomObject) -> Vec<Key> {
    identifier
        .iter()
        .filter(|e| e.vr() != VR::SQ && e.tag() != tags::SPECIFIC_CHARACTER_SET && e.tag() != tags::QUERY_RETRIEVE_LEVEL)
        .map(|e| Key { tag: e.tag(), vr: e.vr(), value: e.to_str().map(|s| s.trim_matches([' ', '\0']).to_owned()).unwrap_or_default() })
        .collect()
}

/// The response identifier for a matching row: every requested key, with
/// the row's value or empty.
pub fn response(keys: &[Key], row: &Row, level: &str, retrieve_ae: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let mut non_ascii = false;
    for k in keys {
        let v = match k.tag {
            tags::RETRIEVE_AE_TITLE => retrieve_ae.to_owned(),
            tags::INSTANCE_AVAILABILITY => row.get(&k.tag).cloned().unwrap_or_else(|| "ONLINE".to_owned()),
            t => row.get(&t).cloned().unwrap_or_default(),
        };
        non_ascii |= !v.is_ascii();
        o.put(DataElement::new(k.tag, k.vr, primitive(k.vr, v)));
    }
    // A Patient ID means nothing without its issuer (PS3.4 C.6.1.1.2): say it, asked or not.
    if keys.iter().any(|k| k.tag == tags::PATIENT_ID) && !keys.iter().any(|k| k.tag == tags::ISSUER_OF_PATIENT_ID) {
        let issuer = row.get(&tags::ISSUER_OF_PATIENT_ID).cloned().unwrap_or_default();
        non_ascii |= !issuer.is_ascii();
        o.put(DataElement::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, primitive(VR::LO, issuer)));
    }
    o.put(DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, PrimitiveValue::from(level)));
    if non_ascii {
        o.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from("ISO_IR 192")));
    }
    o
}

pub const OTHER_PATIENT_IDS_SEQUENCE: dicom_core::Tag = dicom_core::Tag(0x0010, 0x1002);
const TYPE_OF_PATIENT_ID: dicom_core::Tag = dicom_core::Tag(0x0010, 0x0022);

/// Other Patient IDs Sequence with an item per identifier.
pub fn put_other_ids(o: &mut InMemDicomObject, ids: &[crate::index::model::OtherId]) {
    let items: Vec<InMemDicomObject> = ids
        .iter()
        .map(|i| {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::PATIENT_ID, VR::LO, primitive(VR::LO, i.id.clone())),
                DataElement::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, primitive(VR::LO, i.issuer.clone())),
                DataElement::new(TYPE_OF_PATIENT_ID, VR::CS, primitive(VR::CS, i.kind.clone())),
            ])
        })
        .collect();
    if ids.iter().any(|i| !(i.id.is_ascii() && i.issuer.is_ascii())) {
        o.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from("ISO_IR 192")));
    }
    o.put(DataElement::new(OTHER_PATIENT_IDS_SEQUENCE, VR::SQ, dicom_core::value::DataSetSequence::from(items)));
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
