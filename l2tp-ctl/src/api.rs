//! The control API between `l2tp-ctl` client commands and the daemon: one
//! JSON request per line on a Unix stream socket (mode 0600), one JSON
//! response per line; `events` keeps the connection and streams one
//! [`EventView`] per line. Nothing here carries a secret back out.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use l2tp_common::{session::SessionStats, wire::V3_SEQ_MASK as SEQ_MASK};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Encapsulation, SessionConfig, TunnelConfig},
    dataplane::SessionTable,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    TunnelList,
    TunnelShow {
        name: String,
    },
    TunnelAdd {
        tunnel: Box<TunnelConfig>,
    },
    TunnelDelete {
        name: String,
    },
    SessionList {
        tunnel: Option<String>,
    },
    SessionShow {
        tunnel: String,
        name: String,
    },
    SessionAdd {
        tunnel: String,
        session: SessionConfig,
    },
    SessionDelete {
        tunnel: String,
        name: String,
    },
    Stats,
    FailoverStatus,
    /// RFC 4951 F-SS-2/3: query the peer's state of some sessions of a
    /// tunnel (all established ones when `sessions` is empty) with FSQ.
    FailoverQuery {
        tunnel: String,
        #[serde(default)]
        sessions: Vec<String>,
    },
    /// What `GET /metrics` needs, cheaply (no per-CPU data-plane reads:
    /// the metrics task reads those itself, off the event loop).
    Metrics,
    /// Streams events until the client hangs up.
    Events,
    Reload,
    /// The hot standby: role, partner state, term, replication lag.
    HaStatus,
    /// Take over now (keepalived's notify_master, `takeover = "external"`).
    HaTakeover,
    /// Hand the active role to the standby (planned maintenance).
    HaSwitchover,
    /// `keep`: a maintenance stop that leaves tunnels, sessions and the
    /// data plane in place for the next start to recover.
    Shutdown {
        keep: bool,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(clippy::large_enum_variant, reason = "one per request, never stored")]
