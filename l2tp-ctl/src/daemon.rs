//! `l2tp-ctl daemon`: the tokio driver around the sans-IO protocol engine.
//!
//! One task owns the engine, the data plane, the store and the tunnel
//! table; socket readers and API connections talk to it through channels.
//! The engine's outputs are drained in a fixed order after every input:
//! datagrams out, data-plane updates (programmed into the maps and written
//! to the store), then events (logged and streamed to `events` clients), so
//! that nothing is reported up before it is persisted.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use l2tp_proto::{
    engine::{
        DataplaneUpdate, DownReason, Engine, Event, FailoverCapability, RestoredSession, RestoredTunnel, TunnelId,
        SessionStatus, TunnelInfo, TunnelStatus,
    },
    wire::{Transport, Version},
};
use rand::{rngs::StdRng, SeedableRng};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UdpSocket, UnixListener, UnixStream},
    signal::unix::{signal, SignalKind},
    sync::{broadcast, mpsc, oneshot},
};
use tracing::{debug, error, info, warn};

use crate::{
    api::{
        ControlStats, DataplaneView, EventView, FailoverBits, FailoverView, Reply, Request, Response, SessionView,
        StatsView, StatusView, TunnelView,
    },
    config::{Config, SessionConfig, TunnelConfig, XdpMode},
    dataplane::{self, AttachMode, Cookie, Encap, Pinned, Role, SessionParams as DpSession, SessionTable},
    store::{self, FailoverRecord, SessionRecord, Store, TunnelRecord},
};

/// Command-line options of the daemon.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

/// How the daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT or `daemon stop`: tunnels torn down.
    Orderly,
    /// `daemon stop --keep`: tunnels, sessions and the data plane left in
    /// place for the next start.
    Kept,
}

struct Datagram {
    from: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
}

type ApiCall = (Request, oneshot::Sender<Response>);

#[derive(Debug)]
struct TunnelSlot {
    cfg: TunnelConfig,
    secret: Option<crate::config::Secret>,
    /// Engine handle while connecting or up.
    id: Option<TunnelId>,
    /// Added through the API (a reload leaves it alone).
    from_api: bool,
    /// Next connection attempt (initiating tunnels that are down).
    retry_at: Option<Instant>,
    last_event: Option<String>,
}

/// Facts about interfaces and routes that every session of a tunnel needs
/// when it is installed, read once per burst instead of per session (a
/// few syscalls each); forgotten at every tick, so a changed interface or
/// route is seen within `reconnect_interval`.
#[derive(Debug, Default)]
struct NetFacts {
    /// uplink name -> (MAC, ifindex, MTU)
    uplinks: HashMap<String, ([u8; 6], u32, u16)>,
    ifindex: HashMap<String, u32>,
    source: HashMap<IpAddr, IpAddr>,
}

/// Datagrams handled before one flush, at most.
const BURST: usize = 256;

#[derive(Debug)]
struct SessionSlot {
    name: String,
    interface: Option<String>,
    /// Installed in the data plane.
    installed: bool,
}

/// What the wire says about one session, for [`Daemon::install`].
struct Wire<'a> {
    peer: SocketAddr,
    transport: Transport,
    local_session_id: u32,
    peer_session_id: u32,
    rx_cookie: &'a [u8],
    tx_cookie: &'a [u8],
    sublayer: bool,
    sequencing: bool,
}

struct Sockets {
    udp4: Option<Arc<UdpSocket>>,
    udp6: Option<Arc<UdpSocket>>,
    ip4: Option<Arc<UdpSocket>>,
    ip6: Option<Arc<UdpSocket>>,
}

struct Daemon {
    config_path: PathBuf,
    cfg: Config,
    engine: Engine,
    store: Store,
    dp: Option<Pinned>,
    /// The session maps of `dp`, opened once (opening reads every entry).
    table: std::cell::RefCell<Option<SessionTable>>,
    facts: std::cell::RefCell<NetFacts>,
    sockets: Sockets,
    tunnels: BTreeMap<String, TunnelSlot>,
    by_id: HashMap<TunnelId, String>,
    sessions: HashMap<(TunnelId, u32), SessionSlot>,
    /// Sessions up in the engine, waiting for their store write.
    pending_sessions: Vec<(SessionRecord, SessionSlot)>,
    events: EventLog,
    started: Instant,
    socket_path: PathBuf,
    /// The data plane did not survive the previous run (no pins): it was
    /// rebuilt from the store, so recovered sequenced sessions restart
    /// their Ns at 0 (RFC 4951 F-DC-1).
    dp_rebuilt: bool,
}

/// Runs the daemon until it is told to stop.
pub fn run(opts: Options) -> anyhow::Result<Exit> {
    let mut cfg = Config::load(&opts.config)?;
    if let Some(d) = &opts.state_dir {
        cfg.global.state_dir = d.clone();
    }
    if let Some(s) = &opts.socket {
        cfg.global.socket = s.clone();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let (daemon, rx, api_rx) = Daemon::start(opts.config, cfg).await?;
        daemon.run(rx, api_rx).await
    })
}

fn udp_socket(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    big_receive_buffer(&s);
    s.bind(&addr.into()).with_context(|| format!("binding UDP {addr}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// A raw IP socket for protocol 115 (L2TPv3 over IP). Read and written
/// with recvfrom/sendto like a datagram socket; IPv4 reads start with the
/// IP header.
fn ip_socket(v6: bool) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(l2tp_common::wire::IPPROTO_L2TP))))
        .context("raw socket for IP protocol 115 (needs CAP_NET_RAW)")?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    big_receive_buffer(&s);
    Ok(UdpSocket::from_std(s.into())?)
}

/// Receive buffer for control sockets. A burst of control messages (every
/// tunnel of a peer opening its sessions at once, or a recovery) overflows
/// the kernel default of about 200 KiB, and every lost message costs a
/// retransmission timeout. Root may exceed net.core.rmem_max.
const CONTROL_RCVBUF: usize = 8 << 20;

fn big_receive_buffer(s: &socket2::Socket) {
    use std::os::fd::AsRawFd as _;
    let size = CONTROL_RCVBUF as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a c_int option value.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        // Unprivileged: as much as net.core.rmem_max allows.
        let _ = s.set_recv_buffer_size(CONTROL_RCVBUF);
    }
}

fn reader(sock: Arc<UdpSocket>, transport: Transport, strip_ip4: bool, tx: mpsc::Sender<Datagram>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let mut bytes = &buf[..n];
            if strip_ip4 {
                let ihl = bytes.first().map(|b| usize::from(b & 0x0f) * 4).unwrap_or(0);
                if ihl < 20 || bytes.len() < ihl {
                    continue;
                }
                bytes = &bytes[ihl..];
            }
            let d = Datagram { from, transport, bytes: bytes.to_vec() };
            if tx.send(d).await.is_err() {
                return;
            }
        }
    });
}

fn failover_bits(f: Option<FailoverCapability>) -> Option<FailoverBits> {
    f.map(|f| FailoverBits { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms })
}

fn failover_record(f: Option<FailoverCapability>) -> Option<FailoverRecord> {
    f.map(|f| FailoverRecord { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms })
}

fn reason_text(r: &DownReason) -> String {
    match r {
        DownReason::Local(rc) => format!("we closed it (result {})", rc.result),
        DownReason::Peer(rc) => format!(
            "the peer closed it (result {}{})",
            rc.result,
            rc.error.map(|e| format!(", error {e}")).unwrap_or_default()
        ),
        DownReason::Timeout => "control channel timed out".into(),
        DownReason::LostTie => "lost the tie breaker to the peer's own request".into(),
        DownReason::RecoveryFailed => "RFC 4951 recovery failed: cleared silently".into(),
        DownReason::Cleared => "cleared silently by RFC 4951 session synchronisation".into(),
    }
}

fn receive_mode_name(s: &SessionConfig) -> String {
    match s.receive_mode {
        crate::config::ReceiveMode::AcceptNew => "accept-new",
        crate::config::ReceiveMode::Strict => "strict",
        crate::config::ReceiveMode::Resync => "resync",
    }
    .into()
}

/// Our address towards `peer`, as the kernel would choose it.
fn source_for(peer: IpAddr) -> anyhow::Result<IpAddr> {
    let any: IpAddr = if peer.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(SocketAddr::new(peer, 1701)).with_context(|| format!("no route to {peer}"))?;
    Ok(s.local_addr()?.ip())
}

