//! The first part of a WADO-RS `multipart/related` answer: its media type
//! (with the transfer syntax the hub names) and its bytes, borrowed.

use crate::Error;

pub struct Part<'a> {
    /// The part's Content-Type, e.g. `image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70`.
    pub content_type: &'a str,
    pub body: &'a [u8],
}

impl Part<'_> {
    /// The media type without parameters, lower case.
    pub fn media(&self) -> String {
        self.content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
    }

    pub fn transfer_syntax(&self) -> Option<&str> {
        param(self.content_type, "transfer-syntax")
    }
}

/// A parameter of a media type (`name=value` or `name="value"`).
pub fn param<'a>(media: &'a str, name: &str) -> Option<&'a str> {
    media.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"'))
    })
}

/// The first part of `body`, answered with Content-Type `content_type`.
/// A body that is not multipart is one part of that type.
pub fn first_part<'a>(content_type: &'a str, body: &'a [u8]) -> Result<Part<'a>, Error> {
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/") {
        return Ok(Part { content_type, body });
    }
    let boundary = param(content_type, "boundary").ok_or(Error::Multipart("no boundary"))?;
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or(Error::Multipart("no opening boundary"))? + delim.len();
    let rest = &body[start..];
    let head_end = find(rest, b"\r\n\r\n").ok_or(Error::Multipart("part headers never end"))?;
    let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| Error::Multipart("part headers are not text"))?;
    let part_type = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .unwrap_or("application/octet-stream");
    let data = &rest[head_end + 4..];
    let close = format!("\r\n--{boundary}");
    // A delimiter is followed by "--", CRLF or padding; the same bytes
    // followed by anything else are data (RFC 2046 5.1.1).
    let mut from = 0;
    let end = loop {
        let at = from + find(&data[from..], close.as_bytes()).ok_or(Error::Multipart("part never ends"))?;
        let after = &data[at + close.len()..];
        if after.is_empty() || after.starts_with(b"--") || after.starts_with(b"\r\n") || matches!(after[0], b' ' | b'\t') {
            break at;
        }
        from = at + 1;
    };
    Ok(Part { content_type: part_type, body: &data[..end] })
}

/// A byte loop to the needle's first byte, then a compare: a frame is
/// hundreds of kilobytes, and a window compare at every offset costs
/// milliseconds in the browser before the code is optimised.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, mut from) = (needle.first()?, 0);
    loop {
        let at = from + hay.get(from..)?.iter().position(|&c| c == first)?;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_part_and_its_syntax() {
        let body = b"\r\n--b1\r\nContent-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70\r\n\r\n\xff\xd8\r\n--b1\xff\r\n--b1--\r\n";
        let p = first_part("multipart/related; type=\"image/jpeg\"; boundary=b1", body).unwrap();
        assert_eq!(p.media(), "image/jpeg");
        assert_eq!(p.transfer_syntax(), Some("1.2.840.10008.1.2.4.70"));
        assert_eq!(p.body, b"\xff\xd8\r\n--b1\xff");
        assert!(first_part("multipart/related; boundary=zz", body).is_err());
        assert_eq!(first_part("application/octet-stream", b"ab").unwrap().body, b"ab");
    }
}
