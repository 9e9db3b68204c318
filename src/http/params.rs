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

/// What a Range header (RFC 9110 14.2) asks of a representation `len` bytes long.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No range, or one radhub answers whole: several ranges, another
    /// unit, or a header that does not parse (RFC 9110 14.2: ignored).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// No byte of the representation is in the range: 416.
    Unsatisfiable,
}

pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return ByteRange::Whole };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return ByteRange::Whole };
    let num = |s: &str| if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse::<u64>().ok() };
    match (first.trim(), last.trim()) {
        // A suffix: the last n bytes.
        ("", n) => match num(n) {
            None => ByteRange::Whole,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part { start: len.saturating_sub(n), end: len - 1 },
        },
        (a, b) => match (num(a), if b.is_empty() { Some(None) } else { num(b).map(Some) }) {
            (Some(a), Some(b)) if b.is_some_and(|b| b < a) => ByteRange::Whole,
            (Some(a), _) if a >= len => ByteRange::Unsatisfiable,
            (Some(a), Some(b)) => ByteRange::Part { start: a, end: b.map_or(len - 1, |b| b.min(len - 1)) },
            _ => ByteRange::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_as_rfc_9110_reads_them() {
        use ByteRange::*;
        assert_eq!(byte_range(None, 10), Whole);
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Part { start: 0, end: 3 });
        assert_eq!(byte_range(Some("bytes=4-"), 10), Part { start: 4, end: 9 });
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Part { start: 8, end: 9 }, "the last position is capped at the length");
        assert_eq!(byte_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(byte_range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(byte_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), Whole, "several ranges: the whole");
        assert_eq!(byte_range(Some("bytes=5-2"), 10), Whole, "invalid: ignored");
        assert_eq!(byte_range(Some("items=0-1"), 10), Whole);
        assert_eq!(byte_range(Some("bytes=x-1"), 10), Whole);
        assert_eq!(byte_range(Some("bytes=+1-2"), 10), Whole);
    }
}
