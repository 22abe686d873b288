//! Checks of the configuration's values and cross-references, run before
//! anything is started.

use foldhash::{HashSet, HashSetExt};

use super::{parse_mac, Config, Encapsulation, Global, PwType, Retransmit, SessionConfig, TunnelConfig};
use crate::dataplane;

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

impl SessionConfig {
    /// Checks the values; `key` is the path used in errors.
    pub fn check(&self, key: &str) -> Result<(), (String, String)> {
        self.check_values().map_err(|(k, m)| (format!("{key}.{k}"), m.to_owned()))
    }

    /// Checks the values: the failing key (within the session) and why.
    fn check_values(&self) -> Result<(), (&'static str, &'static str)> {
        let bad = |k, m| Err((k, m));
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
    /// Checks the tunnel's timer keys as they combine with `global`'s.
    pub fn check_timers(&self, key: &str, g: &Global) -> Result<(), (String, String)> {
        check_timers(
            key,
            self.hello_interval.unwrap_or(g.hello_interval),
            &self.retransmit.over(&g.retransmit),
            self.receive_window.unwrap_or(g.receive_window),
        )
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
        // Hashed, and each key path made only for an error: with thousands
        // of sessions these checks were a fifth of reading the file.
        let mut names = HashSet::with_capacity(self.sessions.len());
        let mut ends = HashSet::with_capacity(self.sessions.len());
        for (i, s) in self.sessions.iter().enumerate() {
            let skey = || format!("{key}.session[{i}]");
            s.check_values().map_err(|(k, m)| (format!("{}.{k}", skey()), m.to_owned()))?;
            if !names.insert(s.name.as_str()) {
                return Err((format!("{}.name", skey()), format!("duplicate session name {:?}", s.name)));
            }
            if !ends.insert(s.remote_end_id()) {
                return Err((
                    format!("{}.remote_end_id", skey()),
                    format!("duplicate Remote End ID {:?}", s.remote_end_id()),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
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
        if g.commit_delay_ms > Global::MAX_COMMIT_DELAY_MS {
            return Err((
                "global.commit_delay_ms".into(),
                format!("at most {} (milliseconds)", Global::MAX_COMMIT_DELAY_MS),
            ));
        }
        if let Some(ha) = &self.ha {
            ha.check()?;
            if ha.interface.is_none() && self.dataplane.uplink.is_none() {
                return Err((
                    "ha.interface".into(),
                    "the interface of the service address (or dataplane.uplink)".into(),
                ));
            }
        }
        if let Some(u) = &self.dataplane.uplink {
            if dataplane::validate_ifname(u).is_err() {
                return Err(("dataplane.uplink".into(), "an interface name".into()));
            }
        }
        let mut names = HashSet::with_capacity(self.tunnels.len());
        let mut peers = HashSet::with_capacity(self.tunnels.len());
        let mut interfaces = HashSet::new();
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
}
