//! Index writes: one instance added or removed, with every record,
//! aggregate, secondary index, counter and NHS-number link it touches, in
//! one transaction (`Txn`) that commits as one atomic batch.

use std::collections::{BTreeMap, BTreeSet};

use super::identity;
use super::keys::{self, key, prefix};
use super::link::{self, ConflictKind, Decision, LinkAction, LinkConflict, LinkEvent, Step};
use super::matching::normalise_name;
use super::model::{InstanceMeta, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};
use super::sled_index::{patient_key_of, SledIndex};
use super::txn::{decode, Txn};
use super::{IndexError, Result};

impl SledIndex {
    /// Adds one instance, held at the sites `held`.
    pub(super) fn add(&self, t: &mut Txn<'_>, m: &InstanceMeta, held: &BTreeSet<String>) -> Result<()> {
        // An identity merged or renamed by the site's patient administration
        // files under the key it lives on as.
        let pkey = identity::resolve(t, m.patient_key())?;
        let size = m.file_size as i64;
        let site = m.site.as_str();

        // Study: its patient is fixed by the first instance. An instance
        // naming another patient is refused: filed under either, it would
        // show one person's images as another's.
        let skey = key(keys::STUDY, &[&m.study_uid]);
        let old_study: Option<StudyRecord> = t.get(&skey)?;
        if let Some(s) = old_study.as_ref().filter(|s| s.patient != pkey) {
            return Err(IndexError::PatientMismatch { study: m.study_uid.clone(), held: s.patient.clone(), sent: pkey });
        }
        let new_study = old_study.is_none();
        let mut study = old_study.clone().unwrap_or_else(|| StudyRecord {
            uid: m.study_uid.clone(),
            site: m.site.clone(),
            patient: pkey.clone(),
            patient_name: String::new(),
            patient_birth_date: String::new(),
            patient_sex: String::new(),
            date: String::new(),
            time: String::new(),
            accession_number: String::new(),
            accession_issuer: Default::default(),
            study_id: String::new(),
            referring_physician_name: String::new(),
            description: String::new(),
            institution_name: String::new(),
            modalities: BTreeSet::new(),
            sop_classes: BTreeSet::new(),
            series: 0,
            instances: 0,
            local_instances: 0,
            held_at: BTreeSet::new(),
            bytes: 0,
            first_received_ms: m.received_ms,
            last_received_ms: m.received_ms,
        });
        study.date = m.study_date.clone();
        study.time = m.study_time.clone();
        study.accession_number = m.accession_number.clone();
        study.accession_issuer = m.accession_issuer.clone();
        study.study_id = m.study_id.clone();
        study.referring_physician_name = m.referring_physician_name.clone();
        study.description = m.study_description.clone();
        study.institution_name = m.institution_name.clone();
        if !m.modality.is_empty() {
            study.modalities.insert(m.modality.clone());
        }
        study.sop_classes.insert(m.sop_class_uid.clone());
        study.instances += 1;
        study.local_instances += u32::from(!m.remote);
        study.held_at.extend(held.iter().cloned());
        study.bytes += m.file_size;
        study.first_received_ms = study.first_received_ms.min(m.received_ms);
        study.last_received_ms = study.last_received_ms.max(m.received_ms);

        // Series: one series belongs to one study. A Series Instance UID held
        // under another study is refused, as a study naming another patient is.
        if let Some(held) = t.get_raw(&key(keys::SERIES_TO_STUDY, &[&m.series_uid]))?.filter(|h| h.as_slice() != m.study_uid.as_bytes()) {
            return Err(IndexError::SeriesMismatch {
                series: m.series_uid.clone(),
                held: String::from_utf8_lossy(&held).into_owned(),
                sent: m.study_uid.clone(),
            });
        }
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
            local_instances: 0,
            held_at: BTreeSet::new(),
            bytes: 0,
        });
        series.instances += 1;
        series.local_instances += u32::from(!m.remote);
        series.held_at.extend(held.iter().cloned());
        series.bytes += m.file_size;
        if new_series {
            study.series += 1;
            t.put_raw(key(keys::SERIES_TO_STUDY, &[&m.series_uid]), m.study_uid.as_bytes().to_vec());
        }
        t.put(rkey, &series);

        // Patient: demographics follow the latest arrival.
        let pk = keys::patient(&pkey);
        let old_patient: Option<PatientRecord> = t.get(&pk)?;
        let mut patient = old_patient.clone().unwrap_or_else(|| PatientRecord {
            key: pkey.clone(),
            name: String::new(),
            birth_date: String::new(),
            sex: String::new(),
            other_ids: Vec::new(),
            nhs_number: None,
            nhs_in_data: None,
            nhs_refused: Vec::new(),
            sites: Default::default(),
            studies: 0,
            series: 0,
            instances: 0,
        });
        // An arrival that leaves a value out does not erase it: an unknown
        // birth date must never pass for one that agrees.
        let known = |new: &str, old: &mut String| {
            if !new.trim().is_empty() {
                *old = new.to_owned();
            }
        };
        let was = (patient.name.clone(), patient.birth_date.clone(), patient.sex.clone());
        // Data naming a merged or renamed identity is older than what the
        // patient administration said since: its demographics are not
        // taken, unless they are all there is.
        if pkey == m.patient_key() || old_patient.is_none() {
            known(&m.patient_name, &mut patient.name);
            known(&m.patient_birth_date, &mut patient.birth_date);
            known(&m.patient_sex, &mut patient.sex);
            if !m.other_patient_ids.is_empty() {
                patient.other_ids = m.other_patient_ids.clone();
            }
            if m.nhs_number.is_some() {
                patient.nhs_in_data = m.nhs_number.clone();
            }
        }
        patient.instances += 1;
        patient.series += u32::from(new_series);
        if new_study {
            patient.studies += 1;
            let at_site = patient.sites.entry(site.to_owned()).or_default();
            *at_site += 1;
            if *at_site == 1 {
                bump_site(t, site, "patients", 1)?;
            }
        }
        if old_patient.is_none() {
            bump_total(t, "patients", 1)?;
            t.put_raw(key(keys::PATIENT_ISSUERS, &[&pkey.patient_id, &pkey.issuer]), Vec::new());
        }
        // Quarantined data is kept apart from every trust's records: it links to no one.
        if m.site != crate::sites::QUARANTINE {
            relink(t, &mut patient, m.received_ms, "ingest")?;
        }
        t.put(pk, &patient);
        // Every study of a patient shows the patient record's demographics.
        // An empty Patient ID (Type 2) identifies no one: studies filed
        // under it keep their own, never another person's name.
        if pkey.patient_id.trim().is_empty() {
            study.patient_name = m.patient_name.clone();
            study.patient_birth_date = m.patient_birth_date.clone();
            study.patient_sex = m.patient_sex.clone();
        } else {
            study.patient_name = patient.name.clone();
            study.patient_birth_date = patient.birth_date.clone();
            study.patient_sex = patient.sex.clone();
            if old_patient.is_some() && was != (patient.name.clone(), patient.birth_date.clone(), patient.sex.clone()) {
                identity::restate_all(t, &patient, &m.study_uid)?;
            }
            // This file says otherwise than the record it is filed under: served restated.
            let differs = |now: &str, sent: &str| !now.is_empty() && now != sent;
            if pkey.patient_id != m.patient_id
                || differs(&patient.name, &m.patient_name)
                || differs(&patient.birth_date, &m.patient_birth_date)
                || differs(&patient.sex, &m.patient_sex)
            {
                t.put_raw(key(keys::RESTATED, &[&m.study_uid]), Vec::new());
            }
        }

        put_study(t, old_study.as_ref(), Some(&study))?;
        for (what, d) in
            [("studies", i64::from(new_study)), ("series", i64::from(new_series)), ("instances", 1), ("bytes", size), ("local", i64::from(!m.remote))]
        {
            bump_total(t, what, d)?;
            bump_site(t, site, what, d)?;
        }

        let mut rec = m.instance_record();
        rec.held_at = held.clone();
        t.put(key(keys::INSTANCE, &[&m.study_uid, &m.series_uid, &m.sop_uid]), &rec);
        t.put_raw(key(keys::INSTANCE_LOCATOR, &[&m.sop_uid]), format!("{}\0{}", m.study_uid, m.series_uid).into_bytes());
        Ok(())
    }

    /// The record of an instance, read through the transaction.
    pub(super) fn locate(&self, t: &Txn<'_>, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        let Some(loc) = t.get_raw(&key(keys::INSTANCE_LOCATOR, &[sop_uid]))? else { return Ok(None) };
        let loc = String::from_utf8_lossy(&loc).into_owned();
        let (study_uid, series_uid) = loc.split_once('\0').unwrap_or((&loc, ""));
        t.get(&key(keys::INSTANCE, &[study_uid, series_uid, sop_uid]))
    }

    /// Removes one instance. `keep` names a patient about to get the
    /// instance back (an upsert): its record, link and admin decisions stay
    /// even if this was its last instance.
    pub(super) fn remove(&self, t: &mut Txn<'_>, sop_uid: &str, keep: Option<&PatientKey>) -> Result<Option<InstanceRecord>> {
        let Some(loc) = t.get_raw(&key(keys::INSTANCE_LOCATOR, &[sop_uid]))? else { return Ok(None) };
        let loc = String::from_utf8_lossy(&loc).into_owned();
        let (study_uid, series_uid) = loc.split_once('\0').unwrap_or((&loc, ""));
        let ikey = key(keys::INSTANCE, &[study_uid, series_uid, sop_uid]);
        let Some(inst) = t.get::<InstanceRecord>(&ikey)? else { return Ok(None) };
        t.del(ikey);
        t.del(key(keys::INSTANCE_LOCATOR, &[sop_uid]));
        let size = inst.file_size;
        let site = inst.site.as_str();
        let local = u32::from(inst.local);

        let rkey = key(keys::SERIES, &[study_uid, series_uid]);
        let mut series_gone = false;
        if let Some(mut s) = t.get::<SeriesRecord>(&rkey)? {
            s.instances = s.instances.saturating_sub(1);
            s.local_instances = s.local_instances.saturating_sub(local);
            s.bytes = s.bytes.saturating_sub(size);
            if s.instances == 0 {
                series_gone = true;
                t.del(rkey);
                // Only this study's claim on the series UID.
                if t.get_raw(&key(keys::SERIES_TO_STUDY, &[series_uid]))?.is_some_and(|h| h.as_slice() == study_uid.as_bytes()) {
                    t.del(key(keys::SERIES_TO_STUDY, &[series_uid]));
                }
            } else {
                t.put(rkey, &s);
            }
        }
        let skey = key(keys::STUDY, &[study_uid]);
        let mut study_gone = false;
        let mut held_by = None;
        if let Some(old) = t.get::<StudyRecord>(&skey)? {
            let mut s = old.clone();
            held_by = Some((s.patient.clone(), s.site.clone()));
            s.instances = s.instances.saturating_sub(1);
            s.local_instances = s.local_instances.saturating_sub(local);
            s.bytes = s.bytes.saturating_sub(size);
            s.series = s.series.saturating_sub(u32::from(series_gone));
            if s.instances == 0 {
                study_gone = true;
                put_study(t, Some(&old), None)?;
            } else {
                // Recompute what the remaining instances say.
                let series: Vec<SeriesRecord> = t.scan_prefix(&prefix(keys::SERIES, &[study_uid]))?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_>>()?;
                s.modalities = series.iter().map(|r| r.modality.clone()).filter(|m| !m.is_empty()).collect();
                let insts: Vec<InstanceRecord> =
                    t.scan_prefix(&prefix(keys::INSTANCE, &[study_uid]))?.iter().map(|(k, v)| decode(k, v)).collect::<Result<_>>()?;
                s.sop_classes = insts.iter().map(|i| i.sop_class_uid.clone()).collect();
                put_study(t, Some(&old), Some(&s))?;
            }
        }
        if let Some((pkey, study_site)) = held_by {
            let pk = keys::patient(&pkey);
            if let Some(mut p) = t.get::<PatientRecord>(&pk)? {
                p.instances = p.instances.saturating_sub(1);
                p.series = p.series.saturating_sub(u32::from(series_gone));
                if study_gone {
                    p.studies = p.studies.saturating_sub(1);
                    if let Some(n) = p.sites.get_mut(&study_site) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            p.sites.remove(&study_site);
                            bump_site(t, &study_site, "patients", -1)?;
                        }
                    }
                }
                if p.studies == 0 && keep != Some(&pkey) {
                    if let Some(nhs) = &p.nhs_number {
                        t.del(key(keys::BY_NHS, &[nhs, &pkey.issuer, &pkey.patient_id]));
                    }
                    t.del(key(keys::PATIENT_ISSUERS, &[&pkey.patient_id, &pkey.issuer]));
                    t.del(key(keys::LINK_CONFLICT, &[&pkey.issuer, &pkey.patient_id]));
                    t.del(pk);
                    bump_total(t, "patients", -1)?;
                } else {
                    t.put(pk, &p);
                }
            }
        }
        for (what, d) in [
            ("studies", -i64::from(study_gone)),
            ("series", -i64::from(series_gone)),
            ("instances", -1),
            ("bytes", -(size as i64)),
            ("local", -i64::from(local)),
        ] {
            bump_total(t, what, d)?;
            bump_site(t, site, what, d)?;
        }
        Ok(Some(inst))
    }

    /// Notes that `site`'s PACS holds an instance radhub knows already
    /// (held here or at another site). Its patient there must be the one it
    /// is filed under, or a record linked to it by NHS number (a copy sent
    /// to that site, its Patient ID coerced): anything else is refused, as
    /// a study naming another patient is. Returns whether anything changed.
    pub(super) fn note_held(&self, t: &mut Txn<'_>, held: &InstanceRecord, m: &InstanceMeta) -> Result<bool> {
        let Some(site) = m.held_at.as_deref() else { return Ok(false) };
        let skey = key(keys::STUDY, &[&held.study_uid]);
        let Some(old_study) = t.get::<StudyRecord>(&skey)? else { return Ok(false) };
        let sent = identity::resolve(t, m.patient_key())?;
        if old_study.patient != sent {
            let nhs = |k: &PatientKey| -> Result<Option<String>> { Ok(t.get::<PatientRecord>(&keys::patient(k))?.and_then(|p| p.nhs_number)) };
            let (a, b) = (nhs(&old_study.patient)?, nhs(&sent)?);
            if a.is_none() || a != b {
                return Err(IndexError::PatientMismatch { study: held.study_uid.clone(), held: old_study.patient.clone(), sent });
            }
        }
        if held.held_at.contains(site) {
            return Ok(false);
        }
        let mut inst = held.clone();
        inst.held_at.insert(site.to_owned());
        t.put(key(keys::INSTANCE, &[&held.study_uid, &held.series_uid, &held.sop_uid]), &inst);
        let rkey = key(keys::SERIES, &[&held.study_uid, &held.series_uid]);
        if let Some(mut r) = t.get::<SeriesRecord>(&rkey)? {
            if r.held_at.insert(site.to_owned()) {
                t.put(rkey, &r);
            }
        }
        let mut study = old_study.clone();
        if study.held_at.insert(site.to_owned()) {
            put_study(t, Some(&old_study), Some(&study))?;
        }
        Ok(true)
    }

    /// An admin's decision on a record's NHS-number link.
    pub(super) fn decide(&self, t: &mut Txn<'_>, key_: &PatientKey, decision: Decision, nhs: Option<&str>, by: &str, why: &str) -> Result<PatientRecord> {
        let because = |what: &str| if why.trim().is_empty() { what.to_owned() } else { format!("{what}: {}", why.trim()) };
        if crate::sites::is_quarantine_issuer(&key_.issuer) {
            return Err(IndexError::Link(format!("{key_} is in quarantine: it links to no one until its study is filed under a site")));
        }
        let pk = keys::patient(key_);
        let mut p: PatientRecord = t.get(&pk)?.ok_or_else(|| IndexError::NoSuchPatient(key_.clone()))?;
        let ckey = key(keys::LINK_CONFLICT, &[&key_.issuer, &key_.patient_id]);
        let conflict: Option<LinkConflict> = t.get(&ckey)?;
        let now = crate::ingest::now_ms();
        match decision {
            Decision::Link => {
                let asked = nhs.map(str::to_owned).or_else(|| conflict.as_ref().map(|c| c.nhs_number.clone()));
                let asked = asked.ok_or_else(|| IndexError::Link(format!("{key_} has no conflict: name the NHS number to link it by")))?;
                let n = crate::nhs::normalise(&asked).ok_or_else(|| IndexError::Link(format!("{asked:?} is not a valid NHS number (or is a placeholder)")))?;
                if let Some(old) = p.nhs_number.clone().filter(|o| *o != n) {
                    unlink(t, &mut p, &old, now, &format!("replaced by {n}"), by)?;
                }
                p.nhs_refused.retain(|r| *r != n);
                if p.nhs_number.as_deref() != Some(n.as_str()) {
                    t.put_raw(key(keys::BY_NHS, &[&n, &key_.issuer, &key_.patient_id]), Vec::new());
                    p.nhs_number = Some(n.clone());
                    log(t, now, &n, key_, LinkAction::Linked, &because("linked by an admin"), by)?;
                }
                t.del(ckey);
            }
            Decision::Unlink => {
                let Some(old) = p.nhs_number.clone() else { return Err(IndexError::Link(format!("{key_} is not linked"))) };
                unlink(t, &mut p, &old, now, &because("unlinked by an admin"), by)?;
                p.nhs_refused.push(old);
            }
            Decision::Dismiss => {
                let c = conflict.ok_or_else(|| IndexError::Link(format!("{key_} has no open conflict")))?;
                p.nhs_refused.push(c.nhs_number.clone());
                t.del(ckey);
                log(t, now, &c.nhs_number, key_, LinkAction::Dismissed, &because("dismissed by an admin"), by)?;
            }
        }
        t.put(pk, &p);
        Ok(p)
    }
}

