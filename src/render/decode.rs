//! From Pixel Data bytes to one frame of stored sample values: native
//! (uncompressed) data read here, encapsulated frames handed to a codec.

use super::codec;
use super::header::{ImageInfo, Photometric};
use super::RenderError;

/// One decoded frame: `rows × cols × samples` values, interleaved. For
/// unsigned 32-bit data the i32 holds the u32's bit pattern (`unsigned32`).
pub struct Frame {
    pub data: Vec<i32>,
    /// The photometric interpretation of `data` (a codec may have turned
    /// YCbCr into RGB, and YBR_FULL_422 is expanded to YBR_FULL).
    pub photometric: Photometric,
    pub unsigned32: bool,
}

/// Where the pixel data is within the owned data set bytes.
pub enum PixelSource {
    /// Native: the value bytes, and whether 1- or 8-bit samples sit in the
    /// OW words of a big endian data set (so each byte pair is swapped).
    Native { start: usize, end: usize, swap_pairs: bool },
    /// Encapsulated: each frame's fragments.
    Encapsulated { frames: Vec<Vec<(usize, usize)>> },
}

pub const TS_RLE: &str = "1.2.840.10008.1.2.5";

/// Bytes of one native frame, and of the whole pixel data (checked).
pub fn native_frame_bits(info: &ImageInfo) -> u64 {
    let px = u64::from(info.rows) * u64::from(info.cols);
    let samples = if info.photometric == Photometric::YbrFull422 { px * 2 } else { px * u64::from(info.samples) };
    samples * u64::from(info.bits_allocated)
}

/// The fragments of encapsulated pixel data at `start..end` (the items
/// after the element header, ending with the sequence delimiter), grouped
/// into frames.
pub fn map_fragments(data: &[u8], start: usize, end: usize, info: &ImageInfo, eot: Option<&[u8]>) -> Result<Vec<Vec<(usize, usize)>>, RenderError> {
    let mut items = Vec::new();
    let mut pos = start;
    while pos + 8 <= end {
        let tag = (u32::from(u16::from_le_bytes([data[pos], data[pos + 1]])) << 16) | u32::from(u16::from_le_bytes([data[pos + 2], data[pos + 3]]));
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]) as usize;
        if tag == 0xFFFE_E0DD {
            break;
        }
        if tag != 0xFFFE_E000 || len > end - pos - 8 {
            return Err(RenderError::Invalid(format!("malformed pixel data item at byte {pos}")));
        }
        items.push((pos, pos + 8, pos + 8 + len));
        pos += 8 + len;
    }
    let Some(&(_, bot_start, bot_end)) = items.first() else {
        return Err(RenderError::Invalid("encapsulated pixel data without an offset table item".into()));
    };
    let frags: Vec<(usize, usize, usize)> = items[1..].to_vec();
    let n = info.frames as usize;
    if frags.is_empty() {
        return Err(RenderError::Invalid("encapsulated pixel data without fragments".into()));
    }
    let all = || frags.iter().map(|&(_, s, e)| (s, e)).collect::<Vec<_>>();
    if n == 1 {
        return Ok(vec![all()]);
    }
    if frags.len() == n {
        return Ok(frags.iter().map(|&(_, s, e)| vec![(s, e)]).collect());
    }
    // Offsets (Basic or Extended Offset Table) point at item headers,
    // counted from the first fragment's.
    let base = frags[0].0;
    let offsets: Vec<u64> = match eot {
        Some(t) if t.len() / 8 == n => t.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        _ => data[bot_start..bot_end].chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
    };
    if offsets.len() == n {
        let idx: Option<Vec<usize>> = offsets.iter().map(|&o| frags.iter().position(|f| (f.0 - base) as u64 == o)).collect();
        if let Some(idx) = idx.filter(|i| i.windows(2).all(|w| w[0] < w[1]) && i[0] == 0) {
            let mut out = Vec::with_capacity(n);
            for k in 0..n {
                let stop = idx.get(k + 1).copied().unwrap_or(frags.len());
                out.push(frags[idx[k]..stop].iter().map(|&(_, s, e)| (s, e)).collect());
            }
            return Ok(out);
        }
    }
    // No usable table: a new frame starts at each fragment that begins
    // with the codec's start marker.
    let starts = |b: &[u8]| match info.transfer_syntax.as_str() {
        TS_RLE => b.len() >= 8 && b[4..8] == [64, 0, 0, 0],
        ts if codec::is_j2k(ts) => b.starts_with(&[0xFF, 0x4F]) || b.get(4..8) == Some(b"jP  "),
        _ => b.starts_with(&[0xFF, 0xD8]),
    };
    let mut out: Vec<Vec<(usize, usize)>> = Vec::new();
    for &(_, s, e) in &frags {
        match out.last_mut() {
            Some(cur) if !starts(&data[s..e]) => cur.push((s, e)),
            _ => out.push(vec![(s, e)]),
        }
    }
    if out.len() != n {
        return Err(RenderError::Invalid(format!("cannot split {} fragments into {} frames (no usable offset table)", frags.len(), n)));
    }
    Ok(out)
}

