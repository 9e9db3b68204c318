//! The index on sled: records and secondary indexes in one tree (see
//! `keys`), updated in atomic batches under one write lock, made durable by
//! a shared flush (group commit).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use super::keys::{self, key, prefix};
use super::matching::{self, has_wildcard, literal_prefix, normalise_name};
use super::model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use super::txn::{decode, Txn};
use super::{Counts, Index, IndexError, PatientFilter, Result, StudyFilter, Upsert};
use crate::group_commit::GroupCommit;

/// Bumped whenever a record's layout or the key space changes.
pub const SCHEMA_VERSION: u32 = 1;

const COUNTS: [&str; 5] = ["patients", "studies", "series", "instances", "bytes"];

pub struct SledIndex {
    db: sled::Db,
    tree: sled::Tree,
    write: Mutex<()>,
    flushes: GroupCommit,
}

impl SledIndex {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new().path(path).cache_capacity(256 << 20).flush_every_ms(Some(1000)).open()?;
        let tree = db.open_tree("radhub")?;
        let vkey = key(keys::META, &["schema"]);
        match tree.get(&vkey)? {
            None => {
                tree.insert(vkey, &SCHEMA_VERSION.to_le_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_le_bytes).unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(IndexError::Schema { found, expected: SCHEMA_VERSION });
                }
            }
        }
        Ok(SledIndex { db, tree, write: Mutex::new(()), flushes: GroupCommit::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-applied batch
        // (batches are atomic), so a poisoned lock is safe to take.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.tree.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, p: &[u8]) -> Result<Vec<T>> {
        self.tree.scan_prefix(p).map(|kv| kv.map_err(IndexError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    /// Study UIDs from a secondary index: the last part of every key under `p`.
    fn uids_under(&self, p: &[u8]) -> Result<Vec<String>> {
        self.uid_iter(self.tree.scan_prefix(p)).collect()
    }

    fn uid_iter<'a>(&self, it: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a) -> impl Iterator<Item = Result<String>> + 'a {
        it.map(|kv| Ok(keys::last_part(&kv?.0).to_owned()))
    }

    /// Candidate studies for a filter, lazily, from the most selective index
    /// that applies; `None` means a full scan.
    fn candidates<'a>(&'a self, f: &'a StudyFilter) -> Option<Box<dyn Iterator<Item = Result<String>> + 'a>> {
        if !f.study_uids.is_empty() {
            return Some(Box::new(f.study_uids.iter().cloned().map(Ok)));
        }
        if let Some(acc) = f.accession.as_deref().filter(|a| !a.is_empty() && !has_wildcard(a)) {
            return Some(Box::new(self.uid_iter(self.tree.scan_prefix(prefix(keys::BY_ACCESSION, &[acc])))));
        }
        if let Some(pid) = f.patient_id.as_deref().filter(|p| !p.is_empty() && !has_wildcard(p)) {
            return Some(Box::new(self.uid_iter(self.tree.scan_prefix(prefix(keys::BY_PATIENT_ID, &[pid])))));
        }
        if let Some(name) = f.patient_name.as_deref() {
            let norm = matching::normalise_name_pattern(name);
            if !has_wildcard(&norm) && !norm.is_empty() {
                return Some(Box::new(self.uid_iter(self.tree.scan_prefix(prefix(keys::BY_NAME, &[&norm])))));
            }
            // Indexed names drop trailing empty components: so must the prefix.
            let lit = literal_prefix(&norm).trim_end_matches('^');
            if !lit.is_empty() {
                return Some(Box::new(self.uid_iter(self.tree.scan_prefix(key(keys::BY_NAME, &[lit])))));
            }
        }
        if let Some(r) = &f.date {
            let lo = key(keys::BY_DATE, &[r.from.as_deref().unwrap_or("00000000")]);
            let mut hi = key(keys::BY_DATE, &[r.to.as_deref().unwrap_or("99999999")]);
            hi.push(0xFF);
            return Some(Box::new(self.uid_iter(self.tree.range(lo..hi))));
        }
        None
    }

    fn add(&self, t: &mut Txn<'_>, m: &InstanceMeta) -> Result<()> {
        let pkey = m.patient_key();
        let size = m.file_size as i64;
        let sp = m.site.as_str();

        // Study: its patient is fixed by the first instance; later instances
        // refresh study-level attributes.
        let skey = key(keys::STUDY, &[&m.study_uid]);
        let old_study: Option<StudyRecord> = t.get(&skey)?;
        let new_study = old_study.is_none();
        let mut study = old_study.clone().unwrap_or_else(|| StudyRecord {
            uid: m.study_uid.clone(),
            site: m.site.clone(),
            patient: pkey.clone(),
            patient_name: m.patient_name.clone(),
            patient_birth_date: m.patient_birth_date.clone(),
            patient_sex: m.patient_sex.clone(),
            date: String::new(),
            time: String::new(),
            accession_number: String::new(),
            study_id: String::new(),
            referring_physician_name: String::new(),
            description: String::new(),
            institution_name: String::new(),
            modalities: BTreeSet::new(),
            sop_classes: BTreeSet::new(),
            series: 0,
            instances: 0,
            bytes: 0,
            first_received_ms: m.received_ms,
            last_received_ms: m.received_ms,
        });
        if study.patient != pkey {
            tracing::warn!(study = %m.study_uid, sop = %m.sop_uid, held_by = ?study.patient, sent_as = ?pkey, "instance names another patient than its study; kept under the study's patient");
        }
        study.date = m.study_date.clone();
        study.time = m.study_time.clone();
        study.accession_number = m.accession_number.clone();
        study.study_id = m.study_id.clone();
        study.referring_physician_name = m.referring_physician_name.clone();
        study.description = m.study_description.clone();
        study.institution_name = m.institution_name.clone();
        if !m.modality.is_empty() {
            study.modalities.insert(m.modality.clone());
        }
        study.sop_classes.insert(m.sop_class_uid.clone());
        study.instances += 1;
        study.bytes += m.file_size;
        study.first_received_ms = study.first_received_ms.min(m.received_ms);
        study.last_received_ms = study.last_received_ms.max(m.received_ms);
        let pkey = study.patient.clone();

        // Series.
        let rkey = key(keys::SERIES, &[&m.study_uid, &m.series_uid]);
        let old_series: Option<SeriesRecord> = t.get(&rkey)?;
        let new_series = old_series.is_none();
        let mut series = old_series.unwrap_or_else(|| SeriesRecord {
            uid: m.series_uid.clone(),
            study_uid: m.study_uid.clone(),
            site: m.site.clone(),
            modality: m.modality.clone(),
            number: m.series_number,
            description: m.series_description.clone(),
            body_part_examined: m.body_part_examined.clone(),
            date: m.series_date.clone(),
            time: m.series_time.clone(),
            instances: 0,
            bytes: 0,
        });
        series.instances += 1;
        series.bytes += m.file_size;
        if new_series {
            study.series += 1;
            t.put_raw(key(keys::SERIES_TO_STUDY, &[&m.series_uid]), m.study_uid.as_bytes().to_vec());
        }
        t.put(rkey, &series);

        // Patient.
        let pk = keys::patient(&pkey);
        let old_patient: Option<PatientRecord> = t.get(&pk)?;
        let mut patient = old_patient.clone().unwrap_or_else(|| PatientRecord {
            key: pkey.clone(),
            name: String::new(),
            birth_date: String::new(),
            sex: String::new(),
            other_ids: Vec::new(),
            nhs_number: None,
            studies: 0,
            series: 0,
            instances: 0,
        });
        if pkey == m.patient_key() {
            patient.name = m.patient_name.clone();
            patient.birth_date = m.patient_birth_date.clone();
            patient.sex = m.patient_sex.clone();
            patient.other_ids = m.other_patient_ids.clone();
            if m.nhs_number.is_some() && m.nhs_number != patient.nhs_number {
                if let Some(old) = &patient.nhs_number {
                    t.del(key(keys::BY_NHS, &[old, &pkey.site, &pkey.issuer, &pkey.patient_id]));
                }
                patient.nhs_number = m.nhs_number.clone();
            }
        }
        if let Some(nhs) = &patient.nhs_number {
            t.put_raw(key(keys::BY_NHS, &[nhs, &pkey.site, &pkey.issuer, &pkey.patient_id]), Vec::new());
        }
        patient.instances += 1;
        patient.series += u32::from(new_series);
        patient.studies += u32::from(new_study);
        if old_patient.is_none() {
            self.count(t, sp, "patients", 1)?;
        }
        t.put(pk, &patient);

        self.put_study(t, old_study.as_ref(), Some(&study));
        self.count(t, sp, "studies", i64::from(new_study))?;
        self.count(t, sp, "series", i64::from(new_series))?;
        self.count(t, sp, "instances", 1)?;
        self.count(t, sp, "bytes", size)?;

        t.put(key(keys::INSTANCE, &[&m.study_uid, &m.series_uid, &m.sop_uid]), &m.instance_record());
        t.put_raw(key(keys::INSTANCE_LOCATOR, &[&m.sop_uid]), format!("{}\0{}", m.study_uid, m.series_uid).into_bytes());
        Ok(())
    }

    fn remove(&self, t: &mut Txn<'_>, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        let Some(loc) = t.get_raw(&key(keys::INSTANCE_LOCATOR, &[sop_uid]))? else { return Ok(None) };
        let loc = String::from_utf8_lossy(&loc).into_owned();
        let (study_uid, series_uid) = loc.split_once('\0').unwrap_or((&loc, ""));
        let ikey = key(keys::INSTANCE, &[study_uid, series_uid, sop_uid]);
        let Some(inst) = t.get::<InstanceRecord>(&ikey)? else { return Ok(None) };
        t.del(ikey);
        t.del(key(keys::INSTANCE_LOCATOR, &[sop_uid]));
        let size = inst.file_size;
        let site = inst.site.as_str();

        let rkey = key(keys::SERIES, &[study_uid, series_uid]);
        let mut series_gone = false;
        if let Some(mut s) = t.get::<SeriesRecord>(&rkey)? {
            s.instances = s.instances.saturating_sub(1);
            s.bytes = s.bytes.saturating_sub(size);
            if s.instances == 0 {
                series_gone = true;
                t.del(rkey);
                t.del(key(keys::SERIES_TO_STUDY, &[series_uid]));
            } else {
                t.put(rkey, &s);
            }
        }
        let skey = key(keys::STUDY, &[study_uid]);
        let mut study_gone = false;
        let mut patient_key = None;
        if let Some(old) = t.get::<StudyRecord>(&skey)? {
            let mut s = old.clone();
            patient_key = Some(s.patient.clone());
            s.instances = s.instances.saturating_sub(1);
            s.bytes = s.bytes.saturating_sub(size);
            s.series = s.series.saturating_sub(u32::from(series_gone));
            if s.instances == 0 {
                study_gone = true;
                self.put_study(t, Some(&old), None);
            } else {
                // Recompute what the remaining instances say.
                let series: Vec<SeriesRecord> = t.scan_prefix(&prefix(keys::SERIES, &[study_uid]))?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_>>()?;
                s.modalities = series.iter().map(|r| r.modality.clone()).filter(|m| !m.is_empty()).collect();
                let insts: Vec<InstanceRecord> =
                    t.scan_prefix(&prefix(keys::INSTANCE, &[study_uid]))?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_>>()?;
                s.sop_classes = insts.iter().map(|i| i.sop_class_uid.clone()).collect();
                self.put_study(t, Some(&old), Some(&s));
            }
        }
        if let Some(pkey) = patient_key {
            let pk = keys::patient(&pkey);
            if let Some(mut p) = t.get::<PatientRecord>(&pk)? {
                p.instances = p.instances.saturating_sub(1);
                p.series = p.series.saturating_sub(u32::from(series_gone));
                p.studies = p.studies.saturating_sub(u32::from(study_gone));
                if p.studies == 0 {
                    if let Some(nhs) = &p.nhs_number {
                        t.del(key(keys::BY_NHS, &[nhs, &pkey.site, &pkey.issuer, &pkey.patient_id]));
                    }
                    t.del(pk);
                    self.count(t, &pkey.site, "patients", -1)?;
                } else {
                    t.put(pk, &p);
                }
            }
        }
        self.count(t, site, "studies", -i64::from(study_gone))?;
        self.count(t, site, "series", -i64::from(series_gone))?;
        self.count(t, site, "instances", -1)?;
        self.count(t, site, "bytes", -(size as i64))?;
        Ok(Some(inst))
    }

    /// Writes a study record and moves its secondary index entries.
    fn put_study(&self, t: &mut Txn<'_>, old: Option<&StudyRecord>, new: Option<&StudyRecord>) {
        let old_keys: BTreeSet<Vec<u8>> = old.map(study_index_keys).unwrap_or_default();
        let new_keys: BTreeSet<Vec<u8>> = new.map(study_index_keys).unwrap_or_default();
        for k in old_keys.difference(&new_keys) {
            t.del(k.clone());
        }
        for k in new_keys.difference(&old_keys) {
            t.put_raw(k.clone(), Vec::new());
        }
        match (old, new) {
            (_, Some(s)) => t.put(key(keys::STUDY, &[&s.uid]), s),
            (Some(s), None) => t.del(key(keys::STUDY, &[&s.uid])),
            (None, None) => {}
        }
    }

    fn count(&self, t: &mut Txn<'_>, site: &str, what: &str, delta: i64) -> Result<()> {
        t.bump(key(keys::META, &["count", what]), delta)?;
        t.bump(key(keys::META, &["site", site, what]), delta)
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

/// The secondary index entries of one study.
fn study_index_keys(s: &StudyRecord) -> BTreeSet<Vec<u8>> {
    let p = &s.patient;
    let mut out = BTreeSet::new();
    out.insert(key(keys::BY_PATIENT_ID, &[&p.patient_id, &s.uid]));
    out.insert(key(keys::BY_DATE, &[&s.date, &s.uid]));
    out.insert(key(keys::BY_NAME, &[&normalise_name(&s.patient_name), &s.uid]));
    out.insert(key(keys::PATIENT_STUDIES, &[&p.site, &p.issuer, &p.patient_id, &s.uid]));
    if !s.accession_number.is_empty() {
        out.insert(key(keys::BY_ACCESSION, &[&s.accession_number, &s.uid]));
    }
    out
}

fn opt_match(pattern: &Option<String>, value: &str) -> bool {
    pattern.as_deref().is_none_or(|p| matching::wildcard(p, value))
}

fn study_matches(f: &StudyFilter, s: &StudyRecord) -> bool {
    opt_match(&f.patient_id, &s.patient.patient_id)
        && opt_match(&f.issuer, &s.patient.issuer)
        && opt_match(&f.accession, &s.accession_number)
        && opt_match(&f.site, &s.site)
        && opt_match(&f.description, &s.description)
        && f.patient_name.as_deref().is_none_or(|p| matching::name_matches(p, &s.patient_name))
        && f.date.as_ref().is_none_or(|r| r.contains(&s.date))
        && f.modality.as_deref().is_none_or(|m| s.modalities.iter().any(|v| matching::wildcard(m, v)))
        && (f.study_uids.is_empty() || f.study_uids.contains(&s.uid))
}

impl Index for SledIndex {
    fn upsert(&self, meta: &InstanceMeta) -> Result<Upsert> {
        let _g = self.lock();
        let mut t = Txn::new(&self.tree);
        let replaced = self.remove(&mut t, &meta.sop_uid)?.is_some();
        self.add(&mut t, meta)?;
        t.commit()?;
        self.flushes.written();
        Ok(if replaced { Upsert::Replaced } else { Upsert::Inserted })
    }

    fn remove_instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        let _g = self.lock();
        let mut t = Txn::new(&self.tree);
        let old = self.remove(&mut t, sop_uid)?;
        t.commit()?;
        self.flushes.written();
        Ok(old)
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

    fn find_studies(&self, f: &StudyFilter) -> Result<Vec<StudyRecord>> {
        let limit = f.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        match self.candidates(f) {
            Some(uids) => {
                for uid in uids {
                    if out.len() >= limit {
                        break;
                    }
                    if let Some(s) = self.study(&uid?)? {
                        if study_matches(f, &s) {
                            out.push(s);
                        }
                    }
                }
            }
            None => {
                for kv in self.tree.scan_prefix([keys::STUDY]) {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = kv?;
                    let s: StudyRecord = decode(&k, &v)?;
                    if study_matches(f, &s) {
                        out.push(s);
                    }
                }
            }
        }
        Ok(out)
    }

    fn find_patients(&self, f: &PatientFilter) -> Result<Vec<PatientRecord>> {
        let limit = f.limit.unwrap_or(usize::MAX);
        let keys_: Box<dyn Iterator<Item = Result<Vec<u8>>>> = match &f.nhs_number {
            Some(nhs) => Box::new(self.patients_by_nhs(nhs)?.into_iter().map(|k| Ok(keys::patient(&k)))),
            None => Box::new(self.tree.scan_prefix([keys::PATIENT]).keys().map(|k| Ok(k?.to_vec()))),
        };
        let mut out = Vec::new();
        for k in keys_ {
            if out.len() >= limit {
                break;
            }
            let Some(p) = self.get::<PatientRecord>(&k?)? else { continue };
            let ok = opt_match(&f.patient_id, &p.key.patient_id)
                && opt_match(&f.issuer, &p.key.issuer)
                && opt_match(&f.site, &p.key.site)
                && f.patient_name.as_deref().is_none_or(|n| matching::name_matches(n, &p.name));
            if ok {
                out.push(p);
            }
        }
        Ok(out)
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
        self.uids_under(&prefix(keys::PATIENT_STUDIES, &[&k.site, &k.issuer, &k.patient_id]))
    }

    fn patients_by_nhs(&self, nhs: &str) -> Result<Vec<PatientKey>> {
        self.tree
            .scan_prefix(prefix(keys::BY_NHS, &[nhs]))
            .keys()
            .map(|k| {
                let k = k?;
                let p = keys::parts(&k);
                Ok(PatientKey {
                    site: p.get(1).copied().unwrap_or_default().to_owned(),
                    issuer: p.get(2).copied().unwrap_or_default().to_owned(),
                    patient_id: p.get(3).copied().unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    fn all_instances(&self) -> Box<dyn Iterator<Item = Result<InstanceRecord>> + '_> {
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
