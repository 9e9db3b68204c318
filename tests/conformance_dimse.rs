//! The DIMSE conformance a trust's PACS and modalities probe before
//! go-live, against real peers: pynetdicom (tests/conformance/peer.py) and
//! DCMTK. Each test names the clause of the standard it checks.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{dcmtk, output, Server};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/peer.py");

const RADHUB_CLASS_UID: &str = pacs_gateway::store::IMPLEMENTATION_CLASS_UID;
const RADHUB_VERSION: &str = pacs_gateway::store::IMPLEMENTATION_VERSION_NAME;

fn py(args: &[&str]) -> Value {
    let out = Command::new("python3").arg(PEER).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "peer.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// peer.py against `server` as `ae`; the association must be accepted.
fn peer(server: &Server, ae: &str, args: &[&str]) -> Value {
    let port = server.port.to_string();
    let mut all = vec!["--port", port.as_str(), "--ae", ae];
    all.extend_from_slice(args);
    let v = py(&all);
    assert_eq!(v["established"], true, "radhub refused the association for {args:?}: {v}");
    v
}

/// Instances real archives hold: Siemens CSA Non-Image and a GE private
/// class, and Secondary Capture in HTJ2K (lossless, RPCL), JPEG XL and HEVC.
struct Made {
    _dir: tempfile::TempDir,
    files: Vec<Value>,
    study: String,
}

impl Made {
    fn new() -> Made {
        let dir = tempfile::tempdir().unwrap();
        let v = py(&["make", dir.path().to_str().unwrap()]);
        Made { files: v["files"].as_array().unwrap().clone(), study: v["study"].as_str().unwrap().to_owned(), _dir: dir }
    }

    fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f["file"].as_str().unwrap().to_owned()).collect()
    }

    fn named(&self, name: &str) -> &Value {
        self.files.iter().find(|f| f["file"].as_str().unwrap().ends_with(name)).unwrap_or_else(|| panic!("no {name}"))
    }
}

