//! DICOM JSON (PS3.18 F.2) from a scanned data set, for WADO-RS metadata
//! and STOW-RS answers.
//!
//! Written from the bytes rather than through dicom-object, so that every
//! Specific Character Set radhub decodes (ISO 2022 included) comes out as
//! the index sees it, and so that large binary values are never copied:
//! they become BulkDataURIs that `bulk_value` serves.

use base64::Engine;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::Tag;
use dicom_encoding::text::SpecificCharacterSet;
use std::fmt::Write;

use super::scan::{Element, Encoding, Node, Tail, PIXEL_DATA};
use super::text;

/// Binary values longer than this go out as BulkDataURI, not inline.
pub const INLINE_MAX: usize = 1024;

const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
const PIXEL_REPRESENTATION: u32 = 0x0028_0103;

/// A data set to encode: its bytes, encoding and tree, and the URI its
/// bulk data is served under (`{bulk_base}/{path}`).
pub struct Source<'a> {
    pub buf: &'a [u8],
    pub encoding: Encoding,
    pub nodes: &'a [Node],
    /// An element cut off by a partial read (the pixel data, usually).
    pub tail: Option<Tail>,
    pub bulk_base: &'a str,
}

/// The data set as a DICOM JSON object, written as text: metadata answers
/// run to megabytes, and building a `serde_json::Value` tree first cost
/// most of their time in allocation.
pub fn dataset(src: &Source<'_>) -> String {
    let pixel_rep = src.nodes.iter().find(|n| n.el.tag == PIXEL_REPRESENTATION).map_or(0, |n| uint(src, &n.el, 2).first().copied().unwrap_or(0));
    let ctx = Ctx { src, pixel_rep };
    let mut out = String::with_capacity(4096);
    let tail = src.tail.and_then(|t| t.element);
    ctx.item(&mut out, src.nodes, &text::charset(None), "", tail);
    out
}

struct Ctx<'s, 'a> {
    src: &'s Source<'a>,
    pixel_rep: u64,
}

impl Ctx<'_, '_> {
    fn item(&self, out: &mut String, nodes: &[Node], inherited: &SpecificCharacterSet, path: &str, tail: Option<Element>) {
        // An item may declare its own character set (PS3.5 7.5.3).
        let own = nodes.iter().find(|n| n.el.tag == SPECIFIC_CHARACTER_SET).map(|n| text::charset(Some(self.value(&n.el))));
        let cs = own.as_ref().unwrap_or(inherited);
        out.push('{');
        let mut last: Option<u32> = None;
        for n in nodes {
            // Group lengths are deprecated and meaningless once re-encoded;
            // a repeated tag (a malformed file) would repeat a JSON key.
            if n.el.tag & 0xFFFF == 0 || last == Some(n.el.tag) {
                continue;
            }
            if last.is_some() {
                out.push(',');
            }
            last = Some(n.el.tag);
            let hex = tag_hex(n.el.tag);
            let here = if path.is_empty() { hex.clone() } else { format!("{path}.{hex}") };
            let _ = write!(out, "\"{hex}\":");
            self.attribute(out, n, cs, &here);
        }
        if let Some(el) = tail.filter(|el| last != Some(el.tag)) {
            if last.is_some() {
                out.push(',');
            }
            let hex = tag_hex(el.tag);
            let _ = write!(out, "\"{hex}\":{{\"vr\":\"{}\",\"BulkDataURI\":", vr_str(self.vr(&el)));
            string(out, &format!("{}/{hex}", self.src.bulk_base));
            out.push('}');
        }
        out.push('}');
    }

    fn value(&self, el: &Element) -> &[u8] {
        self.src.buf.get(el.start..el.end).unwrap_or(&[])
    }

    fn vr(&self, el: &Element) -> [u8; 2] {
        if self.src.encoding != Encoding::ImplicitLe && &el.vr != b"UN" {
            return el.vr;
        }
        if &el.vr == b"SQ" {
            return *b"SQ";
        }
        vr_from_dictionary(el.tag, self.pixel_rep).unwrap_or(el.vr)
    }