impl Daemon {
    async fn start(
        config_path: PathBuf,
        cfg: Config,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Datagram>, mpsc::Receiver<ApiCall>)> {
        let socket_path = cfg.global.socket.clone();
        // One daemon per socket: a live one answers.
        if UnixStream::connect(&socket_path).await.is_ok() {
            anyhow::bail!("another daemon is already serving {}", socket_path.display());
        }
        let store = Store::open(&cfg.global.state_dir)?;
        let (tx, rx) = mpsc::channel(4096);
        let mut sockets = Sockets { udp4: None, udp6: None, ip4: None, ip6: None };
        for addr in &cfg.global.listen {
            let s = Arc::new(udp_socket(*addr)?);
            reader(s.clone(), Transport::Udp, false, tx.clone());
            if addr.is_ipv4() {
                sockets.udp4 = Some(s);
            } else {
                sockets.udp6 = Some(s);
            }
        }
        if cfg.global.listen_ip {
            let s4 = Arc::new(ip_socket(false)?);
            reader(s4.clone(), Transport::Ip, true, tx.clone());
            sockets.ip4 = Some(s4);
            // IPv6 may be off in this namespace.
            match ip_socket(true) {
                Ok(s6) => {
                    let s6 = Arc::new(s6);
                    reader(s6.clone(), Transport::Ip, false, tx.clone());
                    sockets.ip6 = Some(s6);
                }
                Err(e) => warn!("no IPv6 L2TPv3-over-IP socket: {e:#}"),
            }
        }
        let dp_rebuilt = cfg.dataplane.enabled && Pinned::open(&cfg.dataplane.pin_dir).is_err();
        let dp = if cfg.dataplane.enabled {
            Some(Pinned::open_or_create(&cfg.dataplane.pin_dir).context("data plane")?)
        } else {
            None
        };
        let events = EventLog::new();
        let engine = Engine::new(cfg.engine(), Box::new(StdRng::from_entropy()));
        let mut d = Self {
            config_path,
            cfg: cfg.clone(),
            engine,
            store,
            dp,
            sockets,
            tunnels: BTreeMap::new(),
            by_id: HashMap::new(),
            sessions: HashMap::new(),
            pending_sessions: Vec::new(),
            table: std::cell::RefCell::new(None),
            facts: std::cell::RefCell::default(),
            events,
            started: Instant::now(),
            socket_path: socket_path.clone(),
            dp_rebuilt,
        };
        for t in &cfg.tunnels {
            d.add_tunnel(t.clone(), false, false)?;
        }
        d.previous_run()?;
        let idle: Vec<String> =
            d.tunnels.iter().filter(|(_, s)| s.id.is_none() && s.cfg.initiate).map(|(n, _)| n.clone()).collect();
        for name in idle {
            d.connect(&name);
        }
        let (api_tx, api_rx) = mpsc::channel(64);
        serve_api(&socket_path, api_tx, d.events.clone()).await?;
        info!(config = %d.config_path.display(), socket = %socket_path.display(), tunnels = cfg.tunnels.len(), "started");
        Ok((d, rx, api_rx))
    }

    /// State left by an earlier run (a crash, SIGKILL or `stop --keep`):
    /// every tunnel in the store whose failover capability both ends
    /// advertised is recovered (RFC 4951 3.2); the others are cleared (and
    /// brought up anew if configured). When the data plane did not survive,
    /// the recovered sessions are put back into it from the store before
    /// recovery starts. Data-plane sessions the store does not know are
    /// removed.
    fn previous_run(&mut self) -> anyhow::Result<()> {
        let now = Self::now();
        let mut keep: Vec<u32> = Vec::new();
        for rec in self.store.tunnels()? {
            let sessions = self.store.sessions(rec.local_id)?;
            let recoverable = rec.local_failover.is_some_and(|f| f.control)
                && rec.peer_failover.is_some_and(|f| f.control)
                && self
                    .tunnels
                    .get(&rec.name)
                    .is_some_and(|s| s.cfg.peer == rec.peer.ip() && s.cfg.version == rec.version && s.id.is_none());
            if !recoverable {
                info!(tunnel = %rec.name, id = rec.local_id, "tunnel of the previous run is not recoverable: cleared");
                self.store.remove_tunnel(rec.local_id)?;
                continue;
            }
            let Some(slot) = self.tunnels.get(&rec.name) else { continue };
            let tcfg = slot.cfg.clone();
            let params = tcfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
            let mut restored = Vec::new();
            let mut slots = Vec::new();
            for s in &sessions {
                let scfg = tcfg.sessions.iter().find(|c| c.remote_end_id() == s.remote_end_id);
                let mut installed = false;
                if self.dp.is_some() && scfg.is_some() && s.interface.is_some() {
                    if self.with_table(|t| t.index_of(s.local_id))?.is_some() {
                        installed = true;
                    } else {
                        // The data plane did not survive: rebuilt from the
                        // store before recovery starts.
                        match self.reinstall(&tcfg, &rec, s) {
                            Ok(()) => installed = true,
                            Err(e) => warn!(tunnel = %rec.name, session = %s.name, "not reinstalled: {e:#}"),
                        }
                    }
                }
                restored.push(RestoredSession {
                    local_id: s.local_id,
                    peer_id: s.peer_id,
                    params: l2tp_proto::engine::SessionParams {
                        pw_type: s.pw_type,
                        remote_end_id: s.remote_end_id.as_bytes().to_vec(),
                        cookie_len: s.rx_cookie.len(),
                        sublayer: s.sublayer,
                        sequencing: s.sequencing,
                    },
                    rx_cookie: s.rx_cookie.clone(),
                    tx_cookie: s.tx_cookie.clone(),
                    peer_sublayer: s.sublayer,
                    peer_sequencing: s.sequencing,
                });
                slots.push((
                    s.local_id,
                    SessionSlot { name: s.name.clone(), interface: s.interface.clone(), installed },
                ));
            }
            let old = RestoredTunnel {
                local_id: rec.local_id,
                peer_id: rec.peer_id,
                peer: rec.peer,
                params,
                initiator: rec.initiator,
                peer_failover: rec.peer_failover.map(|f| FailoverCapability {
                    control: f.control,
                    data: f.data,
                    recovery_time_ms: f.recovery_time_ms,
                }),
                peer_host_name: rec.peer_host_name.clone().into_bytes(),
                sessions: restored,
            };
            match self.engine.recover_tunnel(now, old) {
                Ok(_) => {
                    keep.push(rec.local_id);
                    for (sid, slot) in slots {
                        self.sessions.insert((rec.local_id, sid), slot);
                    }
                    self.by_id.insert(rec.local_id, rec.name.clone());
                    if let Some(slot) = self.tunnels.get_mut(&rec.name) {
                        slot.id = Some(rec.local_id);
                    }
                }
                Err(e) => {
                    warn!(tunnel = %rec.name, "cannot recover: {e}");
                    for (sid, s) in slots {
                        self.uninstall(sid, &s);
                    }
                    self.store.remove_tunnel(rec.local_id)?;
                }
            }
        }
        // Orphans: in the data plane, not in a recovered tunnel.
        if self.dp.is_some() {
            let keys: Vec<(TunnelId, u32)> = self.sessions.keys().copied().collect();
            self.with_table(|table| -> anyhow::Result<()> {
                for (_, id) in table.list() {
                    if !keys.iter().any(|(t, s)| *s == id && keep.contains(t)) {
                        table.remove(id)?;
                    }
                }
                Ok(())
            })??;
        }
        Ok(())
    }

    fn now() -> Instant {
        Instant::now()
    }

    /// One event: a log line and a line to every `events` client (RFC 4951
    /// F-CFG-2: notifications of failover and recovery events, in our own
    /// format: `recovery-started`, `tunnel-recovered`, `failure-detected`,
    /// `tunnel-resumed`, `session-confirmed`, ...).
    fn emit(
        &self,
        event: &str,
        tunnel: Option<&str>,
        tunnel_id: Option<u32>,
        session: Option<(&str, u32)>,
        detail: String,
    ) {
        let v = EventView {
            time_ms: store::now_ms(),
            event: event.into(),
            tunnel: tunnel.map(str::to_owned),
            tunnel_id,
            session: session.map(|s| s.0.to_owned()),
            session_id: session.map(|s| s.1),
            detail,
        };
        info!(
            event,
            tunnel = tunnel.unwrap_or("-"),
            tunnel_id = tunnel_id.unwrap_or(0),
            session = session.map(|s| s.0).unwrap_or("-"),
            session_id = session.map(|s| s.1).unwrap_or(0),
            "{}",
            v.detail
        );
        self.events.send(v);
    }

