//! DIMSE messages on an association: P-DATA fragments assembled into a
//! command and its data set (bounded), and messages sent back out, split to
//! the peer's maximum PDU length.

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;

use crate::command::{Command, CommandError};

/// One DIMSE message: a command and, when it announces one, its data set.
#[derive(Debug)]
pub struct Message {
    pub pc_id: u8,
    pub command: Command,
    pub data: Option<Vec<u8>>,
    /// The data set exceeded the configured limit and was dropped.
    pub data_overflow: bool,
    /// Elements after the command set in its own fragments (implicit VR
    /// little endian), kept by a lenient assembler for a message without a
    /// data set; see `Command::decode_prefix`.
    pub extra: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("command set over {0} bytes")]
    CommandTooLarge(usize),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("fragments of one message on different presentation contexts")]
    ContextMismatch,
    #[error("a data fragment without a command")]
    DataWithoutCommand,
    #[error("a command fragment while a data set was expected")]
    CommandInsteadOfData,
}

enum State {
    Idle,
    Command {
        pc: u8,
        buf: Vec<u8>,
    },
    Data {
        pc: u8,
        command: Command,
        buf: Vec<u8>,
        overflow: bool,
    },
    /// A C-STORE data set passed on fragment by fragment.
    Stream {
        pc: u8,
    },
}

/// What a streaming assembler makes of each P-DATA value.
#[derive(Debug)]
pub enum Event {
    /// A whole message (any but a C-STORE-RQ with its data set).
    Message(Message),
    /// A C-STORE-RQ; its data set follows as `StoreData`.
    StoreBegins { pc: u8, command: Command },
    /// The next fragment of the data set; `last` ends it.
    StoreData { data: Vec<u8>, last: bool },
}

/// Builds messages from P-DATA values, holding at most `max_data` bytes of
/// a C-STORE data set and `MAX_IDENTIFIER` of any other (a query
/// identifier, a commitment request); anything larger is read through and
/// dropped, so the peer can still be answered on the same association.
/// A streaming assembler holds no C-STORE data set: it hands each
/// fragment on as it comes (`push_event`).
pub struct Assembler {
    /// Keep elements after the command set instead of refusing the message.
    lenient: bool,
    /// Pass C-STORE data sets on as `Event::StoreData`.
    streaming: bool,
    max_command: usize,
    max_data: usize,
    /// The limit for the data set being received.
    limit: usize,
    state: State,
}

/// The largest data set of a message other than C-STORE: real query
/// identifiers are a few KiB.
pub const MAX_IDENTIFIER: usize = 1 << 20;

impl Assembler {
    pub fn new(max_data: usize) -> Self {
        Assembler { lenient: false, streaming: false, max_command: 64 << 10, max_data, limit: max_data, state: State::Idle }
    }

    /// An assembler for an SCP, which writes C-STORE data sets out as they
    /// arrive instead of holding them (the receiver bounds their size).
    pub fn streaming() -> Self {
        Assembler { streaming: true, ..Self::new(0) }
    }

    /// An assembler for the responses radhub awaits as a service user,
    /// which takes what some peers append to a command set (`Message::extra`).
    pub fn lenient(max_data: usize) -> Self {
        Assembler { lenient: true, ..Self::new(max_data) }
    }

    /// The message `pdv` completes, if any (an assembler not streaming).
    pub fn push(&mut self, pdv: PDataValue) -> Result<Option<Message>, ProtocolError> {
        Ok(match self.push_event(pdv)? {
            Some(Event::Message(m)) => Some(m),
            _ => None,
        })
    }

