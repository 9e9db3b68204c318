//! Live query (opt-in per request): a study search sent to every site's
//! PACS at once, each with its own deadline; what they answer is merged by
//! Study Instance UID with the index's answer and tagged with the site,
//! and a site that says nothing in time is reported, never waited for.
//! Studies the index did not know yet are read deeper in the background
//! (series and images), so that opening one works moments later.

use std::sync::Arc;
use std::time::Duration;

use dicom_core::{Tag, VR};

use super::answers::{self, StudyAnswer};
use super::harvest;
use super::Federation;

/// One site's answer to a live query.
pub struct LiveStudy {
    pub site: String,
    /// The site PACS' AE title: where the study can be retrieved from.
    pub ae_title: String,
    pub study: StudyAnswer,
}

#[derive(Default)]
pub struct LiveAnswers {
    pub studies: Vec<LiveStudy>,
    /// (site, why) of each site that did not answer in time or failed.
    pub silent: Vec<(String, String)>,
}

impl Federation {
    /// Asks every site's PACS for the studies matching `keys`, each given
    /// `timeout`; at most `max` studies from each.
    pub async fn live_studies(self: &Arc<Self>, keys: &[(Tag, VR, String)], timeout: Duration, max: usize) -> LiveAnswers {
        let id_keys: Vec<(Tag, VR, &str)> = keys.iter().map(|(t, vr, v)| (*t, *vr, v.as_str())).collect();
        let id = answers::studies_matching(&id_keys);
        let mut tasks = tokio::task::JoinSet::new();
        for run in &self.runs {
            let (fed, run, id) = (self.clone(), run.clone(), id.clone());
            tasks.spawn(async move {
                let peer = run.peer();
                let r = tokio::time::timeout(timeout, harvest::find_all(&fed, &peer, id, max)).await;
                (run, r)
            });
        }
        let mut out = LiveAnswers::default();
        while let Some(done) = tasks.join_next().await {
            let Ok((run, r)) = done else { continue };
            let code = run.site.code.clone();
            let found = match r {
                Ok(Ok((found, _))) => {
                    run.contact(true, None);
                    found
                }
                Ok(Err(e)) => {
                    out.silent.push((code, e.to_string()));
                    continue;
                }
                Err(_) => {
                    out.silent.push((code, format!("no answer within {} ms", timeout.as_millis())));
                    continue;
                }
            };
            for o in found {
                let Ok(mut a) = answers::read_study(&o) else { continue };
                // Filed as a harvest would file it: another site's issuer stays out.
                let filing = crate::sites::file(Some(&code), &a.meta.issuer_of_patient_id);
                if filing.quarantined.is_some() {
                    continue;
                }
                a.meta.accession_issuer = crate::sites::accession_issuer(&filing.site, &a.meta.accession_issuer);
                a.meta.site = filing.site;
                a.meta.issuer = filing.issuer;
                out.studies.push(LiveStudy { site: code.clone(), ae_title: run.peer().ae_title, study: a });
            }
        }
        out
    }

    /// Reads a study a live query found (series, images) into the index,
    /// in the background: it is then held at its site like a harvested one.
    pub fn learn(self: &Arc<Self>, found: LiveStudy) {
        let Some(run) = self.run_of(&found.site).cloned() else { return };
        let fed = self.clone();
        tokio::spawn(async move {
            let peer = run.peer();
            let uid = found.study.meta.study_uid.clone();
            if let Err(e) = harvest::read_study(&fed, &run, &peer, found.study).await {
                tracing::warn!(study = %uid, site = %run.site.code, error = %e, "reading a study found by a live query failed");
            }
        });
    }
}
