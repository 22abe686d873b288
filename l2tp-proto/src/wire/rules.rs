//! The message table: for every control message type of L2TPv2 (RFC 2661
//! section 6), L2TPv3 (RFC 3931 section 6) and RFC 4951 (FSQ, FSR, and the
//! failover AVPs in SCCRQ/SCCRP), the AVPs it must and may carry; and the
//! one validator that applies it.

use super::{
    avp::{attr::*, VENDOR_IETF},
    header::Version,
    message::Message,
    types::{cdn, error, stopccn, MessageType, Reply, ResultCode},
};

/// The AVPs one message type must and may carry in one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRule {
    pub required: &'static [u16],
    pub optional: &'static [u16],
}

/// Allowed in every message: Random Vector (RFC 2661 4.4.1); in v3 also
/// Message Digest (RFC 3931 5.4.1).
const GENERAL_V2: &[u16] = &[RANDOM_VECTOR];
const GENERAL_V3: &[u16] = &[RANDOM_VECTOR, MESSAGE_DIGEST];

/// The rule for `msg_type` in `version`; `None` if the type is not defined
/// in that version.
pub fn rule(version: Version, msg_type: MessageType) -> Option<MessageRule> {
    use MessageType::*;
    let r = |required, optional| Some(MessageRule { required, optional });
    match version {
        Version::V2 => match msg_type {
            Sccrq => r(
                &[PROTOCOL_VERSION, HOST_NAME, FRAMING_CAPABILITIES, ASSIGNED_TUNNEL_ID],
                &[
                    BEARER_CAPABILITIES,
                    RECEIVE_WINDOW_SIZE,
                    CHALLENGE,
                    TIE_BREAKER,
                    FIRMWARE_REVISION,
                    VENDOR_NAME,
                    FAILOVER_CAPABILITY,
                    TUNNEL_RECOVERY,
                ],
            ),
            Sccrp => r(
                &[PROTOCOL_VERSION, FRAMING_CAPABILITIES, HOST_NAME, ASSIGNED_TUNNEL_ID],
                &[
                    BEARER_CAPABILITIES,
                    FIRMWARE_REVISION,
                    VENDOR_NAME,
                    RECEIVE_WINDOW_SIZE,
                    CHALLENGE,
                    CHALLENGE_RESPONSE,
                    FAILOVER_CAPABILITY,
                    SUGGESTED_CONTROL_SEQUENCE,
                ],
            ),
            Scccn => r(&[], &[CHALLENGE_RESPONSE]),
            StopCcn => r(&[ASSIGNED_TUNNEL_ID, RESULT_CODE], &[]),
            Hello => r(&[], &[]),
            Icrq => r(
                &[ASSIGNED_SESSION_ID, CALL_SERIAL_NUMBER],
                &[BEARER_TYPE, PHYSICAL_CHANNEL_ID, CALLING_NUMBER, CALLED_NUMBER, SUB_ADDRESS],
            ),
            Icrp => r(&[ASSIGNED_SESSION_ID], &[]),
            Iccn => r(
                &[TX_CONNECT_SPEED, FRAMING_TYPE],
                &[
                    INITIAL_RECEIVED_LCP_CONFREQ,
                    LAST_SENT_LCP_CONFREQ,
                    LAST_RECEIVED_LCP_CONFREQ,
                    PROXY_AUTHEN_TYPE,
                    PROXY_AUTHEN_NAME,
                    PROXY_AUTHEN_CHALLENGE,
                    PROXY_AUTHEN_ID,
                    PROXY_AUTHEN_RESPONSE,
                    PRIVATE_GROUP_ID,
                    RX_CONNECT_SPEED,
                    SEQUENCING_REQUIRED,
                ],
            ),
            Ocrq => r(
                &[
                    ASSIGNED_SESSION_ID,
                    CALL_SERIAL_NUMBER,
                    MINIMUM_BPS,
                    MAXIMUM_BPS,
                    BEARER_TYPE,
                    FRAMING_TYPE,
                    CALLED_NUMBER,
                ],
                &[SUB_ADDRESS],
            ),
            Ocrp => r(&[ASSIGNED_SESSION_ID], &[PHYSICAL_CHANNEL_ID]),
            Occn => r(&[TX_CONNECT_SPEED, FRAMING_TYPE], &[RX_CONNECT_SPEED, SEQUENCING_REQUIRED]),
            Cdn => r(&[RESULT_CODE, ASSIGNED_SESSION_ID], &[Q931_CAUSE_CODE]),
            Wen => r(&[CALL_ERRORS], &[]),
            Sli => r(&[ACCM], &[]),
            // RFC 4951 W-5, W-6.
            Fsq | Fsr => r(&[FAILOVER_SESSION_STATE], &[]),
            Ack | Unknown(_) => None,
        },
        Version::V3 => match msg_type {
            Sccrq => r(
                &[HOST_NAME, ROUTER_ID, ASSIGNED_CONNECTION_ID, PW_CAPABILITIES_LIST],
                &[
                    CONTROL_AUTH_NONCE,
                    TIE_BREAKER,
                    VENDOR_NAME,
                    RECEIVE_WINDOW_SIZE,
                    PREFERRED_LANGUAGE,
                    FAILOVER_CAPABILITY,
                    TUNNEL_RECOVERY,
                ],
            ),
            Sccrp => r(
                &[HOST_NAME, ROUTER_ID, ASSIGNED_CONNECTION_ID, PW_CAPABILITIES_LIST],
                &[
                    CONTROL_AUTH_NONCE,
                    VENDOR_NAME,
                    RECEIVE_WINDOW_SIZE,
                    PREFERRED_LANGUAGE,
                    FAILOVER_CAPABILITY,
                    SUGGESTED_CONTROL_SEQUENCE,
                ],
            ),
            Scccn | Hello | Ack => r(&[], &[]),
            // Assigned Control Connection ID "MUST" once an SCCRQ or SCCRP
            // was sent: the engine knows that, the table cannot.
            StopCcn => r(&[RESULT_CODE], &[ASSIGNED_CONNECTION_ID]),
            Icrq | Ocrq => r(
                &[LOCAL_SESSION_ID, REMOTE_SESSION_ID, CALL_SERIAL_NUMBER, PW_TYPE, REMOTE_END_ID, CIRCUIT_STATUS],
                &[
                    ASSIGNED_COOKIE,
                    TIE_BREAKER,
                    L2_SPECIFIC_SUBLAYER,
                    DATA_SEQUENCING,
                    TX_CONNECT_SPEED_BPS,
                    RX_CONNECT_SPEED_BPS,
                    PHYSICAL_CHANNEL_ID,
                ],
            ),
            Icrp | Ocrp => r(
                &[LOCAL_SESSION_ID, REMOTE_SESSION_ID, CIRCUIT_STATUS],
                &[
                    ASSIGNED_COOKIE,
                    L2_SPECIFIC_SUBLAYER,
                    DATA_SEQUENCING,
                    TX_CONNECT_SPEED_BPS,
                    RX_CONNECT_SPEED_BPS,
                    PHYSICAL_CHANNEL_ID,
                ],
            ),
            Iccn | Occn => r(
                &[LOCAL_SESSION_ID, REMOTE_SESSION_ID],
                &[L2_SPECIFIC_SUBLAYER, DATA_SEQUENCING, TX_CONNECT_SPEED_BPS, RX_CONNECT_SPEED_BPS, CIRCUIT_STATUS],
            ),
            Cdn => r(&[RESULT_CODE, LOCAL_SESSION_ID, REMOTE_SESSION_ID], &[]),
            Wen => r(&[LOCAL_SESSION_ID, REMOTE_SESSION_ID, CALL_ERRORS], &[]),
            Sli => r(&[LOCAL_SESSION_ID, REMOTE_SESSION_ID], &[CIRCUIT_STATUS]),
            Fsq | Fsr => r(&[FAILOVER_SESSION_STATE], &[]),
            Unknown(_) => None,
        },
    }
}

