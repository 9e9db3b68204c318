//! Lookup tables (PS3.3 C.11.1 Modality LUT, C.11.2 VOI LUT, C.7.6.3.1.5
//! palettes and C.7.9.2 segmented palettes) and the VOI window functions.

use crate::dicom::scan::Scanned;

use super::header::us;
use super::{RenderError, VoiFunction, Window};

/// A LUT as its descriptor and data define it: input `first..first+n` maps
/// to `entries`; inputs outside clamp to the first or last entry.
#[derive(Clone, Debug)]
pub struct Lut {
    pub first: i64,
    pub bits: u32,
    pub entries: Vec<u16>,
}

fn descriptor(d: &[u8], be: bool, signed: bool) -> Result<(usize, i64, u32), RenderError> {
    let (Some(n), Some(first), Some(bits)) = (us(d, 0, be), us(d, 1, be), us(d, 2, be)) else {
        return Err(RenderError::Lut(format!("LUT Descriptor of {} bytes, 6 needed", d.len())));
    };
    let n = if n == 0 { 65536 } else { usize::from(n) };
    let first = if signed { i64::from(first as i16) } else { i64::from(first) };
    if !(1..=16).contains(&bits) {
        return Err(RenderError::Lut(format!("LUT Descriptor gives {bits} bits per entry")));
    }
    Ok((n, first, u32::from(bits)))
}

