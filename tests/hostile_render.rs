//! Hostile images through render, thumbnails and transcode: each is refused
//! with an error naming its fault, quickly and in bounded memory; none
//! panics or aborts the process. Each case prints one line for
//! docs/RELIABILITY.md: case, answer, time, peak memory (VmHWM of this
//! process, reset before the case; the cases of this file run one at a time).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use radhub::render::{Instance, RenderError};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const RLE: &str = "1.2.840.10008.1.2.5";
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";

// ---- a small Part 10 writer (explicit VR little endian) ----

#[derive(Default)]
struct Ds(Vec<u8>);

impl Ds {
    fn el(mut self, tag: u32, vr: &[u8; 2], value: &[u8]) -> Self {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if matches!(vr, b"UI" | b"OB") { 0 } else { b' ' });
        }
        self.0.extend(((tag >> 16) as u16).to_le_bytes());
        self.0.extend((tag as u16).to_le_bytes());
        self.0.extend(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            self.0.extend([0, 0]);
            self.0.extend((v.len() as u32).to_le_bytes());
        } else {
            self.0.extend((v.len() as u16).to_le_bytes());
        }
        self.0.extend(v);
        self
    }

    fn us(self, tag: u32, v: u16) -> Self {
        self.el(tag, b"US", &v.to_le_bytes())
    }

    fn text(self, tag: u32, vr: &[u8; 2], s: &str) -> Self {
        self.el(tag, vr, s.as_bytes())
    }

    /// Encapsulated Pixel Data: an empty offset table, then one fragment each.
    fn encapsulated(mut self, fragments: &[Vec<u8>]) -> Self {
        self.0.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        self.0.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        for f in fragments {
            let mut f = f.clone();
            if f.len() % 2 == 1 {
                f.push(0);
            }
            self.0.extend([0xFE, 0xFF, 0x00, 0xE0]);
            self.0.extend((f.len() as u32).to_le_bytes());
            self.0.extend(f);
        }
        self.0.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        self
    }
}

const SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";

/// The identifying attributes (tags below 0028), for instance `n`.
fn instance(n: u32) -> Ds {
    Ds::default()
        .text(0x0008_0016, b"UI", SOP_CLASS)
        .text(0x0008_0018, b"UI", &format!("1.2.826.0.1.3680043.10.1.{n}"))
        .text(0x0008_0060, b"CS", "OT")
        .text(0x0010_0010, b"PN", "HOSTILE^RENDER")
        .text(0x0010_0020, b"LO", &format!("HR{n}"))
        .text(0x0020_000D, b"UI", &format!("1.2.826.0.1.3680043.10.2.{n}"))
        .text(0x0020_000E, b"UI", &format!("1.2.826.0.1.3680043.10.3.{n}"))
}

fn part10(ts: &str, n: u32, ds: Ds) -> Vec<u8> {
    let group = Ds::default()
        .el(0x0002_0001, b"OB", &[0, 1])
        .text(0x0002_0002, b"UI", SOP_CLASS)
        .text(0x0002_0003, b"UI", &format!("1.2.826.0.1.3680043.10.1.{n}"))
        .text(0x0002_0010, b"UI", ts);
    let mut f = vec![0u8; 128];
    f.extend(b"DICM");
    f.extend(Ds::default().el(0x0002_0000, b"UL", &(group.0.len() as u32).to_le_bytes()).0);
    f.extend(group.0);
    f.extend(ds.0);
    f
}

/// The image attributes (0028,xxxx) of a `rows`×`cols` image.
fn image(ds: Ds, samples: u16, photometric: &str, frames: Option<&str>, rows: u16, cols: u16, bits: u16) -> Ds {
    let ds = ds.us(0x0028_0002, samples).text(0x0028_0004, b"CS", photometric);
    let ds = if samples > 1 { ds.us(0x0028_0006, 0) } else { ds };
    let ds = match frames {
        Some(f) => ds.text(0x0028_0008, b"IS", f),
        None => ds,
    };
    ds.us(0x0028_0010, rows).us(0x0028_0011, cols).us(0x0028_0100, bits).us(0x0028_0101, bits).us(0x0028_0102, bits - 1).us(0x0028_0103, 0)
}

// ---- the cases ----

