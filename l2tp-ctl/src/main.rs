//! `l2tp-ctl`: the L2TP endpoint's command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use l2tp_ctl::dataplane::{self, AttachMode, Pinned};

#[derive(Parser, Debug)]
#[command(name = "l2tp-ctl", version, about = "L2TP endpoint with an XDP data plane and RFC 4951 failover")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load, attach, inspect and remove the XDP data plane.
    #[command(subcommand)]
    Dataplane(DataplaneCmd),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Native (driver) XDP, generic XDP if the driver refuses.
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
}

#[derive(Subcommand, Debug)]
enum DataplaneCmd {
    /// Load the XDP programs (unless already pinned) and attach them to
    /// interfaces of the current network namespace. Programs, maps and links
    /// stay pinned after this command exits.
    Attach {
        /// Interface to attach to; repeat for several.
        #[arg(short, long = "interface", required = true)]
        interfaces: Vec<String>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
        /// bpffs directory holding the pinned programs, maps and links.
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Detach from interfaces; with --all, also unload and remove every pin.
    Detach {
        /// Interface to detach from; repeat for several.
        #[arg(short, long = "interface")]
        interfaces: Vec<String>,
        /// Detach from every interface and remove all pins.
        #[arg(long, conflicts_with = "interfaces")]
        all: bool,
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Show the attached interfaces and the global counters.
    Stats {
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l2tp-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dataplane(cmd) => run_dataplane(cmd),
    }
}

fn run_dataplane(cmd: DataplaneCmd) -> anyhow::Result<()> {
    match cmd {
        DataplaneCmd::Attach { interfaces, mode, pin_dir } => {
            // Check every name before touching the kernel: all or nothing.
            for iface in &interfaces {
                dataplane::validate_ifname(iface)?;
            }
            let mode = match mode {
                Mode::Auto => AttachMode::Auto,
                Mode::Native => AttachMode::Native,
                Mode::Generic => AttachMode::Generic,
            };
            let created = !pin_dir.exists();
            let dp = Pinned::open_or_create(&pin_dir)?;
            let mut done = Vec::new();
            for iface in &interfaces {
                match dp.attach(iface, mode) {
                    Ok(m) => {
                        println!("attached to {iface} ({m} XDP), pinned under {}", pin_dir.display());
                        done.push(iface.clone());
                    }
                    Err(e) => {
                        // Roll back this command's attachments.
                        for d in &done {
                            let _ = dp.detach(d);
                        }
                        if created {
                            let _ = dp.destroy();
                        }
                        return Err(e.into());
                    }
                }
            }
            Ok(())
        }
        DataplaneCmd::Detach { interfaces, all, pin_dir } => {
            let dp = Pinned::open(&pin_dir)?;
            if all {
                dp.destroy()?;
                println!("data plane under {} removed", pin_dir.display());
                return Ok(());
            }
            if interfaces.is_empty() {
                anyhow::bail!("name at least one --interface, or --all");
            }
            for iface in &interfaces {
                dataplane::validate_ifname(iface)?;
            }
            for iface in &interfaces {
                dp.detach(iface)?;
                println!("detached from {iface}");
            }
            Ok(())
        }
        DataplaneCmd::Stats { pin_dir, json } => {
            let dp = Pinned::open(&pin_dir)?;
            let attached = dp.attached()?;
            let stats = dp.global_stats()?;
            if json {
                let ifs: Vec<String> = attached.iter().map(|i| format!("\"{}\"", i)).collect();
                let ctrs: Vec<String> = stats.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
                println!("{{\"interfaces\":[{}],\"counters\":{{{}}}}}", ifs.join(","), ctrs.join(","));
            } else {
                println!("interfaces: {}", if attached.is_empty() { "-".to_owned() } else { attached.join(", ") });
                for (name, value) in stats.iter() {
                    println!("  {name:<12} {value:>12}");
                }
            }
            Ok(())
        }
    }
}
