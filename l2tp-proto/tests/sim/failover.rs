//! RFC 4951 failover: capability, recovery tunnel, channel resets, FSQ/FSR;
//! named after the requirement IDs of rfc4951-requirements.md.

use crate::harness::*;

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
        // A's post-reset FSQ answered by B: its one session, listed as
        // sequenced when it carries sequence numbers (the daemon resyncs
        // exactly those).
        let seq = pair.ends[1].tunnel_info(tb).expect("b").sessions[0].sequencing;
        let queried: Vec<(Vec<u32>, Vec<u32>)> = pair.events[1]
            .iter()
            .filter_map(|e| match e {
                Event::SessionsQueried { sessions, sequenced, .. } => Some((sessions.clone(), sequenced.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(queried.len(), 1, "{version:?}: {queried:?}");
        let want: Vec<u32> = if seq { queried[0].0.clone() } else { Vec::new() };
        assert_eq!(queried[0].1, want, "{version:?}: sequenced {seq}");
        assert!(seq || version == Version::V2, "the L2TPv3 session negotiated sequencing");
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

/// Defect 3 / F-RT-8: an L2TPv3 recovery SCCRQ whose Tunnel Recovery AVP
/// names an L2TPv2 tunnel is refused in the version and on the connection
/// of the SCCRQ (an L2TPv3 StopCCN to its Assigned Connection ID, even one
/// that does not fit 16 bits); the L2TPv2 tunnel is untouched.
#[test]
fn f_rt_8_recovery_naming_a_tunnel_of_another_version_is_refused_in_the_sccrqs_version() {
    let (mut pair, t) = establish(Version::V2, None);
    let (tb, _) = pair.ends[1].tunnels()[0];
    let (header, mut m) = an_sccrq(Version::V3);
    m.avps.retain(|a| !matches!(a.value, AvpValue::FailoverCapability { .. } | AvpValue::AssignedConnectionId(_)));
    m.avps.push(Avp::new(Version::V3, AvpValue::AssignedConnectionId(0x1234_5678)));
    m.avps.push(Avp::new(Version::V3, AvpValue::TunnelRecovery { recover_tunnel_id: t, recover_remote_tunnel_id: tb }));
    let bytes = ControlMessage { header, message: Some(m) }.encode(Transport::Udp, None).expect("encode");
    let from = pair.sent[1].len();
    pair.inject(1, &bytes);
    let stop = pair.sent[1][from..]
        .iter()
        .filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, None).ok())
        .find(|c| c.message.as_ref().is_some_and(|m| m.msg_type == MessageType::StopCcn))
        .expect("a StopCCN");
    assert_eq!((stop.header.version, stop.header.tunnel_id), (Version::V3, 0x1234_5678));
    assert_eq!((stop.header.ns, stop.header.nr), (0, 1), "acknowledges the SCCRQ");
    pair.run(Duration::from_secs(1));
    assert!(!has_down(&pair, 1), "{:?}", pair.events[1]);
    assert_eq!(pair.ends[1].tunnel_info(tb).map(|i| i.state), Some(TunnelStatus::Established));
}

/// Defect 7 / RFC 3931 4.3: the StopCCN that refuses a recovery SCCRQ on an
/// authenticated tunnel carries a Message Digest the recovering end can
/// verify (our nonce was never sent, so none is used: an empty local
/// nonce and the SCCRQ's), and the recovering end acts on it at once
/// (F-RT-11) instead of waiting for its control channel to time out.
#[test]
fn f_rt_8_refusal_of_an_authenticated_recovery_sccrq_is_signed_verifiably_and_ends_the_recovery() {
    use l2tp_proto::wire::auth::{cma_key, verify};
    let secret: &[u8] = b"s3cret";
    let no_fo = TunnelParams { failover: None, ..params(Version::V3, Some(secret)) };
    let mut pair = Pair::new(engine("lac", 1, None), engine("lns", 2, Some(no_fo)));
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), params(Version::V3, Some(secret))).expect("connect");
    pair.run(Duration::from_secs(2));
    let mut old = persisted(&pair, 0, t, params(Version::V3, Some(secret)));
    // A's record claims B advertised failover: B refuses (F-RT-8).
    old.peer_failover = Some(FailoverCapability { control: true, data: true, recovery_time_ms: 0 });
    crash(&mut pair, 0, 9);
    let now = pair.now;
    pair.ends[0].recover_tunnel(now, old).expect("recover");
    pair.run(Duration::from_millis(500));
    let nonce = decoded(&pair, 0, None)
        .into_iter()
        .filter_map(|c| c.message)
        .find(|m| m.msg_type == MessageType::Sccrq)
        .and_then(|m| m.find(|v| if let AvpValue::ControlAuthNonce(n) = v { Some(n.clone()) } else { None }))
        .expect("the recovery SCCRQ's nonce");
    let stop = pair.sent[1]
        .iter()
        .find(|(_, b)| {
            ControlMessage::decode(Transport::Udp, b, None)
                .ok()
                .and_then(|c| c.message)
                .is_some_and(|m| m.msg_type == MessageType::StopCcn)
        })
        .expect("StopCCN")
        .1
        .clone();
    assert!(verify(Transport::Udp, &stop, &cma_key(secret), Some((&[], &nonce))), "the digest does not verify");
    assert!(
        pair.events[0]
            .iter()
            .any(|e| matches!(e, Event::TunnelDown { tunnel, reason: DownReason::RecoveryFailed } if *tunnel == t)),
        "{:?}",
        pair.events[0]
    );
}