    pub fn push_event(&mut self, pdv: PDataValue) -> Result<Option<Event>, ProtocolError> {
        let pc = pdv.presentation_context_id;
        match (std::mem::replace(&mut self.state, State::Idle), pdv.value_type.clone()) {
            (State::Idle, PDataValueType::Command) => self.command(pc, Vec::new(), pdv),
            (State::Command { pc: p, buf }, PDataValueType::Command) if p == pc => self.command(pc, buf, pdv),
            (State::Data { pc: p, command, mut buf, mut overflow }, PDataValueType::Data) if p == pc => {
                if !overflow && buf.len() + pdv.data.len() > self.limit {
                    overflow = true;
                    buf = Vec::new();
                }
                if !overflow {
                    buf.extend_from_slice(&pdv.data);
                }
                if pdv.is_last {
                    return Ok(Some(Event::Message(Message { pc_id: pc, command, data: (!overflow).then_some(buf), data_overflow: overflow, extra: None })));
                }
                self.state = State::Data { pc, command, buf, overflow };
                Ok(None)
            }
            (State::Stream { pc: p }, PDataValueType::Data) if p == pc => {
                if !pdv.is_last {
                    self.state = State::Stream { pc };
                }
                Ok(Some(Event::StoreData { data: pdv.data, last: pdv.is_last }))
            }
            (State::Idle | State::Command { .. }, PDataValueType::Data) => Err(ProtocolError::DataWithoutCommand),
            (State::Data { .. } | State::Stream { .. }, PDataValueType::Command) => Err(ProtocolError::CommandInsteadOfData),
            _ => Err(ProtocolError::ContextMismatch),
        }
    }

    fn command(&mut self, pc: u8, mut buf: Vec<u8>, pdv: PDataValue) -> Result<Option<Event>, ProtocolError> {
        if buf.len() + pdv.data.len() > self.max_command {
            return Err(ProtocolError::CommandTooLarge(self.max_command));
        }
        buf.extend_from_slice(&pdv.data);
        if !pdv.is_last {
            self.state = State::Command { pc, buf };
            return Ok(None);
        }
        let (command, extra) = if self.lenient {
            let (c, end) = Command::decode_prefix(&buf)?;
            (c, buf.get(end..).filter(|x| !x.is_empty()).map(<[u8]>::to_vec))
        } else {
            (Command::decode(&buf)?, None)
        };
        let store = command.field() == Ok(crate::command::field::C_STORE_RQ);
        self.limit = if store { self.max_data } else { MAX_IDENTIFIER };
        if command.has_data_set() {
            if store && self.streaming {
                self.state = State::Stream { pc };
                return Ok(Some(Event::StoreBegins { pc, command }));
            }
            self.state = State::Data { pc, command, buf: Vec::new(), overflow: false };
            return Ok(None);
        }
        Ok(Some(Event::Message(Message { pc_id: pc, command, data: None, data_overflow: false, extra })))
    }

    /// Whether a message is partly received.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Ul(#[from] dicom_ul::association::Error),
    #[error("sending a data set: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent {0}")]
    Unexpected(&'static str),
    #[error("the peer took nothing written for {0} s")]
    Stalled(u64),
    #[error("the peer gave no answer for {0} s")]
    Unanswered(u64),
    /// A C-STORE sub-operation's association failed.
    #[error(transparent)]
    Scu(#[from] crate::scu::ScuError),
}

/// Sends a command, and its data set if any, on presentation context `pc`.
/// A peer that takes nothing for `timeout` (each step of the write must
/// progress within it, however large the data set) is given up on: the
/// caller aborts the association, so it cannot hold its slot for ever.
///
/// The data set goes out as P-DATA PDUs built here rather than through
/// dicom-ul's `AsyncPDataWriter`, whose drop blocks the thread to flush
/// (past any timeout, and a panic on a current-thread runtime).
pub async fn send<A, S>(assoc: &mut A, pc: u8, command: &Command, data: Option<&[u8]>, timeout: std::time::Duration) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let stalled = || SendError::Stalled(timeout.as_secs());
    let pdu = Pdu::PData { data: vec![PDataValue { presentation_context_id: pc, value_type: PDataValueType::Command, is_last: true, data: command.encode() }] };
    tokio::time::timeout(timeout, AsyncAssociation::send(assoc, &pdu)).await.map_err(|_| stalled())??;
    if let Some(data) = data {
        let step = fragment_size(assoc.peer_max_pdu_length());
        // An empty data set is still one (last) fragment.
        let n = data.len().div_ceil(step).max(1);
        for i in 0..n {
            let chunk = data.get(i * step..data.len().min((i + 1) * step)).unwrap_or_default();
            let v = PDataValue { presentation_context_id: pc, value_type: PDataValueType::Data, is_last: i + 1 == n, data: chunk.to_vec() };
            let pdu = Pdu::PData { data: vec![v] };
            tokio::time::timeout(timeout, AsyncAssociation::send(assoc, &pdu)).await.map_err(|_| stalled())??;
        }
    }
    Ok(())
}

/// The data carried by one P-DATA PDU: what the peer's maximum PDU length
/// leaves after the PDV item header (PS3.8 9.3.5.1), and a step the write
/// timeout can judge.
fn fragment_size(peer_max_pdu: u32) -> usize {
    const PDV_HEADER: usize = 6;
    match peer_max_pdu as usize {
        // No limit stated.
        0 => WRITE_STEP,
        n => n.saturating_sub(PDV_HEADER).clamp(1, WRITE_STEP),
    }
}

/// The most data one P-DATA PDU carries.
const WRITE_STEP: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::field;

