//! The protocol engine: control connections (tunnels) and sessions of
//! L2TPv2 and L2TPv3 over the reliable channel, with the RFC 4951 failover
//! extensions, sans-IO.
//!
//! Inputs: [`Engine::handle_datagram`], [`Engine::handle_timeout`] and the
//! commands ([`Engine::connect`], [`Engine::open_session`], ...). Outputs:
//! [`Engine::poll_transmit`], [`Engine::poll_timeout`],
//! [`Engine::poll_event`] and [`Engine::poll_dataplane`]. Time and
//! randomness are injected.
//!
//! Where things are:
//! - [`types`]: the public types (configuration, parameters, events, views);
//! - `endpoint`: one pipeline per received datagram (header, tunnel,
//!   authentication, reliable channel, decode and validate, state
//!   machine), the timers, encoding, peer settings;
//! - `tunnel`: the tunnel state machine and the dispatch of messages;
//! - `handshake`: SCCRQ/SCCRP/SCCCN, tie breaker, challenge, nonces;
//! - `session`: the session state machine (ICRQ/OCRQ ... CDN, SLI, WEN);
//! - `failover`: all of RFC 4951.

use std::{
    collections::{BTreeSet, VecDeque},
    net::SocketAddr,
    time::Instant,
};

use rand::RngCore;

/// The engine's maps are keyed by IDs it assigns (and the configured
/// peers), looked up for every message and session: foldhash (seeded per
/// process) rather than SipHash.
use foldhash::{HashMap, HashMapExt as _};

use crate::wire::{Avp, AvpValue, Transport, Version};

mod endpoint;
mod failover;
mod handshake;
mod session;
mod tunnel;
pub mod types;

use failover::TimerOutcome;
pub use failover::FSQ_BATCH;
pub use handshake::{challenge_response, ct_eq};
use handshake::{Cma, RefusalKey};
use session::{Session, SessionState};
use tunnel::{Incoming, Outgoing, Tunnel, TunnelState};
pub use types::*;

/// The protocol engine of one endpoint.
pub struct Engine {
    cfg: EngineConfig,
    rng: Box<dyn RngCore + Send>,
    tunnels: HashMap<u32, Tunnel>,
    /// Parameters for tunnels a peer opens, by its address, version and
    /// transport (before `accept`).
    peers: HashMap<(std::net::IpAddr, Version, Transport), TunnelParams>,
    transmits: VecDeque<(SocketAddr, Transport, Vec<u8>)>,
    events: VecDeque<Event>,
    dataplane: VecDeque<DataplaneUpdate>,
    /// Session IDs held by a session of any tunnel, with how many hold
    /// each (v3 IDs are unique per endpoint; found here in O(1)).
    session_ids: HashMap<u32, u32>,
    /// Recently released session IDs, avoided when allocating (IDs are
    /// chosen least-recently-used, RFC 4951 F-SS-4).
    released_sessions: VecDeque<u32>,
    /// The same IDs, counted, for an O(1) check.
    released_set: HashMap<u32, u32>,
    stats: EngineStats,
    /// Every tunnel's next deadline, ordered, and the deadline each tunnel
    /// is filed under (see `Engine::rearm`).
    timers: BTreeSet<(Instant, u32)>,
    armed: HashMap<u32, Instant>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("tunnels", &self.tunnels.len()).field("stats", &self.stats).finish()
    }
}

const RELEASED_KEEP: usize = 4096;

fn avp(version: Version, v: AvpValue) -> Avp {
    Avp::new(version, v)
}

impl Engine {
    pub fn new(cfg: EngineConfig, rng: Box<dyn RngCore + Send>) -> Self {
        Self {
            cfg,
            rng,
            tunnels: HashMap::new(),
            peers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dataplane: VecDeque::new(),
            session_ids: HashMap::new(),
            released_sessions: VecDeque::new(),
            released_set: HashMap::new(),
            stats: EngineStats::default(),
            timers: BTreeSet::new(),
            armed: HashMap::new(),
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The next datagram to send: destination, transport and bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Transport, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_dataplane(&mut self) -> Option<DataplaneUpdate> {
        self.dataplane.pop_front()
    }
}
