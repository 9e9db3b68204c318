//! Instances held for an admin: an arrival naming another patient than the
//! study it belongs to is held for, kept (its file stored) but filed under
//! no one until an admin decides: file it under the study's patient, or
//! discard it. Never filed by guessing.

use serde::{Deserialize, Serialize};

use super::keys::{self, key};
use super::model::{InstanceMeta, PatientKey};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldConflict {
    /// What the instance's data says (its patient as sent).
    pub meta: InstanceMeta,
    /// The patient its study is held for.
    pub study_patient: PatientKey,
    pub sender: String,
    pub at_ms: u64,
}

impl HeldConflict {
    pub fn sent(&self) -> PatientKey {
        self.meta.patient_key()
    }
}

/// What an admin decides about a held instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldDecision {
    /// It is the study's patient's after all (a typing error at the
    /// modality): filed under the study's patient.
    File,
    /// Deleted: it should never have been sent.
    Discard,
}

pub(super) fn held_key(sop_uid: &str) -> Vec<u8> {
    key(keys::HELD, &[sop_uid])
}