/// Native YBR_FULL_422 (two samples a pixel) declared planar: interleave
/// read three planes and indexed past the data. On the original code
/// Instance::open accepted it and display panicked; in the thumbnail pool
/// the panic aborted the process (and this test binary with it).
fn ybr_422_planar(n: u32) -> Vec<u8> {
    let ds = image(instance(n), 3, "YBR_FULL_422", None, 4, 4, 8);
    // Planar Configuration 1, replacing the 0 `image` wrote.
    let mut ds = ds;
    let at = ds.0.windows(4).position(|w| w == [0x28, 0, 0x06, 0]).expect("planar configuration written");
    ds.0[at + 8] = 1;
    part10(EXPLICIT_LE, n, ds.el(0x7FE0_0010, b"OB", &[128; 4 * 4 * 2]))
}

#[test]
fn native_ybr_full_422_with_planar_configuration_1_is_refused() {
    let _g = support::alone();
    let file = ybr_422_planar(1);
    let (r, _, _) =
        support::case("native YBR_FULL_422, Planar Configuration 1 (render)", || Instance::open(&file).and_then(|i| i.display(0, None)), support::refused);
    match r {
        Err(RenderError::Invalid(m)) => assert!(m.contains("Planar Configuration 1") && m.contains("YBR_FULL_422"), "{m}"),
        other => panic!("{other:?}"),
    }
    let why = radhub::thumbs::thumbnail(&file).unwrap_err();
    assert!(why.contains("Planar Configuration 1"), "{why}");
    // The same image planar 0 (its layout) renders.
    let mut ok = file.clone();
    let at = ok.windows(4).position(|w| w == [0x28, 0, 0x06, 0]).unwrap();
    ok[at + 8] = 0;
    assert_eq!(Instance::open(&ok).and_then(|i| i.display(0, None)).map(|r| (r.width, r.channels)).ok(), Some((4, 3)));
}

#[test]
fn a_thumbnail_the_pool_cannot_render_becomes_a_placeholder_not_an_abort() {
    let _g = support::alone();
    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(radhub::ingest::Hub::open(dir.path(), Default::default()).unwrap());
    let thumbs = Arc::new(radhub::thumbs::Thumbs::open(dir.path()).unwrap());
    let file = ybr_422_planar(2);
    let (_, meta) = hub.ingest(&file, Some("RBD")).unwrap();
    let renderer = radhub::thumbs::Renderer::start(hub.clone(), thumbs.clone(), 1);
    let (why, _, _) = support::case(
        "native YBR_FULL_422, Planar Configuration 1 (background thumbnail)",
        || {
            renderer.touch(&meta.study_uid, &meta.series_uid);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(why) = thumbs.failure(&meta.series_uid) {
                    return Some(why);
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        },
        |w| format!("placeholder thumbnail: {}", w.as_deref().unwrap_or("(none made)")),
    );
    let why = why.expect("a placeholder within 20 s");
    assert!(why.contains("Planar Configuration 1"), "{why}");
    assert!(std::fs::read(thumbs.series_path(&meta.series_uid)).unwrap().starts_with(b"\x89PNG"));
}

/// 512×512 16-bit, Number of Frames 4,000,000,000, over 1 KiB of pixel data.
fn frames_bomb(n: u32) -> Vec<u8> {
    let ds = image(instance(n), 1, "MONOCHROME2", Some("4000000000"), 512, 512, 16);
    part10(EXPLICIT_LE, n, ds.el(0x7FE0_0010, b"OW", &[0; 1024]))
}

const FRAMES_BOMB: &str = "Number of Frames 4000000000 × 524288 bytes per frame exceeds the 1024 bytes of Pixel Data";

#[test]
fn number_of_frames_beyond_the_pixel_data_is_refused_at_open_and_transcode() {
    // On the original code: open accepted it, and to_native's
    // Vec::with_capacity(2^51 bytes) aborted the process.
    let _g = support::alone();
    let file = frames_bomb(3);
    let (r, _, _) = support::case("Number of Frames 4e9 over 1 KiB (render open)", || Instance::open(&file), support::refused);
    assert!(matches!(&r, Err(RenderError::Invalid(m)) if m == FRAMES_BOMB), "{r:?}");
    let (r, _, peak) =
        support::case("Number of Frames 4e9 over 1 KiB (C-MOVE transcode)", || radhub::dimse::transcode::to_native(&file, EXPLICIT_LE), support::refused);
    assert_eq!(r.err().as_deref(), Some(FRAMES_BOMB));
    assert!(peak < 200, "peak {peak} MiB");
}

#[test]
fn compressed_frames_decoding_past_the_cap_are_refused_by_transcode() {
    // 1000 frames of 16384×16384 16-bit RLE, each a 64-byte header: 512 GiB
    // decoded. On the original code Vec::with_capacity(512 GiB) aborted.
    let _g = support::alone();
    let mut rle = vec![0u8; 64];
    rle[0] = 1;
    rle[4] = 64;
    let ds = image(instance(4), 1, "MONOCHROME2", Some("1000"), 16384, 16384, 16).encapsulated(&vec![rle; 1000]);
    let file = part10(RLE, 4, ds);
    let (r, _, peak) =
        support::case("1000 RLE frames of 16384×16384 (C-MOVE transcode)", || radhub::dimse::transcode::to_native(&file, EXPLICIT_LE), support::refused);
    let e = r.unwrap_err();
    assert!(e.contains("exceed the 2147483648-byte cap"), "{e}");
    assert!(peak < 200, "peak {peak} MiB");
}

// JPEG 2000 pieces (ISO/IEC 15444-1): SOC, SIZ; JP2 boxes.

fn soc_siz(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
    for x in [w, h, 0, 0, w, h, 0, 0] {
        v.extend(x.to_be_bytes());
    }
    v.extend([0, 1, 7, 1, 1]);
    v
}

fn jp2_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = (8 + body.len() as u32).to_be_bytes().to_vec();
    v.extend(kind);
    v.extend(body);
    v
}

