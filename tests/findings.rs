//! Critical, urgent and unexpected findings (RCR): flagged on a report,
//! escalated to admins when nobody has recorded telling the referrer in
//! time, and off the list once someone has (who, how, when).

mod support;

use std::time::{Duration, Instant};

use support::{call, get, user_token, Server};

#[test]
fn an_untold_critical_finding_escalates_until_recorded() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "2", "--max-slices", "1", "--ct-size", "32"]);
    let (ann, bob) = (user_token(data.path(), "ann", "radiologist"), user_token(data.path(), "bob", "radiologist"));
    let admin = user_token(data.path(), "root1", "admin");
    let server = Server::start_in(data, &["--escalate-critical", "1", "--escalate-urgent", "3600"]);
    let base = server.http();
    let studies = get(&base, "/api/studies?limit=10", &ann).json();
    let (a, b) = (studies[0]["uid"].as_str().unwrap(), studies[1]["uid"].as_str().unwrap());
    let report = |uid: &str, text: &str| {
        let r = call(&base, "POST", &format!("/api/studies/{uid}/reports"), &ann, &serde_json::json!({ "text": text }).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_u64().unwrap();
        assert_eq!(call(&base, "POST", &format!("/api/reports/{id}/sign"), &ann, "").status, 200);
        id
    };
    let critical = report(a, "Findings: tension pneumothorax on the left.");
    let urgent = report(b, "Findings: a 3 cm lung mass.");
    // Only the author flags; an unknown category is refused.
    assert_eq!(call(&base, "POST", &format!("/api/reports/{critical}/flag"), &bob, r#"{"category":"critical"}"#).status, 403);
    assert_eq!(call(&base, "POST", &format!("/api/reports/{critical}/flag"), &ann, r#"{"category":"mild"}"#).status, 400);
    assert_eq!(call(&base, "POST", &format!("/api/reports/{critical}/flag"), &ann, r#"{"category":"critical"}"#).status, 200);
    assert_eq!(call(&base, "POST", &format!("/api/reports/{urgent}/flag"), &ann, r#"{"category":"urgent"}"#).status, 200);

    // Past its second, the critical one is listed for admins (not for radiologists); the urgent one has an hour.
    assert_eq!(call(&base, "GET", "/api/admin/escalations", &ann, "").status, 403);
    let t = Instant::now();
    let listed = loop {
        let l = get(&base, "/api/admin/escalations", &admin).json();
        if !l.as_array().unwrap().is_empty() {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no escalation");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ids: Vec<u64> = listed.as_array().unwrap().iter().map(|e| e["finding"]["report_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [critical], "{listed}");
    assert_eq!(listed[0]["finding"]["site"], studies[0]["site"]);

    // Recorded as told (by another radiologist, on the phone): off the list, on the report.
    assert_eq!(call(&base, "POST", &format!("/api/reports/{critical}/communicated"), &bob, r#"{"who":"","how":"phone"}"#).status, 422);
    let told = call(&base, "POST", &format!("/api/reports/{critical}/communicated"), &bob, r#"{"who":"Dr Shah, ED registrar","how":"phone"}"#);
    assert_eq!(told.status, 200, "{}", told.text());
    assert!(get(&base, "/api/admin/escalations", &admin).json().as_array().unwrap().is_empty());
    let r = get(&base, &format!("/api/reports/{critical}"), &ann).json();
    assert_eq!(
        (r["finding"]["category"].as_str(), r["finding"]["told"]["who"].as_str(), r["finding"]["told"]["by"].as_str()),
        (Some("critical"), Some("Dr Shah, ED registrar"), Some("bob")),
        "{r}"
    );
    assert_eq!(call(&base, "POST", "/api/reports/999999/communicated", &bob, r#"{"who":"x","how":"y"}"#).status, 409);
}
