//! Control messages: header plus AVPs, decoding (with unhiding) and
//! encoding (with hiding).

use super::{
    avp::{self, attr, emit_raw, raw_avps, Avp, AvpFlags, AvpValue, BadValue, AVP_MAX_VALUE, VENDOR_IETF},
    header::{ControlHeader, Transport, Version},
    hidden,
    types::{error, stopccn, MessageType, Reply, ResultCode},
    HeaderError,
};

/// The body of a control message: its type and the AVPs after the Message
/// Type AVP, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    pub msg_type: MessageType,
    /// M bit of the Message Type AVP. RFC 4951 W-5/W-6: 0 for FSQ and FSR.
    pub type_mandatory: bool,
    pub avps: Vec<Avp>,
}

impl Message {
    /// A message with the Message Type AVP's M bit as the RFCs want it.
    pub fn new(msg_type: MessageType, avps: Vec<Avp>) -> Self {
        // RFC 4951 W-5/W-6: "Message Type AVP M bit MUST be 0" for FSQ/FSR.
        let type_mandatory = !matches!(msg_type, MessageType::Fsq | MessageType::Fsr);
        Self { msg_type, type_mandatory, avps }
    }

    /// First AVP value matching `f`.
    pub fn find<'a, T>(&'a self, f: impl Fn(&'a AvpValue) -> Option<T>) -> Option<T> {
        self.avps.iter().find_map(|a| f(&a.value))
    }

    /// Whether an AVP of (IETF) attribute type `attr` is present.
    pub fn has(&self, attr: u16) -> bool {
        self.avps.iter().any(|a| a.value.key() == (VENDOR_IETF, attr))
    }
}

/// A control message: a header and, unless it is a ZLB, a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControlMessage {
    pub header: ControlHeader,
    /// `None`: Zero-Length Body acknowledgement.
    pub message: Option<Message>,
}

/// Why a control message could not be decoded, and what the RFC wants the
/// receiver to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    #[error("{0}")]
    AvpLength(#[from] avp::AvpLengthError),
    #[error("the first AVP is not a Message Type AVP")]
    NoMessageType,
    #[error("Message Type AVP is malformed")]
    BadMessageType,
    #[error("hidden AVP type {attr} but no shared secret is configured")]
    HiddenWithoutSecret { attr: u16 },
    #[error("hidden AVP type {attr} with no Random Vector AVP before it")]
    HiddenWithoutRandomVector { attr: u16 },
    #[error("hidden AVP type {attr} does not unhide (wrong secret or corrupt)")]
    HiddenCorrupt { attr: u16 },
    #[error("{msg_type}: mandatory AVP vendor {vendor} type {attr} is not recognised")]
    UnknownMandatoryAvp { msg_type: MessageType, vendor: u16, attr: u16 },
    #[error("{msg_type}: unknown message type with the M bit set")]
    UnknownMandatoryMessage { msg_type: MessageType },
    #[error("{msg_type}: {bad}")]
    BadValue { msg_type: MessageType, bad: BadValue, mandatory: bool },
}

impl DecodeError {
    /// The message type, when decoding got that far.
    pub fn msg_type(&self) -> Option<MessageType> {
        match self {
            Self::UnknownMandatoryAvp { msg_type, .. }
            | Self::UnknownMandatoryMessage { msg_type }
            | Self::BadValue { msg_type, .. } => Some(*msg_type),
            _ => None,
        }
    }

