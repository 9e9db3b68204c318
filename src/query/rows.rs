//! Index records as rows of DICOM attributes, one row per C-FIND match
//! candidate, holding its own level's keys and its parents' (PS3.4 C.6).
//! Values are text as the index holds it; multi-valued ones are joined
//! with a backslash, as DICOM encodes them.

use std::collections::BTreeMap;

use dicom_core::Tag;

use crate::index::model::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};

pub type Row = BTreeMap<Tag, String>;

pub mod tags {
    use dicom_core::Tag;
    pub const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
    pub const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
    pub const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
    pub const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
    pub const SERIES_DATE: Tag = Tag(0x0008, 0x0021);
    pub const STUDY_TIME: Tag = Tag(0x0008, 0x0030);
    pub const SERIES_TIME: Tag = Tag(0x0008, 0x0031);
    pub const ACCESSION_NUMBER: Tag = Tag(0x0008, 0x0050);
    pub const ISSUER_OF_ACCESSION_NUMBER_SEQUENCE: Tag = Tag(0x0008, 0x0051);
    pub const QUERY_RETRIEVE_LEVEL: Tag = Tag(0x0008, 0x0052);
    pub const RETRIEVE_AE_TITLE: Tag = Tag(0x0008, 0x0054);
    pub const INSTANCE_AVAILABILITY: Tag = Tag(0x0008, 0x0056);
    pub const MODALITY: Tag = Tag(0x0008, 0x0060);
    pub const MODALITIES_IN_STUDY: Tag = Tag(0x0008, 0x0061);
    pub const SOP_CLASSES_IN_STUDY: Tag = Tag(0x0008, 0x0062);
    pub const INSTITUTION_NAME: Tag = Tag(0x0008, 0x0080);
    pub const REFERRING_PHYSICIAN_NAME: Tag = Tag(0x0008, 0x0090);
    pub const STUDY_DESCRIPTION: Tag = Tag(0x0008, 0x1030);
    pub const SERIES_DESCRIPTION: Tag = Tag(0x0008, 0x103E);
    pub const AVAILABLE_TRANSFER_SYNTAX_UID: Tag = Tag(0x0008, 0x3002);
    pub const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
    pub const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
    pub const ISSUER_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0021);
    pub const PATIENT_BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
    pub const PATIENT_SEX: Tag = Tag(0x0010, 0x0040);
    pub const OTHER_PATIENT_IDS: Tag = Tag(0x0010, 0x1000);
    pub const BODY_PART_EXAMINED: Tag = Tag(0x0018, 0x0015);
    pub const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
    pub const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
    pub const STUDY_ID: Tag = Tag(0x0020, 0x0010);
    pub const SERIES_NUMBER: Tag = Tag(0x0020, 0x0011);
    pub const INSTANCE_NUMBER: Tag = Tag(0x0020, 0x0013);
    pub const NUMBER_OF_PATIENT_RELATED_STUDIES: Tag = Tag(0x0020, 0x1200);
    pub const NUMBER_OF_PATIENT_RELATED_SERIES: Tag = Tag(0x0020, 0x1202);
    pub const NUMBER_OF_PATIENT_RELATED_INSTANCES: Tag = Tag(0x0020, 0x1204);
    pub const NUMBER_OF_STUDY_RELATED_SERIES: Tag = Tag(0x0020, 0x1206);
    pub const NUMBER_OF_STUDY_RELATED_INSTANCES: Tag = Tag(0x0020, 0x1208);
    pub const NUMBER_OF_SERIES_RELATED_INSTANCES: Tag = Tag(0x0020, 0x1209);
    pub const NUMBER_OF_FRAMES: Tag = Tag(0x0028, 0x0008);
    pub const ROWS: Tag = Tag(0x0028, 0x0010);
    pub const COLUMNS: Tag = Tag(0x0028, 0x0011);
    pub const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
    pub const LOCAL_NAMESPACE_ENTITY_ID: Tag = Tag(0x0040, 0x0031);
    pub const UNIVERSAL_ENTITY_ID: Tag = Tag(0x0040, 0x0032);
    pub const UNIVERSAL_ENTITY_ID_TYPE: Tag = Tag(0x0040, 0x0033);
    /// The attributes of the one item of Issuer of Accession Number
    /// Sequence, held in a study's row under their own tags (no top-level
    /// attribute of a row shares them) and matched as other keys are
    /// (sequence matching, PS3.4 C.2.2.2.6).
    pub const ACCESSION_ISSUER_ITEM: [Tag; 3] = [LOCAL_NAMESPACE_ENTITY_ID, UNIVERSAL_ENTITY_ID, UNIVERSAL_ENTITY_ID_TYPE];
}

