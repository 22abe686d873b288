//! A real `l2tp-ctl daemon` in a network namespace, driven through the
//! real CLI: configuration written to a private directory (state and
//! control socket in it too), SIGKILLed and its directory removed on drop.
//! Its log is printed when the test fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::NetNs;

/// The `l2tp-ctl` binary: `L2TP_CTL_BIN`, else next to the test binary's
/// directory (target/<profile>/l2tp-ctl, built by `cargo xtask test`).
pub fn ctl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("L2TP_CTL_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("l2tp-ctl");
    assert!(bin.exists(), "{} is missing: run `cargo build -p l2tp-ctl` (cargo xtask test does)", bin.display());
    bin
}

/// A private directory under /tmp, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{}{}-{n}-{tag}", crate::netns::PREFIX, std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    dir: TempDir,
    ns: String,
    log_level: String,
}

impl Daemon {
    /// Writes `config` (which may use `{dir}` for the private directory)
    /// and starts the daemon in `ns`; returns once its socket answers.
    pub fn start(ns: &NetNs, name: &str, config: &str) -> Result<Self> {
        Self::start_logging(ns, name, config, "l2tp_ctl=debug,warn")
    }

    /// As [`Daemon::start`] with another log filter (benchmarks log less).
    pub fn start_logging(ns: &NetNs, name: &str, config: &str, log_level: &str) -> Result<Self> {
        let mut d = Self::prepare(ns, name, config, log_level)?;
        d.spawn(ns)?;
        Ok(d)
    }

    /// A daemon's directory and configuration, not started yet
    /// ([`Daemon::spawn`] starts it): for watching it from its first
    /// instant.
    pub fn prepare(ns: &NetNs, name: &str, config: &str, log_level: &str) -> Result<Self> {
        let dir = TempDir::new(name)?;
        let config = config.replace("{dir}", &dir.path().display().to_string());
        fs::write(dir.path().join("config.toml"), config)?;
        Ok(Self { name: name.into(), child: None, dir, ns: ns.name().into(), log_level: log_level.into() })
    }

