//! Builds the XDP object from `l2tp-ebpf` (nightly, bpfel-unknown-none,
//! release profile) into OUT_DIR, where `dataplane.rs` embeds it.
//! `cargo xtask bootstrap` installs the toolchain this needs.
//!
//! This does what `aya_build::build_ebpf` does, plus `-C target-cpu=v3`:
//! the data path needs BPF atomic fetch-and-add (one shared Ns counter per
//! session), which LLVM emits only for ISA v3; with the default CPU it
//! silently emits an add without fetch. Kernels from 5.12 on run v3.
use std::{
    env,
    path::PathBuf,
    process::{Command, Stdio},
};

/// The flags `cargo xtask build-ebpf` uses too.
const EBPF_RUSTFLAGS: &[&str] = &["-Cdebuginfo=2", "-Clink-arg=--btf", "-Ctarget-cpu=v3"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    for dir in ["l2tp-ebpf/src", "l2tp-ebpf/Cargo.toml", "l2tp-common/src", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("ebpf-target");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let mut flags = vec![format!("--cfg=bpf_target_arch=\"{arch}\"")];
    flags.extend(EBPF_RUSTFLAGS.iter().map(|s| s.to_string()));
    let status = Command::new("rustup")
        .current_dir(&root)
        .args(["run", "nightly", "cargo", "build", "--package", "l2tp-ebpf", "--bins", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("spawning `rustup run nightly cargo`: run `cargo xtask bootstrap` first");
    assert!(status.success(), "building l2tp-ebpf failed (`cargo xtask bootstrap` installs the toolchain)");
    let obj = target_dir.join("bpfel-unknown-none/release/l2tp-ebpf");
    std::fs::copy(&obj, out.join("l2tp-ebpf")).unwrap_or_else(|e| panic!("copying {}: {e}", obj.display()));
}
