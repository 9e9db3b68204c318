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

/// What a multipart body brings, in order, as `Splitter` reads it.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// A part begins, with its Content-Type if it has one.
    Begins(Option<Media>),
    /// The next bytes of the part's content.
    Data(&'a [u8]),
    /// The part's content is complete.
    Ends,
}

/// Longest header block of one part, and longest delimiter line.
const MAX_PART_HEAD: usize = 16 << 10;
const MAX_DELIMITER_LINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum At {
    /// Before the first delimiter.
    Preamble,
    /// At "--boundary" (the CRLF before it consumed).
    Delimiter,
    Headers,
    Content,
    /// After the closing delimiter: the epilogue is ignored.
    Closed,
}

/// A multipart/related body (RFC 2046 5.1) read as it arrives, chunk by
/// chunk, holding at most a part's headers or a delimiter's length of it:
/// a part's content is passed on as it comes. Refuses a body without its
/// closing delimiter (a cut-off upload: `end`), so that a truncated last
/// part is never taken for a whole one.
pub struct Splitter {
    /// CRLF "--" boundary.
    delim: Vec<u8>,
    finder: memchr::memmem::Finder<'static>,
    buf: Vec<u8>,
    at: At,
    parts: usize,
}

impl Splitter {
    pub fn new(boundary: &str) -> Result<Self, String> {
        if boundary.is_empty() || boundary.len() > 70 {
            return Err("the multipart boundary must be 1 to 70 characters".into());
        }
        let delim = format!("\r\n--{boundary}").into_bytes();
        let finder = memchr::memmem::Finder::new(&delim).into_owned();
        // The body read as if after a line break: a delimiter may open it.
        Ok(Splitter { delim, finder, buf: b"\r\n".to_vec(), at: At::Preamble, parts: 0 })
    }

