//! Federation against three real PACS: an Orthanc per site, each loaded
//! with its share of generated data plus the identity cases real archives
//! hold (the same local ID at two sites for different people, a
//! placeholder NHS number, a bad check digit). radhub harvests them into
//! one index, links the records, and fetches remote-only studies on demand
//! by each site's retrieve method.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use serde_json::Value;
use support::{dcmtk, free_port, get, output, radhub, request, PeerProc};

const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER: Tag = Tag(0x0010, 0x0021);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const BIRTH: Tag = Tag(0x0010, 0x0030);
const SEX: Tag = Tag(0x0010, 0x0040);
const OTHER_IDS: Tag = Tag(0x0010, 0x1002);
const STUDY_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_UID: Tag = Tag(0x0020, 0x000E);
const SOP_UID: Tag = Tag(0x0008, 0x0018);

/// (code, AE title, retrieve method) of the three test sites.
const SITES: [(&str, &str, &str); 3] = [("RBD", "PACS_RBD", "c-move"), ("RD3", "PACS_RD3", "c-get"), ("R0D", "PACS_R0D", "c-move")];

/// The data set of a Part 10 file: what a C-STORE carries (the file meta
/// group is each holder's own).
fn dataset(file: &[u8]) -> &[u8] {
    assert_eq!(&file[128..132], b"DICM", "a Part 10 file");
    let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
    &file[144 + group_len..]
}

/// The parts of a multipart/related answer.
fn parts(reply: &support::Reply) -> Vec<Vec<u8>> {
    let ct = reply.header("content-type").unwrap_or_default();
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
    let delim = format!("--{boundary}");
    let body = &reply.body;
    let mut out = Vec::new();
    let mut at = 0;
    let find = |from: usize, pat: &[u8]| body[from..].windows(pat.len()).position(|w| w == pat).map(|p| p + from);
    while let Some(start) = find(at, delim.as_bytes()) {
        let after = start + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(after, b"\r\n\r\n") else { break };
        let content = head_end + 4;
        let Some(next) = find(content, format!("\r\n{delim}").as_bytes()) else { break };
        out.push(body[content..next].to_vec());
        at = next + 2;
    }
    out
}

/// Writes a variant of `src` as a new instance: new UIDs (suffix `tag`),
/// and the patient attributes given (an empty NHS number removes the item).
#[allow(clippy::too_many_arguments)]
fn variant(src: &Path, dst: &Path, tag: u32, issuer: &str, pid: &str, name: &str, birth: &str, sex: &str, nhs: &str) {
    let mut o = dicom_object::open_file(src).unwrap();
    let bump = |t: Tag| format!("{}.{tag}", support::attr(src, t).trim_end_matches('\0')).chars().take(64).collect::<String>();
    let (st, se, sop) = (bump(STUDY_UID), bump(SERIES_UID), bump(SOP_UID));
    o.put_str(STUDY_UID, VR::UI, st);
    o.put_str(SERIES_UID, VR::UI, se);
    o.put_str(SOP_UID, VR::UI, sop.clone());
    o.update_meta(|m| m.media_storage_sop_instance_uid = sop);
    o.put_str(PATIENT_ID, VR::LO, pid);
    o.put_str(ISSUER, VR::LO, issuer);
    o.put_str(PATIENT_NAME, VR::PN, name);
    o.put_str(BIRTH, VR::DA, birth);
    o.put_str(SEX, VR::CS, sex);
    if nhs.is_empty() {
        o.remove_element(OTHER_IDS);
    } else {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(PATIENT_ID, VR::LO, PrimitiveValue::from(nhs)),
            DataElement::new(ISSUER, VR::LO, PrimitiveValue::from("NHS")),
        ]);
        o.put(DataElement::new(OTHER_IDS, VR::SQ, dicom_core::value::DataSetSequence::from(vec![item])));
    }
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    o.write_to_file(dst).unwrap();
}

/// One site's record as the files hold it.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    nhs: Option<String>,
    birth: String,
    sex: String,
}

fn record_of(f: &Path) -> ((String, String), Record) {
    let o = dicom_object::open_file(f).unwrap();
    let nhs = o
        .element(OTHER_IDS)
        .ok()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .and_then(|items| items.iter().find_map(|i| i.element(PATIENT_ID).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_owned())))
        .and_then(|n| radhub::nhs::normalise(&n));
    let key = (support::attr(f, ISSUER), support::attr(f, PATIENT_ID));
    (key, Record { nhs, birth: support::attr(f, BIRTH), sex: support::attr(f, SEX) })
}

/// Every site's files: the generated ones and the identity cases.
struct Data {
    _dir: tempfile::TempDir,
    by_site: BTreeMap<String, Vec<PathBuf>>,
    /// The same local ID at RBD and RD3, two different people.
    twin_id: String,
    /// At R0D, naming RBD's issuer.
    misissued: PathBuf,
    /// Per site: a study of one long series (`LONG` instances; R0D's `LONGER`, of a patient of its own).
    long: BTreeMap<String, String>,
}