/// Why a decoded message is not acceptable, and the reply the RFC requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{msg_type} is not defined in L2TP{version:?} and its M bit is set")]
    UndefinedMandatory { version: Version, msg_type: MessageType },
    #[error("{msg_type} is not defined in L2TP{version:?} (M bit clear: ignored)")]
    UndefinedIgnored { version: Version, msg_type: MessageType },
    #[error("{msg_type} lacks its required AVP type {attr}")]
    MissingAvp { msg_type: MessageType, attr: u16 },
}

impl Violation {
    pub fn reply(&self) -> Reply {
        match self {
            // RFC 2661 4.4.1 (Message Type): "if the M-bit is set on an
            // unrecognized message type, the tunnel MUST be cleared. If the
            // M-bit is not set, any unrecognized message type MAY be ignored."
            Self::UndefinedMandatory { .. } => Reply::StopCcn(ResultCode::new(
                stopccn::GENERAL_ERROR,
                Some(error::OUT_OF_RANGE),
                "unknown message type",
            )),
            Self::UndefinedIgnored { .. } => Reply::Ignore,
            Self::MissingAvp { msg_type, attr } => {
                let text = format!("{msg_type} without required AVP {attr}");
                if msg_type.is_session_message() {
                    Reply::Cdn(ResultCode::new(cdn::GENERAL_ERROR, Some(error::OUT_OF_RANGE), &text))
                } else {
                    Reply::StopCcn(ResultCode::new(stopccn::GENERAL_ERROR, Some(error::OUT_OF_RANGE), &text))
                }
            }
        }
    }
}

/// Applies the message table to a decoded message (the M-bit rule for
/// AVPs was applied by [`Message::decode`]).
pub fn validate(version: Version, msg: &Message) -> Result<(), Violation> {
    let Some(rule) = rule(version, msg.msg_type) else {
        return Err(if msg.type_mandatory {
            Violation::UndefinedMandatory { version, msg_type: msg.msg_type }
        } else {
            Violation::UndefinedIgnored { version, msg_type: msg.msg_type }
        });
    };
    for &attr in rule.required {
        if !msg.has(attr) {
            return Err(Violation::MissingAvp { msg_type: msg.msg_type, attr });
        }
    }
    Ok(())
}

/// AVPs of `msg` that the table does not list for its type. The RFCs let a
/// receiver ignore them (RFC 4951 W-5/W-6: "SHOULD be ignored on receipt").
pub fn unexpected_avps(version: Version, msg: &Message) -> Vec<(u16, u16)> {
    let Some(rule) = rule(version, msg.msg_type) else {
        return Vec::new();
    };
    let general = match version {
        Version::V2 => GENERAL_V2,
        Version::V3 => GENERAL_V3,
    };
    msg.avps
        .iter()
        .map(|a| a.value.key())
        .filter(|&(vendor, attr)| {
            vendor != VENDOR_IETF
                || !(rule.required.contains(&attr) || rule.optional.contains(&attr) || general.contains(&attr))
        })
        .collect()
}
