//! PS3.18 conformance details of radhub's DICOMweb, each against the
//! standard's text, over HTTP with a real hub: validators and 304 on the
//! immutable resources, byte ranges on bulk data, the media types of
//! rendered resources, Available Transfer Syntax UID in metadata, the
//! default transfer syntax and partial answers, and QIDO-RS's
//! fuzzymatching. dicomweb-client drives what a client library does
//! (tests/dicomweb_conformance/check.py), with pydicom as the oracle.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{request, user_token, Reply, Server};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dicomweb_conformance/check.py");
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A hub holding the study check.py makes: series A (every syntax radhub
/// delivers, lossless and lossy), B (one lossless instance radhub cannot
/// decode, one it can), C (a 64×32 image).
struct Hub {
    server: Server,
    token: String,
    manifest: Value,
    _files: tempfile::TempDir,
}

impl Hub {
    fn start() -> Hub {
        let data = tempfile::tempdir().unwrap();
        let token = user_token(data.path(), "pacsadmin", "admin");
        let server = Server::start_in(data, &["--stow-site", "RBD"]);
        let files = tempfile::tempdir().unwrap();
        let out = Command::new("python3").args([SCRIPT, "make", files.path().to_str().unwrap()]).output().expect("python3 runs check.py");
        assert!(out.status.success(), "check.py make: {}", String::from_utf8_lossy(&out.stderr));
        let manifest: Value = serde_json::from_slice(&out.stdout).expect("a manifest");
        let bytes: Vec<Vec<u8>> = manifest["instances"].as_object().unwrap().values().map(|o| std::fs::read(o["path"].as_str().unwrap()).unwrap()).collect();
        let r = support::stow(&server.http(), &token, &bytes.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(r.status, 200, "STOW-RS: {}", r.text());
        std::fs::write(files.path().join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
        Hub { server, token, manifest, _files: files }
    }

    fn study(&self) -> &str {
        self.manifest["study"].as_str().unwrap()
    }

    fn instance(&self, name: &str) -> String {
        let o = &self.manifest["instances"][name];
        format!("/dicom-web/studies/{}/series/{}/instances/{}", self.study(), o["series"].as_str().unwrap(), o["sop"].as_str().unwrap())
    }

    fn series(&self, name: &str) -> String {
        format!("/dicom-web/studies/{}/series/{}", self.study(), self.manifest["instances"][name]["series"].as_str().unwrap())
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let mut h = vec![("Authorization", auth.as_str())];
        h.extend_from_slice(headers);
        request(&self.server.http(), "GET", target, &h, b"")
    }
}

/// The parts of a multipart/related answer: (part headers, lower-cased; body).
fn parts(r: &Reply) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("multipart/related"), "not multipart: {ct} ({})", r.status);
    let boundary = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).expect("a boundary").trim_matches('"');
    let delim = format!("\r\n--{boundary}");
    let body = [b"\r\n".as_slice(), &r.body].concat();
    let mut out = Vec::new();
    let mut rest = &body[..];
    while let Some(at) = find(rest, delim.as_bytes()) {
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = find(rest, delim.as_bytes()).expect("a closing delimiter");
        let part = &rest[2..end];
        let split = find(part, b"\r\n\r\n").expect("part headers");
        out.push((String::from_utf8_lossy(&part[..split]).to_ascii_lowercase(), part[split + 4..].to_vec()));
        rest = &rest[end..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// RFC 9110 8.8.3, 13.1.2 and 15.4.5, which PS3.18 8.6 defers to for
/// caching: every immutable WADO-RS resource (an instance, its frames, bulk
/// data, renderings) carries a strong ETag from its content and a private
/// Cache-Control (patient data behind authentication: for no shared
/// cache), the same bytes under the same tag, and a 304 for If-None-Match.
#[test]
fn immutable_resources_carry_an_etag_and_answer_if_none_match_with_304() {
    let hub = Hub::start();
    let inst = hub.instance("explicit");
    let meta = hub.get(&format!("{inst}/metadata"), &[]).json();
    let bulk = meta[0]["7FE00010"]["BulkDataURI"].as_str().expect("pixel data by BulkDataURI").trim_start_matches(&hub.server.http()).to_owned();
    let dicom = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
    let octets = "multipart/related; type=\"application/octet-stream\"";
    let resources = [
        (inst.clone(), dicom),
        (format!("{inst}/frames/1"), octets),
        (bulk, octets),
        (format!("{inst}/rendered"), "image/jpeg"),
        (format!("{inst}/frames/1/rendered?quality=50"), "image/jpeg"),
        (format!("{inst}/thumbnail"), "image/png"),
    ];
    let mut tags = std::collections::BTreeSet::new();
    for (target, accept) in &resources {
        let first = hub.get(target, &[("Accept", accept)]);
        assert_eq!(first.status, 200, "{target}: {}", first.text());
        let etag = first.header("etag").unwrap_or_else(|| panic!("{target}: no ETag")).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{target}: a strong entity tag, not {etag}");
        assert_eq!(first.header("cache-control"), Some("private, no-cache"), "{target}");
        assert!(first.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept")), "{target}: Vary: Accept");
        let again = hub.get(target, &[("Accept", accept)]);
        assert_eq!(again.header("etag"), Some(etag.as_str()), "{target}: the tag changed");
        assert!(again.body == first.body, "{target}: a strong tag over different bytes");
        for cond in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".to_owned()] {
            let r = hub.get(target, &[("Accept", accept), ("If-None-Match", &cond)]);
            assert_eq!(r.status, 304, "{target} with If-None-Match: {cond}");
            assert!(r.body.is_empty(), "{target}: a 304 has no body");
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{target}: a 304 carries the tag (RFC 9110 15.4.5)");
            assert_eq!(r.header("cache-control"), Some("private, no-cache"), "{target}: a 304 carries Cache-Control");
        }
        let other = hub.get(target, &[("Accept", accept), ("If-None-Match", "\"not-it\"")]);
        assert_eq!(other.status, 200, "{target}: another tag is no match");
        assert!(tags.insert(etag), "{target}: two resources share a tag");
    }
    // Another representation of the same resource, another tag.
    let png = hub.get(&format!("{inst}/rendered"), &[("Accept", "image/png")]);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(!tags.contains(png.header("etag").unwrap()), "PNG and JPEG renderings share a tag");
    let native = hub.get(&inst, &[("Accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2")]);
    assert!(!tags.contains(native.header("etag").unwrap()), "instances in two transfer syntaxes share a tag");
    // A series' thumbnail changes as instances arrive: tagged, revalidated each time.
    let thumb = format!("{}/thumbnail", hub.series("explicit"));
    let t = hub.get(&thumb, &[]);
    assert_eq!(t.status, 200, "{}", t.text());
    assert_eq!(t.header("cache-control"), Some("private, no-cache"));
    let tag = t.header("etag").expect("a series thumbnail's ETag").to_owned();
    assert_eq!(hub.get(&thumb, &[("If-None-Match", &tag)]).status, 304);
    // A study or series retrieve grows with arrivals: no validator.
    let study = hub.get(&format!("/dicom-web/studies/{}", hub.study()), &[("Accept", dicom)]);
    assert_eq!(study.status, 200);
    assert!(study.header("etag").is_none(), "a study retrieve is not immutable");
}

/// PS3.18 (2016b 6.5.5.2, the Bulkdata resource): with a Range header,
/// only the bytes asked for of the bulk data value; RFC 9110 14: 206 with
/// Content-Range, 416 with `bytes */length` when no byte is in range,
/// several ranges may be answered whole (200), and If-Range with a stale tag
/// means the whole.
#[test]
fn bulk_data_answers_single_byte_ranges() {
    let hub = Hub::start();
    let inst = hub.instance("explicit");
    let meta = hub.get(&format!("{inst}/metadata"), &[]).json();
    let bulk = meta[0]["7FE00010"]["BulkDataURI"].as_str().unwrap().trim_start_matches(&hub.server.http()).to_owned();
    let whole = hub.get(&bulk, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let value = parts(&whole).remove(0).1;
    let len = value.len();
    assert_eq!(len, 64 * 64 * 2, "MR_small's pixel data");

    let r = hub.get(&bulk, &[("Range", "bytes=100-1123")]);
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.header("content-range"), Some(format!("bytes 100-1123/{len}").as_str()));
    let got = parts(&r);
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == value[100..1124], "bytes 100-1123 are not the value's");
    assert!(got[0].0.contains(&format!("content-range: bytes 100-1123/{len}")), "{}", got[0].0);

    // The bare value (a single part media type for a single item, PS3.18 10.4.4): plain RFC 9110 ranges.
    let r = hub.get(&bulk, &[("Accept", "application/octet-stream"), ("Range", "bytes=-16")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-range"), Some(format!("bytes {}-{}/{len}", len - 16, len - 1).as_str()));
    assert!(r.body == value[len - 16..]);
    let r = hub.get(&bulk, &[("Accept", "application/octet-stream"), ("Range", "bytes=8000-")]);
    assert_eq!((r.status, r.body.len()), (206, len - 8000));

    let r = hub.get(&bulk, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{len}").as_str()));
    let r = hub.get(&bulk, &[("Range", "bytes=0-1,4-5")]);
    assert_eq!(r.status, 200, "several ranges: the whole");
    assert!(parts(&r)[0].1 == value);
    let etag = whole.header("etag").unwrap().to_owned();
    let r = hub.get(&bulk, &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")]);
    assert_eq!(r.status, 200, "If-Range with another tag: the whole");
    let r = hub.get(&bulk, &[("Range", "bytes=0-9"), ("If-Range", &etag)]);
    assert_eq!(r.status, 206, "If-Range with the tag: the range");

    // One frame is one value too: its bytes by Range.
    let frame = format!("{inst}/frames/1");
    let r = hub.get(&frame, &[("Accept", "multipart/related; type=\"application/octet-stream\""), ("Range", "bytes=8000-8191")]);
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.header("content-range"), Some(format!("bytes 8000-8191/{len}").as_str()));
    assert!(parts(&r)[0].1 == value[8000..], "a frame's bytes 8000-8191");
    assert_eq!(hub.get(&frame, &[("Range", "bytes=9000-")]).status, 416);
}

/// PS3.18 8.3.3.1: a rendered resource takes its media types from the
/// `accept` query parameter as well as the Accept header (the parameter
/// first), and multipart/related; type="image/jpeg" is one of them
/// (Table 10.4.4-1's rendered media types).
#[test]
fn rendered_resources_take_the_accept_parameter_and_multipart() {
    let hub = Hub::start();
    let inst = hub.instance("wide");
    let png = hub.get(&format!("{inst}/rendered?accept=image/png"), &[]);
    assert_eq!((png.status, png.header("content-type")), (200, Some("image/png")), "{}", png.text());
    assert!(png.body.starts_with(b"\x89PNG"));
    let r = hub.get(&format!("{inst}/rendered?accept=image%2Fpng"), &[("Accept", "image/jpeg")]);
    assert_eq!(r.header("content-type"), Some("image/png"), "the query parameter comes before the header");
    let r = hub.get(&format!("{inst}/rendered?accept=application/pdf"), &[("Accept", "image/png")]);
    assert_eq!(r.header("content-type"), Some("image/png"), "then the header's");
    let r = hub.get(&format!("{inst}/rendered?accept=application/pdf"), &[("Accept", "application/pdf")]);
    assert_eq!(r.status, 406);

    for (how, target, header) in [
        ("parameter", format!("{inst}/rendered?accept=multipart%2Frelated%3B%20type%3D%22image%2Fjpeg%22"), None),
        ("header", format!("{inst}/frames/1/rendered"), Some("multipart/related; type=\"image/jpeg\"")),
        ("thumbnail", format!("{inst}/thumbnail"), Some("multipart/related; type=\"image/jpeg\"")),
    ] {
        let r = hub.get(&target, &header.map(|h| vec![("Accept", h)]).unwrap_or_default());
        assert_eq!(r.status, 200, "{how}: {}", r.text());
        assert!(r.header("content-type").unwrap().contains("type=\"image/jpeg\""), "{how}: {:?}", r.header("content-type"));
        let p = parts(&r);
        assert_eq!(p.len(), 1, "{how}");
        assert!(p[0].0.contains("content-type: image/jpeg") && p[0].1.starts_with(&[0xFF, 0xD8]), "{how}: not a JPEG part");
    }

    // A series' thumbnail (kept as PNG) as PNG or JPEG, alone or multipart.
    let thumb = format!("{}/thumbnail", hub.series("wide"));
    assert_eq!(hub.get(&format!("{thumb}?accept=image/png"), &[]).header("content-type"), Some("image/png"));
    let jpeg = hub.get(&format!("{thumb}?accept=image/jpeg"), &[("Accept", "image/png")]);
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    assert!(jpeg.body.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let r = hub.get(&thumb, &[("Accept", "multipart/related; type=\"image/png\"")]);
    assert!(parts(&r)[0].1.starts_with(b"\x89PNG"));
    assert_eq!(hub.get(&format!("{thumb}?accept=text/html"), &[("Accept", "text/html")]).status, 406);

    // viewport=vw,vh: scaled to fit inside, the aspect ratio kept (PS3.18 8.3.5.1.3).
    let r = hub.get(&format!("{inst}/rendered?viewport=40,10"), &[("Accept", "image/png")]);
    assert_eq!(png_size(&r.body), (20, 10), "64×32 inside 40×10");
    let r = hub.get(&format!("{inst}/rendered?viewport=16,100"), &[("Accept", "image/png")]);
    assert_eq!(png_size(&r.body), (16, 8), "64×32 inside 16×100");
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG") && png.len() > 24, "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// PS3.18 8.7.3.5 (Table 8.7.3-2: Explicit VR Little Endian is the default
/// transfer syntax of application/dicom) and 8.7.3.5.2 (`*`: any, so as
/// stored): with no transfer-syntax parameter, a losslessly stored instance
/// comes as Explicit VR Little Endian, a lossy one as stored. One radhub
/// cannot deliver so is left out and the answer says so: 206 with a
/// Warning (PS3.18 10.4.3's Partial Content), or 406 when none is left.
#[test]
fn the_default_transfer_syntax_and_partial_answers() {
    let hub = Hub::start();
    let dicom = |ts: Option<&str>| match ts {
        Some(ts) => format!("multipart/related; type=\"application/dicom\"; transfer-syntax={ts}"),
        None => "multipart/related; type=\"application/dicom\"".to_owned(),
    };
    let syntax = |part: &(String, Vec<u8>)| {
        part.0.lines().find_map(|l| l.strip_prefix("content-type:")).and_then(|c| c.split("transfer-syntax=").nth(1)).unwrap_or("").trim().to_owned()
    };
    // Series A: all delivered, each part labelled with the syntax it is in.
    let a = hub.get(&hub.series("explicit"), &[("Accept", &dicom(None))]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("warning").is_none());
    let got: Vec<String> = parts(&a).iter().map(syntax).collect();
    assert_eq!(got.len(), 8);
    assert_eq!(got.iter().filter(|t| *t == EXPLICIT_LE).count(), 7, "{got:?}");
    assert!(got.contains(&"1.2.840.10008.1.2.4.50".to_owned()), "the lossy JPEG stays as stored: {got:?}");
    // Asked for by name, uncompressed: the lossy one decoded too.
    let named = hub.get(&hub.series("explicit"), &[("Accept", &dicom(Some(EXPLICIT_LE)))]);
    assert_eq!(named.status, 200, "{}", named.text());
    assert!(parts(&named).iter().map(syntax).all(|t| t == EXPLICIT_LE));
    // No Accept at all is the default too.
    let r = hub.get(&hub.instance("rle"), &[]);
    assert_eq!(parts(&r).iter().map(syntax).collect::<Vec<_>>(), [EXPLICIT_LE]);
    let r = hub.get(&hub.instance("rle"), &[("Accept", &dicom(Some("*")))]);
    assert_eq!(parts(&r).iter().map(syntax).collect::<Vec<_>>(), ["1.2.840.10008.1.2.5"], "transfer-syntax=*: as stored");

    // Series B: the JPEG XL lossless instance cannot be decoded.
    for ts in [None, Some(EXPLICIT_LE)] {
        let b = hub.get(&hub.series("jxl_lossless"), &[("Accept", &dicom(ts))]);
        assert_eq!(b.status, 206, "{ts:?}: {}", b.text());
        let warning = b.header("warning").unwrap_or_else(|| panic!("{ts:?}: a partial answer without a Warning"));
        assert!(warning.starts_with("299 ") && warning.contains("1 of 2 instances left out"), "{warning}");
        let p = parts(&b);
        assert_eq!(p.len(), 1, "{ts:?}");
        assert_eq!(syntax(&p[0]), EXPLICIT_LE);
    }
    let all = hub.get(&hub.series("jxl_lossless"), &[("Accept", &dicom(Some("*")))]);
    assert_eq!((all.status, parts(&all).len()), (200, 2), "as stored, both");
    let one = hub.get(&hub.instance("jxl_lossless"), &[("Accept", &dicom(None))]);
    assert_eq!(one.status, 406, "nothing left to send: {}", one.text());
    // Asked for a syntax radhub does not encode: the instances already in it go, the rest are left out.
    let lossy = hub.get(&hub.series("explicit"), &[("Accept", &dicom(Some("1.2.840.10008.1.2.4.50")))]);
    assert_eq!(lossy.status, 206);
    assert_eq!(parts(&lossy).iter().map(syntax).collect::<Vec<_>>(), ["1.2.840.10008.1.2.4.50"]);

    // Frames with nothing asked: lossless decoded, little endian.
    let f = hub.get(&format!("{}/frames/1", hub.instance("rle")), &[]);
    assert!(f.header("content-type").unwrap().contains("application/octet-stream"), "{:?}", f.header("content-type"));
    assert_eq!(parts(&f)[0].1.len(), 64 * 64 * 2);
    let f = hub.get(&format!("{}/frames/1", hub.instance("jpeg_lossy")), &[]);
    assert!(f.header("content-type").unwrap().contains("image/jpeg"), "a lossy frame as stored");
}

/// The same, as dicomweb-client sees it, with pydicom reading what came:
/// default retrieves in Explicit VR Little Endian with the original's
/// pixels, `*` as stored, 00083002 in instance and series metadata, byte
/// ranges through `retrieve_bulkdata(byte_range=…)`, rendered media types
/// and viewports.
#[test]
fn dicomweb_client_sees_the_defaults_ranges_and_renderings() {
    let hub = Hub::start();
    let manifest = hub._files.path().join("manifest.json");
    let out = Command::new("python3")
        .args([SCRIPT, "client", "--url", &format!("{}/dicom-web", hub.server.http()), "--token", &hub.token])
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("python3 runs check.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("check.py: not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    let failures = report["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "{}", failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
    println!("dicomweb-client: {} checks", report["checks"]);
    assert!(report["checks"].as_u64().unwrap() >= 40, "only {} checks ran", report["checks"]);
}

/// PS3.18 8.3.4.2: `fuzzymatching=true` at an origin server without fuzzy
/// matching is answered with the standard's Warning, <service> the base
/// URI; PS3.18 10.6.3.3 (Tables 10.6.3-3 to 10.6.3-5): a search for series
/// across studies also returns the study attributes, one for instances
/// across studies the study and series attributes, one for instances of a
/// study the series attributes; includefield names attributes of any
/// level above the one searched.
#[test]
fn qido_fuzzymatching_warning_and_attributes_by_level() {
    let hub = Hub::start();
    let base = format!("{}/dicom-web", hub.server.http());
    let want = format!("299 {base}: \"The fuzzymatching parameter is not supported. Only literal matching has been performed.\"");
    for target in ["/dicom-web/studies?fuzzymatching=true&PatientName=*", "/dicom-web/series?fuzzymatching=true", "/dicom-web/instances?fuzzymatching=true"] {
        let r = hub.get(target, &[]);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert!(r.headers.iter().any(|(k, v)| k == "warning" && *v == want), "{target}: {:?}", r.headers);
        assert!(!r.json().as_array().unwrap().is_empty(), "{target}: literal matching still answers");
    }
    let r = hub.get("/dicom-web/studies?fuzzymatching=false", &[]);
    assert!(!r.headers.iter().any(|(k, v)| k == "warning" && v.contains("fuzzymatching")), "fuzzymatching=false warned");

    let study_attrs = ["0020000D", "00080020", "00080050", "00100010", "00100020", "00201206", "00201208"];
    let series_attrs = ["0020000E", "00080060", "00200011", "00201209"];
    let st = hub.study().to_owned();
    let has = |target: &str, keys: &[&str]| {
        let r = hub.get(target, &[]);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let rows = r.json();
        let rows = rows.as_array().unwrap().clone();
        assert!(!rows.is_empty(), "{target}: no results");
        for row in &rows {
            for k in keys {
                assert!(row.get(*k).is_some(), "{target}: {k} missing from {row}");
            }
        }
        rows
    };
    has(&format!("/dicom-web/series?StudyInstanceUID={st}"), &study_attrs);
    has(&format!("/dicom-web/instances?StudyInstanceUID={st}"), &[&study_attrs[..], &series_attrs[..]].concat());
    has(&format!("/dicom-web/studies/{st}/instances"), &series_attrs);
    let se = hub.manifest["instances"]["explicit"]["series"].as_str().unwrap();
    let rows =
        has(&format!("/dicom-web/studies/{st}/series/{se}/instances?includefield=StudyDescription,0008103E,00100010"), &["00081030", "0008103E", "00100010"]);
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["00100010"]["Value"][0]["Alphabetic"].is_string()), "the patient's name, from the study level");
    let rows = has(&format!("/dicom-web/studies/{st}/series?includefield=StudyDate"), &["00080020", "0020000E"]);
    assert_eq!(rows.len(), 3);
    // "Instance Level Attributes contained in includefield parameters shall not be returned" (10.6.3.3.2), nor
    // series or instance ones in a study search.
    let rows = has(&format!("/dicom-web/series?StudyInstanceUID={st}&includefield=SOPClassUID,Rows,StudyDescription"), &["00081030"]);
    assert!(rows.iter().all(|r| r.get("00080016").is_none() && r.get("00280010").is_none()), "{rows:?}");
    let rows = has(&format!("/dicom-web/studies?StudyInstanceUID={st}&includefield=Modality,SOPInstanceUID,00081030"), &["00081030", "00080061"]);
    assert!(rows.iter().all(|r| r.get("00080060").is_none() && r.get("00080018").is_none()), "{rows:?}");
}
