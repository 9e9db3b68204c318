//! C-FIND identifiers: their keys for `query::each`, and the response
//! identifiers: the requested keys (and Issuer of Patient ID with any
//! Patient ID), Specific Character Set set when a value needs it.

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;

use crate::query::rows::{tags, Row};
use crate::query::Key;

/// The keys of an identifier. Of sequences, Issuer of Accession Number
/// Sequence is matched (its item's attributes as keys; an empty sequence
/// asks for all three); other sequences are not matched on.
pub fn keys(identifier: &InMemDicomObject) -> Vec<Key> {
    let key = |e: &DataElement<InMemDicomObject>| Key {
        tag: e.tag(),
        vr: e.vr(),
        value: e.to_str().map(|s| s.trim_matches([' ', '\0']).to_owned()).unwrap_or_default(),
    };
    let mut out: Vec<Key> = identifier
        .iter()
        .filter(|e| e.vr() != VR::SQ && e.tag() != tags::SPECIFIC_CHARACTER_SET && e.tag() != tags::QUERY_RETRIEVE_LEVEL)
        .filter(|e| !tags::ACCESSION_ISSUER_ITEM.contains(&e.tag()))
        .map(key)
        .collect();
    if let Ok(seq) = identifier.element(tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE) {
        match seq.items().and_then(<[_]>::first) {
            Some(item) => out.extend(item.iter().filter(|e| tags::ACCESSION_ISSUER_ITEM.contains(&e.tag())).map(key)),
            None => out.extend(tags::ACCESSION_ISSUER_ITEM.iter().map(|&tag| Key { tag, vr: VR::UT, value: String::new() })),
        }
    }
    out
}

/// The response identifier for a matching row: every requested key, with
/// the row's value or empty. Its Specific Character Set is the request's
/// (`charset`, as the request gave it) when every value fits it, else
/// ISO_IR 192 (UTF-8), radhub's own; none when the values are ASCII and the
/// request named none (PS3.4 C.4.1.1.3.1).
pub fn response(keys: &[Key], row: &Row, level: &str, retrieve_ae: &str, charset: Option<&str>) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let mut texts: Vec<String> = Vec::new();
    let mut issuer: Option<InMemDicomObject> = None;
    for k in keys {
        if tags::ACCESSION_ISSUER_ITEM.contains(&k.tag) {
            let v = row.get(&k.tag).cloned().unwrap_or_default();
            if !v.is_ascii() {
                texts.push(v.clone());
            }
            issuer.get_or_insert_with(InMemDicomObject::new_empty).put(DataElement::new(k.tag, k.vr, primitive(k.vr, v)));
            continue;
        }
        let v = match k.tag {
            tags::RETRIEVE_AE_TITLE => retrieve_ae.to_owned(),
            tags::INSTANCE_AVAILABILITY => row.get(&k.tag).cloned().unwrap_or_else(|| "ONLINE".to_owned()),
            t => row.get(&t).cloned().unwrap_or_default(),
        };
        if !v.is_ascii() {
            texts.push(v.clone());
        }
        o.put(DataElement::new(k.tag, k.vr, primitive(k.vr, v)));
    }
    // A Patient ID means nothing without its issuer (PS3.4 C.6.1.1.2): say it, asked or not.
    if keys.iter().any(|k| k.tag == tags::PATIENT_ID) && !keys.iter().any(|k| k.tag == tags::ISSUER_OF_PATIENT_ID) {
        let issuer = row.get(&tags::ISSUER_OF_PATIENT_ID).cloned().unwrap_or_default();
        if !issuer.is_ascii() {
            texts.push(issuer.clone());
        }
        o.put(DataElement::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, primitive(VR::LO, issuer)));
    }
    if let Some(item) = issuer {
        o.put(DataElement::new(tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE, VR::SQ, dicom_core::value::DataSetSequence::from(vec![item])));
    }
    o.put(DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, PrimitiveValue::from(level)));
    if let Some(cs) = answer_charset(charset, &texts) {
        o.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from(cs)));
    }
    o
}

/// radhub's own character set, for values the request's cannot hold.
pub const UTF8: &str = "ISO_IR 192";

