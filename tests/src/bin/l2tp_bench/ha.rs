//! Hot standby (issue 14): a pair A (active) and B (standby) in front of
//! peers C on `HaSites`, `tunnels` L2TPv3 tunnels of `sessions`
//! pseudowires each, the same tunnels as the control-plane run, the
//! default `[ha]` timers (`hello_ms` 100, `dead_ms` 300, `takeover =
//! "probe"`, `sync = true`).
//!
//! The pair speaks from its one service address, and a daemon keeps one
//! tunnel per peer address, so every tunnel has its own peer: one daemon C
//! per tunnel, all in P's namespace, each listening on an address of its
//! own on P's uplink (control plane only: one XDP program per uplink).
//!
//! Each round, in a fresh topology with fresh peers:
//! - setup without `[ha]`: A alone, holding the service address itself
//!   (added by hand, the source of the route to the peers), from the
//!   first tunnel up on a peer to the last session up on a peer; then
//!   SIGTERM (StopCCN), the address given back;
//! - setup with the standby in sync: B started, then A; the same window;
//!   A's `ha status` sampled meanwhile (replication lag);
//! - host death: A SIGKILLed and its links removed (as the host-death
//!   test does); from the kill to the last session confirmed on a peer
//!   (`session-confirmed`, C's FSQ answered by B) or tunnel recovered.
//!
//! Times are the daemons' own events (`time_ms`), streamed over their API
//! sockets from before each phase; the waits poll the API in process.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use l2tp_ctl::api::{Client, EventView, FailoverView, HaView, Reply, Request, Response, SessionView, StatusView};
use l2tp_tests::{
    daemon::{Config, Daemon, TempDir},
    ha,
    topology::{self, HaSites},
    PinDir,
};
use serde_json::{json, Value};

use super::control::{tunnel, unix_ms};

const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
/// How often A's replication lag is sampled during the setup.
const LAG_EVERY: Duration = Duration::from_millis(5);
/// The peers' addresses: 198.18.16.1, ... on P's uplink, routed to the
/// uplink segment by A and B.
const PEERS_NET: &str = "198.18.16.0/20";
const MAX_TUNNELS: usize = 16 * 250;

fn addr_c(i: usize) -> String {
    format!("198.18.{}.{}", 16 + i / 250, 1 + i % 250)
}

