//! The county reporting worklist: every site's studies awaiting a report.
//!
//! An index of open items, not a scan of the archive: an item is added when
//! a study arrives (DIMSE or STOW) and its site's rule or a RIS order says
//! it needs reporting, changed as its order, report and assignment change,
//! and removed when its final report is signed. Items live in memory (tens
//! of thousands at most), written through to `<data>/app` so a restart
//! reloads them; a query walks them in priority-then-age order and counts
//! each filter's values in the same pass.
//!
//! What stays off: the quarantine, metadata known only from a site's PACS
//! (its history, harvested), copies fetched from a site (priors), imported
//! archives (`radhub import` does not pass here), non-image studies with no
//! order, studies with a final report, and items an admin dismissed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::index::model::{InstanceMeta, PatientKey, StudyRecord};
use crate::index::StudyFilter;
use crate::orders::{Order, Orders};
use crate::reports::{Reports, Status};

/// Which arrivals from a site join the worklist (`worklist` in `[[site]]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every study arriving for the site (sites without an order feed).
    #[default]
    Arrivals,
    /// Only studies with an order from the site's RIS.
    Orders,
}

/// Modalities that are no examination to report on their own.
const NOT_IMAGES: [&str; 5] = ["SR", "KO", "PR", "DOC", "REG"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub study_uid: String,
    pub site: String,
    pub accession: String,
    pub patient: PatientKey,
    pub patient_name: String,
    pub description: String,
    pub modalities: BTreeSet<String>,
    pub body_parts: BTreeSet<String>,
    /// HL7 priority (S, A, T, P, R): the order's, else routine.
    pub priority: String,
    /// The matched order's procedure and indication (empty without one).
    pub procedure: String,
    pub indication: String,
    pub ordered: bool,
    /// When the examination ended as radhub saw it: its last instance's
    /// arrival (turnaround counts from here).
    pub exam_end_ms: u64,
    /// Its first instance's arrival: waiting (age, the order) counts from here.
    pub added_ms: u64,
    pub assigned_to: Option<String>,
    /// A report in progress (draft or preliminary).
    pub report: Option<Status>,
}

impl Item {
    /// Stat first, then ASAP and timing-critical, pre-op, routine.
    pub fn urgency(&self) -> u8 {
        crate::orders::urgency(&self.priority)
    }

