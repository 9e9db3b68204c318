//! One harvest pass over one site's PACS: C-FIND at study level by date
//! window, newest first; series and image level only for studies that are
//! new or changed (their counts differ from the index's); every instance
//! found recorded as held at the site (metadata only, `remote`).
//!
//! Windows start at `window_days` and widen (to `max_window_days`) over
//! sparse stretches, narrow over dense ones. A quick pass stops a few days
//! before the watermark (the newest day the last complete pass covered); a
//! full pass goes back until two widest windows come back empty, then asks
//! once for everything older. The cursor is saved after every window, so a
//! pass a crash interrupted resumes where it was.

use std::ops::ControlFlow;
use std::sync::Arc;

use dicom_object::InMemDicomObject;
use pacs_gateway::scu::{self, Peer};
use pacs_gateway::status::Category;
use pacs_gateway::Model;

use super::answers::{self, SeriesAnswer, StudyAnswer};
use super::state::{Cursor, LastSync};
use super::{FedError, Federation, SiteRun};
use crate::dates;
use crate::index::model::StudyRecord;
use crate::index::{IndexError, Upsert};
use crate::sites;

/// Most matches taken from one C-FIND; a window answering more is narrowed
/// and asked again.
const MAX_MATCHES: usize = 20_000;
/// Refusals kept, with their reasons, in a pass's summary.
const REFUSALS_KEPT: usize = 20;

/// What reading one study did.
#[derive(Default)]
pub(super) struct StudyOutcome {
    changed: bool,
    added: u64,
    refused: Option<String>,
}

pub(super) async fn run(fed: &Arc<Federation>, site: &Arc<SiteRun>, full: bool) -> Result<LastSync, FedError> {
    let started = std::time::Instant::now();
    let code = site.site.code.as_str();
    let peer = site.peer();
    let states = fed.states.clone();
    let mut st = states.get(code)?;
    let today = dates::today();
    // A quick pass needs a complete one before it; an unfinished full pass is resumed as full.
    let full = full || st.watermark.is_none() || st.cursor.as_ref().is_some_and(|c| c.full);
    let mut cur = match st.cursor.take().filter(|c| c.full == full) {
        Some(c) => {
            tracing::info!(site = code, from = %c.next_end, "resuming an interrupted harvest");
            c
        }
        None => Cursor {
            full,
            started: crate::ingest::now_ms(),
            next_end: dates::da(today),
            window_days: fed.opts.window_days.max(1),
            empty_run: 0,
            studies_seen: 0,
            studies_changed: 0,
            instances_added: 0,
            today: dates::da(today),
        },
    };
    let stop_before = if full { None } else { st.watermark.as_deref().and_then(dates::days_of).map(|w| w - i64::from(fed.opts.overlap_days)) };
    let (mut refused, mut refusals) = (0u64, Vec::new());
    let first_end = cur.today.clone();
    let first_pass = st.watermark.is_none();
    while let Some(end) = dates::days_of(&cur.next_end) {
        if stop_before.is_some_and(|s| end < s) {
            break;
        }
        let last = full && cur.empty_run >= 2 && cur.window_days >= fed.opts.max_window_days;
        let mut start = end - i64::from(cur.window_days) + 1;
        if let Some(s) = stop_before {
            start = start.max(s);
        }
        // The newest window is open above (studies dated ahead of this
        // clock); the last of a full pass is open below.
        let range = match (cur.next_end == first_end, last) {
            (_, true) => format!("-{}", dates::da(end)),
            (true, false) => format!("{}-", dates::da(start)),
            (false, false) => format!("{}-{}", dates::da(start), dates::da(end)),
        };
        site.progress(|p| p.window = range.clone());
        // A first pass finds nearly everything new: each study's attributes come with the window.
        let (studies, over) = find_all(fed, &peer, answers::studies_dated(&range, first_pass), MAX_MATCHES).await?;
        if over && cur.window_days > 1 {
            cur.window_days = (cur.window_days / 4).max(1);
            continue;
        }
        let n = studies.len();
        let outcomes = read_studies(fed, site, &peer, studies).await?;
        for o in outcomes {
            cur.studies_seen += 1;
            cur.studies_changed += u64::from(o.changed);
            cur.instances_added += o.added;
            if let Some(why) = o.refused {
                refused += 1;
                if refusals.len() < REFUSALS_KEPT {
                    refusals.push(why);
                }
            }
        }
        site.progress(|p| {
            p.windows += 1;
            p.studies_seen = cur.studies_seen;
            p.studies_changed = cur.studies_changed;
            p.instances_added = cur.instances_added;
        });
        if last {
            break;
        }
        // Sparse: widen; dense: narrow.
        cur.empty_run = if n == 0 { cur.empty_run + 1 } else { 0 };
        if n < 200 {
            cur.window_days = (cur.window_days * 2).min(fed.opts.max_window_days.max(1));
        } else if n > 2_000 {
            cur.window_days = (cur.window_days / 2).max(1);
        }
        cur.next_end = dates::da(start - 1);
        st.cursor = Some(cur.clone());
        states.put(code, &st)?;
        tracing::info!(site = code, window = %range, studies = n, seen = cur.studies_seen, "harvest window done");
        if start <= dates::days_from_civil(1800, 1, 1) {
            break;
        }
    }
    let result = LastSync {
        finished: crate::ingest::now_ms(),
        ok: true,
        error: None,
        full,
        studies_seen: cur.studies_seen,
        studies_changed: cur.studies_changed,
        instances_added: cur.instances_added,
        refused,
        refusals,
        seconds: started.elapsed().as_secs_f64(),
    };
    st.watermark = Some(cur.today.clone());
    st.cursor = None;
    if full {
        st.last_full = Some(result.finished);
    }
    st.last_sync = Some(result.clone());
    states.put(code, &st)?;
    Ok(result)
}

