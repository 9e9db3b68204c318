//! radhub's MLLP listener for the sites' RIS and patient administration:
//! each framed message (VT … FS CR) is parsed, filed when it is an order,
//! applied to the index when it is ADT (`adt`), and acknowledged only after
//! it is durable (MSA AA); what cannot be applied is answered AE or AR with
//! the reason, and the connection stays up for the next.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ack, ack_for, adt, parse, OrderError, Orders};
use crate::index::IndexError;
use crate::ingest::Hub;
use crate::worklist::Worklist;

const VT: u8 = 0x0b;
const FS: u8 = 0x1c;
const CR: u8 = 0x0d;
/// The largest message taken: an order is a few hundred bytes.
const MAX_MESSAGE: usize = 1 << 20;
/// A connection quiet this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// Serves until the process ends. Each order filed is put to the worklist
/// (its studies already here join it, or leave it when it is cancelled).
pub async fn serve(listener: tokio::net::TcpListener, hub: Arc<Hub>, orders: Arc<Orders>, worklist: Arc<Worklist>) {
    let desk = Arc::new(Desk { hub, orders, worklist });
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "HL7 listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let desk = desk.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(sock, &desk).await {
                tracing::info!(%peer, error = %e, "HL7 connection ended");
            }
        });
    }
}

struct Desk {
    hub: Arc<Hub>,
    orders: Arc<Orders>,
    worklist: Arc<Worklist>,
}

async fn connection(mut sock: tokio::net::TcpStream, desk: &Arc<Desk>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Whole frames first; then read more.
        while let Some(end) = buf.windows(2).position(|w| w == [FS, CR]) {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let start = frame.iter().position(|&b| b == VT).map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&frame[start..end]).into_owned();
            let answer = handle(&text, desk).await;
            let mut out = vec![VT];
            out.extend_from_slice(answer.as_bytes());
            out.extend_from_slice(&[FS, CR]);
            sock.write_all(&out).await?;
        }
        if buf.len() > MAX_MESSAGE {
            let answer = ack("", "AR", "message too long");
            sock.write_all(&[&[VT][..], answer.as_bytes(), &[FS, CR]].concat()).await?;
            return Ok(());
        }
        let n = match tokio::time::timeout(IDLE, sock.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(text: &str, desk: &Arc<Desk>) -> String {
    if adt::is_adt(text) {
        return identity(text, desk).await;
    }
    let control = text.split(['\r', '\n']).next().and_then(|msh| msh.split('|').nth(9)).unwrap_or("").trim().to_owned();
    match parse(text) {
        Ok((control, order)) => {
            let (o, desk) = (order.clone(), desk.clone());
            let filed = tokio::task::spawn_blocking(move || {
                desk.orders.put(&o)?;
                // Filed is what the ACK says; the worklist catches up at its next arrival.
                if let Err(e) = desk.worklist.ordered(&o) {
                    tracing::error!(accession = %o.accession, error = %e, "worklist not updated for an order");
                }
                Ok::<_, OrderError>(())
            });
            match filed.await {
                Ok(Ok(())) => {
                    tracing::info!(site = %order.site, accession = %order.accession, priority = %order.priority, control = %order.control, "order received");
                    ack(&control, "AA", "")
                }
                Ok(Err(e)) => ack(&control, "AE", &e.to_string()),
                Err(e) => ack(&control, "AE", &e.to_string()),
            }
        }
        Err(OrderError::Invalid(why)) => {
            tracing::warn!(%why, "HL7 message refused");
            ack(&control, "AR", &why)
        }
        Err(e) => ack(&control, "AE", &e.to_string()),
    }
}

/// An ADT message: the identity change it names, applied durably before AA.
async fn identity(text: &str, desk: &Arc<Desk>) -> String {
    let control = text.split(['\r', '\n']).next().and_then(|msh| msh.split('|').nth(9)).unwrap_or("").trim().to_owned();
    let m = match adt::parse(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "HL7 ADT refused");
            return ack_for("A08", &control, "AR", &e.to_string());
        }
    };
    let Some(change) = m.change.clone() else {
        tracing::info!(site = %m.site, event = %m.event, "HL7 ADT event not acted on");
        return ack_for(&m.event, &m.control, "AA", "");
    };
    let (hub, worklist, by) = (desk.hub.clone(), desk.worklist.clone(), format!("ADT^{} from {}", m.event, m.site));
    let why = format!("message {}", m.control);
    let apply = move || {
        let e = hub.index.change_identity(&change, &by, &why)?;
        // Durable in the index, which is what the ACK says; the worklist follows.
        for study in &e.studies {
            if let Err(err) = worklist.refresh(study) {
                tracing::error!(%study, error = %err, "worklist not updated for an identity change");
            }
        }
        Ok::<_, IndexError>(e)
    };
    match tokio::task::spawn_blocking(apply).await {
        Ok(Ok(e)) => ack_for(&m.event, &m.control, "AA", &e.detail),
        // Nothing of the patient is held: nothing to change.
        Ok(Err(IndexError::NoSuchPatient(_))) => ack_for(&m.event, &m.control, "AA", "no images of this patient are held"),
        Ok(Err(e @ IndexError::Identity(_))) => {
            tracing::warn!(site = %m.site, event = %m.event, error = %e, "identity change refused");
            ack_for(&m.event, &m.control, "AE", &e.to_string())
        }
        Ok(Err(e)) => ack_for(&m.event, &m.control, "AE", &e.to_string()),
        Err(e) => ack_for(&m.event, &m.control, "AE", &e.to_string()),
    }
}
