//! Prefetching priors: when a recent study arrives for a patient (pushed,
//! or found by a harvest), that person's most recent relevant studies held
//! only at sites (the same modality or body part; every record linked by
//! NHS number counts as the person) are fetched in the background, one at
//! a time, so comparisons are local before the radiologist opens the case.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::Federation;
use crate::index::model::{InstanceMeta, StudyRecord};
use crate::index::Index;

/// Studies remembered as already considered (oldest forgotten first).
const SEEN: usize = 10_000;

pub(super) struct Prefetch {
    tx: mpsc::Sender<String>,
    rx: Mutex<Option<mpsc::Receiver<String>>>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Prefetch {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(1024);
        Prefetch { tx, rx: Mutex::new(Some(rx)), seen: Mutex::default() }
    }

    /// True the first time a study is offered.
    fn first_time(&self, study: &str) -> bool {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        if set.contains(study) {
            return false;
        }
        set.insert(study.to_owned());
        order.push_back(study.to_owned());
        if order.len() > SEEN {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }
}

impl Federation {
    /// A stored arrival: its study may prompt a prefetch of priors.
    pub(super) fn note_arrival(&self, meta: &InstanceMeta) {
        self.note_study(&meta.study_uid, &meta.study_date);
    }

    /// A study seen arriving or harvested: queued for a prefetch if recent.
    pub(super) fn note_study(&self, uid: &str, date: &str) {
        if self.opts.priors == 0 {
            return;
        }
        let recent = crate::dates::days_of(date).is_some_and(|d| d >= crate::dates::today() - i64::from(self.opts.prefetch_days));
        if recent && self.prefetch.first_time(uid) {
            // A full queue drops the request: prefetching is a courtesy, never a backlog.
            let _ = self.prefetch.tx.try_send(uid.to_owned());
        }
    }

    /// Starts the prefetch worker.
    pub fn start_prefetch(self: &Arc<Self>) {
        let Some(mut rx) = self.prefetch.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let fed = self.clone();
        tokio::spawn(async move {
            while let Some(uid) = rx.recv().await {
                // Let the rest of an arriving study come first.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let (hub, n, u) = (fed.hub.clone(), fed.opts.priors, uid.clone());
                let priors = match tokio::task::spawn_blocking(move || priors_of(hub.index.as_ref(), &u, n)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::warn!(study = %uid, error = %e, "finding priors failed");
                        continue;
                    }
                    Err(_) => continue,
                };
                for p in priors {
                    match fed.local_scope(&p, None).await {
                        Ok(()) => tracing::info!(study = %uid, prior = %p.uid, site = %p.site, "prior fetched ahead"),
                        Err(e) => tracing::warn!(study = %uid, prior = %p.uid, site = %p.site, error = %e, "prefetching a prior failed"),
                    }
                }
            }
        });
    }
}

/// The `n` most recent studies of the same person as `study`, held only at
/// sites, sharing a modality or body part with it.
pub fn priors_of(index: &dyn Index, study: &str, n: usize) -> crate::index::Result<Vec<StudyRecord>> {
    let Some(s) = index.study(study)? else { return Ok(Vec::new()) };
    let body_parts = |uid: &str| -> crate::index::Result<BTreeSet<String>> {
        Ok(index.series_of(uid)?.into_iter().map(|r| r.body_part_examined).filter(|b| !b.is_empty()).collect())
    };
    let parts = body_parts(&s.uid)?;
    let mut people = vec![s.patient.clone()];
    if let Some(nhs) = index.patient(&s.patient)?.and_then(|p| p.nhs_number) {
        people.extend(index.patients_by_nhs(&nhs)?.into_iter().filter(|k| *k != s.patient));
    }
    let mut found = Vec::new();
    for who in &people {
        for uid in index.studies_of_patient(who)? {
            if uid == s.uid {
                continue;
            }
            let Some(p) = index.study(&uid)? else { continue };
            if p.is_local() || p.site == crate::sites::QUARANTINE {
                continue;
            }
            let relevant = !p.modalities.is_disjoint(&s.modalities) || !body_parts(&p.uid)?.is_disjoint(&parts);
            if relevant {
                found.push(p);
            }
        }
    }
    found.sort_by(|a, b| (&b.date, &b.time).cmp(&(&a.date, &a.time)));
    found.truncate(n);
    Ok(found)
}