/// The matches of one C-FIND, at most `cap` (then C-CANCEL, `true`), on
/// an association of its own or on `on` when given.
pub(super) async fn find_all(fed: &Federation, peer: &Peer, id: InMemDicomObject, cap: usize) -> Result<(Vec<InMemDicomObject>, bool), FedError> {
    find_on(fed, peer, None, id, cap).await
}

async fn find_on(
    fed: &Federation,
    peer: &Peer,
    on: Option<&mut scu::FindAssociation>,
    id: InMemDicomObject,
    cap: usize,
) -> Result<(Vec<InMemDicomObject>, bool), FedError> {
    let mut out = Vec::new();
    let mut over = false;
    let take = |m| {
        if out.len() >= cap {
            over = true;
            return ControlFlow::Break(());
        }
        out.push(m);
        ControlFlow::Continue(())
    };
    let o = match on {
        Some(a) => a.find(&id, take).await,
        None => scu::find(&fed.scu, peer, Model::StudyRoot, &id, take).await,
    }
    .map_err(|e| FedError::Site { site: peer.ae_title.clone(), error: e })?;
    match o.status.category() {
        Category::Success | Category::Warning => Ok((out, false)),
        Category::Cancel if over => Ok((out, true)),
        _ => Err(FedError::Refused { site: peer.ae_title.clone(), status: o.status.0, comment: o.comment.unwrap_or_default() }),
    }
}

/// Reads a window's studies, a few at a time (the site's harvest slots).
async fn read_studies(fed: &Arc<Federation>, site: &Arc<SiteRun>, peer: &Peer, studies: Vec<InMemDicomObject>) -> Result<Vec<StudyOutcome>, FedError> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(studies.len());
    let mut read = Vec::with_capacity(studies.len());
    for o in studies {
        match answers::read_study(&o) {
            Ok(a) => read.push(a),
            Err(why) => out.push(StudyOutcome { refused: Some(format!("an unreadable study answer: {why}")), ..Default::default() }),
        }
    }
    // One look at the index for the window: most of a re-sync's answers
    // are studies it already has, and need no task of their own.
    let (hub, code) = (fed.hub.clone(), site.site.code.clone());
    let (changed, unchanged) = blocking(move || {
        let mut changed = Vec::with_capacity(read.len());
        let mut unchanged = 0;
        for a in read {
            if up_to_date(hub.index.study(&a.meta.study_uid)?.as_ref(), &a, &code) {
                unchanged += 1;
            } else {
                changed.push(a);
            }
        }
        Ok((changed, unchanged))
    })
    .await?;
    out.extend((0..unchanged).map(|_| StudyOutcome::default()));
    for answer in changed {
        let permit = site.harvest_slots.clone().acquire_owned().await.map_err(|_| FedError::Stopped)?;
        let (fed, site, peer) = (fed.clone(), site.clone(), peer.clone());
        tasks.spawn(async move {
            let _permit = permit;
            read_study(&fed, &site, &peer, answer).await
        });
        // Collect what has finished, so that an error stops the window early.
        while let Some(r) = tasks.try_join_next() {
            out.push(r.map_err(|_| FedError::Stopped)??);
        }
    }
    while let Some(r) = tasks.join_next().await {
        out.push(r.map_err(|_| FedError::Stopped)??);
    }
    Ok(out)
}