/// Instances in the long series: more than two parts of a split retrieve.
const LONG: usize = 70;
/// R0D's, long enough that its PACS is still sending when it is killed.
const LONGER: usize = 150;

/// A study of one series of `n` instances made from `src`: new UIDs
/// (suffix `tag`); `stranger`, a Patient ID for someone with no other record.
fn long_series(src: &Path, dir: &Path, tag: u32, n: usize, stranger: Option<&str>) -> Vec<PathBuf> {
    let bump = |t: Tag| format!("{}.{tag}", support::attr(src, t).trim_end_matches('\0'));
    let (st, se, sop) = (bump(STUDY_UID), bump(SERIES_UID), bump(SOP_UID));
    assert!(sop.len() + 4 <= 64, "{sop}: too long to number");
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let mut o = dicom_object::open_file(src).unwrap();
            let sop = format!("{sop}.{i}");
            o.put_str(STUDY_UID, VR::UI, st.clone());
            o.put_str(SERIES_UID, VR::UI, se.clone());
            o.put_str(SOP_UID, VR::UI, sop.clone());
            o.put_str(Tag(0x0020, 0x0013), VR::IS, (i + 1).to_string());
            if let Some(pid) = stranger {
                o.put_str(PATIENT_ID, VR::LO, pid);
                o.put_str(PATIENT_NAME, VR::PN, "LONG^SERIES");
                o.remove_element(OTHER_IDS);
            }
            o.update_meta(|m| m.media_storage_sop_instance_uid = sop);
            let f = dir.join(format!("{i}.dcm"));
            o.write_to_file(&f).unwrap();
            f
        })
        .collect()
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    support::testdata_files(&out, &["--patients", "10", "--studies-per-patient", "1", "--max-slices", "3", "--ct-size", "32"]);
    let mut by_site: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (code, _, _) in SITES {
        let files = walkdir::WalkDir::new(out.join(code)).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()).map(|e| e.into_path());
        by_site.insert(code.to_owned(), files.collect());
    }
    let extra = dir.path().join("extra");
    let rbd0 = by_site["RBD"][0].clone();
    let rd3_0 = by_site["RD3"][0].clone();
    // RD3 issues, to someone else, the Patient ID an RBD patient has.
    let twin_id = support::attr(&rbd0, PATIENT_ID);
    let f = extra.join("RD3/twin.dcm");
    variant(&rd3_0, &f, 91, "RD3", &twin_id, "TWIN^OTHER", "19991231", "M", "");
    by_site.get_mut("RD3").unwrap().push(f);
    // A placeholder NHS number at two sites, two different people: never linked.
    let f = extra.join("RBD/placeholder.dcm");
    variant(&rbd0, &f, 92, "RBD", "DPH0001", "PLACE^HOLDER", "19700101", "F", "9999999999");
    by_site.get_mut("RBD").unwrap().push(f);
    let f = extra.join("R0D/placeholder.dcm");
    variant(&rbd0, &f, 93, "R0D", "RBHPH0001", "OTHER^PERSON", "19800202", "M", "9999999999");
    by_site.get_mut("R0D").unwrap().push(f);
    // A bad check digit, the same demographics at two sites: not an NHS number, so not linked.
    for (site, pid, n) in [("RBD", "DBAD0001", 94), ("RD3", "PBAD001", 95)] {
        let f = extra.join(format!("{site}/bad-check.dcm"));
        variant(&rbd0, &f, n, site, pid, "CHECK^BAD", "19600606", "F", "9434765918");
        by_site.get_mut(site).unwrap().push(f);
    }
    // R0D's PACS holding a study whose Patient ID RBD issued: refused, reported, not indexed.
    let f = extra.join("R0D/misissued.dcm");
    variant(&rbd0, &f, 96, "RBD", "D7777777", "MIS^ISSUED", "19500505", "F", "");
    by_site.get_mut("R0D").unwrap().push(f.clone());
    let mut long = BTreeMap::new();
    let r0d_0 = by_site["R0D"][0].clone();
    for (site, src, tag, n, stranger) in [("RBD", &rbd0, 97, LONG, None), ("RD3", &rd3_0, 98, LONG, None), ("R0D", &r0d_0, 99, LONGER, Some("RLONG0001"))] {
        let files = long_series(src, &extra.join(format!("{site}/long")), tag, n, stranger);
        long.insert(site.to_owned(), support::attr(&files[0], STUDY_UID));
        by_site.get_mut(site).unwrap().extend(files);
    }
    Data { _dir: dir, by_site, twin_id, misissued: f, long }
}