    fn attach_mode(&self) -> AttachMode {
        match self.cfg.dataplane.xdp_mode {
            XdpMode::Auto => AttachMode::Auto,
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }

    /// Runs `f` on the data plane's session maps (opened on first use).
    fn with_table<R>(&self, f: impl FnOnce(&mut SessionTable) -> R) -> anyhow::Result<R> {
        let Some(dp) = &self.dp else { anyhow::bail!("no data plane") };
        let mut cached = self.table.borrow_mut();
        if cached.is_none() {
            *cached = Some(dp.sessions()?);
        }
        let table = cached.as_mut().ok_or_else(|| anyhow::anyhow!("session maps"))?;
        Ok(f(table))
    }

    /// Attaches `role`'s program to `iface` unless it already is.
    fn ensure_attached(&self, iface: &str, role: Role) -> anyhow::Result<()> {
        let Some(dp) = &self.dp else { return Ok(()) };
        if dp.attached()?.iter().any(|a| a == iface) {
            return Ok(());
        }
        let mode = dp.attach(iface, role, self.attach_mode()).with_context(|| format!("attaching XDP to {iface}"))?;
        if role == Role::Uplink && self.cfg.dataplane.enable_forwarding {
            dataplane::enable_forwarding(iface)?;
        }
        info!(iface, ?role, ?mode, "XDP attached");
        Ok(())
    }

    /// Adds a tunnel (config or API) and starts it.
    fn add_tunnel(&mut self, t: TunnelConfig, from_api: bool, connect: bool) -> anyhow::Result<()> {
        t.check(&format!("tunnel {:?}", t.name)).map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        t.check_timers(&format!("tunnel {:?}", t.name), &self.cfg.global)
            .map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        if self.tunnels.contains_key(&t.name) {
            anyhow::bail!("a tunnel named {:?} exists", t.name);
        }
        if self
            .tunnels
            .values()
            .any(|s| s.cfg.peer == t.peer && s.cfg.version == t.version && s.cfg.encapsulation == t.encapsulation)
        {
            anyhow::bail!("another L2TPv{} tunnel over {:?} already goes to {}", t.version, t.encapsulation, t.peer);
        }
        let uplink = self.cfg.uplink_of(&t).map(str::to_owned);
        if self.dp.is_some() && t.version == 3 && !t.sessions.is_empty() {
            let Some(u) = &uplink else { anyhow::bail!("tunnel {:?}: pseudowires need an uplink", t.name) };
            self.ensure_attached(u, Role::Uplink)?;
            // Circuits of the other tunnels, gathered once (a check per
            // session against every session would be quadratic).
            let taken: std::collections::HashSet<(&str, u16)> =
                self.tunnels.values().flat_map(|x| x.cfg.sessions.iter().map(SessionConfig::circuit)).collect();
            let mut attached = std::collections::HashSet::new();
            for s in &t.sessions {
                if taken.contains(&s.circuit()) {
                    anyhow::bail!("{} already carries a session of another tunnel", s.circuit_name());
                }
                if attached.insert(s.interface.as_str()) {
                    self.ensure_attached(&s.interface, Role::Attachment)?;
                }
            }
        }
        let secret = t.load_secret().map_err(|(k, m)| anyhow::anyhow!("tunnel {:?}: {k}: {m}", t.name))?;
        let params = t.tunnel_params(secret.as_ref(), &self.cfg.global);
        self.engine.set_peer(t.peer, params);
        let name = t.name.clone();
        let initiate = t.initiate;
        self.tunnels
            .insert(name.clone(), TunnelSlot { cfg: t, secret, id: None, from_api, retry_at: None, last_event: None });
        if initiate && connect {
            self.connect(&name);
        }
        Ok(())
    }

    /// The attachment circuit (interface, VLAN) of `s` is not another
    /// session's.
    fn check_circuit_free(&self, s: &SessionConfig, except: Option<(&str, &str)>) -> anyhow::Result<()> {
        for (tn, slot) in &self.tunnels {
            for o in &slot.cfg.sessions {
                if o.circuit() == s.circuit() && except != Some((tn.as_str(), o.name.as_str())) {
                    anyhow::bail!("{} already carries session {:?} of tunnel {tn:?}", s.circuit_name(), o.name);
                }
            }
        }
        Ok(())
    }

    /// Sessions of any tunnel attached through `iface`.
    fn interface_in_use(&self, iface: &str) -> bool {
        self.tunnels.values().any(|t| t.cfg.sessions.iter().any(|s| s.interface == iface))
    }

    fn connect(&mut self, name: &str) {
        let Some(slot) = self.tunnels.get_mut(name) else { return };
        let params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
        match self.engine.connect(Self::now(), slot.cfg.peer_addr(), params) {
            Ok(id) => {
                slot.id = Some(id);
                slot.retry_at = None;
                self.by_id.insert(id, name.to_owned());
                debug!(tunnel = name, id, "connecting");
            }
            Err(e) => {
                slot.retry_at = Some(Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval));
                warn!(tunnel = name, "cannot connect: {e}");
            }
        }
    }

    /// Tears a tunnel down (StopCCN) and forgets it.
    fn delete_tunnel(&mut self, name: &str) -> anyhow::Result<()> {
        let slot = self.tunnels.remove(name).ok_or_else(|| anyhow::anyhow!("no tunnel named {name:?}"))?;
        self.engine.remove_peer(slot.cfg.peer, slot.cfg.version(), slot.cfg.transport());
        if let Some(id) = slot.id {
            self.forget_tunnel(id);
            let _ = self.engine.close_tunnel(Self::now(), id);
        }
        self.emit("tunnel-deleted", Some(name), slot.id, None, "deleted".into());
        Ok(())
    }

    /// Removes a tunnel's sessions from the data plane and the store.
    fn forget_tunnel(&mut self, id: TunnelId) {
        let keys: Vec<(TunnelId, u32)> = self.sessions.keys().filter(|(t, _)| *t == id).copied().collect();
        let gone: Vec<(u32, SessionSlot)> =
            keys.into_iter().filter_map(|k| self.sessions.remove(&k).map(|s| (k.1, s))).collect();
        self.uninstall_all(gone.iter().map(|(sid, s)| (*sid, s)));
        if let Err(e) = self.store.remove_tunnel(id) {
            error!("{e}");
        }
        self.by_id.remove(&id);
    }

    fn uninstall(&self, sid: u32, s: &SessionSlot) {
        self.uninstall_all([(sid, s)]);
    }

