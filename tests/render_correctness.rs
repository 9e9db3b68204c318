//! The rendering core against real files and real reference tools:
//! pydicom's test set (every image renders, or fails with its listed
//! reason), pydicom+numpy's stored values, lossless pairs, DCMTK's
//! dcmj2pnm/dcml2pnm renders, and corrupted pixel data (never a panic).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use radhub::render::{Format, Instance, RenderError, Rendered, VoiFunction, Window};

fn test_file(name: &str) -> PathBuf {
    support::pydicom_data().join("test_files").join(name)
}

fn open(path: &Path) -> Instance {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Instance::open(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file of pydicom's test set that dicom-scan accepts (the files
/// radhub's scanner refuses never reach rendering).
fn pydicom_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = support::pydicom_sets()
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.is_file())
        .filter(|p| radhub::dicom::scan::scan(&std::fs::read(p).unwrap(), &[]).is_ok())
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Files that are genuinely broken or unsupported, with the substring
/// their error must contain.
fn expected_failures() -> BTreeMap<String, String> {
    support::expectations(include_str!("render/failures.tsv"))
}

fn render_all(inst: &Instance) -> Result<(), RenderError> {
    for f in 0..inst.frames() {
        let r = inst.display(f, None)?;
        assert_eq!(r.pixels.len(), (r.width * r.height) as usize * usize::from(r.channels));
        let t = r.fit(64);
        assert!(t.width <= 64 && t.height <= 64 && (t.width == 64 || t.height == 64 || (r.width <= 64 && r.height <= 64)));
        t.encode(Format::Png)?;
        t.encode(Format::Jpeg { quality: 80 })?;
    }
    Ok(())
}

#[test]
fn every_pydicom_image_renders_or_fails_with_its_listed_reason() {
    let expected = expected_failures();
    let (mut rendered, mut seen) = (0, Vec::new());
    for path in pydicom_files() {
        let file = name(&path);
        let bytes = std::fs::read(&path).unwrap();
        let result = Instance::open(&bytes).and_then(|i| render_all(&i));
        match (result, expected.get(&file)) {
            (Err(RenderError::NoPixelData), None) => continue,
            (Ok(()), None) => rendered += 1,
            (Ok(()), Some(why)) => panic!("{file} is listed as failing ({why}) but renders: take it off the list"),
            (Err(e), None) => panic!("{file} fails: {e}"),
            (Err(e), Some(why)) => {
                assert!(e.to_string().contains(why.as_str()), "{file}: error {e:?} lacks {why:?}");
                seen.push(file);
            }
        }
    }
    assert_eq!(seen.len(), expected.len(), "listed files not found: {seen:?} vs {expected:?}");
    assert!(rendered >= 70, "only {rendered} of pydicom's images rendered");
}

/// pydicom (numpy, its own decoders only: native, deflate, RLE) decodes
/// every file it can; radhub's stored values must be identical.
#[test]
fn stored_values_match_pydicom() {
    let files: Vec<PathBuf> = pydicom_files().into_iter().filter(|p| Instance::open(&std::fs::read(p).unwrap()).is_ok()).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/render/pydicom_raw.py"))
        .arg(dir.path())
        .args(&files)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut compared = Vec::new();
    for path in &files {
        let file = name(path);
        let r = &refs[&file];
        if r.get("error").is_some() {
            continue;
        }
        let raw = std::fs::read(dir.path().join(format!("{file}.i64"))).unwrap();
        let want: Vec<i64> = raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let inst = open(path);
        let mut got = Vec::new();
        for f in 0..inst.frames() {
            got.extend(inst.raw_frame(f).unwrap_or_else(|e| panic!("{file} frame {f}: {e}")));
        }
        assert_eq!(got.len(), want.len(), "{file}: sample count");
        // Unsigned 32-bit values come back as their bit pattern.
        let bad = got.iter().zip(&want).position(|(&g, &w)| i64::from(g) != w && i64::from(g as u32) != w);
        assert!(bad.is_none(), "{file}: sample {} is {} where pydicom has {}", bad.unwrap(), got[bad.unwrap()], want[bad.unwrap()]);
        compared.push(file);
    }
    for must in [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
        "liver_expb_1frame.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "ExplVR_BigEnd.dcm",
        "image_dfl.dcm",
        "rtdose_expb.dcm",
    ] {
        assert!(compared.iter().any(|c| c == must), "{must} was not compared (pydicom: {})", refs[must]);
    }
    assert!(compared.len() >= 35, "only {} files compared: {compared:?}", compared.len());
}

fn raw(file: &str, frame: u32) -> Vec<i32> {
    open(&test_file(file)).raw_frame(frame).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn lossless_pairs_decode_identically() {
    let pairs: &[(&str, u32, &str, u32, i64)] = &[
        ("MR_small.dcm", 0, "MR_small_RLE.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_jpeg_ls_lossless.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_jp2klossless.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_implicit.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_expb.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_bigendian.dcm", 0, 1),
        ("MR_small.dcm", 0, "MR_small_padded.dcm", 0, 1),
        ("SC_rgb_rle.dcm", 0, "SC_rgb_jpeg_gdcm.dcm", 0, 1),
        ("SC_rgb_rle.dcm", 0, "SC_rgb_gdcm_KY.dcm", 0, 1),
        ("SC_rgb_rle.dcm", 0, "SC_rgb_rle_2frame.dcm", 0, 1),
        // The 16- and 32-bit versions scale each 8-bit value v to v × 257
        // and v × 0x01010101.
        ("SC_rgb_rle.dcm", 0, "SC_rgb_rle_16bit.dcm", 0, 257),
        ("SC_rgb_rle_2frame.dcm", 1, "SC_rgb_rle_16bit_2frame.dcm", 1, 257),
        ("SC_rgb_rle.dcm", 0, "SC_rgb_rle_32bit.dcm", 0, 0x0101_0101),
        ("SC_rgb_rle_2frame.dcm", 1, "SC_rgb_rle_32bit_2frame.dcm", 1, 0x0101_0101),
        ("rtdose.dcm", 0, "rtdose_rle.dcm", 0, 1),
        ("rtdose.dcm", 14, "rtdose_rle.dcm", 14, 1),
        ("rtdose.dcm", 7, "rtdose_expb.dcm", 7, 1),
        ("rtdose_1frame.dcm", 0, "rtdose_rle_1frame.dcm", 0, 1),
        ("rtdose_1frame.dcm", 0, "rtdose_expb_1frame.dcm", 0, 1),
        ("liver_1frame.dcm", 0, "liver_expb_1frame.dcm", 0, 1),
        ("SC_rgb_small_odd.dcm", 0, "SC_rgb_small_odd_big_endian.dcm", 0, 1),
        ("JPEG-lossy.dcm", 0, "JPGExtended.dcm", 0, 1),
    ];
    for &(a, fa, b, fb, scale) in pairs {
        let (x, y) = (raw(a, fa), raw(b, fb));
        assert_eq!(x.len(), y.len(), "{a} vs {b}");
        let bad = x.iter().zip(&y).position(|(&p, &q)| (i64::from(p) * scale) as u32 != q as u32);
        assert!(bad.is_none(), "{a}[{fa}] vs {b}[{fb}]: sample {} differs ({} × {scale} vs {})", bad.unwrap(), x[bad.unwrap()], y[bad.unwrap()]);
    }
}

// ---------------------------------------------------------------- DCMTK

/// A PGM/PPM (P5/P6, maxval 255) as (width, height, channels, pixels).
fn read_pnm(b: &[u8]) -> Rendered {
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if b[pos] == b'#' {
            while b[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while !b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&b[start..pos]).into_owned());
    }
    let channels = if fields[0] == "P6" { 3 } else { 1 };
    assert!(fields[0] == "P5" || fields[0] == "P6", "not a raw PNM: {}", fields[0]);
    assert_eq!(fields[3], "255");
    let (w, h): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let pixels = b[pos + 1..].to_vec();
    assert_eq!(pixels.len(), (w * h) as usize * channels as usize);
    Rendered { width: w, height: h, channels, pixels }
}

/// DCMTK's render of frame `frame` (0-based) of `path`: with the file's
/// first window when `window` is None and the file has one, else with
/// `window` (a center/width pair, LINEAR or SIGMOID).
fn dcmtk(tool: &str, path: &Path, frame: u32, window: Option<Window>, file_window: bool, extra: &[&str]) -> Rendered {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut c = support::dcmtk(tool);
    c.args(["--write-raw-pnm", "--no-overlays", "+F", &(frame + 1).to_string()]).args(extra);
    if file_window {
        c.args(["+Wi", "1"]);
    } else if let Some(w) = window {
        c.args(["+Ww", &w.center.to_string(), &w.width.to_string()]);
        if w.function == VoiFunction::Sigmoid {
            c.arg("+Wfs");
        }
    }
    let o = c.arg(path).arg(out.path()).output().unwrap();
    assert!(o.status.success(), "{tool} {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
    read_pnm(&std::fs::read(out.path()).unwrap())
}

fn mad(a: &Rendered, b: &Rendered) -> f64 {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels), "render sizes differ");
    a.pixels.iter().zip(&b.pixels).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.pixels.len() as f64
}

