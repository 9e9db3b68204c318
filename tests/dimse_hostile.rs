//! Hostile input on the DICOM port: each gets the right reject or abort,
//! memory stays bounded, and other associations keep being served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
fn unknown_abstract_syntax_is_not_accepted() {
    let s = Server::start(&["--accept-any"]);
    let r = ClientAssociationOptions::new().with_abstract_syntax("1.2.3.4.5.6.7").calling_ae_title("HOSTILE").establish_with(&format!("RADHUB@{}", s.addr()));
    let Err(e) = r else { panic!("an association for an unknown SOP class only was accepted") };
    let e = e.to_string();
    assert!(e.contains("no presentation contexts accepted") || e.to_lowercase().contains("presentation"), "{e}");
    assert!(echo_ok(&s));
}

fn send(a: &mut dicom_ul::ClientAssociation<TcpStream>, pc: u8, cmd: &Command, data: Option<&[u8]>) {
    a.send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Command, is_last: true, data: cmd.encode() }] })
        .unwrap();
    if let Some(d) = data {
        a.send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Data, is_last: true, data: d.to_vec() }] })
            .unwrap();
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
