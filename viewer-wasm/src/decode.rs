//! Frames to pixel values: uncompressed (little endian, as the hub sends
//! `application/octet-stream`), RLE (PS3.5 Annex G) and JPEG (baseline,
//! extended 8-bit, lossless) decoded here. Anything else is refused, and the
//! viewer asks the hub for the frame uncompressed instead (JPEG-LS, JPEG
//! 2000, 12-bit lossy JPEG).

use crate::image::{Frame, PixelDesc, Pixels};
use crate::multipart::first_part;
use crate::Error;

/// Decodes the answer to a frame request (`content_type` is the response's).
/// `decoded_by_hub`: an uncompressed answer for a frame stored compressed,
/// whose colour the hub has already made RGB.
pub fn frame(content_type: &str, body: &[u8], d: &PixelDesc, decoded_by_hub: bool) -> Result<Frame, Error> {
    let part = first_part(content_type, body)?;
    let media = part.media();
    let ts = part.transfer_syntax().unwrap_or("");
    let rgb;
    let d = if decoded_by_hub && d.samples == 3 {
        rgb = PixelDesc { photometric: "RGB".into(), planar: false, ..d.clone() };
        &rgb
    } else {
        d
    };
    let pixels = match media.as_str() {
        "application/octet-stream" => native(part.body, d)?,
        "image/dicom-rle" | "image/x-dicom-rle" => rle(part.body, d)?,
        _ if ts == "1.2.840.10008.1.2.5" => rle(part.body, d)?,
        "image/jpeg" => jpeg(part.body, d)?,
        other => return Err(Error::Unsupported(format!("{other} {ts}"))),
    };
    Frame::new(d, pixels)
}

fn samples(d: &PixelDesc) -> usize {
    d.rows as usize * d.columns as usize * d.samples as usize
}

/// Uncompressed little-endian values, masked to Bits Stored and sign
/// extended (high bits may carry overlays).
pub fn native(b: &[u8], d: &PixelDesc) -> Result<Pixels, Error> {
    if d.photometric == "YBR_FULL_422" && d.samples == 3 && d.bits_allocated == 8 {
        return ybr_422(b, d);
    }
    let n = samples(d);
    let need = match d.bits_allocated {
        1 => n.div_ceil(8),
        8 => n,
        16 => n * 2,
        32 => n * 4,
        other => return Err(Error::Unsupported(format!("{other} bits allocated"))),
    };
    if b.len() < need {
        return Err(Error::Short { need, have: b.len() });
    }
    Ok(match d.bits_allocated {
        1 => Pixels::U8((0..n).map(|i| (b[i / 8] >> (i % 8)) & 1).collect()),
        8 if d.samples == 3 => Pixels::Rgb(interleave(&b[..n], d)),
        8 => Pixels::U8(b[..n].to_vec()),
        16 => {
            let raw = b[..need].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
            sixteen(raw, d)
        }
        _ => {
            let stored = d.bits_stored.clamp(1, 32) as u32;
            let v = b[..need].chunks_exact(4).map(|c| {
                let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let shift = 32 - stored;
                if d.signed {
                    ((u << shift) as i32) >> shift
                } else {
                    ((u << shift) >> shift) as i32
                }
            });
            Pixels::I32(v.collect())
        }
    })
}

fn sixteen(raw: impl Iterator<Item = u16>, d: &PixelDesc) -> Pixels {
    let stored = d.bits_stored.clamp(1, 16) as u32;
    let shift = 16 - stored;
    if d.signed {
        Pixels::I16(raw.map(|u| ((u << shift) as i16) >> shift).collect())
    } else {
        Pixels::U16(raw.map(|u| (u << shift) >> shift).collect())
    }
}

/// Colour planes (Planar Configuration 1) to interleaved RGB; YBR_FULL to RGB.
fn interleave(b: &[u8], d: &PixelDesc) -> Vec<u8> {
    let px = d.rows as usize * d.columns as usize;
    let mut rgb = if d.planar {
        let mut out = vec![0; px * 3];
        for i in 0..px {
            out[i * 3] = b[i];
            out[i * 3 + 1] = b[px + i];
            out[i * 3 + 2] = b[2 * px + i];
        }
        out
    } else {
        b[..px * 3].to_vec()
    };
    if d.photometric.starts_with("YBR_FULL") {
        ybr_to_rgb(&mut rgb);
    }
    rgb
}

