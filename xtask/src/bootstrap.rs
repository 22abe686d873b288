//! Idempotent installation of what the build and the tests need on a fresh
//! Debian 12 machine. Every step checks first and is skipped when done.
//! The commands are the verified ones from `shared/environment.md`.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::{have, is_root, output, run};

/// Debian packages: the LLVM 22 libraries bpf-linker links against, and
/// the tools the tests drive.
const APT_PACKAGES: &[&str] = &[
    // eBPF toolchain (bpf-linker built against LLVM 22)
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // network namespaces, veth, addresses
    "iproute2",
    "iputils-ping",
    // GRO on veth peers that receive XDP_REDIRECTed frames
    "ethtool",
    // codec cross-check against Wireshark's L2TP dissector
    "tshark",
    // a real L2TPv2 peer for captures and interop tests
    "xl2tpd",
    // message-type filters that make the failover tests' failures exact
    "nftables",
    // VRRP for the hot standby's `takeover = "external"` mode (issue 14):
    // contrib/keepalived.conf.example and the keepalived namespace test
    "keepalived",
    // promtool and a Prometheus server for the /metrics tests (issue 16)
    "prometheus",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";

fn say(msg: &str) {
    eprintln!("bootstrap: {msg}");
}

fn apt_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !apt_installed(p)).collect();
    if missing.is_empty() {
        say("Debian packages: already installed");
        return Ok(());
    }
    if !is_root() {
        bail!("Debian packages missing: {}; run as root: apt-get install -y {}", missing.join(" "), missing.join(" "));
    }
    say(&format!("installing Debian packages: {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        say("nightly toolchain: present");
    } else {
        say("installing the nightly toolchain");
        run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))?;
    }
    let components = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))?;
    if components.lines().any(|l| l.starts_with("rust-src")) {
        say("nightly rust-src: present");
        Ok(())
    } else {
        say("adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
    }
}

fn bpf_linker() -> Result<()> {
    if have("bpf-linker") {
        let v = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
        say(&format!("bpf-linker: present ({})", v.trim()));
        return Ok(());
    }
    say(&format!("building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes)"));
    // Without LLVM_PREFIX the build finds Debian's default LLVM 14
    // llvm-config and fails to link.
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features"])
        .args(["--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env_remove("CARGO_TARGET_DIR"))
    .context("cargo install bpf-linker")?;
    if !have("bpf-linker") {
        bail!("bpf-linker installed but not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

pub fn ensure() -> Result<()> {
    let t = std::time::Instant::now();
    apt_packages()?;
    nightly()?;
    bpf_linker()?;
    say(&format!("done in {:.1} s", t.elapsed().as_secs_f64()));
    Ok(())
}