/// One round's measurements (ms; event times are whole ms).
#[derive(Default)]
struct Round {
    /// First tunnel up to last session up, at the peers: without `[ha]`,
    /// and with the standby in sync.
    setup_plain_ms: f64,
    setup_sync_ms: f64,
    /// The same, from the start of A's process.
    setup_plain_from_start_ms: f64,
    setup_sync_from_start_ms: f64,
    lag_max_ms: f64,
    lag_max_unacknowledged: f64,
    lag_samples: usize,
    /// The standby's partner came up (ms from A's start) and the first
    /// session went up at a peer: sync held every session only if the
    /// first is earlier.
    partner_up_ms: Option<f64>,
    first_session_up_ms: Option<f64>,
    warm_sessions: f64,
    /// From the kill of A.
    phases: Vec<(&'static str, f64)>,
    takeover_ms: f64,
    takeover_polled_ms: f64,
    sessions_before: usize,
    sessions_lost: usize,
    confirmed_events: usize,
}

pub struct Results {
    tunnels: usize,
    sessions: usize,
    dead_ms: u64,
    hello_ms: u64,
    rounds: Vec<Round>,
}

impl Results {
    /// `control`: the same run's `control` object (restart recovery and
    /// setup rate), for the goal and the second ratio.
    pub fn json(&self, control: Option<&Value>) -> Value {
        let med = |f: &dyn Fn(&Round) -> Option<f64>| {
            let v: Vec<f64> = self.rounds.iter().filter_map(f).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                super::stats(&v).1
            }
        };
        let max = |f: &dyn Fn(&Round) -> f64| self.rounds.iter().map(f).fold(f64::NAN, f64::max);
        let total = (self.tunnels * self.sessions) as f64;
        let plain = med(&|r| Some(r.setup_plain_ms));
        let sync = med(&|r| Some(r.setup_sync_ms));
        let takeover = med(&|r| Some(r.takeover_ms));
        let lost = self.rounds.iter().map(|r| r.sessions_lost).max().unwrap_or(0);
        let mut phases = serde_json::Map::new();
        if let Some(r0) = self.rounds.first() {
            for (k, _) in &r0.phases {
                phases.insert((*k).into(), super::r1(med(&|r| r.phases.iter().find(|p| p.0 == *k).map(|p| p.1))));
            }
        }
        let control_rate = control.and_then(|c| c["setup_sessions_per_s"].as_f64());
        let restart = control.and_then(|c| c["recovery_ms"]["control_and_data"].as_f64());
        let limit = restart.map(|r| 1.2 * r);
        let value = takeover - self.dead_ms as f64;
        let sync_rate = total / (sync / 1e3);
        // The control run's rate is from the start of the initiating
        // daemon: compared with the same window here.
        let sync_from_start = med(&|r| Some(r.setup_sync_from_start_ms));
        json!({
            "tunnels": self.tunnels,
            "sessions": self.tunnels * self.sessions,
            "rounds": self.rounds.len(),
            "timers": { "hello_ms": self.hello_ms, "dead_ms": self.dead_ms, "takeover": "probe", "sync": true },
            "takeover_ms": super::r1(takeover),
            "takeover_ms_max": super::r1(max(&|r| r.takeover_ms)),
            "takeover_polled_ms": super::r1(med(&|r| Some(r.takeover_polled_ms))),
            "detect_ms": super::r1(med(&|r| r.phases.iter().find(|p| p.0 == "b_partner_down_ms").map(|p| p.1))),
            "sessions_established_at_kill": self.rounds.iter().map(|r| r.sessions_before).min().unwrap_or(0),
            "sessions_lost": lost,
            "events_session_confirmed_at_peers": self.rounds.iter().map(|r| r.confirmed_events).min().unwrap_or(0),
            "replication_lag_ms": super::r1(max(&|r| r.lag_max_ms)),
            "replication_lag_unacknowledged": super::r1(max(&|r| r.lag_max_unacknowledged)),
            "replication_lag_samples": self.rounds.iter().map(|r| r.lag_samples).sum::<usize>(),
            "warm_sessions": super::r1(med(&|r| Some(r.warm_sessions))),
            "setup_ms": {
                "without_ha": super::r1(plain),
                "sync": super::r1(sync),
                "without_ha_from_start": super::r1(med(&|r| Some(r.setup_plain_from_start_ms))),
                "sync_from_start": super::r1(sync_from_start),
            },
            "setup_sessions_per_s": {
                "without_ha": super::r1(total / (plain / 1e3)),
                "sync": super::r1(sync_rate),
            },
            "sync_setup_ratio": (plain > 0.0 && sync > 0.0).then(|| ((plain / sync) * 100.0).round() / 100.0),
            "sync_setup_ratio_vs_control": control_rate
                .map(|c| ((total / (sync_from_start / 1e3) / c) * 100.0).round() / 100.0),
            "partner_up_before_first_session": self.rounds.iter().all(|r| match (r.partner_up_ms, r.first_session_up_ms) {
                (Some(p), Some(s)) => p <= s,
                _ => false,
            }),
            "phases": phases,
            "goal": {
                "takeover_minus_dead_ms": super::r1(value),
                "limit_ms": limit.map_or(Value::Null, super::r1),
                "restart_recovery_control_and_data_ms": restart.map_or(Value::Null, super::r1),
                "holds": limit.map(|l| value <= l && lost == 0),
            },
        })
    }
}

/// The pair's daemon `me`: [`ha::pair`] with the benchmark's tunnels, one
/// to each peer.
fn pair_config(
    pins: &PinDir,
    key: &Path,
    me: &str,
    role: &'static str,
    addrs: (&str, &str),
    tunnels: usize,
    sessions: usize,
) -> Config {
    let mut c = ha::pair(pins, key, me, role, addrs, "probe");
    for i in 0..tunnels {
        c = c.tunnel(tunnel(i, &addr_c(i), true, sessions));
    }
    c
}

/// Peer `i`: [`ha::peer`] without a data plane, its tunnel to the service
/// address, listening on its own address only.
fn peer_config(i: usize, sessions: usize) -> Result<String> {
    let c = Config { host_name: format!("c{i}"), ..ha::peer(None) }
        .tunnel(tunnel(i, topology::HA_SERVICE, false, sessions))
        .toml();
    let any = "listen = [\"0.0.0.0:1701\"]";
    ensure!(c.contains(any), "the peer's configuration has no {any}");
    Ok(c.replace(any, &format!("listen = [\"{}:1701\"]", addr_c(i))))
}

