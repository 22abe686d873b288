//! Interop with a real L2TPv2 peer, Debian's xl2tpd, over network
//! namespaces: our engine as LAC against xl2tpd as LNS, and xl2tpd as LAC
//! against our engine as LNS. Tunnel authentication (challenge/response)
//! and hidden AVPs on both sides, our Failover Capability AVP in the SCCRQ
//! and SCCRP (M=0, RFC 4951 W-8: a peer that does not know it ignores it),
//! HELLO, a session up and down, StopCCN.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use l2tp_proto::{
    engine::{
        DataplaneUpdate, DownReason, Engine, EngineConfig, Event, FailoverCapability, SessionParams, SessionUp,
        TunnelParams,
    },
    wire::{ControlMessage, MessageType, Transport, Version},
};
use l2tp_tests::{
    xl2tpd::{Role, Xl2tpd},
    NetNs,
};
use rand::{rngs::StdRng, SeedableRng};

const SECRET: &str = "interop-secret";
const OURS: &str = "198.18.0.1";
const THEIRS: &str = "198.18.0.2";

fn params() -> TunnelParams {
    TunnelParams {
        version: Version::V2,
        transport: Transport::Udp,
        secret: Some(SECRET.as_bytes().to_vec()),
        hide_avps: true,
        failover: Some(FailoverCapability { control: true, data: true, recovery_time_ms: 2000 }),
        pw_types: vec![],
        pseudowires: vec![],
        recovery_peers: vec![],
        timers: None,
    }
}

/// Drives the engine over a real UDP socket until `done` says so or the
/// time is up; returns every event seen.
struct Driver {
    engine: Engine,
    sock: UdpSocket,
    events: Vec<Event>,
    dataplane: Vec<DataplaneUpdate>,
    /// Types of the control messages the peer sent (ZLBs not included).
    received: Vec<MessageType>,
}

impl Driver {
    fn new(accept: Option<TunnelParams>) -> Self {
        Self::with_hello(accept, Duration::from_secs(1))
    }

    fn with_hello(accept: Option<TunnelParams>, hello_interval: Duration) -> Self {
        let cfg = EngineConfig { host_name: "l2tp-ours".into(), hello_interval, accept, ..EngineConfig::default() };
        let sock = UdpSocket::bind(format!("{OURS}:1701")).expect("bind 1701");
        Self {
            engine: Engine::new(cfg, Box::new(StdRng::seed_from_u64(42))),
            sock,
            events: Vec::new(),
            dataplane: Vec::new(),
            received: Vec::new(),
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            while let Some((to, _, bytes)) = self.engine.poll_transmit() {
                self.sock.send_to(&bytes, to).expect("send");
            }
            while let Some(e) = self.engine.poll_event() {
                self.events.push(e);
            }
            while let Some(d) = self.engine.poll_dataplane() {
                self.dataplane.push(d);
            }
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wake = self.engine.poll_timeout().unwrap_or(deadline).min(deadline);
            let wait =
                wake.saturating_duration_since(now).max(Duration::from_millis(1)).min(Duration::from_millis(100));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let secret = Some(SECRET.as_bytes());
                    if let Some(m) =
                        ControlMessage::decode(Transport::Udp, &buf[..n], secret).ok().and_then(|m| m.message)
                    {
                        self.received.push(m.msg_type);
                    }
                    self.engine.handle_datagram(Instant::now(), from, Transport::Udp, &buf[..n]);
                }
                Err(_) => self.engine.handle_timeout(Instant::now()),
            }
            self.engine.handle_timeout(Instant::now());
        }
    }

    fn up(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::TunnelUp { .. }))
    }
}

fn peer() -> SocketAddr {
    format!("{THEIRS}:1701").parse().expect("addr")
}

fn namespaces() -> (NetNs, NetNs) {
    let ours = NetNs::new("ours").expect("netns");
    let theirs = NetNs::new("xl2tpd").expect("netns");
    ours.veth("up0", &theirs, "up0").expect("veth");
    ours.addr("up0", &format!("{OURS}/24")).expect("addr");
    theirs.addr("up0", &format!("{THEIRS}/24")).expect("addr");
    (ours, theirs)
}