    /// Removes the installed ones of `sessions` from the data plane,
    /// opening its maps once.
    fn uninstall_all<'a>(&self, sessions: impl IntoIterator<Item = (u32, &'a SessionSlot)>) {
        if self.dp.is_none() {
            return;
        }
        let installed: Vec<(u32, &SessionSlot)> = sessions.into_iter().filter(|(_, s)| s.installed).collect();
        if installed.is_empty() {
            return;
        }
        let r = self.with_table(|table| {
            for (sid, s) in installed {
                if let Err(e) = table.remove(sid) {
                    error!(session = %s.name, "removing from the data plane: {e}");
                }
            }
        });
        if let Err(e) = r {
            error!("opening the data plane: {e}");
        }
    }

    fn add_session(&mut self, tunnel: &str, s: SessionConfig) -> anyhow::Result<String> {
        s.check("session").map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        let slot = self.tunnels.get(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        if slot.cfg.sessions.iter().any(|x| x.name == s.name) {
            anyhow::bail!("tunnel {tunnel:?} already has a session named {:?}", s.name);
        }
        if slot.cfg.sessions.iter().any(|x| x.remote_end_id() == s.remote_end_id()) {
            anyhow::bail!("tunnel {tunnel:?} already has Remote End ID {:?}", s.remote_end_id());
        }
        self.check_circuit_free(&s, None)?;
        if self.dp.is_some() && slot.cfg.version == 3 {
            let uplink = self
                .cfg
                .uplink_of(&slot.cfg)
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} has no uplink for pseudowires"))?;
            dataplane::ifindex(&s.interface)?;
            self.ensure_attached(&uplink, Role::Uplink)?;
            self.ensure_attached(&s.interface, Role::Attachment)?;
        }
        let slot = self.tunnels.get_mut(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        slot.cfg.sessions.push(s.clone());
        let pws: Vec<_> = slot.cfg.sessions.iter().map(SessionConfig::engine_params).collect();
        let mut params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
        params.pseudowires = pws.clone();
        let peer = slot.cfg.peer;
        let id = slot.id;
        self.engine.set_peer(peer, params);
        if let Some(id) = id {
            let _ = self.engine.set_pseudowires(id, pws);
            if self.engine.tunnel_info(id).is_some_and(|i| i.initiator && i.state == TunnelStatus::Established) {
                self.engine.open_session(Self::now(), id, s.engine_params())?;
                return Ok(format!("session {:?} requested on tunnel {tunnel:?}", s.name));
            }
        }
        Ok(format!("session {:?} added to tunnel {tunnel:?}", s.name))
    }

    fn delete_session(&mut self, tunnel: &str, name: &str) -> anyhow::Result<()> {
        let slot = self.tunnels.get_mut(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        let pos = slot
            .cfg
            .sessions
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} has no session named {name:?}"))?;
        let removed = slot.cfg.sessions.remove(pos);
        let pws: Vec<_> = slot.cfg.sessions.iter().map(SessionConfig::engine_params).collect();
        let mut params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
        params.pseudowires = pws.clone();
        let (peer, id) = (slot.cfg.peer, slot.id);
        self.engine.set_peer(peer, params);
        if let Some(id) = id {
            let _ = self.engine.set_pseudowires(id, pws);
            let key = self.sessions.iter().find(|(k, s)| k.0 == id && s.name == name).map(|(k, _)| *k);
            if let Some(k) = key {
                if let Some(s) = self.sessions.remove(&k) {
                    self.uninstall(k.1, &s);
                }
                let _ = self.store.remove_session(id, k.1);
                let _ = self.engine.close_session(Self::now(), id, k.1);
            } else if let Some(info) = self.engine.tunnel_info(id) {
                // Not up yet: withdraw the request.
                let rid = removed.remote_end_id().as_bytes().to_vec();
                if let Some(s) = info.sessions.iter().find(|s| s.remote_end_id == rid) {
                    let _ = self.engine.close_session(Self::now(), id, s.local_id);
                }
            }
        }
        if let Some(dp) = &self.dp {
            // Other VLAN circuits of the interface keep it attached.
            if !self.interface_in_use(&removed.interface) && dp.attached()?.contains(&removed.interface) {
                dp.detach(&removed.interface)?;
            }
        }
        self.emit("session-deleted", Some(tunnel), id, None, format!("session {name:?} deleted"));
        Ok(())
    }

    /// Sends everything the engine has queued and handles its updates and
    /// events, until it has nothing more to say.
    async fn flush(&mut self) {
        loop {
            let mut busy = false;
            while let Some((to, transport, bytes)) = self.engine.poll_transmit() {
                busy = true;
                self.send(to, transport, &bytes).await;
            }
            while let Some(u) = self.engine.poll_dataplane() {
                busy = true;
                self.on_dataplane(u);
            }
            self.persist_pending();
            while let Some(e) = self.engine.poll_event() {
                busy = true;
                self.on_event(e);
            }
            if !busy {
                return;
            }
        }
    }

    async fn send(&self, to: SocketAddr, transport: Transport, bytes: &[u8]) {
        let sock = match (transport, to.is_ipv4()) {
            (Transport::Udp, true) => &self.sockets.udp4,
            (Transport::Udp, false) => &self.sockets.udp6,
            (Transport::Ip, true) => &self.sockets.ip4,
            (Transport::Ip, false) => &self.sockets.ip6,
        };
        let Some(sock) = sock else {
            warn!(%to, ?transport, "no socket to send on");
            return;
        };
        let to = if transport == Transport::Ip { SocketAddr::new(to.ip(), 0) } else { to };
        if let Err(e) = sock.send_to(bytes, to).await {
            warn!(%to, "send: {e}");
        }
    }

    fn tunnel_name(&self, id: TunnelId) -> Option<String> {
        self.by_id.get(&id).cloned()
    }

    /// Installs one pseudowire in the data plane.
    fn install(&self, tcfg: &TunnelConfig, s: &SessionConfig, w: &Wire<'_>) -> anyhow::Result<()> {
        let uplink = self.cfg.uplink_of(tcfg).ok_or_else(|| anyhow::anyhow!("no uplink"))?;
        let mut facts = self.facts.borrow_mut();
        let local = match tcfg.local {
            Some(l) => l,
            None => match facts.source.get(&w.peer.ip()) {
                Some(l) => *l,
                None => {
                    let l = source_for(w.peer.ip())?;
                    facts.source.insert(w.peer.ip(), l);
                    l
                }
            },
        };
        let (uplink_mac, uplink_ifindex, uplink_mtu) = match facts.uplinks.get(uplink) {
            Some(f) => *f,
            None => {
                let f = (
                    dataplane::hwaddr(uplink)?,
                    dataplane::ifindex(uplink)?,
                    dataplane::mtu(uplink)?.min(u32::from(u16::MAX)) as u16,
                );
                facts.uplinks.insert(uplink.to_owned(), f);
                f
            }
        };
        let attach_ifindex = match facts.ifindex.get(&s.interface) {
            Some(i) => *i,
            None => {
                let i = dataplane::ifindex(&s.interface)?;
                facts.ifindex.insert(s.interface.clone(), i);
                i
            }
        };
        drop(facts);
        let p = DpSession {
            local_session_id: w.local_session_id,
            peer_session_id: w.peer_session_id,
            encap: match w.transport {
                Transport::Udp => Encap::Udp { local_port: 1701, peer_port: w.peer.port() },
                Transport::Ip => Encap::Ip,
            },
            local_addr: local,
            peer_addr: w.peer.ip(),
            local_mac: uplink_mac,
            next_hop_mac: tcfg.next_hop_mac().unwrap_or_default(),
            fib_lookup: true,
            uplink_ifindex,
            attach_ifindex,
            attach_vlan: s.vlan.unwrap_or(0),
            uplink_mtu,
            rx_cookie: Cookie::new(w.rx_cookie).ok_or_else(|| anyhow::anyhow!("bad cookie"))?,
            tx_cookie: Cookie::new(w.tx_cookie)
                .ok_or_else(|| anyhow::anyhow!("peer's cookie is not 0, 4 or 8 bytes"))?,
            sublayer: w.sublayer,
            sequencing: w.sequencing,
            rx_mode: s.rx_mode(),
            resync_deliver: s.resync_deliver,
            udp6_zero_checksum: tcfg.udp6_zero_checksum,
        };
        self.with_table(|t| t.add(&p))??;
        Ok(())
    }

    /// Writes the sessions that came up since the last call in one store
    /// transaction (one fsync for a burst of sessions); a session that
    /// cannot be persisted is not up: it is removed from the data plane and
    /// closed.
    fn persist_pending(&mut self) {
        if self.pending_sessions.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_sessions);
        let records: Vec<&SessionRecord> = pending.iter().map(|(r, _)| r).collect();
        match self.store.put_sessions(&records) {
            Ok(()) => {
                for (rec, slot) in pending {
                    self.sessions.insert((rec.tunnel_id, rec.local_id), slot);
                }
            }
            Err(e) => {
                error!("{e}");
                for (rec, slot) in pending {
                    let slot = SessionSlot { interface: None, ..slot };
                    self.uninstall(rec.local_id, &slot);
                    let _ = self.engine.close_session(Self::now(), rec.tunnel_id, rec.local_id);
                }
            }
        }
    }

    fn on_dataplane(&mut self, u: DataplaneUpdate) {
        match u {
            DataplaneUpdate::SessionUp {
                tunnel,
                version,
                transport,
                peer,
                remote_end_id,
                pw_type,
                local_session_id,
                peer_session_id,
                rx_cookie,
                tx_cookie,
                rx_sublayer,
                tx_sublayer,
                rx_sequencing,
                tx_sequencing,
            } => {
                let Some(tname) = self.tunnel_name(tunnel) else { return };
                let Some(slot) = self.tunnels.get(&tname) else { return };
                let rid = String::from_utf8_lossy(&remote_end_id).into_owned();
                let scfg = slot.cfg.sessions.iter().find(|s| s.remote_end_id() == rid).cloned();
                let name = scfg.as_ref().map(|s| s.name.clone()).unwrap_or_else(|| format!("{local_session_id}"));
                let mut installed = false;
                if version == Version::V3 {
                    if let (Some(s), true) = (&scfg, self.dp.is_some()) {
                        let r = if rx_sublayer != tx_sublayer || rx_sequencing != tx_sequencing {
                            Err(anyhow::anyhow!(
                                "asymmetric sublayer/sequencing (peer {tx_sublayer}/{tx_sequencing}, us {rx_sublayer}/{rx_sequencing}): the data plane needs both ends to agree"
                            ))
                        } else {
                            self.install(
                                &slot.cfg,
                                s,
                                &Wire {
                                    peer,
                                    transport,
                                    local_session_id,
                                    peer_session_id,
                                    rx_cookie: &rx_cookie,
                                    tx_cookie: &tx_cookie,
                                    sublayer: rx_sublayer,
                                    sequencing: rx_sequencing,
                                },
                            )
                        };
                        match r {
                            Ok(()) => installed = true,
                            Err(e) => {
                                self.emit(
                                    "session-failed",
                                    Some(&tname),
                                    Some(tunnel),
                                    Some((&name, local_session_id)),
                                    format!("data plane: {e:#}"),
                                );
                                let _ = self.engine.close_session(Self::now(), tunnel, local_session_id);
                                return;
                            }
                        }
                    }
                }
                let rec = SessionRecord {
                    tunnel_id: tunnel,
                    name: name.clone(),
                    local_id: local_session_id,
                    peer_id: peer_session_id,
                    remote_end_id: rid,
                    pw_type,
                    interface: scfg.as_ref().map(|s| s.interface.clone()),
                    rx_cookie,
                    tx_cookie,
                    sublayer: rx_sublayer,
                    sequencing: rx_sequencing,
                    receive_mode: scfg.as_ref().map(receive_mode_name).unwrap_or_else(|| "accept-new".into()),
                    resync_n: scfg.as_ref().map(|s| s.resync_n).unwrap_or(5),
                    established_ms: store::now_ms(),
                };
                // Persisted in one transaction with the others of this
                // round (`persist_pending`), before any event reports it up.
                self.pending_sessions
                    .push((rec, SessionSlot { name, interface: scfg.map(|s| s.interface), installed }));
            }
            DataplaneUpdate::SessionDown { tunnel, local_session_id } => {
                if let Some(i) = self
                    .pending_sessions
                    .iter()
                    .position(|(r, _)| (r.tunnel_id, r.local_id) == (tunnel, local_session_id))
                {
                    let (_, slot) = self.pending_sessions.remove(i);
                    self.uninstall(local_session_id, &slot);
                }
                if let Some(s) = self.sessions.remove(&(tunnel, local_session_id)) {
                    self.uninstall(local_session_id, &s);
                }
                let _ = self.store.remove_session(tunnel, local_session_id);
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::TunnelUp { tunnel, peer, peer_host_name, peer_failover } => {
                // Responder: the tunnel is the configured one for this peer.
                let name = match self.tunnel_name(tunnel) {
                    Some(n) => n,
                    None => match self
                        .engine
                        .tunnel_info(tunnel)
                        .and_then(|i| {
                            self.tunnels.iter().find(|(_, s)| {
                                s.cfg.peer == peer.ip()
                                    && s.cfg.version() == i.version
                                    && s.cfg.transport() == i.transport
                            })
                        })
                        .map(|(n, _)| n.clone())
                    {
                        Some(n) => n,
                        None => {
                            warn!(%peer, "tunnel from an unconfigured peer; closing");
                            let _ = self.engine.close_tunnel(Self::now(), tunnel);
                            return;
                        }
                    },
                };
                let Some(info) = self.engine.tunnel_info(tunnel) else { return };
                let slot = self.tunnels.get_mut(&name);
                let Some(slot) = slot else { return };
                let superseded = slot.id.filter(|o| *o != tunnel);
                if let Some(old) = superseded {
                    // The peer opened one while ours was pending (and won),
                    // or the peer restarted without failover and opened a
                    // new one: one tunnel per configured peer, so the old
                    // one goes (StopCCN; its sessions leave the data plane
                    // before the new ones ask for the same circuits).
                    self.by_id.remove(&old);
                }
                let stale = superseded.filter(|o| self.engine.tunnel_info(*o).is_some_and(|i| !i.closing));
                slot.id = Some(tunnel);
                slot.retry_at = None;
                self.by_id.insert(tunnel, name.clone());
                let rec = TunnelRecord {
                    name: name.clone(),
                    local_id: tunnel,
                    peer_id: info.peer_id,
                    peer,
                    version: if info.version == Version::V2 { 2 } else { 3 },
                    encapsulation: if info.transport == Transport::Ip { "ip" } else { "udp" }.into(),
                    initiator: info.initiator,
                    local_failover: failover_record(info.local_failover),
                    peer_failover: failover_record(peer_failover),
                    peer_host_name: String::from_utf8_lossy(&peer_host_name).into_owned(),
                    established_ms: store::now_ms(),
                };
                if let Err(e) = self.store.put_tunnel(&rec) {
                    error!(tunnel = %name, "not persisted, closing: {e}");
                    let _ = self.engine.close_tunnel(Self::now(), tunnel);
                    return;
                }
                self.emit(
                    "tunnel-up",
                    Some(&name),
                    Some(tunnel),
                    None,
                    format!("peer {peer} ({}), peer tunnel {}", rec.peer_host_name, info.peer_id),
                );
                if let Some(old) = stale {
                    info!(tunnel = %name, old, new = tunnel, "a new tunnel from the peer supersedes the old one: closing it");
                    let _ = self.engine.close_tunnel(Self::now(), old);
                    self.forget_tunnel(old);
                }
                if info.initiator {
                    self.open_missing_sessions(&name, tunnel);
                }
            }
            Event::TunnelDown { tunnel, reason } => {
                let name = self.tunnel_name(tunnel);
                self.forget_tunnel(tunnel);
                if let Some(slot) = name.as_ref().and_then(|n| self.tunnels.get_mut(n)) {
                    if slot.id == Some(tunnel) {
                        slot.id = None;
                        if slot.cfg.initiate {
                            slot.retry_at = Some(Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval));
                        }
                    }
                    slot.last_event = Some(format!("down: {}", reason_text(&reason)));
                }
                self.emit("tunnel-down", name.as_deref(), Some(tunnel), None, reason_text(&reason));
            }
            Event::SessionUp { tunnel, local_session_id, peer_session_id } => {
                let name = self.tunnel_name(tunnel);
                let sname = self.sessions.get(&(tunnel, local_session_id)).map(|s| s.name.clone());
                let Some(sname) = sname else { return };
                self.emit(
                    "session-up",
                    name.as_deref(),
                    Some(tunnel),
                    Some((&sname, local_session_id)),
                    format!("peer session {peer_session_id}"),
                );
            }
            Event::SessionDown { tunnel, local_session_id, reason } => {
                let name = self.tunnel_name(tunnel);
                let mut sname = local_session_id.to_string();
                if let Some(s) = self.sessions.remove(&(tunnel, local_session_id)) {
                    self.uninstall(local_session_id, &s);
                    sname = s.name;
                }
                let _ = self.store.remove_session(tunnel, local_session_id);
                let cleared = matches!(reason, DownReason::Cleared | DownReason::RecoveryFailed);
                self.emit(
                    if cleared { "session-cleared" } else { "session-down" },
                    name.as_deref(),
                    Some(tunnel),
                    Some((&sname, local_session_id)),
                    reason_text(&reason),
                );
            }
            Event::FailureDetected { tunnel, recovery_time } => {
                let name = self.tunnel_name(tunnel);
                if let Some(s) = name.as_ref().and_then(|n| self.tunnels.get_mut(n)) {
                    s.last_event = Some("failure detected".into());
                }
                self.emit(
                    "failure-detected",
                    name.as_deref(),
                    Some(tunnel),
                    None,
                    format!("peer silent; waiting its Recovery Time of {} ms", recovery_time.as_millis()),
                );
            }
            Event::RecoveryStarted { tunnel, recovery_tunnel } => {
                let name = self.tunnel_name(tunnel);
                if let Some(s) = name.as_ref().and_then(|n| self.tunnels.get_mut(n)) {
                    s.last_event = Some("recovery started".into());
                }
                self.emit(
                    "recovery-started",
                    name.as_deref(),
                    Some(tunnel),
                    None,
                    format!("recovery tunnel {recovery_tunnel} to the peer (RFC 4951 3.2.1)"),
                );
            }
            Event::TunnelRecovered { tunnel, recovery_endpoint, ns, nr, sessions } => {
                let name = self.tunnel_name(tunnel);
                let n = self.resync_n(name.as_deref());
                // RFC 4951 3.2.3, sessions with sequence numbers. A data
                // plane that survived keeps its Ns (nothing was lost, the
                // peer sees no jump); a rebuilt one was installed from the
                // store with Ns 0 (F-DC-1).
                // Either way Nr follows the peer after n packets in sequence
                // (F-DC-3); the remote end keeps its Ns (F-DC-2).
                let sids: Vec<u32> = sessions.iter().map(|s| s.local_session_id).collect();
                let reset = self.enter_resync(&sids, n);
                if let Some(s) = name.as_ref().and_then(|n| self.tunnels.get_mut(n)) {
                    s.last_event = Some("recovered".into());
                }
                self.emit(
                    "tunnel-recovered",
                    name.as_deref(),
                    Some(tunnel),
                    None,
                    format!(
                        "as {} endpoint: control channel Ns {ns} Nr {nr}, {} session(s) kept, {reset} data channel(s) resyncing after {n} packets{}",
                        if recovery_endpoint { "recovery" } else { "remote" },
                        sessions.len(),
                        match (recovery_endpoint, self.dp_rebuilt) {
                            (true, true) => ", data plane rebuilt from the store (Ns restarted at 0)",
                            (true, false) => ", data plane kept forwarding",
                            _ => "",
                        }
                    ),
                );
            }
            Event::TunnelResumed { tunnel } => {
                let name = self.tunnel_name(tunnel);
                if let Some(s) = name.as_ref().and_then(|n| self.tunnels.get_mut(n)) {
                    s.last_event = Some("resumed".into());
                }
                self.emit("tunnel-resumed", name.as_deref(), Some(tunnel), None, "peer answered again".into());
            }
            Event::SessionsQueried { tunnel, sessions } => {
                // F-DC-5/F-DC-3: the peer's data channel may have restarted
                // (its data plane was rebuilt): our Nr follows its Ns after
                // n packets in sequence.
                let name = self.tunnel_name(tunnel);
                let n = self.resync_n(name.as_deref());
                self.enter_resync(&sessions, n);
            }
            Event::SessionStale { tunnel, local_session_id } => {
                let name = self.tunnel_name(tunnel);
                let sname = self.sessions.get(&(tunnel, local_session_id)).map(|s| s.name.clone());
                self.emit(
                    "session-stale",
                    name.as_deref(),
                    Some(tunnel),
                    Some((&sname.unwrap_or_else(|| local_session_id.to_string()), local_session_id)),
                    "the peer pairs it with another session (RFC 4951 Appendix C); queried with FSQ".into(),
                );
            }
            Event::SessionConfirmed { tunnel, local_session_id } => {
                let name = self.tunnel_name(tunnel);
                let sname = self.sessions.get(&(tunnel, local_session_id)).map(|s| s.name.clone());
                self.emit(
                    "session-confirmed",
                    name.as_deref(),
                    Some(tunnel),
                    Some((&sname.unwrap_or_else(|| local_session_id.to_string()), local_session_id)),
                    "confirmed by FSR".into(),
                );
            }
            Event::LinkInfo { tunnel, local_session_id, circuit_active } => {
                let name = self.tunnel_name(tunnel);
                self.emit(
                    "link-info",
                    name.as_deref(),
                    Some(tunnel),
                    Some((&local_session_id.to_string(), local_session_id)),
                    format!("circuit active: {circuit_active:?}"),
                );
            }
            Event::WanError { tunnel, local_session_id } => {
                let name = self.tunnel_name(tunnel);
                self.emit(
                    "wan-error",
                    name.as_deref(),
                    Some(tunnel),
                    Some((&local_session_id.to_string(), local_session_id)),
                    "peer reported circuit errors".into(),
                );
            }
            Event::Rejected { peer, what } => {
                debug!(%peer, "rejected: {what}");
                self.events.send(EventView {
                    time_ms: store::now_ms(),
                    event: "rejected".into(),
                    tunnel: None,
                    tunnel_id: None,
                    session: None,
                    session_id: None,
                    detail: format!("{peer}: {what}"),
                });
            }
        }
    }

    /// Initiator: requests every configured session not up or pending.
    fn open_missing_sessions(&mut self, name: &str, id: TunnelId) {
        let Some(slot) = self.tunnels.get(name) else { return };
        let Some(info) = self.engine.tunnel_info(id) else { return };
        if !info.initiator || info.state != TunnelStatus::Established {
            return;
        }
        let wanted: Vec<SessionConfig> = slot
            .cfg
            .sessions
            .iter()
            .filter(|s| !info.sessions.iter().any(|x| x.remote_end_id == s.remote_end_id().as_bytes()))
            .cloned()
            .collect();
        for s in wanted {
            if let Err(e) = self.engine.open_session(Self::now(), id, s.engine_params()) {
                warn!(tunnel = name, session = %s.name, "cannot open: {e}");
            }
        }
    }

    /// RFC 4951 F-SS-2/F-SS-3 on demand: FSQ for the named sessions of a
    /// tunnel (all of them when none is named); the answers show as
    /// session-confirmed, session-cleared and session-stale events.
    fn query(&mut self, tunnel: &str, names: &[String]) -> anyhow::Result<String> {
        let id = self
            .tunnels
            .get(tunnel)
            .ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?
            .id
            .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} is not up"))?;
        let mine: Vec<(u32, &str)> =
            self.sessions.iter().filter(|(k, _)| k.0 == id).map(|(k, s)| (k.1, s.name.as_str())).collect();
        let mut sids = Vec::new();
        for n in names {
            let (sid, _) = mine
                .iter()
                .find(|(_, name)| name == n)
                .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} has no established session named {n:?}"))?;
            sids.push(*sid);
        }
        if names.is_empty() {
            sids = mine.iter().map(|(sid, _)| *sid).collect();
        }
        if sids.is_empty() {
            anyhow::bail!("tunnel {tunnel:?} has no established session to query");
        }
        sids.sort_unstable();
        let now = Self::now();
        for chunk in sids.chunks(64) {
            self.engine.query_sessions(now, id, chunk).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(format!("queried {} session(s) of {tunnel:?}; the answers come as events", sids.len()))
    }

    /// F-DC-3: the installed sessions among `sids` that check sequence
    /// numbers follow the peer's Ns after `n` packets (ENTER_RESYNC).
    /// Returns how many.
    fn enter_resync(&self, sids: &[u32], n: u16) -> usize {
        if self.dp.is_none() {
            return 0;
        }
        self.with_table(|table| {
            let sequenced: Vec<u32> = sids
                .iter()
                .filter_map(|sid| table.index_of(*sid))
                .filter(|idx| table.config(*idx).is_ok_and(|c| c.flags & l2tp_common::session::flags::SEQ_RX != 0))
                .collect();
            sequenced
                .into_iter()
                .filter(|idx| table.post(*idx, dataplane::session::Command::EnterResync { n }).is_ok())
                .count()
        })
        .unwrap_or(0)
    }

    /// The resync run length of a tunnel's sessions (F-DC-3 `n`).
    fn resync_n(&self, tunnel: Option<&str>) -> u16 {
        tunnel
            .and_then(|n| self.tunnels.get(n))
            .map_or(crate::config::Failover::default().resync_n, |s| s.cfg.failover.resync_n)
    }

    /// Reinstalls a session of the store in the data plane.
    fn reinstall(&self, tcfg: &TunnelConfig, rec: &TunnelRecord, s: &SessionRecord) -> anyhow::Result<()> {
        let c = tcfg
            .sessions
            .iter()
            .find(|c| c.remote_end_id() == s.remote_end_id)
            .ok_or_else(|| anyhow::anyhow!("no longer configured"))?;
        let w = Wire {
            peer: rec.peer,
            transport: tcfg.transport(),
            local_session_id: s.local_id,
            peer_session_id: s.peer_id,
            rx_cookie: &s.rx_cookie,
            tx_cookie: &s.tx_cookie,
            sublayer: s.sublayer,
            sequencing: s.sequencing,
        };
        self.install(tcfg, c, &w)
    }

    /// RFC 4951 data channel failure while the control plane runs: the
    /// pinned data plane is gone (pins removed, programs detached). It is
    /// rebuilt from the store, Ns restarting at 0 (F-DC-1) and Nr
    /// following the peer after n packets (F-DC-3); every session is then
    /// queried with FSQ (F-DC-5), which also tells the peer to resync to
    /// our restarted Ns.
    fn check_dataplane(&mut self) {
        let Some(dir) = self.dp.as_ref().map(|d| d.dir().to_owned()) else { return };
        if Pinned::open(&dir).is_ok() {
            return;
        }
        warn!(dir = %dir.display(), "the pinned data plane is gone: rebuilding it (RFC 4951 data channel failure)");
        self.table.borrow_mut().take();
        match Pinned::open_or_create(&dir) {
            Ok(dp) => self.dp = Some(dp),
            Err(e) => return error!("rebuilding the data plane: {e}"),
        }
        let configs: Vec<TunnelConfig> = self.tunnels.values().map(|s| s.cfg.clone()).collect();
        for t in &configs {
            if t.version != 3 || t.sessions.is_empty() {
                continue;
            }
            let attach = self.cfg.uplink_of(t).map(str::to_owned).map(|u| self.ensure_attached(&u, Role::Uplink));
            if let Some(Err(e)) = attach {
                error!(tunnel = %t.name, "uplink: {e:#}");
            }
            for s in &t.sessions {
                if let Err(e) = self.ensure_attached(&s.interface, Role::Attachment) {
                    error!(tunnel = %t.name, session = %s.name, "{e:#}");
                }
            }
        }
        let mut rebuilt = 0;
        let mut queries: Vec<(TunnelId, Vec<u32>)> = Vec::new();
        let records = self.store.tunnels().unwrap_or_default();
        for rec in records {
            let Some(tcfg) = self.tunnels.get(&rec.name).filter(|s| s.id == Some(rec.local_id)).map(|s| s.cfg.clone())
            else {
                continue;
            };
            let mut sids = Vec::new();
            for s in self.store.sessions(rec.local_id).unwrap_or_default() {
                let Some(slot) = self.sessions.get(&(rec.local_id, s.local_id)) else { continue };
                sids.push(s.local_id);
                if !slot.installed {
                    continue;
                }
                match self.reinstall(&tcfg, &rec, &s) {
                    Ok(()) => rebuilt += 1,
                    Err(e) => error!(tunnel = %rec.name, session = %s.name, "not reinstalled: {e:#}"),
                }
                self.enter_resync(&[s.local_id], tcfg.failover.resync_n);
            }
            if !sids.is_empty() {
                queries.push((rec.local_id, sids));
            }
        }
        let now = Self::now();
        for (id, sids) in queries {
            for chunk in sids.chunks(64) {
                let _ = self.engine.query_sessions(now, id, chunk);
            }
            let name = self.tunnel_name(id);
            self.emit(
                "dataplane-rebuilt",
                name.as_deref(),
                Some(id),
                None,
                "data plane lost and rebuilt from the store; sessions queried with FSQ (RFC 4951 F-DC-5)".into(),
            );
        }
        info!(sessions = rebuilt, "data plane rebuilt");
    }

    /// Periodic work: reconnect tunnels that are down, re-request sessions
    /// that were refused or dropped, notice a lost data plane.
    fn tick(&mut self) {
        *self.facts.borrow_mut() = NetFacts::default();
        self.check_dataplane();
        let now = Self::now();
        let names: Vec<String> = self.tunnels.keys().cloned().collect();
        for name in names {
            let Some(slot) = self.tunnels.get_mut(&name) else { continue };
            // An attempt that died before it was up leaves no event.
            if let Some(id) = slot.id {
                if self.engine.tunnel_info(id).is_none_or(|i| i.closing) {
                    slot.id = None;
                    self.by_id.remove(&id);
                    if slot.cfg.initiate && slot.retry_at.is_none() {
                        slot.retry_at = Some(now + Duration::from_secs(self.cfg.global.reconnect_interval));
                    }
                }
            }
            if slot.id.is_none() && slot.retry_at.is_some_and(|t| t <= now) {
                self.connect(&name);
            } else if let Some(id) = slot.id {
                self.open_missing_sessions(&name, id);
            }
        }
    }

    fn next_tick(&self) -> Instant {
        let retry = self.tunnels.values().filter_map(|s| s.retry_at).min();
        let periodic = Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval);
        retry.map_or(periodic, |r| r.min(periodic))
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Datagram>,
        mut api_rx: mpsc::Receiver<ApiCall>,
    ) -> anyhow::Result<Exit> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut next_tick = self.next_tick();
        loop {
            self.flush().await;
            let deadline = self.engine.poll_timeout().map_or(next_tick, |t| t.min(next_tick));
            tokio::select! {
                Some(d) = rx.recv() => {
                    self.engine.handle_datagram(Self::now(), d.from, d.transport, &d.bytes);
                    // Whatever else has arrived too, so that one flush (and
                    // one store commit) covers a burst.
                    for _ in 0..BURST {
                        let Ok(d) = rx.try_recv() else { break };
                        self.engine.handle_datagram(Self::now(), d.from, d.transport, &d.bytes);
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Self::now();
                    self.engine.handle_timeout(now);
                    if now >= next_tick {
                        self.tick();
                        next_tick = self.next_tick();
                    }
                }
                Some((req, reply)) = api_rx.recv() => {
                    let stop = match &req {
                        Request::Shutdown { keep } => Some(*keep),
                        _ => None,
                    };
                    let resp = match stop {
                        Some(_) => Response::Ok(Reply::Done { message: "stopping".into() }),
                        None => self.handle(req),
                    };
                    let _ = reply.send(resp);
                    next_tick = next_tick.min(self.next_tick());
                    if stop.is_some() {
                        // Let the connection task write the reply first.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    match stop {
                        Some(true) => return Ok(self.stop_kept()),
                        Some(false) => return self.shutdown(&mut rx).await,
                        None => {}
                    }
                }
                _ = sigterm.recv() => return self.shutdown(&mut rx).await,
                _ = sigint.recv() => return self.shutdown(&mut rx).await,
                _ = sighup.recv() => {
                    match self.reload() {
                        Ok(m) => info!("reloaded: {m}"),
                        Err(e) => error!("reload refused, nothing changed: {e:#}"),
                    }
                    next_tick = next_tick.min(self.next_tick());
                }
            }
        }
    }

    /// Maintenance stop: nothing is torn down.
    fn stop_kept(self) -> Exit {
        info!("stopping, keeping tunnels, sessions and the data plane for the next start");
        let _ = std::fs::remove_file(&self.socket_path);
        Exit::Kept
    }

    /// Orderly shutdown: StopCCN on every tunnel, acknowledged (or given
    /// up after a few seconds), then the data plane removed.
    async fn shutdown(mut self, rx: &mut mpsc::Receiver<Datagram>) -> anyhow::Result<Exit> {
        info!("shutting down: closing all tunnels");
        let _ = std::fs::remove_file(&self.socket_path);
        let ids: Vec<TunnelId> = self.engine.tunnel_infos().iter().map(|t| t.local_id).collect();
        for id in ids {
            self.forget_tunnel(id);
            let _ = self.engine.close_tunnel(Self::now(), id);
        }
        let give_up = Instant::now() + Duration::from_secs(3);
        loop {
            self.flush().await;
            let pending = self.engine.tunnel_infos().iter().any(|t| t.unacknowledged > 0);
            if !pending || Instant::now() >= give_up {
                break;
            }
            let deadline = self.engine.poll_timeout().map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                Some(d) = rx.recv() => self.engine.handle_datagram(Self::now(), d.from, d.transport, &d.bytes),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => self.engine.handle_timeout(Self::now()),
            }
        }
        self.store.clear()?;
        self.table.borrow_mut().take();
        if let Some(dp) = self.dp.take() {
            if self.cfg.dataplane.remove_on_shutdown {
                dp.destroy().context("removing the data plane")?;
                info!("data plane removed");
            }
        }
        info!("stopped");
        Ok(Exit::Orderly)
    }

    /// SIGHUP / `reload`: re-reads the file and applies the differences:
    /// new tunnels started, removed ones torn down, changed ones restarted,
    /// sessions added or deleted, nothing else touched. A bad file changes
    /// nothing.
    fn reload(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config_path)?;
        // Tunnels (re)added below take their timers over the new globals;
        // running ones keep theirs.
        self.cfg.global = new.global.clone();
        let old_names: Vec<String> = self.tunnels.iter().filter(|(_, s)| !s.from_api).map(|(n, _)| n.clone()).collect();
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for name in &old_names {
            let Some(slot) = self.tunnels.get(name) else { continue };
            match new.tunnel(name) {
                None => {
                    self.delete_tunnel(name)?;
                    removed += 1;
                }
                Some(t) => {
                    let mut a = slot.cfg.clone();
                    let mut b = t.clone();
                    let (sa, sb) = (std::mem::take(&mut a.sessions), std::mem::take(&mut b.sessions));
                    if a != b {
                        self.delete_tunnel(name)?;
                        self.add_tunnel(t.clone(), false, true)?;
                        changed += 1;
                        continue;
                    }
                    for s in &sa {
                        if !sb.contains(s) {
                            self.delete_session(name, &s.name)?;
                            changed += 1;
                        }
                    }
                    for s in &sb {
                        if !sa.contains(s) {
                            self.add_session(name, s.clone())?;
                            changed += 1;
                        }
                    }
                }
            }
        }
        for t in &new.tunnels {
            if !self.tunnels.contains_key(&t.name) {
                self.add_tunnel(t.clone(), false, true)?;
                added += 1;
            }
        }
        let tunnels = std::mem::take(&mut self.cfg.tunnels);
        self.cfg = Config { tunnels, ..new };
        Ok(format!("{added} tunnel(s) added, {removed} removed, {changed} change(s)"))
    }

    fn handle(&mut self, req: Request) -> Response {
        let r = (|| -> anyhow::Result<Reply> {
            Ok(match req {
                Request::Status => Reply::Status(self.status()),
                Request::TunnelList => Reply::Tunnels { tunnels: self.tunnel_views() },
                Request::TunnelShow { name } => Reply::Tunnel(
                    self.tunnel_views()
                        .into_iter()
                        .find(|t| t.name == name)
                        .ok_or_else(|| anyhow::anyhow!("no tunnel named {name:?}"))?,
                ),
                Request::TunnelAdd { tunnel } => {
                    let name = tunnel.name.clone();
                    self.add_tunnel(*tunnel, true, true)?;
                    Reply::Done { message: format!("tunnel {name:?} added") }
                }
                Request::TunnelDelete { name } => {
                    self.delete_tunnel(&name)?;
                    Reply::Done { message: format!("tunnel {name:?} deleted") }
                }
                Request::SessionList { tunnel } => {
                    if let Some(t) = &tunnel {
                        if !self.tunnels.contains_key(t) {
                            anyhow::bail!("no tunnel named {t:?}");
                        }
                    }
                    let sessions = self
                        .tunnel_views()
                        .into_iter()
                        .filter(|t| tunnel.as_ref().is_none_or(|n| *n == t.name))
                        .flat_map(|t| t.sessions)
                        .collect();
                    Reply::Sessions { sessions }
                }
                Request::SessionShow { tunnel, name } => Reply::Session(
                    self.tunnel_views()
                        .into_iter()
                        .filter(|t| t.name == tunnel)
                        .flat_map(|t| t.sessions)
                        .find(|s| s.name == name)
                        .ok_or_else(|| anyhow::anyhow!("no session {name:?} on tunnel {tunnel:?}"))?,
                ),
                Request::SessionAdd { tunnel, session } => Reply::Done { message: self.add_session(&tunnel, session)? },
                Request::SessionDelete { tunnel, name } => {
                    self.delete_session(&tunnel, &name)?;
                    Reply::Done { message: format!("session {name:?} deleted") }
                }
                Request::Stats => Reply::Stats(self.stats()?),
                Request::FailoverStatus => Reply::Failover { tunnels: self.failover_views() },
                Request::FailoverQuery { tunnel, sessions } => Reply::Done { message: self.query(&tunnel, &sessions)? },
                Request::Reload => Reply::Done { message: self.reload()? },
                Request::Events | Request::Shutdown { .. } => anyhow::bail!("not handled here"),
            })
        })();
        match r {
            Ok(r) => Response::Ok(r),
            Err(e) => Response::Error(format!("{e:#}")),
        }
    }

    fn status(&self) -> StatusView {
        let infos = self.engine.tunnel_infos();
        StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            tunnels_configured: self.tunnels.len(),
            tunnels_established: infos.iter().filter(|t| t.state == TunnelStatus::Established).count(),
            sessions_established: infos
                .iter()
                .map(|t| t.sessions.iter().filter(|s| s.state == SessionStatus::Established).count())
                .sum(),
            dataplane: self.dp.as_ref().map(|d| d.dir().display().to_string()),
        }
    }

    fn tunnel_views(&self) -> Vec<TunnelView> {
        // The pinned maps are opened once for the whole view.
        let table = self.dp.as_ref().and_then(|d| d.sessions().ok());
        self.tunnels
            .iter()
            .map(|(name, slot)| {
                let info: Option<TunnelInfo> = slot.id.and_then(|id| self.engine.tunnel_info(id));
                let mut sessions: Vec<SessionView> = Vec::new();
                if let Some(i) = &info {
                    for s in &i.sessions {
                        let rid = String::from_utf8_lossy(&s.remote_end_id).into_owned();
                        let cfg = slot.cfg.sessions.iter().find(|c| c.remote_end_id() == rid);
                        let local = self.sessions.get(&(i.local_id, s.local_id));
                        sessions.push(SessionView {
                            tunnel: name.clone(),
                            name: local
                                .map(|l| l.name.clone())
                                .or(cfg.map(|c| c.name.clone()))
                                .unwrap_or_else(|| s.local_id.to_string()),
                            state: s.state.as_str().into(),
                            local_id: Some(s.local_id),
                            peer_id: Some(s.peer_id).filter(|p| *p != 0),
                            remote_end_id: rid,
                            interface: local.and_then(|l| l.interface.clone()).or(cfg.map(|c| c.interface.clone())),
                            vlan: cfg.and_then(|c| c.vlan),
                            pw_type: s.pw_type,
                            sequencing: s.sequencing,
                            stale: s.stale,
                            dataplane: table
                                .as_ref()
                                .filter(|_| local.is_some_and(|l| l.installed))
                                .and_then(|t| DataplaneView::read(t, s.local_id)),
                        });
                    }
                }
                for c in &slot.cfg.sessions {
                    if !sessions.iter().any(|s| s.remote_end_id == c.remote_end_id()) {
                        sessions.push(SessionView {
                            tunnel: name.clone(),
                            name: c.name.clone(),
                            state: "down".into(),
                            remote_end_id: c.remote_end_id().into(),
                            interface: Some(c.interface.clone()),
                            vlan: c.vlan,
                            pw_type: c.pw_type.code(),
                            sequencing: c.sequencing,
                            ..SessionView::default()
                        });
                    }
                }
                TunnelView {
                    name: name.clone(),
                    state: info.as_ref().map_or("down", |i| i.state.as_str()).into(),
                    local_id: info.as_ref().map(|i| i.local_id),
                    peer_id: info.as_ref().map(|i| i.peer_id).filter(|p| *p != 0),
                    peer: slot.cfg.peer_addr().to_string(),
                    version: slot.cfg.version,
                    encapsulation: format!("{:?}", slot.cfg.encapsulation).to_lowercase(),
                    initiator: info.as_ref().map(|i| i.initiator),
                    peer_host_name: info.as_ref().map(|i| i.peer_host_name.clone()).filter(|h| !h.is_empty()),
                    local_failover: failover_bits(info.as_ref().and_then(|i| i.local_failover)),
                    peer_failover: failover_bits(info.as_ref().and_then(|i| i.peer_failover)),
                    ns: info.as_ref().map(|i| i.ns),
                    nr: info.as_ref().map(|i| i.nr),
                    sessions,
                }
            })
            .collect()
    }

    fn stats(&self) -> anyhow::Result<StatsView> {
        let c = self.engine.stats();
        let dataplane_global = match &self.dp {
            Some(dp) => dp.global_stats()?.iter().map(|(n, v)| (n.to_owned(), v)).collect(),
            None => Vec::new(),
        };
        Ok(StatsView {
            control: ControlStats {
                datagrams: c.datagrams,
                malformed: c.malformed,
                unknown_tunnel: c.unknown_tunnel,
                auth_failures: c.auth_failures,
                refused: c.refused,
                stopccn_sent: c.stopccn_sent,
                cdn_sent: c.cdn_sent,
                ignored: c.ignored,
            },
            dataplane_global,
            sessions: self
                .tunnel_views()
                .into_iter()
                .flat_map(|t| t.sessions)
                .filter(|s| s.local_id.is_some())
                .collect(),
        })
    }

    fn failover_views(&self) -> Vec<FailoverView> {
        self.tunnels
            .iter()
            .map(|(name, slot)| {
                let info = slot.id.and_then(|id| self.engine.tunnel_info(id));
                let local = info.as_ref().and_then(|i| i.local_failover);
                let peer = info.as_ref().and_then(|i| i.peer_failover);
                FailoverView {
                    tunnel: name.clone(),
                    state: info.as_ref().map_or("down", |i| i.state.as_str()).into(),
                    control_recovery: local.is_some_and(|l| l.control) && peer.is_some_and(|p| p.control),
                    data_recovery: local.is_some_and(|l| l.data) && peer.is_some_and(|p| p.data),
                    local: failover_bits(local),
                    peer: failover_bits(peer),
                    stale_sessions: slot.id.map(|id| self.engine.stale_sessions(id)).unwrap_or_default(),
                    unconfirmed_sessions: info
                        .as_ref()
                        .map_or(0, |i| i.sessions.iter().filter(|s| s.unconfirmed).count()),
                    last_event: slot.last_event.clone(),
                }
            })
            .collect()
    }
}

