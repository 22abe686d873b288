//! Attribute-Value Pairs: the raw layer (RFC 2661 4.1, RFC 3931 5.1) and
//! typed values for every AVP of RFC 2661 4.4, RFC 3931 5.4 and RFC 4951
//! section 5 (W-1 to W-4).
//!
//! The raw reader checks `6 <= Length <= remaining` and splits each AVP off
//! before looking at its type, so an AVP it does not know never desynchronises
//! the ones after it.

use super::{be16, header::Version};

mod value;

pub use value::{digest_type, AvpValue, BadValue, CallErrors};

/// AVP flag bits (first octet of the header).
const AVP_M: u16 = 0x8000;
const AVP_H: u16 = 0x4000;
const AVP_RESERVED: u16 = 0x3C00;
const AVP_LEN_MASK: u16 = 0x03FF;
/// AVP header: flags+length (2), Vendor ID (2), Attribute Type (2).
pub const AVP_HLEN: usize = 6;
/// Largest AVP value (10-bit Length field).
pub const AVP_MAX_VALUE: usize = AVP_LEN_MASK as usize - AVP_HLEN;

/// IETF vendor ID.
pub const VENDOR_IETF: u16 = 0;

/// Attribute types (Vendor ID 0).
pub mod attr {
    pub const MESSAGE_TYPE: u16 = 0;
    pub const RESULT_CODE: u16 = 1;
    pub const PROTOCOL_VERSION: u16 = 2;
    pub const FRAMING_CAPABILITIES: u16 = 3;
    pub const BEARER_CAPABILITIES: u16 = 4;
    /// v2 Tie Breaker; v3 Control Connection / Session Tie Breaker.
    pub const TIE_BREAKER: u16 = 5;
    pub const FIRMWARE_REVISION: u16 = 6;
    pub const HOST_NAME: u16 = 7;
    pub const VENDOR_NAME: u16 = 8;
    pub const ASSIGNED_TUNNEL_ID: u16 = 9;
    pub const RECEIVE_WINDOW_SIZE: u16 = 10;
    pub const CHALLENGE: u16 = 11;
    pub const Q931_CAUSE_CODE: u16 = 12;
    pub const CHALLENGE_RESPONSE: u16 = 13;
    pub const ASSIGNED_SESSION_ID: u16 = 14;
    /// v2 Call Serial Number; v3 Serial Number.
    pub const CALL_SERIAL_NUMBER: u16 = 15;
    pub const MINIMUM_BPS: u16 = 16;
    pub const MAXIMUM_BPS: u16 = 17;
    pub const BEARER_TYPE: u16 = 18;
    pub const FRAMING_TYPE: u16 = 19;
    pub const CALLED_NUMBER: u16 = 21;
    pub const CALLING_NUMBER: u16 = 22;
    pub const SUB_ADDRESS: u16 = 23;
    pub const TX_CONNECT_SPEED: u16 = 24;
    pub const PHYSICAL_CHANNEL_ID: u16 = 25;
    pub const INITIAL_RECEIVED_LCP_CONFREQ: u16 = 26;
    pub const LAST_SENT_LCP_CONFREQ: u16 = 27;
    pub const LAST_RECEIVED_LCP_CONFREQ: u16 = 28;
    pub const PROXY_AUTHEN_TYPE: u16 = 29;
    pub const PROXY_AUTHEN_NAME: u16 = 30;
    pub const PROXY_AUTHEN_CHALLENGE: u16 = 31;
    pub const PROXY_AUTHEN_ID: u16 = 32;
    pub const PROXY_AUTHEN_RESPONSE: u16 = 33;
    /// v2 Call Errors; v3 Circuit Errors.
    pub const CALL_ERRORS: u16 = 34;
    pub const ACCM: u16 = 35;
    pub const RANDOM_VECTOR: u16 = 36;
    pub const PRIVATE_GROUP_ID: u16 = 37;
    pub const RX_CONNECT_SPEED: u16 = 38;
    pub const SEQUENCING_REQUIRED: u16 = 39;
    pub const MESSAGE_DIGEST: u16 = 59;
    pub const ROUTER_ID: u16 = 60;
    pub const ASSIGNED_CONNECTION_ID: u16 = 61;
    pub const PW_CAPABILITIES_LIST: u16 = 62;
    pub const LOCAL_SESSION_ID: u16 = 63;
    pub const REMOTE_SESSION_ID: u16 = 64;
    pub const ASSIGNED_COOKIE: u16 = 65;
    pub const REMOTE_END_ID: u16 = 66;
    pub const PW_TYPE: u16 = 68;
    pub const L2_SPECIFIC_SUBLAYER: u16 = 69;
    pub const DATA_SEQUENCING: u16 = 70;
    pub const CIRCUIT_STATUS: u16 = 71;
    pub const PREFERRED_LANGUAGE: u16 = 72;
    pub const CONTROL_AUTH_NONCE: u16 = 73;
    pub const TX_CONNECT_SPEED_BPS: u16 = 74;
    pub const RX_CONNECT_SPEED_BPS: u16 = 75;
    /// RFC 4951 W-1.
    pub const FAILOVER_CAPABILITY: u16 = 76;
    /// RFC 4951 W-2.
    pub const TUNNEL_RECOVERY: u16 = 77;
    /// RFC 4951 W-3.
    pub const SUGGESTED_CONTROL_SEQUENCE: u16 = 78;
    /// RFC 4951 W-4.
    pub const FAILOVER_SESSION_STATE: u16 = 79;
}

