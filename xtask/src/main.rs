//! `cargo xtask`: the project's task runner.
//!
//! - `bootstrap`: installs, idempotently, what the eBPF build and the tests
//!   need on a fresh Debian 12 machine.
//! - `test`: the one test command (lint, build, every test).
//! - `demo`: the product on a topology it builds itself.
//! - `man`: the man pages of `l2tp-ctl`, into target/man.

mod bootstrap;
mod demo;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install the eBPF toolchain and test tools (each step skipped when done).
    Bootstrap,
    /// Build the eBPF object with the nightly toolchain.
    BuildEbpf {
        /// Release profile (default: dev).
        #[arg(long)]
        release: bool,
    },
    /// Bootstrap, lint, build and run every test (privileged ones need root).
    Test {
        /// Extra arguments for the test runner (for example a test filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the product on a topology of network namespaces, then remove it.
    Demo,
    /// Write the man pages of `l2tp-ctl` (clap_mangen): l2tp-ctl.1 and one
    /// page per subcommand, into target/man (or --out-dir).
    Man {
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// The hot standby's churn test (sessions added and deleted on the
    /// active, which is killed at a different point each trial), a hundred
    /// trials by default; prints the tally. Needs root.
    Soak {
        #[arg(long, default_value_t = 100)]
        trials: usize,
    },
    /// Benchmarks: data plane (test runs and live frames against
    /// redirect_map and bridge+VXLAN) and control plane (setup rate,
    /// recovery after SIGKILL), pinned to one CPU; writes
    /// target/bench/report.{json,md} and dataplane.svg. Needs root.
    Bench {
        /// Arguments for the benchmark program (--quick, --rounds N,
        /// --no-control, --tunnels N, --sessions-per-tunnel N).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Cmd::Bootstrap => bootstrap::ensure(),
        Cmd::BuildEbpf { release } => util::build_ebpf(release).map(|p| println!("{}", p.display())),
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo::run(),
        Cmd::Man { out_dir } => man(out_dir),
        Cmd::Bench { args } => bench(&args),
        Cmd::Soak { trials } => soak(trials),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn test(args: &[String]) -> anyhow::Result<()> {
    use util::{cargo, step};
    bootstrap::ensure()?;
    step("rustfmt");
    util::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("clippy (userspace, -D warnings)");
    util::run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "l2tp-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy (eBPF, -D warnings)");
    util::run(util::ebpf_cargo("clippy", false).args(["--", "-D", "warnings"]))?;
    step("eBPF object, dev profile");
    let dev_obj = util::build_ebpf(false)?;
    let root = util::is_root();
    if !root {
        eprintln!(
            "xtask: not root: the privileged tests (BPF, network namespaces) are SKIPPED; \
             CI runs as root and runs them all"
        );
    }
    // Doc tests first (nextest does not run them), so that the run ends with
    // the test runner's summary of all the other tests.
    step("doc tests");
    util::run(cargo().args(["test", "--doc", "--workspace", "--exclude", "l2tp-ebpf", "--exclude", "xtask"]))?;
    step("l2tp-ctl binary (the end-to-end tests run it)");
    util::run(cargo().args(["build", "--package", "l2tp-ctl", "--bins"]))?;
    step("tests");
    let mut cmd = cargo();
    if util::have("cargo-nextest") {
        cmd.args(["nextest", "run", "--workspace", "--exclude", "l2tp-ebpf", "--no-fail-fast"]);
        if root {
            cmd.args(["--run-ignored", "all"]);
        }
        cmd.args(args);
    } else {
        cmd.args(["test", "--workspace", "--exclude", "l2tp-ebpf", "--no-fail-fast"]).args(args).arg("--");
        if root {
            cmd.arg("--include-ignored");
        }
    }
    cmd.env("L2TP_EBPF_DEV_OBJ", &dev_obj);
    util::run(&mut cmd)?;
    Ok(())
}

/// The man pages come from `l2tp-ctl`'s own command definition (its hidden
/// `man` subcommand runs clap_mangen), so they never drift from `--help`.
fn soak(trials: usize) -> anyhow::Result<()> {
    use util::{cargo, step};
    bootstrap::ensure()?;
    if !util::is_root() {
        anyhow::bail!("the soak needs root (network namespaces, BPF)");
    }
    step("l2tp-ctl binary");
    util::run(cargo().args(["build", "--package", "l2tp-ctl", "--bins"]))?;
    step(&format!("churn with sync: {trials} trials (the tally is the last line)"));
    util::run(
        cargo()
            .args(["nextest", "run", "--package", "l2tp-tests", "--run-ignored", "all", "--no-capture"])
            .args(["-E", "binary(ha_e2e) & test(churn)"])
            .env("L2TP_SOAK_TRIALS", trials.to_string()),
    )
}

fn man(out_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use util::{cargo, step, workspace};
    bootstrap::ensure()?;
    step("l2tp-ctl binary");
    util::run(cargo().args(["build", "--quiet", "--package", "l2tp-ctl", "--bin", "l2tp-ctl"]))?;
    let dir = out_dir.unwrap_or_else(|| workspace().join("target/man"));
    step(&format!("man pages into {}", dir.display()));
    util::run(std::process::Command::new(workspace().join("target/debug/l2tp-ctl")).arg("man").arg(&dir))
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    use util::{cargo, step, workspace};
    bootstrap::ensure()?;
    if !util::is_root() {
        anyhow::bail!("the benchmarks need root (BPF programs, network namespaces)");
    }
    step("release build");
    util::run(cargo().args(["build", "--release", "--package", "l2tp-ctl", "--bins"]))?;
    util::run(cargo().args(["build", "--release", "--package", "l2tp-tests", "--bin", "l2tp-bench"]))?;
    let no_trace = util::build_ebpf_without_trace()?;
    let target = workspace().join("target");
    // One CPU for everything measured: the last one, away from CPU 0's
    // housekeeping.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = (cpus - 1).to_string();
    step(&format!("benchmarks, pinned to CPU {cpu}"));
    let mut cmd = std::process::Command::new("taskset");
    cmd.args(["-c", &cpu])
        .arg(target.join("release/l2tp-bench"))
        .arg("--out")
        .arg(target.join("bench"))
        .args(args)
        .env("L2TP_CTL_BIN", target.join("release/l2tp-ctl"))
        .env("L2TP_BENCH_NO_TRACE_OBJ", &no_trace)
        .current_dir(workspace());
    util::run(&mut cmd)
}
