//! The protocol engine: control connections (tunnels) and sessions of
//! L2TPv2 and L2TPv3 over the reliable channel, sans-IO.
//!
//! Inputs: [`Engine::handle_datagram`], [`Engine::handle_timeout`] and the
//! commands ([`Engine::connect`], [`Engine::open_session`], ...). Outputs:
//! [`Engine::poll_transmit`], [`Engine::poll_timeout`],
//! [`Engine::poll_event`] and [`Engine::poll_dataplane`]. Time and
//! randomness are injected.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use md5::{Digest, Md5};
use rand::RngCore;

use crate::{
    channel::{Channel, ChannelConfig, Received, Transmit},
    wire::{
        avp::attr,
        message::DecodeError,
        rules::validate,
        types::{cdn, error, stopccn},
        Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Reply, ResultCode, Transport, Version,
    },
};

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub host_name: String,
    /// L2TPv3 Router ID.
    pub router_id: u32,
    pub vendor_name: String,
    pub channel: ChannelConfig,
    /// HELLO after this long without a message from the peer.
    pub hello_interval: Duration,
    /// State kept after StopCCN to acknowledge retransmissions (RFC 2661
    /// 5.8: "the full retransmission interval").
    pub close_hold: Duration,
    pub max_tunnels: usize,
    pub max_sessions_per_tunnel: usize,
    /// Tunnels not yet established, per peer address.
    pub max_half_open_per_peer: usize,
    /// Tunnel parameters for peers that connect to us; `None` refuses.
    pub accept: Option<TunnelParams>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            host_name: "l2tp".into(),
            router_id: 1,
            vendor_name: "l2tp-failover".into(),
            channel: ChannelConfig::default(),
            hello_interval: Duration::from_secs(60),
            close_hold: Duration::from_secs(31),
            max_tunnels: 4096,
            max_sessions_per_tunnel: 65_535,
            max_half_open_per_peer: 16,
            accept: None,
        }
    }
}

/// RFC 4951 Failover Capability as configured (F-CFG-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverCapability {
    pub control: bool,
    pub data: bool,
    pub recovery_time_ms: u32,
}

/// Per-tunnel parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelParams {
    pub version: Version,
    pub transport: Transport,
    /// Shared secret: tunnel authentication (v2 challenge/response) and
    /// hidden AVPs.
    pub secret: Option<Vec<u8>>,
    /// Hide the AVPs that may be hidden (v2, needs a secret).
    pub hide_avps: bool,
    /// Advertised in SCCRQ/SCCRP (M=0), if any.
    pub failover: Option<FailoverCapability>,
    /// L2TPv3 pseudowire types we accept.
    pub pw_types: Vec<u16>,
    /// L2TPv3 pseudowires the peer may open on this tunnel, found by the
    /// Remote End ID of its ICRQ/OCRQ, with our settings for each. Empty
    /// accepts any Remote End ID with default settings.
    pub pseudowires: Vec<SessionParams>,
    /// Addresses besides the peer's that may recover this tunnel (RFC 4951
    /// F-SEC-2), such as the peer's backup.
    pub recovery_peers: Vec<std::net::IpAddr>,
    /// This tunnel's reliable-delivery timers, receive window and HELLO
    /// interval (`None`: the engine's).
    pub timers: Option<TunnelTimers>,
}

/// Per-tunnel timers and window (RFC 2661 5.8 and 6.5, RFC 3931 4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelTimers {
    pub channel: ChannelConfig,
    /// Idle time before a HELLO.
    pub hello_interval: Duration,
}

/// Per-session parameters (L2TPv3 pseudowire settings; ignored in v2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    pub pw_type: u16,
    pub remote_end_id: Vec<u8>,
    /// Length of the cookie we assign (0, 4 or 8).
    pub cookie_len: usize,
    /// We require the default L2-Specific Sublayer on data we receive.
    pub sublayer: bool,
    /// We require sequence numbers on data we receive.
    pub sequencing: bool,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self { pw_type: 5, remote_end_id: b"pw".to_vec(), cookie_len: 0, sublayer: false, sequencing: false }
    }
}

/// Local handle of a tunnel (its local Tunnel / Control Connection ID).
pub type TunnelId = u32;

/// What the data plane must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneUpdate {
    SessionUp {
        tunnel: TunnelId,
        version: Version,
        transport: Transport,
        peer: SocketAddr,
        /// The pseudowire (L2TPv3 Remote End ID) and its type.
        remote_end_id: Vec<u8>,
        pw_type: u16,
        local_session_id: u32,
        peer_session_id: u32,
        /// Cookie the peer sends (we assigned it) and cookie we send.
        rx_cookie: Vec<u8>,
        tx_cookie: Vec<u8>,
        /// Sublayer and sequence numbers on data we receive / send.
        rx_sublayer: bool,
        tx_sublayer: bool,
        rx_sequencing: bool,
        tx_sequencing: bool,
    },
    SessionDown {
        tunnel: TunnelId,
        local_session_id: u32,
    },
}

/// Why a tunnel or session went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// We sent StopCCN/CDN with this code.
    Local(ResultCode),
    /// The peer sent StopCCN/CDN with this code.
    Peer(ResultCode),
    /// The reliable channel gave up.
    Timeout,
    /// Lost a tie breaker against the peer's own SCCRQ.
    LostTie,
    /// RFC 4951 F-RT-11: the recovery tunnel could not be established; the
    /// old tunnel and its sessions are cleared silently.
    RecoveryFailed,
    /// RFC 4951 F-SS-1 / F-SS-8: cleared silently by failover recovery (not
    /// established at the failure, or unknown to the peer).
    Cleared,
}

/// A session of a tunnel to recover, as persisted (RFC 4951 I-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredSession {
    pub local_id: u32,
    pub peer_id: u32,
    pub params: SessionParams,
    pub rx_cookie: Vec<u8>,
    pub tx_cookie: Vec<u8>,
    pub peer_sublayer: bool,
    pub peer_sequencing: bool,
}

/// A tunnel to recover after a control channel failure, as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredTunnel {
    pub local_id: u32,
    pub peer_id: u32,
    pub peer: SocketAddr,
    /// Same version, transport and secret as before the failure.
    pub params: TunnelParams,
    pub initiator: bool,
    pub peer_failover: Option<FailoverCapability>,
    pub peer_host_name: Vec<u8>,
    pub sessions: Vec<RestoredSession>,
}

/// A session carried over by a recovered tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredSession {
    pub local_session_id: u32,
    pub peer_session_id: u32,
    /// Data with sequence numbers in either direction (its data channel
    /// needs the reset of RFC 4951 3.2.3).
    pub sequencing: bool,
}

/// Notifications for the operator and the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    TunnelUp {
        tunnel: TunnelId,
        peer: SocketAddr,
        peer_host_name: Vec<u8>,
        peer_failover: Option<FailoverCapability>,
    },
    TunnelDown {
        tunnel: TunnelId,
        reason: DownReason,
    },
    SessionUp {
        tunnel: TunnelId,
        local_session_id: u32,
        peer_session_id: u32,
    },
    SessionDown {
        tunnel: TunnelId,
        local_session_id: u32,
        reason: DownReason,
    },
    /// The peer reported its circuit up or down (v3 SLI Circuit Status),
    /// or new PPP ACCM values (v2 SLI).
    LinkInfo {
        tunnel: TunnelId,
        local_session_id: u32,
        circuit_active: Option<bool>,
    },
    /// The control channel to the peer timed out; the tunnel waits for the
    /// peer's Recovery Time (RFC 4951 F-CAP-3) before it is cleared.
    FailureDetected {
        tunnel: TunnelId,
        recovery_time: Duration,
    },
    /// The loss was temporary: a message got acknowledged in that time.
    TunnelResumed {
        tunnel: TunnelId,
    },
    /// RFC 4951 3.2.1: a recovery tunnel is being set up for `tunnel`
    /// (we are its recovery endpoint).
    RecoveryStarted {
        tunnel: TunnelId,
        recovery_tunnel: TunnelId,
    },
    /// RFC 4951 3.2.2: the control channel of `tunnel` was reset to Ns/Nr;
    /// its sessions go on. The data channels of sequenced sessions need
    /// their reset (3.2.3): Ns restarts at 0 on the recovery endpoint
    /// (F-DC-1), both ends resync Nr (F-DC-3).
    TunnelRecovered {
        tunnel: TunnelId,
        /// We were the recovery endpoint (else the remote endpoint).
        recovery_endpoint: bool,
        ns: u16,
        nr: u16,
        sessions: Vec<RecoveredSession>,
    },
    /// The peer queried these sessions with an FSQ and we confirmed them
    /// (RFC 4951 3.3). Outside a control channel recovery this is how a
    /// peer reports a data channel failure (F-DC-5): their data channel
    /// restarted, so ours should follow its Ns (F-DC-3).
    SessionsQueried {
        tunnel: TunnelId,
        sessions: Vec<u32>,
    },
    /// The peer's FSQ paired this session with another Session ID: marked
    /// stale (RFC 4951 F-SS-6, Appendix C), to be queried with an FSQ.
    SessionStale {
        tunnel: TunnelId,
        local_session_id: u32,
    },
    /// An FSR confirmed the session (RFC 4951 F-SS-8).
    SessionConfirmed {
        tunnel: TunnelId,
        local_session_id: u32,
    },
    /// The peer reported circuit errors (WEN).
    WanError {
        tunnel: TunnelId,
        local_session_id: u32,
    },
    /// A datagram was dropped or answered with an error (counted).
    Rejected {
        peer: SocketAddr,
        what: String,
    },
}

/// A tunnel as [`Engine::tunnel_info`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelInfo {
    pub local_id: TunnelId,
    pub peer_id: u32,
    pub peer: SocketAddr,
    pub version: Version,
    pub transport: Transport,
    pub state: TunnelStatus,
    pub closing: bool,
    pub initiator: bool,
    pub peer_host_name: String,
    pub local_failover: Option<FailoverCapability>,
    pub peer_failover: Option<FailoverCapability>,
    /// Next Ns we send and next Nr we expect on the control channel.
    pub ns: u16,
    pub nr: u16,
    /// Control messages sent and not yet acknowledged.
    pub unacknowledged: usize,
    pub sessions: Vec<SessionInfo>,
}

/// The state of a tunnel as reported (its per-state data left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelStatus {
    /// Sent SCCRQ, waiting for SCCRP.
    WaitReply,
    /// Sent SCCRP, waiting for SCCCN.
    WaitConnect,
    Established,
    /// RFC 4951 F-CAP-3: control channel lost, waiting the peer's Recovery
    /// Time.
    AwaitingRecovery,
    /// RFC 4951: an old tunnel whose recovery tunnel is being set up.
    Recovering,
    /// StopCCN sent or received.
    Closing,
}

impl TunnelStatus {
    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitReply => "wait-reply",
            Self::WaitConnect => "wait-connect",
            Self::Established => "established",
            Self::AwaitingRecovery => "awaiting-recovery",
            Self::Recovering => "recovering",
            Self::Closing => "closing",
        }
    }
}

/// The state of a session as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Sent ICRQ/OCRQ, waiting for the reply.
    WaitReply,
    /// Sent ICRP/OCRP, waiting for ICCN/OCCN.
    WaitConnect,
    Established,
}

impl SessionStatus {
    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitReply => "wait-reply",
            Self::WaitConnect => "wait-connect",
            Self::Established => "established",
        }
    }
}