    /// What the receiver must do (RFC 2661 4.1 and 4.4.1, RFC 3931 5.2).
    pub fn reply(&self) -> Reply {
        let fatal = |msg_type: Option<MessageType>, err: u16, text: &str| {
            let rc = ResultCode::new(stopccn::GENERAL_ERROR, Some(err), text);
            match msg_type {
                // "If the M bit is set on an unrecognized AVP within a
                // message associated with a particular session, the session
                // associated with this message MUST be terminated."
                Some(t) if t.is_session_message() => Reply::Cdn(rc),
                // "... within a message associated with the overall tunnel,
                // the entire tunnel (and all sessions within) MUST be
                // terminated."
                _ => Reply::StopCcn(rc),
            }
        };
        match self {
            // A header we cannot trust never entered the reliable channel.
            Self::Header(_) => Reply::Discard,
            Self::AvpLength(_) | Self::NoMessageType | Self::BadMessageType => {
                fatal(None, error::BAD_LENGTH, "malformed AVP")
            }
            // A hidden AVP that does not unhide means the peer does not
            // share our secret: "Requester is not authorized".
            Self::HiddenWithoutSecret { .. } | Self::HiddenCorrupt { .. } => {
                Reply::StopCcn(ResultCode::new(stopccn::NOT_AUTHORIZED, None, ""))
            }
            Self::HiddenWithoutRandomVector { .. } => {
                fatal(None, error::OUT_OF_RANGE, "hidden AVP without Random Vector")
            }
            Self::UnknownMandatoryAvp { msg_type, attr, .. } => {
                // RFC 3931 5.4.2 error 8: "The Error Message SHOULD contain
                // the attribute of the offending AVP in (human-readable)
                // text form."
                fatal(Some(*msg_type), error::UNKNOWN_MANDATORY_AVP, &format!("unknown mandatory AVP {attr}"))
            }
            // RFC 2661 4.4.1: "if the M-bit is set on an unrecognized message
            // type, the tunnel MUST be cleared."
            Self::UnknownMandatoryMessage { .. } => fatal(None, error::OUT_OF_RANGE, "unknown message type"),
            Self::BadValue { msg_type, mandatory: true, bad } => {
                fatal(Some(*msg_type), error::BAD_LENGTH, &format!("malformed AVP {}", bad.attr))
            }
            // A malformed optional AVP is treated like an unrecognised one
            // with M=0; decoding keeps it raw, so this is not reached.
            Self::BadValue { mandatory: false, .. } => Reply::Ignore,
        }
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    #[error("AVP vendor {vendor} type {attr} cannot be encoded in {version:?}")]
    Avp { vendor: u16, attr: u16, version: Version },
    #[error("AVP type {attr} must not be hidden")]
    MustNotBeHidden { attr: u16 },
    #[error("hidden AVP type {attr} needs a shared secret")]
    HiddenWithoutSecret { attr: u16 },
    #[error("hidden AVP type {attr} needs a Random Vector AVP before it")]
    HiddenWithoutRandomVector { attr: u16 },
}

impl Message {
    /// Decodes a message body (the bytes after the control header).
    /// `secret` unhides hidden AVPs. Unknown AVPs with M=0 and malformed
    /// optional ones are kept as [`AvpValue::Unknown`]; an unknown message
    /// type with M=0 decodes as [`MessageType::Unknown`] (to be ignored).
    pub fn decode(version: Version, body: &[u8], secret: Option<&[u8]>) -> Result<Self, DecodeError> {
        let mut it = raw_avps(body);
        let first = it.next().ok_or(DecodeError::NoMessageType)??;
        if first.vendor != VENDOR_IETF || first.attr != attr::MESSAGE_TYPE {
            return Err(DecodeError::NoMessageType);
        }
        if first.flags.hidden {
            // RFC 2661 4.4.1: the Message Type AVP MUST NOT be hidden.
            return Err(DecodeError::BadMessageType);
        }
        let raw_type = match first.value {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => return Err(DecodeError::BadMessageType),
        };
        let msg_type = MessageType::from_u16(raw_type);
        if let MessageType::Unknown(_) = msg_type {
            if first.flags.mandatory {
                return Err(DecodeError::UnknownMandatoryMessage { msg_type });
            }
        }
        // Derived at the first hidden AVP (an HMAC: most messages have none).
        let mut key: Option<Vec<u8>> = None;
        let mut rv: Option<Vec<u8>> = None;
        let mut avps = Vec::new();
        for raw in it {
            let raw = raw?;
            let cleartext;
            let value = if raw.flags.hidden {
                let secret = secret.ok_or(DecodeError::HiddenWithoutSecret { attr: raw.attr })?;
                let key: &[u8] = key.get_or_insert_with(|| hidden::hiding_key(version, secret));
                let rv = rv.as_deref().ok_or(DecodeError::HiddenWithoutRandomVector { attr: raw.attr })?;
                cleartext = hidden::unhide(raw.attr, key, rv, raw.value)
                    .ok_or(DecodeError::HiddenCorrupt { attr: raw.attr })?;
                &cleartext[..]
            } else {
                raw.value
            };
            let unknown = || AvpValue::Unknown { vendor: raw.vendor, attr: raw.attr, value: value.to_vec() };
            let decoded = if raw.reserved_set && version == Version::V2 {
                // RFC 2661 4.1: "An AVP received with a reserved bit set to 1
                // MUST be treated as an unrecognized AVP." (RFC 3931 5.1
                // ignores them instead.)
                unknown()
            } else {
                match AvpValue::decode(version, raw.vendor, raw.attr, value) {
                    Ok(v) => v,
                    Err(bad) if raw.flags.mandatory => {
                        return Err(DecodeError::BadValue { msg_type, bad, mandatory: true })
                    }
                    Err(_) => unknown(),
                }
            };
            if let AvpValue::Unknown { vendor, attr, .. } = decoded {
                // RFC 2661 4.1 / RFC 3931 5.2: an unrecognized AVP with the
                // M bit set is fatal to the session or the tunnel; with M=0
                // it MUST be ignored (kept here, ignored by the engine).
                if raw.flags.mandatory {
                    return Err(DecodeError::UnknownMandatoryAvp { msg_type, vendor, attr });
                }
            }
            if let AvpValue::RandomVector(v) = &decoded {
                rv = Some(v.clone());
            }
            avps.push(Avp { flags: raw.flags, value: decoded });
        }
        Ok(Self { msg_type, type_mandatory: first.flags.mandatory, avps })
    }

