//! Encapsulated frames: RLE (rle.rs), JPEG (jpeg-decoder; 12-bit lossy in
//! jpeg12.rs), JPEG-LS (CharLS) and JPEG 2000 (OpenJPEG). Every codec's
//! header is checked against the DICOM header before it decodes, so a
//! codestream cannot make it allocate more than the frame the file declares.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::header::{ImageInfo, Photometric};
use super::{jpeg12, rle, RenderError};

const JPEG: [&str; 6] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];
const JPEG_LS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];
const J2K: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

pub fn is_j2k(ts: &str) -> bool {
    J2K.contains(&ts)
}

/// Whether frames in `ts` can be decoded here.
pub fn supported(ts: &str) -> bool {
    ts == super::decode::TS_RLE || JPEG.contains(&ts) || JPEG_LS.contains(&ts) || is_j2k(ts)
}

/// Decodes one encapsulated frame (`n` is its 0-based number, for messages) to
/// interleaved samples, and the photometric interpretation they are in.
pub fn decode(info: &ImageInfo, bytes: &[u8], n: u32) -> Result<(Vec<i32>, Photometric), RenderError> {
    let ts = info.transfer_syntax.as_str();
    // Held until the frame is decoded: the codec's output, as i32.
    let _share = super::budget::DECODES.acquire(info.frame_samples() as u64 * 4)?;
    let (name, result) = if ts == super::decode::TS_RLE {
        ("RLE", rle::decode(info, bytes).map(|v| (v, info.photometric.clone())))
    } else if JPEG.contains(&ts) {
        ("JPEG", guard(|| jpeg(info, bytes)))
    } else if JPEG_LS.contains(&ts) {
        ("JPEG-LS", guard(|| jpeg_ls(info, bytes)))
    } else if is_j2k(ts) {
        ("JPEG 2000", guard(|| j2k(info, bytes)))
    } else {
        return Err(RenderError::UnsupportedTransferSyntax(ts.to_owned()));
    };
    let (v, pi) = result.map_err(|reason| RenderError::Codec { codec: name, frame: n, reason })?;
    if v.len() != info.frame_samples() {
        return Err(RenderError::Codec { codec: name, frame: n, reason: format!("decoded {} samples, the header implies {}", v.len(), info.frame_samples()) });
    }
    Ok((v, pi))
}

/// Runs a codec, turning a panic inside it into an error.
fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err("the decoder panicked on this data".into()))
}

fn check_dims(what: &str, w: u32, h: u32, c: u32, info: &ImageInfo) -> Result<(), String> {
    if w != info.cols || h != info.rows || c != info.samples {
        return Err(format!("{what} is {w}×{h} with {c} components, the DICOM header says {}×{} with {}", info.cols, info.rows, info.samples));
    }
    Ok(())
}

/// What the JPEG markers before the first scan say.
struct JpegHeader {
    sof: u8,
    precision: u8,
    height: u32,
    width: u32,
    components: u32,
    /// Adobe APP14 transform flag (0: RGB/CMYK, 1: YCbCr).
    adobe: Option<u8>,
}

fn jpeg_header(b: &[u8]) -> Result<JpegHeader, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no JPEG start of image marker".into());
    }
    let mut pos = 2;
    let mut adobe = None;
    while pos + 4 <= b.len() {
        if b[pos] != 0xFF {
            return Err(format!("expected a marker at byte {pos}"));
        }
        let m = b[pos + 1];
        if m == 0xFF {
            pos += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
        let seg = b.get(pos + 4..pos + 2 + len).ok_or_else(|| format!("marker segment at byte {pos} runs past the data"))?;
        match m {
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe = Some(seg[11]),
            0xC0..=0xCF | 0xF7 if !matches!(m, 0xC4 | 0xC8 | 0xCC) => {
                if seg.len() < 6 {
                    return Err("short frame header".into());
                }
                return Ok(JpegHeader {
                    sof: m,
                    precision: seg[0],
                    height: u32::from(u16::from_be_bytes([seg[1], seg[2]])),
                    width: u32::from(u16::from_be_bytes([seg[3], seg[4]])),
                    components: u32::from(seg[5]),
                    adobe,
                });
            }
            0xDA => break,
            _ => {}
        }
        pos += 2 + len;
    }
    Err("no frame header before the first scan".into())
}

