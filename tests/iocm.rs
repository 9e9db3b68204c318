//! IHE IOCM: a Key Object Selection rejection note sent by a site's AE
//! (DCMTK storescu) takes the instances it names out of C-FIND, QIDO-RS,
//! WADO-RS, C-GET and C-MOVE (DCMTK findscu, getscu, movescu as the
//! clients); the same instance sent again is refused; an admin restores,
//! rejects and deletes through the API, and `verify` keeps the rejected
//! files out of the index.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use support::{dcmtk, get, output, request, user_token, Server};

const KOS: &str = "1.2.840.10008.5.1.4.1.1.88.59";

fn item(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn text(tag: (u16, u16), vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(Tag(tag.0, tag.1), vr, PrimitiveValue::from(v))
}

fn seq(tag: (u16, u16), items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(Tag(tag.0, tag.1), VR::SQ, DataSetSequence::from(items))
}

/// A rejection note (KOS, Document Title `code`) in `study` naming `refs`
/// (series, SOP class, SOP instance), for the patient the study is held for.
fn rejection_note(dir: &Path, study: &str, patient_id: &str, code: &str, refs: &[(String, String, String)], n: u32) -> PathBuf {
    let sop = format!("1.2.826.0.1.3680043.8.498.77.{n}");
    let mut by_series: std::collections::BTreeMap<&str, Vec<InMemDicomObject>> = Default::default();
    for (series, class, inst) in refs {
        by_series.entry(series).or_default().push(item(vec![text((0x0008, 0x1150), VR::UI, class), text((0x0008, 0x1155), VR::UI, inst)]));
    }
    let series_items = by_series.into_iter().map(|(s, sops)| item(vec![text((0x0020, 0x000E), VR::UI, s), seq((0x0008, 0x1199), sops)])).collect();
    let obj = item(vec![
        text((0x0008, 0x0016), VR::UI, KOS),
        text((0x0008, 0x0018), VR::UI, &sop),
        text((0x0008, 0x0060), VR::CS, "KO"),
        text((0x0010, 0x0020), VR::LO, patient_id),
        text((0x0010, 0x0010), VR::PN, "REJECTION^NOTE"),
        text((0x0020, 0x000D), VR::UI, study),
        text((0x0020, 0x000E), VR::UI, &format!("{sop}.1")),
        text((0x0040, 0xA040), VR::CS, "CONTAINER"),
        seq(
            (0x0040, 0xA043),
            vec![item(vec![text((0x0008, 0x0100), VR::SH, code), text((0x0008, 0x0102), VR::SH, "DCM"), text((0x0008, 0x0104), VR::LO, "Rejected")])],
        ),
        seq((0x0040, 0xA375), vec![item(vec![text((0x0020, 0x000D), VR::UI, study), seq((0x0008, 0x1115), series_items)])]),
    ]);
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1").media_storage_sop_class_uid(KOS).media_storage_sop_instance_uid(&sop))
        .unwrap();
    let path = dir.join(format!("kos{n}.dcm"));
    file.write_to_file(&path).unwrap();
    path
}

/// SOP Instance UIDs C-FIND answers at IMAGE level (Study Root,
/// hierarchical: one query per series) for the series of a study.
fn cfind_instances(server: &Server, study: &str, series: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for se in series {
        let (ok, out) = output(dcmtk("findscu").args([
            "-v",
            "-S",
            "-aet",
            "READER",
            "-aec",
            "RADHUB",
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            &format!("StudyInstanceUID={study}"),
            "-k",
            &format!("SeriesInstanceUID={se}"),
            "-k",
            "SOPInstanceUID",
            "127.0.0.1",
            &server.port.to_string(),
        ]));
        assert!(ok, "findscu: {out}");
        found.extend(
            out.lines().filter(|l| l.contains("(0008,0018)")).filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.trim_end_matches('\0').to_owned())),
        );
    }
    found
}

fn sops_in(dir: &Path) -> BTreeSet<String> {
    support::walk(dir).iter().map(|p| support::attr(p, Tag(0x0008, 0x0018))).collect()
}

/// SOP Instance UIDs C-GET (getscu) delivers for a study.
fn cget(server: &Server, study: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = output(
        dcmtk("getscu")
            .args(["-S", "-aet", "READER", "-aec", "RADHUB", "-k", "QueryRetrieveLevel=STUDY", "-k", &format!("StudyInstanceUID={study}"), "-od"])
            .arg(dir.path())
            .args(["127.0.0.1", &server.port.to_string()]),
    );
    let got = sops_in(dir.path());
    assert!(!got.is_empty(), "getscu received nothing: {out}");
    got
}