    fn attribute(&self, out: &mut String, n: &Node, cs: &SpecificCharacterSet, path: &str) {
        let vr = if n.items.is_empty() || self.src.encoding == Encoding::ImplicitLe || &n.el.vr != b"UN" { self.vr(&n.el) } else { *b"SQ" };
        let _ = write!(out, "{{\"vr\":\"{}\"", vr_str(vr));
        let raw = self.value(&n.el);
        let bulk = |out: &mut String| {
            out.push_str(",\"BulkDataURI\":");
            string(out, &format!("{}/{path}", self.src.bulk_base));
        };
        if &vr == b"SQ" {
            if !n.items.is_empty() {
                out.push_str(",\"Value\":[");
                for (i, it) in n.items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.item(out, it, cs, &format!("{path}.{i}"), None);
                }
                out.push(']');
            }
        } else if n.el.tag == PIXEL_DATA || !n.fragments.is_empty() {
            bulk(out);
        } else {
            match &vr {
                b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"UN" => {
                    if raw.len() > INLINE_MAX {
                        bulk(out);
                    } else if !raw.is_empty() {
                        let le = little_endian(raw, &vr, self.src.encoding);
                        let _ = write!(out, ",\"InlineBinary\":\"{}\"", base64::engine::general_purpose::STANDARD.encode(le));
                    }
                }
                b"US" => values(out, uint(self.src, &n.el, 2), push_display),
                b"UL" => values(out, uint(self.src, &n.el, 4), push_display),
                b"UV" => values(out, uint(self.src, &n.el, 8), push_display),
                b"SS" => values(out, uint(self.src, &n.el, 2), |o, v| push_display(o, v as u16 as i16)),
                b"SL" => values(out, uint(self.src, &n.el, 4), |o, v| push_display(o, v as u32 as i32)),
                b"SV" => values(out, uint(self.src, &n.el, 8), |o, v| push_display(o, v as i64)),
                b"FL" => values(out, uint(self.src, &n.el, 4), |o, v| float(o, f64::from(f32::from_bits(v as u32)))),
                b"FD" => values(out, uint(self.src, &n.el, 8), |o, v| float(o, f64::from_bits(v))),
                b"AT" => {
                    let w = uint(self.src, &n.el, 2);
                    values(out, w.chunks_exact(2).map(|p| format!("{:04X}{:04X}", p[0], p[1])).collect(), |o, v| string(o, &v));
                }
                b"IS" | b"DS" => values(out, split(&text::ascii(raw)).collect(), |o, v| number(o, &v)),
                b"PN" => values(out, split(&text::decode(cs, raw)).collect(), |o, v| person_name(o, &v)),
                b"LT" | b"ST" | b"UT" => values(out, single(text::decode(cs, raw)), |o, v| string(o, &v)),
                b"UR" => values(out, single(text::ascii(raw)), |o, v| string(o, &v)),
                b"SH" | b"LO" | b"UC" => values(out, split(&text::decode(cs, raw)).collect(), |o, v| string_or_null(o, &v)),
                _ => values(out, split(&text::ascii(raw)).collect(), |o, v| string_or_null(o, &v)),
            }
        }
        out.push('}');
    }
}

fn single(v: String) -> Vec<String> {
    if v.is_empty() {
        Vec::new()
    } else {
        vec![v]
    }
}

/// `,"Value":[...]` unless there are no values.
fn values<T>(out: &mut String, v: Vec<T>, mut each: impl FnMut(&mut String, T)) {
    if v.is_empty() {
        return;
    }
    out.push_str(",\"Value\":[");
    for (i, x) in v.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, x);
    }
    out.push(']');
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// A JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn string_or_null(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push_str("null");
    } else {
        string(out, s);
    }
}

/// IS and DS values as JSON numbers; a value that is not a number stays a
/// string rather than being lost.
fn number(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push_str("null");
    } else if let Ok(i) = v.parse::<i64>() {
        push_display(out, i);
    } else {
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => float(out, f),
            _ => string(out, v),
        }
    }
}

fn float(out: &mut String, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => push_display(out, n),
        None => out.push_str("null"),
    }
}

/// A PN value: its alphabetic, ideographic and phonetic component groups.
fn person_name(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push_str("null");
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"].iter().zip(v.split('=')) {
        let g = group.trim_end_matches('^');
        if !g.is_empty() {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "\"{key}\":");
            string(out, g);
        }
    }
    out.push('}');
}

/// Writes `"GGGGEEEE":{...}`, one attribute from its VR and its value as
/// text (multiple values separated by backslashes), as the index holds it.
pub fn text_attribute(out: &mut String, tag: u32, vr: &str, text: &str) {
    let _ = write!(out, "\"{}\":{{\"vr\":\"{vr}\"", tag_hex(tag));
    let v: Vec<String> = split(text).collect();
    match vr {
        "PN" => values(out, v, |o, x| person_name(o, &x)),
        "IS" | "DS" | "US" | "UL" | "SS" | "SL" => values(out, v, |o, x| number(o, &x)),
        _ => values(out, v, |o, x| string_or_null(o, &x)),
    }
    out.push('}');
}

/// "GGGGEEEE", as DICOM JSON names attributes.
pub fn tag_hex(tag: u32) -> String {
    format!("{tag:08X}")
}

fn vr_str(vr: [u8; 2]) -> String {
    String::from_utf8_lossy(&vr).into_owned()
}

/// The VR the data dictionary gives a tag, for implicit VR data sets.
fn vr_from_dictionary(tag: u32, pixel_rep: u64) -> Option<[u8; 2]> {
    let (group, elem) = ((tag >> 16) as u16, tag as u16);
    if group % 2 == 1 {
        // Private creators are LO; other private values are unknown.
        return Some(if (0x10..=0xFF).contains(&elem) { *b"LO" } else { *b"UN" });
    }
    let entry = dicom_dictionary_std::StandardDataDictionary.by_tag(Tag(group, elem))?;
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr,
        VirtualVr::Xs => {
            if pixel_rep == 1 {
                dicom_core::VR::SS
            } else {
                dicom_core::VR::US
            }
        }
        _ => dicom_core::VR::OW,
    };
    let s = vr.to_string();
    let b = s.as_bytes();
    (b.len() == 2).then(|| [b[0], b[1]])
}

