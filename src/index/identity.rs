//! Patient identity over time: what a site's patient administration says
//! after the images were taken (HL7 ADT A08, A40, A47), applied to the
//! records of that site's issuer.
//!
//! A merge (A40) or change of identifier (A47) moves every study of the old
//! key to the new one in one batch, recounts both patients and the sites,
//! re-evaluates the survivor's NHS-number link by `link`'s rules, and
//! leaves an alias from the old key so that data still naming it (a
//! modality's retry, a harvest from a PACS not yet updated) is filed under
//! the new. Each change goes into the identity log with the records as they
//! were, so that an admin can undo it (`undo_identity`).

use serde::{Deserialize, Serialize};

use super::keys::{self, key, prefix};
use super::model::{PatientKey, PatientRecord, StudyRecord};
use super::sled_index::SledIndex;
use super::txn::Txn;
use super::write::{bump_site, bump_total, put_study, relink, unlink};
use super::{IndexError, Result};

/// Demographics as the patient administration names them; an empty value
/// leaves the recorded one as it is (HL7's "not sent").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demographics {
    pub name: String,
    pub birth_date: String,
    pub sex: String,
}

impl Demographics {
    fn of(p: &PatientRecord) -> Self {
        Demographics { name: p.name.clone(), birth_date: p.birth_date.clone(), sex: p.sex.clone() }
    }

