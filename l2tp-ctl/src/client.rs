//! Client subcommands: talk to a running daemon over its control socket
//! and print human tables, or JSON with `--json`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand};

use crate::{
    api::{Client, EventView, Reply, Request, SessionView, TunnelView},
    config::{Encapsulation, Failover, PwType, ReceiveMode, RetransmitOverride, SessionConfig, TunnelConfig},
};

/// The control socket when neither `--socket`, `L2TP_CTL_SOCKET` nor
/// (for the daemon) `global.socket` names one.
pub const DEFAULT_SOCKET: &str = "/run/l2tp-ctl.sock";

/// Options every command takes, before or after the subcommand (global
/// arguments of the top-level command).
#[derive(Args, Debug, Clone, Default)]
pub struct Conn {
    /// Control socket of the daemon [default: /run/l2tp-ctl.sock]. For
    /// `daemon`, overrides global.socket.
    #[arg(long, global = true, env = "L2TP_CTL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON (one document; `events` prints one object per line).
    #[arg(long, global = true)]
    pub json: bool,
}

impl Conn {
    /// The socket the client commands connect to.
    pub fn socket_path(&self) -> &Path {
        self.socket.as_deref().unwrap_or(Path::new(DEFAULT_SOCKET))
    }
}

#[derive(Subcommand, Debug)]
pub enum TunnelCmd {
    /// Every configured tunnel with its state.
    List,
    /// One tunnel, its sessions and its control channel state.
    Show { name: String },
    /// Adds a tunnel at run time (kept until deleted or the daemon stops;
    /// a reload does not remove it).
    Add(TunnelAddArgs),
    /// Tears a tunnel down (StopCCN) and forgets it.
    Delete { name: String },
}

#[derive(Args, Debug)]
pub struct TunnelAddArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Peer address.
    #[arg(long)]
    pub peer: IpAddr,
    /// L2TP version: 2 or 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub version: u8,
    #[arg(long, value_enum, default_value_t = Encapsulation::Udp)]
    pub encap: Encapsulation,
    /// Peer's UDP port.
    #[arg(long, default_value_t = 1701)]
    pub port: u16,
    /// Our address towards the peer (default: the kernel's choice).
    #[arg(long)]
    pub local: Option<IpAddr>,
    /// File holding the shared secret (never on the command line).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Hide AVPs in session messages (L2TPv2, needs a secret).
    #[arg(long)]
    pub hide_avps: bool,
    /// Wait for the peer's SCCRQ instead of sending one.
    #[arg(long)]
    pub passive: bool,
    /// Uplink interface for this tunnel's pseudowires.
    #[arg(long)]
    pub uplink: Option<String>,
    /// Do not advertise RFC 4951 control channel failover (C bit).
    #[arg(long)]
    pub no_failover_control: bool,
    /// Do not advertise RFC 4951 data channel failover (D bit).
    #[arg(long)]
    pub no_failover_data: bool,
    /// Recovery Time we advertise, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub recovery_time_ms: u32,
    /// Seconds of silence before a HELLO (default: global.hello_interval).
    #[arg(long)]
    pub hello_interval: Option<u64>,
    /// Our Receive Window Size (default: global.receive_window).
    #[arg(long)]
    pub receive_window: Option<u16>,
    /// First retransmission timeout, milliseconds (default:
    /// global.retransmit.initial_ms).
    #[arg(long)]
    pub retransmit_initial_ms: Option<u64>,
    /// Retransmissions before the tunnel is declared dead (default:
    /// global.retransmit.retries).
    #[arg(long)]
    pub retransmit_retries: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// Sessions of every tunnel, or of one.
    List {
        #[arg(long)]
        tunnel: Option<String>,
    },
    /// One session with its data-plane counters.
    Show { tunnel: String, name: String },
    /// Adds a pseudowire to a tunnel: the initiator of the tunnel requests
    /// it, the other end accepts it by its Remote End ID.
    Add(SessionAddArgs),
    /// Tears a session down (CDN) and forgets it.
    Delete { tunnel: String, name: String },
}

#[derive(Args, Debug)]
pub struct SessionAddArgs {
    /// Tunnel name.
    pub tunnel: String,
    /// Session name, unique within the tunnel.
    #[arg(long)]
    pub name: String,
    /// Attachment (customer-side) interface.
    #[arg(long)]
    pub interface: String,
    /// Remote End ID (default: the name).
    #[arg(long)]
    pub remote_end_id: Option<String>,
    /// 802.1Q VLAN of the interface that is the attachment circuit (1 to
    /// 4094): an Ethernet VLAN pseudowire (type 4) instead of an Ethernet
    /// port pseudowire (type 5).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4094))]
    pub vlan: Option<u16>,
    /// Cookie length we assign: 0, 4 or 8 bytes.
    #[arg(long, default_value_t = 0)]
    pub cookie_len: u8,
    /// Sequence numbers on data.
    #[arg(long)]
    pub sequencing: bool,
    /// No L2-Specific Sublayer (not with --sequencing).
    #[arg(long, conflicts_with = "sequencing")]
    pub no_sublayer: bool,
    #[arg(long, value_enum, default_value_t = ReceiveMode::AcceptNew)]
    pub rx_mode: ReceiveMode,
    /// Run length of the strict and resync modes (packets).
    #[arg(long, default_value_t = 5)]
    pub resync_n: u16,
    /// While a resync is pending, deliver the packets of a run not yet
    /// confirmed (default: drop them).
    #[arg(long)]
    pub resync_deliver: bool,
}

