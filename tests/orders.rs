//! Orders from a site's RIS over HL7 v2 (python-hl7's MLLP client as the
//! RIS): acknowledged once filed, matched to their study by accession at
//! the same site, shown on the study and the worklist; what cannot be
//! filed is refused (AR) with the reason, on a connection that stays up.

mod support;

use radhub::orders::segment as seg;
use serde_json::Value;
use support::{free_port, get, hl7_send as send, user_token, Server};

fn orm(facility: &str, control: &str, order: &str, pid: &str, accession: &str, priority: &str, indication: &str) -> String {
    [
        format!("MSH|^~\\&|RIS|{facility}|RADHUB|DORSET|20261202101500||ORM^O01^ORM_O01|{control}|P|2.5.1"),
        seg("PID", &[(1, "1"), (3, &format!("{pid}^^^{facility}^MR")), (5, "TEST^PATIENT")]),
        seg("ORC", &[(1, order), (2, "PL1"), (3, accession), (5, "SC"), (7, &format!("^^^^^{priority}"))]),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, "PL1"),
                (3, accession),
                (4, "XCHEST^Chest X-ray"),
                (16, "^JONES^ANNA"),
                (18, accession),
                (27, &format!("^^^^^{priority}")),
                (31, &format!("^{indication}")),
            ],
        ),
    ]
    .join("\r")
}

#[test]
fn a_ris_order_reaches_the_worklist_and_its_study() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "3", "--max-slices", "1", "--ct-size", "32"]);
    let rad = user_token(data.path(), "rad1", "radiologist");
    let hl7 = free_port();
    let server = Server::start_in(data, &["--hl7-bind", &format!("127.0.0.1:{hl7}")]);
    let base = server.http();
    let studies = get(&base, "/api/studies?limit=100", &rad).json();
    let study = studies
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "RBD" && !s["accession_number"].as_str().unwrap_or("").is_empty())
        .unwrap_or_else(|| panic!("{studies}"));
    let (uid, acc, pid) = (study["uid"].as_str().unwrap(), study["accession_number"].as_str().unwrap(), study["patient"]["patient_id"].as_str().unwrap());

    // On one connection: a refused message, the order, an order whose images are still to come, a refused one again.
    let acks = send(
        hl7,
        out.path(),
        &[
            orm("XYZ", "M1", "NW", pid, acc, "S", "Fall"),
            orm("RBD", "M2", "NW", pid, acc, "S", "Fall, ?fracture"),
            orm("RBD", "M3", "NW", "D0000001", "NOTYET1", "R", "Cough"),
            "MSH|^~\\&|RIS|RBD|RADHUB|DORSET|20261202101500||ORU^R01^ORU_R01|M4|P|2.5.1\rPID|1||X".to_owned(),
        ],
    );
    assert_eq!((acks[0][0].as_str(), acks[0][1].as_str()), ("AR", "M1"), "{acks:?}");
    assert!(acks[0][2].contains("XYZ"), "{acks:?}");
    assert_eq!((acks[1][0].as_str(), acks[1][1].as_str()), ("AA", "M2"), "{acks:?}");
    assert_eq!(acks[2][0], "AA", "{acks:?}");
    assert_eq!(acks[3][0], "AR", "{acks:?}");

    // Open orders, the urgent first: the stat one with its study; the routine one waiting for images.
    let orders = get(&base, "/api/orders", &rad).json();
    let list = orders.as_array().unwrap();
    assert_eq!(list.len(), 2, "{orders}");
    assert_eq!((list[0]["accession"].as_str(), list[0]["priority"].as_str(), list[0]["study"].as_str()), (Some(acc), Some("S"), Some(uid)), "{orders}");
    assert_eq!((list[1]["accession"].as_str(), list[1]["study"].clone()), (Some("NOTYET1"), Value::Null), "{orders}");
    // The study and its worklist item carry the order.
    let s = get(&base, &format!("/api/studies/{uid}"), &rad).json();
    assert_eq!(
        (s["order"]["priority"].as_str(), s["order"]["indication"].as_str(), s["order"]["ordering_clinician"].as_str()),
        (Some("S"), Some("Fall, ?fracture"), Some("JONES ANNA")),
        "{s}"
    );
    let wl = get(&base, "/api/worklist?limit=1000", &rad).json();
    let item = wl["items"].as_array().unwrap().iter().find(|w| w["uid"] == uid).unwrap_or_else(|| panic!("{wl}"));
    assert_eq!((item["accession_number"].as_str(), item["priority"].as_str(), item["ordered"].as_bool()), (Some(acc), Some("S"), Some(true)), "{item}");
    assert_eq!(item["indication"], "Fall, ?fracture");
    // Stat first: nothing routine is listed before it.
    let first_routine = wl["items"].as_array().unwrap().iter().position(|w| w["priority"] == "R");
    let at = wl["items"].as_array().unwrap().iter().position(|w| w["uid"] == uid);
    assert!(first_routine.is_none_or(|r| at < Some(r)), "{wl}");

    // An order whose accession belongs to another patient's study: never attached; the conflict is shown.
    let other = studies
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "RBD" && s["uid"] != uid && s["patient"]["patient_id"] != pid && !s["accession_number"].as_str().unwrap_or("").is_empty())
        .unwrap_or_else(|| panic!("{studies}"));
    let (ouid, oacc) = (other["uid"].as_str().unwrap(), other["accession_number"].as_str().unwrap());
    assert_eq!(send(hl7, out.path(), &[orm("RBD", "M6", "NW", pid, oacc, "A", "Wrong patient")])[0][0], "AA");
    let s = get(&base, &format!("/api/studies/{ouid}"), &rad).json();
    assert!(s["order"].is_null() && s["order_conflict"].as_str().is_some_and(|c| c.contains(pid)), "{s}");
    let orders = get(&base, "/api/orders", &rad).json();
    let o = orders.as_array().unwrap().iter().find(|o| o["accession"] == oacc).unwrap();
    assert!(o["study"].is_null() && o["conflict"].as_str().is_some_and(|c| c.contains(ouid)), "{o}");
    let acks = send(hl7, out.path(), &[orm("RBD", "M7", "CA", pid, oacc, "A", "Wrong patient")]);
    assert_eq!(acks[0][0], "AA");
    let listed = |uid: &str| get(&base, "/api/worklist?limit=1000", &rad).json()["items"].as_array().unwrap().iter().any(|w| w["uid"] == uid);
    assert!(listed(ouid), "a cancellation naming another patient took their study off the worklist");

    // A cancellation takes it off the open orders.
    let acks = send(hl7, out.path(), &[orm("RBD", "M5", "CA", "D0000001", "NOTYET1", "R", "Cough")]);
    assert_eq!(acks[0][0], "AA");
    let orders = get(&base, "/api/orders", &rad).json();
    assert_eq!(orders.as_array().unwrap().len(), 1, "{orders}");

    // The study's own order cancelled: off the worklist, and later arrivals do not put it back.
    assert!(listed(uid));
    assert_eq!(send(hl7, out.path(), &[orm("RBD", "M8", "CA", pid, acc, "S", "Fall")])[0][0], "AA");
    assert!(!listed(uid), "a cancelled order's study stayed on the worklist");
}