/// Uncompressed YBR_FULL_422 (PS3.3 C.7.6.3.1.2): each pair of pixels in
/// a row is Y1 Y2 Cb Cr; both take the pair's chroma.
fn ybr_422(b: &[u8], d: &PixelDesc) -> Result<Pixels, Error> {
    let (w, h) = (d.columns as usize, d.rows as usize);
    let row = w.div_ceil(2) * 4;
    let need = row * h;
    if b.len() < need {
        return Err(Error::Short { need, have: b.len() });
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let g = &b[y * row + (x / 2) * 4..][..4];
            rgb.extend([g[x % 2], g[2], g[3]]);
        }
    }
    ybr_to_rgb(&mut rgb);
    Ok(Pixels::Rgb(rgb))
}

fn ybr_to_rgb(px: &mut [u8]) {
    for p in px.chunks_exact_mut(3) {
        let (y, cb, cr) = (p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0);
        p[0] = (y + 1.402 * cr).round().clamp(0.0, 255.0) as u8;
        p[1] = (y - 0.344_136 * cb - 0.714_136 * cr).round().clamp(0.0, 255.0) as u8;
        p[2] = (y + 1.772 * cb).round().clamp(0.0, 255.0) as u8;
    }
}

/// RLE Lossless (PS3.5 G): a 64-byte header of up to 15 segment offsets,
/// one PackBits segment per byte plane, most significant byte first.
pub fn rle(b: &[u8], d: &PixelDesc) -> Result<Pixels, Error> {
    if b.len() < 64 {
        return Err(Error::Rle("header shorter than 64 bytes"));
    }
    let word = |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]) as usize;
    let bytes_per = (d.bits_allocated as usize).div_ceil(8);
    let planes = bytes_per * d.samples as usize;
    if word(0) != planes {
        return Err(Error::Rle("segment count does not match the pixel description"));
    }
    let px = d.rows as usize * d.columns as usize;
    let mut seg = vec![0u8; px];
    let mut out = vec![0u8; px * planes];
    for s in 0..planes {
        let start = word(s + 1);
        let end = if s + 1 < planes { word(s + 2) } else { b.len() };
        if start < 64 || start > end || end > b.len() {
            return Err(Error::Rle("segment offsets out of order or past the end"));
        }
        packbits(&b[start..end], &mut seg)?;
        // Segment s is byte (bytes_per-1 - s % bytes_per) of sample s / bytes_per.
        let (sample, msb_index) = (s / bytes_per, s % bytes_per);
        for (i, &v) in seg.iter().enumerate() {
            // Little endian, samples interleaved.
            out[(i * d.samples as usize + sample) * bytes_per + (bytes_per - 1 - msb_index)] = v;
        }
    }
    let flat = PixelDesc { planar: false, ..d.clone() };
    native(&out, &flat)
}

fn packbits(src: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let (mut i, mut o) = (0, 0);
    while o < out.len() {
        let Some(&h) = src.get(i) else { return Err(Error::Rle("segment ends early")) };
        i += 1;
        let h = h as i8;
        if h >= 0 {
            let n = h as usize + 1;
            let lit = src.get(i..i + n).ok_or(Error::Rle("literal run past the segment"))?;
            let n = n.min(out.len() - o);
            out[o..o + n].copy_from_slice(&lit[..n]);
            i += lit.len();
            o += n;
        } else if h != -128 {
            let n = (1 - h as isize) as usize;
            let &v = src.get(i).ok_or(Error::Rle("repeat run past the segment"))?;
            i += 1;
            let n = n.min(out.len() - o);
            out[o..o + n].fill(v);
            o += n;
        }
    }
    Ok(())
}

/// What the colour decision needs from a JPEG's markers before its first
/// scan: the frame marker (SOFn), its precision, and the Adobe APP14
/// transform flag if present.
fn jpeg_markers(b: &[u8]) -> Option<(u8, u8, Option<u8>)> {
    let mut pos = 2;
    let mut adobe = None;
    while b.get(pos) == Some(&0xFF) {
        let m = *b.get(pos + 1)?;
        if m == 0xFF {
            pos += 1;
            continue;
        }
        let len = u16::from_be_bytes([*b.get(pos + 2)?, *b.get(pos + 3)?]) as usize;
        let seg = b.get(pos + 4..pos + 2 + len)?;
        match m {
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe = Some(seg[11]),
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) => return Some((m, *seg.first()?, adobe)),
            0xDA => return None,
            _ => {}
        }
        pos += 2 + len;
    }
    None
}

