//! What the configuration means to the engine and the data plane: the
//! accessors and conversions of the config types.

use std::{net::SocketAddr, time::Duration};

use l2tp_proto::{
    channel::ChannelConfig,
    engine::{EngineConfig, FailoverCapability, SessionParams, TunnelParams, TunnelTimers},
    wire::{Transport, Version},
};

use super::{parse_mac, Config, Encapsulation, Global, Secret, SessionConfig, TunnelConfig};
use crate::dataplane::RxMode;

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
}

impl TunnelConfig {
    /// The configured sessions by Remote End ID (unique in a tunnel: see
    /// `check`), for lookups once per stored session.
    pub fn sessions_by_end(&self) -> foldhash::HashMap<&str, &SessionConfig> {
        self.sessions.iter().map(|c| (c.remote_end_id(), c)).collect()
    }

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
}

impl Config {
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
            // Issue 14 synchronous replication: the message that lets the
            // peer consider a session established waits for the standby.
            hold_for_replication: self.ha.as_ref().is_some_and(|h| h.sync),
            ..EngineConfig::default()
        }
    }
}
