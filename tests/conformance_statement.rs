//! docs/CONFORMANCE.md against the code's own tables, so that the
//! Conformance Statement cannot drift from what radhub negotiates: every
//! SOP class, transfer syntax and extended negotiation option the gateway
//! has is in it, with the role and answer the code gives, and it names no
//! DICOM UID the code lacks (but those it names as declined, with why).

use std::collections::BTreeSet;

use pacs_gateway::server::{FIND_EXTENDED_NEGOTIATION, RETRIEVE_EXTENDED_NEGOTIATION};
use pacs_gateway::sop_classes::{self, ACCEPTED_TRANSFER_SYNTAXES, SERVICES, STORAGE, STORAGE_TRANSFER_SYNTAXES};

fn statement() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFORMANCE.md")).expect("docs/CONFORMANCE.md")
}

/// The table rows (`| ... |` lines) holding `` `uid` ``.
fn rows<'a>(doc: &'a str, uid: &str) -> Vec<&'a str> {
    let quoted = format!("`{uid}`");
    doc.lines().filter(|l| l.starts_with('|') && l.contains(&quoted)).collect()
}

/// Every DICOM-rooted UID the document names, in backquotes.
fn named_uids(doc: &str) -> BTreeSet<String> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("1.2.840.10008.") && !s.ends_with('.') && s.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_sop_class_and_transfer_syntax_is_stated_with_its_role() {
    let doc = statement();
    for (uid, name) in STORAGE {
        let r = rows(&doc, uid);
        assert_eq!(r.len(), 1, "storage class {name} ({uid}): {} table rows", r.len());
        assert!(r[0].contains(name) && r[0].ends_with("| Yes | Yes |"), "storage class {uid}: {}", r[0]);
    }
    for (uid, name) in SERVICES {
        let r = rows(&doc, uid);
        assert_eq!(r.len(), 1, "{name} ({uid}): {} table rows", r.len());
        // radhub's SCU uses Verification and the Study Root models; the rest it only provides.
        let scu = matches!(*uid, sop_classes::VERIFICATION | sop_classes::STUDY_ROOT_FIND | sop_classes::STUDY_ROOT_MOVE | sop_classes::STUDY_ROOT_GET);
        let want = if scu { "| Yes | Yes |" } else { "| No | Yes |" };
        assert!(r[0].contains(name) && r[0].ends_with(want), "{uid}: {} (want {want})", r[0]);
        // And the overview table names it with the same roles.
        assert!(doc.lines().any(|l| l.starts_with('|') && l.contains(&format!(" {name} {want}"))), "overview row for {name} with {want}");
    }
    for (uid, name) in ACCEPTED_TRANSFER_SYNTAXES {
        let r = rows(&doc, uid);
        assert!(!r.is_empty() && r[0].contains(name), "accepted transfer syntax {name} ({uid}) not stated");
    }
    for uid in STORAGE_TRANSFER_SYNTAXES {
        assert_eq!(rows(&doc, uid).len(), 2, "{uid}: proposed by the C-GET SCU, so in both the accepted and proposed tables");
    }
    let counts = format!("{} standard storage SOP classes", STORAGE.len());
    assert!(doc.replace('\n', " ").contains(&counts), "the overview should say {counts}");
    assert!(doc.replace('\n', " ").contains(&format!("in {} transfer syntaxes", ACCEPTED_TRANSFER_SYNTAXES.len())), "the overview's count of syntaxes");
}

