//! The engine's public types: configuration, parameters, commands'
//! errors, events, data-plane updates and the views it reports.

use std::{net::SocketAddr, time::Duration};

use crate::{
    channel::ChannelConfig,
    wire::{ResultCode, Transport, Version},
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
    /// Synchronous replication to a standby: the message that lets the peer
    /// consider a session established (our ICCN/OCCN when we place the
    /// call, our ICRP/OCRP when the peer does) waits until the daemon has
    /// replicated the session ([`Event::SessionToReplicate`], then
    /// [`crate::engine::Engine::session_replicated`]).
    pub hold_for_replication: bool,
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
            hold_for_replication: false,
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
    SessionUp(SessionUp),
    SessionDown { tunnel: TunnelId, local_session_id: u32 },
}

/// A session established: what its data plane needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUp {
    pub tunnel: TunnelId,
    pub version: Version,
    pub transport: Transport,
    pub peer: SocketAddr,
    /// The pseudowire (L2TPv3 Remote End ID) and its type.
    pub remote_end_id: Vec<u8>,
    pub pw_type: u16,
    pub local_session_id: u32,
    pub peer_session_id: u32,
    /// Cookie the peer sends (we assigned it) and cookie we send.
    pub rx_cookie: Vec<u8>,
    pub tx_cookie: Vec<u8>,
    /// Sublayer and sequence numbers on data we receive / send.
    pub rx_sublayer: bool,
    pub tx_sublayer: bool,
    pub rx_sequencing: bool,
    pub tx_sequencing: bool,
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
        /// Those of `sessions` with sequence numbers in either direction:
        /// the only ones whose data channel has an Ns to follow.
        sequenced: Vec<u32>,
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
    /// With [`EngineConfig::hold_for_replication`]: the session as it will
    /// be if the peer considers it established; the message that tells the
    /// peer so is held until [`crate::engine::Engine::session_replicated`].
    SessionToReplicate {
        tunnel: TunnelId,
        session: RestoredSession,
    },
    /// A datagram was dropped or answered with an error (counted).
    Rejected {
        peer: SocketAddr,
        what: String,
    },
}

/// A tunnel as [`Engine::tunnel_summary`] reports it: state and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelSummary {
    pub state: TunnelStatus,
    pub sessions: usize,
    pub established: usize,
    /// Queried with FSQ, no FSR yet (RFC 4951 3.3).
    pub unconfirmed: usize,
    pub local_failover: Option<FailoverCapability>,
    pub peer_failover: Option<FailoverCapability>,
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
    /// This tunnel's reliable channel counters (messages in and out,
    /// retransmissions, duplicates, ...).
    pub channel: crate::channel::ChannelStats,
    /// Messages of this tunnel that failed authentication (RFC 3931 4.3,
    /// or a hidden AVP that did not unhide).
    pub auth_failures: u64,
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
