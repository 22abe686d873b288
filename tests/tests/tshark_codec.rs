//! Cross-check of our encoder against Wireshark's L2TP dissector: messages
//! we emit are written to a pcap and decoded by tshark, which must report
//! no malformed packet and no expert error, and must read back the message
//! types, AVP types, IDs and Ns/Nr we encoded.

use std::process::Command;

use l2tp_proto::wire::{
    avp::{attr, AvpFlags},
    Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, ResultCode as Rc, Transport, Version,
};
use l2tp_tests::{frames, pcap};

fn m(v: AvpValue) -> Avp {
    Avp { flags: AvpFlags::MANDATORY, value: v }
}

/// One message of each kind we send, both versions, with the RFC 4951 AVPs.
fn corpus() -> Vec<(Transport, ControlMessage)> {
    use AvpValue::*;
    use MessageType::*;
    let v2 = |t, tunnel_id: u32, session_id, ns, nr, avps: Vec<Avp>| {
        (
            Transport::Udp,
            ControlMessage {
                header: ControlHeader { version: Version::V2, tunnel_id, session_id, ns, nr },
                message: Some(Message::new(t, avps)),
            },
        )
    };
    let v3 = |transport, t, ccid, ns, nr, avps: Vec<Avp>| {
        (
            transport,
            ControlMessage {
                header: ControlHeader { version: Version::V3, tunnel_id: ccid, session_id: 0, ns, nr },
                message: Some(Message::new(t, avps)),
            },
        )
    };
    let fo = |c, d, ms| Avp::new(Version::V2, FailoverCapability { control: c, data: d, recovery_time_ms: ms });
    vec![
        v2(
            Sccrq,
            0,
            0,
            0,
            0,
            vec![
                m(ProtocolVersion { version: 1, revision: 0 }),
                m(HostName(b"lac-a".to_vec())),
                m(FramingCapabilities(3)),
                m(AssignedTunnelId(0x1234)),
                m(ReceiveWindowSize(8)),
                m(Challenge(vec![7; 16])),
                Avp::new(Version::V2, TieBreaker([1, 2, 3, 4, 5, 6, 7, 8])),
                fo(true, true, 1500),
            ],
        ),
        v2(
            Sccrp,
            0x1234,
            0,
            0,
            1,
            vec![
                m(ProtocolVersion { version: 1, revision: 0 }),
                m(FramingCapabilities(3)),
                m(HostName(b"lns-b".to_vec())),
                m(AssignedTunnelId(0x4321)),
                m(ChallengeResponse([9; 16])),
                fo(true, false, 0),
                Avp::new(Version::V2, SuggestedControlSequence { ns: 3, nr: 100 }),
            ],
        ),
        v2(Scccn, 0x4321, 0, 1, 1, vec![m(ChallengeResponse([3; 16]))]),
        v2(
            Sccrq,
            0,
            0,
            0,
            0,
            vec![
                m(ProtocolVersion { version: 1, revision: 0 }),
                m(HostName(b"lac-a".to_vec())),
                m(FramingCapabilities(3)),
                m(AssignedTunnelId(0x1235)),
                Avp::new(Version::V2, TieBreaker([8; 8])),
                Avp::new(Version::V2, TunnelRecovery { recover_tunnel_id: 0x1234, recover_remote_tunnel_id: 0x4321 }),
            ],
        ),
        v2(Hello, 0x4321, 0, 2, 1, vec![]),
        v2(
            Icrq,
            0x4321,
            0,
            3,
            1,
            vec![m(RandomVector(vec![0x55; 16])), m(AssignedSessionId(0x77)).hidden(), m(CallSerialNumber(1))],
        ),
        v2(Iccn, 0x4321, 0x88, 4, 2, vec![m(TxConnectSpeed(1_000_000)), m(FramingType(1))]),
        v2(
            Fsq,
            0x4321,
            0,
            5,
            2,
            vec![
                Avp::new(Version::V2, FailoverSessionState { session_id: 0x77, remote_session_id: 0x88 }),
                Avp::new(Version::V2, FailoverSessionState { session_id: 0x79, remote_session_id: 0x89 }),
            ],
        ),
        v2(
            Fsr,
            0x1234,
            0,
            2,
            6,
            vec![Avp::new(Version::V2, FailoverSessionState { session_id: 0, remote_session_id: 0x77 })],
        ),
        v2(Cdn, 0x4321, 0x88, 6, 2, vec![m(ResultCode(Rc::new(3, None, ""))), m(AssignedSessionId(0x77))]),
        v2(
            StopCcn,
            0x4321,
            0,
            7,
            2,
            vec![m(AssignedTunnelId(0x1234)), m(ResultCode(Rc::new(2, Some(8), "unknown mandatory AVP 99")))],
        ),
        v3(
            Transport::Udp,
            Sccrq,
            0,
            0,
            0,
            vec![
                m(HostName(b"pe-a".to_vec())),
                m(RouterId(0xc612_0001)),
                m(AssignedConnectionId(0xdead_0001)),
                m(PwCapabilities(vec![5, 4])),
                Avp::new(Version::V3, FailoverCapability { control: true, data: true, recovery_time_ms: 2000 }),
            ],
        ),
        v3(
            Transport::Udp,
            Icrq,
            0xdead_0002,
            1,
            1,
            vec![
                m(LocalSessionId(0x1000_0001)),
                m(RemoteSessionId(0)),
                Avp::new(Version::V3, CallSerialNumber(9)),
                m(PwType(5)),
                m(RemoteEndId(b"pw-1".to_vec())),
                m(CircuitStatus { new: true, active: true }),
                m(AssignedCookie(vec![1, 2, 3, 4, 5, 6, 7, 8])),
                m(L2SpecificSublayer(1)),
                m(DataSequencing(2)),
            ],
        ),
        v3(
            Transport::Udp,
            Fsq,
            0xdead_0002,
            2,
            1,
            vec![Avp::new(
                Version::V3,
                FailoverSessionState { session_id: 0x1000_0001, remote_session_id: 0x2000_0001 },
            )],
        ),
        v3(Transport::Ip, Hello, 0xdead_0002, 3, 1, vec![]),
        v3(Transport::Ip, Ack, 0xdead_0002, 4, 1, vec![]),
    ]
}

