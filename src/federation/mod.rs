//! Federation: radhub as a client of each site's PACS. Harvests put every
//! site's studies, series and instances in the one index (metadata only,
//! held at the site); a remote-only study is fetched when someone opens it;
//! priors of a patient's new study are fetched ahead of the radiologist.
//!
//! - `harvest`: one pass over one site (C-FIND by date window, deeper for
//!   what is new or changed), resumable
//! - `answers`: the identifiers sent and the answers read
//! - `fetch`: retrieve on demand, one fetch per study however many wait
//! - `prefetch`: a patient's relevant priors at other sites
//! - `egress`: a study sent to another site's PACS, its identity coerced
//! - `live`: a study search fanned out to the sites' PACS, merged, on request
//! - `state`: watermarks and cursors, durable
//!
//! A site that is down, slow or failing is reported in its status, retried
//! with backoff, and never holds up another: each site has its own task,
//! slots and timeouts.

mod answers;
pub mod egress;
mod fetch;
mod harvest;
pub mod live;
mod prefetch;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacs_gateway::scu::{Peer, ScuConfig, ScuError};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

pub use fetch::{Failure, FetchState};
pub use state::LastSync;
use state::States;

use crate::index::IndexError;
use crate::ingest::Hub;
use crate::sites::Site;

#[derive(Debug, thiserror::Error)]
pub enum FedError {
    #[error("{site}: {error}")]
    Site { site: String, error: ScuError },
    #[error("{site} refused the query with status {status:04X}: {comment}")]
    Refused { site: String, status: u16, comment: String },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Sites(#[from] crate::sites::SitesError),
    #[error("no site {0} with a PACS is configured")]
    NoSuchSite(String),
    #[error("site {0} is being harvested already")]
    Busy(String),
    #[error("radhub is stopping")]
    Stopped,
}

/// How radhub works with the sites' PACS.
#[derive(Clone, Debug)]
pub struct Options {
    /// First width of a harvest's date windows, in days.
    pub window_days: u32,
    pub max_window_days: u32,
    /// Days before the watermark a quick pass still asks about (late arrivals).
    pub overlap_days: u32,
    /// C-FINDs one site is asked at once by a harvest.
    pub per_site: usize,
    /// Time between quick passes; `None`: only on request.
    pub interval: Option<Duration>,
    /// Time between full passes.
    pub full_every: Duration,
    /// Longest a request waits for an instance being fetched.
    pub fetch_wait: Duration,
    /// Time to connect to a site's PACS and have its association.
    pub connect_timeout: Duration,
    /// Time a site has for each message awaited from it.
    pub dimse_timeout: Duration,
    /// Retrieves one fetch has with its site at once: a site sends each
    /// association's sub-operations one after another, so a long series
    /// split among a few arrives sooner.
    pub fetch_associations: usize,
    /// Priors fetched ahead for a patient's new study (0: none).
    pub priors: usize,
    /// Only studies this recent (by Study Date) prompt a prefetch.
    pub prefetch_days: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window_days: 30,
            max_window_days: 3650,
            overlap_days: 7,
            per_site: 4,
            interval: Some(Duration::from_secs(300)),
            full_every: Duration::from_secs(24 * 3600),
            fetch_wait: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            dimse_timeout: Duration::from_secs(30),
            fetch_associations: 3,
            priors: 3,
            prefetch_days: 7,
        }
    }
}

/// A harvest pass under way, as far as it has got.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub full: bool,
    /// The date range being asked for.
    pub window: String,
    pub windows: u64,
    pub studies_seen: u64,
    pub studies_changed: u64,
    pub instances_added: u64,
}

/// What radhub knows of a site's PACS right now.
#[derive(Clone, Debug, Default)]
struct Live {
    syncing: Option<Progress>,
    /// `None` until radhub has spoken to it.
    reachable: Option<bool>,
    last_contact: Option<u64>,
    last_error: Option<String>,
    /// Harvests failed in a row: the next waits longer.
    failures: u32,
    next_sync: Option<u64>,
    /// Fetches from the site, and how many failed.
    fetches: u64,
    fetches_failed: u64,
    /// The retrieves (C-MOVE or C-GET) they took: a long series is split.
    retrieves: u64,
}

/// One site's PACS and radhub's dealings with it.
pub(crate) struct SiteRun {
    site: &'static Site,
    /// Its PACS, with the TLS it is called over.
    peer: Peer,
    live: Mutex<Live>,
    wake: Notify,
    full_asked: AtomicBool,
    harvest_slots: Arc<Semaphore>,
    /// The site refused (or could not answer) a study-wide image query:
    /// its studies are read series by series.
    hierarchical_only: AtomicBool,
}

impl SiteRun {
    fn peer(&self) -> Peer {
        self.peer.clone()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = self.live().syncing.as_mut() {
            f(p);
        }
    }

    /// Records how the latest exchange with the site went.
    fn contact(&self, ok: bool, error: Option<String>) {
        let mut l = self.live();
        l.reachable = Some(ok);
        if ok {
            l.last_contact = Some(crate::ingest::now_ms());
        }
        if error.is_some() {
            l.last_error = error;
        }
    }
}