/// A session as [`Engine::tunnel_info`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub local_id: u32,
    pub peer_id: u32,
    pub state: SessionStatus,
    pub outgoing: bool,
    /// RFC 4951 F-SS-6: marked stale by a peer's FSQ.
    pub stale: bool,
    /// Queried with an FSQ whose FSR has not come yet (F-SS-3, F-SS-8).
    pub unconfirmed: bool,
    pub remote_end_id: Vec<u8>,
    pub pw_type: u16,
    pub sequencing: bool,
    /// Lengths of the cookies we check and send.
    pub cookies: (u8, u8),
}

/// Engine counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub datagrams: u64,
    pub malformed: u64,
    pub unknown_tunnel: u64,
    pub auth_failures: u64,
    pub refused: u64,
    pub stopccn_sent: u64,
    pub cdn_sent: u64,
    pub ignored: u64,
}

/// Errors of the commands (never of received input, which is answered as
/// the RFCs require).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no tunnel {0}")]
    NoTunnel(TunnelId),
    #[error("tunnel {0} is not established")]
    NotEstablished(TunnelId),
    #[error("no session {1} on tunnel {0}")]
    NoSession(TunnelId, u32),
    #[error("limit reached: {0}")]
    Limit(&'static str),
    #[error("invalid parameters: {0}")]
    Invalid(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TunnelState {
    /// Sent SCCRQ, waiting for SCCRP.
    WaitReply,
    /// Sent SCCRP, waiting for SCCCN.
    WaitConnected,
    Established,
    /// The control channel timed out, but both ends are failover capable:
    /// the peer gets its Recovery Time on top (RFC 4951 F-CAP-3) before the
    /// tunnel is cleared. Retransmissions go on; an acknowledgement ends it.
    AwaitingRecovery {
        until: Instant,
    },
    /// StopCCN sent or received: only acknowledging until `until`.
    Closing {
        until: Instant,
    },
    /// RFC 4951: an old tunnel whose control channel is being recovered:
    /// no timers, and control packets for it are discarded until its reset
    /// (F-RT-12). Its sessions keep forwarding.
    Recovering,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    /// Sent ICRQ, waiting for ICRP.
    WaitReply,
    /// Sent ICRP, waiting for ICCN.
    WaitConnected,
    Established,
}

#[derive(Debug)]
struct Session {
    state: SessionState,
    /// Outgoing call (OCRQ/OCRP/OCCN) rather than incoming (ICRQ/...).
    outgoing: bool,
    /// RFC 4951 F-SS-6: the peer queried it paired with another ID.
    stale: bool,
    /// Queried with an FSQ, no FSR yet (F-SS-3).
    unconfirmed: bool,
    local_id: u32,
    peer_id: u32,
    params: SessionParams,
    rx_cookie: Vec<u8>,
    tx_cookie: Vec<u8>,
    peer_sublayer: bool,
    peer_sequencing: bool,
}

/// A message queued on the reliable channel, with the v2 header Session ID.
#[derive(Clone, Debug)]
struct Outgoing {
    session_id: u16,
    msg: Message,
}

/// L2TPv3 control message authentication state (RFC 3931 4.3).
#[derive(Debug)]
struct Cma {
    key: [u8; 16],
    ours: Vec<u8>,
    theirs: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Tunnel {
    state: TunnelState,
    cma: Option<Cma>,
    local_id: u32,
    peer_id: u32,
    peer: SocketAddr,
    params: TunnelParams,
    channel: Channel<Outgoing>,
    initiator: bool,
    our_challenge: Option<Vec<u8>>,
    tie_breaker: Option<[u8; 8]>,
    peer_failover: Option<FailoverCapability>,
    peer_host_name: Vec<u8>,
    last_rx: Instant,
    sessions: HashMap<u32, Session>,
    serial: u32,
    /// A recovery tunnel: the local ID of the old tunnel it recovers.
    recovers: Option<u32>,
    /// Remote endpoint of a recovery: the Suggested Control Sequence we sent
    /// (the recovery endpoint's Ns and Nr).
    scs: Option<(u16, u16)>,
}

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
    /// Recently released session IDs, avoided when allocating (IDs are
    /// chosen least-recently-used, RFC 4951 F-SS-4).
    released_sessions: VecDeque<u32>,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("tunnels", &self.tunnels.len()).field("stats", &self.stats).finish()
    }
}

const RELEASED_KEEP: usize = 4096;

/// Failover Session State AVPs per FSQ after a recovery (16 bytes each).
const FSQ_BATCH: usize = 64;

/// RFC 2661 4.2 / RFC 1994 4.1: MD5(ID || secret || challenge), ID being
/// the Message Type of the message that carries the response.
pub fn challenge_response(msg_type: MessageType, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([msg_type.to_u16() as u8]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Constant-time equality for secrets and digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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
            released_sessions: VecDeque::new(),
            stats: EngineStats::default(),
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Established tunnels and their established sessions.
    pub fn tunnels(&self) -> Vec<(TunnelId, Vec<u32>)> {
        let mut v: Vec<(TunnelId, Vec<u32>)> = self
            .tunnels
            .values()
            .filter(|t| t.state == TunnelState::Established)
            .map(|t| {
                let mut s: Vec<u32> =
                    t.sessions.values().filter(|s| s.state == SessionState::Established).map(|s| s.local_id).collect();
                s.sort();
                (t.local_id, s)
            })
            .collect();
        v.sort();
        v
    }

    /// Parameters for tunnels that `peer` opens (SCCRQ from it): the
    /// per-peer ones, else [`EngineConfig::accept`].
    fn accept_params(&self, peer: SocketAddr, version: Version, transport: Transport) -> Option<&TunnelParams> {
        self.peers.get(&(peer.ip(), version, transport)).or(self.cfg.accept.as_ref())
    }

    /// Accepts tunnels from `peer` of the version and transport of
    /// `params`, with these parameters (replacing any earlier ones);
    /// tunnels already up are not touched.
    pub fn set_peer(&mut self, peer: std::net::IpAddr, params: TunnelParams) {
        self.peers.insert((peer, params.version, params.transport), params);
    }

    /// Stops accepting new tunnels from `peer` of that version and
    /// transport by their own parameters.
    pub fn remove_peer(&mut self, peer: std::net::IpAddr, version: Version, transport: Transport) {
        self.peers.remove(&(peer, version, transport));
    }

    /// Replaces the pseudowires `peer` may open on tunnel `id` (and on
    /// its next tunnels).
    pub fn set_pseudowires(&mut self, id: TunnelId, pseudowires: Vec<SessionParams>) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        t.params.pseudowires = pseudowires.clone();
        if let Some(p) = self.peers.get_mut(&(t.peer.ip(), t.params.version, t.params.transport)) {
            p.pseudowires = pseudowires;
        }
        Ok(())
    }

    /// Every tunnel, in any state, with its sessions.
    pub fn tunnel_infos(&self) -> Vec<TunnelInfo> {
        let mut v: Vec<TunnelInfo> = self.tunnels.keys().filter_map(|id| self.tunnel_info(*id)).collect();
        v.sort_by_key(|t| t.local_id);
        v
    }

    /// One tunnel and its sessions.
    pub fn tunnel_info(&self, id: TunnelId) -> Option<TunnelInfo> {
        let t = self.tunnels.get(&id)?;
        let mut sessions: Vec<SessionInfo> = t
            .sessions
            .values()
            .map(|s| SessionInfo {
                local_id: s.local_id,
                peer_id: s.peer_id,
                state: match s.state {
                    SessionState::WaitReply => SessionStatus::WaitReply,
                    SessionState::WaitConnected => SessionStatus::WaitConnect,
                    SessionState::Established => SessionStatus::Established,
                },
                outgoing: s.outgoing,
                stale: s.stale,
                unconfirmed: s.unconfirmed,
                remote_end_id: s.params.remote_end_id.clone(),
                pw_type: s.params.pw_type,
                sequencing: s.params.sequencing || s.peer_sequencing,
                cookies: (s.rx_cookie.len() as u8, s.tx_cookie.len() as u8),
            })
            .collect();
        sessions.sort_by_key(|s| s.local_id);
        let (state, closing) = match t.state {
            TunnelState::WaitReply => (TunnelStatus::WaitReply, false),
            TunnelState::WaitConnected => (TunnelStatus::WaitConnect, false),
            TunnelState::Established => (TunnelStatus::Established, false),
            TunnelState::AwaitingRecovery { .. } => (TunnelStatus::AwaitingRecovery, false),
            TunnelState::Closing { .. } => (TunnelStatus::Closing, true),
            TunnelState::Recovering => (TunnelStatus::Recovering, false),
        };
        let (ns, nr) = t.channel.ns_nr();
        Some(TunnelInfo {
            local_id: t.local_id,
            peer_id: t.peer_id,
            peer: t.peer,
            version: t.params.version,
            transport: t.params.transport,
            state,
            closing,
            initiator: t.initiator,
            peer_host_name: String::from_utf8_lossy(&t.peer_host_name).into_owned(),
            local_failover: t.params.failover,
            peer_failover: t.peer_failover,
            ns,
            nr,
            unacknowledged: t.channel.unacknowledged(),
            sessions,
        })
    }

    /// The channel settings of a tunnel with `params`.
    fn channel_config(&self, params: &TunnelParams) -> ChannelConfig {
        params.timers.as_ref().map_or_else(|| self.cfg.channel.clone(), |t| t.channel.clone())
    }

    fn hello_interval(&self, t: &Tunnel) -> Duration {
        t.params.timers.as_ref().map_or(self.cfg.hello_interval, |x| x.hello_interval)
    }

    fn alloc_tunnel_id(&mut self, version: Version) -> u32 {
        loop {
            let id = match version {
                Version::V2 => u32::from(self.rng.next_u32() as u16),
                Version::V3 => self.rng.next_u32(),
            };
            if id != 0 && !self.tunnels.contains_key(&id) {
                return id;
            }
        }
    }

    fn alloc_session_id(&mut self, tunnel: u32, version: Version) -> u32 {
        loop {
            let id = match version {
                Version::V2 => u32::from(self.rng.next_u32() as u16),
                Version::V3 => self.rng.next_u32(),
            };
            let in_use = match version {
                // v2 session IDs are per tunnel; v3 per endpoint.
                Version::V2 => self.tunnels.get(&tunnel).is_some_and(|t| t.sessions.contains_key(&id)),
                Version::V3 => self.tunnels.values().any(|t| t.sessions.contains_key(&id)),
            };
            if id != 0 && !in_use && !self.released_sessions.contains(&id) {
                return id;
            }
        }
    }

    fn release_session_id(&mut self, id: u32) {
        self.released_sessions.push_back(id);
        while self.released_sessions.len() > RELEASED_KEEP {
            self.released_sessions.pop_front();
        }
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// Opens a control connection to `peer`.
    pub fn connect(&mut self, now: Instant, peer: SocketAddr, params: TunnelParams) -> Result<TunnelId, CommandError> {
        if self.tunnels.len() >= self.cfg.max_tunnels {
            return Err(CommandError::Limit("tunnels"));
        }
        if params.transport == Transport::Ip && params.version == Version::V2 {
            return Err(CommandError::Invalid("L2TPv2 runs over UDP only"));
        }
        Ok(self.open_tunnel(now, peer, params, None))
    }

    /// RFC 4951 3.2.1: takes over `old`, a tunnel persisted before a control
    /// channel failure, and starts recovering it: the old tunnel and its
    /// sessions are valid again (their IDs reserved, F-RT-5; control packets
    /// for it discarded until the reset, F-RT-12) and a recovery tunnel is
    /// set up to the peer (F-RT-1). Returns the recovery tunnel's ID. The
    /// outcome is [`Event::TunnelRecovered`] or, when the recovery tunnel
    /// fails, [`Event::TunnelDown`] with [`DownReason::RecoveryFailed`]
    /// (F-RT-11: cleared silently).
    pub fn recover_tunnel(&mut self, now: Instant, old: RestoredTunnel) -> Result<TunnelId, CommandError> {
        if old.local_id == 0 || old.peer_id == 0 {
            return Err(CommandError::Invalid("tunnel IDs must be non-zero"));
        }
        if self.tunnels.contains_key(&old.local_id) {
            return Err(CommandError::Invalid("tunnel ID already in use"));
        }
        if self.tunnels.len() + 2 > self.cfg.max_tunnels {
            return Err(CommandError::Limit("tunnels"));
        }
        // F-CAP-4: "A tunnel is recoverable only if both ends advertised C."
        let ours = old.params.failover.is_some_and(|f| f.control);
        let theirs = old.peer_failover.is_some_and(|f| f.control);
        if !(ours && theirs) {
            return Err(CommandError::Invalid("control channel failover was not negotiated by both ends"));
        }
        let sessions = old
            .sessions
            .iter()
            .map(|s| {
                (
                    s.local_id,
                    Session {
                        state: SessionState::Established,
                        outgoing: false,
                        stale: false,
                        unconfirmed: false,
                        local_id: s.local_id,
                        peer_id: s.peer_id,
                        params: s.params.clone(),
                        rx_cookie: s.rx_cookie.clone(),
                        tx_cookie: s.tx_cookie.clone(),
                        peer_sublayer: s.peer_sublayer,
                        peer_sequencing: s.peer_sequencing,
                    },
                )
            })
            .collect();
        let id = old.local_id;
        self.tunnels.insert(
            id,
            Tunnel {
                state: TunnelState::Recovering,
                // F-RT-10: the nonces of the recovery tunnel, at the reset.
                cma: None,
                local_id: id,
                peer_id: old.peer_id,
                peer: old.peer,
                channel: Channel::new(self.channel_config(&old.params)),
                params: old.params,
                initiator: old.initiator,
                our_challenge: None,
                tie_breaker: None,
                peer_failover: old.peer_failover,
                peer_host_name: old.peer_host_name,
                last_rx: now,
                sessions,
                serial: 0,
                recovers: None,
                scs: None,
            },
        );
        let rec = self.open_recovery_tunnel(now, id);
        self.events.push_back(Event::RecoveryStarted { tunnel: id, recovery_tunnel: rec });
        Ok(rec)
    }

    /// F-RT-1..F-RT-6: a new control connection, same version, transport
    /// and secret as the old tunnel, no Failover Capability, with Tunnel
    /// Recovery and a Tie Breaker in its SCCRQ.
    fn open_recovery_tunnel(&mut self, now: Instant, old_id: u32) -> u32 {
        let (peer, params) = match self.tunnels.get(&old_id) {
            Some(o) => (o.peer, TunnelParams { failover: None, pseudowires: Vec::new(), ..o.params.clone() }),
            None => return 0,
        };
        // F-RT-5: never an old tunnel's ID (they are all in the table).
        self.open_tunnel(now, peer, params, Some(old_id))
    }

    /// Initiator: a new control connection with its SCCRQ sent (a recovery
    /// tunnel for `recovers`, if given).
    fn open_tunnel(&mut self, now: Instant, peer: SocketAddr, params: TunnelParams, recovers: Option<u32>) -> u32 {
        let id = self.alloc_tunnel_id(params.version);
        let challenge = params.secret.as_ref().filter(|_| params.version == Version::V2).map(|_| self.random_bytes(16));
        let mut tie = [0u8; 8];
        self.rng.fill_bytes(&mut tie);
        let cma = self.new_cma(&params);
        let mut t = Tunnel {
            state: TunnelState::WaitReply,
            cma,
            local_id: id,
            peer_id: 0,
            peer,
            channel: Channel::new(self.channel_config(&params)),
            params,
            initiator: true,
            our_challenge: challenge,
            tie_breaker: Some(tie),
            peer_failover: None,
            peer_host_name: Vec::new(),
            last_rx: now,
            sessions: HashMap::new(),
            serial: 0,
            recovers,
            scs: None,
        };
        let msg = self.sccrq_or_sccrp(&t, MessageType::Sccrq, None);
        t.channel.send(now, Outgoing { session_id: 0, msg });
        self.tunnels.insert(id, t);
        self.flush(now, id);
        id
    }

    /// A recovery tunnel ended. Before the reset that is F-RT-11: the old
    /// tunnel (if it is still waiting for its recovery) and its sessions
    /// are cleared silently.
    fn recovery_tunnel_gone(&mut self, old_id: u32) {
        if !self.tunnels.get(&old_id).is_some_and(|o| o.state == TunnelState::Recovering) {
            return;
        }
        let Some(old) = self.tunnels.remove(&old_id) else { return };
        for s in old.sessions.values() {
            self.session_gone(old_id, s, DownReason::RecoveryFailed);
            self.release_session_id(s.local_id);
        }
        self.events.push_back(Event::TunnelDown { tunnel: old_id, reason: DownReason::RecoveryFailed });
    }

    /// RFC 4951 3.2.2 control channel reset of the old tunnel `old_id`,
    /// recovered through recovery tunnel `rec_id`, and what follows it.
    fn reset_recovered(&mut self, now: Instant, old_id: u32, rec_id: u32, ns: u16, nr: u16, recovery_endpoint: bool) {
        let (cma, rec_peer) = match self.tunnels.get(&rec_id) {
            Some(r) => {
                (r.cma.as_ref().map(|c| Cma { key: c.key, ours: c.ours.clone(), theirs: c.theirs.clone() }), r.peer)
            }
            None => return,
        };
        let Some(old) = self.tunnels.get_mut(&old_id) else { return };
        // F-CC-1/F-CC-2: windows flushed, Ns/Nr set to the suggested values
        // (or zero without Suggested Control Sequence).
        old.channel.reset(ns, nr);
        old.state = TunnelState::Established;
        old.last_rx = now;
        // F-RT-10: "the recovered tunnel MUST then use the nonces exchanged
        // on the recovery tunnel (both ends)".
        if cma.is_some() {
            old.cma = cma;
        }
        // A recovery peer (F-SEC-2) now speaks for the tunnel.
        old.peer = rec_peer;
        // F-SS-1: "each end MUST silently (no CDN) clear the sessions that
        // were not in the established state".
        let pending: Vec<u32> =
            old.sessions.values().filter(|s| s.state != SessionState::Established).map(|s| s.local_id).collect();
        let data_ok = old.params.failover.is_some_and(|f| f.data) && old.peer_failover.is_some_and(|f| f.data);
        let sequenced: Vec<u32> = old
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Established && (s.params.sequencing || s.peer_sequencing))
            .map(|s| s.local_id)
            .collect();
        for sid in pending {
            if let Some(s) = self.tunnels.get_mut(&old_id).and_then(|o| o.sessions.remove(&sid)) {
                self.session_gone(old_id, &s, DownReason::Cleared);
                self.release_session_id(sid);
            }
        }
        if recovery_endpoint && !data_ok {
            // F-DC-4: "If either end did not advertise D, sessions with
            // sequence numbers are not recoverable; the recovery endpoint
            // SHOULD tear them down with CDN."
            for sid in sequenced {
                self.send_cdn(
                    now,
                    old_id,
                    sid,
                    ResultCode::new(cdn::GENERAL_ERROR, Some(0), "data channel failover not negotiated"),
                );
            }
        }
        let Some(old) = self.tunnels.get(&old_id) else { return };
        let mut sessions: Vec<RecoveredSession> = old
            .sessions
            .values()
            .map(|s| RecoveredSession {
                local_session_id: s.local_id,
                peer_session_id: s.peer_id,
                sequencing: s.params.sequencing || s.peer_sequencing,
            })
            .collect();
        sessions.sort_by_key(|s| s.local_session_id);
        // F-SS-2/F-SS-3: both ends query every session they carried over,
        // so that a failure in the middle of a call setup or teardown
        // leaves nothing established on one side only (Appendix C).
        let all: Vec<u32> = sessions.iter().map(|s| s.local_session_id).collect();
        for chunk in all.chunks(FSQ_BATCH) {
            let _ = self.query_sessions(now, old_id, chunk);
        }
        self.events.push_back(Event::TunnelRecovered { tunnel: old_id, recovery_endpoint, ns, nr, sessions });
        self.flush(now, old_id);
    }

    /// RFC 3931 4.3: with a shared secret, L2TPv3 control messages are
    /// authenticated, with a nonce of ours.
    fn new_cma(&mut self, params: &TunnelParams) -> Option<Cma> {
        let secret = params.secret.as_ref().filter(|_| params.version == Version::V3)?;
        Some(Cma { key: crate::wire::auth::cma_key(secret), ours: self.random_bytes(16), theirs: None })
    }

    fn sccrq_or_sccrp(&mut self, t: &Tunnel, msg_type: MessageType, response: Option<[u8; 16]>) -> Message {
        use AvpValue::*;
        let v = t.params.version;
        let mut avps = Vec::new();
        match v {
            Version::V2 => {
                avps.push(avp(v, ProtocolVersion { version: 1, revision: 0 }));
                avps.push(avp(v, HostName(self.cfg.host_name.as_bytes().to_vec())));
                avps.push(avp(v, FramingCapabilities(3)));
                avps.push(avp(v, AssignedTunnelId(t.local_id as u16)));
            }
            Version::V3 => {
                avps.push(avp(v, HostName(self.cfg.host_name.as_bytes().to_vec())));
                avps.push(avp(v, RouterId(self.cfg.router_id)));
                avps.push(avp(v, AssignedConnectionId(t.local_id)));
                avps.push(avp(v, PwCapabilities(t.params.pw_types.clone())));
            }
        }
        avps.push(avp(v, ReceiveWindowSize(t.channel.receive_window())));
        avps.push(avp(v, VendorName(self.cfg.vendor_name.as_bytes().to_vec())));
        if msg_type == MessageType::Sccrq {
            if let Some(tb) = t.tie_breaker {
                avps.push(avp(v, TieBreaker(tb)));
            }
            // F-RT-2: the old tunnel's IDs as we see them.
            if let Some(old) = t.recovers.and_then(|o| self.tunnels.get(&o)) {
                avps.push(avp(
                    v,
                    TunnelRecovery { recover_tunnel_id: old.local_id, recover_remote_tunnel_id: old.peer_id },
                ));
            }
        }
        // F-RT-9: the remote endpoint suggests the recovered Ns/Nr.
        if let (MessageType::Sccrp, Some((ns, nr))) = (msg_type, t.scs) {
            avps.push(avp(v, SuggestedControlSequence { ns, nr }));
        }
        if let Some(r) = response {
            avps.push(avp(v, ChallengeResponse(r)));
        }
        if let Some(c) = &t.cma {
            avps.push(avp(v, ControlAuthNonce(c.ours.clone())));
        }
        if let Some(c) = &t.our_challenge {
            avps.push(avp(v, Challenge(c.clone())));
        }
        // RFC 4951 F-CAP-1: advertised per configuration, M=0 (W-1), never
        // with both bits clear (W-7).
        if let Some(f) = t.params.failover.filter(|f| f.control || f.data) {
            avps.push(avp(
                v,
                FailoverCapability { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms },
            ));
        }
        // Nothing hidden while the control connection is set up: the peer
        // learns from these very messages who we are and so which secret to
        // use (xl2tpd 1.3 cannot unhide AVPs in SCCRQ or SCCRP). Session
        // messages hide theirs.
        Message::new(msg_type, avps)
    }

    /// With `hide_avps` (v2 and a secret): a Random Vector first and the
    /// AVPs that may be hidden hidden (RFC 2661 4.3).
    fn maybe_hide(&mut self, t: &Tunnel, mut msg: Message) -> Message {
        if !(t.params.hide_avps && t.params.secret.is_some() && t.params.version == Version::V2) {
            return msg;
        }
        let hideable = |a: &Avp| {
            matches!(
                a.value,
                AvpValue::AssignedTunnelId(_) | AvpValue::AssignedSessionId(_) | AvpValue::CallSerialNumber(_)
            )
        };
        if !msg.avps.iter().any(hideable) {
            return msg;
        }
        for a in msg.avps.iter_mut().filter(|a| hideable(a)) {
            a.flags.hidden = true;
        }
        let rv = self.random_bytes(16);
        msg.avps.insert(0, avp(t.params.version, AvpValue::RandomVector(rv)));
        msg
    }

    /// Encodes and queues everything the tunnel's channel wants to send.
    fn flush(&mut self, now: Instant, id: u32) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let secret = t.params.secret.clone();
        while let Some(tx) = t.channel.poll_transmit(now) {
            let (header, message) = match tx {
                Transmit::Message { ns, nr, msg } => (
                    ControlHeader {
                        version: t.params.version,
                        tunnel_id: t.peer_id,
                        session_id: msg.session_id,
                        ns,
                        nr,
                    },
                    Some(msg.msg.clone()),
                ),
                Transmit::Ack { ns, nr } => {
                    let message = match t.params.version {
                        // RFC 3931 6.15: an explicit ACK message.
                        Version::V3 => Some(Message::new(MessageType::Ack, Vec::new())),
                        Version::V2 => None,
                    };
                    (ControlHeader { version: t.params.version, tunnel_id: t.peer_id, session_id: 0, ns, nr }, message)
                }
            };
            let message = match (&t.cma, message) {
                // "MUST be placed immediately after the Message Type AVP";
                // with authentication there are no ZLBs (RFC 3931 6.15).
                (Some(_), m) => {
                    let mut m = m.unwrap_or_else(|| Message::new(MessageType::Ack, Vec::new()));
                    let md = AvpValue::MessageDigest {
                        digest_type: crate::wire::avp::digest_type::HMAC_MD5,
                        digest: vec![0; 16],
                    };
                    m.avps.insert(0, avp(Version::V3, md));
                    Some(m)
                }
                (None, m) => m,
            };
            let is_sccrq = message.as_ref().is_some_and(|m| m.msg_type == MessageType::Sccrq);
            match (ControlMessage { header, message }).encode(t.params.transport, secret.as_deref()) {
                Ok(mut bytes) => {
                    if let Some(c) = &t.cma {
                        let nonces = match (&c.theirs, is_sccrq) {
                            (Some(theirs), false) => Some((c.ours.as_slice(), theirs.as_slice())),
                            _ => None,
                        };
                        crate::wire::auth::sign(t.params.transport, &mut bytes, &c.key, nonces);
                    }
                    self.transmits.push_back((t.peer, t.params.transport, bytes))
                }
                Err(e) => self.events.push_back(Event::Rejected { peer: t.peer, what: format!("cannot encode: {e}") }),
            }
        }
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

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tunnels
            .values()
            .filter(|t| t.state != TunnelState::Recovering)
            .flat_map(|t| {
                let hello = (t.state == TunnelState::Established).then(|| t.last_rx + self.hello_interval(t));
                let closing = match t.state {
                    TunnelState::Closing { until } | TunnelState::AwaitingRecovery { until } => Some(until),
                    _ => None,
                };
                [t.channel.poll_timeout(), hello, closing]
            })
            .flatten()
            .min()
    }

    /// Runs the timers: retransmissions, delayed acks, HELLO, teardown.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u32> = self.tunnels.keys().copied().collect();
        for id in ids {
            let Some(hello) = self.tunnels.get(&id).map(|t| self.hello_interval(t)) else { continue };
            let Some(t) = self.tunnels.get_mut(&id) else { continue };
            if t.state == TunnelState::Recovering {
                // Waits for its recovery tunnel; no timers of its own.
                continue;
            }
            if let TunnelState::Closing { until } = t.state {
                if now >= until {
                    self.tunnels.remove(&id);
                    continue;
                }
            }
            if let TunnelState::AwaitingRecovery { until } = t.state {
                if now >= until {
                    // F-CAP-3: the Recovery Time ran out: recovery failed.
                    self.clear_tunnel(id, DownReason::Timeout);
                    continue;
                }
                if t.channel.retries() == 0 && t.channel.unacknowledged() == 0 {
                    // "stops ... when a control message gets acknowledged
                    // (the loss was temporary)".
                    t.state = TunnelState::Established;
                    self.events.push_back(Event::TunnelResumed { tunnel: id });
                }
            }
            if t.channel.handle_timeout(now).is_err() {
                let recovery_time = match (t.state, t.params.failover, t.peer_failover) {
                    // F-CAP-4: only when both ends advertised C.
                    (TunnelState::Established, Some(ours), Some(theirs)) if ours.control && theirs.control => {
                        Some(Duration::from_millis(u64::from(theirs.recovery_time_ms)))
                    }
                    (TunnelState::AwaitingRecovery { .. }, ..) => Some(Duration::ZERO),
                    _ => None,
                };
                match recovery_time {
                    Some(extra) => {
                        if let TunnelState::Established = t.state {
                            t.state = TunnelState::AwaitingRecovery { until: now + extra };
                            self.events.push_back(Event::FailureDetected { tunnel: id, recovery_time: extra });
                        }
                        t.channel.extend(now);
                    }
                    None => {
                        // RFC 2661 5.8: "the tunnel and all sessions within
                        // MUST be cleared".
                        self.clear_tunnel(id, DownReason::Timeout);
                        continue;
                    }
                }
            }
            if t.state == TunnelState::Established && now >= t.last_rx + hello && t.channel.is_idle() {
                // RFC 2661 6.5 / RFC 3931 6.5: keepalive on an idle tunnel.
                t.last_rx = now;
                t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Hello, Vec::new()) });
            }
            self.flush(now, id);
        }
    }

    /// Removes a tunnel at once, reporting every session down.
    fn clear_tunnel(&mut self, id: u32, reason: DownReason) {
        let Some(t) = self.tunnels.remove(&id) else { return };
        let was_up = t.state == TunnelState::Established || matches!(t.state, TunnelState::Closing { .. });
        for s in t.sessions.values() {
            self.session_gone(id, s, reason.clone());
        }
        let ids: Vec<u32> = t.sessions.keys().copied().collect();
        for s in ids {
            self.release_session_id(s);
        }
        if let Some(old) = t.recovers {
            self.recovery_tunnel_gone(old);
        } else if was_up || reason == DownReason::Timeout || reason == DownReason::LostTie {
            self.events.push_back(Event::TunnelDown { tunnel: id, reason });
        }
    }

    fn session_gone(&mut self, tunnel: u32, s: &Session, reason: DownReason) {
        if s.state == SessionState::Established {
            self.dataplane.push_back(DataplaneUpdate::SessionDown { tunnel, local_session_id: s.local_id });
        }
        self.events.push_back(Event::SessionDown { tunnel, local_session_id: s.local_id, reason });
    }

    /// Sends StopCCN and keeps the tunnel only to acknowledge (RFC 2661
    /// 5.8: state kept "for the full retransmission interval").
    fn stop_tunnel(&mut self, now: Instant, id: u32, rc: ResultCode) {
        let until = now + self.cfg.close_hold;
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        if matches!(t.state, TunnelState::Closing { .. }) {
            return;
        }
        let v = t.params.version;
        let mut avps = vec![match v {
            Version::V2 => avp(v, AvpValue::AssignedTunnelId(t.local_id as u16)),
            Version::V3 => avp(v, AvpValue::AssignedConnectionId(t.local_id)),
        }];
        avps.push(avp(v, AvpValue::ResultCode(rc.clone())));
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::StopCcn, avps) });
        let was_established = t.state == TunnelState::Established;
        let recovers = t.recovers;
        t.state = TunnelState::Closing { until };
        let sessions: Vec<Session> = t.sessions.drain().map(|(_, s)| s).collect();
        self.stats.stopccn_sent += 1;
        for s in &sessions {
            self.session_gone(id, s, DownReason::Local(rc.clone()));
            self.release_session_id(s.local_id);
        }
        if let Some(old) = recovers {
            self.recovery_tunnel_gone(old);
        } else if was_established {
            self.events.push_back(Event::TunnelDown { tunnel: id, reason: DownReason::Local(rc) });
        }
        self.flush(now, id);
    }

    /// Tears a tunnel down (StopCCN, result 1: general request to clear).
    pub fn close_tunnel(&mut self, now: Instant, id: TunnelId) -> Result<(), CommandError> {
        if !self.tunnels.contains_key(&id) {
            return Err(CommandError::NoTunnel(id));
        }
        self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_CLEAR, None, ""));
        Ok(())
    }

    /// Places an incoming call on an established tunnel (ICRQ).
    pub fn open_session(&mut self, now: Instant, id: TunnelId, params: SessionParams) -> Result<u32, CommandError> {
        self.place_call(now, id, params, false)
    }

    /// Places an outgoing call on an established tunnel (OCRQ).
    pub fn open_outgoing_session(
        &mut self,
        now: Instant,
        id: TunnelId,
        params: SessionParams,
    ) -> Result<u32, CommandError> {
        self.place_call(now, id, params, true)
    }

    fn place_call(
        &mut self,
        now: Instant,
        id: TunnelId,
        params: SessionParams,
        outgoing: bool,
    ) -> Result<u32, CommandError> {
        let (version, count) = match self.tunnels.get(&id) {
            None => return Err(CommandError::NoTunnel(id)),
            Some(t) if t.state != TunnelState::Established => return Err(CommandError::NotEstablished(id)),
            Some(t) => (t.params.version, t.sessions.len()),
        };
        if count >= self.cfg.max_sessions_per_tunnel {
            return Err(CommandError::Limit("sessions per tunnel"));
        }
        if !matches!(params.cookie_len, 0 | 4 | 8) {
            return Err(CommandError::Invalid("cookie length must be 0, 4 or 8"));
        }
        let sid = self.alloc_session_id(id, version);
        let rx_cookie = self.random_bytes(params.cookie_len);
        let Some(t) = self.tunnels.get_mut(&id) else { return Err(CommandError::NoTunnel(id)) };
        t.serial = t.serial.wrapping_add(1);
        let v = version;
        let avps = match v {
            Version::V2 => {
                let mut a =
                    vec![avp(v, AvpValue::AssignedSessionId(sid as u16)), avp(v, AvpValue::CallSerialNumber(t.serial))];
                if outgoing {
                    // RFC 2661 6.9: OCRQ also carries the call's bearer.
                    a.extend([
                        avp(v, AvpValue::MinimumBps(0)),
                        avp(v, AvpValue::MaximumBps(u32::MAX)),
                        avp(v, AvpValue::BearerType(3)),
                        avp(v, AvpValue::FramingType(3)),
                        avp(v, AvpValue::CalledNumber(params.remote_end_id.clone())),
                    ]);
                }
                a
            }
            Version::V3 => {
                let mut a = vec![
                    avp(v, AvpValue::LocalSessionId(sid)),
                    avp(v, AvpValue::RemoteSessionId(0)),
                    avp(v, AvpValue::CallSerialNumber(t.serial)),
                    avp(v, AvpValue::PwType(params.pw_type)),
                    avp(v, AvpValue::RemoteEndId(params.remote_end_id.clone())),
                    avp(v, AvpValue::CircuitStatus { new: true, active: true }),
                ];
                a.extend(Self::v3_session_avps(&params, &rx_cookie));
                a
            }
        };
        t.sessions.insert(
            sid,
            Session {
                state: SessionState::WaitReply,
                outgoing,
                stale: false,
                unconfirmed: false,
                local_id: sid,
                peer_id: 0,
                params,
                rx_cookie,
                tx_cookie: Vec::new(),
                peer_sublayer: false,
                peer_sequencing: false,
            },
        );
        let request = if outgoing { MessageType::Ocrq } else { MessageType::Icrq };
        let msg = self.maybe_hide_id(id, Message::new(request, avps));
        if let Some(t) = self.tunnels.get_mut(&id) {
            t.channel.send(now, Outgoing { session_id: 0, msg });
        }
        self.flush(now, id);
        Ok(sid)
    }

    fn maybe_hide_id(&mut self, id: u32, msg: Message) -> Message {
        let Some(t) = self.tunnels.remove(&id) else { return msg };
        let msg = self.maybe_hide(&t, msg);
        self.tunnels.insert(id, t);
        msg
    }

    fn v3_session_avps(params: &SessionParams, rx_cookie: &[u8]) -> Vec<Avp> {
        let v = Version::V3;
        let mut a = Vec::new();
        if !rx_cookie.is_empty() {
            a.push(avp(v, AvpValue::AssignedCookie(rx_cookie.to_vec())));
        }
        a.push(avp(v, AvpValue::L2SpecificSublayer(u16::from(params.sublayer))));
        a.push(avp(v, AvpValue::DataSequencing(if params.sequencing { 2 } else { 0 })));
        a
    }

    /// RFC 4951 3.3 Step III (F-SS-2, F-SS-3): queries the state of some
    /// of our sessions on the peer with one FSQ carrying one Failover
    /// Session State AVP per session.
    ///
    /// After a control channel recovery the engine queries every carried-over
    /// session itself. RFC 4951 F-DC-5 (MAY: FSQ/FSR after a data-channel-only
    /// failure) is this command too; nothing detects such a failure yet.
    pub fn query_sessions(&mut self, now: Instant, id: TunnelId, sids: &[u32]) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        if t.state != TunnelState::Established {
            return Err(CommandError::NotEstablished(id));
        }
        if sids.is_empty() {
            return Err(CommandError::Invalid("an FSQ carries at least one session"));
        }
        let v = t.params.version;
        let mut avps = Vec::with_capacity(sids.len());
        if let Some(missing) = sids.iter().find(|sid| !t.sessions.contains_key(sid)) {
            return Err(CommandError::NoSession(id, *missing));
        }
        for sid in sids {
            let Some(s) = t.sessions.get_mut(sid) else { continue };
            s.unconfirmed = true;
            avps.push(avp(v, AvpValue::FailoverSessionState { session_id: s.local_id, remote_session_id: s.peer_id }));
        }
        // W-5: the Message Type AVP of an FSQ has M=0 (Message::new).
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Fsq, avps) });
        self.flush(now, id);
        Ok(())
    }

    /// Sessions marked stale by an FSQ (F-SS-6), to be queried later.
    pub fn stale_sessions(&self, id: TunnelId) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .tunnels
            .get(&id)
            .map(|t| t.sessions.values().filter(|s| s.stale).map(|s| s.local_id).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// F-SS-5..F-SS-7: every FSS in the FSQ gets an FSS in the FSR.
    fn on_fsq(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let v = t.params.version;
        let mut answers = Vec::new();
        let mut stale = Vec::new();
        for a in &m.avps {
            let AvpValue::FailoverSessionState { session_id: theirs, remote_session_id: ours } = a.value else {
                continue;
            };
            let answer = match t.sessions.get_mut(&ours) {
                Some(s) if s.peer_id == theirs && s.state == SessionState::Established => ours,
                Some(s) => {
                    // F-SS-6: paired with another ID: not cleared but marked
                    // stale, to be queried with its own FSQ.
                    if !s.stale {
                        stale.push(ours);
                    }
                    s.stale = true;
                    0
                }
                // F-SS-6: no such session: Session ID 0.
                None => 0,
            };
            // F-SS-7: "Remote Session ID is always the Session ID received
            // in the FSQ's FSS".
            answers.push(avp(v, AvpValue::FailoverSessionState { session_id: answer, remote_session_id: theirs }));
        }
        if answers.is_empty() {
            self.stats.ignored += 1;
            return;
        }
        let confirmed: Vec<u32> = answers
            .iter()
            .filter_map(|a| match a.value {
                AvpValue::FailoverSessionState { session_id, .. } if session_id != 0 => Some(session_id),
                _ => None,
            })
            .collect();
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Fsr, answers) });
        if !confirmed.is_empty() {
            self.events.push_back(Event::SessionsQueried { tunnel: id, sessions: confirmed });
        }
        for local_session_id in stale {
            self.events.push_back(Event::SessionStale { tunnel: id, local_session_id });
        }
    }

    /// F-SS-8: Session ID 0 clears the session silently (no CDN); any other
    /// value confirms it.
    fn on_fsr(&mut self, id: u32, m: &Message) {
        for a in &m.avps {
            let AvpValue::FailoverSessionState { session_id: theirs, remote_session_id: ours } = a.value else {
                continue;
            };
            let Some(t) = self.tunnels.get_mut(&id) else { return };
            if theirs == 0 {
                if let Some(s) = t.sessions.remove(&ours) {
                    self.session_gone(id, &s, DownReason::Cleared);
                    self.release_session_id(ours);
                }
            } else if let Some(s) = t.sessions.get_mut(&ours) {
                s.stale = false;
                s.unconfirmed = false;
                self.events.push_back(Event::SessionConfirmed { tunnel: id, local_session_id: ours });
            }
        }
    }

    /// Reports our circuit up or down to the peer (v3 SLI with Circuit
    /// Status, RFC 3931 5.4.5).
    pub fn set_circuit_status(
        &mut self,
        now: Instant,
        id: TunnelId,
        sid: u32,
        active: bool,
    ) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        if t.params.version != Version::V3 {
            return Err(CommandError::Invalid("Circuit Status is L2TPv3"));
        }
        let s = t.sessions.get(&sid).ok_or(CommandError::NoSession(id, sid))?;
        let v = Version::V3;
        let avps = vec![
            avp(v, AvpValue::LocalSessionId(sid)),
            avp(v, AvpValue::RemoteSessionId(s.peer_id)),
            avp(v, AvpValue::CircuitStatus { new: false, active }),
        ];
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Sli, avps) });
        self.flush(now, id);
        Ok(())
    }

    /// Tears a session down (CDN, result 3: administrative).
    pub fn close_session(&mut self, now: Instant, id: TunnelId, sid: u32) -> Result<(), CommandError> {
        let t = self.tunnels.get(&id).ok_or(CommandError::NoTunnel(id))?;
        if !t.sessions.contains_key(&sid) {
            return Err(CommandError::NoSession(id, sid));
        }
        self.send_cdn(now, id, sid, ResultCode::new(cdn::ADMINISTRATIVE, None, ""));
        Ok(())
    }

    fn send_cdn(&mut self, now: Instant, id: u32, sid: u32, rc: ResultCode) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let Some(s) = t.sessions.remove(&sid) else { return };
        let v = t.params.version;
        let avps = match v {
            Version::V2 => {
                vec![avp(v, AvpValue::ResultCode(rc.clone())), avp(v, AvpValue::AssignedSessionId(sid as u16))]
            }
            Version::V3 => vec![
                avp(v, AvpValue::ResultCode(rc.clone())),
                avp(v, AvpValue::LocalSessionId(sid)),
                avp(v, AvpValue::RemoteSessionId(s.peer_id)),
            ],
        };
        t.channel.send(now, Outgoing { session_id: s.peer_id as u16, msg: Message::new(MessageType::Cdn, avps) });
        self.stats.cdn_sent += 1;
        self.session_gone(id, &s, DownReason::Local(rc));
        self.release_session_id(sid);
        self.flush(now, id);
    }

    /// Feeds one received control datagram (UDP payload or IP-115 payload).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, transport: Transport, bytes: &[u8]) {
        self.stats.datagrams += 1;
        let (header, body) = match ControlHeader::parse(transport, bytes) {
            Ok(h) => h,
            Err(e) => {
                // RFC 2661 3.1: such packets are discarded.
                self.stats.malformed += 1;
                self.events.push_back(Event::Rejected { peer: from, what: format!("header: {e}") });
                return;
            }
        };
        // The tunnel this is for: by our ID, or a new one for an SCCRQ.
        let id = if header.tunnel_id != 0 {
            match self.tunnels.get(&header.tunnel_id) {
                Some(t) if t.state == TunnelState::Recovering => {
                    // RFC 4951 F-RT-12: "A control packet received on the
                    // recovered (old) tunnel before its control channel
                    // reset MUST be silently discarded."
                    self.stats.ignored += 1;
                    return;
                }
                Some(t) if t.peer == from => header.tunnel_id,
                _ => {
                    self.stats.unknown_tunnel += 1;
                    self.events.push_back(Event::Rejected {
                        peer: from,
                        what: format!("unknown tunnel {}", header.tunnel_id),
                    });
                    return;
                }
            }
        } else {
            0
        };
        let secret = if id != 0 { self.tunnels.get(&id).and_then(|t| t.params.secret.clone()) } else { None };
        let secret =
            secret.or_else(|| self.accept_params(from, header.version, transport).and_then(|p| p.secret.clone()));
        let message = if body.is_empty() {
            None
        } else {
            match Message::decode(header.version, body, secret.as_deref()) {
                Ok(m) => Some(m),
                Err(e) => {
                    if matches!(e, DecodeError::HiddenCorrupt { .. } | DecodeError::HiddenWithoutSecret { .. }) {
                        self.stats.auth_failures += 1;
                    } else {
                        self.stats.malformed += 1;
                    }
                    self.events.push_back(Event::Rejected { peer: from, what: format!("message: {e}") });
                    if id != 0 {
                        self.apply_reply(now, id, header.session_id, e.reply(), None);
                    } else if let (Some(peer_tid), Reply::StopCcn(rc)) =
                        (crate::wire::message::sccrq_sender_id(header.version, body), e.reply())
                    {
                        // An SCCRQ that does not decode: the tunnel it asks
                        // for is refused with the code of the fault.
                        self.refuse_sccrq(from, transport, header.version, peer_tid, rc);
                    }
                    return;
                }
            }
        };
        if !self.authentic(from, header.version, id, transport, bytes, message.as_ref()) {
            // RFC 3931 4.3: a message whose digest does not verify is
            // dropped before anything in it is used.
            self.stats.auth_failures += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "message digest does not verify".into() });
            return;
        }
        if id == 0 {
            match message {
                Some(m) if m.msg_type == MessageType::Sccrq => self.on_new_sccrq(now, from, transport, header, m),
                _ => {
                    self.stats.unknown_tunnel += 1;
                    self.events.push_back(Event::Rejected {
                        peer: from,
                        what: "message for tunnel 0 that is not an SCCRQ".into(),
                    });
                }
            }
            return;
        }
        self.on_tunnel_message(now, id, header, message);
    }

    /// RFC 3931 4.3 check of a decoded datagram for tunnel `id` (0: a new
    /// SCCRQ). True when authentication is off for it.
    fn authentic(
        &mut self,
        from: SocketAddr,
        version: Version,
        id: u32,
        transport: Transport,
        bytes: &[u8],
        message: Option<&Message>,
    ) -> bool {
        use crate::wire::auth::{cma_key, verify};
        if id == 0 {
            if version != Version::V3 {
                return true;
            }
            // F-RT-10: a recovery SCCRQ is authenticated with the secret of
            // the tunnel it recovers.
            if let Some(old) = message.and_then(|m| self.recovery_target(m)) {
                let Some(secret) = old.params.secret.clone() else { return true };
                return verify(transport, bytes, &cma_key(&secret), None);
            }
            let Some(secret) = self
                .accept_params(from, version, transport)
                .filter(|p| p.version == version)
                .and_then(|p| p.secret.clone())
            else {
                return true;
            };
            return message.is_some() && verify(transport, bytes, &cma_key(&secret), None);
        }
        let Some(c) = self.tunnels.get_mut(&id).and_then(|t| t.cma.as_mut()) else { return true };
        let Some(m) = message else { return false };
        // The SCCRP brings the peer's nonce; it is kept once it verified.
        let theirs = c
            .theirs
            .clone()
            .or_else(|| m.find(|a| if let AvpValue::ControlAuthNonce(n) = a { Some(n.clone()) } else { None }));
        let Some(theirs) = theirs else { return false };
        let ok = verify(transport, bytes, &c.key, Some((&theirs, &c.ours)));
        if ok {
            c.theirs = Some(theirs);
        }
        ok
    }

    fn apply_reply(&mut self, now: Instant, id: u32, header_sid: u16, reply: Reply, sid: Option<u32>) {
        match reply {
            Reply::Discard | Reply::Ignore => self.stats.ignored += 1,
            Reply::StopCcn(rc) => self.stop_tunnel(now, id, rc),
            Reply::Cdn(rc) => {
                let sid = sid.unwrap_or(u32::from(header_sid));
                if self.tunnels.get(&id).is_some_and(|t| t.sessions.contains_key(&sid)) {
                    self.send_cdn(now, id, sid, rc);
                } else {
                    self.stats.ignored += 1;
                }
            }
        }
    }

    fn on_new_sccrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        header: ControlHeader,
        m: Message,
    ) {
        let v = header.version;
        let peer_tid = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedTunnelId(t) = a { Some(u32::from(*t)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::AssignedConnectionId(t) = a { Some(*t) } else { None }),
        };
        // A retransmitted SCCRQ belongs to the tunnel it created.
        if let Some(existing) = self
            .tunnels
            .values()
            .find(|t| t.peer == from && Some(t.peer_id) == peer_tid && !t.initiator)
            .map(|t| t.local_id)
        {
            self.on_tunnel_message(now, existing, header, Some(m));
            return;
        }
        if let Err(vio) = validate(v, &m) {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: format!("SCCRQ: {vio}") });
            if let (Some(peer_tid), Reply::StopCcn(rc)) = (peer_tid, vio.reply()) {
                self.refuse_sccrq(from, transport, v, peer_tid, rc);
            }
            return;
        }
        let Some(peer_tid) = peer_tid.filter(|t| *t != 0) else {
            // Nobody to answer: the peer's tunnel has no ID.
            self.stats.refused += 1;
            return;
        };
        if let Some(ids) = m.find(|a| match a {
            AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } => {
                Some((*recover_tunnel_id, *recover_remote_tunnel_id))
            }
            _ => None,
        }) {
            self.on_recovery_sccrq(now, from, transport, header, m, peer_tid, ids);
            return;
        }
        // Tie breaker (RFC 2661 4.4.3, RFC 3931 5.4.3): our own SCCRQ to
        // the same peer is outstanding. F-RT-7: never a recovery tunnel.
        let their_tb = m.find(|a| if let AvpValue::TieBreaker(t) = a { Some(*t) } else { None });
        if let Some(theirs) = their_tb {
            let ours: Vec<(u32, [u8; 8])> = self
                .tunnels
                .values()
                .filter(|t| t.peer == from && t.state == TunnelState::WaitReply && t.params.version == v)
                .filter(|t| t.recovers.is_none())
                .filter_map(|t| t.tie_breaker.map(|tb| (t.local_id, tb)))
                .collect();
            for (our_id, tb) in ours {
                if tb < theirs {
                    // We win: the peer discards its SCCRQ; ignore it.
                    self.stats.ignored += 1;
                    return;
                }
                // We lose (or tie: both discard): drop our own attempt.
                self.tunnels.remove(&our_id);
                self.events.push_back(Event::TunnelDown { tunnel: our_id, reason: DownReason::LostTie });
                if tb == theirs {
                    self.stats.ignored += 1;
                    return;
                }
            }
        }
        let Some(params) = self.accept_params(from, v, transport).cloned() else {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ refused: no tunnels accepted".into() });
            // RFC 2661 4.4.2 / RFC 3931 5.4.2 StopCCN result 4: "Requester
            // is not authorized to establish a control channel".
            let rc = ResultCode::new(stopccn::NOT_AUTHORIZED, None, "no tunnel configured for this peer");
            self.refuse_sccrq(from, transport, v, peer_tid, rc);
            return;
        };
        if params.version != v || params.transport != transport {
            self.stats.refused += 1;
            self.events
                .push_back(Event::Rejected { peer: from, what: format!("SCCRQ for {v:?} over {transport:?} refused") });
            let rc = if params.version != v {
                // Result 5: "Protocol version not supported".
                ResultCode::new(stopccn::BAD_PROTOCOL_VERSION, None, "")
            } else {
                ResultCode::new(stopccn::NOT_AUTHORIZED, None, "not accepted over this transport")
            };
            self.refuse_sccrq(from, transport, v, peer_tid, rc);
            return;
        }
        let half_open = self.tunnels.values().filter(|t| t.peer == from && t.state != TunnelState::Established).count();
        if self.tunnels.len() >= self.cfg.max_tunnels || half_open >= self.cfg.max_half_open_per_peer {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ refused: tunnel limit".into() });
            // Result 2, error 4: "Insufficient resources to handle this
            // operation now".
            let rc = ResultCode::new(stopccn::GENERAL_ERROR, Some(error::NO_RESOURCES), "tunnel limit");
            self.refuse_sccrq(from, transport, v, peer_tid, rc);
            return;
        }
        let Some(cma) = self.responder_cma(from, &params, &m) else {
            let rc = ResultCode::new(stopccn::NOT_AUTHORIZED, None, "SCCRQ without a nonce");
            self.refuse_sccrq(from, transport, v, peer_tid, rc);
            return;
        };
        let id = self.accept_tunnel(now, from, &header, &m, peer_tid, params, cma, None, None);
        self.on_control_connection_request(now, id, &m);
    }

    /// Refuses the tunnel an SCCRQ asks for with a StopCCN carrying the
    /// reason (RFC 2661 4.4.2, RFC 3931 5.4.2), sent once and without
    /// keeping state: the peer's retransmitted SCCRQ gets another one, and a
    /// flood of SCCRQs cannot grow the engine. The StopCCN acknowledges the
    /// SCCRQ (Ns 0, Nr 1) and names, as our Assigned ID, an ID no tunnel
    /// holds. It carries no Message Digest: there is no control connection
    /// whose nonces could sign it.
    fn refuse_sccrq(&mut self, to: SocketAddr, transport: Transport, v: Version, peer_tid: u32, rc: ResultCode) {
        if peer_tid == 0 {
            return;
        }
        let ours = self.alloc_tunnel_id(v);
        let assigned = match v {
            Version::V2 => AvpValue::AssignedTunnelId(ours as u16),
            Version::V3 => AvpValue::AssignedConnectionId(ours),
        };
        let msg = Message::new(MessageType::StopCcn, vec![avp(v, assigned), avp(v, AvpValue::ResultCode(rc))]);
        let header = ControlHeader { version: v, tunnel_id: peer_tid, session_id: 0, ns: 0, nr: 1 };
        match (ControlMessage { header, message: Some(msg) }).encode(transport, None) {
            Ok(bytes) => {
                self.stats.stopccn_sent += 1;
                self.transmits.push_back((to, transport, bytes));
            }
            Err(e) => self.events.push_back(Event::Rejected { peer: to, what: format!("cannot encode: {e}") }),
        }
    }

    /// RFC 3931 4.3 state of a tunnel we answer: our nonce and the one of
    /// the peer's SCCRQ. `None` (counted) when authentication is on and
    /// the SCCRQ brought no nonce.
    fn responder_cma(&mut self, from: SocketAddr, params: &TunnelParams, m: &Message) -> Option<Option<Cma>> {
        let mut cma = self.new_cma(params);
        if let Some(c) = &mut cma {
            c.theirs = m.find(|a| if let AvpValue::ControlAuthNonce(n) = a { Some(n.clone()) } else { None });
            if c.theirs.is_none() {
                self.stats.auth_failures += 1;
                self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ without a nonce".into() });
                return None;
            }
        }
        Some(cma)
    }

    /// Responder: a new tunnel for the peer's SCCRQ `m`, which takes Ns 0
    /// on its channel; returns its ID.
    #[allow(clippy::too_many_arguments)]
    fn accept_tunnel(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &ControlHeader,
        m: &Message,
        peer_id: u32,
        params: TunnelParams,
        cma: Option<Cma>,
        recovers: Option<u32>,
        scs: Option<(u16, u16)>,
    ) -> u32 {
        let id = self.alloc_tunnel_id(params.version);
        let mut channel = Channel::new(self.channel_config(&params));
        let _ = channel.on_receive(now, header.ns, header.nr, Some(Outgoing { session_id: 0, msg: m.clone() }));
        let t = Tunnel {
            state: TunnelState::WaitConnected,
            cma,
            local_id: id,
            peer_id,
            peer: from,
            params,
            channel,
            initiator: false,
            our_challenge: None,
            tie_breaker: None,
            peer_failover: None,
            peer_host_name: Vec::new(),
            last_rx: now,
            sessions: HashMap::new(),
            serial: 0,
            recovers,
            scs,
        };
        self.tunnels.insert(id, t);
        id
    }

    /// The old tunnel a recovery SCCRQ names: ours is its Recover Remote
    /// Tunnel ID, the peer's its Recover Tunnel ID.
    fn recovery_target(&self, m: &Message) -> Option<&Tunnel> {
        let (theirs, ours) = m.find(|a| match a {
            AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } => {
                Some((*recover_tunnel_id, *recover_remote_tunnel_id))
            }
            _ => None,
        })?;
        self.tunnels.get(&ours).filter(|t| t.peer_id == theirs && t.recovers.is_none())
    }

    /// Remote endpoint (or the loser of a double failover): an SCCRQ with
    /// Tunnel Recovery (RFC 4951 3.2.1).
    #[allow(clippy::too_many_arguments)]
    fn on_recovery_sccrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        header: ControlHeader,
        m: Message,
        peer_tid: u32,
        (_, ours): (u32, u32),
    ) {
        let v = header.version;
        // F-RT-8: validate the IDs, the capability of both ends and the
        // version; refuse with StopCCN.
        struct Old {
            local_id: u32,
            state: TunnelState,
            version: Version,
            transport: Transport,
            capable: bool,
            peer: SocketAddr,
            params: TunnelParams,
        }
        let old = self.recovery_target(&m).map(|o| Old {
            local_id: o.local_id,
            state: o.state,
            version: o.params.version,
            transport: o.params.transport,
            capable: o.params.failover.is_some_and(|f| f.control) && o.peer_failover.is_some_and(|f| f.control),
            peer: o.peer,
            params: o.params.clone(),
        });
        let old = old.as_ref();
        let refusal = match old {
            None => Some("recovery of an unknown tunnel"),
            Some(o) if o.version != v || o.transport != transport => {
                Some("recovery with another version or transport than the old tunnel")
            }
            Some(o) if !o.capable => Some("failover capability was not advertised by both ends for the old tunnel"),
            // F-SEC-2: only the peer, or a configured recovery peer.
            Some(o) if o.peer.ip() != from.ip() && !o.params.recovery_peers.contains(&from.ip()) => {
                Some("this address may not recover the tunnel")
            }
            Some(_) => None,
        };
        let params = match old {
            Some(o) => TunnelParams { failover: None, pseudowires: Vec::new(), ..o.params.clone() },
            None => match self.accept_params(from, v, transport) {
                Some(p) => TunnelParams { failover: None, pseudowires: Vec::new(), ..p.clone() },
                None => TunnelParams {
                    version: v,
                    transport,
                    secret: None,
                    hide_avps: false,
                    failover: None,
                    pw_types: Vec::new(),
                    pseudowires: Vec::new(),
                    recovery_peers: Vec::new(),
                    timers: None,
                },
            },
        };
        let old_id = old.map(|o| o.local_id).unwrap_or(ours);
        let old_recovering = old.is_some_and(|o| o.state == TunnelState::Recovering);
        if refusal.is_none() && old_recovering {
            // Double failover (Appendix B): our own recovery tunnel for the
            // same old tunnel is outstanding. F-RT-6/F-RT-7: the tie breaker
            // decides between these two only.
            let theirs = m.find(|a| if let AvpValue::TieBreaker(t) = a { Some(*t) } else { None });
            let mine: Vec<(u32, Option<[u8; 8]>)> = self
                .tunnels
                .values()
                .filter(|t| t.recovers == Some(old_id) && t.state == TunnelState::WaitReply)
                .map(|t| (t.local_id, t.tie_breaker))
                .collect();
            for (rec, tb) in mine {
                if let (Some(tb), Some(theirs)) = (tb, theirs) {
                    if tb < theirs {
                        // We win: the peer drops its recovery tunnel and
                        // answers ours.
                        self.stats.ignored += 1;
                        return;
                    }
                }
                // We lose: ours goes (the old tunnel stays), theirs is
                // answered as the remote endpoint would.
                self.tunnels.remove(&rec);
            }
        }
        let Some(cma) = self.responder_cma(from, &params, &m) else { return };
        // F-RT-9 / F-SEC-2: a suggested window nobody can predict.
        let scs = (self.rng.next_u32() as u16, self.rng.next_u32() as u16);
        let authenticated_now = cma.is_some() || params.secret.is_none();
        let id = self.accept_tunnel(now, from, &header, &m, peer_tid, params, cma, old.map(|_| old_id), Some(scs));
        if let Some(why) = refusal {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: format!("recovery SCCRQ refused: {why}") });
            self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_ERROR, Some(0), why));
            return;
        }
        if authenticated_now {
            // F-CAP-3: the Recovery Time stops once the recovering peer is
            // authenticated (here: its SCCRQ verified, or no secret); the
            // old tunnel now waits for the reset (F-RT-12).
            if let Some(o) = self.tunnels.get_mut(&old_id) {
                o.state = TunnelState::Recovering;
            }
        }
        self.on_control_connection_request(now, id, &m);
    }

    /// Common SCCRQ/SCCRP bookkeeping: peer window, host name, failover.
    fn learn_peer(t: &mut Tunnel, m: &Message) {
        if let Some(w) = m.find(|a| if let AvpValue::ReceiveWindowSize(w) = a { Some(*w) } else { None }) {
            t.channel.set_peer_window(w);
        }
        if let Some(h) = m.find(|a| if let AvpValue::HostName(h) = a { Some(h.clone()) } else { None }) {
            t.peer_host_name = h;
        }
        // RFC 4951 F-CAP-1: remembered per tunnel. W-7: both bits clear is
        // not a capability.
        t.peer_failover = m.find(|a| match a {
            AvpValue::FailoverCapability { control, data, recovery_time_ms } if *control || *data => {
                Some(FailoverCapability { control: *control, data: *data, recovery_time_ms: *recovery_time_ms })
            }
            _ => None,
        });
    }

    /// Responder: answers a new SCCRQ with SCCRP.
    fn on_control_connection_request(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(mut t) = self.tunnels.remove(&id) else { return };
        Self::learn_peer(&mut t, m);
        let their_challenge = m.find(|a| if let AvpValue::Challenge(c) = a { Some(c.clone()) } else { None });
        let mut response = None;
        if let Some(secret) = t.params.secret.clone().filter(|_| t.params.version == Version::V2) {
            if let Some(c) = &their_challenge {
                response = Some(challenge_response(MessageType::Sccrp, &secret, c));
            }
            t.our_challenge = Some(self.random_bytes(16));
        } else if their_challenge.is_some() {
            // Challenged without a secret: "Requester is not authorized".
            self.tunnels.insert(id, t);
            self.stats.auth_failures += 1;
            self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, ""));
            return;
        }
        let msg = self.sccrq_or_sccrp(&t, MessageType::Sccrp, response);
        t.channel.send(now, Outgoing { session_id: 0, msg });
        self.tunnels.insert(id, t);
        self.flush(now, id);
    }

    fn on_tunnel_message(&mut self, now: Instant, id: u32, header: ControlHeader, message: Option<Message>) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        // v3 ACK carries no sequenced message.
        let message = message.filter(|m| m.msg_type != MessageType::Ack);
        let received = t.channel.on_receive(
            now,
            header.ns,
            header.nr,
            message.map(|msg| Outgoing { session_id: header.session_id, msg }),
        );
        t.last_rx = now;
        let delivered = match received {
            Received::Deliver(v) => v,
            Received::Duplicate | Received::OutOfWindow | Received::BadNr => Vec::new(),
        };
        for out in delivered {
            self.on_message(now, id, out.session_id, out.msg);
        }
        self.flush(now, id);
    }

    /// One in-order message of an existing tunnel.
    fn on_message(&mut self, now: Instant, id: u32, header_sid: u16, m: Message) {
        let Some(t) = self.tunnels.get(&id) else { return };
        let v = t.params.version;
        if matches!(t.state, TunnelState::Closing { .. }) {
            // Only acknowledging now.
            self.stats.ignored += 1;
            return;
        }
        if let Err(vio) = validate(v, &m) {
            self.events.push_back(Event::Rejected { peer: t.peer, what: format!("{vio}") });
            let sid = self.session_of(id, header_sid, &m);
            self.apply_reply(now, id, header_sid, vio.reply(), sid);
            return;
        }
        match m.msg_type {
            MessageType::Sccrq => {} // a retransmission, acknowledged by the channel
            MessageType::Sccrp => self.on_sccrp(now, id, &m),
            MessageType::Scccn => self.on_scccn(now, id, &m),
            MessageType::StopCcn => {
                let rc = m
                    .find(|a| if let AvpValue::ResultCode(r) = a { Some(r.clone()) } else { None })
                    .unwrap_or(ResultCode::new(0, None, ""));
                let until = now + self.cfg.close_hold;
                let Some(t) = self.tunnels.get_mut(&id) else { return };
                let was_up = t.state == TunnelState::Established;
                t.state = TunnelState::Closing { until };
                let recovers = t.recovers;
                let sessions: Vec<Session> = t.sessions.drain().map(|(_, s)| s).collect();
                for s in &sessions {
                    self.session_gone(id, s, DownReason::Peer(rc.clone()));
                    self.release_session_id(s.local_id);
                }
                if let Some(old) = recovers {
                    // F-CC-3: after the reset this only ends the recovery
                    // tunnel; before it, the recovery failed.
                    self.recovery_tunnel_gone(old);
                } else if was_up {
                    self.events.push_back(Event::TunnelDown { tunnel: id, reason: DownReason::Peer(rc) });
                }
            }
            MessageType::Hello => {}
            MessageType::Icrq | MessageType::Ocrq => self.on_icrq(now, id, &m),
            MessageType::Icrp | MessageType::Ocrp => self.on_icrp(now, id, header_sid, &m),
            MessageType::Iccn | MessageType::Occn => self.on_iccn(now, id, header_sid, &m),
            MessageType::Cdn => self.on_cdn(id, header_sid, &m),
            MessageType::Sli | MessageType::Wen => {
                let known = self
                    .session_of(id, header_sid, &m)
                    .filter(|sid| self.tunnels.get(&id).is_some_and(|t| t.sessions.contains_key(sid)));
                let Some(sid) = known else {
                    self.stats.ignored += 1;
                    return;
                };
                if m.msg_type == MessageType::Sli {
                    let circuit_active =
                        m.find(|a| if let AvpValue::CircuitStatus { active, .. } = a { Some(*active) } else { None });
                    self.events.push_back(Event::LinkInfo { tunnel: id, local_session_id: sid, circuit_active });
                } else {
                    self.events.push_back(Event::WanError { tunnel: id, local_session_id: sid });
                }
            }
            MessageType::Fsq => self.on_fsq(now, id, &m),
            MessageType::Fsr => self.on_fsr(id, &m),
            // Vendor-specific messages with M=0 are ignored.
            _ => self.stats.ignored += 1,
        }
    }

    /// Our local session ID a session message refers to.
    fn session_of(&self, id: u32, header_sid: u16, m: &Message) -> Option<u32> {
        let t = self.tunnels.get(&id)?;
        match t.params.version {
            Version::V2 => (header_sid != 0).then_some(u32::from(header_sid)),
            Version::V3 => {
                m.find(|a| if let AvpValue::RemoteSessionId(s) = a { Some(*s) } else { None }).filter(|s| *s != 0)
            }
        }
    }

    fn on_sccrp(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(mut t) = self.tunnels.remove(&id) else { return };
        if t.state != TunnelState::WaitReply {
            self.tunnels.insert(id, t);
            self.stop_tunnel(now, id, ResultCode::new(stopccn::FSM_ERROR, None, "unexpected SCCRP"));
            return;
        }
        let peer_tid = match t.params.version {
            Version::V2 => m.find(|a| if let AvpValue::AssignedTunnelId(x) = a { Some(u32::from(*x)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::AssignedConnectionId(x) = a { Some(*x) } else { None }),
        };
        t.peer_id = peer_tid.unwrap_or(0);
        Self::learn_peer(&mut t, m);
        let secret = t.params.secret.clone().filter(|_| t.params.version == Version::V2);
        // RFC 2661 5.1.1: the SCCRP must answer our challenge.
        if !Self::answers_our_challenge(&t, MessageType::Sccrp, m) {
            self.tunnels.insert(id, t);
            self.refuse_unauthenticated(now, id);
            return;
        }
        let their_challenge = m.find(|a| if let AvpValue::Challenge(c) = a { Some(c.clone()) } else { None });
        let mut avps = Vec::new();
        match (&secret, their_challenge) {
            (Some(s), Some(c)) => avps.push(avp(
                t.params.version,
                AvpValue::ChallengeResponse(challenge_response(MessageType::Scccn, s, &c)),
            )),
            (None, Some(_)) => {
                self.stats.auth_failures += 1;
                self.tunnels.insert(id, t);
                self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, "no secret configured"));
                return;
            }
            _ => {}
        }
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Scccn, avps) });
        t.state = TunnelState::Established;
        if let Some(old) = t.recovers {
            // F-CC-2: "With SCS in the SCCRP, the recovery endpoint MUST set
            // Ns and Nr of the recovered tunnel to Suggested Ns and
            // Suggested Nr ... Without SCS both ends MUST reset Ns and Nr
            // to 0."
            let (ns, nr) = m
                .find(|a| match a {
                    AvpValue::SuggestedControlSequence { ns, nr } => Some((*ns, *nr)),
                    _ => None,
                })
                .unwrap_or((0, 0));
            self.tunnels.insert(id, t);
            // The SCCCN leaves before anything on the reset old tunnel: the
            // peer resets on it, and drops what comes before (F-RT-12).
            self.flush(now, id);
            self.reset_recovered(now, old, id, ns, nr, true);
            // F-CC-3: the recovery tunnel has done its job (the SCCCN goes
            // first on its channel).
            self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_CLEAR, None, ""));
            return;
        }
        self.events.push_back(Self::tunnel_up_event(&t));
        self.tunnels.insert(id, t);
    }

    fn on_scccn(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        if t.state != TunnelState::WaitConnected {
            self.stop_tunnel(now, id, ResultCode::new(stopccn::FSM_ERROR, None, "unexpected SCCCN"));
            return;
        }
        if !Self::answers_our_challenge(t, MessageType::Scccn, m) {
            self.refuse_unauthenticated(now, id);
            return;
        }
        t.state = TunnelState::Established;
        if let Some(old) = t.recovers {
            // F-CC-1/F-CC-2: the remote endpoint resets on a valid SCCCN,
            // with the mirror image of what it suggested.
            let (ns, nr) = t.scs.map(|(ns, nr)| (nr, ns)).unwrap_or((0, 0));
            if !self.tunnels.contains_key(&old) {
                // The old tunnel timed out meanwhile: nothing to recover.
                self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_ERROR, Some(0), "old tunnel gone"));
                return;
            }
            self.reset_recovered(now, old, id, ns, nr, false);
            return;
        }
        let up = Self::tunnel_up_event(t);
        self.events.push_back(up);
    }

    /// RFC 2661 5.1.1: true unless we challenged the peer and `m` (of type
    /// `answer_type`) lacks the right Challenge Response. Constant time.
    fn answers_our_challenge(t: &Tunnel, answer_type: MessageType, m: &Message) -> bool {
        let (Some(secret), Some(ours)) = (&t.params.secret, &t.our_challenge) else { return true };
        let want = challenge_response(answer_type, secret, ours);
        let got = m.find(|a| if let AvpValue::ChallengeResponse(r) = a { Some(*r) } else { None });
        got.is_some_and(|g| ct_eq(&g, &want))
    }

    /// StopCCN result 4, "Requester is not authorized".
    fn refuse_unauthenticated(&mut self, now: Instant, id: u32) {
        self.stats.auth_failures += 1;
        self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, "challenge response mismatch"));
    }

    fn tunnel_up_event(t: &Tunnel) -> Event {
        Event::TunnelUp {
            tunnel: t.local_id,
            peer: t.peer,
            peer_host_name: t.peer_host_name.clone(),
            peer_failover: t.peer_failover,
        }
    }

    fn established(&self, id: u32) -> bool {
        self.tunnels.get(&id).is_some_and(|t| t.state == TunnelState::Established)
    }

    fn on_icrq(&mut self, now: Instant, id: u32, m: &Message) {
        if !self.established(id) {
            self.stop_tunnel(now, id, ResultCode::new(stopccn::FSM_ERROR, None, "call request before SCCCN"));
            return;
        }
        let Some(t) = self.tunnels.get(&id) else { return };
        let v = t.params.version;
        let peer_sid = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedSessionId(s) = a { Some(u32::from(*s)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::LocalSessionId(s) = a { Some(*s) } else { None }),
        }
        .unwrap_or(0);
        // A retransmitted ICRQ is caught by the channel.
        if let Some(existing) = t.sessions.values().find(|s| s.peer_id == peer_sid) {
            if existing.state == SessionState::Established {
                // RFC 4951 F-SS-4: "an ICRQ that names an already-established
                // session ID MUST be answered with CDN whose Assigned Session
                // ID is the local session ID, and that session is cleared."
                let sid = existing.local_id;
                self.send_cdn(now, id, sid, ResultCode::new(cdn::GENERAL_ERROR, Some(0), "session ID in use"));
            } else {
                // A second request for a call being set up: ignored.
                self.stats.ignored += 1;
            }
            return;
        }
        let remote_end_id = m.find(|a| if let AvpValue::RemoteEndId(r) = a { Some(r.clone()) } else { None });
        // Our settings for the pseudowire the peer names, if we have any.
        let (params, known) = if v == Version::V3 && !t.params.pseudowires.is_empty() {
            match t.params.pseudowires.iter().find(|p| Some(&p.remote_end_id) == remote_end_id.as_ref()) {
                Some(p) => (p.clone(), true),
                None => (SessionParams::default(), false),
            }
        } else {
            (SessionParams { remote_end_id: remote_end_id.unwrap_or_default(), ..SessionParams::default() }, true)
        };
        let pw_type = m.find(|a| if let AvpValue::PwType(p) = a { Some(*p) } else { None });
        let supported = v == Version::V2 || pw_type.is_some_and(|p| t.params.pw_types.contains(&p));
        let full = t.sessions.len() >= self.cfg.max_sessions_per_tunnel;
        let sid = self.alloc_session_id(id, v);
        let rx_cookie = if known && supported && !full { self.random_bytes(params.cookie_len) } else { Vec::new() };
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let (peer_sublayer, peer_sequencing, tx_cookie) = Self::peer_session_avps(m);
        t.sessions.insert(
            sid,
            Session {
                state: SessionState::WaitConnected,
                outgoing: m.msg_type == MessageType::Ocrq,
                stale: false,
                unconfirmed: false,
                local_id: sid,
                peer_id: peer_sid,
                params: SessionParams { pw_type: pw_type.unwrap_or(params.pw_type), ..params },
                rx_cookie,
                tx_cookie,
                peer_sublayer,
                peer_sequencing,
            },
        );
        if !supported {
            // RFC 3931 5.4.4: unsupported PW type, CDN result 14.
            self.send_cdn(now, id, sid, ResultCode::new(cdn::UNSUPPORTED_PW_TYPE, None, ""));
            return;
        }
        if full {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::NO_FACILITIES_TEMPORARY, None, ""));
            return;
        }
        if !known {
            // No pseudowire of that Remote End ID is configured here: the
            // circuit does not exist, a permanent condition.
            self.send_cdn(now, id, sid, ResultCode::new(cdn::NO_FACILITIES_PERMANENT, None, ""));
            return;
        }
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let avps = match v {
            Version::V2 => vec![avp(v, AvpValue::AssignedSessionId(sid as u16))],
            Version::V3 => {
                let s = &t.sessions[&sid];
                let mut a = vec![
                    avp(v, AvpValue::LocalSessionId(sid)),
                    avp(v, AvpValue::RemoteSessionId(peer_sid)),
                    avp(v, AvpValue::CircuitStatus { new: true, active: true }),
                ];
                a.extend(Self::v3_session_avps(&s.params, &s.rx_cookie));
                a
            }
        };
        let reply = if m.msg_type == MessageType::Ocrq { MessageType::Ocrp } else { MessageType::Icrp };
        let msg = Message::new(reply, avps);
        let msg = self.maybe_hide_id(id, msg);
        if let Some(t) = self.tunnels.get_mut(&id) {
            t.channel.send(now, Outgoing { session_id: peer_sid as u16, msg });
        }
    }

    fn peer_session_avps(m: &Message) -> (bool, bool, Vec<u8>) {
        let sublayer =
            m.find(|a| if let AvpValue::L2SpecificSublayer(x) = a { Some(*x == 1) } else { None }).unwrap_or(false);
        let sequencing =
            m.find(|a| if let AvpValue::DataSequencing(x) = a { Some(*x != 0) } else { None }).unwrap_or(false);
        let cookie =
            m.find(|a| if let AvpValue::AssignedCookie(c) = a { Some(c.clone()) } else { None }).unwrap_or_default();
        (sublayer, sequencing, cookie)
    }

    fn on_icrp(&mut self, now: Instant, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let v = t.params.version;
        let Some(s) = t.sessions.get_mut(&sid) else {
            self.stats.ignored += 1;
            return;
        };
        let reply_kind_ok = s.outgoing == (m.msg_type == MessageType::Ocrp);
        if s.state != SessionState::WaitReply || !reply_kind_ok {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::FSM_ERROR, None, "unexpected call reply"));
            return;
        }
        s.peer_id = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedSessionId(x) = a { Some(u32::from(*x)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::LocalSessionId(x) = a { Some(*x) } else { None }),
        }
        .unwrap_or(0);
        let (peer_sublayer, peer_sequencing, tx_cookie) = Self::peer_session_avps(m);
        s.peer_sublayer = peer_sublayer;
        s.peer_sequencing = peer_sequencing;
        s.tx_cookie = tx_cookie;
        let avps = match v {
            Version::V2 => vec![avp(v, AvpValue::TxConnectSpeed(10_000_000)), avp(v, AvpValue::FramingType(1))],
            Version::V3 => vec![avp(v, AvpValue::LocalSessionId(sid)), avp(v, AvpValue::RemoteSessionId(s.peer_id))],
        };
        let peer_id = s.peer_id;
        let connected = if s.outgoing { MessageType::Occn } else { MessageType::Iccn };
        t.channel.send(now, Outgoing { session_id: peer_id as u16, msg: Message::new(connected, avps) });
        self.session_up(id, sid);
    }

    fn on_iccn(&mut self, now: Instant, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(s) = self.tunnels.get_mut(&id).and_then(|t| t.sessions.get_mut(&sid)) else {
            self.stats.ignored += 1;
            return;
        };
        if s.state != SessionState::WaitConnected || s.outgoing != (m.msg_type == MessageType::Occn) {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::FSM_ERROR, None, "unexpected call connected"));
            return;
        }
        // ICCN may restate the sublayer and sequencing the peer requires.
        if m.has(attr::L2_SPECIFIC_SUBLAYER) || m.has(attr::DATA_SEQUENCING) {
            let (sub, seq, _) = Self::peer_session_avps(m);
            s.peer_sublayer = sub;
            s.peer_sequencing = seq;
        }
        self.session_up(id, sid);
    }

    fn session_up(&mut self, id: u32, sid: u32) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let Some(s) = t.sessions.get_mut(&sid) else { return };
        s.state = SessionState::Established;
        self.dataplane.push_back(DataplaneUpdate::SessionUp {
            tunnel: id,
            version: t.params.version,
            transport: t.params.transport,
            peer: t.peer,
            remote_end_id: s.params.remote_end_id.clone(),
            pw_type: s.params.pw_type,
            local_session_id: sid,
            peer_session_id: s.peer_id,
            rx_cookie: s.rx_cookie.clone(),
            tx_cookie: s.tx_cookie.clone(),
            rx_sublayer: s.params.sublayer || s.params.sequencing,
            tx_sublayer: s.peer_sublayer || s.peer_sequencing,
            rx_sequencing: s.params.sequencing,
            tx_sequencing: s.peer_sequencing,
        });
        self.events.push_back(Event::SessionUp { tunnel: id, local_session_id: sid, peer_session_id: s.peer_id });
    }

    fn on_cdn(&mut self, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let rc = m
            .find(|a| if let AvpValue::ResultCode(r) = a { Some(r.clone()) } else { None })
            .unwrap_or(ResultCode::new(0, None, ""));
        let Some(s) = self.tunnels.get_mut(&id).and_then(|t| t.sessions.remove(&sid)) else {
            self.stats.ignored += 1;
            return;
        };
        self.session_gone(id, &s, DownReason::Peer(rc));
        self.release_session_id(sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_response_matches_rfc_1994_construction() {
        let mut h = Md5::new();
        h.update([2u8]);
        h.update(b"secret");
        h.update(b"challenge");
        let want: [u8; 16] = h.finalize().into();
        assert_eq!(challenge_response(MessageType::Sccrp, b"secret", b"challenge"), want);
        assert!(ct_eq(&want, &want));
        assert!(!ct_eq(&want, &want[..15]));
    }
}
