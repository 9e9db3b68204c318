//! Hostile input on the DICOM port: each gets the right reject or abort,
//! memory stays bounded, and other associations keep being served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dicom_encoding::TransferSyntaxIndex;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use pacs_gateway::command::{field, tag, Command};
use support::{dcmtk, output, Server};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const VERIFICATION: &str = "1.2.840.10008.1.1";

fn echo_ok(s: &Server) -> bool {
    output(dcmtk("echoscu").args(["-aec", "RADHUB", "127.0.0.1", &s.port.to_string()])).0
}

/// Resident memory of the server, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// Reads until the peer closes or sends something; returns the bytes seen.
fn read_reply(sock: &mut TcpStream, wait: Duration) -> Vec<u8> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 256];
    match sock.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => panic!("the server neither answered nor closed within {wait:?}"),
    }
}

#[test]
fn garbage_truncated_and_huge_pdus_are_refused_and_the_server_stays_up() {
    let s = Server::start(&["--accept-any", "--artim-timeout", "2"]);
    let pid = s.pid();
    let before = rss_kib(pid);

    // Random bytes: not a PDU type radhub knows, so the connection ends.
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.write_all(&[0x42; 64]).unwrap();
    let r = read_reply(&mut sock, Duration::from_secs(5));
    assert!(r.is_empty() || r[0] == 0x07, "garbage answered with {r:?}");

    // A-ASSOCIATE-RQ claiming 4 GiB: refused without allocating it.
    for _ in 0..20 {
        let mut sock = TcpStream::connect(s.addr()).unwrap();
        sock.write_all(&[0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1]).unwrap();
        let r = read_reply(&mut sock, Duration::from_secs(5));
        assert!(r.is_empty() || r[0] == 0x07 || r[0] == 0x03, "4 GiB PDU answered with {r:?}");
    }

    // A truncated PDU and a hang-up.
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.write_all(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x01, 0x00]).unwrap();
    drop(sock);

    assert!(echo_ok(&s), "server stopped serving after hostile input");
    let after = rss_kib(pid);
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
}

#[test]
fn a_silent_connection_is_dropped_after_artim_and_does_not_block_others() {
    let s = Server::start(&["--accept-any", "--handshake-timeout", "1"]);
    let mut silent = TcpStream::connect(s.addr()).unwrap();
    // Others are served meanwhile.
    assert!(echo_ok(&s));
    let t = Instant::now();
    let r = read_reply(&mut silent, Duration::from_secs(10));
    assert!(r.is_empty(), "silent connection got {r:?}");
    let waited = t.elapsed();
    assert!(waited < Duration::from_secs(5), "ARTIM of 1 s took {waited:?}");
}

#[test]
fn a_service_radhub_does_not_provide_or_a_malformed_uid_is_not_accepted() {
    // Private storage classes are accepted (what real archives hold); a
    // standard service radhub does not provide (Modality Worklist FIND) and
    // a UID that is not one are not.
    let s = Server::start(&["--accept-any"]);
    for uid in ["1.2.840.10008.5.1.4.31", "1.2.03.x"] {
        let r = ClientAssociationOptions::new().with_abstract_syntax(uid).calling_ae_title("HOSTILE").establish_with(&format!("RADHUB@{}", s.addr()));
        let Err(e) = r else { panic!("an association for {uid} only was accepted") };
        let e = e.to_string();
        assert!(e.contains("no presentation contexts accepted") || e.to_lowercase().contains("presentation"), "{uid}: {e}");
    }
    assert!(echo_ok(&s));
}

#[test]
fn a_private_storage_class_is_accepted() {
    let s = Server::start(&["--accept-any"]);
    let r = ClientAssociationOptions::new().with_abstract_syntax("1.2.3.4.5.6.7").calling_ae_title("HOSTILE").establish_with(&format!("RADHUB@{}", s.addr()));
    assert!(r.is_ok(), "a private storage class was refused: {:?}", r.err());
    assert!(echo_ok(&s));
}

