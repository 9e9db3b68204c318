//! Matching of query keys against the index (PS3.4 C.2.2.2), shared by
//! C-FIND and QIDO-RS: both turn their request into `Key`s, `search` finds
//! the matching rows, and each protocol encodes the rows its own way.
//!
//! Person names match case-insensitively with Latin accents folded (the
//! standard leaves this to the SCP; radhub's choice, as in `radhub ls`).
//! Keys radhub does not hold are not used for matching and come back empty.

pub mod rows;

use dicom_core::{Tag, VR};

use crate::index::matching::{self, DateRange};
use crate::index::model::{sort_instances, sort_series};
use crate::index::{Index, IndexError, PatientFilter, StudyFilter};
use rows::{tags, Row};

/// The query/retrieve level of a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

/// One key of an identifier: tag, VR and the value asked for ("" for
/// return-only keys).
#[derive(Clone, Debug)]
pub struct Key {
    pub tag: Tag,
    pub vr: VR,
    pub value: String,
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

/// Matching rows at `level`: the first `skip` passed over, then at most
/// `max`. For retrieval at PATIENT level callers want the patient's
/// studies: they search at Study.
pub fn search(ix: &dyn Index, level: Level, keys: &[Key], skip: usize, max: Option<usize>) -> Result<Vec<Row>, IndexError> {
    let mut out = Vec::new();
    let max = max.unwrap_or(usize::MAX);
    if max == 0 {
        return Ok(out);
    }
    let mut skip = skip;
    let mut take = |row| {
        if skip > 0 {
            skip -= 1;
            return true;
        }
        out.push(row);
        out.len() < max
    };
    each(ix, level, keys, &mut take, &|| true)?;
    Ok(out)
}

/// Hands each matching row at `level` to `take`, newest study first, as
/// the index yields them, until `take` returns false or `wanted` (asked at
/// every candidate, matching or not) says the consumer is gone: nothing is
/// collected here, so a universal query costs what its consumer keeps.
pub fn each(ix: &dyn Index, level: Level, keys: &[Key], take: &mut dyn FnMut(Row) -> bool, wanted: &dyn Fn() -> bool) -> Result<(), IndexError> {
    match level {
        Level::Patient => {
            let f = PatientFilter {
                patient_id: value_of(keys, tags::PATIENT_ID).map(str::to_owned),
                issuer: value_of(keys, tags::ISSUER_OF_PATIENT_ID).map(str::to_owned),
                patient_name: value_of(keys, tags::PATIENT_NAME).map(str::to_owned),
                ..Default::default()
            };
            for p in ix.find_patients(&f) {
                if !wanted() {
                    break;
                }
                let mut row = Row::new();
                rows::patient(&p?, &mut row);
                if row_matches(keys, &row) && !take(row) {
                    break;
                }
            }
        }
        Level::Study => {
            let f = study_filter(keys);
            for s in ix.find_studies(&f) {
                if !wanted() {
                    break;
                }
                let mut row = Row::new();
                rows::study(&s?, &mut row);
                if row_matches(keys, &row) && !take(row) {
                    break;
                }
            }
        }
        Level::Series | Level::Image => {
            if let Some(list) = uid_list(keys, if level == Level::Image { tags::SOP_INSTANCE_UID } else { tags::SERIES_INSTANCE_UID }) {
                return by_uid(ix, level, keys, &list, take);
            }
            let f = study_filter(&parent_keys(keys, Level::Study));
            let study_keys = parent_keys(keys, Level::Study);
            let series_keys = parent_keys(keys, Level::Series);
            'studies: for s in ix.find_studies(&f) {
                if !wanted() {
                    break;
                }
                let s = s?;
                let mut study_row = Row::new();
                rows::study(&s, &mut study_row);
                if !row_matches(&study_keys, &study_row) {
                    continue;
                }
                let mut series = ix.series_of(&s.uid)?;
                sort_series(&mut series);
                for se in series {
                    let mut row = study_row.clone();
                    rows::series(&se, &mut row);
                    if level == Level::Series {
                        if row_matches(keys, &row) && !take(row) {
                            break 'studies;
                        }
                        continue;
                    }
                    if !row_matches(&series_keys, &row) {
                        continue;
                    }
                    let mut instances = ix.instances_of(&s.uid, Some(&se.uid))?;
                    sort_instances(&mut instances);
                    for i in instances {
                        let mut irow = row.clone();
                        rows::instance(&i, &mut irow);
                        if row_matches(keys, &irow) && !take(irow) {
                            break 'studies;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The UIDs a key lists, when it names them exactly (no wildcard).
fn uid_list(keys: &[Key], tag: Tag) -> Option<Vec<String>> {
    let v = value_of(keys, tag)?;
    if matching::has_wildcard(v) {
        return None;
    }
    let mut list: Vec<String> = v.split('\\').map(|u| u.trim_end_matches(['\0', ' ']).to_owned()).filter(|u| !u.is_empty()).collect();
    list.dedup();
    (!list.is_empty()).then_some(list)
}

/// Series or instances named by UID: straight to each record through the
/// series → study and SOP → study keys, whatever the archive's size.
fn by_uid(ix: &dyn Index, level: Level, keys: &[Key], uids: &[String], take: &mut dyn FnMut(Row) -> bool) -> Result<(), IndexError> {
    for uid in uids {
        let (series, instance) = if level == Level::Image {
            let Some(i) = ix.instance(uid)? else { continue };
            (ix.series(&i.series_uid)?, Some(i))
        } else {
            (ix.series(uid)?, None)
        };
        let Some(se) = series.filter(|se| instance.as_ref().is_none_or(|i| i.study_uid == se.study_uid)) else { continue };
        let Some(st) = ix.study(&se.study_uid)? else { continue };
        let mut row = Row::new();
        rows::study(&st, &mut row);
        rows::series(&se, &mut row);
        if let Some(i) = &instance {
            rows::instance(i, &mut row);
        }
        if row_matches(keys, &row) && !take(row) {
            break;
        }
    }
    Ok(())
}

/// The series-level attributes radhub matches and returns (PS3.4 C.6.1.1.4).
pub const SERIES_KEYS: &[Tag] = &[
    tags::SERIES_INSTANCE_UID,
    tags::MODALITY,
    tags::SERIES_NUMBER,
    tags::SERIES_DESCRIPTION,
    tags::BODY_PART_EXAMINED,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];

/// The image-level attributes radhub matches and returns (PS3.4 C.6.1.1.5).
pub const IMAGE_KEYS: &[Tag] = &[
    tags::SOP_INSTANCE_UID,
    tags::SOP_CLASS_UID,
    tags::INSTANCE_NUMBER,
    tags::AVAILABLE_TRANSFER_SYNTAX_UID,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
];

/// The keys that belong to `level` and above (patient and study keys for
/// Study, plus series keys for Series).
fn parent_keys(keys: &[Key], level: Level) -> Vec<Key> {
    keys.iter().filter(|k| !IMAGE_KEYS.contains(&k.tag) && (level == Level::Series || !SERIES_KEYS.contains(&k.tag))).cloned().collect()
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