/// A one-instance study of Dorset County's patient D7 with accession
/// `acc`, naming `issuer` (Local Namespace Entity ID, Universal Entity ID)
/// in Issuer of Accession Number Sequence, or no issuer.
fn study_with_accession(dir: &std::path::Path, n: u32, acc: &str, issuer: Option<(&str, &str)>) -> String {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    let mut obj = dicom_object::open_file(support::pydicom_data().join("test_files/CT_small.dcm")).unwrap();
    let study = format!("1.2.826.0.1.3680043.8.498.9.{n}");
    let put = |obj: &mut dicom_object::DefaultDicomObject, t: Tag, vr: VR, v: &str| obj.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    put(&mut obj, Tag(0x0010, 0x0020), VR::LO, "D7");
    obj.remove_element(Tag(0x0010, 0x0021));
    put(&mut obj, Tag(0x0008, 0x0050), VR::SH, acc);
    put(&mut obj, Tag(0x0020, 0x000D), VR::UI, &study);
    put(&mut obj, Tag(0x0020, 0x000E), VR::UI, &format!("{study}.1"));
    put(&mut obj, Tag(0x0008, 0x0018), VR::UI, &format!("{study}.1.1"));
    if let Some((local, universal)) = issuer {
        let mut item = dicom_object::InMemDicomObject::new_empty();
        item.put(DataElement::new(Tag(0x0040, 0x0031), VR::UT, PrimitiveValue::from(local)));
        if !universal.is_empty() {
            item.put(DataElement::new(Tag(0x0040, 0x0032), VR::UT, PrimitiveValue::from(universal)));
            item.put(DataElement::new(Tag(0x0040, 0x0033), VR::CS, PrimitiveValue::from("ISO")));
        }
        obj.put(DataElement::new(Tag(0x0008, 0x0051), VR::SQ, dicom_core::value::DataSetSequence::from(vec![item])));
    }
    obj.update_meta(|m| m.media_storage_sop_instance_uid = format!("{study}.1.1"));
    obj.write_to_file(dir.join(format!("{n}.dcm"))).unwrap();
    study
}

