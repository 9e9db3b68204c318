//! A bounded walk over DICOM bytes: a Part 10 file, or a bare data set
//! as it arrives over the network.
//!
//! Untrusted bytes (import, C-STORE, STOW-RS) pass through here before any
//! other parser sees them. The walk checks every declared length against the
//! bytes actually present, every item and sequence delimiter, and the nesting
//! depth, so that a file accepted here can be handed to dicom-rs (which
//! allocates whatever a length asks for) without risk. It allocates nothing
//! proportional to a declared length, and it records where the top-level
//! elements the index needs are, without copying them.

use std::borrow::Cow;

mod tree;
pub use tree::{tree, Node, Tail, Tree};

/// Why a byte stream was refused. Each message names the fault plainly, for
/// import reports, C-STORE failure comments and STOW-RS answers.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("not a DICOM Part 10 file (no 'DICM' prefix at byte 128)")]
    NotPart10,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("invalid {0}")]
    BadUid(&'static str),
    #[error("truncated at byte {offset}: needs {needed} bytes, {available} present")]
    Truncated { offset: usize, needed: usize, available: usize },
    #[error("element ({:04X},{:04X}) declares {declared} bytes but only {available} remain", tag >> 16, tag & 0xFFFF)]
    LengthBeyondData { tag: u32, declared: u64, available: u64 },
    #[error("malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("deflated data set: {0}")]
    Inflate(String),
    #[error("Number of Frames {frames} × {} per frame exceeds the {present} bytes of Pixel Data", per_frame(*.frame_bits))]
    PixelDataTooShort { frames: u64, frame_bits: u64, present: u64 },
}

/// A frame's size for messages: bytes, or bits when 1-bit frames do not fill whole bytes.
fn per_frame(bits: u64) -> String {
    if bits.is_multiple_of(8) {
        format!("{} bytes", bits / 8)
    } else {
        format!("{bits} bits")
    }
}

/// Deepest sequence nesting accepted; real objects rarely pass 6.
const MAX_DEPTH: usize = 32;
/// Ceiling on an inflated Deflated Explicit VR data set.
pub const MAX_INFLATED: u64 = 1 << 30;
/// Ceiling on the inflation ratio: real data sets (text, images) deflate
/// by a few times; a bomb (zeros) by a thousand.
pub const MAX_INFLATION_RATIO: u64 = 20;
/// The ratio cap never goes below this, so tiny deflated headers still read.
pub const MIN_INFLATION_CAP: u64 = 1 << 20;

pub const TS_IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const TS_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const TS_DEFLATED: &str = "1.2.840.10008.1.2.1.99";
pub const TS_EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

pub const PIXEL_DATA: u32 = 0x7FE0_0010;
const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQ_END: u32 = 0xFFFE_E0DD;
const UNDEFINED: u32 = 0xFFFF_FFFF;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

/// One element as found in the stream: its value is `bytes[start..end]` of
/// the buffer it was found in (the inflated one, for deflated files).
#[derive(Clone, Copy, Debug)]
pub struct Element {
    pub tag: u32,
    pub vr: [u8; 2],
    pub start: usize,
    pub end: usize,
    /// Undefined length (a sequence, or encapsulated pixel data).
    pub undefined: bool,
}

/// The result of a successful scan: the meta information and where the
/// top-level data set elements are. `top` is sorted by tag.
pub struct Scanned<'a> {
    pub meta: Vec<Element>,
    pub meta_bytes: &'a [u8],
    pub transfer_syntax: String,
    pub encoding: Encoding,
    /// The data set bytes: borrowed from the input, or inflated.
    pub dataset: Cow<'a, [u8]>,
    pub top: Vec<Element>,
    /// Nested elements the index reads from sequences, as (sequence tag,
    /// item number, element); only for sequences named in `nested_wanted`.
    pub nested: Vec<(u32, usize, Element)>,
    /// Encapsulated pixel data: number of fragments after the offset table.
    pub fragments: usize,
    /// Whether the elements of the data set, and of every item, come in
    /// ascending tag order, each once (PS3.5 7.1), and every fixed-size
    /// binary value (US, FD, AT...) is a whole number of values (PS3.5
    /// 6.2). Real archives hold files that are not, and they are stored;
    /// but such a data set is never handed to dicom-object, which can
    /// spend seconds and gigabytes on a few hundred bytes of it.
    pub strict: bool,
}

