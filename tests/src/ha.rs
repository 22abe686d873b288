//! Shared pieces of the hot-standby tests, demo and benchmark (issue 14) on
//! [`crate::topology::HaSites`]: the configuration of the pair and of the
//! peer P (one customer pseudowire, sequencing and cookies on), and what
//! the tests read back from the daemons.

use std::path::Path;

use serde_json::Value;

use crate::{
    daemon::{Config, Daemon, Failover, Ha, Session, Tunnel},
    topology::{self, HaSites},
    NetNs, PinDir,
};

/// The customer pseudowire of every hot-standby set-up.
pub fn customer() -> Session {
    Session { cookie_len: 8, sequencing: true, ..Session::new("customer", "ac0") }
}

/// Failover capability with the daemon's defaults.
pub fn failover() -> Option<Failover> {
    Some(Failover::default())
}

/// One daemon of the pair: tunnel `to-p` (it initiates) with the customer
/// pseudowire, and `[ha]` with the service address on the data plane's
/// uplink.
pub fn pair_config(
    pins: &PinDir,
    key: &Path,
    me: &str,
    role: &'static str,
    addrs: (&str, &str),
    takeover: &'static str,
) -> String {
    let t = Tunnel {
        secret: Some("ha-secret".into()),
        failover: failover(),
        sessions: vec![customer()],
        ..Tunnel::new("to-p", topology::HA_P_UP, true)
    };
    pair(pins, key, me, role, addrs, takeover).tunnel(t).toml()
}

/// One daemon of the pair as [`pair_config`] writes it, without its
/// tunnel: `[global]`, the data plane and `[ha]` (the default timers),
/// for set-ups with tunnels of their own (the benchmark's).
pub fn pair(
    pins: &PinDir,
    key: &Path,
    me: &str,
    role: &'static str,
    (listen, partner): (&str, &str),
    takeover: &'static str,
) -> Config {
    let ha = Ha {
        node: me.into(),
        role,
        listen: listen.into(),
        partner: partner.into(),
        key_file: key.to_owned(),
        service_address: topology::HA_SERVICE.into(),
        interface: None,
        takeover,
    };
    Config { reconnect_interval: Some(1), hello_interval: Some(30), ha: Some(ha), ..Config::new(me) }.dataplane(pins)
}

/// The peer P: tunnel `to-service` (passive) to the service address.
pub fn peer_config(pins: &PinDir) -> String {
    peer(Some(pins))
        .tunnel(Tunnel {
            secret: Some("ha-secret".into()),
            failover: failover(),
            sessions: vec![customer()],
            ..Tunnel::new("to-service", topology::HA_SERVICE, false)
        })
        .toml()
}

/// The peer as [`peer_config`] writes it, without its tunnel; `pins`
/// `None`: no data plane (control plane only).
pub fn peer(pins: Option<&PinDir>) -> Config {
    let c = Config { hello_interval: Some(30), ..Config::new("p") };
    match pins {
        Some(p) => c.dataplane(p),
        None => c,
    }
}

/// The tunnel named `name` in a `tunnel list --json`.
pub fn tunnel<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|t| t["name"] == name)
}

/// Tunnel `name` established with an established session.
pub fn up_with_session(list: &Value, name: &str) -> bool {
    tunnel(list, name).is_some_and(|t| {
        t["state"] == "established"
            && t["sessions"].as_array().is_some_and(|s| s.iter().any(|s| s["state"] == "established"))
    })
}

/// The names of `d`'s events so far.
pub fn events(d: &Daemon) -> Vec<String> {
    let out = d.ctl(&["events", "--json"]).expect("events");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .collect()
}

pub fn ping(from: &NetNs, to: &str) -> bool {
    from.command("ping").args(["-c", "3", "-i", "0.1", "-W", "1", to]).output().is_ok_and(|o| o.status.success())
}

/// Whether pings cross within about 20 tries (a resynchronising data
/// channel drops its first packets, RFC 4951 F-DC-3).
pub fn pings_cross(from: &NetNs, to: &str) -> bool {
    (0..20).any(|_| ping(from, to))
}

/// The customer behind the pair reaches the customer behind P.
pub fn ping_across(t: &HaSites) -> bool {
    pings_cross(&t.cust_a, topology::CUST_B)
}

/// Whether `ns` holds the service address on `up0`.
pub fn holds_service(ns: &NetNs) -> bool {
    let out = ns.ip(&["-4", "addr", "show", "dev", "up0"]).expect("addr");
    String::from_utf8_lossy(&out.stdout).contains(topology::HA_SERVICE)
}
