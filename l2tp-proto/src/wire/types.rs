//! Message types, result and error codes, and what a receiver must answer.

use std::fmt;

/// Control message types: RFC 2661 section 3.2, RFC 3931 section 3.1,
/// RFC 4951 sections 3.3 and 5 (W-5, W-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    Sccrq,
    Sccrp,
    Scccn,
    StopCcn,
    Hello,
    Ocrq,
    Ocrp,
    Occn,
    Icrq,
    Icrp,
    Iccn,
    Cdn,
    Wen,
    Sli,
    /// L2TPv3 Explicit Acknowledgement.
    Ack,
    /// RFC 4951 Failover Session Query.
    Fsq,
    /// RFC 4951 Failover Session Response.
    Fsr,
    /// A type this implementation does not know (kept for the M-bit rule).
    Unknown(u16),
}

impl MessageType {
    pub const KNOWN: [MessageType; 17] = [
        Self::Sccrq,
        Self::Sccrp,
        Self::Scccn,
        Self::StopCcn,
        Self::Hello,
        Self::Ocrq,
        Self::Ocrp,
        Self::Occn,
        Self::Icrq,
        Self::Icrp,
        Self::Iccn,
        Self::Cdn,
        Self::Wen,
        Self::Sli,
        Self::Ack,
        Self::Fsq,
        Self::Fsr,
    ];

    pub const fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::Sccrq,
            2 => Self::Sccrp,
            3 => Self::Scccn,
            4 => Self::StopCcn,
            6 => Self::Hello,
            7 => Self::Ocrq,
            8 => Self::Ocrp,
            9 => Self::Occn,
            10 => Self::Icrq,
            11 => Self::Icrp,
            12 => Self::Iccn,
            14 => Self::Cdn,
            15 => Self::Wen,
            16 => Self::Sli,
            20 => Self::Ack,
            21 => Self::Fsq,
            22 => Self::Fsr,
            v => Self::Unknown(v),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Sccrq => 1,
            Self::Sccrp => 2,
            Self::Scccn => 3,
            Self::StopCcn => 4,
            Self::Hello => 6,
            Self::Ocrq => 7,
            Self::Ocrp => 8,
            Self::Occn => 9,
            Self::Icrq => 10,
            Self::Icrp => 11,
            Self::Iccn => 12,
            Self::Cdn => 14,
            Self::Wen => 15,
            Self::Sli => 16,
            Self::Ack => 20,
            Self::Fsq => 21,
            Self::Fsr => 22,
            Self::Unknown(v) => v,
        }
    }

    /// Messages about one session: a fatal error in one of them clears the
    /// session (CDN), not the tunnel (RFC 2661 4.1, RFC 3931 5.2).
    pub const fn is_session_message(self) -> bool {
        matches!(
            self,
            Self::Ocrq
                | Self::Ocrp
                | Self::Occn
                | Self::Icrq
                | Self::Icrp
                | Self::Iccn
                | Self::Cdn
                | Self::Wen
                | Self::Sli
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Sccrq => "SCCRQ",
            Self::Sccrp => "SCCRP",
            Self::Scccn => "SCCCN",
            Self::StopCcn => "StopCCN",
            Self::Hello => "HELLO",
            Self::Ocrq => "OCRQ",
            Self::Ocrp => "OCRP",
            Self::Occn => "OCCN",
            Self::Icrq => "ICRQ",
            Self::Icrp => "ICRP",
            Self::Iccn => "ICCN",
            Self::Cdn => "CDN",
            Self::Wen => "WEN",
            Self::Sli => "SLI",
            Self::Ack => "ACK",
            Self::Fsq => "FSQ",
            Self::Fsr => "FSR",
            Self::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(v) => write!(f, "message type {v}"),
            t => f.write_str(t.name()),
        }
    }
}

/// StopCCN result codes (RFC 2661 4.4.2, RFC 3931 5.4.2).
pub mod stopccn {
    pub const GENERAL_CLEAR: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ALREADY_EXISTS: u16 = 3;
    pub const NOT_AUTHORIZED: u16 = 4;
    pub const BAD_PROTOCOL_VERSION: u16 = 5;
    pub const SHUTTING_DOWN: u16 = 6;
    pub const FSM_ERROR: u16 = 7;
}

/// CDN result codes (RFC 2661 4.4.2, RFC 3931 5.4.2).
pub mod cdn {
    pub const LOST_CARRIER: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ADMINISTRATIVE: u16 = 3;
    pub const NO_FACILITIES_TEMPORARY: u16 = 4;
    pub const NO_FACILITIES_PERMANENT: u16 = 5;
    /// v2 only.
    pub const INVALID_DESTINATION: u16 = 6;
    /// v3.
    pub const LOST_TIE_BREAKER: u16 = 13;
    pub const UNSUPPORTED_PW_TYPE: u16 = 14;
    pub const SEQUENCING_WITHOUT_SUBLAYER: u16 = 15;
    pub const FSM_ERROR: u16 = 16;
}

/// General error codes (RFC 2661 4.4.2, RFC 3931 5.4.2).
pub mod error {
    pub const NONE: u16 = 0;
    pub const NO_CONTROL_CONNECTION: u16 = 1;
    pub const BAD_LENGTH: u16 = 2;
    pub const OUT_OF_RANGE: u16 = 3;
    pub const NO_RESOURCES: u16 = 4;
    pub const INVALID_SESSION_ID: u16 = 5;
    pub const VENDOR_SPECIFIC: u16 = 6;
    pub const TRY_ANOTHER: u16 = 7;
    pub const UNKNOWN_MANDATORY_AVP: u16 = 8;
    pub const TRY_ANOTHER_DIRECTED: u16 = 9;
}

/// Result Code AVP value (type 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResultCode {
    pub result: u16,
    pub error: Option<u16>,
    /// Human-readable message; only present when `error` is.
    pub message: Vec<u8>,
}

impl ResultCode {
    pub fn new(result: u16, error: Option<u16>, message: &str) -> Self {
        Self { result, error, message: if error.is_some() { message.as_bytes().to_vec() } else { Vec::new() } }
    }
}

/// What a receiver must do about a message it cannot accept as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Drop the message without acknowledging it (it never entered the
    /// reliable channel, e.g. a bad header).
    Discard,
    /// Acknowledge the message for the reliable transport but otherwise
    /// ignore it.
    Ignore,
    /// Tear the control connection down with StopCCN carrying this code.
    StopCcn(ResultCode),
    /// Tear the session down with CDN carrying this code.
    Cdn(ResultCode),
}
