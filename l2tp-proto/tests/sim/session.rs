//! Sessions: incoming and outgoing calls, pseudowire parameters, link
//! info.

use crate::harness::*;

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
        DataplaneUpdate::SessionUp(SessionUp {
            local_session_id: la,
            peer_session_id: pa,
            rx_cookie: rca,
            tx_cookie: tca,
            rx_sequencing: rsa,
            ..
        }),
        DataplaneUpdate::SessionUp(SessionUp {
            local_session_id: lb,
            peer_session_id: pb,
            rx_cookie: rcb,
            tx_cookie: tcb,
            tx_sequencing: tsb,
            ..
        }),
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
    let DataplaneUpdate::SessionUp(SessionUp {
        remote_end_id, rx_cookie, tx_cookie, rx_sequencing, tx_sequencing, ..
    }) = &pair.dataplane[1][0]
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

/// Issue 14, synchronous replication to a standby: the message that lets
/// the peer consider a session established (the ICRP of the end the call
/// is placed to, the ICCN of the end that places it) is held until the
/// daemon reports the session replicated; the session replicated is the
/// one that comes up.
#[test]
fn synchronous_replication_holds_the_icrp_or_the_iccn_until_the_session_is_replicated() {
    for (holder, held) in [(1usize, MessageType::Icrp), (0, MessageType::Iccn)] {
        let end = |name: &str, seed, accept, hold_for_replication| {
            let cfg = EngineConfig { host_name: name.into(), accept, hold_for_replication, ..EngineConfig::default() };
            Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
        };
        let a = end("lac", 1, None, holder == 0);
        let b = end("lns", 2, Some(params(Version::V3, None)), holder == 1);
        let mut pair = Pair::new(a, b);
        let now = pair.now;
        let t = pair.ends[0].connect(now, addr(B), params(Version::V3, None)).expect("connect");
        pair.run(Duration::from_secs(1));
        let now = pair.now;
        let p = SessionParams { cookie_len: 8, sequencing: true, ..SessionParams::default() };
        pair.ends[0].open_session(now, t, p).expect("session");
        pair.run(Duration::from_secs(3));
        assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (0, 0), "{held:?} held: nothing is up");
        let sent_held = |pair: &Pair| {
            decoded(pair, holder, None).iter().any(|c| c.message.as_ref().is_some_and(|m| m.msg_type == held))
        };
        assert!(!sent_held(&pair), "{held:?} was sent before the session was replicated");
        let (tunnel, session) = pair.events[holder]
            .iter()
            .find_map(|e| match e {
                Event::SessionToReplicate { tunnel, session } => Some((*tunnel, session.clone())),
                _ => None,
            })
            .expect("the session to replicate");
        let now = pair.now;
        pair.ends[holder].session_replicated(now, tunnel, session.local_id).expect("replicated");
        assert!(pair.ends[holder].session_replicated(now, tunnel, session.local_id).is_err(), "released once");
        pair.run(Duration::from_secs(2));
        assert!(sent_held(&pair));
        assert_eq!((pair.sessions_up(0), pair.sessions_up(1)), (1, 1), "{held:?}");
        let up = pair.dataplane[holder]
            .iter()
            .find_map(|d| match d {
                DataplaneUpdate::SessionUp(SessionUp {
                    local_session_id,
                    peer_session_id,
                    rx_cookie,
                    tx_cookie,
                    ..
                }) => Some((*local_session_id, *peer_session_id, rx_cookie.clone(), tx_cookie.clone())),
                _ => None,
            })
            .expect("up");
        assert_eq!(up, (session.local_id, session.peer_id, session.rx_cookie, session.tx_cookie));
    }
}