#[test]
#[ignore = "privileged: needs root, network namespaces and xl2tpd; run by `cargo xtask test`"]
fn our_lac_against_xl2tpd_lns() {
    let (ours, theirs) = namespaces();
    let xl2tpd = Xl2tpd::start(&theirs, THEIRS, "xl2tpd-lns", "l2tp-ours", SECRET, Role::Lns).expect("xl2tpd");
    let log = || xl2tpd.log();
    ours.enter(|| {
        let mut d = Driver::new(None);
        let now = Instant::now();
        let t = d.engine.connect(now, peer(), params()).expect("connect");
        assert!(d.run_until(Duration::from_secs(10), Driver::up), "tunnel up: {:?}\n{}", d.events, log());
        let sid = d.engine.open_session(Instant::now(), t, SessionParams::default()).expect("session");
        assert!(
            d.run_until(Duration::from_secs(10), |d| d
                .dataplane
                .iter()
                .any(|u| matches!(u, DataplaneUpdate::SessionUp(SessionUp { .. })))),
            "session up: {:?}\n{}",
            d.events,
            log()
        );
        // HELLOs (every idle second here) are acknowledged: the tunnel
        // stays up well past several retransmission timeouts.
        assert!(
            !d.run_until(Duration::from_secs(4), |d| d.events.iter().any(|e| matches!(e, Event::TunnelDown { .. })))
        );
        d.engine.close_session(Instant::now(), t, sid).expect("cdn");
        d.engine.close_tunnel(Instant::now(), t).expect("stopccn");
        // Everything we sent was acknowledged (no retransmission timeout).
        d.run_until(Duration::from_secs(3), |_| false);
        assert!(
            !d.events.iter().any(|e| matches!(e, Event::TunnelDown { reason: DownReason::Timeout, .. })),
            "{:?}",
            d.events
        );
        assert_eq!(d.engine.stats().malformed, 0);
        assert_eq!(d.engine.stats().auth_failures, 0);
    })
    .expect("enter");
    let log = xl2tpd.log();
    for want in
        ["Connection established to 198.18.0.1", "Call established with 198.18.0.1", "Connection closed to 198.18.0.1"]
    {
        assert!(log.contains(want), "xl2tpd log lacks {want:?}:\n{log}");
    }
    for bad in ["bad packet", "Invalid", "out of order"] {
        assert!(!log.contains(bad), "xl2tpd complained ({bad}):\n{log}");
    }
}

#[test]
#[ignore = "privileged: needs root, network namespaces and xl2tpd; run by `cargo xtask test`"]
fn xl2tpd_lac_against_our_lns() {
    let (ours, theirs) = namespaces();
    ours.enter(|| {
        let mut d = Driver::new(Some(params()));
        let xl2tpd = Xl2tpd::start(&theirs, THEIRS, "xl2tpd-lac", "l2tp-ours", SECRET, Role::Lac { lns: OURS.into() })
            .expect("xl2tpd");
        assert!(d.run_until(Duration::from_secs(10), Driver::up), "tunnel up: {:?}\n{}", d.events, xl2tpd.log());
        assert!(
            d.run_until(Duration::from_secs(10), |d| d
                .dataplane
                .iter()
                .any(|u| matches!(u, DataplaneUpdate::SessionUp(SessionUp { .. })))),
            "session up: {:?}\n{}",
            d.events,
            xl2tpd.log()
        );
        assert!(
            !d.run_until(Duration::from_secs(3), |d| d.events.iter().any(|e| matches!(e, Event::TunnelDown { .. })))
        );
        // xl2tpd drops the tunnel: StopCCN reaches us.
        xl2tpd.control("d peer").expect("control");
        assert!(
            d.run_until(Duration::from_secs(10), |d| d
                .events
                .iter()
                .any(|e| matches!(e, Event::TunnelDown { reason: DownReason::Peer(_), .. }))),
            "StopCCN from xl2tpd: {:?}\n{}",
            d.events,
            xl2tpd.log()
        );
        assert!(d.dataplane.iter().any(|u| matches!(u, DataplaneUpdate::SessionDown { .. })));
        assert_eq!(d.engine.stats().malformed, 0);
    })
    .expect("enter");
}

#[test]
#[ignore = "privileged: needs root, network namespaces and xl2tpd; run by `cargo xtask test`"]
fn xl2tpd_hello_is_acknowledged_and_keeps_the_tunnel() {
    // xl2tpd sends a HELLO every 60 s whatever the traffic; ours are off
    // (longer than the test) so that its HELLO is what keeps the channel
    // busy, and our acknowledgement is what it waits for.
    let (ours, theirs) = namespaces();
    ours.enter(|| {
        let mut d = Driver::with_hello(Some(params()), Duration::from_secs(600));
        let xl2tpd = Xl2tpd::start(&theirs, THEIRS, "xl2tpd-lac", "l2tp-ours", SECRET, Role::Lac { lns: OURS.into() })
            .expect("xl2tpd");
        assert!(d.run_until(Duration::from_secs(10), Driver::up), "tunnel up: {:?}\n{}", d.events, xl2tpd.log());
        let hello = |d: &Driver| d.received.iter().filter(|t| **t == MessageType::Hello).count();
        assert!(d.run_until(Duration::from_secs(75), |d| hello(d) >= 1), "no HELLO from xl2tpd\n{}", xl2tpd.log());
        // Acknowledged: xl2tpd neither retransmits it nor gives up on us.
        d.run_until(Duration::from_secs(5), |_| false);
        assert_eq!(hello(&d), 1, "xl2tpd retransmitted its HELLO: {:?}", d.received);
        assert!(!d.events.iter().any(|e| matches!(e, Event::TunnelDown { .. })), "{:?}", d.events);
        let log = xl2tpd.log();
        for bad in ["bad packet", "Invalid", "out of order", "Maximum retries exceeded"] {
            assert!(!log.contains(bad), "xl2tpd complained ({bad}):\n{log}");
        }
        assert_eq!(d.engine.stats().malformed, 0);
    })
    .expect("enter");
}