    /// (Re)starts the daemon process with the same files.
    pub fn spawn(&mut self, ns: &NetNs) -> Result<()> {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let child = ns
            .command(ctl_bin())
            .args(["daemon", "--log-level", &self.log_level, "--config"])
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning the daemon")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // The daemon binds its socket once it serves: a connect probe
            // (cheap: benchmarks share the daemons' CPU), then one request.
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() && self.ctl(&["status"]).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("daemon {} exited at start ({st}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("daemon {} did not answer on its socket:\n{}", self.name, self.log())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ctl.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `l2tp-ctl ARGS --socket SOCK`; fails on a non-zero exit.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        let out = Command::new(ctl_bin()).args(args).arg("--socket").arg(self.socket()).output()?;
        if !out.status.success() {
            bail!(
                "l2tp-ctl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// `l2tp-ctl ARGS --json`, parsed.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl(&a)?;
        serde_json::from_slice(&out.stdout).with_context(|| format!("parsing {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Polls `l2tp-ctl ARGS --json` until `pred` holds.
    pub fn wait_json(
        &self,
        args: &[&str],
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(v) = self.json(args) {
                if pred(&v) {
                    return Ok(v);
                }
                last = v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{}: timed out waiting for {what}; last {}:\n{last:#}\n--- log ---\n{}",
            self.name,
            args.join(" "),
            self.log()
        )
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // The child is nsenter, which execs the daemon: same PID.
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else { bail!("not running") };
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("daemon {} still running after {timeout:?}:\n{}", self.name, self.log())
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of daemon {} (netns {}) ---\n{}", self.name, self.ns, self.log());
        }
    }
}

/// A daemon configuration file as the tests, the benchmark and the demo
/// write it: `[global]` with a host name and the UDP listener, a data
/// plane (pinned in a test's pin directory, uplink `up0`) or none, and
/// tunnels with their failover settings and sessions. [`Config::toml`]
/// gives the file.
#[derive(Clone, Debug)]
pub struct Config {
    pub host_name: String,
    pub router_id: Option<String>,
    pub reconnect_interval: Option<u64>,
    pub hello_interval: Option<u64>,
    /// `global.commit_delay_ms`.
    pub commit_delay_ms: Option<u64>,
    /// `None`: `[dataplane] enabled = false`.
    pub pin_dir: Option<PathBuf>,
    pub tunnels: Vec<Tunnel>,
    /// An `[ha]` section: one daemon of a hot-standby pair.
    pub ha: Option<Ha>,
}

/// An `[ha]` section (issue 14).
#[derive(Clone, Debug)]
pub struct Ha {
    pub node: String,
    pub role: &'static str,
    /// Our and the partner's address of the partner channel (port 1702).
    pub listen: String,
    pub partner: String,
    pub key_file: PathBuf,
    pub service_address: String,
    /// `None`: the data plane's uplink.
    pub interface: Option<String>,
    pub takeover: &'static str,
}

impl Ha {
    fn toml(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "\n[ha]\nnode = \"{}\"\nrole = \"{}\"\nlisten = \"{}:1702\"\npartner = \"{}:1702\"\nkey_file = \"{}\"\n\
             service_address = [\"{}\"]\ntakeover = \"{}\"\n",
            self.node,
            self.role,
            self.listen,
            self.partner,
            self.key_file.display(),
            self.service_address,
            self.takeover
        );
        if let Some(i) = &self.interface {
            let _ = writeln!(out, "interface = \"{i}\"");
        }
    }
}

/// One `[[tunnel]]`.
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub name: String,
    pub peer: String,
    pub initiate: bool,
    pub version: u8,
    pub encapsulation_ip: bool,
    pub secret: Option<String>,
    pub hide_avps: bool,
    /// Further keys of the tunnel, TOML lines (timers).
    pub extra: String,
    pub failover: Option<Failover>,
    pub sessions: Vec<Session>,
}

/// A `[tunnel.failover]` table.
#[derive(Clone, Debug)]
pub struct Failover {
    pub control: bool,
    pub data: bool,
    pub recovery_time_ms: Option<u32>,
    pub resync_n: Option<u16>,
    /// `recovery_peers`, a TOML list.
    pub recovery_peers: Option<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Self { control: true, data: true, recovery_time_ms: None, resync_n: None, recovery_peers: None }
    }
}

/// One `[[tunnel.session]]`.
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub interface: String,
    pub cookie_len: u8,
    pub sequencing: bool,
    /// An Ethernet VLAN pseudowire on this VLAN of `interface`.
    pub vlan: Option<u16>,
}

impl Session {
    pub fn new(name: &str, interface: &str) -> Self {
        Self { name: name.into(), interface: interface.into(), cookie_len: 0, sequencing: false, vlan: None }
    }
}

impl Tunnel {
    pub fn new(name: &str, peer: &str, initiate: bool) -> Self {
        Self {
            name: name.into(),
            peer: peer.into(),
            initiate,
            version: 3,
            encapsulation_ip: false,
            secret: None,
            hide_avps: false,
            extra: String::new(),
            failover: None,
            sessions: Vec::new(),
        }
    }

    fn toml(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "\n[[tunnel]]\nname = \"{}\"\npeer = \"{}\"\ninitiate = {}\n",
            self.name, self.peer, self.initiate
        );
        if self.version != 3 {
            let _ = writeln!(out, "version = {}", self.version);
        }
        if self.encapsulation_ip {
            out.push_str("encapsulation = \"ip\"\n");
        }
        if let Some(s) = &self.secret {
            let _ = writeln!(out, "secret = \"{s}\"");
        }
        if self.hide_avps {
            out.push_str("hide_avps = true\n");
        }
        out.push_str(&self.extra);
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            out.push('\n');
        }
        if let Some(f) = &self.failover {
            let _ = write!(out, "\n[tunnel.failover]\ncontrol = {}\ndata = {}\n", f.control, f.data);
            if let Some(v) = f.recovery_time_ms {
                let _ = writeln!(out, "recovery_time_ms = {v}");
            }
            if let Some(v) = f.resync_n {
                let _ = writeln!(out, "resync_n = {v}");
            }
            if let Some(v) = &f.recovery_peers {
                let _ = writeln!(out, "recovery_peers = {v}");
            }
        }
        for s in &self.sessions {
            let _ = write!(out, "\n[[tunnel.session]]\nname = \"{}\"\ninterface = \"{}\"\n", s.name, s.interface);
            if let Some(v) = s.vlan {
                let _ = write!(out, "pw_type = \"ethernet-vlan\"\nvlan = {v}\n");
            }
            if s.cookie_len != 0 {
                let _ = writeln!(out, "cookie_len = {}", s.cookie_len);
            }
            if s.sequencing {
                out.push_str("sequencing = true\n");
            }
        }
    }
}

