//! multipart/related (RFC 2387) bodies, read for STOW-RS and written for
//! WADO-RS, and the media types of Content-Type and Accept headers.

/// A media type with its parameters (names lower-cased, values unquoted).
#[derive(Clone, Debug, PartialEq)]
pub struct Media {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl Media {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The q-value of an Accept entry.
    pub fn q(&self) -> f32 {
        self.param("q").and_then(|q| q.parse().ok()).unwrap_or(1.0)
    }
}

/// One media type, as in Content-Type.
pub fn media(s: &str) -> Option<Media> {
    let mut it = split_unquoted(s, ';').into_iter();
    let mime = it.next()?.trim().to_ascii_lowercase();
    if !mime.contains('/') {
        return None;
    }
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
        })
        .collect();
    Some(Media { mime, params })
}

/// The media ranges of an Accept header, best first (stable for equal q).
pub fn accept(s: &str) -> Vec<Media> {
    let mut v: Vec<Media> = split_unquoted(s, ',').iter().filter_map(|m| media(m)).filter(|m| m.q() > 0.0).collect();
    v.sort_by(|a, b| b.q().total_cmp(&a.q()));
    v
}

/// Splits on `sep` outside double quotes (a boundary may contain ',' or ';').
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

pub struct Part<'a> {
    pub content_type: Option<Media>,
    pub body: &'a [u8],
}

/// The parts of a multipart body. Refuses a body without its closing
/// delimiter (a cut-off upload) rather than storing a truncated last part.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary must be 1 to 70 characters".into());
    }
    // A delimiter is CRLF "--" boundary; the first may open the body.
    let delim = format!("\r\n--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut pos = if body.starts_with(&delim.as_bytes()[2..]) { 0 } else { finder.find(body).ok_or("no multipart boundary found in the body")? + 2 };
    let mut parts = Vec::new();
    loop {
        // `pos` is at "--boundary".
        let after = pos + delim.len() - 2;
        let rest = &body[after..];
        if rest.starts_with(b"--") {
            return if parts.is_empty() { Err("the multipart body has no parts".into()) } else { Ok(parts) };
        }
        // Transport padding, then the line break ending the delimiter line.
        let eol = memchr::memmem::find(rest, b"\r\n").ok_or("multipart delimiter line not ended")?;
        if !rest[..eol].iter().all(|&c| c == b' ' || c == b'\t') {
            return Err("text after a multipart delimiter".into());
        }
        let start = after + eol + 2;
        let next = finder.find(&body[start..]).map(|p| start + p).ok_or("the multipart body ends without its closing delimiter")?;
        let part = &body[start..next];
        let head_end = if part.starts_with(b"\r\n") { Some((0, 2)) } else { memchr::memmem::find(part, b"\r\n\r\n").map(|p| (p, p + 4)) };
        let (head, content) = match head_end {
            Some((h, c)) => (&part[..h], &part[c..]),
            None => return Err("multipart part without a blank line after its headers".into()),
        };
        let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not text")?;
        let mut content_type = None;
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or("malformed multipart part header")?;
            if name.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(media(value).ok_or("malformed Content-Type in a multipart part")?);
            }
        }
        parts.push(Part { content_type, body: content });
        pos = next + 2;
    }
}

/// A fresh boundary: random, so no part's content can contain it by chance.
pub fn new_boundary() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    format!("radhub-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// A boundary fixed by `seed` (an answer's entity tag), so that an
/// immutable answer is the same bytes each time: a strong ETag and byte
/// ranges need that. The seed comes from the content's hash, so content
/// cannot be made to contain its own boundary.
pub fn boundary_from(seed: &str) -> String {
    format!("radhub-{}", &blake3::hash(seed.as_bytes()).to_hex()[..32])
}

/// The header of one part; `extra` lines are complete ("Name: value").
pub fn part_head(boundary: &str, content_type: &str, extra: &[String]) -> Vec<u8> {
    let mut h = format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n");
    for e in extra {
        h.push_str(e);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

pub fn closing(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

/// The Content-Type of a multipart/related answer whose parts are `kind`.
pub fn related(boundary: &str, kind: &str) -> String {
    format!("multipart/related; type=\"{kind}\"; boundary={boundary}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_and_refuses_cut_bodies() {
        let body = b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nB\r\nB\r\n--b1--\r\n";
        let parts = parse(body, "b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"AAA");
        assert_eq!(parts[1].body, b"B\r\nB");
        assert_eq!(parts[0].content_type.as_ref().unwrap().mime, "application/dicom");
        assert!(parse(&body[..body.len() - 10], "b1").is_err());
        assert!(parse(b"no delimiters at all", "b1").is_err());
        assert!(parse(b"--b1--\r\n", "b1").is_err());
        assert!(parse(b"--b1\r\nContent-Type application/dicom\r\n\r\nX\r\n--b1--", "b1").is_err());
        // The boundary inside content, not after a line break, is content.
        let inner = b"--b1\r\nContent-Type: application/dicom\r\n\r\nA--b1B\r\n--b1--";
        assert_eq!(parse(inner, "b1").unwrap()[0].body, b"A--b1B");
    }

    #[test]
    fn media_types_and_accept() {
        let m = media("Multipart/Related; type=\"application/dicom\"; boundary=\"a;b,c\"").unwrap();
        assert_eq!(m.mime, "multipart/related");
        assert_eq!(m.param("type"), Some("application/dicom"));
        assert_eq!(m.param("boundary"), Some("a;b,c"));
        let a = accept("image/png;q=0.5, multipart/related; type=\"application/octet-stream\"; transfer-syntax=*");
        assert_eq!(a[0].mime, "multipart/related");
        assert_eq!(a[0].param("transfer-syntax"), Some("*"));
        assert_eq!(a[1].mime, "image/png");
        assert!(accept("image/png;q=0").is_empty(), "q=0 means not acceptable");
    }

    #[test]
    fn written_bodies_parse_back() {
        let b = new_boundary();
        let mut body = part_head(&b, "application/dicom", &[]);
        body.extend_from_slice(b"X\r\n--Y");
        body.extend(closing(&b));
        let parts = parse(&body, &b).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, b"X\r\n--Y");
    }
}