/// Defect 4 / F-SS-6, Appendix C: a session that an FSQ paired with another
/// peer Session ID is marked stale and, some time later, queried with an
/// FSQ of its own; a non-zero answer confirms it (F-SS-8).
#[test]
fn f_ss_6_a_session_marked_stale_is_queried_later_with_its_own_fsq() {
    let (mut pair, t) = establish(Version::V3, None);
    let now = pair.now;
    let a_sid = pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
    pair.run(Duration::from_secs(1));
    let (b_tid, b_sessions) = pair.ends[1].tunnels()[0].clone();
    let b_sid = b_sessions[0];
    // An FSQ "from A" that pairs B's session with another ID. A's own next
    // message (an SLI, dropped) takes the same Ns, so both channels stay in
    // step.
    let (ns, nr) = next_from(&pair, 0);
    pair.blackhole = [true, false];
    let now = pair.now;
    pair.ends[0].set_circuit_status(now, t, a_sid, true).expect("SLI");
    pair.collect();
    pair.blackhole = [false, false];
    let q = ControlMessage {
        header: ControlHeader { version: Version::V3, tunnel_id: b_tid, session_id: 0, ns, nr },
        message: Some(Message::new(MessageType::Fsq, vec![fss(0xdead, b_sid)])),
    };
    let from = pair.sent[1].len();
    pair.inject(1, &q.encode(Transport::Udp, None).expect("encode"));
    pair.run(Duration::from_millis(100));
    assert_eq!(pair.ends[1].stale_sessions(b_tid), vec![b_sid], "marked stale, not cleared");
    pair.run(Duration::from_secs(3));
    let own: Vec<(u32, u32)> = pair.sent[1][from..]
        .iter()
        .filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, None).ok()?.message)
        .filter(|m| m.msg_type == MessageType::Fsq)
        .flat_map(|m| m.avps)
        .filter_map(|a| match a.value {
            AvpValue::FailoverSessionState { session_id, remote_session_id } => Some((session_id, remote_session_id)),
            _ => None,
        })
        .collect();
    assert_eq!(own, vec![(b_sid, a_sid)], "B queried its stale session once");
    assert!(pair.ends[1].stale_sessions(b_tid).is_empty(), "A's FSR confirmed it");
    assert!(pair.events[1]
        .iter()
        .any(|e| matches!(e, Event::SessionConfirmed { local_session_id, .. } if *local_session_id == b_sid)));
    assert!(!has_down(&pair, 0) && !has_down(&pair, 1));
}