fn jpeg(info: &ImageInfo, b: &[u8]) -> Result<(Vec<i32>, Photometric), String> {
    use jpeg_decoder::{ColorTransform, Decoder, PixelFormat};
    let h = jpeg_header(b)?;
    check_dims("the JPEG frame", h.width, h.height, h.components, info)?;
    let lossless = matches!(h.sof, 0xC3 | 0xC7 | 0xCB | 0xCF);
    if !lossless && h.precision > 8 {
        return jpeg12::decode(b, info.rows, info.cols, info.samples).map(|v| (v, full_res(&info.photometric)));
    }
    let mut d = Decoder::new(b);
    d.set_max_decoding_buffer_size(info.frame_samples() * 2 + 64);
    // Colour: the DICOM header decides, unless an Adobe marker says otherwise
    // (PS3.5 8.2.1: RGB means no colour transform was applied).
    let ycc = match (h.adobe, &info.photometric) {
        (Some(t), _) => t != 0,
        (None, pi) => !matches!(pi, Photometric::Rgb),
    };
    let mut pi = full_res(&info.photometric);
    if h.components == 3 {
        if lossless || !ycc {
            // jpeg-decoder 0.3.2's `None` repeats the first component for
            // 3-component images; `RGB` interleaves them unchanged.
            d.set_color_transform(ColorTransform::RGB);
        } else {
            d.set_color_transform(ColorTransform::YCbCr);
        }
        if !lossless {
            // Either converted here, or RGB by the header or the Adobe marker.
            pi = Photometric::Rgb;
        }
    } else if h.components != 1 {
        return Err(format!("{} components", h.components));
    }
    let px = d.decode().map_err(|e| e.to_string())?;
    let fmt = d.info().map(|i| i.pixel_format).ok_or("no image information")?;
    let out = match fmt {
        PixelFormat::L16 => px.chunks_exact(2).map(|c| i32::from(u16::from_ne_bytes([c[0], c[1]]))).collect(),
        PixelFormat::RGB24 if h.precision > 8 => px.chunks_exact(2).map(|c| i32::from(u16::from_ne_bytes([c[0], c[1]]))).collect(),
        _ => px.iter().map(|&v| i32::from(v)).collect(),
    };
    Ok((out, pi))
}

fn jpeg_ls(info: &ImageInfo, b: &[u8]) -> Result<(Vec<i32>, Photometric), String> {
    let h = jpeg_header(b)?;
    if h.sof != 0xF7 {
        return Err(format!("frame marker FF{:02X} is not JPEG-LS (FFF7)", h.sof));
    }
    check_dims("the JPEG-LS frame", h.width, h.height, h.components, info)?;
    let ilv = jls_interleave(b);
    let mut c = charls::CharLS::default();
    let px = c.decode(b).map_err(|e| e.to_string())?;
    let n = info.frame_samples();
    let mut out: Vec<i32> = if h.precision > 8 {
        px.chunks_exact(2).map(|c| i32::from(u16::from_le_bytes([c[0], c[1]]))).collect()
    } else {
        px.iter().map(|&v| i32::from(v)).collect()
    };
    out.truncate(n);
    if info.samples == 3 && ilv == 0 && out.len() == n {
        let p = n / 3;
        out = (0..n).map(|i| out[(i % 3) * p + i / 3]).collect();
    }
    Ok((out, info.photometric.clone()))
}

/// The interleave mode (ILV) of the first JPEG-LS scan: 0 none, 1 line, 2 sample.
fn jls_interleave(b: &[u8]) -> u8 {
    let mut pos = 2;
    while pos + 4 <= b.len() && b[pos] == 0xFF {
        let len = usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
        if b[pos + 1] == 0xDA {
            let ns = usize::from(*b.get(pos + 4).unwrap_or(&1));
            return *b.get(pos + 5 + 2 * ns + 1).unwrap_or(&0);
        }
        pos += 2 + len;
    }
    0
}

