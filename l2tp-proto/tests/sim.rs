//! Simulated-network scenarios: two engines, a lossy reordering network and
//! a simulated clock. Each runs in milliseconds of real time.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use l2tp_proto::{
    channel::ChannelConfig,
    engine::{
        DataplaneUpdate, DownReason, Engine, EngineConfig, Event, FailoverCapability, RestoredSession, RestoredTunnel,
        SessionParams, SessionStatus, TunnelId, TunnelParams, TunnelStatus, TunnelTimers,
    },
    wire::{
        avp::AvpFlags, types::stopccn, Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Transport,
        Version,
    },
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const A: &str = "198.18.0.1:1701";
const B: &str = "198.18.0.2:1701";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn params(version: Version, secret: Option<&[u8]>) -> TunnelParams {
    TunnelParams {
        version,
        transport: Transport::Udp,
        secret: secret.map(<[u8]>::to_vec),
        hide_avps: secret.is_some(),
        failover: Some(FailoverCapability { control: true, data: true, recovery_time_ms: 1000 }),
        pw_types: vec![5],
        pseudowires: vec![],
        recovery_peers: vec![],
        timers: None,
    }
}

fn engine(name: &str, seed: u64, accept: Option<TunnelParams>) -> Engine {
    let cfg = EngineConfig { host_name: name.into(), accept, ..EngineConfig::default() };
    Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
}

struct Packet {
    at: Instant,
    to: usize,
    from: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
}

/// Two endpoints and the network between them.
struct Pair {
    now: Instant,
    ends: [Engine; 2],
    addrs: [SocketAddr; 2],
    in_flight: Vec<Packet>,
    rng: StdRng,
    loss: f64,
    delay: Duration,
    jitter: Duration,
    /// Drop everything sent by end `i` while set.
    blackhole: [bool; 2],
    events: [Vec<Event>; 2],
    dataplane: [Vec<DataplaneUpdate>; 2],
    sent: [Vec<(Instant, Vec<u8>)>; 2],
}

impl Pair {
    fn new(a: Engine, b: Engine) -> Self {
        Self {
            now: Instant::now(),
            ends: [a, b],
            addrs: [addr(A), addr(B)],
            in_flight: Vec::new(),
            rng: StdRng::seed_from_u64(7),
            loss: 0.0,
            delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
            blackhole: [false; 2],
            events: [Vec::new(), Vec::new()],
            dataplane: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
        }
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some((to, transport, bytes)) = self.ends[i].poll_transmit() {
                assert_eq!(to, self.addrs[1 - i]);
                self.sent[i].push((self.now, bytes.clone()));
                if self.blackhole[i] || self.rng.gen::<f64>() < self.loss {
                    continue;
                }
                let jitter = if self.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_micros(self.rng.gen_range(0..self.jitter.as_micros() as u64))
                };
                self.in_flight.push(Packet {
                    at: self.now + self.delay + jitter,
                    to: 1 - i,
                    from: self.addrs[i],
                    transport,
                    bytes,
                });
            }
            while let Some(e) = self.ends[i].poll_event() {
                self.events[i].push(e);
            }
            while let Some(d) = self.ends[i].poll_dataplane() {
                self.dataplane[i].push(d);
            }
        }
    }

    /// Runs the simulation for `span` of simulated time.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.collect();
            let next_packet = self.in_flight.iter().map(|p| p.at).min();
            let next_timer = self.ends.iter().filter_map(Engine::poll_timeout).min();
            let Some(next) = [next_packet, next_timer].into_iter().flatten().min() else { break };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<Packet>, Vec<Packet>) =
                std::mem::take(&mut self.in_flight).into_iter().partition(|p| p.at <= now);
            self.in_flight = rest;
            for p in due {
                self.ends[p.to].handle_datagram(now, p.from, p.transport, &p.bytes);
            }
            for e in &mut self.ends {
                e.handle_timeout(now);
            }
        }
        self.now = end;
        self.collect();
    }

    fn tunnel_up(&self, i: usize) -> Vec<TunnelId> {
        self.events[i]
            .iter()
            .filter_map(|e| if let Event::TunnelUp { tunnel, .. } = e { Some(*tunnel) } else { None })
            .collect()
    }

    fn sessions_up(&self, i: usize) -> usize {
        self.dataplane[i].iter().filter(|d| matches!(d, DataplaneUpdate::SessionUp { .. })).count()
    }

    /// Injects raw bytes into end `to` as if sent by the other end.
    fn inject(&mut self, to: usize, bytes: &[u8]) {
        let now = self.now;
        self.ends[to].handle_datagram(now, self.addrs[1 - to], Transport::Udp, bytes);
        self.collect();
    }
}

fn establish(version: Version, secret: Option<&[u8]>) -> (Pair, TunnelId) {
    let a = engine("lac", 1, None);
    let b = engine("lns", 2, Some(params(version, secret)));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), params(version, secret)).expect("connect");
    pair.run(Duration::from_secs(2));
    (pair, t)
}

#[test]
fn v2_tunnel_with_challenge_and_hidden_avps_and_a_session() {
    let (mut pair, t) = establish(Version::V2, Some(b"s3cret"));
    assert_eq!(pair.tunnel_up(0), vec![t]);
    assert_eq!(pair.tunnel_up(1).len(), 1);
    // Failover capability was exchanged and remembered (F-CAP-1).
    assert!(pair.events[0]
        .iter()
        .any(|e| matches!(e, Event::TunnelUp { peer_failover: Some(f), .. } if f.control && f.data)));
    let now = pair.now;
    let sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(2));
    assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (1, 1));
    match &pair.dataplane[0][0] {
        DataplaneUpdate::SessionUp { local_session_id, peer_session_id, version, .. } => {
            assert_eq!((*local_session_id, *version), (sid, Version::V2));
            assert!(*peer_session_id != 0 && *peer_session_id <= 0xffff);
        }
        d => panic!("{d:?}"),
    }
    // Hidden AVPs were on the wire: some AVP had the H bit.
    let hidden = pair.sent[0].iter().any(|(_, b)| {
        ControlMessage::decode(Transport::Udp, b, Some(b"s3cret"))
            .ok()
            .and_then(|m| m.message)
            .is_some_and(|m| m.avps.iter().any(|a| a.flags.hidden))
    });
    assert!(hidden);
}

#[test]
fn v3_tunnel_and_pseudowire_session_parameters() {
    let (mut pair, t) = establish(Version::V3, None);
    assert_eq!(pair.tunnel_up(0), vec![t]);
    let now = pair.now;
    let sp = SessionParams { cookie_len: 8, sublayer: true, sequencing: true, ..SessionParams::default() };
    let sid = pair.ends[0].open_session(now, t, sp).expect("session");
    pair.run(Duration::from_secs(2));
    let (a, b) = (&pair.dataplane[0][0], &pair.dataplane[1][0]);
    let (
        DataplaneUpdate::SessionUp {
            local_session_id: la,
            peer_session_id: pa,
            rx_cookie: rca,
            tx_cookie: tca,
            rx_sequencing: rsa,
            ..
        },
        DataplaneUpdate::SessionUp {
            local_session_id: lb,
            peer_session_id: pb,
            rx_cookie: rcb,
            tx_cookie: tcb,
            tx_sequencing: tsb,
            ..
        },
    ) = (a, b)
    else {
        panic!("{a:?} {b:?}")
    };
    assert_eq!((*la, *pa), (sid, *lb));
    assert_eq!(*pb, sid);
    // A's assigned cookie is what B sends; sequencing A asked for, B sends.
    assert_eq!(rca.len(), 8);
    assert_eq!(rca, tcb);
    assert_eq!(tca, rcb);
    assert!(*rsa && *tsb);
}

#[test]
fn thirty_percent_loss_and_reordering_still_establishes_100_sessions() {
    for version in [Version::V2, Version::V3] {
        // A lossy network needs more retransmissions than the RFC's
        // default of 5 ("SHOULD be configurable"): with 30% loss each way a
        // message and its acknowledgement both arrive only half the time.
        let lossy = |name: &str, seed, accept| {
            let mut cfg = EngineConfig { host_name: name.into(), accept, ..EngineConfig::default() };
            cfg.channel.max_retries = 15;
            Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
        };
        let a = lossy("lac", 11, None);
        let b = lossy("lns", 12, Some(params(version, Some(b"k"))));
        let mut pair = Pair::new(a, b);
        pair.loss = 0.3;
        pair.jitter = Duration::from_millis(40);
        let now = pair.now;
        let t = pair.ends[0].connect(now, addr(B), params(version, Some(b"k"))).expect("connect");
        pair.run(Duration::from_secs(30));
        assert_eq!(pair.tunnel_up(0), vec![t], "{version:?}: tunnel");
        let now = pair.now;
        for _ in 0..100 {
            pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        }
        pair.run(Duration::from_secs(600));
        assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (100, 100), "{version:?}");
        assert!(!pair.events.iter().flatten().any(|e| matches!(e, Event::TunnelDown { .. })));
    }
}