/// Whether the index has all a site's answer says it holds of a study
/// (the counts are the change a site's C-FIND shows).
fn up_to_date(held: Option<&StudyRecord>, a: &StudyAnswer, code: &str) -> bool {
    match (held, a.instances) {
        (Some(h), Some(n)) => h.held_at.contains(code) && n <= h.instances && a.series.is_none_or(|k| k <= h.series),
        _ => false,
    }
}

pub(super) async fn read_study(fed: &Federation, site: &SiteRun, peer: &Peer, a: StudyAnswer) -> Result<StudyOutcome, FedError> {
    let code = site.site.code.as_str();
    let refused = |a: &StudyAnswer, why: String| StudyOutcome { refused: Some(format!("study {}: {why}", a.meta.study_uid)), ..Default::default() };
    if let Some(why) = sites::file(Some(code), &a.meta.issuer_of_patient_id).quarantined {
        // Nothing from a site is filed in quarantine unseen: it is reported, not indexed.
        return Ok(refused(&a, why));
    }
    let hub = fed.hub.clone();
    let uid = a.meta.study_uid.clone();
    let held = blocking(move || hub.index.study(&uid)).await?;
    if up_to_date(held.as_ref(), &a, code) {
        return Ok(StudyOutcome::default());
    }
    // The study's own attributes, then its instances, on one association.
    let mut assoc =
        scu::FindAssociation::connect(&fed.scu, peer, Model::StudyRoot).await.map_err(|e| FedError::Site { site: peer.ae_title.clone(), error: e })?;
    let r = async {
        let mut a = a;
        if !a.complete {
            let (found, _) = find_on(fed, peer, Some(&mut assoc), answers::study(&a.meta.study_uid), 2).await?;
            match found.first().map(answers::read_study) {
                Some(Ok(full)) if full.meta.study_uid == a.meta.study_uid => a = full,
                Some(Err(why)) => return Ok((refused(&a, format!("an unreadable study answer: {why}")), None)),
                _ => return Ok((refused(&a, "the site did not answer for it by its UID".into()), None)),
            }
        }
        let filing = sites::file(Some(code), &a.meta.issuer_of_patient_id);
        if let Some(why) = filing.quarantined {
            return Ok((refused(&a, why), None));
        }
        a.meta.accession_issuer = sites::accession_issuer(&filing.site, &a.meta.accession_issuer);
        a.meta.site = filing.site;
        a.meta.issuer = filing.issuer;
        a.meta.held_at = Some(code.to_owned());
        a.meta.received_ms = crate::ingest::now_ms();
        if a.meta.nhs_number.is_none() && site.site.nhs_patient_ids {
            a.meta.nhs_number = crate::nhs::normalise(&a.meta.patient_id);
        }
        let outcome = read_deeper(fed, site, peer, &mut assoc, &a, code).await?;
        Ok::<_, FedError>((outcome, Some(a)))
    }
    .await;
    assoc.release().await;
    let (outcome, a) = r?;
    let hub = fed.hub.clone();
    blocking(move || hub.index.sync()).await?;
    if let (None, Some(a)) = (&held, a.filter(|_| outcome.added > 0)) {
        fed.note_study(&a.meta.study_uid, &a.meta.study_date);
    }
    Ok(outcome)
}