fn words(v: &[u8], be: bool) -> impl Iterator<Item = u16> + '_ {
    v.chunks_exact(2).map(move |c| if be { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
}

impl Lut {
    /// A LUT from its descriptor and data bytes (US/OW words, or for 8-bit
    /// palettes packed bytes).
    pub fn parse(desc: &[u8], data: &[u8], be: bool, signed: bool) -> Result<Lut, RenderError> {
        let (n, first, mut bits) = descriptor(desc, be, signed)?;
        let entries: Vec<u16> = if bits <= 8 && (data.len() == n || (data.len() == n + 1 && n % 2 == 1)) {
            data[..n].iter().map(|&b| u16::from(b)).collect()
        } else if data.len() >= 2 * n {
            words(&data[..2 * n], be).collect()
        } else {
            return Err(RenderError::Lut(format!("LUT Data holds {} bytes, its descriptor needs {} entries", data.len(), n)));
        };
        // Some writers declare 8 bits and store 16-bit values.
        if bits <= 8 && entries.iter().any(|&e| e > 255) {
            bits = 16;
        }
        Ok(Lut { first, bits, entries })
    }

    pub fn lookup(&self, x: i64) -> u16 {
        let i = (x - self.first).clamp(0, self.entries.len() as i64 - 1);
        self.entries[i as usize]
    }

    pub fn max_out(&self) -> f64 {
        f64::from((1u32 << self.bits) - 1)
    }

    /// The smallest and largest entries reached by inputs in `lo..=hi`.
    pub fn range(&self, lo: i64, hi: i64) -> (u16, u16) {
        let a = (lo - self.first).clamp(0, self.entries.len() as i64 - 1) as usize;
        let b = (hi - self.first).clamp(0, self.entries.len() as i64 - 1) as usize;
        let s = &self.entries[a.min(b)..=a.max(b)];
        (s.iter().copied().min().unwrap_or(0), s.iter().copied().max().unwrap_or(0))
    }
}

/// PALETTE COLOR: stored value → 8-bit RGB.
#[derive(Clone, Debug)]
pub struct Palette {
    first: i64,
    table: Vec<[u8; 3]>,
}

impl Palette {
    /// Reads the red, green and blue descriptors and data (the tags after
    /// `desc`, `data`, `seg` by 1 and 2), plain or segmented.
    pub fn read(s: &Scanned<'_>, desc: u32, data: u32, seg: u32) -> Result<Palette, RenderError> {
        let be = s.is_big_endian();
        let mut channels = Vec::with_capacity(3);
        for c in 0..3 {
            let d = s.get(desc + c).ok_or(RenderError::Missing("Palette Color Lookup Table Descriptor (0028,1101-1103)"))?;
            // The descriptor's first value is always unsigned here (PS3.3 C.7.6.3.1.5 allows SS only for signed pixels).
            let (n, first, bits) = descriptor(d, be, false)?;
            let lut = if let Some(v) = s.get(data + c) {
                let lut = Lut::parse(d, v, be, false)?;
                Lut { first, ..lut }
            } else if let Some(v) = s.get(seg + c) {
                let entries = segmented(v, be, n)?;
                Lut { first, bits, entries }
            } else {
                return Err(RenderError::Missing("Palette Color Lookup Table Data (0028,1201-1203)"));
            };
            channels.push(lut);
        }
        let n = channels.iter().map(|l| l.entries.len()).max().unwrap_or(1);
        let first = channels[0].first;
        let to8 = |l: &Lut, i: usize| {
            let e = u32::from(l.entries[i.min(l.entries.len() - 1)]);
            if l.bits > 8 {
                (e >> (l.bits - 8)) as u8
            } else {
                e as u8
            }
        };
        let table = (0..n).map(|i| [to8(&channels[0], i), to8(&channels[1], i), to8(&channels[2], i)]).collect();
        Ok(Palette { first, table })
    }

    pub fn rgb(&self, v: i64) -> [u8; 3] {
        let i = (v - self.first).clamp(0, self.table.len() as i64 - 1);
        self.table[i as usize]
    }
}

/// Expands segmented palette data (PS3.3 C.7.9.2): discrete, linear and
/// indirect segments, at most `n` entries.
fn segmented(v: &[u8], be: bool, n: usize) -> Result<Vec<u16>, RenderError> {
    segmented_within(v, be, n, WORK_BUDGET)
}

fn segmented_within(v: &[u8], be: bool, n: usize, budget: usize) -> Result<Vec<u16>, RenderError> {
    let w: Vec<u16> = words(v, be).collect();
    let mut x = Expansion { w: &w, out: Vec::with_capacity(n), n, work: 0, budget };
    x.segments(0, w.len(), usize::MAX, 0)?;
    if x.out.is_empty() {
        return Err(RenderError::Lut("segmented palette defines no entries".into()));
    }
    Ok(x.out)
}

/// Steps (segments visited plus entries produced) one expansion may take.
/// A palette has at most 65536 entries, and the expansion stops when it is
/// full, so an entry costs at most four steps (itself, its segment and two
/// indirect segments leading to it): the budget is a backstop against
/// segments that cost without producing, which three levels of 65535
/// indirect segments would multiply to about 65535³.
const WORK_BUDGET: usize = 4 * 65536 + 4096;

struct Expansion<'a> {
    w: &'a [u16],
    out: Vec<u16>,
    n: usize,
    work: usize,
    budget: usize,
}

fn bad(what: &str) -> RenderError {
    RenderError::Lut(format!("segmented palette: {what}"))
}

