//! A real xl2tpd (Debian's, installed by `cargo xtask bootstrap`) in a
//! network namespace, as an L2TPv2 peer for interop tests. It runs with
//! `force userspace = yes` in a private mount namespace where a stub that
//! only sleeps stands in for pppd, so sessions come up without /dev/ppp.
//! Dropping the guard stops it and removes its files.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::netns::NetNs;

#[derive(Debug)]
pub struct Xl2tpd {
    child: Child,
    dir: PathBuf,
}

/// Which side xl2tpd plays.
#[derive(Clone, Debug)]
pub enum Role {
    /// Accepts tunnels and calls.
    Lns,
    /// Dials `lns` at start and places one call.
    Lac { lns: String },
}

impl Xl2tpd {
    /// Starts xl2tpd in `ns`, listening on `addr`, with tunnel
    /// authentication (`secret` shared between `host` and `peer_host`),
    /// hidden AVPs and the given role.
    pub fn start(ns: &NetNs, addr: &str, host: &str, peer_host: &str, secret: &str, role: Role) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("{}{}-xl2tpd-{}", crate::netns::PREFIX, std::process::id(), ns.name()));
        fs::create_dir_all(&dir)?;
        let stub = dir.join("pppd-stub");
        fs::write(&stub, "#!/bin/sh\nexec sleep 300\n")?;
        fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        fs::write(dir.join("secrets"), format!("{host} {peer_host} {secret}\n{peer_host} {host} {secret}\n"))?;
        fs::write(dir.join("ppp-options"), "")?;
        let common = |section: &str| {
            format!(
                "hostname = {host}\nchallenge = yes\nhidden bit = yes\nlength bit = yes\nrequire authentication = no\npppoptfile = {}\n",
                dir.join("ppp-options").display()
            ) + section
        };
        let body = match &role {
            Role::Lns => {
                format!("[lns default]\nip range = 198.18.1.10-198.18.1.20\nlocal ip = 198.18.1.1\n{}", common(""))
            }
            Role::Lac { lns } => format!("[lac peer]\nlns = {lns}\nautodial = yes\nredial = no\n{}", common("")),
        };
        let conf = format!(
            "[global]\nlisten-addr = {addr}\nport = 1701\nauth file = {}\nforce userspace = yes\naccess control = no\ndebug tunnel = yes\n\n{body}",
            dir.join("secrets").display()
        );
        fs::write(dir.join("xl2tpd.conf"), conf)?;
        let log = fs::File::create(dir.join("log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .args(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount --bind \"$1\" /usr/sbin/pppd || exit 97; shift; exec /usr/sbin/xl2tpd -D \"$@\"")
            .arg("sh")
            .arg(&stub)
            .arg("-c")
            .arg(dir.join("xl2tpd.conf"))
            .arg("-p")
            .arg(dir.join("pid"))
            .arg("-C")
            .arg(dir.join("control"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting xl2tpd")?;
        let mut x = Self { child, dir };
        // Ready once its control pipe exists.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !x.dir.join("control").exists() {
            if let Some(status) = x.child.try_wait()? {
                bail!("xl2tpd exited ({status}): {}", x.log());
            }
            if Instant::now() > deadline {
                bail!("xl2tpd did not start: {}", x.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(x)
    }

    /// Writes a command to the control pipe (e.g. `d peer` to drop the
    /// tunnel of LAC section `peer`).
    pub fn control(&self, cmd: &str) -> Result<()> {
        fs::write(self.dir.join("control"), format!("{cmd}\n")).context("xl2tpd control pipe")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Xl2tpd {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of our child's PID.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