/// A site's status, as `GET /api/sites` and `radhub sites list` show it.
#[derive(Clone, Debug, Serialize)]
pub struct SiteStatus {
    pub code: String,
    pub name: String,
    pub issuer: String,
    /// `AE@host:port` of its PACS, if configured.
    pub pacs: Option<String>,
    pub retrieve: crate::sites::Retrieve,
    pub reachable: Option<bool>,
    pub syncing: bool,
    pub progress: Option<Progress>,
    pub last_sync: Option<LastSync>,
    /// Studies indexed as held at the site.
    pub studies: u64,
    /// The newest Study Date every completed pass covered.
    pub watermark: Option<String>,
    /// Whether an interrupted pass will resume.
    pub resumable: bool,
    pub last_contact: Option<u64>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub next_sync: Option<u64>,
    pub fetches: u64,
    pub fetches_failed: u64,
    pub retrieves: u64,
}

pub struct Federation {
    pub hub: Arc<Hub>,
    states: States,
    /// For harvest queries.
    scu: ScuConfig,
    /// For fetches: the same, with the fetch's own timeouts.
    fetch_scu: ScuConfig,
    /// radhub's AE: the C-MOVE destination.
    own_ae: String,
    opts: Options,
    runs: Vec<Arc<SiteRun>>,
    fetches: fetch::Fetches,
    prefetch: prefetch::Prefetch,
    stopping: AtomicBool,
}

impl Federation {
    /// Federation over the configured sites that have a PACS. `app` is the
    /// application database (for the watermarks).
    pub fn new(hub: Arc<Hub>, app: &sled::Db, own_ae: &str, opts: Options) -> Result<Arc<Self>, FedError> {
        let runs = crate::sites::all()
            .iter()
            .filter_map(|site| site.pacs_peer().transpose().map(|peer| (site, peer)))
            .map(|(site, peer)| {
                Ok(Arc::new(SiteRun {
                    site,
                    peer: peer?,
                    live: Mutex::new(Live::default()),
                    wake: Notify::new(),
                    full_asked: AtomicBool::new(false),
                    hierarchical_only: AtomicBool::new(false),
                    harvest_slots: Arc::new(Semaphore::new(opts.per_site.max(1))),
                }))
            })
            .collect::<Result<_, crate::sites::SitesError>>()?;
        let scu = ScuConfig {
            calling_ae: own_ae.to_owned(),
            connect_timeout: opts.connect_timeout,
            dimse_timeout: opts.dimse_timeout,
            operation_timeout: Duration::from_secs(600),
            ..ScuConfig::default()
        };
        let fetch_scu = ScuConfig { operation_timeout: Duration::from_secs(3600), ..scu.clone() };
        Ok(Arc::new(Federation {
            hub,
            states: States::open(app)?,
            scu,
            fetch_scu,
            own_ae: own_ae.to_owned(),
            prefetch: prefetch::Prefetch::new(),
            opts,
            runs,
            fetches: fetch::Fetches::default(),
            stopping: AtomicBool::new(false),
        }))
    }

    fn run_of(&self, code: &str) -> Option<&Arc<SiteRun>> {
        self.runs.iter().find(|r| r.site.code == code)
    }

    /// Every configured site's status (those without a PACS too).
    pub fn status(&self) -> Result<Vec<SiteStatus>, FedError> {
        let held = self.hub.index.counts_held()?;
        crate::sites::all()
            .iter()
            .map(|s| {
                let st = self.states.get(&s.code)?;
                let live = self.run_of(&s.code).map(|r| r.live().clone()).unwrap_or_default();
                Ok(SiteStatus {
                    code: s.code.clone(),
                    name: s.name.clone(),
                    issuer: s.issuer.clone(),
                    pacs: s.pacs().map(|(ae, h, p)| Peer::new(ae, h, p).to_string()),
                    retrieve: s.retrieve,
                    reachable: live.reachable,
                    syncing: live.syncing.is_some(),
                    progress: live.syncing,
                    last_sync: st.last_sync,
                    studies: held.get(&s.code).copied().unwrap_or(0),
                    watermark: st.watermark,
                    resumable: st.cursor.is_some(),
                    last_contact: live.last_contact,
                    last_error: live.last_error,
                    failures: live.failures,
                    next_sync: live.next_sync,
                    fetches: live.fetches,
                    fetches_failed: live.fetches_failed,
                    retrieves: live.retrieves,
                })
            })
            .collect()
    }

