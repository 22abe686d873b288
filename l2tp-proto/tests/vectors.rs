//! Byte-exact vectors written from the RFC figures: every AVP (RFC 2661
//! 4.4, RFC 3931 5.4, RFC 4951 section 5), every message type of both
//! versions, and the RFC 4951 Appendix A and B dialogues.

use l2tp_proto::wire::{
    avp::{attr, AvpFlags, CallErrors as Ce},
    message::DecodeError,
    rules::{validate, Violation},
    types::Reply,
    Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, ResultCode as Rc, Transport, Version,
};

/// Hex string (whitespace ignored) to bytes.
fn h(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn m(value: AvpValue) -> Avp {
    Avp { flags: AvpFlags::MANDATORY, value }
}
fn o(value: AvpValue) -> Avp {
    Avp { flags: AvpFlags::OPTIONAL, value }
}

/// Message Type AVP for HELLO, used as a carrier for single-AVP vectors.
const HELLO_MT: &str = "8008 0000 0000 0006";

/// (version, AVP bytes, decoded AVP). Layouts from the RFC figures.
fn avp_vectors() -> Vec<(Version, &'static str, Avp)> {
    use AvpValue::*;
    use Version::*;
    vec![
        // RFC 2661 4.4.2 Result Code: result only / with error / with message.
        (V2, "8008 0000 0001 0001", m(ResultCode(Rc { result: 1, error: None, message: vec![] }))),
        (V2, "800a 0000 0001 0002 0008", m(ResultCode(Rc { result: 2, error: Some(8), message: vec![] }))),
        (
            V3,
            "800d 0000 0001 0002 0003 626164",
            m(ResultCode(Rc { result: 2, error: Some(3), message: b"bad".to_vec() })),
        ),
        // 4.4.3 Protocol Version 1.0.
        (V2, "8008 0000 0002 0100", m(ProtocolVersion { version: 1, revision: 0 })),
        (V2, "800a 0000 0003 0000 0003", m(FramingCapabilities(3))),
        (V2, "800a 0000 0004 0000 0001", m(BearerCapabilities(1))),
        // Tie Breaker: v2 M MUST 0, 8 octets.
        (V2, "000e 0000 0005 0102030405060708", o(TieBreaker([1, 2, 3, 4, 5, 6, 7, 8]))),
        (V3, "800e 0000 0005 f0debc9a78563412", m(TieBreaker([0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]))),
        (V2, "0008 0000 0006 0681", o(FirmwareRevision(0x0681))),
        (V2, "800b 0000 0007 6c61632d61", m(HostName(b"lac-a".to_vec()))),
        (V2, "000a 0000 0008 61636d65", o(VendorName(b"acme".to_vec()))),
        (V2, "0006 0000 0008", o(VendorName(vec![]))),
        (V2, "8008 0000 0009 1234", m(AssignedTunnelId(0x1234))),
        (V2, "8008 0000 000a 0008", m(ReceiveWindowSize(8))),
        (V2, "800a 0000 000b deadbeef", m(Challenge(vec![0xde, 0xad, 0xbe, 0xef]))),
        // 4.4.4 Q.931 Cause Code: cause 16, msg 0x5a, advisory "x".
        (V2, "800a 0000 000c 0010 5a 78", m(Q931CauseCode { cause: 16, message: 0x5a, advisory: b"x".to_vec() })),
        (V2, "8009 0000 000c 0010 5a", m(Q931CauseCode { cause: 16, message: 0x5a, advisory: vec![] })),
        (
            V2,
            "8016 0000 000d 000102030405060708090a0b0c0d0e0f",
            m(ChallengeResponse([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])),
        ),
        (V2, "8008 0000 000e 4321", m(AssignedSessionId(0x4321))),
        (V2, "800a 0000 000f 00000007", m(CallSerialNumber(7))),
        (V3, "000a 0000 000f 00000007", o(CallSerialNumber(7))),
        (V2, "800a 0000 0010 00002580", m(MinimumBps(9600))),
        (V2, "800a 0000 0011 0001f400", m(MaximumBps(128_000))),
        (V2, "800a 0000 0012 00000002", m(BearerType(2))),
        (V2, "800a 0000 0013 00000001", m(FramingType(1))),
        (V2, "8009 0000 0015 313233", m(CalledNumber(b"123".to_vec()))),
        (V2, "8009 0000 0016 343536", m(CallingNumber(b"456".to_vec()))),
        (V2, "8007 0000 0017 39", m(SubAddress(b"9".to_vec()))),
        (V2, "800a 0000 0018 05f5e100", m(TxConnectSpeed(100_000_000))),
        (V2, "000a 0000 0019 00000003", o(PhysicalChannelId(3))),
        // 4.4.5 Proxy LCP and Authentication AVPs.
        (V2, "0008 0000 001a 0104", o(InitialReceivedLcpConfreq(vec![1, 4]))),
        (V2, "0008 0000 001b 0506", o(LastSentLcpConfreq(vec![5, 6]))),
        (V2, "0008 0000 001c 0708", o(LastReceivedLcpConfreq(vec![7, 8]))),
        (V2, "0008 0000 001d 0002", o(ProxyAuthenType(2))),
        (V2, "0009 0000 001e 626f62", o(ProxyAuthenName(b"bob".to_vec()))),
        (V2, "0008 0000 001f aabb", o(ProxyAuthenChallenge(vec![0xaa, 0xbb]))),
        (V2, "0008 0000 0020 0011", o(ProxyAuthenId(0x11))),
        (V2, "0008 0000 0021 ccdd", o(ProxyAuthenResponse(vec![0xcc, 0xdd]))),
        // 4.4.6 Call Errors: reserved, then CRC, framing, hw, buffer,
        // timeout, alignment.
        (
            V2,
            "8020 0000 0022 0000 00000001 00000002 00000003 00000004 00000005 00000006",
            m(CallErrors(Ce {
                crc: 1,
                framing: 2,
                hardware_overruns: 3,
                buffer_overruns: 4,
                timeouts: 5,
                alignment: 6,
            })),
        ),
        // RFC 3931 5.4.5 Circuit Errors (figure: reserved + 4 counters).
        (
            V3,
            "0018 0000 0022 0000 0000000a 0000000b 0000000c 0000000d",
            o(CircuitErrors { hardware_overruns: 10, buffer_overruns: 11, timeouts: 12, alignment: 13 }),
        ),
        (V2, "8010 0000 0023 0000 ffffffff 00000000", m(Accm { send: 0xffff_ffff, receive: 0 })),
        (V2, "800a 0000 0024 01020304", m(RandomVector(vec![1, 2, 3, 4]))),
        (V2, "0008 0000 0025 6731", o(PrivateGroupId(b"g1".to_vec()))),
        (V2, "000a 0000 0026 000f4240", o(RxConnectSpeed(1_000_000))),
        (V2, "8006 0000 0027", m(SequencingRequired)),
        // RFC 3931 5.4.1 Message Digest, HMAC-MD5 (Length 23) and SHA-1 (27).
        (
            V3,
            "8017 0000 003b 00 00112233445566778899aabbccddeeff",
            m(MessageDigest { digest_type: 0, digest: h("00112233445566778899aabbccddeeff") }),
        ),
        (
            V3,
            "801b 0000 003b 01 00112233445566778899aabbccddeeff00112233",
            m(MessageDigest { digest_type: 1, digest: h("00112233445566778899aabbccddeeff00112233") }),
        ),
        (V3, "800a 0000 003c c6120001", m(RouterId(0xc612_0001))),
        (V3, "800a 0000 003d 0000beef", m(AssignedConnectionId(0xbeef))),
        (V3, "800a 0000 003e 0005 0004", m(PwCapabilities(vec![5, 4]))),
        (V3, "800a 0000 003f 00010001", m(LocalSessionId(0x10001))),
        (V3, "800a 0000 0040 00000000", m(RemoteSessionId(0))),
        (V3, "800a 0000 0041 cafef00d", m(AssignedCookie(h("cafef00d")))),
        (V3, "800e 0000 0041 0102030405060708", m(AssignedCookie(h("0102030405060708")))),
        (V3, "8009 0000 0042 706531", m(RemoteEndId(b"pe1".to_vec()))),
        (V3, "8008 0000 0044 0005", m(PwType(5))),
        (V3, "8008 0000 0045 0001", m(L2SpecificSublayer(1))),
        (V3, "8008 0000 0046 0002", m(DataSequencing(2))),
        (V3, "8008 0000 0047 0003", m(CircuitStatus { new: true, active: true })),
        (V3, "8008 0000 0047 0001", m(CircuitStatus { new: false, active: true })),
        (V3, "0008 0000 0048 656e", o(PreferredLanguage(b"en".to_vec()))),
        (
            V3,
            "8016 0000 0049 0f0e0d0c0b0a09080706050403020100",
            m(ControlAuthNonce(h("0f0e0d0c0b0a09080706050403020100"))),
        ),
        (V3, "000e 0000 004a 00000002540be400", o(TxConnectSpeedBps(10_000_000_000))),
        (V3, "000e 0000 004b 000000003b9aca00", o(RxConnectSpeedBps(1_000_000_000))),
        // RFC 4951 W-1: Failover Capability, M=0, 14 reserved bits, D, C,
        // Recovery Time (ms). Value length 6.
        (
            V2,
            "000c 0000 004c 0003 000003e8",
            o(FailoverCapability { control: true, data: true, recovery_time_ms: 1000 }),
        ),
        (V3, "000c 0000 004c 0001 00000000", o(FailoverCapability { control: true, data: false, recovery_time_ms: 0 })),
        (
            V3,
            "000c 0000 004c 0002 00000064",
            o(FailoverCapability { control: false, data: true, recovery_time_ms: 100 }),
        ),
        // W-2: Tunnel Recovery, M=1; v2 16-bit IDs behind reserved fields,
        // v3 32-bit IDs. Value length 10 in both.
        (
            V2,
            "8010 0000 004d 0000 0000 000a 0000 000b",
            m(TunnelRecovery { recover_tunnel_id: 10, recover_remote_tunnel_id: 11 }),
        ),
        (
            V3,
            "8010 0000 004d 0000 0001000a 0002000b",
            m(TunnelRecovery { recover_tunnel_id: 0x1000a, recover_remote_tunnel_id: 0x2000b }),
        ),
        // W-3: Suggested Control Sequence, M=0: reserved, Ns, Nr.
        (V2, "000c 0000 004e 0000 0003 0064", o(SuggestedControlSequence { ns: 3, nr: 100 })),
        // W-4: Failover Session State, M=1.
        (
            V2,
            "8010 0000 004f 0000 0000 0011 0000 0022",
            m(FailoverSessionState { session_id: 0x11, remote_session_id: 0x22 }),
        ),
        (
            V3,
            "8010 0000 004f 0000 00000011 00000022",
            m(FailoverSessionState { session_id: 0x11, remote_session_id: 0x22 }),
        ),
        // Unknown AVPs with M=0 are kept raw: a vendor AVP and type 20.
        (V3, "0009 0009 0001 abcdef", o(Unknown { vendor: 9, attr: 1, value: h("abcdef") })),
        (V2, "0007 0000 0014 01", o(Unknown { vendor: 0, attr: 20, value: vec![1] })),
    ]
}

#[test]
fn every_avp_decodes_and_encodes_byte_exact() {
    let mut failures = Vec::new();
    for (version, hex, want) in avp_vectors() {
        let body = h(&format!("{HELLO_MT}{hex}"));
        match Message::decode(version, &body, None) {
            Ok(msg) if msg.avps == vec![want.clone()] => {
                let mut out = Vec::new();
                msg.encode(version, None, &mut out).expect("encode");
                if out != body {
                    failures.push(format!("{version:?} {hex}: encoded as {out:02x?}"));
                }
            }
            other => failures.push(format!("{version:?} {hex}: {other:?}, want {want:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_known_attribute_type_has_a_vector() {
    let covered: std::collections::BTreeSet<u16> = avp_vectors().iter().map(|(_, _, a)| a.value.key().1).collect();
    let mut missing = Vec::new();
    for t in 1..=79u16 {
        let known = !matches!(t, 20 | 40..=58 | 67);
        if known && !covered.contains(&t) {
            missing.push(t);
        }
    }
    assert!(missing.is_empty(), "attribute types without a vector: {missing:?}");
}

#[test]
fn default_m_bits_follow_the_rfcs() {
    use AvpValue::*;
    // RFC 4951 W-1..W-4.
    for v in [Version::V2, Version::V3] {
        assert!(!Avp::new(v, FailoverCapability { control: true, data: true, recovery_time_ms: 0 }).flags.mandatory);
        assert!(Avp::new(v, TunnelRecovery { recover_tunnel_id: 1, recover_remote_tunnel_id: 2 }).flags.mandatory);
        assert!(!Avp::new(v, SuggestedControlSequence { ns: 1, nr: 2 }).flags.mandatory);
        assert!(Avp::new(v, FailoverSessionState { session_id: 1, remote_session_id: 2 }).flags.mandatory);
    }
    // Tie Breaker: v2 MUST 0, v3 SHOULD 1; Serial Number the other way.
    assert!(!Avp::new(Version::V2, TieBreaker([0; 8])).flags.mandatory);
    assert!(Avp::new(Version::V3, TieBreaker([0; 8])).flags.mandatory);
    assert!(Avp::new(Version::V2, CallSerialNumber(1)).flags.mandatory);
    assert!(!Avp::new(Version::V3, CallSerialNumber(1)).flags.mandatory);
    assert!(Avp::new(Version::V2, ReceiveWindowSize(4)).flags.mandatory);
}

#[test]
fn w_7_failover_capability_with_c_and_d_clear_is_never_sent() {
    let msg = Message::new(
        MessageType::Sccrq,
        vec![Avp::new(Version::V3, AvpValue::FailoverCapability { control: false, data: false, recovery_time_ms: 5 })],
    );
    assert!(msg.encode(Version::V3, None, &mut Vec::new()).is_err());
}

fn hdr(version: Version, tunnel_id: u32, session_id: u16, ns: u16, nr: u16) -> ControlHeader {
    ControlHeader { version, tunnel_id, session_id, ns, nr }
}

/// Whole datagrams for every message type of both versions, header through
/// the last AVP, each with the AVPs its type requires (RFC 2661 section 6,
/// RFC 3931 section 6, RFC 4951 section 4).
fn message_vectors() -> Vec<(Transport, &'static str, ControlMessage)> {
    use AvpValue::*;
    use MessageType::*;
    use Version::*;
    let msg = |version, t, header: ControlHeader, avps: Vec<Avp>| {
        (version, ControlMessage { header, message: Some(Message::new(t, avps)) })
    };
    let v2 = |t, tid, sid, avps| msg(V2, t, hdr(V2, tid, sid, 1, 2), avps).1;
    let v3 = |t, ccid, avps| msg(V3, t, hdr(V3, ccid, 0, 1, 2), avps).1;
    let rc = |result, error| Rc { result, error, message: vec![] };
    vec![
        // --- L2TPv2, header 0xC802, Length, Tunnel ID 7, Session ID, Ns 1, Nr 2.
        (
            Transport::Udp,
            "c802 004d 0000 0000 0001 0002  8008 0000 0000 0001  8008 0000 0002 0100  800b 0000 0007 6c61632d61
             800a 0000 0003 0000 0003  8008 0000 0009 0005  8008 0000 000a 0004  000c 0000 004c 0003 000003e8",
            v2(
                Sccrq,
                0,
                0,
                vec![
                    m(ProtocolVersion { version: 1, revision: 0 }),
                    m(HostName(b"lac-a".to_vec())),
                    m(FramingCapabilities(3)),
                    m(AssignedTunnelId(5)),
                    m(ReceiveWindowSize(4)),
                    o(FailoverCapability { control: true, data: true, recovery_time_ms: 1000 }),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c802 0045 0005 0000 0001 0002  8008 0000 0000 0002  8008 0000 0002 0100  800a 0000 0003 0000 0003
             800b 0000 0007 6c6e732d62  8008 0000 0009 0007  000c 0000 004c 0001 00000000",
            v2(
                Sccrp,
                5,
                0,
                vec![
                    m(ProtocolVersion { version: 1, revision: 0 }),
                    m(FramingCapabilities(3)),
                    m(HostName(b"lns-b".to_vec())),
                    m(AssignedTunnelId(7)),
                    o(FailoverCapability { control: true, data: false, recovery_time_ms: 0 }),
                ],
            ),
        ),
        (Transport::Udp, "c802 0014 0007 0000 0001 0002  8008 0000 0000 0003", v2(Scccn, 7, 0, vec![])),
        (
            Transport::Udp,
            "c802 0026 0007 0000 0001 0002  8008 0000 0000 0004  8008 0000 0009 0005  800a 0000 0001 0002 0008",
            v2(StopCcn, 7, 0, vec![m(AssignedTunnelId(5)), m(ResultCode(rc(2, Some(8))))]),
        ),
        (Transport::Udp, "c802 0014 0007 0000 0001 0002  8008 0000 0000 0006", v2(Hello, 7, 0, vec![])),
        (
            Transport::Udp,
            "c802 0057 0007 0000 0001 0002  8008 0000 0000 0007  8008 0000 000e 0009  800a 0000 000f 00000001
             800a 0000 0010 00000000  800a 0000 0011 00000000  800a 0000 0012 00000001  800a 0000 0013 00000001
             8009 0000 0015 313233",
            v2(
                Ocrq,
                7,
                0,
                vec![
                    m(AssignedSessionId(9)),
                    m(CallSerialNumber(1)),
                    m(MinimumBps(0)),
                    m(MaximumBps(0)),
                    m(BearerType(1)),
                    m(FramingType(1)),
                    m(CalledNumber(b"123".to_vec())),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c802 001c 0007 0009 0001 0002  8008 0000 0000 0008  8008 0000 000e 000a",
            v2(Ocrp, 7, 9, vec![m(AssignedSessionId(10))]),
        ),
        (
            Transport::Udp,
            "c802 0028 0007 000a 0001 0002  8008 0000 0000 0009  800a 0000 0018 00002710  800a 0000 0013 00000001",
            v2(Occn, 7, 10, vec![m(TxConnectSpeed(10_000)), m(FramingType(1))]),
        ),
        (
            Transport::Udp,
            "c802 0026 0007 0000 0001 0002  8008 0000 0000 000a  8008 0000 000e 0009  800a 0000 000f 00000002",
            v2(Icrq, 7, 0, vec![m(AssignedSessionId(9)), m(CallSerialNumber(2))]),
        ),
        (
            Transport::Udp,
            "c802 001c 0007 0009 0001 0002  8008 0000 0000 000b  8008 0000 000e 000a",
            v2(Icrp, 7, 9, vec![m(AssignedSessionId(10))]),
        ),
        (
            Transport::Udp,
            "c802 002e 0007 000a 0001 0002  8008 0000 0000 000c  800a 0000 0018 00002710  800a 0000 0013 00000001
             8006 0000 0027",
            v2(Iccn, 7, 10, vec![m(TxConnectSpeed(10_000)), m(FramingType(1)), m(SequencingRequired)]),
        ),
        (
            Transport::Udp,
            "c802 0024 0007 000a 0001 0002  8008 0000 0000 000e  8008 0000 0001 0003  8008 0000 000e 0009",
            v2(Cdn, 7, 10, vec![m(ResultCode(rc(3, None))), m(AssignedSessionId(9))]),
        ),
        (
            Transport::Udp,
            "c802 0034 0007 000a 0001 0002  8008 0000 0000 000f
             8020 0000 0022 0000 00000000 00000000 00000000 00000000 00000000 00000001",
            v2(Wen, 7, 10, vec![m(CallErrors(Ce { alignment: 1, ..Default::default() }))]),
        ),
        (
            Transport::Udp,
            "c802 0024 0007 000a 0001 0002  8008 0000 0000 0010  8010 0000 0023 0000 ffffffff ffffffff",
            v2(Sli, 7, 10, vec![m(Accm { send: u32::MAX, receive: u32::MAX })]),
        ),
        // RFC 4951 FSQ/FSR: Message Type AVP with M=0 (W-5, W-6).
        (
            Transport::Udp,
            "c802 0024 0007 0000 0001 0002  0008 0000 0000 0015  8010 0000 004f 0000 0000 000a 0000 0009",
            v2(Fsq, 7, 0, vec![m(FailoverSessionState { session_id: 10, remote_session_id: 9 })]),
        ),
        (
            Transport::Udp,
            "c802 0024 0005 0000 0001 0002  0008 0000 0000 0016  8010 0000 004f 0000 0000 0000 0000 000a",
            v2(Fsr, 5, 0, vec![m(FailoverSessionState { session_id: 0, remote_session_id: 10 })]),
        ),
        // ZLB: header only.
        (
            Transport::Udp,
            "c802 000c 0007 0000 0003 0004",
            ControlMessage { header: hdr(V2, 7, 0, 3, 4), message: None },
        ),
        // --- L2TPv3 over UDP, header 0xC803, Length, Control Connection ID.
        (
            Transport::Udp,
            "c803 0048 0000 0000 0001 0002  8008 0000 0000 0001  800c 0000 0007 706531302d61  800a 0000 003c c6120001
             800a 0000 003d 00000064  8008 0000 003e 0005  000c 0000 004c 0003 000001f4",
            v3(
                Sccrq,
                0,
                vec![
                    m(HostName(b"pe10-a".to_vec())),
                    m(RouterId(0xc612_0001)),
                    m(AssignedConnectionId(100)),
                    m(PwCapabilities(vec![5])),
                    o(FailoverCapability { control: true, data: true, recovery_time_ms: 500 }),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0037 0000 0064 0001 0002  8008 0000 0000 0002  8007 0000 0007 62  800a 0000 003c c6120002
             800a 0000 003d 000000c8  8008 0000 003e 0005",
            v3(
                Sccrp,
                100,
                vec![
                    m(HostName(b"b".to_vec())),
                    m(RouterId(0xc612_0002)),
                    m(AssignedConnectionId(200)),
                    m(PwCapabilities(vec![5])),
                ],
            ),
        ),
        (Transport::Udp, "c803 0014 0000 00c8 0001 0002  8008 0000 0000 0003", v3(Scccn, 200, vec![])),
        (
            Transport::Udp,
            "c803 0026 0000 00c8 0001 0002  8008 0000 0000 0004  8008 0000 0001 0001  800a 0000 003d 00000064",
            v3(StopCcn, 200, vec![m(ResultCode(rc(1, None))), m(AssignedConnectionId(100))]),
        ),
        (Transport::Udp, "c803 0014 0000 00c8 0001 0002  8008 0000 0000 0006", v3(Hello, 200, vec![])),
        (Transport::Udp, "c803 0014 0000 00c8 0001 0002  8008 0000 0000 0014", v3(Ack, 200, vec![])),
        (
            Transport::Udp,
            "c803 0065 0000 00c8 0001 0002  8008 0000 0000 000a  800a 0000 003f 00000011  800a 0000 0040 00000000
             000a 0000 000f 00000001  8008 0000 0044 0005  8009 0000 0042 707731  8008 0000 0047 0003
             800a 0000 0041 01020304  8008 0000 0045 0001  8008 0000 0046 0002",
            v3(
                Icrq,
                200,
                vec![
                    m(LocalSessionId(0x11)),
                    m(RemoteSessionId(0)),
                    o(CallSerialNumber(1)),
                    m(PwType(5)),
                    m(RemoteEndId(b"pw1".to_vec())),
                    m(CircuitStatus { new: true, active: true }),
                    m(AssignedCookie(h("01020304"))),
                    m(L2SpecificSublayer(1)),
                    m(DataSequencing(2)),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 003a 0000 0064 0001 0002  8008 0000 0000 000b  800a 0000 003f 00000022  800a 0000 0040 00000011
             8008 0000 0047 0001  800a 0000 0041 05060708",
            v3(
                Icrp,
                100,
                vec![
                    m(LocalSessionId(0x22)),
                    m(RemoteSessionId(0x11)),
                    m(CircuitStatus { new: false, active: true }),
                    m(AssignedCookie(h("05060708"))),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0028 0000 00c8 0001 0002  8008 0000 0000 000c  800a 0000 003f 00000011  800a 0000 0040 00000022",
            v3(Iccn, 200, vec![m(LocalSessionId(0x11)), m(RemoteSessionId(0x22))]),
        ),
        (
            Transport::Udp,
            "c803 004b 0000 00c8 0001 0002  8008 0000 0000 0007  800a 0000 003f 00000011  800a 0000 0040 00000000
             000a 0000 000f 00000003  8008 0000 0044 0004  8009 0000 0042 707732  8008 0000 0047 0003",
            v3(
                Ocrq,
                200,
                vec![
                    m(LocalSessionId(0x11)),
                    m(RemoteSessionId(0)),
                    o(CallSerialNumber(3)),
                    m(PwType(4)),
                    m(RemoteEndId(b"pw2".to_vec())),
                    m(CircuitStatus { new: true, active: true }),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0030 0000 0064 0001 0002  8008 0000 0000 0008  800a 0000 003f 00000022  800a 0000 0040 00000011
             8008 0000 0047 0001",
            v3(
                Ocrp,
                100,
                vec![m(LocalSessionId(0x22)), m(RemoteSessionId(0x11)), m(CircuitStatus { new: false, active: true })],
            ),
        ),
        (
            Transport::Udp,
            "c803 0028 0000 00c8 0001 0002  8008 0000 0000 0009  800a 0000 003f 00000011  800a 0000 0040 00000022",
            v3(Occn, 200, vec![m(LocalSessionId(0x11)), m(RemoteSessionId(0x22))]),
        ),
        (
            Transport::Udp,
            "c803 0034 0000 00c8 0001 0002  8008 0000 0000 000e  800c 0000 0001 0002 0005 6964
             800a 0000 003f 00000011  800a 0000 0040 00000022",
            v3(
                Cdn,
                200,
                vec![
                    m(ResultCode(Rc { result: 2, error: Some(5), message: b"id".to_vec() })),
                    m(LocalSessionId(0x11)),
                    m(RemoteSessionId(0x22)),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0040 0000 00c8 0001 0002  8008 0000 0000 000f  800a 0000 003f 00000011  800a 0000 0040 00000022
             0018 0000 0022 0000 00000001 00000002 00000003 00000004",
            v3(
                Wen,
                200,
                vec![
                    m(LocalSessionId(0x11)),
                    m(RemoteSessionId(0x22)),
                    o(CircuitErrors { hardware_overruns: 1, buffer_overruns: 2, timeouts: 3, alignment: 4 }),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0030 0000 00c8 0001 0002  8008 0000 0000 0010  800a 0000 003f 00000011  800a 0000 0040 00000022
             8008 0000 0047 0000",
            v3(
                Sli,
                200,
                vec![m(LocalSessionId(0x11)), m(RemoteSessionId(0x22)), m(CircuitStatus { new: false, active: false })],
            ),
        ),
        (
            Transport::Udp,
            "c803 0034 0000 00c8 0001 0002  0008 0000 0000 0015  8010 0000 004f 0000 00000011 00000022
             8010 0000 004f 0000 00000013 00000024",
            v3(
                Fsq,
                200,
                vec![
                    m(FailoverSessionState { session_id: 0x11, remote_session_id: 0x22 }),
                    m(FailoverSessionState { session_id: 0x13, remote_session_id: 0x24 }),
                ],
            ),
        ),
        (
            Transport::Udp,
            "c803 0024 0000 0064 0001 0002  0008 0000 0000 0016  8010 0000 004f 0000 00000022 00000011",
            v3(Fsr, 100, vec![m(FailoverSessionState { session_id: 0x22, remote_session_id: 0x11 })]),
        ),
        // --- L2TPv3 over IP: 32 zero bits, then the same header; Length
        // does not count the zero Session ID (RFC 3931 4.1.1.2).
        (Transport::Ip, "00000000 c803 0014 0000 00c8 0001 0002  8008 0000 0000 0006", v3(Hello, 200, vec![])),
        (
            Transport::Ip,
            "00000000 c803 000c 0000 00c8 0005 0006",
            ControlMessage { header: hdr(V3, 200, 0, 5, 6), message: None },
        ),
    ]
}

#[test]
fn every_message_type_decodes_and_encodes_byte_exact() {
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (transport, hex, want) in message_vectors() {
        let bytes = h(hex);
        match ControlMessage::decode(transport, &bytes, None) {
            Ok(got) if got == want => {}
            other => failures.push(format!("decode {hex}: {other:?}\n want {want:?}")),
        }
        match want.encode(transport, None) {
            Ok(out) if out == bytes => {}
            other => failures.push(format!("encode {want:?}: {other:02x?}\n want {bytes:02x?}")),
        }
        if let Some(msg) = &want.message {
            if let Err(v) = validate(want.header.version, msg) {
                failures.push(format!("{hex}: vector violates the message table: {v}"));
            }
            seen.insert((want.header.version, msg.msg_type));
        }
    }
    for v in [Version::V2, Version::V3] {
        for t in MessageType::KNOWN {
            if l2tp_proto::wire::rules::rule(v, t).is_some() && !seen.contains(&(v, t)) {
                failures.push(format!("no vector for {t} in {v:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_mandatory_avp_is_fatal_to_tunnel_or_session() {
    // HELLO (tunnel message) with vendor AVP 9/1 M=1: StopCCN 2/8.
    let hello = h("c803 001d 0000 00c8 0001 0002  8008 0000 0000 0006  8009 0009 0001 abcdef");
    let err = ControlMessage::decode(Transport::Udp, &hello, None).expect_err("fatal");
    assert!(matches!(err, DecodeError::UnknownMandatoryAvp { vendor: 9, attr: 1, .. }), "{err}");
    match err.reply() {
        Reply::StopCcn(rc) => assert_eq!((rc.result, rc.error), (2, Some(8))),
        r => panic!("want StopCCN, got {r:?}"),
    }
    // ICCN (session message) with unknown IETF type 57 M=1: CDN 2/8.
    let iccn = h("c803 001a 0000 00c8 0001 0002  8008 0000 0000 000c  8006 0000 0039");
    let err = ControlMessage::decode(Transport::Udp, &iccn, None).expect_err("fatal");
    match err.reply() {
        Reply::Cdn(rc) => {
            assert_eq!((rc.result, rc.error), (2, Some(8)));
            assert!(String::from_utf8_lossy(&rc.message).contains("57"));
        }
        r => panic!("want CDN, got {r:?}"),
    }
    // Same AVP with M=0: ignored (kept raw), the message is fine.
    let ok = h("c803 001a 0000 00c8 0001 0002  8008 0000 0000 000c  0006 0000 0039");
    let msg = ControlMessage::decode(Transport::Udp, &ok, None).expect("M=0 is ignored").message.expect("message");
    assert_eq!(msg.avps, vec![o(AvpValue::Unknown { vendor: 0, attr: 57, value: vec![] })]);
}

#[test]
fn v2_reserved_avp_bits_make_it_unrecognized_v3_ignores_them() {
    // Host Name with a reserved bit (0x0400) set and M=1.
    let body = h(&format!("{HELLO_MT} 840b 0000 0007 6c61632d61"));
    let err = Message::decode(Version::V2, &body, None).expect_err("v2: unrecognized + M=1");
    assert!(matches!(err, DecodeError::UnknownMandatoryAvp { attr: 7, .. }));
    let msg = Message::decode(Version::V3, &body, None).expect("v3 ignores reserved bits");
    assert_eq!(msg.avps[0].value, AvpValue::HostName(b"lac-a".to_vec()));
}

#[test]
fn malformed_known_avp_follows_the_m_bit() {
    // RFC 3931 7.1 example: Rx Connect Speed (75) with Length 10 instead of
    // 14 and M=0 is ignored; with M=1 the tunnel is torn down.
    let lax = h(&format!("{HELLO_MT} 000a 0000 004b 00000001"));
    let msg = Message::decode(Version::V3, &lax, None).expect("ignored");
    assert!(matches!(msg.avps[0].value, AvpValue::Unknown { attr: 75, .. }));
    let strict = h(&format!("{HELLO_MT} 800a 0000 004b 00000001"));
    let err = Message::decode(Version::V3, &strict, None).expect_err("fatal");
    assert!(matches!(err.reply(), Reply::StopCcn(Rc { result: 2, error: Some(2), .. })));
}

#[test]
fn unknown_message_type_m_bit_rule() {
    // Type 99 with M=1: tunnel cleared. With M=0: ignored.
    let mandatory = h("c803 0014 0000 00c8 0001 0002  8008 0000 0000 0063");
    let err = ControlMessage::decode(Transport::Udp, &mandatory, None).expect_err("fatal");
    assert!(matches!(err.reply(), Reply::StopCcn(_)));
    let optional = h("c803 0014 0000 00c8 0001 0002  0008 0000 0000 0063");
    let msg = ControlMessage::decode(Transport::Udp, &optional, None).expect("decodes").message.expect("msg");
    assert_eq!(validate(Version::V3, &msg).map_err(|v| v.reply()), Err(Reply::Ignore));
    // ACK is not a v2 message type.
    let ack_v2 = h("c802 0014 0007 0000 0001 0002  8008 0000 0000 0014");
    let msg = ControlMessage::decode(Transport::Udp, &ack_v2, None).expect("decodes").message.expect("msg");
    assert!(matches!(validate(Version::V2, &msg), Err(Violation::UndefinedMandatory { .. })));
}

#[test]
fn missing_required_avp_gets_stopccn_or_cdn() {
    let sccrq = Message::new(MessageType::Sccrq, vec![m(AvpValue::HostName(b"x".to_vec()))]);
    let v = validate(Version::V3, &sccrq).expect_err("missing AVPs");
    assert!(matches!(v, Violation::MissingAvp { attr: attr::ROUTER_ID, .. }), "{v}");
    assert!(matches!(v.reply(), Reply::StopCcn(_)));
    let icrp = Message::new(MessageType::Icrp, vec![m(AvpValue::LocalSessionId(1))]);
    assert!(matches!(validate(Version::V3, &icrp).expect_err("missing").reply(), Reply::Cdn(_)));
    // W-5: an FSQ must carry at least one Failover Session State AVP.
    let fsq = Message::new(MessageType::Fsq, vec![]);
    assert!(matches!(
        validate(Version::V2, &fsq),
        Err(Violation::MissingAvp { attr: attr::FAILOVER_SESSION_STATE, .. })
    ));
}

#[test]
fn w_5_w_6_fsq_fsr_other_avps_are_flagged_for_ignoring() {
    let fsq = Message::new(
        MessageType::Fsq,
        vec![
            m(AvpValue::RandomVector(vec![1; 16])),
            m(AvpValue::FailoverSessionState { session_id: 1, remote_session_id: 2 }),
            m(AvpValue::HostName(b"x".to_vec())),
        ],
    );
    assert!(validate(Version::V3, &fsq).is_ok());
    assert_eq!(l2tp_proto::wire::rules::unexpected_avps(Version::V3, &fsq), vec![(0, attr::HOST_NAME)]);
    assert!(!fsq.type_mandatory, "W-5: Message Type AVP M bit MUST be 0");
}

#[test]
fn hidden_avps_round_trip_and_need_a_random_vector() {
    for version in [Version::V2, Version::V3] {
        let msg = Message::new(
            MessageType::Icrq,
            vec![
                m(AvpValue::RandomVector(h("00112233445566778899aabbccddeeff"))),
                m(AvpValue::AssignedSessionId(0x1234)).hidden(),
                m(AvpValue::CalledNumber(b"a long number that spans two MD5 blocks".to_vec())).hidden(),
            ],
        );
        let mut body = Vec::new();
        msg.encode(version, Some(b"secret"), &mut body).expect("encode");
        // The cleartext value must not appear on the wire.
        assert!(!body.windows(2).any(|w| w == [0x12, 0x34]));
        assert_eq!(Message::decode(version, &body, Some(b"secret")).expect("decode"), msg);
        assert!(matches!(Message::decode(version, &body, None), Err(DecodeError::HiddenWithoutSecret { .. })));
        // A wrong secret never panics; it fails or yields other bytes.
        if let Ok(m2) = Message::decode(version, &body, Some(b"wrong")) {
            assert_ne!(m2, msg);
        }
    }
    let no_rv = Message::new(MessageType::Hello, vec![m(AvpValue::AssignedSessionId(1)).hidden()]);
    assert!(no_rv.encode(Version::V2, Some(b"s"), &mut Vec::new()).is_err());
    let not_hideable = Message::new(
        MessageType::Hello,
        vec![m(AvpValue::RandomVector(vec![1])), m(AvpValue::HostName(b"h".to_vec())).hidden()],
    );
    assert!(no_rv.encode(Version::V2, Some(b"s"), &mut Vec::new()).is_err());
    assert!(not_hideable.encode(Version::V2, Some(b"s"), &mut Vec::new()).is_err());
}

/// RFC 4951 Appendix A, as L2TPv3 over UDP: capability negotiation on the
/// old tunnel x=0x10/y=0x20, recovery tunnel z=0x30 with Tunnel Recovery
/// (x, y), SCCRP with Suggested Control Sequence 3/100, SCCCN, StopCCN on
/// the recovery tunnel, then FSQ/FSR on the recovered tunnel.
#[test]
fn rfc4951_appendix_a_dialogue() {
    use AvpValue::*;
    let steps: Vec<(&str, &str)> = vec![
        (
            "SCCRQ, failover capable (F-CAP-1)",
            "c803 0048 0000 0000 0000 0000  8008 0000 0000 0001  800c 0000 0007 656e64707431  800a 0000 003c c6120001
             800a 0000 003d 00000010  8008 0000 003e 0005  000c 0000 004c 0003 000003e8",
        ),
        (
            "SCCRP, failover capable",
            "c803 0048 0000 0010 0000 0001  8008 0000 0000 0002  800c 0000 0007 706565722d31  800a 0000 003c c6120002
             800a 0000 003d 00000020  8008 0000 003e 0005  000c 0000 004c 0003 000003e8",
        ),
        (
            "recovery SCCRQ: Tunnel Recovery (x, y) and Tie Breaker, no Failover Capability (F-RT-2, F-RT-3, F-RT-6)",
            "c803 005a 0000 0000 0000 0000  8008 0000 0000 0001  800c 0000 0007 656e64707431  800a 0000 003c c6120001
             800a 0000 003d 00000030  8008 0000 003e 0005  800e 0000 0005 0102030405060708
             8010 0000 004d 0000 00000010 00000020",
        ),
        (
            "recovery SCCRP with Suggested Control Sequence 3/100 (F-RT-9)",
            "c803 0048 0000 0030 0000 0001  8008 0000 0000 0002  800c 0000 0007 706565722d31  800a 0000 003c c6120002
             800a 0000 003d 00000040  8008 0000 003e 0005  000c 0000 004e 0000 0003 0064",
        ),
        ("SCCCN on the recovery tunnel", "c803 0014 0000 0040 0001 0001  8008 0000 0000 0003"),
        (
            "StopCCN tears down the recovery tunnel only (F-CC-3)",
            "c803 0026 0000 0040 0002 0001  8008 0000 0000 0004  8008 0000 0001 0001  800a 0000 003d 00000030",
        ),
        (
            "FSQ on the recovered tunnel, Ns=3 Nr=100 (F-CC-2, F-SS-3)",
            "c803 0044 0000 0020 0003 0064  0008 0000 0000 0015  8010 0000 004f 0000 00000101 00000201
             8010 0000 004f 0000 00000102 00000202  8010 0000 004f 0000 00000103 00000203",
        ),
        (
            "FSR: s1, s2 recovered, s3 unknown (Session ID 0) (F-SS-5..8)",
            "c803 0044 0000 0010 0064 0004  0008 0000 0000 0016  8010 0000 004f 0000 00000201 00000101
             8010 0000 004f 0000 00000202 00000102  8010 0000 004f 0000 00000000 00000103",
        ),
    ];
    let mut decoded = Vec::new();
    for (what, hex) in &steps {
        let bytes = h(hex);
        let msg = ControlMessage::decode(Transport::Udp, &bytes, None).unwrap_or_else(|e| panic!("{what}: {e}"));
        let body = msg.message.as_ref().unwrap_or_else(|| panic!("{what}: ZLB"));
        validate(Version::V3, body).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(msg.encode(Transport::Udp, None).expect("encode"), bytes, "{what}: re-encoding");
        decoded.push(msg);
    }
    let body = |i: usize| decoded[i].message.clone().expect("message");
    assert_eq!(
        body(0).find(|v| match v {
            FailoverCapability { control, data, recovery_time_ms } => Some((*control, *data, *recovery_time_ms)),
            _ => None,
        }),
        Some((true, true, 1000))
    );
    assert_eq!(
        body(2).find(|v| match v {
            TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } =>
                Some((*recover_tunnel_id, *recover_remote_tunnel_id)),
            _ => None,
        }),
        Some((0x10, 0x20))
    );
    assert!(!body(2).has(attr::FAILOVER_CAPABILITY) && !body(3).has(attr::FAILOVER_CAPABILITY));
    assert_eq!(
        body(3).find(|v| match v {
            SuggestedControlSequence { ns, nr } => Some((*ns, *nr)),
            _ => None,
        }),
        Some((3, 100))
    );
    assert_eq!((decoded[6].header.ns, decoded[6].header.nr), (3, 100));
    let fss: Vec<(u32, u32)> = body(7)
        .avps
        .iter()
        .filter_map(|a| match a.value {
            FailoverSessionState { session_id, remote_session_id } => Some((session_id, remote_session_id)),
            _ => None,
        })
        .collect();
    assert_eq!(fss, vec![(0x201, 0x101), (0x202, 0x102), (0, 0x103)]);
}

/// RFC 4951 Appendix B (double failure), as L2TPv2: both recovery
/// endpoints send a recovery SCCRQ for the same old tunnel (A=0x0a, B=0x0b)
/// with Tie Breakers; the lower Tie Breaker wins (F-RT-6).
#[test]
fn rfc4951_appendix_b_double_failover_tie_break() {
    let c = h("c802 0055 0000 0000 0000 0000  8008 0000 0000 0001  8008 0000 0002 0100  8009 0000 0007 6c6163
               800a 0000 0003 0000 0003  8008 0000 0009 000c  000e 0000 0005 1111111111111111
               8010 0000 004d 0000 0000 000a 0000 000b");
    let d = h("c802 0055 0000 0000 0000 0000  8008 0000 0000 0001  8008 0000 0002 0100  8009 0000 0007 6c6e73
               800a 0000 0003 0000 0003  8008 0000 0009 000d  000e 0000 0005 0000000000000001
               8010 0000 004d 0000 0000 000b 0000 000a");
    let tie = |bytes: &[u8]| {
        let msg = ControlMessage::decode(Transport::Udp, bytes, None).expect("decode");
        assert_eq!(msg.encode(Transport::Udp, None).expect("encode"), bytes);
        let body = msg.message.expect("message");
        validate(Version::V2, &body).expect("valid");
        let tb = body.find(|v| if let AvpValue::TieBreaker(t) = v { Some(*t) } else { None }).expect("tie breaker");
        let rec = body
            .find(|v| match v {
                AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } => {
                    Some((*recover_tunnel_id, *recover_remote_tunnel_id))
                }
                _ => None,
            })
            .expect("tunnel recovery");
        (tb, rec)
    };
    let (tb_c, rec_c) = tie(&c);
    let (tb_d, rec_d) = tie(&d);
    // Same old tunnel, seen from each side.
    assert_eq!(rec_c, (0x0a, 0x0b));
    assert_eq!(rec_d, (rec_c.1, rec_c.0));
    // RFC 2661 4.4.3: "The lower tie breaker value wins": D's endpoint wins.
    assert!(tb_d < tb_c);
}

/// Data headers: RFC 2661 3.1 (v2 with every optional field), RFC 3931
/// 4.1.2.1 (v3 over UDP), 4.1.1.1 (v3 over IP) with 4- and 8-byte cookies
/// and the default L2-Specific Sublayer (4.6).
#[test]
fn data_headers_byte_exact() {
    use l2tp_proto::wire::{Cookie, V2DataHeader, V3DataHeader};
    let payload = [0xAAu8, 0xBB];
    // v2: L, S, O, P all set; Length 0x12 = 16 header (with 2 pad) + 2 payload.
    let v2 = V2DataHeader {
        with_length: true,
        tunnel_id: 7,
        session_id: 9,
        sequence: Some((1, 2)),
        offset: Some(2),
        priority: true,
    };
    let bytes = h("4b02 0012 0007 0009 0001 0002 0002 0000 aabb");
    let (got, rest) = V2DataHeader::parse(&bytes).expect("parse");
    assert_eq!((got, rest), (v2, &payload[..]));
    let mut out = Vec::new();
    v2.emit(payload.len(), &mut out).expect("emit");
    out.extend_from_slice(&payload);
    assert_eq!(out, bytes);
    // v2 minimal: no optional fields.
    let bytes = h("0002 0007 0009 aabb");
    let (got, _) = V2DataHeader::parse(&bytes).expect("parse");
    assert_eq!(
        got,
        V2DataHeader { with_length: false, tunnel_id: 7, session_id: 9, sequence: None, offset: None, priority: false }
    );

    let cases = [
        (
            Transport::Udp,
            4,
            true,
            "0003 0000 00001234 cafef00d 40000005 aabb",
            Cookie::C32(*b"\xca\xfe\xf0\x0d"),
            Some(Some(5)),
        ),
        (Transport::Udp, 0, false, "0003 0000 00001234 aabb", Cookie::None, None),
        (
            Transport::Ip,
            8,
            true,
            "00001234 0102030405060708 00000000 aabb",
            Cookie::C64([1, 2, 3, 4, 5, 6, 7, 8]),
            Some(None),
        ),
        (Transport::Ip, 0, true, "00001234 40ffffff aabb", Cookie::None, Some(Some(0xff_ffff))),
    ];
    for (transport, cookie_len, sublayer, hex, cookie, seq) in cases {
        let bytes = h(hex);
        let want = V3DataHeader { session_id: 0x1234, cookie, sublayer: seq };
        assert_eq!(V3DataHeader::peek_session_id(transport, &bytes), Ok(0x1234));
        let (got, rest) = V3DataHeader::parse(transport, &bytes, cookie_len, sublayer).expect(hex);
        assert_eq!((got, rest), (want, &payload[..]), "{hex}");
        let mut out = Vec::new();
        want.emit(transport, &mut out).expect("emit");
        out.extend_from_slice(&payload);
        assert_eq!(out, bytes, "{hex}");
    }
    // Session ID 0 over IP is a control message, never data.
    assert!(V3DataHeader::peek_session_id(Transport::Ip, &h("00000000 c803")).is_err());
    // A sequence number beyond 24 bits cannot be emitted.
    let bad = V3DataHeader { session_id: 1, cookie: Cookie::None, sublayer: Some(Some(1 << 24)) };
    assert!(bad.emit(Transport::Ip, &mut Vec::new()).is_err());
}
