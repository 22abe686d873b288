//! Partner messages and their framing.
//!
//! A frame on the partner connection is a 2-byte big-endian length and
//! that many bytes of Noise ciphertext (at most 65,535: the Noise message
//! limit). The plaintext of a transport frame is one [`Msg`] in JSON.
//! Records are opaque bytes to this crate (the daemon's store records).

use serde::{Deserialize, Serialize};

use crate::partner::{PartnerState, Role};

/// Noise's maximum message length.
pub const MAX_FRAME: usize = 65_535;
/// Room for a message inside a frame (the AEAD tag is 16 bytes).
pub const MAX_PLAINTEXT: usize = MAX_FRAME - 16;

/// One partner message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Every hello interval, both ways: who the sender is and what it
    /// believes (HARP's hello). `applied` is the last update the sender
    /// applied (standby) or sent (active).
    Hello { node: String, term: u64, role: Role, state: PartnerState, seq: u64 },
    /// Standby to active, on connect and in RECOVER: everything, please.
    SnapshotRequest,
    /// Active to standby: a snapshot starts; it reflects every update
    /// before `seq`.
    SnapshotBegin { seq: u64 },
    /// One record of a snapshot.
    Record { key: String, value: Vec<u8> },
    /// The snapshot is complete; updates from `seq` follow.
    SnapshotEnd { seq: u64 },
    /// A numbered change: `value` `None` deletes the record.
    Update { seq: u64, key: String, value: Option<Vec<u8>> },
    /// Standby to active: every update up to `seq` (and the snapshot ending
    /// there) is durable on the standby.
    Ack { seq: u64 },
    /// Active to standby, planned switchover: the sender has given up the
    /// service address; take over now (with a term above `term`).
    Handover { term: u64 },
}

/// A message that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("partner message does not decode: {0}")]
    Decode(String),
    #[error("partner message of {0} bytes exceeds the frame limit")]
    TooLong(usize),
    #[error("frame length {0} exceeds the limit")]
    BadFrame(usize),
}

impl Msg {
    /// The message's plaintext bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let v = serde_json::to_vec(self).map_err(|e| WireError::Decode(e.to_string()))?;
        if v.len() > MAX_PLAINTEXT {
            return Err(WireError::TooLong(v.len()));
        }
        Ok(v)
    }

    /// Reads a message from plaintext bytes; any input gives a message or
    /// an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        serde_json::from_slice(bytes).map_err(|e| WireError::Decode(e.to_string()))
    }
}

/// Appends a frame (length and payload) to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let len = u16::try_from(payload.len()).map_err(|_| WireError::TooLong(payload.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Splits the first complete frame off `buf`: its payload and the bytes it
/// took, or `None` when more bytes are needed.
pub fn deframe(buf: &[u8]) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    let payload = buf.get(2..2 + len)?;
    Some((payload, 2 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        let msgs = [
            Msg::Hello { node: "a".into(), term: 3, role: Role::Active, state: PartnerState::Normal, seq: 9 },
            Msg::SnapshotRequest,
            Msg::Record { key: "tunnel/pw".into(), value: b"{}".to_vec() },
            Msg::Update { seq: 1, key: "k".into(), value: None },
            Msg::Ack { seq: u64::MAX },
        ];
        for m in msgs {
            assert_eq!(Msg::decode(&m.encode().expect("encode")).expect("decode"), m);
        }
        for bad in [&b""[..], b"{", b"\xff\xfe", b"{\"Ack\":{\"seq\":-1}}", b"[1,2,3]"] {
            assert!(Msg::decode(bad).is_err());
        }
        let huge = Msg::Record { key: "k".into(), value: vec![0; MAX_PLAINTEXT] };
        assert!(matches!(huge.encode(), Err(WireError::TooLong(_))));
    }

    #[test]
    fn frames_split_only_when_complete() {
        let mut out = Vec::new();
        frame(b"hello", &mut out).expect("frame");
        frame(b"", &mut out).expect("frame");
        assert_eq!(deframe(&out[..1]), None);
        assert_eq!(deframe(&out[..6]), None);
        let (p, n) = deframe(&out).expect("first");
        assert_eq!((p, n), (&b"hello"[..], 7));
        assert_eq!(deframe(&out[n..]), Some((&b""[..], 2)));
        assert!(frame(&vec![0; MAX_FRAME + 1], &mut Vec::new()).is_err());
    }
}