/// Applies `link::decide` for `patient` inside the transaction.
pub(super) fn relink(t: &mut Txn<'_>, patient: &mut PatientRecord, at_ms: u64, by: &str) -> Result<()> {
    let k = patient.key.clone();
    let ckey = key(keys::LINK_CONFLICT, &[&k.issuer, &k.patient_id]);
    let open = t.get_raw(&ckey)?.is_some();
    // The records already linked by each number involved, read first so
    // that a read error stops the write instead of passing for "none".
    let mut others: BTreeMap<String, Vec<PatientRecord>> = BTreeMap::new();
    for n in [patient.nhs_number.clone(), patient.nhs_in_data.clone()].into_iter().flatten() {
        if others.contains_key(&n) {
            continue;
        }
        let linked: Vec<PatientKey> = t.scan_prefix(&prefix(keys::BY_NHS, &[&n]))?.iter().map(|(kk, _)| patient_key_of(kk, 1)).filter(|o| *o != k).collect();
        let mut recs = Vec::new();
        for o in linked {
            recs.extend(t.get::<PatientRecord>(&keys::patient(&o))?);
        }
        others.insert(n, recs);
    }
    let step = link::decide(patient, open, &|n| others.get(n).cloned().unwrap_or_default());
    match step {
        Step::Nothing => {}
        Step::Link(n) => {
            t.put_raw(key(keys::BY_NHS, &[&n, &k.issuer, &k.patient_id]), Vec::new());
            patient.nhs_number = Some(n.clone());
            log(t, at_ms, &n, &k, LinkAction::Linked, "the data names it and every record linked by it agrees", by)?;
        }
        Step::Suspend { nhs, with, detail } => {
            unlink(t, patient, &nhs, at_ms, &detail, by)?;
            let c = LinkConflict { patient: k.clone(), nhs_number: nhs, conflict: ConflictKind::Demographics { with, detail }, first_seen_ms: at_ms };
            conflict(t, &c, by)?;
        }
        Step::Conflict { nhs, kind } => {
            let c = LinkConflict { patient: k.clone(), nhs_number: nhs, conflict: kind, first_seen_ms: at_ms };
            conflict(t, &c, by)?;
        }
    }
    Ok(())
}

