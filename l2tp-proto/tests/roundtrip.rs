//! Property tests: `decode(encode(x)) == x` for generated headers, AVPs and
//! messages of both versions, with and without hidden AVPs.

use l2tp_proto::wire::{
    avp::CallErrors as Ce, Avp, AvpFlags, AvpValue, ControlHeader, ControlMessage, Cookie, Message, MessageType,
    ResultCode as Rc, Transport, V2DataHeader, V3DataHeader, Version,
};
use proptest::{collection::vec as pvec, prelude::*, strategy::Union};

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    pvec(any::<u8>(), min..=max)
}

fn avp_value(version: Version) -> impl Strategy<Value = AvpValue> {
    use AvpValue::*;
    let id = move || if version == Version::V2 { (0u32..=0xFFFF).boxed() } else { any::<u32>().boxed() };
    let mut s: Vec<BoxedStrategy<AvpValue>> = vec![
        (any::<u16>(), proptest::option::of(any::<u16>()), bytes(0, 40))
            .prop_map(|(result, error, msg)| {
                ResultCode(Rc { result, error, message: if error.is_some() { msg } else { vec![] } })
            })
            .boxed(),
        (any::<u8>(), any::<u8>()).prop_map(|(version, revision)| ProtocolVersion { version, revision }).boxed(),
        any::<u32>().prop_map(FramingCapabilities).boxed(),
        any::<u32>().prop_map(BearerCapabilities).boxed(),
        any::<[u8; 8]>().prop_map(TieBreaker).boxed(),
        any::<u16>().prop_map(FirmwareRevision).boxed(),
        bytes(1, 64).prop_map(HostName).boxed(),
        bytes(0, 64).prop_map(VendorName).boxed(),
        any::<u16>().prop_map(AssignedTunnelId).boxed(),
        any::<u16>().prop_map(ReceiveWindowSize).boxed(),
        bytes(1, 64).prop_map(Challenge).boxed(),
        (any::<u16>(), any::<u8>(), bytes(0, 20))
            .prop_map(|(cause, message, advisory)| Q931CauseCode { cause, message, advisory })
            .boxed(),
        any::<[u8; 16]>().prop_map(ChallengeResponse).boxed(),
        any::<u16>().prop_map(AssignedSessionId).boxed(),
        any::<u32>().prop_map(CallSerialNumber).boxed(),
        any::<u32>().prop_map(MinimumBps).boxed(),
        any::<u32>().prop_map(MaximumBps).boxed(),
        any::<u32>().prop_map(BearerType).boxed(),
        any::<u32>().prop_map(FramingType).boxed(),
        bytes(0, 30).prop_map(CalledNumber).boxed(),
        bytes(0, 30).prop_map(CallingNumber).boxed(),
        bytes(0, 30).prop_map(SubAddress).boxed(),
        any::<u32>().prop_map(TxConnectSpeed).boxed(),
        any::<u32>().prop_map(PhysicalChannelId).boxed(),
        bytes(0, 30).prop_map(InitialReceivedLcpConfreq).boxed(),
        bytes(0, 30).prop_map(LastSentLcpConfreq).boxed(),
        bytes(0, 30).prop_map(LastReceivedLcpConfreq).boxed(),
        any::<u16>().prop_map(ProxyAuthenType).boxed(),
        bytes(0, 30).prop_map(ProxyAuthenName).boxed(),
        bytes(1, 30).prop_map(ProxyAuthenChallenge).boxed(),
        any::<u8>().prop_map(ProxyAuthenId).boxed(),
        bytes(0, 30).prop_map(ProxyAuthenResponse).boxed(),
        any::<[u32; 6]>()
            .prop_map(|c| {
                CallErrors(Ce {
                    crc: c[0],
                    framing: c[1],
                    hardware_overruns: c[2],
                    buffer_overruns: c[3],
                    timeouts: c[4],
                    alignment: c[5],
                })
            })
            .boxed(),
        (any::<u32>(), any::<u32>()).prop_map(|(send, receive)| Accm { send, receive }).boxed(),
        bytes(1, 32).prop_map(RandomVector).boxed(),
        bytes(0, 30).prop_map(PrivateGroupId).boxed(),
        any::<u32>().prop_map(RxConnectSpeed).boxed(),
        Just(SequencingRequired).boxed(),
        (0u8..=1)
            .prop_flat_map(|t| (Just(t), bytes(if t == 0 { 16 } else { 20 }, if t == 0 { 16 } else { 20 })))
            .prop_map(|(digest_type, digest)| MessageDigest { digest_type, digest })
            .boxed(),
        any::<u32>().prop_map(RouterId).boxed(),
        any::<u32>().prop_map(AssignedConnectionId).boxed(),
        pvec(any::<u16>(), 0..8).prop_map(PwCapabilities).boxed(),
        any::<u32>().prop_map(LocalSessionId).boxed(),
        any::<u32>().prop_map(RemoteSessionId).boxed(),
        prop_oneof![Just(0usize), Just(4), Just(8)].prop_flat_map(|n| bytes(n, n)).prop_map(AssignedCookie).boxed(),
        bytes(1, 30).prop_map(RemoteEndId).boxed(),
        any::<u16>().prop_map(PwType).boxed(),
        any::<u16>().prop_map(L2SpecificSublayer).boxed(),
        any::<u16>().prop_map(DataSequencing).boxed(),
        (any::<bool>(), any::<bool>()).prop_map(|(new, active)| CircuitStatus { new, active }).boxed(),
        bytes(1, 10).prop_map(PreferredLanguage).boxed(),
        bytes(1, 32).prop_map(ControlAuthNonce).boxed(),
        any::<u64>().prop_map(TxConnectSpeedBps).boxed(),
        any::<u64>().prop_map(RxConnectSpeedBps).boxed(),
        (any::<bool>(), any::<bool>(), any::<u32>())
            .prop_filter("W-7: C or D", |(c, d, _)| *c || *d)
            .prop_map(|(control, data, recovery_time_ms)| FailoverCapability { control, data, recovery_time_ms })
            .boxed(),
        (id(), id())
            .prop_map(|(recover_tunnel_id, recover_remote_tunnel_id)| TunnelRecovery {
                recover_tunnel_id,
                recover_remote_tunnel_id,
            })
            .boxed(),
        (any::<u16>(), any::<u16>()).prop_map(|(ns, nr)| SuggestedControlSequence { ns, nr }).boxed(),
        (id(), id())
            .prop_map(|(session_id, remote_session_id)| FailoverSessionState { session_id, remote_session_id })
            .boxed(),
        (1u16.., any::<u16>(), bytes(0, 40)).prop_map(|(vendor, attr, value)| Unknown { vendor, attr, value }).boxed(),
        (prop_oneof![Just(20u16), 40u16..=58, Just(67u16), 80u16..], bytes(0, 40))
            .prop_map(|(attr, value)| Unknown { vendor: 0, attr, value })
            .boxed(),
    ];
    if version == Version::V3 {
        s.push(
            any::<[u32; 4]>()
                .prop_map(|c| CircuitErrors {
                    hardware_overruns: c[0],
                    buffer_overruns: c[1],
                    timeouts: c[2],
                    alignment: c[3],
                })
                .boxed(),
        );
    }
    Union::new(s)
}