    /// Appends the encoded body (Message Type AVP first). Hidden AVPs are
    /// hidden with `secret` and the last Random Vector AVP before them.
    pub fn encode(&self, version: Version, secret: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let type_flags = AvpFlags { mandatory: self.type_mandatory, hidden: false };
        emit_raw(type_flags, VENDOR_IETF, attr::MESSAGE_TYPE, &self.msg_type.to_u16().to_be_bytes(), out)
            .ok_or(EncodeError::Avp { vendor: VENDOR_IETF, attr: attr::MESSAGE_TYPE, version })?;
        // Derived at the first hidden AVP, as in decoding.
        let mut key: Option<Vec<u8>> = None;
        let mut rv: Option<&[u8]> = None;
        let mut value = Vec::new();
        for a in &self.avps {
            let (vendor, attr) = a.value.key();
            value.clear();
            a.value.encode_value(version, &mut value).ok_or(EncodeError::Avp { vendor, attr, version })?;
            if a.flags.hidden {
                if !a.value.may_be_hidden() {
                    return Err(EncodeError::MustNotBeHidden { attr });
                }
                let secret = secret.ok_or(EncodeError::HiddenWithoutSecret { attr })?;
                let key: &[u8] = key.get_or_insert_with(|| hidden::hiding_key(version, secret));
                let rv = rv.ok_or(EncodeError::HiddenWithoutRandomVector { attr })?;
                value = hidden::hide(attr, key, rv, &value, &[]).ok_or(EncodeError::Avp { vendor, attr, version })?;
            }
            if value.len() > AVP_MAX_VALUE {
                return Err(EncodeError::Avp { vendor, attr, version });
            }
            emit_raw(a.flags, vendor, attr, &value, out).ok_or(EncodeError::Avp { vendor, attr, version })?;
            if let AvpValue::RandomVector(v) = &a.value {
                rv = Some(v);
            }
        }
        Ok(())
    }
}

impl ControlMessage {
    /// Decodes a whole control datagram (UDP payload or IP-115 payload).
    pub fn decode(transport: Transport, buf: &[u8], secret: Option<&[u8]>) -> Result<Self, DecodeError> {
        let (header, body) = ControlHeader::parse(transport, buf)?;
        let message = if body.is_empty() { None } else { Some(Message::decode(header.version, body, secret)?) };
        Ok(Self { header, message })
    }

    /// Encodes the whole control datagram.
    pub fn encode(&self, transport: Transport, secret: Option<&[u8]>) -> Result<Vec<u8>, EncodeError> {
        let mut body = Vec::new();
        if let Some(m) = &self.message {
            m.encode(self.header.version, secret, &mut body)?;
        }
        let mut out = Vec::with_capacity(ControlHeader::wire_len(transport) + body.len());
        self.header.emit(transport, body.len(), &mut out)?;
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The sender's tunnel ID in a control message body that did not decode,
/// if it is an SCCRQ: its first AVP is Message Type 1 and it has a visible
/// Assigned Tunnel ID (L2TPv2) or Assigned Control Connection ID (L2TPv3).
/// This is what a refusal (StopCCN) is addressed to.
pub fn sccrq_sender_id(version: Version, body: &[u8]) -> Option<u32> {
    if peek_message_type(body) != Some(MessageType::Sccrq) {
        return None;
    }
    match (
        version,
        peek_avp(version, body, super::avp::attr::ASSIGNED_TUNNEL_ID, super::avp::attr::ASSIGNED_CONNECTION_ID)?,
    ) {
        (Version::V2, super::AvpValue::AssignedTunnelId(t)) => Some(u32::from(t)),
        (Version::V3, super::AvpValue::AssignedConnectionId(t)) => Some(t),
        _ => None,
    }
}

/// The message type of a body, read from its first AVP without decoding
/// the rest: what the checks before decoding need (demultiplexing,
/// authentication, the reliable channel). `None` unless the first AVP is
/// an unhidden Message Type AVP.
pub fn peek_message_type(body: &[u8]) -> Option<MessageType> {
    use super::avp::{attr, raw_avps};
    let first = raw_avps(body).next()?.ok()?;
    match (first.vendor, first.attr, first.flags.hidden, first.value) {
        (0, attr::MESSAGE_TYPE, false, &[h, l]) => Some(MessageType::from_u16(u16::from_be_bytes([h, l]))),
        _ => None,
    }
}

/// The first unhidden IETF AVP of attribute `v2_attr` (L2TPv2) or
/// `v3_attr` (L2TPv3), decoded on its own; the rest of the body is not
/// decoded (nothing in it is acted on before authentication).
pub fn peek_avp(version: Version, body: &[u8], v2_attr: u16, v3_attr: u16) -> Option<super::AvpValue> {
    use super::avp::raw_avps;
    let want = match version {
        Version::V2 => v2_attr,
        Version::V3 => v3_attr,
    };
    raw_avps(body)
        .map_while(Result::ok)
        .skip(1)
        .find(|a| a.vendor == 0 && !a.flags.hidden && a.attr == want)
        .and_then(|a| super::AvpValue::decode(version, 0, a.attr, a.value).ok())
}
