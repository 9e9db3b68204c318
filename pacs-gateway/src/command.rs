//! DIMSE command sets (PS3.7 Annex E): group 0000 elements, always encoded
//! implicit VR little endian. Decoding is bounded by the bytes present.

use std::collections::BTreeMap;

use crate::status::Status;

/// Command Field (0000,0100) values.
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_ACTION_RSP: u16 = 0x8130;
}

/// Element numbers in group 0000.
pub mod tag {
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const REQUESTED_SOP_CLASS_UID: u16 = 0x0003;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
    pub const MOVE_DESTINATION: u16 = 0x0600;
    pub const PRIORITY: u16 = 0x0700;
    pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
    pub const REQUESTED_SOP_INSTANCE_UID: u16 = 0x1001;
    pub const REMAINING: u16 = 0x1020;
    pub const COMPLETED: u16 = 0x1021;
    pub const FAILED: u16 = 0x1022;
    pub const WARNING: u16 = 0x1023;
    pub const MOVE_ORIGINATOR_AE: u16 = 0x1030;
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;
}

/// Command Data Set Type meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// What radhub sends when a data set follows (any other value means so).
pub const DATA_SET_PRESENT: u16 = 0x0001;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command element (0000,{elem:04X}) declares {declared} bytes, {available} present")]
    Length { elem: u16, declared: u32, available: usize },
    #[error("command set holds an element outside group 0000")]
    NotCommandGroup,
    #[error("command set lacks {0}")]
    Missing(&'static str),
}

/// The elements of one command set, by element number, as raw values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    elems: BTreeMap<u16, Vec<u8>>,
}

/// VRs of the command elements that hold text (padded with a space, or NUL for UI).
fn is_uid(elem: u16) -> bool {
    matches!(elem, tag::AFFECTED_SOP_CLASS_UID | tag::REQUESTED_SOP_CLASS_UID | tag::AFFECTED_SOP_INSTANCE_UID | tag::REQUESTED_SOP_INSTANCE_UID)
}

