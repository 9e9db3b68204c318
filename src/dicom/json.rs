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
use serde_json::{Map, Value};

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

/// The data set as a DICOM JSON object.
pub fn dataset(src: &Source<'_>) -> Map<String, Value> {
    let pixel_rep = src.nodes.iter().find(|n| n.el.tag == PIXEL_REPRESENTATION).map_or(0, |n| uint(src, &n.el, 2).first().copied().unwrap_or(0));
    let ctx = Ctx { src, pixel_rep };
    let mut out = ctx.item(src.nodes, &text::charset(None), "");
    if let Some(el) = src.tail.and_then(|t| t.element) {
        let vr = ctx.vr(&el);
        let mut attr = Map::new();
        attr.insert("vr".into(), Value::String(vr_str(vr)));
        attr.insert("BulkDataURI".into(), Value::String(format!("{}/{}", src.bulk_base, tag_hex(el.tag))));
        out.insert(tag_hex(el.tag), Value::Object(attr));
    }
    out
}

struct Ctx<'s, 'a> {
    src: &'s Source<'a>,
    pixel_rep: u64,
}

impl Ctx<'_, '_> {
    fn item(&self, nodes: &[Node], inherited: &SpecificCharacterSet, path: &str) -> Map<String, Value> {
        // An item may declare its own character set (PS3.5 7.5.3).
        let own = nodes.iter().find(|n| n.el.tag == SPECIFIC_CHARACTER_SET).map(|n| text::charset(Some(self.value(&n.el))));
        let cs = own.as_ref().unwrap_or(inherited);
        let mut out = Map::new();
        for n in nodes {
            // Group lengths are deprecated and meaningless once re-encoded.
            if n.el.tag & 0xFFFF == 0 {
                continue;
            }
            let hex = tag_hex(n.el.tag);
            let here = if path.is_empty() { hex.clone() } else { format!("{path}.{hex}") };
            out.insert(hex, Value::Object(self.attribute(n, cs, &here)));
        }
        out
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

    fn attribute(&self, n: &Node, cs: &SpecificCharacterSet, path: &str) -> Map<String, Value> {
        let vr = if n.items.is_empty() || self.src.encoding == Encoding::ImplicitLe || &n.el.vr != b"UN" { self.vr(&n.el) } else { *b"SQ" };
        let mut attr = Map::new();
        attr.insert("vr".into(), Value::String(vr_str(vr)));
        let raw = self.value(&n.el);
        if &vr == b"SQ" {
            let items: Vec<Value> = n.items.iter().enumerate().map(|(i, it)| Value::Object(self.item(it, cs, &format!("{path}.{i}")))).collect();
            if !items.is_empty() {
                attr.insert("Value".into(), Value::Array(items));
            }
            return attr;
        }
        if n.el.tag == PIXEL_DATA || !n.fragments.is_empty() {
            attr.insert("BulkDataURI".into(), Value::String(format!("{}/{path}", self.src.bulk_base)));
            return attr;
        }
        let values: Vec<Value> = match &vr {
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"UN" => {
                if raw.is_empty() {
                    return attr;
                }
                if raw.len() > INLINE_MAX {
                    attr.insert("BulkDataURI".into(), Value::String(format!("{}/{path}", self.src.bulk_base)));
                } else {
                    let le = little_endian(raw, &vr, self.src.encoding);
                    attr.insert("InlineBinary".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(le)));
                }
                return attr;
            }
            b"US" => uint(self.src, &n.el, 2).into_iter().map(Value::from).collect(),
            b"UL" => uint(self.src, &n.el, 4).into_iter().map(Value::from).collect(),
            b"UV" => uint(self.src, &n.el, 8).into_iter().map(Value::from).collect(),
            b"SS" => uint(self.src, &n.el, 2).into_iter().map(|v| Value::from(v as u16 as i16)).collect(),
            b"SL" => uint(self.src, &n.el, 4).into_iter().map(|v| Value::from(v as u32 as i32)).collect(),
            b"SV" => uint(self.src, &n.el, 8).into_iter().map(|v| Value::from(v as i64)).collect(),
            b"FL" => uint(self.src, &n.el, 4).into_iter().map(|v| float(f64::from(f32::from_bits(v as u32)))).collect(),
            b"FD" => uint(self.src, &n.el, 8).into_iter().map(|v| float(f64::from_bits(v))).collect(),
            b"AT" => {
                let w = uint(self.src, &n.el, 2);
                w.chunks_exact(2).map(|p| Value::String(format!("{:04X}{:04X}", p[0], p[1]))).collect()
            }
            b"IS" | b"DS" => split(&text::ascii(raw)).map(|v| number(&v)).collect(),
            b"PN" => split(&text::decode(cs, raw)).map(|v| person_name(&v)).collect(),
            b"LT" | b"ST" | b"UT" => {
                let v = text::decode(cs, raw);
                if v.is_empty() {
                    Vec::new()
                } else {
                    vec![Value::String(v)]
                }
            }
            b"UR" => {
                let v = text::ascii(raw);
                if v.is_empty() {
                    Vec::new()
                } else {
                    vec![Value::String(v)]
                }
            }
            b"SH" | b"LO" | b"UC" => split(&text::decode(cs, raw)).map(string).collect(),
            _ => split(&text::ascii(raw)).map(string).collect(),
        };
        if !values.is_empty() {
            attr.insert("Value".into(), Value::Array(values));
        }
        attr
    }
}

