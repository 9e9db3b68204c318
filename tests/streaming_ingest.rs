//! C-STORE data sets go to staging as their PDUs arrive: the hub's memory
//! does not grow with the instance, a data set over the configured maximum
//! is refused with A700, and one cut off mid-way leaves nothing behind.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};
use pacs_gateway::command::{field, tag, Command};
use support::Server;

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Bytes per P-DATA fragment the test sends (the hub accepts 256 KiB PDUs).
const FRAGMENT: usize = 64 << 10;

fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
    let mut v = v.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" { 0 } else { b' ' });
    }
    out.extend(g.to_le_bytes());
    out.extend(e.to_le_bytes());
    out.extend(vr);
    out.extend((v.len() as u16).to_le_bytes());
    out.extend(v);
}

/// A multi-frame CT data set of `frames` 512×512 16-bit frames: its
/// elements before Pixel Data, and how many pixel bytes follow them.
fn ct_header(sop: &str, frames: u32) -> (Vec<u8>, u64) {
    let pixels = 512u64 * 512 * 2 * u64::from(frames);
    let mut d = Vec::new();
    el(&mut d, 0x0008, 0x0016, b"UI", CT.as_bytes());
    el(&mut d, 0x0008, 0x0018, b"UI", sop.as_bytes());
    el(&mut d, 0x0008, 0x0060, b"CS", b"CT");
    el(&mut d, 0x0010, 0x0010, b"PN", b"STREAM^LARGE");
    el(&mut d, 0x0010, 0x0020, b"LO", b"STREAM1");
    el(&mut d, 0x0020, 0x000D, b"UI", format!("{sop}.1").as_bytes());
    el(&mut d, 0x0020, 0x000E, b"UI", format!("{sop}.2").as_bytes());
    el(&mut d, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0004, b"CS", b"MONOCHROME2");
    el(&mut d, 0x0028, 0x0008, b"IS", frames.to_string().as_bytes());
    el(&mut d, 0x0028, 0x0010, b"US", &512u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0011, b"US", &512u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0102, b"US", &11u16.to_le_bytes());
    el(&mut d, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    d.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    d.extend((pixels as u32).to_le_bytes());
    (d, pixels)
}

/// The `i`th fragment of pixel bytes: a pattern, numbered so that each differs.
fn pixel_fragment(i: u64, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|j| (j % 251) as u8).collect();
    let n = len.min(8);
    f[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    f
}

fn associate(s: &Server) -> (ClientAssociation<TcpStream>, u8) {
    let a = ClientAssociationOptions::new()
        .with_presentation_context(CT, vec![EXPLICIT_LE])
        .calling_ae_title("BIGMODALITY")
        .read_timeout(Duration::from_secs(120))
        .establish_with(&format!("RADHUB@{}", s.addr()))
        .unwrap();
    let pc = a.presentation_contexts().iter().find(|p| p.abstract_syntax == CT).unwrap().id;
    (a, pc)
}

fn pdv(a: &mut ClientAssociation<TcpStream>, pc: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) {
    a.send(&Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type, is_last, data }] }).unwrap();
}

/// Sends a C-STORE of a `frames`-frame CT, fragment by fragment, calling
/// `during` after each; stops after `cut_after` pixel bytes if given
/// (the data set never finished). Returns the BLAKE3 of the data set sent.
fn store_ct(
    a: &mut ClientAssociation<TcpStream>,
    pc: u8,
    id: u16,
    sop: &str,
    frames: u32,
    cut_after: Option<u64>,
    mut during: impl FnMut(u64),
) -> blake3::Hash {
    let mut rq = Command::request(field::C_STORE_RQ, id, CT, true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, sop);
    pdv(a, pc, PDataValueType::Command, true, rq.encode());
    let (header, pixels) = ct_header(sop, frames);
    let mut hash = blake3::Hasher::new();
    hash.update(&header);
    pdv(a, pc, PDataValueType::Data, false, header);
    let (mut sent, mut i) = (0u64, 0u64);
    while sent < pixels {
        let n = (pixels - sent).min(FRAGMENT as u64) as usize;
        let f = pixel_fragment(i, n);
        hash.update(&f);
        sent += n as u64;
        i += 1;
        pdv(a, pc, PDataValueType::Data, sent == pixels, f);
        during(sent);
        if cut_after.is_some_and(|c| sent >= c) {
            break;
        }
    }
    hash.finalize()
}

fn status(a: &mut ClientAssociation<TcpStream>) -> (u16, String) {
    match a.receive().unwrap() {
        Pdu::PData { data } => {
            let rsp = Command::decode(&data[0].data).unwrap();
            assert_eq!(rsp.field(), Ok(field::C_STORE_RSP));
            (rsp.u16(tag::STATUS).unwrap(), rsp.str(tag::ERROR_COMMENT).unwrap_or_default())
        }
        other => panic!("{other:?}"),
    }
}

