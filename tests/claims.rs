//! Claims over the HTTP API against a running server: a radiologist
//! claims a study before reporting; of many claiming at once exactly one
//! wins and the others are told who; a claim lapses, is renewed by work
//! on the draft, ends on sign-off, and an admin can break one.

mod support;

use std::time::Duration;

use support::{call, get, user_token, Reply, Server};

#[test]
fn a_study_is_claimed_by_one_radiologist_at_a_time() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "2", "--max-slices", "1", "--ct-size", "32"]);
    let rads: Vec<(String, String)> = (1..=6).map(|i| format!("rad{i}")).map(|n| (n.clone(), user_token(data.path(), &n, "radiologist"))).collect();
    let admin = user_token(data.path(), "root1", "admin");
    let clinician = user_token(data.path(), "clin1", "clinician");
    let lease = 3;
    let server = Server::start_in(data, &["--claim-lease", &lease.to_string()]);
    let base = server.http();
    let studies: Vec<String> =
        get(&base, "/api/studies?limit=10", &clinician).json().as_array().unwrap().iter().map(|s| s["uid"].as_str().unwrap().to_owned()).collect();
    assert!(studies.len() >= 2, "{studies:?}");
    let (study, other) = (&studies[0], &studies[1]);
    let claim = format!("/api/studies/{study}/claim");

    // Six at once: exactly one wins; each loser is told who holds it.
    let answers: Vec<(String, Reply)> = std::thread::scope(|s| {
        let hs: Vec<_> = rads.iter().map(|(n, t)| s.spawn(|| (n.clone(), call(&base, "POST", &claim, t, "")))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = answers.iter().filter(|(_, r)| r.status == 200).map(|(n, _)| n).collect();
    assert_eq!(winners.len(), 1, "{:?}", answers.iter().map(|(n, r)| (n, r.status)).collect::<Vec<_>>());
    let winner = winners[0].clone();
    for (n, r) in &answers {
        if *n != winner {
            assert_eq!(r.status, 409, "{n}: {}", r.text());
            assert!(r.text().contains(&format!("claimed by {winner}")), "{n}: {}", r.text());
        }
    }
    let token = |name: &str| rads.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap();
    let (holder, loser) = (token(&winner), rads.iter().find(|(n, _)| *n != winner).map(|(_, t)| t.clone()).unwrap());

    // The worklist and the study say who holds it; the filter finds it.
    let shown = get(&base, &format!("/api/studies/{study}"), &clinician).json();
    assert_eq!(shown["claim"]["by"], winner.as_str(), "{shown}");
    let mine = get(&base, &format!("/api/worklist?claimed_by={winner}"), &holder).json();
    assert!(
        mine["items"].as_array().unwrap().iter().all(|s| s["claimed_by"] == winner.as_str())
            && mine["items"].as_array().unwrap().iter().any(|s| s["uid"] == study.as_str())
            && mine["counts"]["claimed_by"][winner.as_str()] == 1,
        "{mine}"
    );
    let free = get(&base, "/api/worklist?claimed_by=", &holder).json();
    assert!(!free["items"].as_array().unwrap().iter().any(|s| s["uid"] == study.as_str()), "{free}");

    // Another radiologist can neither draft a report on it nor release it.
    let reports = format!("/api/studies/{study}/reports");
    assert_eq!(call(&base, "POST", &reports, &loser, r#"{"text":"Mine."}"#).status, 409);
    assert_eq!(call(&base, "DELETE", &claim, &loser, "").status, 409);
    // Clinicians do not claim.
    assert_eq!(call(&base, "POST", &claim, &clinician, "").status, 403);

    // The holder drafts; each save renews the lease, so it outlives the first.
    let r = call(&base, "POST", &reports, &holder, r#"{"text":"Draft."}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        let r = call(&base, "PUT", &format!("/api/reports/{id}"), &holder, &format!(r#"{{"text":"Draft {i}."}}"#));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(call(&base, "POST", &claim, &loser, "").status, 409, "the claim lapsed while its draft was being saved");
    // Sign-off frees the study.
    let r = call(&base, "POST", &format!("/api/reports/{id}/sign"), &holder, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(get(&base, &format!("/api/studies/{study}"), &clinician).json()["claim"].is_null());

    // A claim nobody renews lapses, and another radiologist can take it.
    let claim2 = format!("/api/studies/{other}/claim");
    assert_eq!(call(&base, "POST", &claim2, &holder, "").status, 200);
    assert_eq!(call(&base, "POST", &claim2, &loser, "").status, 409);
    std::thread::sleep(Duration::from_secs(lease + 1));
    let r = call(&base, "POST", &claim2, &loser, "");
    assert_eq!(r.status, 200, "a lapsed claim still held the study: {}", r.text());
    // An admin breaks it (radiologists cannot use the admin route).
    assert_eq!(call(&base, "DELETE", &format!("/api/admin/claims/{other}"), &holder, "").status, 403);
    let broken = call(&base, "DELETE", &format!("/api/admin/claims/{other}"), &admin, "");
    assert_eq!(broken.status, 200, "{}", broken.text());
    assert_ne!(broken.json()["by"], winner.as_str());
    assert_eq!(call(&base, "DELETE", &format!("/api/admin/claims/{other}"), &admin, "").status, 404);
    assert_eq!(call(&base, "POST", &claim2, &holder, "").status, 200, "a broken claim still held the study");
    // Its holder releases it by hand.
    assert_eq!(call(&base, "DELETE", &claim2, &holder, "").status, 204);
    assert!(get(&base, &format!("/api/studies/{other}"), &clinician).json()["claim"].is_null());

    // Every action above is in the audit trail: who, their role, the request, its outcome, the study and its patient.
    let trail = get(&base, "/api/admin/audit?limit=1000", &admin).json();
    let trail = trail.as_array().unwrap();
    let has = |user: &str, req: &str, status: u16, on: Option<&str>| {
        trail.iter().any(|e| e["user"] == user && e["request"] == req && e["status"] == status && on.is_none_or(|s| e["study"] == s))
    };
    for (user, req, status, on) in [
        (winner.as_str(), "POST /api/studies/{study}/claim", 200, Some(study.as_str())),
        (winner.as_str(), "POST /api/studies/{study}/reports", 201, Some(study.as_str())),
        (winner.as_str(), "PUT /api/reports/{id}", 200, None),
        (winner.as_str(), "POST /api/reports/{id}/sign", 200, None),
        (winner.as_str(), "GET /api/worklist", 200, None),
        (winner.as_str(), "DELETE /api/studies/{study}/claim", 204, Some(other.as_str())),
        ("root1", "DELETE /api/admin/claims/{study}", 200, Some(other.as_str())),
        ("root1", "DELETE /api/admin/claims/{study}", 404, Some(other.as_str())),
        ("clin1", "POST /api/studies/{study}/claim", 403, Some(study.as_str())),
        ("clin1", "GET /api/studies/{study}", 200, Some(study.as_str())),
    ] {
        assert!(has(user, req, status, on), "no audit record of {user} {req} {status} on {on:?}");
    }
    assert_eq!(
        trail.iter().filter(|e| e["request"] == "POST /api/studies/{study}/claim" && e["status"] == 409 && e["study"] == study.as_str()).count(),
        6,
        "the five losers' claims, and the one while the draft was open"
    );
    let opened = trail.iter().find(|e| e["user"] == "clin1" && e["request"] == "GET /api/studies/{study}").unwrap();
    assert!(opened["patient"].as_str().is_some_and(|p| p.contains('/')), "{opened}");
    assert_eq!(
        (opened["event"].as_str(), opened["action"].as_str(), opened["outcome"].as_u64(), opened["role"].as_str()),
        (Some("DICOM Instances Accessed"), Some("R"), Some(0), Some("clinician"))
    );
    let refused = trail.iter().find(|e| e["user"] == "clin1" && e["status"] == 403).unwrap();
    assert_eq!(refused["outcome"], 4);
    // The chain is whole, over the API and by `radhub audit --verify` through the running server.
    let v = get(&base, "/api/admin/audit/verify", &admin).json();
    assert!(v["ok"] == true && v["records"].as_u64().unwrap() >= trail.len() as u64, "{v}");
    let out = support::run(server.data.path(), &["audit", "--verify"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("intact"), "{}", String::from_utf8_lossy(&out.stderr));
    let export = support::run(server.data.path(), &["audit", "--json", "--user", "clin1", "--limit", "1000"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|e| e["user"] == "clin1"), "{lines:?}");
}