/// One attribute from its VR and its value as text (multiple values
/// separated by backslashes), as the index holds it.
pub fn text_attribute(vr: &str, text: &str) -> Map<String, Value> {
    let mut attr = Map::new();
    attr.insert("vr".into(), Value::String(vr.to_owned()));
    let values: Vec<Value> = match vr {
        "PN" => split(text).map(|v| person_name(&v)).collect(),
        "IS" | "DS" | "US" | "UL" | "SS" | "SL" => split(text).map(|v| number(&v)).collect(),
        _ => split(text).map(string).collect(),
    };
    if !values.is_empty() {
        attr.insert("Value".into(), Value::Array(values));
    }
    attr
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
fn little_endian<'a>(raw: &'a [u8], vr: &[u8; 2], enc: Encoding) -> std::borrow::Cow<'a, [u8]> {
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

fn string(v: String) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::String(v)
    }
}

/// IS and DS values as JSON numbers; a value that is not a number stays a
/// string rather than being lost.
fn number(v: &str) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => float(f),
        _ => Value::String(v.to_owned()),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A PN value: its alphabetic, ideographic and phonetic component groups.
fn person_name(v: &str) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut o = Map::new();
    for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"].iter().zip(v.split('=')) {
        let g = group.trim_end_matches('^');
        if !g.is_empty() {
            o.insert((*key).into(), Value::String(g.to_owned()));
        }
    }
    Value::Object(o)
}

/// A bulk value found by its path ("7FE00010", "00540016.0.00282000").
pub enum Bulk<'a> {
    Bytes(&'a [u8]),
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
                return buf.get(n.el.start..n.el.end).map(Bulk::Bytes);
            }
            Some(i) => level = n.items.get(i.parse::<usize>().ok()?)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_and_numbers() {
        assert_eq!(
            person_name("Yamada^Tarou=山田^太郎=やまだ^たろう"),
            serde_json::json!({"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"})
        );
        assert_eq!(person_name("DOE^JOHN^^^"), serde_json::json!({"Alphabetic": "DOE^JOHN"}));
        assert_eq!(number("12"), Value::from(12));
        assert_eq!(number("-1.5e2"), Value::from(-150.0));
        assert_eq!(number("abc"), Value::from("abc"));
        assert_eq!(split("A\\\\B").map(string).collect::<Vec<_>>(), vec![Value::from("A"), Value::Null, Value::from("B")]);
        assert_eq!(split("").count(), 0);
    }

    #[test]
    fn implicit_vrs_come_from_the_dictionary() {
        assert_eq!(vr_from_dictionary(0x0010_0010, 0), Some(*b"PN"));
        assert_eq!(vr_from_dictionary(0x0028_0106, 1), Some(*b"SS"));
        assert_eq!(vr_from_dictionary(0x0009_0010, 0), Some(*b"LO"));
        assert_eq!(vr_from_dictionary(0x0009_1001, 0), Some(*b"UN"));
    }
}
