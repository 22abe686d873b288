//! The daemon's configuration file (TOML). Every key is documented, with
//! its default and unit, in `doc/config.md`; `contrib/l2tp-ctl.toml` is a
//! complete example.
//!
//! Unknown keys are errors that name the key and its line; values are
//! checked here, before anything is started.

use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use l2tp_proto::{
    channel::ChannelConfig,
    engine::{EngineConfig, FailoverCapability, SessionParams, TunnelParams, TunnelTimers},
    wire::{Transport, Version},
};
use serde::{Deserialize, Serialize};

use crate::dataplane::{self, AttachMode, Encap, RxMode};

/// A configuration error, said once and clearly (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
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

/// Checks timer values; `key` prefixes the key named in errors.
fn check_timers(key: &str, hello: u64, r: &Retransmit, window: u16) -> Result<(), (String, String)> {
    if hello == 0 {
        return Err((format!("{key}.hello_interval"), "at least 1 (seconds)".into()));
    }
    if r.initial_ms == 0 || r.max_ms < r.initial_ms || r.retries == 0 {
        return Err((format!("{key}.retransmit"), "initial_ms >= 1, max_ms >= initial_ms, retries >= 1".into()));
    }
    if window == 0 {
        return Err((format!("{key}.receive_window"), "at least 1 (messages)".into()));
    }
    Ok(())
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

impl SessionConfig {
    /// `resync_n` when not given.
    pub const DEFAULT_RESYNC_N: u16 = 5;

    /// The attachment circuit: interface and VLAN (0: the whole interface).
    pub fn circuit(&self) -> (&str, u16) {
        (&self.interface, self.vlan.unwrap_or(0))
    }

    /// The attachment circuit as people write it: `eth2` or `eth2.100`.
    pub fn circuit_name(&self) -> String {
        match self.vlan {
            Some(v) => format!("{} VLAN {v}", self.interface),
            None => format!("interface {}", self.interface),
        }
    }

    pub fn remote_end_id(&self) -> &str {
        self.remote_end_id.as_deref().unwrap_or(&self.name)
    }

    /// What the engine negotiates for this pseudowire.
    pub fn engine_params(&self) -> SessionParams {
        SessionParams {
            pw_type: self.pw_type.code(),
            remote_end_id: self.remote_end_id().as_bytes().to_vec(),
            cookie_len: usize::from(self.cookie_len),
            sublayer: self.sublayer || self.sequencing,
            sequencing: self.sequencing,
        }
    }

    pub fn rx_mode(&self) -> RxMode {
        self.receive_mode.rx_mode(self.resync_n, self.resync_deliver)
    }

    /// Checks the values; `key` is the path used in errors.
    pub fn check(&self, key: &str) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("{key}.{k}"), m.to_owned()));
        if self.name.is_empty() || self.name.len() > 64 {
            return bad("name", "1 to 64 characters");
        }
        if dataplane::validate_ifname(&self.interface).is_err() {
            return bad("interface", "an interface name: 1 to 15 bytes, no '/', ':' or whitespace");
        }
        if let Some(v) = self.vlan {
            if !(1..=4094).contains(&v) {
                return bad("vlan", "a VLAN ID from 1 to 4094");
            }
            if self.pw_type != PwType::EthernetVlan {
                return bad("vlan", "needs pw_type = \"ethernet-vlan\" (RFC 4448 Ethernet VLAN pseudowire)");
            }
        }
        if self.remote_end_id().is_empty() || self.remote_end_id().len() > 255 {
            return bad("remote_end_id", "1 to 255 bytes");
        }
        if !matches!(self.cookie_len, 0 | 4 | 8) {
            return bad("cookie_len", "0, 4 or 8 (bytes)");
        }
        if self.sequencing && !self.sublayer {
            return bad("sequencing", "needs sublayer = true (RFC 3931 CDN result 15)");
        }
        if self.resync_n == 0 {
            return bad("resync_n", "at least 1 (packets)");
        }
        Ok(())
    }
}

impl TunnelConfig {
    pub fn version(&self) -> Version {
        if self.version == 2 {
            Version::V2
        } else {
            Version::V3
        }
    }

    pub fn transport(&self) -> Transport {
        self.encapsulation.transport()
    }