    /// Runs one harvest pass of a site now, in this task.
    pub async fn sync(self: &Arc<Self>, code: &str, full: bool) -> Result<LastSync, FedError> {
        let run = self.run_of(code).cloned().ok_or_else(|| FedError::NoSuchSite(code.to_owned()))?;
        {
            let mut l = run.live();
            if l.syncing.is_some() {
                return Err(FedError::Busy(code.to_owned()));
            }
            l.syncing = Some(Progress { full, ..Progress::default() });
        }
        let started = std::time::Instant::now();
        let result = harvest::run(self, &run, full).await;
        let mut l = run.live();
        l.syncing = None;
        match &result {
            Ok(r) => {
                l.reachable = Some(true);
                l.last_contact = Some(r.finished);
                l.failures = 0;
                tracing::info!(
                    site = code,
                    full = r.full,
                    seen = r.studies_seen,
                    changed = r.studies_changed,
                    added = r.instances_added,
                    refused = r.refused,
                    seconds = r.seconds,
                    "harvest done"
                );
            }
            Err(e) => {
                l.failures += 1;
                l.last_error = Some(e.to_string());
                if matches!(e, FedError::Site { .. }) {
                    l.reachable = Some(false);
                }
                tracing::warn!(site = code, error = %e, failures = l.failures, "harvest failed; it resumes where it stopped");
                drop(l);
                // The failure is part of the site's record, with where the pass had got to.
                if let Ok(mut st) = self.states.get(code) {
                    let c = st.cursor.as_ref();
                    st.last_sync = Some(LastSync {
                        finished: crate::ingest::now_ms(),
                        ok: false,
                        error: Some(e.to_string()),
                        full,
                        studies_seen: c.map_or(0, |c| c.studies_seen),
                        studies_changed: c.map_or(0, |c| c.studies_changed),
                        instances_added: c.map_or(0, |c| c.instances_added),
                        seconds: started.elapsed().as_secs_f64(),
                        ..LastSync::default()
                    });
                    let _ = self.states.put(code, &st);
                }
            }
        }
        result
    }

    /// Asks a site's scheduled task to harvest now (a full pass if `full`).
    /// False if that site has no PACS configured.
    pub fn request_sync(&self, code: &str, full: bool) -> bool {
        let Some(run) = self.run_of(code) else { return false };
        if full {
            run.full_asked.store(true, Ordering::SeqCst);
        }
        run.wake.notify_one();
        true
    }

    /// Starts each site's harvest task: a pass every interval (full ones
    /// every `full_every`), at once when asked or when a pass was
    /// interrupted, later after failures (backoff up to 30 minutes).
    pub fn start(self: &Arc<Self>) {
        for run in &self.runs {
            let (fed, run) = (self.clone(), run.clone());
            tokio::spawn(async move { fed.schedule(run).await });
        }
    }

    async fn schedule(self: Arc<Self>, run: Arc<SiteRun>) {
        let code = run.site.code.clone();
        let mut first = true;
        loop {
            let st = self.states.get(&code).unwrap_or_default();
            let now = crate::ingest::now_ms();
            let failures = run.live().failures;
            let wait_ms = if st.cursor.is_some() && failures == 0 && first {
                0
            } else if failures > 0 {
                // 10 s, 20 s, 40 s ... to 30 minutes.
                (10_000u64 << failures.min(8)).min(30 * 60_000)
            } else {
                match (self.opts.interval, &st.last_sync) {
                    (None, _) => u64::MAX,
                    (Some(_), None) => 0,
                    (Some(i), Some(l)) => (l.finished + i.as_millis() as u64).saturating_sub(now),
                }
            };
            first = false;
            run.live().next_sync = (wait_ms != u64::MAX).then(|| now.saturating_add(wait_ms));
            if wait_ms > 0 {
                let sleep = tokio::time::sleep(Duration::from_millis(wait_ms.min(24 * 3600 * 1000)));
                tokio::select! {
                    _ = sleep => {}
                    _ = run.wake.notified() => {}
                }
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let due_full = st.last_full.is_none_or(|t| crate::ingest::now_ms().saturating_sub(t) >= self.opts.full_every.as_millis() as u64);
            let full = run.full_asked.swap(false, Ordering::SeqCst) || due_full;
            let _ = self.sync(&code, full).await;
        }
    }

    /// Stops scheduling new passes (those under way end with the runtime).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for r in &self.runs {
            r.wake.notify_one();
        }
    }

    /// C-ECHO to a site's PACS: round trip in milliseconds, or why not.
    pub async fn echo(&self, code: &str) -> Result<f64, FedError> {
        let run = self.run_of(code).ok_or_else(|| FedError::NoSuchSite(code.to_owned()))?;
        let peer = run.peer();
        let t = std::time::Instant::now();
        let r = pacs_gateway::scu::echo(&self.scu, &peer).await;
        match r {
            Ok(a) if a.status.0 == 0 => {
                run.contact(true, None);
                Ok(t.elapsed().as_secs_f64() * 1e3)
            }
            Ok(a) => Err(FedError::Refused { site: code.to_owned(), status: a.status.0, comment: a.comment.unwrap_or_default() }),
            Err(e) => {
                run.contact(false, Some(e.to_string()));
                Err(FedError::Site { site: code.to_owned(), error: e })
            }
        }
    }

    /// Fetches under way.
    /// Whether an arrival of this study is radhub's own fetch from a site
    /// (a prior, a retrieve on demand) rather than a new examination.
    pub fn fetching(&self, study: &str) -> bool {
        self.fetches.has_study(study)
    }

    pub fn fetches_in_flight(&self) -> usize {
        self.fetches.in_flight()
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }
}

/// Studies indexed as held at each site (`Index::counts_held`).
pub type HeldCounts = HashMap<String, u64>;