/// Decodes frame `f` (0-based).
pub fn frame(info: &ImageInfo, data: &[u8], src: &PixelSource, be: bool, f: u32) -> Result<Frame, RenderError> {
    if f >= info.frames {
        return Err(RenderError::FrameOutOfRange { frame: f, frames: info.frames });
    }
    let unsigned32 = info.bits_stored == 32 && !info.signed;
    match src {
        PixelSource::Native { start, end, swap_pairs } => {
            let bits = native_frame_bits(info);
            // Open checked frames × bits against the bytes, so this cannot overflow; checked all the same.
            let from = bits.checked_mul(u64::from(f)).ok_or_else(|| RenderError::TooLarge(format!("frame {f} of {bits} bits")))?;
            let to = from + bits;
            let present = (end - start) as u64;
            if to.div_ceil(8) > present {
                return Err(RenderError::Truncated { frame: f, needed: to.div_ceil(8).saturating_sub(from / 8), present: present.saturating_sub(from / 8) });
            }
            let bytes = &data[*start..*end];
            let mut out = native(info, bytes, from, be, *swap_pairs)?;
            let mut photometric = info.photometric.clone();
            if photometric == Photometric::YbrFull422 {
                out = expand_422(&out, info);
                photometric = Photometric::YbrFull;
            }
            Ok(Frame { data: out, photometric, unsigned32 })
        }
        PixelSource::Encapsulated { frames } => {
            let frags = frames.get(f as usize).ok_or(RenderError::FrameOutOfRange { frame: f, frames: frames.len() as u32 })?;
            let joined: Vec<u8>;
            let bytes: &[u8] = if frags.len() == 1 {
                &data[frags[0].0..frags[0].1]
            } else {
                joined = frags.iter().flat_map(|&(s, e)| data[s..e].iter().copied()).collect();
                &joined
            };
            let (mut out, photometric) = codec::decode(info, bytes, f)?;
            normalise(&mut out, info);
            Ok(Frame { data: out, photometric, unsigned32 })
        }
    }
}

