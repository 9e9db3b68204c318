//! WADO-RS of a study held only at a site: the fetch is started (or
//! joined) and each instance served once it is durable here. A site that
//! cannot deliver answers 502 (or 504 when it is too slow) as
//! problem+json before anything else is sent.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::watch;

use super::params::Params;
use super::{Problem, S};
use crate::federation::{Failure, Federation, FetchState};
use crate::index::model::InstanceRecord;

pub fn problem(f: Failure) -> Problem {
    match f {
        Failure::Timeout(m) => Problem::new(StatusCode::GATEWAY_TIMEOUT, m),
        Failure::Unreachable(m) | Failure::Refused(m) | Failure::NotHeld(m) => Problem::new(StatusCode::BAD_GATEWAY, m),
    }
}

fn federation(state: &S) -> Result<Arc<Federation>, Problem> {
    state.federation.clone().ok_or_else(|| Problem::new(StatusCode::BAD_GATEWAY, "held only at its site, and this radhub is not connected to the sites' PACS"))
}

/// Makes sure what a path names (study, series or instance) is held here,
/// fetching it from its site first if need be.
pub async fn ensure_local(state: &S, p: &Params) -> Result<(), Problem> {
    let (study, series, instance) = (p.get("study").to_owned(), p.get("series").to_owned(), p.get("instance").to_owned());
    let st = state.clone();
    let (s, rec) = tokio::task::spawn_blocking(move || {
        let s = st.hub.index.study(&study)?;
        let rec = if instance.is_empty() { None } else { st.hub.index.instance(&instance)? };
        Ok::<_, crate::index::IndexError>((s, rec))
    })
    .await??;
    let Some(s) = s else { return Ok(()) };
    if s.is_local() {
        return Ok(());
    }
    let fed = federation(state)?;
    match rec {
        Some(r) if r.local => Ok(()),
        Some(r) => fed.local_instance(&r).await.map(drop).map_err(problem),
        None if p.get("instance").is_empty() => fed.local_scope(&s, (!series.is_empty()).then_some(series.as_str())).await.map_err(problem),
        // An instance not indexed: the handler's own 404.
        None => Ok(()),
    }
}

/// Makes sure a study's first series (in display order: its thumbnail's)
/// is held here.
pub async fn ensure_first_series(state: &S, study: &str) -> Result<(), Problem> {
    let (st, uid) = (state.clone(), study.to_owned());
    let found = tokio::task::spawn_blocking(move || {
        let Some(s) = st.hub.index.study(&uid)? else { return Ok(None) };
        let mut series = st.hub.index.series_of(&uid)?;
        crate::index::model::sort_series(&mut series);
        Ok::<_, crate::index::IndexError>(Some((s, series.into_iter().next())))
    })
    .await??;
    match found {
        Some((s, Some(first))) if first.local_instances < first.instances => federation(state)?.local_scope(&s, Some(&first.uid)).await.map_err(problem),
        _ => Ok(()),
    }
}

/// The instances of a retrieve in the order they become available: those
/// held here first, the rest as the fetch brings them.
pub struct Arrivals {
    state: S,
    pending: Vec<InstanceRecord>,
    fetch: Option<(Arc<Federation>, watch::Receiver<FetchState>)>,
}

impl Arrivals {
    /// Starts the fetch a remote-only part of `list` needs and waits for
    /// the first instance, so that a site unable to deliver is a problem
    /// answer rather than a broken body.
    pub async fn open(state: &S, study: &str, series: Option<&str>, list: Vec<InstanceRecord>) -> Result<(Self, Option<InstanceRecord>), Problem> {
        let mut a = Arrivals { state: state.clone(), pending: list, fetch: None };
        if a.pending.iter().any(|r| !r.local) {
            let fed = federation(state)?;
            let (st, uid) = (state.clone(), study.to_owned());
            let s = tokio::task::spawn_blocking(move || st.hub.index.study(&uid)).await??.ok_or_else(|| Problem::not_found("no such study"))?;
            let rx = fed.fetch(&s, series);
            a.fetch = Some((fed, rx));
        }
        let first = a.next().await.transpose().map_err(problem)?;
        Ok((a, first))
    }

    /// The next instance held here, waiting for the fetch if need be;
    /// `None` when every one has been handed out.
    pub async fn next(&mut self) -> Option<Result<InstanceRecord, Failure>> {
        if self.pending.is_empty() {
            return None;
        }
        let deadline = self.fetch.as_ref().map(|(f, _)| tokio::time::Instant::now() + f.options().fetch_wait);
        loop {
            match self.take_local().await {
                Ok(Some(r)) => return Some(Ok(r)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let Some((_, rx)) = self.fetch.as_mut() else {
                return Some(Err(Failure::Refused("an instance of this study is held only at its site".into())));
            };
            let done = rx.borrow().done.clone();
            if let Some(done) = done {
                // One more look: the last arrivals may have come with the end.
                return match self.take_local().await {
                    Ok(Some(r)) => Some(Ok(r)),
                    Ok(None) => Some(Err(done.err().unwrap_or_else(|| Failure::Refused(format!("the site did not send {} instances", self.pending.len()))))),
                    Err(e) => Some(Err(e)),
                };
            }
            let wait = rx.changed();
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, wait).await {
                    Ok(Ok(())) => {}
                    // The fetch ended (its last state stays readable).
                    Ok(Err(_)) => {
                        if self.take_local().await.ok().flatten().is_none() {
                            return Some(Err(Failure::Refused(format!("the site did not send {} instances", self.pending.len()))));
                        }
                    }
                    Err(_) => return Some(Err(Failure::Timeout("the rest of the study did not arrive from its site in time".into()))),
                },
                None => return Some(Err(Failure::Refused("held only at its site".into()))),
            }
        }
    }

    /// Removes and returns the first pending instance now held here.
    async fn take_local(&mut self) -> Result<Option<InstanceRecord>, Failure> {
        if let Some(i) = self.pending.iter().position(|r| r.local) {
            return Ok(Some(self.pending.remove(i)));
        }
        let st = self.state.clone();
        let sops: Vec<String> = self.pending.iter().map(|r| r.sop_uid.clone()).collect();
        let found = tokio::task::spawn_blocking(move || {
            for (i, sop) in sops.iter().enumerate() {
                if let Some(r) = st.hub.index.instance(sop)?.filter(|r| r.local) {
                    return Ok(Some((i, r)));
                }
            }
            Ok::<_, crate::index::IndexError>(None)
        })
        .await
        .map_err(|e| Failure::Refused(e.to_string()))?
        .map_err(|e| Failure::Refused(e.to_string()))?;
        Ok(found.map(|(i, r)| {
            self.pending.remove(i);
            r
        }))
    }
}
