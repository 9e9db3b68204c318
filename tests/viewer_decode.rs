//! The viewer's decoders against the hub's: every image of pydicom's test
//! set that the hub serves as stored JPEG or RLE (what the viewer asks for
//! first) is decoded by viewer-wasm, exactly as the page does, and compared
//! value for value with the same frame the hub decodes to uncompressed.
//! Lossless syntaxes must agree exactly; lossy JPEG within 1 (decoders
//! round differently); a frame viewer-wasm refuses must be one the page then
//! asks for uncompressed (never shown wrong).

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;
use viewer_wasm::image::{Frame, Pixels};
use viewer_wasm::series::Series;

const ACCEPT: &str = "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50, \
    multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.51, \
    multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.57, \
    multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.70, \
    multipart/related; type=\"image/dicom-rle\"; transfer-syntax=1.2.840.10008.1.2.5, \
    multipart/related; type=\"application/octet-stream\"";
const NATIVE: &str = "multipart/related; type=\"application/octet-stream\"";

fn values(f: &Frame) -> Vec<i32> {
    match &f.pixels {
        Pixels::Rgb(v) => v.iter().map(|&x| x as i32).collect(),
        _ => (0..f.height).flat_map(|y| (0..f.width).map(move |x| (x, y))).map(|(x, y)| f.stored(x, y).unwrap_or(i32::MIN)).collect(),
    }
}

fn first(v: &Value, tag: &str) -> String {
    v[tag]["Value"][0].as_str().unwrap_or("").to_owned()
}

#[test]
fn viewer_decodes_jpeg_and_rle_as_the_hub_does() {
    // pydicom's files share SOP Instance UIDs (one copy of each is kept), so
    // DCMTK makes more, each with a UID of its own: JPEG lossless SV1 and
    // any-predictor, and RLE, of 16-bit signed CT, 16-bit MR and 8-bit RGB.
    let pd = support::pydicom_data().join("test_files");
    let made = tempfile::tempdir().unwrap();
    for (k, f) in ["CT_small.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm", "US1_UNCR.dcm"].iter().enumerate() {
        let src = pd.join(f);
        if !src.exists() {
            continue;
        }
        for (tool, args, tag) in [("dcmcjpeg", &["+ua"][..], "70"), ("dcmcjpeg", &["+ua", "+el"][..], "57"), ("dcmcrle", &["+ua"][..], "rle")] {
            let out = made.path().join(format!("{k}-{tag}.dcm"));
            let (ok, log) = output(std::process::Command::new(format!("/usr/bin/{tool}")).args(args).arg(&src).arg(&out));
            assert!(ok, "{tool} {f}: {log}");
        }
    }
    let data = tempfile::tempdir().unwrap();
    run(data.path(), &["import", "--site", "RBD", pd.to_str().unwrap(), made.path().to_str().unwrap()]);
    let token = user_token(data.path(), "reader", "clinician");
    let hub = Server::start_in(data, &[]);
    let base = hub.http();
    let list = get(&base, "/dicom-web/instances?limit=1000", &token).json();
    let mut by_syntax: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for inst in list.as_array().expect("instances") {
        let (st, se, sop) = (first(inst, "0020000D"), first(inst, "0020000E"), first(inst, "00080018"));
        let path = format!("/dicom-web/studies/{st}/series/{se}/instances/{sop}");
        let meta = get(&base, &format!("{path}/metadata"), &token);
        let Ok(series) = Series::from_metadata(&meta.text()) else { continue };
        let desc = &series.slices[0].desc;
        let auth = format!("Bearer {token}");
        let stored = request(&base, "GET", &format!("{path}/frames/1"), &[("Authorization", &auth), ("Accept", ACCEPT)], b"");
        let ct = stored.header("content-type").unwrap_or("").to_owned();
        if stored.status != 200 || ct.contains("octet-stream") {
            continue; // served uncompressed: the plain path, covered by the browser test
        }
        let part = viewer_wasm::multipart::first_part(&ct, &stored.body).expect("a multipart frame");
        let ts = part.transfer_syntax().unwrap_or("?").to_owned();
        let lossless = ts == "1.2.840.10008.1.2.5" || ts == "1.2.840.10008.1.2.4.57" || ts == "1.2.840.10008.1.2.4.70";
        let entry = by_syntax.entry(ts.clone()).or_default();
        let native = request(&base, "GET", &format!("{path}/frames/1"), &[("Authorization", &auth), ("Accept", NATIVE)], b"");
        if native.status != 200 {
            continue; // the hub cannot decode it either
        }
        let Ok(theirs) = viewer_wasm::decode::frame(native.header("content-type").unwrap_or(""), &native.body, desc, true) else { continue };
        match viewer_wasm::decode::frame(&ct, &stored.body, desc, false) {
            Err(_) => entry.2 += 1,
            Ok(ours) => {
                let (a, b) = (values(&ours), values(&theirs));
                let worst = if a.len() == b.len() { a.iter().zip(&b).map(|(x, y)| (x - y).abs()).max().unwrap_or(0) } else { i32::MAX };
                if worst > if lossless { 0 } else { 1 } {
                    wrong.push(format!("{sop} ({ts}): differs by up to {worst}"));
                } else {
                    entry.0 += 1;
                }
                entry.1 += 1;
            }
        }
    }
    println!("transfer syntax: decoded alike / decoded / refused (asked uncompressed): {by_syntax:?}");
    assert!(wrong.is_empty(), "the viewer would show other values than the hub: {wrong:#?}");
    for (ts, least) in [("1.2.840.10008.1.2.4.50", 10), ("1.2.840.10008.1.2.4.57", 2), ("1.2.840.10008.1.2.4.70", 2), ("1.2.840.10008.1.2.5", 3)] {
        let (alike, _, _) = by_syntax.get(ts).copied().unwrap_or_default();
        assert!(alike >= least, "only {alike} files of {ts} decoded in the viewer alike: {by_syntax:?}");
    }
}
