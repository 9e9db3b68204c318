//! Store against index: every local-copy entry has its file (entries
//! known only from a site's PACS have none), every file its entry, sizes (and with `deep`, content hashes) agree. `repair` mends what
//! it finds: orphan files are indexed (or, when unreadable, moved out of
//! the store into `set-aside/` for an admin: never deleted),
//! entries without a file are dropped, mismatched entries are re-read.
//! Files of rejected instances (IOCM) are counted apart, never re-indexed.

use std::collections::HashMap;

use serde::Serialize;

use crate::index::model::InstanceRecord;
use crate::ingest::{Hub, IngestError};
use crate::store::ObjectKey;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: u64,
    pub indexed: u64,
    /// Entries held only at a site (no local copy, no file expected).
    pub remote_only: u64,
    /// Files no index entry points at (hex keys).
    pub orphan_files: Vec<String>,
    /// Index entries whose file is missing (SOP Instance UIDs).
    pub missing_files: Vec<String>,
    /// Index entries whose file differs in size or content.
    pub mismatched: Vec<String>,
    /// Orphan files that could not be read as DICOM, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Instances held with a UID PS3.5 9.1 does not allow (kept as real
    /// archives hold them; noted, not a fault of the hub): SOP Instance UIDs.
    pub nonconformant_uids: Vec<String>,
    /// Files of rejected instances (IOCM), kept out of the index on purpose.
    pub rejected: u64,
    /// Files of arrivals held for an admin (they name another patient than their study's).
    pub held: u64,
    pub counters_agree: bool,
    pub repaired: u64,
}

impl Report {
    pub fn consistent(&self) -> bool {
        self.orphan_files.is_empty() && self.missing_files.is_empty() && self.mismatched.is_empty() && self.counters_agree
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

fn from_index(e: crate::index::IndexError) -> VerifyError {
    VerifyError::Ingest(e.into())
}

fn from_store(e: crate::store::StoreError) -> VerifyError {
    VerifyError::Ingest(e.into())
}

pub fn verify(hub: &Hub, deep: bool, repair: bool, tick: &dyn Fn()) -> Result<Report, VerifyError> {
    let mut r = Report::default();
    let mut by_key: HashMap<ObjectKey, InstanceRecord> = HashMap::new();
    let (mut n, mut local, mut bytes) = (0u64, 0u64, 0u64);
    for rec in hub.index.all_instances() {
        let rec = rec.map_err(from_index)?;
        n += 1;
        bytes += rec.file_size;
        if !rec.local {
            r.remote_only += 1;
            continue;
        }
        local += 1;
        if ![&rec.sop_uid, &rec.series_uid, &rec.study_uid].iter().all(|u| crate::dicom::scan::uid_is_conformant(u)) {
            r.nonconformant_uids.push(rec.sop_uid.clone());
        }
        by_key.insert(ObjectKey::for_uid(&rec.sop_uid), rec);
    }
    r.indexed = n;
    let counts = hub.index.counts().map_err(from_index)?;
    r.counters_agree = counts.instances == n && counts.local_instances == local && counts.bytes == bytes;

    let rejected: std::collections::HashSet<ObjectKey> =
        hub.index.rejections(None).map_err(from_index)?.iter().filter(|x| !x.deleted).map(|x| ObjectKey::for_uid(&x.sop_uid)).collect();
    let held: std::collections::HashSet<ObjectKey> = hub.index.held_all().map_err(from_index)?.iter().map(|c| ObjectKey::for_uid(&c.meta.sop_uid)).collect();
    let mut orphans = Vec::new();
    for key in hub.store.keys() {
        let key = key.map_err(from_store)?;
        tick();
        r.files += 1;
        let Some(rec) = by_key.remove(&key) else {
            if rejected.contains(&key) {
                r.rejected += 1;
                continue;
            }
            if held.contains(&key) {
                r.held += 1;
                continue;
            }
            orphans.push(key);
            continue;
        };
        let ok = if deep {
            hub.store.get(&key).map_err(from_store)?.is_some_and(|b| b.len() as u64 == rec.file_size && *blake3::hash(&b).as_bytes() == rec.content_hash)
        } else {
            hub.store.size(&key).map_err(from_store)? == Some(rec.file_size)
        };
        if !ok {
            r.mismatched.push(rec.sop_uid.clone());
            if repair && reindex(hub, &key, Some(&rec.site), &mut r)? {
                r.repaired += 1;
            }
        }
    }
    for key in orphans {
        r.orphan_files.push(key.hex());
        if repair && reindex(hub, &key, None, &mut r)? {
            r.repaired += 1;
        }
    }
    for rec in by_key.into_values() {
        r.missing_files.push(rec.sop_uid.clone());
        if repair {
            hub.index.remove_instance(&rec.sop_uid).map_err(from_index)?;
            r.repaired += 1;
        }
    }
    if repair {
        hub.index.sync().map_err(from_index)?;
    }
    Ok(r)
}

/// Re-reads a stored file into the index. An unreadable orphan (never
/// indexed, so never acknowledged) is deleted and reported.
fn reindex(hub: &Hub, key: &ObjectKey, site: Option<&str>, r: &mut Report) -> Result<bool, VerifyError> {
    let Some(bytes) = hub.store.get(key).map_err(from_store)? else { return Ok(false) };
    match Hub::describe(&bytes, site) {
        Ok(meta) if ObjectKey::for_uid(&meta.sop_uid) == *key => {
            hub.index.upsert(&meta).map_err(from_index)?;
            Ok(true)
        }
        Ok(_) => {
            r.unreadable.push((key.hex(), "SOP Instance UID does not match its storage key".into()));
            Ok(false)
        }
        Err(e) => {
            r.unreadable.push((key.hex(), e.to_string()));
            if site.is_none() {
                // Set aside, never deleted: a file an older version accepted
                // (and acknowledged) may fail today's stricter reading.
                tracing::warn!(key = %key.hex(), reason = %e, "setting an unreadable stored file aside");
                hub.store.set_aside(key).map_err(from_store)?;
                return Ok(true);
            }
            Ok(false)
        }
    }
}
