//! Lazy searches, newest study first.
//!
//! A filter that names a small set of studies (UIDs, an accession number,
//! a patient, an exact name, a name prefix matching few) reads that set
//! through its secondary index and sorts it; any other search walks the
//! date index (or a site's) backwards, newest first, and stops when the
//! caller stops taking. So `limit=101` on a million studies reads ~101.

use super::keys::{self, key, prefix};
use super::matching::{self, has_wildcard, literal_prefix};
use super::model::{PatientKey, PatientRecord, StudyRecord};
use super::sled_index::{patient_key_of, SledIndex};
use super::{Index, PatientFilter, Records, Result, StudyFilter};

/// Past this many candidates from a name prefix, walking the date index
/// (in order, stopping early) beats loading and sorting them.
const MAX_SORTED: usize = 4096;

impl SledIndex {
    pub(super) fn studies<'a>(&'a self, f: &'a StudyFilter) -> Records<'a, StudyRecord> {
        match self.small_set(f) {
            Ok(Some(uids)) => {
                let mut found = Vec::with_capacity(uids.len());
                for uid in uids {
                    match self.study(&uid) {
                        Ok(Some(s)) if study_matches(f, &s) => found.push(s),
                        Ok(_) => {}
                        Err(e) => return Box::new(std::iter::once(Err(e))),
                    }
                }
                found.sort_by(|a, b| (&b.date, &b.time, &b.uid).cmp(&(&a.date, &a.time, &a.uid)));
                Box::new(found.into_iter().map(Ok))
            }
            Ok(None) => {
                let keys_ = match (&f.date, &f.site) {
                    (Some(r), _) => {
                        // An empty date never matches a range (PS3.4 C.2.2.2.5).
                        let lo = key(keys::BY_DATE, &[r.from.as_deref().unwrap_or("00000000")]);
                        let mut hi = key(keys::BY_DATE, &[r.to.as_deref().unwrap_or("99999999")]);
                        hi.push(keys::SEP + 1);
                        self.tree.range(lo..hi)
                    }
                    (None, Some(site)) if !site.is_empty() && !has_wildcard(site) => self.tree.scan_prefix(prefix(keys::BY_SITE, &[site])),
                    _ => self.tree.scan_prefix([keys::BY_DATE]),
                };
                Box::new(keys_.rev().filter_map(move |kv| {
                    let uid = match kv {
                        Ok((k, _)) => keys::last_part(&k).to_owned(),
                        Err(e) => return Some(Err(e.into())),
                    };
                    match self.study(&uid) {
                        Ok(Some(s)) => study_matches(f, &s).then_some(Ok(s)),
                        Ok(None) => None,
                        Err(e) => Some(Err(e)),
                    }
                }))
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The UIDs of a small candidate set, if the filter names one.
    fn small_set(&self, f: &StudyFilter) -> Result<Option<Vec<String>>> {
        let uids_under = |p: Vec<u8>, max: usize| -> Result<Option<Vec<String>>> {
            let mut out = Vec::new();
            for kv in self.tree.scan_prefix(p) {
                if out.len() == max {
                    return Ok(None);
                }
                out.push(keys::last_part(&kv?.0).to_owned());
            }
            Ok(Some(out))
        };
        let exact = |v: &Option<String>| v.as_deref().filter(|x| !x.is_empty() && !has_wildcard(x)).map(str::to_owned);
        if !f.study_uids.is_empty() {
            let mut uids = f.study_uids.clone();
            uids.sort();
            uids.dedup();
            return Ok(Some(uids));
        }
        if let Some(acc) = exact(&f.accession) {
            return uids_under(prefix(keys::BY_ACCESSION, &[&acc]), usize::MAX);
        }
        if let Some(pid) = exact(&f.patient_id) {
            return match exact(&f.issuer) {
                Some(issuer) => uids_under(prefix(keys::PATIENT_STUDIES, &[&issuer, &pid]), usize::MAX),
                None => uids_under(prefix(keys::BY_PATIENT_ID, &[&pid]), usize::MAX),
            };
        }
        if let Some(name) = f.patient_name.as_deref() {
            let norm = matching::normalise_name_pattern(name);
            if !has_wildcard(&norm) && !norm.is_empty() {
                return uids_under(prefix(keys::BY_NAME, &[&norm]), usize::MAX);
            }
            // Indexed names drop trailing empty components: so must the prefix.
            let lit = literal_prefix(&norm).trim_end_matches('^');
            if !lit.is_empty() {
                return uids_under(key(keys::BY_NAME, &[lit]), MAX_SORTED);
            }
        }
        Ok(None)
    }

    pub(super) fn patients<'a>(&'a self, f: &'a PatientFilter) -> Records<'a, PatientRecord> {
        let keys_: Records<'a, PatientKey> = if let Some(nhs) = f.nhs_number.as_deref() {
            match self.patients_by_nhs(nhs) {
                Ok(v) => Box::new(v.into_iter().map(Ok)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        } else if let Some(pid) = f.patient_id.as_deref().filter(|p| !p.is_empty() && !has_wildcard(p)) {
            Box::new(self.tree.scan_prefix(prefix(keys::PATIENT_ISSUERS, &[pid])).keys().map(|k| {
                let k = k?;
                let p = keys::parts(&k);
                Ok(PatientKey { issuer: p.get(1).copied().unwrap_or_default().to_owned(), patient_id: p.first().copied().unwrap_or_default().to_owned() })
            }))
        } else {
            Box::new(self.tree.scan_prefix([keys::PATIENT]).keys().map(|k| Ok(patient_key_of(&k?, 0))))
        };
        Box::new(keys_.filter_map(move |k| {
            let k = match k {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            match self.get::<PatientRecord>(&keys::patient(&k)) {
                Ok(Some(p)) => patient_matches(f, &p).then_some(Ok(p)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        }))
    }
}

fn opt_match(pattern: &Option<String>, value: &str) -> bool {
    pattern.as_deref().is_none_or(|p| matching::wildcard(p, value))
}

fn study_matches(f: &StudyFilter, s: &StudyRecord) -> bool {
    let quarantine = crate::sites::QUARANTINE;
    (f.quarantine || s.site != quarantine || f.site.as_deref() == Some(quarantine))
        && opt_match(&f.patient_id, &s.patient.patient_id)
        && opt_match(&f.issuer, &s.patient.issuer)
        && opt_match(&f.accession, &s.accession_number)
        && opt_match(&f.site, &s.site)
        && opt_match(&f.description, &s.description)
        && f.patient_name.as_deref().is_none_or(|p| matching::name_matches(p, &s.patient_name))
        && f.date.as_ref().is_none_or(|r| r.contains(&s.date))
        && f.modality.as_deref().is_none_or(|m| s.modalities.iter().any(|v| matching::wildcard(m, v)))
        && (f.study_uids.is_empty() || f.study_uids.contains(&s.uid))
}

fn patient_matches(f: &PatientFilter, p: &PatientRecord) -> bool {
    let quarantined = crate::sites::is_quarantine_issuer(&p.key.issuer);
    (f.quarantine || !quarantined || f.site.as_deref() == Some(crate::sites::QUARANTINE))
        && opt_match(&f.patient_id, &p.key.patient_id)
        && opt_match(&f.issuer, &p.key.issuer)
        && f.site.as_deref().is_none_or(|s| p.sites.keys().any(|have| matching::wildcard(s, have)))
        && f.patient_name.as_deref().is_none_or(|n| matching::name_matches(n, &p.name))
}
