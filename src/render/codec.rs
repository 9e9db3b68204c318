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

/// The SIZ marker of a JPEG 2000 codestream (raw, or in a JP2 'jp2c' box):
/// image width, height and component count.
fn j2k_siz(b: &[u8]) -> Result<(u32, u32, u32), String> {
    let at = b.windows(4).take(4096).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]).ok_or("no JPEG 2000 codestream start (SOC, SIZ)")?;
    let s = b.get(at + 4..at + 42).ok_or("short SIZ marker")?;
    let u = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (xs, ys, xo, yo) = (u(4), u(8), u(12), u(16));
    let c = u32::from(u16::from_be_bytes([s[36], s[37]]));
    Ok((xs.saturating_sub(xo), ys.saturating_sub(yo), c))
}

fn j2k(info: &ImageInfo, b: &[u8]) -> Result<(Vec<i32>, Photometric), String> {
    let (w, h, c) = j2k_siz(b)?;
    check_dims("the JPEG 2000 image", w, h, c, info)?;
    let img = jpeg2k::Image::from_bytes(b).map_err(|e| e.to_string())?;
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
