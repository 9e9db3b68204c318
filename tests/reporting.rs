//! Signed reports going back to the owning trust, against real peers: an
//! Orthanc as the site's PACS (the SR arrives, passes dciodvfy, is read by
//! pydicom) and python-hl7's MLLP server as its RIS (the ORU^R01 arrives
//! and is acknowledged). Addenda follow the final; a final is never
//! edited; an outbox entry outlives a kill -9 and is delivered after.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{call, free_port, get, output, radhub, user_token};

/// python-hl7's MLLP server, appending each message it acknowledges to `out`.
struct Ris {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Ris {
    fn start(port: u16, out: &Path) -> Ris {
        use std::io::{BufRead, BufReader};
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/hl7_listener.py");
        let mut child = Command::new("python3").args([script, &port.to_string(), out.to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "the HL7 listener did not start");
        Ris { child, port, out: out.to_owned() }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Ris {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, sites: &Path) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let http_port = free_port();
    let mut child = radhub()
        .env("RADHUB_LOG", "warn")
        .arg("--data")
        .arg(data)
        .arg("--sites")
        .arg(sites)
        .args(["serve", "--dicom-bind", &format!("127.0.0.1:{}", free_port()), "--http-bind", &format!("127.0.0.1:{http_port}"), "--sync-interval", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("DICOM listening"), "radhub serve did not start: {line:?}");
    (child, format!("http://127.0.0.1:{http_port}"))
}

/// Polls a report until every delivery is sent (or `within` passes).
fn delivered(base: &str, id: u64, token: &str, within: Duration) -> (Value, Duration) {
    let t = Instant::now();
    loop {
        let r = get(base, &format!("/api/reports/{id}"), token).json();
        let all = r["deliveries"].as_array().unwrap();
        if !all.is_empty() && all.iter().all(|d| d["state"] == "sent") {
            return (r, t.elapsed());
        }
        assert!(t.elapsed() < within, "report {id} not delivered in {within:?}: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The SR Orthanc holds under `sop`, as a file.
fn sr_at(pacs: &support::PeerProc, sop: &str, dir: &Path) -> PathBuf {
    let (status, found) = pacs.rest("POST", "/tools/find", Some(&format!(r#"{{"Level":"Instance","Query":{{"SOPInstanceUID":"{sop}"}}}}"#)));
    assert_eq!(status, 200);
    let id = found[0].as_str().unwrap_or_else(|| panic!("the SR {sop} is not at the site's PACS: {found}"));
    let f = dir.join(format!("{sop}.dcm"));
    let url = format!("http://127.0.0.1:{}/instances/{id}/file", pacs.http);
    let (ok, out) = output(Command::new("python3").args([
        "-c",
        "import sys,urllib.request; open(sys.argv[2],'wb').write(urllib.request.urlopen(sys.argv[1]).read())",
        &url,
        f.to_str().unwrap(),
    ]));
    assert!(ok, "{out}");
    f
}

#[test]
fn a_signed_report_reaches_the_owning_sites_pacs_and_ris() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    std::fs::create_dir_all(&data).unwrap();
    support::import_testdata(&data, &dir.path().join("gen"), &["--patients", "3", "--max-slices", "2", "--ct-size", "32"]);
    let rad = user_token(&data, "rad1", "radiologist");
    let clin = user_token(&data, "clin1", "clinician");
    let pacs = support::orthanc("PACS_RBD", &[], serde_json::json!({}));
    let ris = Ris::start(free_port(), &dir.path().join("ris.jsonl"));
    let sites = dir.path().join("sites.toml");
    let write_sites = |ris_port: u16| {
        std::fs::write(
            &sites,
            format!(
                "[[site]]\ncode = \"RBD\"\nname = \"Dorset County Hospital\"\nissuer = \"RBD\"\nae_title = \"PACS_RBD\"\nhost = \"127.0.0.1\"\nport = {}\nris = \"127.0.0.1:{ris_port}\"\n\n\
                 [[site]]\ncode = \"RD3\"\nname = \"Poole Hospital\"\nissuer = \"RD3\"\n\n[[site]]\ncode = \"R0D\"\nname = \"Royal Bournemouth\"\nissuer = \"R0D\"\n",
                pacs.port
            ),
        )
        .unwrap()
    };
    write_sites(ris.port);
    let (mut hub, base) = serve(&data, &sites);
    let studies: Vec<Value> = get(&base, "/api/studies?limit=100", &clin).json().as_array().unwrap().clone();
    let rbd: Vec<&Value> = studies.iter().filter(|s| s["site"] == "RBD").collect();
    assert!(rbd.len() >= 2, "{studies:?}");
    let (study, patient_id) = (rbd[0]["uid"].as_str().unwrap().to_owned(), rbd[0]["patient"]["patient_id"].as_str().unwrap().to_owned());

    // Drafted in sections, signed: the SR and the ORU go out.
    let text = "Clinical details: fall, ?fracture.\nFindings: No fracture. Soft tissues unremarkable | normal.\nConclusion: Normal study.";
    let r = call(&base, "POST", &format!("/api/studies/{study}/reports"), &rad, &serde_json::json!({ "text": text }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    let signed = call(&base, "POST", &format!("/api/reports/{id}/sign"), &rad, "");
    assert_eq!(signed.status, 200, "{}", signed.text());
    let kinds: Vec<String> = signed.json()["deliveries"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["sr", "oru"]);
    let (report, took) = delivered(&base, id, &rad, Duration::from_secs(20));
    eprintln!("SR and ORU delivered {took:?} after signing");

    // A final is never edited; a second report on the study is refused.
    assert_eq!(call(&base, "PUT", &format!("/api/reports/{id}"), &rad, r#"{"text":"changed"}"#).status, 409);
    assert_eq!(call(&base, "POST", &format!("/api/studies/{study}/reports"), &rad, r#"{"text":"again"}"#).status, 409);

    // The SR at the site's PACS: dciodvfy finds no error; pydicom reads it, under the site's own identity.
    let sop = report["deliveries"][0]["sop_instance_uid"].as_str().unwrap().to_owned();
    let sr = sr_at(&pacs, &sop, dir.path());
    let (_, verdict) = output(Command::new("dciodvfy").arg(&sr));
    let errors: Vec<&str> = verdict.lines().filter(|l| l.starts_with("Error")).collect();
    assert!(errors.is_empty(), "dciodvfy: {verdict}");
    eprintln!("dciodvfy: no errors, {} warnings", verdict.lines().filter(|l| l.starts_with("Warning")).count());
    let read = r#"
import json, sys, pydicom
d = pydicom.dcmread(sys.argv[1])
def texts(items):
    for i in items:
        if i.ValueType == "TEXT":
            yield i.TextValue
        yield from texts(getattr(i, "ContentSequence", []))
print(json.dumps({"class": d.SOPClassUID, "study": d.StudyInstanceUID, "pid": d.PatientID, "issuer": d.IssuerOfPatientID,
                  "flag": d.VerificationFlag, "observer": str(d.VerifyingObserverSequence[0].VerifyingObserverName),
                  "template": d.ContentTemplateSequence[0].TemplateIdentifier, "texts": list(texts(d.ContentSequence)),
                  "evidence": len(d.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence)}))
"#;
    let (ok, out) = output(Command::new("python3").args(["-c", read, sr.to_str().unwrap()]));
    assert!(ok, "pydicom: {out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["class"], "1.2.840.10008.5.1.4.1.1.88.11");
    assert_eq!((v["study"].as_str(), v["pid"].as_str(), v["issuer"].as_str()), (Some(study.as_str()), Some(patient_id.as_str()), Some("RBD")));
    assert_eq!((v["flag"].as_str(), v["observer"].as_str(), v["template"].as_str()), (Some("VERIFIED"), Some("rad1"), Some("2000")));
    assert_eq!(v["texts"], serde_json::json!(["fall, ?fracture.", "No fracture. Soft tissues unremarkable | normal.", "Normal study."]));
    assert!(v["evidence"].as_u64().unwrap() >= 1, "{v}");
    // Stored here too, in the study.
    let held = get(&base, &format!("/api/studies/{study}"), &clin).json();
    assert!(held["modalities"].as_array().unwrap().iter().any(|m| m == "SR"), "{held}");

    // The ORU at the RIS, acknowledged: the site's identity, the text, delimiters escaped and read back whole.
    let msgs = ris.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["type"], "ORU^R01^ORU_R01");
    assert!(m["pid3"].as_str().unwrap().starts_with(&format!("{patient_id}^^^RBD^MR")), "{m}");
    assert_eq!(m["obr25"], "F");
    assert!(m["raw"].as_str().unwrap().contains("Soft tissues unremarkable \\F\\ normal."), "{m}");
    assert!(m["obx"].as_array().unwrap().iter().any(|x| x == "Conclusion: Normal study."), "{m}");

    // An addendum: drafted on the final, signed, delivered as a correction.
    let a = call(&base, "POST", &format!("/api/reports/{id}/addenda"), &rad, r#"{"text":"Addendum: a subtle fracture of the fifth metacarpal on review."}"#);
    assert_eq!(a.status, 201, "{}", a.text());
    let aid = a.json()["id"].as_u64().unwrap();
    assert_eq!(a.json()["addendum_of"], id);
    assert_eq!(call(&base, "POST", &format!("/api/reports/{aid}/sign"), &rad, "").status, 200);
    let (added, _) = delivered(&base, aid, &rad, Duration::from_secs(20));
    sr_at(&pacs, added["deliveries"][0]["sop_instance_uid"].as_str().unwrap(), dir.path());
    let msgs = ris.messages();
    assert_eq!((msgs.len(), msgs[1]["obr25"].as_str()), (2, Some("C")), "{msgs:?}");

    // The RIS down when a report is signed: the entry waits, outlives a
    // kill -9 of radhub, and is delivered once both are back.
    drop(ris);
    let other = rbd[1]["uid"].as_str().unwrap().to_owned();
    let r = call(&base, "POST", &format!("/api/studies/{other}/reports"), &rad, r#"{"text":"Findings: normal."}"#);
    let oid = r.json()["id"].as_u64().unwrap();
    assert_eq!(call(&base, "POST", &format!("/api/reports/{oid}/sign"), &rad, "").status, 200);
    let t = Instant::now();
    let failing = loop {
        let r = get(&base, &format!("/api/reports/{oid}"), &rad).json();
        let oru = r["deliveries"].as_array().unwrap().iter().find(|d| d["kind"] == "oru").cloned().unwrap();
        if oru["attempts"].as_u64() >= Some(1) {
            break oru;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(failing["state"], "pending", "{failing}");
    assert!(failing["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{failing}");
    let _ = Command::new("kill").args(["-9", &hub.id().to_string()]).status();
    let _ = hub.wait();
    let ris = Ris::start(free_port(), &dir.path().join("ris2.jsonl"));
    write_sites(ris.port);
    let (mut hub, base) = serve(&data, &sites);
    // The retry waits out its backoff (5 s after the first failure).
    delivered(&base, oid, &rad, Duration::from_secs(30));
    let msgs = ris.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0]["obx"].as_array().unwrap().iter().any(|x| x == "Findings: normal."), "{msgs:?}");
    let _ = hub.kill();
    let _ = hub.wait();
}