    /// Where the peer's control messages come from / go to.
    pub fn peer_addr(&self) -> SocketAddr {
        match self.encapsulation {
            Encapsulation::Udp => SocketAddr::new(self.peer, self.port),
            Encapsulation::Ip => SocketAddr::new(self.peer, 0),
        }
    }

    /// The secret, read from `secret_file` if that is where it is.
    pub fn load_secret(&self) -> Result<Option<Secret>, (String, String)> {
        match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => Err(("secret_file".into(), "give either secret or secret_file, not both".into())),
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(p)) => match std::fs::read_to_string(p) {
                Ok(s) if !s.trim_end_matches(['\r', '\n']).is_empty() => {
                    Ok(Some(Secret(s.trim_end_matches(['\r', '\n']).to_owned())))
                }
                Ok(_) => Err(("secret_file".into(), format!("{} is empty", p.display()))),
                Err(e) => Err(("secret_file".into(), format!("{}: {e}", p.display()))),
            },
            (None, None) => Ok(None),
        }
    }

    /// Engine parameters, with the secret resolved.
    /// This tunnel's timers: its own keys over `global`'s.
    pub fn timers(&self, g: &Global) -> TunnelTimers {
        let r = self.retransmit.over(&g.retransmit);
        TunnelTimers {
            channel: ChannelConfig {
                retransmit_initial: Duration::from_millis(r.initial_ms),
                retransmit_cap: Duration::from_millis(r.max_ms),
                max_retries: r.retries,
                ack_delay: Duration::from_millis(r.ack_delay_ms),
                receive_window: self.receive_window.unwrap_or(g.receive_window),
            },
            hello_interval: Duration::from_secs(self.hello_interval.unwrap_or(g.hello_interval)),
        }
    }

    /// Checks the tunnel's timer keys as they combine with `global`'s.
    pub fn check_timers(&self, key: &str, g: &Global) -> Result<(), (String, String)> {
        check_timers(
            key,
            self.hello_interval.unwrap_or(g.hello_interval),
            &self.retransmit.over(&g.retransmit),
            self.receive_window.unwrap_or(g.receive_window),
        )
    }

    pub fn tunnel_params(&self, secret: Option<&Secret>, g: &Global) -> TunnelParams {
        let f = &self.failover;
        TunnelParams {
            version: self.version(),
            transport: self.transport(),
            secret: secret.map(|s| s.as_bytes().to_vec()),
            hide_avps: self.hide_avps,
            failover: (f.control || f.data).then_some(FailoverCapability {
                control: f.control,
                data: f.data,
                recovery_time_ms: f.recovery_time_ms,
            }),
            pw_types: vec![4, 5],
            pseudowires: self.sessions.iter().map(SessionConfig::engine_params).collect(),
            recovery_peers: f.recovery_peers.clone(),
            timers: Some(self.timers(g)),
        }
    }

    pub fn next_hop_mac(&self) -> Option<[u8; 6]> {
        self.next_hop_mac.as_deref().and_then(|m| parse_mac(m).ok())
    }

    /// Checks the values; `key` is the path used in errors (`tunnel[0]`).
    pub fn check(&self, key: &str) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("{key}.{k}"), m));
        if self.name.is_empty() || self.name.len() > 64 || self.name.contains(char::is_whitespace) {
            return bad("name", "1 to 64 characters, no whitespace".into());
        }
        if !matches!(self.version, 2 | 3) {
            return bad("version", "2 or 3".into());
        }
        if self.version == 2 && self.encapsulation == Encapsulation::Ip {
            return bad("encapsulation", "L2TPv2 runs over UDP only".into());
        }
        if self.peer.is_unspecified() || self.peer.is_multicast() {
            return bad("peer", "a unicast address".into());
        }
        if let Some(l) = self.local {
            if l.is_ipv4() != self.peer.is_ipv4() {
                return bad("local", "same address family as peer".into());
            }
        }
        if self.port == 0 {
            return bad("port", "1 to 65535".into());
        }
        let secret = self.load_secret().map_err(|(k, m)| (format!("{key}.{k}"), m))?;
        if self.hide_avps && secret.is_none() {
            return bad("hide_avps", "needs a secret".into());
        }
        if let Some(u) = &self.uplink {
            if dataplane::validate_ifname(u).is_err() {
                return bad("uplink", "an interface name".into());
            }
        }
        if let Some(m) = &self.next_hop_mac {
            if let Err(e) = parse_mac(m) {
                return bad("next_hop_mac", e);
            }
        }
        if self.failover.resync_n == 0 {
            return bad("failover.resync_n", "at least 1 (packets)".into());
        }
        if self.failover.recovery_time_ms > 600_000 {
            return bad("failover.recovery_time_ms", "at most 600000 (milliseconds)".into());
        }
        let mut names = BTreeSet::new();
        let mut ends = BTreeSet::new();
        for (i, s) in self.sessions.iter().enumerate() {
            let skey = format!("{key}.session[{i}]");
            s.check(&skey)?;
            if !names.insert(s.name.as_str()) {
                return Err((format!("{skey}.name"), format!("duplicate session name {:?}", s.name)));
            }
            if !ends.insert(s.remote_end_id()) {
                return Err((
                    format!("{skey}.remote_end_id"),
                    format!("duplicate Remote End ID {:?}", s.remote_end_id()),
                ));
            }
        }
        Ok(())
    }
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