fn avp(version: Version) -> impl Strategy<Value = Avp> {
    (avp_value(version), any::<bool>(), any::<bool>()).prop_map(|(value, m, hide)| {
        let unknown = matches!(value, AvpValue::Unknown { .. });
        // Unknown AVPs decode only with M=0 (M=1 is fatal by design).
        let flags = AvpFlags { mandatory: m && !unknown, hidden: hide && value.may_be_hidden() };
        Avp { flags, value }
    })
}

fn message(version: Version) -> impl Strategy<Value = Message> {
    let types = prop_oneof![
        proptest::sample::select(MessageType::KNOWN.to_vec()),
        (23u16..1000).prop_map(MessageType::Unknown),
    ];
    (types, pvec(avp(version), 0..12), any::<bool>(), bytes(1, 24)).prop_map(|(t, mut avps, m, rv)| {
        if avps.iter().any(|a| a.flags.hidden) {
            avps.insert(0, Avp { flags: AvpFlags::MANDATORY, value: AvpValue::RandomVector(rv) });
        }
        // An unknown type only decodes with M=0.
        let type_mandatory = m && !matches!(t, MessageType::Unknown(_));
        Message { msg_type: t, type_mandatory, avps }
    })
}

fn header(version: Version) -> impl Strategy<Value = ControlHeader> {
    let tid = if version == Version::V2 { (0u32..=0xFFFF).boxed() } else { any::<u32>().boxed() };
    let sid = if version == Version::V2 { any::<u16>().boxed() } else { Just(0u16).boxed() };
    (tid, sid, any::<u16>(), any::<u16>()).prop_map(move |(tunnel_id, session_id, ns, nr)| ControlHeader {
        version,
        tunnel_id,
        session_id,
        ns,
        nr,
    })
}