pub enum Response {
    Ok(Reply),
    Error(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reply {
    Done {
        message: String,
    },
    Status(StatusView),
    Tunnels {
        tunnels: Vec<TunnelView>,
    },
    Tunnel(TunnelView),
    Sessions {
        sessions: Vec<SessionView>,
    },
    Session(SessionView),
    Stats(StatsView),
    Failover {
        tunnels: Vec<FailoverView>,
    },
    Ha(HaView),
    Metrics(MetricsView),
    /// First line of an event stream.
    Following,
}

/// The daemon's side of a scrape (`Request::Metrics`): names, states and
/// engine counters, gathered without a syscall per session. The data-plane
/// counters of `sessions` are read from the pinned maps by the metrics
/// task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MetricsView {
    pub control: ControlStats,
    /// The data plane's pin directory (absent: no data plane).
    pub dataplane: Option<String>,
    pub tunnels: Vec<TunnelMetrics>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TunnelMetrics {
    pub name: String,
    /// As [`TunnelView::state`]: "down" when configured but not connected.
    pub state: String,
    /// Both ends advertised control channel failover (RFC 4951 F-CAP-4).
    pub control_recovery: bool,
    /// Control messages sent and not yet acknowledged.
    pub unacknowledged: usize,
    /// Control messages of the tunnel's current control connection:
    /// received (ZLB and ACK excluded), sent (retransmissions included),
    /// retransmitted, and failed authentication.
    #[serde(default)]
    pub messages_received: u64,
    #[serde(default)]
    pub messages_sent: u64,
    #[serde(default)]
    pub retransmissions: u64,
    #[serde(default)]
    pub auth_failures: u64,
    pub sessions_configured: usize,
    pub sessions_established: usize,
    pub stale_sessions: usize,
    pub unconfirmed_sessions: usize,
    /// Sessions installed in the data plane.
    pub sessions: Vec<SessionMetrics>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionMetrics {
    pub name: String,
    pub local_id: u32,
}

/// The hot standby as `ha status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HaView {
    pub node: String,
    /// "active" or "standby".
    pub role: String,
    /// "startup", "normal", "recover", "communications-interrupted" or
    /// "partner-down".
    pub partner_state: String,
    pub term: u64,
    /// The partner channel is up.
    pub connected: bool,
    /// The last update made (active) or applied (standby).
    pub seq: u64,
    /// Replication lag (active): updates the standby has not acknowledged,
    /// and the age of the oldest.
    pub unacknowledged: u64,
    pub oldest_unacknowledged_ms: Option<u64>,
    pub service_address: Vec<std::net::IpAddr>,
    pub takeovers: u64,
    /// When this daemon last took over (Unix ms), if it did since it
    /// started.
    #[serde(default)]
    pub last_takeover_ms: Option<u64>,
    /// Standby: replicated sessions installed in the data plane, inactive
    /// until a takeover, and those that could not be (installed at the
    /// takeover instead).
    #[serde(default)]
    pub warm_sessions: u64,
    #[serde(default)]
    pub warm_failed: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
    pub config: String,
    pub tunnels_configured: usize,
    pub tunnels_established: usize,
    pub sessions_established: usize,
    pub dataplane: Option<String>,
    /// When each start-up step ended, in order (Unix ms): `run`,
    /// `config_loaded`, `store_opened`, `dataplane_opened`,
    /// `tunnels_added`, `previous_run_recovered` (the store read, the data
    /// plane rebuilt if it had to be, and every recovery SCCRQ queued),
    /// `api_up`.
    #[serde(default)]
    pub startup: Vec<(String, f64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FailoverBits {
    pub control: bool,
    pub data: bool,
    pub recovery_time_ms: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TunnelView {
    pub name: String,
    /// "down" when configured but not connected.
    pub state: String,
    pub local_id: Option<u32>,
    pub peer_id: Option<u32>,
    pub peer: String,
    pub version: u8,
    pub encapsulation: Encapsulation,
    pub initiator: Option<bool>,
    pub peer_host_name: Option<String>,
    pub local_failover: Option<FailoverBits>,
    pub peer_failover: Option<FailoverBits>,
    /// Control channel: next Ns we send, next Nr we expect.
    pub ns: Option<u16>,
    pub nr: Option<u16>,
    pub sessions: Vec<SessionView>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionView {
    pub tunnel: String,
    pub name: String,
    pub state: String,
    pub local_id: Option<u32>,
    pub peer_id: Option<u32>,
    pub remote_end_id: String,
    pub interface: Option<String>,
    /// 802.1Q VLAN of the interface (absent: the whole interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub pw_type: u16,
    pub sequencing: bool,
    pub stale: bool,
    pub dataplane: Option<DataplaneView>,
}

/// Per-session data-plane counters (summed over CPUs) and sequence state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataplaneView {
    #[serde(flatten)]
    pub counters: SessionStats,
    /// Next Ns we send and next Nr we expect (24-bit space).
    pub next_ns: u32,
    pub next_nr: u32,
    /// Installed inactive on a hot standby (forwarding nothing until a
    /// takeover).
    #[serde(default)]
    pub standby: bool,
}

impl DataplaneView {
    /// The session receiving `local_session_id`, if installed.
    pub fn read(table: &SessionTable, local_session_id: u32) -> Option<Self> {
        let idx = table.index_of(local_session_id)?;
        let st = table.state(idx).ok()?;
        let standby = table.config(idx).ok()?.flags & l2tp_common::session::flags::STANDBY != 0;
        Some(Self {
            counters: table.stats(idx).ok()?,
            next_ns: st.tx_ns & SEQ_MASK,
            next_nr: st.rx_nr & SEQ_MASK,
            standby,
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatsView {
    pub control: ControlStats,
    pub dataplane_global: Vec<(String, u64)>,
    pub sessions: Vec<SessionView>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ControlStats {
    pub datagrams: u64,
    pub malformed: u64,
    pub unknown_tunnel: u64,
    pub auth_failures: u64,
    pub refused: u64,
    pub stopccn_sent: u64,
    pub cdn_sent: u64,
    pub ignored: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FailoverView {
    pub tunnel: String,
    pub state: String,
    pub local: Option<FailoverBits>,
    pub peer: Option<FailoverBits>,
    /// Both ends advertised control channel failover (RFC 4951 F-CAP-2).
    pub control_recovery: bool,
    /// Both ends advertised data channel failover.
    pub data_recovery: bool,
    pub stale_sessions: Vec<u32>,
    /// Sessions queried with FSQ after a recovery whose FSR has not come
    /// yet: 0 once the session state is synchronised.
    #[serde(default)]
    pub unconfirmed_sessions: usize,
    pub last_event: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// "tunnel-up", "tunnel-down", "session-up", "session-down",
    /// "failure-detected", "tunnel-resumed", ...
    pub event: String,
    pub tunnel: Option<String>,
    pub tunnel_id: Option<u32>,
    pub session: Option<String>,
    pub session_id: Option<u32>,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the daemon is not running (no socket at {0}); start it with `l2tp-ctl daemon --config FILE`")]
    NotRunning(String),
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon sent something unreadable: {0}")]
    Protocol(#[from] serde_json::Error),
    #[error("the daemon closed the connection")]
    Closed,
    #[error("{0}")]
    Daemon(String),
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let shown = path.display().to_string();
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning(shown.clone())
            }
            _ => ClientError::Connect { path: shown.clone(), source: e },
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        // Event streams come in bursts (one event per session): large reads.
        Ok(Self { reader: BufReader::with_capacity(64 * 1024, stream), writer })
    }

    /// Sends one request and reads its response.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        match self.read::<Response>()? {
            Response::Ok(r) => Ok(r),
            Response::Error(e) => Err(ClientError::Daemon(e)),
        }
    }

    /// Reads the next line as `T` (event streams).
    pub fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, ClientError> {
        let mut line = String::new();
        self.next_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    /// The next line into `line` (cleared first, newline kept).
    fn next_line(&mut self, line: &mut String) -> Result<(), ClientError> {
        line.clear();
        if self.reader.read_line(line)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Reads the next line into `line` (cleared first, newline kept), as
    /// the daemon wrote it, after checking that it is one JSON value:
    /// what `events --json` passes on without decoding and encoding each
    /// event again (a recovery streams one per session).
    pub fn read_json_line(&mut self, line: &mut String) -> Result<(), ClientError> {
        self.next_line(line)?;
        serde_json::from_str::<serde::de::IgnoredAny>(line)?;
        Ok(())
    }

    /// Whether a line (or part of one) has arrived that [`Client::read`]
    /// has not returned yet.
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// How long [`Client::read`] waits (`None`: for ever, event streams).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(t)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn json_lines_pass_through_as_sent_and_anything_else_is_refused() {
        let (mut daemon, ours) = UnixStream::pair().expect("socket pair");
        let writer = ours.try_clone().expect("clone");
        let mut c = Client { reader: BufReader::new(ours), writer };
        let ev = r#"{"time_ms":1,"event":"session-confirmed","tunnel":"t0","tunnel_id":7,"session":"s0","session_id":9,"detail":""}"#;
        daemon.write_all(format!("{ev}\n{{\"half\":\nnot json\n").as_bytes()).expect("write");
        drop(daemon);
        let mut line = String::new();
        c.read_json_line(&mut line).expect("an event");
        assert_eq!(line, format!("{ev}\n"), "unchanged");
        assert!(matches!(c.read_json_line(&mut line), Err(ClientError::Protocol(_))), "a broken line is an error");
        assert!(matches!(c.read_json_line(&mut line), Err(ClientError::Protocol(_))));
        assert!(matches!(c.read_json_line(&mut line), Err(ClientError::Closed)));
    }
}