    fn pdv(pc: u8, command: bool, last: bool, data: Vec<u8>) -> PDataValue {
        PDataValue { presentation_context_id: pc, value_type: if command { PDataValueType::Command } else { PDataValueType::Data }, is_last: last, data }
    }

    #[test]
    fn assembles_fragmented_command_and_data() {
        let cmd = Command::request(field::C_STORE_RQ, 3, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        let mut a = Assembler::new(10);
        assert!(a.push(pdv(1, true, false, cmd[..10].to_vec())).unwrap().is_none());
        assert!(a.push(pdv(1, true, true, cmd[10..].to_vec())).unwrap().is_none());
        assert!(a.push(pdv(1, false, false, vec![1, 2, 3])).unwrap().is_none());
        let m = a.push(pdv(1, false, true, vec![4])).unwrap().unwrap();
        assert_eq!(m.data, Some(vec![1, 2, 3, 4]));
        assert!(a.is_idle());
    }

    #[test]
    fn oversized_data_is_read_through_and_flagged() {
        let cmd = Command::request(field::C_STORE_RQ, 3, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        let mut a = Assembler::new(4);
        a.push(pdv(1, true, true, cmd)).unwrap();
        a.push(pdv(1, false, false, vec![0; 3])).unwrap();
        let m = a.push(pdv(1, false, true, vec![0; 3])).unwrap().unwrap();
        assert!(m.data_overflow && m.data.is_none());
    }

    #[test]
    fn identifiers_are_capped_at_one_mib_and_store_data_sets_are_not() {
        let mut a = Assembler::new(8 << 20);
        let find = Command::request(field::C_FIND_RQ, 1, "1.2.840.10008.5.1.4.1.2.2.1", true).encode();
        a.push(pdv(1, true, true, find)).unwrap();
        a.push(pdv(1, false, false, vec![0; MAX_IDENTIFIER])).unwrap();
        let m = a.push(pdv(1, false, true, vec![0; 8])).unwrap().unwrap();
        assert!(m.data_overflow, "an identifier over 1 MiB is dropped");
        let store = Command::request(field::C_STORE_RQ, 2, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        a.push(pdv(1, true, true, store)).unwrap();
        a.push(pdv(1, false, false, vec![0; MAX_IDENTIFIER])).unwrap();
        let m = a.push(pdv(1, false, true, vec![0; 8])).unwrap().unwrap();
        assert!(!m.data_overflow && m.data.is_some_and(|d| d.len() == MAX_IDENTIFIER + 8));
    }

    #[test]
    fn a_small_data_set_limit_leaves_identifiers_their_mib() {
        let mut a = Assembler::new(4);
        let rsp = Command::request(field::C_FIND_RSP, 1, "1.2.840.10008.5.1.4.1.2.2.1", true).encode();
        a.push(pdv(1, true, true, rsp)).unwrap();
        let m = a.push(pdv(1, false, true, vec![0; 64])).unwrap().unwrap();
        assert!(!m.data_overflow && m.data.is_some_and(|d| d.len() == 64));
    }

    #[test]
    fn a_lenient_assembler_keeps_what_follows_the_command_set() {
        let mut rsp = Command::request(field::C_GET_RSP, 1, "1.2.840.10008.5.1.4.1.2.2.3", false).encode();
        let tail = [0x08, 0x00, 0x58, 0x00, 4, 0, 0, 0, b'1', b'.', b'2', 0];
        rsp.extend(tail);
        assert!(Assembler::new(4).push(pdv(1, true, true, rsp.clone())).is_err());
        let m = Assembler::lenient(4).push(pdv(1, true, true, rsp)).unwrap().unwrap();
        assert_eq!(m.extra.as_deref(), Some(&tail[..]));
    }

    #[test]
    fn a_streaming_assembler_passes_store_data_on_and_holds_identifiers() {
        let mut a = Assembler::streaming();
        let store = Command::request(field::C_STORE_RQ, 3, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        assert!(matches!(a.push_event(pdv(1, true, true, store)).unwrap(), Some(Event::StoreBegins { pc: 1, .. })));
        assert!(matches!(a.push_event(pdv(1, false, false, vec![1, 2])).unwrap(), Some(Event::StoreData { ref data, last: false }) if data == &[1, 2]));
        assert!(!a.is_idle());
        assert!(matches!(a.push_event(pdv(1, true, true, vec![])), Err(ProtocolError::CommandInsteadOfData)));
        let mut a = Assembler::streaming();
        let store = Command::request(field::C_STORE_RQ, 4, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        a.push_event(pdv(1, true, true, store)).unwrap();
        assert!(matches!(a.push_event(pdv(1, false, true, vec![3])).unwrap(), Some(Event::StoreData { last: true, .. })));
        assert!(a.is_idle());
        let find = Command::request(field::C_FIND_RQ, 5, "1.2.840.10008.5.1.4.1.2.2.1", true).encode();
        assert!(a.push_event(pdv(1, true, true, find)).unwrap().is_none());
        let m = a.push_event(pdv(1, false, true, vec![0; 8])).unwrap();
        assert!(matches!(m, Some(Event::Message(Message { data: Some(ref d), .. })) if d.len() == 8));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut a = Assembler::new(4);
        assert!(matches!(a.push(pdv(1, false, true, vec![])), Err(ProtocolError::DataWithoutCommand)));
        let cmd = Command::request(field::C_STORE_RQ, 3, "1.2.840.10008.5.1.4.1.1.2", true).encode();
        let mut a = Assembler::new(4);
        a.push(pdv(1, true, true, cmd)).unwrap();
        assert!(matches!(a.push(pdv(3, false, true, vec![])), Err(ProtocolError::ContextMismatch)));
    }
}

/// Sends the final response to `rq` carrying `a`'s status and comment.
pub(crate) async fn answer<A, S>(
    assoc: &mut A,
    pc: u8,
    rq: &Command,
    rsp_field: u16,
    a: &crate::handler::Answer,
    timeout: std::time::Duration,
) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let mut rsp = Command::response_to(rq, rsp_field, a.status, false);
    if let Some(c) = &a.comment {
        rsp.set_str(crate::command::tag::ERROR_COMMENT, &crate::store::comment(c));
    }
    send(assoc, pc, &rsp, None, timeout).await
}

/// What arrived while a long operation was answering.
#[derive(Debug, PartialEq, Eq)]
pub enum Interrupt {
    None,
    /// A C-CANCEL-RQ for the operation in progress.
    Cancel,
}

/// Checks, without waiting, whether the peer has sent anything; reads it
/// if so. Anything but a C-CANCEL there is a protocol violation.
pub async fn interrupted<A, S>(assoc: &mut A) -> Result<Interrupt, SendError>
where
    A: AsyncAssociation<S> + Send,
    S: crate::association::Stream,
{
    let (stream, buffered) = assoc.get_mut();
    let ready = !buffered.is_empty() || matches!(tokio::time::timeout(std::time::Duration::ZERO, stream.tcp().peek(&mut [0u8; 1])).await, Ok(Ok(n)) if n > 0);
    if !ready {
        return Ok(Interrupt::None);
    }
    match AsyncAssociation::receive(assoc).await? {
        Pdu::PData { data } if data.iter().all(|v| v.value_type == PDataValueType::Command) => {
            let bytes: Vec<u8> = data.into_iter().flat_map(|v| v.data).collect();
            match Command::decode(&bytes).ok().and_then(|c| c.field().ok()) {
                Some(crate::command::field::C_CANCEL_RQ) => Ok(Interrupt::Cancel),
                _ => Err(SendError::Unexpected("a command other than C-CANCEL during an operation")),
            }
        }
        Pdu::AbortRQ { .. } => Err(SendError::Unexpected("A-ABORT")),
        _ => Err(SendError::Unexpected("an unexpected PDU during an operation")),
    }
}

#[cfg(test)]
mod fragment_tests {
    use super::fragment_size;

    #[test]
    fn fragments_fit_the_peers_pdu_and_the_write_step() {
        assert_eq!(fragment_size(16384), 16378);
        assert_eq!(fragment_size(1 << 20), 64 << 10);
        assert_eq!(fragment_size(0), 64 << 10);
        assert_eq!(fragment_size(3), 1);
    }
}
