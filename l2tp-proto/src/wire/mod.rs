//! The L2TP wire codec: headers, AVPs, hidden AVPs, control messages and
//! their validation. Every decoder takes any byte string and returns a value
//! or a typed error; nothing here panics or reads out of bounds.

pub mod auth;
pub mod avp;
pub mod header;
pub mod hidden;
pub mod message;
pub mod rules;
pub mod types;

pub use avp::{Avp, AvpFlags, AvpValue, RawAvp};
pub use header::{ControlHeader, Cookie, Kind, Transport, V2DataHeader, V3DataHeader, Version};
pub use message::{ControlMessage, Message};
pub use types::{MessageType, Reply, ResultCode};

/// Big-endian u16 at `off`, if in bounds.
#[inline]
pub(crate) fn be16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Big-endian u32 at `off`, if in bounds.
#[inline]
pub(crate) fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A header that cannot be used. RFC 2661 3.1 and RFC 3931 3.2.1: such a
/// packet is discarded (and counted); nothing is sent back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("truncated header")]
    Truncated,
    #[error("unsupported L2TP version {0}")]
    UnsupportedVersion(u8),
    #[error("not a control message")]
    NotControl,
    #[error("not a data message")]
    NotData,
    #[error("control message flags {0:#06x}: L and S must be set, O and P clear")]
    ControlFlags(u16),
    #[error("Length field {declared} does not fit the {available} bytes received")]
    BadLength { declared: usize, available: usize },
    #[error("message longer than 65535 bytes")]
    TooLong,
    #[error("ID {0} does not fit the 16-bit L2TPv2 field")]
    IdTooLarge(u32),
    #[error("cookie length {0}: must be 0, 4 or 8")]
    BadCookieLength(usize),
    #[error("sequence number {0} does not fit 24 bits")]
    SequenceTooLarge(u32),
}
