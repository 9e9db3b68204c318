//! What a harvest remembers per site, durably (`<data>/app`, tree
//! `federation`): the newest date every earlier pass covered (the
//! watermark), where an unfinished pass had got to (so a crash resumes it),
//! and how the last one ended.

use serde::{Deserialize, Serialize};

/// How one harvest pass ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastSync {
    /// Milliseconds since the Unix epoch.
    pub finished: u64,
    pub ok: bool,
    pub error: Option<String>,
    pub full: bool,
    /// Studies the site answered, studies read deeper (new or changed),
    /// instances added to the index, studies refused (with why, a few).
    pub studies_seen: u64,
    pub studies_changed: u64,
    pub instances_added: u64,
    pub refused: u64,
    pub refusals: Vec<String>,
    pub seconds: f64,
}

/// A pass under way: its windows are done down to `next_end`'s day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub full: bool,
    pub started: u64,
    /// The newest date (YYYYMMDD) of the next window to ask for.
    pub next_end: String,
    /// Its width in days (widened over empty stretches).
    pub window_days: u32,
    /// Empty widest windows in a row so far (a full pass ends after two).
    pub empty_run: u32,
    pub studies_seen: u64,
    pub studies_changed: u64,
    pub instances_added: u64,
    /// The day the pass began: the watermark once it completes.
    pub today: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    /// Every study dated up to this day (YYYYMMDD) was harvested by a
    /// completed pass; a quick pass asks from a little before it.
    pub watermark: Option<String>,
    pub cursor: Option<Cursor>,
    pub last_sync: Option<LastSync>,
    /// When a full pass last completed (ms), to schedule the next.
    pub last_full: Option<u64>,
}

#[derive(Clone)]
pub struct States {
    tree: sled::Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("federation state: {0}")]
    Db(#[from] sled::Error),
    #[error("federation state of {site}: {source}")]
    Decode { site: String, source: serde_json::Error },
}

impl States {
    pub fn open(db: &sled::Db) -> Result<Self, StateError> {
        Ok(States { tree: db.open_tree("federation")? })
    }

    pub fn get(&self, site: &str) -> Result<SiteState, StateError> {
        match self.tree.get(site.as_bytes())? {
            Some(v) => serde_json::from_slice(&v).map_err(|source| StateError::Decode { site: site.to_owned(), source }),
            None => Ok(SiteState::default()),
        }
    }

    /// Saves a site's state durably (a pass resumes from what was saved).
    pub fn put(&self, site: &str, s: &SiteState) -> Result<(), StateError> {
        // Serialising a plain struct to JSON cannot fail.
        self.tree.insert(site.as_bytes(), serde_json::to_vec(s).unwrap_or_default())?;
        self.tree.flush()?;
        Ok(())
    }
}
