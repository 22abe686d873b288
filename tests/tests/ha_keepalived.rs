//! Issue 14 test 4: `takeover = "external"` with real keepalived (Debian's
//! 2.2.7, `/usr/sbin/keepalived`) VRRP instances in A's and B's
//! namespaces, configured as `contrib/keepalived.conf.example` explains:
//! VRRPv2 on the uplink `up0`, no virtual address (the daemon owns the
//! service address), both BACKUP with nopreempt, a `vrrp_script` running
//! `l2tp-ctl status`, and `notify_master` running `l2tp-ctl ha takeover`.
//! The topology is `HaSites` (P, the pair A/B, their customers, the
//! partner link); the customer pseudowire runs on the XDP data plane.
//!
//! Each keepalived runs in the foreground with its configuration and pid
//! files in a private directory (nothing under /etc or /run), and is
//! killed and reaped when the test ends, also when it fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use l2tp_tests::{
    daemon::{ctl_bin, Daemon, TempDir},
    ha::{events, holds_service, pair_config, peer_config, ping_across, tunnel, up_with_session},
    topology::{self, HaSites},
    NetNs, PinDir,
};

const WAIT: Duration = Duration::from_secs(10);
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// VRRPv2 advertises in whole seconds: 1 s is the shortest interval. A
/// backup declares the master down after 3 x 1 s + (256 - priority)/256 s.
const ADVERT_INT: u32 = 1;

/// One keepalived (parent and VRRP child) in a namespace. Dropping it
/// kills both and reaps them.
struct Keepalived {
    name: String,
    child: Option<Child>,
    vrrp_pid: PathBuf,
    log: PathBuf,
}

