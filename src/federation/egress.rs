//! Sending a study to another site's PACS (a prior imported there, on
//! request): each instance's Patient ID and Issuer are coerced to the
//! destination site's own identity for the same person (the record linked
//! to the study's patient by NHS number), the original kept as an Other
//! Patient IDs item. A patient with no identity at the destination is
//! refused: the study would land under no one, or under the wrong person.

use std::sync::Arc;

use pacs_gateway::scu::{self, ScuError, StoreAssociation};
use pacs_gateway::status::Category;
use serde::Serialize;

use super::{Failure, Federation};
use crate::dicom::coerce::coerce;
use crate::index::model::PatientKey;
use crate::index::{Index, IndexError};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no study {0}")]
    NoSuchStudy(String),
    #[error("site {0} has no PACS configured to send to")]
    NoPacs(String),
    #[error("{0}")]
    NoIdentity(String),
    #[error("fetching the study first: {0}")]
    Fetch(Failure),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Store(String),
    #[error("sending to {site}: {error}")]
    Scu { site: String, error: ScuError },
}

#[derive(Clone, Debug, Serialize)]
pub struct SendReport {
    pub study: String,
    pub site: String,
    /// The identity the copies carry there, and the one they came with.
    pub patient: PatientKey,
    pub coerced_from: Option<PatientKey>,
    pub instances: usize,
    pub sent: usize,
    /// (SOP Instance UID, status and comment) of each one refused.
    pub failed: Vec<(String, String)>,
}

/// The patient's identity in `issuer`'s domain: itself, or the one record
/// there linked to it by NHS number. `Err` says why there is none.
pub fn identity_at(index: &dyn Index, patient: &PatientKey, issuer: &str) -> Result<PatientKey, SendError> {
    if patient.issuer == issuer {
        return Ok(patient.clone());
    }
    let rec = index.patient(patient)?.ok_or_else(|| SendError::NoIdentity(format!("no patient {patient}")))?;
    let Some(nhs) = rec.nhs_number else {
        return Err(SendError::NoIdentity(format!("{patient} is linked to no NHS number, so has no identity known at {issuer}")));
    };
    let there: Vec<PatientKey> = index.patients_by_nhs(&nhs)?.into_iter().filter(|k| k.issuer == issuer).collect();
    match there.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(SendError::NoIdentity(format!("{patient} (NHS {nhs}) has no record at {issuer}: register the patient there first"))),
        _ => Err(SendError::NoIdentity(format!("{patient} (NHS {nhs}) is linked to {} records at {issuer}: an admin must resolve which", there.len()))),
    }
}

impl Federation {
    /// Sends a study to `dest`'s PACS under the patient's identity there
    /// (fetching it first if radhub holds no copy). Logged with who asked.
    pub async fn send_study(self: &Arc<Self>, study_uid: &str, dest: &str, by: &str) -> Result<SendReport, SendError> {
        let site = crate::sites::find(dest).filter(|s| s.pacs().is_some()).ok_or_else(|| SendError::NoPacs(dest.to_owned()))?;
        let hub = self.hub.clone();
        let uid = study_uid.to_owned();
        let study = tokio::task::spawn_blocking(move || hub.index.study(&uid)).await.map_err(|e| SendError::Store(e.to_string()))??;
        let study = study.filter(|s| s.site != crate::sites::QUARANTINE).ok_or_else(|| SendError::NoSuchStudy(study_uid.to_owned()))?;
        let (hub, from, issuer) = (self.hub.clone(), study.patient.clone(), site.issuer.clone());
        let to = tokio::task::spawn_blocking(move || identity_at(hub.index.as_ref(), &from, &issuer)).await.map_err(|e| SendError::Store(e.to_string()))??;
        self.local_scope(&study, None).await.map_err(SendError::Fetch)?;
        let hub = self.hub.clone();
        let uid = study.uid.clone();
        let (from, to_) = (study.patient.clone(), to.clone());
        // Coerced copies in memory one study at a time (a prior: a few hundred MB at most).
        let files: Vec<(String, Vec<u8>)> = tokio::task::spawn_blocking(move || -> Result<_, SendError> {
            let mut out = Vec::new();
            for rec in hub.index.instances_of(&uid, None)? {
                let bytes = hub.served_file(&rec.sop_uid).map_err(|e| SendError::Store(e.to_string()))?;
                let bytes = bytes.ok_or_else(|| SendError::Store(format!("the file of {} is missing", rec.sop_uid)))?;
                let out_bytes = if from == to_ { bytes } else { coerce(&bytes, &from, &to_).map_err(|e| SendError::Store(format!("{}: {e}", rec.sop_uid)))? };
                out.push((rec.sop_uid, out_bytes));
            }
            Ok(out)
        })
        .await
        .map_err(|e| SendError::Store(e.to_string()))??;
        let run = self.run_of(&site.code).ok_or_else(|| SendError::NoPacs(dest.to_owned()))?;
        let peer = run.peer();
        let scu_err = |error| SendError::Scu { site: site.code.clone(), error };
        let refs: Vec<_> = files.iter().map(|(_, b)| scu::describe(b)).collect::<Result<_, _>>().map_err(scu_err)?;
        let mut assoc = StoreAssociation::connect(&self.fetch_scu, &peer, &scu::classes_of(&refs)).await.map_err(scu_err)?;
        let mut report = SendReport {
            study: study.uid.clone(),
            site: site.code.clone(),
            patient: to.clone(),
            coerced_from: (study.patient != to).then(|| study.patient.clone()),
            instances: files.len(),
            sent: 0,
            failed: Vec::new(),
        };
        for (sop, bytes) in &files {
            match assoc.store(bytes).await {
                Ok(a) if matches!(a.status.category(), Category::Success | Category::Warning) => report.sent += 1,
                Ok(a) => report.failed.push((sop.clone(), format!("status {:04X} {}", a.status.0, a.comment.unwrap_or_default()))),
                Err(e) if !e.ends_association() => report.failed.push((sop.clone(), e.to_string())),
                Err(e) => return Err(scu_err(e)),
            }
        }
        let _ = assoc.release().await;
        tracing::warn!(study = %study.uid, to = %site.code, patient = %to, coerced_from = ?report.coerced_from, sent = report.sent, failed = report.failed.len(), by, "study sent to another site's PACS");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion_replaces_the_identity_and_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::testdata::GenOptions { seed: 7, patients: 1, studies_per_patient: 1, max_slices: 1, ct_size: 16 };
        crate::testdata::Plan::new(&opts).write_all(dir.path(), &|_| {}).unwrap();
        let file = walkdir::WalkDir::new(dir.path()).into_iter().filter_map(Result::ok).find(|e| e.file_type().is_file()).unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        let from = PatientKey { issuer: "RBD".into(), patient_id: "D1234567".into() };
        let to = PatientKey { issuer: "RD3".into(), patient_id: "P765432".into() };
        let out = coerce(&bytes, &from, &to).unwrap();
        let meta = crate::dicom::extract::read_meta(&out).unwrap();
        assert_eq!((meta.patient_id.as_str(), meta.issuer_of_patient_id.as_str()), ("P765432", "RD3"));
        assert!(meta.other_patient_ids.iter().any(|o| o.id == "D1234567" && o.issuer == "RBD"));
        // The NHS number item the generated file carries stays.
        assert!(meta.nhs_number.is_some());
        assert_eq!(meta.sop_uid, crate::dicom::extract::read_meta(&bytes).unwrap().sop_uid);
    }
}