    /// Sets the values named; whether anything changed.
    fn apply(&self, p: &mut PatientRecord) -> bool {
        let mut changed = false;
        for (new, old) in [(&self.name, &mut p.name), (&self.birth_date, &mut p.birth_date), (&self.sex, &mut p.sex)] {
            if !new.trim().is_empty() && new != old {
                *old = new.clone();
                changed = true;
            }
        }
        changed
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityChange {
    /// A08 (and A01/A04): the patient's demographics.
    Demographics { patient: PatientKey, demographics: Demographics },
    /// A40: `from` is a duplicate of `into`, which survives.
    Merge { from: PatientKey, into: PatientKey, demographics: Demographics },
    /// A47: the patient's identifier changes from `from` to `to`, which
    /// must not exist yet (else it is a merge, and the sender must say so).
    ChangeId { from: PatientKey, to: PatientKey, demographics: Demographics },
    /// An admin's undo of a merge or change: the studies listed go back.
    Move { from: PatientKey, to: PatientKey },
}

/// One change, as the identity log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityEvent {
    pub seq: u64,
    pub at_ms: u64,
    pub change: IdentityChange,
    /// The studies it moved or rewrote.
    pub studies: Vec<String>,
    /// The patient records as they were before, for an undo.
    pub before: Vec<PatientRecord>,
    /// The event this one undoes.
    pub undoes: Option<u64>,
    pub detail: String,
    /// The sending system ("ADT from RD3") or the admin's user name.
    pub by: String,
}

/// Longest chain of aliases followed (a merge of a merged record).
const MAX_ALIASES: usize = 16;

/// The key data naming `k` is filed under today.
pub(super) fn resolve(t: &Txn<'_>, k: PatientKey) -> Result<PatientKey> {
    let mut k = k;
    for _ in 0..MAX_ALIASES {
        match t.get::<PatientKey>(&alias_key(&k))? {
            Some(next) if next != k => k = next,
            _ => return Ok(k),
        }
    }
    Ok(k)
}

/// `resolve` outside a write batch.
pub(super) fn current(tree: &sled::Tree, k: &PatientKey) -> Result<PatientKey> {
    let mut k = k.clone();
    for _ in 0..MAX_ALIASES {
        let ak = alias_key(&k);
        match tree.get(&ak)? {
            Some(v) => {
                let next: PatientKey = super::txn::decode(&ak, &v)?;
                if next == k {
                    return Ok(k);
                }
                k = next;
            }
            None => return Ok(k),
        }
    }
    Ok(k)
}

fn alias_key(k: &PatientKey) -> Vec<u8> {
    key(keys::PATIENT_ALIAS, &[&k.issuer, &k.patient_id])
}

fn new_patient(k: &PatientKey, like: Option<&PatientRecord>) -> PatientRecord {
    PatientRecord {
        key: k.clone(),
        name: like.map(|p| p.name.clone()).unwrap_or_default(),
        birth_date: like.map(|p| p.birth_date.clone()).unwrap_or_default(),
        sex: like.map(|p| p.sex.clone()).unwrap_or_default(),
        other_ids: like.map(|p| p.other_ids.clone()).unwrap_or_default(),
        nhs_number: None,
        nhs_in_data: like.and_then(|p| p.nhs_in_data.clone()),
        nhs_refused: like.map(|p| p.nhs_refused.clone()).unwrap_or_default(),
        sites: Default::default(),
        studies: 0,
        series: 0,
        instances: 0,
    }
}

/// Gives a study its patient's key and demographics.
fn restate(t: &mut Txn<'_>, uid: &str, p: &PatientRecord) -> Result<Option<StudyRecord>> {
    let Some(old) = t.get::<StudyRecord>(&key(keys::STUDY, &[uid]))? else { return Ok(None) };
    let mut s = old.clone();
    s.patient = p.key.clone();
    s.patient_name = p.name.clone();
    s.patient_birth_date = p.birth_date.clone();
    s.patient_sex = p.sex.clone();
    if s != old {
        put_study(t, Some(&old), Some(&s))?;
        t.put_raw(key(keys::RESTATED, &[uid]), Vec::new());
    }
    Ok(Some(s))
}

/// Keeps every study's demographics those of its patient record.
pub(super) fn restate_all(t: &mut Txn<'_>, p: &PatientRecord, except: &str) -> Result<Vec<String>> {
    let uids: Vec<String> =
        t.scan_prefix(&prefix(keys::PATIENT_STUDIES, &[&p.key.issuer, &p.key.patient_id]))?.iter().map(|(k, _)| keys::last_part(k).to_owned()).collect();
    for uid in uids.iter().filter(|u| *u != except) {
        restate(t, uid, p)?;
    }
    Ok(uids)
}

/// Deletes a record that holds no study any more, with its link, issuer
/// entry and open conflict.
fn drop_patient(t: &mut Txn<'_>, p: &mut PatientRecord, at_ms: u64, why: &str, by: &str) -> Result<()> {
    if let Some(n) = p.nhs_number.clone() {
        unlink(t, p, &n, at_ms, why, by)?;
    }
    t.del(key(keys::PATIENT_ISSUERS, &[&p.key.patient_id, &p.key.issuer]));
    t.del(key(keys::LINK_CONFLICT, &[&p.key.issuer, &p.key.patient_id]));
    t.del(keys::patient(&p.key));
    bump_total(t, "patients", -1)
}

/// Moves the studies `uids` (those filed under `from`) to `to`, counting
/// them off one record and onto the other, site by site.
fn move_studies(t: &mut Txn<'_>, uids: &[String], from: &mut PatientRecord, to: &mut PatientRecord) -> Result<Vec<String>> {
    let mut moved = Vec::new();
    for uid in uids {
        let Some(old) = t.get::<StudyRecord>(&key(keys::STUDY, &[uid]))? else { continue };
        if old.patient != from.key {
            continue;
        }
        restate(t, uid, to)?;
        from.studies = from.studies.saturating_sub(1);
        from.series = from.series.saturating_sub(old.series);
        from.instances = from.instances.saturating_sub(old.instances);
        if let Some(n) = from.sites.get_mut(&old.site) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                from.sites.remove(&old.site);
                bump_site(t, &old.site, "patients", -1)?;
            }
        }
        to.studies += 1;
        to.series += old.series;
        to.instances += old.instances;
        let n = to.sites.entry(old.site.clone()).or_default();
        *n += 1;
        if *n == 1 {
            bump_site(t, &old.site, "patients", 1)?;
        }
        moved.push(uid.clone());
    }
    Ok(moved)
}