/// The peers' addresses on P's uplink, the route to them on A and B, and
/// every tunnel's attachment interface on A and B.
fn prepare(t: &HaSites, tunnels: usize) -> Result<()> {
    let mut p = String::new();
    let mut pair = format!("route add {PEERS_NET} dev up0\n");
    for i in 0..tunnels {
        p.push_str(&format!("addr add {}/32 dev up0\n", addr_c(i)));
        pair.push_str(&format!("link add c{i} type veth peer name c{i}p\nlink set c{i} up\nlink set c{i}p up\n"));
    }
    for (ns, batch) in [(&t.p, &p), (&t.a, &pair), (&t.b, &pair)] {
        super::control::ip_batch(ns, batch)?;
    }
    Ok(())
}

fn call(sock: &Path, req: &Request) -> Result<Reply> {
    Ok(Client::connect(sock)?.call(req)?)
}

fn status(d: &Daemon) -> Result<StatusView> {
    match call(&d.socket(), &Request::Status)? {
        Reply::Status(s) => Ok(s),
        r => bail!("status: unexpected {r:?}"),
    }
}

fn ha_status(d: &Daemon) -> Result<HaView> {
    match call(&d.socket(), &Request::HaStatus)? {
        Reply::Ha(h) => Ok(h),
        r => bail!("ha status: unexpected {r:?}"),
    }
}

fn failover(d: &Daemon) -> Result<Vec<FailoverView>> {
    match call(&d.socket(), &Request::FailoverStatus)? {
        Reply::Failover { tunnels } => Ok(tunnels),
        r => bail!("failover status: unexpected {r:?}"),
    }
}

/// (tunnel, local session ID) of every session `d` has established.
fn established(d: &Daemon) -> Result<BTreeSet<(String, u32)>> {
    let sessions: Vec<SessionView> = match call(&d.socket(), &Request::SessionList { tunnel: None })? {
        Reply::Sessions { sessions } => sessions,
        r => bail!("session list: unexpected {r:?}"),
    };
    Ok(sessions
        .into_iter()
        .filter(|s| s.state == "established")
        .filter_map(|s| Some((s.tunnel, s.local_id?)))
        .collect())
}

fn until(what: &str, mut done: impl FnMut() -> Result<bool>, log: impl Fn() -> String) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if done().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not done after {WAIT:?}\n{}", log());
        }
        std::thread::sleep(POLL);
    }
}

/// Every session established on A, then on every peer.
fn wait_setup(a: &Daemon, cs: &[Daemon], total: usize, per: usize) -> Result<()> {
    until("setup", || Ok(status(a)?.sessions_established >= total), || a.log())?;
    for c in cs {
        until("setup at the peers", || Ok(status(c)?.sessions_established >= per), || c.log())?;
    }
    Ok(())
}

/// `d`'s tunnels all recovered (RFC 4951), none with a session waiting for
/// its FSR.
fn recovered(d: &Daemon, tunnels: usize) -> Result<bool> {
    let f = failover(d)?;
    Ok(f.len() >= tunnels
        && f.iter().all(|t| t.last_event.as_deref() == Some("recovered") && t.unconfirmed_sessions == 0))
}

/// The daemon's event stream (`Request::Events`, subscribed when this
/// returns), read by a thread until [`Stream::finish`].
struct Stream {
    sock: UnixStream,
    thread: std::thread::JoinHandle<Vec<(String, f64)>>,
}

impl Stream {
    fn start(d: &Daemon) -> Result<Self> {
        let mut sock = UnixStream::connect(d.socket()).with_context(|| format!("events of {}", d.name))?;
        let mut req = serde_json::to_vec(&Request::Events)?;
        req.push(b'\n');
        sock.write_all(&req)?;
        let mut r = std::io::BufReader::new(sock.try_clone()?);
        let mut first = String::new();
        r.read_line(&mut first)?;
        match serde_json::from_str::<Response>(&first) {
            Ok(Response::Ok(Reply::Following)) => {}
            other => bail!("events of {}: {other:?}", d.name),
        }
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Ok(e) = serde_json::from_str::<EventView>(&line) {
                            out.push((e.event, e.time_ms as f64));
                        }
                    }
                }
            }
            out
        });
        Ok(Self { sock, thread })
    }

    /// The events (name, Unix ms), those kept from before the subscription
    /// included.
    fn finish(self) -> Vec<(String, f64)> {
        // What the daemon already sent, delivered.
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        self.thread.join().unwrap_or_default()
    }
}

