//! The daemon's configuration file (TOML). Every key is documented, with
//! its default and unit, in `doc/config.md`; `contrib/l2tp-ctl.toml` is a
//! complete example.
//!
//! Unknown keys are errors that name the key and its line; values are
//! checked here, before anything is started.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use l2tp_proto::{channel::ChannelConfig, wire::Transport};
use serde::{Deserialize, Serialize};

use crate::dataplane::{self, AttachMode, Encap, RxMode};

mod convert;
mod fast;
mod ha;
mod metrics;
mod validate;
mod warnings;

pub use ha::{Ha, HaRole, Takeover};
pub use metrics::Metrics;

pub use warnings::RFC_RETRANSMIT_CAP_MS;

/// A configuration error, said once and clearly (exit code 2). The I/O
/// error of `Read` is part of its message, not a source, so that an error
/// chain printed with `{:#}` does not say it twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {}", read_reason(reason))]
    Read { path: PathBuf, reason: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// A shared secret: never printed, never serialised back out.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Only over the root-only control socket (`tunnel add`), never in
        // output: views carry no secrets.
        s.serialize_str(&self.0)
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: Global,
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<TunnelConfig>,
    /// The hot standby on another host, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<Ha>,
    #[serde(default)]
    pub metrics: Metrics,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// Host Name AVP.
    pub host_name: String,
    /// L2TPv3 Router ID, as an IPv4 address or a number.
    pub router_id: RouterId,
    /// UDP addresses for control messages (port 1701 by default).
    pub listen: Vec<SocketAddr>,
    /// Also listen on IP protocol 115 (L2TPv3 over IP), IPv4 and IPv6.
    pub listen_ip: bool,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub max_tunnels: usize,
    pub max_sessions_per_tunnel: usize,
    pub max_half_open_per_peer: usize,
    /// Seconds between attempts to bring a configured tunnel back up.
    pub reconnect_interval: u64,
    /// Seconds of silence from a peer before a HELLO.
    pub hello_interval: u64,
    pub retransmit: Retransmit,
    /// Our Receive Window Size (control messages).
    pub receive_window: u16,
    /// Milliseconds a session that came up may wait for its store write,
    /// so that a burst of sessions is written in one commit (one fsync).
    pub commit_delay_ms: u64,
}

impl Global {
    /// The longest `commit_delay_ms` accepted.
    pub const MAX_COMMIT_DELAY_MS: u64 = 60_000;
}

impl Default for Global {
    fn default() -> Self {
        Self {
            host_name: hostname(),
            router_id: RouterId(1),
            listen: vec!["0.0.0.0:1701".parse().expect("literal"), "[::]:1701".parse().expect("literal")],
            listen_ip: true,
            state_dir: "/var/lib/l2tp-ctl".into(),
            socket: "/run/l2tp-ctl.sock".into(),
            max_tunnels: 4096,
            max_sessions_per_tunnel: 65_535,
            max_half_open_per_peer: 16,
            reconnect_interval: 5,
            hello_interval: 60,
            retransmit: Retransmit::default(),
            receive_window: 16,
            commit_delay_ms: 20,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "l2tp".into())
}

/// Router ID: `"198.18.0.1"` or `1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterId(pub u32);

impl<'de> Deserialize<'de> for RouterId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum R {
            N(u32),
            S(String),
        }
        match R::deserialize(d)? {
            R::N(n) => Ok(Self(n)),
            R::S(s) => s
                .parse::<std::net::Ipv4Addr>()
                .map(|a| Self(u32::from(a)))
                .map_err(|_| serde::de::Error::custom("router_id: an IPv4 address or a number")),
        }
    }
}

impl Serialize for RouterId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

/// How XDP programs are attached: the `dataplane.xdp_mode` key and the
/// `--mode` of `l2tp-ctl dataplane attach`; [`AttachMode`] is the data
/// plane's side of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native (driver) XDP, generic XDP if the driver refuses.
    #[default]
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
}

impl From<XdpMode> for AttachMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Auto => Self::Auto,
            XdpMode::Native => Self::Native,
            XdpMode::Generic => Self::Generic,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// Program the XDP data plane (off: control plane only).
    pub enabled: bool,
    /// bpffs directory of the pinned programs and maps.
    pub pin_dir: PathBuf,
    pub xdp_mode: XdpMode,
    /// Uplink used by tunnels that name none.
    pub uplink: Option<String>,
    /// Turn IP forwarding on on the uplinks (the next-hop lookup needs it).
    pub enable_forwarding: bool,
    /// Detach and unpin everything on an orderly shutdown.
    pub remove_on_shutdown: bool,
}

