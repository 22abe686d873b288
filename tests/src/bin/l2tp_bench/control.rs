//! Control-plane measurements: two daemons in namespaces, `tunnels` L2TPv3
//! tunnels of `sessions` pseudowires each, one peer address pair per tunnel
//! (the responder tells its configured tunnels apart by peer address).
//!
//! - setup: from the start of the initiating daemon to the last session
//!   established on both ends, and its resident memory then (both daemons
//!   started afresh, once and again in every round);
//! - recovery (RFC 4951, control channel): SIGKILL of the initiating daemon
//!   and a restart on the same state; from the restart to every tunnel
//!   recovered and every session confirmed by the peer's FSR on both ends;
//!   With `control_and_data`, A's pinned data plane (programs, maps, links)
//!   is removed too, so the restart rebuilds it from the store first.
//! - re-establishment, for comparison: SIGTERM (StopCCN to the peer) and a
//!   start from scratch; from the signal to the last session established.
//!
//! Every tunnel has its own attachment interface on each side, and its
//! sessions are Ethernet VLAN pseudowires on VLANs 1, 2, ... of it, with
//! sequence numbers, all installed in the XDP data plane.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use l2tp_tests::{
    daemon::{Config, Daemon, Failover, Session, Tunnel},
    topology::TwoSites,
    PinDir,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);

pub struct Results {
    tunnels: usize,
    sessions: usize,
    setup_s: Vec<f64>,
    recovery_ms: Vec<f64>,
    recovery_data_ms: Vec<f64>,
    reestablish_ms: Vec<f64>,
    rss: Vec<f64>,
}

impl Results {
    pub fn json(&self) -> Value {
        let med = |v: &[f64]| if v.is_empty() { f64::NAN } else { super::stats(v).1 };
        let min = |v: &[f64]| if v.is_empty() { f64::NAN } else { super::stats(v).0 };
        let total = (self.tunnels * self.sessions) as f64;
        json!({
            "tunnels": self.tunnels,
            "sessions": self.tunnels * self.sessions,
            "setup_sessions_per_s": super::r1(total / med(&self.setup_s)),
            "recovery_ms": {
                "control_only": super::r1(med(&self.recovery_ms)),
                "control_only_min": super::r1(min(&self.recovery_ms)),
                "control_and_data": super::r1(med(&self.recovery_data_ms)),
                "control_and_data_min": super::r1(min(&self.recovery_data_ms)),
            },
            "reestablish_ms": super::r1(med(&self.reestablish_ms)),
            "reestablish_ms_min": super::r1(min(&self.reestablish_ms)),
            "recovery_speedup": super::r1(med(&self.reestablish_ms) / med(&self.recovery_ms)),
            "rss_mb_10k_sessions": super::r1(med(&self.rss)),
            "rss_mb_10k_sessions_max": super::r1(self.rss.iter().copied().fold(0.0, f64::max)),
            "setup_sessions_per_s_best": super::r1(total / min(&self.setup_s)),
            "dataplane": "on: every session installed in the XDP maps, sequencing on",
        })
    }
}

fn addr_a(i: usize) -> String {
    format!("198.18.{}.{}", 2 + i / 250, 1 + i % 250)
}
fn addr_b(i: usize) -> String {
    format!("198.18.{}.{}", 100 + i / 250, 1 + i % 250)
}

fn config(me: &str, initiate: bool, tunnels: usize, sessions: usize, pins: &PinDir) -> String {
    let mut c = Config::new(me).dataplane(pins);
    for t in 0..tunnels {
        let peer = if initiate { addr_b(t) } else { addr_a(t) };
        c = c.tunnel(Tunnel {
            secret: Some("bench-secret".into()),
            failover: Some(Failover { recovery_time_ms: Some(10_000), ..Failover::default() }),
            sessions: (0..sessions)
                .map(|s| Session {
                    vlan: Some(s as u16 + 1),
                    sequencing: true,
                    ..Session::new(&format!("s{s}"), &format!("c{t}"))
                })
                .collect(),
            ..Tunnel::new(&format!("t{t}"), &peer, initiate)
        });
    }
    c.toml()
}

/// One address per tunnel on each side, with a host route whose preferred
/// source is that tunnel's address.
fn addresses(t: &TwoSites, tunnels: usize) -> Result<()> {
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..tunnels {
        a.push_str(&format!(
            "addr add {}/32 dev up0\nroute add {}/32 dev up0 src {}\n",
            addr_a(i),
            addr_b(i),
            addr_a(i)
        ));
        b.push_str(&format!(
            "addr add {}/32 dev up0\nroute add {}/32 dev up0 src {}\n",
            addr_b(i),
            addr_a(i),
            addr_b(i)
        ));
        // The tunnel's attachment interface (its sessions are VLANs of it).
        for side in [&mut a, &mut b] {
            side.push_str(&format!("link add c{i} type veth peer name c{i}p\nlink set c{i} up\nlink set c{i}p up\n"));
        }
    }
    for (ns, batch) in [(&t.pe_a, a), (&t.pe_b, b)] {
        let path = std::env::temp_dir().join(format!("l2tp-bench-{}-{}.ip", std::process::id(), ns.name()));
        std::fs::write(&path, batch)?;
        let r = ns.ip(&["-batch", &path.display().to_string()]);
        let _ = std::fs::remove_file(&path);
        r?;
    }
    Ok(())
}