#[test]
fn jp2_with_a_decoy_siz_is_refused_before_openjpeg() {
    // The 'xml ' box holds SOC/SIZ for 64×64, as the DICOM header says;
    // the real codestream ('jp2c') declares 60000×60000. The original code
    // found the decoy by searching and handed the file to OpenJPEG.
    let _g = support::alone();
    let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
    jp2.extend(jp2_box(b"ftyp", b"jp2 \0\0\0\0jp2 "));
    jp2.extend(jp2_box(b"xml ", &soc_siz(64, 64)));
    let mut real = soc_siz(60000, 60000);
    real.extend([0xFF, 0x52, 0, 12, 0, 0, 0, 1, 0, 5, 4, 4, 0, 0, 0xFF, 0x93, 0xFF, 0xD9]);
    jp2.extend(jp2_box(b"jp2c", &real));
    let file = part10(J2K_LOSSLESS, 5, image(instance(5), 1, "MONOCHROME2", None, 64, 64, 8).encapsulated(&[jp2]));
    let (r, _, peak) =
        support::case("JP2 with a decoy SIZ, codestream 60000×60000", || Instance::open(&file).and_then(|i| i.display(0, None)), support::refused);
    match r {
        Err(RenderError::Codec { reason, .. }) => assert!(reason.contains("is 60000×60000"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(peak < 200, "peak {peak} MiB");
}

/// Segmented palette data (PS3.3 C.7.9.2): `n` indirect segments each
/// copying `n` indirect segments each copying `n` zero-length discrete ones.
fn nested_segments(n: u16) -> Vec<u8> {
    let (b, c) = (8 * u32::from(n), 16 * u32::from(n));
    let mut words: Vec<u16> = Vec::new();
    for target in [b, c] {
        for _ in 0..n {
            words.extend([2, n, target as u16, (target >> 16) as u16]);
        }
    }
    for _ in 0..n {
        words.extend([0, 0]);
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn a_segmented_palette_of_nested_indirect_segments_is_refused_quickly() {
    // On the original code: ~65535³ segment visits (it never finished).
    let _g = support::alone();
    let seg = nested_segments(65535);
    let desc: Vec<u8> = [0u16, 0, 16].iter().flat_map(|w| w.to_le_bytes()).collect();
    let ds = image(instance(6), 1, "PALETTE COLOR", None, 4, 4, 8)
        .el(0x0028_1101, b"US", &desc)
        .el(0x0028_1102, b"US", &desc)
        .el(0x0028_1103, b"US", &desc)
        .el(0x0028_1221, b"OW", &seg)
        .el(0x0028_1222, b"OW", &seg)
        .el(0x0028_1223, b"OW", &seg)
        .el(0x7FE0_0010, b"OB", &[0; 16]);
    let file = part10(EXPLICIT_LE, 6, ds);
    let t = Instant::now();
    let (r, _, _) = support::case("PALETTE COLOR, nested indirect segmented palette", || Instance::open(&file), support::refused);
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    match r {
        Err(RenderError::Lut(m)) => assert!(m.contains("segment of no entries"), "{m}"),
        other => panic!("{other:?}"),
    }
}
