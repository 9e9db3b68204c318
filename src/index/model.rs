//! What the index holds at each level of the DICOM information model, and the
//! metadata ingest extracts from one instance to fill it.
//!
//! Records are serialised with postcard; any change to these structs changes
//! the on-disk format and must bump `SCHEMA_VERSION` in `index::sled_index`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// An identifier under an issuer, as in Other Patient IDs Sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherId {
    pub id: String,
    pub issuer: String,
    pub kind: String,
}

/// Who issued an accession number (Issuer of Accession Number Sequence,
/// PS3.3 10.14): an accession means nothing without it, as a Patient ID
/// means nothing without its issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessionIssuer {
    /// Local Namespace Entity ID (0040,0031).
    pub local: String,
    /// Universal Entity ID (0040,0032) and its type (0040,0033).
    pub universal: String,
    pub universal_type: String,
}

impl AccessionIssuer {
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.universal.is_empty()
    }
}

/// Everything the index records of one instance, read from its data set,
/// plus the facts of its arrival.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceMeta {
    pub specific_character_set: String,
    // Patient
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub other_patient_ids: Vec<OtherId>,
    /// A valid NHS number found among the patient's identifiers.
    pub nhs_number: Option<String>,
    // Study
    pub study_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    /// As the data says; the site's default when it says nothing (`sites::file`).
    pub accession_issuer: AccessionIssuer,
    pub study_id: String,
    pub referring_physician_name: String,
    pub study_description: String,
    pub institution_name: String,
    // Series
    pub series_uid: String,
    pub modality: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part_examined: String,
    pub series_date: String,
    pub series_time: String,
    // Instance
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    pub frames: u32,
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
    pub has_pixel_data: bool,
    // Arrival
    /// The site (trust organisation code) that holds this instance.
    pub site: String,
    /// The issuer its Patient ID is keyed under: the site's, whatever the
    /// data's Issuer of Patient ID says (`sites::file`).
    pub issuer: String,
    pub file_size: u64,
    pub content_hash: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub received_ms: u64,
    /// The site whose PACS holds the instance, when the arrival says so:
    /// a harvest from it, or a C-STORE from its PACS's own AE.
    pub held_at: Option<String>,
    /// Metadata only, from a site's PACS (a harvest): radhub holds no copy
    /// (`file_size` and `content_hash` are zero).
    pub remote: bool,
}

/// Key of a patient: a Patient ID is unique only within its issuer
/// (PS3.4 C.6.1.1.2), so the issuer is always part of it. One issuer's
/// patient may have studies at more than one site.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PatientKey {
    pub issuer: String,
    pub patient_id: String,
}

impl std::fmt::Display for PatientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.issuer, self.patient_id)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatientRecord {
    pub key: PatientKey,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub other_ids: Vec<OtherId>,
    /// The NHS number this record is linked by (`None`: not linked).
    pub nhs_number: Option<String>,
    /// The NHS number the latest data names, linked or not.
    pub nhs_in_data: Option<String>,
    /// NHS numbers an admin refused for this record: never linked again
    /// by arriving data.
    pub nhs_refused: Vec<String>,
    /// Studies of this patient held at each site.
    pub sites: BTreeMap<String, u32>,
    pub studies: u32,
    pub series: u32,
    pub instances: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    pub uid: String,
    pub site: String,
    pub patient: PatientKey,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub date: String,
    pub time: String,
    pub accession_number: String,
    pub accession_issuer: AccessionIssuer,
    pub study_id: String,
    pub referring_physician_name: String,
    pub description: String,
    pub institution_name: String,
    pub modalities: BTreeSet<String>,
    pub sop_classes: BTreeSet<String>,
    pub series: u32,
    /// Instances known: held locally or only at a site.
    pub instances: u32,
    /// Instances of which radhub holds a copy.
    pub local_instances: u32,
    /// Sites whose PACS hold the study (from harvests and their PACS's pushes).
    pub held_at: BTreeSet<String>,
    pub bytes: u64,
    pub first_received_ms: u64,
    pub last_received_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub uid: String,
    pub study_uid: String,
    pub site: String,
    pub modality: String,
    pub number: Option<i64>,
    pub description: String,
    pub body_part_examined: String,
    pub date: String,
    pub time: String,
    pub instances: u32,
    pub local_instances: u32,
    pub held_at: BTreeSet<String>,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub sop_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub site: String,
    pub sop_class_uid: String,
    pub number: Option<i64>,
    pub transfer_syntax: String,
    pub frames: u32,
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
    pub has_pixel_data: bool,
    pub file_size: u64,
    pub content_hash: [u8; 32],
    pub received_ms: u64,
    /// Sites whose PACS hold the instance.
    pub held_at: BTreeSet<String>,
    /// radhub holds its file (else only a site does: fetched on demand).
    pub local: bool,
}

impl StudyRecord {
    /// Whether every known instance has a local copy.
    pub fn is_local(&self) -> bool {
        self.local_instances >= self.instances
    }
}

/// Series in display order: Series Number (unnumbered last), then UID.
pub fn sort_series(series: &mut [SeriesRecord]) {
    series.sort_by_key(|s| (s.number.unwrap_or(i64::MAX), s.uid.clone()));
}

/// Instances in display order: by series, then Instance Number, then SOP
/// Instance UID.
pub fn sort_instances(instances: &mut [InstanceRecord]) {
    instances.sort_by(|a, b| (&a.series_uid, a.number, &a.sop_uid).cmp(&(&b.series_uid, b.number, &b.sop_uid)));
}

impl InstanceMeta {
    /// The patient this instance is filed under: the issuer of its
    /// filing (`sites::file`), set by ingest, and its Patient ID.
    pub fn patient_key(&self) -> PatientKey {
        PatientKey { issuer: self.issuer.clone(), patient_id: self.patient_id.clone() }
    }

    pub fn instance_record(&self) -> InstanceRecord {
        InstanceRecord {
            sop_uid: self.sop_uid.clone(),
            series_uid: self.series_uid.clone(),
            study_uid: self.study_uid.clone(),
            site: self.site.clone(),
            sop_class_uid: self.sop_class_uid.clone(),
            number: self.instance_number,
            transfer_syntax: self.transfer_syntax.clone(),
            frames: self.frames,
            rows: self.rows,
            columns: self.columns,
            bits_allocated: self.bits_allocated,
            samples_per_pixel: self.samples_per_pixel,
            photometric: self.photometric.clone(),
            has_pixel_data: self.has_pixel_data,
            file_size: self.file_size,
            content_hash: self.content_hash,
            received_ms: self.received_ms,
            held_at: self.held_at.iter().cloned().collect(),
            local: !self.remote,
        }
    }
}