impl Expansion<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.n
    }

    fn spend(&mut self, steps: usize) -> Result<(), RenderError> {
        self.work += steps;
        if self.work > self.budget {
            return Err(bad(&format!("its expansion exceeds its work budget of {} steps", self.budget)));
        }
        Ok(())
    }

    /// Expands at most `count` segments of `w[pos..end]` (stopping at `end`
    /// or when the output is full); returns where the last one ended.
    fn segments(&mut self, mut pos: usize, end: usize, count: usize, depth: u32) -> Result<usize, RenderError> {
        if depth > 2 {
            return Err(bad("indirect segments nested too deeply"));
        }
        let mut done = 0;
        while done < count && pos < end && !self.full() {
            self.spend(1)?;
            let op = self.w.get(pos).copied().ok_or_else(|| bad("segment beyond data"))?;
            let len = usize::from(*self.w.get(pos + 1).ok_or_else(|| bad("truncated segment header"))?);
            pos += 2;
            let room = self.n - self.out.len();
            match op {
                0 => {
                    if len == 0 {
                        return Err(bad("discrete segment of no entries"));
                    }
                    let vals = self.w.get(pos..pos + len).filter(|_| pos + len <= end).ok_or_else(|| bad("discrete segment beyond data"))?;
                    let take = &vals[..len.min(room)];
                    self.spend(take.len())?;
                    self.out.extend_from_slice(take);
                    pos += len;
                }
                1 => {
                    if len == 0 {
                        return Err(bad("linear segment of no entries"));
                    }
                    let y1 = f64::from(*self.w.get(pos).filter(|_| pos < end).ok_or_else(|| bad("linear segment beyond data"))?);
                    let y0 = f64::from(*self.out.last().ok_or_else(|| bad("linear segment first"))?);
                    self.spend(len.min(room))?;
                    for i in 1..=len.min(room) {
                        self.out.push((y0 + (y1 - y0) * i as f64 / len as f64).round() as u16);
                    }
                    pos += 1;
                }
                2 => {
                    if len == 0 {
                        return Err(bad("indirect segment copying no segments"));
                    }
                    let (Some(lo), Some(hi)) = (self.w.get(pos).copied(), self.w.get(pos + 1).copied()) else {
                        return Err(bad("indirect segment beyond data"));
                    };
                    // A byte offset from the start of the data; the copied segments may run to its end.
                    let offset = ((usize::from(hi) << 16) | usize::from(lo)) / 2;
                    if offset >= self.w.len() {
                        return Err(bad("indirect segment points beyond data"));
                    }
                    self.segments(offset, self.w.len(), len, depth + 1)?;
                    pos += 2;
                }
                _ => return Err(bad("unknown segment type")),
            }
            done += 1;
        }
        Ok(pos)
    }
}

impl Window {
    pub fn is_valid(&self) -> bool {
        self.center.is_finite()
            && self.width.is_finite()
            && match self.function {
                VoiFunction::Linear => self.width >= 1.0,
                VoiFunction::LinearExact | VoiFunction::Sigmoid => self.width > 0.0,
            }
    }

