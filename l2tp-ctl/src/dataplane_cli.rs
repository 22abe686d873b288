//! `l2tp-ctl dataplane`: the XDP data plane driven by hand (attach,
//! detach, static pseudowires, counters, drop tracing), without a daemon.

use std::{net::IpAddr, path::PathBuf};

use clap::{Subcommand, ValueEnum};
use l2tp_ctl::{
    api::DataplaneView,
    config::{parse_mac, Encapsulation, ReceiveMode, XdpMode},
    dataplane::{self, Cookie, Pinned, Role, SessionParams},
};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum CliRole {
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

pub(crate) fn parse_cookie(s: &str) -> Result<Cookie, String> {
    Cookie::new(&parse_hex(s)?).ok_or_else(|| "a cookie has 4 or 8 bytes (8 or 16 hex digits)".into())
}

/// A static L2TPv3 Ethernet pseudowire (no control connection).
#[derive(clap::Args, Debug)]
pub(crate) struct SessionArgs {
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
pub(crate) enum SessionCmd {
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
pub(crate) enum DataplaneCmd {
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

pub(crate) fn run_dataplane(cmd: DataplaneCmd) -> anyhow::Result<()> {
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
