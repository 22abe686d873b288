//! Tunnels: establishment, authentication, the reliable channel, limits,
//! teardown.

use crate::harness::*;

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
        DataplaneUpdate::SessionUp(SessionUp { local_session_id, peer_session_id, version, .. }) => {
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
        pair.inject(1, &v2_sccrq(100 + ns));
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

/// Defect 5: the configured retransmission cap is honoured on L2TPv3
/// (RFC 3931 4.2: "SHOULD be no less than 8 seconds"), not raised to 8 s;
/// on L2TPv2 RFC 2661 5.8's "MUST be no less than 8 seconds" holds.
#[test]
fn retransmission_cap_below_8_s_is_honoured_on_v3_and_raised_on_v2() {
    for (version, want) in [(Version::V3, vec![1, 2, 2, 2, 2]), (Version::V2, vec![1, 2, 4, 8, 8])] {
        let timers = TunnelTimers {
            channel: ChannelConfig { retransmit_cap: Duration::from_secs(2), ..ChannelConfig::default() },
            hello_interval: Duration::from_secs(60),
        };
        let p = TunnelParams { timers: Some(timers), ..params(version, None) };
        let mut pair = Pair::new(engine("lac", 1, None), engine("lns", 2, Some(params(version, None))));
        let now = pair.now;
        pair.ends[0].connect(now, addr(B), p).expect("connect");
        pair.blackhole = [false, true];
        pair.run(Duration::from_secs(60));
        let times: Vec<Instant> = pair.sent[0].iter().map(|(t, _)| *t).collect();
        let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps, want, "{version:?}");
    }
}

/// Defect 6: `max_half_open_per_peer` counts per address, whatever the
/// source port.
#[test]
fn half_open_tunnels_are_counted_per_peer_address_not_per_port() {
    let cfg = EngineConfig {
        host_name: "lns".into(),
        accept: Some(params(Version::V2, None)),
        max_half_open_per_peer: 16,
        ..EngineConfig::default()
    };
    let mut b = Engine::new(cfg, Box::new(StdRng::seed_from_u64(5)));
    let now = Instant::now();
    for port in 0..64u16 {
        let from = SocketAddr::new(addr(A).ip(), 20_000 + port);
        b.handle_datagram(now, from, Transport::Udp, &v2_sccrq(100 + port));
    }
    assert_eq!(b.tunnel_infos().len(), 16, "half-open tunnels of one address");
    assert_eq!(b.stats().refused, 48);
}

/// Per-tunnel counters (for the per-tunnel metrics): messages in and out,
/// retransmissions, authentication failures of this tunnel only.
#[test]
fn tunnel_info_counts_each_tunnels_messages_retransmissions_and_auth_failures() {
    let (mut pair, _) = establish(Version::V3, Some(b"v3-secret"));
    let (tb, _) = pair.ends[1].tunnels()[0];
    let before = pair.ends[1].tunnel_info(tb).expect("tunnel");
    assert!(before.channel.received >= 2 && before.channel.sent >= 1, "{:?}", before.channel);
    assert_eq!(before.auth_failures, 0);
    let mut tampered = pair.sent[0].last().expect("sent").1.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    pair.inject(1, &tampered);
    assert_eq!(pair.ends[1].tunnel_info(tb).expect("tunnel").auth_failures, 1);
    // B goes on sending into a void: its HELLO is retransmitted.
    pair.blackhole = [true, false];
    pair.run(Duration::from_secs(80));
    let after = pair.ends[1].tunnel_info(tb).map(|i| i.channel.retransmitted).unwrap_or(0);
    assert!(after >= 2, "retransmissions counted: {after}");
}
