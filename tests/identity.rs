//! Patient identity across the trusts, end to end: a Patient ID is unique
//! only within its issuer, the site of data is configuration, never the
//! data (data from elsewhere waits in quarantine for an admin), and NHS
//! numbers link records only when checked.

mod support;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use support::{dcmtk, get, output, request, user_token, Server};

/// A person's instance: CT_small with its patient, UIDs and NHS number set.
struct Person<'a> {
    pid: &'a str,
    issuer: Option<&'a str>,
    name: &'a str,
    birth: &'a str,
    sex: &'a str,
    nhs: Option<&'a str>,
    /// Distinguishes the UIDs of each file made.
    n: u32,
}

fn make(dir: &Path, p: &Person<'_>) -> (PathBuf, String, String) {
    let mut obj = dicom_object::open_file(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    let study = format!("1.2.826.0.1.3680043.8.498.7.{}", p.n);
    let sop = format!("{study}.1.1");
    let put = |obj: &mut dicom_object::DefaultDicomObject, t: Tag, vr: VR, v: &str| obj.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    put(&mut obj, Tag(0x0010, 0x0020), VR::LO, p.pid);
    put(&mut obj, Tag(0x0010, 0x0010), VR::PN, p.name);
    put(&mut obj, Tag(0x0010, 0x0030), VR::DA, p.birth);
    put(&mut obj, Tag(0x0010, 0x0040), VR::CS, p.sex);
    put(&mut obj, Tag(0x0020, 0x000D), VR::UI, &study);
    put(&mut obj, Tag(0x0020, 0x000E), VR::UI, &format!("{study}.1"));
    put(&mut obj, Tag(0x0008, 0x0018), VR::UI, &sop);
    put(&mut obj, Tag(0x0008, 0x0050), VR::SH, &format!("ACC{}", p.n));
    put(&mut obj, Tag(0x0008, 0x0020), VR::DA, &format!("2026{:02}{:02}", 1 + p.n % 12, 1 + p.n % 28));
    match p.issuer {
        Some(i) => {
            put(&mut obj, Tag(0x0010, 0x0021), VR::LO, i);
        }
        None => {
            obj.remove_element(Tag(0x0010, 0x0021));
        }
    }
    if let Some(nhs) = p.nhs {
        let mut item = dicom_object::InMemDicomObject::new_empty();
        item.put(DataElement::new(Tag(0x0010, 0x0020), VR::LO, PrimitiveValue::from(nhs)));
        item.put(DataElement::new(Tag(0x0010, 0x0021), VR::LO, PrimitiveValue::from("NHS")));
        obj.put(DataElement::new(Tag(0x0010, 0x1002), VR::SQ, dicom_core::value::DataSetSequence::from(vec![item])));
    }
    obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.clone());
    let path = dir.join(format!("{}.dcm", p.n));
    obj.write_to_file(&path).unwrap();
    (path, study, sop)
}