/// The smallest retransmission cap the RFCs ask for: RFC 3931 4.2 "SHOULD
/// be no less than 8 seconds", RFC 2661 5.8 "MUST" for L2TPv2. A smaller
/// `retransmit.max_ms` is the operator's choice and is honoured; `config
/// check` and the daemon warn about it ([`Config::warnings`]).
pub const RFC_RETRANSMIT_CAP_MS: u64 = 8000;

fn retransmit_cap_warning(key: &str, max_ms: u64) -> Option<String> {
    (max_ms < RFC_RETRANSMIT_CAP_MS).then(|| {
        format!(
            "{key}.retransmit.max_ms = {max_ms}: below the {RFC_RETRANSMIT_CAP_MS} ms the RFCs ask for \
             (RFC 3931 4.2 SHOULD, RFC 2661 5.8 MUST for L2TPv2); used as configured"
        )
    })
}

impl TunnelConfig {
    /// Legal values worth a warning (`key`: `tunnel[0]` or the tunnel's
    /// name); the global ones are [`Config::warnings`]'.
    pub fn warnings(&self, key: &str) -> Vec<String> {
        self.retransmit.max_ms.and_then(|ms| retransmit_cap_warning(key, ms)).into_iter().collect()
    }
}

impl Config {
    /// Legal values worth a warning: a retransmission cap under 8 s.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = retransmit_cap_warning("global", self.global.retransmit.max_ms).into_iter().collect();
        for (i, t) in self.tunnels.iter().enumerate() {
            w.extend(t.warnings(&format!("tunnel[{i}]")));
        }
        w
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` (`path` is only used in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: describe_toml_error(text, &e) })?;
        cfg.check().map_err(|(key, message)| ConfigError::Invalid { path: path.to_owned(), key, message })?;
        Ok(cfg)
    }

    /// Checks every value and the cross-references.
    pub fn check(&self) -> Result<(), (String, String)> {
        let g = &self.global;
        if g.host_name.is_empty() || g.host_name.len() > 255 {
            return Err(("global.host_name".into(), "1 to 255 bytes".into()));
        }
        if g.listen.is_empty() {
            return Err(("global.listen".into(), "at least one address".into()));
        }
        if g.max_tunnels == 0 || g.max_sessions_per_tunnel == 0 || g.max_half_open_per_peer == 0 {
            return Err(("global.max_*".into(), "limits must be at least 1".into()));
        }
        if g.reconnect_interval == 0 {
            return Err(("global.reconnect_interval".into(), "at least 1 (seconds)".into()));
        }
        check_timers("global", g.hello_interval, &g.retransmit, g.receive_window)?;
        if let Some(u) = &self.dataplane.uplink {
            if dataplane::validate_ifname(u).is_err() {
                return Err(("dataplane.uplink".into(), "an interface name".into()));
            }
        }
        let mut names = BTreeSet::new();
        let mut peers = BTreeSet::new();
        let mut interfaces = BTreeSet::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            let key = format!("tunnel[{i}]");
            t.check(&key)?;
            t.check_timers(&key, g)?;
            if !names.insert(t.name.as_str()) {
                return Err((format!("{key}.name"), format!("duplicate tunnel name {:?}", t.name)));
            }
            if !peers.insert((t.peer, t.version, t.encapsulation)) {
                return Err((
                    format!("{key}.peer"),
                    format!("another L2TPv{} tunnel over {:?} already goes to {}", t.version, t.encapsulation, t.peer),
                ));
            }
            if self.dataplane.enabled && t.version == 3 && !t.sessions.is_empty() && self.uplink_of(t).is_none() {
                return Err((format!("{key}.uplink"), "pseudowires need an uplink (here or dataplane.uplink)".into()));
            }
            for (j, s) in t.sessions.iter().enumerate() {
                if !interfaces.insert(s.circuit()) {
                    return Err((
                        format!("{key}.session[{j}].{}", if s.vlan.is_some() { "vlan" } else { "interface" }),
                        format!("{} already carries another session", s.circuit_name()),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn uplink_of<'a>(&'a self, t: &'a TunnelConfig) -> Option<&'a str> {
        t.uplink.as_deref().or(self.dataplane.uplink.as_deref())
    }

    pub fn tunnel(&self, name: &str) -> Option<&TunnelConfig> {
        self.tunnels.iter().find(|t| t.name == name)
    }

    /// Engine-wide settings.
    pub fn engine(&self) -> EngineConfig {
        let g = &self.global;
        EngineConfig {
            host_name: g.host_name.clone(),
            router_id: g.router_id.0,
            max_tunnels: g.max_tunnels,
            max_sessions_per_tunnel: g.max_sessions_per_tunnel,
            max_half_open_per_peer: g.max_half_open_per_peer,
            accept: None,
            hello_interval: Duration::from_secs(g.hello_interval),
            channel: ChannelConfig {
                retransmit_initial: Duration::from_millis(g.retransmit.initial_ms),
                retransmit_cap: Duration::from_millis(g.retransmit.max_ms),
                max_retries: g.retransmit.retries,
                ack_delay: Duration::from_millis(g.retransmit.ack_delay_ms),
                receive_window: g.receive_window,
            },
            ..EngineConfig::default()
        }
    }
}

/// A TOML error with its line, and for unknown keys the key's name.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().trim().to_owned();
    match line {
        Some(l) => format!("line {l}: {msg}"),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let c = parse("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n").expect("valid");
        let t = &c.tunnels[0];
        assert_eq!((t.version, t.port, t.encapsulation, t.initiate), (3, 1701, Encapsulation::Udp, true));
        assert_eq!((c.global.hello_interval, c.global.receive_window), (60, 16));
        assert_eq!(t.failover, Failover::default());
        assert!(c.dataplane.enabled && c.global.listen_ip);
    }

    #[test]
    fn vlan_circuits_share_an_interface_and_are_checked() {
        let pw = |name: &str, vlan: &str| {
            format!("[[tunnel.session]]\nname = \"{name}\"\ninterface = \"ac0\"\npw_type = \"ethernet-vlan\"\n{vlan}\n")
        };
        let head = "[dataplane]\nuplink = \"up0\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n";
        let c = parse(&format!("{head}{}{}", pw("a", "vlan = 10"), pw("b", "vlan = 11"))).expect("two VLANs of ac0");
        assert_eq!(c.tunnels[0].sessions[1].circuit(), ("ac0", 11));
        for (body, key) in [
            (format!("{}{}", pw("a", "vlan = 10"), pw("b", "vlan = 10")), "tunnel[0].session[1].vlan"),
            (pw("a", "vlan = 4095"), "tunnel[0].session[0].vlan"),
            (pw("a", "vlan = 0"), "tunnel[0].session[0].vlan"),
            ("[[tunnel.session]]\nname = \"a\"\ninterface = \"ac0\"\nvlan = 5\n".into(), "tunnel[0].session[0].vlan"),
        ] {
            let e = parse(&format!("{head}{body}")).expect_err("invalid");
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn per_tunnel_timers_override_the_global_ones_key_by_key() {
        let c = parse(
            "[global]\nhello_interval = 30\nreceive_window = 32\n[global.retransmit]\nretries = 7\n\
             [[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\nhello_interval = 5\n[tunnel.retransmit]\ninitial_ms = 250\n\
             [[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
        )
        .expect("valid");
        let a = c.tunnels[0].timers(&c.global);
        assert_eq!(a.hello_interval, Duration::from_secs(5));
        assert_eq!(a.channel.retransmit_initial, Duration::from_millis(250));
        assert_eq!((a.channel.max_retries, a.channel.receive_window), (7, 32), "the rest from [global]");
        let b = c.tunnels[1].timers(&c.global);
        assert_eq!((b.hello_interval, b.channel.retransmit_initial), (Duration::from_secs(30), Duration::from_secs(1)));
        assert_eq!(c.tunnels[0].tunnel_params(None, &c.global).timers, Some(a));
        for (extra, key) in [
            ("hello_interval = 0\n", "tunnel[0].hello_interval"),
            ("receive_window = 0\n", "tunnel[0].receive_window"),
            ("[tunnel.retransmit]\ninitial_ms = 20000\n", "tunnel[0].retransmit"),
            ("[tunnel.retransmit]\nretrys = 3\n", "retrys"),
        ] {
            let e = parse(&format!("[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n{extra}")).expect_err(key);
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn retransmit_cap_under_8_s_is_legal_and_warned_about() {
        let c = parse(
            "[global.retransmit]\nmax_ms = 4000\n[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n\
             [tunnel.retransmit]\nmax_ms = 2000\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
        )
        .expect("legal");
        assert_eq!(c.tunnels[0].timers(&c.global).channel.retransmit_cap, Duration::from_millis(2000), "honoured");
        assert_eq!(c.tunnels[1].timers(&c.global).channel.retransmit_cap, Duration::from_millis(4000));
        let w = c.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("global.retransmit.max_ms = 4000") && w[0].contains("8000"), "{w:?}");
        assert!(w[1].starts_with("tunnel[0].retransmit.max_ms = 2000"), "{w:?}");
        let quiet = parse("[global.retransmit]\nmax_ms = 8000\n[[tunnel]]\nname = \"a\"\npeer = \"198.18.0.2\"\n")
            .expect("legal");
        assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
        assert!(parse("").expect("defaults").warnings().is_empty(), "the default cap is not warned about");
    }

    #[test]
    fn one_mac_parser() {
        assert_eq!(parse_mac("02:00:00:00:0a:FF"), Ok([2, 0, 0, 0, 0x0a, 0xff]));
        for bad in
            ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "2:00:00:00:00:01", "+2:00:00:00:00:01", "zz:00:00:00:00:01"]
        {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse(
            "[global]\nhost_name = \"a\"\n\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nhelo_interval = 5\n",
        )
        .expect_err("unknown key");
        assert!(e.contains("helo_interval") && e.contains("line 7"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nversion = 4\n", "tunnel[0].version"),
            ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nversion = 2\nencapsulation = \"ip\"\n", "encapsulation"),
            ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nhide_avps = true\n", "tunnel[0].hide_avps"),
            (
                "[dataplane]\nuplink = \"up0\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel.session]]\nname = \"p\"\ninterface = \"ac0\"\ncookie_len = 3\n",
                "tunnel[0].session[0].cookie_len",
            ),
            (
                "[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.3\"\n",
                "tunnel[1].name",
            ),
            (
                "[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\n[[tunnel.session]]\nname = \"p\"\ninterface = \"ac0\"\n",
                "tunnel[0].uplink",
            ),
            ("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nsecret_file = \"/nonexistent/x\"\n", "secret_file"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{key}: {e}");
        }
        let e = parse("[[tunnel]]\nname = \"b\"\npeer = \"not-an-address\"\n").expect_err("bad address");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = parse("[[tunnel]]\nname = \"b\"\npeer = \"198.18.0.2\"\nsecret = \"hunter2\"\n").expect("valid");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let dir = std::env::temp_dir().join(format!("l2tp-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in ["pe-b.secret", "lns.secret"] {
            std::fs::write(dir.join(f), "example-secret\n").expect("secret");
        }
        let text =
            include_str!("../../contrib/l2tp-ctl.toml").replace("/etc/l2tp-ctl/", &format!("{}/", dir.display()));
        let c = parse(&text);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let c = c.expect("contrib/l2tp-ctl.toml");
        assert_eq!(c.tunnels.len(), 3);
        assert_eq!(c.tunnels[0].sessions.len(), 2);
    }
}