#[test]
fn hello_on_idle_keeps_the_tunnel() {
    let (mut pair, _) = establish(Version::V3, None);
    let before = [pair.sent[0].len(), pair.sent[1].len()];
    pair.run(Duration::from_secs(61));
    // Whichever end's idle timer fires first sends a HELLO; receiving it
    // restarts the other's timer.
    let hellos = (0..2)
        .flat_map(|i| pair.sent[i][before[i]..].iter())
        .filter(|(_, b)| {
            ControlMessage::decode(Transport::Udp, b, None)
                .ok()
                .and_then(|m| m.message)
                .is_some_and(|m| m.msg_type == MessageType::Hello)
        })
        .count();
    assert_eq!(hellos, 1, "one HELLO after 60 s idle");
    pair.run(Duration::from_secs(600));
    assert!(pair.ends[0].stats().datagrams > 10, "HELLOs keep flowing");
    assert!(!pair.events[0].iter().any(|e| matches!(e, Event::TunnelDown { .. })));
}

#[test]
fn stopccn_and_cdn_teardown() {
    let (mut pair, t) = establish(Version::V2, None);
    let now = pair.now;
    let s1 = pair.ends[0].open_session(now, t, SessionParams::default()).expect("s1");
    let s2 = pair.ends[0].open_session(now, t, SessionParams::default()).expect("s2");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.sessions_up(1), 2);
    let now = pair.now;
    pair.ends[0].close_session(now, t, s1).expect("cdn");
    pair.run(Duration::from_secs(2));
    let down =
        |p: &Pair, i: usize| p.dataplane[i].iter().filter(|d| matches!(d, DataplaneUpdate::SessionDown { .. })).count();
    assert_eq!((down(&pair, 0), down(&pair, 1)), (1, 1));
    let now = pair.now;
    pair.ends[0].close_tunnel(now, t).expect("stopccn");
    pair.run(Duration::from_secs(2));
    assert_eq!((down(&pair, 0), down(&pair, 1)), (2, 2));
    assert!(pair.events[1].iter().any(
        |e| matches!(e, Event::TunnelDown { reason: DownReason::Peer(rc), .. } if rc.result == stopccn::GENERAL_CLEAR)
    ));
    assert!(pair.events[0]
        .iter()
        .any(|e| matches!(e, Event::SessionDown { local_session_id, .. } if *local_session_id == s2)));
    // State is held for the retransmission interval, then freed.
    pair.run(Duration::from_secs(40));
    assert!(pair.ends[0].tunnels().is_empty() && pair.ends[1].tunnels().is_empty());
}

#[test]
fn simultaneous_open_leaves_one_tunnel_by_tie_breaker() {
    let a = engine("a", 21, Some(params(Version::V2, None)));
    let b = engine("b", 22, Some(params(Version::V2, None)));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    pair.ends[0].connect(now, addr(B), params(Version::V2, None)).expect("a");
    pair.ends[1].connect(now, addr(A), params(Version::V2, None)).expect("b");
    pair.run(Duration::from_secs(5));
    assert_eq!(pair.ends[0].tunnels().len(), 1, "{:?}", pair.events);
    assert_eq!(pair.ends[1].tunnels().len(), 1);
    let lost = pair
        .events
        .iter()
        .flatten()
        .filter(|e| matches!(e, Event::TunnelDown { reason: DownReason::LostTie, .. }))
        .count();
    assert_eq!(lost, 1);
}

#[test]
fn wrong_secret_is_refused_and_existing_tunnels_are_untouched() {
    let a = engine("lac", 31, None);
    let b = engine("lns", 32, Some(params(Version::V2, Some(b"right"))));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let good = pair.ends[0].connect(now, addr(B), params(Version::V2, Some(b"right"))).expect("good");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.tunnel_up(0), vec![good]);
    // Without hidden AVPs the challenge response gives the wrong secret
    // away; with them, the AVPs do not unhide. Either way: refused.
    let now = pair.now;
    let bad = pair.ends[0]
        .connect(now, addr(B), TunnelParams { hide_avps: false, ..params(Version::V2, Some(b"wrong")) })
        .expect("bad");
    let bad_hidden = pair.ends[0].connect(now, addr(B), params(Version::V2, Some(b"wrong"))).expect("bad");
    pair.run(Duration::from_secs(60));
    assert!(!pair.tunnel_up(0).contains(&bad_hidden));
    assert!(!pair.tunnel_up(0).contains(&bad));
    assert!(pair.ends[0].stats().auth_failures + pair.ends[1].stats().auth_failures >= 1);
    // The refusal is StopCCN result 4 (not authorized).
    let refused = pair.sent.iter().flatten().any(|(_, b)| {
        ControlMessage::decode(Transport::Udp, b, None).ok().and_then(|m| m.message).is_some_and(|m| {
            m.msg_type == MessageType::StopCcn
                && m.find(|v| if let AvpValue::ResultCode(r) = v { Some(r.result) } else { None })
                    == Some(stopccn::NOT_AUTHORIZED)
        })
    });
    assert!(refused);
    assert_eq!(pair.ends[0].tunnels().iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![good]);
}

/// The peer's (B's) view of the established tunnel: its ID for A's
/// messages and the next Ns/Nr A would use.
fn a_to_b_header(pair: &Pair, ns: u16, nr: u16) -> ControlHeader {
    let (tid, _) = pair.ends[1].tunnels()[0];
    ControlHeader { version: Version::V3, tunnel_id: tid, session_id: 0, ns, nr }
}

#[test]
fn unknown_mandatory_avp_tears_the_tunnel_down_with_2_8() {
    let (mut pair, _) = establish(Version::V3, None);
    let (ns, nr) = next_from(&pair, 0);
    let msg = Message::new(
        MessageType::Hello,
        vec![Avp { flags: AvpFlags::MANDATORY, value: AvpValue::Unknown { vendor: 9, attr: 1, value: vec![1] } }],
    );
    let bytes = ControlMessage { header: a_to_b_header(&pair, ns, nr), message: Some(msg) }
        .encode(Transport::Udp, None)
        .expect("encode");
    pair.inject(1, &bytes);
    pair.run(Duration::from_secs(1));
    let stop = pair.sent[1].iter().find_map(|(_, b)| {
        let m = ControlMessage::decode(Transport::Udp, b, None).ok()?.message?;
        (m.msg_type == MessageType::StopCcn)
            .then(|| m.find(|v| if let AvpValue::ResultCode(r) = v { Some((r.result, r.error)) } else { None }))
    });
    assert_eq!(stop, Some(Some((2, Some(8)))));
}

#[test]
fn duplicate_and_out_of_window_messages_are_not_processed_twice() {
    let (mut pair, t) = establish(Version::V3, None);
    let now = pair.now;
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(1));
    assert_eq!(pair.sessions_up(1), 1);
    // Replay A's ICRQ (a duplicate): B acknowledges it again but creates
    // no second session.
    let icrq = pair.sent[0]
        .iter()
        .find(|(_, b)| {
            ControlMessage::decode(Transport::Udp, b, None)
                .ok()
                .and_then(|m| m.message)
                .is_some_and(|m| m.msg_type == MessageType::Icrq)
        })
        .map(|(_, b)| b.clone())
        .expect("ICRQ");
    let acks_before = pair.sent[1].len();
    pair.inject(1, &icrq);
    pair.run(Duration::from_millis(100));
    assert_eq!(pair.sessions_up(1), 1);
    assert!(pair.sent[1].len() > acks_before, "duplicate acknowledged");
    // A message far beyond the window is dropped.
    let (ns, nr) = next_from(&pair, 0);
    let far = ControlMessage {
        header: a_to_b_header(&pair, ns.wrapping_add(1000), nr),
        message: Some(Message::new(MessageType::Hello, vec![])),
    };
    pair.inject(1, &far.encode(Transport::Udp, None).expect("encode"));
    pair.run(Duration::from_secs(1));
    assert_eq!(pair.ends[1].tunnels().len(), 1);
}

#[test]
fn retransmission_backoff_then_control_channel_timeout_clears_the_tunnel() {
    let (mut pair, t) = establish(Version::V2, None);
    let now = pair.now;
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(1));
    assert_eq!(pair.sessions_up(0), 1);
    // B goes silent: A's HELLO is retransmitted at 1, 2, 4, 8, 8 s gaps,
    // then the tunnel and its session are cleared.
    pair.blackhole = [false, true];
    let from = pair.sent[0].len();
    pair.run(Duration::from_secs(120));
    let times: Vec<Instant> = pair.sent[0][from..].iter().map(|(t, _)| *t).collect();
    let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, vec![1, 2, 4, 8, 8], "{gaps:?}");
    assert!(pair.events[0].iter().any(|e| matches!(e, Event::TunnelDown { reason: DownReason::Timeout, .. })));
    assert!(pair.dataplane[0].iter().any(|d| matches!(d, DataplaneUpdate::SessionDown { .. })));
}