fn sessions_established(d: &Daemon) -> Result<u64> {
    let s = d.json(&["status"])?;
    Ok(s["sessions_established"].as_u64().unwrap_or(0))
}

fn wait_sessions(d: &Daemon, want: u64, what: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if sessions_established(d).unwrap_or(0) >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: {} of {want} sessions after {WAIT:?}", sessions_established(d).unwrap_or(0));
        }
        std::thread::sleep(POLL);
    }
}

/// Every tunnel recovered, every session established and confirmed by the
/// peer's FSR (RFC 4951 3.3) on both ends: the last session confirmed.
fn wait_recovered(a: &Daemon, b: &Daemon, tunnels: usize, sessions: u64) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    let synced = |d: &Daemon, need_recovered: bool| -> (usize, usize) {
        let v = d.json(&["failover", "status"]).ok();
        let a = v.as_ref().and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let recovered = a.iter().filter(|t| !need_recovered || t["last_event"] == "recovered").count();
        let unconfirmed: usize =
            a.iter().map(|t| t["unconfirmed_sessions"].as_u64().unwrap_or(u64::MAX) as usize).sum();
        (recovered, unconfirmed)
    };
    loop {
        let (done, pending_a) = synced(a, true);
        if done >= tunnels && pending_a == 0 && sessions_established(a).unwrap_or(0) >= sessions {
            let (_, pending_b) = synced(b, false);
            if pending_b == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("recovery: {done} of {tunnels} tunnels recovered, {pending_a} sessions unconfirmed after {WAIT:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb / 1024.0)
}

pub fn run(tunnels: usize, sessions: usize, rounds: usize) -> Result<Results> {
    let total = (tunnels * sessions) as u64;
    let t = TwoSites::new()?;
    addresses(&t, tunnels)?;
    let level = std::env::var("L2TP_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let level = level.as_str();
    let (pins_a, pins_b) = (PinDir::new("bench-a"), PinDir::new("bench-b"));
    let mut b = Daemon::start_logging(&t.pe_b, "bench-b", &config("pe-b", false, tunnels, sessions, &pins_b), level)?;
    let start = Instant::now();
    let mut a = Daemon::start_logging(&t.pe_a, "bench-a", &config("pe-a", true, tunnels, sessions, &pins_a), level)?;
    wait_sessions(&a, total, "setup")?;
    wait_sessions(&b, total, "setup (responder)")?;
    let mut r = Results {
        tunnels,
        sessions,
        setup_s: vec![start.elapsed().as_secs_f64()],
        recovery_ms: Vec::new(),
        recovery_data_ms: Vec::new(),
        reestablish_ms: Vec::new(),
        rss: vec![rss_mb(a.pid().context("daemon pid")?)?],
    };
    if let Ok(dir) = std::env::var("L2TP_BENCH_KEEP_LOGS") {
        std::fs::write(format!("{dir}/a.log"), a.log())?;
        std::fs::write(format!("{dir}/b.log"), b.log())?;
    }
    eprintln!("bench: {total} sessions set up in {:.2} s, {:.1} MB resident", r.setup_s[0], r.rss[0]);
    for round in 0..rounds {
        // Recovery: SIGKILL, restart on the same state.
        a.kill();
        let t0 = Instant::now();
        a.spawn(&t.pe_a)?;
        wait_recovered(&a, &b, tunnels, total).with_context(|| a.log())?;
        r.recovery_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_sessions(&b, total, "peer after recovery")?;
        // Control and data: the pinned data plane goes too.
        a.kill();
        std::fs::remove_dir_all(pins_a.path()).context("removing A's pins")?;
        let t0 = Instant::now();
        a.spawn(&t.pe_a)?;
        wait_recovered(&a, &b, tunnels, total).with_context(|| a.log())?;
        r.recovery_data_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_sessions(&b, total, "peer after recovery")?;
        // Re-establishment: orderly stop (StopCCN), start from scratch.
        let t0 = Instant::now();
        a.signal(libc::SIGTERM);
        a.wait(WAIT)?;
        a.spawn(&t.pe_a)?;
        wait_sessions(&a, total, "re-establishment")?;
        r.reestablish_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_sessions(&b, total, "peer after re-establishment")?;
        // Another clean setup sample: both ends stopped (SIGTERM: nothing
        // kept), B started, then A; to the last session on both ends.
        for d in [&mut a, &mut b] {
            d.signal(libc::SIGTERM);
            d.wait(WAIT)?;
        }
        b.spawn(&t.pe_b)?;
        let t1 = Instant::now();
        a.spawn(&t.pe_a)?;
        wait_sessions(&a, total, "setup")?;
        wait_sessions(&b, total, "setup (responder)")?;
        r.setup_s.push(t1.elapsed().as_secs_f64());
        r.rss.push(rss_mb(a.pid().context("daemon pid")?)?);
        eprintln!(
            "bench: control round {}/{rounds}: recovery {:.0} ms (control and data {:.0} ms), re-establishment {:.0} ms",
            round + 1,
            r.recovery_ms[round],
            r.recovery_data_ms[round],
            r.reestablish_ms[round]
        );
    }
    if let Ok(dir) = std::env::var("L2TP_BENCH_KEEP_LOGS") {
        std::fs::write(format!("{dir}/a.log"), a.log())?;
        std::fs::write(format!("{dir}/b.log"), b.log())?;
    }
    drop(b);
    Ok(r)
}