fn frame(transport: Transport, payload: &[u8]) -> Vec<u8> {
    match transport {
        Transport::Udp => frames::udp4_frame(1701, 1701, payload),
        Transport::Ip => frames::ip4_l2tp_frame(payload),
    }
}

/// Message type, the types of the AVPs tshark can name (it shows no type
/// for a hidden AVP), and the H bit of every AVP.
fn ours(msg: &ControlMessage) -> (u16, Vec<u16>, Vec<bool>) {
    let body = msg.message.as_ref().expect("not a ZLB");
    let mut types = vec![attr::MESSAGE_TYPE];
    types.extend(body.avps.iter().filter(|a| !a.flags.hidden).map(|a| a.value.key().1));
    let mut hidden = vec![false];
    hidden.extend(body.avps.iter().map(|a| a.flags.hidden));
    (body.msg_type.to_u16(), types, hidden)
}

#[test]
#[ignore = "needs tshark (installed by `cargo xtask bootstrap`); run by `cargo xtask test`"]
fn tshark_decodes_what_we_emit() {
    let dir = std::env::temp_dir().join(format!("l2tp-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("ours.pcap");
    let corpus = corpus();
    let secret = b"tshark-secret";
    let frames: Vec<Vec<u8>> =
        corpus.iter().map(|(t, m)| frame(*t, &m.encode(*t, Some(secret)).expect("encodes"))).collect();
    pcap::write(&path, &frames).expect("pcap");

    let fields = [
        "frame.number",
        "l2tp.version",
        "l2tp.tunnel",
        "l2tp.session",
        "l2tp.ccid",
        "l2tp.Ns",
        "l2tp.Nr",
        "l2tp.avp.message_type",
        "l2tp.avp.type",
        "l2tp.avp.hidden",
        "_ws.malformed",
        "_ws.expert.severity",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(&path).args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    let verbose = Command::new("tshark").arg("-n").arg("-r").arg(&path).arg("-V").output().expect("tshark -V");
    if std::env::var_os("KEEP_PCAP").is_none() {
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), corpus.len(), "one row per frame:\n{text}");

    let num = |s: &str| -> u64 {
        let s = s.trim();
        s.strip_prefix("0x")
            .map_or_else(|| s.parse().unwrap_or(u64::MAX), |h| u64::from_str_radix(h, 16).unwrap_or(u64::MAX))
    };
    let list = |s: &str| -> Vec<u64> { s.split(',').filter(|x| !x.is_empty()).map(num).collect() };
    let mut failures = Vec::new();
    for ((transport, msg), row) in corpus.iter().zip(&rows) {
        let (msg_type, avp_types, hidden) = ours(msg);
        let what =
            format!("frame {} ({:?} {:?} {})", row[0], msg.header.version, transport, MessageType::from_u16(msg_type));
        if !row[10].is_empty() {
            failures.push(format!("{what}: malformed"));
        }
        // Expert severity: errors are 0x00800000.
        if list(row[11]).iter().any(|&s| s >= 0x0080_0000) {
            failures.push(format!("{what}: expert error (severities {})", row[11]));
        }
        let want_version = if msg.header.version == Version::V2 { 2 } else { 3 };
        if num(row[1]) != want_version {
            failures.push(format!("{what}: version {}", row[1]));
        }
        match msg.header.version {
            Version::V2 => {
                if num(row[2]) != u64::from(msg.header.tunnel_id) || num(row[3]) != u64::from(msg.header.session_id) {
                    failures.push(format!("{what}: tunnel/session {} {}", row[2], row[3]));
                }
            }
            Version::V3 => {
                if num(row[4]) != u64::from(msg.header.tunnel_id) {
                    failures.push(format!("{what}: ccid {}", row[4]));
                }
            }
        }
        if num(row[5]) != u64::from(msg.header.ns) || num(row[6]) != u64::from(msg.header.nr) {
            failures.push(format!("{what}: Ns/Nr {} {}", row[5], row[6]));
        }
        if list(row[7]) != vec![u64::from(msg_type)] {
            failures.push(format!("{what}: message type {}", row[7]));
        }
        let got: Vec<u64> = list(row[8]);
        let want: Vec<u64> = avp_types.iter().map(|&t| u64::from(t)).collect();
        if got != want {
            failures.push(format!("{what}: AVP types {got:?}, want {want:?}"));
        }
        let got_hidden: Vec<bool> = row[9].split(',').map(|b| b == "1" || b == "True").collect();
        if got_hidden != hidden {
            failures.push(format!("{what}: H bits {got_hidden:?}, want {hidden:?}"));
        }
    }
    // Names: FSQ/FSR and the RFC 4951 AVPs are known to the dissector.
    let verbose = String::from_utf8_lossy(&verbose.stdout);
    for name in ["Failover_Session_Query", "Failover_Session_Response"] {
        if !verbose.contains(name) {
            failures.push(format!("tshark -V does not name {name}"));
        }
    }
    for avp_name in ["Failover Capability", "Tunnel Recovery", "Suggested Control Sequence", "Failover Session State"] {
        if !verbose.contains(avp_name) {
            failures.push(format!("tshark -V does not name the {avp_name} AVP"));
        }
    }
    assert!(failures.is_empty(), "{}\n\ntshark fields:\n{text}", failures.join("\n"));
}
