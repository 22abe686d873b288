//! `l2tp-ctl`: the L2TP endpoint's command line.

mod dataplane_cli;

use std::{path::PathBuf, process::ExitCode};

use std::net::IpAddr;

use clap::{CommandFactory, Parser, Subcommand};
use l2tp_ctl::{
    api::Request,
    client,
    config::{parse_mac, Config, ConfigError, Encapsulation},
    daemon,
    dataplane::{self, Cookie},
};

/// What the exit status says, in `--help` and the man pages.
const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  operational failure (no daemon on the socket, the daemon refused, a
     kernel or network error)
  2  bad usage or configuration (unknown option or value, a configuration
     file that does not parse or check)";

#[derive(Parser, Debug)]
#[command(
    name = "l2tp-ctl",
    version,
    about = "L2TP endpoint with an XDP data plane and RFC 4951 failover",
    after_help = EXIT_STATUS
)]
struct Cli {
    /// `--socket` and `--json`, accepted before or after the subcommand.
    #[command(flatten)]
    conn: client::Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control daemon (foreground; logs to stderr).
    Daemon {
        /// Configuration file (TOML, see doc/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Directory of the persistent state (overrides global.state_dir).
        /// The control socket is the global `--socket` (or
        /// L2TP_CTL_SOCKET), which overrides global.socket when given.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Log level or filter (error, warn, info, debug, trace; or an
        /// EnvFilter directive). RUST_LOG wins when set.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Stop the daemon: tunnels torn down (StopCCN) and the data plane
    /// removed; with --keep a maintenance stop that leaves tunnels,
    /// sessions and forwarding in place for the next start to recover.
    Stop {
        #[arg(long)]
        keep: bool,
    },
    /// Re-read the configuration file (as SIGHUP does).
    Reload,
    /// Daemon version, uptime and counts.
    Status,
    /// Control connections.
    Tunnel {
        #[command(subcommand)]
        cmd: client::TunnelCmd,
    },
    /// Sessions (pseudowires).
    Session {
        #[command(subcommand)]
        cmd: client::SessionCmd,
    },
    /// Control counters and per-session data-plane counters.
    Stats,
    /// RFC 4951 failover state.
    Failover {
        #[command(subcommand)]
        cmd: client::FailoverCmd,
    },
    /// The hot standby on another host: role, partner, term, replication
    /// lag; takeover.
    Ha {
        #[command(subcommand)]
        cmd: client::HaCmd,
    },
    /// Tunnel, session and failover events: the daemon's last 1000, then
    /// (with --follow) the new ones as they happen.
    Events {
        /// Keep streaming until interrupted (else stop after 1 s of quiet).
        /// With --json, one JSON object per line.
        #[arg(long, short)]
        follow: bool,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (l2tp-ctl.1 and one per subcommand) into a
    /// directory: what `cargo xtask man` runs.
    #[command(hide = true)]
    Man {
        /// Directory to write them to (created if missing).
        out_dir: PathBuf,
    },
    /// Load, attach, inspect and remove the XDP data plane directly
    /// (static pseudowires, no daemon).
    #[command(subcommand)]
    Dataplane(dataplane_cli::DataplaneCmd),
    /// Packet generator: L2TPv3 data frames of one session (or plain
    /// Ethernet frames, for the encapsulation direction) sent out of an
    /// interface at the highest rate the machine allows, with XDP live
    /// frames. Works on real NICs (native XDP) and on veth (the peer needs
    /// an XDP program). Needs root.
    Pktgen(PktgenArgs),
}

#[derive(clap::Args, Debug)]
struct PktgenArgs {
    /// Interface the frames leave by.
    #[arg(long, short)]
    interface: String,
    /// L2TPv3 Session ID the frames carry (omit with --ethernet).
    #[arg(long, required_unless_present = "ethernet", conflicts_with = "ethernet")]
    session_id: Option<u32>,
    /// Plain Ethernet frames carrying IP/UDP (what a customer sends into an
    /// attachment interface).
    #[arg(long)]
    ethernet: bool,
    #[arg(long, value_enum, default_value = "udp")]
    encap: Encapsulation,
    /// Cookie of the frames, in hex (4 or 8 bytes).
    #[arg(long, value_parser = dataplane_cli::parse_cookie)]
    cookie: Option<Cookie>,
    /// Default L2-Specific Sublayer with an advancing sequence number.
    #[arg(long)]
    sequence: bool,
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    seq_start: u32,
    /// Source address (outer for L2TP frames). IPv4 or IPv6, same family as
    /// --dst.
    #[arg(long)]
    src: IpAddr,
    #[arg(long)]
    dst: IpAddr,
    /// Source MAC (default: the interface's).
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// Destination MAC (default: broadcast).
    #[arg(long, value_parser = parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Frame length in bytes, without the FCS.
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// Packets to send.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds to send for (with --count: whichever comes first).
    #[arg(long)]
    duration: Option<f64>,
    /// Frames per kernel batch (1 to 256).
    #[arg(long, default_value_t = l2tp_ctl::pktgen::DEFAULT_BATCH)]
    batch: u32,
    /// CPU to run on (default: the current one); the sequence counter is
    /// per CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// No progress lines; one final line (or JSON object).
    #[arg(long)]
    quiet: bool,
    /// Final result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Check a configuration file: exit 0 when valid (legal values worth a
    /// word, such as a retransmission cap under 8 s or a Recovery Time
    /// shorter than the peer's control timeout, are warned about on
    /// stderr), 2 with the key and line at fault when not. With --json, one
    /// object: file, tunnels, sessions, warnings.
    Check { file: PathBuf },
}

/// Exit code of operational failures.
const EXIT_FAILURE: u8 = 1;
/// Exit code of bad usage (clap's) and of configuration errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's own code, EXIT_USAGE).
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l2tp-ctl: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => tracing_subscriber::EnvFilter::try_new(f)?,
        _ => {
            tracing_subscriber::EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))?
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let conn = &cli.conn;
    match cli.command {
        Command::Daemon { config, state_dir, log_level } => {
            init_logging(&log_level)?;
            daemon::run(daemon::Options { config, state_dir, socket: conn.socket.clone() })?;
            Ok(())
        }
        Command::Stop { keep } => client::simple(conn, Request::Shutdown { keep }),
        Command::Reload => client::simple(conn, Request::Reload),
        Command::Status => client::status(conn),
        Command::Tunnel { cmd } => client::tunnel(conn, cmd),
        Command::Session { cmd } => client::session(conn, cmd),
        Command::Stats => client::stats(conn),
        Command::Failover { cmd } => client::failover(conn, cmd),
        Command::Ha { cmd } => client::ha(conn, cmd),
        Command::Events { follow } => client::events(conn, follow),
        Command::Config(ConfigCmd::Check { file }) => {
            let c = Config::load(&file)?;
            let sessions: usize = c.tunnels.iter().map(|t| t.sessions.len()).sum();
            let warnings = c.warnings();
            if conn.json {
                let out = serde_json::json!({
                    "file": file.display().to_string(),
                    "valid": true,
                    "tunnels": c.tunnels.len(),
                    "sessions": sessions,
                    "warnings": warnings,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            // Legal but worth a word: warnings, and still exit 0.
            for w in warnings {
                eprintln!("l2tp-ctl: warning: {}: {w}", file.display());
            }
            println!("{}: valid ({} tunnel(s), {sessions} session(s))", file.display(), c.tunnels.len());
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "l2tp-ctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out_dir } => {
            std::fs::create_dir_all(&out_dir)?;
            clap_mangen::generate_to(Cli::command(), &out_dir)?;
            println!("man pages written to {}", out_dir.display());
            Ok(())
        }
        Command::Dataplane(cmd) => dataplane_cli::run_dataplane(cmd),
        Command::Pktgen(args) => run_pktgen(args),
    }
}

fn run_pktgen(a: PktgenArgs) -> anyhow::Result<()> {
    use l2tp_ctl::pktgen::{self, FrameSpec, Generator, Payload, RunSpec};
    dataplane::validate_ifname(&a.interface)?;
    let ifindex = dataplane::ifindex(&a.interface)?;
    let duration = match a.duration {
        Some(d) if !(d.is_finite() && d > 0.0 && d <= 86_400.0) => {
            anyhow::bail!("--duration {d}: give seconds between 0 and 86400")
        }
        d => d.map(std::time::Duration::from_secs_f64),
    };
    if a.count.is_none() && duration.is_none() {
        anyhow::bail!("give --count or --duration (the generator never runs unbounded)");
    }
    let src_mac = match a.src_mac {
        Some(m) => m,
        None => dataplane::hwaddr(&a.interface)?,
    };
    let payload = match a.session_id {
        Some(session_id) if !a.ethernet => Payload::L2tp {
            session_id,
            encap: a.encap.dataplane(1701),
            cookie: a.cookie.map(|c| c.as_bytes().to_vec()).unwrap_or_default(),
            sequence: a.sequence,
        },
        _ => Payload::Ethernet,
    };
    let frame = pktgen::build(&FrameSpec {
        payload,
        src_mac,
        dst_mac: a.dst_mac.unwrap_or([0xff; 6]),
        src: a.src,
        dst: a.dst,
        size: a.size,
    })?;
    let cpu = a.cpu.unwrap_or_else(pktgen::current_cpu);
    pktgen::pin_to_cpu(cpu)?;
    let mut gen = Generator::load(dataplane::EBPF_OBJECT)?;
    let spec = RunSpec { ifindex, count: a.count, duration, batch: a.batch, seq_start: a.seq_start };
    let quiet = a.quiet || a.json;
    let mut last = std::time::Instant::now();
    let done = gen.run(&frame, &spec, |p| {
        if !quiet && last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!("{}: {} packets, {:.3} Mpps", a.interface, p.sent, p.rate() / 1e6);
        }
    })?;
    if a.json {
        let out = serde_json::json!({
            "interface": a.interface,
            "cpu": cpu,
            "frame_bytes": frame.bytes.len(),
            "packets": done.sent,
            "elapsed_s": done.elapsed.as_secs_f64(),
            "kernel_s": done.kernel.as_secs_f64(),
            "pps": done.rate(),
            "ns_per_packet": if done.sent > 0 { done.kernel.as_nanos() as f64 / done.sent as f64 } else { 0.0 },
        });
        println!("{out}");
    } else {
        println!(
            "{}: sent {} frames of {} bytes in {:.3} s on CPU {cpu}: {:.3} Mpps, {:.1} ns per packet, {:.2} Gbit/s",
            a.interface,
            done.sent,
            frame.bytes.len(),
            done.elapsed.as_secs_f64(),
            done.rate() / 1e6,
            if done.sent > 0 { done.kernel.as_nanos() as f64 / done.sent as f64 } else { 0.0 },
            done.rate() * (frame.bytes.len() as f64 + 24.0) * 8.0 / 1e9,
        );
    }
    Ok(())
}