fn version_transport() -> impl Strategy<Value = (Version, Transport)> {
    prop_oneof![
        Just((Version::V2, Transport::Udp)),
        Just((Version::V3, Transport::Udp)),
        Just((Version::V3, Transport::Ip))
    ]
}

fn control_message() -> impl Strategy<Value = (Transport, ControlMessage)> {
    version_transport().prop_flat_map(|(v, t)| {
        (Just(t), header(v), proptest::option::of(message(v)))
            .prop_map(|(t, header, message)| (t, ControlMessage { header, message }))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn control_messages_round_trip((transport, msg) in control_message(), secret in bytes(0, 20)) {
        let wire = msg.encode(transport, Some(&secret)).expect("encodes");
        let back = ControlMessage::decode(transport, &wire, Some(&secret)).expect("decodes");
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn v2_data_headers_round_trip(
        with_length in any::<bool>(), tunnel_id in any::<u16>(), session_id in any::<u16>(),
        sequence in proptest::option::of(any::<(u16, u16)>()), offset in proptest::option::of(0u16..64),
        priority in any::<bool>(), payload in bytes(0, 64),
    ) {
        let h = V2DataHeader { with_length, tunnel_id, session_id, sequence, offset, priority };
        let mut wire = Vec::new();
        h.emit(payload.len(), &mut wire).expect("emit");
        prop_assert_eq!(wire.len(), h.wire_len());
        wire.extend_from_slice(&payload);
        let (back, rest) = V2DataHeader::parse(&wire).expect("parse");
        prop_assert_eq!(back, h);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn v3_data_headers_round_trip(
        udp in any::<bool>(), session_id in 1u32.., cookie in prop_oneof![Just(0usize), Just(4), Just(8)].prop_flat_map(|n| bytes(n, n)),
        sublayer in proptest::option::of(proptest::option::of(0u32..=0xFF_FFFF)), payload in bytes(0, 64),
    ) {
        let transport = if udp { Transport::Udp } else { Transport::Ip };
        let h = V3DataHeader { session_id, cookie: Cookie::from_slice(&cookie).expect("0/4/8"), sublayer };
        let mut wire = Vec::new();
        h.emit(transport, &mut wire).expect("emit");
        prop_assert_eq!(wire.len(), h.wire_len(transport));
        wire.extend_from_slice(&payload);
        let (back, rest) = V3DataHeader::parse(transport, &wire, cookie.len(), sublayer.is_some()).expect("parse");
        prop_assert_eq!(back, h);
        prop_assert_eq!(rest, &payload[..]);
    }
}