/// The Specific Character Set to answer in: the request's when every
/// non-ASCII value (`non_ascii`) encodes in it (a single character set
/// without code extensions; with them only ASCII is known to fit), else
/// UTF-8; none when nothing needs one and none was asked.
pub fn answer_charset(request: Option<&str>, non_ascii: &[String]) -> Option<String> {
    use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
    let request = request.map(|r| r.trim_matches([' ', '\0'])).filter(|r| !r.is_empty());
    if non_ascii.is_empty() {
        return request.map(str::to_owned);
    }
    if let Some(r) = request {
        let single = !r.contains('\\') && !r.starts_with("ISO 2022");
        if let Some(cs) = SpecificCharacterSet::from_code(r).filter(|_| single) {
            if non_ascii.iter().all(|v| cs.encode(v).is_ok()) {
                return Some(r.to_owned());
            }
        }
    }
    Some(UTF8.to_owned())
}

/// The keys radhub matches and returns at each level (the attributes of
/// `crate::query::rows`), besides those every answer carries: Query/Retrieve
/// Level, Specific Character Set, Retrieve AE Title, Instance Availability,
/// and Other Patient IDs Sequence (from the patient's record). Any other
/// key is optional and unsupported: it comes back empty and the match's
/// pending status is FF01 (PS3.4 C.4.1.1.4).
pub fn supported(level: pacs_gateway::Level, tag: dicom_core::Tag) -> bool {
    use pacs_gateway::Level;
    const ALWAYS: &[dicom_core::Tag] =
        &[tags::QUERY_RETRIEVE_LEVEL, tags::SPECIFIC_CHARACTER_SET, tags::RETRIEVE_AE_TITLE, tags::INSTANCE_AVAILABILITY, OTHER_PATIENT_IDS_SEQUENCE];
    const PATIENT: &[dicom_core::Tag] = &[tags::PATIENT_NAME, tags::PATIENT_ID, tags::ISSUER_OF_PATIENT_ID, tags::PATIENT_BIRTH_DATE, tags::PATIENT_SEX];
    const PATIENT_ONLY: &[dicom_core::Tag] =
        &[tags::OTHER_PATIENT_IDS, tags::NUMBER_OF_PATIENT_RELATED_STUDIES, tags::NUMBER_OF_PATIENT_RELATED_SERIES, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES];
    const STUDY: &[dicom_core::Tag] = &[
        tags::STUDY_INSTANCE_UID,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
        tags::STUDY_ID,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::STUDY_DESCRIPTION,
        tags::INSTITUTION_NAME,
        tags::MODALITIES_IN_STUDY,
        tags::SOP_CLASSES_IN_STUDY,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    ];
    use crate::query::{IMAGE_KEYS as IMAGE, SERIES_KEYS as SERIES};
    let levels: &[&[dicom_core::Tag]] = match level {
        Level::Patient => &[ALWAYS, PATIENT, PATIENT_ONLY],
        Level::Study => &[ALWAYS, PATIENT, STUDY],
        Level::Series => &[ALWAYS, PATIENT, STUDY, SERIES],
        Level::Image => &[ALWAYS, PATIENT, STUDY, SERIES, IMAGE],
    };
    levels.iter().any(|l| l.contains(&tag))
}

/// Why a key's value cannot be a matching key of its VR (PS3.4 C.2.2.2,
/// PS3.5 6.2): a DA, TM or DT that is no date, time or range of them, a UI
/// list holding something not a UID, a US or UL not a number. Such a
/// query would otherwise match nothing or everything, silently.
pub fn malformed(identifier: &InMemDicomObject) -> Option<String> {
    for e in identifier.iter() {
        let Ok(v) = e.to_str() else { continue };
        let v = v.trim_matches([' ', '\0']);
        if v.is_empty() || v == "*" {
            continue;
        }
        let t = e.tag();
        let name = dicom_dictionary_std::StandardDataDictionary.by_tag(t).map(|d| d.alias).unwrap_or("a key");
        let what = match e.vr() {
            VR::DA if !range_of(v, date) => "a date or date range (YYYYMMDD, YYYYMMDD-YYYYMMDD)",
            VR::TM if !range_of(v, time) => "a time or time range (HHMMSS.FFFFFF)",
            VR::DT if !range_of(v, datetime) => "a date-time or date-time range",
            VR::UI if !v.split('\\').all(|u| uid(u.trim_matches([' ', '\0']))) => "a UID or a list of UIDs",
            VR::US | VR::UL if !v.split('\\').all(|n| n.trim().parse::<u32>().is_ok()) => "a number",
            _ => continue,
        };
        return Some(format!("{name} {t}: {v:?} is not {what}"));
    }
    None
}

