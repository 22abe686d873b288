//! `l2tp-ctl daemon`: the tokio driver around the sans-IO protocol engine.
//!
//! One task owns the engine, the data plane, the store and the registry;
//! socket readers and API connections talk to it through channels. The
//! engine's outputs are drained in a fixed order after every input:
//! datagrams out, data-plane updates (programmed into the maps and written
//! to the store), then events (logged and streamed to `events` clients), so
//! that nothing is reported up before it is persisted.
//!
//! One concern per file:
//! - [`io`]: control sockets and their readers, the API socket, the event
//!   log;
//! - [`registry`]: tunnel and session names, engine IDs and slots;
//! - [`dataplane`]: programming the pinned XDP maps;
//! - [`persist`]: the state store and its records;
//! - [`tunnels`]: adding, deleting, connecting and reloading tunnels and
//!   sessions;
//! - [`events`]: what the engine reports (data-plane updates and events);
//! - [`failover`]: start-up recovery, data-plane rebuild, FSQ queries;
//! - [`handlers`]: API requests;
//! - [`ha`]: the hot standby on another host (partner channel,
//!   replication, takeover, stepping down).

mod dataplane;
mod events;
mod failover;
mod ha;
mod ha_link;
mod handlers;
mod io;
mod metrics;
mod persist;
mod registry;
mod route_watch;
mod tunnels;
mod warm;

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use l2tp_proto::engine::{Engine, TunnelId};
use rand::{rngs::StdRng, SeedableRng};
use tokio::{
    net::UnixStream,
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

use self::{
    dataplane::DataPlane,
    ha::{HaInput, HaState},
    handlers::Answer,
    io::{ApiCall, Datagram, EventLog, Sockets},
    persist::Persistence,
    registry::Registry,
};
use crate::{
    api::{EventView, Reply, Request, Response},
    config::Config,
    store,
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

/// Datagrams handled before one flush, at most.
const BURST: usize = 256;

/// Events emitted in a row before the daemon lets the events clients'
/// tasks run (a sixteenth of what each client's queue holds).
const EVENT_YIELD: usize = EventLog::QUEUE / 16;

struct Daemon {
    config_path: PathBuf,
    cfg: Config,
    engine: Engine,
    store: Persistence,
    dp: Option<DataPlane>,
    sockets: Sockets,
    reg: Registry,
    events: EventLog,
    started: Instant,
    socket_path: PathBuf,
    /// The data plane did not survive the previous run (no pins): it was
    /// rebuilt from the store, so recovered sequenced sessions restart
    /// their Ns at 0 (RFC 4951 F-DC-1).
    dp_rebuilt: bool,
    /// When each start-up step ended.
    startup: Startup,
    /// The hot standby pair this daemon is one of, if configured.
    ha: Option<HaState>,
    /// Sessions up or confirmed, per tunnel, since the last log line that
    /// said so. A recovery confirms every session at once and a store
    /// write reports a burst up: each such event is logged at debug and
    /// one line per tunnel and round at info (a line per session at the
    /// default level took about a third of a 10,000-session recovery, and
    /// a sixth of their setup); the event stream still has every one.
    unlogged: foldhash::HashMap<(u32, Burst), u32>,
    /// When the sessions waiting for their store write are written (group
    /// commit: `global.commit_delay_ms` after the first of them).
    commit_at: Option<Instant>,
}

/// Per-session events logged at info once per tunnel and round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Burst {
    Up,
    Confirmed,
}

/// The daemon's input channels.
struct Inputs {
    datagrams: mpsc::Receiver<Datagram>,
    api: mpsc::Receiver<ApiCall>,
    ha: mpsc::Receiver<HaInput>,
    /// Route, neighbour or link changes (with a data plane).
    routes: mpsc::Receiver<()>,
}

/// Runs the daemon until it is told to stop.
pub fn run(opts: Options) -> anyhow::Result<Exit> {
    let mut startup = Startup::default();
    startup.mark("run");
    let mut cfg = Config::load(&opts.config)?;
    startup.mark("config_loaded");
    if let Some(d) = &opts.state_dir {
        cfg.global.state_dir = d.clone();
    }
    if let Some(s) = &opts.socket {
        cfg.global.socket = s.clone();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let (daemon, inputs) = Daemon::start(opts.config, cfg, startup).await?;
        daemon.run(inputs).await
    })
}

