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
