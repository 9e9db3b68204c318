//! Users, roles, sessions and API tokens.
//!
//! Passwords are stored as argon2id PHC strings. Session and API tokens are
//! 256-bit random values given to the client once; radhub keeps only their
//! BLAKE3 hashes, so a copy of the database grants no access. Every request
//! re-reads the user, so disabling a user ends their sessions and tokens at
//! once. Failed sign-ins are throttled per user name and per client address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::ingest::now_ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Views images and reports.
    Clinician,
    /// Views, and reports studies.
    Radiologist,
    /// Manages users and the hub.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Clinician, Role::Radiologist, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Radiologist => "radiologist",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct UserRecord {
    name: String,
    role: Role,
    disabled: bool,
    created_ms: u64,
    /// argon2id PHC string.
    password: String,
}

/// A user as shown to admins: never the password hash.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_ms: u64,
    pub tokens: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionRecord {
    user: String,
    expires_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    user: String,
    label: String,
    created_ms: u64,
    expires_ms: u64,
}

/// A token record from before tokens expired: read as expiring
/// `TOKEN_TTL` after it was made.
#[derive(Deserialize)]
struct TokenRecordV1 {
    user: String,
    label: String,
    created_ms: u64,
}

fn token_record(bytes: &[u8]) -> Result<TokenRecord, AuthError> {
    match postcard::from_bytes::<TokenRecord>(bytes) {
        Ok(t) => Ok(t),
        Err(_) => {
            let o: TokenRecordV1 = postcard::from_bytes(bytes)?;
            Ok(TokenRecord { expires_ms: o.created_ms + TOKEN_TTL.as_millis() as u64, user: o.user, label: o.label, created_ms: o.created_ms })
        }
    }
}

/// Who a request acts for.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("user database: {0}")]
    Db(#[from] sled::Error),
    #[error("user record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("a user named {0:?} exists already")]
    Exists(String),
    #[error("user names are 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName,
    #[error("passwords need at least {MIN_PASSWORD} characters")]
    WeakPassword,
    #[error("password hashing: {0}")]
    Hash(String),
}

/// Why a sign-in failed. Deliberately silent on whether the user exists.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong user name or password, or the user is disabled")]
    Invalid,
    #[error("too many failed sign-ins; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

pub const MIN_PASSWORD: usize = 8;
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long an API token lasts unless made for less.
pub const TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The longest an API token may be made for.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Failures allowed before each further attempt must wait.
const FREE_FAILURES: u32 = 5;
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Past this many throttle records, those not locked out are forgotten.
const MAX_THROTTLE_ENTRIES: usize = 10_000;

#[derive(Default)]
struct Strikes {
    failures: u32,
    until: Option<Instant>,
}

pub struct Auth {
    users: sled::Tree,
    sessions: sled::Tree,
    tokens: sled::Tree,
    throttle: Mutex<HashMap<String, Strikes>>,
    /// Verified against when the user does not exist, so that the answer
    /// takes as long as for a wrong password.
    decoy: String,
}