struct Walker<'b> {
    buf: &'b [u8],
    enc: Encoding,
    top: Vec<Element>,
    nested: Vec<(u32, usize, Element)>,
    nested_wanted: &'b [u32],
    fragments: usize,
    strict: bool,
}

/// Scans a Part 10 file. `nested_wanted` names top-level sequences whose first
/// level of item elements should be reported in `Scanned::nested`.
pub fn scan<'a>(bytes: &'a [u8], nested_wanted: &[u32]) -> Result<Scanned<'a>, ScanError> {
    let (meta, meta_end, ts) = file_meta(bytes)?;
    let mut s = scan_dataset(&bytes[meta_end..], &ts, nested_wanted)?;
    s.meta = meta;
    s.meta_bytes = &bytes[..meta_end];
    Ok(s)
}

/// The file meta group of a Part 10 file: its elements, where the data set
/// starts, and the transfer syntax the data set is encoded in.
pub fn file_meta(bytes: &[u8]) -> Result<(Vec<Element>, usize, String), ScanError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(ScanError::NotPart10);
    }
    let (meta, meta_end) = scan_meta(bytes)?;
    let ts =
        meta.iter().find(|e| e.tag == 0x0002_0010).map(|e| trim_uid(&bytes[e.start..e.end])).ok_or(ScanError::Missing("Transfer Syntax UID (0002,0010)"))?;
    let ts = std::str::from_utf8(ts).map_err(|_| ScanError::BadUid("Transfer Syntax UID"))?.to_owned();
    check_uid(&ts, "Transfer Syntax UID")?;
    Ok((meta, meta_end, ts))
}

/// Scans a bare data set encoded in transfer syntax `ts` (as received in
/// P-DATA, or after a file's meta group).
pub fn scan_dataset<'a>(bytes: &'a [u8], ts: &str, nested_wanted: &[u32]) -> Result<Scanned<'a>, ScanError> {
    let encoding = encoding(ts);
    let dataset: Cow<'a, [u8]> = if ts == TS_DEFLATED { Cow::Owned(inflate(bytes)?) } else { Cow::Borrowed(bytes) };
    let mut w = Walker { buf: &dataset, enc: encoding, top: Vec::new(), nested: Vec::new(), nested_wanted, fragments: 0, strict: true };
    w.walk(0, dataset.len(), 0, None)?;
    let (mut top, nested, fragments, strict) = (std::mem::take(&mut w.top), std::mem::take(&mut w.nested), w.fragments, w.strict);
    top.sort_by_key(|e| e.tag);
    Ok(Scanned { meta: Vec::new(), meta_bytes: &[], transfer_syntax: ts.to_owned(), encoding, dataset, top, nested, fragments, strict })
}

/// `scan`, refusing a data set out of tag order (`Scanned::strict`): what
/// may be handed to a full DICOM parser (dicom-object).
pub fn scan_ordered(bytes: &[u8]) -> Result<Scanned<'_>, ScanError> {
    ordered(scan(bytes, &[])?)
}

/// `scan_dataset`, refusing a data set out of tag order.
pub fn scan_dataset_ordered<'a>(bytes: &'a [u8], ts: &str) -> Result<Scanned<'a>, ScanError> {
    ordered(scan_dataset(bytes, ts, &[])?)
}