/// RFC 3931 4.3: with a shared secret every L2TPv3 control message carries
/// a Message Digest right after the Message Type, over both nonces.
#[test]
fn v3_control_message_authentication() {
    let (mut pair, t) = establish(Version::V3, Some(b"v3-secret"));
    assert_eq!(pair.tunnel_up(0), vec![t]);
    let now = pair.now;
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(2));
    assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (1, 1));
    for (i, sent) in pair.sent.iter().enumerate() {
        for (_, b) in sent {
            let m = ControlMessage::decode(Transport::Udp, b, None).expect("decode");
            let body = m.message.unwrap_or_else(|| panic!("end {i} sent a ZLB although authentication is on"));
            assert!(matches!(body.avps[0].value, AvpValue::MessageDigest { .. }), "end {i}: {:?}", body.msg_type);
        }
    }
    // A tampered message (one flipped bit in the last AVP) is dropped.
    let before = pair.ends[1].stats().auth_failures;
    let mut hello = pair.sent[0].last().expect("sent").1.clone();
    let last = hello.len() - 1;
    hello[last] ^= 1;
    pair.inject(1, &hello);
    assert_eq!(pair.ends[1].stats().auth_failures, before + 1);
    // A peer with another secret gets no tunnel.
    let a = engine("lac", 41, None);
    let b = engine("lns", 42, Some(params(Version::V3, Some(b"right"))));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    pair.ends[0].connect(now, addr(B), params(Version::V3, Some(b"wrong"))).expect("connect");
    pair.run(Duration::from_secs(5));
    assert!(pair.tunnel_up(0).is_empty() && pair.tunnel_up(1).is_empty());
    assert!(pair.ends[1].stats().auth_failures >= 1);
}

#[test]
fn outgoing_calls_in_both_versions() {
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let now = pair.now;
        let sid = pair.ends[0].open_outgoing_session(now, t, SessionParams::default()).expect("OCRQ");
        pair.run(Duration::from_secs(2));
        assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (1, 1), "{version:?}");
        let mut all: Vec<&(Instant, Vec<u8>)> = pair.sent.iter().flatten().collect();
        all.sort_by_key(|(t, _)| *t);
        let kinds: Vec<MessageType> = all
            .into_iter()
            .filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, None).ok()?.message.map(|m| m.msg_type))
            .filter(|t| matches!(t, MessageType::Ocrq | MessageType::Ocrp | MessageType::Occn))
            .collect();
        assert_eq!(kinds, vec![MessageType::Ocrq, MessageType::Ocrp, MessageType::Occn], "{version:?}");
        let now = pair.now;
        pair.ends[0].close_session(now, t, sid).expect("CDN");
        pair.run(Duration::from_secs(2));
        assert!(pair.dataplane[1].iter().any(|d| matches!(d, DataplaneUpdate::SessionDown { .. })));
    }
}

/// The sender never has more unacknowledged messages than the peer's
/// Receive Window Size; when the window is closed (peer silent) messages
/// wait, and they flow again when it reopens.
#[test]
fn window_closes_and_reopens() {
    let small = |name: &str, seed, accept| {
        let mut cfg = EngineConfig { host_name: name.into(), accept, ..EngineConfig::default() };
        cfg.channel.receive_window = 2;
        Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
    };
    let mut pair = Pair::new(small("lac", 51, None), small("lns", 52, Some(params(Version::V3, None))));
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), params(Version::V3, None)).expect("connect");
    pair.run(Duration::from_secs(2));
    // B goes silent; A queues 20 calls: at most 2 ICRQs leave.
    pair.blackhole = [false, true];
    let from = pair.sent[0].len();
    let now = pair.now;
    for _ in 0..20 {
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    }
    pair.run(Duration::from_millis(500));
    let distinct_ns = |sent: &[(Instant, Vec<u8>)]| {
        let mut ns: Vec<u16> = sent
            .iter()
            .filter_map(|(_, b)| {
                let m = ControlMessage::decode(Transport::Udp, b, None).ok()?;
                (m.message?.msg_type == MessageType::Icrq).then_some(m.header.ns)
            })
            .collect();
        ns.sort();
        ns.dedup();
        ns
    };
    assert_eq!(distinct_ns(&pair.sent[0][from..]).len(), 2, "window of 2 while the peer is silent");
    // The peer comes back: everything goes through.
    pair.blackhole = [false, false];
    pair.run(Duration::from_secs(60));
    assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (20, 20));
    assert_eq!(distinct_ns(&pair.sent[0][from..]).len(), 20);
}

/// Bad input never grows state without bound: tunnels, half-open tunnels
/// per peer and sessions per tunnel are capped.
#[test]
fn limits_cap_tunnels_half_open_tunnels_and_sessions() {
    let capped = |name: &str, seed, accept| {
        let cfg = EngineConfig {
            host_name: name.into(),
            accept,
            max_tunnels: 3,
            max_half_open_per_peer: 2,
            max_sessions_per_tunnel: 2,
            ..EngineConfig::default()
        };
        Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
    };
    let mut pair = Pair::new(capped("lac", 61, None), capped("lns", 62, Some(params(Version::V2, None))));
    // A flood of SCCRQs that never complete: B keeps at most 2 half-open.
    for ns in 0..10u16 {
        let m = Message::new(
            MessageType::Sccrq,
            vec![
                Avp::new(Version::V2, AvpValue::ProtocolVersion { version: 1, revision: 0 }),
                Avp::new(Version::V2, AvpValue::HostName(b"flood".to_vec())),
                Avp::new(Version::V2, AvpValue::FramingCapabilities(3)),
                Avp::new(Version::V2, AvpValue::AssignedTunnelId(100 + ns)),
            ],
        );
        let bytes = ControlMessage {
            header: ControlHeader { version: Version::V2, tunnel_id: 0, session_id: 0, ns: 0, nr: 0 },
            message: Some(m),
        }
        .encode(Transport::Udp, None)
        .expect("encode");
        pair.inject(1, &bytes);
    }
    assert_eq!(pair.ends[1].stats().refused, 8);
    // Sessions per tunnel: the third call is refused locally.
    let (mut pair, t) = {
        let mut p = Pair::new(capped("lac", 63, None), capped("lns", 64, Some(params(Version::V2, None))));
        let now = p.now;
        let t = p.ends[0].connect(now, addr(B), params(Version::V2, None)).expect("connect");
        p.run(Duration::from_secs(2));
        (p, t)
    };
    let now = pair.now;
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("1");
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("2");
    assert!(pair.ends[0].open_session(now, t, SessionParams::default()).is_err());
    assert!(pair.ends[0].connect(now, addr(B), params(Version::V3, None)).is_ok());
    assert!(pair.ends[0].connect(now, addr(B), params(Version::V3, None)).is_ok());
    assert!(pair.ends[0].connect(now, addr(B), params(Version::V3, None)).is_err(), "max 3 tunnels");
}

/// RFC 4951 F-SS-4: new local session IDs are chosen least-recently-used,
/// so a just-released ID is not handed out again.
#[test]
fn f_ss_4_session_ids_are_not_reused_right_away() {
    let (mut pair, t) = establish(Version::V2, None);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let now = pair.now;
        let sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        assert!(seen.insert(sid), "session ID {sid} reused");
        pair.run(Duration::from_millis(50));
        let now = pair.now;
        pair.ends[0].close_session(now, t, sid).expect("close");
        pair.run(Duration::from_millis(50));
    }
}

#[test]
fn v3_set_link_info_reports_circuit_status() {
    let (mut pair, t) = establish(Version::V3, None);
    let now = pair.now;
    let sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(1));
    let now = pair.now;
    pair.ends[0].set_circuit_status(now, t, sid, false).expect("SLI");
    pair.run(Duration::from_secs(1));
    assert!(
        pair.events[1].iter().any(|e| matches!(e, Event::LinkInfo { circuit_active: Some(false), .. })),
        "{:?}",
        pair.events[1]
    );
}

fn next_from(pair: &Pair, i: usize) -> (u16, u16) {
    pair.sent[i]
        .iter()
        .rev()
        .find_map(|(_, b)| {
            let m = ControlMessage::decode(Transport::Udp, b, None).ok()?;
            let seq = m.message.as_ref().is_some_and(|x| x.msg_type != MessageType::Ack);
            seq.then_some((m.header.ns.wrapping_add(1), m.header.nr))
        })
        .expect("sent something")
}

fn fss(session_id: u32, remote_session_id: u32) -> Avp {
    Avp::new(Version::V3, AvpValue::FailoverSessionState { session_id, remote_session_id })
}

