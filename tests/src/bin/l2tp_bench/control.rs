//! Control-plane measurements: two daemons in namespaces, `tunnels` L2TPv3
//! tunnels of `sessions` pseudowires each, one peer address pair per tunnel
//! (the responder tells its configured tunnels apart by peer address).
//!
//! - setup: from the start of the initiating daemon to the last session
//!   established at either end (by the daemons' events), and its resident
//!   memory then (both daemons started afresh, once and again in every
//!   round);
//! - recovery (RFC 4951, control channel): SIGKILL of the initiating daemon
//!   and a restart on the same state; from the restart to every tunnel
//!   recovered and every session confirmed by the peer's FSR on both ends;
//!   With `control_and_data`, A's pinned data plane (programs, maps, links)
//!   is removed too, so the restart rebuilds it from the store first.
//! - re-establishment, for comparison: SIGTERM (StopCCN to the peer) and a
//!   start from scratch; from the signal to the last session established
//!   at either end.
//!
//! Every tunnel has its own attachment interface on each side, and its
//! sessions are Ethernet VLAN pseudowires on VLANs 1, 2, ... of it, with
//! sequence numbers, all installed in the XDP data plane.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use l2tp_tests::{
    daemon::{Config, Daemon, Failover, Session, Tunnel},
    topology::TwoSites,
    PinDir,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);
/// Between polls of the APIs, which only confirm an end the events
/// already showed (timing is by the daemons' events).
const POLL: Duration = Duration::from_millis(10);

pub struct Results {
    tunnels: usize,
    sessions: usize,
    /// Start of the initiating daemon to the last session up at either
    /// end, by the daemons' own events.
    setup_s: Vec<f64>,
    /// The same, seen by polling both daemons' APIs (an upper bound).
    setup_polled_s: Vec<f64>,
    /// Restart to the last session confirmed at either end, by the
    /// daemons' own events.
    recovery_ms: Vec<f64>,
    recovery_data_ms: Vec<f64>,
    /// The same, confirmed by polling both daemons' APIs once the events
    /// showed it (an upper bound).
    recovery_polled_ms: Vec<f64>,
    recovery_data_polled_ms: Vec<f64>,
    reestablish_ms: Vec<f64>,
    rss: Vec<f64>,
    setup_phases: Vec<Phases>,
    recovery_phases: Vec<Phases>,
    recovery_data_phases: Vec<Phases>,
    /// Control datagrams (both directions) of the first setup and of each
    /// recovery, from the daemons' `stats` (datagrams received).
    setup_datagrams: u64,
    recovery_datagrams: Vec<f64>,
    floor_ms: Vec<f64>,
    floor_setup_ms: Vec<f64>,
    floor_resent: u64,
}