/// When the start-up steps ended (Unix ms, fractional), for `status` and
/// the benchmark's phases.
#[derive(Debug, Default, Clone)]
pub(super) struct Startup(Vec<(&'static str, f64)>);

impl Startup {
    fn mark(&mut self, step: &'static str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.0.push((step, now.as_secs_f64() * 1e3));
    }

    pub fn steps(&self) -> Vec<(String, f64)> {
        self.0.iter().map(|(s, t)| ((*s).to_owned(), *t)).collect()
    }
}

/// Logs the warnings of a configuration (legal values worth a word).
fn warn_about(cfg: &Config) {
    for w in cfg.warnings() {
        warn!("configuration: {w}");
    }
}

impl Daemon {
    async fn start(config_path: PathBuf, mut cfg: Config, mut startup: Startup) -> anyhow::Result<(Self, Inputs)> {
        let socket_path = cfg.global.socket.clone();
        if let Some(ha) = cfg.ha.clone() {
            // The peers know the service address: tunnels speak from it,
            // control and data alike.
            for t in &mut cfg.tunnels {
                if t.local.is_none() {
                    t.local = ha.service_for(t.peer);
                }
            }
            for a in &ha.service_address {
                let l = SocketAddr::new(*a, 1701);
                if !cfg.global.listen.contains(&l) {
                    cfg.global.listen.push(l);
                }
            }
        }
        // One daemon per socket: a live one answers.
        if UnixStream::connect(&socket_path).await.is_ok() {
            anyhow::bail!("another daemon is already serving {}", socket_path.display());
        }
        warn_about(&cfg);
        let store = Persistence::open(&cfg.global.state_dir)?;
        startup.mark("store_opened");
        let (tx, rx) = mpsc::channel(4096);
        let sockets = Sockets::open(&cfg.global.listen, cfg.global.listen_ip, &tx)?;
        let (dp, dp_rebuilt) = match cfg.dataplane.enabled {
            true => DataPlane::open(&cfg.dataplane).map(|(d, created)| (Some(d), created))?,
            false => (None, false),
        };
        startup.mark("dataplane_opened");
        let engine = Engine::new(cfg.engine(), Box::new(StdRng::from_entropy()));
        // The tunnels move into the registry (`add_tunnels`), which is where
        // the daemon reads them from; `cfg` keeps the rest. Copying them
        // twice cost a start-up with 10,000 sessions some milliseconds and
        // kept a second copy of every session's configuration.
        let tunnels = std::mem::take(&mut cfg.tunnels);
        let mut d = Self {
            config_path,
            cfg: cfg.clone(),
            engine,
            store,
            dp,
            sockets,
            reg: Registry::default(),
            events: EventLog::new(),
            started: Instant::now(),
            socket_path: socket_path.clone(),
            dp_rebuilt,
            ha: None,
            startup: Startup::default(),
            unlogged: Default::default(),
            commit_at: None,
        };
        let (ha_tx, ha_rx) = mpsc::channel(1);
        drop(ha_tx);
        let mut ha_rx = ha_rx;
        if let Some(h) = &cfg.ha {
            let iface = h.interface.clone().or_else(|| cfg.dataplane.uplink.clone()).unwrap_or_default();
            let (term, mut role) = d.ha_persisted()?;
            if role.unwrap_or(match h.role {
                crate::config::HaRole::Active => l2tp_ha::Role::Active,
                crate::config::HaRole::Standby => l2tp_ha::Role::Standby,
            }) == l2tp_ha::Role::Active
            {
                // Unreachable is not down: an active that comes back while
                // somebody answers for the service address serves nothing
                // until the partner says so.
                let (i, addrs) = (iface.clone(), h.service_address.clone());
                let timeout = h.partner_config().probe;
                let answered = tokio::task::spawn_blocking(move || {
                    addrs.iter().any(|a| {
                        crate::service_addr::holds(&i, *a).is_ok_and(|held| !held)
                            && crate::service_addr::probe(&i, *a, timeout).unwrap_or(true)
                    })
                })
                .await
                .unwrap_or(true);
                if answered {
                    warn!("the service address answers from another host: starting as standby");
                    role = Some(l2tp_ha::Role::Standby);
                }
            }
            let (state, rx) = HaState::start(h, iface, term, role)?;
            ha_rx = rx;
            d.ha = Some(state);
        }
        let configured = tunnels.len();
        d.add_tunnels(tunnels, false)?;
        startup.mark("tunnels_added");
        if d.serving() {
            d.become_serving()?;
            startup.mark("previous_run_recovered");
        } else {
            // A standby keeps the replicated state, and nothing else.
            d.forget_everything();
            info!("standby: waiting for the partner");
        }
        let (api_tx, api_rx) = mpsc::channel(64);
        metrics::serve(&cfg.metrics, &socket_path, api_tx.clone()).await?;
        io::serve_api(&socket_path, api_tx, d.events.clone()).await?;
        startup.mark("api_up");
        d.startup = startup;
        info!(config = %d.config_path.display(), socket = %socket_path.display(), tunnels = configured, "started");
        let (routes_tx, routes) = mpsc::channel(1);
        if d.dp.is_some() {
            if let Err(e) = route_watch::spawn(routes_tx) {
                warn!("not watching route and neighbour changes (cached next hops then follow them within 0.1 s): {e}");
            }
        }
        Ok((d, Inputs { datagrams: rx, api: api_rx, ha: ha_rx, routes }))
    }

    /// Serves: the service address (a hot-standby active), the tunnels of
    /// the previous run (or the replicated ones) recovered, the others
    /// connected.
    fn become_serving(&mut self) -> anyhow::Result<()> {
        if let Some(ha) = &self.ha {
            for a in ha.cfg.service_address.clone() {
                let iface = ha.cfg.interface.clone().or_else(|| self.cfg.dataplane.uplink.clone()).unwrap_or_default();
                crate::service_addr::add(&iface, a)
                    .with_context(|| format!("taking the service address {a} on {iface}"))?;
                if let Err(e) = crate::service_addr::announce(&iface, a) {
                    warn!("announcing the service address {a}: {e}");
                }
            }
            self.store.record_changes(true);
        }
        self.previous_run()?;
        let idle: Vec<String> =
            self.reg.iter().filter(|(_, s)| s.id().is_none() && s.cfg.initiate).map(|(n, _)| n.clone()).collect();
        for name in idle {
            self.connect(&name);
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
        self.publish(true, event, tunnel, tunnel_id, session, detail)
    }

    /// [`Self::emit`], its log line at info or (`at_info` false) debug.
    fn publish(
        &self,
        at_info: bool,
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
        macro_rules! log {
            ($level:ident) => {
                $level!(
                    event,
                    tunnel = tunnel.unwrap_or("-"),
                    tunnel_id = tunnel_id.unwrap_or(0),
                    session = session.map(|s| s.0).unwrap_or("-"),
                    session_id = session.map(|s| s.1).unwrap_or(0),
                    "{}",
                    v.detail
                )
            };
        }
        if at_info {
            log!(info);
        } else {
            log!(debug);
        }
        self.events.send(v);
    }

    /// One info line per tunnel for the sessions up, and one for those
    /// confirmed, since the last.
    fn log_bursts(&mut self) {
        for ((id, kind), n) in std::mem::take(&mut self.unlogged) {
            let tunnel = self.tunnel_name_ref(id).unwrap_or("-");
            match kind {
                Burst::Up => info!(event = "session-up", tunnel, tunnel_id = id, sessions = n, "{n} session(s) up"),
                Burst::Confirmed => info!(
                    event = "session-confirmed",
                    tunnel,
                    tunnel_id = id,
                    sessions = n,
                    "{n} session(s) confirmed by FSR"
                ),
            }
        }
    }

    /// Sends everything the engine has queued and handles its updates and
    /// events, until it has nothing more to say.
    async fn flush(&mut self) {
        loop {
            let mut busy = false;
            while let Some((to, transport, bytes)) = self.engine.poll_transmit() {
                busy = true;
                self.sockets.send(to, transport, &bytes).await;
            }
            let mut updates = Vec::new();
            while let Some(u) = self.engine.poll_dataplane() {
                updates.push(u);
            }
            if !updates.is_empty() {
                busy = true;
                self.on_dataplane(updates);
            }
            busy |= self.persist_due();
            let mut emitted = 0usize;
            while let Some(e) = self.engine.poll_event() {
                busy = true;
                self.on_event(e);
                emitted += 1;
                if emitted.is_multiple_of(EVENT_YIELD) {
                    // The events clients' tasks take what was emitted so
                    // far: a recovery of 65,000 sessions emits 65,000 events
                    // here, and a client that keeps up must not be told it
                    // lagged.
                    tokio::task::yield_now().await;
                }
            }
            self.log_bursts();
            // One store transaction for this round's removals (a torn-down
            // tunnel's sessions, a burst of CDNs).
            self.store.commit_removals();
            // What was just stored goes to the standby.
            self.ha_drive();
            if !busy {
                return;
            }
        }
    }

    /// Periodic work: retry store removals, reconnect tunnels that are
    /// down, re-request sessions that were refused or dropped, notice a
    /// lost data plane.
    fn tick(&mut self) {
        self.store.retry();
        // Tunnels we closed that the engine let go of without a last event.
        for id in self.reg.departed_ids() {
            if self.engine.tunnel_info(id).is_none() {
                self.reg.departed_gone(id);
            }
        }
        if !self.serving() {
            return;
        }
        if let Some(dp) = &mut self.dp {
            dp.forget_facts();
        }
        self.check_dataplane();
        let now = Self::now();
        let reconnect = Duration::from_secs(self.cfg.global.reconnect_interval);
        for name in self.reg.names() {
            let Some(id) = self.reg.get(&name).map(|s| s.id()) else { continue };
            // An attempt that died before it was up leaves no event.
            if let Some(id) = id {
                if self.engine.tunnel_info(id).is_none_or(|i| i.closing) {
                    self.reg.unbind(id);
                    if let Some(slot) = self.reg.get_mut(&name) {
                        if slot.cfg.initiate && slot.retry_at.is_none() {
                            slot.retry_at = Some(now + reconnect);
                        }
                    }
                }
            }
            let Some(slot) = self.reg.get(&name) else { continue };
            if slot.id().is_none() && slot.retry_at.is_some_and(|t| t <= now) {
                self.connect(&name);
            }
        }
        self.open_missing_sessions();
    }

    fn next_tick(&self) -> Instant {
        let periodic = Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval);
        self.reg.next_retry().map_or(periodic, |r| r.min(periodic))
    }

    async fn run(mut self, inputs: Inputs) -> anyhow::Result<Exit> {
        let Inputs { datagrams: mut rx, api: mut api_rx, ha: mut ha_rx, mut routes } = inputs;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut next_tick = self.next_tick();
        loop {
            self.flush().await;
            let deadline = self.engine.poll_timeout().map_or(next_tick, |t| t.min(next_tick));
            let deadline = self.ha_deadline().map_or(deadline, |t| t.min(deadline));
            let deadline = self.commit_at.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                Some(input) = ha_rx.recv() => self.on_ha_inputs(input, &mut ha_rx),
                Some(()) = routes.recv() => {
                    if let Some(dp) = &mut self.dp {
                        dp.invalidate_next_hops();
                    }
                }
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
                    self.ha_timeout();
                    if now >= next_tick {
                        self.tick();
                        next_tick = self.next_tick();
                    }
                }
                Some((req, reply)) = api_rx.recv() => {
                    // What the answer shows up is stored (and reported up).
                    self.persist_pending();
                    let stop = match &req {
                        Request::Shutdown { keep } => Some(*keep),
                        _ => None,
                    };
                    let answer = match stop {
                        Some(_) => Answer::Now(Response::Ok(Reply::Done { message: "stopping".into() })),
                        None => self.handle(req),
                    };
                    // What the answer reports done is durable.
                    self.store.commit_removals();
                    // A client that hung up does not want its answer.
                    match answer {
                        Answer::Now(resp) => {
                            let _ = reply.send(resp);
                        }
                        Answer::Later(finish) => {
                            tokio::task::spawn_blocking(move || {
                                let _ = reply.send(finish());
                            });
                        }
                    }
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
                    // As for an API request: what the reload lets go of
                    // was stored and reported up first.
                    self.persist_pending();
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
    fn stop_kept(mut self) -> Exit {
        self.persist_pending();
        self.log_bursts();
        self.store.commit_removals();
        // What was just stored goes to the standby too.
        self.ha_drive();
        info!("stopping, keeping tunnels, sessions and the data plane for the next start");
        io::remove_socket(&self.socket_path);
        Exit::Kept
    }

    /// Orderly shutdown: StopCCN on every tunnel, acknowledged (or given
    /// up after a few seconds), then the data plane removed.
    async fn shutdown(mut self, rx: &mut mpsc::Receiver<Datagram>) -> anyhow::Result<Exit> {
        info!("shutting down: closing all tunnels");
        io::remove_socket(&self.socket_path);
        let ids: Vec<TunnelId> = self.engine.tunnel_infos().iter().map(|t| t.local_id).collect();
        for id in ids {
            self.retire_tunnel(id, self.reg.name_of(id).map(str::to_owned));
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
        if self.ha.as_ref().is_some_and(|h| h.role() == l2tp_ha::Role::Active) {
            // The standby learns that the tunnels are gone, and may take
            // the service address over (it is given up: nobody answers).
            self.ha_drive();
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.give_up_service_address();
        }
        if let Some(dp) = self.dp.take() {
            if self.cfg.dataplane.remove_on_shutdown {
                dp.destroy()?;
                info!("data plane removed");
            }
        }
        info!("stopped");
        Ok(Exit::Orderly)
    }

    /// Closes a tunnel in the engine (StopCCN); one already gone is fine.
    fn close_tunnel(&mut self, id: TunnelId) {
        if let Err(e) = self.engine.close_tunnel(Self::now(), id) {
            tracing::debug!(id, "close tunnel: {e}");
        }
    }

    /// Closes a session in the engine (CDN); one already gone is fine.
    fn close_session(&mut self, id: TunnelId, sid: u32) {
        if let Err(e) = self.engine.close_session(Self::now(), id, sid) {
            tracing::debug!(id, sid, "close session: {e}");
        }
    }
}
