//! The whole data set as a tree: every element, sequence items and pixel
//! data fragments, as byte ranges into the scanned buffer. Used to encode
//! DICOM JSON metadata; run only on data sets `scan` accepted, and still
//! bounded at every step (an error, never a panic or a large allocation).

use super::{rd_u16, rd_u32, Element, Encoding, ScanError, Walker, ITEM, ITEM_END, PIXEL_DATA, SEQ_END, UNDEFINED};

/// One element; `items` for sequences, `fragments` for encapsulated pixel
/// data (value ranges, the basic offset table first).
#[derive(Clone, Debug)]
pub struct Node {
    pub el: Element,
    pub items: Vec<Vec<Node>>,
    pub fragments: Vec<(usize, usize)>,
}

/// The elements of the data set in `buf`, in stream order. An element
/// whose value ends beyond `buf` (a prefix read without its pixel data)
/// ends the tree, reported in `Tree::tail`, for callers that read files in
/// part.
pub fn tree(buf: &[u8], encoding: Encoding) -> Result<Tree, ScanError> {
    let mut w = Walker { buf, enc: encoding, top: Vec::new(), nested: Vec::new(), nested_wanted: &[], fragments: 0, strict: true };
    let mut nodes = Vec::new();
    let mut pos = 0;
    // Trailing zero bytes are padding; found once (see `Walker::walk`).
    let padding = super::last_nonzero(buf, 0, buf.len());
    while pos < padding {
        match node(&mut w, pos, 0) {
            Ok((n, next)) => {
                nodes.push(n);
                pos = next;
            }
            Err(ScanError::LengthBeyondData { .. } | ScanError::Truncated { .. }) => return Ok(Tree { nodes, tail: Some(tail(&w, pos)) }),
            Err(e) => return Err(e),
        }
    }
    Ok(Tree { nodes, tail: None })
}

pub struct Tree {
    pub nodes: Vec<Node>,
    /// The element that runs past the end of the buffer: its header as
    /// declared (`end` may lie beyond the buffer), or only its offset when
    /// even the header is cut or its length is undefined.
    pub tail: Option<Tail>,
}

#[derive(Clone, Copy, Debug)]
pub struct Tail {
    pub offset: usize,
    pub element: Option<Element>,
}

/// The header at `pos`, read without checking its value against the buffer.
fn tail(w: &Walker<'_>, pos: usize) -> Tail {
    let b = w.buf;
    let be = w.enc == Encoding::ExplicitBe;
    let element = (|| {
        if pos + 8 > b.len() {
            return None;
        }
        let tag = (u32::from(rd_u16(b, pos, be)) << 16) | u32::from(rd_u16(b, pos + 2, be));
        let (vr, len, start) = match w.enc {
            Encoding::ImplicitLe => (super::implicit_vr(tag, 0), rd_u32(b, pos + 4, false), pos + 8),
            _ => {
                let vr = [b[pos + 4], b[pos + 5]];
                if super::is_long_vr(vr) {
                    if pos + 12 > b.len() {
                        return None;
                    }
                    (vr, rd_u32(b, pos + 8, be), pos + 12)
                } else {
                    (vr, u32::from(rd_u16(b, pos + 6, be)), pos + 8)
                }
            }
        };
        (len != UNDEFINED).then_some(Element { tag, vr, start, end: start + len as usize, undefined: false })
    })();
    Tail { offset: pos, element }
}

