//! Process helpers shared by the tasks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Root of the workspace (parent of `xtask/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True if `program` is on PATH (or in ~/.cargo/bin).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo` (the one running us), in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

/// Runs a command with inherited stdio; fails if it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails if it does not exit 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub const EBPF_TARGET: &str = "bpfel-unknown-none";

/// `cargo +nightly SUBCMD` for the eBPF crate, with the same flags as
/// l2tp-ctl's build script uses for the release object embedded in `l2tp-ctl`.
pub fn ebpf_cargo(subcmd: &str, release: bool) -> Command {
    ebpf_cargo_in(subcmd, release, &workspace().join("target/ebpf"))
}

/// [`ebpf_cargo`] with its own target directory.
fn ebpf_cargo_in(subcmd: &str, release: bool, target_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace()).args(["run", "nightly", "cargo", subcmd, "--package", "l2tp-ebpf", "--target"]);
    cmd.args([EBPF_TARGET, "-Z", "build-std=core", "--target-dir"]).arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    let arch = std::env::consts::ARCH;
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Ctarget-cpu=v3\x1f-Zub-checks=no"),
    );
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "CARGO"] {
        cmd.env_remove(key);
    }
    cmd
}

/// Builds the release eBPF object without drop tracing (the benchmark's
/// comparison: what tracing costs while nobody traces), in a target
/// directory of its own, and returns its path.
pub fn build_ebpf_without_trace() -> Result<PathBuf> {
    let dir = workspace().join("target/ebpf-no-trace");
    run(ebpf_cargo_in("build", true, &dir).arg("--no-default-features"))?;
    let path = dir.join(EBPF_TARGET).join("release").join("l2tp-ebpf");
    if !path.is_file() {
        bail!("eBPF build produced no {}", path.display());
    }
    Ok(path)
}

/// Builds the eBPF object and returns its path.
pub fn build_ebpf(release: bool) -> Result<PathBuf> {
    run(&mut ebpf_cargo("build", release))?;
    let profile = if release { "release" } else { "debug" };
    let path = workspace().join("target/ebpf").join(EBPF_TARGET).join(profile).join("l2tp-ebpf");
    if !path.is_file() {
        bail!("eBPF build produced no {}", path.display());
    }
    Ok(path)
}
