//! The C-FIND identifiers a harvest sends a site's PACS, and its answers
//! read into what the index records. An answer is untrusted input: UIDs
//! are checked as an arriving file's are, dates and times normalised or
//! dropped, counts parsed or left unknown.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;

use crate::dicom::extract::{nhs_number, normalise_da, normalise_tm};
use crate::index::model::{InstanceMeta, OtherId};
use crate::query::rows::tags::*;

const OTHER_PATIENT_IDS_SEQUENCE: Tag = Tag(0x0010, 0x1002);
const TYPE_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0022);
const SAMPLES_PER_PIXEL: Tag = Tag(0x0028, 0x0002);
const PHOTOMETRIC_INTERPRETATION: Tag = Tag(0x0028, 0x0004);

/// A study as a site's PACS describes it: patient and study attributes in
/// an `InstanceMeta` (instance fields empty), and its counts if given.
#[derive(Clone, Debug)]
pub struct StudyAnswer {
    pub meta: InstanceMeta,
    /// Modalities in Study, as the site gives it (backslash-joined).
    pub modalities: String,
    /// Asked with every attribute the index records (else only those a
    /// pass compares: UID, date, patient, counts).
    pub complete: bool,
    pub series: Option<u32>,
    pub instances: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct SeriesAnswer {
    pub uid: String,
    pub modality: String,
    pub number: Option<i64>,
    pub description: String,
    pub body_part: String,
    pub date: String,
    pub time: String,
    pub instances: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct ImageAnswer {
    pub sop_uid: String,
    pub sop_class: String,
    pub number: Option<i64>,
    pub frames: u32,
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
}

fn put(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    let value = if v.is_empty() {
        PrimitiveValue::Empty
    } else if vr == VR::UI && v.len() % 2 == 1 {
        PrimitiveValue::from(format!("{v}\0"))
    } else {
        PrimitiveValue::from(v)
    };
    o.put(DataElement::new(tag, vr, value));
}

fn level(o: &mut InMemDicomObject, l: &str) {
    put(o, QUERY_RETRIEVE_LEVEL, VR::CS, l);
    // Answers may hold accented names: ask for them in UTF-8 (a PACS may answer in its own set).
    put(o, SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
}

/// Study level: every study of `date` (a DA range, `A-B`, `A-` or `-B`).
/// `complete`: with everything the index records (a first pass, where
/// nearly every study is new); else only what a pass compares (UID,
/// patient, counts): what costs a PACS most to answer (Other Patient IDs
/// Sequence, read from each study's files by some) is then asked only of
/// the studies new or changed.
pub fn studies_dated(date: &str, complete: bool) -> InMemDicomObject {
    if complete {
        let mut o = study_keys();
        put(&mut o, STUDY_DATE, VR::DA, date);
        return o;
    }
    let mut o = InMemDicomObject::new_empty();
    level(&mut o, "STUDY");
    for (t, vr) in [
        (STUDY_INSTANCE_UID, VR::UI),
        (STUDY_DATE, VR::DA),
        (PATIENT_ID, VR::LO),
        (ISSUER_OF_PATIENT_ID, VR::LO),
        (NUMBER_OF_STUDY_RELATED_SERIES, VR::IS),
        (NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS),
    ] {
        put(&mut o, t, vr, "");
    }
    put(&mut o, STUDY_DATE, VR::DA, date);
    o
}

/// Study level: one study by its UID, with everything the index records.
pub fn study(uid: &str) -> InMemDicomObject {
    let mut o = study_keys();
    put(&mut o, STUDY_INSTANCE_UID, VR::UI, uid);
    o
}

/// Study level: the studies matching `keys` (tag, VR, value: C-FIND
/// matching), among the attributes a harvest asks for; others are left out.
pub fn studies_matching(keys: &[(Tag, VR, &str)]) -> InMemDicomObject {
    let mut o = study_keys();
    for &(t, vr, v) in keys {
        if t != OTHER_PATIENT_IDS_SEQUENCE && o.get(t).is_some() {
            put(&mut o, t, vr, v);
        }
    }
    o
}

fn study_keys() -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    level(&mut o, "STUDY");
    for (t, vr) in [
        (STUDY_INSTANCE_UID, VR::UI),
        (STUDY_DATE, VR::DA),
        (STUDY_TIME, VR::TM),
        (ACCESSION_NUMBER, VR::SH),
        (STUDY_ID, VR::SH),
        (REFERRING_PHYSICIAN_NAME, VR::PN),
        (STUDY_DESCRIPTION, VR::LO),
        (INSTITUTION_NAME, VR::LO),
        (MODALITIES_IN_STUDY, VR::CS),
        (PATIENT_NAME, VR::PN),
        (PATIENT_ID, VR::LO),
        (ISSUER_OF_PATIENT_ID, VR::LO),
        (PATIENT_BIRTH_DATE, VR::DA),
        (PATIENT_SEX, VR::CS),
        (NUMBER_OF_STUDY_RELATED_SERIES, VR::IS),
        (NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS),
    ] {
        put(&mut o, t, vr, "");
    }
    // The NHS number travels in Other Patient IDs Sequence.
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, PATIENT_ID, VR::LO, "");
    put(&mut item, ISSUER_OF_PATIENT_ID, VR::LO, "");
    put(&mut item, TYPE_OF_PATIENT_ID, VR::CS, "");
    o.put(DataElement::new(OTHER_PATIENT_IDS_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item])));
    o
}