impl Default for Dataplane {
    fn default() -> Self {
        Self {
            enabled: true,
            pin_dir: dataplane::DEFAULT_PIN_DIR.into(),
            xdp_mode: XdpMode::Auto,
            uplink: None,
            enable_forwarding: true,
            remove_on_shutdown: true,
        }
    }
}

/// How L2TP is carried: the `encapsulation` key of a tunnel, the
/// `--encap` of the CLI, the stored tunnel record and the API's views.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Encapsulation {
    /// L2TP over UDP (port 1701).
    #[default]
    Udp,
    /// L2TPv3 over IP protocol 115.
    Ip,
}

impl Encapsulation {
    /// The data plane's form: over UDP from port 1701 to `peer_port`.
    pub fn dataplane(self, peer_port: u16) -> Encap {
        match self {
            Self::Udp => Encap::Udp { local_port: 1701, peer_port },
            Self::Ip => Encap::Ip,
        }
    }

    pub fn transport(self) -> Transport {
        match self {
            Self::Udp => Transport::Udp,
            Self::Ip => Transport::Ip,
        }
    }
}

impl From<Transport> for Encapsulation {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => Self::Udp,
            Transport::Ip => Self::Ip,
        }
    }
}

impl fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Ip => "ip",
        })
    }
}

/// One control connection to one peer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// Unique name (the handle in the CLI).
    pub name: String,
    /// Peer address.
    pub peer: IpAddr,
    /// Peer's UDP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Our address towards the peer (default: the kernel's source choice).
    #[serde(default)]
    pub local: Option<IpAddr>,
    #[serde(default = "default_version")]
    pub version: u8,
    #[serde(default)]
    pub encapsulation: Encapsulation,
    /// We send the SCCRQ (else we wait for the peer's).
    #[serde(default = "yes")]
    pub initiate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Hide AVPs in session messages (L2TPv2, needs a secret). L2TPv3
    /// tunnels with a secret always authenticate every control message
    /// (RFC 3931 4.3, Message Digest HMAC-MD5).
    #[serde(default)]
    pub hide_avps: bool,
    /// Uplink interface of this tunnel's pseudowires (default:
    /// `dataplane.uplink`).
    #[serde(default)]
    pub uplink: Option<String>,
    /// Fallback next-hop MAC when the kernel has no neighbour entry.
    #[serde(default)]
    pub next_hop_mac: Option<String>,
    /// L2TPv3 over UDP/IPv6: send UDP checksum 0 (RFC 6935/6936; the peer
    /// must accept it) instead of computing it for every frame.
    #[serde(default)]
    pub udp6_zero_checksum: bool,
    #[serde(default)]
    pub failover: Failover,
    /// Seconds of silence from the peer before a HELLO (default:
    /// `global.hello_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_interval: Option<u64>,
    /// Our Receive Window Size on this control connection (default:
    /// `global.receive_window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_window: Option<u16>,
    /// Reliable-delivery timers of this tunnel; keys not given are
    /// `global.retransmit`'s.
    #[serde(default, skip_serializing_if = "RetransmitOverride::is_empty")]
    pub retransmit: RetransmitOverride,
    #[serde(default, rename = "session")]
    pub sessions: Vec<SessionConfig>,
}

/// `[tunnel.retransmit]`: any of `global.retransmit`'s keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetransmitOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_delay_ms: Option<u64>,
}

impl RetransmitOverride {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn over(&self, g: &Retransmit) -> Retransmit {
        Retransmit {
            initial_ms: self.initial_ms.unwrap_or(g.initial_ms),
            max_ms: self.max_ms.unwrap_or(g.max_ms),
            retries: self.retries.unwrap_or(g.retries),
            ack_delay_ms: self.ack_delay_ms.unwrap_or(g.ack_delay_ms),
        }
    }
}

fn default_port() -> u16 {
    1701
}
fn default_version() -> u8 {
    3
}
fn yes() -> bool {
    true
}

