//! Findings that must reach the referrer (RCR categories): critical (act
//! now), urgent, and unexpected significant. A radiologist flags a report;
//! who was told, how and when is recorded; a flag nobody has recorded as
//! communicated within its time is an escalation, listed for admins and the
//! referring site until someone records it.

use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Critical,
    Urgent,
    Unexpected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told {
    /// Whom: the referrer or who acted for them.
    pub who: String,
    /// How: phone, in person, bleep, secure message.
    pub how: String,
    pub when_ms: u64,
    /// The radhub user who recorded it.
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub report_id: u64,
    pub study_uid: String,
    pub site: String,
    pub category: Category,
    pub flagged_by: String,
    pub flagged_ms: u64,
    pub told: Option<Told>,
}

#[derive(Debug, thiserror::Error)]
pub enum FindingError {
    #[error("findings database: {0}")]
    Db(#[from] sled::Error),
    #[error("finding record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("report {0} has no flagged finding")]
    NotFlagged(u64),
    #[error("who was told and how are both needed")]
    Incomplete,
}

/// How long each category may wait to be communicated before it escalates.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub critical: std::time::Duration,
    pub urgent: std::time::Duration,
    pub unexpected: std::time::Duration,
}

impl Deadlines {
    fn of(&self, c: Category) -> u64 {
        let d = match c {
            Category::Critical => self.critical,
            Category::Urgent => self.urgent,
            Category::Unexpected => self.unexpected,
        };
        d.as_millis() as u64
    }
}

pub struct Findings {
    db: sled::Db,
    /// report id (big endian) → flag.
    tree: sled::Tree,
    pub deadlines: Deadlines,
}

impl Findings {
    pub fn new(db: &sled::Db, deadlines: Deadlines) -> Result<Self, FindingError> {
        Ok(Findings { db: db.clone(), tree: db.open_tree("findings")?, deadlines })
    }

    pub fn get(&self, report_id: u64) -> Result<Option<Flag>, FindingError> {
        Ok(match self.tree.get(report_id.to_be_bytes())? {
            Some(v) => Some(postcard::from_bytes(&v)?),
            None => None,
        })
    }

    fn put(&self, f: &Flag) -> Result<(), FindingError> {
        self.tree.insert(f.report_id.to_be_bytes(), postcard::to_stdvec(f)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Flags (or re-categorises) a report's finding; what was recorded as told stays.
    pub fn flag(&self, report_id: u64, study_uid: &str, site: &str, category: Category, by: &str) -> Result<Flag, FindingError> {
        let told = self.get(report_id)?.and_then(|f| f.told);
        let f = Flag { report_id, study_uid: study_uid.to_owned(), site: site.to_owned(), category, flagged_by: by.to_owned(), flagged_ms: now_ms(), told };
        self.put(&f)?;
        tracing::warn!(report = report_id, study = %study_uid, ?category, by, "finding flagged");
        Ok(f)
    }

    /// Records who was told, how, and when (now).
    pub fn told(&self, report_id: u64, who: &str, how: &str, by: &str) -> Result<Flag, FindingError> {
        if who.trim().is_empty() || how.trim().is_empty() {
            return Err(FindingError::Incomplete);
        }
        let mut f = self.get(report_id)?.ok_or(FindingError::NotFlagged(report_id))?;
        f.told = Some(Told { who: who.trim().to_owned(), how: how.trim().to_owned(), when_ms: now_ms(), by: by.to_owned() });
        self.put(&f)?;
        tracing::info!(report = report_id, who, how, by, "finding communicated");
        Ok(f)
    }

    /// Flags past their time with nobody recorded as told, most overdue first.
    pub fn escalations(&self, now: u64) -> Result<Vec<(Flag, u64)>, FindingError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            let f: Flag = postcard::from_bytes(&v)?;
            let due = f.flagged_ms + self.deadlines.of(f.category);
            if f.told.is_none() && now >= due {
                out.push((f, now - due));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_untold_finding_escalates_until_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Deadlines { critical: Duration::from_millis(0), urgent: Duration::from_secs(3600), unexpected: Duration::from_secs(7 * 86400) };
        let f = Findings::new(&db, d).unwrap();
        f.flag(1, "1.2.3", "RBD", Category::Critical, "ann").unwrap();
        f.flag(2, "1.2.4", "RD3", Category::Urgent, "ann").unwrap();
        let now = now_ms();
        let up: Vec<u64> = f.escalations(now).unwrap().iter().map(|(f, _)| f.report_id).collect();
        assert_eq!(up, [1], "the critical one at once; the urgent one not yet");
        assert_eq!(f.escalations(now + 3_600_000).unwrap().len(), 2);
        assert!(matches!(f.told(1, "", "phone", "ann"), Err(FindingError::Incomplete)));
        let t = f.told(1, "Dr Jones (ED registrar)", "phone", "ann").unwrap();
        assert_eq!(t.told.as_ref().map(|t| t.how.as_str()), Some("phone"));
        assert!(f.escalations(now).unwrap().is_empty());
        // Re-categorised, what was told stays.
        assert!(f.flag(1, "1.2.3", "RBD", Category::Urgent, "ann").unwrap().told.is_some());
        assert!(matches!(f.told(9, "x", "y", "ann"), Err(FindingError::NotFlagged(9))));
    }
}