use dicom_core::dictionary::DataDictionary;

/// A single value or a range (`a-b`, `a-`, `-b`) of `one`.
fn range_of(v: &str, one: fn(&str) -> bool) -> bool {
    match v.split_once('-') {
        // A DT's UTC offset (-HHMM) is no range: try the whole value first.
        _ if one(v) => true,
        None => false,
        Some((a, b)) => (!a.is_empty() || !b.is_empty()) && (a.is_empty() || one(a)) && (b.is_empty() || one(b)),
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// YYYYMMDD (and the ACR-NEMA YYYY.MM.DD radhub also reads).
fn date(s: &str) -> bool {
    let d = s.replace('.', "");
    if d.len() != 8 || !digits(&d) {
        return false;
    }
    let (m, day) = (d[4..6].parse::<u32>().unwrap_or(0), d[6..8].parse::<u32>().unwrap_or(0));
    (1..=12).contains(&m) && (1..=31).contains(&day)
}

/// HH[MM[SS[.F{1,6}]]] (and HH:MM:SS).
fn time(s: &str) -> bool {
    let t = s.replace(':', "");
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a.to_owned(), Some(f.to_owned())),
        None => (t.clone(), None),
    };
    if !digits(&hms) || !matches!(hms.len(), 2 | 4 | 6) || frac.as_ref().is_some_and(|f| hms.len() != 6 || f.len() > 6 || !digits(f)) {
        return false;
    }
    let part = |i: usize| hms.get(i..i + 2).map_or(0, |p| p.parse::<u32>().unwrap_or(99));
    part(0) < 24 && part(2) < 60 && part(4) <= 60
}

/// YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX].
fn datetime(s: &str) -> bool {
    let (body, offset) = match s.rfind(['+', '-']) {
        Some(i) if i >= 4 => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    };
    if offset.is_some_and(|o| o.len() != 4 || !digits(o)) {
        return false;
    }
    let (whole, frac) = body.split_once('.').map_or((body, None), |(a, f)| (a, Some(f)));
    if !digits(whole) || ![4, 6, 8, 10, 12, 14].contains(&whole.len()) || frac.is_some_and(|f| whole.len() != 14 || f.len() > 6 || !digits(f)) {
        return false;
    }
    (whole.len() < 8 || date(&whole[..8])) && (whole.len() <= 8 || time(&whole[8..]))
}

