//! A signed report as an HL7 v2.5.1 ORU^R01 to the owning site's RIS,
//! over MLLP, with the RIS's ACK checked (MSA-1 AA or CA is delivery).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::index::model::StudyRecord;
use crate::reports::Report;

const VT: u8 = 0x0b;
const FS: u8 = 0x1c;
const CR: u8 = 0x0d;
/// The longest ACK radhub reads.
const MAX_ACK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum Hl7Error {
    #[error("RIS {0}: {1}")]
    Io(String, std::io::Error),
    #[error("RIS {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("RIS {0} answered what is not an HL7 ACK: {1}")]
    BadAck(String, String),
    #[error("RIS {0} refused the report: MSA {1}")]
    Refused(String, String),
}

/// Escapes HL7's delimiters in a field value (|^~\&).
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '&' => out.push_str("\\T\\"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// DICOM PN (family^given^...) as HL7 XPN: the same component order.
fn xpn(pn: &str) -> String {
    pn.split('^').map(esc).collect::<Vec<_>>().join("^")
}

/// YYYYMMDDHHMMSS (UTC) of a time in ms since the epoch.
fn ts(ms: u64) -> String {
    let iso = crate::dates::iso_ms(ms);
    iso[..19].replace(['-', ':', 'T'], "")
}

/// The ORU^R01 of `report`; `control` is its message control ID (MSH-10).
pub fn oru(study: &StudyRecord, report: &Report, nhs: Option<&str>, site: &str, control: &str) -> String {
    let signed = report.signed_ms.unwrap_or(report.updated_ms);
    let mut ids = vec![format!("{}^^^{}^MR", esc(&study.patient.patient_id), esc(&study.patient.issuer))];
    if let Some(n) = nhs {
        ids.push(format!("{n}^^^NHS^NH"));
    }
    let modality = study.modalities.iter().next().cloned().unwrap_or_default();
    let mut segs = vec![
        format!("MSH|^~\\&|RADHUB|DORSET|RIS|{}|{}||ORU^R01^ORU_R01|{}|P|2.5.1|||AL|NE|GBR|UNICODE UTF-8", esc(site), ts(signed), esc(control)),
        format!("PID|1||{}||{}||{}|{}", ids.join("~"), xpn(&study.patient_name), esc(&study.patient_birth_date), esc(&study.patient_sex)),
        format!(
            "OBR|1||{}|{}^{}|||{}{}|||||||||||||||{}||{}|{}|||||||{}",
            esc(&study.accession_number),
            esc(&modality),
            esc(&study.description),
            esc(&study.date),
            esc(&study.time.chars().take(6).collect::<String>()),
            ts(signed),
            esc(&modality),
            if report.addendum_of.is_some() { "C" } else { "F" },
            esc(&report.author),
        ),
    ];
    segs.push(format!("OBX|1|ST|113014^Study Instance UID^DCM||{}||||||F", esc(&study.uid)));
    for (i, line) in report.text.lines().enumerate() {
        segs.push(format!("OBX|{}|TX|18782-3^Radiology Study observation^LN||{}||||||F|||{}", i + 2, esc(line), ts(signed)));
    }
    let mut m = segs.join("\r");
    m.push('\r');
    m
}

/// Sends one message over MLLP to `addr` (host:port) and checks its ACK.
pub async fn send(addr: &str, message: &str, timeout: Duration) -> Result<(), Hl7Error> {
    let io = |e| Hl7Error::Io(addr.to_owned(), e);
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let mut framed = Vec::with_capacity(message.len() + 3);
        framed.push(VT);
        framed.extend_from_slice(message.as_bytes());
        framed.extend_from_slice(&[FS, CR]);
        s.write_all(&framed).await.map_err(io)?;
        let mut ack = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            ack.extend_from_slice(&buf[..n]);
            if ack.windows(2).any(|w| w == [FS, CR]) || ack.len() > MAX_ACK {
                break;
            }
        }
        Ok::<_, Hl7Error>(ack)
    };
    let ack = tokio::time::timeout(timeout, exchange).await.map_err(|_| Hl7Error::Timeout(addr.to_owned(), timeout))??;
    check_ack(addr, &ack)
}

fn check_ack(addr: &str, raw: &[u8]) -> Result<(), Hl7Error> {
    let text = String::from_utf8_lossy(raw);
    let body = text.trim_start_matches(VT as char).split(FS as char).next().unwrap_or("");
    let msa = body.split(['\r', '\n']).find(|s| s.starts_with("MSA|")).ok_or_else(|| Hl7Error::BadAck(addr.to_owned(), body.chars().take(200).collect()))?;
    let code = msa.split('|').nth(1).unwrap_or("");
    match code {
        "AA" | "CA" => Ok(()),
        _ => Err(Hl7Error::Refused(addr.to_owned(), msa.chars().take(200).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_in_values_are_escaped() {
        assert_eq!(esc(r"a|b^c~d\e&f"), r"a\F\b\S\c\R\d\E\e\T\f");
    }

    #[test]
    fn acks_are_read() {
        assert!(check_ack("ris", b"\x0bMSH|^~\\&|RIS\rMSA|AA|123\r\x1c\r").is_ok());
        assert!(matches!(check_ack("ris", b"\x0bMSH|^~\\&|RIS\rMSA|AE|123|bad\r\x1c\r"), Err(Hl7Error::Refused(..))));
        assert!(matches!(check_ack("ris", b"HTTP/1.1 400"), Err(Hl7Error::BadAck(..))));
    }
}