#[test]
fn the_statement_names_no_dicom_uid_the_code_lacks() {
    // Named on purpose, and not served: why each is in the document.
    let declined: &[(&str, &str)] = &[
        ("1.2.840.10008.3.1.1.1", "the DICOM Application Context Name"),
        ("1.2.840.10008.1.20.1.1", "the Storage Commitment request's well-known SOP Instance UID"),
        ("1.2.840.10008.5.1.4.31", "Modality Worklist FIND, the example of a declined non-storage class"),
        ("1.2.840.10008.3.1.2.3.3", "MPPS, likewise"),
        ("1.2.840.10008.1.2.6.1", "a transfer syntax not accepted"),
        ("1.2.840.10008.1.2.6.2", "a transfer syntax not accepted"),
        ("1.2.840.10008.1.20", "a transfer syntax not accepted"),
        ("1.2.840.10008.1.2.4.95", "a transfer syntax not accepted"),
        ("1.2.840.10008.1.2.4.205", "a transfer syntax not accepted"),
    ];
    let doc = statement();
    let code: BTreeSet<&str> = STORAGE.iter().chain(SERVICES).chain(ACCEPTED_TRANSFER_SYNTAXES).map(|(u, _)| *u).collect();
    for uid in named_uids(&doc) {
        assert!(
            code.contains(uid.as_str()) || declined.iter().any(|(d, _)| *d == uid),
            "docs/CONFORMANCE.md names {uid}, which the code has no table entry for"
        );
    }
    for (uid, why) in declined {
        assert!(!code.contains(uid), "{uid} ({why}) is served after all: move it to its table");
        assert!(!sop_classes::accepted_as_storage(uid), "{uid} ({why}) would be accepted as storage");
    }
    // The syntaxes stated as not accepted are exactly the registry's left out.
    for ts in ["1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2", "1.2.840.10008.1.20", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"] {
        assert!(!ACCEPTED_TRANSFER_SYNTAXES.iter().any(|(u, _)| *u == ts));
    }
}

#[test]
fn extended_negotiation_and_identity_are_stated_as_implemented() {
    let doc = statement();
    for (models, table) in
        [("C-FIND (Patient Root, Study Root)", FIND_EXTENDED_NEGOTIATION), ("C-MOVE, C-GET (Patient Root, Study Root)", RETRIEVE_EXTENDED_NEGOTIATION)]
    {
        for (i, (option, taken)) in table.iter().enumerate() {
            let want = format!("| {models} | {} | {option} | {} |", i + 1, if *taken { "accepted" } else { "declined" });
            assert!(doc.lines().any(|l| l == want), "extended negotiation row missing or different: {want}");
        }
    }
    assert!(rows(&doc, pacs_gateway::store::IMPLEMENTATION_CLASS_UID).iter().any(|r| r.contains("Implementation Class UID")));
    assert!(rows(&doc, pacs_gateway::store::IMPLEMENTATION_VERSION_NAME).iter().any(|r| r.contains("Implementation Version Name")));
    let defaults = pacs_gateway::Config::default();
    assert!(doc.contains(&format!("Maximum PDU size\nreceived: {} bytes", defaults.max_pdu_length)), "the stated maximum PDU");
    assert!(doc.contains(&format!("At most {} associations", defaults.max_associations)), "the stated association limit");
    assert!(doc.contains(&format!("more than {} matches", defaults.max_find_matches)), "the stated C-FIND match limit");
}

#[test]
fn the_statement_has_the_sections_of_ps3_2() {
    let doc = statement();
    let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with('#')).collect();
    for want in [
        "## 1 Conformance Statement Overview",
        "## 2 Table of Contents",
        "## 3 Introduction",
        "## 4 Networking",
        "### 4.1 Implementation Model",
        "### 4.2 AE Specifications",
        "#### 4.2.2 Association Policies",
        "#### 4.2.3 Transfer Syntaxes",
        "#### 4.2.4 Extended Negotiation",
        "#### 4.2.5 Association Initiation Policy",
        "#### 4.2.6 Association Acceptance Policy",
        "### 4.3 Network Interfaces",
        "### 4.4 Configuration",
        "### 4.5 DICOMweb (PS3.18)",
        "### 4.6 IHE IOCM: Rejection Notes",
        "### 4.7 HL7 v2 ADT",
        "## 5 Media Interchange",
        "## 6 Support of Character Sets",
        "## 7 Security",
        "## 8 Annexes",
    ] {
        assert!(headings.contains(&want), "missing section {want:?}");
    }
    // Sections in order.
    let at = |h: &str| doc.find(h).unwrap_or(usize::MAX);
    assert!(at("## 1 ") < at("## 2 ") && at("## 2 ") < at("## 3 ") && at("## 4 ") < at("## 5 ") && at("## 6 ") < at("## 7 ") && at("## 7 ") < at("## 8 "));
}