impl Config {
    /// Host `me`, listening on UDP port 1701, no data plane, no tunnel.
    pub fn new(me: &str) -> Self {
        Self {
            host_name: me.into(),
            router_id: None,
            reconnect_interval: None,
            hello_interval: None,
            commit_delay_ms: None,
            pin_dir: None,
            tunnels: Vec::new(),
            ha: None,
        }
    }

    /// The XDP data plane pinned in `pins`, uplink `up0`.
    pub fn dataplane(mut self, pins: &crate::PinDir) -> Self {
        self.pin_dir = Some(pins.path().to_owned());
        self
    }

    pub fn tunnel(mut self, t: Tunnel) -> Self {
        self.tunnels.push(t);
        self
    }

    /// The file.
    pub fn toml(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("[global]\nhost_name = \"{}\"\n", self.host_name);
        if let Some(r) = &self.router_id {
            let _ = writeln!(out, "router_id = \"{r}\"");
        }
        out.push_str("listen = [\"0.0.0.0:1701\"]\n");
        if let Some(v) = self.reconnect_interval {
            let _ = writeln!(out, "reconnect_interval = {v}");
        }
        if let Some(v) = self.hello_interval {
            let _ = writeln!(out, "hello_interval = {v}");
        }
        if let Some(v) = self.commit_delay_ms {
            let _ = writeln!(out, "commit_delay_ms = {v}");
        }
        match &self.pin_dir {
            Some(p) => {
                let _ = write!(out, "\n[dataplane]\npin_dir = \"{}\"\nuplink = \"up0\"\n", p.display());
            }
            None => out.push_str("\n[dataplane]\nenabled = false\n"),
        }
        if let Some(h) = &self.ha {
            h.toml(&mut out);
        }
        for t in &self.tunnels {
            t.toml(&mut out);
        }
        out
    }
}

#[cfg(all(test, feature = "ctl"))]
mod tests {
    use super::*;

    /// What the builder writes is a valid file that says what was built.
    #[test]
    fn built_config_parses_as_built() {
        let pins = crate::PinDir::new("cfg");
        let text = Config { router_id: Some("198.18.0.1".into()), reconnect_interval: Some(1), ..Config::new("a") }
            .dataplane(&pins)
            .tunnel(Tunnel {
                secret: Some("s".into()),
                extra: "hello_interval = 5".into(),
                failover: Some(Failover {
                    recovery_time_ms: Some(10_000),
                    resync_n: Some(4),
                    recovery_peers: Some("[\"198.18.0.9\"]".into()),
                    ..Failover::default()
                }),
                sessions: vec![
                    Session { vlan: Some(7), sequencing: true, cookie_len: 8, ..Session::new("s0", "c0") },
                    Session::new("s1", "c1"),
                ],
                ..Tunnel::new("t0", "198.18.0.2", true)
            })
            .tunnel(Tunnel {
                version: 2,
                hide_avps: true,
                secret: Some("v2".into()),
                ..Tunnel::new("v2", "198.18.0.2", false)
            })
            .tunnel(Tunnel { encapsulation_ip: true, ..Tunnel::new("ip", "198.18.0.2", true) })
            .toml();
        let c =
            l2tp_ctl::config::Config::parse(Path::new("built.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            (c.global.host_name.as_str(), c.global.router_id.0, c.global.reconnect_interval),
            ("a", 0xc612_0001, 1)
        );
        assert_eq!(c.dataplane.pin_dir, pins.path());
        let t = &c.tunnels[0];
        assert_eq!((t.hello_interval, t.failover.recovery_time_ms, t.failover.resync_n), (Some(5), 10_000, 4));
        assert_eq!(t.sessions[0].vlan, Some(7));
        assert!(t.sessions[0].sequencing && !t.sessions[1].sequencing);
        assert_eq!((c.tunnels[1].version, c.tunnels[1].initiate, c.tunnels[1].hide_avps), (2, false, true));
        assert_eq!(c.tunnels[2].encapsulation, l2tp_ctl::config::Encapsulation::Ip);
        assert!(!Config::new("x").toml().contains("pin_dir"), "no data plane unless asked");
    }
}
