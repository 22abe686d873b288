//! Network namespace, veth and bpffs pin-directory guards.

use std::{
    fs,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicU32, Ordering},
        Once,
    },
};

use anyhow::{bail, Context, Result};

/// Every name this crate creates starts with this prefix followed by the
/// creating process ID, so stale objects of dead test processes can be found.
pub const PREFIX: &str = "l2tpt-";
const NETNS_DIR: &str = "/run/netns";
const BPFFS: &str = "/sys/fs/bpf";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

fn unique(tag: &str) -> String {
    format!("{PREFIX}{}-{}-{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes namespaces and pin directories left by test processes that no
/// longer run (for example killed by a timeout). Runs once per process.
pub fn sweep_stale() {
    SWEEP.call_once(|| {
        let dead = |name: &str| pid_of(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if let Ok(entries) = fs::read_dir(NETNS_DIR) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
            }
        }
        if let Ok(entries) = fs::read_dir(BPFFS) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    });
}

/// A network namespace, deleted (with every interface in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with loopback up.
    pub fn new(tag: &str) -> Result<Self> {
        sweep_stale();
        let name = unique(tag);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace. It uses `nsenter --net`
    /// rather than `ip netns exec`, which also remounts /sys and so hides
    /// the bpffs at /sys/fs/bpf where the data plane is pinned.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={NETNS_DIR}/{}", self.name)).arg("--").arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace: sockets, netlink
    /// and interface lookups made by `f` happen inside it.
    pub fn enter<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> Result<R> {
        let path = Path::new(NETNS_DIR).join(&self.name);
        let file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd affects only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("setns");
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Creates a veth pair `here` (in this namespace) <-> `there` (in
    /// `other`), both up. Deleting either namespace deletes the pair.
    pub fn veth(&self, here: &str, other: &NetNs, there: &str) -> Result<()> {
        run(Command::new("ip").args([
            "link",
            "add",
            here,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            there,
            "netns",
            &other.name,
        ]))?;
        self.ip(&["link", "set", here, "up"])?;
        other.ip(&["link", "set", there, "up"])?;
        Ok(())
    }

    /// Adds an address (with prefix length) to an interface.
    pub fn addr(&self, iface: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", iface]).map(drop)
    }

    /// Interface index inside this namespace.
    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        let iface = std::ffi::CString::new(iface)?;
        let idx = self.enter(move || {
            // SAFETY: valid NUL-terminated string.
            unsafe { libc::if_nametoindex(iface.as_ptr()) }
        })?;
        if idx == 0 {
            bail!("no such interface in {}", self.name);
        }
        Ok(idx)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Processes left in the namespace (a test's daemons and their
        // children) go first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// A directory on bpffs for pins, removed with everything in it on drop
/// (removing a pinned link detaches it).
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// A fresh, not yet existing path under /sys/fs/bpf.
    pub fn new(tag: &str) -> Self {
        sweep_stale();
        Self { path: Path::new(BPFFS).join(unique(tag)) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.path.exists() {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                eprintln!("cleanup of {}: {e}", self.path.display());
            }
        }
    }
}