#[derive(Subcommand, Debug)]
pub enum FailoverCmd {
    /// Negotiated RFC 4951 capabilities and recovery state per tunnel.
    Status,
    /// Ask the peer for its state of sessions suspected inconsistent (RFC
    /// 4951 FSQ/FSR): confirmed ones stay, ones it does not hold are
    /// cleared on both ends. All established sessions when none is named.
    Query { tunnel: String, sessions: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum HaCmd {
    /// Role, partner state, term and replication lag (unacknowledged
    /// updates and the age of the oldest).
    Status,
    /// Take over now: for `takeover = "external"`, run by keepalived's
    /// notify_master. The partner steps down when it meets the new term.
    Takeover,
    /// Hand the active role to the standby for maintenance: no detection
    /// delay, no session lost (the standby recovers them through RFC 4951).
    Switchover,
}

pub fn ha(conn: &Conn, cmd: HaCmd) -> anyhow::Result<()> {
    match cmd {
        HaCmd::Takeover => done(conn, call(conn, &Request::HaTakeover)?),
        HaCmd::Switchover => done(conn, call(conn, &Request::HaSwitchover)?),
        HaCmd::Status => match call(conn, &Request::HaStatus)? {
            Reply::Ha(h) if conn.json => print_json(&h),
            Reply::Ha(h) => {
                let addrs: Vec<String> = h.service_address.iter().map(ToString::to_string).collect();
                println!("node           {}", h.node);
                println!("role           {}", h.role);
                println!(
                    "partner        {} ({})",
                    h.partner_state,
                    if h.connected { "connected" } else { "not connected" }
                );
                println!("term           {}", h.term);
                println!("service        {}", addrs.join(", "));
                println!("last update    {}", h.seq);
                println!(
                    "lag            {} unacknowledged{}",
                    h.unacknowledged,
                    h.oldest_unacknowledged_ms.map_or(String::new(), |ms| format!(", oldest {ms} ms"))
                );
                if h.role == "standby" {
                    println!(
                        "warm           {} session(s) installed inactive{}",
                        h.warm_sessions,
                        if h.warm_failed > 0 { format!(", {} not installable", h.warm_failed) } else { String::new() }
                    );
                }
                println!("takeovers      {}", h.takeovers);
                if let Some(ms) = h.last_takeover_ms {
                    let ago = crate::store::now_ms().saturating_sub(ms);
                    println!("last takeover  {:.1} s ago", ago as f64 / 1000.0);
                }
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
    }
}

fn call(conn: &Conn, req: &Request) -> anyhow::Result<Reply> {
    Ok(Client::connect(conn.socket_path())?.call(req)?)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn done(conn: &Conn, reply: Reply) -> anyhow::Result<()> {
    if conn.json {
        return print_json(&reply);
    }
    if let Reply::Done { message } = reply {
        println!("{message}");
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), ToString::to_string)
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn tunnel_rows(ts: &[TunnelView]) {
    table(
        &["NAME", "STATE", "PEER", "VER", "ENCAP", "LOCAL-ID", "PEER-ID", "SESSIONS", "FAILOVER(PEER)"],
        ts.iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.state.clone(),
                    t.peer.clone(),
                    t.version.to_string(),
                    t.encapsulation.to_string(),
                    opt(&t.local_id),
                    opt(&t.peer_id),
                    format!("{}/{}", t.sessions.iter().filter(|s| s.state == "established").count(), t.sessions.len()),
                    t.peer_failover.as_ref().map_or("-".into(), |f| {
                        format!(
                            "{}{} {}ms",
                            if f.control { "C" } else { "" },
                            if f.data { "D" } else { "" },
                            f.recovery_time_ms
                        )
                    }),
                ]
            })
            .collect(),
    );
}

fn session_rows(ss: &[SessionView]) {
    table(
        &["TUNNEL", "NAME", "STATE", "LOCAL-ID", "PEER-ID", "INTERFACE", "SEQ", "RX", "TX", "LOST", "OOS"],
        ss.iter()
            .map(|s| {
                let d = s.dataplane.as_ref();
                vec![
                    s.tunnel.clone(),
                    s.name.clone(),
                    if s.stale { format!("{} (stale)", s.state) } else { s.state.clone() },
                    opt(&s.local_id),
                    opt(&s.peer_id),
                    match (&s.interface, s.vlan) {
                        (Some(i), Some(v)) => format!("{i}.{v}"),
                        (i, _) => opt(i),
                    },
                    if s.sequencing { "yes" } else { "no" }.into(),
                    d.map_or("-".into(), |d| d.counters.rx_packets.to_string()),
                    d.map_or("-".into(), |d| d.counters.tx_packets.to_string()),
                    d.map_or("-".into(), |d| d.counters.rx_lost.to_string()),
                    d.map_or("-".into(), |d| d.counters.rx_out_of_seq.to_string()),
                ]
            })
            .collect(),
    );
}

pub fn tunnel(conn: &Conn, cmd: TunnelCmd) -> anyhow::Result<()> {
    match cmd {
        TunnelCmd::List => match call(conn, &Request::TunnelList)? {
            Reply::Tunnels { tunnels } if conn.json => print_json(&tunnels),
            Reply::Tunnels { tunnels } => {
                tunnel_rows(&tunnels);
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
        TunnelCmd::Show { name } => match call(conn, &Request::TunnelShow { name })? {
            Reply::Tunnel(t) if conn.json => print_json(&t),
            Reply::Tunnel(t) => {
                tunnel_rows(std::slice::from_ref(&t));
                println!();
                println!(
                    "initiator: {}  peer host: {}  control Ns/Nr: {}/{}",
                    opt(&t.initiator),
                    opt(&t.peer_host_name),
                    opt(&t.ns),
                    opt(&t.nr)
                );
                if !t.sessions.is_empty() {
                    println!();
                    session_rows(&t.sessions);
                }
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
        TunnelCmd::Add(a) => {
            let t = TunnelConfig {
                name: a.name,
                peer: a.peer,
                port: a.port,
                local: a.local,
                version: a.version,
                encapsulation: a.encap,
                initiate: !a.passive,
                secret: None,
                // Read by the daemon; the secret never crosses the socket.
                secret_file: a.secret_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
                hide_avps: a.hide_avps,
                uplink: a.uplink,
                next_hop_mac: None,
                udp6_zero_checksum: false,
                failover: Failover {
                    control: !a.no_failover_control,
                    data: !a.no_failover_data,
                    recovery_time_ms: a.recovery_time_ms,
                    ..Failover::default()
                },
                hello_interval: a.hello_interval,
                receive_window: a.receive_window,
                retransmit: RetransmitOverride {
                    initial_ms: a.retransmit_initial_ms,
                    retries: a.retransmit_retries,
                    ..RetransmitOverride::default()
                },
                sessions: Vec::new(),
            };
            done(conn, call(conn, &Request::TunnelAdd { tunnel: Box::new(t) })?)
        }
        TunnelCmd::Delete { name } => done(conn, call(conn, &Request::TunnelDelete { name })?),
    }
}

pub fn session(conn: &Conn, cmd: SessionCmd) -> anyhow::Result<()> {
    match cmd {
        SessionCmd::List { tunnel } => match call(conn, &Request::SessionList { tunnel })? {
            Reply::Sessions { sessions } if conn.json => print_json(&sessions),
            Reply::Sessions { sessions } => {
                session_rows(&sessions);
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
        SessionCmd::Show { tunnel, name } => match call(conn, &Request::SessionShow { tunnel, name })? {
            Reply::Session(s) if conn.json => print_json(&s),
            Reply::Session(s) => {
                session_rows(std::slice::from_ref(&s));
                if let Some(d) = &s.dataplane {
                    println!();
                    println!("{}", serde_json::to_string_pretty(d)?);
                }
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
        SessionCmd::Add(a) => {
            let s = SessionConfig {
                name: a.name,
                remote_end_id: a.remote_end_id,
                interface: a.interface,
                pw_type: if a.vlan.is_some() { PwType::EthernetVlan } else { PwType::Ethernet },
                vlan: a.vlan,
                cookie_len: a.cookie_len,
                sublayer: !a.no_sublayer,
                sequencing: a.sequencing,
                receive_mode: a.rx_mode,
                resync_n: a.resync_n,
                resync_deliver: a.resync_deliver,
            };
            done(conn, call(conn, &Request::SessionAdd { tunnel: a.tunnel, session: s })?)
        }
        SessionCmd::Delete { tunnel, name } => done(conn, call(conn, &Request::SessionDelete { tunnel, name })?),
    }
}

pub fn status(conn: &Conn) -> anyhow::Result<()> {
    match call(conn, &Request::Status)? {
        Reply::Status(s) if conn.json => print_json(&s),
        Reply::Status(s) => {
            println!("l2tp-ctl {} (pid {}), up {} s, config {}", s.version, s.pid, s.uptime_s, s.config);
            println!(
                "tunnels: {} configured, {} established; sessions: {} established",
                s.tunnels_configured, s.tunnels_established, s.sessions_established
            );
            println!("data plane: {}", s.dataplane.as_deref().unwrap_or("off"));
            Ok(())
        }
        r => anyhow::bail!("unexpected reply {r:?}"),
    }
}

pub fn stats(conn: &Conn) -> anyhow::Result<()> {
    match call(conn, &Request::Stats)? {
        Reply::Stats(s) if conn.json => print_json(&s),
        Reply::Stats(s) => {
            let c = &s.control;
            println!("control: {} datagrams, {} malformed, {} unknown tunnel, {} auth failures, {} refused, {} StopCCN sent, {} CDN sent, {} ignored",
                c.datagrams, c.malformed, c.unknown_tunnel, c.auth_failures, c.refused, c.stopccn_sent, c.cdn_sent, c.ignored);
            if !s.dataplane_global.is_empty() {
                let g: Vec<String> = s.dataplane_global.iter().map(|(n, v)| format!("{n} {v}")).collect();
                println!("data plane: {}", g.join(", "));
            }
            println!();
            session_rows(&s.sessions);
            Ok(())
        }
        r => anyhow::bail!("unexpected reply {r:?}"),
    }
}

pub fn failover(conn: &Conn, cmd: FailoverCmd) -> anyhow::Result<()> {
    match cmd {
        FailoverCmd::Query { tunnel, sessions } => {
            done(conn, call(conn, &Request::FailoverQuery { tunnel, sessions })?)
        }
        FailoverCmd::Status => match call(conn, &Request::FailoverStatus)? {
            Reply::Failover { tunnels } if conn.json => print_json(&tunnels),
            Reply::Failover { tunnels } => {
                let bits = |f: &Option<crate::api::FailoverBits>| {
                    f.as_ref().map_or("-".into(), |f| {
                        format!(
                            "{}{} {}ms",
                            if f.control { "C" } else { "-" },
                            if f.data { "D" } else { "-" },
                            f.recovery_time_ms
                        )
                    })
                };
                table(
                    &["TUNNEL", "STATE", "LOCAL", "PEER", "CONTROL", "DATA", "STALE", "UNCONFIRMED", "LAST"],
                    tunnels
                        .iter()
                        .map(|t| {
                            vec![
                                t.tunnel.clone(),
                                t.state.clone(),
                                bits(&t.local),
                                bits(&t.peer),
                                if t.control_recovery { "yes" } else { "no" }.into(),
                                if t.data_recovery { "yes" } else { "no" }.into(),
                                t.stale_sessions.len().to_string(),
                                t.unconfirmed_sessions.to_string(),
                                opt(&t.last_event),
                            ]
                        })
                        .collect(),
                );
                Ok(())
            }
            r => anyhow::bail!("unexpected reply {r:?}"),
        },
    }
}

/// Streams events until interrupted (or, without `follow`, until none
/// arrives for a second).
pub fn events(conn: &Conn, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut c = Client::connect(conn.socket_path())?;
    match c.call(&Request::Events)? {
        Reply::Following => {}
        r => anyhow::bail!("unexpected reply {r:?}"),
    }
    c.set_read_timeout(if follow { None } else { Some(std::time::Duration::from_secs(1)) })?;
    // Written when nothing more has already arrived: a burst of events (a
    // recovery confirms every session at once) is one write, not one per
    // line, and a follower sees each event as soon as the daemon sent it.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut line = String::new();
    let ended = loop {
        if !c.has_buffered() {
            out.flush()?;
        }
        // `--json`: the daemon's own line (an `EventView` in JSON), as is.
        let read = if conn.json { c.read_json_line(&mut line).map(|()| None) } else { c.read().map(Some) };
        let ev: Option<EventView> = match read {
            Ok(ev) => ev,
            Err(crate::api::ClientError::Io(e))
                if !follow && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break Ok(());
            }
            Err(crate::api::ClientError::Closed) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let Some(ev) = ev else {
            out.write_all(line.trim_end_matches('\n').as_bytes())?;
            writeln!(out)?;
            continue;
        };
        let session = match (&ev.session, ev.session_id) {
            (Some(n), Some(id)) => format!(" session {n} ({id})"),
            _ => String::new(),
        };
        writeln!(
            out,
            "{} {:<18} {}{}: {}",
            ev.time_ms,
            ev.event,
            ev.tunnel.as_deref().unwrap_or("-"),
            session,
            ev.detail
        )?;
    };
    out.flush()?;
    ended
}

pub fn simple(conn: &Conn, req: Request) -> anyhow::Result<()> {
    done(conn, call(conn, &req)?)
}