fn send(a: &mut dicom_ul::ClientAssociation<TcpStream>, pc: u8, cmd: &Command, data: Option<&[u8]>) {
    a.send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Command, is_last: true, data: cmd.encode() }] })
        .unwrap();
    if let Some(d) = data {
        // Split to the peer's maximum PDU length.
        let mut w = a.send_pdata(pc);
        w.write_all(d).unwrap();
        w.finish().unwrap();
    }
}

fn response(a: &mut dicom_ul::ClientAssociation<TcpStream>) -> Command {
    match a.receive().unwrap() {
        Pdu::PData { data } => Command::decode(&data[0].data).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_garbage_data_set_gets_c000_and_the_association_goes_on() {
    let s = Server::start(&["--accept-any"]);
    let mut a = ClientAssociationOptions::new()
        .with_presentation_context(CT, vec![EXPLICIT_LE])
        .with_presentation_context(VERIFICATION, vec![EXPLICIT_LE])
        .calling_ae_title("HOSTILE")
        .establish_with(&format!("RADHUB@{}", s.addr()))
        .unwrap();
    let pcs = a.presentation_contexts().to_vec();
    let ct = pcs.iter().find(|p| p.abstract_syntax == CT).unwrap().id;
    let ver = pcs.iter().find(|p| p.abstract_syntax == VERIFICATION).unwrap().id;

    // Garbage, and a data set whose element claims 4 GiB.
    let lying = [0x08, 0x00, 0x18, 0x00, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2];
    for (n, data) in [vec![0xAB; 1000], lying.to_vec()].into_iter().enumerate() {
        let mut rq = Command::request(field::C_STORE_RQ, 1 + n as u16, CT, true);
        rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.3.4");
        send(&mut a, ct, &rq, Some(&data));
        let rsp = response(&mut a);
        assert_eq!(rsp.field(), Ok(field::C_STORE_RSP));
        assert_eq!(rsp.u16(tag::STATUS), Some(0xC000), "{:?}", rsp.str(tag::ERROR_COMMENT));
        assert!(!rsp.str(tag::ERROR_COMMENT).unwrap_or_default().is_empty());
    }
    // A SOP class other than the context's: 0x0122.
    let mut rq = Command::request(field::C_STORE_RQ, 5, "1.2.840.10008.5.1.4.1.1.4", true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.3.5");
    send(&mut a, ct, &rq, Some(&[0u8; 8]));
    assert_eq!(response(&mut a).u16(tag::STATUS), Some(0x0122));

    // The association is still good.
    send(&mut a, ver, &Command::request(field::C_ECHO_RQ, 9, VERIFICATION, false), None);
    assert_eq!(response(&mut a).u16(tag::STATUS), Some(0x0000));
    a.release().unwrap();

    let (_, data) = s.stop();
    let stats = support::json(&support::run(data.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 0, "refused input must leave nothing behind");
}

#[test]
fn the_association_limit_rejects_with_local_limit_exceeded() {
    let s = Server::start(&["--accept-any", "--max-associations", "2"]);
    let open: Vec<_> = (0..2)
        .map(|_| {
            ClientAssociationOptions::new()
                .with_abstract_syntax(VERIFICATION)
                .calling_ae_title("HOLDER")
                .establish_with(&format!("RADHUB@{}", s.addr()))
                .unwrap()
        })
        .collect();
    let (ok, out) = output(dcmtk("echoscu").args(["-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]));
    assert!(!ok && out.contains("Local Limit Exceeded"), "{out}");
    for a in open {
        a.release().unwrap();
    }
    // Slots come back once released.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !echo_ok(&s) {
        assert!(Instant::now() < deadline, "slots not freed after release");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// A key of a query identifier: tag, VR, value.
type QKey<'a> = (dicom_core::Tag, dicom_core::VR, &'a str);

/// A query identifier: QueryRetrieveLevel and the keys given, explicit VR LE.
fn identifier(level: &str, keys: &[QKey<'_>]) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    let mut o = dicom_object::InMemDicomObject::new_empty();
    o.put(DataElement::new(Tag(0x0008, 0x0052), VR::CS, PrimitiveValue::from(level)));
    for (t, vr, v) in keys {
        o.put(DataElement::new(*t, *vr, if v.is_empty() { PrimitiveValue::Empty } else { PrimitiveValue::from(*v) }));
    }
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(EXPLICIT_LE).unwrap();
    let mut out = Vec::new();
    o.write_dataset_with_ts(&mut out, ts).unwrap();
    out
}

fn assoc(s: &Server, contexts: &[(&str, &str)], roles: &[&str]) -> (dicom_ul::ClientAssociation<TcpStream>, Vec<(String, u8)>) {
    let mut o = ClientAssociationOptions::new().calling_ae_title("HOSTILE").read_timeout(Duration::from_secs(30));
    for (class, ts) in contexts {
        o = o.with_presentation_context(*class, vec![*ts]);
    }
    for class in roles {
        o = o.with_role_selection(*class, false, true);
    }
    let a = o.establish_with(&format!("RADHUB@{}", s.addr())).unwrap();
    let pcs = a.presentation_contexts().iter().map(|p| (p.abstract_syntax.clone(), p.id)).collect();
    (a, pcs)
}

fn pc(pcs: &[(String, u8)], class: &str) -> u8 {
    pcs.iter().find(|(c, _)| c == class).unwrap_or_else(|| panic!("{class} not accepted")).1
}

/// Every response to one request until its final status: (pending count, final command).
fn until_final(a: &mut dicom_ul::ClientAssociation<TcpStream>) -> (usize, Command) {
    let mut pending = 0;
    loop {
        let Pdu::PData { data } = a.receive().unwrap() else { panic!("not P-DATA") };
        for v in data {
            if v.value_type != PDataValueType::Command || !v.is_last {
                continue;
            }
            let c = Command::decode(&v.data).unwrap();
            match c.status().map(|s| s.0) {
                Some(0xFF00 | 0xFF01) => pending += 1,
                Some(_) if c.field().is_ok_and(|f| f & 0x8000 != 0) => return (pending, c),
                _ => panic!("unexpected command {:04X?}", c.field()),
            }
        }
    }
}

/// A hub with generated studies: (server, the study with the most bytes and its size).
fn hub_with_studies(extra: &[&str], gen: &[&str]) -> (Server, String, u64) {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), gen);
    let studies = support::json(&support::run(data.path(), &["ls", "studies", "--json"]));
    let big = studies.as_array().unwrap().iter().max_by_key(|s| s["bytes"].as_u64().unwrap()).unwrap();
    let (uid, bytes) = (big["uid"].as_str().unwrap().to_owned(), big["bytes"].as_u64().unwrap());
    (Server::start_in(data, extra), uid, bytes)
}

#[test]
fn silent_connections_take_no_association_slot() {
    let s = Server::start(&["--accept-any", "--max-associations", "2", "--handshake-timeout", "30"]);
    // Forty sockets from another host that never send a request.
    let mut silent: Vec<TcpStream> = (0..40).map(|_| support::connect_from("127.0.0.2", s.port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // Past the per-address budget (16 pending) they are closed at once, not held.
    let closed = silent.iter_mut().map(|c| support::closed_within(c, Duration::from_millis(50))).filter(|&gone| gone).count();
    assert_eq!(closed, 40 - 16, "connections over the per-address handshake budget");
    // The silent ones hold no association slot: a modality is served at once.
    let t = Instant::now();
    assert!(echo_ok(&s), "two association slots were held by silent sockets");
    assert!(echo_ok(&s) && echo_ok(&s));
    support::reliability(
        "40 silent TCP connections from one host, 2 association slots",
        "served others at once; 24 over the per-address budget closed",
        t.elapsed(),
        s.pid(),
    );
}

/// Sends a C-GET for `study` with the SCP role for the storage classes given.
fn c_get(a: &mut dicom_ul::ClientAssociation<TcpStream>, pcs: &[(String, u8)], study: &str) {
    let mut rq = Command::request(field::C_GET_RQ, 1, STUDY_ROOT_GET, true);
    rq.set_u16(tag::PRIORITY, 0);
    send(a, pc(pcs, STUDY_ROOT_GET), &rq, Some(&identifier("STUDY", &[(dicom_core::Tag(0x0020, 0x000D), dicom_core::VR::UI, study)])));
}

/// The storage classes `radhub testdata` writes.
const GENERATED: [&str; 5] = [CT, "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.6.1"];

/// Checks that the one association slot is held, waits until it is given
/// back, and prints the case's RELIABILITY line.
fn held_then_freed(s: &Server, case: &str, what: &str) {
    std::thread::sleep(Duration::from_millis(500));
    assert!(!echo_ok(s), "the association limit of 1 was not in use");
    let took = until_echo(s, what);
    support::reliability(case, "association aborted, slot freed", took, s.pid());
}

/// Waits until an echo is served again; the time it took.
fn until_echo(s: &Server, what: &str) -> Duration {
    let t = Instant::now();
    while !echo_ok(s) {
        assert!(t.elapsed() < Duration::from_secs(20), "{what} kept its association for 20 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    t.elapsed()
}

#[test]
fn a_peer_that_stops_answering_loses_its_association_after_the_dimse_timeout() {
    let (s, study, _) =
        hub_with_studies(&["--accept-any", "--max-associations", "1", "--dimse-timeout", "2"], &["--patients", "1", "--max-slices", "4", "--ct-size", "64"]);
    let mut contexts = vec![(STUDY_ROOT_GET, EXPLICIT_LE)];
    contexts.extend(GENERATED.iter().map(|c| (*c, EXPLICIT_LE)));
    let (mut a, pcs) = assoc(&s, &contexts, &GENERATED);
    c_get(&mut a, &pcs, &study);
    // The first C-STORE sub-operation arrives, and is never answered.
    held_then_freed(&s, "C-GET requestor that answers no C-STORE (DIMSE timeout 2 s)", "a C-GET requestor that stopped answering");
    drop(a);
}

#[test]
fn a_peer_that_stops_reading_loses_its_association_after_the_write_timeout() {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, RequestorRoles, UserVariableItem};
    // CT of 2048² (8 MiB an image): one sub-operation's data set outgrows
    // any socket buffer, so its write stalls (a peer answers each C-STORE
    // only after its data set, so smaller ones would all fit).
    let (s, study, bytes) =
        hub_with_studies(&["--accept-any", "--max-associations", "1", "--write-timeout", "2"], &["--patients", "1", "--max-slices", "2", "--ct-size", "2048"]);
    assert!(bytes > 8 << 20, "the largest study is only {bytes} bytes");
    // By hand, to give the socket a 4 KiB receive buffer.
    let mut sock = support::connect_from("127.0.0.1", s.port);
    let mut contexts = vec![PresentationContextProposed { id: 1, abstract_syntax: STUDY_ROOT_GET.into(), transfer_syntaxes: vec![EXPLICIT_LE.into()] }];
    let mut vars = vec![UserVariableItem::MaxLength(16384), UserVariableItem::ImplementationClassUID("1.2.826.0.1.3680043.8.498.1".into())];
    for (n, c) in GENERATED.iter().enumerate() {
        contexts.push(PresentationContextProposed { id: 3 + 2 * n as u8, abstract_syntax: (*c).into(), transfer_syntaxes: vec![EXPLICIT_LE.into()] });
        vars.push(UserVariableItem::ScuScpRoleSelectionSubItem((*c).into(), RequestorRoles { scu: false, scp: true }));
    }
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "HOSTILE".into(),
        called_ae_title: "RADHUB".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: contexts,
        user_variables: vars,
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &rq).unwrap();
    sock.write_all(&out).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 6];
    sock.read_exact(&mut head).unwrap();
    let mut ac = head.to_vec();
    ac.resize(6 + u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize, 0);
    sock.read_exact(&mut ac[6..]).unwrap();
    assert!(matches!(dicom_ul::read_pdu(&mut ac.as_slice(), 1 << 20, false), Ok(Some(Pdu::AssociationAC(_)))));
    let mut pdata = |value_type, data: Vec<u8>| {
        let mut out = Vec::new();
        dicom_ul::write_pdu(&mut out, &Pdu::PData { data: vec![PDataValue { presentation_context_id: 1, value_type, is_last: true, data }] }).unwrap();
        sock.write_all(&out).unwrap();
    };
    let mut get = Command::request(field::C_GET_RQ, 1, STUDY_ROOT_GET, true);
    get.set_u16(tag::PRIORITY, 0);
    pdata(PDataValueType::Command, get.encode());
    pdata(PDataValueType::Data, identifier("STUDY", &[(dicom_core::Tag(0x0020, 0x000D), dicom_core::VR::UI, &study)]));
    // ...and nothing is read from here on.
    held_then_freed(&s, "C-GET requestor that stops reading (write timeout 2 s)", "a C-GET requestor that stopped reading");
    drop(sock);
}

#[test]
fn query_identifiers_are_bounded_in_size_and_in_work() {
    let s = Server::start(&["--accept-any"]);
    let (mut a, pcs) = assoc(&s, &[(STUDY_ROOT_FIND, IMPLICIT_LE), (VERIFICATION, EXPLICIT_LE)], &[]);
    let find = pc(&pcs, STUDY_ROOT_FIND);
    // 2 MiB: refused unread, out of resources.
    let t = Instant::now();
    send(&mut a, find, &Command::request(field::C_FIND_RQ, 1, STUDY_ROOT_FIND, true), Some(&vec![0u8; 2 << 20]));
    let (n, rsp) = until_final(&mut a);
    assert_eq!((n, rsp.u16(tag::STATUS)), (0, Some(0xA700)), "{:?}", rsp.str(tag::ERROR_COMMENT));
    assert!(rsp.str(tag::ERROR_COMMENT).unwrap_or_default().contains("identifier over"));
    support::reliability("C-FIND identifier of 2 MiB", "A700: identifier over 1048576 bytes", t.elapsed(), s.pid());
    // 900 KiB of empty implicit-VR elements and a stray byte: the scan is
    // linear, refused at once (quadratic, it took minutes).
    let mut zeros = vec![0u8; 900 << 10];
    zeros.push(1);
    let t = Instant::now();
    send(&mut a, find, &Command::request(field::C_FIND_RQ, 2, STUDY_ROOT_FIND, true), Some(&zeros));
    let (_, rsp) = until_final(&mut a);
    assert_eq!(rsp.u16(tag::STATUS), Some(0xC000), "{:?}", rsp.str(tag::ERROR_COMMENT));
    assert!(t.elapsed() < Duration::from_secs(3), "a 900 KiB identifier took {:?}", t.elapsed());
    support::reliability("C-FIND identifier of 900 KiB empty elements", "C000: truncated", t.elapsed(), s.pid());
    send(&mut a, pc(&pcs, VERIFICATION), &Command::request(field::C_ECHO_RQ, 3, VERIFICATION, false), None);
    assert_eq!(response(&mut a).u16(tag::STATUS), Some(0x0000));
}

#[test]
fn c_find_matches_are_capped() {
    let (s, _, _) = hub_with_studies(&["--accept-any", "--max-find-matches", "3"], &["--patients", "2", "--max-slices", "2", "--ct-size", "32"]);
    let (mut a, pcs) = assoc(&s, &[(STUDY_ROOT_FIND, EXPLICIT_LE)], &[]);
    let t = Instant::now();
    let id = identifier("IMAGE", &[(dicom_core::Tag(0x0008, 0x0018), dicom_core::VR::UI, "")]);
    send(&mut a, pc(&pcs, STUDY_ROOT_FIND), &Command::request(field::C_FIND_RQ, 1, STUDY_ROOT_FIND, true), Some(&id));
    let (n, rsp) = until_final(&mut a);
    assert_eq!((n, rsp.u16(tag::STATUS)), (3, Some(0xA700)), "{:?}", rsp.str(tag::ERROR_COMMENT));
    assert!(rsp.str(tag::ERROR_COMMENT).unwrap_or_default().contains("narrow the query"));
    support::reliability("universal IMAGE-level C-FIND over the match cap (3)", "3 matches, then A700: narrow the query", t.elapsed(), s.pid());
}

#[test]
fn a_retrieve_without_its_unique_keys_selects_nothing() {
    // A move destination nothing listens at: reaching for it would answer A702.
    let closed = support::free_port();
    let (s, study, _) =
        hub_with_studies(&["--accept-any", "--peer", &format!("DEST@127.0.0.1:{closed}")], &["--patients", "1", "--max-slices", "2", "--ct-size", "32"]);
    let (mut a, pcs) = assoc(&s, &[(STUDY_ROOT_MOVE, EXPLICIT_LE)], &[]);
    let mv = pc(&pcs, STUDY_ROOT_MOVE);
    let study_uid = dicom_core::Tag(0x0020, 0x000D);
    let series_uid = dicom_core::Tag(0x0020, 0x000E);
    let ui = dicom_core::VR::UI;
    let cases: [(&str, &str, Vec<QKey<'_>>); 4] = [
        ("empty Study Instance UID", "STUDY", vec![(study_uid, ui, "")]),
        ("wildcard Study Instance UID", "STUDY", vec![(study_uid, ui, "*")]),
        ("no Study Instance UID above SERIES", "SERIES", vec![(series_uid, ui, "1.2.3")]),
        ("a list above the retrieve level", "SERIES", vec![(study_uid, ui, "1.2.3\\4.5.6"), (series_uid, ui, "1.2.3.4")]),
    ];
    for (n, (what, level, keys)) in cases.iter().enumerate() {
        let mut rq = Command::request(field::C_MOVE_RQ, 1 + n as u16, STUDY_ROOT_MOVE, true);
        rq.set_str(tag::MOVE_DESTINATION, "DEST");
        let t = Instant::now();
        send(&mut a, mv, &rq, Some(&identifier(level, keys)));
        let (_, rsp) = until_final(&mut a);
        assert_eq!(rsp.u16(tag::STATUS), Some(0xA900), "{what}: {:?}", rsp.str(tag::ERROR_COMMENT));
        support::reliability(&format!("C-MOVE with {what}"), &format!("A900: {}", rsp.str(tag::ERROR_COMMENT).unwrap_or_default()), t.elapsed(), s.pid());
    }
    // With its key the study is selected (and the closed destination fails the move).
    let mut rq = Command::request(field::C_MOVE_RQ, 9, STUDY_ROOT_MOVE, true);
    rq.set_str(tag::MOVE_DESTINATION, "DEST");
    send(&mut a, mv, &rq, Some(&identifier("STUDY", &[(study_uid, ui, &study)])));
    assert_eq!(until_final(&mut a).1.u16(tag::STATUS), Some(0xA702));
}

#[test]
fn c_get_sends_nothing_on_contexts_the_requestor_took_no_scp_role_for() {
    let (s, study, _) = hub_with_studies(&["--accept-any"], &["--patients", "1", "--max-slices", "2", "--ct-size", "32"]);
    let classes =
        ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.6.1"];
    let mut contexts = vec![(STUDY_ROOT_GET, EXPLICIT_LE)];
    contexts.extend(classes.iter().map(|c| (*c, EXPLICIT_LE)));
    // Storage contexts, but no SCP/SCU role selection: radhub may not send C-STOREs on them.
    let (mut a, pcs) = assoc(&s, &contexts, &[]);
    let mut rq = Command::request(field::C_GET_RQ, 1, STUDY_ROOT_GET, true);
    rq.set_u16(tag::PRIORITY, 0);
    send(&mut a, pc(&pcs, STUDY_ROOT_GET), &rq, Some(&identifier("STUDY", &[(dicom_core::Tag(0x0020, 0x000D), dicom_core::VR::UI, &study)])));
    // Only C-GET responses come back (a C-STORE-RQ would fail `until_final`).
    let (_, rsp) = until_final(&mut a);
    assert_eq!(rsp.field(), Ok(field::C_GET_RSP));
    assert_eq!(rsp.u16(tag::STATUS), Some(0xA702), "every sub-operation fails");
    assert!(rsp.u16(tag::FAILED).unwrap_or(0) > 0);
    assert_eq!(rsp.u16(tag::COMPLETED), Some(0));
}

#[test]
fn a_known_ae_named_by_host_name_is_resolved_off_the_association_path() {
    // Resolved when the listener starts (and every few minutes), never while a peer waits.
    let s = Server::start(&["--peer", "NAMED@localhost:104"]);
    let t = Instant::now();
    let (ok, out) = output(dcmtk("echoscu").args(["-aet", "NAMED", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]));
    assert!(ok, "{out}");
    let (ok, _) = output(dcmtk("echoscu").args(["-aet", "NOT_NAMED", "-aec", "RADHUB", "127.0.0.1", &s.port.to_string()]));
    assert!(!ok, "an unknown AE was admitted");
    support::reliability("known AE by host name (localhost)", "admitted from the address resolved at start", t.elapsed(), s.pid());
}

#[test]
fn a_request_too_large_to_look_at_takes_no_slot_before_negotiation() {
    let s = Server::start(&["--accept-any", "--max-associations", "1", "--handshake-timeout", "30"]);
    // A-ASSOCIATE-RQ headers declaring 64 KiB and more, and nothing after.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = support::connect_from("127.0.0.8", s.port);
            c.write_all(&[0x01, 0x00, 0x00, 0x01, 0x00, 0x00]).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(echo_ok(&s), "a request not yet read took the only association slot");
    support::reliability("4 A-ASSOCIATE-RQ of 64 KiB declared, never sent (1 slot)", "the slot stays free; others served", t.elapsed(), s.pid());
    drop(stalled);
}

#[test]
fn a_retrieve_naming_one_uid_many_times_sends_it_once() {
    let (s, study, _) = hub_with_studies(&["--accept-any"], &["--patients", "1", "--max-slices", "3", "--ct-size", "32"]);
    let (mut a, pcs) = assoc(&s, &[(STUDY_ROOT_FIND, EXPLICIT_LE)], &[]);
    let ui = dicom_core::VR::UI;
    let id = identifier("IMAGE", &[(dicom_core::Tag(0x0020, 0x000D), ui, &study), (dicom_core::Tag(0x0008, 0x0018), ui, "")]);
    send(&mut a, pc(&pcs, STUDY_ROOT_FIND), &Command::request(field::C_FIND_RQ, 1, STUDY_ROOT_FIND, true), Some(&id));
    let (n, _) = until_final(&mut a);
    a.release().unwrap();
    assert!(n >= 3, "{n} instances in the study");
    let dir = tempfile::tempdir().unwrap();
    let many = vec![study.as_str(); 500].join("\\");
    let (_, out) = output(
        dcmtk("getscu")
            .args(["-v", "-aec", "RADHUB", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", &format!("StudyInstanceUID={many}"), "-od"])
            .arg(dir.path())
            .args(["127.0.0.1", &s.port.to_string()]),
    );
    let completed: usize =
        out.lines().find(|l| l.contains("Number of Completed Suboperations")).and_then(|l| l.rsplit(':').next()?.trim().parse().ok()).unwrap_or(0);
    assert_eq!(completed, n, "{out}");
}