impl Results {
    pub fn json(&self) -> Value {
        let med = |v: &[f64]| if v.is_empty() { f64::NAN } else { super::stats(v).1 };
        let min = |v: &[f64]| if v.is_empty() { f64::NAN } else { super::stats(v).0 };
        let total = (self.tunnels * self.sessions) as f64;
        let mut rec_data = phases_json(&self.recovery_data_phases);
        let ctl_only = phases_json(&self.recovery_phases);
        if let (Some(a), Some(b)) = (rec_data["api_up_ms"].as_f64(), ctl_only["api_up_ms"].as_f64()) {
            rec_data["dataplane_rebuild_extra_ms"] = super::r1(a - b);
        }
        let setup_ms = med(&self.setup_s) * 1e3;
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
            "recovery_polled_ms": {
                "control_only": super::r1(med(&self.recovery_polled_ms)),
                "control_and_data": super::r1(med(&self.recovery_data_polled_ms)),
            },
            "reestablish_ms": super::r1(med(&self.reestablish_ms)),
            "reestablish_ms_min": super::r1(min(&self.reestablish_ms)),
            "recovery_speedup": super::r1(med(&self.reestablish_ms) / med(&self.recovery_ms)),
            "rss_mb_10k_sessions": super::r1(med(&self.rss)),
            "rss_mb_10k_sessions_max": super::r1(self.rss.iter().copied().fold(0.0, f64::max)),
            "setup_sessions_per_s_best": super::r1(total / min(&self.setup_s)),
            "setup_sessions_per_s_polled": super::r1(total / med(&self.setup_polled_s)),
            "dataplane": "on: every session installed in the XDP maps, sequencing on",
            "rss_mb": super::r1(med(&self.rss)),
            "phases": {
                "setup": phases_json(&self.setup_phases),
                "control_only": ctl_only,
                "control_and_data": rec_data,
            },
            "floor_ms": super::r1(med(&self.floor_ms)),
            "floor_setup_ms": super::r1(med(&self.floor_setup_ms)),
            "floor_resent": self.floor_resent,
            "floor_datagrams_recovery": super::r1(med(&self.recovery_datagrams)),
            "floor_datagrams_setup": self.setup_datagrams,
            "recovery_vs_floor": super::r1(med(&self.recovery_data_ms) / med(&self.floor_ms)),
            "recovery_control_only_vs_floor": super::r1(med(&self.recovery_ms) / med(&self.floor_ms)),
            "setup_vs_floor": super::r1(setup_ms / med(&self.floor_setup_ms)),
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
        c = c.tunnel(tunnel(t, &peer, initiate, sessions));
    }
    c.toml()
}

/// Tunnel `t{t}` of the benchmarks: `sessions` Ethernet VLAN pseudowires
/// (VLANs 1, 2, ... of interface `c{t}`) with sequence numbers, a secret,
/// failover capability (the hot-standby run uses the same tunnels).
pub fn tunnel(t: usize, peer: &str, initiate: bool, sessions: usize) -> Tunnel {
    Tunnel {
        secret: Some("bench-secret".into()),
        failover: Some(Failover { recovery_time_ms: Some(10_000), ..Failover::default() }),
        sessions: (0..sessions)
            .map(|s| Session {
                vlan: Some(s as u16 + 1),
                sequencing: true,
                ..Session::new(&format!("s{s}"), &format!("c{t}"))
            })
            .collect(),
        ..Tunnel::new(&format!("t{t}"), peer, initiate)
    }
}

/// One address per tunnel on each side, with a host route whose preferred
/// source is that tunnel's address, and a permanent neighbour entry for the
/// peer's: a thousand on-link peers are past the kernel's neighbour GC
/// thresholds (gc_thresh2 512, gc_thresh3 1024, not per namespace), whose
/// churn dropped control messages until tunnels timed out in the `--scale`
/// run (a real endpoint reaches many peers through one router).
fn addresses(t: &TwoSites, tunnels: usize) -> Result<()> {
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..tunnels {
        a.push_str(&format!(
            "addr add {}/32 dev up0\nroute add {}/32 dev up0 src {}\nneigh replace {} lladdr {} dev up0 nud permanent\n",
            addr_a(i),
            addr_b(i),
            addr_a(i),
            addr_b(i),
            l2tp_tests::topology::PE_B_UP_MAC
        ));
        b.push_str(&format!(
            "addr add {}/32 dev up0\nroute add {}/32 dev up0 src {}\nneigh replace {} lladdr {} dev up0 nud permanent\n",
            addr_b(i),
            addr_a(i),
            addr_b(i),
            addr_a(i),
            l2tp_tests::topology::PE_A_UP_MAC
        ));
        // The tunnel's attachment interface (its sessions are VLANs of it).
        for side in [&mut a, &mut b] {
            side.push_str(&format!("link add c{i} type veth peer name c{i}p\nlink set c{i} up\nlink set c{i}p up\n"));
        }
    }
    for (ns, batch) in [(&t.pe_a, a), (&t.pe_b, b)] {
        ip_batch(ns, &batch)?;
    }
    Ok(())
}