impl SledIndex {
    pub(super) fn identity(&self, t: &mut Txn<'_>, change: &IdentityChange, undoes: Option<(u64, &[String])>, by: &str, why: &str) -> Result<IdentityEvent> {
        let now = crate::ingest::now_ms();
        let read = |t: &Txn<'_>, k: &PatientKey| t.get::<PatientRecord>(&keys::patient(k));
        let mut before = Vec::new();
        let mut studies = Vec::new();
        let mut detail = Vec::new();
        match change {
            IdentityChange::Demographics { patient, demographics } => {
                let k = resolve(t, patient.clone())?;
                before.push(read(t, &k)?.ok_or_else(|| IndexError::NoSuchPatient(patient.clone()))?);
                match self.demographics(t, patient, demographics, by)? {
                    Some((p, uids)) => {
                        studies = uids;
                        detail.push(format!("{k}: {} {} {}", p.name, p.birth_date, p.sex));
                    }
                    None => detail.push(format!("{k}: demographics unchanged")),
                }
            }
            IdentityChange::Merge { from, into, demographics } | IdentityChange::ChangeId { from, to: into, demographics } => {
                let rename = matches!(change, IdentityChange::ChangeId { .. });
                if from == into {
                    return Err(IndexError::Identity(format!("{from} cannot be merged into itself")));
                }
                if from.issuer != into.issuer {
                    return Err(IndexError::Identity(format!("{from} and {into} are under different issuers: each site changes its own identities")));
                }
                let into_k = resolve(t, into.clone())?;
                if into_k == *from {
                    return Err(IndexError::Identity(format!("{into} was itself merged into {from}: undo that change first")));
                }
                let survivor = read(t, &into_k)?;
                if rename && survivor.is_some() {
                    return Err(IndexError::Identity(format!(
                        "{into} exists already: a change of identifier (A47) to it would merge two records; send a merge (A40)"
                    )));
                }
                let old = read(t, from)?;
                // Whatever radhub holds, data still naming the old key goes to the new.
                t.del(alias_key(&into_k));
                if into_k != *from {
                    t.put(alias_key(from), &into_k);
                }
                let Some(mut old) = old else {
                    detail.push(format!("{from} holds no studies here; later data naming it is filed under {into_k}"));
                    return self.log_identity(t, now, change, studies, before, undoes, detail.join("; "), by, why);
                };
                before.push(old.clone());
                let mut new = match survivor {
                    Some(s) => {
                        before.push(s.clone());
                        s
                    }
                    None => {
                        bump_total(t, "patients", 1)?;
                        t.put_raw(key(keys::PATIENT_ISSUERS, &[&into_k.patient_id, &into_k.issuer]), Vec::new());
                        new_patient(&into_k, Some(&old))
                    }
                };
                if new.nhs_in_data.is_none() {
                    new.nhs_in_data = old.nhs_in_data.clone();
                }
                for r in &old.nhs_refused {
                    if !new.nhs_refused.contains(r) {
                        new.nhs_refused.push(r.clone());
                    }
                }
                for v in [(&old.name, &mut new.name), (&old.birth_date, &mut new.birth_date), (&old.sex, &mut new.sex)] {
                    if v.1.trim().is_empty() {
                        *v.1 = v.0.clone();
                    }
                }
                demographics.apply(&mut new);
                let uids: Vec<String> = t
                    .scan_prefix(&prefix(keys::PATIENT_STUDIES, &[&from.issuer, &from.patient_id]))?
                    .iter()
                    .map(|(k, _)| keys::last_part(k).to_owned())
                    .collect();
                studies = move_studies(t, &uids, &mut old, &mut new)?;
                let how = if rename { "changed to" } else { "merged into" };
                drop_patient(t, &mut old, now, &format!("{how} {into_k}"), by)?;
                relink(t, &mut new, now, by)?;
                t.put(keys::patient(&into_k), &new);
                restate_all(t, &new, "")?;
                detail.push(format!("{} studies of {from} {how} {into_k}", studies.len()));
                if let Some(n) = &new.nhs_number {
                    detail.push(format!("{into_k} linked by {n}"));
                }
            }
            IdentityChange::Move { from, to } => {
                let (_, uids) = undoes.ok_or_else(|| IndexError::Identity("a move is an undo of a logged change".into()))?;
                let mut src = read(t, from)?.ok_or_else(|| IndexError::NoSuchPatient(from.clone()))?;
                before.push(src.clone());
                let undone = match undoes {
                    Some((seq, _)) => self.identity_event(seq)?,
                    None => None,
                };
                let was = |k: &PatientKey| undone.as_ref().and_then(|e| e.before.iter().find(|p| p.key == *k).cloned());
                let like = was(to);
                // The survivor gets back the demographics it had before the merge.
                if let Some(w) = was(from) {
                    Demographics::of(&w).apply(&mut src);
                    src.nhs_in_data = w.nhs_in_data.clone();
                    if let (Some(n), None) = (src.nhs_number.clone(), &w.nhs_number) {
                        unlink(t, &mut src, &n, now, "the merge that linked it was undone", by)?;
                    }
                }
                let mut dst = match read(t, to)? {
                    Some(d) => {
                        before.push(d.clone());
                        d
                    }
                    None => {
                        bump_total(t, "patients", 1)?;
                        t.put_raw(key(keys::PATIENT_ISSUERS, &[&to.patient_id, &to.issuer]), Vec::new());
                        new_patient(to, like.as_ref())
                    }
                };
                t.del(alias_key(to));
                studies = move_studies(t, uids, &mut src, &mut dst)?;
                if src.studies == 0 {
                    drop_patient(t, &mut src, now, &format!("its studies moved back to {to}"), by)?;
                } else {
                    relink(t, &mut src, now, by)?;
                    t.put(keys::patient(from), &src);
                }
                relink(t, &mut dst, now, by)?;
                t.put(keys::patient(to), &dst);
                restate_all(t, &dst, "")?;
                detail.push(format!("{} studies moved from {from} back to {to}", studies.len()));
            }
        }
        self.log_identity(t, now, change, studies, before, undoes, detail.join("; "), by, why)
    }