/// The element's value as unsigned integers of `width` bytes.
fn uint(src: &Source<'_>, el: &Element, width: usize) -> Vec<u64> {
    let be = src.encoding == Encoding::ExplicitBe;
    src.buf
        .get(el.start..el.end)
        .unwrap_or(&[])
        .chunks_exact(width)
        .map(|c| {
            let mut v = 0u64;
            for i in 0..width {
                let b = if be { c[i] } else { c[width - 1 - i] };
                v = (v << 8) | u64::from(b);
            }
            v
        })
        .collect()
}

/// Binary values are given in little endian byte order (PS3.18 F.2.7).
pub fn little_endian<'a>(raw: &'a [u8], vr: &[u8; 2], enc: Encoding) -> std::borrow::Cow<'a, [u8]> {
    let width = match vr {
        b"OW" => 2,
        b"OF" | b"OL" => 4,
        b"OD" | b"OV" => 8,
        _ => 1,
    };
    if enc != Encoding::ExplicitBe || width == 1 {
        return raw.into();
    }
    raw.chunks(width).flat_map(|c| c.iter().rev().copied()).collect::<Vec<u8>>().into()
}

fn split(s: &str) -> impl Iterator<Item = String> + '_ {
    let empty = s.is_empty();
    s.split('\\').filter(move |_| !empty).map(|v| v.trim_matches([' ', '\0']).to_owned())
}

/// A bulk value found by its path ("7FE00010", "00540016.0.00282000").
pub enum Bulk<'a> {
    /// A value and its VR (as stored: big endian in a big endian file).
    Bytes(&'a [u8], [u8; 2]),
    /// Encapsulated pixel data: the fragments after the offset table.
    Fragments(Vec<&'a [u8]>),
}

/// The value `path` names in the data set, if it names a binary value.
pub fn bulk_value<'a>(buf: &'a [u8], nodes: &[Node], path: &str) -> Option<Bulk<'a>> {
    let mut parts = path.split('.');
    let mut level = nodes;
    loop {
        let tag = u32::from_str_radix(parts.next()?, 16).ok()?;
        let n = level.iter().find(|n| n.el.tag == tag)?;
        match parts.next() {
            None => {
                if !n.fragments.is_empty() {
                    return Some(Bulk::Fragments(n.fragments.iter().skip(1).filter_map(|&(s, e)| buf.get(s..e)).collect()));
                }
                if &n.el.vr == b"SQ" || !n.items.is_empty() {
                    return None;
                }
                return buf.get(n.el.start..n.el.end).map(|v| Bulk::Bytes(v, n.el.vr));
            }
            Some(i) => level = n.items.get(i.parse::<usize>().ok()?)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pn(v: &str) -> Value {
        let mut s = String::new();
        person_name(&mut s, v);
        serde_json::from_str(&s).unwrap()
    }

    fn num(v: &str) -> Value {
        let mut s = String::new();
        number(&mut s, v);
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn person_names_numbers_and_strings() {
        assert_eq!(
            pn("Yamada^Tarou=山田^太郎=やまだ^たろう"),
            serde_json::json!({"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"})
        );
        assert_eq!(pn("DOE^JOHN^^^"), serde_json::json!({"Alphabetic": "DOE^JOHN"}));
        assert_eq!(pn("=山田"), serde_json::json!({"Ideographic": "山田"}));
        assert_eq!(num("12"), Value::from(12));
        assert_eq!(num("-1.5e2"), Value::from(-150.0));
        assert_eq!(num("abc"), Value::from("abc"));
        let attr = |vr: &str, v: &str| {
            let mut s = String::from("{");
            text_attribute(&mut s, 0x0010_0020, vr, v);
            s.push('}');
            serde_json::from_str::<Value>(&s).unwrap()["00100020"].clone()
        };
        assert_eq!(attr("LO", "A\\\\B"), serde_json::json!({"vr": "LO", "Value": ["A", null, "B"]}));
        assert_eq!(attr("LO", ""), serde_json::json!({"vr": "LO"}));
        assert_eq!(attr("IS", "3"), serde_json::json!({"vr": "IS", "Value": [3]}));
        let mut s = String::new();
        string(&mut s, "a\"b\\c\u{1}é");
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "a\"b\\c\u{1}é");
    }

    #[test]
    fn implicit_vrs_come_from_the_dictionary() {
        assert_eq!(vr_from_dictionary(0x0010_0010, 0), Some(*b"PN"));
        assert_eq!(vr_from_dictionary(0x0028_0106, 1), Some(*b"SS"));
        assert_eq!(vr_from_dictionary(0x0009_0010, 0), Some(*b"LO"));
        assert_eq!(vr_from_dictionary(0x0009_1001, 0), Some(*b"UN"));
    }
}
