//! Typed AVP values: [`AvpValue`] with its decoder and encoder, for every
//! AVP of RFC 2661 4.4, RFC 3931 5.4 and RFC 4951 section 5.

use super::{attr, VENDOR_IETF};
use crate::wire::{be16, be32, header::Version, types::ResultCode};

/// Call Errors (v2, type 34, RFC 2661 4.4.6); also accepted in v3 when
/// the 26-octet layout is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CallErrors {
    pub crc: u32,
    pub framing: u32,
    pub hardware_overruns: u32,
    pub buffer_overruns: u32,
    pub timeouts: u32,
    pub alignment: u32,
}

/// Message Digest algorithm (RFC 3931 5.4.1).
pub mod digest_type {
    pub const HMAC_MD5: u8 = 0;
    pub const HMAC_SHA1: u8 = 1;
}

/// A typed AVP value. Strings are kept as bytes: the RFCs do not require
/// them to be valid UTF-8 on receipt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AvpValue {
    ResultCode(ResultCode),
    ProtocolVersion {
        version: u8,
        revision: u8,
    },
    FramingCapabilities(u32),
    BearerCapabilities(u32),
    /// v2 Tie Breaker, v3 Control Connection Tie Breaker and Session Tie
    /// Breaker: 8 octets, the lower value wins.
    TieBreaker([u8; 8]),
    FirmwareRevision(u16),
    HostName(Vec<u8>),
    VendorName(Vec<u8>),
    AssignedTunnelId(u16),
    ReceiveWindowSize(u16),
    Challenge(Vec<u8>),
    Q931CauseCode {
        cause: u16,
        message: u8,
        advisory: Vec<u8>,
    },
    ChallengeResponse([u8; 16]),
    AssignedSessionId(u16),
    /// v2 Call Serial Number, v3 Serial Number.
    CallSerialNumber(u32),
    MinimumBps(u32),
    MaximumBps(u32),
    BearerType(u32),
    FramingType(u32),
    CalledNumber(Vec<u8>),
    CallingNumber(Vec<u8>),
    SubAddress(Vec<u8>),
    TxConnectSpeed(u32),
    PhysicalChannelId(u32),
    InitialReceivedLcpConfreq(Vec<u8>),
    LastSentLcpConfreq(Vec<u8>),
    LastReceivedLcpConfreq(Vec<u8>),
    ProxyAuthenType(u16),
    ProxyAuthenName(Vec<u8>),
    ProxyAuthenChallenge(Vec<u8>),
    ProxyAuthenId(u8),
    ProxyAuthenResponse(Vec<u8>),
    CallErrors(CallErrors),
    /// v3 Circuit Errors in its 18-octet layout (RFC 3931 5.4.5).
    CircuitErrors {
        hardware_overruns: u32,
        buffer_overruns: u32,
        timeouts: u32,
        alignment: u32,
    },
    Accm {
        send: u32,
        receive: u32,
    },
    RandomVector(Vec<u8>),
    PrivateGroupId(Vec<u8>),
    RxConnectSpeed(u32),
    SequencingRequired,
    MessageDigest {
        digest_type: u8,
        digest: Vec<u8>,
    },
    RouterId(u32),
    AssignedConnectionId(u32),
    PwCapabilities(Vec<u16>),
    LocalSessionId(u32),
    RemoteSessionId(u32),
    AssignedCookie(Vec<u8>),
    RemoteEndId(Vec<u8>),
    PwType(u16),
    L2SpecificSublayer(u16),
    DataSequencing(u16),
    /// Circuit Status: N (new) bit 0x0002, A (active) bit 0x0001.
    CircuitStatus {
        new: bool,
        active: bool,
    },
    PreferredLanguage(Vec<u8>),
    ControlAuthNonce(Vec<u8>),
    TxConnectSpeedBps(u64),
    RxConnectSpeedBps(u64),
    /// RFC 4951 W-1: C (control channel) and D (data channel) bits and the
    /// Recovery Time in milliseconds.
    FailoverCapability {
        control: bool,
        data: bool,
        recovery_time_ms: u32,
    },
    /// RFC 4951 W-2: the old tunnel's IDs as seen by the sender (16 bits
    /// each in v2).
    TunnelRecovery {
        recover_tunnel_id: u32,
        recover_remote_tunnel_id: u32,
    },
    /// RFC 4951 W-3.
    SuggestedControlSequence {
        ns: u16,
        nr: u16,
    },
    /// RFC 4951 W-4 (16 bits each in v2).
    FailoverSessionState {
        session_id: u32,
        remote_session_id: u32,
    },
    /// Any AVP this implementation does not interpret.
    Unknown {
        vendor: u16,
        attr: u16,
        value: Vec<u8>,
    },
}