/// The data set of a Part 10 file: the bytes after its meta group.
fn data_set(part10: &[u8]) -> Vec<u8> {
    let (_, start, _) = dicom_scan::file_meta(part10).expect("a Part 10 file");
    part10[start..].to_vec()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// PS3.4 B.4.1 (an SCP may support SOP classes beyond the standard's) and
/// PS3.5 A.4 / PS3.6 Table A-1 (every encapsulated syntax): private classes
/// and HTJ2K, JPEG XL and HEVC are accepted in their own syntax, stored,
/// and a C-GET (PS3.4 C.4.3) gives back each data set byte for byte, as
/// WADO-RS (PS3.18 10.4) does; other services' classes are declined.
#[test]
fn private_classes_and_new_syntaxes_are_stored_and_served_as_received_pynetdicom() {
    let made = Made::new();
    let data = tempfile::tempdir().unwrap();
    let token = support::user_token(data.path(), "conf", "admin");
    let server = Server::start_in(data, &["--peer", "PYSCU@127.0.0.1:0=RBD"]);
    let paths = made.paths();
    let mut args = vec!["store"];
    args.extend(paths.iter().map(String::as_str));
    let v = peer(&server, "PYSCU", &args);
    for c in v["contexts"].as_array().unwrap() {
        assert_eq!(c["accepted"], true, "context not accepted as proposed: {c}");
    }
    assert_eq!(v["contexts"].as_array().unwrap().len(), made.files.len(), "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["status"], 0, "C-STORE refused: {r}");
    }

    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["get", "--study", &made.study, "--out", out.path().to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let v = peer(&server, "PYSCU", &args);
    assert_eq!(v["final"]["Status"], 0, "{v}");
    assert_eq!(v["final"]["NumberOfCompletedSuboperations"].as_u64(), Some(made.files.len() as u64), "{v}");
    for f in &made.files {
        let sop = f["sop"].as_str().unwrap();
        let got = v["received"].as_array().unwrap().iter().find(|r| r["sop"] == sop).unwrap_or_else(|| panic!("{sop} not received: {v}"));
        assert_eq!(got["ts"], f["ts"], "sent in another syntax than stored: {got}");
        let original = data_set(&std::fs::read(f["file"].as_str().unwrap()).unwrap());
        let received = std::fs::read(out.path().join(format!("{sop}.raw"))).unwrap();
        assert!(received == original, "{}: the C-GET data set differs from the one stored ({} vs {} bytes)", f["file"], received.len(), original.len());

        // WADO-RS: the instance as stored, its data set unchanged.
        let url = format!("/dicom-web/studies/{}/series/{}/instances/{sop}", made.study, f["series"].as_str().unwrap());
        let accept = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
        let r = support::request(&server.http(), "GET", &url, &[("Authorization", &format!("Bearer {token}")), ("Accept", accept)], b"");
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert!(contains(&r.body, &original), "{url}: the data set is not in the WADO-RS answer as stored");
    }

    // Modality Worklist FIND and MPPS are services, not storage: declined.
    let v = peer(&server, "PYSCU", &["echo", "--propose", "1.2.840.10008.5.1.4.31", "--propose", "1.2.840.10008.3.1.2.3.3", "--propose", "1.2.840.113619.4.2"]);
    assert_eq!(v["proposed"]["1.2.840.10008.5.1.4.31"], false, "{v}");
    assert_eq!(v["proposed"]["1.2.840.10008.3.1.2.3.3"], false, "{v}");
    assert_eq!(v["proposed"]["1.2.840.113619.4.2"], true, "{v}");
}

/// A DCMTK association profile: each file's class in its own syntax only.
fn storescu_profile(dir: &Path) -> PathBuf {
    let cfg = "[[TransferSyntaxes]]\n[HEVC]\nTransferSyntax1 = 1.2.840.10008.1.2.4.107\n[Explicit]\nTransferSyntax1 = LittleEndianExplicit\n\
               [Implicit]\nTransferSyntax1 = LittleEndianImplicit\n\n[[PresentationContexts]]\n[Send]\n\
               PresentationContext1 = 1.2.840.10008.5.1.4.1.1.7\\HEVC\nPresentationContext2 = 1.3.12.2.1107.5.9.1\\Explicit\n\
               PresentationContext3 = 1.2.840.113619.4.27\\Implicit\n\n[Receive]\nPresentationContext1 = 1.2.840.10008.5.1.4.1.1.7\\HEVC\n\
               PresentationContext2 = 1.3.12.2.1107.5.9.1\\Explicit\nPresentationContext3 = 1.2.840.113619.4.27\\Implicit\n\
               PresentationContext4 = 1.2.840.10008.1.1\\Explicit\n\n[[Profiles]]\n[Send]\nPresentationContexts = Send\n\
               [Receive]\nPresentationContexts = Receive\n";
    let p = dir.join("profiles.cfg");
    std::fs::write(&p, cfg).unwrap();
    p
}

/// The same with DCMTK 3.6.7 (which predates HTJ2K and JPEG XL, so HEVC
/// stands for the new syntaxes): storescu proposing each class in its own
/// syntax only (PS3.8 9.3.2.2), then a C-MOVE (PS3.4 C.4.2) to a DCMTK
/// storescp writing bit-preserving: every data set arrives as sent.
#[test]
fn private_classes_and_video_round_trip_with_dcmtk() {
    let made = Made::new();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = storescu_profile(cfg_dir.path());
    let files: Vec<&Value> = ["csa_non_image.dcm", "ge_private.dcm", "hevc.dcm"].iter().map(|n| made.named(n)).collect();
    let scp = support::storescp("DCMSCP", &["-xf", cfg.to_str().unwrap(), "Receive", "+B"]);
    let dest = format!("DCMSCP@127.0.0.1:{}", scp.port);
    let server = Server::start(&["--peer", "STORESCU@127.0.0.1:0=RBD", "--peer", &dest]);
    let port = server.port.to_string();
    let (ok, log) = output(
        dcmtk("storescu")
            .args(["-v", "-xf", cfg.to_str().unwrap(), "Send", "-aet", "STORESCU", "-aec", "RADHUB", "127.0.0.1", &port])
            .args(files.iter().map(|f| f["file"].as_str().unwrap())),
    );
    assert!(ok && log.matches("Received Store Response (Success)").count() == files.len(), "storescu: {log}");

    let (ok, log) = output(dcmtk("movescu").args([
        "-v",
        "-S",
        "-aet",
        "STORESCU",
        "-aec",
        "RADHUB",
        "-aem",
        "DCMSCP",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &format!("StudyInstanceUID={}", made.study),
        "127.0.0.1",
        &port,
    ]));
    assert!(ok, "movescu: {log}");
    for f in files {
        let sop = f["sop"].as_str().unwrap();
        let original = data_set(&std::fs::read(f["file"].as_str().unwrap()).unwrap());
        let got = support::walk(&scp.received()).into_iter().find(|p| p.to_string_lossy().contains(sop)).unwrap_or_else(|| panic!("{sop} not received: {log}"));
        assert_eq!(support::transfer_syntax(&got), f["ts"].as_str().unwrap(), "{sop}");
        assert!(data_set(&std::fs::read(&got).unwrap()) == original, "{}: the data set DCMTK received differs from the one stored", f["file"]);
    }
}

/// PS3.7 D.3.3.2: the Implementation Class UID (and Version Name) in the
/// A-ASSOCIATE-AC are radhub's own, the ones its files' meta carry
/// (PS3.10 7.1), and so are those of the A-ASSOCIATE-RQs radhub sends as
/// a requestor (here a C-MOVE's sub-association to pynetdicom).
#[test]
fn implementation_class_uid_and_version_name_are_radhubs_as_acceptor_and_requestor() {
    let made = Made::new();
    let scp_port = support::free_port();
    let dest = format!("PYDEST@127.0.0.1:{scp_port}");
    let server = Server::start(&["--peer", "PYSCU@127.0.0.1:0=RBD", "--peer", &dest]);
    let v = peer(&server, "PYSCU", &["echo"]);
    assert_eq!((v["implementation_class_uid"].as_str(), v["implementation_version_name"].as_str()), (Some(RADHUB_CLASS_UID), Some(RADHUB_VERSION)), "{v}");
    assert_eq!(v["status"], 0);

    // DCMTK reads the same from the A-ASSOCIATE-AC.
    let (ok, log) = output(dcmtk("echoscu").args(["-d", "-aet", "PYSCU", "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]));
    assert!(ok, "echoscu: {log}");
    assert!(log.contains(&format!("Their Implementation Class UID:    {RADHUB_CLASS_UID}")), "{log}");
    assert!(log.contains(&format!("Their Implementation Version Name: {RADHUB_VERSION}")), "{log}");

    let ct = made.named("csa_non_image.dcm");
    peer(&server, "PYSCU", &["store", ct["file"].as_str().unwrap()]);
    let v = peer(&server, "PYSCU", &["move", "--dest", "PYDEST", "--scp-port", &scp_port.to_string(), "--study", &made.study]);
    assert_eq!(v["final"]["status"], 0, "{v}");
    let calls = v["calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "radhub never called the move destination: {v}");
    for c in calls {
        assert_eq!((c["implementation_class_uid"].as_str(), c["implementation_version_name"].as_str()), (Some(RADHUB_CLASS_UID), Some(RADHUB_VERSION)), "{c}");
    }
    assert_eq!(v["stored"], serde_json::json!([ct["sop"]]), "{v}");

    // The same identity as in the files radhub writes (their meta group).
    let stored =
        std::fs::read(support::walk(server.data.path()).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).expect("a stored file")).unwrap();
    assert!(contains(&stored[..stored.len().min(512)], RADHUB_CLASS_UID.as_bytes()), "the file meta names another implementation");
}

const PENDING: u64 = 0xFF00;
const PENDING_UNSUPPORTED_KEYS: u64 = 0xFF01;

/// C-FIND against what radhub holds (PS3.4 C.4.1): FF01 when the identifier
/// holds optional keys radhub does not support (C.4.1.1.4, Table C.4-1),
/// FF00 when it holds none; A900 with an Error Comment naming the key for
/// a malformed one (an impossible date, a UID list with no UIDs in it),
/// never a silent empty answer; the answer in the request's Specific
/// Character Set when its values fit (C.4.1.1.3.1), else ISO_IR 192; and
/// SOP Class Extended Negotiation (C.5.1.1) answered: relational queries
/// taken, combined date-time matching and fuzzy matching declined.
#[test]
fn c_find_statuses_character_sets_and_extended_negotiation_pynetdicom_and_dcmtk() {
    let made = Made::new();
    let server = Server::start(&["--peer", "PYSCU@127.0.0.1:0=RBD", "--peer", "FINDSCU@127.0.0.1:0=RBD"]);
    let csa = made.named("csa_non_image.dcm");
    peer(&server, "PYSCU", &["store", csa["file"].as_str().unwrap()]);
    let find = |extra: &[&str]| {
        let mut a = vec!["find", "--level", "STUDY", "--key", "PatientName=Conformance*", "--key", "StudyInstanceUID="];
        a.extend_from_slice(extra);
        peer(&server, "PYSCU", &a)
    };

    let v = find(&[]);
    assert_eq!((v["final"].as_u64(), v["pending_status"].clone()), (Some(0), serde_json::json!([PENDING])), "{v}");
    // Ethnic Group (0010,2160) is no key radhub holds.
    let v = find(&["--key", "EthnicGroup="]);
    assert_eq!((v["final"].as_u64(), v["pending_status"].clone()), (Some(0), serde_json::json!([PENDING_UNSUPPORTED_KEYS])), "{v}");
    assert_eq!(v["pending"][0]["EthnicGroup"], "", "an unsupported key comes back empty: {v}");

    for (key, name) in [("StudyDate=20261301", "StudyDate"), ("StudyTime=2561", "StudyTime"), ("StudyInstanceUID=1.2.3\\not-a-uid", "StudyInstanceUID")] {
        let v = peer(&server, "PYSCU", &["find", "--level", "STUDY", "--key", "PatientName=", "--key", key]);
        assert_eq!(v["final"].as_u64(), Some(0xA900), "{key}: {v}");
        assert_eq!(v["pending"], serde_json::json!([]), "{key}: {v}");
        assert!(v["comment"].as_str().is_some_and(|c| c.contains(name)), "{key}: the Error Comment should name the key: {v}");
    }

    // Latin-1 asked, and "Zoë" fits it: the answer is in ISO_IR 100.
    let v = find(&["--charset", "ISO_IR 100"]);
    assert_eq!(v["pending"][0]["SpecificCharacterSet"], "ISO_IR 100", "{v}");
    assert_eq!(v["pending"][0]["PatientName"], "Conformance^Zoë", "{v}");
    // Nothing asked: UTF-8, radhub's own.
    let v = find(&[]);
    assert_eq!(v["pending"][0]["SpecificCharacterSet"], "ISO_IR 192", "{v}");
    // Greek asked, which has no ë: UTF-8.
    let v = find(&["--charset", "ISO_IR 126"]);
    assert_eq!(v["pending"][0]["SpecificCharacterSet"], "ISO_IR 192", "{v}");
    assert_eq!(v["pending"][0]["PatientName"], "Conformance^Zoë", "{v}");

    // Extended negotiation: relational queries, combined date-time, fuzzy PN asked.
    let v = find(&["--ext", "010101"]);
    assert_eq!(v["ext_neg_answer"], "010000", "{v}");
    assert_eq!(v["final"].as_u64(), Some(0), "{v}");
    // Relational: an IMAGE-level query with no Study or Series Instance UID.
    let v = peer(&server, "PYSCU", &["find", "--level", "IMAGE", "--ext", "01", "--key", "PatientName=Conformance*", "--key", "SOPInstanceUID="]);
    assert_eq!(v["ext_neg_answer"], "01", "{v}");
    assert_eq!(v["pending"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["pending"][0]["SOPInstanceUID"], csa["sop"], "{v}");

    // DCMTK's findscu reads the same statuses, and the Latin-1 bytes.
    let port = server.port.to_string();
    let findscu = |keys: &[&str]| {
        let mut c = dcmtk("findscu");
        c.args(["-v", "-S", "-aet", "FINDSCU", "-aec", "RADHUB"]);
        for k in keys {
            c.args(["-k", k]);
        }
        let out = c.args(["127.0.0.1", &port]).output().unwrap();
        assert!(out.status.success(), "findscu {keys:?}: {}", String::from_utf8_lossy(&out.stderr));
        [out.stdout, out.stderr].concat()
    };
    let out = findscu(&["QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 100", "PatientName=Conformance*", "EthnicGroup"]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Pending: WarningUnsupportedOptionalKeys"), "{text}");
    assert!(contains(&out, b"[Conformance^Zo\xeb"), "the name is not in ISO_IR 100: {text}");
    let out = findscu(&["QueryRetrieveLevel=STUDY", "PatientName=Conformance*"]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Find Response: 1 (Pending)") && text.contains("Received Final Find Response (Success)"), "{text}");
    assert!(contains(&out, "[Conformance^Zoë".as_bytes()) && text.contains("ISO_IR 192"), "{text}");
    let out = findscu(&["QueryRetrieveLevel=STUDY", "StudyDate=20260230-2026", "StudyInstanceUID"]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Received Final Find Response (Error: DataSetDoesNotMatchSOPClass)"), "{text}");
}

/// Access by network (PS3.8 7.1.1.3 leaves who may associate to the
/// acceptor; A-ASSOCIATE-RJ permanent, service user, "calling AE title not
/// recognized" is its answer, PS3.8 9.3.4): in the sites file a caller may
/// connect from several hosts and networks (CIDR) and from nowhere else;
/// callers and move destinations are separate lists, so a destination that
/// may not call is still reachable by C-MOVE (PS3.4 C.4.2.1.4), and a caller
/// that is no destination gets A801.
#[test]
fn callers_by_network_and_move_destinations_apart() {
    let made = Made::new();
    let scp_port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let sites = dir.path().join("sites.toml");
    std::fs::write(
        &sites,
        format!(
            "[[site]]\ncode = \"RBD\"\nname = \"Dorset County Hospital\"\nissuer = \"RBD\"\n\n\
             [[site.caller]]\nae_title = \"MODALITY\"\nfrom = [\"127.0.0.2/32\", \"10.0.0.0/8\", \"2001:db8::/32\"]\n\n\
             [[site.caller]]\nae_title = \"FARAWAY\"\nfrom = [\"10.0.0.0/8\"]\n\n\
             [[site.destination]]\nae_title = \"VIEWER\"\nhost = \"127.0.0.1\"\nport = {scp_port}\n"
        ),
    )
    .unwrap();
    let server = Server::start(&["--sites", sites.to_str().unwrap(), "--peer", "PYSCU@127.0.0.1:0=RBD"]);
    let port = server.port.to_string();
    let call = |ae: &str, bind: &str, args: &[&str]| {
        let mut a = vec!["--port", port.as_str(), "--ae", ae, "--bind", bind];
        a.extend_from_slice(args);
        py(&a)
    };
    // PS3.8 Table 9-21: result 1 (permanent), source 1 (service user), reason 3.
    let refused = |v: &Value| v["established"] == false && v["reject"] == serde_json::json!({"result": 1, "source": 1, "reason": 3});

    // From inside its network (127.0.0.2 is another host as far as radhub can tell).
    let v = call("MODALITY", "127.0.0.2", &["store", made.named("ge_private.dcm")["file"].as_str().unwrap()]);
    assert_eq!(v["results"][0]["status"], 0, "{v}");
    // From outside it: rejected.
    assert!(refused(&call("MODALITY", "127.0.0.3", &["echo"])), "MODALITY from 127.0.0.3 was not rejected");
    assert!(refused(&call("FARAWAY", "127.0.0.1", &["echo"])), "FARAWAY from loopback was not rejected");
    // A move destination only may not call.
    assert!(refused(&call("VIEWER", "127.0.0.1", &["echo"])), "a move destination was allowed to call");
    // DCMTK is rejected alike.
    let (ok, log) = output(dcmtk("echoscu").args(["-v", "-aet", "FARAWAY", "-aec", "RADHUB", "127.0.0.1", &port]));
    assert!(!ok && log.contains("Association Rejected") && log.contains("Calling AE Title Not Recognized"), "{log}");

    // The destination that may not call is reachable by C-MOVE...
    let v = call("MODALITY", "127.0.0.2", &["move", "--dest", "VIEWER", "--scp-port", &scp_port.to_string(), "--study", &made.study]);
    assert_eq!(v["final"]["status"], 0, "{v}");
    assert_eq!(v["stored"], serde_json::json!([made.named("ge_private.dcm")["sop"]]), "{v}");
    assert_eq!(v["calls"].as_array().map(Vec::len), Some(1), "one sub-association to the destination: {v}");
    // ...and a caller that is no destination is refused as one: A801.
    let v = call("MODALITY", "127.0.0.2", &["move", "--dest", "MODALITY", "--scp-port", &support::free_port().to_string(), "--study", &made.study]);
    assert_eq!(v["final"]["status"], 0xA801, "{v}");
    assert_eq!(v["calls"], serde_json::json!([]), "{v}");
}