/// Reliable-delivery timers (RFC 2661 5.8, RFC 3931 4.2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retransmit {
    /// First retransmission timeout, milliseconds.
    pub initial_ms: u64,
    /// Cap of the doubling timeout, milliseconds.
    pub max_ms: u64,
    /// Retransmissions before the control connection is declared dead.
    pub retries: u32,
    /// Delay before an explicit acknowledgement, milliseconds.
    pub ack_delay_ms: u64,
}

impl Default for Retransmit {
    fn default() -> Self {
        let c = ChannelConfig::default();
        Self {
            initial_ms: c.retransmit_initial.as_millis() as u64,
            max_ms: c.retransmit_cap.as_millis() as u64,
            retries: c.max_retries,
            ack_delay_ms: c.ack_delay.as_millis() as u64,
        }
    }
}

/// RFC 4951 failover settings of a tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Control channel failover (C bit).
    pub control: bool,
    /// Data channel failover (D bit).
    pub data: bool,
    /// Recovery Time we advertise, milliseconds.
    pub recovery_time_ms: u32,
    /// In-order packets after which a recovered session's Nr follows the
    /// peer (F-DC-3).
    pub resync_n: u16,
    /// Addresses allowed to recover a tunnel of ours (besides `peer`).
    pub recovery_peers: Vec<IpAddr>,
}

impl Default for Failover {
    fn default() -> Self {
        Self { control: true, data: true, recovery_time_ms: 3000, resync_n: 5, recovery_peers: Vec::new() }
    }
}

/// Receive behaviour of a sequenced session: the `receive_mode` key, the
/// `--rx-mode` of the CLI and the stored session record. [`RxMode`] is
/// the data plane's form, with its parameters ([`ReceiveMode::rx_mode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiveMode {
    /// RFC 3931 default: accept packets ahead of Nr, drop older ones.
    #[default]
    AcceptNew,
    /// Drop out-of-sequence packets until --resync-n in-sequence ones arrive.
    Strict,
    /// Failover mode: --resync-n consecutive packets move Nr to them.
    Resync,
}

impl ReceiveMode {
    /// The data plane's receive mode: run length `n`, and whether the
    /// packets of an unconfirmed run are delivered.
    pub fn rx_mode(self, n: u16, deliver_unconfirmed: bool) -> RxMode {
        match self {
            Self::AcceptNew => RxMode::AcceptNew,
            Self::Strict => RxMode::Strict { n },
            Self::Resync => RxMode::Resync { n, deliver_unconfirmed },
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PwType {
    /// Ethernet port (RFC 4448, PW type 5).
    #[default]
    Ethernet,
    /// Ethernet VLAN (PW type 4).
    EthernetVlan,
}

impl PwType {
    pub fn code(self) -> u16 {
        match self {
            Self::Ethernet => 5,
            Self::EthernetVlan => 4,
        }
    }
}

/// One pseudowire (L2TPv3) or call (L2TPv2) on a tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Unique within the tunnel.
    pub name: String,
    /// Remote End ID naming the circuit to the peer (default: `name`).
    #[serde(default)]
    pub remote_end_id: Option<String>,
    /// Attachment interface (customer side).
    pub interface: String,
    /// 802.1Q VLAN of `interface` that is this pseudowire's attachment
    /// circuit (1 to 4094; needs `pw_type = "ethernet-vlan"`). Without it
    /// the circuit is the whole interface (minus its VLAN circuits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub pw_type: PwType,
    /// Length of the cookie we assign: 0, 4 or 8 bytes.
    #[serde(default)]
    pub cookie_len: u8,
    /// Default L2-Specific Sublayer.
    #[serde(default = "yes")]
    pub sublayer: bool,
    /// Sequence numbers on data (needs the sublayer).
    #[serde(default)]
    pub sequencing: bool,
    #[serde(default)]
    pub receive_mode: ReceiveMode,
    /// Run length of the strict and resync modes.
    #[serde(default = "default_resync_n")]
    pub resync_n: u16,
    /// While a resync is pending (resync mode, or after a failover),
    /// deliver the packets of a run not yet confirmed instead of dropping
    /// them.
    #[serde(default)]
    pub resync_deliver: bool,
}

fn default_resync_n() -> u16 {
    SessionConfig::DEFAULT_RESYNC_N
}

/// A MAC address as people write it, `02:00:00:00:00:01`: the
/// `next_hop_mac` key and every MAC option of the CLI.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || "expected a MAC address like 02:00:00:00:00:01".to_owned();
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(bad());
    }
    let mut m = [0; 6];
    for (d, p) in m.iter_mut().zip(parts) {
        *d = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|reason| ConfigError::Read { path: path.to_owned(), reason })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` (`path` is only used in errors). A value
    /// of the wrong type names its key path and line:
    /// `global.max_tunnels (line 2): expected a whole number, got the
    /// string "x"`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let parse_error = |message| ConfigError::Parse { path: path.to_owned(), message };
        let check = |cfg: Config| {
            cfg.check().map_err(|(key, message)| ConfigError::Invalid { path: path.to_owned(), key, message })?;
            Ok(cfg)
        };
        // The plain shape of large files first (see `fast`); anything else,
        // and any file it does not take, through `toml` and its errors.
        if let Some(Ok(cfg)) = fast::parse(text).map(Config::deserialize) {
            return check(cfg);
        }
        let parsed = || toml::Deserializer::parse(text).map_err(|e| parse_error(describe_toml_error(text, &e, None)));
        // Without the key path first (tracking it costs about a tenth of
        // the parse of a large file); a file that fails is read again with
        // it, for the error message.
        let cfg: Config = match serde::Deserialize::deserialize(parsed()?) {
            Ok(cfg) => cfg,
            Err(plain) => {
                let e = match serde_path_to_error::deserialize::<_, Config>(parsed()?) {
                    Err(e) => e,
                    Ok(_) => return Err(parse_error(describe_toml_error(text, &plain, None))),
                };
                let key = e.path().to_string();
                return Err(parse_error(describe_toml_error(
                    text,
                    e.inner(),
                    Some(key.as_str()).filter(|k| *k != "."),
                )));
            }
        };
        check(cfg)
    }
}

