//! Text values: trimming padding and decoding with the data set's Specific
//! Character Set (0008,0005).

use dicom_encoding::text::{SpecificCharacterSet, TextCodec};

/// The character set named by (0008,0005): its first value is the one in
/// force at the start of every value (PS3.3 C.12.1.1.2); further values
/// are ISO 2022 code extensions, switched to by escape sequences.
pub fn charset(value: Option<&[u8]>) -> SpecificCharacterSet {
    let Some(v) = value else { return SpecificCharacterSet::default() };
    let codes = String::from_utf8_lossy(v);
    codes.split('\\').next().map(str::trim).and_then(SpecificCharacterSet::from_code).unwrap_or_default()
}

/// The code element an ISO 2022 escape sequence (after ESC) designates,
/// and the sequence's length.
fn designated(seq: &[u8]) -> Option<(&'static str, usize)> {
    const TABLE: [(&[u8], &str); 17] = [
        (b"(B", "ISO 2022 IR 6"),
        (b"(J", "ISO 2022 IR 13"),
        (b")I", "ISO 2022 IR 13"),
        (b"$B", "ISO 2022 IR 87"),
        (b"$)C", "ISO 2022 IR 149"),
        (b"$)A", "ISO 2022 IR 58"),
        (b"-A", "ISO 2022 IR 100"),
        (b"-B", "ISO 2022 IR 101"),
        (b"-C", "ISO 2022 IR 109"),
        (b"-D", "ISO 2022 IR 110"),
        (b"-F", "ISO 2022 IR 126"),
        (b"-G", "ISO 2022 IR 127"),
        (b"-H", "ISO 2022 IR 138"),
        (b"-L", "ISO 2022 IR 144"),
        (b"-M", "ISO 2022 IR 148"),
        (b"-T", "ISO 2022 IR 166"),
        (b"$(D", "ISO 2022 IR 159"),
    ];
    TABLE.iter().find(|(p, _)| seq.starts_with(p)).map(|(p, c)| (*c, p.len()))
}

/// Decodes text with ISO 2022 escape sequences, segment by segment.
fn decode_iso2022(initial: &SpecificCharacterSet, raw: &[u8]) -> String {
    let mut out = String::new();
    let mut cs = initial.clone();
    // The ISO-2022-JP codec wants its designation in the stream.
    let mut lead: &[u8] = b"";
    let mut rest = raw;
    loop {
        let end = rest.iter().position(|&b| b == 0x1B).unwrap_or(rest.len());
        let (seg, tail) = rest.split_at(end);
        if !seg.is_empty() {
            let seg: std::borrow::Cow<'_, [u8]> = if lead.is_empty() { seg.into() } else { [lead, seg].concat().into() };
            out.push_str(&cs.decode(&seg).unwrap_or_else(|_| String::from_utf8_lossy(&seg).into_owned()));
        }
        if tail.is_empty() {
            return out;
        }
        match designated(&tail[1..]) {
            Some((code, n)) => {
                // A repertoire dicom-rs lacks decodes as replacement characters, not as a failure.
                cs = SpecificCharacterSet::from_code(code).unwrap_or_default();
                lead = if code == "ISO 2022 IR 87" { b"\x1b$B" } else { b"" };
                rest = &tail[1 + n..];
            }
            None => {
                out.push('\u{FFFD}');
                rest = &tail[1..];
            }
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ' && c != 0).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ' && c != 0).map_or(start, |p| p + 1);
    &b[start..end.max(start)]
}

/// A value of a text VR affected by the character set (PN, LO, SH, LT, ST,
/// UC, UT), trimmed. Undecodable bytes become U+FFFD rather than failing.
pub fn decode(cs: &SpecificCharacterSet, raw: &[u8]) -> String {
    let raw = trim(raw);
    if raw.contains(&0x1B) {
        return decode_iso2022(cs, raw);
    }
    if raw.is_ascii() {
        return String::from_utf8_lossy(raw).into_owned();
    }
    cs.decode(raw).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

/// A value of a VR restricted to the default repertoire (CS, DA, TM, IS, DS, AE).
pub fn ascii(raw: &[u8]) -> String {
    String::from_utf8_lossy(trim(raw)).into_owned()
}

/// First value of an IS element.
pub fn int(raw: &[u8]) -> Option<i64> {
    ascii(raw).split('\\').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_padding_and_decodes_latin1() {
        let cs = charset(Some(b"ISO_IR 100"));
        assert_eq!(decode(&cs, b"M\xdcLLER^J\xd6RG "), "MÜLLER^JÖRG");
        assert_eq!(ascii(b" CT\0"), "CT");
        assert_eq!(int(b"12 \\13"), Some(12));
        assert_eq!(int(b""), None);
    }
}