/// Series level: the series of one study.
pub fn series_of(study: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    level(&mut o, "SERIES");
    put(&mut o, STUDY_INSTANCE_UID, VR::UI, study);
    for (t, vr) in [
        (SERIES_INSTANCE_UID, VR::UI),
        (MODALITY, VR::CS),
        (SERIES_NUMBER, VR::IS),
        (SERIES_DESCRIPTION, VR::LO),
        (BODY_PART_EXAMINED, VR::CS),
        (SERIES_DATE, VR::DA),
        (SERIES_TIME, VR::TM),
        (NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS),
    ] {
        put(&mut o, t, vr, "");
    }
    o
}

/// Image level: the instances of one series.
pub fn images_of(study: &str, series: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    level(&mut o, "IMAGE");
    put(&mut o, STUDY_INSTANCE_UID, VR::UI, study);
    put(&mut o, SERIES_INSTANCE_UID, VR::UI, series);
    image_keys(&mut o);
    o
}

/// Image level: every instance of a study at once, with its series'
/// attributes (a relational query: the Series Instance UID left universal).
/// Many PACS answer it; one that refuses is asked series by series.
pub fn images_of_study(study: &str) -> InMemDicomObject {
    let mut o = series_of(study);
    put(&mut o, QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE");
    o.remove_element(NUMBER_OF_SERIES_RELATED_INSTANCES);
    image_keys(&mut o);
    o
}

fn image_keys(o: &mut InMemDicomObject) {
    for (t, vr) in [
        (SOP_INSTANCE_UID, VR::UI),
        (SOP_CLASS_UID, VR::UI),
        (INSTANCE_NUMBER, VR::IS),
        (NUMBER_OF_FRAMES, VR::IS),
        (ROWS, VR::US),
        (COLUMNS, VR::US),
        (BITS_ALLOCATED, VR::US),
        (SAMPLES_PER_PIXEL, VR::US),
        (PHOTOMETRIC_INTERPRETATION, VR::CS),
    ] {
        put(o, t, vr, "");
    }
}

fn text(o: &InMemDicomObject, t: Tag) -> String {
    o.get(t).and_then(|e| e.to_str().ok()).map(|s| s.trim_matches([' ', '\0']).to_owned()).unwrap_or_default()
}

fn int(o: &InMemDicomObject, t: Tag) -> Option<i64> {
    o.get(t).and_then(|e| e.to_str().ok()).and_then(|s| s.split('\\').next().and_then(|v| v.trim_matches([' ', '\0']).parse().ok()))
}

fn count(o: &InMemDicomObject, t: Tag) -> Option<u32> {
    int(o, t).and_then(|n| u32::try_from(n).ok())
}

fn us(o: &InMemDicomObject, t: Tag) -> u16 {
    o.get(t).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(0)
}

fn uid(o: &InMemDicomObject, t: Tag, what: &str) -> Result<String, String> {
    let v = text(o, t);
    crate::dicom::scan::check_uid(&v, "UID").map_err(|e| format!("{what}: {e}"))?;
    Ok(v)
}

fn date(o: &InMemDicomObject, t: Tag) -> String {
    normalise_da(&text(o, t)).unwrap_or_default()
}

fn time(o: &InMemDicomObject, t: Tag) -> String {
    normalise_tm(&text(o, t)).unwrap_or_default()
}

pub fn read_study(o: &InMemDicomObject) -> Result<StudyAnswer, String> {
    let other: Vec<OtherId> = o
        .get(OTHER_PATIENT_IDS_SEQUENCE)
        .and_then(|e| e.items())
        .map(|items| {
            items
                .iter()
                .map(|i| OtherId { id: text(i, PATIENT_ID), issuer: text(i, ISSUER_OF_PATIENT_ID), kind: text(i, TYPE_OF_PATIENT_ID) })
                .filter(|x| !x.id.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let patient_id = text(o, PATIENT_ID);
    let issuer = text(o, ISSUER_OF_PATIENT_ID);
    let meta = InstanceMeta {
        nhs_number: nhs_number(&other, &patient_id, &issuer),
        other_patient_ids: other,
        patient_id,
        issuer_of_patient_id: issuer,
        patient_name: text(o, PATIENT_NAME).trim_end_matches('=').to_owned(),
        patient_birth_date: date(o, PATIENT_BIRTH_DATE),
        patient_sex: text(o, PATIENT_SEX),
        study_uid: uid(o, STUDY_INSTANCE_UID, "Study Instance UID")?,
        study_date: date(o, STUDY_DATE),
        study_time: time(o, STUDY_TIME),
        accession_number: text(o, ACCESSION_NUMBER),
        study_id: text(o, STUDY_ID),
        referring_physician_name: text(o, REFERRING_PHYSICIAN_NAME),
        study_description: text(o, STUDY_DESCRIPTION),
        institution_name: text(o, INSTITUTION_NAME),
        remote: true,
        ..InstanceMeta::default()
    };
    Ok(StudyAnswer {
        meta,
        complete: o.get(OTHER_PATIENT_IDS_SEQUENCE).is_some() && o.get(STUDY_DESCRIPTION).is_some(),
        modalities: text(o, MODALITIES_IN_STUDY),
        series: count(o, NUMBER_OF_STUDY_RELATED_SERIES),
        instances: count(o, NUMBER_OF_STUDY_RELATED_INSTANCES),
    })
}

pub fn read_series(o: &InMemDicomObject) -> Result<SeriesAnswer, String> {
    Ok(SeriesAnswer {
        uid: uid(o, SERIES_INSTANCE_UID, "Series Instance UID")?,
        modality: text(o, MODALITY),
        number: int(o, SERIES_NUMBER),
        description: text(o, SERIES_DESCRIPTION),
        body_part: text(o, BODY_PART_EXAMINED),
        date: date(o, SERIES_DATE),
        time: time(o, SERIES_TIME),
        instances: count(o, NUMBER_OF_SERIES_RELATED_INSTANCES),
    })
}

pub fn read_image(o: &InMemDicomObject) -> Result<ImageAnswer, String> {
    Ok(ImageAnswer {
        sop_uid: uid(o, SOP_INSTANCE_UID, "SOP Instance UID")?,
        sop_class: uid(o, SOP_CLASS_UID, "SOP Class UID")?,
        number: int(o, INSTANCE_NUMBER),
        frames: count(o, NUMBER_OF_FRAMES).unwrap_or(1).max(1),
        rows: us(o, ROWS),
        columns: us(o, COLUMNS),
        bits_allocated: us(o, BITS_ALLOCATED),
        samples_per_pixel: us(o, SAMPLES_PER_PIXEL),
        photometric: text(o, PHOTOMETRIC_INTERPRETATION),
    })
}

/// One instance's record from its study, series and image answers.
pub fn instance(study: &InstanceMeta, series: &SeriesAnswer, image: &ImageAnswer) -> InstanceMeta {
    InstanceMeta {
        series_uid: series.uid.clone(),
        modality: series.modality.clone(),
        series_number: series.number,
        series_description: series.description.clone(),
        body_part_examined: series.body_part.clone(),
        series_date: series.date.clone(),
        series_time: series.time.clone(),
        sop_uid: image.sop_uid.clone(),
        sop_class_uid: image.sop_class.clone(),
        instance_number: image.number,
        frames: image.frames,
        rows: image.rows,
        columns: image.columns,
        bits_allocated: image.bits_allocated,
        samples_per_pixel: image.samples_per_pixel,
        photometric: image.photometric.clone(),
        // Images without Rows (reports, documents) carry no pixel data.
        has_pixel_data: image.rows > 0,
        ..study.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_answer_is_read_and_checked() {
        let mut o = study("1.2.3");
        put(&mut o, PATIENT_ID, VR::LO, "D1234567");
        put(&mut o, ISSUER_OF_PATIENT_ID, VR::LO, "RBD");
        put(&mut o, STUDY_DATE, VR::DA, "2024.03.01");
        put(&mut o, STUDY_TIME, VR::TM, "not a time");
        put(&mut o, NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, "12");
        let mut item = InMemDicomObject::new_empty();
        put(&mut item, PATIENT_ID, VR::LO, "943 476 5919");
        put(&mut item, ISSUER_OF_PATIENT_ID, VR::LO, "NHS");
        o.put(DataElement::new(OTHER_PATIENT_IDS_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item])));
        let a = read_study(&o).unwrap();
        assert_eq!((a.meta.study_uid.as_str(), a.meta.study_date.as_str(), a.meta.study_time.as_str()), ("1.2.3", "20240301", ""));
        assert_eq!((a.instances, a.series), (Some(12), None));
        assert_eq!(a.meta.nhs_number.as_deref(), Some("9434765919"));
        assert!(a.meta.remote && a.complete);
        assert!(
            !read_study(&{
                let mut q = studies_dated("", false);
                put(&mut q, STUDY_INSTANCE_UID, VR::UI, "1.2.3");
                q
            })
            .unwrap()
            .complete
        );
        // A study without a usable UID is no study.
        let bad = study("");
        assert!(read_study(&bad).is_err());
    }
}
