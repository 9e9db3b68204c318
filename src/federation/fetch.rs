//! Retrieve on demand: a study (or one series of it) held only at a site
//! is fetched from that site's PACS by its retrieve method, once. Every
//! request for it waits on the same fetch and is woken as each instance
//! becomes durable, so the first is served before the last has come.
//!
//! C-MOVE asks the site to send to radhub's own AE: the sub-operations
//! arrive at radhub's C-STORE SCP from the site's PACS (its calling AE
//! maps to the site), and the hub's handler reports each (`arrived`). A
//! C-GET brings them on its own association, into `ingest` here.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;
use futures_util::StreamExt;
use pacs_gateway::scu::{self, ScuError};
use pacs_gateway::status::Category;
use pacs_gateway::{Answer, Model, StoreRequest};
use tokio::sync::watch;

use super::Federation;
use crate::index::model::{InstanceMeta, InstanceRecord, StudyRecord};
use crate::ingest::{Arrival, IngestError};
use crate::query::rows::tags;
use crate::sites::{Retrieve, Site};

/// What is being fetched: a whole study, or one series of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub study: String,
    pub series: Option<String>,
}

/// Why a fetch failed, in the words a client or operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection or association with any site holding it.
    Unreachable(String),
    /// The site took longer than allowed.
    Timeout(String),
    /// The site answered with a failure status, or sent less than it holds.
    Refused(String),
    /// No configured site with a PACS holds it.
    NotHeld(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Timeout(m) | Failure::Refused(m) | Failure::NotHeld(m) => f.write_str(m),
        }
    }
}

/// A fetch's progress, as its waiters see it.
#[derive(Clone, Debug, Default)]
pub struct FetchState {
    /// Instances made durable so far.
    pub stored: u64,
    /// Set once the fetch has ended.
    pub done: Option<Result<(), Failure>>,
}

#[derive(Default)]
pub(super) struct Fetches {
    active: Mutex<HashMap<Scope, watch::Sender<FetchState>>>,
}