impl Command {
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        match Self::decode_prefix(bytes)? {
            (c, end) if end == bytes.len() => Ok(c),
            _ => Err(CommandError::NotCommandGroup),
        }
    }

    /// The group 0000 elements at the start of `bytes`, and where they end:
    /// a peer may follow them with other elements in the same command PDVs
    /// (Orthanc 1.10 puts a C-GET's Failed SOP Instance UID List there).
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize), CommandError> {
        let mut elems = BTreeMap::new();
        let mut pos = 0;
        while pos + 8 <= bytes.len() {
            let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
            let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            let len = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
            if group != 0 {
                if elems.is_empty() {
                    return Err(CommandError::NotCommandGroup);
                }
                return Ok((Command { elems }, pos));
            }
            let available = bytes.len() - pos - 8;
            if len as usize > available {
                return Err(CommandError::Length { elem, declared: len, available });
            }
            elems.insert(elem, bytes[pos + 8..pos + 8 + len as usize].to_vec());
            pos += 8 + len as usize;
        }
        if pos != bytes.len() {
            return Err(CommandError::Length { elem: 0xFFFF, declared: 8, available: bytes.len() - pos });
        }
        Ok((Command { elems }, pos))
    }

    /// Encodes with the group length first, as PS3.7 E.1 requires.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        for (&elem, v) in self.elems.iter().filter(|(e, _)| **e != 0) {
            body.extend([0, 0]);
            body.extend(elem.to_le_bytes());
            body.extend((v.len() as u32).to_le_bytes());
            body.extend(v);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend([0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    pub fn u16(&self, elem: u16) -> Option<u16> {
        self.elems.get(&elem).filter(|v| v.len() >= 2).map(|v| u16::from_le_bytes([v[0], v[1]]))
    }

    pub fn str(&self, elem: u16) -> Option<String> {
        let v = self.elems.get(&elem)?;
        let s = String::from_utf8_lossy(v);
        Some(s.trim_end_matches(['\0', ' ']).trim_start().to_owned())
    }

    pub fn set_u16(&mut self, elem: u16, v: u16) -> &mut Self {
        self.elems.insert(elem, v.to_le_bytes().to_vec());
        self
    }

    pub fn set_str(&mut self, elem: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(if is_uid(elem) { 0 } else { b' ' });
        }
        self.elems.insert(elem, v);
        self
    }

    pub fn field(&self) -> Result<u16, CommandError> {
        self.u16(tag::COMMAND_FIELD).ok_or(CommandError::Missing("Command Field (0000,0100)"))
    }

    pub fn message_id(&self) -> u16 {
        self.u16(tag::MESSAGE_ID).unwrap_or(0)
    }

    pub fn has_data_set(&self) -> bool {
        self.u16(tag::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET)
    }

    pub fn status(&self) -> Option<Status> {
        self.u16(tag::STATUS).map(Status)
    }

    /// A response to `rq`: same SOP class, message id echoed.
    pub fn response_to(rq: &Command, field: u16, status: Status, data_set: bool) -> Command {
        let mut c = Command::default();
        c.set_u16(tag::COMMAND_FIELD, field);
        c.set_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id());
        c.set_u16(tag::COMMAND_DATA_SET_TYPE, if data_set { DATA_SET_PRESENT } else { NO_DATA_SET });
        c.set_u16(tag::STATUS, status.0);
        if let Some(class) = rq.str(tag::AFFECTED_SOP_CLASS_UID) {
            c.set_str(tag::AFFECTED_SOP_CLASS_UID, &class);
        }
        c
    }

    /// C-CANCEL-RQ for request `id` (PS3.7 9.3.2.3: no SOP class, no data set).
    pub fn cancel(id: u16) -> Command {
        let mut c = Command::default();
        c.set_u16(tag::COMMAND_FIELD, field::C_CANCEL_RQ);
        c.set_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, id);
        c.set_u16(tag::COMMAND_DATA_SET_TYPE, NO_DATA_SET);
        c
    }

    /// A request with a fresh message id.
    pub fn request(field: u16, message_id: u16, sop_class: &str, data_set: bool) -> Command {
        let mut c = Command::default();
        c.set_u16(tag::COMMAND_FIELD, field);
        c.set_u16(tag::MESSAGE_ID, message_id);
        c.set_str(tag::AFFECTED_SOP_CLASS_UID, sop_class);
        c.set_u16(tag::COMMAND_DATA_SET_TYPE, if data_set { DATA_SET_PRESENT } else { NO_DATA_SET });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_group_length_and_padding() {
        let mut c = Command::request(field::C_ECHO_RQ, 7, "1.2.840.10008.1.1", false);
        c.set_str(tag::MOVE_DESTINATION, "STORESCP");
        let bytes = c.encode();
        // Group length first, covering the rest.
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, bytes.len() - 12);
        let d = Command::decode(&bytes).unwrap();
        assert_eq!(d.field(), Ok(field::C_ECHO_RQ));
        assert_eq!(d.message_id(), 7);
        assert_eq!(d.str(tag::AFFECTED_SOP_CLASS_UID).as_deref(), Some("1.2.840.10008.1.1"));
        assert!(!d.has_data_set());
        // UIDs are padded with NUL, text with a space.
        assert_eq!(d.elems[&tag::AFFECTED_SOP_CLASS_UID].len() % 2, 0);
        assert_eq!(d.elems[&tag::AFFECTED_SOP_CLASS_UID].last(), Some(&0));
    }

    #[test]
    fn elements_after_the_command_group_are_refused_or_split_off() {
        let mut bytes = Command::request(field::C_GET_RSP, 1, "1.2.840.10008.5.1.4.1.2.2.3", false).encode();
        let end = bytes.len();
        // (0008,0058) UI "1.2", as Orthanc 1.10 appends it.
        bytes.extend([0x08, 0x00, 0x58, 0x00, 4, 0, 0, 0, b'1', b'.', b'2', 0]);
        assert_eq!(Command::decode(&bytes), Err(CommandError::NotCommandGroup));
        let (c, at) = Command::decode_prefix(&bytes).unwrap();
        assert_eq!((c.field(), at), (Ok(field::C_GET_RSP), end));
        assert_eq!(Command::decode_prefix(&bytes[end..]), Err(CommandError::NotCommandGroup));
    }

    #[test]
    fn lying_length_is_refused() {
        let mut bytes = Command::request(field::C_ECHO_RQ, 1, "1.2.840.10008.1.1", false).encode();
        bytes[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(matches!(Command::decode(&bytes), Err(CommandError::Length { .. })));
        assert!(Command::decode(&[8, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