/// Serves the control API on `path` (mode 0600, root or our own user only).
/// Events for `l2tp-ctl events`: the most recent ones kept for a client
/// that starts listening, and a broadcast of the new ones.
#[derive(Clone, Debug)]
struct EventLog {
    tx: broadcast::Sender<EventView>,
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<EventView>>>,
}

impl EventLog {
    /// Events kept for clients that connect later.
    const KEEP: usize = 1000;

    fn new() -> Self {
        Self { tx: broadcast::channel(4096).0, recent: Arc::default() }
    }

    fn send(&self, v: EventView) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == Self::KEEP {
                r.pop_front();
            }
            r.push_back(v.clone());
        }
        let _ = self.tx.send(v);
    }

    /// The kept events and a receiver for the next ones, with nothing lost
    /// or repeated in between (the daemon runs on one thread).
    fn subscribe(&self) -> (Vec<EventView>, broadcast::Receiver<EventView>) {
        let rx = self.tx.subscribe();
        let recent = self.recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
        (recent, rx)
    }
}

async fn serve_api(path: &Path, calls: mpsc::Sender<ApiCall>, events: EventLog) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // No daemon answered on it (checked at start): a stale file.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let allowed = stream.peer_cred().is_ok_and(|c| c.uid() == 0 || c.uid() == me);
            if !allowed {
                continue;
            }
            let calls = calls.clone();
            let events = events.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, calls, events).await {
                    debug!("API connection: {e}");
                }
            });
        }
    });
    Ok(())
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<ApiCall>, events: EventLog) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        if line.len() > 1 << 20 {
            anyhow::bail!("request too long");
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error(format!("bad request: {e}")),
            Ok(Request::Events) => {
                let (recent, mut rx) = events.subscribe();
                write_line(&mut w, &Response::Ok(Reply::Following)).await?;
                for ev in &recent {
                    write_line(&mut w, ev).await?;
                }
                loop {
                    match rx.recv().await {
                        Ok(ev) => write_line(&mut w, &ev).await?,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            warn!("events client lagged by {n} events");
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
            }
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if calls.send((req, tx)).await.is_err() {
                    return Ok(());
                }
                match rx.await {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            }
        };
        write_line(&mut w, &resp).await?;
    }
    Ok(())
}

async fn write_line<T: serde::Serialize>(w: &mut tokio::net::unix::OwnedWriteHalf, v: &T) -> anyhow::Result<()> {
    let mut b = serde_json::to_vec(v)?;
    b.push(b'\n');
    w.write_all(&b).await?;
    Ok(())
}
