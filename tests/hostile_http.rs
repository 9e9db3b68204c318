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
    // A UID of any printable characters is looked up (by hash, never as a path), and not found.
    problem(&get(&base, "/dicom-web/studies/..%2F..%2Fetc%2Fpasswd/metadata", &token), 404, "path-like UID");
    problem(&get(&base, "/dicom-web/studies/1.2.3/series/1.2%00.3", &token), 400, "NUL in a UID");
    let r = get(&base, "/viewer/..%2F..%2FCargo.toml", &token);
    assert!((400..500).contains(&r.status), "viewer path trick: {}", r.status);
    problem(&get(&base, &format!("/dicom-web/studies?PatientName={}", "A".repeat(20_000)), &token), 414, "huge query");
    // Past 64 KiB hyper itself refuses the head (431 since HTTP/2 is served
    // beside HTTP/1.1: the head is read whole before it is parsed), before
    // radhub sees the request.
    let huge = get(&base, &format!("/dicom-web/studies?PatientName={}", "A".repeat(100_000)), &token).status;
    assert!(huge == 414 || huge == 431, "{huge}");
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

use std::io::Write;
use std::time::{Duration, Instant};

/// A signed-in session's cookie.
fn sign_in(base: &str, user: &str) -> String {
    let body = format!(r#"{{"username":"{user}","password":"{user}-password"}}"#);
    let r = request(base, "POST", "/api/session", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

/// A hub of generated studies, with users of each role; the server not started.
fn hub(gen: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), gen);
    let tokens = ["clinician", "radiologist", "admin"].iter().map(|r| user_token(data.path(), &format!("{r}1"), r)).collect();
    (data, tokens)
}

#[test]
fn half_sent_requests_are_dropped_after_the_header_timeout() {
    let server = Server::start(&["--http-header-timeout", "2", "--max-connections-per-address", "400"]);
    // Three hundred clients that send part of a request and wait.
    let mut slow: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = support::connect_from("127.0.0.3", server.http_port);
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: radhub\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    // Others are served meanwhile.
    let t = Instant::now();
    assert_eq!(request(&server.http(), "GET", "/api/health", &[], b"").status, 200);
    let served = t.elapsed();
    // And the half-sent ones are closed by the server, not held for ever.
    std::thread::sleep(Duration::from_millis(2500));
    let closed = slow.iter_mut().map(|s| support::closed_within(s, Duration::from_secs(3))).filter(|&c| c).count();
    assert_eq!(closed, 300, "half-sent requests still held open after the header timeout");
    support::reliability("300 half-sent HTTP requests (header timeout 2 s)", "others served; all 300 closed by the timeout", served, server.pid());
}

#[test]
fn a_user_has_a_few_retrieves_streaming_at_once() {
    let (data, tokens) = hub(&["--patients", "1", "--max-slices", "8", "--ct-size", "1024"]);
    let studies = support::json(&support::run(data.path(), &["ls", "studies", "--json"]));
    let study = studies.as_array().unwrap().iter().max_by_key(|s| s["bytes"].as_u64().unwrap()).unwrap()["uid"].as_str().unwrap().to_owned();
    let server = Server::start_in(data, &["--retrieves-per-user", "2"]);
    let target = format!("/dicom-web/studies/{study}");
    let ask = |token: &str| {
        let mut s = support::connect_from("127.0.0.1", server.http_port);
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: radhub\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes()).unwrap();
        s
    };
    // Two retrieves streaming (unread) for one user...
    let held: Vec<_> = (0..2).map(|_| ask(&tokens[0])).collect();
    std::thread::sleep(Duration::from_millis(500));
    // ...then a third is refused with 429, while another user is served.
    let r = get(&server.http(), &target, &tokens[0]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(get(&server.http(), &target, &tokens[1]).status, 200);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&server.http(), &target, &tokens[0]).status != 200 {
        assert!(Instant::now() < deadline, "retrieve slots not given back when their clients left");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retrieves_left_unread_pin_no_thread_and_ingest_goes_on() {
    let (data, tokens) = hub(&["--patients", "1", "--max-slices", "8", "--ct-size", "1024"]);
    let studies = support::json(&support::run(data.path(), &["ls", "studies", "--json"]));
    let study = studies.as_array().unwrap().iter().max_by_key(|s| s["bytes"].as_u64().unwrap()).unwrap()["uid"].as_str().unwrap().to_owned();
    let server = Server::start_in(data, &["--retrieves-per-user", "1000", "--max-connections-per-address", "1000"]);
    // More unread retrieves than tokio's blocking pool has threads (512).
    let stalled: Vec<std::net::TcpStream> = (0..520)
        .map(|_| {
            let mut s = support::connect_from("127.0.0.4", server.http_port);
            s.write_all(format!("GET /dicom-web/studies/{study} HTTP/1.1\r\nHost: radhub\r\nAuthorization: Bearer {}\r\n\r\n", tokens[1]).as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // Ingest, searches and metadata still answer promptly.
    let ct = std::fs::read(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    let t = Instant::now();
    let r = support::stow(&server.http(), &tokens[2], &[&ct]);
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(10), "a STOW-RS took {took:?} beside 520 unread retrieves");
    assert_eq!(get(&server.http(), "/dicom-web/studies?limit=5", &tokens[0]).status, 200);
    support::reliability("520 WADO-RS retrieves left unread, then a STOW-RS", "stored; searches answered", took, server.pid());
    // Each unread retrieve holds a few 64 KiB steps, not whole files (the study's are 2 MiB each).
    let peak = support::peak_kib(server.pid()) / 1024;
    assert!(peak < 400, "peak memory {peak} MiB with 520 retrieves unread");
    drop(stalled);
}

#[test]
fn cookie_requests_from_other_sites_are_refused() {
    let (data, _) = hub(&["--patients", "1", "--max-slices", "1", "--ct-size", "32"]);
    let server = Server::start_in(data, &[]);
    let base = server.http();
    let cookie = sign_in(&base, "radiologist1");
    let study = get_study(&base, &cookie);
    let create = format!("/api/studies/{study}/reports");
    let body = br#"{"text":"No acute abnormality."}"#;
    let post = |extra: &[(&str, &str)]| {
        let mut h = vec![("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        request(&base, "POST", &create, &h, body)
    };
    problem(&post(&[("Origin", "https://evil.example")]), 403, "a cookie request from another site");
    problem(&post(&[]), 403, "a cookie request without Origin");
    assert_eq!(post(&[("Sec-Fetch-Site", "same-origin")]).status, 201);
    assert_eq!(post(&[("Origin", &base)]).status, 201);
    // A sign-in posted from another site's page is refused too.
    let r = request(
        &base,
        "POST",
        "/api/session",
        &[("Content-Type", "application/json"), ("Origin", "https://evil.example")],
        br#"{"username":"radiologist1","password":"radiologist1-password"}"#,
    );
    problem(&r, 403, "a cross-site sign-in");
}

/// Some study's UID, as the signed-in user sees them.
fn get_study(base: &str, cookie: &str) -> String {
    let r = request(base, "GET", "/api/studies?limit=1", &[("Cookie", cookie)], b"");
    r.json()[0]["uid"].as_str().unwrap().to_owned()
}

#[test]
fn api_tokens_need_the_password_again_and_expire() {
    let (data, _) = hub(&["--patients", "1", "--max-slices", "1", "--ct-size", "32"]);
    let server = Server::start_in(data, &[]);
    let base = server.http();
    let cookie = sign_in(&base, "clinician1");
    let mint =
        |body: &str| request(&base, "POST", "/api/tokens", &[("Cookie", &cookie), ("Origin", &base), ("Content-Type", "application/json")], body.as_bytes());
    let r = mint(r#"{"label":"script"}"#);
    assert_eq!(r.status, 400, "a session alone minted a token: {}", r.text());
    problem(&mint(r#"{"password":"wrong-password"}"#), 401, "a wrong password");
    let r = mint(r#"{"password":"clinician1-password","label":"script","days":7}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let expires = r.json()["expires_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(expires > now && expires <= now + 7 * 86_400_000 + 60_000, "expires at {expires}");
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&base, "/api/session", &token).status, 200);
    problem(&mint(r#"{"password":"clinician1-password","days":9999}"#), 422, "a token for ever");
}

#[test]
fn draft_reports_are_read_by_their_author_and_admins_only() {
    let (data, tokens) = hub(&["--patients", "1", "--max-slices", "1", "--ct-size", "32"]);
    let other = user_token(data.path(), "radiologist2", "radiologist");
    let server = Server::start_in(data, &[]);
    let base = server.http();
    let study = get(&base, "/api/studies?limit=1", &tokens[0]).json()[0]["uid"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {}", tokens[1]);
    let r = request(
        &base,
        "POST",
        &format!("/api/studies/{study}/reports"),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        br#"{"text":"Draft: ?fracture"}"#,
    );
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_u64().unwrap();
    let path = format!("/api/reports/{id}");
    assert_eq!(get(&base, &path, &tokens[1]).status, 200, "the author reads their draft");
    assert_eq!(get(&base, &path, &tokens[2]).status, 200, "an admin reads it");
    for (who, t) in [("another radiologist", &other), ("a clinician", &tokens[0])] {
        assert_eq!(get(&base, &path, t).status, 404, "{who} read a draft");
        let listed = get(&base, &format!("/api/studies/{study}/reports"), t).json();
        assert!(listed.as_array().unwrap().is_empty(), "{who} sees a draft listed: {listed}");
        assert!(get(&base, &format!("/api/studies/{study}"), t).json()["reports"].as_array().unwrap().is_empty(), "{who}");
    }
    let r = request(&base, "POST", &format!("{path}/sign"), &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(get(&base, &path, &other).status, 200, "a signed report is for every reader");
}

#[test]
fn the_hubs_files_are_for_its_own_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let (data, tokens) = hub(&["--patients", "1", "--max-slices", "1", "--ct-size", "32"]);
    let server = Server::start_in(data, &[]);
    let ct = std::fs::read(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    assert_eq!(support::stow(&server.http(), &tokens[2], &[&ct]).status, 200);
    let (_, data) = server.stop();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data.path()), 0o700, "the data folder");
    let mut files = 0;
    for e in walkdir::WalkDir::new(data.path()).into_iter().filter_map(Result::ok) {
        let m = mode(e.path());
        if e.file_type().is_dir() {
            assert_eq!(m & 0o077, 0, "{} is open to others ({m:o})", e.path().display());
        } else {
            files += 1;
            assert_eq!(m & 0o077, 0, "{} is readable by others ({m:o})", e.path().display());
        }
    }
    assert!(files > 10, "{files} files");
}

#[test]
fn study_searches_answer_newest_first() {
    let (data, tokens) = hub(&["--patients", "6", "--max-slices", "1", "--ct-size", "32"]);
    let all = support::json(&support::run(data.path(), &["ls", "studies", "--json"]));
    let newest = all.as_array().unwrap().iter().map(|s| (s["date"].as_str().unwrap().to_owned(), s["time"].as_str().unwrap().to_owned())).max().unwrap();
    let server = Server::start_in(data, &[]);
    // A viewer's first page must hold today's studies, however many are older.
    let q = get(&server.http(), "/dicom-web/studies?limit=1", &tokens[0]).json();
    assert_eq!(q[0]["00080020"]["Value"][0].as_str().unwrap(), newest.0, "{q}");
    assert!(q[0]["00100021"]["Value"][0].as_str().is_some(), "QIDO answers carry Issuer of Patient ID: {q}");
    let api = get(&server.http(), "/api/studies?limit=1", &tokens[0]).json();
    assert_eq!(api[0]["date"].as_str().unwrap(), newest.0);
}

#[test]
fn connections_beyond_the_cap_wait_their_turn_and_descriptors_are_raised() {
    let server = Server::start(&["--max-connections", "4", "--http-header-timeout", "2"]);
    let _held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = support::connect_from("127.0.0.5", server.http_port);
            s.write_all(b"GET /api/health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The fifth waits in the backlog until the header timeout frees a slot.
    let t = Instant::now();
    assert_eq!(request(&server.http(), "GET", "/api/health", &[], b"").status, 200);
    let waited = t.elapsed();
    assert!(waited > Duration::from_millis(1000) && waited < Duration::from_secs(8), "served after {waited:?}");
    support::reliability("5th HTTP connection over a cap of 4 held by half-sent requests", "served once the header timeout freed a slot", waited, server.pid());
    // The open-file limit is raised to the hard limit at start.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let v: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(v[3], v[4], "soft and hard open-file limits: {files}");
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn clients_that_stop_reading_lose_their_connections() {
    let (data, tokens) = hub(&["--patients", "1", "--max-slices", "2", "--ct-size", "1024"]);
    let inst = support::json(&support::run(data.path(), &["ls", "instances", "--json"]));
    // The largest image (a 10 MiB radiograph): more than socket buffers hold.
    let ct = inst.as_array().unwrap().iter().max_by_key(|i| i["file_size"].as_u64().unwrap()).unwrap();
    let frame = format!(
        "/dicom-web/studies/{}/series/{}/instances/{}/frames/1",
        ct["study_uid"].as_str().unwrap(),
        ct["series_uid"].as_str().unwrap(),
        ct["sop_uid"].as_str().unwrap()
    );
    // The idle timeout is long: only the send timeout can free them.
    let server = Server::start_in(data, &["--http-send-timeout", "2", "--http-header-timeout", "60"]);
    let before = open_fds(server.pid());
    // Ten clients ask for its frame (one answer body, not streamed) with a
    // 4 KiB receive window, and read none of it.
    let unread: Vec<std::net::TcpStream> = (0..10)
        .map(|_| {
            let mut s = support::connect_from("127.0.0.6", server.http_port);
            s.write_all(format!("GET {frame} HTTP/1.1\r\nHost: radhub\r\nAuthorization: Bearer {}\r\n\r\n", tokens[0]).as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(open_fds(server.pid()) >= before + 10, "the connections were not open");
    let t = Instant::now();
    while open_fds(server.pid()) > before + 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "{} descriptors still held by unread answers", open_fds(server.pid()) - before);
        std::thread::sleep(Duration::from_millis(200));
    }
    let freed = t.elapsed();
    assert_eq!(request(&server.http(), "GET", "/api/health", &[], b"").status, 200);
    support::reliability("10 HTTP clients that read none of a 10 MiB answer (send timeout 2 s)", "connections closed, descriptors freed", freed, server.pid());
    drop(unread);
}

#[test]
fn one_address_holds_only_its_share_of_connections() {
    let server = Server::start(&["--max-connections-per-address", "8", "--http-header-timeout", "30"]);
    let mut held: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = support::connect_from("127.0.0.7", server.http_port);
            s.write_all(b"GET /api/health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = held.iter_mut().map(|s| support::closed_within(s, Duration::from_millis(50))).filter(|&c| c).count();
    assert_eq!(closed, 12, "connections over the per-address cap");
    let t = Instant::now();
    assert_eq!(request(&server.http(), "GET", "/api/health", &[], b"").status, 200, "another address is served");
    support::reliability("20 half-sent HTTP connections from one address (cap 8)", "12 closed at once; other addresses served", t.elapsed(), server.pid());
}