/// SOP Instance UIDs C-MOVE (movescu) delivers to a storescp for a study.
fn cmove(server: &Server, scp: &support::PeerProc, study: &str) -> BTreeSet<String> {
    for f in support::walk(&scp.received()) {
        std::fs::remove_file(f).unwrap();
    }
    let (ok, out) = output(dcmtk("movescu").args([
        "-S",
        "-aet",
        "READER",
        "-aec",
        "RADHUB",
        "-aem",
        "DEST",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &format!("StudyInstanceUID={study}"),
        "127.0.0.1",
        &server.port.to_string(),
    ]));
    assert!(ok, "movescu: {out}");
    sops_in(&scp.received())
}

/// A study's instances by QIDO-RS: (series, SOP class, SOP instance) UIDs.
fn instances(base: &str, token: &str, study: &str) -> Vec<(String, String, String)> {
    let v = get(base, &format!("/dicom-web/studies/{study}/instances"), token).json();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let v = |t: &str| i[t]["Value"][0].as_str().unwrap_or("").to_owned();
                    (v("0020000E"), v("00080016"), v("00080018"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn qido_instances(base: &str, token: &str, study: &str) -> BTreeSet<String> {
    let v = get(base, &format!("/dicom-web/studies/{study}/instances"), token).json();
    v.as_array().map(|a| a.iter().filter_map(|i| i["00080018"]["Value"][0].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

#[test]
fn a_rejection_note_hides_instances_from_every_query_and_retrieve() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    support::import_testdata(data.path(), &out.path().join("in"), &["--patients", "2", "--max-slices", "3", "--ct-size", "32"]);
    let admin = user_token(data.path(), "admin1", "admin");
    let rad = user_token(data.path(), "rad1", "radiologist");
    let scp = support::storescp("DEST", &[]);
    let mut args = support::site_peers();
    args.extend(["--peer".to_owned(), "READER@127.0.0.1:0".to_owned(), "--peer".to_owned(), format!("DEST@127.0.0.1:{}", scp.port)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(data, &args);
    let base = server.http();

    // A study with a series of several instances.
    let studies = get(&base, "/api/studies?limit=100", &admin).json();
    let (study, site, pid, all) = studies
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| {
            let uid = s["uid"].as_str()?;
            let all = instances(&base, &admin, uid);
            let series: BTreeSet<&String> = all.iter().map(|a| &a.0).collect();
            (all.len() >= 4 && series.len() >= 2)
                .then(|| (uid.to_owned(), s["site"].as_str().unwrap().to_owned(), s["patient"]["patient_id"].as_str().unwrap().to_owned(), all))
        })
        .unwrap_or_else(|| panic!("no study of two series: {studies}"));
    let every: BTreeSet<String> = all.iter().map(|a| a.2.clone()).collect();
    let mut series_uids: BTreeSet<String> = all.iter().map(|a| a.0.clone()).collect();
    assert_eq!(cfind_instances(&server, &study, &series_uids), every);

    // The site's PACS rejects one instance for quality reasons.
    let victim = all[0].clone();
    let note = rejection_note(out.path(), &study, &pid, "113001", std::slice::from_ref(&victim), 1);
    let ae = format!("STORE_{site}");
    let (ok, log) = output(dcmtk("storescu").args(["-aet", &ae, "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&note));
    assert!(ok, "storescu of the note: {log}");
    let note_sop = support::attr(&note, Tag(0x0008, 0x0018));
    series_uids.insert(format!("{note_sop}.1"));
    let expected: BTreeSet<String> = every.iter().filter(|s| **s != victim.2).cloned().chain([note_sop.clone()]).collect();
    assert_eq!(cfind_instances(&server, &study, &series_uids), expected, "C-FIND");
    assert_eq!(qido_instances(&base, &admin, &study), expected, "QIDO-RS");
    let wado = get(&base, &format!("/dicom-web/studies/{study}/series/{}/instances/{}", victim.0, victim.2), &admin);
    assert_eq!(wado.status, 404, "WADO-RS of the rejected instance");
    let meta = get(&base, &format!("/dicom-web/studies/{study}/series/{}/metadata", victim.0), &admin).json();
    assert!(!meta.to_string().contains(&victim.2), "series metadata lists the rejected instance");
    assert_eq!(cget(&server, &study), expected, "C-GET");
    assert_eq!(cmove(&server, &scp, &study), expected, "C-MOVE");

    // Sent again, it is refused; the note sent again changes nothing.
    let original = support::walk(&out.path().join("in")).into_iter().find(|p| support::attr(p, Tag(0x0008, 0x0018)) == victim.2).unwrap();
    let (_, log) = output(dcmtk("storescu").args(["-v", "-aet", &ae, "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&original));
    assert!(log.contains("Store Response (Error: CannotUnderstand)"), "a rejected instance stored again: {log}");
    assert_eq!(qido_instances(&base, &admin, &study), expected, "after the re-send");
    let listed = get(&base, &format!("/api/admin/rejections?study={study}"), &admin).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (listed[0]["code"].as_str(), listed[0]["note"].as_str(), listed[0]["by"].as_str()),
        (Some("113001"), Some(note_sop.as_str()), Some(ae.as_str()))
    );

    // Another site's AE cannot reject this site's instances.
    let other = ["RBD", "RD3", "R0D"].into_iter().find(|s| *s != site).unwrap();
    let foreign = rejection_note(out.path(), &study, &pid, "113001", &all[1..2], 2);
    output(dcmtk("storescu").args(["-aet", &format!("STORE_{other}"), "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&foreign));
    assert!(qido_instances(&base, &admin, &study).contains(&all[1].2), "another trust's note hid this trust's image");

    // A note rejecting every image of another of the site's studies takes it off the worklist.
    let on_worklist = |uid: &str| get(&base, "/api/worklist?limit=1000", &rad).json()["items"].as_array().unwrap().iter().any(|i| i["uid"] == uid);
    let (whole, whole_pid) = studies
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uid"] != study.as_str() && s["site"] == site.as_str() && on_worklist(s["uid"].as_str().unwrap()))
        .map(|s| (s["uid"].as_str().unwrap().to_owned(), s["patient"]["patient_id"].as_str().unwrap().to_owned()))
        .unwrap_or_else(|| panic!("no other listed study at {site}: {studies}"));
    let refs = instances(&base, &admin, &whole);
    let note = rejection_note(out.path(), &whole, &whole_pid, "113001", &refs, 3);
    let (ok, log) = output(dcmtk("storescu").args(["-aet", &ae, "-aec", "RADHUB", "127.0.0.1", &server.port.to_string()]).arg(&note));
    assert!(ok, "storescu of the note: {log}");
    assert!(!on_worklist(&whole), "a study with every image rejected is still on the worklist");
    assert!(on_worklist(&study), "a study with one image rejected left the worklist");

    // An admin restores it; rejects a whole series; deletes it for good.
    let auth = format!("Bearer {admin}");
    let post = |path: &str, body: String| request(&base, "POST", path, &[("Authorization", &auth), ("Content-Type", "application/json")], body.as_bytes());
    let r = post("/api/admin/rejections/restore", format!(r#"{{"study":"{study}","instances":["{}"],"why":"wrongly rejected"}}"#, victim.2));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(cfind_instances(&server, &study, &series_uids).contains(&victim.2), "restored, it answers C-FIND");
    assert_eq!(get(&base, &format!("/dicom-web/studies/{study}/series/{}/instances/{}", victim.0, victim.2), &admin).status, 200);

    let series = all[all.len() - 1].0.clone();
    let in_series: BTreeSet<String> = all.iter().filter(|a| a.0 == series).map(|a| a.2.clone()).collect();
    let r = post("/api/admin/rejections", format!(r#"{{"study":"{study}","series":"{series}","reason":"113038","why":"wrong worklist entry"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rejected"].as_u64(), Some(in_series.len() as u64));
    assert!(cfind_instances(&server, &study, &series_uids).is_disjoint(&in_series));
    assert!(cget(&server, &study).is_disjoint(&in_series));
    let r = post("/api/admin/rejections/delete", format!(r#"{{"study":"{study}","series":"{series}","why":"retention"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"].as_u64(), Some(in_series.len() as u64));
    let r = post("/api/admin/rejections/restore", format!(r#"{{"study":"{study}","series":"{series}","why":"too late"}}"#));
    assert_eq!(r.json()["restored"].as_u64(), Some(0), "a deleted instance restored: {}", r.text());
    let a = get(&base, "/api/admin/audit?limit=1000", &admin).json();
    assert!(a.to_string().contains("rejections"), "admin actions audited: {a}");

    // verify: a rejected file is no orphan, a deleted one is gone; the index is whole.
    let r = post("/api/admin/rejections", format!(r#"{{"study":"{study}","instances":["{}"],"why":"kept rejected"}}"#, victim.2));
    assert_eq!(r.json()["rejected"].as_u64(), Some(1), "{}", r.text());
    let (stopped, data) = server.stop();
    assert!(stopped);
    let v = support::json(&support::run(data.path(), &["verify", "--json"]));
    assert!(v["orphan_files"].as_array().unwrap().is_empty() && v["missing_files"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["rejected"].as_u64(), Some(1 + refs.len() as u64), "the rejected files kept, the deleted ones gone: {v}");
}
