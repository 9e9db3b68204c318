//! Bad HTTP input gets a 4xx problem+json, stores nothing, and leaves the
//! server serving: malformed multipart, wrong content types, oversized
//! bodies, path tricks, huge query strings, bad JSON, broken DICOM parts.

mod support;

use support::{get, request, user_token, Reply, Server};

fn problem(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{what}");
    assert!(!r.json()["detail"].as_str().unwrap_or("").is_empty(), "{what}: a detail");
}

fn stow(base: &str, token: &str, ct: &str, body: &[u8]) -> Reply {
    request(base, "POST", "/dicom-web/studies", &[("Authorization", &format!("Bearer {token}")), ("Content-Type", ct)], body)
}

fn part10(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let token = user_token(data.path(), "pacsadmin", "admin");
    let server = Server::start_in(data, &["--max-body", "200000"]);
    let base = server.http();
    let ct = "multipart/related; type=\"application/dicom\"; boundary=XyZ";
    let good = part10(&support::pydicom_data().join("test_files/CT_small.dcm"));
    let mut body = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    body.extend_from_slice(&good);

    // Cut off before the closing delimiter: refused, not stored in part.
    problem(&stow(&base, &token, ct, &body), 400, "no closing delimiter");
    problem(&stow(&base, &token, ct, b"no boundary anywhere"), 400, "no boundary");
    problem(&stow(&base, &token, "multipart/related; type=\"application/dicom\"", &body), 400, "no boundary parameter");
    problem(&stow(&base, &token, "application/json", b"{}"), 415, "JSON to STOW");
    problem(&stow(&base, &token, "multipart/related; type=\"application/dicom+json\"; boundary=XyZ", &body), 415, "metadata STOW");

    // A body over --max-body.
    let mut big = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    big.resize(300_000, b'A');
    big.extend_from_slice(b"\r\n--XyZ--\r\n");
    problem(&stow(&base, &token, ct, &big), 413, "oversized body");

    // A truncated DICOM part: 409 with a FailureReason, and a reason in Warning.
    let mut cut = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    cut.extend_from_slice(&good[..good.len() / 2]);
    cut.extend_from_slice(b"\r\n--XyZ--\r\n");
    let r = stow(&base, &token, ct, &cut);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
    assert!(r.header("warning").is_some_and(|w| w.contains("declares") || w.contains("truncated")), "{:?}", r.header("warning"));

    // Nothing of it is held.
    let stats = get(&base, "/api/admin/stats", &token).json();
    assert_eq!(stats["total"]["instances"], 0, "{stats}");

    // Path tricks and huge query strings.
    problem(&get(&base, "/dicom-web/studies/..%2F..%2Fetc%2Fpasswd/metadata", &token), 400, "non-UID study");
    problem(&get(&base, "/dicom-web/studies/1.2.3/series/1.2%00.3", &token), 400, "NUL in a UID");
    let r = get(&base, "/viewer/..%2F..%2FCargo.toml", &token);
    assert!((400..500).contains(&r.status), "viewer path trick: {}", r.status);
    problem(&get(&base, &format!("/dicom-web/studies?PatientName={}", "A".repeat(20_000)), &token), 414, "huge query");
    // Past 64 KiB hyper itself answers 414, before radhub sees the request.
    assert_eq!(get(&base, &format!("/dicom-web/studies?PatientName={}", "A".repeat(100_000)), &token).status, 414);
    problem(&get(&base, "/dicom-web/studies?limit=lots", &token), 400, "bad limit");
    problem(&get(&base, "/dicom-web/studies?NoSuchAttribute=1", &token), 400, "unknown attribute");
    problem(&get(&base, "/dicom-web/studies/1.2.3/series/4.5/instances/6.7/frames/0", &token), 400, "frame 0");
    problem(&get(&base, "/no/such/route", &token), 404, "unknown route");

    // Bad JSON to the radhub API.
    let auth = format!("Bearer {token}");
    let r = request(&base, "POST", "/api/admin/users", &[("Authorization", &auth), ("Content-Type", "application/json")], b"{\"name\":");
    problem(&r, 400, "truncated JSON");
    let r = request(&base, "POST", "/api/admin/users", &[("Authorization", &auth), ("Content-Type", "text/plain")], b"x");
    problem(&r, 415, "not JSON");

    // Still serving: the good instance stores and comes back byte-identical.
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let r = stow(&base, &token, ct, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0].as_str().unwrap().to_owned();
    let path = url.trim_start_matches(&base);
    let back = request(&base, "GET", path, &[("Authorization", &auth), ("Accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=*")], b"");
    assert_eq!(back.status, 200);
    assert!(back.body.windows(good.len()).any(|w| w == good.as_slice()), "the stored instance is not byte-identical");
}