fn stored_file(data: &Path, sop: &str) -> PathBuf {
    let hex = radhub::store::ObjectKey::for_uid(sop).hex();
    data.join("objects").join(&hex[..2]).join(format!("{hex}.dcm"))
}

/// BLAKE3 of the last `n` bytes of a file: its data set after the file meta group.
fn tail_hash(p: &Path, n: u64) -> blake3::Hash {
    let mut f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    assert!(len > n, "{} holds {len} bytes, fewer than the {n} sent", p.display());
    std::io::copy(&mut (&mut f).take(len - n), &mut std::io::sink()).unwrap();
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize()
}

#[test]
fn an_instance_far_larger_than_the_hubs_memory_is_stored_as_it_arrives() {
    let s = Server::start(&["--accept-any"]);
    let before = support::peak_kib(s.pid());
    let (mut a, pc) = associate(&s);
    let sop = "2.25.4000000000000000000000000000000001";
    let frames = 800; // 400 MiB of pixels
    let mut staged_while_sending = 0u64;
    let data = s.data.path().to_owned();
    let t = Instant::now();
    let sent = store_ct(&mut a, pc, 1, sop, frames, None, |n| {
        // Halfway: the bytes so far are on disk in staging, not in memory.
        if n == 200 << 20 {
            std::thread::sleep(Duration::from_millis(300));
            staged_while_sending = support::staging_debris(&data).iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).max().unwrap_or(0);
        }
    });
    assert_eq!(status(&mut a), (0x0000, String::new()));
    support::reliability("a 400 MiB instance over one association", "stored", t.elapsed(), s.pid());
    a.release().unwrap();
    let peak = support::peak_kib(s.pid());
    assert!(staged_while_sending >= 100 << 20, "halfway through, the staging file held {staged_while_sending} bytes");
    // The hub's whole peak, before and after: far under the instance's 400 MiB.
    assert!(peak < 160 << 10, "peak RSS {} MiB storing a 400 MiB instance (at start {} MiB)", peak >> 10, before >> 10);
    let (ct, _) = ct_header(sop, frames);
    let dataset_len = ct.len() as u64 + 512 * 512 * 2 * u64::from(frames);
    assert_eq!(tail_hash(&stored_file(&data, sop), dataset_len), sent, "the stored data set is the one sent, byte for byte");
    assert!(support::staging_debris(&data).is_empty(), "staging left: {:?}", support::staging_debris(&data));
    let (_, dir) = s.stop();
    let stats = support::json(&support::run(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 1);
    support::fault_row(
        "streaming_ingest::an_instance_far_larger_than_the_hubs_memory_is_stored_as_it_arrives",
        "one 400 MiB instance (C-STORE)",
        "none",
        1,
        1,
        peak >> 10,
    );
}