/// RFC 4951 3.3: FSQ/FSR confirm matching sessions (F-SS-5, F-SS-7,
/// F-SS-8), answer 0 for unknown or mismatched ones and mark a mismatched
/// one stale instead of clearing it (F-SS-6), and an FSR with Session ID 0
/// clears a session silently (F-SS-8).
#[test]
fn f_ss_5_to_8_session_state_synchronisation() {
    let (mut pair, t) = establish(Version::V3, None);
    let now = pair.now;
    let sids: Vec<u32> =
        (0..3).map(|_| pair.ends[0].open_session(now, t, SessionParams::default()).expect("s")).collect();
    pair.run(Duration::from_secs(1));
    let now = pair.now;
    pair.ends[0].query_sessions(now, t, &sids).expect("FSQ");
    pair.run(Duration::from_secs(1));
    let confirmed: Vec<u32> = pair.events[0]
        .iter()
        .filter_map(|e| {
            if let Event::SessionConfirmed { local_session_id, .. } = e {
                Some(*local_session_id)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(confirmed, sids);
    // One FSQ, one FSR, three FSS each; the FSQ's Message Type has M=0 (W-5).
    let fsq = pair.sent[0]
        .iter()
        .find_map(|(_, b)| {
            ControlMessage::decode(Transport::Udp, b, None).ok()?.message.filter(|m| m.msg_type == MessageType::Fsq)
        })
        .expect("FSQ");
    assert!(!fsq.type_mandatory);
    assert_eq!(fsq.avps.len(), 3);

    // B's view: B's session paired with A's sids[0]. An FSQ that pairs it
    // with another ID, plus one for a session B does not have.
    let (b_tid, b_sessions) = pair.ends[1].tunnels()[0].clone();
    let b_sid = b_sessions[0];
    let (ns, nr) = next_from(&pair, 0);
    let q = ControlMessage {
        header: ControlHeader { version: Version::V3, tunnel_id: b_tid, session_id: 0, ns, nr },
        message: Some(Message::new(MessageType::Fsq, vec![fss(0xdead, b_sid), fss(0xbeef, 0x0bad_0bad)])),
    };
    pair.inject(1, &q.encode(Transport::Udp, None).expect("encode"));
    pair.run(Duration::from_millis(200));
    let fsr = pair.sent[1]
        .iter()
        .rev()
        .find_map(|(_, b)| {
            ControlMessage::decode(Transport::Udp, b, None).ok()?.message.filter(|m| m.msg_type == MessageType::Fsr)
        })
        .expect("FSR");
    let answers: Vec<(u32, u32)> = fsr
        .avps
        .iter()
        .filter_map(|a| {
            if let AvpValue::FailoverSessionState { session_id, remote_session_id } = a.value {
                Some((session_id, remote_session_id))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(answers, vec![(0, 0xdead), (0, 0xbeef)]);
    assert_eq!(pair.ends[1].stale_sessions(b_tid), vec![b_sid], "marked stale, not cleared");
    assert_eq!(pair.ends[1].tunnels()[0].1.len(), 3);
    let stale: Vec<u32> = pair.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::SessionStale { tunnel, local_session_id } if *tunnel == b_tid => Some(*local_session_id),
            _ => None,
        })
        .collect();
    assert_eq!(stale, vec![b_sid], "reported once as an event");

    // On a fresh pair: an FSR answering 0 for one of A's sessions clears it
    // silently, without CDN.
    let (mut pair, t) = establish(Version::V3, None);
    let now = pair.now;
    let sids: Vec<u32> =
        (0..2).map(|_| pair.ends[0].open_session(now, t, SessionParams::default()).expect("s")).collect();
    pair.run(Duration::from_secs(1));
    let (ns, _) = next_from(&pair, 1);
    let (nr, _) = next_from(&pair, 0);
    let r = ControlMessage {
        header: ControlHeader { version: Version::V3, tunnel_id: t, session_id: 0, ns, nr },
        message: Some(Message::new(MessageType::Fsr, vec![fss(0, sids[1])])),
    };
    let before = pair.sent[0].len();
    pair.inject(0, &r.encode(Transport::Udp, None).expect("encode"));
    pair.run(Duration::from_millis(200));
    assert!(pair.dataplane[0]
        .iter()
        .any(|d| matches!(d, DataplaneUpdate::SessionDown { local_session_id, .. } if *local_session_id == sids[1])));
    let cdn_sent = pair.sent[0][before..].iter().any(|(_, b)| {
        ControlMessage::decode(Transport::Udp, b, None)
            .ok()
            .and_then(|m| m.message)
            .is_some_and(|m| m.msg_type == MessageType::Cdn)
    });
    assert!(!cdn_sent, "F-SS-8: cleared silently");
}

/// RFC 4951 F-CAP-3/F-CAP-4: when both ends advertised C, a control channel
/// timeout is extended by the peer's Recovery Time; an acknowledgement in
/// that time ends the wait (the loss was temporary).
#[test]
fn f_cap_3_recovery_time_extends_the_control_channel_timeout() {
    let with_rt = |rt_ms| TunnelParams {
        failover: Some(FailoverCapability { control: true, data: true, recovery_time_ms: rt_ms }),
        ..params(Version::V3, None)
    };
    // B's replies are lost, so both ends' channels time out: both advertise
    // the same Recovery Time.
    let run = |peer_rt_ms: u32, heal_after: Option<Duration>, our_c: bool| {
        let mut ours = with_rt(peer_rt_ms);
        if !our_c {
            ours.failover = None;
        }
        let a = engine("lac", 71, None);
        let b = engine("lns", 72, Some(with_rt(peer_rt_ms)));
        let mut pair = Pair::new(a, b);
        let now = pair.now;
        pair.ends[0].connect(now, addr(B), ours).expect("connect");
        pair.run(Duration::from_secs(2));
        let start = pair.now;
        pair.blackhole = [false, true];
        // Give A something to send so its channel times out.
        let now = pair.now;
        let t = pair.tunnel_up(0)[0];
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        match heal_after {
            Some(d) => {
                pair.run(d);
                pair.blackhole = [false, false];
                pair.run(Duration::from_secs(60));
            }
            None => pair.run(Duration::from_secs(120)),
        }
        let down =
            pair.events[0].iter().position(|e| matches!(e, Event::TunnelDown { reason: DownReason::Timeout, .. }));
        let detected = pair.events[0].iter().any(|e| matches!(e, Event::FailureDetected { .. }));
        let resumed = pair.events[0].iter().any(|e| matches!(e, Event::TunnelResumed { .. }));
        (start, down.is_some(), detected, resumed, pair)
    };
    // Plain timeout after 1+2+4+8+8 s of retransmissions (31 s), + 20 s.
    let (_, down, detected, _, _) = run(20_000, None, true);
    assert!(down && detected);
    // Healed at 40 s, inside 31 + 20 s: the tunnel resumes.
    let (_, down, detected, resumed, pair) = run(20_000, Some(Duration::from_secs(40)), true);
    assert!(detected && resumed && !down, "{:?}", pair.events[0]);
    assert_eq!(pair.sessions_up(0), 1, "the queued call went through after the heal");
    // Healed at 40 s without the extension (Recovery Time 0): already gone.
    let (_, down, _, resumed, _) = run(0, Some(Duration::from_secs(40)), true);
    assert!(down && !resumed);
    // F-CAP-4: we did not advertise C: no extension at all.
    let (_, down, detected, _, _) = run(20_000, Some(Duration::from_secs(40)), false);
    assert!(down && !detected);
}

/// The responder's own settings for a pseudowire come from its
/// configuration, found by the Remote End ID the initiator names; an
/// unknown Remote End ID gets CDN result 5 (permanent lack of facilities).
#[test]
fn pseudowires_matched_by_remote_end_id_with_the_responders_settings() {
    let pw = |id: &[u8], cookie_len, sequencing| SessionParams {
        remote_end_id: id.to_vec(),
        cookie_len,
        sublayer: sequencing,
        sequencing,
        ..SessionParams::default()
    };
    let lns_params = TunnelParams { pseudowires: vec![pw(b"pw-1", 4, true)], ..params(Version::V3, None) };
    let a = engine("lac", 1, None);
    let mut b = engine("lns", 2, None);
    // Per-peer parameters, no catch-all.
    b.set_peer(addr(A).ip(), lns_params);
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), params(Version::V3, None)).expect("connect");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.tunnel_up(0), vec![t]);
    let now = pair.now;
    pair.ends[0].open_session(now, t, pw(b"pw-1", 8, false)).expect("known");
    let unknown = pair.ends[0].open_session(now, t, pw(b"pw-9", 0, false)).expect("unknown");
    pair.run(Duration::from_secs(2));
    assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (1, 1));
    let DataplaneUpdate::SessionUp { remote_end_id, rx_cookie, tx_cookie, rx_sequencing, tx_sequencing, .. } =
        &pair.dataplane[1][0]
    else {
        panic!("{:?}", pair.dataplane[1])
    };
    assert_eq!(remote_end_id, b"pw-1");
    // B's own cookie length (4) and sequencing, not defaults.
    assert_eq!((rx_cookie.len(), tx_cookie.len()), (4, 8));
    assert!(*rx_sequencing && !*tx_sequencing);
    assert!(pair.events[0].iter().any(|e| matches!(
        e,
        Event::SessionDown { local_session_id, reason: DownReason::Peer(rc), .. }
            if *local_session_id == unknown && rc.result == 5
    )));
    let info = pair.ends[1].tunnel_info(pair.tunnel_up(1)[0]).expect("info");
    assert_eq!(info.sessions.len(), 1);
    assert_eq!(info.sessions[0].remote_end_id, b"pw-1");

    // Without per-peer parameters another address is refused.
    pair.ends[1].remove_peer(addr(A).ip(), Version::V3, Transport::Udp);
    let now = pair.now;
    pair.ends[0].connect(now, addr(B), params(Version::V3, None)).expect("connect");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.tunnel_up(1).len(), 1);
    assert!(pair.events[1].iter().any(|e| matches!(e, Event::Rejected { what, .. } if what.contains("refused"))));
}

