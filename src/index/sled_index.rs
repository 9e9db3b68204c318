//! The index on sled: records and secondary indexes in one tree (see
//! `keys`), updated in atomic batches under one write lock (`write`), made
//! durable by a shared flush (group commit), searched lazily (`search`).
//!
//! The tree is named after the schema version. An index of an older
//! version is left untouched beside it until the hub has rebuilt the new
//! one from the instance files (`Legacy`), so a crash mid-migration starts
//! it again rather than losing anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use super::keys::{self, key, prefix};
use super::link::{Decision, LinkConflict, LinkEvent};
use super::model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use super::txn::{decode, Txn};
use super::{Counts, Index, IndexError, PatientFilter, Records, Result, StudyFilter, Upsert};
use crate::group_commit::GroupCommit;

/// Bumped whenever a record's layout or the key space changes.
/// 2: patients keyed by (issuer, ID); newest-first date and site indexes;
/// NHS-number link conflicts and log.
pub const SCHEMA_VERSION: u32 = 2;

/// Version 1's tree, whose instance records (unchanged since) name each
/// instance's site.
const V1_TREE: &str = "radhub";

const COUNTS: [&str; 5] = ["patients", "studies", "series", "instances", "bytes"];

pub struct SledIndex {
    db: sled::Db,
    pub(super) tree: sled::Tree,
    write: Mutex<()>,
    flushes: GroupCommit,
}

/// An index of an earlier schema, to be rebuilt from the instance files.
pub struct Legacy {
    db: sled::Db,
    old: sled::Tree,
}

impl Legacy {
    /// (SOP Instance UID, site) of every instance the old index held.
    pub fn instances(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for kv in self.old.scan_prefix([keys::INSTANCE]) {
            let (k, v) = kv?;
            let r: InstanceRecord = decode(&k, &v)?;
            out.push((r.sop_uid, r.site));
        }
        Ok(out)
    }

    /// The content hash the old index committed for an instance.
    pub fn content_hash(&self, sop_uid: &str) -> Result<Option<[u8; 32]>> {
        let Some(loc) = self.old.get(key(keys::INSTANCE_LOCATOR, &[sop_uid]))? else { return Ok(None) };
        let mut k = vec![keys::INSTANCE];
        k.extend_from_slice(&loc);
        k.push(keys::SEP);
        k.extend_from_slice(sop_uid.as_bytes());
        let rec: Option<InstanceRecord> = self.old.get(&k)?.map(|v| decode(&k, &v)).transpose()?;
        Ok(rec.map(|r| r.content_hash))
    }

    /// Drops the old index once the new one is complete and durable.
    pub fn finish(self) -> Result<()> {
        self.db.drop_tree(V1_TREE)?;
        self.db.flush()?;
        Ok(())
    }
}

fn tree_name() -> String {
    format!("index.v{SCHEMA_VERSION}")
}

impl SledIndex {
    /// Opens the index; `Some(Legacy)` when an older index must be rebuilt
    /// into this one (which is then empty until `complete_migration`).
    pub fn open(path: &Path) -> Result<(Self, Option<Legacy>)> {
        let db = sled::Config::new().path(path).cache_capacity(256 << 20).flush_every_ms(Some(1000)).open()?;
        let tree = db.open_tree(tree_name())?;
        let vkey = key(keys::META, &["schema"]);
        let complete = tree.get(&vkey)?.map(|v| v.as_ref().try_into().map(u32::from_le_bytes).unwrap_or(0));
        let legacy = match complete {
            Some(v) if v == SCHEMA_VERSION => None,
            Some(found) => return Err(IndexError::Schema { found, expected: SCHEMA_VERSION }),
            None => {
                let has_old = db.tree_names().iter().any(|n| n.as_ref() == V1_TREE.as_bytes());
                let old = if has_old { Some(db.open_tree(V1_TREE)?) } else { None };
                match old.filter(|o| !o.is_empty()) {
                    Some(old) => {
                        // A migration a crash interrupted starts again from nothing.
                        tree.clear()?;
                        Some(Legacy { db: db.clone(), old })
                    }
                    None => {
                        tree.insert(vkey, &SCHEMA_VERSION.to_le_bytes())?;
                        db.flush()?;
                        None
                    }
                }
            }
        };
        Ok((SledIndex { db, tree, write: Mutex::new(()), flushes: GroupCommit::default() }, legacy))
    }