/// PS3.5 9.1, as query keys are checked: digits and dots, 64 at most.
fn uid(u: &str) -> bool {
    !u.is_empty() && u.len() <= 64 && u.split('.').all(digits)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(tag: dicom_core::Tag, vr: VR, v: &str) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([DataElement::new(tag, vr, PrimitiveValue::from(v))])
    }

    #[test]
    fn malformed_keys_are_named() {
        for bad in ["2026-13-01", "20261301", "2026010", "yesterday", "20260101-2026"] {
            assert!(malformed(&one(tags::STUDY_DATE, VR::DA, bad)).is_some_and(|m| m.contains("StudyDate")), "{bad}");
        }
        for good in ["20260101", "20260101-", "-20261231", "20250101-20260101", "2026.01.01"] {
            assert_eq!(malformed(&one(tags::STUDY_DATE, VR::DA, good)), None, "{good}");
        }
        for bad in ["25", "1260", "10:61", "101500.1234567", "noon"] {
            assert!(malformed(&one(tags::STUDY_TIME, VR::TM, bad)).is_some(), "{bad}");
        }
        for good in ["10", "1015", "101500", "101500.123", "080000-120000", "-1200", "10:15:00"] {
            assert_eq!(malformed(&one(tags::STUDY_TIME, VR::TM, good)), None, "{good}");
        }
        assert!(malformed(&one(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3\\abc")).is_some());
        assert_eq!(malformed(&one(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3\\1.2.4")), None);
        let dt = dicom_core::Tag(0x0008, 0x002A);
        assert_eq!(malformed(&one(dt, VR::DT, "20260101101500+0100")), None);
        assert_eq!(malformed(&one(dt, VR::DT, "2026-20270101")), None);
        assert!(malformed(&one(dt, VR::DT, "20261301")).is_some());
    }

    #[test]
    fn answers_in_the_request_character_set_when_the_values_fit() {
        let zoe = vec!["Zoë".to_owned()];
        assert_eq!(answer_charset(Some("ISO_IR 100"), &zoe).as_deref(), Some("ISO_IR 100"));
        assert_eq!(answer_charset(Some("ISO_IR 100"), &["Łukasz".to_owned()]).as_deref(), Some(UTF8));
        assert_eq!(answer_charset(None, &zoe).as_deref(), Some(UTF8));
        assert_eq!(answer_charset(None, &[]), None);
        assert_eq!(answer_charset(Some("ISO 2022 IR 6\\ISO 2022 IR 87"), &[]).as_deref(), Some("ISO 2022 IR 6\\ISO 2022 IR 87"));
        assert_eq!(answer_charset(Some("ISO 2022 IR 100"), &zoe).as_deref(), Some(UTF8));
    }

    #[test]
    fn issuer_of_accession_number_is_matched_and_answered_as_a_sequence() {
        let item = |v: &str| InMemDicomObject::from_element_iter([DataElement::new(tags::LOCAL_NAMESPACE_ENTITY_ID, VR::UT, PrimitiveValue::from(v))]);
        let mut id = one(tags::ACCESSION_NUMBER, VR::SH, "A1");
        id.put(DataElement::new(tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE, VR::SQ, dicom_core::value::DataSetSequence::from(vec![item("TELE")])));
        // A top-level Local Namespace Entity ID is not the accession's issuer.
        id.put(DataElement::new(tags::LOCAL_NAMESPACE_ENTITY_ID, VR::UT, PrimitiveValue::from("X")));
        let k = keys(&id);
        assert_eq!(
            k.iter().map(|k| (k.tag, k.value.as_str())).collect::<Vec<_>>(),
            [(tags::ACCESSION_NUMBER, "A1"), (tags::LOCAL_NAMESPACE_ENTITY_ID, "TELE")]
        );
        let mut row = Row::new();
        row.insert(tags::ACCESSION_NUMBER, "A1".into());
        row.insert(tags::LOCAL_NAMESPACE_ENTITY_ID, "TELE".into());
        assert!(crate::query::row_matches(&k, &row));
        row.insert(tags::LOCAL_NAMESPACE_ENTITY_ID, "RBD".into());
        assert!(!crate::query::row_matches(&k, &row), "the same number of another issuer");
        let r = response(&k, &row, "STUDY", "RADHUB", None);
        let seq = r.element(tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE).unwrap().items().unwrap();
        assert_eq!(seq[0].element(tags::LOCAL_NAMESPACE_ENTITY_ID).unwrap().to_str().unwrap(), "RBD");
        assert!(r.element(tags::LOCAL_NAMESPACE_ENTITY_ID).is_err(), "never at the top level");
        // An empty sequence asks for the issuer.
        let mut id = one(tags::ACCESSION_NUMBER, VR::SH, "");
        id.put(DataElement::new(tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE, VR::SQ, dicom_core::value::DataSetSequence::<InMemDicomObject>::empty()));
        assert_eq!(keys(&id).len(), 4);
    }

    #[test]
    fn keys_of_lower_levels_and_unknown_keys_are_unsupported() {
        use pacs_gateway::Level;
        assert!(supported(Level::Study, tags::STUDY_DATE) && supported(Level::Image, tags::PATIENT_NAME));
        assert!(!supported(Level::Study, tags::SOP_INSTANCE_UID));
        assert!(!supported(Level::Study, dicom_core::Tag(0x0010, 0x2160)), "Ethnic Group is not held");
    }
}