    /// PS3.3 C.11.2.1.2: the output in [0, 1] for modality value `x`.
    pub fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            VoiFunction::Linear => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    ((x - (c - 0.5)) / (w - 1.0) + 0.5).clamp(0.0, 1.0)
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    ((x - c) / w + 0.5).clamp(0.0, 1.0)
                }
            }
            VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_functions_follow_ps3_3_c_11_2_1_2() {
        let lin = Window { center: 40.0, width: 400.0, function: VoiFunction::Linear };
        assert_eq!(lin.apply(40.0 - 0.5 - 399.0 / 2.0), 0.0);
        assert_eq!(lin.apply(40.0 - 0.5 + 399.0 / 2.0 + 0.01), 1.0);
        assert!((lin.apply(39.5) - 0.5).abs() < 1e-12);
        let exact = Window { function: VoiFunction::LinearExact, ..lin };
        assert_eq!(exact.apply(-160.0), 0.0);
        assert!((exact.apply(40.0) - 0.5).abs() < 1e-12);
        assert!((exact.apply(140.0) - 0.75).abs() < 1e-12);
        assert_eq!(exact.apply(240.01), 1.0);
        let sig = Window { function: VoiFunction::Sigmoid, ..lin };
        assert!((sig.apply(40.0) - 0.5).abs() < 1e-12);
        assert!((sig.apply(140.0) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
        assert!(!Window { width: 0.5, ..lin }.is_valid() && Window { width: 0.5, ..exact }.is_valid());
    }

    #[test]
    fn segmented_palette_expands_discrete_linear_and_indirect_segments() {
        let words: Vec<u16> = vec![0, 2, 10, 20, 1, 4, 60, 2, 2, 0, 0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let out = segmented(&bytes, false, 100).unwrap();
        // 10 20 | 30 40 50 60 | again (indirect, 2 segments from byte 0): 10 20, then linear from 20: 30 40 50 60.
        assert_eq!(out, vec![10, 20, 30, 40, 50, 60, 10, 20, 30, 40, 50, 60]);
        assert!(segmented(&[7, 0, 1, 0], false, 10).is_err());
        assert_eq!(segmented(&bytes, false, 3).unwrap(), vec![10, 20, 30]);
    }

    fn le(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Three levels of `n` segments: `n` indirect ones each copying the `n`
    /// indirect ones of the second level, each copying the `n` segments `bottom`.
    fn nested(n: u16, bottom: &[u16]) -> Vec<u8> {
        let n32 = u32::from(n);
        let (b_at, c_at) = (8 * n32, 16 * n32);
        let mut words = Vec::new();
        for target in [b_at, c_at] {
            for _ in 0..n {
                words.extend([2, n, target as u16, (target >> 16) as u16]);
            }
        }
        for _ in 0..n {
            words.extend_from_slice(bottom);
        }
        le(&words)
    }

    #[test]
    fn nested_indirect_segments_of_empty_segments_are_refused_quickly() {
        // Unchecked, 65535³ visits of segments that add nothing: it never ended.
        let t = std::time::Instant::now();
        match segmented(&nested(65535, &[0, 0]), false, 65536) {
            Err(RenderError::Lut(m)) => assert!(m.contains("discrete segment of no entries"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t.elapsed());
    }

    #[test]
    fn expansion_stops_when_the_palette_is_full() {
        // Each bottom segment adds one entry; the output fills during the
        // first top-level segment. Unchecked, the remaining 65535² copies
        // were still visited, each a no-op: minutes.
        let t = std::time::Instant::now();
        let out = segmented(&nested(65535, &[0, 1, 7]), false, 65536).unwrap();
        assert_eq!((out.len(), out.iter().all(|&v| v == 7)), (65536, true));
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t.elapsed());
    }

    #[test]
    fn expansion_past_its_work_budget_is_refused() {
        // Four one-entry segments (8 steps), an indirect one (1) copying them (8): 17 steps.
        let words = le(&[0, 1, 5, 0, 1, 6, 0, 1, 7, 0, 1, 8, 2, 4, 0, 0]);
        assert_eq!(segmented_within(&words, false, 8, 100).unwrap(), vec![5, 6, 7, 8, 5, 6, 7, 8]);
        match segmented_within(&words, false, 8, 12) {
            Err(RenderError::Lut(m)) => assert_eq!(m, "segmented palette: its expansion exceeds its work budget of 12 steps"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_segments_are_refused() {
        for words in [&[0u16, 0][..], &[0, 1, 5, 1, 0, 9], &[0, 1, 5, 2, 0, 0, 0]] {
            match segmented(&le(words), false, 10) {
                Err(RenderError::Lut(m)) => assert!(m.contains("no entries") || m.contains("no segments"), "{words:?}: {m}"),
                other => panic!("{words:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn lut_parse_reads_packed_bytes_words_and_signed_first_values() {
        let desc = |n: u16, first: u16, bits: u16| [n.to_le_bytes(), first.to_le_bytes(), bits.to_le_bytes()].concat();
        let l = Lut::parse(&desc(4, 0xFFFE, 8), &[1, 2, 3, 4], false, true).unwrap();
        assert_eq!((l.first, l.entries.clone()), (-2, vec![1, 2, 3, 4]));
        assert_eq!((l.lookup(-10), l.lookup(1), l.lookup(99)), (1, 4, 4));
        let l = Lut::parse(&desc(2, 0, 16), &[0, 1, 255, 255], false, false).unwrap();
        assert_eq!(l.entries, vec![256, 65535]);
        assert!(Lut::parse(&desc(4, 0, 16), &[0; 6], false, false).is_err());
        assert!(Lut::parse(&[0; 4], &[0; 6], false, false).is_err());
    }
}
