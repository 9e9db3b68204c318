//! Request parameters, checked before any handler sees them: UIDs in paths
//! must be what radhub accepts as UIDs (they never reach a file path, but
//! a clear 400 beats a confusing 404), and query strings must decode.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::{Problem, S};

/// Path parameters. Those named `study`, `series` and `instance` are
/// checked as UIDs.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

impl FromRequestParts<S> for Params {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let raw = RawPathParams::from_request_parts(parts, state).await.map_err(|e| Problem::bad_request(e.body_text()))?;
        let mut out = Vec::new();
        for (k, v) in raw.iter() {
            if matches!(k, "study" | "series" | "instance") {
                crate::dicom::scan::check_uid(v, "UID")
                    .map_err(|_| Problem::bad_request(format!("{k} {v:?} is not a UID (at most 64 printable characters, no backslash)")))?;
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(Params(out))
    }
}

/// A UID as one segment of a URL path: conformant UIDs (digits and dots)
/// as they are, anything else an archive holds percent-encoded.
pub fn uid_path(uid: &str) -> std::borrow::Cow<'_, str> {
    if uid.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c)) {
        return uid.into();
    }
    uid.bytes()
        .map(|c| if c.is_ascii_alphanumeric() || b"-._~".contains(&c) { char::from(c).to_string() } else { format!("%{c:02X}") })
        .collect::<String>()
        .into()
}

/// The query string as decoded (name, value) pairs, in order.
pub struct QueryPairs(pub Vec<(String, String)>);

impl FromRequestParts<S> for QueryPairs {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(q).map(QueryPairs).map_err(|e| Problem::bad_request(format!("query string: {e}")))
    }
}

impl QueryPairs {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