pub(super) fn unlink(t: &mut Txn<'_>, p: &mut PatientRecord, nhs: &str, at_ms: u64, why: &str, by: &str) -> Result<()> {
    t.del(key(keys::BY_NHS, &[nhs, &p.key.issuer, &p.key.patient_id]));
    p.nhs_number = None;
    log(t, at_ms, nhs, &p.key.clone(), LinkAction::Unlinked, why, by)
}

fn conflict(t: &mut Txn<'_>, c: &LinkConflict, by: &str) -> Result<()> {
    let detail = match &c.conflict {
        ConflictKind::Demographics { detail, .. } => detail.clone(),
        ConflictKind::Changed { linked } => format!("linked by {linked}, the data now names {}", c.nhs_number),
    };
    tracing::warn!(patient = %c.patient, nhs = %c.nhs_number, %detail, "NHS-number link conflict, for an admin");
    t.put(key(keys::LINK_CONFLICT, &[&c.patient.issuer, &c.patient.patient_id]), c);
    log(t, c.first_seen_ms, &c.nhs_number, &c.patient, LinkAction::Conflict, &detail, by)
}

fn log(t: &mut Txn<'_>, at_ms: u64, nhs: &str, patient: &PatientKey, action: LinkAction, detail: &str, by: &str) -> Result<()> {
    let ckey = key(keys::META, &["link_seq"]);
    let seq = t.get_raw(&ckey)?.and_then(|v| v.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0) + 1;
    t.put_raw(ckey, seq.to_le_bytes().to_vec());
    let e = LinkEvent { seq, at_ms, nhs_number: nhs.to_owned(), patient: patient.clone(), action, detail: detail.to_owned(), by: by.to_owned() };
    tracing::info!(%patient, nhs, action = ?action, detail, by, "NHS-number link");
    let mut k = vec![keys::LINK_LOG];
    k.extend_from_slice(&seq.to_be_bytes());
    t.put(k, &e);
    Ok(())
}