fn ordered(s: Scanned<'_>) -> Result<Scanned<'_>, ScanError> {
    if s.strict {
        Ok(s)
    } else {
        Err(ScanError::Malformed {
            offset: 0,
            what: "data elements out of ascending tag order, repeated, or binary values of a length their VR cannot hold (PS3.5 7.1, 6.2)",
        })
    }
}

/// How a data set in transfer syntax `ts` is encoded.
pub fn encoding(ts: &str) -> Encoding {
    match ts {
        TS_IMPLICIT_LE => Encoding::ImplicitLe,
        TS_EXPLICIT_BE => Encoding::ExplicitBe,
        // PS3.5 10: every other transfer syntax encodes the data set as
        // Explicit VR Little Endian.
        _ => Encoding::ExplicitLe,
    }
}

/// File meta information: explicit VR little endian, group 0002 only.
fn scan_meta(bytes: &[u8]) -> Result<(Vec<Element>, usize), ScanError> {
    let mut pos = 132;
    let mut out = Vec::new();
    while pos + 8 <= bytes.len() {
        let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
        if group != 0x0002 {
            break;
        }
        let (el, next) = explicit_header(bytes, pos, false)?;
        if el.undefined {
            return Err(ScanError::Malformed { offset: pos, what: "undefined length in file meta" });
        }
        out.push(el);
        pos = next;
    }
    if out.is_empty() {
        return Err(ScanError::Missing("file meta information (group 0002)"));
    }
    Ok((out, pos))
}

fn inflate(raw: &[u8]) -> Result<Vec<u8>, ScanError> {
    use std::io::Read;
    let by_ratio = (raw.len() as u64).saturating_mul(MAX_INFLATION_RATIO).max(MIN_INFLATION_CAP);
    let cap = by_ratio.min(MAX_INFLATED);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw).take(cap + 1).read_to_end(&mut out).map_err(|e| ScanError::Inflate(e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(ScanError::Inflate(if by_ratio < MAX_INFLATED {
            format!(
                "inflates beyond {cap} bytes, {MAX_INFLATION_RATIO} times its {} compressed bytes (the inflation ratio cap; at least {MIN_INFLATION_CAP} bytes)",
                raw.len()
            )
        } else {
            format!("inflates beyond {MAX_INFLATED} bytes (the absolute cap)")
        }));
    }
    Ok(out)
}

fn rd_u16(b: &[u8], p: usize, be: bool) -> u16 {
    let a = [b[p], b[p + 1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn rd_u32(b: &[u8], p: usize, be: bool) -> u32 {
    let a = [b[p], b[p + 1], b[p + 2], b[p + 3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

const KNOWN_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ",
    b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

fn is_long_vr(vr: [u8; 2]) -> bool {
    matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UN" | b"UR" | b"UT" | b"SV" | b"UV")
}

/// Reads an explicit VR element header at `pos`; returns it and where its
/// value ends (or starts, for undefined length).
fn explicit_header(b: &[u8], pos: usize, be: bool) -> Result<(Element, usize), ScanError> {
    if pos + 8 > b.len() {
        return Err(ScanError::Truncated { offset: pos, needed: 8, available: b.len() - pos });
    }
    let tag = (u32::from(rd_u16(b, pos, be)) << 16) | u32::from(rd_u16(b, pos + 2, be));
    let vr = [b[pos + 4], b[pos + 5]];
    if !KNOWN_VRS.contains(&&vr) {
        return Err(ScanError::Malformed { offset: pos, what: "unknown value representation (is the data set encoded as its transfer syntax says?)" });
    }
    let (len, start) = if is_long_vr(vr) {
        if pos + 12 > b.len() {
            return Err(ScanError::Truncated { offset: pos, needed: 12, available: b.len() - pos });
        }
        (rd_u32(b, pos + 8, be), pos + 12)
    } else {
        (u32::from(rd_u16(b, pos + 6, be)), pos + 8)
    };
    finish_header(b, tag, vr, len, start)
}

fn finish_header(b: &[u8], tag: u32, vr: [u8; 2], len: u32, start: usize) -> Result<(Element, usize), ScanError> {
    if len == UNDEFINED {
        return Ok((Element { tag, vr, start, end: start, undefined: true }, start));
    }
    let available = b.len() - start;
    if len as usize > available {
        return Err(ScanError::LengthBeyondData { tag, declared: u64::from(len), available: available as u64 });
    }
    let end = start + len as usize;
    Ok((Element { tag, vr, start, end, undefined: false }, end))
}

impl Walker<'_> {
    fn be(&self) -> bool {
        self.enc == Encoding::ExplicitBe
    }

    fn header(&self, pos: usize) -> Result<(Element, usize), ScanError> {
        if pos + 8 <= self.buf.len() && rd_u16(self.buf, pos, self.be()) == 0xFFFE {
            // Items and delimiters carry no VR in any encoding.
            let tag = 0xFFFE_0000 | u32::from(rd_u16(self.buf, pos + 2, self.be()));
            // Only items and their delimiters live in group FFFE: another
            // (FFFE,xxxx) would carry a length no check here bounds.
            if ![ITEM, ITEM_END, SEQ_END].contains(&tag) {
                return Err(ScanError::Malformed { offset: pos, what: "an element of group FFFE that is no item or delimiter" });
            }
            let len = rd_u32(self.buf, pos + 4, self.be());
            let len = if tag == ITEM { len } else { 0 };
            return finish_header(self.buf, tag, *b"  ", len, pos + 8);
        }
        match self.enc {
            Encoding::ImplicitLe => {
                if pos + 8 > self.buf.len() {
                    return Err(ScanError::Truncated { offset: pos, needed: 8, available: self.buf.len() - pos });
                }
                let tag = (u32::from(rd_u16(self.buf, pos, false)) << 16) | u32::from(rd_u16(self.buf, pos + 2, false));
                let len = rd_u32(self.buf, pos + 4, false);
                let vr = implicit_vr(tag, len);
                finish_header(self.buf, tag, vr, len, pos + 8)
            }
            Encoding::ExplicitLe | Encoding::ExplicitBe => explicit_header(self.buf, pos, self.be()),
        }
    }

    /// Walks elements in `[pos, end)`. At depth 0 records top-level elements.
    /// With `stop_at` the walk ends at that delimiter tag and returns the
    /// position after it; otherwise it must end exactly at `end`.
    fn walk(&mut self, mut pos: usize, end: usize, depth: usize, stop_at: Option<u32>) -> Result<usize, ScanError> {
        if depth > MAX_DEPTH {
            return Err(ScanError::Malformed { offset: pos, what: "sequences nested too deeply" });
        }
        // Trailing zero bytes at the end of a data set are padding. Where
        // they start is found once: testing the rest at every element would
        // be quadratic in a data set of many empty elements.
        let padding = if depth == 0 { last_nonzero(self.buf, pos, end) } else { end };
        let mut previous: Option<u32> = None;
        while pos < end {
            if pos >= padding {
                return Ok(end);
            }
            let (el, next) = self.header(pos)?;
            if let Some(delim) = stop_at {
                if el.tag == delim {
                    return Ok(next);
                }
            }
            if previous.is_some_and(|p| el.tag <= p) || !whole_values(&el, self.enc) {
                self.strict = false;
            }
            previous = Some(el.tag);
            if el.tag == ITEM || el.tag == ITEM_END || el.tag == SEQ_END {
                return Err(ScanError::Malformed { offset: pos, what: "stray item or delimiter" });
            }
            let after = if el.undefined {
                if el.tag == PIXEL_DATA {
                    let (done, fragments) = self.encapsulated(next)?;
                    self.fragments = fragments;
                    done
                } else if &el.vr == b"UN" && self.enc != Encoding::ImplicitLe {
                    // PS3.5 6.2.2: an undefined-length UN holds implicit VR
                    // little endian items.
                    let outer = std::mem::replace(&mut self.enc, Encoding::ImplicitLe);
                    let done = self.sequence(el.tag, next, self.buf.len(), depth, true);
                    self.enc = outer;
                    done?
                } else if &el.vr == b"SQ" || &el.vr == b"UN" {
                    self.sequence(el.tag, next, self.buf.len(), depth, true)?
                } else {
                    return Err(ScanError::Malformed { offset: pos, what: "undefined length on a non-sequence element" });
                }
            } else {
                if &el.vr == b"SQ" {
                    self.sequence(el.tag, el.start, el.end, depth, false)?;
                }
                next
            };
            if depth == 0 {
                let mut e = el;
                e.end = if el.undefined { after } else { el.end };
                self.top.push(e);
            }
            pos = after;
        }
        if let Some(delim) = stop_at {
            return Err(ScanError::Malformed { offset: pos, what: if delim == ITEM_END { "item without delimiter" } else { "sequence without delimiter" } });
        }
        if pos != end {
            return Err(ScanError::Malformed { offset: pos, what: "element overruns its container" });
        }
        Ok(pos)
    }

    /// Walks the items of a sequence starting at `pos`. Undefined-length
    /// sequences end at a sequence delimiter; others exactly at `end`.
    fn sequence(&mut self, seq_tag: u32, mut pos: usize, end: usize, depth: usize, undefined: bool) -> Result<usize, ScanError> {
        let mut item_no = 0;
        loop {
            if !undefined && pos == end {
                return Ok(pos);
            }
            if pos + 8 > end {
                return Err(ScanError::Truncated { offset: pos, needed: 8, available: end.saturating_sub(pos) });
            }
            let tag = (u32::from(rd_u16(self.buf, pos, self.be())) << 16) | u32::from(rd_u16(self.buf, pos + 2, self.be()));
            let len = rd_u32(self.buf, pos + 4, self.be());
            let body = pos + 8;
            match tag {
                SEQ_END if undefined => return Ok(body),
                ITEM => {
                    let record = depth == 0 && self.nested_wanted.contains(&seq_tag);
                    // Items are walked at depth+1, which records nothing;
                    // wanted first-level elements are captured after.
                    let done = if len == UNDEFINED {
                        self.walk(body, end, depth + 1, Some(ITEM_END))?
                    } else {
                        if len as usize > end - body {
                            return Err(ScanError::LengthBeyondData { tag: ITEM, declared: u64::from(len), available: (end - body) as u64 });
                        }
                        self.walk(body, body + len as usize, depth + 1, None)?
                    };
                    if record {
                        let item_end = if len == UNDEFINED { done - 8 } else { done };
                        self.capture_item(seq_tag, item_no, body, item_end)?;
                    }
                    item_no += 1;
                    pos = done;
                }
                _ => return Err(ScanError::Malformed { offset: pos, what: "expected an item in a sequence" }),
            }
        }
    }

    /// Records the first-level elements of one item (already validated).
    fn capture_item(&mut self, seq_tag: u32, item_no: usize, mut pos: usize, end: usize) -> Result<(), ScanError> {
        while pos < end {
            let (el, next) = self.header(pos)?;
            let after = if el.undefined {
                // Already validated: skip by walking again without recording.
                self.sequence(el.tag, next, self.buf.len(), 1, true)?
            } else {
                next
            };
            if !el.undefined {
                self.nested.push((seq_tag, item_no, el));
            }
            pos = after;
        }
        Ok(())
    }

    /// Encapsulated pixel data: a basic offset table item, fragments, and a
    /// sequence delimiter. Returns the end position and fragment count.
    fn encapsulated(&self, mut pos: usize) -> Result<(usize, usize), ScanError> {
        let mut items = 0usize;
        loop {
            if pos + 8 > self.buf.len() {
                return Err(ScanError::Truncated { offset: pos, needed: 8, available: self.buf.len() - pos });
            }
            let tag = (u32::from(rd_u16(self.buf, pos, self.be())) << 16) | u32::from(rd_u16(self.buf, pos + 2, self.be()));
            let len = rd_u32(self.buf, pos + 4, self.be());
            match tag {
                SEQ_END => return Ok((pos + 8, items.saturating_sub(1))),
                ITEM => {
                    let available = self.buf.len() - pos - 8;
                    if len == UNDEFINED || len as usize > available {
                        return Err(ScanError::LengthBeyondData { tag: PIXEL_DATA, declared: u64::from(len), available: available as u64 });
                    }
                    pos += 8 + len as usize;
                    items += 1;
                }
                _ => return Err(ScanError::Malformed { offset: pos, what: "expected a pixel data fragment" }),
            }
        }
    }
}

/// Where trailing zero bytes of `buf[from..end]` begin (`from` when all are zero).
pub(crate) fn last_nonzero(buf: &[u8], from: usize, end: usize) -> usize {
    buf.get(from..end).and_then(|s| s.iter().rposition(|&b| b != 0)).map_or(from, |i| from + i + 1)
}

/// VR of an element in an implicit VR stream, as far as the walk needs it:
/// whether it is a sequence.
/// Whether a fixed-size binary value holds a whole number of values (its
/// VR as written, or for implicit VR as the dictionary gives it).
fn whole_values(el: &Element, enc: Encoding) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    if el.undefined {
        return true;
    }
    let vr: String = if enc == Encoding::ImplicitLe {
        let t = dicom_core::Tag((el.tag >> 16) as u16, el.tag as u16);
        match dicom_dictionary_std::StandardDataDictionary.by_tag(t).map(|e| e.vr()) {
            Some(VirtualVr::Exact(vr)) => vr.to_string().to_owned(),
            _ => return true,
        }
    } else {
        String::from_utf8_lossy(&el.vr).into_owned()
    };
    let size = match vr.as_str() {
        "SS" | "US" | "OW" => 2,
        "AT" | "FL" | "SL" | "UL" | "OF" | "OL" => 4,
        "FD" | "SV" | "UV" | "OD" | "OV" => 8,
        _ => return true,
    };
    (el.end - el.start).is_multiple_of(size)
}

fn implicit_vr(tag: u32, len: u32) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_core::Tag;
    if tag == PIXEL_DATA {
        return *b"OW";
    }
    let t = Tag((tag >> 16) as u16, tag as u16);
    match dicom_dictionary_std::StandardDataDictionary.by_tag(t) {
        Some(e) if matches!(e.vr(), dicom_core::dictionary::VirtualVr::Exact(dicom_core::VR::SQ)) => *b"SQ",
        // Unknown or private with undefined length: PS3.5 6.2.2 says such a
        // value is a sequence of items in implicit VR.
        _ if len == UNDEFINED => *b"SQ",
        _ => *b"UN",
    }
}

fn trim_uid(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == 0 || b[end - 1] == b' ') {
        end -= 1;
    }
    &b[..end]
}

/// A UID as radhub accepts it: at most 64 bytes of printable ASCII, no
/// space and no backslash (the value separator). Real archives hold UIDs
/// PS3.5 9.1 does not allow (64 hex digits from anonymisers, stray
/// letters): they are kept and flagged (`uid_is_conformant`), never refused,
/// and never become a path.
pub fn check_uid(uid: &str, what: &'static str) -> Result<(), ScanError> {
    if uid.is_empty() || uid.len() > 64 || !uid.bytes().all(|c| c.is_ascii_graphic() && c != b'\\') {
        return Err(ScanError::BadUid(what));
    }
    Ok(())
}

/// Whether a UID is as PS3.5 9.1 defines one: components of digits,
/// separated by single dots, without leading zeros, at most 64 in all.
pub fn uid_is_conformant(uid: &str) -> bool {
    uid.len() <= 64 && !uid.is_empty() && uid.split('.').all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

/// Whether `frames` frames of `frame_bits` bits each fit in `present` bytes
/// of native Pixel Data (more bytes are fine: trailing padding).
pub fn check_frames(frames: u64, frame_bits: u64, present: u64) -> Result<(), ScanError> {
    let fits = frames.checked_mul(frame_bits).is_some_and(|bits| bits.div_ceil(8) <= present);
    if fits {
        Ok(())
    } else {
        Err(ScanError::PixelDataTooShort { frames, frame_bits, present })
    }
}

impl Scanned<'_> {
    /// Checks native Pixel Data against the frames the header declares:
    /// Number of Frames × Rows × Columns × samples × Bits Allocated bits
    /// (YBR_*_422 stores two samples a pixel, 420 one and a half; 1-bit
    /// data packs). Checked only when Rows, Columns and Bits Allocated are
    /// present and the Pixel Data is native (defined length in an
    /// uncompressed transfer syntax); whoever sizes buffers from the
    /// header can then trust it.
    pub fn check_native_pixel_data(&self) -> Result<(), ScanError> {
        let native = matches!(self.transfer_syntax.as_str(), TS_IMPLICIT_LE | TS_EXPLICIT_LE | TS_EXPLICIT_BE | TS_DEFLATED);
        let Some(pixel) = self.element(PIXEL_DATA).filter(|e| native && !e.undefined) else { return Ok(()) };
        let (Some(rows), Some(cols), Some(bits)) = (self.u16_of(0x0028_0010), self.u16_of(0x0028_0011), self.u16_of(0x0028_0100)) else { return Ok(()) };
        let samples = self.u16_of(0x0028_0002).unwrap_or(1);
        let photometric = self.get(0x0028_0004).map(|v| String::from_utf8_lossy(v).trim_matches(['\0', ' ']).to_owned()).unwrap_or_default();
        let half_samples = match photometric.as_str() {
            "YBR_FULL_422" | "YBR_PARTIAL_422" => 4,
            "YBR_PARTIAL_420" => 3,
            _ => 2 * u64::from(samples),
        };
        // Saturating: a frame too big for u64 fits no pixel data either.
        let frame_bits = [u64::from(cols), half_samples, u64::from(bits)].into_iter().fold(u64::from(rows), u64::saturating_mul) / 2;
        check_frames(self.frames(), frame_bits, (pixel.end - pixel.start) as u64)
    }

    /// Number of Frames (0028,0008): 1 when absent, empty, zero or not a
    /// number; a number too big for u64 saturates (and fits no pixel data).
    pub fn frames(&self) -> u64 {
        let Some(v) = self.get(0x0028_0008) else { return 1 };
        let v = String::from_utf8_lossy(v);
        let first = v.split('\\').next().unwrap_or("").trim_matches(['\0', ' ']);
        let first = first.strip_prefix('+').unwrap_or(first);
        match first.parse::<u64>() {
            Ok(0) => 1,
            Ok(n) => n,
            Err(_) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => u64::MAX,
            Err(_) => 1,
        }
    }

    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.top.binary_search_by_key(&tag, |e| e.tag).ok().map(|i| &self.dataset[self.top[i].start..self.top[i].end])
    }

    pub fn meta_value(&self, tag: u32) -> Option<&[u8]> {
        self.meta.iter().find(|e| e.tag == tag).map(|e| &self.meta_bytes[e.start..e.end])
    }

    pub fn is_big_endian(&self) -> bool {
        self.encoding == Encoding::ExplicitBe
    }

    pub fn u16_of(&self, tag: u32) -> Option<u16> {
        let v = self.get(tag)?;
        (v.len() >= 2).then(|| rd_u16(v, 0, self.is_big_endian()))
    }

    /// The element header of a top-level element (for pixel data layout).
    pub fn element(&self, tag: u32) -> Option<&Element> {
        self.top.binary_search_by_key(&tag, |e| e.tag).ok().map(|i| &self.top[i])
    }

    pub fn uid_of(&self, tag: u32) -> Option<&str> {
        self.get(tag).map(trim_uid).and_then(|b| std::str::from_utf8(b).ok()).filter(|s| !s.is_empty())
    }

    pub fn nested_values(&self, seq: u32) -> impl Iterator<Item = (usize, u32, &[u8])> {
        self.nested.iter().filter(move |(s, _, _)| *s == seq).map(|(_, item, e)| (*item, e.tag, &self.dataset[e.start..e.end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// `n` implicit VR elements (0000,0000) of length 0, then one non-zero byte.
    fn empty_elements(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; 8 * n];
        v.push(1);
        v
    }

    /// An implicit VR little endian element.
    fn implicit(tag: u32, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        v.extend_from_slice(&(tag as u16).to_le_bytes());
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn elements_out_of_order_or_repeated_are_noted_and_refused_for_parsers() {
        let ascending = [implicit(0x0008_0052, b"STUDY "), implicit(0x0010_0020, b"P1")].concat();
        assert!(scan_dataset(&ascending, TS_IMPLICIT_LE, &[]).unwrap().strict);
        assert!(scan_dataset_ordered(&ascending, TS_IMPLICIT_LE).is_ok());
        for bad in
            [[implicit(0x0010_0020, b"P1"), implicit(0x0008_0052, b"STUDY ")].concat(), [implicit(0x0010_0020, b"P1"), implicit(0x0010_0020, b"P2")].concat()]
        {
            // Stored as real archives hold it; never handed to a full parser.
            assert!(!scan_dataset(&bad, TS_IMPLICIT_LE, &[]).unwrap().strict);
            assert!(matches!(scan_dataset_ordered(&bad, TS_IMPLICIT_LE), Err(ScanError::Malformed { .. })));
        }
    }

    #[test]
    fn padding_check_is_linear_in_scan_and_tree() {
        // 4 MiB: quadratic padding checks took hours here; linear ones milliseconds.
        let bytes = empty_elements(512 * 1024);
        let t = Instant::now();
        let e = scan_dataset(&bytes, TS_IMPLICIT_LE, &[]).err();
        let t2 = Instant::now();
        let tr = tree(&bytes, Encoding::ImplicitLe);
        let (scan_took, tree_took) = (t2 - t, t2.elapsed());
        // The lone trailing byte is not an element header.
        assert!(matches!(e, Some(ScanError::Truncated { offset, .. }) if offset == 8 * 512 * 1024), "{e:?}");
        assert!(matches!(&tr, Ok(Tree { nodes, tail: Some(_) }) if nodes.len() == 512 * 1024));
        assert!(scan_took < Duration::from_secs(5) && tree_took < Duration::from_secs(5), "scan {scan_took:?}, tree {tree_took:?}");
    }

    #[test]
    fn trailing_zero_padding_is_still_accepted() {
        let mut bytes = vec![0x08, 0, 0x60, 0, 2, 0, 0, 0, b'C', b'T'];
        bytes.extend([0u8; 13]);
        let s = scan_dataset(&bytes, TS_IMPLICIT_LE, &[]).unwrap();
        assert_eq!(s.get(0x0008_0060), Some(&b"CT"[..]));
        assert_eq!(tree(&bytes, Encoding::ImplicitLe).unwrap().nodes.len(), 1);
        assert_eq!(last_nonzero(&bytes, 0, bytes.len()), 10);
        assert_eq!(last_nonzero(&[0, 0], 0, 2), 0);
    }

    fn deflate(raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    /// An explicit VR LE (0009,0010) OB element of `n` zero bytes.
    fn zeros_element(n: u32) -> Vec<u8> {
        let mut v = vec![0x09, 0, 0x10, 0, b'O', b'B', 0, 0];
        v.extend(n.to_le_bytes());
        v.resize(v.len() + n as usize, 0);
        v
    }

    #[test]
    fn inflation_ratio_is_capped() {
        // 16 MiB of zeros deflate to ~16 KiB: over 20 times (and over the 1 MiB floor).
        let bomb = deflate(&zeros_element(16 << 20));
        match scan_dataset(&bomb, TS_DEFLATED, &[]) {
            Err(ScanError::Inflate(m)) => assert!(m.contains("inflation ratio"), "{m}"),
            other => panic!("{:?}", other.err()),
        }
        // Small data sets inflate under the 1 MiB floor whatever their ratio.
        let small = deflate(&zeros_element(512 << 10));
        assert!(small.len() * 20 < 512 << 10);
        assert!(scan_dataset(&small, TS_DEFLATED, &[]).is_ok());
    }

    /// Implicit VR LE: US elements, then Pixel Data of `pixel` bytes.
    fn image(rows: u16, cols: u16, bits: u16, frames: &str, photometric: &str, samples: u16, pixel: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let mut el = |g: u16, e: u16, val: &[u8]| {
            v.extend(g.to_le_bytes());
            v.extend(e.to_le_bytes());
            v.extend((val.len() as u32).to_le_bytes());
            v.extend(val);
        };
        let pad = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            if b.len() % 2 == 1 {
                b.push(b' ');
            }
            b
        };
        el(0x0028, 0x0002, &samples.to_le_bytes());
        el(0x0028, 0x0004, &pad(photometric));
        if !frames.is_empty() {
            el(0x0028, 0x0008, &pad(frames));
        }
        el(0x0028, 0x0010, &rows.to_le_bytes());
        el(0x0028, 0x0011, &cols.to_le_bytes());
        el(0x0028, 0x0100, &bits.to_le_bytes());
        el(0x7FE0, 0x0010, &vec![0u8; pixel]);
        v
    }

    fn check(bytes: &[u8]) -> Result<(), ScanError> {
        scan_dataset(bytes, TS_IMPLICIT_LE, &[]).unwrap().check_native_pixel_data()
    }

    #[test]
    fn native_pixel_data_must_hold_the_declared_frames() {
        let e = check(&image(512, 512, 16, "4000000000", "MONOCHROME2", 1, 1024)).unwrap_err();
        assert_eq!(e.to_string(), "Number of Frames 4000000000 × 524288 bytes per frame exceeds the 1024 bytes of Pixel Data");
        assert!(check(&image(4, 4, 16, "2", "MONOCHROME2", 1, 64)).is_ok());
        // Longer is trailing padding.
        assert!(check(&image(4, 4, 16, "2", "MONOCHROME2", 1, 70)).is_ok());
        assert!(check(&image(4, 4, 16, "2", "MONOCHROME2", 1, 62)).is_err());
        assert!(check(&image(4, 4, 8, "", "RGB", 3, 48)).is_ok());
        assert!(check(&image(4, 4, 8, "", "RGB", 3, 46)).is_err());
        // YBR_FULL_422: two samples a pixel.
        assert!(check(&image(4, 4, 8, "3", "YBR_FULL_422", 3, 96)).is_ok());
        assert!(check(&image(4, 4, 8, "3", "YBR_FULL_422", 3, 94)).is_err());
        // 1-bit frames pack: 3 frames of 5×5 bits are 75 bits, 10 bytes.
        assert!(check(&image(5, 5, 1, "3", "MONOCHROME2", 1, 10)).is_ok());
        let e = check(&image(5, 5, 1, "4", "MONOCHROME2", 1, 12)).unwrap_err();
        assert_eq!(e.to_string(), "Number of Frames 4 × 25 bits per frame exceeds the 12 bytes of Pixel Data");
        // Overflowing products are refused, not wrapped.
        assert!(check(&image(65535, 65535, 16, "99999999999999999999", "RGB", 65535, 8)).is_err());
        // Nothing to check without the image attributes: only Pixel Data here.
        let bare = image(512, 512, 16, "9", "MONOCHROME2", 1, 8);
        let pixel_only = &bare[bare.len() - 16..];
        assert!(check(pixel_only).is_ok());
        assert_eq!(scan_dataset(&bare, TS_IMPLICIT_LE, &[]).unwrap().frames(), 9);
    }
}