fn node(w: &mut Walker<'_>, pos: usize, depth: usize) -> Result<(Node, usize), ScanError> {
    if depth > super::MAX_DEPTH {
        return Err(ScanError::Malformed { offset: pos, what: "sequences nested too deeply" });
    }
    let (el, next) = w.header(pos)?;
    if el.tag == ITEM || el.tag == ITEM_END || el.tag == SEQ_END {
        return Err(ScanError::Malformed { offset: pos, what: "stray item or delimiter" });
    }
    let mut n = Node { el, items: Vec::new(), fragments: Vec::new() };
    // Encapsulated pixel data may sit in an item too (an Icon Image Sequence).
    let end = if el.undefined && el.tag == PIXEL_DATA {
        fragments(w, next, &mut n.fragments)?
    } else if el.undefined && &el.vr == b"UN" && w.enc != Encoding::ImplicitLe {
        let outer = std::mem::replace(&mut w.enc, Encoding::ImplicitLe);
        let r = items(w, next, w.buf.len(), true, depth, &mut n.items);
        w.enc = outer;
        r?
    } else if el.undefined {
        items(w, next, w.buf.len(), true, depth, &mut n.items)?
    } else {
        if &el.vr == b"SQ" {
            items(w, el.start, el.end, false, depth, &mut n.items)?;
        }
        next
    };
    n.el.end = if el.undefined { end } else { el.end };
    Ok((n, end))
}

fn items(w: &mut Walker<'_>, mut pos: usize, end: usize, undefined: bool, depth: usize, out: &mut Vec<Vec<Node>>) -> Result<usize, ScanError> {
    let be = w.enc == Encoding::ExplicitBe;
    loop {
        if !undefined && pos == end {
            return Ok(pos);
        }
        if pos + 8 > end {
            return Err(ScanError::Truncated { offset: pos, needed: 8, available: end.saturating_sub(pos) });
        }
        let tag = (u32::from(rd_u16(w.buf, pos, be)) << 16) | u32::from(rd_u16(w.buf, pos + 2, be));
        let len = rd_u32(w.buf, pos + 4, be);
        let body = pos + 8;
        match tag {
            SEQ_END if undefined => return Ok(body),
            ITEM => {
                let mut item = Vec::new();
                let (item_end, stop) = if len == UNDEFINED {
                    (end, true)
                } else if len as usize > end - body {
                    return Err(ScanError::LengthBeyondData { tag: ITEM, declared: u64::from(len), available: (end - body) as u64 });
                } else {
                    (body + len as usize, false)
                };
                let mut p = body;
                loop {
                    if !stop && p == item_end {
                        break;
                    }
                    if stop && p + 8 <= w.buf.len() && rd_u16(w.buf, p, be) == 0xFFFE && rd_u16(w.buf, p + 2, be) == 0xE00D {
                        p += 8;
                        break;
                    }
                    if p >= item_end {
                        return Err(ScanError::Malformed { offset: p, what: "item without delimiter" });
                    }
                    let (n, next) = node(w, p, depth + 1)?;
                    item.push(n);
                    p = next;
                }
                out.push(item);
                pos = p;
            }
            _ => return Err(ScanError::Malformed { offset: pos, what: "expected an item in a sequence" }),
        }
    }
}

fn fragments(w: &Walker<'_>, mut pos: usize, out: &mut Vec<(usize, usize)>) -> Result<usize, ScanError> {
    let be = w.enc == Encoding::ExplicitBe;
    loop {
        if pos + 8 > w.buf.len() {
            return Err(ScanError::Truncated { offset: pos, needed: 8, available: w.buf.len() - pos });
        }
        let tag = (u32::from(rd_u16(w.buf, pos, be)) << 16) | u32::from(rd_u16(w.buf, pos + 2, be));
        let len = rd_u32(w.buf, pos + 4, be);
        match tag {
            SEQ_END => return Ok(pos + 8),
            ITEM => {
                let available = w.buf.len() - pos - 8;
                if len == UNDEFINED || len as usize > available {
                    return Err(ScanError::LengthBeyondData { tag: PIXEL_DATA, declared: u64::from(len), available: available as u64 });
                }
                out.push((pos + 8, pos + 8 + len as usize));
                pos += 8 + len as usize;
            }
            _ => return Err(ScanError::Malformed { offset: pos, what: "expected a pixel data fragment" }),
        }
    }
}
