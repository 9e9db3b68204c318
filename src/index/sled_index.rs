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

use super::held::{held_key, HeldConflict};
use super::identity::{IdentityChange, IdentityEvent};
use super::keys::{self, key, prefix};
use super::link::{Decision, LinkConflict, LinkEvent};
use super::model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use super::rejection::{rejected_key, Rejection};
use super::txn::{decode, Txn};
use super::{Counts, Index, IndexError, PatientFilter, Records, Result, StudyFilter, Upsert};
use crate::group_commit::GroupCommit;

/// Bumped whenever a record's layout or the key space changes.
/// 2: patients keyed by (issuer, ID); newest-first date and site indexes;
/// NHS-number link conflicts and log.
/// 3: instances, series and studies record the sites holding them and
/// whether radhub holds a copy (entries known only from a site's PACS).
/// 4: studies record the issuer of their accession number.
pub const SCHEMA_VERSION: u32 = 4;

/// Trees of earlier versions, newest first. Their instance records share
/// one layout (`OldInstance`), which names each instance's site.
const OLD_TREES: [&str; 2] = ["index.v2", "radhub"];

/// The instance record of versions 1 and 2, as far as a migration reads it.
#[derive(serde::Deserialize)]
struct OldInstance {
    sop_uid: String,
    _series_uid: String,
    _study_uid: String,
    site: String,
    _sop_class_uid: String,
    _number: Option<i64>,
    _transfer_syntax: String,
    _frames: u32,
    _rows: u16,
    _columns: u16,
    _bits_allocated: u16,
    _samples_per_pixel: u16,
    _photometric: String,
    _has_pixel_data: bool,
    _file_size: u64,
    content_hash: [u8; 32],
}

const COUNTS: [&str; 6] = ["patients", "studies", "series", "instances", "bytes", "local"];

pub struct SledIndex {
    db: sled::Db,
    pub(super) tree: sled::Tree,
    write: Mutex<()>,
    flushes: GroupCommit,
}

/// An index of an earlier schema, to be rebuilt from the instance files.
pub struct Legacy {
    db: sled::Db,
    name: &'static str,
    old: sled::Tree,
}