/// One peer, two tunnels: L2TPv3 with message authentication and L2TPv2
/// with challenge authentication, each found by its version.
#[test]
fn per_peer_parameters_by_version_v2_next_to_an_authenticated_v3() {
    let a = engine("lac", 1, None);
    let mut b = engine("lns", 2, None);
    b.set_peer(addr(A).ip(), params(Version::V3, Some(b"v3-secret")));
    b.set_peer(addr(A).ip(), params(Version::V2, Some(b"v2-secret")));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let t3 = pair.ends[0].connect(now, addr(B), params(Version::V3, Some(b"v3-secret"))).expect("v3");
    let t2 = pair.ends[0].connect(now, addr(B), params(Version::V2, Some(b"v2-secret"))).expect("v2");
    pair.run(Duration::from_secs(2));
    let mut up = pair.tunnel_up(0);
    up.sort();
    let mut want = vec![t3, t2];
    want.sort();
    assert_eq!(up, want);
    assert_eq!(pair.ends[1].stats().auth_failures, 0);
}

// ---------------------------------------------------------------------------
// RFC 4951 failover: recovery tunnel, control channel reset, data channel
// reset decisions, session state after recovery.

/// What end `i` persisted about tunnel `t`: its IDs, peer, negotiated
/// capability and its established sessions (from their data-plane updates).
fn persisted(pair: &Pair, i: usize, t: TunnelId, params: TunnelParams) -> RestoredTunnel {
    let info = pair.ends[i].tunnel_info(t).expect("tunnel");
    let sessions = pair.dataplane[i]
        .iter()
        .filter_map(|d| match d {
            DataplaneUpdate::SessionUp {
                tunnel,
                local_session_id,
                peer_session_id,
                rx_cookie,
                tx_cookie,
                rx_sublayer,
                tx_sublayer,
                rx_sequencing,
                tx_sequencing,
                remote_end_id,
                pw_type,
                ..
            } if *tunnel == t
                && info.sessions.iter().any(|s| s.local_id == *local_session_id && s.state == SessionStatus::Established) =>
            {
                Some(RestoredSession {
                    local_id: *local_session_id,
                    peer_id: *peer_session_id,
                    params: SessionParams {
                        pw_type: *pw_type,
                        remote_end_id: remote_end_id.clone(),
                        cookie_len: rx_cookie.len(),
                        sublayer: *rx_sublayer,
                        sequencing: *rx_sequencing,
                    },
                    rx_cookie: rx_cookie.clone(),
                    tx_cookie: tx_cookie.clone(),
                    peer_sublayer: *tx_sublayer,
                    peer_sequencing: *tx_sequencing,
                })
            }
            _ => None,
        })
        .collect();
    RestoredTunnel {
        local_id: t,
        peer_id: info.peer_id,
        peer: info.peer,
        params,
        initiator: info.initiator,
        peer_failover: info.peer_failover,
        peer_host_name: info.peer_host_name.into_bytes(),
        sessions,
    }
}

/// End `i` crashes: everything in flight to it is lost, and a fresh engine
/// (no accept parameters) takes its place.
fn crash(pair: &mut Pair, i: usize, seed: u64) {
    pair.ends[i] = engine(if i == 0 { "lac" } else { "lns" }, seed, None);
    pair.in_flight.retain(|p| p.to != i);
    pair.events[i].clear();
    pair.dataplane[i].clear();
    pair.sent[i].clear();
}

fn recovered(pair: &Pair, i: usize) -> Vec<(TunnelId, bool, u16, u16, usize)> {
    pair.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::TunnelRecovered { tunnel, recovery_endpoint, ns, nr, sessions } => {
                Some((*tunnel, *recovery_endpoint, *ns, *nr, sessions.len()))
            }
            _ => None,
        })
        .collect()
}

fn decoded(pair: &Pair, i: usize, secret: Option<&[u8]>) -> Vec<ControlMessage> {
    pair.sent[i].iter().filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, secret).ok()).collect()
}

fn has_down(pair: &Pair, i: usize) -> bool {
    pair.events[i].iter().any(|e| matches!(e, Event::TunnelDown { .. } | Event::SessionDown { .. }))
}

/// Control-only failure of the initiator, in both versions, with
/// authentication: the recovery SCCRQ names the old tunnel (F-RT-2) with a
/// Tie Breaker (F-RT-6) and no Failover Capability (F-RT-3), the SCCRP
/// suggests a sequence (F-RT-9) that the two ends apply as mirror images
/// (F-CC-2), tunnel and session IDs are unchanged, nothing is torn down at
/// the remote end, the recovery tunnel is closed (F-CC-3) and the recovered
/// tunnel carries new control traffic (F-RT-10: v3 with the new nonces).
#[test]
fn f_rt_1_2_3_4_5_6_9_f_cc_1_2_3_f_rt_10_recovery_after_a_control_plane_restart() {
    for version in [Version::V2, Version::V3] {
        let secret: &[u8] = b"s3cret";
        let (mut pair, t) = establish(version, Some(secret));
        let now = pair.now;
        let sp = SessionParams { sublayer: true, sequencing: true, cookie_len: 4, ..SessionParams::default() };
        let sid = pair.ends[0].open_session(now, t, sp).expect("session");
        pair.run(Duration::from_secs(2));
        let tb = pair.tunnel_up(1)[0];
        let before_b = pair.ends[1].tunnel_info(tb).expect("b");
        let old = persisted(&pair, 0, t, params(version, Some(secret)));
        assert_eq!(old.sessions.len(), 1);

        crash(&mut pair, 0, 99);
        pair.events[1].clear();
        let now = pair.now;
        let rec = pair.ends[0].recover_tunnel(now, old).expect("recover");
        assert!(rec != t && rec != 0, "F-RT-5: a new tunnel ID");
        pair.run(Duration::from_secs(3));

        let (ra, rb) = (recovered(&pair, 0), recovered(&pair, 1));
        assert_eq!(ra.len(), 1, "{version:?}: {:?}", pair.events[0]);
        assert_eq!(rb.len(), 1, "{version:?}: {:?}", pair.events[1]);
        let ((ta, ea, ns_a, nr_a, na), (tb2, eb, ns_b, nr_b, nb)) = (ra[0], rb[0]);
        assert_eq!((ta, tb2), (t, tb), "tunnel IDs unchanged");
        assert!(ea && !eb);
        assert_eq!((na, nb), (1, 1), "the session carried over at both ends");
        assert_eq!((ns_a, nr_a), (nr_b, ns_b), "F-CC-2 mirror image");
        // What was on the wire.
        let a_msgs = decoded(&pair, 0, Some(secret));
        let sccrq = a_msgs.iter().filter_map(|c| c.message.as_ref()).find(|m| m.msg_type == MessageType::Sccrq);
        let sccrq = sccrq.expect("recovery SCCRQ");
        assert_eq!(
            sccrq.find(|a| match a {
                AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } =>
                    Some((*recover_tunnel_id, *recover_remote_tunnel_id)),
                _ => None,
            }),
            Some((t, before_b.local_id))
        );
        assert!(sccrq.find(|a| matches!(a, AvpValue::TieBreaker(_)).then_some(())).is_some(), "F-RT-6");
        assert!(sccrq.find(|a| matches!(a, AvpValue::FailoverCapability { .. }).then_some(())).is_none(), "F-RT-3");
        let b_msgs = decoded(&pair, 1, Some(secret));
        let scs =
            b_msgs.iter().filter_map(|c| c.message.as_ref()).filter(|m| m.msg_type == MessageType::Sccrp).find_map(
                |m| {
                    m.find(|a| match a {
                        AvpValue::SuggestedControlSequence { ns, nr } => Some((*ns, *nr)),
                        _ => None,
                    })
                },
            );
        assert_eq!(scs, Some((ns_a, nr_a)), "F-RT-9 / F-CC-2: the suggested values are applied");
        // F-RT-4: on the recovery tunnel (anything not sent on the old
        // tunnel) only SCCRQ, SCCRP, SCCCN, StopCCN, HELLO and ACK/ZLB.
        let allowed = [
            MessageType::Sccrq,
            MessageType::Sccrp,
            MessageType::Scccn,
            MessageType::StopCcn,
            MessageType::Hello,
            MessageType::Ack,
        ];
        for (msgs, old_peer_id) in [(&a_msgs, tb), (&b_msgs, t)] {
            for c in msgs.iter().filter(|c| c.header.tunnel_id != old_peer_id) {
                if let Some(m) = &c.message {
                    assert!(allowed.contains(&m.msg_type), "{version:?}: {:?} on the recovery tunnel", m.msg_type);
                }
            }
        }
        // F-CC-3: the recovery tunnel was closed with StopCCN, the old
        // tunnel and its session stayed.
        assert!(a_msgs.iter().filter_map(|c| c.message.as_ref()).any(|m| m.msg_type == MessageType::StopCcn));
        assert!(!has_down(&pair, 1), "{version:?}: remote tore something down: {:?}", pair.events[1]);
        let after_b = pair.ends[1].tunnel_info(tb).expect("b keeps the tunnel");
        assert_eq!(after_b.sessions.len(), 1);
        assert_eq!(after_b.sessions[0].peer_id, sid);
        assert!(pair.ends[0].tunnel_info(rec).is_none_or(|i| i.closing));
        // The recovered control channel works: a new session comes up.
        let now = pair.now;
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("new session");
        pair.run(Duration::from_secs(2));
        assert_eq!(pair.ends[1].tunnel_info(tb).expect("b").sessions.len(), 2, "{version:?}");
        assert_eq!(pair.sessions_up(0), 1);
    }
}

