//! Every route of the HTTP API, as docs/openapi.json lists them, refuses a
//! request without a session or token (401) and each role its access group
//! leaves out (403), and lets the others through; sign-in, cookies,
//! throttling, reports and user management behave as the roles say.

mod support;

use serde_json::Value;
use support::{request, run, user_token, Reply, Server};

const ROLES: [&str; 3] = ["clinician", "radiologist", "admin"];

fn allowed(access: &str, role: &str) -> bool {
    match access {
        "public" | "read" => true,
        "report" => role == "radiologist",
        "store" => role == "radiologist" || role == "admin",
        "manage" => role == "admin",
        other => panic!("unknown access group {other}"),
    }
}

struct Hub {
    server: Server,
    tokens: Vec<(&'static str, String)>,
    study: String,
    series: String,
    instance: String,
    nhs: String,
}

fn hub() -> Hub {
    let data = tempfile::tempdir().unwrap();
    let incoming = tempfile::tempdir().unwrap();
    let out = incoming.path().join("in");
    run(data.path(), &["testdata", "--out", out.to_str().unwrap(), "--patients", "3", "--max-slices", "2", "--ct-size", "64"]);
    run(data.path(), &["import", "--site-folders", out.to_str().unwrap()]);
    let tokens = ROLES.iter().map(|r| (*r, user_token(data.path(), &format!("{r}1"), r))).collect();
    let ls = support::json(&run(data.path(), &["ls", "instances", "--json"]));
    let first = &ls.as_array().expect("instances")[0];
    let field = |k: &str| first[k].as_str().unwrap_or_else(|| panic!("{k} in {first}")).to_owned();
    let (study, series, instance) = (field("study_uid"), field("series_uid"), field("sop_uid"));
    let patients = support::json(&run(data.path(), &["ls", "patients", "--json"]));
    let nhs = patients.as_array().unwrap().iter().find_map(|p| p["nhs_number"].as_str()).expect("a linked patient").to_owned();
    let server = Server::start_in(data, &[]);
    Hub { server, tokens, study, series, instance, nhs }
}

impl Hub {
    fn token(&self, role: &str) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    fn call(&self, method: &str, target: &str, token: Option<&str>, body: &str) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        request(&self.server.http(), method, target, &headers, body.as_bytes())
    }

    /// A concrete target for a path template of the spec.
    fn target(&self, path: &str) -> String {
        let path = if path.starts_with("/viewer/") { path.replace("{path}", "index.html") } else { path.replace("{path}", "7FE00010") };
        path.replace("{study}", &self.study)
            .replace("{series}", &self.series)
            .replace("{instance}", &self.instance)
            .replace("{frames}", "1")
            .replace("{nhs}", &self.nhs)
            .replace("{id}", "1")
            // No such user: admin routes answer 404 and change nobody's tokens.
            .replace("{name}", "nobody")
    }
}

fn is_problem(r: &Reply) -> bool {
    r.header("content-type") == Some("application/problem+json") && r.json()["status"].as_u64() == Some(u64::from(r.status))
}