    /// Sets a patient's demographics and those of all its studies:
    /// the record and studies changed, `None` when nothing changed.
    pub(super) fn demographics(&self, t: &mut Txn<'_>, patient: &PatientKey, d: &Demographics, by: &str) -> Result<Option<(PatientRecord, Vec<String>)>> {
        let k = resolve(t, patient.clone())?;
        let Some(mut p) = t.get::<PatientRecord>(&keys::patient(&k))? else { return Ok(None) };
        if !d.apply(&mut p) {
            return Ok(None);
        }
        relink(t, &mut p, crate::ingest::now_ms(), by)?;
        t.put(keys::patient(&k), &p);
        let uids = restate_all(t, &p, "")?;
        Ok(Some((p, uids)))
    }

    #[allow(clippy::too_many_arguments)]
    fn log_identity(
        &self,
        t: &mut Txn<'_>,
        at_ms: u64,
        change: &IdentityChange,
        studies: Vec<String>,
        before: Vec<PatientRecord>,
        undoes: Option<(u64, &[String])>,
        detail: String,
        by: &str,
        why: &str,
    ) -> Result<IdentityEvent> {
        let ckey = key(keys::META, &["identity_seq"]);
        let seq = t.get_raw(&ckey)?.and_then(|v| v.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0) + 1;
        t.put_raw(ckey, seq.to_le_bytes().to_vec());
        let detail = if why.trim().is_empty() { detail } else { format!("{detail} ({})", why.trim()) };
        let e = IdentityEvent { seq, at_ms, change: change.clone(), studies, before, undoes: undoes.map(|u| u.0), detail, by: by.to_owned() };
        tracing::info!(seq, change = ?e.change, detail = %e.detail, by, "patient identity changed");
        t.put(event_key(seq), &e);
        Ok(e)
    }

    pub(super) fn identity_event(&self, seq: u64) -> Result<Option<IdentityEvent>> {
        self.get(&event_key(seq))
    }

    /// The change that puts back what event `seq` did.
    pub(super) fn undo_of(&self, t: &Txn<'_>, seq: u64) -> Result<(IdentityChange, Vec<String>)> {
        let e = t.get::<IdentityEvent>(&event_key(seq))?.ok_or_else(|| IndexError::Identity(format!("no identity change {seq}")))?;
        if t.scan_prefix(&[keys::IDENTITY_LOG])?
            .iter()
            .any(|(k, v)| k.len() == 9 && super::txn::decode::<IdentityEvent>(k, v).is_ok_and(|o| o.undoes == Some(seq)))
        {
            return Err(IndexError::Identity(format!("identity change {seq} is undone already")));
        }
        match e.change {
            IdentityChange::Demographics { patient, .. } => {
                let was = e.before.first().map(Demographics::of).unwrap_or_default();
                Ok((IdentityChange::Demographics { patient, demographics: was }, e.studies))
            }
            IdentityChange::Merge { from, into: to, .. } | IdentityChange::ChangeId { from, to, .. } => {
                let into = e.before.iter().find(|p| p.key != from).map(|p| p.key.clone()).unwrap_or(to);
                if e.studies.is_empty() {
                    return Err(IndexError::Identity(format!("identity change {seq} moved no studies: nothing to undo")));
                }
                Ok((IdentityChange::Move { from: into, to: from }, e.studies))
            }
            IdentityChange::Move { .. } => Err(IndexError::Identity(format!("identity change {seq} is an undo: send the change again instead"))),
        }
    }
}

fn event_key(seq: u64) -> Vec<u8> {
    let mut k = vec![keys::IDENTITY_LOG];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demographics_set_only_what_is_named() {
        let mut p = new_patient(&PatientKey { issuer: "RD3".into(), patient_id: "P1".into() }, None);
        p.name = "DOE^JANE".into();
        p.birth_date = "19500101".into();
        let d = Demographics { name: "SMITH^JANE".into(), birth_date: String::new(), sex: "F".into() };
        assert!(d.apply(&mut p));
        assert_eq!((p.name.as_str(), p.birth_date.as_str(), p.sex.as_str()), ("SMITH^JANE", "19500101", "F"));
        assert!(!d.apply(&mut p));
    }
}