/// Our render of `path` against DCMTK's under the same window; returns the
/// mean absolute difference in grey levels.
fn versus_dcmtk(tool: &str, path: &Path, frame: u32, extra: &[&str]) -> f64 {
    let inst = open(path);
    let window = inst.default_window(frame).unwrap();
    let ours = inst.display(frame, None).unwrap();
    let file_window = window.is_some() && std::fs::read(path).map(|b| has_window(&b)).unwrap_or(false);
    let theirs = dcmtk(tool, path, frame, window, file_window, extra);
    mad(&ours, &theirs)
}

/// Whether the file itself has a Window Center (0028,1050).
fn has_window(bytes: &[u8]) -> bool {
    let s = radhub::dicom::scan::scan(bytes, &[]).unwrap();
    s.get(0x0028_1050).is_some_and(|v| !v.is_empty())
}

// The tolerance: ≤ 1.0 grey level mean absolute difference. Both sides
// evaluate the same PS3.3 C.11 functions; they differ only in rounding of
// the last step (DCMTK truncates in places where we round to nearest) and,
// for lossy JPEG, in the IDCT and chroma upsampling of libjpeg versus
// jpeg-decoder, each of which moves a pixel by a level or two at most.
// A wrong window, sign, byte order, colour model or inversion moves the
// mean by tens of levels.
const MAX_MAD: f64 = 1.0;

