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
        let dir = TempDir::new(name)?;
        let config = config.replace("{dir}", &dir.path().display().to_string());
        fs::write(dir.path().join("config.toml"), config)?;
        let mut d = Self { name: name.into(), child: None, dir, ns: ns.name().into(), log_level: log_level.into() };
        d.spawn(ns)?;
        Ok(d)
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
            if self.ctl(&["status"]).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("daemon {} exited at start ({st}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
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