#[test]
fn a_data_set_over_the_maximum_gets_a700_and_the_association_goes_on() {
    let s = Server::start(&["--accept-any", "--max-instance-bytes", "8000000"]);
    let (mut a, pc) = associate(&s);
    store_ct(&mut a, pc, 1, "2.25.4000000000000000000000000000000002", 40, None, |_| {});
    let (code, why) = status(&mut a);
    assert_eq!(code, 0xA700, "{why}");
    assert!(why.contains("8000000"), "{why}");
    store_ct(&mut a, pc, 2, "2.25.4000000000000000000000000000000003", 4, None, |_| {});
    assert_eq!(status(&mut a).0, 0x0000);
    a.release().unwrap();
    let (_, dir) = s.stop();
    assert!(support::staging_debris(dir.path()).is_empty(), "staging left: {:?}", support::staging_debris(dir.path()));
    let stats = support::json(&support::run(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 1, "only the instance under the maximum is kept");
}

#[test]
fn a_data_set_cut_off_by_its_sender_leaves_nothing_behind() {
    let s = Server::start(&["--accept-any"]);
    let data = s.data.path().to_owned();
    let (mut a, pc) = associate(&s);
    let mut staged = 0u64;
    store_ct(&mut a, pc, 1, "2.25.4000000000000000000000000000000004", 100, Some(16 << 20), |n| {
        if n >= 16 << 20 {
            std::thread::sleep(Duration::from_millis(300));
            staged = support::staging_debris(&data).iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum();
        }
    });
    assert!(staged >= 8 << 20, "the part sent was being staged: {staged} bytes");
    a.abort().unwrap();
    let peak = support::peak_kib(s.pid()) >> 10;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !support::staging_debris(&data).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(support::staging_debris(&data).is_empty(), "an abandoned data set left {:?}", support::staging_debris(&data));
    // The hub still serves.
    let (mut b, pc) = associate(&s);
    store_ct(&mut b, pc, 1, "2.25.4000000000000000000000000000000005", 2, None, |_| {});
    assert_eq!(status(&mut b).0, 0x0000);
    b.release().unwrap();
    let (_, dir) = s.stop();
    let stats = support::json(&support::run(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 1);
    support::fault_row(
        "a_data_set_cut_off_by_its_sender_leaves_nothing_behind",
        "a 50 MiB C-STORE, then one of 1 MiB",
        "A-ABORT after 16 MiB of the data set",
        1,
        1,
        peak,
    );
}

/// A Part 10 file of a `frames`-frame CT, whole.
fn ct_file(sop: &str, frames: u32) -> Vec<u8> {
    let (mut ds, pixels) = ct_header(sop, frames);
    let (mut added, mut i) = (0u64, 0u64);
    while added < pixels {
        let n = (pixels - added).min(FRAGMENT as u64) as usize;
        ds.extend(pixel_fragment(i, n));
        added += n as u64;
        i += 1;
    }
    pacs_gateway::store::part10(CT, sop, EXPLICIT_LE, "STOWTEST", &ds)
}

fn stow_body(parts: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(b"\r\n--B0undary\r\nContent-Type: application/dicom\r\n\r\n");
        body.extend_from_slice(p);
    }
    body.extend_from_slice(b"\r\n--B0undary--\r\n");
    body
}

/// POSTs a STOW-RS head announcing `length` bytes, then `body` in pieces.
fn stow_raw(s: &Server, token: &str, length: usize, body: &[u8], mut during: impl FnMut(usize)) -> TcpStream {
    use std::io::Write;
    let mut c = TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    write!(
        c,
        "POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=B0undary\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut sent = 0;
    for piece in body.chunks(1 << 20) {
        c.write_all(piece).unwrap();
        sent += piece.len();
        during(sent);
    }
    c
}

fn hub_with_admin(extra: &[&str]) -> (Server, String) {
    let data = tempfile::tempdir().unwrap();
    let token = support::user_token(data.path(), "admin1", "admin");
    (Server::start_in(data, extra), token)
}

#[test]
fn a_stow_body_far_larger_than_the_hubs_memory_is_stored_part_by_part() {
    let (s, token) = hub_with_admin(&["--stow-site", "RBD"]);
    let big = ct_file("2.25.4000000000000000000000000000000011", 500); // 250 MiB
    let small = ct_file("2.25.4000000000000000000000000000000012", 2);
    let body = stow_body(&[&big, &small]);
    let data = s.data.path().to_owned();
    let t = Instant::now();
    let mut staged_while_sending = 0u64;
    let mut c = stow_raw(&s, &token, body.len(), &body, |n| {
        if n == 128 << 20 {
            std::thread::sleep(Duration::from_millis(300));
            staged_while_sending = support::staging_debris(&data).iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).max().unwrap_or(0);
        }
    });
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..answer.len().min(600)]);
    support::reliability("a 250 MiB STOW-RS part and a small one", "200", t.elapsed(), s.pid());
    let peak = support::peak_kib(s.pid());
    assert!(staged_while_sending >= 64 << 20, "halfway through, the part's staging file held {staged_while_sending} bytes");
    assert!(peak < 160 << 10, "peak RSS {} MiB storing a 250 MiB STOW-RS body", peak >> 10);
    let rest = &big[big.len() - (64 << 20)..];
    assert_eq!(tail_hash(&stored_file(&data, "2.25.4000000000000000000000000000000011"), rest.len() as u64), blake3::hash(rest));
    assert!(support::staging_debris(&data).is_empty(), "staging left: {:?}", support::staging_debris(&data));
    let (_, dir) = s.stop();
    let stats = support::json(&support::run(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 2);
}

#[test]
fn a_cut_off_stow_upload_stores_none_of_its_parts_and_leaves_nothing_behind() {
    let (s, token) = hub_with_admin(&["--stow-site", "RBD"]);
    let whole = ct_file("2.25.4000000000000000000000000000000021", 4);
    let cut = ct_file("2.25.4000000000000000000000000000000022", 60);
    let body = stow_body(&[&whole, &cut]);
    let data = s.data.path().to_owned();
    let mut staged = 0usize;
    // The first part whole, the second half sent, then the connection closed.
    let sent = &body[..whole.len() + cut.len() / 2];
    let c = stow_raw(&s, &token, body.len(), sent, |_| {});
    std::thread::sleep(Duration::from_millis(500));
    staged += support::staging_debris(&data).len();
    assert!(staged >= 2, "both parts were being staged: {:?}", support::staging_debris(&data));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !support::staging_debris(&data).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(support::staging_debris(&data).is_empty(), "a cut-off upload left {:?}", support::staging_debris(&data));
    // Not even the whole first part is kept; the hub still takes uploads.
    let held = support::get(&s.http(), "/dicom-web/instances", &token).json();
    assert_eq!(held.as_array().map(Vec::len), Some(0), "{held}");
    let r = support::stow(&s.http(), &token, &[&whole]);
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, dir) = s.stop();
    let stats = support::json(&support::run(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["total"]["instances"], 1);
}
