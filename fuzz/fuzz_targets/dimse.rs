//! DIMSE message assembly from P-DATA values (command then data fragments,
//! cut where the input says), and the query identifier a message carries.
#![no_main]
use dicom_ul::pdu::{PDataValue, PDataValueType};
use libfuzzer_sys::fuzz_target;
use pacs_gateway::message::Assembler;

const SYNTAXES: [&str; 3] = [dicom_scan::TS_IMPLICIT_LE, dicom_scan::TS_EXPLICIT_LE, dicom_scan::TS_EXPLICIT_BE];

fuzz_target!(|data: &[u8]| {
    // Each fragment: a header byte (bit 0 command/data, bit 1 last, bit 2 context 3 not 1), a length byte, the bytes.
    let mut asm = Assembler::new(1 << 16);
    let mut rest = data;
    while let [head, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let pdv = PDataValue {
            presentation_context_id: if head & 4 == 0 { 1 } else { 3 },
            value_type: if head & 1 == 0 { PDataValueType::Command } else { PDataValueType::Data },
            is_last: head & 2 != 0,
            data: tail[..n].to_vec(),
        };
        rest = &tail[n..];
        match asm.push(pdv) {
            Ok(Some(m)) => {
                if let Some(d) = m.data {
                    let ts = SYNTAXES[usize::from(*head >> 3) % SYNTAXES.len()];
                    if let Ok(id) = pacs_gateway::identifier::parse(&d, ts) {
                        let _ = pacs_gateway::identifier::encode(&id, ts);
                    }
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