/// M and H bits of an AVP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AvpFlags {
    pub mandatory: bool,
    pub hidden: bool,
}

impl AvpFlags {
    pub const MANDATORY: Self = Self { mandatory: true, hidden: false };
    pub const OPTIONAL: Self = Self { mandatory: false, hidden: false };
}

/// One AVP as it is on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAvp<'a> {
    pub flags: AvpFlags,
    /// One of the reserved header bits was set: RFC 2661 4.1 "An AVP
    /// received with a reserved bit set to 1 MUST be treated as an
    /// unrecognized AVP."
    pub reserved_set: bool,
    pub vendor: u16,
    pub attr: u16,
    pub value: &'a [u8],
}

/// A broken AVP header: the rest of the message cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AVP at offset {offset}: Length {length} does not fit (6..={remaining})")]
pub struct AvpLengthError {
    pub offset: usize,
    pub length: usize,
    pub remaining: usize,
}

/// Iterates over the AVPs of a message body. After an error it yields
/// nothing more.
#[derive(Clone, Debug)]
pub struct RawAvps<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

/// Reads the AVPs of a message body.
pub fn raw_avps(buf: &[u8]) -> RawAvps<'_> {
    RawAvps { buf, offset: 0, failed: false }
}

impl<'a> Iterator for RawAvps<'a> {
    type Item = Result<RawAvp<'a>, AvpLengthError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.offset..)?;
        let first = be16(rest, 0);
        let length = first.map_or(0, |f| usize::from(f & AVP_LEN_MASK));
        let (Some(first), Some(vendor), Some(attr), Some(value)) =
            (first, be16(rest, 2), be16(rest, 4), rest.get(AVP_HLEN..length.max(AVP_HLEN)))
        else {
            self.failed = true;
            return Some(Err(AvpLengthError { offset: self.offset, length, remaining: rest.len() }));
        };
        if length < AVP_HLEN {
            self.failed = true;
            return Some(Err(AvpLengthError { offset: self.offset, length, remaining: rest.len() }));
        }
        self.offset += length;
        Some(Ok(RawAvp {
            flags: AvpFlags { mandatory: first & AVP_M != 0, hidden: first & AVP_H != 0 },
            reserved_set: first & AVP_RESERVED != 0,
            vendor,
            attr,
            value,
        }))
    }
}

/// Appends one AVP header and value. `None` if the value is too long.
pub fn emit_raw(flags: AvpFlags, vendor: u16, attr: u16, value: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if value.len() > AVP_MAX_VALUE {
        return None;
    }
    let mut first = (AVP_HLEN + value.len()) as u16;
    if flags.mandatory {
        first |= AVP_M;
    }
    if flags.hidden {
        first |= AVP_H;
    }
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&vendor.to_be_bytes());
    out.extend_from_slice(&attr.to_be_bytes());
    out.extend_from_slice(value);
    Some(())
}

/// An AVP with its flags.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Avp {
    pub flags: AvpFlags,
    pub value: AvpValue,
}

impl Avp {
    /// The AVP with the M bit this implementation uses for its type in
    /// `version`.
    pub fn new(version: Version, value: AvpValue) -> Self {
        Self { flags: AvpFlags { mandatory: value.default_mandatory(version), hidden: false }, value }
    }

    /// The same AVP, to be sent hidden.
    pub fn hidden(mut self) -> Self {
        self.flags.hidden = true;
        self
    }
}