#[test]
fn renders_match_dcmtk() {
    let mut results = Vec::new();
    let mut check = |label: String, m: f64| {
        println!("MAD vs DCMTK {label}: {m:.3}");
        results.push((label, m));
    };
    let dcmj = [
        ("CT_small.dcm", 0),
        ("MR_small.dcm", 0),
        ("MR_small_RLE.dcm", 0),
        ("MR_small_bigendian.dcm", 0),
        ("examples_overlay.dcm", 0),
        ("image_dfl.dcm", 0),
        ("liver_1frame.dcm", 0),
        ("rtdose.dcm", 5),
        ("JPEG-lossy.dcm", 0),
        ("SC_rgb_jpeg_gdcm.dcm", 0),
        ("examples_rgb_color.dcm", 0),
        ("ExplVR_BigEnd.dcm", 0),
        ("SC_ybr_full_422_uncompressed.dcm", 0),
        ("SC_rgb_jpeg_dcmtk.dcm", 0),
        ("SC_rgb_dcmtk_+eb+cr.dcm", 0),
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 0),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 0),
        ("SC_jpeg_no_color_transform.dcm", 0),
        ("SC_jpeg_no_color_transform_2.dcm", 0),
        ("SC_rgb_jpeg_app14_dcmd.dcm", 0),
        ("examples_ybr_color.dcm", 3),
        ("examples_palette.dcm", 0),
        ("SC_rgb_rle_16bit.dcm", 0),
    ];
    for (file, frame) in dcmj {
        check(format!("{file}[{frame}]"), versus_dcmtk("dcmj2pnm", &test_file(file), frame, &[]));
    }
    for file in ["MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_sample.dcm"] {
        check(format!("{file} (dcml2pnm)"), versus_dcmtk("dcml2pnm", &test_file(file), 0, &[]));
    }
    // Variants written by pydicom: MONOCHROME1, SIGMOID, Modality LUT and
    // VOI LUT sequences, a segmented palette, an explicit override window.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/render/variants.py"))
        .arg(support::pydicom_data().join("test_files"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for v in String::from_utf8_lossy(&o.stdout).split_whitespace() {
        let p = dir.path().join(v);
        let extra: &[&str] = match v {
            _ if v.starts_with("voilut") => &["+Wl", "1"],
            _ if v.starts_with("sigmoid") => &["+Wfs"],
            _ => &[],
        };
        let m = if v.starts_with("voilut") {
            let ours = open(&p).display(0, None).unwrap();
            mad(&ours, &dcmtk("dcmj2pnm", &p, 0, None, false, extra))
        } else {
            versus_dcmtk("dcmj2pnm", &p, 0, extra)
        };
        check(v.to_string(), m);
    }
    // Segmented palette: pydicom's apply_color_lut is the reference.
    let seg = open(&dir.path().join("palette_segmented.dcm")).display(0, None).unwrap();
    let want = std::fs::read(dir.path().join("palette_segmented.rgb")).unwrap();
    let m = mad(&seg, &Rendered { width: seg.width, height: seg.height, channels: 3, pixels: want });
    check("palette_segmented.dcm (vs pydicom)".into(), m);
    let ct = test_file("CT_small.dcm");
    let w = Window { center: 40.0, width: 400.0, function: VoiFunction::Linear };
    let ours = open(&ct).display(0, Some(w)).unwrap();
    check("CT_small.dcm override 40/400".into(), mad(&ours, &dcmtk("dcmj2pnm", &ct, 0, Some(w), false, &[])));
    // radhub's own synthetic modalities.
    let data = tempfile::tempdir().unwrap();
    let g = Command::new(env!("CARGO_BIN_EXE_radhub"))
        .env("RADHUB_LOG", "error")
        .args(["testdata", "--out"])
        .arg(data.path())
        .args(["--patients", "3", "--max-slices", "2", "--ct-size", "128"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let mut by_modality: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in support::walk(data.path()) {
        let bytes = std::fs::read(&e).unwrap();
        if let Ok(m) = radhub::dicom::extract::read_meta(&bytes) {
            by_modality.entry(m.modality.clone()).or_insert(e);
        }
    }
    for want in ["CT", "MR", "US"] {
        assert!(by_modality.contains_key(want), "radhub testdata wrote no {want}: {:?}", by_modality.keys());
    }
    for (m, p) in &by_modality {
        check(format!("radhub testdata {m}"), versus_dcmtk("dcmj2pnm", p, 0, &[]));
    }
    let bad: Vec<_> = results.iter().filter(|(_, m)| *m > MAX_MAD).collect();
    assert!(bad.is_empty(), "renders differ from DCMTK's by more than {MAX_MAD}: {bad:?}");
}

/// JPEG 2000 has no DCMTK decoder here (and pydicom no plugin): lossless
/// JPEG 2000 must render exactly as its uncompressed original, and a
/// codestream whose signedness disagrees with the header must come out with
/// the header's signedness.
#[test]
fn jpeg2000_renders_match_their_originals() {
    let a = open(&test_file("MR_small.dcm")).display(0, None).unwrap();
    let b = open(&test_file("MR_small_jp2klossless.dcm")).display(0, None).unwrap();
    assert_eq!(a, b);
    let a = open(&test_file("SC_rgb_rle.dcm")).display(0, None).unwrap();
    let b = open(&test_file("SC_rgb_gdcm_KY.dcm")).display(0, None).unwrap();
    assert_eq!(a, b);
    // The codestream of J2K_pixelrep_mismatch.dcm says unsigned, the header
    // signed: air must come out near -2000 (padding), not near +6000.
    let v = raw("J2K_pixelrep_mismatch.dcm", 0);
    assert_eq!(v[0], -2000);
    assert!(v.iter().all(|&x| (-2048..4096).contains(&x)));
}

// ------------------------------------------------------------- corruption

/// A tiny deterministic generator (no external crates, same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

/// The value range of Pixel Data, and its fragments' payload ranges (none
/// for native data). Little endian files only.
fn pixel_layout(bytes: &[u8]) -> (usize, usize, Vec<(usize, usize)>) {
    let meta_end = radhub::dicom::scan::file_meta(bytes).unwrap().1;
    let s = radhub::dicom::scan::scan(bytes, &[]).unwrap();
    let e = *s.element(radhub::dicom::scan::PIXEL_DATA).unwrap();
    let (start, end) = (meta_end + e.start, meta_end + e.end);
    let mut frags = Vec::new();
    if e.undefined {
        let mut pos = start;
        while pos + 8 <= end {
            let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            if bytes[pos + 2..pos + 4] == [0xDD, 0xE0] {
                break;
            }
            frags.push((pos + 8, pos + 8 + len));
            pos += 8 + len;
        }
        frags.remove(0); // the offset table
    }
    (start, end, frags)
}

/// Variants of a file with damaged pixel data that still passes the scan:
/// bit flips, zeroed runs, truncated fragments or native data, and lying
/// Rows/Columns/Bits Stored.
fn corruptions(bytes: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Lcg(seed);
    let (start, end, frags) = pixel_layout(bytes);
    let payload: Vec<(usize, usize)> = if frags.is_empty() { vec![(start, end)] } else { frags.clone() };
    let mut out = Vec::new();
    for round in 0..6 {
        let mut b = bytes.to_vec();
        for _ in 0..(1 << round) {
            let (s, e) = payload[rng.next(payload.len())];
            if e > s {
                let i = s + rng.next(e - s);
                b[i] ^= 1 << rng.next(8);
            }
        }
        out.push((format!("{} bit flips", 1 << round), b));
    }
    for &(s, e) in payload.iter().take(3) {
        let mut b = bytes.to_vec();
        let from = s + (e - s) / 3;
        let to = (from + 64.max((e - s) / 5)).min(e);
        b[from..to].fill(0);
        out.push(("zeroed run".into(), b));
        let mut b = bytes.to_vec();
        b[from..to].fill(0xFF);
        out.push(("0xFF run".into(), b));
    }
    // Truncation: shrink the first payload (and its length field) to a few
    // fractions of its size.
    let (s, e) = payload[0];
    for keep in [0usize, 2, 16, (e - s) / 2, (e - s) * 9 / 10] {
        let keep = keep.min(e - s) & !1;
        let mut b = bytes[..s + keep].to_vec();
        b.extend_from_slice(&bytes[e..]);
        let len_at = s - 4;
        b[len_at..s].copy_from_slice(&(keep as u32).to_le_bytes());
        out.push((format!("payload cut to {keep} bytes"), b));
    }
    // Lying header values.
    let s = radhub::dicom::scan::scan(bytes, &[]).unwrap();
    let meta_end = radhub::dicom::scan::file_meta(bytes).unwrap().1;
    for (tag, values) in
        [(0x0028_0010u32, [1u16, 3, 2048, 65535]), (0x0028_0011, [1, 7, 4096, 65535]), (0x0028_0101, [1, 7, 12, 33]), (0x0028_0002, [0, 2, 3, 4])]
    {
        if let Some(e) = s.element(tag) {
            for v in values {
                let mut b = bytes.to_vec();
                b[meta_end + e.start..meta_end + e.start + 2].copy_from_slice(&v.to_le_bytes());
                out.push((format!("({:04X},{:04X}) = {v}", tag >> 16, tag & 0xFFFF), b));
            }
        }
    }
    out
}

#[test]
fn corrupt_pixel_data_never_panics() {
    let files = [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG-lossy.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_ybr_color.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
        "693_J2KI.dcm",
        "examples_jpeg2k.dcm",
        "examples_palette.dcm",
        "liver_1frame.dcm",
        "rtdose.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
    ];
    let (mut ok, mut err) = (0, 0);
    for (k, file) in files.iter().enumerate() {
        let bytes = std::fs::read(test_file(file)).unwrap();
        for (what, b) in corruptions(&bytes, k as u64 + 1) {
            let Ok(inst) = Instance::open(&b) else {
                err += 1;
                continue;
            };
            for f in 0..inst.frames().min(8) {
                match inst.display(f, None) {
                    Ok(r) => {
                        ok += 1;
                        r.fit(32).encode(Format::Png).unwrap_or_else(|e| panic!("{file} ({what}): {e}"));
                    }
                    Err(e) => {
                        err += 1;
                        assert!(!e.to_string().is_empty(), "{file} ({what})");
                    }
                }
            }
        }
    }
    println!("corrupted renders: {ok} rendered, {err} refused");
    assert!(ok > 0 && err > 0);
}