impl Keepalived {
    /// Writes the configuration of node `id` (priority `priority`) for the
    /// daemon `d` into `dir` and starts keepalived in `ns`.
    fn start(ns: &NetNs, dir: &Path, id: &str, priority: u8, d: &Daemon) -> Self {
        let ctl = ctl_bin();
        let sock = d.socket();
        let (ctl, sock) = (ctl.display(), sock.display());
        let conf = format!(
            "global_defs {{
    router_id l2tp-{id}
    script_user root
    enable_script_security
    vrrp_version 2
}}

vrrp_script chk_l2tp_ctl {{
    script \"{ctl} --socket {sock} status\"
    interval 1
    timeout 1
    fall 2
    rise 2
}}

vrrp_instance L2TP_SERVICE {{
    interface up0
    virtual_router_id 51
    state BACKUP
    priority {priority}
    nopreempt
    advert_int {ADVERT_INT}
    track_script {{
        chk_l2tp_ctl
    }}
    notify_master \"{ctl} --socket {sock} ha takeover\"
}}
"
        );
        let path = |f: &str| dir.join(format!("keepalived-{id}.{f}"));
        fs::write(path("conf"), conf).expect("keepalived.conf");
        let log = path("log");
        let out = fs::File::create(&log).expect("keepalived log");
        let child = ns
            .command(KEEPALIVED)
            .args(["-n", "-l", "-D", "-G", "-P", "-f"])
            .arg(path("conf"))
            .arg("-p")
            .arg(path("pid"))
            .arg("-r")
            .arg(path("vrrp.pid"))
            .arg("-c")
            .arg(path("checkers.pid"))
            .arg("-b")
            .arg(path("bfd.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawning keepalived");
        let k = Self { name: id.into(), child: Some(child), vrrp_pid: path("vrrp.pid"), log };
        // Up when its VRRP child has written its pid.
        let deadline = Instant::now() + WAIT;
        while k.vrrp_child().is_none() {
            assert!(Instant::now() < deadline, "keepalived {id} started no VRRP child:\n{}", k.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn vrrp_child(&self) -> Option<i32> {
        fs::read_to_string(&self.vrrp_pid).ok()?.trim().parse().ok()
    }

    fn is_master(&self) -> bool {
        self.log().contains("Entering MASTER STATE")
    }

    /// Waits until the instance has become VRRP master.
    fn wait_master(&self, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        while !self.is_master() {
            assert!(Instant::now() < deadline, "keepalived {} never became master:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Instant::now()
    }

    /// A crash: the VRRP child dies without its goodbye advert (priority
    /// 0), and the parent cannot respawn it (it is stopped, then killed).
    /// Both are reaped: the parent as our child, the VRRP child once it is
    /// reparented to this process (a child subreaper, see `subreaper`).
    fn kill(&mut self) {
        let Some(mut parent) = self.child.take() else { return };
        let ppid = parent.id() as i32;
        // SAFETY: plain kill(2)/waitpid(2) on processes this test started.
        unsafe {
            libc::kill(ppid, libc::SIGSTOP);
            let vrrp = self.vrrp_child();
            if let Some(v) = vrrp {
                libc::kill(v, libc::SIGKILL);
            }
            let _ = parent.kill();
            let _ = parent.wait();
            if let Some(v) = vrrp {
                // Reparented to us when the parent died (still a zombie, or
                // about to be one).
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    let r = libc::waitpid(v, std::ptr::null_mut(), libc::WNOHANG);
                    if r == v || (r < 0 && libc::kill(v, 0) != 0) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of keepalived {} ---\n{}", self.name, self.log());
        }
    }
}

/// Orphans of this test process (keepalived's VRRP children) come to it,
/// so that it can reap them.
fn subreaper() {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// P, the pair (external takeover) and a keepalived beside each of A and
/// B; started when P's pseudowire is up, B is in sync, A's keepalived is
/// VRRP master and B's a backup that has heard it.
struct Setup {
    // Dropped first: the keepalived instances, then the daemons, then the
    // namespaces.
    ka: Keepalived,
    kb: Keepalived,
    p: Daemon,
    a: Daemon,
    b: Daemon,
    _pins: [PinDir; 3],
    _dir: TempDir,
    t: HaSites,
}

fn setup() -> Setup {
    subreaper();
    let t = HaSites::new().expect("topology");
    let dir = TempDir::new("ha-ka").expect("dir");
    let key = dir.path().join("partner.key");
    fs::write(&key, "a partner key of more than sixteen bytes\n").expect("key");
    let pins = [PinDir::new("kp"), PinDir::new("ka"), PinDir::new("kb")];
    let peer = peer_config(&pins[0]);
    let p = Daemon::start(&t.p, "p", &peer).expect("peer");
    let b = Daemon::start(
        &t.b,
        "b",
        &pair_config(&pins[2], &key, "b", "standby", (topology::HA_B_PARTNER, topology::HA_A_PARTNER), "external"),
    )
    .expect("standby");
    let a = Daemon::start(
        &t.a,
        "a",
        &pair_config(&pins[1], &key, "a", "active", (topology::HA_A_PARTNER, topology::HA_B_PARTNER), "external"),
    )
    .expect("active");
    // A's keepalived first: it becomes master after one master-down
    // interval (its notify_master finds its daemon already active), while
    // the pseudowire comes up.
    let ka = Keepalived::start(&t.a, dir.path(), "a", 150, &a);
    p.wait_json(&["tunnel", "list"], "pseudowire up", WAIT, |v| up_with_session(v, "to-service")).expect("up");
    b.wait_json(&["ha", "status"], "standby in sync", WAIT, |v| {
        v["role"] == "standby" && v["partner_state"] == "normal" && v["seq"].as_u64() >= Some(2)
    })
    .expect("synchronised");
    a.wait_json(&["ha", "status"], "acknowledged", WAIT, |v| v["unacknowledged"] == 0).expect("no lag");
    ka.wait_master(WAIT);
    let kb = Keepalived::start(&t.b, dir.path(), "b", 100, &b);
    let s = a.json(&["ha", "status"]).expect("status");
    assert_eq!((s["role"].as_str(), s["term"].as_u64()), (Some("active"), Some(0)), "notify_master on A: {s:#}");
    Setup { ka, kb, p, a, b, _pins: pins, _dir: dir, t }
}

/// Host A dies (its keepalived and its daemon, its links down): B's
/// keepalived misses A's adverts, becomes VRRP master and runs
/// `l2tp-ctl ha takeover`; B takes the service address and recovers P's
/// tunnel through RFC 4951, and the customer pseudowire carries traffic
/// again. P sees its tunnel recovered, never down.
#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn keepalived_on_the_standby_becomes_master_and_takes_over_when_host_a_dies() {
    let started = Instant::now();
    let mut s = setup();
    assert!(ping_across(&s.t), "customer traffic through A");
    let p_id = tunnel(&s.p.json(&["tunnel", "list"]).expect("list"), "to-service").map(|t| t["local_id"].clone());
    // B's keepalived has heard A's adverts for a while and stays backup.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!s.kb.is_master(), "B's keepalived became master beside a live A:\n{}", s.kb.log());
    let b = s.b.json(&["ha", "status"]).expect("status");
    assert_eq!(b["role"].as_str(), Some("standby"), "{b:#}");
    // Host A dies.
    let kill = Instant::now();
    s.ka.kill();
    s.a.kill();
    for dev in ["up0", "ac0", "ha0"] {
        s.t.a.ip(&["link", "set", dev, "down"]).expect("A's links down");
    }
    let master = s.kb.wait_master(Duration::from_secs(10));
    s.b.wait_json(&["ha", "status"], "B active", WAIT, |v| v["role"] == "active" && v["term"] == 1)
        .expect("notify_master made B active");
    s.b.wait_json(&["tunnel", "list"], "B recovered P's tunnel", WAIT, |v| up_with_session(v, "to-p"))
        .expect("B took over");
    let recovered = Instant::now();
    assert!(holds_service(&s.t.b), "B holds the service address");
    assert!(ping_across(&s.t), "customer traffic does not cross the pseudowire through B\n{}", s.b.log());
    let list = s.p.json(&["tunnel", "list"]).expect("list");
    assert_eq!(tunnel(&list, "to-service").map(|t| t["local_id"].clone()), p_id, "the same tunnel at P");
    let ev = events(&s.p);
    assert!(ev.iter().any(|e| e == "tunnel-recovered"), "{ev:?}\n{}", s.p.log());
    assert!(!ev.iter().any(|e| e == "tunnel-down" || e == "session-down"), "{ev:?}");
    let ev = events(&s.b);
    assert!(ev.iter().any(|e| e == "ha-takeover"), "{ev:?}");
    eprintln!(
        "kill of A -> B's keepalived master: {} ms; -> P's tunnel recovered by B: {} ms; test {} ms",
        (master - kill).as_millis(),
        (recovered - kill).as_millis(),
        started.elapsed().as_millis()
    );
}

/// In external mode the daemons never take over on their own: with A
/// alive and only the partner link down, B's daemon finds its partner
/// unreachable and stays standby, and B's keepalived, which hears A's
/// adverts on the uplink, stays backup; A serves on undisturbed.
#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn with_only_the_partner_link_down_the_standby_stays_standby_in_external_mode() {
    let started = Instant::now();
    let s = setup();
    s.t.a.ip(&["link", "set", "ha0", "down"]).expect("partner link down");
    s.b.wait_json(&["ha", "status"], "communications interrupted", WAIT, |v| {
        v["partner_state"] == "communications-interrupted"
    })
    .expect("B notices");
    // Longer than VRRP's master-down interval (3.6 s for B) and many
    // dead_ms: neither B's daemon nor B's keepalived moves.
    std::thread::sleep(Duration::from_millis(4000));
    let b = s.b.json(&["ha", "status"]).expect("status");
    assert_eq!(
        (b["role"].as_str(), b["term"].as_u64(), b["partner_state"].as_str()),
        (Some("standby"), Some(0), Some("communications-interrupted")),
        "{b:#}"
    );
    assert!(!s.kb.is_master(), "B's keepalived became master:\n{}", s.kb.log());
    assert!(!holds_service(&s.t.b), "B holds no service address");
    assert!(holds_service(&s.t.a), "A still holds the service address");
    let a = s.a.json(&["ha", "status"]).expect("status");
    assert_eq!((a["role"].as_str(), a["term"].as_u64()), (Some("active"), Some(0)), "{a:#}");
    assert!(up_with_session(&s.a.json(&["tunnel", "list"]).expect("list"), "to-p"));
    assert!(ping_across(&s.t), "customer traffic through A");
    let ev = events(&s.p);
    assert!(!ev.iter().any(|e| e == "tunnel-down" || e == "session-down" || e == "tunnel-recovered"), "{ev:?}");
    assert!(!events(&s.b).iter().any(|e| e == "ha-takeover"));
    eprintln!("test {} ms", started.elapsed().as_millis());
}
