//! The index of every site's patients, studies, series and instances.
//!
//! Callers see the `Index` trait only; `SledIndex` is today's backend, and a
//! PostgreSQL one can serve later behind the same trait. The index owns
//! metadata and never reads or writes instance files.
//!
//! Patients are keyed by (issuer, Patient ID); NHS-number links between
//! them follow `link`'s rules inside the same atomic batch as the instance
//! that changes them. Searches are lazy iterators, newest study first, so
//! an answer costs memory for what it returns, not for what the archive holds.

pub mod held;
pub mod identity;
pub mod keys;
pub mod link;
pub mod matching;
pub mod model;
pub mod rejection;
mod search;
mod sled_index;
mod txn;
mod write;

pub use sled_index::{Legacy, SledIndex, SCHEMA_VERSION};

use held::HeldConflict;
use identity::{IdentityChange, IdentityEvent};
use link::{Decision, LinkConflict, LinkEvent};
use matching::DateRange;
use model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use rejection::Rejection;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] sled::Error),
    #[error("index record {key}: {source}")]
    Decode { key: String, source: postcard::Error },
    #[error("index schema version {found} is not {expected}: run a migration or rebuild with `radhub verify --repair`")]
    Schema { found: u32, expected: u32 },
    /// An instance of a held study names another patient: refused, never
    /// filed under either.
    #[error("study {study} is held for patient {held}; this instance names {sent}")]
    PatientMismatch { study: String, held: PatientKey, sent: PatientKey },
    /// An instance names a series held under another study: refused.
    #[error("series {series} is held in study {held}; this instance puts it in study {sent}")]
    SeriesMismatch { series: String, held: String, sent: String },
    #[error("no patient {0}")]
    NoSuchPatient(PatientKey),
    #[error("{0}")]
    Link(String),
    /// The instance was rejected (IOCM): refused until an admin restores it.
    #[error("{0}")]
    Rejected(String),
    /// A change of patient identity that cannot be applied as sent.
    #[error("{0}")]
    Identity(String),
}