/// F-RT-12: control packets for the old tunnel before its reset are
/// discarded, not acknowledged.
#[test]
fn f_rt_12_old_tunnel_packets_before_the_reset_are_discarded() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let old = persisted(&pair, 0, t, params(version, None));
        crash(&mut pair, 0, 5);
        pair.blackhole = [true, false];
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old).expect("recover");
        pair.collect();
        let ignored = pair.ends[0].stats().ignored;
        // A HELLO on the old tunnel, from B.
        let hello = ControlMessage {
            header: ControlHeader { version, tunnel_id: t, session_id: 0, ns: 7, nr: 3 },
            message: Some(Message::new(MessageType::Hello, vec![])),
        }
        .encode(Transport::Udp, None)
        .expect("encode");
        pair.sent[0].clear();
        pair.inject(0, &hello);
        assert_eq!(pair.ends[0].stats().ignored, ignored + 1);
        assert!(pair.sent[0].is_empty(), "nothing, not even an ACK");
    }
}

/// F-RT-11: the recovery tunnel cannot be set up (the peer is gone): the
/// old tunnel and its sessions are cleared silently, no StopCCN, no CDN.
#[test]
fn f_rt_11_failed_recovery_clears_the_old_tunnel_silently() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let now = pair.now;
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        pair.run(Duration::from_secs(2));
        let old = persisted(&pair, 0, t, params(version, None));
        crash(&mut pair, 0, 6);
        pair.blackhole = [false, true];
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old).expect("recover");
        pair.run(Duration::from_secs(60));
        assert!(pair.events[0].iter().any(|e| matches!(
            e,
            Event::TunnelDown { tunnel, reason: DownReason::RecoveryFailed } if *tunnel == t
        )));
        assert!(pair.events[0]
            .iter()
            .any(|e| matches!(e, Event::SessionDown { reason: DownReason::RecoveryFailed, .. })));
        assert!(pair.dataplane[0].iter().any(|d| matches!(d, DataplaneUpdate::SessionDown { .. })));
        assert!(pair.ends[0].tunnel_info(t).is_none());
        let sent_on_old =
            decoded(&pair, 0, None).into_iter().filter(|c| c.header.tunnel_id == pair.tunnel_up(1)[0]).count();
        assert_eq!(sent_on_old, 0, "nothing sent on the old tunnel");
    }
}

/// F-RT-8: a recovery SCCRQ for an unknown tunnel, or for a tunnel whose
/// failover capability was not negotiated by both ends, is refused with
/// StopCCN; the recovering end then clears its old tunnel (F-RT-11); the
/// remote end's tunnel is untouched.
#[test]
fn f_rt_8_recovery_of_unknown_or_incapable_tunnels_is_refused_with_stopccn() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        // Incapable: B did not advertise failover; A's record claims it did.
        let no_fo = TunnelParams { failover: None, ..params(version, None) };
        let a = engine("lac", 1, None);
        let b = engine("lns", 2, Some(no_fo));
        let mut pair = Pair::new(a, b);
        let now = pair.now;
        let t = pair.ends[0].connect(now, addr(B), params(version, None)).expect("connect");
        pair.run(Duration::from_secs(2));
        let mut old = persisted(&pair, 0, t, params(version, None));
        assert!(old.peer_failover.is_none());
        // Refused locally (F-CAP-4) as it stands.
        assert!(engine("x", 3, None).recover_tunnel(pair.now, old.clone()).is_err());
        old.peer_failover = Some(FailoverCapability { control: true, data: true, recovery_time_ms: 0 });
        let mut unknown = old.clone();
        unknown.local_id ^= 0x5555;
        unknown.peer_id ^= 0x5555;
        for (case, old) in [("incapable", old), ("unknown", unknown)] {
            let seed = if case == "unknown" { 19 } else { 9 };
            let mut p2 = Pair::new(engine("lac", seed, None), engine("lns", 10, None));
            std::mem::swap(&mut p2.ends[1], &mut pair.ends[1]);
            let now = p2.now;
            let id = old.local_id;
            p2.ends[0].recover_tunnel(now, old).expect("recover");
            p2.run(Duration::from_secs(3));
            assert!(
                p2.events[0].iter().any(|e| matches!(
                    e,
                    Event::TunnelDown { tunnel, reason: DownReason::RecoveryFailed } if *tunnel == id
                )),
                "{case}: {:?}",
                p2.events[0]
            );
            let stop =
                decoded(&p2, 1, None).into_iter().filter_map(|c| c.message).any(|m| m.msg_type == MessageType::StopCcn);
            assert!(stop, "{case}: StopCCN");
            assert!(!has_down(&p2, 1), "{case}: {:?}", p2.events[1]);
            std::mem::swap(&mut p2.ends[1], &mut pair.ends[1]);
        }
    }
}

/// F-RT-10 / F-SEC-1: a recovery SCCRQ with the wrong secret (v3 message
/// digest) does not disturb the working tunnel, and the recovery fails.
#[test]
fn f_sec_1_recovery_with_the_wrong_secret_leaves_the_tunnel_alone() {
    let (mut pair, t) = establish(Version::V3, Some(b"right"));
    let tb = pair.tunnel_up(1)[0];
    let old = persisted(&pair, 0, t, params(Version::V3, Some(b"wrong")));
    crash(&mut pair, 0, 12);
    pair.events[1].clear();
    let now = pair.now;
    pair.ends[0].recover_tunnel(now, old).expect("recover");
    pair.run(Duration::from_secs(60));
    assert!(recovered(&pair, 1).is_empty());
    assert!(pair.ends[1].stats().auth_failures > 0);
    assert_eq!(pair.ends[1].tunnel_info(tb).map(|i| i.state), Some(TunnelStatus::Established));
    assert!(pair.events[0].iter().any(|e| matches!(e, Event::TunnelDown { reason: DownReason::RecoveryFailed, .. })));
}

/// F-SEC-2: a recovery SCCRQ from another address is refused unless that
/// address is configured as a recovery peer.
#[test]
fn f_sec_2_only_configured_recovery_peers_may_recover() {
    let (mut pair, t) = establish(Version::V3, None);
    let old = persisted(&pair, 0, t, params(Version::V3, None));
    crash(&mut pair, 0, 13);
    // The recovering end now speaks from another address.
    pair.addrs[0] = addr("198.18.0.9:1701");
    let now = pair.now;
    pair.ends[0].recover_tunnel(now, old).expect("recover");
    pair.run(Duration::from_secs(3));
    assert!(recovered(&pair, 1).is_empty());
    assert!(pair.events[1]
        .iter()
        .any(|e| matches!(e, Event::Rejected { what, .. } if what.contains("may not recover"))));
}

/// A tunnel (A's ID, B's ID) with one session; then both ends crash. Returns
/// what each end's store holds of the old tunnel.
fn both_crash(version: Version, seeds: (u64, u64)) -> (Pair, TunnelId, TunnelId, RestoredTunnel, RestoredTunnel) {
    let (mut pair, t) = establish(version, None);
    let now = pair.now;
    pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(2));
    let tb = pair.tunnel_up(1)[0];
    let old_a = persisted(&pair, 0, t, params(version, None));
    let old_b = persisted(&pair, 1, tb, params(version, None));
    crash(&mut pair, 0, seeds.0);
    crash(&mut pair, 1, seeds.1);
    (pair, t, tb, old_a, old_b)
}

/// Messages of one type sent by either end.
fn sent_count(pair: &Pair, t: MessageType) -> usize {
    [0, 1].iter().flat_map(|i| decoded(pair, *i, None)).filter_map(|c| c.message).filter(|m| m.msg_type == t).count()
}