/// A study's instances: in one image-level query where the site answers
/// it, else its series and the images of each series new or changed.
async fn read_deeper(
    fed: &Federation,
    site: &SiteRun,
    peer: &Peer,
    assoc: &mut scu::FindAssociation,
    a: &StudyAnswer,
    code: &str,
) -> Result<StudyOutcome, FedError> {
    if !site.hierarchical_only.load(std::sync::atomic::Ordering::Relaxed) {
        match find_on(fed, peer, Some(&mut *assoc), answers::images_of_study(&a.meta.study_uid), MAX_MATCHES).await {
            Ok((images, false)) if !images.is_empty() => {
                let mut metas = Vec::with_capacity(images.len());
                let mut usable = true;
                for i in &images {
                    match (answers::read_series(i), answers::read_image(i)) {
                        (Ok(se), Ok(im)) => metas.push(answers::instance(&a.meta, &se, &im)),
                        _ => usable = false,
                    }
                }
                if usable {
                    let mut outcome = StudyOutcome { changed: true, ..Default::default() };
                    match record(fed, metas).await? {
                        Ok(added) => outcome.added = added,
                        Err(why) => outcome.refused = Some(why),
                    }
                    return Ok(outcome);
                }
                tracing::info!(site = code, "the site's study-wide image answers lack series keys: asking series by series");
            }
            Ok(_) => {}
            Err(FedError::Refused { status, .. }) => tracing::info!(site = code, status, "the site refuses study-wide image queries: asking series by series"),
            Err(e) => return Err(e),
        }
        site.hierarchical_only.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let (series, _) = find_on(fed, peer, Some(&mut *assoc), answers::series_of(&a.meta.study_uid), MAX_MATCHES).await?;
    let mut outcome = StudyOutcome { changed: true, ..Default::default() };
    for s in series {
        let s = match answers::read_series(&s) {
            Ok(s) => s,
            Err(why) => {
                outcome.refused = Some(format!("study {}: an unreadable series answer: {why}", a.meta.study_uid));
                continue;
            }
        };
        let hub = fed.hub.clone();
        let uid = s.uid.clone();
        let held = blocking(move || hub.index.series(&uid)).await?;
        if let (Some(h), Some(n)) = (&held, s.instances) {
            if h.study_uid == a.meta.study_uid && h.held_at.contains(code) && n <= h.instances {
                continue;
            }
        }
        match read_series(fed, peer, &mut *assoc, a, &s).await? {
            Ok(added) => outcome.added += added,
            Err(why) => {
                outcome.refused = Some(why);
                break;
            }
        }
    }
    Ok(outcome)
}

/// Records one series' instances; `Err(why)` when the index refuses them
/// (another patient's study, a series of another study).
async fn read_series(
    fed: &Federation,
    peer: &Peer,
    assoc: &mut scu::FindAssociation,
    study: &StudyAnswer,
    s: &SeriesAnswer,
) -> Result<Result<u64, String>, FedError> {
    let (images, _) = find_on(fed, peer, Some(assoc), answers::images_of(&study.meta.study_uid, &s.uid), MAX_MATCHES).await?;
    let mut metas = Vec::with_capacity(images.len());
    for i in &images {
        match answers::read_image(i) {
            Ok(i) => metas.push(answers::instance(&study.meta, s, &i)),
            Err(why) => tracing::warn!(study = %study.meta.study_uid, series = %s.uid, %why, "an unreadable image answer, left out"),
        }
    }
    record(fed, metas).await
}

/// Upserts a study's harvested instances; `Err(why)` when the index
/// refuses them (another patient's study, a series of another study).
async fn record(fed: &Federation, metas: Vec<crate::index::model::InstanceMeta>) -> Result<Result<u64, String>, FedError> {
    let hub = fed.hub.clone();
    blocking(move || {
        let mut added = 0;
        for m in &metas {
            match hub.index.upsert(m) {
                Ok(Upsert::Inserted) => added += 1,
                Ok(_) => {}
                Err(e @ (IndexError::PatientMismatch { .. } | IndexError::SeriesMismatch { .. })) => {
                    tracing::warn!(study = %m.study_uid, site = %m.site, error = %e, "harvested study refused");
                    return Ok(Err(format!("study {}: {e}", m.study_uid)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(added))
    })
    .await
}

/// Index work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, IndexError> + Send + 'static) -> Result<T, FedError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| FedError::Stopped)?.map_err(FedError::Index)
}