#[test]
fn every_route_checks_its_role() {
    let hub = hub();
    let spec: Value = serde_json::from_str(radhub::http::OPENAPI).expect("docs/openapi.json is JSON");
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().unwrap() {
            let access = op["x-radhub-access"].as_str().unwrap_or_else(|| panic!("{method} {path} has no x-radhub-access"));
            let m = method.to_ascii_uppercase();
            let target = hub.target(path);
            let anon = hub.call(&m, &target, None, "{}");
            if access == "public" {
                assert_ne!(anon.status, 401, "{m} {path} is public");
            } else {
                assert_eq!(anon.status, 401, "{m} {path} without a token: {}", anon.text());
                assert!(is_problem(&anon), "{m} {path}: 401 as problem+json");
                assert!(anon.header("www-authenticate").is_some(), "{m} {path}: WWW-Authenticate");
            }
            for role in ROLES {
                let r = hub.call(&m, &target, Some(hub.token(role)), "{}");
                if allowed(access, role) {
                    assert!(r.status != 401 && r.status != 403, "{m} {path} as {role}: {} {}", r.status, r.text());
                    // The route exists: not the router's fallback.
                    assert!(!(r.status == 404 && r.text().contains("no such resource")), "{m} {path} is not routed");
                    assert_ne!(r.status, 405, "{m} {path} is not routed for {m}");
                } else {
                    assert_eq!(r.status, 403, "{m} {path} as {role}: {}", r.text());
                    assert!(is_problem(&r), "{m} {path} as {role}: 403 as problem+json");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} routes in docs/openapi.json");
    // A forged token is no token.
    assert_eq!(hub.call("GET", "/dicom-web/studies", Some("rt_forged"), "").status, 401);
}

#[test]
fn sessions_reports_and_users() {
    let hub = hub();
    let base = hub.server.http();

    // The viewer's files (tests run from the repository root, the default --viewer-dir's base).
    for start in ["/", "/viewer/", "/viewer/?nhs=9434765919"] {
        let page = request(&base, "GET", start, &[], b"");
        assert!(
            page.status == 200 && page.header("content-type").is_some_and(|t| t.starts_with("text/html")) && page.text().contains("/viewer/app.js"),
            "{start}"
        );
    }
    assert_eq!(request(&base, "GET", "/viewer", &[], b"").header("location"), Some("/viewer/"));
    let js = request(&base, "GET", "/viewer/app.js", &[], b"");
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(js.text().contains("/api/session"));
    let wasm = request(&base, "GET", "/viewer/pkg/viewer_wasm_bg.wasm", &[], b"");
    assert_eq!((wasm.status, wasm.header("content-type")), (200, Some("application/wasm")), "scripts/build-viewer builds it");
    assert!(wasm.body.starts_with(b"\0asm"));

    // Sign in: an HttpOnly, SameSite=Strict cookie that works until sign-out.
    let bad = request(&base, "POST", "/api/session", &[("Content-Type", "application/json")], br#"{"username":"radiologist1","password":"nope-nope"}"#);
    assert_eq!(bad.status, 401);
    let ok =
        request(&base, "POST", "/api/session", &[("Content-Type", "application/json")], br#"{"username":"radiologist1","password":"radiologist1-password"}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let set = ok.header("set-cookie").expect("a session cookie").to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = request(&base, "GET", "/api/session", &[("Cookie", &cookie)], b"");
    assert_eq!(me.json()["role"], "radiologist");

    // Reporting: clinicians read, radiologists write; a signed study leaves the worklist.
    let create = format!("/api/studies/{}/reports", hub.study);
    // State-changing requests with the cookie come from radhub's own pages (Origin).
    let r = request(
        &base,
        "POST",
        &create,
        &[("Cookie", &cookie), ("Origin", &base), ("Content-Type", "application/json")],
        br#"{"text":"No acute abnormality."}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(hub.call("POST", &create, Some(hub.token("clinician")), r#"{"text":"x"}"#).status, 403);
    let on_list = |h: &Hub| {
        h.call("GET", "/api/worklist?limit=1000", Some(h.token("radiologist")), "").json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["uid"] == h.study.as_str())
    };
    assert!(on_list(&hub));
    let signed = request(&base, "POST", &format!("/api/reports/{id}/sign"), &[("Cookie", &cookie), ("Origin", &base)], b"");
    assert_eq!(signed.json()["status"], "final", "{}", signed.text());
    assert!(!on_list(&hub), "a signed study stays on the worklist");
    let edit = request(
        &base,
        "PUT",
        &format!("/api/reports/{id}"),
        &[("Cookie", &cookie), ("Origin", &base), ("Content-Type", "application/json")],
        br#"{"text":"changed"}"#,
    );
    assert_eq!(edit.status, 409, "a signed report changed: {}", edit.text());
    let read = hub.call("GET", &format!("/api/studies/{}", hub.study), Some(hub.token("clinician")), "").json();
    assert_eq!(read["reports"][0]["text"], "No acute abnormality.");
    assert_eq!(read["reported"], true);

    // QIDO-RS: a UID list (commas, or the key repeated) and paging.
    let all = hub.call("GET", "/api/studies?limit=1000", Some(hub.token("clinician")), "").json();
    let uids: Vec<&str> = all.as_array().unwrap().iter().map(|s| s["uid"].as_str().unwrap()).collect();
    assert!(uids.len() >= 3, "{uids:?}");
    let qido = |q: &str| hub.call("GET", &format!("/dicom-web/studies?{q}"), Some(hub.token("clinician")), "").json().as_array().unwrap().len();
    assert_eq!(qido(&format!("StudyInstanceUID={},{}", uids[0], uids[1])), 2);
    assert_eq!(qido(&format!("StudyInstanceUID={}&StudyInstanceUID={}&StudyInstanceUID={}", uids[0], uids[1], uids[2])), 3);
    assert_eq!(qido(&format!("limit=2&offset={}", uids.len() - 1)), 1);
    assert_eq!(qido(&format!("offset={}", uids.len())), 0);
    // A frame asked for twice comes once.
    let frames = format!("/dicom-web/studies/{}/series/{}/instances/{}/frames/1,1,1", hub.study, hub.series, hub.instance);
    let r = hub.call("GET", &frames, Some(hub.token("clinician")), "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().matches("Content-Type: application/octet-stream").count(), 1, "one part per distinct frame");

    // The linked record holds every site's identity of the patient.
    let linked = hub.call("GET", &format!("/api/patients/{}", hub.nhs), Some(hub.token("clinician")), "").json();
    assert!(!linked["records"].as_array().unwrap().is_empty() && !linked["studies"].as_array().unwrap().is_empty(), "{linked}");

    // Sign-out ends the session.
    assert_eq!(request(&base, "DELETE", "/api/session", &[("Cookie", &cookie), ("Origin", &base)], b"").status, 204);
    assert_eq!(request(&base, "GET", "/api/session", &[("Cookie", &cookie)], b"").status, 401);

    // Admins manage users; disabling one ends their tokens at once.
    let admin = Some(hub.token("admin"));
    let added = hub.call("POST", "/api/admin/users", admin, r#"{"name":"locum","role":"radiologist","password":"locum-password"}"#);
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(hub.call("POST", "/api/admin/users", admin, r#"{"name":"locum","role":"admin","password":"another-one"}"#).status, 409);
    assert_eq!(hub.call("POST", "/api/admin/users", admin, r#"{"name":"weak","role":"admin","password":"short"}"#).status, 422);
    let off = hub.call("PATCH", "/api/admin/users/clinician1", admin, r#"{"disabled":true}"#);
    assert_eq!(off.json()["disabled"], true);
    assert_eq!(hub.call("GET", "/dicom-web/studies", Some(hub.token("clinician")), "").status, 401);
    assert_eq!(hub.call("PATCH", "/api/admin/users/admin1", admin, r#"{"disabled":true}"#).status, 409, "an admin disabled themselves");

    // Failed sign-ins are throttled: after five, even the right password waits.
    // (One failure from this address counted already, above.)
    for _ in 0..4 {
        let r = request(&base, "POST", "/api/session", &[("Content-Type", "application/json")], br#"{"username":"admin1","password":"guess-guess"}"#);
        assert_eq!(r.status, 401);
    }
    let r = request(&base, "POST", "/api/session", &[("Content-Type", "application/json")], br#"{"username":"admin1","password":"admin1-password"}"#);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
}

/// Behind a TLS terminator (`--public-url https://…`) the session cookie
/// is Secure; on plain HTTP (the demo) it cannot be.
#[test]
fn the_session_cookie_is_secure_when_clients_reach_radhub_over_https() {
    for (public, secure) in [("https://radhub.dorset.nhs.uk", true), ("", false)] {
        let data = tempfile::tempdir().unwrap();
        user_token(data.path(), "rad9", "radiologist");
        let args: Vec<&str> = if public.is_empty() { vec![] } else { vec!["--public-url", public] };
        let s = Server::start_in(data, &args);
        let r = request(&s.http(), "POST", "/api/session", &[("Content-Type", "application/json")], br#"{"username":"rad9","password":"rad9-password"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        let cookie = r.header("set-cookie").unwrap_or_default().to_owned();
        assert_eq!(cookie.contains("; Secure"), secure, "{public}: {cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    }
}

/// CORS for a configured origin (a viewer hosted elsewhere): preflights
/// answered without credentials, answers readable by that origin only,
/// never with credentials (a session cookie cannot be ridden from there).
#[test]
fn cors_lets_a_configured_origin_call_with_a_token_and_no_other() {
    let data = tempfile::tempdir().unwrap();
    let token = user_token(data.path(), "clin1", "clinician");
    let s = Server::start_in(data, &["--cors-origin", "https://viewer.example.nhs.uk/"]);
    let base = s.http();
    let preflight = |origin: &str| {
        request(
            &base,
            "OPTIONS",
            "/dicom-web/studies",
            &[("Origin", origin), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "authorization")],
            b"",
        )
    };
    let ok = preflight("https://viewer.example.nhs.uk");
    assert_eq!(ok.status, 204, "{}", ok.text());
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://viewer.example.nhs.uk"));
    assert!(ok.header("access-control-allow-headers").is_some_and(|h| h.contains("Authorization")));
    assert_eq!(ok.header("access-control-allow-credentials"), None, "credentials are never allowed cross-origin");
    let other = preflight("https://elsewhere.example");
    assert_eq!((other.status, other.header("access-control-allow-origin")), (403, None));

    let bearer = format!("Bearer {token}");
    let get = |origin: &str| request(&base, "GET", "/dicom-web/studies", &[("Origin", origin), ("Authorization", &bearer)], b"");
    let r = get("https://viewer.example.nhs.uk");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://viewer.example.nhs.uk"));
    assert!(r.header("access-control-expose-headers").is_some_and(|h| h.contains("ETag")));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // Another origin's page gets the answer without CORS headers: its browser keeps it from the page.
    assert_eq!(get("https://elsewhere.example").header("access-control-allow-origin"), None);
    // Errors are readable by the configured origin too (a 401 it must act on).
    let r = request(&base, "GET", "/dicom-web/studies", &[("Origin", "https://viewer.example.nhs.uk")], b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (401, Some("https://viewer.example.nhs.uk")));
}