/// Appendix B double failover (F-RT-6, F-RT-7): both ends restart and both
/// recover the same old tunnel at once; the tie breaker keeps one recovery
/// tunnel, its SCCRP decides Ns/Nr, the loser resets as the remote
/// endpoint; both keep the tunnel and its sessions.
#[test]
fn f_rt_6_f_rt_7_double_failover_keeps_one_recovery_tunnel() {
    for seeds in [(21, 22), (23, 24), (25, 26), (27, 28)] {
        let (mut pair, t, tb, old_a, old_b) = both_crash(Version::V3, seeds);
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old_a).expect("recover a");
        pair.ends[1].recover_tunnel(now, old_b).expect("recover b");
        pair.run(Duration::from_secs(5));
        let (ra, rb) = (recovered(&pair, 0), recovered(&pair, 1));
        assert_eq!((ra.len(), rb.len()), (1, 1), "{:?} / {:?}", pair.events[0], pair.events[1]);
        assert!(ra[0].1 != rb[0].1, "one recovery endpoint, one remote");
        assert_eq!((ra[0].2, ra[0].3), (rb[0].3, rb[0].2), "mirror image");
        assert_eq!((ra[0].4, rb[0].4), (1, 1));
        assert!(!has_down(&pair, 0) && !has_down(&pair, 1));
        // Exactly one recovery SCCRP was sent in total.
        assert_eq!(sent_count(&pair, MessageType::Sccrp), 1);
        let now = pair.now;
        pair.ends[1].open_session(now, tb, SessionParams::default()).expect("works");
        pair.run(Duration::from_secs(2));
        assert_eq!(pair.ends[0].tunnel_info(t).expect("a").sessions.len(), 2);
    }
}

/// F-SS-1: failure right after A sent its ICCN (lost): A has the session
/// established (and persisted), B still waits for the ICCN. At the reset B
/// clears it silently; the FSQ that follows the recovery (F-SS-2/3) gets
/// Session ID 0 back and A clears it silently too (F-SS-8): nothing is
/// established on one side only, and no CDN was sent. F-CC-4: new sessions
/// come up afterwards.
#[test]
fn f_ss_1_f_cc_4_failure_after_iccn_leaves_both_ends_agreeing() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let tb = pair.tunnel_up(1)[0];
        let now = pair.now;
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        pair.run(Duration::from_millis(7));
        pair.blackhole = [true, false];
        pair.run(Duration::from_millis(20));
        assert_eq!(pair.ends[1].tunnel_info(tb).expect("b").sessions[0].state, SessionStatus::WaitConnect);
        let old = persisted(&pair, 0, t, params(version, None));
        assert_eq!(old.sessions.len(), 1, "established at A");
        crash(&mut pair, 0, 31);
        pair.blackhole = [false, false];
        pair.events[1].clear();
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old).expect("recover");
        pair.run(Duration::from_secs(3));
        assert_eq!(recovered(&pair, 1).len(), 1);
        for i in [0, 1] {
            assert!(
                pair.events[i].iter().any(|e| matches!(e, Event::SessionDown { reason: DownReason::Cleared, .. })),
                "end {i}: {:?}",
                pair.events[i]
            );
        }
        assert!(pair.ends[1].tunnel_info(tb).expect("b").sessions.is_empty());
        assert!(pair.ends[0].tunnel_info(t).expect("a").sessions.is_empty());
        assert_eq!(sent_count(&pair, MessageType::Cdn), 0, "silently");
        let now = pair.now;
        pair.ends[0].open_session(now, t, SessionParams::default()).expect("new");
        pair.run(Duration::from_secs(2));
        assert_eq!(pair.sessions_up(0), 1);
    }
}

/// Failure right after A sent a CDN (lost) and forgot the session: B still
/// has it. B's FSQ after the recovery gets Session ID 0 and clears it.
#[test]
fn f_ss_8_failure_after_cdn_clears_the_remote_copy() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let tb = pair.tunnel_up(1)[0];
        let now = pair.now;
        let sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        pair.run(Duration::from_secs(1));
        pair.blackhole = [true, false];
        let now = pair.now;
        pair.ends[0].close_session(now, t, sid).expect("cdn");
        pair.run(Duration::from_millis(10));
        let old = persisted(&pair, 0, t, params(version, None));
        assert!(old.sessions.is_empty());
        assert_eq!(pair.ends[1].tunnel_info(tb).expect("b").sessions.len(), 1);
        crash(&mut pair, 0, 32);
        pair.blackhole = [false, false];
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old).expect("recover");
        pair.run(Duration::from_secs(3));
        assert!(pair.ends[1].tunnel_info(tb).expect("b").sessions.is_empty(), "{:?}", pair.events[1]);
        assert!(pair.events[1].iter().any(|e| matches!(e, Event::SessionDown { reason: DownReason::Cleared, .. })));
    }
}

/// F-DC-4: without data channel failover at both ends, the recovery
/// endpoint tears sequenced sessions down with CDN; others carry over.
#[test]
fn f_dc_4_sequenced_sessions_without_d_are_torn_down_by_the_recovery_endpoint() {
    let no_d = TunnelParams {
        failover: Some(FailoverCapability { control: true, data: false, recovery_time_ms: 1000 }),
        ..params(Version::V3, None)
    };
    let a = engine("lac", 1, None);
    let b = engine("lns", 2, Some(params(Version::V3, None)));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), no_d.clone()).expect("connect");
    pair.run(Duration::from_secs(2));
    let now = pair.now;
    let seq = SessionParams { sublayer: true, sequencing: true, ..SessionParams::default() };
    let s_seq = pair.ends[0].open_session(now, t, seq).expect("seq");
    let s_plain = pair.ends[0].open_session(now, t, SessionParams::default()).expect("plain");
    pair.run(Duration::from_secs(2));
    let old = persisted(&pair, 0, t, no_d);
    crash(&mut pair, 0, 41);
    let now = pair.now;
    pair.ends[0].recover_tunnel(now, old).expect("recover");
    pair.run(Duration::from_secs(3));
    let r = recovered(&pair, 0);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].4, 1, "only the unsequenced session carries over");
    let info = pair.ends[0].tunnel_info(t).expect("a");
    assert_eq!(info.sessions.iter().map(|s| s.local_id).collect::<Vec<_>>(), vec![s_plain]);
    assert!(pair.events[0].iter().any(|e| matches!(
        e,
        Event::SessionDown { local_session_id, reason: DownReason::Local(_), .. } if *local_session_id == s_seq
    )));
    let tb = pair.tunnel_up(1)[0];
    assert_eq!(pair.ends[1].tunnel_info(tb).expect("b").sessions.len(), 1, "B got the CDN");
}

/// F-SS-4: an ICRQ naming an established session's ID is answered with a
/// CDN for that session, which is cleared.
#[test]
fn f_ss_4_icrq_naming_an_established_session_is_answered_with_cdn() {
    // L2TPv2 and L2TPv3 alike.
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let now = pair.now;
        let sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        pair.run(Duration::from_secs(2));
        let tb = pair.tunnel_up(1)[0];
        let b_sid = pair.ends[1].tunnel_info(tb).expect("b").sessions[0].local_id;
        let (ns, nr) = next_from(&pair, 0);
        let icrq = ControlMessage {
            header: ControlHeader { version, tunnel_id: tb, session_id: 0, ns, nr },
            message: Some(Message::new(
                MessageType::Icrq,
                match version {
                    Version::V2 => vec![
                        Avp::new(version, AvpValue::AssignedSessionId(sid as u16)),
                        Avp::new(version, AvpValue::CallSerialNumber(9)),
                    ],
                    Version::V3 => vec![
                        Avp::new(version, AvpValue::LocalSessionId(sid)),
                        Avp::new(version, AvpValue::RemoteSessionId(0)),
                        Avp::new(version, AvpValue::CallSerialNumber(9)),
                        Avp::new(version, AvpValue::PwType(5)),
                        Avp::new(version, AvpValue::RemoteEndId(b"pw".to_vec())),
                        Avp::new(version, AvpValue::CircuitStatus { new: true, active: true }),
                    ],
                },
            )),
        }
        .encode(Transport::Udp, None)
        .expect("encode");
        pair.inject(1, &icrq);
        pair.run(Duration::from_secs(1));
        let cdn =
            decoded(&pair, 1, None).into_iter().filter_map(|c| c.message).find(|m| m.msg_type == MessageType::Cdn);
        let cdn = cdn.unwrap_or_else(|| panic!("CDN: {:?} {:?}", pair.events[1], pair.ends[1].stats()));
        let named = cdn.find(|a| match a {
            AvpValue::LocalSessionId(s) => Some(*s),
            AvpValue::AssignedSessionId(s) => Some(u32::from(*s)),
            _ => None,
        });
        assert_eq!(named, Some(b_sid), "{version:?}");
        assert!(pair.ends[1].tunnel_info(tb).expect("b").sessions.is_empty());
    }
}

/// The first SCCRQ an initiator sends, decoded.
fn an_sccrq(version: Version) -> (ControlHeader, Message) {
    let mut a = engine("lac", 41, None);
    a.connect(Instant::now(), addr(B), params(version, None)).expect("connect");
    let (_, _, bytes) = a.poll_transmit().expect("SCCRQ");
    let m = ControlMessage::decode(Transport::Udp, &bytes, None).expect("decodes");
    (m.header, m.message.expect("message"))
}