    /// Marks a rebuilt index complete, durably.
    pub fn complete_migration(&self) -> Result<()> {
        self.tree.insert(key(keys::META, &["schema"]), &SCHEMA_VERSION.to_le_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-applied batch
        // (batches are atomic), so a poisoned lock is safe to take.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.tree.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, p: &[u8]) -> Result<Vec<T>> {
        self.tree.scan_prefix(p).map(|kv| kv.map_err(IndexError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    /// Applies one batch under the write lock.
    fn apply<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let _g = self.lock();
        let mut t = Txn::new(&self.tree);
        let out = f(&mut t)?;
        t.commit()?;
        self.flushes.written();
        Ok(out)
    }

    fn read_counts(&self, parts: &[&str]) -> Result<Counts> {
        let mut vals = [0u64; 5];
        for (v, what) in vals.iter_mut().zip(COUNTS) {
            let mut p: Vec<&str> = parts.to_vec();
            p.push(what);
            *v = self.tree.get(key(keys::META, &p))?.and_then(|v| v.as_ref().try_into().ok()).map(i64::from_le_bytes).unwrap_or(0).max(0) as u64;
        }
        Ok(Counts { patients: vals[0], studies: vals[1], series: vals[2], instances: vals[3], bytes: vals[4] })
    }
}

/// The patient key in the last two parts of an index key.
pub(super) fn patient_key_of(k: &[u8], at: usize) -> PatientKey {
    let p = keys::parts(k);
    PatientKey { issuer: p.get(at).copied().unwrap_or_default().to_owned(), patient_id: p.get(at + 1).copied().unwrap_or_default().to_owned() }
}

impl Index for SledIndex {
    fn upsert(&self, meta: &InstanceMeta) -> Result<Upsert> {
        self.apply(|t| {
            let replaced = self.remove(t, &meta.sop_uid, Some(&meta.patient_key()))?.is_some();
            self.add(t, meta)?;
            Ok(if replaced { Upsert::Replaced } else { Upsert::Inserted })
        })
    }

    fn refile(&self, metas: &[InstanceMeta]) -> Result<()> {
        self.apply(|t| {
            for m in metas {
                self.remove(t, &m.sop_uid, None)?;
            }
            metas.iter().try_for_each(|m| self.add(t, m))
        })
    }

    fn remove_instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        self.apply(|t| self.remove(t, sop_uid, None))
    }

    fn sync(&self) -> Result<()> {
        self.flushes.wait(self.flushes.latest(), || self.db.flush().map(drop).map_err(IndexError::from))
    }

    fn instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        let Some(loc) = self.tree.get(key(keys::INSTANCE_LOCATOR, &[sop_uid]))? else { return Ok(None) };
        let mut k = vec![keys::INSTANCE];
        k.extend_from_slice(&loc);
        k.push(keys::SEP);
        k.extend_from_slice(sop_uid.as_bytes());
        self.get(&k)
    }

    fn study(&self, uid: &str) -> Result<Option<StudyRecord>> {
        self.get(&key(keys::STUDY, &[uid]))
    }

    fn series(&self, uid: &str) -> Result<Option<SeriesRecord>> {
        let Some(study) = self.tree.get(key(keys::SERIES_TO_STUDY, &[uid]))? else { return Ok(None) };
        self.get(&key(keys::SERIES, &[&String::from_utf8_lossy(&study), uid]))
    }

    fn patient(&self, k: &PatientKey) -> Result<Option<PatientRecord>> {
        self.get(&keys::patient(k))
    }

    fn find_studies<'a>(&'a self, f: &'a StudyFilter) -> Records<'a, StudyRecord> {
        self.studies(f)
    }

    fn find_patients<'a>(&'a self, f: &'a PatientFilter) -> Records<'a, PatientRecord> {
        self.patients(f)
    }

    fn series_of(&self, study_uid: &str) -> Result<Vec<SeriesRecord>> {
        self.scan(&prefix(keys::SERIES, &[study_uid]))
    }

    fn instances_of(&self, study_uid: &str, series_uid: Option<&str>) -> Result<Vec<InstanceRecord>> {
        match series_uid {
            Some(s) => self.scan(&prefix(keys::INSTANCE, &[study_uid, s])),
            None => self.scan(&prefix(keys::INSTANCE, &[study_uid])),
        }
    }

    fn studies_of_patient(&self, k: &PatientKey) -> Result<Vec<String>> {
        self.tree.scan_prefix(prefix(keys::PATIENT_STUDIES, &[&k.issuer, &k.patient_id])).map(|kv| Ok(keys::last_part(&kv?.0).to_owned())).collect()
    }

    fn patients_by_nhs(&self, nhs: &str) -> Result<Vec<PatientKey>> {
        self.tree.scan_prefix(prefix(keys::BY_NHS, &[nhs])).keys().map(|k| Ok(patient_key_of(&k?, 1))).collect()
    }

    fn link_conflicts(&self) -> Result<Vec<LinkConflict>> {
        self.scan(&[keys::LINK_CONFLICT])
    }

    fn link_log(&self, after: u64, max: usize) -> Result<Vec<LinkEvent>> {
        let mut lo = vec![keys::LINK_LOG];
        lo.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        self.tree.range(lo..[keys::LINK_LOG + 1].to_vec()).take(max).map(|kv| kv.map_err(IndexError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    fn decide_link(&self, patient: &PatientKey, decision: Decision, nhs: Option<&str>, by: &str) -> Result<PatientRecord> {
        let p = self.apply(|t| self.decide(t, patient, decision, nhs, by))?;
        self.sync()?;
        Ok(p)
    }

    fn set_divergent(&self, sop_uid: &str, sender: &str, hash: Option<[u8; 32]>) -> Result<()> {
        let k = key(keys::DIVERGENT, &[sop_uid, sender]);
        match hash {
            Some(h) => self.tree.insert(k, &h)?,
            None => self.tree.remove(k)?,
        };
        self.flushes.written();
        Ok(())
    }

    fn divergent(&self, sop_uid: &str, sender: &str) -> Result<Option<[u8; 32]>> {
        Ok(self.tree.get(key(keys::DIVERGENT, &[sop_uid, sender]))?.and_then(|v| v.as_ref().try_into().ok()))
    }

    fn all_instances(&self) -> Records<'_, InstanceRecord> {
        Box::new(self.tree.scan_prefix([keys::INSTANCE]).map(|kv| kv.map_err(IndexError::from).and_then(|(k, v)| decode(&k, &v))))
    }

    fn counts(&self) -> Result<Counts> {
        self.read_counts(&["count"])
    }

    fn counts_by_site(&self) -> Result<Vec<(String, Counts)>> {
        let mut sites = BTreeSet::new();
        for k in self.tree.scan_prefix(prefix(keys::META, &["site"])).keys() {
            let k = k?;
            if let Some(site) = keys::parts(&k).get(1) {
                sites.insert(site.to_string());
            }
        }
        sites.into_iter().map(|s| Ok((s.clone(), self.read_counts(&["site", &s])?))).collect()
    }

    fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }
}