fn in_window<'a>(evs: &'a [(String, f64)], what: &'a str, from: f64, to: f64) -> impl Iterator<Item = f64> + 'a {
    // Event times are whole ms: the window's start rounded down.
    evs.iter().filter(move |e| e.0 == what && e.1 >= from.floor() && e.1 <= to).map(|e| e.1)
}
fn first(evs: &[(String, f64)], what: &str, from: f64, to: f64) -> Option<f64> {
    in_window(evs, what, from, to).reduce(f64::min)
}
fn last(evs: &[(String, f64)], what: &str, from: f64, to: f64) -> Option<f64> {
    in_window(evs, what, from, to).reduce(f64::max)
}
/// Over all peers.
fn first_all(evs: &[Vec<(String, f64)>], what: &str, from: f64, to: f64) -> Option<f64> {
    evs.iter().filter_map(|e| first(e, what, from, to)).reduce(f64::min)
}
fn last_all(evs: &[Vec<(String, f64)>], what: &str, from: f64, to: f64) -> Option<f64> {
    evs.iter().filter_map(|e| last(e, what, from, to)).reduce(f64::max)
}

/// Samples A's `ha status` (or, without `[ha]`, `status`, for the same
/// load) every [`LAG_EVERY`] on one API connection while the sessions
/// come up: max (oldest unacknowledged ms, unacknowledged), samples.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(f64, f64, usize)>,
}

impl Sampler {
    fn start(socket: PathBuf, ha: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ms, mut n, mut samples) = (0.0f64, 0.0f64, 0);
            let Ok(mut c) = Client::connect(&socket) else { return (f64::NAN, f64::NAN, 0) };
            let req = if ha { Request::HaStatus } else { Request::Status };
            while !stop2.load(Ordering::Relaxed) {
                match c.call(&req) {
                    Ok(Reply::Ha(h)) => {
                        ms = ms.max(h.oldest_unacknowledged_ms.unwrap_or(0) as f64);
                        n = n.max(h.unacknowledged as f64);
                        samples += 1;
                    }
                    Ok(_) => samples += 1,
                    Err(_) => break,
                }
                std::thread::sleep(LAG_EVERY);
            }
            (ms, n, samples)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (f64, f64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((f64::NAN, f64::NAN, 0))
    }
}

fn log_of(ds: &[&Daemon]) -> String {
    ds.iter().map(|d| format!("--- {} ---\n{}", d.name, d.log())).collect()
}