const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
/// The JP2 signature box (ISO/IEC 15444-1 I.5.1).
const JP2_SIGNATURE: [u8; 12] = [0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
/// Tiles a codestream may have (Isot, the tile index, is 0–65534).
const MAX_TILES: u64 = 65535;

/// The codestream of a JPEG 2000 frame: the frame itself when raw, or the
/// contents of the first contiguous codestream box ('jp2c') of a JP2 file,
/// found by walking the box structure (a SOC/SIZ pattern elsewhere, in an
/// 'xml ' box say, is data, not the image).
fn j2k_codestream(b: &[u8]) -> Result<&[u8], String> {
    if b.starts_with(&SOC_SIZ) {
        return Ok(b);
    }
    if !b.starts_with(&JP2_SIGNATURE) {
        return Err("neither a JPEG 2000 codestream (SOC, SIZ at byte 0) nor a JP2 file (signature box at byte 0)".into());
    }
    let be32 = |p: usize| b.get(p..p + 4).and_then(|v| v.try_into().ok()).map(u32::from_be_bytes);
    let mut pos = 0usize;
    // Every box is at least 8 bytes, so this ends within b.len() / 8 boxes.
    while pos < b.len() {
        let (Some(lbox), Some(tbox)) = (be32(pos), b.get(pos + 4..pos + 8)) else {
            return Err(format!("JP2 box header at byte {pos} runs past the data"));
        };
        let name = String::from_utf8_lossy(tbox).into_owned();
        let (header, len) = match lbox {
            0 => (8, (b.len() - pos) as u64),
            1 => match (be32(pos + 8), be32(pos + 12)) {
                (Some(hi), Some(lo)) => (16, (u64::from(hi) << 32) | u64::from(lo)),
                _ => return Err(format!("JP2 box '{name}' at byte {pos}: extended length runs past the data")),
            },
            n => (8, u64::from(n)),
        };
        let remain = (b.len() - pos) as u64;
        if len < header || len > remain {
            return Err(format!("JP2 box '{name}' at byte {pos} declares {len} bytes, {remain} remain"));
        }
        let end = pos + len as usize;
        if tbox == b"jp2c" {
            return b.get(pos + header as usize..end).ok_or_else(|| format!("JP2 box '{name}' at byte {pos} is empty"));
        }
        pos = end;
    }
    Err("JP2 file without a codestream box (jp2c)".into())
}

/// The image size and components the SIZ marker segment gives.
#[derive(Debug, PartialEq)]
struct Siz {
    width: u32,
    height: u32,
    components: u32,
}

/// Reads the SIZ segment: image size and component count.
fn j2k_siz(cs: &[u8]) -> Result<Siz, String> {
    let seg = siz_segment(cs)?;
    let (xs, ys, xo, yo) = (be32(seg, 4), be32(seg, 8), be32(seg, 12), be32(seg, 16));
    let (Some(width), Some(height)) = (xs.checked_sub(xo).filter(|&w| w > 0), ys.checked_sub(yo).filter(|&h| h > 0)) else {
        return Err(format!("the JPEG 2000 codestream's image area is empty (Xsiz {xs}, XOsiz {xo}, Ysiz {ys}, YOsiz {yo})"));
    };
    Ok(Siz { width, height, components: u32::from(u16::from_be_bytes([seg[36], seg[37]])) })
}

/// The SIZ segment after SOC and the SIZ marker, at least its fixed 38 bytes.
fn siz_segment(cs: &[u8]) -> Result<&[u8], String> {
    if !cs.starts_with(&SOC_SIZ) {
        return Err("the JPEG 2000 codestream does not begin with SOC, SIZ (FF4F FF51)".into());
    }
    let lsiz = cs.get(4..6).map(|v| usize::from(u16::from_be_bytes([v[0], v[1]]))).ok_or("short SIZ marker")?;
    // Lsiz counts itself: the segment is cs[4..4 + lsiz].
    cs.get(4..4 + lsiz).filter(|s| s.len() >= 38).ok_or_else(|| "short SIZ marker".into())
}

fn be32(b: &[u8], i: usize) -> u32 {
    b.get(i..i + 4).and_then(|v| v.try_into().ok()).map(u32::from_be_bytes).unwrap_or(0)
}

/// Checks that the decoder's output will be what the rest of radhub
/// handles: full-resolution components of at most 16 bits, and a bounded
/// number of tiles (OpenJPEG keeps state for each).
fn j2k_supported(cs: &[u8]) -> Result<(), String> {
    let seg = siz_segment(cs)?;
    let (xs, ys, xt, yt, xto, yto) = (be32(seg, 4), be32(seg, 8), be32(seg, 20), be32(seg, 24), be32(seg, 28), be32(seg, 32));
    let csiz = usize::from(u16::from_be_bytes([seg[36], seg[37]]));
    if seg.len() != 38 + 3 * csiz {
        return Err(format!("SIZ of {} bytes for {csiz} components", seg.len()));
    }
    for (i, c) in seg.get(38..).unwrap_or_default().chunks_exact(3).enumerate() {
        let precision = (c[0] & 0x7F) + 1;
        if precision > 16 {
            return Err(format!("component {i} has {precision} bits, at most 16 are supported"));
        }
        if c[1] != 1 || c[2] != 1 {
            return Err(format!("component {i} is sub-sampled {}×{}, only full-resolution components are supported", c[1], c[2]));
        }
    }
    let (Some(across), Some(down)) = (xs.checked_sub(xto).filter(|_| xt > 0), ys.checked_sub(yto).filter(|_| yt > 0)) else {
        return Err(format!("invalid JPEG 2000 tiling: {xt}×{yt} tiles from {xto},{yto}"));
    };
    let tiles = u64::from(across.div_ceil(xt)) * u64::from(down.div_ceil(yt));
    if tiles > MAX_TILES {
        return Err(format!("the JPEG 2000 codestream has {tiles} tiles, at most {MAX_TILES} are allowed"));
    }
    Ok(())
}

fn j2k(info: &ImageInfo, b: &[u8]) -> Result<(Vec<i32>, Photometric), String> {
    let cs = j2k_codestream(b)?;
    let siz = j2k_siz(cs)?;
    check_dims("the JPEG 2000 image", siz.width, siz.height, siz.components, info)?;
    j2k_supported(cs)?;
    // Only the codestream checked above goes to OpenJPEG.
    let img = jpeg2k::Image::from_bytes(cs).map_err(|e| e.to_string())?;
    let comps = img.components();
    if comps.len() != info.samples as usize {
        return Err(format!("{} components decoded, {} expected", comps.len(), info.samples));
    }
    let px = info.rows as usize * info.cols as usize;
    for (i, comp) in comps.iter().enumerate() {
        if comp.width() != info.cols || comp.height() != info.rows || comp.data().len() < px {
            return Err(format!("component {i} is {}×{}, subsampled components are not supported", comp.width(), comp.height()));
        }
    }
    let mut out = Vec::with_capacity(px * comps.len());
    if comps.len() == 1 {
        out.extend_from_slice(&comps[0].data()[..px]);
    } else {
        let planes: Vec<&[i32]> = comps.iter().map(|c| &c.data()[..px]).collect();
        for i in 0..px {
            for p in &planes {
                out.push(p[i]);
            }
        }
    }
    // OpenJPEG applies the inverse colour transform (RCT/ICT) itself.
    let pi = match info.photometric {
        Photometric::YbrIct | Photometric::YbrRct => Photometric::Rgb,
        ref p => full_res(p),
    };
    Ok((out, pi))
}

/// Codecs return every component at full resolution.
fn full_res(pi: &Photometric) -> Photometric {
    match pi {
        Photometric::YbrFull422 => Photometric::YbrFull,
        p => p.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(rows: u32, cols: u32, samples: u32, ts: &str) -> ImageInfo {
        ImageInfo {
            transfer_syntax: ts.into(),
            rows,
            cols,
            samples,
            bits_allocated: 8,
            bits_stored: 8,
            high_bit: 7,
            signed: false,
            planar: false,
            photometric: if samples == 1 { Photometric::Monochrome2 } else { Photometric::Rgb },
            frames: 1,
            slope: 1.0,
            intercept: 0.0,
            modality_lut: None,
            windows: Vec::new(),
            voi_lut: None,
            padding: None,
            inverse_shape: false,
            palette: None,
        }
    }

    /// SOC and a SIZ segment for one tile of `w`×`h`, `c` components of `bits` bits sub-sampled by `sub`.
    pub(crate) fn soc_siz(w: u32, h: u32, c: u16, bits: u8, sub: u8) -> Vec<u8> {
        let mut v = SOC_SIZ.to_vec();
        v.extend((38 + 3 * c).to_be_bytes());
        v.extend(0u16.to_be_bytes());
        for x in [w, h, 0, 0, w, h, 0, 0] {
            v.extend(x.to_be_bytes());
        }
        v.extend(c.to_be_bytes());
        for _ in 0..c {
            v.extend([bits - 1, sub, sub]);
        }
        v
    }

    fn jp2_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = (8 + body.len() as u32).to_be_bytes().to_vec();
        v.extend(kind);
        v.extend(body);
        v
    }

    /// A JP2 file whose 'xml ' box holds a codestream header matching a
    /// 64×64 image, and whose real codestream ('jp2c') declares `real`.
    pub(crate) fn jp2_with_fake_siz(real: (u32, u32)) -> Vec<u8> {
        let mut f = JP2_SIGNATURE.to_vec();
        f.extend(jp2_box(b"ftyp", b"jp2 \0\0\0\0jp2 "));
        let mut fake = soc_siz(64, 64, 1, 8, 1);
        fake.extend([0xFF, 0x90, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend(jp2_box(b"xml ", &fake));
        let mut real = soc_siz(real.0, real.1, 1, 8, 1);
        real.extend([0xFF, 0x52, 0, 12, 0, 0, 0, 1, 0, 5, 4, 4, 0, 0, 0xFF, 0xD9]);
        f.extend(jp2_box(b"jp2c", &real));
        f
    }

    #[test]
    fn jp2_codestream_is_found_by_its_box_not_by_a_search() {
        let t = std::time::Instant::now();
        let e = j2k(&info(64, 64, 1, J2K[0]), &jp2_with_fake_siz((60000, 60000))).unwrap_err();
        assert_eq!(e, "the JPEG 2000 image is 60000×60000 with 1 components, the DICOM header says 64×64 with 1");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let cs = jp2_with_fake_siz((64, 64));
        assert_eq!(j2k_siz(j2k_codestream(&cs).unwrap()), Ok(Siz { width: 64, height: 64, components: 1 }));
    }

    #[test]
    fn jp2_boxes_are_walked_with_every_length_form() {
        let real = soc_siz(8, 4, 3, 8, 1);
        let mut f = JP2_SIGNATURE.to_vec();
        // An extended-length 'uuid' box, then a 'jp2c' box running to the end (length 0).
        f.extend(1u32.to_be_bytes());
        f.extend(b"uuid");
        f.extend(20u64.to_be_bytes());
        f.extend([7; 4]);
        f.extend(0u32.to_be_bytes());
        f.extend(b"jp2c");
        f.extend(&real);
        assert_eq!(j2k_codestream(&f), Ok(&real[..]));
        // A box longer than the data, or shorter than its header.
        let mut long = JP2_SIGNATURE.to_vec();
        long.extend(jp2_box(b"jp2c", &real));
        long.truncate(long.len() - 1);
        assert!(j2k_codestream(&long).unwrap_err().contains("declares"));
        let mut short = JP2_SIGNATURE.to_vec();
        short.extend([0, 0, 0, 4]);
        short.extend(b"jp2c");
        assert!(j2k_codestream(&short).unwrap_err().contains("declares 4 bytes"));
        let mut none = JP2_SIGNATURE.to_vec();
        none.extend(jp2_box(b"xml ", &real));
        assert!(j2k_codestream(&none).unwrap_err().contains("without a codestream box"));
    }

    #[test]
    fn raw_codestreams_start_with_soc_siz_and_are_checked() {
        let mut late = vec![0, 0];
        late.extend(soc_siz(64, 64, 1, 8, 1));
        assert!(j2k_codestream(&late).unwrap_err().contains("neither"));
        assert!(j2k_supported(&soc_siz(64, 64, 1, 16, 1)).is_ok());
        assert!(j2k_supported(&soc_siz(64, 64, 1, 17, 1)).unwrap_err().contains("17 bits"));
        assert!(j2k_supported(&soc_siz(64, 64, 3, 8, 2)).unwrap_err().contains("sub-sampled 2×2"));
        let mut tiny_tiles = soc_siz(4096, 4096, 1, 8, 1);
        tiny_tiles[24..32].copy_from_slice(&[0, 0, 0, 8, 0, 0, 0, 8]);
        assert!(j2k_supported(&tiny_tiles).unwrap_err().contains("262144 tiles"));
        let mut empty = soc_siz(64, 64, 1, 8, 1);
        empty[16..20].copy_from_slice(&64u32.to_be_bytes());
        assert!(j2k_siz(&empty).unwrap_err().contains("empty"));
        assert!(j2k_siz(&soc_siz(64, 64, 1, 8, 1)[..30]).unwrap_err().contains("short SIZ"));
    }
}