/// Native samples of the frame starting at bit `from` of `bytes`.
fn native(info: &ImageInfo, bytes: &[u8], from: u64, be: bool, swap_pairs: bool) -> Result<Vec<i32>, RenderError> {
    let n = if info.photometric == Photometric::YbrFull422 { info.rows as usize * info.cols as usize * 2 } else { info.frame_samples() };
    let start = (from / 8) as usize;
    let (bs, sh) = (info.bits_stored, info.high_bit + 1 - info.bits_stored);
    let mut out: Vec<i32> = Vec::with_capacity(n);
    let truncated = || RenderError::Invalid(format!("native frame at byte {start} runs past the pixel data"));
    let take = |width: usize| bytes.get(start..start + width * n).ok_or_else(truncated);
    match info.bits_allocated {
        1 => {
            let bit0 = from % 8;
            for i in 0..n as u64 {
                let b = bit0 + i;
                let mut byte = start + (b / 8) as usize;
                if swap_pairs {
                    byte ^= 1;
                }
                let v = bytes.get(byte).copied().unwrap_or(0);
                out.push(i32::from((v >> (b % 8)) & 1));
            }
            return Ok(out);
        }
        8 if swap_pairs => out.extend((start..start + n).map(|i| i32::from(bytes.get(i ^ 1).copied().unwrap_or(0)))),
        8 => out.extend(take(1)?.iter().map(|&b| i32::from(b))),
        16 => {
            let s = take(2)?;
            if be {
                out.extend(s.chunks_exact(2).map(|c| i32::from(u16::from_be_bytes([c[0], c[1]]))));
            } else {
                out.extend(s.chunks_exact(2).map(|c| i32::from(u16::from_le_bytes([c[0], c[1]]))));
            }
        }
        _ => {
            let s = take(4)?;
            if be {
                out.extend(s.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i32));
            } else {
                out.extend(s.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i32));
            }
        }
    }
    if bs < info.bits_allocated || sh > 0 {
        mask(&mut out, bs, sh, info.signed);
    } else if info.signed && info.bits_allocated < 32 {
        mask(&mut out, bs, 0, true);
    }
    if info.planar && info.samples == 3 {
        out = interleave(&out, info.rows as usize * info.cols as usize)?;
    }
    Ok(out)
}

/// Keeps bits `sh..sh+bs` of each value, sign-extended if `signed`.
fn mask(v: &mut [i32], bs: u32, sh: u32, signed: bool) {
    if bs >= 32 {
        return;
    }
    if signed {
        let up = 32 - bs - sh;
        let down = 32 - bs;
        for x in v {
            *x = (*x << up) >> down;
        }
    } else {
        let m = (1u32 << bs) - 1;
        for x in v {
            *x = ((*x as u32 >> sh) & m) as i32;
        }
    }
}

/// Codec output to the stored values' range: a codec's signedness may
/// disagree with Pixel Representation (JPEG-LS has none; some JPEG 2000
/// encoders get it wrong), so values are re-read as `bits_stored`-bit
/// numbers of the declared signedness.
fn normalise(v: &mut [i32], info: &ImageInfo) {
    if info.bits_stored < 32 {
        mask(v, info.bits_stored, 0, info.signed);
    }
}

/// Three planes of `px` samples each to interleaved pixels.
fn interleave(planes: &[i32], px: usize) -> Result<Vec<i32>, RenderError> {
    let short = || RenderError::Invalid(format!("planar frame of {} samples, 3 planes of {px} needed", planes.len()));
    let (r, rest) = (planes.get(..px).ok_or_else(short)?, planes.get(px..).ok_or_else(short)?);
    let (g, b) = (rest.get(..px).ok_or_else(short)?, rest.get(px..2 * px).ok_or_else(short)?);
    Ok(r.iter().zip(g).zip(b).flat_map(|((&r, &g), &b)| [r, g, b]).collect())
}

/// YBR_FULL_422 native data: Y1 Y2 Cb Cr for each pair of pixels of a row.
fn expand_422(v: &[i32], info: &ImageInfo) -> Vec<i32> {
    let (rows, cols) = (info.rows as usize, info.cols as usize);
    let mut out = Vec::with_capacity(rows * cols * 3);
    let mut i = 0;
    for _ in 0..rows {
        let mut x = 0;
        while x < cols {
            let (y1, y2, cb, cr) =
                (v.get(i).copied().unwrap_or(0), v.get(i + 1).copied().unwrap_or(0), v.get(i + 2).copied().unwrap_or(0), v.get(i + 3).copied().unwrap_or(0));
            out.extend_from_slice(&[y1, cb, cr]);
            if x + 1 < cols {
                out.extend_from_slice(&[y2, cb, cr]);
            }
            x += 2;
            i += 4;
        }
    }
    out
}