impl Fetches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, watch::Sender<FetchState>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the fetches of a study that one of its instances is durable.
    pub(super) fn arrived(&self, study: &str, series: &str) {
        let active = self.lock();
        if active.is_empty() {
            return;
        }
        for (scope, tx) in active.iter() {
            if scope.study == study && scope.series.as_deref().is_none_or(|s| s == series) {
                tx.send_modify(|s| s.stored += 1);
            }
        }
    }

    /// Whether radhub is fetching any of the study from a site.
    pub(super) fn has_study(&self, study: &str) -> bool {
        self.lock().keys().any(|s| s.study == study)
    }

    fn subscribe(&self, scope: &Scope) -> Option<watch::Receiver<FetchState>> {
        self.lock().get(scope).map(watch::Sender::subscribe)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

impl Federation {
    /// Starts fetching `scope` of a study from a site holding it, unless a
    /// fetch covering it is under way; returns its progress either way.
    pub fn fetch(self: &Arc<Self>, study: &StudyRecord, series: Option<&str>) -> watch::Receiver<FetchState> {
        let scope = Scope { study: study.uid.clone(), series: series.map(str::to_owned) };
        let whole = Scope { study: study.uid.clone(), series: None };
        let mut active = self.fetches.lock();
        if let Some(tx) = active.get(&whole).or_else(|| active.get(&scope)) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(FetchState::default());
        active.insert(scope.clone(), tx);
        drop(active);
        let (fed, study) = (self.clone(), study.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = fed.run_fetch(&study, &scope).await;
            match &result {
                Ok(()) => tracing::info!(study = %scope.study, series = ?scope.series, ms = started.elapsed().as_millis() as u64, "fetched from its site"),
                Err(e) => tracing::warn!(study = %scope.study, series = ?scope.series, error = %e, "fetch from its site failed"),
            }
            // Removed before the last word, so a request after it starts afresh.
            let tx = fed.fetches.lock().remove(&scope);
            if let Some(tx) = tx {
                tx.send_modify(|s| s.done = Some(result));
            }
        });
        rx
    }

    /// An instance's record once it is held locally: fetched (with its
    /// series) from its site if need be, waiting at most the fetch wait.
    pub async fn local_instance(self: &Arc<Self>, rec: &InstanceRecord) -> Result<InstanceRecord, Failure> {
        let deadline = tokio::time::Instant::now() + self.opts.fetch_wait;
        let mut rx: Option<watch::Receiver<FetchState>> = None;
        loop {
            let now = self.record(&rec.sop_uid).await?;
            match now {
                Some(r) if r.local => return Ok(r),
                None => return Err(Failure::NotHeld(format!("instance {} is no longer indexed", rec.sop_uid))),
                Some(_) => {}
            }
            let mut watching = match rx.take() {
                Some(r) => r,
                None => {
                    let study = self.study(&rec.study_uid).await?;
                    self.fetch(&study, Some(&rec.series_uid))
                }
            };
            let ended = watching.borrow().done.clone();
            if let Some(done) = ended {
                // Ended: one last look at the index, then the fetch's word.
                if let Some(r) = self.record(&rec.sop_uid).await?.filter(|r| r.local) {
                    return Ok(r);
                }
                return Err(done.err().unwrap_or_else(|| Failure::Refused(format!("the site did not send instance {}", rec.sop_uid))));
            }
            match tokio::time::timeout_at(deadline, watching.changed()).await {
                Ok(Ok(())) => rx = Some(watching),
                // The fetch ended and went: look again (a new one starts if still needed).
                Ok(Err(_)) => {}
                Err(_) => {
                    return Err(Failure::Timeout(format!("instance {} did not arrive from its site within {} s", rec.sop_uid, self.opts.fetch_wait.as_secs())))
                }
            }
        }
    }

    /// Waits until every instance of `scope` is held locally, fetching it if need be.
    pub async fn local_scope(self: &Arc<Self>, study: &StudyRecord, series: Option<&str>) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + self.opts.fetch_wait;
        for _ in 0..2 {
            if self.remote_in(&study.uid, series).await? == 0 {
                return Ok(());
            }
            let mut rx = self.fetch(study, series);
            loop {
                let ended = rx.borrow().done.clone();
                if let Some(done) = ended {
                    done?;
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        return Err(Failure::Timeout(format!("study {} did not arrive from its site within {} s", study.uid, self.opts.fetch_wait.as_secs())))
                    }
                }
            }
        }
        match self.remote_in(&study.uid, series).await? {
            0 => Ok(()),
            n => Err(Failure::Refused(format!("the site did not send {n} instances of study {}", study.uid))),
        }
    }

    async fn record(&self, sop: &str) -> Result<Option<InstanceRecord>, Failure> {
        let (hub, sop) = (self.hub.clone(), sop.to_owned());
        tokio::task::spawn_blocking(move || hub.index.instance(&sop))
            .await
            .map_err(|e| Failure::Refused(e.to_string()))?
            .map_err(|e| Failure::Refused(e.to_string()))
    }

    async fn study(&self, uid: &str) -> Result<StudyRecord, Failure> {
        let (hub, uid) = (self.hub.clone(), uid.to_owned());
        let s = tokio::task::spawn_blocking(move || hub.index.study(&uid)).await.map_err(|e| Failure::Refused(e.to_string()))?;
        s.map_err(|e| Failure::Refused(e.to_string()))?.ok_or_else(|| Failure::NotHeld("the study is no longer indexed".into()))
    }

    /// Instances of a study (or series) held only at a site.
    async fn remote_in(&self, study: &str, series: Option<&str>) -> Result<usize, Failure> {
        let (hub, study, series) = (self.hub.clone(), study.to_owned(), series.map(str::to_owned));
        let list = tokio::task::spawn_blocking(move || hub.index.instances_of(&study, series.as_deref())).await.map_err(|e| Failure::Refused(e.to_string()))?;
        Ok(list.map_err(|e| Failure::Refused(e.to_string()))?.iter().filter(|i| !i.local).count())
    }

    /// The sites to fetch from, the study's own first.
    fn holders(&self, study: &StudyRecord) -> Vec<&'static Site> {
        let mut out: Vec<&'static Site> = Vec::new();
        for code in std::iter::once(&study.site).chain(study.held_at.iter()) {
            if let Some(s) = crate::sites::find(code).filter(|s| s.pacs().is_some() && study.held_at.contains(&s.code)) {
                if !out.iter().any(|o| o.code == s.code) {
                    out.push(s);
                }
            }
        }
        out
    }

    async fn run_fetch(self: &Arc<Self>, study: &StudyRecord, scope: &Scope) -> Result<(), Failure> {
        let holders = self.holders(study);
        if holders.is_empty() {
            return Err(Failure::NotHeld(format!("study {} is held at no site radhub can retrieve from", study.uid)));
        }
        let mut last = None;
        for site in holders {
            match self.fetch_from(site, study, scope).await {
                Ok(()) => return Ok(()),
                // Another site holding it may answer.
                Err(e @ Failure::Unreachable(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Failure::NotHeld("no site".into())))
    }

    async fn fetch_from(self: &Arc<Self>, site: &'static Site, study: &StudyRecord, scope: &Scope) -> Result<(), Failure> {
        let Some(run) = self.run_of(&site.code) else { return Err(Failure::NotHeld(format!("site {} has no PACS configured", site.code))) };
        run.live().fetches += 1;
        let parts = self.parts(scope).await?;
        let result = if parts.len() > 1 {
            let n = parts.len();
            let mut parts = parts.into_iter();
            let first = self.retrieve(site, study, parts.next().unwrap_or_else(|| identifier(scope)));
            tokio::pin!(first);
            // The first instance is what a viewer waits for: the first part
            // has the site to itself until one has come (or a moment passed).
            let mut progress = self.fetches.subscribe(scope);
            let head_start = async {
                if let Some(rx) = progress.as_mut() {
                    let _ = tokio::time::timeout(HEAD_START, rx.wait_for(|s| s.stored > 0)).await;
                }
            };
            let first_done = tokio::select! {
                r = &mut first => Some(r),
                _ = head_start => None,
            };
            let rest = futures_util::stream::iter(parts.map(|id| self.retrieve(site, study, id)))
                .buffer_unordered(self.opts.fetch_associations.saturating_sub(1).max(1))
                .collect::<Vec<_>>();
            let (first, mut done) = match first_done {
                Some(r) => (r, rest.await),
                None => tokio::join!(&mut first, rest),
            };
            done.insert(0, first);
            match done.into_iter().find(Result::is_err) {
                None => Ok(()),
                // A PACS that does not take a list of SOP Instance UIDs: the scope whole.
                Some(Err(Failure::Refused(why))) => {
                    tracing::info!(site = %site.code, parts = n, %why, "a split retrieve was refused; retrieving the scope whole");
                    self.retrieve(site, study, identifier(scope)).await
                }
                Some(e) => e,
            }
        } else {
            self.retrieve(site, study, identifier(scope)).await
        };
        match &result {
            Ok(()) => run.contact(true, None),
            Err(e) => {
                run.live().fetches_failed += 1;
                // A refusal is an answer: the site is up.
                let down = matches!(e, Failure::Unreachable(_) | Failure::Timeout(_));
                run.contact(!down, down.then(|| e.to_string()));
            }
        }
        result
    }

    /// The retrieves a fetch of `scope` is split into: its instances still
    /// at the site, in display order, a run of at least `SPLIT_MIN` of one
    /// series per retrieve (IMAGE level, a list of SOP Instance UIDs), as
    /// many as the fetch has associations; one retrieve of the whole scope
    /// when it is too small to gain.
    async fn parts(&self, scope: &Scope) -> Result<Vec<InMemDicomObject>, Failure> {
        let ways = self.opts.fetch_associations;
        if ways <= 1 {
            return Ok(vec![identifier(scope)]);
        }
        let (hub, study, series) = (self.hub.clone(), scope.study.clone(), scope.series.clone());
        let listed = tokio::task::spawn_blocking(move || {
            let mut order = hub.index.series_of(&study)?;
            crate::index::model::sort_series(&mut order);
            let mut out = Vec::new();
            for s in order.iter().filter(|s| series.as_deref().is_none_or(|x| x == s.uid)) {
                let mut list: Vec<InstanceRecord> = hub.index.instances_of(&study, Some(&s.uid))?.into_iter().filter(|i| !i.local).collect();
                list.sort_by_key(|i| i.number);
                if !list.is_empty() {
                    out.push((s.uid.clone(), list.into_iter().map(|i| i.sop_uid).collect::<Vec<_>>()));
                }
            }
            Ok::<_, crate::index::IndexError>(out)
        })
        .await
        .map_err(|e| Failure::Refused(e.to_string()))?
        .map_err(|e| Failure::Refused(e.to_string()))?;
        let total: usize = listed.iter().map(|(_, l)| l.len()).sum();
        if total < 2 * SPLIT_MIN {
            return Ok(vec![identifier(scope)]);
        }
        let size = total.div_ceil(ways).max(SPLIT_MIN);
        Ok(listed.iter().flat_map(|(series, sops)| sops.chunks(size).map(|c| image_identifier(&scope.study, series, c))).collect())
    }

    /// One C-MOVE or C-GET of `id` from `site`.
    async fn retrieve(self: &Arc<Self>, site: &'static Site, study: &StudyRecord, id: InMemDicomObject) -> Result<(), Failure> {
        let Some(run) = self.run_of(&site.code) else { return Err(Failure::NotHeld(format!("site {} has no PACS configured", site.code))) };
        let peer = run.peer();
        let cfg = &self.fetch_scu;
        let what = format!("site {} ({peer})", site.code);
        run.live().retrieves += 1;
        let fail = |e: ScuError| match e {
            ScuError::Timeout { .. } => Failure::Timeout(format!("{what}: {e}")),
            ScuError::Connect { .. } | ScuError::Rejected { .. } | ScuError::Io(_) | ScuError::Aborted(_) => Failure::Unreachable(format!("{what}: {e}")),
            _ => Failure::Refused(format!("{what}: {e}")),
        };
        let outcome = match site.retrieve {
            Retrieve::CMove => scu::move_to(cfg, &peer, Model::StudyRoot, &id, &self.own_ae, |_| ControlFlow::Continue(())).await.map_err(fail)?,
            Retrieve::CGet => {
                let sink = Arc::new(GetSink { fed: self.clone(), site });
                let classes = get_contexts(study);
                scu::get(cfg, &peer, Model::StudyRoot, &id, &classes, sink, |_| ControlFlow::Continue(())).await.map_err(fail)?
            }
        };
        if matches!(outcome.status.category(), Category::Success | Category::Warning) {
            return Ok(());
        }
        let comment = outcome.comment.map(|c| format!(": {c}")).unwrap_or_default();
        Err(Failure::Refused(format!("{what} answered the retrieve with status {:04X}{comment}", outcome.status.0)))
    }

    /// Stores one instance a site sent (C-GET), as any arrival from it.
    fn ingest_from(&self, site: &Site, req: &StoreRequest) -> Answer {
        let sender = site.ae_title.as_deref().unwrap_or(&site.code);
        let expect = (req.sop_class_uid.as_str(), req.sop_instance_uid.as_str());
        match self.hub.ingest_expecting(&req.file, Arrival { site: Some(&site.code), sender }, expect) {
            Ok((_, meta)) => {
                self.arrived(&meta);
                Answer::success()
            }
            Err(IngestError::Rejected(e)) => Answer::failure(pacs_gateway::status::Status::CANNOT_UNDERSTAND, e.to_string()),
            Err(e) => {
                tracing::warn!(sop = %req.sop_instance_uid, site = %site.code, error = %e, "a fetched instance was not stored");
                Answer::failure(pacs_gateway::status::Status::OUT_OF_RESOURCES, e.to_string())
            }
        }
    }

    /// Every stored arrival passes here (the DICOM handler, C-GET, STOW):
    /// fetches waiting on its study are woken.
    pub fn arrived(&self, meta: &InstanceMeta) {
        self.fetches.arrived(&meta.study_uid, &meta.series_uid);
        self.note_arrival(meta);
    }
}

/// The C-GET sub-operations' store: the hub, as if the site had pushed them.
struct GetSink {
    fed: Arc<Federation>,
    site: &'static Site,
}

impl scu::StoreSink for GetSink {
    fn store(&self, req: StoreRequest) -> Answer {
        self.fed.ingest_from(self.site, &req)
    }
}

/// The storage contexts a C-GET of `study` offers: its SOP classes (as
/// harvested), each in every transfer syntax radhub stores, within the
/// association's 127 contexts beside the C-GET's own.
fn get_contexts(study: &StudyRecord) -> Vec<(String, Vec<String>)> {
    let ts: Vec<String> = pacs_gateway::sop_classes::STORAGE_TRANSFER_SYNTAXES.iter().map(|t| t.to_string()).collect();
    let mut classes: Vec<&str> = study.sop_classes.iter().map(String::as_str).collect();
    if classes.is_empty() {
        classes = pacs_gateway::sop_classes::STORAGE.iter().map(|(uid, _)| *uid).collect();
    }
    classes.into_iter().take(120).map(|c| (c.to_owned(), ts.clone())).collect()
}

/// How long the first part of a split retrieve has the site to itself.
const HEAD_START: std::time::Duration = std::time::Duration::from_millis(250);

/// Fewest instances one part of a split retrieve asks for.
const SPLIT_MIN: usize = 32;

/// The retrieve identifier of some instances of one series (Study Root,
/// IMAGE level, list-of-UID matching as PS3.4 C.4.2.2.1 allows).
fn image_identifier(study: &str, series: &str, sops: &[String]) -> InMemDicomObject {
    let mut o = identifier(&Scope { study: study.to_owned(), series: Some(series.to_owned()) });
    let mut list = sops.join("\\");
    if list.len() % 2 == 1 {
        list.push('\0');
    }
    o.put(DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, PrimitiveValue::from("IMAGE")));
    o.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(list)));
    o
}

/// The retrieve identifier of a scope (Study Root).
fn identifier(scope: &Scope) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let level = if scope.series.is_some() { "SERIES" } else { "STUDY" };
    let ui = |v: &str| PrimitiveValue::from(if v.len() % 2 == 1 { format!("{v}\0") } else { v.to_owned() });
    o.put(DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, PrimitiveValue::from(level)));
    o.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, ui(&scope.study)));
    if let Some(s) = &scope.series {
        o.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, ui(s)));
    }
    o
}
