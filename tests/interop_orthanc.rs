//! `radhub serve` against Orthanc standing in for a trust PACS: Orthanc
//! sends to radhub (C-STORE), queries it (C-FIND) and retrieves from it
//! (C-MOVE to itself), all driven through Orthanc's REST API
//! (tests/interop/orthanc.py).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use support::Server;

const REST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/orthanc.py");

/// An Orthanc of our own (own config, storage and ports in a temp folder),
/// killed when dropped, so that a failing test never leaves it running.
struct Orthanc {
    child: Child,
    http: u16,
    dir: tempfile::TempDir,
}

impl Orthanc {
    /// Orthanc as AE ORTHANC on `dicom_port`, knowing radhub at `radhub_port`.
    fn start(dicom_port: u16, radhub_port: u16) -> Orthanc {
        let dir = tempfile::tempdir().unwrap();
        let http = support::free_port();
        let config = json!({
            "Name": "radhub-interop",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            // Listed, so that Orthanc may call radhub and answer its C-STOREs.
            "DicomModalities": { "radhub": ["RADHUB", "127.0.0.1", radhub_port] },
            "Plugins": [],
            "SyncStorageArea": false,
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("/usr/sbin/Orthanc")
            .arg(&path)
            .current_dir(dir.path())
            // Without it Orthanc's DICOM side stalls ~40 ms per message.
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("/usr/sbin/Orthanc starts");
        let o = Orthanc { child, http, dir };
        let (ok, out) = support::output(Command::new("python3").args([REST, "wait", &o.url(""), "20"]));
        assert!(ok, "Orthanc not ready: {out}\n{}", o.log());
        o
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// One REST call: (HTTP status, body).
    fn call(&self, method: &str, path: &str, body: Option<String>) -> (u64, Value) {
        let mut c = Command::new("python3");
        c.args([REST, method, &self.url(path)]);
        c.args(body);
        let (ok, out) = support::output(&mut c);
        assert!(ok, "{method} {path}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {out}"));
        (v["status"].as_u64().unwrap(), v["body"].clone())
    }

    /// A REST call that must answer 200.
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body.map(|b| b.to_string()));
        assert_eq!(status, 200, "{method} {path}: {v}\n{}", self.log());
        v
    }

    /// Uploads a file (POST /instances); its Orthanc ID.
    fn upload(&self, file: &Path) -> String {
        let (status, v) = self.call("POST", "/instances", Some(format!("@{}", file.display())));
        assert_eq!(status, 200, "upload {}: {v}", file.display());
        assert_eq!(v["Status"], "Success", "upload {}: {v}", file.display());
        v["ID"].as_str().unwrap().to_owned()
    }

    /// Orthanc's own reading of an instance's main tags.
    fn tags(&self, id: &str) -> Value {
        self.ok("GET", &format!("/instances/{id}/simplified-tags"), None)
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// radhub and Orthanc, each knowing the other; a few pydicom files in
/// Orthanc. Returns their Orthanc IDs too.
fn setup() -> (Server, Orthanc, Vec<String>) {
    let orthanc_dicom = support::free_port();
    // Orthanc stands in for Dorset County's PACS.
    let server = Server::start(&["--peer", &format!("ORTHANC@127.0.0.1:{orthanc_dicom}=RBD")]);
    let orthanc = Orthanc::start(orthanc_dicom, server.port);
    let dir = support::pydicom_data().join("test_files");
    // Three patients, three transfer syntaxes (explicit LE, J2K, RLE).
    let ids = ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"].iter().map(|f| orthanc.upload(&dir.join(f))).collect();
    (server, orthanc, ids)
}

/// Orthanc sends `ids` to radhub (C-STORE SCU) and reports them all sent.
fn send_to_radhub(orthanc: &Orthanc, ids: &[String]) {
    let v = orthanc.ok("POST", "/modalities/radhub/store", Some(json!({ "Resources": ids, "Synchronous": true })));
    assert_eq!((v["InstancesCount"].as_u64(), v["FailedInstancesCount"].as_u64()), (Some(ids.len() as u64), Some(0)), "{v}");
}

fn field(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}")).to_owned()
}

#[test]
fn orthanc_stores_to_radhub() {
    let (server, orthanc, ids) = setup();
    send_to_radhub(&orthanc, &ids);
    let want: BTreeSet<(String, String)> =
        ids.iter().map(|id| orthanc.tags(id)).map(|t| (field(&t, "SOPInstanceUID"), field(&t, "StudyInstanceUID"))).collect();

    let (clean, data) = server.stop();
    assert!(clean, "radhub did not exit cleanly on SIGTERM");
    let stats = support::json(&support::run(data.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"].as_u64(), Some(ids.len() as u64), "{stats}");
    let held = support::json(&support::run(data.path(), &["ls", "instances", "--json"]));
    let got: BTreeSet<(String, String)> = held.as_array().unwrap().iter().map(|i| (field(i, "sop_uid"), field(i, "study_uid"))).collect();
    assert_eq!(got, want);
}

#[test]
fn orthanc_queries_radhub() {
    let (_server, orthanc, ids) = setup();
    send_to_radhub(&orthanc, &ids);
    let want: BTreeSet<(String, String)> = ids.iter().map(|id| orthanc.tags(id)).map(|t| (field(&t, "PatientID"), field(&t, "StudyInstanceUID"))).collect();

    let q = orthanc.ok("POST", "/modalities/radhub/query", Some(json!({ "Level": "Study", "Query": { "PatientID": "*" } })));
    let answers = orthanc.ok("GET", &format!("/queries/{}/answers?expand&simplify", field(&q, "ID")), None);
    let answers = answers.as_array().unwrap_or_else(|| panic!("answers: {answers}"));
    let got: BTreeSet<(String, String)> = answers.iter().map(|a| (field(a, "PatientID"), field(a, "StudyInstanceUID"))).collect();
    assert_eq!(answers.len(), want.len(), "one answer per study: {answers:?}");
    assert_eq!(got, want);
    assert!(answers.iter().all(|a| a["QueryRetrieveLevel"] == "STUDY"), "{answers:?}");
}

#[test]
fn orthanc_retrieves_from_radhub_by_c_move() {
    let (_server, orthanc, ids) = setup();
    send_to_radhub(&orthanc, &ids);
    let id = &ids[0];
    let before = orthanc.tags(id);
    orthanc.ok("DELETE", &format!("/instances/{id}"), None);
    assert_eq!(orthanc.call("GET", &format!("/instances/{id}"), None).0, 404, "the instance should be gone from Orthanc");

    // C-MOVE from radhub with Orthanc itself as the destination.
    let study = field(&before, "StudyInstanceUID");
    orthanc.ok(
        "POST",
        "/modalities/radhub/move",
        Some(json!({ "Level": "Study", "Resources": [{ "StudyInstanceUID": study }], "TargetAet": "ORTHANC", "Synchronous": true })),
    );

    // Same UIDs, same Orthanc ID; received over DICOM from RADHUB.
    let meta = orthanc.ok("GET", &format!("/instances/{id}/metadata?expand"), None);
    assert_eq!((&meta["Origin"], &meta["RemoteAET"]), (&json!("DicomProtocol"), &json!("RADHUB")), "{meta}");
    assert_eq!(orthanc.tags(id), before, "the moved instance's tags differ from the original's");
    let all = orthanc.ok("GET", "/instances", None);
    assert_eq!(all.as_array().map(Vec::len), Some(ids.len()), "{all}");
}