fn round(tunnels: usize, sessions: usize, level: &str, n: usize) -> Result<(Round, u64, u64)> {
    let (total, per) = (tunnels * sessions, sessions);
    let began = Instant::now();
    let t = HaSites::new()?;
    prepare(&t, tunnels)?;
    let dir = TempDir::new("bench-ha")?;
    let key = dir.path().join("partner.key");
    std::fs::write(&key, "the benchmark's partner key, more than sixteen bytes\n")?;
    let (pins_plain, pins_a, pins_b) =
        (PinDir::new("bench-ha-a0"), PinDir::new("bench-ha-a"), PinDir::new("bench-ha-b"));
    let cs: Vec<Daemon> = (0..tunnels)
        .map(|i| Daemon::start_logging(&t.p, &format!("bench-c{i}"), &peer_config(i, sessions)?, level))
        .collect::<Result<_>>()?;
    let c_streams = cs.iter().map(Stream::start).collect::<Result<Vec<_>>>()?;
    let mut r = Round::default();

    // Without [ha]: A alone, the service address its own.
    t.a.addr("up0", &format!("{}/32", topology::HA_SERVICE))?;
    t.a.ip(&["route", "replace", PEERS_NET, "dev", "up0", "src", topology::HA_SERVICE])?;
    let plain = Config {
        ha: None,
        ..pair_config(
            &pins_plain,
            &key,
            "a",
            "active",
            (topology::HA_A_PARTNER, topology::HA_B_PARTNER),
            tunnels,
            sessions,
        )
    };
    let start_plain = unix_ms();
    let mut a = Daemon::start_logging(&t.a, "bench-ha-a0", &plain.toml(), level)?;
    let sampler = Sampler::start(a.socket(), false);
    wait_setup(&a, &cs, total, per)?;
    sampler.finish();
    a.signal(libc::SIGTERM);
    a.wait(WAIT)?;
    for c in &cs {
        until("StopCCN at the peers", || Ok(status(c)?.tunnels_established == 0), || c.log())?;
    }
    drop(a);
    t.a.ip(&["addr", "del", &format!("{}/32", topology::HA_SERVICE), "dev", "up0"])?;
    t.a.ip(&["route", "replace", PEERS_NET, "dev", "up0"])?;
    let end_plain = unix_ms();

    // With the standby in sync: B, then A.
    let b_cfg =
        pair_config(&pins_b, &key, "b", "standby", (topology::HA_B_PARTNER, topology::HA_A_PARTNER), tunnels, sessions);
    let b = Daemon::start_logging(&t.b, "bench-ha-b", &b_cfg.toml(), level)?;
    let ha_cfg = l2tp_ctl::config::Config::parse(&b.config_path(), &std::fs::read_to_string(b.config_path())?)
        .map_err(|e| anyhow::anyhow!("B's configuration: {e}"))?
        .ha
        .context("B's [ha]")?;
    let b_stream = Stream::start(&b)?;
    let a_cfg =
        pair_config(&pins_a, &key, "a", "active", (topology::HA_A_PARTNER, topology::HA_B_PARTNER), tunnels, sessions);
    let start_sync = unix_ms();
    let mut a = Daemon::start_logging(&t.a, "bench-ha-a", &a_cfg.toml(), level)?;
    let sampler = Sampler::start(a.socket(), true);
    wait_setup(&a, &cs, total, per).with_context(|| log_of(&[&a, &b]))?;
    (r.lag_max_ms, r.lag_max_unacknowledged, r.lag_samples) = sampler.finish();
    // Settled: everything acknowledged, the standby's sessions warm.
    until("replication settled", || Ok(ha_status(&a)?.unacknowledged == 0), || log_of(&[&a, &b]))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let h = ha_status(&b)?;
        r.warm_sessions = h.warm_sessions as f64;
        if h.warm_sessions + h.warm_failed >= total as u64 {
            break;
        }
        std::thread::sleep(POLL);
    }
    let before: Vec<BTreeSet<(String, u32)>> = cs.iter().map(established).collect::<Result<_>>()?;
    r.sessions_before = before.iter().map(BTreeSet::len).sum();

    // Host A dies: its daemon, then its links.
    let kill = unix_ms();
    a.kill();
    for dev in ["up0", "ac0", "ha0"] {
        t.a.ip(&["link", "del", dev])?;
    }
    until("takeover", || recovered(&b, tunnels), || log_of(&[&b]))?;
    for c in &cs {
        until("recovery at the peers", || recovered(c, 1), || log_of(&[c, &b]))?;
    }
    r.takeover_polled_ms = unix_ms() - kill;
    let after: Vec<BTreeSet<(String, u32)>> = cs.iter().map(established).collect::<Result<_>>()?;
    r.sessions_lost = before.iter().zip(&after).map(|(b, a)| b.difference(a).count()).sum();
    let b_evs = b_stream.finish();
    let c_evs: Vec<Vec<(String, f64)>> = c_streams.into_iter().map(Stream::finish).collect();
    let now = unix_ms() + 1.0;

    // Setup windows, at the peers.
    let window = |from: f64, to: f64| -> Result<(f64, f64)> {
        let up = first_all(&c_evs, "tunnel-up", from, to).context("no tunnel-up at the peers")?;
        let done = last_all(&c_evs, "session-up", from, to).context("no session-up at the peers")?;
        Ok((done - up, done - from))
    };
    (r.setup_plain_ms, r.setup_plain_from_start_ms) = window(start_plain, end_plain)?;
    (r.setup_sync_ms, r.setup_sync_from_start_ms) = window(start_sync, kill)?;
    r.partner_up_ms = first(&b_evs, "ha-partner-up", start_sync, kill).map(|t| t - start_sync);
    r.first_session_up_ms = first_all(&c_evs, "session-up", start_sync, kill).map(|t| t - start_sync);

    // The takeover, from the kill.
    let since = |v: Option<f64>| v.map(|t| t - kill);
    let mut phases = Vec::new();
    let mut put = |k: &'static str, v: Option<f64>| {
        if let Some(v) = v {
            phases.push((k, v));
        }
    };
    put("b_partner_down_ms", since(first(&b_evs, "ha-partner-down", kill, now)));
    put("b_takeover_ms", since(first(&b_evs, "ha-takeover", kill, now)));
    put("b_first_recovery_started_ms", since(first(&b_evs, "recovery-started", kill, now)));
    put("b_last_recovery_started_ms", since(last(&b_evs, "recovery-started", kill, now)));
    put("peer_first_tunnel_recovered_ms", since(first_all(&c_evs, "tunnel-recovered", kill, now)));
    put("peer_last_tunnel_recovered_ms", since(last_all(&c_evs, "tunnel-recovered", kill, now)));
    put("peer_first_session_confirmed_ms", since(first_all(&c_evs, "session-confirmed", kill, now)));
    put("peer_last_session_confirmed_ms", since(last_all(&c_evs, "session-confirmed", kill, now)));
    put("b_last_session_confirmed_ms", since(last(&b_evs, "session-confirmed", kill, now)));
    r.phases = phases;
    r.confirmed_events = c_evs.iter().map(|e| in_window(e, "session-confirmed", kill, now).count()).sum();
    let done = [last_all(&c_evs, "session-confirmed", kill, now), last_all(&c_evs, "tunnel-recovered", kill, now)];
    r.takeover_ms =
        done.into_iter().flatten().reduce(f64::max).map(|t| t - kill).context("no recovery event at the peers")?;
    eprintln!(
        "bench: ha round {n} ({:.0} s): setup {:.0} ms without [ha], {:.0} ms with sync; lag max {:.0} ms / {:.0} updates; takeover {:.0} ms (detected {:.0} ms), {} of {} sessions lost",
        began.elapsed().as_secs_f64(),
        r.setup_plain_ms,
        r.setup_sync_ms,
        r.lag_max_ms,
        r.lag_max_unacknowledged,
        r.takeover_ms,
        r.phases.iter().find(|p| p.0 == "b_partner_down_ms").map_or(f64::NAN, |p| p.1),
        r.sessions_lost,
        r.sessions_before
    );
    if let Ok(d) = std::env::var("L2TP_BENCH_KEEP_LOGS") {
        std::fs::write(format!("{d}/ha-b.log"), b.log())?;
        std::fs::write(format!("{d}/ha-a.log"), a.log())?;
    }
    Ok((r, ha_cfg.hello_ms, ha_cfg.dead_ms))
}

