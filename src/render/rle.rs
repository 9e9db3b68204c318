//! RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one
//! PackBits segment per byte of each sample (most significant first).

use super::header::ImageInfo;

pub fn decode(info: &ImageInfo, b: &[u8]) -> Result<Vec<i32>, String> {
    if !info.bits_allocated.is_multiple_of(8) {
        return Err(format!("RLE with {} bits allocated", info.bits_allocated));
    }
    let bytes = (info.bits_allocated / 8) as usize;
    let samples = info.samples as usize;
    let want = bytes * samples;
    if b.len() < 64 {
        return Err(format!("RLE header needs 64 bytes, {} present", b.len()));
    }
    let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]) as usize;
    let n = word(0);
    if n != want {
        return Err(format!("{n} RLE segments, {samples} samples of {bytes} bytes need {want}"));
    }
    let px = info.rows as usize * info.cols as usize;
    let mut out = vec![0i32; px * samples];
    let mut seg = vec![0u8; px];
    for k in 0..n {
        let start = word(1 + k);
        let end = if k + 1 < n { word(2 + k) } else { b.len() };
        if start < 64 || start > end || end > b.len() {
            return Err(format!("RLE segment {} spans bytes {start}..{end} of {}", k + 1, b.len()));
        }
        let got = packbits(&b[start..end], &mut seg);
        if got < px {
            return Err(format!("RLE segment {} decodes to {got} bytes, {px} expected", k + 1));
        }
        let (sample, byte) = (k / bytes, k % bytes);
        let shift = 8 * (bytes - 1 - byte) as u32;
        for (o, &v) in out[sample..].iter_mut().step_by(samples).zip(&seg) {
            *o |= (u32::from(v) << shift) as i32;
        }
    }
    Ok(out)
}

/// PackBits into `out`; returns how many bytes were produced (stops at
/// `out.len()`).
fn packbits(src: &[u8], out: &mut [u8]) -> usize {
    let (mut i, mut o) = (0, 0);
    while i < src.len() && o < out.len() {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let n = (h as usize + 1).min(src.len() - i).min(out.len() - o);
            out[o..o + n].copy_from_slice(&src[i..i + n]);
            i += h as usize + 1;
            o += n;
        } else if h != -128 {
            let Some(&v) = src.get(i) else { break };
            let n = (1 - h as isize) as usize;
            let n = n.min(out.len() - o);
            out[o..o + n].fill(v);
            i += 1;
            o += n;
        }
    }
    o
}