    /// Most urgent, then longest waiting since it arrived.
    fn sort_key(&self) -> (u8, u64, String) {
        (self.urgency(), self.added_ms, self.study_uid.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorklistError {
    #[error("worklist database: {0}")]
    Db(#[from] sled::Error),
    #[error("worklist record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("index: {0}")]
    Index(#[from] crate::index::IndexError),
    #[error("reports: {0}")]
    Reports(#[from] crate::reports::ReportError),
    #[error("orders: {0}")]
    Orders(#[from] crate::orders::OrderError),
    #[error("study {0} is not on the worklist")]
    NotListed(String),
}

/// What a query asks for; every field narrows it.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub site: Option<String>,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub priority: Option<String>,
    /// Waiting at least / at most this long (ms).
    pub older_than_ms: Option<u64>,
    pub newer_than_ms: Option<u64>,
    /// A live claim's holder; `Some("")` for items no one has claimed.
    pub claimed_by: Option<String>,
    /// `Some("")` for items assigned to no one.
    pub assigned_to: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

/// Counts of each filter's values among the items every other filter
/// keeps (so each filter's choices show what picking one would give).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub site: BTreeMap<String, usize>,
    pub modality: BTreeMap<String, usize>,
    pub body_part: BTreeMap<String, usize>,
    pub priority: BTreeMap<String, usize>,
    pub claimed_by: BTreeMap<String, usize>,
    pub assigned_to: BTreeMap<String, usize>,
}

pub struct Page {
    /// Items every filter keeps.
    pub total: usize,
    pub counts: Counts,
    /// The page of them, most urgent then longest waiting first, each with
    /// its live claim's holder.
    pub items: Vec<(Item, Option<String>)>,
}

#[derive(Default)]
struct Open {
    items: HashMap<String, Item>,
    /// Bumped by every change the rows show (they are rebuilt).
    generation: u64,
}

impl Open {
    fn put(&mut self, item: Item) {
        // What only the item shows (exam end, report state) leaves the rows as they are.
        let same_row = self.items.get(&item.study_uid).is_some_and(|old| {
            old.sort_key() == item.sort_key()
                && old.modalities == item.modalities
                && old.body_parts == item.body_parts
                && old.assigned_to == item.assigned_to
                && old.site == item.site
                && old.priority == item.priority
        });
        if !same_row {
            self.generation += 1;
        }
        self.items.insert(item.study_uid.clone(), item);
    }

    fn take(&mut self, study: &str) -> Option<Item> {
        let old = self.items.remove(study)?;
        self.generation += 1;
        Some(old)
    }
}

/// The values one filter has seen, each a small number (ASCII case folded).
#[derive(Default)]
struct Facet {
    names: Vec<String>,
    ids: HashMap<String, u16>,
}

impl Facet {
    fn id(&mut self, v: &str) -> u16 {
        let key = v.to_ascii_uppercase();
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.names.len() as u16;
        self.names.push(v.to_owned());
        self.ids.insert(key, id);
        id
    }

    fn find(&self, v: &str) -> Option<u16> {
        self.ids.get(&v.to_ascii_uppercase()).copied()
    }
}

/// Modality and body part values past this many share the last bit, and
/// are matched and counted from their items.
const MASK_BITS: u16 = 63;

fn mask(facet: &mut Facet, values: &BTreeSet<String>) -> u64 {
    values.iter().fold(0, |m, v| m | 1 << facet.id(v).min(MASK_BITS))
}

/// The open items as compact rows in worklist order, for queries to walk
/// without chasing each item's strings.
struct Row {
    added_ms: u64,
    modalities: u64,
    body_parts: u64,
    site: u16,
    priority: u16,
    /// 0: no one.
    assignee: u16,
}

#[derive(Default)]
struct Rows {
    generation: u64,
    rows: Vec<Row>,
    uids: Vec<String>,
    position: HashMap<String, u32>,
    site: Facet,
    modality: Facet,
    body_part: Facet,
    priority: Facet,
    assignee: Facet,
}

impl Rows {
    fn build(open: &Open) -> Rows {
        let mut r = Rows { generation: open.generation, ..Default::default() };
        r.assignee.id("");
        let mut order: Vec<&Item> = open.items.values().collect();
        order.sort_by_cached_key(|i| i.sort_key());
        for item in order {
            let uid = &item.study_uid;
            let row = Row {
                added_ms: item.added_ms,
                modalities: mask(&mut r.modality, &item.modalities),
                body_parts: mask(&mut r.body_part, &item.body_parts),
                site: r.site.id(&item.site),
                priority: r.priority.id(&item.priority),
                assignee: r.assignee.id(item.assigned_to.as_deref().unwrap_or("")),
            };
            r.position.insert(uid.clone(), r.rows.len() as u32);
            r.rows.push(row);
            r.uids.push(uid.clone());
        }
        r
    }
}

pub struct Worklist {
    db: sled::Db,
    /// study UID → item.
    tree: sled::Tree,
    /// study UID → why an admin or its order took it off (never re-added by
    /// arrivals).
    off: sled::Tree,
    index: Arc<dyn IndexLookup>,
    reports: Arc<Reports>,
    orders: Arc<Orders>,
    rules: HashMap<String, Rule>,
    open: RwLock<Open>,
    /// The rows of the open items' last generation a query saw.
    rows: std::sync::Mutex<Option<Arc<Rows>>>,
}

fn own_accession(s: &StudyRecord) -> bool {
    crate::sites::own_accession(&s.site, &s.accession_issuer)
}

/// What the worklist reads of the index (the hub's, in the server).
pub trait IndexLookup: Send + Sync {
    fn study(&self, uid: &str) -> Result<Option<StudyRecord>, crate::index::IndexError>;
    fn by_accession(&self, site: &str, accession: &str) -> Result<Vec<StudyRecord>, crate::index::IndexError>;
    fn body_parts(&self, uid: &str) -> Result<BTreeSet<String>, crate::index::IndexError>;
    fn all_studies(&self) -> Box<dyn Iterator<Item = Result<StudyRecord, crate::index::IndexError>> + '_>;
    /// The record a patient key is filed under today (after merges).
    fn current_key(&self, k: &PatientKey) -> Result<PatientKey, crate::index::IndexError> {
        Ok(k.clone())
    }
}

impl IndexLookup for crate::ingest::Hub {
    fn study(&self, uid: &str) -> Result<Option<StudyRecord>, crate::index::IndexError> {
        self.index.study(uid)
    }

    fn by_accession(&self, site: &str, accession: &str) -> Result<Vec<StudyRecord>, crate::index::IndexError> {
        let f = StudyFilter { accession: Some(accession.to_owned()), site: Some(site.to_owned()), ..Default::default() };
        self.index.find_studies(&f).filter(|s| s.as_ref().map_or(true, |s| s.site == site && s.accession_number == accession && own_accession(s))).collect()
    }

    fn current_key(&self, k: &PatientKey) -> Result<PatientKey, crate::index::IndexError> {
        self.index.current_key(k)
    }

    fn body_parts(&self, uid: &str) -> Result<BTreeSet<String>, crate::index::IndexError> {
        Ok(self.index.series_of(uid)?.into_iter().map(|s| s.body_part_examined).filter(|b| !b.is_empty()).collect())
    }

    fn all_studies(&self) -> Box<dyn Iterator<Item = Result<StudyRecord, crate::index::IndexError>> + '_> {
        static ALL: std::sync::LazyLock<StudyFilter> = std::sync::LazyLock::new(StudyFilter::default);
        Box::new(self.index.find_studies(&ALL))
    }
}

/// Bumped when what an item holds changes: the open items are rebuilt
/// from the index at the next start.
const VERSION: &[u8] = b"1";

impl Worklist {
    /// Loads the open items, building them from the index the first time
    /// (or after their format changed).
    pub fn open(db: &sled::Db, index: Arc<dyn IndexLookup>, reports: Arc<Reports>, orders: Arc<Orders>) -> Result<Self, WorklistError> {
        let rules = crate::sites::all().iter().map(|s| (s.code.clone(), s.worklist)).collect();
        let w = Worklist {
            db: db.clone(),
            tree: db.open_tree("worklist")?,
            off: db.open_tree("worklist_off")?,
            index,
            reports,
            orders,
            rules,
            open: RwLock::new(Open::default()),
            rows: Default::default(),
        };
        let meta = db.open_tree("worklist_meta")?;
        if meta.get("version")?.as_deref() == Some(VERSION) {
            let mut open = w.write();
            for kv in w.tree.iter() {
                let (_, v) = kv?;
                let mut item: Item = postcard::from_bytes(&v)?;
                // What changed since the item's last write (unflushed at a
                // crash): later arrivals, the report's state.
                if let Some(s) = w.index.study(&item.study_uid)? {
                    item.exam_end_ms = item.exam_end_ms.max(s.last_received_ms);
                }
                item.report = w.report_state(&item.study_uid)?;
                if item.report == Some(Status::Final) {
                    w.tree.remove(item.study_uid.as_bytes())?;
                    continue;
                }
                open.put(item);
            }
        } else {
            w.rebuild()?;
            meta.insert("version", VERSION)?;
            db.flush()?;
        }
        tracing::info!(open = w.read().items.len(), "worklist loaded");
        Ok(w)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Open> {
        self.open.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Open> {
        self.open.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every study held here that needs reporting by today's rules (the
    /// first start with a worklist, over an archive that had none).
    fn rebuild(&self) -> Result<(), WorklistError> {
        self.tree.clear()?;
        let mut n = 0usize;
        for s in self.index.all_studies() {
            let s = s?;
            if let Some(item) = self.judge(&s, false)? {
                self.persist(&item)?;
                self.write().put(item);
                n += 1;
            }
        }
        tracing::info!(items = n, "worklist built from the index");
        Ok(())
    }

    fn persist(&self, item: &Item) -> Result<(), WorklistError> {
        self.tree.insert(item.study_uid.as_bytes(), postcard::to_stdvec(item)?)?;
        Ok(())
    }

    /// The order for a study: the same accession at the same site, for the
    /// same patient (an order naming someone else is a conflict shown on
    /// the study, never a match).
    fn order_for(&self, s: &StudyRecord) -> Result<Option<Order>, WorklistError> {
        let acc = s.accession_number.trim();
        if acc.is_empty() || !own_accession(s) {
            return Ok(None);
        }
        match self.orders.get(&s.site, acc)? {
            Some(o) if self.names(&o, s)? => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    /// Whether an order is for a study's patient: the one it names, or the
    /// record that one was merged into since (ADT A40, A47).
    fn names(&self, o: &Order, s: &StudyRecord) -> Result<bool, WorklistError> {
        Ok(self.index.current_key(&o.patient())? == s.patient)
    }

    /// The furthest state of a study's report (addenda aside): final means
    /// reported.
    fn report_state(&self, study: &str) -> Result<Option<Status>, WorklistError> {
        Ok(self.reports.of_study(study)?.into_iter().filter(|r| r.addendum_of.is_none()).map(|r| r.status).max_by_key(|st| st.rank()))
    }

    /// The item a study makes, if it needs reporting.
    fn judge(&self, s: &StudyRecord, fetched: bool) -> Result<Option<Item>, WorklistError> {
        if s.site == crate::sites::QUARANTINE || s.local_instances == 0 || fetched || self.off.contains_key(s.uid.as_bytes())? {
            return Ok(None);
        }
        let order = self.order_for(s)?;
        if order.as_ref().is_some_and(Order::cancelled) {
            return Ok(None);
        }
        if order.is_none() {
            let rule = self.rules.get(&s.site).copied().unwrap_or_default();
            if rule == Rule::Orders || s.modalities.iter().all(|m| NOT_IMAGES.contains(&m.as_str())) {
                return Ok(None);
            }
        }
        let report = self.report_state(&s.uid)?;
        if report == Some(Status::Final) {
            return Ok(None);
        }
        Ok(Some(Item {
            study_uid: s.uid.clone(),
            site: s.site.clone(),
            accession: s.accession_number.clone(),
            patient: s.patient.clone(),
            patient_name: s.patient_name.clone(),
            description: s.description.clone(),
            modalities: s.modalities.clone(),
            body_parts: self.index.body_parts(&s.uid)?,
            priority: order.as_ref().map_or_else(|| "R".to_owned(), |o| o.priority.clone()),
            procedure: order.as_ref().map(|o| o.procedure.clone()).unwrap_or_default(),
            indication: order.as_ref().map(|o| o.indication.clone()).unwrap_or_default(),
            ordered: order.is_some(),
            exam_end_ms: s.last_received_ms,
            added_ms: s.first_received_ms,
            assigned_to: None,
            report,
        }))
    }

    /// A stored instance (DIMSE or STOW): its study joins the worklist if
    /// it needs reporting, or moves its exam end on. `fetched`: radhub
    /// asked a site for it (a prior), which is no new examination.
    pub fn arrived(&self, meta: &InstanceMeta, fetched: bool) -> Result<(), WorklistError> {
        if meta.remote || meta.site == crate::sites::QUARANTINE {
            return Ok(());
        }
        // A key object selection may be a rejection note: what it leaves is judged again.
        if meta.sop_class_uid == crate::iocm::KOS {
            return self.refresh(&meta.study_uid);
        }
        {
            let mut open = self.write();
            if let Some(item) = open.items.get_mut(&meta.study_uid) {
                item.exam_end_ms = item.exam_end_ms.max(meta.received_ms);
                let new_part = !meta.body_part_examined.is_empty() && !item.body_parts.contains(&meta.body_part_examined);
                let new_modality = !meta.modality.is_empty() && !item.modalities.contains(&meta.modality);
                if new_part || new_modality {
                    drop(open);
                    self.change(&meta.study_uid, |item| {
                        item.body_parts.extend(Some(meta.body_part_examined.clone()).filter(|b| !b.is_empty()));
                        item.modalities.extend(Some(meta.modality.clone()).filter(|m| !m.is_empty()));
                    })?;
                }
                return Ok(());
            }
        }
        let Some(s) = self.index.study(&meta.study_uid)? else { return Ok(()) };
        if let Some(item) = self.judge(&s, fetched)? {
            self.add(item)?;
        }
        Ok(())
    }

    /// Judges a study afresh (filed out of quarantine), listing it if it
    /// needs reporting.
    pub fn reconsider(&self, s: &StudyRecord) -> Result<(), WorklistError> {
        if self.get(&s.uid).is_none() {
            if let Some(item) = self.judge(s, false)? {
                self.add(item)?;
            }
        }
        Ok(())
    }

    /// A listed study whose records changed under it (its patient's
    /// identity, instances rejected): its item judged afresh, so that it
    /// shows the patient record as it is now, keeping whom it is assigned
    /// to; off the list when nothing left needs reporting. Studies not
    /// listed stay so (a fetched prior never joins by this).
    pub fn refresh(&self, study: &str) -> Result<(), WorklistError> {
        let Some(old) = self.get(study) else { return Ok(()) };
        let fresh = match self.index.study(study)? {
            Some(s) => self.judge(&s, false)?,
            None => None,
        };
        match fresh {
            Some(mut item) => {
                item.assigned_to = old.assigned_to;
                item.added_ms = old.added_ms;
                item.exam_end_ms = item.exam_end_ms.max(old.exam_end_ms);
                self.change(study, |i| *i = item)?;
            }
            None => {
                self.remove(study)?;
                tracing::info!(%study, "off the worklist: nothing of it left to report");
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// `arrived` for the server's store paths: a fetch in flight from a
    /// site marks the arrival as fetched; a failure is logged (the instance
    /// is stored; the worklist catches up at the next arrival or start).
    pub fn stored(&self, meta: &InstanceMeta, federation: Option<&crate::federation::Federation>) {
        let fetched = federation.is_some_and(|f| f.fetching(&meta.study_uid));
        if let Err(e) = self.arrived(meta, fetched) {
            tracing::error!(study = %meta.study_uid, error = %e, "worklist not updated");
        }
    }

    /// Changes a listed item and writes it: the changed item, or `None` when
    /// the study is not listed.
    fn change(&self, study: &str, f: impl FnOnce(&mut Item)) -> Result<Option<Item>, WorklistError> {
        let mut open = self.write();
        let Some(mut item) = open.items.get(study).cloned() else { return Ok(None) };
        f(&mut item);
        self.persist(&item)?;
        open.put(item.clone());
        Ok(Some(item))
    }

    /// Takes an item off the list and out of the database.
    fn remove(&self, study: &str) -> Result<Option<Item>, WorklistError> {
        let taken = self.write().take(study);
        if taken.is_some() {
            self.tree.remove(study.as_bytes())?;
        }
        Ok(taken)
    }

    fn add(&self, item: Item) -> Result<(), WorklistError> {
        let mut open = self.write();
        // Another arrival of the study may have added it meanwhile.
        if open.items.contains_key(&item.study_uid) {
            return Ok(());
        }
        self.persist(&item)?;
        self.db.flush()?;
        tracing::debug!(study = %item.study_uid, site = %item.site, priority = %item.priority, "on the worklist");
        open.put(item);
        Ok(())
    }

    /// An order filed (new, changed or cancelled): its studies already here
    /// join the worklist with its priority, or leave it when it is cancelled.
    pub fn ordered(&self, o: &Order) -> Result<(), WorklistError> {
        for s in self.index.by_accession(&o.site, &o.accession)? {
            // An order naming someone else neither lists nor cancels this study.
            if !self.names(o, &s)? {
                continue;
            }
            if o.cancelled() {
                if self.remove(&s.uid)?.is_some() {
                    tracing::info!(study = %s.uid, accession = %o.accession, "off the worklist: order cancelled");
                }
                continue;
            }
            let listed = self.change(&s.uid, |item| {
                item.priority = o.priority.clone();
                item.procedure = o.procedure.clone();
                item.indication = o.indication.clone();
                item.ordered = true;
            })?;
            if listed.is_none() {
                if let Some(item) = self.judge(&s, false)? {
                    self.add(item)?;
                }
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// A study's report changed: a final takes it off, a draft or
    /// preliminary shows on it.
    pub fn reported(&self, study: &str, status: Status) -> Result<(), WorklistError> {
        if status == Status::Final {
            self.remove(study)?;
        } else {
            self.change(study, |item| item.report = Some(status))?;
        }
        Ok(())
    }

    /// Assigns an item to a radiologist (`None`: to no one).
    pub fn assign(&self, study: &str, to: Option<&str>) -> Result<Item, WorklistError> {
        let item = self.change(study, |item| item.assigned_to = to.map(str::to_owned))?.ok_or_else(|| WorklistError::NotListed(study.to_owned()))?;
        self.db.flush()?;
        Ok(item)
    }

    /// Takes an item off by hand (reported elsewhere, not for reporting):
    /// later arrivals of the study do not put it back.
    pub fn dismiss(&self, study: &str, why: &str) -> Result<Item, WorklistError> {
        let mut open = self.write();
        if !open.items.contains_key(study) {
            return Err(WorklistError::NotListed(study.to_owned()));
        }
        // Marked off before it leaves, so that no arrival puts it back.
        self.off.insert(study.as_bytes(), why.as_bytes())?;
        let item = open.take(study).ok_or_else(|| WorklistError::NotListed(study.to_owned()))?;
        self.tree.remove(study.as_bytes())?;
        self.db.flush()?;
        Ok(item)
    }

    pub fn get(&self, study: &str) -> Option<Item> {
        self.read().items.get(study).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One page of the items `q` keeps, with every filter's counts.
    /// `holders`: study → live claim's holder.
    pub fn query(&self, q: &Query, holders: &HashMap<String, String>, now: u64) -> Page {
        let open = self.read();
        let rows = {
            let mut cached = self.rows.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref().filter(|r| r.generation == open.generation) {
                Some(r) => r.clone(),
                None => cached.insert(Arc::new(Rows::build(&open))).clone(),
            }
        };
        // Each live claim's holder by row (0: unclaimed).
        let mut holder_names = Facet::default();
        holder_names.id("");
        let mut holder = vec![0u16; rows.rows.len()];
        for (uid, by) in holders {
            if let Some(&i) = rows.position.get(uid) {
                holder[i as usize] = holder_names.id(by);
            }
        }
        // A wanted value: None, no filter; Some(None), a value no item has.
        let want = |f: &Facet, v: &Option<String>| v.as_deref().map(|v| f.find(v));
        let (site, priority, assignee) = (want(&rows.site, &q.site), want(&rows.priority, &q.priority), want(&rows.assignee, &q.assigned_to));
        let claimed = q.claimed_by.as_deref().map(|v| holder_names.find(v));
        let (modality, body_part) = (want(&rows.modality, &q.modality), want(&rows.body_part, &q.body_part));
        let is = |w: Option<Option<u16>>, have: u16| w.is_none_or(|w| w == Some(have));
        // Values past the mask's bits are matched on the item itself.
        let has = |w: Option<Option<u16>>, m: u64, i: usize, set: fn(&Item) -> &BTreeSet<String>, wanted: &Option<String>| match w {
            None => true,
            Some(None) => false,
            Some(Some(id)) if id < MASK_BITS => m & 1 << id != 0,
            Some(Some(_)) => {
                let w = wanted.as_deref().unwrap_or("");
                open.items.get(&rows.uids[i]).is_some_and(|it| set(it).iter().any(|v| v.eq_ignore_ascii_case(w)))
            }
        };
        let mut n = [
            vec![0usize; rows.site.names.len()],
            vec![0; 64],
            vec![0; 64],
            vec![0; rows.priority.names.len()],
            vec![0; holder_names.names.len()],
            vec![0; rows.assignee.names.len()],
        ];
        let mut overflow: [BTreeMap<String, usize>; 2] = Default::default();
        let mut page = Vec::new();
        let mut total = 0usize;
        for (i, r) in rows.rows.iter().enumerate() {
            let age = now.saturating_sub(r.added_ms);
            if q.older_than_ms.is_some_and(|t| age < t) || q.newer_than_ms.is_some_and(|t| age > t) {
                continue;
            }
            let h = holder[i];
            // Which of the counted filters this item fails.
            let fails = [
                !is(site, r.site),
                !has(modality, r.modalities, i, |it| &it.modalities, &q.modality),
                !has(body_part, r.body_parts, i, |it| &it.body_parts, &q.body_part),
                !is(priority, r.priority),
                !is(claimed, h),
                !is(assignee, r.assignee),
            ];
            let failed = fails.iter().filter(|f| **f).count();
            if failed > 1 {
                continue;
            }
            // Counted under filter k when every other filter keeps it.
            let keeps = |k: usize| failed == 0 || fails[k];
            if keeps(0) {
                n[0][r.site as usize] += 1;
            }
            for (k, m, facet_at) in [(1usize, r.modalities, 0usize), (2, r.body_parts, 1)] {
                if !keeps(k) {
                    continue;
                }
                let mut bits = m & !(1 << MASK_BITS);
                while bits != 0 {
                    n[k][bits.trailing_zeros() as usize] += 1;
                    bits &= bits - 1;
                }
                if m & 1 << MASK_BITS != 0 {
                    let (facet, set): (&Facet, fn(&Item) -> &BTreeSet<String>) =
                        if k == 1 { (&rows.modality, |it| &it.modalities) } else { (&rows.body_part, |it| &it.body_parts) };
                    if let Some(it) = open.items.get(&rows.uids[i]) {
                        for v in set(it).iter().filter(|v| facet.find(v).is_none_or(|id| id >= MASK_BITS)) {
                            *overflow[facet_at].entry(v.clone()).or_default() += 1;
                        }
                    }
                }
            }
            if keeps(3) {
                n[3][r.priority as usize] += 1;
            }
            if keeps(4) {
                n[4][h as usize] += 1;
            }
            if keeps(5) {
                n[5][r.assignee as usize] += 1;
            }
            if failed == 0 {
                if total >= q.offset && page.len() < q.limit {
                    if let Some(it) = open.items.get(&rows.uids[i]) {
                        page.push((it.clone(), holders.get(&rows.uids[i]).cloned()));
                    }
                }
                total += 1;
            }
        }
        let named = |counts: &[usize], names: &[String]| -> BTreeMap<String, usize> {
            counts.iter().zip(names).filter(|(c, _)| **c > 0).map(|(c, name)| (name.clone(), *c)).collect()
        };
        let [o_mod, o_part] = overflow;
        let mut modality_counts = named(&n[1][..MASK_BITS as usize], &rows.modality.names);
        modality_counts.extend(o_mod);
        let mut body_part_counts = named(&n[2][..MASK_BITS as usize], &rows.body_part.names);
        body_part_counts.extend(o_part);
        let counts = Counts {
            site: named(&n[0], &rows.site.names),
            modality: modality_counts,
            body_part: body_part_counts,
            priority: named(&n[3], &rows.priority.names),
            claimed_by: named(&n[4], &holder_names.names),
            assigned_to: named(&n[5], &rows.assignee.names),
        };
        Page { total, counts, items: page }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeIndex(Mutex<Vec<StudyRecord>>);

    impl IndexLookup for FakeIndex {
        fn study(&self, uid: &str) -> Result<Option<StudyRecord>, crate::index::IndexError> {
            Ok(self.0.lock().unwrap().iter().find(|s| s.uid == uid).cloned())
        }
        fn by_accession(&self, site: &str, accession: &str) -> Result<Vec<StudyRecord>, crate::index::IndexError> {
            Ok(self.0.lock().unwrap().iter().filter(|s| s.site == site && s.accession_number == accession && own_accession(s)).cloned().collect())
        }
        fn body_parts(&self, _: &str) -> Result<BTreeSet<String>, crate::index::IndexError> {
            Ok(["HEAD".to_owned()].into())
        }
        fn all_studies(&self) -> Box<dyn Iterator<Item = Result<StudyRecord, crate::index::IndexError>> + '_> {
            Box::new(self.0.lock().unwrap().clone().into_iter().map(Ok))
        }
    }

    fn study(uid: &str, site: &str, modality: &str, acc: &str, received: u64) -> StudyRecord {
        StudyRecord {
            uid: uid.into(),
            site: site.into(),
            patient: PatientKey { issuer: site.into(), patient_id: format!("P{uid}") },
            patient_name: "DOE^J".into(),
            patient_birth_date: String::new(),
            patient_sex: String::new(),
            date: String::new(),
            time: String::new(),
            accession_number: acc.into(),
            accession_issuer: crate::index::model::AccessionIssuer { local: site.into(), ..Default::default() },
            study_id: String::new(),
            referring_physician_name: String::new(),
            description: String::new(),
            institution_name: String::new(),
            modalities: [modality.to_owned()].into(),
            sop_classes: BTreeSet::new(),
            series: 1,
            instances: 1,
            local_instances: 1,
            held_at: BTreeSet::new(),
            bytes: 0,
            first_received_ms: received,
            last_received_ms: received,
        }
    }

    fn meta(s: &StudyRecord) -> InstanceMeta {
        InstanceMeta {
            study_uid: s.uid.clone(),
            site: s.site.clone(),
            modality: s.modalities.iter().next().cloned().unwrap_or_default(),
            received_ms: s.last_received_ms,
            ..Default::default()
        }
    }

    fn order(site: &str, acc: &str, patient: &str, priority: &str, control: &str) -> Order {
        Order {
            site: site.into(),
            accession: acc.into(),
            issuer: site.into(),
            patient_id: patient.into(),
            patient_name: String::new(),
            procedure: "CT HEAD".into(),
            priority: priority.into(),
            indication: "?bleed".into(),
            ordering_clinician: String::new(),
            control: control.into(),
            received_ms: 1,
        }
    }

    #[test]
    fn arrivals_orders_reports_and_restarts_keep_the_open_items_right() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let index = Arc::new(FakeIndex::default());
        let reports = Arc::new(Reports::new(&db).unwrap());
        let orders = Arc::new(Orders::new(&db).unwrap());
        let w = Worklist::open(&db, index.clone(), reports.clone(), orders.clone()).unwrap();
        let add = |s: StudyRecord, fetched: bool| {
            index.0.lock().unwrap().push(s.clone());
            w.arrived(&meta(&s), fetched).unwrap();
        };
        add(study("1", "RBD", "CT", "A1", 1_000), false);
        add(study("2", "RD3", "MR", "A2", 2_000), false);
        add(study("3", "RBD", "SR", "", 3_000), false); // a report object alone
        add(study("4", "RBD", "CT", "", 4_000), true); // a prior fetched from a site
        add(study("5", crate::sites::QUARANTINE, "CT", "", 5_000), false);
        assert_eq!(w.len(), 2);

        // A stat order for study 2 moves it to the top; one naming another patient matches nothing.
        w.ordered(&order("RD3", "A2", "P2", "S", "NW")).unwrap();
        w.ordered(&order("RBD", "A1", "SOMEONE-ELSE", "S", "NW")).unwrap();
        let holders = HashMap::from([("1".to_owned(), "ann".to_owned())]);
        let all = Query { limit: 10, ..Default::default() };
        let page = w.query(&all, &holders, 10_000);
        let uids: Vec<&str> = page.items.iter().map(|(i, _)| i.study_uid.as_str()).collect();
        assert_eq!(uids, ["2", "1"]);
        assert_eq!(page.items[1].1.as_deref(), Some("ann"));
        assert_eq!(page.counts.priority, BTreeMap::from([("R".into(), 1), ("S".into(), 1)]));

        // Facets: each filter's counts ignore that filter itself.
        let ct = Query { modality: Some("ct".into()), limit: 10, ..Default::default() };
        let page = w.query(&ct, &holders, 10_000);
        assert_eq!(page.total, 1);
        assert_eq!(page.counts.modality, BTreeMap::from([("CT".into(), 1), ("MR".into(), 1)]));
        assert_eq!(page.counts.site, BTreeMap::from([("RBD".into(), 1)]));
        let unclaimed = Query { claimed_by: Some(String::new()), limit: 10, ..Default::default() };
        assert_eq!(w.query(&unclaimed, &holders, 10_000).items[0].0.study_uid, "2");
        let old = Query { older_than_ms: Some(8_500), limit: 10, ..Default::default() };
        assert_eq!(w.query(&old, &holders, 10_000).total, 1);

        w.assign("1", Some("bob")).unwrap();
        assert!(matches!(w.assign("9", Some("bob")), Err(WorklistError::NotListed(_))));
        let r = reports.create("1", "RBD", "ann", &crate::reports::Content::text("Normal.")).unwrap();
        w.reported("1", Status::Draft).unwrap();
        assert_eq!(w.get("1").unwrap().report, Some(Status::Draft));

        // A restart reloads the same items; a cancelled order and a signed report take them off.
        drop(w);
        let w = Worklist::open(&db, index.clone(), reports.clone(), orders.clone()).unwrap();
        assert_eq!(w.get("1").unwrap().assigned_to.as_deref(), Some("bob"));
        assert_eq!(w.get("2").unwrap().priority, "S");
        reports.sign(r.id, "ann").unwrap();
        w.reported("1", Status::Final).unwrap();
        orders.put(&order("RD3", "A2", "P2", "S", "CA")).unwrap();
        w.ordered(&order("RD3", "A2", "P2", "S", "CA")).unwrap();
        assert!(w.is_empty());
        // A reported study's later instances do not put it back.
        w.arrived(&meta(&study("1", "RBD", "CT", "A1", 9_000)), false).unwrap();
        assert!(w.get("1").is_none());
    }

    #[test]
    fn the_first_start_builds_the_items_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let index = Arc::new(FakeIndex::default());
        index.0.lock().unwrap().extend([study("1", "RBD", "CT", "", 1), study("2", "RBD", "KO", "", 2)]);
        let mut harvested = study("3", "RBD", "CT", "", 3);
        harvested.local_instances = 0;
        index.0.lock().unwrap().push(harvested);
        let w = Worklist::open(&db, index, Arc::new(Reports::new(&db).unwrap()), Arc::new(Orders::new(&db).unwrap())).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w.get("1").is_some());
    }
}