/// JPEG baseline, extended (8-bit) and lossless. Colour as the hub decides
/// it (PS3.5 8.2.1): the DICOM header says whether a colour transform was
/// applied, unless an Adobe marker says otherwise; lossless is never
/// transformed. 12-bit lossy is refused (the hub decodes it).
pub fn jpeg(b: &[u8], d: &PixelDesc) -> Result<Pixels, Error> {
    let (sof, precision, adobe) = jpeg_markers(b).ok_or_else(|| Error::Jpeg("no frame header before the first scan".into()))?;
    let lossless = matches!(sof, 0xC3 | 0xC7 | 0xCB | 0xCF);
    if !lossless && precision > 8 {
        return Err(Error::Unsupported(format!("{precision}-bit lossy JPEG")));
    }
    let mut dec = jpeg_decoder::Decoder::new(b);
    if d.samples == 3 {
        let ycc = adobe.map_or(d.photometric != "RGB", |t| t != 0);
        // jpeg-decoder's `None` repeats the first component; `RGB` keeps all three.
        dec.set_color_transform(if lossless || !ycc { jpeg_decoder::ColorTransform::RGB } else { jpeg_decoder::ColorTransform::YCbCr });
    }
    let data = dec.decode().map_err(|e| Error::Jpeg(e.to_string()))?;
    let info = dec.info().ok_or_else(|| Error::Jpeg("no frame header".into()))?;
    if (info.width as u32, info.height as u32) != (d.columns, d.rows) {
        return Err(Error::Jpeg(format!("{}×{} where the metadata says {}×{}", info.width, info.height, d.columns, d.rows)));
    }
    use jpeg_decoder::PixelFormat::*;
    Ok(match info.pixel_format {
        L8 if d.signed => Pixels::I16(data.iter().map(|&v| (v as i8) as i16).collect()),
        L8 => Pixels::U8(data),
        // Native endian, per jpeg-decoder; sign and Bits Stored from the metadata.
        L16 => sixteen(data.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])), d),
        RGB24 if precision > 8 => return Err(Error::Unsupported("16-bit colour JPEG".into())),
        RGB24 => Pixels::Rgb(data),
        CMYK32 => return Err(Error::Jpeg("CMYK".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bits: u16, stored: u16, signed: bool, samples: u16) -> PixelDesc {
        PixelDesc { rows: 2, columns: 2, bits_allocated: bits, bits_stored: stored, signed, samples, ..PixelDesc::default() }
    }

    #[test]
    fn native_masks_and_sign_extends() {
        // 12 bits stored: 0xF800 carries an overlay bit above; 0x0FFF is -1 signed.
        let b = [0x00, 0xF8, 0xFF, 0x0F, 0x01, 0x00, 0x00, 0x08];
        match native(&b, &desc(16, 12, true, 1)).unwrap() {
            Pixels::I16(v) => assert_eq!(v, vec![-2048, -1, 1, -2048]),
            _ => panic!(),
        }
        match native(&b, &desc(16, 12, false, 1)).unwrap() {
            Pixels::U16(v) => assert_eq!(v, vec![0x800, 0xFFF, 1, 0x800]),
            _ => panic!(),
        }
        assert!(matches!(native(&b[..7], &desc(16, 12, false, 1)), Err(Error::Short { need: 8, have: 7 })));
    }

    #[test]
    fn ybr_full_422_pairs_share_their_chroma() {
        // Two pixels: Y 0 and 255 with neutral chroma: black and white.
        let d = PixelDesc { rows: 1, columns: 2, bits_allocated: 8, bits_stored: 8, samples: 3, photometric: "YBR_FULL_422".into(), ..PixelDesc::default() };
        match native(&[0, 255, 128, 128], &d).unwrap() {
            Pixels::Rgb(v) => assert_eq!(v, vec![0, 0, 0, 255, 255, 255]),
            _ => panic!(),
        }
        assert!(native(&[0, 255, 128], &d).is_err());
    }

    #[test]
    fn rle_sixteen_bit_round_trip() {
        // Values 0x0102, 0x0102, 0xFF00, 0x0003: MSB plane then LSB plane.
        let mut b = vec![0u8; 64];
        b[0] = 2;
        let seg1 = [0xFFu8, 0x01, 0x01, 0xFF, 0x00]; // repeat 2 × 0x01, literal 2
        let seg2 = [0x03u8, 0x02, 0x02, 0x00, 0x03]; // literal 4
        b[4] = 64;
        b[8] = 64 + seg1.len() as u8;
        b.extend(seg1);
        b.extend(seg2);
        match rle(&b, &desc(16, 16, false, 1)).unwrap() {
            Pixels::U16(v) => assert_eq!(v, vec![0x0102, 0x0102, 0xFF00, 0x0003]),
            _ => panic!(),
        }
        let mut bad = b.clone();
        bad[8] = 200;
        assert!(rle(&bad, &desc(16, 16, false, 1)).is_err());
    }
}
