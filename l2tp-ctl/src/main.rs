//! `l2tp-ctl`: the L2TP endpoint's command line.

use std::{path::PathBuf, process::ExitCode};

use std::net::IpAddr;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use l2tp_ctl::{
    api::{DataplaneView, Request},
    client,
    config::{parse_mac, Config, ConfigError, Encapsulation, ReceiveMode, XdpMode},
    daemon,
    dataplane::{self, Cookie, Pinned, Role, SessionParams},
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
    Dataplane(DataplaneCmd),
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
    #[arg(long, value_parser = parse_cookie)]
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliRole {
    Uplink,
    Attachment,
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_start_matches("0x");
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected an even number of hex digits".into());
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string())).collect()
}

fn parse_cookie(s: &str) -> Result<Cookie, String> {
    Cookie::new(&parse_hex(s)?).ok_or_else(|| "a cookie has 4 or 8 bytes (8 or 16 hex digits)".into())
}

/// A static L2TPv3 Ethernet pseudowire (no control connection).
#[derive(clap::Args, Debug)]
struct SessionArgs {
    /// Session ID we receive on (non-zero).
    #[arg(long)]
    session_id: u32,
    /// Session ID the peer receives on (non-zero).
    #[arg(long)]
    peer_session_id: u32,
    #[arg(long, value_enum, default_value_t = Encapsulation::Udp)]
    encap: Encapsulation,
    /// Our address on the uplink.
    #[arg(long)]
    local: IpAddr,
    /// The peer's address.
    #[arg(long)]
    peer: IpAddr,
    /// Uplink interface (L2TP side).
    #[arg(long)]
    uplink: String,
    /// Attachment interface (customer side).
    #[arg(long)]
    attachment: String,
    /// 802.1Q VLAN of the attachment interface that is the circuit (1 to
    /// 4094; default: the whole interface).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// MAC of the next hop towards the peer. Without it the next hop is
    /// looked up in the kernel's FIB and neighbour tables for every frame,
    /// which needs IP forwarding on the uplink (the lookup answers
    /// "forwarding disabled" otherwise, and every frame would be dropped as
    /// tx_no_route): the command turns it on, as the daemon does, and says
    /// so, unless --no-enable-forwarding.
    #[arg(long, value_parser = parse_mac)]
    next_hop_mac: Option<[u8; 6]>,
    /// Look the next hop up in the kernel even with --next-hop-mac (which
    /// is then the fallback when the neighbour is not known).
    #[arg(long)]
    fib_lookup: bool,
    /// Leave IP forwarding on the uplink as it is: a session that looks its
    /// next hop up (no --next-hop-mac) is then refused while forwarding is
    /// off.
    #[arg(long)]
    no_enable_forwarding: bool,
    /// Cookie the peer sends (checked), hex, 4 or 8 bytes.
    #[arg(long, value_parser = parse_cookie)]
    cookie: Option<Cookie>,
    /// Cookie we send, hex, 4 or 8 bytes.
    #[arg(long, value_parser = parse_cookie)]
    peer_cookie: Option<Cookie>,
    /// Send and check sequence numbers (implies the L2-Specific Sublayer).
    #[arg(long)]
    sequencing: bool,
    /// Use the default L2-Specific Sublayer without sequencing.
    #[arg(long)]
    sublayer: bool,
    #[arg(long, value_enum, default_value_t = ReceiveMode::AcceptNew)]
    rx_mode: ReceiveMode,
    /// Packets in a row that resynchronise Nr (strict and resync modes).
    #[arg(long, default_value_t = 5)]
    resync_n: u16,
    /// While a resync is pending, deliver the packets of a run not yet
    /// confirmed (default: drop them).
    #[arg(long)]
    resync_deliver: bool,
    /// Uplink MTU in bytes (largest outer IP packet).
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// UDP over IPv6: send checksum 0 (RFC 6935/6936) instead of computing
    /// it for every frame.
    #[arg(long)]
    udp6_zero_checksum: bool,
    #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum SessionCmd {
    /// Install a static pseudowire in the data plane.
    ///
    /// Without --next-hop-mac the next hop is looked up in the kernel for
    /// every frame, which needs IP forwarding on the uplink: this command
    /// turns it on (as the daemon does) and says so, or with
    /// --no-enable-forwarding refuses while it is off.
    Add(SessionArgs),
    /// Remove a pseudowire by its (local) session ID.
    Remove {
        #[arg(long)]
        session_id: u32,
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// List installed pseudowires with their counters.
    List {
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DataplaneCmd {
    /// Static pseudowires in the data plane.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Load the XDP programs (unless already pinned) and attach them to
    /// interfaces of the current network namespace. Programs, maps and links
    /// stay pinned after this command exits.
    Attach {
        /// Interface to attach to; repeat for several.
        #[arg(short, long = "interface", required = true)]
        interfaces: Vec<String>,
        /// What the interfaces are: uplinks (L2TP arrives there) or
        /// attachment circuits (customer frames arrive there).
        #[arg(long, value_enum, default_value_t = CliRole::Uplink)]
        role: CliRole,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
        mode: XdpMode,
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
    /// Trace, for a bounded time, every frame the XDP programs drop or
    /// pass up unexpectedly: one line each with the program, the action,
    /// the reason, the session and the Ns/Nr involved.
    ///
    /// Tracing is off unless this runs; the kernel stops it at the end even
    /// if this command is killed. One trace at a time. Under a flood the
    /// ring (128 KiB) can overflow and lines are lost: trace one session.
    Trace {
        /// Only this (local) session ID.
        #[arg(long)]
        session: Option<u32>,
        /// How long to trace, 1 to 3600 seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        #[arg(long, default_value = dataplane::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
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
        Command::Dataplane(cmd) => run_dataplane(cmd),
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

fn run_dataplane(cmd: DataplaneCmd) -> anyhow::Result<()> {
    match cmd {
        DataplaneCmd::Session(cmd) => run_session(cmd),
        DataplaneCmd::Attach { interfaces, role, mode, pin_dir } => {
            let role = match role {
                CliRole::Uplink => Role::Uplink,
                CliRole::Attachment => Role::Attachment,
            };
            // Check every name before touching the kernel: all or nothing.
            for iface in &interfaces {
                dataplane::validate_ifname(iface)?;
            }
            let mode = mode.into();
            let created = !pin_dir.exists();
            let dp = Pinned::open_or_create(&pin_dir)?;
            let mut done = Vec::new();
            for iface in &interfaces {
                match dp.attach(iface, role, mode) {
                    Ok(m) => {
                        let what = if role == Role::Uplink { "uplink" } else { "attachment circuit" };
                        println!("attached to {iface} as {what} ({m} XDP), pinned under {}", pin_dir.display());
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
        DataplaneCmd::Trace { session, seconds, pin_dir, json } => {
            use std::io::Write as _;
            let dp = Pinned::open(&pin_dir)?;
            let mut out = std::io::stdout().lock();
            let summary = dp.trace(session, std::time::Duration::from_secs(seconds), |l| {
                let _ = if json {
                    serde_json::to_string(l).map_or(Ok(()), |j| writeln!(out, "{j}"))
                } else {
                    writeln!(out, "{l}")
                };
                let _ = out.flush();
            })?;
            eprintln!(
                "{} frame(s) traced in {seconds} s{}",
                summary.traced,
                if summary.unreadable > 0 {
                    format!(", {} record(s) not readable", summary.unreadable)
                } else {
                    String::new()
                }
            );
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

/// A session without a next-hop MAC looks its next hop up with
/// `bpf_fib_lookup`, which answers "forwarding disabled" on an uplink
/// without IP forwarding: every frame would be dropped as `tx_no_route`.
/// Turns forwarding on (as the daemon's `dataplane.enable_forwarding`
/// does) and says so, or, when told not to, refuses.
fn next_hop_lookup_needs_forwarding(uplink: &str, ipv6: bool, enable: bool) -> anyhow::Result<()> {
    if dataplane::forwarding_enabled(uplink, ipv6)? {
        return Ok(());
    }
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    if !enable {
        anyhow::bail!(
            "{family} forwarding is off on {uplink}: without --next-hop-mac the next hop is looked up in the \
             kernel (bpf_fib_lookup), which answers \"forwarding disabled\" there, so every frame would be \
             dropped and counted as tx_no_route; give --next-hop-mac, or drop --no-enable-forwarding to turn \
             forwarding on"
        );
    }
    dataplane::enable_forwarding(uplink)?;
    if !dataplane::forwarding_enabled(uplink, ipv6)? {
        anyhow::bail!("{family} forwarding stays off on {uplink} (is {family} disabled there?): give --next-hop-mac");
    }
    eprintln!(
        "l2tp-ctl: turned {family} forwarding on for {uplink}: the next-hop lookup (bpf_fib_lookup) answers \
         \"forwarding disabled\" without it and every frame would be dropped as tx_no_route \
         (--next-hop-mac needs no lookup; --no-enable-forwarding refuses instead)"
    );
    Ok(())
}

fn run_session(cmd: SessionCmd) -> anyhow::Result<()> {
    match cmd {
        SessionCmd::Add(a) => {
            let dp = Pinned::open(&a.pin_dir)?;
            let params = SessionParams {
                local_session_id: a.session_id,
                peer_session_id: a.peer_session_id,
                encap: a.encap.dataplane(1701),
                local_addr: a.local,
                peer_addr: a.peer,
                local_mac: dataplane::hwaddr(&a.uplink)?,
                next_hop_mac: a.next_hop_mac.unwrap_or_default(),
                fib_lookup: a.fib_lookup || a.next_hop_mac.is_none(),
                uplink_ifindex: dataplane::ifindex(&a.uplink)?,
                attach_ifindex: dataplane::ifindex(&a.attachment)?,
                attach_vlan: a.vlan.unwrap_or(0),
                uplink_mtu: a.mtu,
                rx_cookie: a.cookie.unwrap_or(Cookie::NONE),
                tx_cookie: a.peer_cookie.unwrap_or(Cookie::NONE),
                sublayer: a.sublayer || a.sequencing,
                sequencing: a.sequencing,
                rx_mode: a.rx_mode.rx_mode(a.resync_n, a.resync_deliver),
                resync_deliver: a.resync_deliver,
                udp6_zero_checksum: a.udp6_zero_checksum,
                standby: false,
            };
            if params.fib_lookup && params.next_hop_mac == [0; 6] {
                next_hop_lookup_needs_forwarding(&a.uplink, a.local.is_ipv6(), !a.no_enable_forwarding)?;
            }
            let idx = dp.sessions()?.add(&params)?;
            println!("session {} installed (slot {idx}): {} <-> {}", a.session_id, a.attachment, a.peer);
            Ok(())
        }
        SessionCmd::Remove { session_id, pin_dir } => {
            Pinned::open(&pin_dir)?.sessions()?.remove(session_id)?;
            println!("session {session_id} removed");
            Ok(())
        }
        SessionCmd::List { pin_dir, json } => {
            let table = Pinned::open(&pin_dir)?.sessions()?;
            let mut rows = Vec::new();
            for (_, id) in table.list() {
                if let Some(v) = DataplaneView::read(&table, id) {
                    rows.push((id, v));
                }
            }
            if json {
                #[derive(serde::Serialize)]
                struct Row<'a> {
                    session_id: u32,
                    #[serde(flatten)]
                    view: &'a DataplaneView,
                }
                let items: Vec<Row<'_>> = rows.iter().map(|(id, v)| Row { session_id: *id, view: v }).collect();
                println!("{}", serde_json::to_string(&items)?);
            } else {
                println!(
                    "{:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
                    "session", "rx", "tx", "oos", "lost", "resync", "cookie"
                );
                for (id, v) in &rows {
                    let s = &v.counters;
                    println!(
                        "{id:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
                        s.rx_packets, s.tx_packets, s.rx_out_of_seq, s.rx_lost, s.rx_resyncs, s.rx_cookie_mismatch
                    );
                }
            }
            Ok(())
        }
    }
}
