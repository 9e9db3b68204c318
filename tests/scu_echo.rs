//! pacs_gateway::scu::echo against real peers (DCMTK storescp, Orthanc,
//! dcmqrscp), and the ways an association fails to come about: nobody
//! listening, a listener that never answers, a refusal.

mod support;

use std::time::{Duration, Instant};

use pacs_gateway::scu::{self, Peer, ScuConfig, ScuError};
use pacs_gateway::status::Status;

fn cfg() -> ScuConfig {
    ScuConfig { calling_ae: "RADHUB_SCU".into(), connect_timeout: Duration::from_secs(2), dimse_timeout: Duration::from_secs(5), ..Default::default() }
}

#[tokio::test]
async fn echo_answered_by_storescp_and_orthanc() {
    let storescp = support::storescp("STORESCP", &[]);
    let a = scu::echo(&cfg(), &storescp.peer()).await.unwrap_or_else(|e| panic!("{e}\n{}", storescp.log()));
    assert_eq!((a.status, a.comment), (Status::SUCCESS, None));
    assert!(storescp.log().contains("Association Received"), "{}", storescp.log());

    let orthanc = support::orthanc("ORTHANC", &[], serde_json::json!({}));
    let a = scu::echo(&cfg(), &orthanc.peer()).await.unwrap_or_else(|e| panic!("{e}\n{}", orthanc.log()));
    assert_eq!(a.status, Status::SUCCESS);
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error_at_once() {
    let peer = Peer::new("NOBODY", "127.0.0.1", support::free_port());
    let t = Instant::now();
    let e = scu::echo(&cfg(), &peer).await.unwrap_err();
    assert!(matches!(e, ScuError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_listener_that_never_answers_is_a_connect_error_within_the_connect_timeout() {
    // The kernel completes the TCP handshake; nothing reads the request.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = Peer::new("SILENT", "127.0.0.1", silent.local_addr().unwrap().port());
    let t = Instant::now();
    let e = scu::echo(&cfg(), &peer).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, ScuError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("no association within 2 s"), "{e}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn a_called_ae_the_peer_does_not_know_is_rejected() {
    let qr = support::dcmqrscp("QRSCP", &[], &[]);
    let e = scu::echo(&cfg(), &Peer::new("NOT_QRSCP", "127.0.0.1", qr.port)).await.unwrap_err();
    match &e {
        ScuError::Rejected { reason, .. } => assert!(reason.contains("called AE title not recognized"), "{e}"),
        other => panic!("{other:?}\n{}", qr.log()),
    }
    // The right title is taken.
    assert_eq!(scu::echo(&cfg(), &qr.peer()).await.unwrap_or_else(|e| panic!("{e}\n{}", qr.log())).status, Status::SUCCESS);

    let orthanc = support::orthanc("ORTHANC", &[], serde_json::json!({ "DicomCheckCalledAet": true }));
    let e = scu::echo(&cfg(), &Peer::new("NOT_ORTHANC", "127.0.0.1", orthanc.port)).await.unwrap_err();
    assert!(matches!(e, ScuError::Rejected { .. }), "{e:?}\n{}", orthanc.log());
}
