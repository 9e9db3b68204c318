//! The county reporting worklist: every site's studies awaiting a report,
//! with each filter's counts, assignment, the report's template, draft,
//! preliminary and versions on the way, off the list once final, and the
//! turnaround that leaves.

mod support;

use serde_json::Value;
use support::{call, dcmtk, get, output, stow, user_token, Server};

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().unwrap_or_else(|| panic!("{v}")).clone()
}

fn uids(v: &Value) -> Vec<String> {
    items(v).iter().map(|i| i["uid"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_study_goes_from_the_county_worklist_to_its_final_report() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "4", "--max-slices", "1", "--ct-size", "32"]);
    let (ann, bob) = (user_token(data.path(), "ann", "radiologist"), user_token(data.path(), "bob", "radiologist"));
    let admin = user_token(data.path(), "root1", "admin");
    let clinician = user_token(data.path(), "cli1", "clinician");
    let server = Server::start_in(data, &["--stow-site", "RBD"]);
    let base = server.http();

    // Every site's studies, each filter's values counted.
    let all = get(&base, "/api/worklist?limit=1000", &ann).json();
    let total = all["total"].as_u64().unwrap() as usize;
    let studies = get(&base, "/api/studies?limit=1000", &ann).json();
    assert_eq!(total, studies.as_array().unwrap().len(), "{all}");
    assert_eq!(items(&all).len(), total);
    let by_site = all["counts"]["site"].as_object().unwrap();
    assert_eq!(by_site.keys().cloned().collect::<Vec<_>>(), ["R0D", "RBD", "RD3"], "{all}");
    assert_eq!(by_site.values().map(|n| n.as_u64().unwrap()).sum::<u64>() as usize, total);
    // Routine all, so longest waiting first.
    let waits: Vec<u64> = items(&all).iter().map(|i| i["waiting_s"].as_u64().unwrap()).collect();
    assert!(waits.windows(2).all(|w| w[0] >= w[1]), "{waits:?}");
    assert_eq!(get(&base, "/api/worklist", &clinician).status, 403);

    // A filter keeps what it names; its own counts still show the other choices.
    let modality = all["counts"]["modality"].as_object().unwrap().keys().next().unwrap().clone();
    let f = get(&base, &format!("/api/worklist?modality={modality}&limit=1000"), &ann).json();
    assert_eq!(f["total"], all["counts"]["modality"][&modality], "{f}");
    assert!(items(&f).iter().all(|i| i["modalities"].as_array().unwrap().iter().any(|m| *m == modality.as_str())), "{f}");
    assert_eq!(f["counts"]["modality"], all["counts"]["modality"]);
    let rd3 = get(&base, "/api/worklist?site=RD3&limit=1000", &ann).json();
    assert_eq!(rd3["total"], all["counts"]["site"]["RD3"]);
    assert!(items(&rd3).iter().all(|i| i["site"] == "RD3"));
    assert_eq!(get(&base, "/api/worklist?older_than=1d", &ann).json()["total"], 0);
    assert_eq!(get(&base, "/api/worklist?older_than=soon", &ann).status, 400);
    let page = get(&base, "/api/worklist?limit=2&offset=1", &ann).json();
    assert_eq!(uids(&page), uids(&all)[1..3]);

    // An admin assigns; radiologists cannot, and only to a radiologist.
    // The first with an accession number (the RIS's key to its report).
    let with_acc = items(&all).into_iter().find(|i| !i["accession_number"].as_str().unwrap_or("").is_empty()).unwrap_or_else(|| panic!("{all}"));
    let first = with_acc["uid"].as_str().unwrap().to_owned();
    let others: Vec<String> = uids(&all).into_iter().filter(|u| *u != first).collect();
    let (second, third) = (others[0].clone(), others[1].clone());
    let assign = |uid: &str, token: &str, to: &str| call(&base, "POST", &format!("/api/worklist/{uid}/assign"), token, &format!(r#"{{"to":{to}}}"#));
    assert_eq!(assign(&first, &ann, r#""ann""#).status, 403);
    assert_eq!(assign(&first, &admin, r#""cli1""#).status, 422);
    assert_eq!(assign(&first, &admin, r#""ann""#).status, 200);
    assert_eq!(assign(&second, &admin, r#""bob""#).status, 200);
    assert_eq!(assign("1.2.3.999", &admin, r#""bob""#).status, 404);
    let mine = get(&base, "/api/worklist?assigned_to=ann", &ann).json();
    assert_eq!(uids(&mine), std::slice::from_ref(&first));
    assert_eq!(mine["counts"]["assigned_to"]["bob"], 1, "{mine}");
    assert_eq!(get(&base, "/api/worklist?assigned_to=&limit=1000", &ann).json()["total"].as_u64(), Some(total as u64 - 2));

    // The study's template: sections by its modality and body part; a draft started from it.
    let t = get(&base, &format!("/api/studies/{first}/template"), &ann).json();
    let names: Vec<&str> = t["sections"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Clinical details", "Technique", "Findings", "Conclusion"], "{t}");
    let r = call(&base, "POST", &format!("/api/studies/{first}/reports"), &ann, "{}");
    assert_eq!(r.status, 201, "{}", r.text());
    let report = r.json();
    let id = report["id"].as_u64().unwrap();
    assert_eq!((report["template"].clone(), report["sections"].clone()), (t["id"].clone(), t["sections"].clone()), "{report}");
    assert_eq!(call(&base, "POST", &format!("/api/studies/{second}/reports"), &ann, r#"{"template":"nope"}"#).status, 422);
    assert_eq!(call(&base, "POST", &format!("/api/studies/{second}/reports"), &ann, r#"{"txt":"typo"}"#).status, 400);
    let item = |uid: &str| items(&get(&base, "/api/worklist?limit=1000", &ann).json()).into_iter().find(|i| i["uid"] == uid);
    assert_eq!(item(&first).unwrap()["report"], "draft");
    assert_eq!(item(&first).unwrap()["claimed_by"], "ann");

    // Autosaves in sections, issued as preliminary (readable by others), then signed.
    let sections = serde_json::json!({"sections": [
        {"name": "Clinical details", "text": "Headache."},
        {"name": "Findings", "text": "No haemorrhage."},
        {"name": "Conclusion", "text": "Normal."},
    ]});
    let saved = call(&base, "PUT", &format!("/api/reports/{id}"), &ann, &sections.to_string()).json();
    assert_eq!(saved["text"], "Clinical details:\nHeadache.\n\nFindings:\nNo haemorrhage.\n\nConclusion:\nNormal.", "{saved}");
    assert_eq!(get(&base, &format!("/api/reports/{id}"), &bob).status, 404, "a draft is its author's");
    assert_eq!(call(&base, "POST", &format!("/api/reports/{id}/preliminary"), &bob, "").status, 403);
    assert_eq!(call(&base, "POST", &format!("/api/reports/{id}/preliminary"), &ann, "").status, 200);
    assert_eq!(get(&base, &format!("/api/reports/{id}"), &bob).json()["status"], "preliminary");
    assert_eq!(item(&first).unwrap()["report"], "preliminary");
    assert_eq!(call(&base, "POST", &format!("/api/reports/{id}/sign"), &ann, "").status, 200);
    let versions = get(&base, &format!("/api/reports/{id}/versions"), &bob).json();
    let states: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["status"].as_str().unwrap()).collect();
    assert_eq!(states, ["draft", "draft", "preliminary", "final"], "{versions}");
    assert_eq!(versions[1]["sections"], sections["sections"]);
    assert!(item(&first).is_none(), "a final report left its study on the worklist");
    assert_eq!(get(&base, "/api/worklist?limit=1000", &ann).json()["total"].as_u64(), Some(total as u64 - 1));

    // Found by accession number at the site that issued it (never by the number alone).
    let (acc, site) = (with_acc["accession_number"].as_str().unwrap(), with_acc["site"].as_str().unwrap());
    let found = get(&base, &format!("/api/reports?accession={acc}&issuer={site}"), &clinician).json();
    assert_eq!((found[0]["study"].as_str(), found[0]["reports"][0]["id"].as_u64()), (Some(first.as_str()), Some(id)), "{found}");
    assert_eq!(get(&base, &format!("/api/reports?accession={acc}"), &clinician).status, 400);
    assert_eq!(get(&base, &format!("/api/reports?accession={acc}&issuer=NOWHERE"), &clinician).status, 404);
    let elsewhere = ["RBD", "RD3", "R0D"].into_iter().find(|s| *s != site).unwrap();
    let there = get(&base, &format!("/api/reports?accession={acc}&issuer={elsewhere}"), &clinician).json();
    assert!(there.as_array().unwrap().iter().all(|f| f["study"] != first.as_str()), "{there}");

    // Turnaround for admins: exam end to final, per site, modality and radiologist.
    assert_eq!(get(&base, "/api/turnaround", &ann).status, 403);
    let tat = get(&base, "/api/turnaround", &admin).json();
    assert_eq!(tat["overall"]["reports"], 1, "{tat}");
    assert_eq!(tat["by_radiologist"]["ann"]["reports"], 1, "{tat}");
    let site = items(&all).iter().find(|i| i["uid"] == first.as_str()).unwrap()["site"].as_str().unwrap().to_owned();
    assert_eq!(tat["by_site"][&site]["reports"], 1, "{tat}");
    assert!(tat["overall"]["median_min"].as_f64().is_some_and(|m| (0.0..60.0).contains(&m)), "{tat}");
    assert_eq!(get(&base, "/api/turnaround?radiologist=bob", &admin).json()["overall"]["reports"], 0);
    assert_eq!(get(&base, "/api/turnaround?since=tomorrow", &admin).status, 400);

    // An admin takes one off (reported elsewhere).
    assert_eq!(call(&base, "POST", &format!("/api/worklist/{third}/dismiss"), &admin, r#"{"reason":""}"#).status, 422);
    assert_eq!(call(&base, "POST", &format!("/api/worklist/{third}/dismiss"), &admin, r#"{"reason":"reported at Poole"}"#).status, 200);
    assert!(item(&third).is_none());

    // A restart keeps the open items as they were.
    let before = get(&base, "/api/worklist?limit=1000", &ann).json();
    let (_, data) = server.stop();
    let server = Server::start_in(data, &["--stow-site", "RBD"]);
    let base = server.http();
    let after = get(&base, "/api/worklist?limit=1000", &ann).json();
    assert_eq!(uids(&after), uids(&before));
    assert_eq!(item_of(&after, &second)["assigned_to"], "bob");

    // A new examination over STOW-RS joins; a study reported or dismissed stays off when its images come again.
    let newer = tempfile::tempdir().unwrap();
    support::run(
        newer.path(),
        &["testdata", "--out", newer.path().join("in").to_str().unwrap(), "--seed", "7", "--patients", "1", "--max-slices", "1", "--ct-size", "32"],
    );
    let file = support::walk(&newer.path().join("in")).into_iter().next().unwrap();
    let r = stow(&base, &ann, &[&std::fs::read(&file).unwrap()]);
    assert_eq!(r.status, 200, "{}", r.text());
    let arrived = get(&base, "/api/worklist?limit=1000", &ann).json();
    assert_eq!(arrived["total"].as_u64(), after["total"].as_u64().map(|n| n + 1), "{arrived}");
    assert_eq!(arrived["counts"]["site"]["RBD"].as_u64(), after["counts"]["site"]["RBD"].as_u64().map(|n| n + 1));
}

/// A modality's C-STORE puts its study on the worklist; stores, queries
/// and retrieves over DICOM are in the audit trail (one record per study
/// and sender for its C-STOREs, not one per instance).
#[test]
fn dicom_arrivals_join_the_worklist_and_dicom_access_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let gen = tempfile::tempdir().unwrap();
    support::run(data.path(), &["testdata", "--out", gen.path().to_str().unwrap(), "--patients", "1", "--max-slices", "3", "--ct-size", "32"]);
    let rad = user_token(data.path(), "ann", "radiologist");
    let admin = user_token(data.path(), "root1", "admin");
    let server = Server::start_in(data, &["--peer", "CT01@127.0.0.1:0=RD3", "--peer", "READER@127.0.0.1:0"]);
    let base = server.http();
    assert_eq!(get(&base, "/api/worklist", &rad).json()["total"], 0);
    // One study's instances (a CT series of three), in one association from the modality.
    let files: Vec<std::path::PathBuf> = support::walk(&gen.path().join("RD3"));
    let study_of = |p: &std::path::Path| {
        let o = dicom_object::open_file(p).unwrap();
        o.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_owned()
    };
    let first = study_of(&files[0]);
    let one: Vec<&std::path::PathBuf> = files.iter().filter(|f| study_of(f) == first).collect();
    assert!(one.len() >= 2, "{one:?}");
    let (ok, out) = output(dcmtk("storescu").args(["-aet", "CT01", "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).args(&one));
    assert!(ok, "{out}");
    let wl = get(&base, "/api/worklist", &rad).json();
    assert_eq!(uids(&wl), std::slice::from_ref(&first), "{wl}");
    assert_eq!(items(&wl)[0]["site"], "RD3");

    let (ok, out) = output(
        dcmtk("findscu")
            .args(["-aet", "READER", "-aec", "RADHUB", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientID=*"])
            .args(["127.0.0.1", &server.port.to_string()]),
    );
    assert!(ok, "{out}");
    let got = tempfile::tempdir().unwrap();
    let (ok, out) = output(
        dcmtk("getscu")
            .args(["-aet", "READER", "-aec", "RADHUB", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", &format!("StudyInstanceUID={first}"), "-od"])
            .arg(got.path())
            .args(["127.0.0.1", &server.port.to_string()]),
    );
    assert!(ok, "{out}");
    // A retrieve of the study is no new examination: still one item.
    assert_eq!(get(&base, "/api/worklist", &rad).json()["total"], 1);

    let trail = get(&base, &format!("/api/admin/audit?limit=1000&study={first}"), &admin).json();
    let of = |user: &str, event: &str| trail.as_array().unwrap().iter().filter(|e| e["user"] == user && e["event"] == event).cloned().collect::<Vec<_>>();
    let stores = of("CT01", "DICOM Instances Transferred");
    assert_eq!(stores.len(), 1, "{} instances stored: one record for the study: {trail}", one.len());
    assert_eq!((stores[0]["role"].as_str(), stores[0]["action"].as_str(), stores[0]["outcome"].as_u64()), (Some("DICOM AE"), Some("C"), Some(0)), "{trail}");
    assert!(stores[0]["patient"].as_str().is_some_and(|p| p.starts_with("RD3/")), "{trail}");
    let gets = of("READER", "DICOM Instances Transferred");
    assert!(gets.len() == 1 && gets[0]["action"] == "R" && gets[0]["request"].as_str().unwrap().contains(&format!("({} instances)", one.len())), "{trail}");
    let all = get(&base, "/api/admin/audit?limit=1000&user=READER", &admin).json();
    let finds: Vec<&Value> = all.as_array().unwrap().iter().filter(|e| e["event"] == "Query").collect();
    assert!(
        finds.len() == 1 && finds[0]["request"].as_str().unwrap().contains("C-FIND STUDY") && finds[0]["request"].as_str().unwrap().contains("(1 matches)"),
        "{all}"
    );
}

fn item_of(v: &Value, uid: &str) -> Value {
    items(v).into_iter().find(|i| i["uid"] == uid).unwrap_or_else(|| panic!("{uid} not in {v}"))
}