    /// Reads the next chunk of the body, handing each piece to `on`.
    pub fn push<E: From<String>>(&mut self, chunk: &[u8], on: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.at == At::Closed {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        self.run(false, on)
    }

    /// The body has ended: refused unless it closed.
    pub fn end<E: From<String>>(&mut self, on: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        self.run(true, on)?;
        match self.at {
            At::Closed => Ok(()),
            At::Preamble => Err(E::from("no multipart boundary found in the body".into())),
            _ => Err(E::from("the multipart body ends without its closing delimiter".into())),
        }
    }

    fn run<E: From<String>>(&mut self, end: bool, on: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        let d = self.delim.len();
        let mut pos = 0;
        let refuse = |why: &str| Err(E::from(why.to_owned()));
        loop {
            let rest = &self.buf[pos..];
            match self.at {
                At::Closed => {
                    self.buf.clear();
                    return Ok(());
                }
                At::Preamble => match self.finder.find(rest) {
                    Some(p) => {
                        pos += p + 2;
                        self.at = At::Delimiter;
                    }
                    None => {
                        // Keep what could be the start of a delimiter.
                        pos += rest.len().saturating_sub(d - 1);
                        break;
                    }
                },
                At::Delimiter => {
                    let line = &rest[d - 2..];
                    if line.len() < 2 && !end {
                        break;
                    }
                    if line.starts_with(b"--") {
                        if self.parts == 0 {
                            return refuse("the multipart body has no parts");
                        }
                        self.at = At::Closed;
                        continue;
                    }
                    // Transport padding, then the line break ending the delimiter line.
                    match memchr::memmem::find(line, b"\r\n") {
                        Some(eol) => {
                            if !line[..eol].iter().all(|&c| c == b' ' || c == b'\t') {
                                return refuse("text after a multipart delimiter");
                            }
                            pos += d - 2 + eol + 2;
                            self.at = At::Headers;
                        }
                        None if end || line.len() > MAX_DELIMITER_LINE => return refuse("multipart delimiter line not ended"),
                        None => break,
                    }
                }
                At::Headers => {
                    // A delimiter's length decides whether the part is empty.
                    if rest.len() < d && !end {
                        break;
                    }
                    // Headers end at a blank line, which must come before the part's delimiter.
                    let next = self.finder.find(rest);
                    let (head, content) = if rest.starts_with(b"\r\n") && next != Some(0) {
                        (0, 2)
                    } else {
                        match memchr::memmem::find(rest, b"\r\n\r\n") {
                            Some(h) if next.is_some_and(|n| h + 4 <= n) || (next.is_none() && (end || rest.len() >= h + 4 + d)) => (h, h + 4),
                            _ if next.is_some() || end => return refuse("multipart part without a blank line after its headers"),
                            _ if rest.len() > MAX_PART_HEAD => return refuse("multipart part headers over 16 KiB"),
                            _ => break,
                        }
                    };
                    let head = std::str::from_utf8(&rest[..head]).map_err(|_| E::from("multipart part headers are not text".into()))?;
                    let mut content_type = None;
                    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
                        let (name, value) = line.split_once(':').ok_or_else(|| E::from("malformed multipart part header".into()))?;
                        if name.trim().eq_ignore_ascii_case("content-type") {
                            content_type = Some(media(value).ok_or_else(|| E::from("malformed Content-Type in a multipart part".into()))?);
                        }
                    }
                    self.parts += 1;
                    on(Piece::Begins(content_type))?;
                    pos += content;
                    self.at = At::Content;
                }
                At::Content => match self.finder.find(rest) {
                    Some(p) => {
                        if p > 0 {
                            on(Piece::Data(&rest[..p]))?;
                        }
                        on(Piece::Ends)?;
                        pos += p + 2;
                        self.at = At::Delimiter;
                    }
                    None => {
                        // All but what could be the start of the delimiter.
                        let n = rest.len().saturating_sub(d - 1);
                        if n > 0 {
                            on(Piece::Data(&rest[..n]))?;
                        }
                        pos += n;
                        break;
                    }
                },
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

/// One part of a body read whole.
#[derive(Debug, PartialEq)]
pub struct Part {
    pub content_type: Option<Media>,
    pub body: Vec<u8>,
}

/// The parts of a whole multipart body (`Splitter`, in one chunk).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    parse_chunks([body], boundary)
}

/// The parts of a body arriving in `chunks`, gathered.
pub fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, boundary: &str) -> Result<Vec<Part>, String> {
    let mut parts: Vec<Part> = Vec::new();
    let mut on = |p: Piece<'_>| -> Result<(), String> {
        match p {
            Piece::Begins(content_type) => parts.push(Part { content_type, body: Vec::new() }),
            Piece::Data(d) => parts.last_mut().ok_or("content before a part")?.body.extend_from_slice(d),
            Piece::Ends => {}
        }
        Ok(())
    };
    let mut s = Splitter::new(boundary)?;
    for c in chunks {
        s.push(c, &mut on)?;
    }
    s.end(&mut on)?;
    Ok(parts)
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
    fn a_body_in_chunks_of_any_size_splits_as_it_does_whole() {
        let bodies: [&[u8]; 9] = [
            b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nB\r\nB\r\n--b1--\r\n",
            b"--b1\r\n\r\n\r\n--b1--",
            b"--b1  \t\r\nX-A: 1\r\nContent-Type: application/dicom\r\n\r\n\r\n--b\r\n--b1\r\r\n--b1--epilogue",
            b"--b1\r\n\r\n--b1--",
            b"--b1\r\nA: b\r\n\r\n--b1--",
            b"--b1\r\nA: b\r\n--b1--",
            b"--b1\r\n--b1--",
            b"--b1x\r\n\r\nA\r\n--b1--",
            b"\r\n--b1\r\n\r\n--b1--\r\n--b1\r\n",
        ];
        for body in bodies {
            let whole = parse(body, "b1");
            for n in 1..body.len() + 2 {
                let chunked = parse_chunks(body.chunks(n), "b1");
                assert_eq!(chunked.is_ok(), whole.is_ok(), "{:?} in chunks of {n}: {chunked:?} vs {whole:?}", String::from_utf8_lossy(body));
                if let (Ok(a), Ok(b)) = (&chunked, &whole) {
                    assert_eq!(a, b, "{:?} in chunks of {n}", String::from_utf8_lossy(body));
                }
            }
        }
        assert_eq!(parse(bodies[1], "b1").unwrap()[0].body, b"", "no headers, no content");
        assert!(parse(bodies[2], "b1").is_err(), "the delimiter line goes on with a stray CR");
        assert!(parse(bodies[6], "b1").is_err(), "an empty part has no blank line");
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
