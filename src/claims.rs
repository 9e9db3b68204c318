//! Claims: a radiologist takes a study before reporting it, so that two
//! never report one study at once. A claim is a lease: it lapses unless
//! renewed (each edit of the draft renews it), ends on sign-off or by its
//! holder's hand, and an admin can break it. Every change is one
//! compare-and-swap on the study's entry: of two claims at once exactly
//! one wins, and the loser is told who holds it.

use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub study_uid: String,
    pub by: String,
    /// When this holder first took it (kept across renewals).
    pub since_ms: u64,
    pub expires_ms: u64,
}

impl Claim {
    fn live(&self, now: u64) -> bool {
        self.expires_ms > now
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("claims database: {0}")]
    Db(#[from] sled::Error),
    #[error("claim record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("study {} is claimed by {} until {}", .0.study_uid, .0.by, crate::dates::iso_ms(.0.expires_ms))]
    Held(Claim),
    #[error("study {0} is not claimed by {1}")]
    NotHolder(String, String),
}

pub struct Claims {
    tree: sled::Tree,
    db: sled::Db,
    lease_ms: u64,
}

impl Claims {
    pub fn new(db: &sled::Db, lease: std::time::Duration) -> Result<Self, ClaimError> {
        Ok(Claims { tree: db.open_tree("claims")?, db: db.clone(), lease_ms: lease.as_millis().max(1) as u64 })
    }

    /// The live claim on a study, if any.
    pub fn get(&self, study_uid: &str) -> Result<Option<Claim>, ClaimError> {
        let now = now_ms();
        Ok(self.read(study_uid)?.map(|(_, c)| c).filter(|c| c.live(now)))
    }

    /// Every live claim's holder, by study (a worklist answer shows them).
    pub fn holders(&self) -> Result<std::collections::HashMap<String, String>, ClaimError> {
        let now = now_ms();
        let mut out = std::collections::HashMap::new();
        for kv in self.tree.iter() {
            let c: Claim = postcard::from_bytes(&kv?.1)?;
            if c.live(now) {
                out.insert(c.study_uid, c.by);
            }
        }
        Ok(out)
    }

    fn read(&self, study_uid: &str) -> Result<Option<(sled::IVec, Claim)>, ClaimError> {
        match self.tree.get(study_uid.as_bytes())? {
            Some(raw) => {
                let c = postcard::from_bytes(&raw)?;
                Ok(Some((raw, c)))
            }
            None => Ok(None),
        }
    }

    /// Takes (or renews) `user`'s claim on a study for one lease from now;
    /// refused while someone else's claim is live.
    pub fn claim(&self, study_uid: &str, user: &str) -> Result<Claim, ClaimError> {
        loop {
            let now = now_ms();
            let old = self.read(study_uid)?;
            let since_ms = match &old {
                Some((_, c)) if c.live(now) && c.by != user => return Err(ClaimError::Held(c.clone())),
                Some((_, c)) if c.live(now) => c.since_ms,
                _ => now,
            };
            let new = Claim { study_uid: study_uid.to_owned(), by: user.to_owned(), since_ms, expires_ms: now + self.lease_ms };
            let swapped = self.tree.compare_and_swap(study_uid.as_bytes(), old.map(|(raw, _)| raw), Some(postcard::to_stdvec(&new)?))?;
            if swapped.is_ok() {
                self.db.flush()?;
                if since_ms == now {
                    tracing::info!(study = %study_uid, by = %user, "study claimed");
                }
                return Ok(new);
            }
            // Someone changed it between the look and the swap: look again.
        }
    }

    /// Renews a claim `user` holds; unlike `claim`, never takes one afresh.
    pub fn renew(&self, study_uid: &str, user: &str) -> Result<Claim, ClaimError> {
        match self.get(study_uid)? {
            Some(c) if c.by == user => self.claim(study_uid, user),
            Some(c) => Err(ClaimError::Held(c)),
            None => Err(ClaimError::NotHolder(study_uid.to_owned(), user.to_owned())),
        }
    }

    /// Ends a claim: by its holder (`by` = holder), or broken by an admin
    /// (`by` = None). Ending a claim that has lapsed or never was is no error.
    pub fn release(&self, study_uid: &str, by: Option<&str>) -> Result<Option<Claim>, ClaimError> {
        loop {
            let Some((raw, c)) = self.read(study_uid)? else { return Ok(None) };
            if let Some(user) = by {
                if c.live(now_ms()) && c.by != user {
                    return Err(ClaimError::Held(c));
                }
            }
            if self.tree.compare_and_swap(study_uid.as_bytes(), Some(raw), None::<Vec<u8>>)?.is_ok() {
                self.db.flush()?;
                match by {
                    Some(user) => tracing::info!(study = %study_uid, by = %user, "claim released"),
                    None => tracing::warn!(study = %study_uid, holder = %c.by, "claim broken by an admin"),
                }
                return Ok(Some(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(lease_ms: u64) -> (tempfile::TempDir, Claims) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let c = Claims::new(&db, std::time::Duration::from_millis(lease_ms)).unwrap();
        (dir, c)
    }

    #[test]
    fn a_claim_is_held_renewed_released_and_broken() {
        let (_d, c) = claims(60_000);
        let first = c.claim("1.2.3", "ann").unwrap();
        match c.claim("1.2.3", "bob") {
            Err(ClaimError::Held(h)) => assert_eq!(h.by, "ann"),
            other => panic!("{other:?}"),
        }
        let again = c.renew("1.2.3", "ann").unwrap();
        assert_eq!(again.since_ms, first.since_ms);
        assert!(again.expires_ms >= first.expires_ms);
        assert!(matches!(c.renew("1.2.3", "bob"), Err(ClaimError::Held(_))));
        assert!(matches!(c.release("1.2.3", Some("bob")), Err(ClaimError::Held(_))));
        assert_eq!(c.release("1.2.3", Some("ann")).unwrap().map(|c| c.by), Some("ann".into()));
        assert_eq!(c.get("1.2.3").unwrap(), None);
        assert!(matches!(c.renew("1.2.3", "ann"), Err(ClaimError::NotHolder(..))));
        c.claim("1.2.3", "bob").unwrap();
        assert_eq!(c.release("1.2.3", None).unwrap().map(|c| c.by), Some("bob".into()));
        c.claim("1.2.3", "ann").unwrap();
    }

    #[test]
    fn a_lapsed_claim_can_be_taken() {
        let (_d, c) = claims(30);
        c.claim("1.2.3", "ann").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(c.get("1.2.3").unwrap(), None);
        let taken = c.claim("1.2.3", "bob").unwrap();
        assert_eq!(taken.by, "bob");
    }

    #[test]
    fn of_many_claims_at_once_exactly_one_wins() {
        let (_d, c) = claims(60_000);
        for round in 0..20 {
            let study = format!("1.2.{round}");
            let won: Vec<String> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|i| {
                        s.spawn({
                            let (c, study) = (&c, &study);
                            move || c.claim(study, &format!("r{i}")).ok().map(|c| c.by)
                        })
                    })
                    .collect();
                hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(won.len(), 1, "round {round}: {won:?}");
            assert_eq!(c.get(&study).unwrap().map(|c| c.by), Some(won[0].clone()));
        }
    }
}
