//! The index of every site's patients, studies, series and instances.
//!
//! Callers see the `Index` trait only; `SledIndex` is today's backend, and a
//! PostgreSQL one can serve later behind the same trait. The index owns
//! metadata and never reads or writes instance files.

pub mod keys;
pub mod matching;
pub mod model;
mod sled_index;
mod txn;

pub use sled_index::{SledIndex, SCHEMA_VERSION};

use matching::DateRange;
use model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] sled::Error),
    #[error("index record {key}: {source}")]
    Decode { key: String, source: postcard::Error },
    #[error("index schema version {found} is not {expected}: run a migration or rebuild with `radhub verify --repair`")]
    Schema { found: u32, expected: u32 },
}

/// What `upsert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    /// The SOP Instance UID was indexed already; its old entry was replaced.
    Replaced,
}

/// Study-level search. Every field narrows the result; text fields take
/// C-FIND patterns (wildcards), names match case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct StudyFilter {
    pub study_uids: Vec<String>,
    pub patient_id: Option<String>,
    pub issuer: Option<String>,
    pub patient_name: Option<String>,
    pub accession: Option<String>,
    pub date: Option<DateRange>,
    pub modality: Option<String>,
    pub site: Option<String>,
    pub description: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct PatientFilter {
    pub patient_id: Option<String>,
    pub issuer: Option<String>,
    pub patient_name: Option<String>,
    pub nhs_number: Option<String>,
    pub site: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub bytes: u64,
}

pub type Result<T> = std::result::Result<T, IndexError>;

pub trait Index: Send + Sync {
    /// Records one instance atomically, with every aggregate and secondary
    /// index it touches; an instance already indexed under the same SOP
    /// Instance UID is replaced. Durable only after `sync`.
    fn upsert(&self, meta: &InstanceMeta) -> Result<Upsert>;
    /// Removes an instance and its contribution to series, study and patient.
    fn remove_instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>>;
    /// Makes every change made so far durable. Concurrent callers share one flush.
    fn sync(&self) -> Result<()>;

    fn instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>>;
    fn study(&self, uid: &str) -> Result<Option<StudyRecord>>;
    fn series(&self, uid: &str) -> Result<Option<SeriesRecord>>;
    fn patient(&self, key: &PatientKey) -> Result<Option<PatientRecord>>;

    fn find_studies(&self, f: &StudyFilter) -> Result<Vec<StudyRecord>>;
    fn find_patients(&self, f: &PatientFilter) -> Result<Vec<PatientRecord>>;
    fn series_of(&self, study_uid: &str) -> Result<Vec<SeriesRecord>>;
    fn instances_of(&self, study_uid: &str, series_uid: Option<&str>) -> Result<Vec<InstanceRecord>>;
    fn studies_of_patient(&self, key: &PatientKey) -> Result<Vec<String>>;
    /// Each site's patient record linked to one NHS number.
    fn patients_by_nhs(&self, nhs_number: &str) -> Result<Vec<PatientKey>>;

    /// Every instance record, for verification.
    fn all_instances(&self) -> Box<dyn Iterator<Item = Result<InstanceRecord>> + '_>;
    fn counts(&self) -> Result<Counts>;
    fn counts_by_site(&self) -> Result<Vec<(String, Counts)>>;
    fn schema_version(&self) -> u32;
}