/// A known AVP whose value does not have the RFC's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AVP type {attr}: value of {len} octets is malformed")]
pub struct BadValue {
    pub attr: u16,
    pub len: usize,
}

fn arr<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}
fn u16v(v: &[u8]) -> Option<u16> {
    arr::<2>(v).map(u16::from_be_bytes)
}
fn u32v(v: &[u8]) -> Option<u32> {
    arr::<4>(v).map(u32::from_be_bytes)
}
fn u64v(v: &[u8]) -> Option<u64> {
    arr::<8>(v).map(u64::from_be_bytes)
}
fn nonempty(v: &[u8]) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// 16 reserved bits, then two IDs: 32 bits each in v3; 16 reserved + 16
/// bits each in v2 (RFC 4951 W-2, W-4). Value length 10 in both versions.
/// Reserved bits are ignored on receipt.
fn two_ids(version: Version, v: &[u8]) -> Option<(u32, u32)> {
    if v.len() != 10 {
        return None;
    }
    match version {
        Version::V3 => Some((be32(v, 2)?, be32(v, 6)?)),
        Version::V2 => Some((u32::from(be16(v, 4)?), u32::from(be16(v, 8)?))),
    }
}

fn emit_two_ids(version: Version, a: u32, b: u32, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&[0, 0]);
    match version {
        Version::V3 => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
        }
        Version::V2 => {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&u16::try_from(a).ok()?.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&u16::try_from(b).ok()?.to_be_bytes());
        }
    }
    Some(())
}

