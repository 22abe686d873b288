//! Builds the XDP object from `l2tp-ebpf` (nightly, bpfel-unknown-none,
//! release profile) into OUT_DIR, where `dataplane.rs` embeds it.
//! `cargo xtask bootstrap` installs the toolchain this needs.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../l2tp-common/src");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "l2tp-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../l2tp-ebpf"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