/// An Orthanc as one site's PACS, loaded with `files` over its REST API;
/// it knows radhub, and `others` (AE, port) as move destinations.
fn pacs(ae: &str, hub_port: u16, others: &[(&str, u16)], files: &[PathBuf]) -> PeerProc {
    let mut modalities = vec![("RADHUB", hub_port)];
    modalities.extend_from_slice(others);
    let p = support::orthanc(ae, &modalities, serde_json::json!({"Name": ae}));
    let base = format!("http://127.0.0.1:{}", p.http);
    for f in files {
        let r = request(&base, "POST", "/instances", &[("Content-Type", "application/dicom")], &std::fs::read(f).unwrap());
        assert_eq!(r.status, 200, "{} into {ae}: {}", f.display(), String::from_utf8_lossy(&r.body));
    }
    p
}

fn orthanc_counts(p: &PeerProc) -> (u64, u64) {
    let (status, v) = p.rest("GET", "/statistics", None);
    assert_eq!(status, 200);
    (v["CountStudies"].as_u64().unwrap(), v["CountInstances"].as_u64().unwrap())
}

fn sites_file(dir: &Path, pacs: &[(&str, &str, &str, u16)]) -> PathBuf {
    let mut toml = String::new();
    for (code, ae, retrieve, port) in pacs {
        toml.push_str(&format!(
            "[[site]]\ncode = \"{code}\"\nname = \"{code} hospital\"\nissuer = \"{code}\"\nae_title = \"{ae}\"\nhost = \"127.0.0.1\"\nport = {port}\nretrieve = \"{retrieve}\"\n\n"
        ));
    }
    let p = dir.join("sites.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

/// `radhub serve` over `data` with `sites`, on the DICOM port the PACS know it by.
struct Hub {
    child: std::process::Child,
    http: String,
    data: PathBuf,
    sites: PathBuf,
}

impl Hub {
    fn start(data: &Path, sites: &Path, dicom_port: u16, extra: &[&str]) -> Hub {
        use std::io::{BufRead, BufReader};
        let http_port = free_port();
        let mut child = radhub()
            .env("RADHUB_LOG", "warn")
            .arg("--data")
            .arg(data)
            .arg("--sites")
            .arg(sites)
            .args(["serve", "--dicom-bind", &format!("127.0.0.1:{dicom_port}"), "--http-bind", &format!("127.0.0.1:{http_port}")])
            .args(["--sync-interval", "0", "--site-timeout", "2", "--fetch-wait", "20"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("DICOM listening"), "radhub serve did not start: {line:?}");
        Hub { child, http: format!("http://127.0.0.1:{http_port}"), data: data.to_owned(), sites: sites.to_owned() }
    }

    /// `radhub sync` beside the server (through it).
    fn sync(&self, args: &[&str]) -> Value {
        let (ok, out) = output(radhub().arg("--data").arg(&self.data).arg("--sites").arg(&self.sites).args(["sync", "--json"]).args(args));
        let json_start = out.find('[').unwrap_or_else(|| panic!("radhub sync: {out}"));
        let v: Value = serde_json::from_str(&out[json_start..]).unwrap_or_else(|e| panic!("radhub sync --json: {e}: {out}"));
        assert!(ok || v.as_array().is_some_and(|a| a.iter().any(|r| r["result"]["ok"] == false)), "radhub sync failed oddly: {out}");
        v
    }

    fn json(&self, path: &str, token: &str) -> Value {
        let r = get(&self.http, path, token);
        assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    }

    fn site(&self, code: &str, token: &str) -> Value {
        self.json("/api/sites", token).as_array().unwrap().iter().find(|s| s["code"] == code).cloned().unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A study of `files`, with its instances' files.
fn studies_of(files: &[PathBuf]) -> BTreeMap<String, Vec<PathBuf>> {
    let mut m: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        m.entry(support::attr(f, STUDY_UID)).or_default().push(f.clone());
    }
    m
}

/// What the site itself sends of a study: a C-MOVE from its PACS to a
/// plain storescp (`copy`), by SOP Instance UID.
fn site_copy(site: &PeerProc, copy: &PeerProc, study: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = copy.received();
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (ok, out) = output(dcmtk("movescu").args([
        "-aet",
        "RADHUB",
        "-aec",
        &site.ae,
        "-aem",
        &copy.ae,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &format!("StudyInstanceUID={study}"),
        "127.0.0.1",
        &site.port.to_string(),
    ]));
    assert!(ok, "movescu from {}: {out}", site.ae);
    std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).map(|f| (support::attr(&f, SOP_UID), std::fs::read(&f).unwrap())).collect()
}

/// Checks a WADO-RS answer holds exactly the instances `want` holds (of
/// one study, or the series given), each data set byte for byte as the site sends it.
fn assert_identical(reply: &support::Reply, want: &BTreeMap<String, Vec<u8>>, series: Option<&str>, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", String::from_utf8_lossy(&reply.body));
    let got = parts(reply);
    let mut seen = BTreeSet::new();
    for part in got {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &part).unwrap();
        let sop = support::attr(tmp.path(), SOP_UID);
        let original = want.get(&sop).unwrap_or_else(|| panic!("{what}: {sop} is not the site's"));
        assert!(dataset(&part) == dataset(original), "{what}: {sop} differs from the site's copy");
        seen.insert(sop);
    }
    let expected: BTreeSet<String> = want
        .iter()
        .filter(|(_, b)| {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), b).unwrap();
            series.is_none_or(|s| support::attr(tmp.path(), SERIES_UID) == s)
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(seen, expected, "{what}: the instances");
}

#[test]
fn three_pacs_harvested_linked_and_fetched_on_demand() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let hub_port = free_port();
    let copy = support::storescp("SITECOPY", &[]);
    let mut pacs: Vec<PeerProc> = SITES.iter().map(|(code, ae, _)| pacs(ae, hub_port, &[("SITECOPY", copy.port)], &d.by_site[*code])).collect();
    let sites = sites_file(dir.path(), &SITES.iter().zip(&pacs).map(|((c, ae, r), p)| (*c, *ae, *r, p.port)).collect::<Vec<_>>());
    let data_dir = dir.path().join("hub");
    std::fs::create_dir(&data_dir).unwrap();
    let admin = support::user_token(&data_dir, "admin", "admin");
    let reader = support::user_token(&data_dir, "clinician", "clinician");
    let radiologist = support::user_token(&data_dir, "rad", "radiologist");
    let storescp = support::storescp("STORESCP", &[]);
    let hub = Hub::start(
        &data_dir,
        &sites,
        hub_port,
        &["--peer", &format!("STORESCP@127.0.0.1:{}", storescp.port), "--peer", "VIEWER@127.0.0.1:104", "--priors", "3"],
    );

    // Harvest: the union of the three, nothing fetched.
    let t = Instant::now();
    let result = hub.sync(&[]);
    let took = t.elapsed();
    for r in result.as_array().unwrap() {
        assert_eq!(r["result"]["ok"], true, "{r}");
        let refused = if r["site"] == "R0D" { 1 } else { 0 };
        assert_eq!(r["result"]["refused"], refused, "{r}");
    }
    let r0d = result.as_array().unwrap().iter().find(|r| r["site"] == "R0D").unwrap();
    let why = r0d["result"]["refusals"][0].as_str().unwrap();
    assert!(why.contains(&support::attr(&d.misissued, STUDY_UID)) && why.contains("issued by RBD"), "{why}");
    let (mut want_studies, mut want_instances) = (0, 0);
    for ((code, _, _), p) in SITES.iter().zip(&pacs) {
        let (mut studies, mut instances) = orthanc_counts(p);
        if *code == "R0D" {
            // The mis-issued study stays out.
            (studies, instances) = (studies - 1, instances - 1);
        }
        assert_eq!(hub.site(code, &admin)["studies"], studies, "{code}'s studies");
        want_studies += studies;
        want_instances += instances;
    }
    let stats = hub.json("/api/admin/stats", &admin);
    assert_eq!((stats["total"]["studies"].as_u64(), stats["total"]["instances"].as_u64()), (Some(want_studies), Some(want_instances)), "{stats}");
    assert_eq!(stats["total"]["local_instances"], 0, "a harvest fetches nothing");
    eprintln!("harvest of {want_studies} studies, {want_instances} instances from 3 PACS: {took:?}");
    // Readers see only code, name and whether the site answers.
    let seen = hub.json("/api/sites", &reader);
    assert!(seen.as_array().unwrap().iter().all(|s| s.as_object().unwrap().len() == 3 && s["reachable"] == true), "{seen}");

    // Linking: each valid NHS number joins exactly the records the files give it.
    let mut records: BTreeMap<(String, String), Record> = BTreeMap::new();
    for files in d.by_site.values() {
        for f in files.iter().filter(|f| **f != d.misissued) {
            let (k, r) = record_of(f);
            records.insert(k, r);
        }
    }
    let mut groups: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for (k, r) in &records {
        if let Some(n) = &r.nhs {
            groups.entry(n.clone()).or_default().insert(k.clone());
        }
    }
    let mut linked_across = 0;
    for (nhs, want) in &groups {
        let v = hub.json(&format!("/api/patients/{nhs}"), &reader);
        let got: BTreeSet<(String, String)> =
            v["records"].as_array().unwrap().iter().map(|r| (r["issuer"].as_str().unwrap().to_owned(), r["patient_id"].as_str().unwrap().to_owned())).collect();
        assert_eq!(&got, want, "NHS {nhs}");
        linked_across += usize::from(want.len() > 1);
        // Every study of every site's record, each saying where it is held and that it is not here yet.
        let studies = v["studies"].as_array().unwrap();
        assert!(studies.iter().all(|s| s["held_at"].as_array().is_some_and(|h| h.len() == 1) && s["local"] == false), "{v}");
    }
    assert!(linked_across >= 2, "the data links people across sites");
    // The placeholder and the bad check digit link no one.
    for bad in ["9999999999", "9434765918"] {
        assert_eq!(get(&hub.http, &format!("/api/patients/{bad}"), &reader).status, 400, "{bad}");
    }
    let placeholder = hub.json("/api/patients?patient_id=DPH0001", &reader);
    assert_eq!(placeholder.as_array().unwrap().len(), 1);
    assert!(placeholder[0]["nhs_number"].is_null(), "{placeholder}");
    let bad = hub.json("/api/patients?name=CHECK*", &reader);
    assert_eq!(bad.as_array().unwrap().len(), 2, "two records, not one person: {bad}");
    assert!(bad.as_array().unwrap().iter().all(|p| p["nhs_number"].is_null()), "{bad}");
    // One local ID at two sites is two people.
    let twins = hub.json(&format!("/api/patients?patient_id={}", d.twin_id), &reader);
    let entries = twins.as_array().unwrap();
    let holding: Vec<(usize, String)> = entries
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p["records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["patient_id"] == d.twin_id.as_str())
                .map(move |r| (i, format!("{}/{}", r["issuer"], r["name"])))
        })
        .collect();
    assert_eq!(holding.len(), 2, "{twins}");
    assert_ne!(holding[0].0, holding[1].0, "one Patient ID at two sites shown as one person: {twins}");
    assert!(holding.iter().any(|(_, n)| n.contains("TWIN^OTHER") && n.contains("RD3")), "{holding:?}");

    // A full re-sync changes nothing.
    let t = Instant::now();
    let again = hub.sync(&["--full"]);
    eprintln!("full re-sync with nothing new: {:?}", t.elapsed());
    for r in again.as_array().unwrap() {
        assert_eq!(
            (r["result"]["ok"].as_bool(), r["result"]["studies_changed"].as_u64(), r["result"]["instances_added"].as_u64()),
            (Some(true), Some(0), Some(0)),
            "{r}"
        );
    }
    assert_eq!(hub.json("/api/admin/stats", &admin)["total"], stats["total"]);

    // WADO-RS of a remote-only study at the C-MOVE site: fetched, byte for byte.
    let mut rbd = studies_of(&d.by_site["RBD"]);
    rbd.remove(&d.long["RBD"]);
    let mut rbd_studies = rbd.iter();
    let (uid, _) = rbd_studies.next().unwrap();
    let r = get(&hub.http, &format!("/dicom-web/studies/{uid}"), &reader);
    assert_identical(&r, &site_copy(&pacs[0], &copy, uid), None, "WADO-RS of an RBD study (C-MOVE)");
    let s = hub.json(&format!("/api/studies/{uid}"), &reader);
    assert_eq!(s["local"], true, "{s}");
    assert_eq!(hub.site("RBD", &admin)["fetches"], 1);

    // Four clients at once: one fetch.
    let (uid, _) = rbd_studies.next().unwrap();
    let want = site_copy(&pacs[0], &copy, uid);
    let answers: Vec<support::Reply> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4).map(|_| sc.spawn(|| get(&hub.http, &format!("/dicom-web/studies/{uid}"), &reader))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_identical(a, &want, None, "concurrent WADO-RS");
    }
    assert_eq!(hub.site("RBD", &admin)["fetches"], 2, "concurrent requests share one fetch");

    // The C-GET site: a series by WADO-RS.
    let mut rd3 = studies_of(&d.by_site["RD3"]);
    rd3.remove(&d.long["RD3"]);
    let (uid, files) = rd3.iter().find(|(_, f)| f.len() > 1).unwrap();
    let series = support::attr(&files[0], SERIES_UID);
    let r = get(&hub.http, &format!("/dicom-web/studies/{uid}/series/{series}"), &reader);
    assert_identical(&r, &site_copy(&pacs[1], &copy, uid), Some(&series), "WADO-RS of an RD3 series (C-GET)");

    // A long series is split among the fetch's associations (IMAGE level, lists of UIDs), at both kinds of site.
    for (i, code) in ["RBD", "RD3"].into_iter().enumerate() {
        let uid = &d.long[code];
        let before = hub.site(code, &admin)["retrieves"].as_u64().unwrap();
        let r = get(&hub.http, &format!("/dicom-web/studies/{uid}"), &reader);
        assert_identical(&r, &site_copy(&pacs[i], &copy, uid), None, &format!("WADO-RS of a long {code} series"));
        let took = hub.site(code, &admin)["retrieves"].as_u64().unwrap() - before;
        assert!(took > 1, "{code}: a {LONG}-instance series came in {took} retrieve(s)");
    }

    // C-MOVE through radhub of a remote-only R0D study, to another AE.
    let r0d_files: Vec<PathBuf> = d.by_site["R0D"].iter().filter(|f| **f != d.misissued).cloned().collect();
    let mut r0d = studies_of(&r0d_files);
    r0d.remove(&d.long["R0D"]);
    let (uid, _) = r0d.iter().next().unwrap();
    let want = site_copy(&pacs[2], &copy, uid);
    let (ok, out) = output(dcmtk("movescu").args([
        "-aet",
        "VIEWER",
        "-aec",
        "RADHUB",
        "-aem",
        "STORESCP",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &format!("StudyInstanceUID={uid}"),
        "127.0.0.1",
        &hub_port.to_string(),
    ]));
    assert!(ok, "movescu through radhub: {out}");
    let received: Vec<PathBuf> = std::fs::read_dir(storescp.received()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(received.len(), want.len(), "{out}");
    for f in &received {
        let sop = support::attr(f, SOP_UID);
        assert!(dataset(&std::fs::read(f).unwrap()) == dataset(&want[&sop]), "C-MOVE through radhub: {sop} differs");
    }

    // Sending a study to another site's PACS: coerced to the patient's identity there.
    let person = groups
        .iter()
        .find(|(_, g)| g.iter().any(|(i, _)| i == "RBD") && g.iter().any(|(i, _)| i == "RD3"))
        .map(|(_, g)| g.clone())
        .expect("someone at RBD and RD3");
    let at = |issuer: &str| person.iter().find(|(i, _)| i == issuer).unwrap().1.clone();
    let (rbd_id, rd3_id) = (at("RBD"), at("RD3"));
    let (study, _) = rbd.iter().find(|(_, f)| support::attr(&f[0], PATIENT_ID) == rbd_id).unwrap();
    let auth = format!("Bearer {radiologist}");
    let send = |uid: &str, site: &str| {
        request(
            &hub.http,
            "POST",
            &format!("/api/studies/{uid}/send"),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            format!("{{\"site\":\"{site}\"}}").as_bytes(),
        )
    };
    let r = send(study, "RD3");
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!((report["patient"]["issuer"].as_str(), report["patient"]["patient_id"].as_str()), (Some("RD3"), Some(rd3_id.as_str())), "{report}");
    assert_eq!(report["sent"], report["instances"], "{report}");
    let (_, found) = pacs[1].rest("POST", "/tools/find", Some(&format!("{{\"Level\":\"Instance\",\"Query\":{{\"StudyInstanceUID\":\"{study}\"}}}}")));
    let ids = found.as_array().unwrap();
    assert_eq!(ids.len() as u64, report["sent"].as_u64().unwrap(), "{found}");
    for id in ids {
        let (_, tags) = pacs[1].rest("GET", &format!("/instances/{}/tags?simplify", id.as_str().unwrap()), None);
        assert_eq!((tags["PatientID"].as_str(), tags["IssuerOfPatientID"].as_str()), (Some(rd3_id.as_str()), Some("RD3")), "{tags}");
        let others = tags["OtherPatientIDsSequence"].as_array().unwrap();
        assert!(others.iter().any(|o| o["PatientID"] == rbd_id.as_str() && o["IssuerOfPatientID"] == "RBD"), "the original identity kept: {tags}");
    }
    // Harvested again, RD3 holds it too: under its own identity, noted, not another patient.
    let r = hub.sync(&["--site", "RD3", "--full"]);
    assert_eq!(r[0]["result"]["refused"], 0, "{r}");
    let s = hub.json(&format!("/api/studies/{study}"), &reader);
    assert_eq!(s["held_at"], serde_json::json!(["RBD", "RD3"]), "{s}");
    assert_eq!(s["patient"]["patient_id"], rbd_id.as_str(), "{s}");
    // Someone with no record at the destination: refused, nothing sent.
    let lonely = records
        .iter()
        .find(|((i, id), r)| i == "RBD" && r.nhs.as_ref().is_none_or(|n| groups[n].len() == 1) && rbd.values().any(|f| support::attr(&f[0], PATIENT_ID) == *id))
        .map(|(k, _)| k.1.clone())
        .unwrap();
    let (study, _) = rbd.iter().find(|(_, f)| support::attr(&f[0], PATIENT_ID) == lonely).unwrap();
    let r = send(study, "R0D");
    assert_eq!(r.status, 409, "{}", r.text());
    let (_, found) = pacs[2].rest("POST", "/tools/find", Some(&format!("{{\"Level\":\"Study\",\"Query\":{{\"StudyInstanceUID\":\"{study}\"}}}}")));
    assert_eq!(found.as_array().unwrap().len(), 0, "{found}");

    // A new study pushed for a patient: their relevant priors at other sites are fetched ahead.
    let (prior_uid, prior_files) = rd3.iter().find(|(_, f)| support::attr(&f[0], PATIENT_ID) == rd3_id).unwrap();
    let s = hub.json(&format!("/api/studies/{prior_uid}"), &reader);
    assert_eq!(s["local"], false, "{s}");
    let today = {
        let days = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400) as i64;
        radhub::dates::da(days)
    };
    let newer = dir.path().join("new-study.dcm");
    let nhs = records[&("RD3".to_owned(), rd3_id.clone())].nhs.clone().unwrap();
    let r = &records[&("RD3".to_owned(), rd3_id.clone())];
    variant(&prior_files[0], &newer, 97, "RBD", &rbd_id, &support::attr(&prior_files[0], PATIENT_NAME), &r.birth, &r.sex, &nhs);
    let mut o = dicom_object::open_file(&newer).unwrap();
    o.put_str(Tag(0x0008, 0x0020), VR::DA, today);
    o.write_to_file(&newer).unwrap();
    let (ok, out) = output(dcmtk("storescu").args(["-aet", "PACS_RBD", "-aec", "RADHUB", "127.0.0.1", &hub_port.to_string()]).arg(&newer));
    assert!(ok, "{out}");
    let t = Instant::now();
    while hub.json(&format!("/api/studies/{prior_uid}"), &reader)["local"] != true {
        assert!(t.elapsed() < Duration::from_secs(30), "the prior at RD3 was not fetched ahead");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A live query finds what a site got since the last harvest, tagged with the site.
    let (_, r0d_files0) = r0d.iter().next().unwrap();
    let late = dir.path().join("late.dcm");
    let src = &r0d_files0[0];
    let pid = support::attr(src, PATIENT_ID);
    let rec = &records[&("R0D".to_owned(), pid.clone())];
    variant(src, &late, 98, "R0D", &pid, &support::attr(src, PATIENT_NAME), &rec.birth, &rec.sex, rec.nhs.as_deref().unwrap_or(""));
    let late_uid = support::attr(&late, STUDY_UID);
    let base = format!("http://127.0.0.1:{}", pacs[2].http);
    assert_eq!(request(&base, "POST", "/instances", &[("Content-Type", "application/dicom")], &std::fs::read(&late).unwrap()).status, 200);
    let qido = |live: bool| {
        get(&hub.http, &format!("/dicom-web/studies?PatientID={pid}&includefield=00080054,00080056{}", if live { "&live=true" } else { "" }), &reader)
    };
    let uids_of = |r: &support::Reply| -> Vec<(String, String, String)> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let v = |t: &str| x[t]["Value"][0].as_str().unwrap_or("").to_owned();
                (v("0020000D"), v("00080054"), v("00080056"))
            })
            .collect()
    };
    assert!(!uids_of(&qido(false)).iter().any(|(u, _, _)| *u == late_uid), "the index knew of it before any harvest");
    let live = qido(true);
    assert_eq!(live.status, 200, "{}", live.text());
    assert!(uids_of(&live).contains(&(late_uid.clone(), "PACS_R0D".into(), "NEARLINE".into())), "{}", live.text());
    let t = Instant::now();
    while get(&hub.http, &format!("/api/studies/{late_uid}"), &reader).status != 200 {
        assert!(t.elapsed() < Duration::from_secs(10), "a study found live was not read into the index");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A site that hangs (SIGSTOP: it accepts connections, answers nothing): bounded, then 502/504.
    // (One with nothing held here: once a first instance is sent the answer is 200 and can only be cut.)
    let (uid, _) = rd3.iter().find(|(u, _)| hub.json(&format!("/api/studies/{u}"), &reader)["local_instances"] == 0).unwrap();
    let _ = Command::new("kill").args(["-STOP", &pacs[1].pid().to_string()]).status();
    let t = Instant::now();
    let r = get(&hub.http, &format!("/dicom-web/studies/{uid}"), &reader);
    let hung = t.elapsed();
    let _ = Command::new("kill").args(["-CONT", &pacs[1].pid().to_string()]).status();
    assert!(matches!(r.status, 502 | 504), "{} {:?}", r.status, r.headers);
    assert!(hung < Duration::from_secs(15), "a hung site held a request for {hung:?}");
    eprintln!("a hung site answered {} in {hung:?}", r.status);

    // A site killed (-9) during a retrieve: the answer begun is cut, never
    // passed off as whole; what arrived is held whole; the server serves on.
    let long = &d.long["R0D"];
    let (cut, before_kill) = {
        use std::io::{Read, Write};
        let addr = hub.http.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "GET /dicom-web/studies/{long} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {reader}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        // Until the first part is whole: the boundary seen twice in the body.
        while raw.windows(9).filter(|w| w == b"--radhub-").count() < 3 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the answer ended before its first part: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        }
        let _ = Command::new("kill").args(["-9", &pacs[2].pid().to_string()]).status();
        let before_kill = raw.len();
        let t = Instant::now();
        let _ = s.read_to_end(&mut raw);
        assert!(t.elapsed() < Duration::from_secs(30), "a cut answer took {:?} to end", t.elapsed());
        (raw, before_kill)
    };
    let text = String::from_utf8_lossy(&cut);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..200.min(text.len())]);
    let boundary = text.split("boundary=").nth(1).and_then(|b| b.split(['\r', ';', '"']).find(|x| !x.is_empty())).unwrap().to_owned();
    assert!(
        !text.contains(&format!("--{boundary}--")),
        "an answer cut by its site must not end as if whole ({} bytes, {before_kill} before the kill)",
        cut.len()
    );
    // What arrived before the kill may still be committing: wait until the
    // count stops moving, so that the listing below is of the same moment.
    let mut s = hub.json(&format!("/api/studies/{long}"), &reader);
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let again = hub.json(&format!("/api/studies/{long}"), &reader);
        if again["local_instances"] == s["local_instances"] {
            break;
        }
        s = again;
    }
    let held = s["local_instances"].as_u64().unwrap();
    assert!(held >= 1 && held < LONGER as u64, "{held} of {LONGER} held after the site was killed part way: {s}");
    // Each instance that arrived is whole: served from here, byte for byte as the site's file.
    let sources: BTreeMap<String, PathBuf> =
        d.by_site["R0D"].iter().filter(|f| support::attr(f, STUDY_UID) == *long).map(|f| (support::attr(f, SOP_UID), f.clone())).collect();
    let series = support::attr(sources.values().next().unwrap(), SERIES_UID);
    let listed = hub.json(&format!("/dicom-web/studies/{long}/series/{series}/instances?includefield=00080056"), &reader);
    let online: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["00080056"]["Value"][0] == "ONLINE")
        .map(|x| x["00080018"]["Value"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(online.len() as u64, held, "{listed}");
    for sop in &online {
        let r = get(&hub.http, &format!("/dicom-web/studies/{long}/series/{series}/instances/{sop}"), &reader);
        let got = parts(&r);
        assert_eq!(got.len(), 1, "{sop}: {}", r.status);
        assert!(dataset(&got[0]) == dataset(&std::fs::read(&sources[sop]).unwrap()), "{sop} is not whole");
    }

    // A site that stops: its remote-only studies answer 502 within the connect timeout.
    drop(pacs.pop());
    let (uid, _) = r0d.iter().nth(1).unwrap();
    let t = Instant::now();
    let r = get(&hub.http, &format!("/dicom-web/studies/{uid}"), &reader);
    assert!(matches!(r.status, 502 | 504), "{} {}", r.status, String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < Duration::from_secs(10), "a down site answered in {:?}", t.elapsed());
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/problem+json")));
    // And its harvest fails on its own: the others complete.
    let third = hub.sync(&[]);
    let by_code: BTreeMap<String, bool> =
        third.as_array().unwrap().iter().map(|r| (r["site"].as_str().unwrap().to_owned(), r["result"]["ok"] == true)).collect();
    assert_eq!(by_code, BTreeMap::from([("R0D".into(), false), ("RBD".into(), true), ("RD3".into(), true)]), "{third}");
    let s = hub.site("R0D", &admin);
    assert_eq!((s["reachable"].as_bool(), s["last_sync"]["ok"].as_bool()), (Some(false), Some(false)), "{s}");
    // A live query reports the silent site and answers with the others.
    let live = qido(true);
    assert_eq!(live.status, 200, "{}", live.text());
    assert!(live.headers.iter().any(|(k, v)| k == "warning" && v.contains("site R0D did not answer")), "{:?}", live.headers);
    assert!(s["last_sync"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
}

/// A harvest killed (-9) part way resumes where it stopped and ends with
/// the same index as one uninterrupted.
#[test]
fn a_harvest_killed_part_way_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let files = support::testdata_files(&dir.path().join("gen"), &["--patients", "24", "--studies-per-patient", "2", "--max-slices", "1", "--ct-size", "16"]);
    let rbd: Vec<PathBuf> = files.into_iter().filter(|f| f.components().any(|c| c.as_os_str() == "RBD")).collect();
    let p = pacs("PACS_RBD", free_port(), &[], &rbd);
    let sites = sites_file(dir.path(), &[("RBD", "PACS_RBD", "c-move", p.port)]);
    let data = dir.path().join("hub");
    let (studies, instances) = orthanc_counts(&p);
    // Narrow windows: many of them, so that the kill lands between two.
    let cmd = |d: &Path| {
        let mut c = radhub();
        c.env("RADHUB_LOG", "radhub::federation=info").arg("--data").arg(d).arg("--sites").arg(&sites).args(["sync", "--json"]);
        c
    };
    let mut child = cmd(&data).stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut windows_with_studies = 0;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 {
        if line.contains("harvest window done") && !line.contains("studies=0") {
            windows_with_studies += 1;
            if windows_with_studies == 1 {
                let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
                break;
            }
        }
        line.clear();
    }
    let _ = child.wait();
    assert_eq!(windows_with_studies, 1, "the harvest ended before a window with studies was done");
    let listed = support::run(&data, &["--sites", sites.to_str().unwrap(), "sites", "list", "--json"]);
    let v: Value = serde_json::from_slice(&listed.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&listed.stderr)));
    assert_eq!(v[0]["resumable"], true, "{v}");
    let out = cmd(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = support::run(&data, &["--sites", sites.to_str().unwrap(), "stats", "--json"]);
    let s: Value = serde_json::from_slice(&stats.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stats.stdout)));
    assert_eq!((s["total"]["studies"].as_u64(), s["total"]["instances"].as_u64()), (Some(studies), Some(instances)), "{s}");
}