impl AvpValue {
    /// Decodes the (unhidden) value of an IETF AVP. Unknown types become
    /// [`AvpValue::Unknown`]; a known type with a malformed value is an
    /// error.
    pub fn decode(version: Version, vendor: u16, attr: u16, v: &[u8]) -> Result<Self, BadValue> {
        use attr::*;
        let bad = BadValue { attr, len: v.len() };
        if vendor != VENDOR_IETF {
            return Ok(Self::Unknown { vendor, attr, value: v.to_vec() });
        }
        let val = match attr {
            RESULT_CODE => {
                let result = be16(v, 0).ok_or(bad)?;
                let (error, message) = match v.len() {
                    2 => (None, Vec::new()),
                    3 => return Err(bad),
                    _ => (be16(v, 2), v.get(4..).unwrap_or_default().to_vec()),
                };
                Some(Self::ResultCode(ResultCode { result, error, message }))
            }
            PROTOCOL_VERSION => arr::<2>(v).map(|[version, revision]| Self::ProtocolVersion { version, revision }),
            FRAMING_CAPABILITIES => u32v(v).map(Self::FramingCapabilities),
            BEARER_CAPABILITIES => u32v(v).map(Self::BearerCapabilities),
            TIE_BREAKER => arr::<8>(v).map(Self::TieBreaker),
            FIRMWARE_REVISION => u16v(v).map(Self::FirmwareRevision),
            HOST_NAME => nonempty(v).map(Self::HostName),
            VENDOR_NAME => Some(Self::VendorName(v.to_vec())),
            ASSIGNED_TUNNEL_ID => u16v(v).map(Self::AssignedTunnelId),
            RECEIVE_WINDOW_SIZE => u16v(v).map(Self::ReceiveWindowSize),
            CHALLENGE => nonempty(v).map(Self::Challenge),
            Q931_CAUSE_CODE => match (be16(v, 0), v.get(2)) {
                (Some(cause), Some(&message)) => {
                    Some(Self::Q931CauseCode { cause, message, advisory: v.get(3..).unwrap_or_default().to_vec() })
                }
                _ => None,
            },
            CHALLENGE_RESPONSE => arr::<16>(v).map(Self::ChallengeResponse),
            ASSIGNED_SESSION_ID => u16v(v).map(Self::AssignedSessionId),
            CALL_SERIAL_NUMBER => u32v(v).map(Self::CallSerialNumber),
            MINIMUM_BPS => u32v(v).map(Self::MinimumBps),
            MAXIMUM_BPS => u32v(v).map(Self::MaximumBps),
            BEARER_TYPE => u32v(v).map(Self::BearerType),
            FRAMING_TYPE => u32v(v).map(Self::FramingType),
            CALLED_NUMBER => Some(Self::CalledNumber(v.to_vec())),
            CALLING_NUMBER => Some(Self::CallingNumber(v.to_vec())),
            SUB_ADDRESS => Some(Self::SubAddress(v.to_vec())),
            TX_CONNECT_SPEED => u32v(v).map(Self::TxConnectSpeed),
            PHYSICAL_CHANNEL_ID => u32v(v).map(Self::PhysicalChannelId),
            INITIAL_RECEIVED_LCP_CONFREQ => Some(Self::InitialReceivedLcpConfreq(v.to_vec())),
            LAST_SENT_LCP_CONFREQ => Some(Self::LastSentLcpConfreq(v.to_vec())),
            LAST_RECEIVED_LCP_CONFREQ => Some(Self::LastReceivedLcpConfreq(v.to_vec())),
            PROXY_AUTHEN_TYPE => u16v(v).map(Self::ProxyAuthenType),
            PROXY_AUTHEN_NAME => Some(Self::ProxyAuthenName(v.to_vec())),
            PROXY_AUTHEN_CHALLENGE => nonempty(v).map(Self::ProxyAuthenChallenge),
            // 1 reserved octet, then the ID.
            PROXY_AUTHEN_ID => u16v(v).map(|w| Self::ProxyAuthenId(w as u8)),
            PROXY_AUTHEN_RESPONSE => Some(Self::ProxyAuthenResponse(v.to_vec())),
            CALL_ERRORS => match v.len() {
                26 => Some(Self::CallErrors(CallErrors {
                    crc: be32(v, 2).ok_or(bad)?,
                    framing: be32(v, 6).ok_or(bad)?,
                    hardware_overruns: be32(v, 10).ok_or(bad)?,
                    buffer_overruns: be32(v, 14).ok_or(bad)?,
                    timeouts: be32(v, 18).ok_or(bad)?,
                    alignment: be32(v, 22).ok_or(bad)?,
                })),
                18 if version == Version::V3 => Some(Self::CircuitErrors {
                    hardware_overruns: be32(v, 2).ok_or(bad)?,
                    buffer_overruns: be32(v, 6).ok_or(bad)?,
                    timeouts: be32(v, 10).ok_or(bad)?,
                    alignment: be32(v, 14).ok_or(bad)?,
                }),
                _ => None,
            },
            ACCM if v.len() == 10 => Some(Self::Accm { send: be32(v, 2).ok_or(bad)?, receive: be32(v, 6).ok_or(bad)? }),
            ACCM => None,
            RANDOM_VECTOR => nonempty(v).map(Self::RandomVector),
            PRIVATE_GROUP_ID => Some(Self::PrivateGroupId(v.to_vec())),
            RX_CONNECT_SPEED => u32v(v).map(Self::RxConnectSpeed),
            SEQUENCING_REQUIRED => v.is_empty().then_some(Self::SequencingRequired),
            MESSAGE_DIGEST => match (v.first(), v.len()) {
                (Some(&digest_type::HMAC_MD5), 17) | (Some(&digest_type::HMAC_SHA1), 21) => {
                    Some(Self::MessageDigest { digest_type: v[0], digest: v[1..].to_vec() })
                }
                _ => None,
            },
            ROUTER_ID => u32v(v).map(Self::RouterId),
            ASSIGNED_CONNECTION_ID => u32v(v).map(Self::AssignedConnectionId),
            PW_CAPABILITIES_LIST if v.len().is_multiple_of(2) => {
                Some(Self::PwCapabilities(v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()))
            }
            PW_CAPABILITIES_LIST => None,
            LOCAL_SESSION_ID => u32v(v).map(Self::LocalSessionId),
            REMOTE_SESSION_ID => u32v(v).map(Self::RemoteSessionId),
            ASSIGNED_COOKIE => matches!(v.len(), 0 | 4 | 8).then(|| Self::AssignedCookie(v.to_vec())),
            REMOTE_END_ID => nonempty(v).map(Self::RemoteEndId),
            PW_TYPE => u16v(v).map(Self::PwType),
            L2_SPECIFIC_SUBLAYER => u16v(v).map(Self::L2SpecificSublayer),
            DATA_SEQUENCING => u16v(v).map(Self::DataSequencing),
            // Reserved bits "ignored upon receipt" (RFC 3931 5.4.5).
            CIRCUIT_STATUS => u16v(v).map(|w| Self::CircuitStatus { new: w & 2 != 0, active: w & 1 != 0 }),
            PREFERRED_LANGUAGE => nonempty(v).map(Self::PreferredLanguage),
            CONTROL_AUTH_NONCE => nonempty(v).map(Self::ControlAuthNonce),
            TX_CONNECT_SPEED_BPS => u64v(v).map(Self::TxConnectSpeedBps),
            RX_CONNECT_SPEED_BPS => u64v(v).map(Self::RxConnectSpeedBps),
            FAILOVER_CAPABILITY if v.len() == 6 => {
                let bits = be16(v, 0).ok_or(bad)?;
                Some(Self::FailoverCapability {
                    control: bits & 0x0001 != 0,
                    data: bits & 0x0002 != 0,
                    recovery_time_ms: be32(v, 2).ok_or(bad)?,
                })
            }
            FAILOVER_CAPABILITY => None,
            TUNNEL_RECOVERY => two_ids(version, v).map(|(recover_tunnel_id, recover_remote_tunnel_id)| {
                Self::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id }
            }),
            SUGGESTED_CONTROL_SEQUENCE if v.len() == 6 => {
                Some(Self::SuggestedControlSequence { ns: be16(v, 2).ok_or(bad)?, nr: be16(v, 4).ok_or(bad)? })
            }
            SUGGESTED_CONTROL_SEQUENCE => None,
            FAILOVER_SESSION_STATE => two_ids(version, v)
                .map(|(session_id, remote_session_id)| Self::FailoverSessionState { session_id, remote_session_id }),
            _ => Some(Self::Unknown { vendor, attr, value: v.to_vec() }),
        };
        val.ok_or(bad)
    }

    /// Vendor ID and attribute type.
    pub fn key(&self) -> (u16, u16) {
        use attr::*;
        let a = match self {
            Self::ResultCode(_) => RESULT_CODE,
            Self::ProtocolVersion { .. } => PROTOCOL_VERSION,
            Self::FramingCapabilities(_) => FRAMING_CAPABILITIES,
            Self::BearerCapabilities(_) => BEARER_CAPABILITIES,
            Self::TieBreaker(_) => TIE_BREAKER,
            Self::FirmwareRevision(_) => FIRMWARE_REVISION,
            Self::HostName(_) => HOST_NAME,
            Self::VendorName(_) => VENDOR_NAME,
            Self::AssignedTunnelId(_) => ASSIGNED_TUNNEL_ID,
            Self::ReceiveWindowSize(_) => RECEIVE_WINDOW_SIZE,
            Self::Challenge(_) => CHALLENGE,
            Self::Q931CauseCode { .. } => Q931_CAUSE_CODE,
            Self::ChallengeResponse(_) => CHALLENGE_RESPONSE,
            Self::AssignedSessionId(_) => ASSIGNED_SESSION_ID,
            Self::CallSerialNumber(_) => CALL_SERIAL_NUMBER,
            Self::MinimumBps(_) => MINIMUM_BPS,
            Self::MaximumBps(_) => MAXIMUM_BPS,
            Self::BearerType(_) => BEARER_TYPE,
            Self::FramingType(_) => FRAMING_TYPE,
            Self::CalledNumber(_) => CALLED_NUMBER,
            Self::CallingNumber(_) => CALLING_NUMBER,
            Self::SubAddress(_) => SUB_ADDRESS,
            Self::TxConnectSpeed(_) => TX_CONNECT_SPEED,
            Self::PhysicalChannelId(_) => PHYSICAL_CHANNEL_ID,
            Self::InitialReceivedLcpConfreq(_) => INITIAL_RECEIVED_LCP_CONFREQ,
            Self::LastSentLcpConfreq(_) => LAST_SENT_LCP_CONFREQ,
            Self::LastReceivedLcpConfreq(_) => LAST_RECEIVED_LCP_CONFREQ,
            Self::ProxyAuthenType(_) => PROXY_AUTHEN_TYPE,
            Self::ProxyAuthenName(_) => PROXY_AUTHEN_NAME,
            Self::ProxyAuthenChallenge(_) => PROXY_AUTHEN_CHALLENGE,
            Self::ProxyAuthenId(_) => PROXY_AUTHEN_ID,
            Self::ProxyAuthenResponse(_) => PROXY_AUTHEN_RESPONSE,
            Self::CallErrors(_) | Self::CircuitErrors { .. } => CALL_ERRORS,
            Self::Accm { .. } => ACCM,
            Self::RandomVector(_) => RANDOM_VECTOR,
            Self::PrivateGroupId(_) => PRIVATE_GROUP_ID,
            Self::RxConnectSpeed(_) => RX_CONNECT_SPEED,
            Self::SequencingRequired => SEQUENCING_REQUIRED,
            Self::MessageDigest { .. } => MESSAGE_DIGEST,
            Self::RouterId(_) => ROUTER_ID,
            Self::AssignedConnectionId(_) => ASSIGNED_CONNECTION_ID,
            Self::PwCapabilities(_) => PW_CAPABILITIES_LIST,
            Self::LocalSessionId(_) => LOCAL_SESSION_ID,
            Self::RemoteSessionId(_) => REMOTE_SESSION_ID,
            Self::AssignedCookie(_) => ASSIGNED_COOKIE,
            Self::RemoteEndId(_) => REMOTE_END_ID,
            Self::PwType(_) => PW_TYPE,
            Self::L2SpecificSublayer(_) => L2_SPECIFIC_SUBLAYER,
            Self::DataSequencing(_) => DATA_SEQUENCING,
            Self::CircuitStatus { .. } => CIRCUIT_STATUS,
            Self::PreferredLanguage(_) => PREFERRED_LANGUAGE,
            Self::ControlAuthNonce(_) => CONTROL_AUTH_NONCE,
            Self::TxConnectSpeedBps(_) => TX_CONNECT_SPEED_BPS,
            Self::RxConnectSpeedBps(_) => RX_CONNECT_SPEED_BPS,
            Self::FailoverCapability { .. } => FAILOVER_CAPABILITY,
            Self::TunnelRecovery { .. } => TUNNEL_RECOVERY,
            Self::SuggestedControlSequence { .. } => SUGGESTED_CONTROL_SEQUENCE,
            Self::FailoverSessionState { .. } => FAILOVER_SESSION_STATE,
            Self::Unknown { vendor, attr, .. } => return (*vendor, *attr),
        };
        (VENDOR_IETF, a)
    }

    /// Appends the (cleartext) value. `None` if it cannot be represented in
    /// `version` (an ID too large for v2's 16-bit fields, a value that breaks
    /// the RFC's layout).
    pub fn encode_value(&self, version: Version, out: &mut Vec<u8>) -> Option<()> {
        let put = |out: &mut Vec<u8>, b: &[u8]| out.extend_from_slice(b);
        match self {
            Self::ResultCode(rc) => {
                put(out, &rc.result.to_be_bytes());
                match rc.error {
                    Some(e) => {
                        put(out, &e.to_be_bytes());
                        put(out, &rc.message);
                    }
                    None if !rc.message.is_empty() => return None,
                    None => {}
                }
            }
            Self::ProtocolVersion { version, revision } => put(out, &[*version, *revision]),
            Self::FramingCapabilities(x)
            | Self::BearerCapabilities(x)
            | Self::CallSerialNumber(x)
            | Self::MinimumBps(x)
            | Self::MaximumBps(x)
            | Self::BearerType(x)
            | Self::FramingType(x)
            | Self::TxConnectSpeed(x)
            | Self::PhysicalChannelId(x)
            | Self::RxConnectSpeed(x)
            | Self::RouterId(x)
            | Self::AssignedConnectionId(x)
            | Self::LocalSessionId(x)
            | Self::RemoteSessionId(x) => put(out, &x.to_be_bytes()),
            Self::TieBreaker(t) => put(out, t),
            Self::FirmwareRevision(x)
            | Self::AssignedTunnelId(x)
            | Self::ReceiveWindowSize(x)
            | Self::AssignedSessionId(x)
            | Self::ProxyAuthenType(x)
            | Self::PwType(x)
            | Self::L2SpecificSublayer(x)
            | Self::DataSequencing(x) => put(out, &x.to_be_bytes()),
            Self::HostName(b)
            | Self::Challenge(b)
            | Self::ProxyAuthenChallenge(b)
            | Self::RandomVector(b)
            | Self::RemoteEndId(b)
            | Self::PreferredLanguage(b)
            | Self::ControlAuthNonce(b) => {
                if b.is_empty() {
                    return None;
                }
                put(out, b);
            }
            Self::VendorName(b)
            | Self::CalledNumber(b)
            | Self::CallingNumber(b)
            | Self::SubAddress(b)
            | Self::InitialReceivedLcpConfreq(b)
            | Self::LastSentLcpConfreq(b)
            | Self::LastReceivedLcpConfreq(b)
            | Self::ProxyAuthenName(b)
            | Self::ProxyAuthenResponse(b)
            | Self::PrivateGroupId(b) => put(out, b),
            Self::Q931CauseCode { cause, message, advisory } => {
                put(out, &cause.to_be_bytes());
                put(out, &[*message]);
                put(out, advisory);
            }
            Self::ChallengeResponse(r) => put(out, r),
            Self::ProxyAuthenId(id) => put(out, &[0, *id]),
            Self::CallErrors(e) => {
                put(out, &[0, 0]);
                for x in [e.crc, e.framing, e.hardware_overruns, e.buffer_overruns, e.timeouts, e.alignment] {
                    put(out, &x.to_be_bytes());
                }
            }
            Self::CircuitErrors { hardware_overruns, buffer_overruns, timeouts, alignment } => {
                if version != Version::V3 {
                    return None;
                }
                put(out, &[0, 0]);
                for x in [hardware_overruns, buffer_overruns, timeouts, alignment] {
                    put(out, &x.to_be_bytes());
                }
            }
            Self::Accm { send, receive } => {
                put(out, &[0, 0]);
                put(out, &send.to_be_bytes());
                put(out, &receive.to_be_bytes());
            }
            Self::SequencingRequired => {}
            Self::MessageDigest { digest_type, digest } => {
                let ok =
                    matches!((*digest_type, digest.len()), (digest_type::HMAC_MD5, 16) | (digest_type::HMAC_SHA1, 20));
                if !ok {
                    return None;
                }
                put(out, &[*digest_type]);
                put(out, digest);
            }
            Self::PwCapabilities(list) => {
                for t in list {
                    put(out, &t.to_be_bytes());
                }
            }
            Self::AssignedCookie(c) => {
                if !matches!(c.len(), 0 | 4 | 8) {
                    return None;
                }
                put(out, c);
            }
            Self::CircuitStatus { new, active } => {
                put(out, &(u16::from(*new) << 1 | u16::from(*active)).to_be_bytes());
            }
            Self::TxConnectSpeedBps(x) | Self::RxConnectSpeedBps(x) => put(out, &x.to_be_bytes()),
            Self::FailoverCapability { control, data, recovery_time_ms } => {
                // RFC 4951 W-7: "MUST NOT be sent with both C and D clear".
                if !control && !data {
                    return None;
                }
                put(out, &(u16::from(*data) << 1 | u16::from(*control)).to_be_bytes());
                put(out, &recovery_time_ms.to_be_bytes());
            }
            Self::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } => {
                emit_two_ids(version, *recover_tunnel_id, *recover_remote_tunnel_id, out)?;
            }
            Self::SuggestedControlSequence { ns, nr } => {
                put(out, &[0, 0]);
                put(out, &ns.to_be_bytes());
                put(out, &nr.to_be_bytes());
            }
            Self::FailoverSessionState { session_id, remote_session_id } => {
                emit_two_ids(version, *session_id, *remote_session_id, out)?;
            }
            Self::Unknown { value, .. } => put(out, value),
        }
        Some(())
    }

    /// The M bit this implementation sets when it sends this AVP in
    /// `version`: RFC 2661 4.4 ("MUST"), RFC 3931 5.4 ("SHOULD ... but MAY
    /// vary") and RFC 4951 section 5.
    pub fn default_mandatory(&self, version: Version) -> bool {
        use attr::*;
        let (_, a) = self.key();
        if let Self::Unknown { .. } = self {
            return false;
        }
        match a {
            // RFC 4951 W-1: Failover Capability "M bit MUST be 0"; W-3:
            // Suggested Control Sequence is not mandatory.
            FAILOVER_CAPABILITY | SUGGESTED_CONTROL_SEQUENCE => false,
            // W-2, W-4: Tunnel Recovery and Failover Session State are.
            TUNNEL_RECOVERY | FAILOVER_SESSION_STATE => true,
            _ => match version {
                Version::V2 => !matches!(
                    a,
                    TIE_BREAKER | FIRMWARE_REVISION | VENDOR_NAME | PHYSICAL_CHANNEL_ID | INITIAL_RECEIVED_LCP_CONFREQ
                        ..=PROXY_AUTHEN_RESPONSE | PRIVATE_GROUP_ID | RX_CONNECT_SPEED
                ),
                Version::V3 => !matches!(
                    a,
                    VENDOR_NAME
                        | CALL_SERIAL_NUMBER
                        | PHYSICAL_CHANNEL_ID
                        | CALL_ERRORS
                        | PREFERRED_LANGUAGE
                        | TX_CONNECT_SPEED_BPS
                        | RX_CONNECT_SPEED_BPS
                ),
            },
        }
    }

    /// AVPs the RFCs say MUST NOT be hidden (RFC 2661 4.4, RFC 3931 5.4,
    /// RFC 4951 W-2).
    pub fn may_be_hidden(&self) -> bool {
        use attr::*;
        !matches!(
            self.key(),
            (
                VENDOR_IETF,
                MESSAGE_TYPE
                    | RESULT_CODE
                    | PROTOCOL_VERSION
                    | TIE_BREAKER
                    | HOST_NAME
                    | RECEIVE_WINDOW_SIZE
                    | Q931_CAUSE_CODE
                    | RANDOM_VECTOR
                    | SEQUENCING_REQUIRED
                    | MESSAGE_DIGEST
                    | ROUTER_ID
                    | CONTROL_AUTH_NONCE
                    | TUNNEL_RECOVERY
            )
        )
    }
}