impl Auth {
    /// Users, sessions and tokens in the hub's application database.
    pub fn new(db: &sled::Db) -> Result<Self, AuthError> {
        let decoy = hash_password("radhub decoy password")?;
        Ok(Auth {
            users: db.open_tree("users")?,
            sessions: db.open_tree("sessions")?,
            tokens: db.open_tree("tokens")?,
            throttle: Mutex::new(HashMap::new()),
            decoy,
        })
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, AuthError> {
        Ok(match self.users.get(name)? {
            Some(v) => Some(postcard::from_bytes(&v)?),
            None => None,
        })
    }

    fn put(&self, u: &UserRecord) -> Result<(), AuthError> {
        self.users.insert(u.name.as_bytes(), postcard::to_stdvec(u)?)?;
        self.users.flush()?;
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<UserRecord, AuthError> {
        self.user(name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_owned()))
    }

    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadName);
        }
        if self.user(name)?.is_some() {
            return Err(AuthError::Exists(name.to_owned()));
        }
        let password = hash_password(checked(password)?)?;
        self.put(&UserRecord { name: name.to_owned(), role, disabled: false, created_ms: now_ms(), password })
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let mut u = self.existing(name)?;
        u.password = hash_password(checked(password)?)?;
        self.put(&u)?;
        // A new password ends the sessions begun with the old one, and the
        // tokens they could have made.
        self.drop_sessions(name)?;
        self.revoke_tokens(name).map(|_| ())
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), AuthError> {
        let mut u = self.existing(name)?;
        u.disabled = disabled;
        self.put(&u)?;
        if disabled {
            self.drop_sessions(name)?;
        }
        Ok(())
    }

    pub fn set_role(&self, name: &str, role: Role) -> Result<(), AuthError> {
        let mut u = self.existing(name)?;
        u.role = role;
        self.put(&u)
    }

    pub fn list(&self) -> Result<Vec<UserView>, AuthError> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let now = now_ms();
        for kv in self.tokens.iter() {
            let t = token_record(&kv?.1)?;
            if t.expires_ms > now {
                *counts.entry(t.user).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for kv in self.users.iter() {
            let u: UserRecord = postcard::from_bytes(&kv?.1)?;
            let tokens = counts.get(&u.name).copied().unwrap_or(0);
            out.push(UserView { name: u.name, role: u.role, disabled: u.disabled, created_ms: u.created_ms, tokens });
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<Option<UserView>, AuthError> {
        Ok(self.list()?.into_iter().find(|u| u.name == name))
    }

    /// Checks a password, throttled by user name and `client` (an address).
    /// Slow on purpose (argon2): call it off the async runtime.
    pub fn sign_in(&self, name: &str, password: &str, client: &str) -> Result<(String, Principal), SignInError> {
        let u = self.check_password(name, password, client)?;
        let token = new_secret("rs_");
        let rec = SessionRecord { user: u.name.clone(), expires_ms: now_ms() + SESSION_TTL.as_millis() as u64 };
        self.sessions.insert(hash_token(&token), postcard::to_stdvec(&rec).map_err(AuthError::from)?).map_err(AuthError::from)?;
        self.sessions.flush().map_err(AuthError::from)?;
        tracing::info!(user = %u.name, %client, "signed in");
        Ok((token, Principal { user: u.name, role: u.role }))
    }

    /// A new API token for a signed-in user who gives their password again
    /// (a stolen session alone cannot mint a lasting credential), lasting
    /// `ttl` (at most `MAX_TOKEN_TTL`). Throttled as sign-in is.
    pub fn new_token_checked(&self, name: &str, password: &str, label: &str, ttl: Duration, client: &str) -> Result<(String, u64), SignInError> {
        self.check_password(name, password, client)?;
        Ok(self.new_token_for(name, label, ttl)?)
    }

    /// The user whose password this is, throttled by name and `client`.
    fn check_password(&self, name: &str, password: &str, client: &str) -> Result<UserRecord, SignInError> {
        // Names that could never be a user's are not keyed (nor logged raw).
        let plausible = valid_name(name);
        let mut keys = vec![format!("addr:{client}")];
        if plausible {
            keys.push(format!("user:{}", name.to_ascii_lowercase()));
        }
        // The attempt counts before the slow check, so that guesses made in
        // parallel see each other; a success takes it back.
        self.admit(&keys)?;
        let user = if plausible { self.user(name)? } else { None };
        let ok = match &user {
            Some(u) => verify_password(&u.password, password) && !u.disabled,
            None => {
                verify_password(&self.decoy, password);
                false
            }
        };
        let Some(u) = user.filter(|_| ok) else {
            tracing::warn!(user = %if plausible { name } else { "(not a user name)" }, %client, "failed password check");
            return Err(SignInError::Invalid);
        };
        self.refund(&keys);
        Ok(u)
    }

    /// The user a session cookie belongs to, if the session is live.
    pub fn session(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let key = hash_token(token);
        let Some(v) = self.sessions.get(key)? else { return Ok(None) };
        let s: SessionRecord = postcard::from_bytes(&v)?;
        if s.expires_ms <= now_ms() {
            self.sessions.remove(key)?;
            return Ok(None);
        }
        self.principal(&s.user)
    }

    pub fn sign_out(&self, token: &str) -> Result<(), AuthError> {
        self.sessions.remove(hash_token(token))?;
        Ok(())
    }

    /// A new API token for `name` lasting `TOKEN_TTL`, shown once (the
    /// admin CLI, on the hub's own machine).
    pub fn new_token(&self, name: &str, label: &str) -> Result<String, AuthError> {
        self.new_token_for(name, label, TOKEN_TTL).map(|(t, _)| t)
    }

    /// A new token and when it expires (ms since the epoch).
    fn new_token_for(&self, name: &str, label: &str, ttl: Duration) -> Result<(String, u64), AuthError> {
        self.existing(name)?;
        let token = new_secret("rt_");
        let now = now_ms();
        let expires_ms = now + ttl.min(MAX_TOKEN_TTL).as_millis() as u64;
        let rec = TokenRecord { user: name.to_owned(), label: label.to_owned(), created_ms: now, expires_ms };
        self.tokens.insert(hash_token(&token), postcard::to_stdvec(&rec)?)?;
        self.tokens.flush()?;
        Ok((token, expires_ms))
    }

    /// The user a bearer token belongs to, while it lasts.
    pub fn bearer(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let key = hash_token(token);
        let Some(v) = self.tokens.get(key)? else { return Ok(None) };
        let t = token_record(&v)?;
        if t.expires_ms <= now_ms() {
            self.tokens.remove(key)?;
            return Ok(None);
        }
        self.principal(&t.user)
    }

    /// Removes every API token of `name`; returns how many.
    pub fn revoke_tokens(&self, name: &str) -> Result<usize, AuthError> {
        let mut n = 0;
        for kv in self.tokens.iter() {
            let (k, v) = kv?;
            let t = token_record(&v)?;
            if t.user == name {
                self.tokens.remove(k)?;
                n += 1;
            }
        }
        self.tokens.flush()?;
        Ok(n)
    }

    fn principal(&self, name: &str) -> Result<Option<Principal>, AuthError> {
        Ok(self.user(name)?.filter(|u| !u.disabled).map(|u| Principal { user: u.name, role: u.role }))
    }

    fn drop_sessions(&self, name: &str) -> Result<(), AuthError> {
        for kv in self.sessions.iter() {
            let (k, v) = kv?;
            let s: SessionRecord = postcard::from_bytes(&v)?;
            if s.user == name {
                self.sessions.remove(k)?;
            }
        }
        self.sessions.flush()?;
        Ok(())
    }

    /// Refuses while any key is locked out; otherwise counts the attempt.
    fn admit(&self, keys: &[String]) -> Result<(), SignInError> {
        let now = Instant::now();
        let mut map = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > MAX_THROTTLE_ENTRIES {
            map.retain(|_, s| s.until.is_some_and(|u| u > now));
        }
        if let Some(w) = keys.iter().filter_map(|k| map.get(k)?.until).filter(|&u| u > now).map(|u| u - now).max() {
            return Err(SignInError::Throttled(w));
        }
        for k in keys {
            let s = map.entry(k.clone()).or_default();
            s.failures += 1;
            if s.failures >= FREE_FAILURES {
                // 1 s after the fifth failure, doubling up to 15 minutes.
                let exp = (s.failures - FREE_FAILURES).min(10);
                s.until = Some(now + Duration::from_secs(1 << exp).min(MAX_LOCKOUT));
            }
        }
        Ok(())
    }

    /// A success: the user's record is cleared, the address's attempt taken back.
    fn refund(&self, keys: &[String]) {
        let mut map = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if k.starts_with("user:") {
                map.remove(k);
            } else if let Some(s) = map.get_mut(k) {
                s.failures = s.failures.saturating_sub(1);
                if s.failures < FREE_FAILURES {
                    s.until = None;
                }
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-@".contains(&c))
}

fn checked(password: &str) -> Result<&str, AuthError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AuthError::WeakPassword);
    }
    Ok(password)
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| AuthError::Hash(e.to_string()))?.to_string())
}

fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A fresh random secret, for a process's own use (the control token).
pub fn random_token() -> String {
    new_secret("rhc_")
}

fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    // The OS random source failing is not something to serve through.
    getrandom::fill(&mut b).expect("the operating system's random source");
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn hash_token(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_sessions_tokens_and_throttling() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(&sled::open(dir.path()).unwrap()).unwrap();
        auth.add_user("ann", Role::Radiologist, "correct horse").unwrap();
        assert!(matches!(auth.add_user("ann", Role::Admin, "another one"), Err(AuthError::Exists(_))));
        assert!(matches!(auth.add_user("../x", Role::Admin, "another one"), Err(AuthError::BadName)));
        assert!(matches!(auth.add_user("bob", Role::Admin, "short"), Err(AuthError::WeakPassword)));

        let (session, p) = auth.sign_in("ann", "correct horse", "1.2.3.4").unwrap();
        assert_eq!(p.role, Role::Radiologist);
        assert_eq!(auth.session(&session).unwrap().unwrap().user, "ann");
        assert!(auth.session("rs_forged").unwrap().is_none());
        let token = auth.new_token("ann", "pacs script").unwrap();
        assert_eq!(auth.bearer(&token).unwrap().unwrap().user, "ann");

        // Disabling ends sessions and tokens at once.
        auth.set_disabled("ann", true).unwrap();
        assert!(auth.session(&session).unwrap().is_none());
        assert!(auth.bearer(&token).unwrap().is_none());
        assert!(matches!(auth.sign_in("ann", "correct horse", "1.2.3.4"), Err(SignInError::Invalid)));
        auth.set_disabled("ann", false).unwrap();
        assert!(auth.bearer(&token).unwrap().is_some());

        // Five failures for one user (the disabled sign-in above was one), then
        // a wait even for the right password from another address.
        for _ in 1..FREE_FAILURES {
            assert!(matches!(auth.sign_in("ann", "wrong password", "5.6.7.8"), Err(SignInError::Invalid)));
        }
        assert!(matches!(auth.sign_in("ann", "correct horse", "9.9.9.9"), Err(SignInError::Throttled(_))));
        assert_eq!(auth.revoke_tokens("ann").unwrap(), 1);
        assert!(auth.bearer(&token).unwrap().is_none());

        // A new password ends tokens made before it.
        let token = auth.new_token("ann", "").unwrap();
        auth.set_password("ann", "battery staple").unwrap();
        assert!(auth.bearer(&token).unwrap().is_none());

        // Minting a token needs the password (ann is locked out for a while: another user), and a token expires.
        auth.add_user("cat", Role::Clinician, "cat's password").unwrap();
        assert!(matches!(auth.new_token_checked("cat", "not the password", "", TOKEN_TTL, "3.3.3.3"), Err(SignInError::Invalid)));
        let (token, expires) = auth.new_token_checked("cat", "cat's password", "script", Duration::from_secs(3600), "3.3.3.3").unwrap();
        assert!(auth.bearer(&token).unwrap().is_some());
        assert!(expires <= now_ms() + 3_600_000);
        let (short, _) = auth.new_token_for("cat", "", Duration::ZERO).unwrap();
        assert!(auth.bearer(&short).unwrap().is_none(), "an expired token is no token");
        // Tokens made before tokens expired still read, and now expire.
        let old = postcard::to_stdvec(&("ann".to_owned(), "old".to_owned(), now_ms())).unwrap();
        auth.tokens.insert(hash_token("rt_old"), old).unwrap();
        assert!(auth.bearer("rt_old").unwrap().is_some());

        // Names no user could have are refused without being remembered.
        let long = "x".repeat(100_000);
        assert!(matches!(auth.sign_in(&long, "whatever1", "7.7.7.7"), Err(SignInError::Invalid)));
        assert!(!auth.throttle.lock().unwrap().keys().any(|k| k.len() > 100));
    }
}
