//! Rejected instances (IHE IOCM): taken out of every record, count and
//! secondary index in one batch, so no query or retrieve finds them, and
//! kept apart under `REJECTED` with who rejected them, why, and the record
//! the index held, so that an admin can restore them or delete their files.
//! An instance rejected before it arrives (a note naming it first) is
//! refused when it comes, and a site's PACS reporting it again does not
//! bring it back.

use serde::{Deserialize, Serialize};

use super::keys::{self, key};
use super::model::{InstanceMeta, InstanceRecord};
use super::sled_index::SledIndex;
use super::txn::{decode, Txn};
use super::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub sop_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    /// The site whose instances the rejection may take: the note's own
    /// site (a trust rejects only its own), empty for an admin's.
    pub site: String,
    /// The reason's DCM code (CID 7011) and meaning.
    pub code: String,
    pub meaning: String,
    /// The rejection note's SOP Instance UID; empty for an admin's.
    pub note: String,
    pub by: String,
    pub why: String,
    pub at_ms: u64,
    /// What the index held when it was rejected (`None`: not held yet).
    pub record: Option<InstanceRecord>,
    /// Its file deleted by an admin: it can no longer be restored.
    pub deleted: bool,
}

pub(super) fn rejected_key(sop_uid: &str) -> Vec<u8> {
    key(keys::REJECTED, &[sop_uid])
}

impl SledIndex {
    /// Rejects what `r` names: returns it as recorded, or `None` when it
    /// was rejected already or is another site's instance.
    pub(super) fn reject_one(&self, t: &mut Txn<'_>, r: &Rejection) -> Result<Option<Rejection>> {
        if t.get_raw(&rejected_key(&r.sop_uid))?.is_some() {
            return Ok(None);
        }
        let mut r = r.clone();
        if let Some(rec) = self.locate(t, &r.sop_uid)? {
            if !r.site.is_empty() && rec.site != r.site {
                tracing::warn!(sop = %r.sop_uid, held_at = %rec.site, note_site = %r.site, "a rejection note from one site names another's instance: ignored");
                return Ok(None);
            }
            if !r.study_uid.is_empty() && rec.study_uid != r.study_uid {
                tracing::warn!(sop = %r.sop_uid, study = %rec.study_uid, named = %r.study_uid, "a rejection names an instance under another study: ignored");
                return Ok(None);
            }
            self.remove(t, &r.sop_uid, None)?;
            r.study_uid = rec.study_uid.clone();
            r.series_uid = rec.series_uid.clone();
            r.record = Some(rec);
        }
        t.put(rejected_key(&r.sop_uid), &r);
        Ok(Some(r))
    }

    /// Takes an instance out of the rejected list, indexing `meta` (read
    /// again from its file) in the same batch; `None` for one known only
    /// from a site's PACS, which its next harvest brings back.
    pub(super) fn restore_one(&self, t: &mut Txn<'_>, sop_uid: &str, meta: Option<&InstanceMeta>) -> Result<Option<Rejection>> {
        let Some(r) = t.get::<Rejection>(&rejected_key(sop_uid))? else { return Ok(None) };
        if r.deleted {
            return Err(super::IndexError::Rejected(format!("{sop_uid} was deleted: it cannot be restored")));
        }
        t.del(rejected_key(sop_uid));
        if let Some(m) = meta {
            let held = r.record.as_ref().map(|h| h.held_at.clone()).unwrap_or_default();
            self.add(t, m, &held)?;
        }
        Ok(Some(r))
    }

    pub(super) fn scan_rejections(&self, study_uid: Option<&str>) -> Result<Vec<Rejection>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::REJECTED]) {
            let (k, v) = kv?;
            let r: Rejection = decode(&k, &v)?;
            if study_uid.is_none_or(|s| s == r.study_uid) {
                out.push(r);
            }
        }
        Ok(out)
    }
}