impl Legacy {
    /// (SOP Instance UID, site) of every instance the old index held.
    pub fn instances(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for kv in self.old.scan_prefix([keys::INSTANCE]) {
            let (k, v) = kv?;
            let r: OldInstance = decode(&k, &v)?;
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
        let rec: Option<OldInstance> = self.old.get(&k)?.map(|v| decode(&k, &v)).transpose()?;
        Ok(rec.map(|r| r.content_hash))
    }

    /// What a rebuild from the files cannot recover, to carry into the new
    /// index first: identity aliases and log, rejections, the link log and
    /// their sequence counters.
    pub fn carried(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for p in [keys::PATIENT_ALIAS, keys::IDENTITY_LOG, keys::REJECTED, keys::LINK_LOG] {
            for kv in self.old.scan_prefix([p]) {
                let (k, v) = kv?;
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        for seq in ["identity_seq", "link_seq"] {
            let k = key(keys::META, &[seq]);
            if let Some(v) = self.old.get(&k)? {
                out.push((k, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Drops the old index once the new one is complete and durable.
    pub fn finish(self) -> Result<()> {
        self.db.drop_tree(self.name)?;
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
                let names = db.tree_names();
                let mut old = None;
                for name in OLD_TREES {
                    if names.iter().any(|n| n.as_ref() == name.as_bytes()) {
                        let t = db.open_tree(name)?;
                        if !t.is_empty() {
                            old = Some((name, t));
                            break;
                        }
                    }
                }
                match old {
                    Some((name, old)) => {
                        // A migration a crash interrupted starts again from nothing.
                        tree.clear()?;
                        Some(Legacy { db: db.clone(), name, old })
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

    /// Writes what `Legacy::carried` kept into the index being rebuilt.
    pub fn carry_over(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Applies the logged demographics changes again, oldest first, to an
    /// index rebuilt from the files (which hold the values as received).
    pub fn replay_demographics(&self) -> Result<usize> {
        let mut n = 0;
        for e in self.identity_log(0, usize::MAX)? {
            if let super::identity::IdentityChange::Demographics { patient, demographics } = &e.change {
                if self.apply(|t| self.demographics(t, patient, demographics, &e.by))?.is_some() {
                    n += 1;
                }
            }
        }
        Ok(n)
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
        let mut vals = [0u64; COUNTS.len()];
        for (v, what) in vals.iter_mut().zip(COUNTS) {
            let mut p: Vec<&str> = parts.to_vec();
            p.push(what);
            *v = self.tree.get(key(keys::META, &p))?.and_then(|v| v.as_ref().try_into().ok()).map(i64::from_le_bytes).unwrap_or(0).max(0) as u64;
        }
        Ok(Counts { patients: vals[0], studies: vals[1], series: vals[2], instances: vals[3], bytes: vals[4], local_instances: vals[5] })
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
            if let Some(r) = t.get::<Rejection>(&rejected_key(&meta.sop_uid))? {
                // A site's PACS still listing it: it stays rejected.
                if meta.remote {
                    return Ok(Upsert::Unchanged);
                }
                return Err(IndexError::Rejected(format!("{} was rejected ({}, by {}): an admin can restore it", meta.sop_uid, r.meaning, r.by)));
            }
            if meta.remote {
                // A site's PACS reporting what radhub knows already: never
                // replaces a local copy, only notes where it is held.
                if let Some(held) = self.locate(t, &meta.sop_uid)? {
                    return Ok(if self.note_held(t, &held, meta)? { Upsert::Held } else { Upsert::Unchanged });
                }
            }
            // Sent again and filed, it is no longer held for an admin.
            t.del(held_key(&meta.sop_uid));
            let filed_as = super::identity::resolve(t, meta.patient_key())?;
            let old = self.remove(t, &meta.sop_uid, Some(&filed_as))?;
            // The sites known to hold it still do.
            let mut held: BTreeSet<String> = old.as_ref().map(|o| o.held_at.clone()).unwrap_or_default();
            held.extend(meta.held_at.clone());
            self.add(t, meta, &held)?;
            Ok(if old.is_some() { Upsert::Replaced } else { Upsert::Inserted })
        })
    }

    fn refile(&self, metas: &[InstanceMeta]) -> Result<()> {
        self.apply(|t| {
            for m in metas {
                self.remove(t, &m.sop_uid, None)?;
            }
            metas.iter().try_for_each(|m| self.add(t, m, &m.held_at.iter().cloned().collect()))
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

    fn decide_link(&self, patient: &PatientKey, decision: Decision, nhs: Option<&str>, by: &str, why: &str) -> Result<PatientRecord> {
        let p = self.apply(|t| self.decide(t, patient, decision, nhs, by, why))?;
        self.sync()?;
        Ok(p)
    }

    fn change_identity(&self, change: &IdentityChange, by: &str, why: &str) -> Result<IdentityEvent> {
        let e = self.apply(|t| self.identity(t, change, None, by, why))?;
        self.sync()?;
        Ok(e)
    }

    fn undo_identity(&self, seq: u64, by: &str, why: &str) -> Result<IdentityEvent> {
        let e = self.apply(|t| {
            let (change, studies) = self.undo_of(t, seq)?;
            self.identity(t, &change, Some((seq, &studies)), by, why)
        })?;
        self.sync()?;
        Ok(e)
    }

    fn identity_log(&self, after: u64, max: usize) -> Result<Vec<IdentityEvent>> {
        let mut lo = vec![keys::IDENTITY_LOG];
        lo.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        self.tree.range(lo..[keys::IDENTITY_LOG + 1].to_vec()).take(max).map(|kv| kv.map_err(IndexError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    fn reject(&self, rejections: &[Rejection]) -> Result<Vec<Rejection>> {
        let done = self.apply(|t| rejections.iter().filter_map(|r| self.reject_one(t, r).transpose()).collect::<Result<Vec<_>>>())?;
        self.sync()?;
        Ok(done)
    }

    fn restore(&self, sop_uid: &str, meta: Option<&InstanceMeta>) -> Result<Option<Rejection>> {
        let r = self.apply(|t| self.restore_one(t, sop_uid, meta))?;
        self.sync()?;
        Ok(r)
    }

    fn rejection(&self, sop_uid: &str) -> Result<Option<Rejection>> {
        self.get(&rejected_key(sop_uid))
    }

    fn rejections(&self, study_uid: Option<&str>) -> Result<Vec<Rejection>> {
        self.scan_rejections(study_uid)
    }

    fn mark_deleted(&self, sop_uid: &str) -> Result<()> {
        self.apply(|t| {
            if let Some(mut r) = t.get::<Rejection>(&rejected_key(sop_uid))? {
                r.deleted = true;
                t.put(rejected_key(sop_uid), &r);
            }
            Ok(())
        })?;
        self.sync()
    }

    fn restated(&self, study_uid: &str) -> Result<bool> {
        Ok(self.tree.contains_key(key(keys::RESTATED, &[study_uid]))?)
    }

    fn current_key(&self, k: &PatientKey) -> Result<PatientKey> {
        super::identity::current(&self.tree, k)
    }

    fn hold(&self, c: &HeldConflict) -> Result<()> {
        self.apply(|t| {
            t.put(held_key(&c.meta.sop_uid), c);
            Ok(())
        })
    }

    fn held(&self, sop_uid: &str) -> Result<Option<HeldConflict>> {
        self.get(&held_key(sop_uid))
    }

    fn held_all(&self) -> Result<Vec<HeldConflict>> {
        self.scan(&[keys::HELD])
    }

    fn release(&self, sop_uid: &str, file_as: Option<&InstanceMeta>) -> Result<Option<HeldConflict>> {
        let c = self.apply(|t| {
            let Some(c) = t.get::<HeldConflict>(&held_key(sop_uid))? else { return Ok(None) };
            t.del(held_key(sop_uid));
            if let Some(m) = file_as {
                self.add(t, m, &m.held_at.iter().cloned().collect())?;
            }
            Ok(Some(c))
        })?;
        self.sync()?;
        Ok(c)
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

    fn counts_held(&self) -> Result<std::collections::HashMap<String, u64>> {
        let mut out = std::collections::HashMap::new();
        for kv in self.tree.scan_prefix(prefix(keys::META, &["site"])) {
            let (k, v) = kv?;
            let p = keys::parts(&k);
            if let (Some(site), Some(&"held")) = (p.get(1), p.get(2)) {
                let n = v.as_ref().try_into().map(i64::from_le_bytes).unwrap_or(0).max(0) as u64;
                out.insert(site.to_string(), n);
            }
        }
        Ok(out)
    }

    fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }
}