use tags::*;

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

pub fn patient(p: &PatientRecord, row: &mut Row) {
    row.insert(PATIENT_NAME, p.name.clone());
    row.insert(PATIENT_ID, p.key.patient_id.clone());
    row.insert(ISSUER_OF_PATIENT_ID, p.key.issuer.clone());
    row.insert(PATIENT_BIRTH_DATE, p.birth_date.clone());
    row.insert(PATIENT_SEX, p.sex.clone());
    row.insert(OTHER_PATIENT_IDS, p.other_ids.iter().map(|o| o.id.as_str()).collect::<Vec<_>>().join("\\"));
    row.insert(NUMBER_OF_PATIENT_RELATED_STUDIES, p.studies.to_string());
    row.insert(NUMBER_OF_PATIENT_RELATED_SERIES, p.series.to_string());
    row.insert(NUMBER_OF_PATIENT_RELATED_INSTANCES, p.instances.to_string());
}

pub fn study(s: &StudyRecord, row: &mut Row) {
    row.insert(PATIENT_NAME, s.patient_name.clone());
    row.insert(PATIENT_ID, s.patient.patient_id.clone());
    row.insert(ISSUER_OF_PATIENT_ID, s.patient.issuer.clone());
    row.insert(PATIENT_BIRTH_DATE, s.patient_birth_date.clone());
    row.insert(PATIENT_SEX, s.patient_sex.clone());
    row.insert(STUDY_INSTANCE_UID, s.uid.clone());
    row.insert(STUDY_DATE, s.date.clone());
    row.insert(STUDY_TIME, s.time.clone());
    row.insert(ACCESSION_NUMBER, s.accession_number.clone());
    row.insert(LOCAL_NAMESPACE_ENTITY_ID, s.accession_issuer.local.clone());
    row.insert(UNIVERSAL_ENTITY_ID, s.accession_issuer.universal.clone());
    row.insert(UNIVERSAL_ENTITY_ID_TYPE, s.accession_issuer.universal_type.clone());
    row.insert(STUDY_ID, s.study_id.clone());
    row.insert(REFERRING_PHYSICIAN_NAME, s.referring_physician_name.clone());
    row.insert(STUDY_DESCRIPTION, s.description.clone());
    row.insert(INSTITUTION_NAME, s.institution_name.clone());
    row.insert(MODALITIES_IN_STUDY, s.modalities.iter().map(String::as_str).collect::<Vec<_>>().join("\\"));
    row.insert(SOP_CLASSES_IN_STUDY, s.sop_classes.iter().map(String::as_str).collect::<Vec<_>>().join("\\"));
    row.insert(NUMBER_OF_STUDY_RELATED_SERIES, s.series.to_string());
    row.insert(NUMBER_OF_STUDY_RELATED_INSTANCES, s.instances.to_string());
    row.insert(INSTANCE_AVAILABILITY, availability(s.is_local()));
}

/// Instance Availability (0008,0056): held here, or fetched from its site when asked for.
fn availability(local: bool) -> String {
    if local { "ONLINE" } else { "NEARLINE" }.to_owned()
}

pub fn series(r: &SeriesRecord, row: &mut Row) {
    row.insert(SERIES_INSTANCE_UID, r.uid.clone());
    row.insert(MODALITY, r.modality.clone());
    row.insert(SERIES_NUMBER, opt(r.number));
    row.insert(SERIES_DESCRIPTION, r.description.clone());
    row.insert(BODY_PART_EXAMINED, r.body_part_examined.clone());
    row.insert(SERIES_DATE, r.date.clone());
    row.insert(SERIES_TIME, r.time.clone());
    row.insert(NUMBER_OF_SERIES_RELATED_INSTANCES, r.instances.to_string());
    row.insert(INSTANCE_AVAILABILITY, availability(r.local_instances >= r.instances));
}

pub fn instance(i: &InstanceRecord, row: &mut Row) {
    row.insert(SOP_INSTANCE_UID, i.sop_uid.clone());
    row.insert(SOP_CLASS_UID, i.sop_class_uid.clone());
    row.insert(INSTANCE_NUMBER, opt(i.number));
    row.insert(AVAILABLE_TRANSFER_SYNTAX_UID, i.transfer_syntax.clone());
    row.insert(INSTANCE_AVAILABILITY, availability(i.local));
    if i.rows > 0 {
        row.insert(ROWS, i.rows.to_string());
        row.insert(COLUMNS, i.columns.to_string());
        row.insert(BITS_ALLOCATED, i.bits_allocated.to_string());
    }
    if i.has_pixel_data {
        row.insert(NUMBER_OF_FRAMES, i.frames.to_string());
    }
}
