//! C-FIND: matches handed to the caller one at a time as they arrive.

use std::ops::ControlFlow;

use dicom_object::InMemDicomObject;

use super::link::{answer_of, expect_response, parse, Limits, Link};
use super::{Peer, ScuConfig, ScuError};
use crate::command::{field, tag, Command};
use crate::handler::Model;
use crate::identifier;
use crate::message::MAX_IDENTIFIER;
use crate::sop_classes::{self, UNCOMPRESSED};
use crate::status::{Category, Status};

/// How a C-FIND ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindOutcome {
    /// The final status (0000, FE00 after a cancel, or a failure).
    pub status: Status,
    pub comment: Option<String>,
    /// Matches handed to the callback.
    pub matches: usize,
    /// Whether the callback asked to stop (C-CANCEL was sent).
    pub cancelled: bool,
}

/// The C-FIND SOP class of a model.
pub(crate) fn find_class(model: Model) -> &'static str {
    match model {
        Model::PatientRoot => sop_classes::PATIENT_ROOT_FIND,
        Model::StudyRoot => sop_classes::STUDY_ROOT_FIND,
    }
}

/// One C-FIND on an association of its own. `identifier` holds the query
/// keys and Query/Retrieve Level. Each match goes to `on_match` as it
/// arrives (keep it quick: the association waits meanwhile); `Break` sends
/// C-CANCEL, and matches still in flight are dropped until the final response.
pub async fn find(
    cfg: &ScuConfig,
    peer: &Peer,
    model: Model,
    identifier: &InMemDicomObject,
    mut on_match: impl FnMut(InMemDicomObject) -> ControlFlow<()>,
) -> Result<FindOutcome, ScuError> {
    let class = find_class(model);
    let limits = Limits::new(cfg.dimse_timeout, cfg.operation_timeout);
    let late = || ScuError::timeout("end of the C-FIND", cfg.operation_timeout);
    let contexts = [(class.to_owned(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect())];
    let open = Link::open(cfg, peer, &contexts, &[], MAX_IDENTIFIER);
    let mut link = tokio::time::timeout_at(limits.deadline, open).await.map_err(|_| late())??;
    let r = tokio::time::timeout_at(limits.deadline, exchange(&mut link, &limits, class, identifier, &mut on_match)).await.unwrap_or_else(|_| Err(late()));
    link.finish(r).await
}

/// One association for many C-FINDs, one after another (a harvest's
/// series and image queries of one study): the association is set up once.
/// Each `find` has its own operation deadline; an error that ends the
/// association leaves it unusable (`find` then fails at once).
pub struct FindAssociation {
    link: Link,
    class: &'static str,
    lost: Option<String>,
}

impl FindAssociation {
    pub async fn connect(cfg: &ScuConfig, peer: &Peer, model: Model) -> Result<Self, ScuError> {
        let class = find_class(model);
        let contexts = [(class.to_owned(), UNCOMPRESSED.iter().map(|t| t.to_string()).collect())];
        let open = Link::open(cfg, peer, &contexts, &[], MAX_IDENTIFIER);
        let link = tokio::time::timeout(cfg.connect_timeout.max(cfg.dimse_timeout), open)
            .await
            .map_err(|_| ScuError::timeout("the association", cfg.connect_timeout))??;
        Ok(FindAssociation { link, class, lost: None })
    }

    /// As `find`, on this association.
    pub async fn find(
        &mut self,
        identifier: &InMemDicomObject,
        mut on_match: impl FnMut(InMemDicomObject) -> ControlFlow<()>,
    ) -> Result<FindOutcome, ScuError> {
        if let Some(why) = &self.lost {
            return Err(ScuError::Lost(why.clone()));
        }
        let cfg = &self.link.cfg;
        let limits = Limits::new(cfg.dimse_timeout, cfg.operation_timeout);
        let operation = cfg.operation_timeout;
        let r = tokio::time::timeout_at(limits.deadline, exchange(&mut self.link, &limits, self.class, identifier, &mut on_match))
            .await
            .unwrap_or_else(|_| Err(ScuError::timeout("end of the C-FIND", operation)));
        if let Err(e) = &r {
            if e.ends_association() {
                self.lost = Some(e.to_string());
            }
        }
        r
    }

    /// Releases the association (aborts it if it was lost).
    pub async fn release(self) {
        if self.lost.is_some() {
            self.link.abort().await;
        } else if let Err(e) = self.link.release().await {
            tracing::debug!(error = %e, "release after the C-FINDs failed");
        }
    }
}

async fn exchange(
    link: &mut Link,
    limits: &Limits,
    class: &str,
    identifier: &InMemDicomObject,
    on_match: &mut impl FnMut(InMemDicomObject) -> ControlFlow<()>,
) -> Result<FindOutcome, ScuError> {
    let pc = link.context(class)?;
    let data = identifier::encode(identifier, &pc.transfer_syntax).map_err(ScuError::Invalid)?;
    let id = link.next_id();
    let mut rq = Command::request(field::C_FIND_RQ, id, class, true);
    rq.set_u16(tag::PRIORITY, 0);
    link.send(pc.id, &rq, Some(&data)).await?;
    let (mut matches, mut cancelled) = (0, false);
    loop {
        let m = link.receive(limits, "C-FIND response").await?;
        expect_response(&m, pc.id, field::C_FIND_RSP, id, "C-FIND response")?;
        let answer = answer_of(&m.command)?;
        if answer.status.category() != Category::Pending {
            return Ok(FindOutcome { status: answer.status, comment: answer.comment, matches, cancelled });
        }
        if m.data_overflow {
            return Err(ScuError::Protocol(format!("a C-FIND match over {MAX_IDENTIFIER} bytes")));
        }
        let Some(data) = m.data else {
            return Err(ScuError::Protocol("a pending C-FIND response without an identifier".into()));
        };
        if cancelled {
            continue;
        }
        let found = parse(data, &pc.transfer_syntax).await?;
        matches += 1;
        if on_match(found).is_break() {
            link.send(pc.id, &Command::cancel(id), None).await?;
            cancelled = true;
        }
    }
}
