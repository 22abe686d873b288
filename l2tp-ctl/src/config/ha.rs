//! `[ha]`: the hot standby on another host (issue 14). Two daemons with
//! the same tunnel configuration; the peers know one service address,
//! held by whichever daemon is active.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use l2tp_ha::{PartnerConfig, Role, TakeoverMode};
use serde::{Deserialize, Serialize};

/// How the standby decides that a silent partner is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Takeover {
    /// Probe the service address (ARP probe / neighbour solicitation) and
    /// take over only when nobody answers.
    #[default]
    Probe,
    /// Leave it to VRRP: keepalived's `notify_master` runs `l2tp-ctl ha
    /// takeover` (see `contrib/keepalived.conf.example`).
    External,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ha {
    /// This daemon's name in the pair (unique; the smaller name wins a tie
    /// of two actives of one term).
    pub node: String,
    /// The role when the store holds none (first start).
    #[serde(default = "standby")]
    pub role: HaRole,
    /// Address of our end of the partner channel (TCP).
    pub listen: SocketAddr,
    /// The partner's end.
    pub partner: SocketAddr,
    /// File holding the pre-shared key of the partner channel (at least 16
    /// bytes of secret; never logged).
    pub key_file: PathBuf,
    /// The service address(es) the peers know, at most one per family.
    pub service_address: Vec<IpAddr>,
    /// Interface that carries the service address (default: the data
    /// plane's uplink).
    #[serde(default)]
    pub interface: Option<String>,
    /// Hello interval on the partner channel, ms.
    #[serde(default = "hello_ms")]
    pub hello_ms: u64,
    /// The partner is unreachable after this long without a message, ms.
    #[serde(default = "dead_ms")]
    pub dead_ms: u64,
    #[serde(default)]
    pub takeover: Takeover,
    /// Synchronous replication: a session is acknowledged by the standby
    /// before the peer may consider it established.
    #[serde(default = "yes")]
    pub sync: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaRole {
    Active,
    Standby,
}

fn standby() -> HaRole {
    HaRole::Standby
}
fn hello_ms() -> u64 {
    100
}
fn dead_ms() -> u64 {
    300
}
fn yes() -> bool {
    true
}

impl Ha {
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("ha.{k}"), m.to_owned()));
        if self.node.is_empty() || self.node.len() > 64 || self.node.contains(char::is_whitespace) {
            return bad("node", "1 to 64 characters, no whitespace");
        }
        if self.listen == self.partner {
            return bad("partner", "another address than ha.listen");
        }
        if self.service_address.is_empty() {
            return bad("service_address", "at least one address");
        }
        let v4 = self.service_address.iter().filter(|a| a.is_ipv4()).count();
        if v4 > 1 || self.service_address.len() - v4 > 1 {
            return bad("service_address", "at most one IPv4 and one IPv6 address");
        }
        if self.service_address.iter().any(|a| a.is_unspecified() || a.is_multicast() || a.is_loopback()) {
            return bad("service_address", "unicast addresses");
        }
        if !(10..=10_000).contains(&self.hello_ms) {
            return bad("hello_ms", "10 to 10000 (milliseconds)");
        }
        if self.dead_ms < 2 * self.hello_ms || self.dead_ms > 60_000 {
            return bad("dead_ms", "at least twice hello_ms, at most 60000 (milliseconds)");
        }
        if let Some(i) = &self.interface {
            if crate::dataplane::validate_ifname(i).is_err() {
                return bad("interface", "an interface name");
            }
        }
        Ok(())
    }

    /// The partner state machine's settings.
    pub fn partner_config(&self) -> PartnerConfig {
        PartnerConfig {
            hello: Duration::from_millis(self.hello_ms),
            dead: Duration::from_millis(self.dead_ms),
            probe: l2tp_ha::probe_time(Duration::from_millis(self.dead_ms)),
            takeover: match self.takeover {
                Takeover::Probe => TakeoverMode::Probe,
                Takeover::External => TakeoverMode::External,
            },
            ..PartnerConfig::new(
                self.node.clone(),
                match self.role {
                    HaRole::Active => Role::Active,
                    HaRole::Standby => Role::Standby,
                },
            )
        }
    }

    /// The service address of `peer`'s family.
    pub fn service_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.service_address.iter().copied().find(|a| a.is_ipv4() == peer.is_ipv4())
    }
}
