//! Fuzz entry points, one per decoder. `cargo fuzz` targets (in `fuzz/`)
//! and the bounded randomized loop run by the test suite call the same
//! functions. Each takes arbitrary bytes and must never panic; whatever
//! decodes must re-encode and decode to the same value.

use crate::wire::{
    avp::raw_avps, header::classify, ControlHeader, ControlMessage, Message, Transport, V2DataHeader, V3DataHeader,
    Version,
};

const SECRET: &[u8] = b"fuzz-secret";

/// Control datagrams: header, AVPs, hidden AVPs, both versions, UDP and IP.
pub fn control(data: &[u8]) {
    for transport in [Transport::Udp, Transport::Ip] {
        let _ = classify(transport, data);
        let _ = ControlHeader::parse(transport, data);
        for secret in [None, Some(SECRET)] {
            if let Ok(msg) = ControlMessage::decode(transport, data, secret) {
                if let Some(m) = &msg.message {
                    let _ = crate::wire::rules::validate(msg.header.version, m);
                    let _ = crate::wire::rules::unexpected_avps(msg.header.version, m);
                }
                // Anything we accept we can send back, identically.
                let wire = msg.encode(transport, secret);
                if let Ok(wire) = wire {
                    let again = ControlMessage::decode(transport, &wire, secret);
                    assert_eq!(again.as_ref(), Ok(&msg), "re-decoding what we encoded");
                }
            }
        }
    }
}

/// Message bodies (the AVP list) in both versions.
pub fn avps(data: &[u8]) {
    for _ in raw_avps(data) {}
    for version in [Version::V2, Version::V3] {
        for secret in [None, Some(SECRET)] {
            if let Ok(m) = Message::decode(version, data, secret) {
                let mut out = Vec::new();
                if m.encode(version, secret, &mut out).is_ok() {
                    assert_eq!(Message::decode(version, &out, secret).as_ref(), Ok(&m));
                }
            }
        }
    }
}

/// Data message headers: v2, and v3 over UDP and IP with every cookie
/// length and sublayer setting.
pub fn data_header(data: &[u8]) {
    if let Ok((h, payload)) = V2DataHeader::parse(data) {
        let mut out = Vec::new();
        if h.emit(payload.len(), &mut out).is_ok() {
            out.extend_from_slice(payload);
            assert_eq!(V2DataHeader::parse(&out).map(|(h, _)| h), Ok(h));
        }
    }
    for transport in [Transport::Udp, Transport::Ip] {
        let _ = V3DataHeader::peek_session_id(transport, data);
        for cookie_len in [0, 4, 8, 3] {
            for sublayer in [false, true] {
                if let Ok((h, _)) = V3DataHeader::parse(transport, data, cookie_len, sublayer) {
                    let mut out = Vec::new();
                    if h.emit(transport, &mut out).is_ok() {
                        assert_eq!(out.len(), h.wire_len(transport));
                    }
                }
            }
        }
    }
}