pub fn run(tunnels: usize, sessions: usize, rounds: usize) -> Result<Results> {
    ensure!((1..=MAX_TUNNELS).contains(&tunnels), "the hot-standby run takes 1 to {MAX_TUNNELS} tunnels");
    let level = std::env::var("L2TP_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let mut res = Results { tunnels, sessions, dead_ms: 0, hello_ms: 0, rounds: Vec::new() };
    for n in 1..=rounds {
        let (r, hello, dead) = round(tunnels, sessions, &level, n).with_context(|| format!("hot-standby round {n}"))?;
        (res.hello_ms, res.dead_ms) = (hello, dead);
        res.rounds.push(r);
    }
    Ok(res)
}

/// The report's section.
pub fn markdown(m: &mut String, h: &Value) {
    m.push_str(&format!(
        "\n## Hot standby (issue 14)\n\n{} tunnels x {} sessions per tunnel to {} peers, {} round(s), default timers (hello {} ms, dead {} ms, probe takeover, sync on); median (max where said).\n\n| measurement | value |\n|---|---|\n",
        h["tunnels"],
        h["sessions"].as_f64().unwrap_or(0.0) / h["tunnels"].as_f64().unwrap_or(1.0),
        h["tunnels"],
        h["rounds"],
        h["timers"]["hello_ms"],
        h["timers"]["dead_ms"],
    ));
    // Counts as integers, times and ratios as the other sections.
    let n = |v: &Value| v.as_u64().map_or_else(|| super::num(v), |i| i.to_string());
    for (what, v) in [
        ("sessions set up per second, without `[ha]`", &h["setup_sessions_per_s"]["without_ha"]),
        ("sessions set up per second, standby in sync", &h["setup_sessions_per_s"]["sync"]),
        ("setup rate with sync / without `[ha]` (`sync_setup_ratio`)", &h["sync_setup_ratio"]),
        ("setup rate with sync, from A's start / the control run's setup rate", &h["sync_setup_ratio_vs_control"]),
        ("replication lag during setup: oldest unacknowledged, max, ms", &h["replication_lag_ms"]),
        ("replication lag during setup: unacknowledged updates, max", &h["replication_lag_unacknowledged"]),
        ("warm sessions on the standby before the kill", &h["warm_sessions"]),
        ("kill of A to B's partner-down (`detect_ms`)", &h["detect_ms"]),
        ("kill of A to the last session confirmed on a peer (`takeover_ms`)", &h["takeover_ms"]),
        ("the same, max", &h["takeover_ms_max"]),
        ("the same, seen by polling every peer's API", &h["takeover_polled_ms"]),
        ("sessions established on the peers at the kill", &h["sessions_established_at_kill"]),
        ("of them not established after (`sessions_lost`)", &h["sessions_lost"]),
    ] {
        m.push_str(&format!("| {what} | {} |\n", n(v)));
    }
    m.push_str("\nTakeover, ms from the kill of A (median):\n\n| phase (event) | ms |\n|---|---|\n");
    for (k, what) in [
        ("b_partner_down_ms", "B: partner unreachable (`ha-partner-down`, dead timer)"),
        ("b_takeover_ms", "B: `ha-takeover` (after the ARP probe: service address taken and announced, warm sessions activated, recovery begun)"),
        ("b_first_recovery_started_ms", "B: first recovery SCCRQ (first `recovery-started`)"),
        ("b_last_recovery_started_ms", "B: last recovery SCCRQ"),
        ("peer_first_tunnel_recovered_ms", "peers: first `tunnel-recovered`"),
        ("peer_last_tunnel_recovered_ms", "peers: last `tunnel-recovered`"),
        ("peer_first_session_confirmed_ms", "peers: first `session-confirmed` (B's FSR)"),
        ("peer_last_session_confirmed_ms", "peers: last `session-confirmed`"),
        ("b_last_session_confirmed_ms", "B: last `session-confirmed` (the peers' FSRs)"),
    ] {
        m.push_str(&format!("| {what} | {} |\n", n(&h["phases"][k])));
    }
    let g = &h["goal"];
    let verdict = match g["holds"].as_bool() {
        Some(true) => "holds",
        Some(false) => "does NOT hold",
        None => "not judged (no control-plane run)",
    };
    m.push_str(&format!(
        "\nGoal: `takeover_ms - dead_ms` = {} ms <= 1.2 x this run's `control.recovery_ms.control_and_data` ({} ms) = {} ms, and no session lost ({}): **{verdict}**.\n",
        n(&g["takeover_minus_dead_ms"]),
        n(&g["restart_recovery_control_and_data_ms"]),
        n(&g["limit_ms"]),
        h["sessions_lost"],
    ));
    if h["partner_up_before_first_session"] == false {
        m.push_str("\nThe partner channel came up after the first session in some round: those first sessions were set up without waiting for the standby (sync suspended), so the ratio flatters sync.\n");
    }
    m.push_str("\nMethod: the pair speaks from its one service address and a daemon keeps one tunnel per peer address, so each tunnel goes to a peer daemon of its own (control plane only, all in P's namespace, each on its own address); A and B have the XDP data plane (B's sessions warm). Each round builds the topology afresh. The setup rates are the same run's, same peers: first `tunnel-up` to last `session-up` at the peers, once with A alone and no `[ha]` (it holds the service address itself), then with B standing by in sync; A's API is queried every 5 ms in both (`ha status` for the lag, `status` without `[ha]`). The ratio against the control run is given too (from A's start, the window the control run counts), but that run has one responder daemon, not one per tunnel. Host death: A SIGKILLed, then its uplink, customer and partner links deleted; `takeover_ms` runs to the last `session-confirmed` or `tunnel-recovered` event at the peers (their `time_ms`, whole ms, streamed over each API socket from before the kill). Every peer, B and A run on the benchmark's CPU.\n");
}
