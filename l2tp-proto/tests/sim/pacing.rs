//! Pacing of the reliable channel over a fast network: no exchange waits
//! for a delayed acknowledgement while both ends have something to send.

use crate::harness::*;

/// Steps the simulation 1 ms at a time until `done` holds (at most `cap`);
/// the simulated time it took.
fn until(pair: &mut Pair, cap: Duration, done: impl Fn(&Pair) -> bool) -> Duration {
    let start = pair.now;
    while !done(pair) {
        assert!(pair.now - start < cap, "not done after {cap:?}");
        pair.run(Duration::from_millis(1));
    }
    pair.now - start
}

fn confirmed(pair: &Pair, i: usize) -> usize {
    pair.events[i].iter().filter(|e| matches!(e, Event::SessionConfirmed { .. })).count()
}

/// RFC 4951 3.3 after a control channel reset (F-CC-1, F-SS-2/F-SS-3):
/// both ends query every carried-over session at once, each starting from
/// a window of one. The FSR each owes the other waits behind its own FSQ;
/// if the acknowledgement of the peer's FSQ also waited for the ack delay,
/// every round trip of the exchange would take that long. With a 1 ms
/// network, 100 sessions (two FSQ batches each way) are confirmed at both
/// ends in less than one ack delay.
#[test]
fn f_ss_2_3_session_queries_after_a_reset_never_wait_for_a_delayed_ack() {
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        let now = pair.now;
        for _ in 0..100 {
            pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        }
        pair.run(Duration::from_secs(3));
        let old = persisted(&pair, 0, t, params(version, None));
        assert_eq!(old.sessions.len(), 100);
        crash(&mut pair, 0, 99);
        pair.events[1].clear();
        pair.delay = Duration::from_millis(1);
        let now = pair.now;
        pair.ends[0].recover_tunnel(now, old).expect("recover");
        let took = until(&mut pair, Duration::from_secs(5), |p| confirmed(p, 0) == 100 && confirmed(p, 1) == 100);
        let ack_delay = ChannelConfig::default().ack_delay;
        assert!(took < ack_delay, "{version:?}: 100 sessions confirmed after {took:?}, ack delay {ack_delay:?}");
        assert!(!has_down(&pair, 0) && !has_down(&pair, 1));
        // What `status` and `failover status` report, without copying the
        // sessions, agrees with the full view.
        for end in &pair.ends {
            for (id, sum) in end.tunnel_summaries().filter(|(_, s)| s.state == TunnelStatus::Established) {
                let info = end.tunnel_info(id).expect("info");
                assert_eq!(sum.sessions, info.sessions.len());
                assert_eq!(sum.established, 100);
                assert_eq!(sum.unconfirmed, info.sessions.iter().filter(|s| s.unconfirmed).count());
                assert_eq!(sum.unconfirmed, 0, "every session confirmed");
                assert_eq!((sum.local_failover, sum.peer_failover), (info.local_failover, info.peer_failover));
            }
        }
    }
}

/// The same for a burst of session setups on one tunnel: the LAC's ICRQs
/// and ICCNs and the LNS's ICRPs keep both windows moving.
#[test]
fn a_burst_of_session_setups_never_waits_for_a_delayed_ack() {
    for version in [Version::V2, Version::V3] {
        let (mut pair, t) = establish(version, None);
        pair.delay = Duration::from_millis(1);
        let now = pair.now;
        for _ in 0..100 {
            pair.ends[0].open_session(now, t, SessionParams::default()).expect("session");
        }
        let took = until(&mut pair, Duration::from_secs(5), |p| p.sessions_up(0) == 100 && p.sessions_up(1) == 100);
        let ack_delay = ChannelConfig::default().ack_delay;
        assert!(took < ack_delay, "{version:?}: 100 sessions up after {took:?}, ack delay {ack_delay:?}");
    }
}