/// What `b` answers to `msg`: the StopCCN's header tunnel ID and its
/// result and error codes.
fn answer(b: &mut Engine, header: ControlHeader, msg: Message) -> Option<(u32, u16, Option<u16>)> {
    let bytes = ControlMessage { header, message: Some(msg) }.encode(Transport::Udp, None).expect("encode");
    b.handle_datagram(Instant::now(), addr(A), Transport::Udp, &bytes);
    let (to, _, reply) = b.poll_transmit()?;
    assert_eq!(to, addr(A));
    assert!(b.poll_transmit().is_none(), "one reply");
    let m = ControlMessage::decode(Transport::Udp, &reply, None).expect("reply decodes");
    assert_eq!((m.header.ns, m.header.nr), (0, 1), "the StopCCN acknowledges the SCCRQ");
    let msg = m.message.expect("a message");
    assert_eq!(msg.msg_type, MessageType::StopCcn);
    let rc = msg.find(|v| if let AvpValue::ResultCode(r) = v { Some((r.result, r.error)) } else { None })?;
    Some((m.header.tunnel_id, rc.0, rc.1))
}

fn peer_id(m: &Message) -> u32 {
    m.find(|v| match v {
        AvpValue::AssignedConnectionId(t) => Some(*t),
        AvpValue::AssignedTunnelId(t) => Some(u32::from(*t)),
        _ => None,
    })
    .expect("assigned ID")
}

#[test]
fn refused_sccrqs_are_answered_with_the_stopccn_of_the_fault_and_leave_no_state() {
    for v in [Version::V2, Version::V3] {
        let (header, sccrq) = an_sccrq(v);
        let peer = peer_id(&sccrq);
        let mut b = engine("lns", 42, Some(params(v, None)));
        // A required AVP missing (Host Name): result 2, error 3.
        let mut m = sccrq.clone();
        m.avps.retain(|a| !matches!(a.value, AvpValue::HostName(_)));
        assert_eq!(answer(&mut b, header, m), Some((peer, stopccn::GENERAL_ERROR, Some(3))), "{v:?}");
        // An unknown AVP with the M bit: result 2, error 8.
        let mut m = sccrq.clone();
        m.avps
            .push(Avp { flags: AvpFlags::MANDATORY, value: AvpValue::Unknown { vendor: 9, attr: 1, value: vec![1] } });
        assert_eq!(answer(&mut b, header, m), Some((peer, stopccn::GENERAL_ERROR, Some(8))), "{v:?}");
        // No Assigned ID: nobody to answer.
        let mut m = sccrq.clone();
        m.avps.retain(|a| !matches!(a.value, AvpValue::AssignedConnectionId(_) | AvpValue::AssignedTunnelId(_)));
        assert_eq!(answer(&mut b, header, m), None);
        assert!(b.tunnels().is_empty(), "{v:?}: a refusal keeps no state");
        // No tunnels accepted from this peer: result 4.
        let mut nobody = engine("lns", 43, None);
        assert_eq!(answer(&mut nobody, header, sccrq.clone()), Some((peer, stopccn::NOT_AUTHORIZED, None)));
        // Accepted, but in the other version: result 5.
        let other = if v == Version::V2 { Version::V3 } else { Version::V2 };
        let mut wrong = engine("lns", 44, Some(params(other, None)));
        assert_eq!(answer(&mut wrong, header, sccrq.clone()), Some((peer, stopccn::BAD_PROTOCOL_VERSION, None)));
        assert!(nobody.tunnels().is_empty() && wrong.tunnels().is_empty());
        // The undecodable one counts as malformed, the others as refused.
        assert_eq!(b.stats().refused + nobody.stats().refused + wrong.stats().refused, 4);
        assert_eq!(b.stats().malformed, 1);
    }
}

#[test]
fn per_tunnel_timers_hello_retransmission_and_window() {
    let fast = TunnelTimers {
        channel: ChannelConfig {
            retransmit_initial: Duration::from_millis(200),
            retransmit_cap: Duration::from_millis(400),
            max_retries: 2,
            ack_delay: Duration::from_millis(10),
            receive_window: 4,
        },
        hello_interval: Duration::from_secs(5),
    };
    let a = engine("lac", 61, None);
    let b = engine("lns", 62, Some(params(Version::V3, None)));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let quick = pair.ends[0]
        .connect(now, addr(B), TunnelParams { timers: Some(fast), ..params(Version::V3, None) })
        .expect("connect");
    let plain = pair.ends[0].connect(now, addr(B), params(Version::V3, None)).expect("connect");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.tunnel_up(0).len(), 2);
    // Each SCCRQ advertises its own tunnel's Receive Window Size.
    let rws: Vec<(u32, u16)> = pair.sent[0]
        .iter()
        .filter_map(|(_, b)| {
            let m = ControlMessage::decode(Transport::Udp, b, None).ok()?.message?;
            let w = m.find(|v| if let AvpValue::ReceiveWindowSize(w) = v { Some(*w) } else { None })?;
            let id = m.find(|v| if let AvpValue::AssignedConnectionId(t) = v { Some(*t) } else { None })?;
            (m.msg_type == MessageType::Sccrq).then_some((id, w))
        })
        .collect();
    assert!(rws.contains(&(quick, 4)) && rws.contains(&(plain, 16)), "{rws:?}");
    // HELLO after 5 s idle on one, after 60 s on the other.
    let to = |t: TunnelId| pair.ends[0].tunnel_info(t).expect("info").peer_id;
    let (quick_peer, plain_peer) = (to(quick), to(plain));
    let start = pair.sent[0].len();
    pair.run(Duration::from_secs(21));
    let hellos = |pair: &Pair, tid: u32| {
        pair.sent[0][start..]
            .iter()
            .filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, None).ok())
            .filter(|m| {
                m.header.tunnel_id == tid && m.message.as_ref().is_some_and(|m| m.msg_type == MessageType::Hello)
            })
            .count()
    };
    assert!(hellos(&pair, quick_peer) >= 3, "{}", hellos(&pair, quick_peer));
    assert_eq!(hellos(&pair, plain_peer), 0);
    // The peer goes silent: the quick tunnel's channel gives up after its
    // own two retransmissions (200 + 400 + 400 ms, plus the HELLO wait),
    // the other still waits.
    pair.blackhole[1] = true;
    pair.run(Duration::from_secs(8));
    let down: Vec<TunnelId> = pair.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::TunnelDown { tunnel, reason: DownReason::Timeout } => Some(*tunnel),
            _ => None,
        })
        .collect();
    assert_eq!(down, vec![quick]);
    assert!(pair.ends[0].tunnels().iter().any(|(t, _)| *t == plain));
}

/// F-RT-6/F-RT-7, in both versions: a double failover (both ends recover
/// the same old tunnel) while the two ends also open an ordinary tunnel to
/// each other at the same moment. Each tie is broken on its own: exactly
/// one recovery tunnel survives and recovers the old tunnel, exactly one
/// ordinary tunnel survives, and neither tie touches the other.
#[test]
fn f_rt_7_recovery_and_ordinary_ties_are_broken_separately_v2_and_v3() {
    for version in [Version::V2, Version::V3] {
        for seeds in [(31, 32), (33, 34), (35, 36)] {
            let (mut pair, t, _, old_a, old_b) = both_crash(version, seeds);
            // Both ends now also accept ordinary tunnels from each other.
            pair.ends[0] = engine("lac", seeds.0 + 100, Some(params(version, None)));
            pair.ends[1] = engine("lns", seeds.1 + 100, Some(params(version, None)));
            let now = pair.now;
            pair.ends[0].recover_tunnel(now, old_a).expect("recover a");
            pair.ends[1].recover_tunnel(now, old_b).expect("recover b");
            pair.ends[0].connect(now, addr(B), params(version, None)).expect("ordinary a");
            pair.ends[1].connect(now, addr(A), params(version, None)).expect("ordinary b");
            pair.run(Duration::from_secs(5));
            let (ra, rb) = (recovered(&pair, 0), recovered(&pair, 1));
            assert_eq!((ra.len(), rb.len()), (1, 1), "{version:?}: {:?} / {:?}", pair.events[0], pair.events[1]);
            assert!(ra[0].1 != rb[0].1, "{version:?}: one recovery endpoint, one remote");
            assert_eq!((ra[0].4, rb[0].4), (1, 1), "{version:?}: the session carried over");
            let lost = pair
                .events
                .iter()
                .flatten()
                .filter(|e| matches!(e, Event::TunnelDown { reason: DownReason::LostTie, .. }))
                .count();
            assert_eq!(lost, 1, "{version:?}: one ordinary tunnel lost its tie");
            // Each end: the recovered tunnel and one ordinary tunnel.
            assert_eq!(pair.ends[0].tunnels().len(), 2, "{version:?}: {:?}", pair.ends[0].tunnels());
            assert_eq!(pair.ends[1].tunnels().len(), 2, "{version:?}");
            assert!(pair.ends[0].tunnels().iter().any(|(id, s)| *id == t && s.len() == 1), "{version:?}");
        }
    }
}
