//! The simulated network shared by the scenarios: two engines, a lossy
//! reordering network and a simulated clock, and helpers.
#![allow(dead_code, unused_imports)]

pub use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

pub use l2tp_proto::{
    channel::ChannelConfig,
    engine::{
        DataplaneUpdate, DownReason, Engine, EngineConfig, Event, FailoverCapability, RestoredSession, RestoredTunnel,
        SessionParams, SessionStatus, SessionUp, TunnelId, TunnelParams, TunnelStatus, TunnelTimers,
    },
    wire::{
        avp::AvpFlags, types::stopccn, Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Transport,
        Version,
    },
};
pub use rand::{rngs::StdRng, Rng, SeedableRng};

pub const A: &str = "198.18.0.1:1701";

pub const B: &str = "198.18.0.2:1701";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

pub fn params(version: Version, secret: Option<&[u8]>) -> TunnelParams {
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

pub fn engine(name: &str, seed: u64, accept: Option<TunnelParams>) -> Engine {
    let cfg = EngineConfig { host_name: name.into(), accept, ..EngineConfig::default() };
    Engine::new(cfg, Box::new(StdRng::seed_from_u64(seed)))
}

pub struct Packet {
    pub at: Instant,
    pub to: usize,
    pub from: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// Two endpoints and the network between them.
pub struct Pair {
    pub now: Instant,
    pub ends: [Engine; 2],
    pub addrs: [SocketAddr; 2],
    pub in_flight: Vec<Packet>,
    pub rng: StdRng,
    pub loss: f64,
    pub delay: Duration,
    pub jitter: Duration,
    /// Drop everything sent by end `i` while set.
    pub blackhole: [bool; 2],
    pub events: [Vec<Event>; 2],
    pub dataplane: [Vec<DataplaneUpdate>; 2],
    pub sent: [Vec<(Instant, Vec<u8>)>; 2],
}

impl Pair {
    pub fn new(a: Engine, b: Engine) -> Self {
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

    pub fn collect(&mut self) {
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
    pub fn run(&mut self, span: Duration) {
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

    pub fn tunnel_up(&self, i: usize) -> Vec<TunnelId> {
        self.events[i]
            .iter()
            .filter_map(|e| if let Event::TunnelUp { tunnel, .. } = e { Some(*tunnel) } else { None })
            .collect()
    }

    pub fn sessions_up(&self, i: usize) -> usize {
        self.dataplane[i].iter().filter(|d| matches!(d, DataplaneUpdate::SessionUp(SessionUp { .. }))).count()
    }

    /// Injects raw bytes into end `to` as if sent by the other end.
    pub fn inject(&mut self, to: usize, bytes: &[u8]) {
        let now = self.now;
        self.ends[to].handle_datagram(now, self.addrs[1 - to], Transport::Udp, bytes);
        self.collect();
    }
}

pub fn establish(version: Version, secret: Option<&[u8]>) -> (Pair, TunnelId) {
    let a = engine("lac", 1, None);
    let b = engine("lns", 2, Some(params(version, secret)));
    let mut pair = Pair::new(a, b);
    let now = pair.now;
    let t = pair.ends[0].connect(now, addr(B), params(version, secret)).expect("connect");
    pair.run(Duration::from_secs(2));
    (pair, t)
}

/// The peer's (B's) view of the established tunnel: its ID for A's
/// messages and the next Ns/Nr A would use.
pub fn a_to_b_header(pair: &Pair, ns: u16, nr: u16) -> ControlHeader {
    let (tid, _) = pair.ends[1].tunnels()[0];
    ControlHeader { version: Version::V3, tunnel_id: tid, session_id: 0, ns, nr }
}

pub fn next_from(pair: &Pair, i: usize) -> (u16, u16) {
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

pub fn fss(session_id: u32, remote_session_id: u32) -> Avp {
    Avp::new(Version::V3, AvpValue::FailoverSessionState { session_id, remote_session_id })
}

/// What end `i` persisted about tunnel `t`: its IDs, peer, negotiated
/// capability and its established sessions (from their data-plane updates).
pub fn persisted(pair: &Pair, i: usize, t: TunnelId, params: TunnelParams) -> RestoredTunnel {
    let info = pair.ends[i].tunnel_info(t).expect("tunnel");
    let sessions = pair.dataplane[i]
        .iter()
        .filter_map(|d| match d {
            DataplaneUpdate::SessionUp(SessionUp {
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
            }) if *tunnel == t
                && info
                    .sessions
                    .iter()
                    .any(|s| s.local_id == *local_session_id && s.state == SessionStatus::Established) =>
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
pub fn crash(pair: &mut Pair, i: usize, seed: u64) {
    pair.ends[i] = engine(if i == 0 { "lac" } else { "lns" }, seed, None);
    pair.in_flight.retain(|p| p.to != i);
    pair.events[i].clear();
    pair.dataplane[i].clear();
    pair.sent[i].clear();
}

pub fn recovered(pair: &Pair, i: usize) -> Vec<(TunnelId, bool, u16, u16, usize)> {
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

pub fn decoded(pair: &Pair, i: usize, secret: Option<&[u8]>) -> Vec<ControlMessage> {
    pair.sent[i].iter().filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, secret).ok()).collect()
}

pub fn has_down(pair: &Pair, i: usize) -> bool {
    pair.events[i].iter().any(|e| matches!(e, Event::TunnelDown { .. } | Event::SessionDown { .. }))
}

/// A tunnel (A's ID, B's ID) with one session; then both ends crash. Returns
/// what each end's store holds of the old tunnel.
pub fn both_crash(version: Version, seeds: (u64, u64)) -> (Pair, TunnelId, TunnelId, RestoredTunnel, RestoredTunnel) {
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
pub fn sent_count(pair: &Pair, t: MessageType) -> usize {
    [0, 1].iter().flat_map(|i| decoded(pair, *i, None)).filter_map(|c| c.message).filter(|m| m.msg_type == t).count()
}

/// The first SCCRQ an initiator sends, decoded.
pub fn an_sccrq(version: Version) -> (ControlHeader, Message) {
    let mut a = engine("lac", 41, None);
    a.connect(Instant::now(), addr(B), params(version, None)).expect("connect");
    let (_, _, bytes) = a.poll_transmit().expect("SCCRQ");
    let m = ControlMessage::decode(Transport::Udp, &bytes, None).expect("decodes");
    (m.header, m.message.expect("message"))
}

/// What `b` answers to `msg`: the StopCCN's header tunnel ID and its
/// result and error codes.
pub fn answer(b: &mut Engine, header: ControlHeader, msg: Message) -> Option<(u32, u16, Option<u16>)> {
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

pub fn peer_id(m: &Message) -> u32 {
    m.find(|v| match v {
        AvpValue::AssignedConnectionId(t) => Some(*t),
        AvpValue::AssignedTunnelId(t) => Some(u32::from(*t)),
        _ => None,
    })
    .expect("assigned ID")
}

/// A minimal L2TPv2 SCCRQ (no secret) whose sender's tunnel is `assigned`.
pub fn v2_sccrq(assigned: u16) -> Vec<u8> {
    let m = Message::new(
        MessageType::Sccrq,
        vec![
            Avp::new(Version::V2, AvpValue::ProtocolVersion { version: 1, revision: 0 }),
            Avp::new(Version::V2, AvpValue::HostName(b"flood".to_vec())),
            Avp::new(Version::V2, AvpValue::FramingCapabilities(3)),
            Avp::new(Version::V2, AvpValue::AssignedTunnelId(assigned)),
        ],
    );
    let header = ControlHeader { version: Version::V2, tunnel_id: 0, session_id: 0, ns: 0, nr: 0 };
    ControlMessage { header, message: Some(m) }.encode(Transport::Udp, None).expect("encode")
}