/// findscu at STUDY level by accession (`-X`: the answers as files): each
/// answer's Study Instance UID and its issuer's Local Namespace Entity ID.
fn findscu_accession(server: &Server, keys: &[&str]) -> Vec<(String, String)> {
    use dicom_core::Tag;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::dcmtk("findscu");
    c.args(["-S", "-X", "-aet", "DCH_PACS", "-aec", "RADHUB", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-od"]).arg(dir.path());
    for k in keys {
        c.args(["-k", k]);
    }
    let (ok, out) = support::output(c.args(["127.0.0.1", &server.port.to_string()]));
    assert!(ok, "findscu: {out}");
    let mut got: Vec<(String, String)> = support::walk(dir.path())
        .iter()
        .map(|f| {
            let o = dicom_object::open_file(f).unwrap();
            let text = |o: &dicom_object::InMemDicomObject, t: Tag| {
                o.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_owned()).unwrap_or_default()
            };
            let issuer =
                o.element(Tag(0x0008, 0x0051)).ok().and_then(|e| e.items()).and_then(<[_]>::first).map(|i| text(i, Tag(0x0040, 0x0031))).unwrap_or_default();
            (text(&o, Tag(0x0020, 0x000D)), issuer)
        })
        .collect();
    got.sort();
    got
}

#[test]
fn an_accession_number_is_its_issuers_and_only_the_sites_own_meet_its_orders() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let rbd = files.path().join("RBD");
    std::fs::create_dir_all(&rbd).unwrap();
    // Dorset County's own study (no issuer in the data: the site's), and one a
    // teleradiology service numbered the same (issuer TELE), both of patient D7.
    let own = study_with_accession(&rbd, 1, "ACC77", None);
    let tele = study_with_accession(&rbd, 2, "ACC77", Some(("TELE", "")));
    let named = study_with_accession(&rbd, 3, "ACC78", Some(("RBD", "1.2.826.0.1.3680043.9.7")));
    support::run(data.path(), &["import", "--site-folders", files.path().to_str().unwrap()]);
    let rad = user_token(data.path(), "rad1", "radiologist");
    let hl7 = free_port();
    let server = Server::start_in(data, &["--peer", "DCH_PACS@127.0.0.1:0=RBD", "--hl7-bind", &format!("127.0.0.1:{hl7}")]);
    let base = server.http();

    // C-FIND: the issuer returned with each accession, and matched (sequence matching).
    let seq = "IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID";
    let both = findscu_accession(&server, &["AccessionNumber=ACC77", seq]);
    let mut want = vec![(own.clone(), "RBD".to_owned()), (tele.clone(), "TELE".to_owned())];
    want.sort();
    assert_eq!(both, want, "the site's default issuer for data naming none; the data's own otherwise");
    assert_eq!(findscu_accession(&server, &["AccessionNumber=ACC77", &format!("{seq}=TELE")]), vec![(tele.clone(), "TELE".to_owned())]);
    assert_eq!(findscu_accession(&server, &["AccessionNumber=ACC77", &format!("{seq}=RBD")]), vec![(own.clone(), "RBD".to_owned())]);
    assert_eq!(findscu_accession(&server, &[&format!("{seq}=NOBODY")]), vec![]);

    // QIDO-RS: returned by default with the accession number, matched as Sequence.Attribute.
    let qido = |q: &str| get(&base, &format!("/dicom-web/studies?{q}"), &rad);
    let r = qido("AccessionNumber=ACC77&IssuerOfAccessionNumberSequence.LocalNamespaceEntityID=TELE");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["0020000D"]["Value"][0], tele.as_str());
    assert_eq!(v[0]["00080051"]["Value"][0]["00400031"]["Value"][0], "TELE", "{v}");
    let v = qido("AccessionNumber=ACC78").json();
    assert_eq!(v[0]["0020000D"]["Value"][0], named.as_str());
    let item = &v[0]["00080051"]["Value"][0];
    assert_eq!(
        (item["00400031"]["Value"][0].as_str(), item["00400032"]["Value"][0].as_str(), item["00400033"]["Value"][0].as_str()),
        (Some("RBD"), Some("1.2.826.0.1.3680043.9.7"), Some("ISO")),
        "{v}"
    );
    assert_eq!(qido("00080051.00400031=RBD&AccessionNumber=ACC7*").json().as_array().map(Vec::len), Some(2), "by tag: the site's two");
    for bad in ["00101002.00100020=D7", "LocalNamespaceEntityID=TELE"] {
        let r = qido(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // The site's RIS orders ACC77: its own study meets the order, never the teleradiology one.
    let out = tempfile::tempdir().unwrap();
    let acks = send(hl7, out.path(), &[orm("RBD", "M1", "NW", "D7", "ACC77", "S", "Headache")]);
    assert_eq!(acks[0][0], "AA", "{acks:?}");
    let orders = get(&base, "/api/orders", &rad).json();
    assert_eq!(orders[0]["study"].as_str(), Some(own.as_str()), "{orders}");
    assert_eq!(get(&base, &format!("/api/studies/{own}"), &rad).json()["order"]["priority"], "S");
    let t = get(&base, &format!("/api/studies/{tele}"), &rad).json();
    assert_eq!((t["order"].clone(), t["accession_issuer"].as_str()), (Value::Null, Some("TELE")), "{t}");
}