fn storescu(server: &Server, ae: &str, files: &[&Path]) {
    let (ok, out) = output(dcmtk("storescu").args(["-aet", ae, "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).args(files));
    assert!(ok, "storescu as {ae}: {out}");
}

/// findscu's answers: the (Patient ID, Issuer of Patient ID, Patient Name) of each.
fn findscu(server: &Server, ae: &str, level: &str, keys: &[&str]) -> Vec<(String, String, String)> {
    let mut c = dcmtk("findscu");
    c.args(["-v", "-aet", ae, "-aec", "RADHUB", "-P", "-k", &format!("QueryRetrieveLevel={level}"), "-k", "PatientName", "-k", "PatientID"]);
    for k in keys {
        c.args(["-k", k]);
    }
    let (ok, out) = output(c.args(["127.0.0.1", &server.port.to_string()]));
    assert!(ok, "findscu: {out}");
    let value = |block: &str, tag: &str| {
        block.lines().find(|l| l.contains(tag)).and_then(|l| Some(l.split('[').nth(1)?.split(']').next()?.trim().to_owned())).unwrap_or_default()
    };
    out.split("Find Response:")
        .skip(1)
        .filter(|b| b.contains("Pending"))
        .map(|b| (value(b, "(0010,0020)"), value(b, "(0010,0021)"), value(b, "(0010,0010)")))
        .collect()
}

/// getscu at PATIENT level (Patient Root): the files received, and the tool's output.
fn getscu(server: &Server, ae: &str, keys: &[&str]) -> (Vec<PathBuf>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = dcmtk("getscu");
    c.args(["-v", "-aet", ae, "-aec", "RADHUB", "-P", "-k", "QueryRetrieveLevel=PATIENT", "-od"]).arg(dir.path());
    for k in keys {
        c.args(["-k", k]);
    }
    let (_, out) = output(c.args(["127.0.0.1", &server.port.to_string()]));
    let files = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    std::mem::forget(dir);
    (files, out)
}

/// A folder for one site's files, as `import --site-folders` reads them.
fn site_folder(root: &Path, site: &str) -> PathBuf {
    let d = root.join(site);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sop_of(path: &Path) -> String {
    dicom_object::open_file(path).unwrap().element(Tag(0x0008, 0x0018)).unwrap().to_str().unwrap().trim_end_matches('\0').to_owned()
}

#[test]
fn one_patient_id_at_two_trusts_stays_two_patients() {
    let files = tempfile::tempdir().unwrap();
    let (a, _, sop_a) = make(files.path(), &Person { pid: "123456", issuer: None, name: "ALPHA^ANNE", birth: "19500101", sex: "F", nhs: None, n: 1 });
    let (b, _, sop_b) = make(files.path(), &Person { pid: "123456", issuer: None, name: "BRAVO^BILL", birth: "19800101", sex: "M", nhs: None, n: 2 });
    let server = Server::start(&["--peer", "DCH_PACS@127.0.0.1:0=RBD", "--peer", "POOLE_PACS@127.0.0.1:0=RD3", "--peer", "READER@127.0.0.1:0"]);
    storescu(&server, "DCH_PACS", &[&a]);
    storescu(&server, "POOLE_PACS", &[&b]);

    // A bare Patient ID from a site's AE means that site's patient; the
    // answer says which issuer.
    let dch = findscu(&server, "DCH_PACS", "PATIENT", &["PatientID=123456"]);
    assert_eq!(dch, vec![("123456".into(), "RBD".into(), "ALPHA^ANNE".into())], "Dorset County asked for its 123456");
    let poole = findscu(&server, "POOLE_PACS", "STUDY", &["PatientID=123456"]);
    assert_eq!(poole.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), vec!["BRAVO^BILL"]);
    // A reader with no site sees both, each with its issuer.
    let mut both = findscu(&server, "READER", "PATIENT", &["PatientID=123456"]);
    both.sort();
    assert_eq!(both, vec![("123456".into(), "RBD".into(), "ALPHA^ANNE".into()), ("123456".into(), "RD3".into(), "BRAVO^BILL".into())]);

    // A PATIENT-level retrieve takes one trust's patient, never both.
    let (got, out) = getscu(&server, "DCH_PACS", &["PatientID=123456"]);
    assert_eq!(got.iter().map(|p| sop_of(p)).collect::<Vec<_>>(), vec![sop_a.clone()], "{out}");
    let (got, out) = getscu(&server, "READER", &["PatientID=123456", "IssuerOfPatientID=RD3"]);
    assert_eq!(got.iter().map(|p| sop_of(p)).collect::<Vec<_>>(), vec![sop_b], "{out}");
    // Without an issuer, from a reader with no site, the ID names no one in particular.
    let (got, out) = getscu(&server, "READER", &["PatientID=123456"]);
    assert!(got.is_empty(), "an ambiguous Patient ID retrieved {} files", got.len());
    // DCMTK names A900 as it would for C-STORE.
    assert!(out.contains("DataSetDoesNotMatchSOPClass"), "{out}");
}

#[test]
fn data_from_a_sender_with_no_site_is_quarantined_until_an_admin_files_it() {
    let data = tempfile::tempdir().unwrap();
    let admin = user_token(data.path(), "admin1", "admin");
    let reader = user_token(data.path(), "radiologist1", "radiologist");
    let files = tempfile::tempdir().unwrap();
    // The data names Dorset County as its issuer, but the sender is nobody's.
    let (stranger, study_s, _) =
        make(files.path(), &Person { pid: "D0001", issuer: Some("RBD"), name: "CHARLIE^C", birth: "19600101", sex: "F", nhs: None, n: 3 });
    // Dorset County's PACS sending a Poole Patient ID.
    let (foreign, study_f, _) =
        make(files.path(), &Person { pid: "P0001", issuer: Some("RD3"), name: "DELTA^D", birth: "19700101", sex: "M", nhs: None, n: 4 });
    let (stowed, study_w, _) = make(files.path(), &Person { pid: "D0002", issuer: Some("RBD"), name: "ECHO^E", birth: "19650101", sex: "M", nhs: None, n: 5 });
    let server = Server::start_in(data, &["--accept-any", "--peer", "DCH_PACS@127.0.0.1:0=RBD"]);
    storescu(&server, "STRANGER", &[&stranger]);
    storescu(&server, "DCH_PACS", &[&foreign]);
    assert_eq!(support::stow(&server.http(), &admin, &[&std::fs::read(&stowed).unwrap()]).status, 200);
    let base = server.http();
    for (what, study, claimed) in
        [("an unknown AE", &study_s, "RBD"), ("another site's issuer", &study_f, "RD3"), ("STOW-RS without --stow-site", &study_w, "RBD")]
    {
        let s = get(&base, &format!("/api/studies/{study}"), &admin).json();
        assert_eq!(s["site"], "QUARANTINE", "{what}: {s}");
        assert_eq!(s["patient"]["issuer"], format!("QUARANTINE/{claimed}"), "{what}: kept apart from the trust's patients");
        // Everyone else does not see it until an admin files it.
        assert_eq!(get(&base, &format!("/api/studies/{study}"), &reader).status, 404, "{what}");
        assert_eq!(get(&base, &format!("/dicom-web/studies/{study}/metadata"), &reader).status, 404, "{what}");
        let q = get(&base, &format!("/dicom-web/studies?StudyInstanceUID={study}"), &reader).json();
        assert!(q.as_array().unwrap().is_empty(), "{what}: found by QIDO: {q}");
    }
    assert!(findscu(&server, "STRANGER", "STUDY", &["PatientID=D0001"]).is_empty(), "a quarantined study answered C-FIND");
    let listed = get(&base, "/api/admin/quarantine", &admin).json();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let worklist = get(&base, "/api/worklist?limit=1000", &reader).json();
    assert!(worklist["items"].as_array().unwrap().is_empty(), "quarantined studies on the worklist: {worklist}");

    // An admin files one under the site that issued its IDs...
    let auth = format!("Bearer {admin}");
    let file = |study: &str, site: &str| {
        request(
            &base,
            "POST",
            &format!("/api/admin/quarantine/{study}"),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            format!(r#"{{"site":"{site}"}}"#).as_bytes(),
        )
    };
    let r = file(&study_s, "RBD");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = get(&base, &format!("/api/studies/{study_s}"), &reader).json();
    assert_eq!((s["site"].as_str(), s["patient"]["issuer"].as_str()), (Some("RBD"), Some("RBD")), "{s}");
    assert_eq!(findscu(&server, "DCH_PACS", "STUDY", &["PatientID=D0001"]).len(), 1, "filed, it answers C-FIND");
    assert_eq!(get(&base, "/api/worklist?limit=1000", &reader).json()["items"].as_array().unwrap().len(), 1);
    // ...and cannot file Poole's Patient ID under Dorset County.
    let r = file(&study_f, "RBD");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(file(&study_f, "RD3").status, 200);
    let r = file(&study_f, "RD3");
    assert_eq!(r.status, 409, "filed twice: {}", r.text());
}

#[test]
fn nhs_numbers_link_the_trusts_records_only_when_checked() {
    let data = tempfile::tempdir().unwrap();
    let admin = user_token(data.path(), "admin1", "admin");
    let files = tempfile::tempdir().unwrap();
    let dir = |s: &str| site_folder(files.path(), s);
    let (rbd, rd3, r0d) = (dir("RBD"), dir("RD3"), dir("R0D"));
    // One person at Dorset County and Poole; a different person at Bournemouth under the same NHS number.
    make(&rbd, &Person { pid: "D1", issuer: Some("RBD"), name: "FOXTROT^FAY", birth: "19500101", sex: "F", nhs: Some("9434765919"), n: 11 });
    make(&rd3, &Person { pid: "P1", issuer: Some("RD3"), name: "FOXTROT^FAYE", birth: "19500101", sex: "F", nhs: Some("9434765919"), n: 12 });
    make(&r0d, &Person { pid: "RBH1", issuer: Some("R0D"), name: "GOLF^GARY", birth: "19720505", sex: "M", nhs: Some("9434765919"), n: 13 });
    // Two strangers under a placeholder that passes Modulus 11.
    make(&rbd, &Person { pid: "D2", issuer: Some("RBD"), name: "HOTEL^H", birth: "19400101", sex: "M", nhs: Some("1111111111"), n: 14 });
    make(&rd3, &Person { pid: "P2", issuer: Some("RD3"), name: "INDIA^I", birth: "19900101", sex: "F", nhs: Some("1111111111"), n: 15 });
    support::run(data.path(), &["import", "--site-folders", files.path().to_str().unwrap()]);
    let server = Server::start_in(data, &[]);
    let base = server.http();

    let linked = get(&base, "/api/patients/9434765919", &admin).json();
    let ids: Vec<&str> = linked["records"].as_array().unwrap().iter().map(|r| r["patient_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["D1", "P1"], "a man born in 1972 shown as the woman born in 1950: {linked}");
    assert_eq!(get(&base, "/api/patients/1111111111", &admin).status, 400, "a placeholder NHS number links strangers");
    let conflicts = get(&base, "/api/admin/links", &admin).json();
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["patient"]["patient_id"], "RBH1");
    // The admin dismisses it; the log says who did what.
    let auth = format!("Bearer {admin}");
    let r = request(
        &base,
        "POST",
        "/api/admin/links",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        br#"{"issuer":"R0D","patient_id":"RBH1","decision":"dismiss","why":"PAS: two people"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(get(&base, "/api/admin/links", &admin).json().as_array().unwrap().is_empty());
    let log = get(&base, "/api/admin/links/log", &admin).json();
    let actions: Vec<(&str, &str)> =
        log.as_array().unwrap().iter().map(|e| (e["patient"]["patient_id"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert!(actions.contains(&("D1", "linked")) && actions.contains(&("P1", "linked")), "{log}");
    assert!(actions.contains(&("RBH1", "conflict")) && actions.contains(&("RBH1", "dismissed")), "{log}");
    assert!(log.as_array().unwrap().iter().any(|e| e["by"] == "admin1" && e["detail"].as_str().is_some_and(|d| d.ends_with("PAS: two people"))), "{log}");
}

/// The studies C-FIND (as Poole's PACS) and QIDO-RS answer for a Poole
/// Patient ID, and the patient record's study count and name.
fn answers(server: &Server, token: &str, pid: &str) -> String {
    let cfind = findscu(server, "POOLE_PACS", "STUDY", &[&format!("PatientID={pid}")]);
    let qido = get(&server.http(), &format!("/dicom-web/studies?PatientID={pid}&includefield=00100010"), token).json();
    let qido = qido.as_array().unwrap();
    let names: std::collections::BTreeSet<&str> = qido.iter().filter_map(|s| s["00100010"]["Value"][0]["Alphabetic"].as_str()).collect();
    let record = get(&server.http(), &format!("/api/patients?patient_id={pid}&issuer=RD3"), token).json();
    let record = match record.as_array().unwrap().first() {
        Some(r) => {
            let r = r["records"].as_array().and_then(|rs| rs.iter().find(|x| x["patient_id"] == pid).cloned()).unwrap_or_else(|| r.clone());
            format!("record {} studies, {}", r["studies"], r["name"].as_str().unwrap_or(""))
        }
        None => "no record".into(),
    };
    format!("C-FIND {} studies, QIDO {} ({}), {record}", cfind.len(), qido.len(), names.into_iter().collect::<Vec<_>>().join(","))
}

/// An instance by WADO-RS (multipart/related; type="application/dicom"): its Part 10 bytes.
fn wado_instance(server: &Server, token: &str, study: &str, sop: &str) -> Vec<u8> {
    let r = request(
        &server.http(),
        "GET",
        &format!("/dicom-web/studies/{study}/series/{study}.1/instances/{sop}"),
        &[("Authorization", &format!("Bearer {token}")), ("Accept", "multipart/related; type=\"application/dicom\"")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let at = r.body.windows(4).position(|w| w == b"DICM").expect("a Part 10 part") - 128;
    let end = r.body.windows(4).rposition(|w| w == b"\r\n--").unwrap_or(r.body.len());
    r.body[at..end].to_vec()
}

/// The identity one instance carries as C-GET, WADO-RS and WADO-RS
/// metadata serve it: "ID issuer name, other IDs ...".
fn served_identity(server: &Server, token: &str, study: &str, sop: &str) -> Vec<String> {
    let of = |obj: &dicom_object::InMemDicomObject| {
        let v = |t: Tag| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned()).unwrap_or_default();
        let others: Vec<String> = obj
            .element(Tag(0x0010, 0x1002))
            .ok()
            .and_then(|e| e.items())
            .unwrap_or_default()
            .iter()
            .map(|i| i.element(Tag(0x0010, 0x0020)).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_owned()).unwrap_or_default())
            .collect();
        format!("{} {} {}, other IDs {}", v(Tag(0x0010, 0x0020)), v(Tag(0x0010, 0x0021)), v(Tag(0x0010, 0x0010)), others.join(","))
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = output(
        dcmtk("getscu")
            .args(["-S", "-aet", "POOLE_PACS", "-aec", "RADHUB", "-k", "QueryRetrieveLevel=STUDY", "-k", &format!("StudyInstanceUID={study}"), "-od"])
            .arg(dir.path())
            .args(["127.0.0.1", &server.port.to_string()]),
    );
    let got = support::walk(dir.path());
    assert_eq!(got.len(), 1, "getscu: {out}");
    let cget = of(&dicom_object::open_file(&got[0]).unwrap());
    let wado = of(&dicom_object::from_reader(&wado_instance(server, token, study, sop)[128..]).unwrap());
    let meta = get(&server.http(), &format!("/dicom-web/studies/{study}/metadata"), token).json();
    let m = &meta[0];
    let t = |k: &str| m[k]["Value"][0].as_str().unwrap_or("").to_owned();
    let others: Vec<String> =
        m["00101002"]["Value"].as_array().map(|a| a.iter().map(|i| i["00100020"]["Value"][0].as_str().unwrap_or("").to_owned()).collect()).unwrap_or_default();
    let meta =
        format!("{} {} {}, other IDs {}", t("00100020"), t("00100021"), m["00100010"]["Value"][0]["Alphabetic"].as_str().unwrap_or(""), others.join(","));
    vec![cget, wado, meta]
}

/// The patient IDs of the records linked by an NHS number.
fn linked_ids(server: &Server, token: &str, nhs: &str) -> Vec<String> {
    let v = get(&server.http(), &format!("/api/patients/{nhs}"), token).json();
    let mut ids: Vec<String> =
        v["records"].as_array().map(|r| r.iter().map(|x| x["patient_id"].as_str().unwrap_or("").to_owned()).collect()).unwrap_or_default();
    ids.sort();
    ids
}

fn adt(event: &str, control: &str, pid3: &str, name: &str, birth: &str, mrg: Option<&str>) -> String {
    let mut m = format!(
        "MSH|^~\\&|PAS|RD3|RADHUB|DORSET|20261203090000||ADT^{event}^ADT_A01|{control}|P|2.5.1\rEVN|{event}|20261203090000\rPID|1||{pid3}||{name}||{birth}|F"
    );
    if let Some(m1) = mrg {
        m.push_str(&format!("\rMRG|{m1}"));
    }
    m
}

#[test]
fn adt_from_a_sites_patient_administration_changes_what_every_interface_answers() {
    let data = tempfile::tempdir().unwrap();
    let admin = user_token(data.path(), "admin1", "admin");
    let rad = user_token(data.path(), "rad1", "radiologist");
    let files = tempfile::tempdir().unwrap();
    let dir = |s: &str| site_folder(files.path(), s);
    let (rbd, rd3) = (dir("RBD"), dir("RD3"));
    let nhs = "9434765919";
    // One woman: Dorset County's D1 and Poole's P9 linked by her NHS number;
    // Poole registered her twice, and P1 (no NHS number yet) is the record it keeps.
    make(&rbd, &Person { pid: "D1", issuer: Some("RBD"), name: "LIMA^LILY", birth: "19500101", sex: "F", nhs: Some(nhs), n: 31 });
    let (_, study9, sop9) = make(&rd3, &Person { pid: "P9", issuer: Some("RD3"), name: "LIMA^LILLY", birth: "19500101", sex: "F", nhs: Some(nhs), n: 32 });
    make(&rd3, &Person { pid: "P1", issuer: Some("RD3"), name: "LIMA^LILY", birth: "19500101", sex: "F", nhs: None, n: 33 });
    // Another Poole patient whose identifier is changed, then her name.
    let (_, study5, sop5) = make(&rd3, &Person { pid: "P5", issuer: Some("RD3"), name: "MIKE^MAY", birth: "19810101", sex: "F", nhs: None, n: 34 });
    support::run(data.path(), &["import", "--site-folders", files.path().to_str().unwrap()]);
    let hl7 = support::free_port();
    let server = Server::start_in(data, &["--peer", "POOLE_PACS@127.0.0.1:0=RD3", "--hl7-bind", &format!("127.0.0.1:{hl7}")]);
    let base = server.http();
    let send = |m: String| support::hl7_send(hl7, files.path(), &[m]).remove(0);
    let row = |case: &str, before: &str, ack: &[String], after: &str| println!("IDENTITY\t{case}\t{before}\t{}\t{after}", ack.join(" "));

    // Poole's RIS orders P9's study (ACC32) as urgent: on the worklist under P9.
    let orm = "MSH|^~\\&|RIS|RD3|RADHUB|DORSET|20261203085000||ORM^O01^ORM_O01|O1|P|2.5.1\rPID|1||P9^^^RD3^MR||LIMA^LILLY\rORC|NW|PL1|ACC32||SC||^^^^^S\rOBR|1|PL1|ACC32|XCHEST^Chest X-ray";
    assert_eq!(send(orm.to_owned())[0], "AA");
    let listed = |uid: &str| {
        let v = get(&base, "/api/worklist?limit=1000", &rad).json();
        let i = v["items"].as_array().and_then(|a| a.iter().find(|i| i["uid"] == uid).cloned()).unwrap_or_else(|| panic!("{uid} not listed: {v}"));
        format!(
            "{} {} ordered {} {}",
            i["patient"]["patient_id"].as_str().unwrap_or(""),
            i["patient"]["name"].as_str().unwrap_or(""),
            i["ordered"],
            i["priority"].as_str().unwrap_or("")
        )
    };
    assert_eq!(listed(&study9), "P9 LIMA^LILLY ordered true S");

    // A40: P9 merged into P1.
    let (b9, b1) = (answers(&server, &admin, "P9"), answers(&server, &admin, "P1"));
    assert!(b9.starts_with("C-FIND 1 studies, QIDO 1") && b1.starts_with("C-FIND 1 studies, QIDO 1"), "{b9} / {b1}");
    assert_eq!(linked_ids(&server, &admin, nhs), ["D1", "P9"]);
    let ack = send(adt("A40", "A1", "P1^^^RD3^MR", "LIMA^LILY", "19500101", Some("P9^^^RD3^MR")));
    assert_eq!(ack[0], "AA", "{ack:?}");
    let (a9, a1) = (answers(&server, &admin, "P9"), answers(&server, &admin, "P1"));
    assert_eq!(a9, "C-FIND 0 studies, QIDO 0 (), no record");
    assert_eq!(a1, "C-FIND 2 studies, QIDO 2 (LIMA^LILY), record 2 studies, LIMA^LILY", "the survivor holds both, under its name");
    // The survivor takes the duplicate's place in the cross-site link.
    assert_eq!(linked_ids(&server, &admin, nhs), ["D1", "P1"]);
    // The worklist shows the survivor, and the order placed under P9 is still the study's.
    assert_eq!(listed(&study9), "P1 LIMA^LILY ordered true S");
    let s9 = get(&base, &format!("/api/studies/{study9}"), &rad).json();
    assert_eq!((s9["order"]["priority"].as_str(), s9["order_conflict"].clone()), (Some("S"), serde_json::Value::Null), "{s9}");
    row(
        "A40 merge P9 into P1 (P9 linked to Dorset County's D1)",
        &format!("P9: {b9}; P1: {b1}; NHS {nhs}: D1+P9"),
        &ack,
        &format!("P9: {a9}; P1: {a1}; NHS {nhs}: D1+P1"),
    );
    // What is served carries the survivor's identity: C-GET, WADO-RS (instance and metadata).
    let served = served_identity(&server, &admin, &study9, &sop9);
    assert_eq!(served, ["P1 RD3 LIMA^LILY, other IDs 9434765919,P9"; 3], "served after the merge");
    row("A40: the merged study as served", "PatientID P9, LIMA^LILLY", &["C-GET, WADO-RS instance, WADO-RS metadata".into()], &served[0]);

    // A modality still naming P9: filed under P1, never a new P9.
    let (late, late_study, _) = make(files.path(), &Person { pid: "P9", issuer: None, name: "LIMA^LILLY", birth: "19500101", sex: "F", nhs: None, n: 35 });
    storescu(&server, "POOLE_PACS", &[&late]);
    let s = get(&base, &format!("/api/studies/{late_study}"), &admin).json();
    assert_eq!(s["patient"]["patient_id"], "P1", "{s}");
    let after_late = answers(&server, &admin, "P1");
    assert!(after_late.starts_with("C-FIND 3 studies, QIDO 3 (LIMA^LILY)"), "{after_late}");
    row("C-STORE naming the merged P9", &a1, &["C-STORE 0000".into()], &format!("P1: {after_late}"));

    // A47: P5 becomes P6; to an identifier that exists it is refused.
    let b5 = answers(&server, &admin, "P5");
    let ack = send(adt("A47", "A2", "P6^^^RD3^MR", "", "", Some("P5^^^RD3^MR")));
    assert_eq!(ack[0], "AA", "{ack:?}");
    let (a5, a6) = (answers(&server, &admin, "P5"), answers(&server, &admin, "P6"));
    assert_eq!(a5, "C-FIND 0 studies, QIDO 0 (), no record");
    assert_eq!(a6, "C-FIND 1 studies, QIDO 1 (MIKE^MAY), record 1 studies, MIKE^MAY");
    row("A47 change P5 to P6", &format!("P5: {b5}"), &ack, &format!("P5: {a5}; P6: {a6}"));
    let ack = send(adt("A47", "A3", "P1^^^RD3^MR", "", "", Some("P6^^^RD3^MR")));
    assert_eq!(ack[0], "AE", "{ack:?}");
    assert_eq!(answers(&server, &admin, "P6"), a6, "a refused change changed something");
    row("A47 change P6 to P1, which exists", &format!("P6: {a6}"), &ack, "unchanged");

    // A08: a new name and birth date everywhere at once.
    let ack = send(adt("A08", "A4", "P6^^^RD3^MR", "MIKE^MAYA^^^MS", "19810102", None));
    assert_eq!(ack[0], "AA", "{ack:?}");
    let u6 = answers(&server, &admin, "P6");
    assert_eq!(u6, "C-FIND 1 studies, QIDO 1 (MIKE^MAYA^^MS), record 1 studies, MIKE^MAYA^^MS");
    let cfind_name = findscu(&server, "POOLE_PACS", "PATIENT", &["PatientID=P6"]);
    assert_eq!(cfind_name, vec![("P6".into(), "RD3".into(), "MIKE^MAYA^^MS".into())]);
    row("A08 name and birth date of P6", &format!("P6: {a6}"), &ack, &format!("P6: {u6}"));
    let served = served_identity(&server, &admin, &study5, &sop5);
    assert_eq!(served, ["P6 RD3 MIKE^MAYA^^MS, other IDs ABCD1234,1234ABCD,P5"; 3], "served after A47 and A08");
    assert_eq!(
        dicom_object::from_reader(&wado_instance(&server, &admin, &study5, &sop5)[128..])
            .unwrap()
            .element(Tag(0x0010, 0x0030))
            .unwrap()
            .to_str()
            .unwrap()
            .trim(),
        "19810102"
    );
    row("A47 then A08: P6's study as served", "PatientID P5, MIKE^MAY, 19810101", &["C-GET, WADO-RS instance, WADO-RS metadata".into()], &served[0]);

    // Nothing held, or another authority's identifier only: nothing changes.
    let ack = send(adt("A08", "A5", "P404^^^RD3^MR", "NOBODY^NO", "19990101", None));
    assert_eq!((ack[0].as_str(), ack[2].as_str()), ("AA", "no images of this patient are held"), "{ack:?}");
    row("A08 for a patient with no images", "no record", &ack, "no record");
    let ack = send(adt("A08", "A6", "P6^^^RBD^MR", "WRONG^WRONG", "19990101", None));
    assert_eq!(ack[0], "AR", "{ack:?}");
    assert_eq!(answers(&server, &admin, "P6"), u6);
    row("A08 naming only another trust's identifier", &format!("P6: {u6}"), &ack, "unchanged");

    // Every change is in the identity log; an admin undoes the merge.
    let log = get(&base, "/api/admin/identity", &admin).json();
    let kinds: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["change"].as_object().unwrap().keys().next().unwrap().as_str()).collect();
    assert_eq!(kinds, ["merge", "change_id", "demographics"], "{log}");
    assert!(log[0]["by"].as_str().unwrap().contains("RD3") && log[0]["before"].as_array().unwrap().len() == 2, "{log}");
    let auth = format!("Bearer {admin}");
    let undo = |seq: u64| {
        request(
            &base,
            "POST",
            &format!("/api/admin/identity/{seq}/undo"),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            br#"{"why":"PAS: merged in error"}"#,
        )
    };
    let r = undo(1);
    assert_eq!(r.status, 200, "{}", r.text());
    let (u9, u1) = (answers(&server, &admin, "P9"), answers(&server, &admin, "P1"));
    assert_eq!(u9, "C-FIND 1 studies, QIDO 1 (LIMA^LILLY), record 1 studies, LIMA^LILLY", "the duplicate back as it was");
    assert!(u1.starts_with("C-FIND 2 studies, QIDO 2"), "{u1}");
    assert_eq!(linked_ids(&server, &admin, nhs), ["D1", "P9"], "P9 relinked by its own NHS number, P1 no longer");
    row("admin undo of the A40", &format!("P1: {after_late}"), &[format!("HTTP {}", r.status)], &format!("P9: {u9}; P1: {u1}"));
    assert_eq!(undo(1).status, 409, "undone twice");
}

/// A copy of `src` with another SOP Instance UID (another image of the same study).
fn another_image(src: &Path, sop: &str) -> PathBuf {
    let mut obj = dicom_object::open_file(src).unwrap();
    obj.put(DataElement::new(Tag(0x0008, 0x0018), VR::UI, PrimitiveValue::from(sop)));
    obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.to_owned());
    let path = src.with_file_name(format!("{sop}.dcm"));
    obj.write_to_file(&path).unwrap();
    path
}

#[test]
fn an_image_naming_another_patient_than_its_study_is_held_for_an_admin() {
    let data = tempfile::tempdir().unwrap();
    let admin = user_token(data.path(), "admin1", "admin");
    let files = tempfile::tempdir().unwrap();
    let (a, dir_b) = (site_folder(files.path(), "a"), site_folder(files.path(), "b"));
    let (first, study, _) = make(&a, &Person { pid: "P7", issuer: None, name: "NOVEMBER^NINA", birth: "19700101", sex: "F", nhs: None, n: 41 });
    // The modality's next two images of that study name P8: a wrong patient picked.
    let (wrong, _, _) = make(&dir_b, &Person { pid: "P8", issuer: None, name: "OSCAR^OLGA", birth: "19710101", sex: "F", nhs: None, n: 41 });
    let (wrong1, wrong2) = (another_image(&wrong, &format!("{study}.1.2")), another_image(&wrong, &format!("{study}.1.3")));
    let server = Server::start_in(data, &["--peer", "POOLE_PACS@127.0.0.1:0=RD3"]);
    storescu(&server, "POOLE_PACS", &[&first]);
    let (ok, out) = output(
        dcmtk("storescu").args(["-v", "--no-halt", "-aet", "POOLE_PACS", "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&wrong1).arg(&wrong2),
    );
    let _ = ok;
    assert_eq!(out.matches("Store Response (Error: CannotUnderstand)").count(), 2, "stored as if filed: {out}");
    let base = server.http();
    let qido = |q: &str| get(&base, q, &admin).json().as_array().map(|a| a.len()).unwrap_or(0);
    assert_eq!(qido(&format!("/dicom-web/studies/{study}/instances")), 1, "a held image filed under the study");
    assert!(findscu(&server, "POOLE_PACS", "PATIENT", &["PatientID=P8"]).is_empty(), "a held image made a patient P8");
    let held = get(&base, "/api/admin/held", &admin).json();
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!((held[0]["study_patient"]["patient_id"].as_str(), held[0]["sent_patient"]["patient_id"].as_str()), (Some("P7"), Some("P8")));

    // The admin files one under the study's patient and discards the other.
    let auth = format!("Bearer {admin}");
    let decide = |sop: &str, d: &str| {
        request(
            &base,
            "POST",
            &format!("/api/admin/held/{sop}"),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            format!(r#"{{"decision":"{d}","why":"checked with the radiographer"}}"#).as_bytes(),
        )
    };
    assert_eq!(decide(&format!("{study}.1.2"), "file").status, 200);
    assert_eq!(decide(&format!("{study}.1.3"), "discard").status, 200);
    assert_eq!(decide(&format!("{study}.1.3"), "discard").status, 404, "decided twice");
    assert_eq!(qido(&format!("/dicom-web/studies/{study}/instances")), 2);
    let rows = findscu(&server, "POOLE_PACS", "STUDY", &["PatientID=P7"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(get(&base, "/api/admin/held", &admin).json().as_array().unwrap().is_empty());
    let (stopped, data) = server.stop();
    assert!(stopped);
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    assert!(v["orphan_files"].as_array().unwrap().is_empty() && v["missing_files"].as_array().unwrap().is_empty() && v["held"] == 0, "{v}");
    assert_eq!(v["indexed"], 2, "{v}");
}