/// What `upsert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    /// The SOP Instance UID was indexed already; its old entry was replaced.
    Replaced,
    /// Metadata from a site of an instance indexed already: only the site
    /// holding it was added (the held record, local or not, stays).
    Held,
    /// As `Held`, with the site already noted: nothing changed.
    Unchanged,
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
    /// Include quarantined studies (admin views); they are left out of
    /// every other search unless `site` names the quarantine.
    pub quarantine: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PatientFilter {
    pub patient_id: Option<String>,
    pub issuer: Option<String>,
    pub patient_name: Option<String>,
    pub nhs_number: Option<String>,
    /// Patients with a study held at this site.
    pub site: Option<String>,
    /// Include quarantined patients (admin views).
    pub quarantine: bool,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    /// Instances of which radhub holds a copy (the rest are held only at sites).
    pub local_instances: u64,
    pub bytes: u64,
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// A lazy sequence of records; an error ends it.
pub type Records<'a, T> = Box<dyn Iterator<Item = Result<T>> + 'a>;

pub trait Index: Send + Sync {
    /// Records one instance atomically, with every aggregate, secondary
    /// index and NHS-number link it touches; an instance already indexed
    /// under the same SOP Instance UID is replaced, except by metadata from
    /// a site (`meta.remote`), which only notes the site holding it.
    /// Durable only after `sync`.
    fn upsert(&self, meta: &InstanceMeta) -> Result<Upsert>;
    /// Re-files every instance of a study at once (from quarantine to a
    /// site): the old entries go and `metas` come in one atomic batch.
    fn refile(&self, metas: &[InstanceMeta]) -> Result<()>;
    /// Removes an instance and its contribution to series, study and patient.
    fn remove_instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>>;
    /// Makes every change made so far durable. Concurrent callers share one flush.
    fn sync(&self) -> Result<()>;

    fn instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>>;
    fn study(&self, uid: &str) -> Result<Option<StudyRecord>>;
    fn series(&self, uid: &str) -> Result<Option<SeriesRecord>>;
    fn patient(&self, key: &PatientKey) -> Result<Option<PatientRecord>>;

    /// Studies matching `f`, newest first (Study Date, then Study Time),
    /// read as the caller takes them.
    fn find_studies<'a>(&'a self, f: &'a StudyFilter) -> Records<'a, StudyRecord>;
    fn find_patients<'a>(&'a self, f: &'a PatientFilter) -> Records<'a, PatientRecord>;
    fn series_of(&self, study_uid: &str) -> Result<Vec<SeriesRecord>>;
    fn instances_of(&self, study_uid: &str, series_uid: Option<&str>) -> Result<Vec<InstanceRecord>>;
    fn studies_of_patient(&self, key: &PatientKey) -> Result<Vec<String>>;
    /// The patient records linked to one NHS number, one per (issuer, ID).
    fn patients_by_nhs(&self, nhs_number: &str) -> Result<Vec<PatientKey>>;

    /// NHS-number link conflicts waiting for an admin.
    fn link_conflicts(&self) -> Result<Vec<LinkConflict>>;
    /// The link log from sequence number `after` (exclusive), oldest first.
    fn link_log(&self, after: u64, max: usize) -> Result<Vec<LinkEvent>>;
    /// An admin's decision on a record's link; logged with who and why.
    /// Durable on return.
    fn decide_link(&self, patient: &PatientKey, decision: Decision, nhs_number: Option<&str>, by: &str, why: &str) -> Result<PatientRecord>;

    /// Applies a change of patient identity from a site's patient
    /// administration (`identity`); logged with who and why. Durable on return.
    fn change_identity(&self, change: &IdentityChange, by: &str, why: &str) -> Result<IdentityEvent>;
    /// Puts back what identity change `seq` did; logged as a change of its own.
    fn undo_identity(&self, seq: u64, by: &str, why: &str) -> Result<IdentityEvent>;
    /// The identity log from sequence number `after` (exclusive), oldest first.
    fn identity_log(&self, after: u64, max: usize) -> Result<Vec<IdentityEvent>>;

    /// Takes the instances named out of the index, kept apart with who
    /// rejected them and why (`rejection`); one already rejected, or held
    /// at a site other than the rejection's, is left. Returns those
    /// rejected now. Durable on return.
    fn reject(&self, rejections: &[Rejection]) -> Result<Vec<Rejection>>;
    /// Puts a rejected instance back, indexing `meta` (its file read
    /// again; `None` for one held only at a site). Durable on return.
    fn restore(&self, sop_uid: &str, meta: Option<&InstanceMeta>) -> Result<Option<Rejection>>;
    fn rejection(&self, sop_uid: &str) -> Result<Option<Rejection>>;
    /// Rejected instances, of one study or all.
    fn rejections(&self, study_uid: Option<&str>) -> Result<Vec<Rejection>>;
    /// Notes that a rejected instance's file was deleted. Durable on return.
    fn mark_deleted(&self, sop_uid: &str) -> Result<()>;

    /// Whether some file of the study names another identity than the
    /// index holds for it now (served restated).
    fn restated(&self, study_uid: &str) -> Result<bool>;
    /// The key data naming `k` is filed under today: `k`, or the record it
    /// was merged into or changed to (ADT A40, A47).
    fn current_key(&self, k: &PatientKey) -> Result<PatientKey>;
    /// Holds an arrival for an admin (`held`). Durable after `sync`.
    fn hold(&self, c: &HeldConflict) -> Result<()>;
    fn held(&self, sop_uid: &str) -> Result<Option<HeldConflict>>;
    fn held_all(&self) -> Result<Vec<HeldConflict>>;
    /// Takes a held arrival off the list, indexing `file_as` (its meta,
    /// filed under the study's patient) in the same batch when given.
    /// Durable on return.
    fn release(&self, sop_uid: &str, file_as: Option<&InstanceMeta>) -> Result<Option<HeldConflict>>;

    /// Remembers that `sender` sent other bytes (`hash`) under a held SOP
    /// Instance UID, which were not kept; `None` forgets it (its latest
    /// copy is the one held). Storage commitment consults it.
    fn set_divergent(&self, sop_uid: &str, sender: &str, hash: Option<[u8; 32]>) -> Result<()>;
    fn divergent(&self, sop_uid: &str, sender: &str) -> Result<Option<[u8; 32]>>;

    /// Every instance record, for verification.
    fn all_instances(&self) -> Records<'_, InstanceRecord>;
    fn counts(&self) -> Result<Counts>;
    fn counts_by_site(&self) -> Result<Vec<(String, Counts)>>;
    /// Studies whose site's PACS holds them, per site (harvested, or pushed by that PACS).
    fn counts_held(&self) -> Result<std::collections::HashMap<String, u64>>;
    fn schema_version(&self) -> u32;
}