/// Why a file could not be read, once, in words.
fn read_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "a directory, not a file".into(),
        _ => format!("cannot read it: {e}"),
    }
}

/// A TOML error with its line, and its key path when known (`key`), in
/// words an operator reads rather than serde's (`expected usize`).
fn describe_toml_error(text: &str, e: &toml::de::Error, key: Option<&str>) -> String {
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = explain(e.message().trim());
    match (key, line) {
        (Some(k), Some(l)) => format!("{k} (line {l}): {msg}"),
        (Some(k), None) => format!("{k}: {msg}"),
        (None, Some(l)) => format!("line {l}: {msg}"),
        (None, None) => msg,
    }
}

/// serde's wording (`invalid type: string "x", expected usize`) told as
/// `expected a whole number, got the string "x"`; anything else as is.
fn explain(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = msg.strip_prefix(prefix).and_then(|m| m.split_once(", expected ")) {
            return format!("expected {}, got {}", expected_words(expected), got_words(got));
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let keys = expected.trim_start_matches("one of ").replace('`', "");
        return match keys.as_str() {
            "" | "fields" => format!("unknown key {}", field.replace('`', "")),
            k => format!("unknown key; the keys here are {k}"),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let quote = |s: &str| s.replace('`', "\"");
        return format!("expected {}, got {}", quote(expected.trim_start_matches("one of ")), quote(got));
    }
    // FromStr errors of addresses, as std words them.
    match msg {
        "invalid socket address syntax" => return format!("expected {}", expected_words("socket address")),
        "invalid IP address syntax" => return format!("expected {}", expected_words("IP address")),
        _ => {}
    }
    if let Some(field) = msg.strip_prefix("missing field ") {
        return format!("the key {} is missing", field.replace('`', ""));
    }
    msg.to_owned()
}

fn expected_words(e: &str) -> String {
    match e {
        "usize" | "u64" => "a whole number".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "i64" | "isize" | "i32" => "a whole number".into(),
        "a boolean" => "true or false".into(),
        "f64" | "f32" => "a number".into(),
        "a sequence" => "a list".into(),
        "socket address" => "an address and port, like \"198.18.0.1:1701\" or \"[2001:2::1]:1701\"".into(),
        "IP address" => "an IP address, like \"198.18.0.2\" or \"2001:2::2\"".into(),
        "a map" | "struct" => "a table".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e => e.into(),
    }
}

fn got_words(g: &str) -> String {
    let tick = |s: &str| s.trim_matches('`').to_owned();
    if let Some(s) = g.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for p in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = g.strip_prefix(p) {
            return tick(v);
        }
    }
    match g {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        g => g.into(),
    }
}

#[cfg(test)]
mod tests;