/// Writes a study record, moves its secondary index entries and counts
/// the studies held at each site.
pub(super) fn put_study(t: &mut Txn<'_>, old: Option<&StudyRecord>, new: Option<&StudyRecord>) -> Result<()> {
    let empty = BTreeSet::new();
    let (was, is) = (old.map_or(&empty, |s| &s.held_at), new.map_or(&empty, |s| &s.held_at));
    for site in was.difference(is) {
        bump_site(t, site, "held", -1)?;
    }
    for site in is.difference(was) {
        bump_site(t, site, "held", 1)?;
    }
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
    Ok(())
}

/// The secondary index entries of one study.
fn study_index_keys(s: &StudyRecord) -> BTreeSet<Vec<u8>> {
    let p = &s.patient;
    let mut out = BTreeSet::new();
    out.insert(key(keys::BY_PATIENT_ID, &[&p.patient_id, &s.uid]));
    out.insert(key(keys::BY_DATE, &[&s.date, &s.time, &s.uid]));
    out.insert(key(keys::BY_SITE, &[&s.site, &s.date, &s.time, &s.uid]));
    out.insert(key(keys::BY_NAME, &[&normalise_name(&s.patient_name), &s.uid]));
    out.insert(key(keys::PATIENT_STUDIES, &[&p.issuer, &p.patient_id, &s.uid]));
    if !s.accession_number.is_empty() {
        out.insert(key(keys::BY_ACCESSION, &[&s.accession_number, &s.uid]));
    }
    out
}

pub(super) fn bump_total(t: &mut Txn<'_>, what: &str, delta: i64) -> Result<()> {
    t.bump(key(keys::META, &["count", what]), delta)
}

pub(super) fn bump_site(t: &mut Txn<'_>, site: &str, what: &str, delta: i64) -> Result<()> {
    t.bump(key(keys::META, &["site", site, what]), delta)
}