/// Runs `batch` (lines of `ip` commands) with one `ip -batch` in `ns`.
pub fn ip_batch(ns: &l2tp_tests::NetNs, batch: &str) -> Result<()> {
    let path = std::env::temp_dir().join(format!("l2tp-bench-{}-{}.ip", std::process::id(), ns.name()));
    std::fs::write(&path, batch)?;
    let r = ns.ip(&["-batch", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    r?;
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
    let cfg_a = config("pe-a", true, tunnels, sessions, &pins_a);
    let mut a = Daemon::prepare(&t.pe_a, "bench-a", &cfg_a, level)?;
    let (setup_s, setup_polled_s, first_phases) = setup(&t, &mut a, &b, total)?;
    let setup_datagrams = datagrams(&a) + datagrams(&b);
    let mut r = Results {
        tunnels,
        sessions,
        setup_s: vec![setup_s],
        setup_polled_s: vec![setup_polled_s],
        recovery_ms: Vec::new(),
        recovery_data_ms: Vec::new(),
        recovery_polled_ms: Vec::new(),
        recovery_data_polled_ms: Vec::new(),
        reestablish_ms: Vec::new(),
        rss: vec![rss_mb(a.pid().context("daemon pid")?)?],
        setup_phases: vec![first_phases],
        recovery_phases: Vec::new(),
        recovery_data_phases: Vec::new(),
        setup_datagrams,
        recovery_datagrams: Vec::new(),
        floor_ms: Vec::new(),
        floor_setup_ms: Vec::new(),
        floor_resent: 0,
    };
    if let Ok(dir) = std::env::var("L2TP_BENCH_KEEP_LOGS") {
        std::fs::write(format!("{dir}/a.log"), a.log())?;
        std::fs::write(format!("{dir}/b.log"), b.log())?;
    }
    eprintln!("bench: {total} sessions set up in {:.2} s, {:.1} MB resident", r.setup_s[0], r.rss[0]);
    for round in 0..rounds {
        // Recovery: SIGKILL, restart on the same state.
        let b0 = datagrams(&b);
        a.kill();
        let (w, wb) = Watch::pair(&a, &b, "session-confirmed");
        let t0 = Instant::now();
        a.spawn(&t.pe_a)?;
        Watch::wait_counted(&w, &wb, total as usize);
        wait_recovered(&a, &b, tunnels, total).with_context(|| a.log())?;
        let polled = t0.elapsed().as_secs_f64() * 1e3;
        let ((up, evs), (_, evs_b)) = (w.finish(), wb.finish());
        r.recovery_polled_ms.push(polled);
        r.recovery_ms.push(settled(&evs, &evs_b, "session-confirmed").unwrap_or(polled));
        r.recovery_phases.push(recovery_phases(up, &evs));
        wait_sessions(&b, total, "peer after recovery")?;
        r.recovery_datagrams.push((datagrams(&a) + datagrams(&b) - b0) as f64);
        // Control and data: the pinned data plane goes too.
        a.kill();
        std::fs::remove_dir_all(pins_a.path()).context("removing A's pins")?;
        let (w, wb) = Watch::pair(&a, &b, "session-confirmed");
        let t0 = Instant::now();
        a.spawn(&t.pe_a)?;
        Watch::wait_counted(&w, &wb, total as usize);
        wait_recovered(&a, &b, tunnels, total).with_context(|| a.log())?;
        let polled = t0.elapsed().as_secs_f64() * 1e3;
        let ((up, evs), (_, evs_b)) = (w.finish(), wb.finish());
        r.recovery_data_polled_ms.push(polled);
        r.recovery_data_ms.push(settled(&evs, &evs_b, "session-confirmed").unwrap_or(polled));
        r.recovery_data_phases.push(recovery_phases(up, &evs));
        wait_sessions(&b, total, "peer after recovery")?;
        // Re-establishment: orderly stop (StopCCN), start from scratch; to
        // the last session up at either end, by their events.
        let (t0, t0_ms) = (Instant::now(), unix_ms());
        a.signal(libc::SIGTERM);
        a.wait(WAIT)?;
        let (w, wb) = (Watch::start_at(&a, t0_ms, "session-up"), Watch::start_at(&b, t0_ms, "session-up"));
        a.spawn(&t.pe_a)?;
        Watch::wait_counted(&w, &wb, total as usize);
        wait_sessions(&a, total, "re-establishment")?;
        wait_sessions(&b, total, "peer after re-establishment")?;
        let polled = t0.elapsed().as_secs_f64() * 1e3;
        let ((_, evs), (_, evs_b)) = (w.finish(), wb.finish());
        r.reestablish_ms.push(settled(&evs, &evs_b, "session-up").unwrap_or(polled));
        // Another clean setup sample: both ends stopped (SIGTERM: nothing
        // kept), B started, then A; to the last session on both ends.
        for d in [&mut a, &mut b] {
            d.signal(libc::SIGTERM);
            d.wait(WAIT)?;
        }
        b.spawn(&t.pe_b)?;
        let (setup_s, polled_s, phases) = setup(&t, &mut a, &b, total)?;
        r.setup_s.push(setup_s);
        r.setup_polled_s.push(polled_s);
        r.setup_phases.push(phases);
        // The floor, same run, same pinning, daemons idle: the recovery's
        // datagram count, then the setup's.
        let n = r.recovery_datagrams.last().copied().unwrap_or(0.0) as u64;
        let (ms, resent) = floor(&t, tunnels, n)?;
        r.floor_ms.push(ms);
        let (ms_setup, resent_setup) = floor(&t, tunnels, r.setup_datagrams)?;
        r.floor_setup_ms.push(ms_setup);
        r.floor_resent += resent + resent_setup;
        r.rss.push(rss_mb(a.pid().context("daemon pid")?)?);
        eprintln!(
            "bench: control round {}/{rounds}: recovery {:.0} ms (control and data {:.0} ms), re-establishment {:.0} ms, floor {ms:.1} ms ({n} datagrams), setup floor {ms_setup:.1} ms",
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

/// Unix time in ms, with sub-millisecond precision.
/// Starts `a` (`b` running) and waits for every session on both ends:
/// the setup time by their events (to the last `session-up` at either
/// end), the same seen by polling both APIs (an upper bound), in
/// seconds, and A's phases.
fn setup(t: &TwoSites, a: &mut Daemon, b: &Daemon, total: u64) -> Result<(f64, f64, Phases)> {
    let (w, wb) = Watch::pair(a, b, "session-up");
    let t0 = Instant::now();
    a.spawn(&t.pe_a)?;
    Watch::wait_counted(&w, &wb, total as usize);
    wait_sessions(a, total, "setup")?;
    wait_sessions(b, total, "setup (responder)")?;
    let polled = t0.elapsed().as_secs_f64();
    let ((up, evs), (_, evs_b)) = (w.finish(), wb.finish());
    let by_events = settled(&evs, &evs_b, "session-up").map_or(polled, |ms| ms / 1e3);
    Ok((by_events, polled, setup_phases(up, &evs)))
}

pub fn unix_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Watches a daemon being (re)started: a 1 ms `connect` probe on its API
/// socket (the time the process is up), then one `l2tp-ctl events --follow
/// --json` stream, subscribed as soon as the socket answers. The daemon
/// keeps only its last 1,000 events for late clients, fewer than a
/// 10,000-session run emits, so the events are streamed (pushed by the
/// daemon, read by a thread here, parsed only at the end): nothing polls.
struct Watch {
    restart_ms: f64,
    thread: std::thread::JoinHandle<(Option<f64>, Option<std::process::Child>, Vec<String>)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    child: std::sync::Arc<std::sync::Mutex<Option<u32>>>,
    socket: std::path::PathBuf,
    /// Events of the counted kind after the restart, so far.
    counted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The daemon said this stream missed events (`events-lost`).
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watch {
    /// Watches the (re)started `a` and the running peer `b` from the same
    /// instant, counting `what` events at each (`b`'s stream starts at
    /// once; its first lines are the last events it kept, of earlier runs,
    /// which are before that instant and not counted).
    fn pair(a: &Daemon, b: &Daemon, what: &'static str) -> (Watch, Watch) {
        let at = unix_ms();
        (Self::start_at(a, at, what), Self::start_at(b, at, what))
    }

    fn counted(&self) -> usize {
        self.counted.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn start_at(d: &Daemon, restart_ms: f64, what: &'static str) -> Watch {
        use std::sync::{
            atomic::{AtomicBool, AtomicUsize},
            Arc, Mutex,
        };
        let socket = d.socket();
        let socket_path = socket.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let child_pid: Arc<Mutex<Option<u32>>> = Arc::default();
        let (stop2, pid2) = (stop.clone(), child_pid.clone());
        let (counted, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (counted2, lost2) = (counted.clone(), lost.clone());
        // The stream's lines are `{"time_ms":N,"event":"...",...}`: counted
        // by their prefix, without parsing (this thread shares the
        // daemons' CPU).
        let counted_prefix = format!(",\"event\":\"{what}\"");
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = None;
            while Instant::now() < deadline && !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                    up = Some(unix_ms());
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if up.is_none() {
                return (None, None, Vec::new());
            }
            let child = std::process::Command::new(l2tp_tests::daemon::ctl_bin())
                .args(["events", "--follow", "--json", "--socket"])
                .arg(&socket)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn();
            let Ok(mut child) = child else { return (up, None, Vec::new()) };
            if let Ok(mut p) = pid2.lock() {
                *p = Some(child.id());
            }
            let mut lines = Vec::new();
            if let Some(out) = child.stdout.take() {
                use std::io::BufRead;
                for l in std::io::BufReader::new(out).lines() {
                    match l {
                        Ok(l) => {
                            if let Some(rest) = l.strip_prefix("{\"time_ms\":") {
                                let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                                let after = rest[..digits].parse::<f64>().is_ok_and(|t| t >= restart_ms);
                                if after && rest[digits..].starts_with(&counted_prefix) {
                                    counted2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                } else if rest[digits..].starts_with(",\"event\":\"events-lost\"") {
                                    lost2.store(true, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                            lines.push(l);
                        }
                        Err(_) => break,
                    }
                }
            }
            (up, Some(child), lines)
        });
        Watch { restart_ms, thread, stop, child: child_pid, socket: socket_path, counted, lost }
    }

    /// Waits, sleeping (nothing spawned: the CLI processes that polling
    /// starts would run on the daemons' CPU), until both streams have
    /// counted `want` events, one missed events, or one ended. The caller
    /// then confirms the end state by polling the APIs once.
    fn wait_counted(a: &Watch, b: &Watch, want: usize) {
        let deadline = Instant::now() + WAIT;
        let over = |w: &Watch| w.lost.load(std::sync::atomic::Ordering::Relaxed) || w.thread.is_finished();
        while Instant::now() < deadline {
            if (a.counted() >= want && b.counted() >= want) || over(a) || over(b) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Ends the stream; the process-up time and the events, as ms after
    /// the restart.
    fn finish(self) -> (Option<f64>, Vec<(String, f64)>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Give the stream a moment to deliver what the daemon already sent.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(pid) = self.child.lock().ok().and_then(|p| *p) {
            // SAFETY: kill(2) on our own child (the events stream).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let (up, child, lines) = self.thread.join().unwrap_or((None, None, Vec::new()));
        if let Some(mut c) = child {
            let _ = c.wait();
        }
        let mut evs: Vec<(String, f64)> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| Some((v["event"].as_str()?.to_owned(), v["time_ms"].as_f64()? - self.restart_ms)))
            .collect();
        // The daemon's own start-up steps (`status`), as `startup:<step>`.
        let status = std::process::Command::new(l2tp_tests::daemon::ctl_bin())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output();
        if let Some(v) = status.ok().and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok()) {
            for step in v["startup"].as_array().into_iter().flatten() {
                if let (Some(name), Some(t)) = (step[0].as_str(), step[1].as_f64()) {
                    evs.push((format!("startup:{name}"), t - self.restart_ms));
                }
            }
        }
        (up.map(|u| u - self.restart_ms), evs)
    }
}

fn first(evs: &[(String, f64)], what: &str) -> Option<f64> {
    evs.iter().filter(|e| e.0 == what).map(|e| e.1).reduce(f64::min)
}
fn last(evs: &[(String, f64)], what: &str) -> Option<f64> {
    evs.iter().filter(|e| e.0 == what).map(|e| e.1).reduce(f64::max)
}
/// When both ends were done: the later of each end's last `what` event
/// after the restart (`None` if either end has none).
fn settled(a: &[(String, f64)], b: &[(String, f64)], what: &str) -> Option<f64> {
    let after = |evs: &[(String, f64)]| evs.iter().filter(|e| e.0 == what && e.1 >= 0.0).map(|e| e.1).reduce(f64::max);
    Some(after(a)?.max(after(b)?))
}

fn count(evs: &[(String, f64)], what: &str) -> f64 {
    evs.iter().filter(|e| e.0 == what).count() as f64
}

type Phases = BTreeMap<&'static str, f64>;

fn put(p: &mut Phases, k: &'static str, v: Option<f64>) {
    if let Some(v) = v {
        p.insert(k, v);
    }
}

fn recovery_phases(up: Option<f64>, evs: &[(String, f64)]) -> Phases {
    let mut p = Phases::new();
    put(&mut p, "api_up_ms", up);
    startup_phases(&mut p, evs);
    put(&mut p, "first_recovery_started_ms", first(evs, "recovery-started"));
    put(&mut p, "last_recovery_started_ms", last(evs, "recovery-started"));
    put(&mut p, "first_tunnel_recovered_ms", first(evs, "tunnel-recovered"));
    put(&mut p, "last_tunnel_recovered_ms", last(evs, "tunnel-recovered"));
    put(&mut p, "first_session_confirmed_ms", first(evs, "session-confirmed"));
    put(&mut p, "last_session_confirmed_ms", last(evs, "session-confirmed"));
    p.insert("events_session_confirmed", count(evs, "session-confirmed"));
    p
}

fn setup_phases(up: Option<f64>, evs: &[(String, f64)]) -> Phases {
    let mut p = Phases::new();
    put(&mut p, "api_up_ms", up);
    startup_phases(&mut p, evs);
    put(&mut p, "first_tunnel_up_ms", first(evs, "tunnel-up"));
    put(&mut p, "last_tunnel_up_ms", last(evs, "tunnel-up"));
    put(&mut p, "first_session_up_ms", first(evs, "session-up"));
    put(&mut p, "last_session_up_ms", last(evs, "session-up"));
    p.insert("events_session_up", count(evs, "session-up"));
    p
}

/// The daemon's start-up steps: 1. the process is up (`run`), 2. the
/// store is read (`store_opened`, and the records in
/// `previous_run_recovered`), 3. the data plane attached or rebuilt
/// (`dataplane_opened`; a rebuild from the store ends within
/// `previous_run_recovered`), then the tunnels configured and the API up.
fn startup_phases(p: &mut Phases, evs: &[(String, f64)]) {
    for (step, key) in [
        ("run", "startup_process_up_ms"),
        ("config_loaded", "startup_config_loaded_ms"),
        ("store_opened", "startup_store_opened_ms"),
        ("dataplane_opened", "startup_dataplane_opened_ms"),
        ("tunnels_added", "startup_tunnels_added_ms"),
        ("previous_run_recovered", "startup_previous_run_recovered_ms"),
        ("api_up", "startup_api_up_ms"),
    ] {
        put(p, key, first(evs, &format!("startup:{step}")));
    }
}

fn phases_json(v: &[Phases]) -> Value {
    let mut keys: Vec<&str> = v.iter().flat_map(|p| p.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut m = serde_json::Map::new();
    for k in keys {
        let xs: Vec<f64> = v.iter().filter_map(|p| p.get(k).copied()).collect();
        if !xs.is_empty() {
            m.insert(k.into(), super::r1(super::stats(&xs).1));
        }
    }
    Value::Object(m)
}

fn datagrams(d: &Daemon) -> u64 {
    d.json(&["stats"]).ok().and_then(|v| v["control"]["datagrams"].as_u64()).unwrap_or(0)
}

const FLOOR_PORT: u16 = 1799;
const FLOOR_SIZE: usize = 100;

/// The control-plane floor: `datagrams` UDP datagrams of 100 bytes between
/// the two namespaces over the tunnels' own address pairs, as request and
/// response, one request in flight per tunnel, all tunnels at once, no
/// protocol work (the server echoes). Threads of this process (so on the
/// same CPU pinning as the daemons), entered into the namespaces. Returns
/// ms from the first request to the last response, and the requests sent
/// again after a loss.
pub fn floor(t: &TwoSites, tunnels: usize, datagrams: u64) -> Result<(f64, u64)> {
    use std::net::{SocketAddr, UdpSocket};
    let per_tunnel = (datagrams as usize).div_ceil(2 * tunnels).max(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| -> Result<(f64, u64)> {
        let server = s.spawn(|| {
            t.pe_b.enter(move || -> Result<()> {
                let sock = UdpSocket::bind(("0.0.0.0", FLOOR_PORT))?;
                big_buffers(&sock);
                sock.set_read_timeout(Some(WAIT))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 2048];
                loop {
                    let (n, from) = sock.recv_from(&mut buf)?;
                    if n == 1 {
                        return Ok(());
                    }
                    sock.send_to(&buf[..n], from)?;
                }
            })?
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).context("floor server")?;
        let r = t.pe_a.enter(move || -> Result<(f64, u64)> {
            let sock = UdpSocket::bind(("0.0.0.0", FLOOR_PORT))?;
            big_buffers(&sock);
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            let peers: Vec<SocketAddr> =
                (0..tunnels).map(|i| Ok(SocketAddr::new(addr_b(i).parse()?, FLOOR_PORT))).collect::<Result<_>>()?;
            let mut left = vec![per_tunnel; tunnels];
            let mut msg = [0u8; FLOOR_SIZE];
            let mut buf = [0u8; 2048];
            let mut resent = 0;
            let start = Instant::now();
            for (i, p) in peers.iter().enumerate() {
                msg[..4].copy_from_slice(&(i as u32).to_be_bytes());
                sock.send_to(&msg, p)?;
            }
            let mut pending = tunnels;
            let deadline = Instant::now() + WAIT;
            while pending > 0 {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) if n >= 4 => {
                        let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        if i >= tunnels || left[i] == 0 {
                            continue;
                        }
                        left[i] -= 1;
                        if left[i] == 0 {
                            pending -= 1;
                        } else {
                            msg[..4].copy_from_slice(&(i as u32).to_be_bytes());
                            sock.send_to(&msg, peers[i])?;
                        }
                    }
                    Ok(_) => {}
                    Err(_) if Instant::now() < deadline => {
                        // A loss: the outstanding requests again.
                        for (i, p) in peers.iter().enumerate().filter(|(i, _)| left[*i] > 0) {
                            msg[..4].copy_from_slice(&(i as u32).to_be_bytes());
                            sock.send_to(&msg, p)?;
                            resent += 1;
                        }
                    }
                    Err(e) => bail!("floor: {pending} tunnels unanswered: {e}"),
                }
            }
            let ms = start.elapsed().as_secs_f64() * 1e3;
            sock.send_to(&[0], peers[0])?;
            Ok((ms, resent))
        })?;
        server.join().map_err(|_| anyhow::anyhow!("floor server panicked"))??;
        r
    })
}

fn big_buffers(s: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt with a valid fd and an int option.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}
