//! API requests: one handler per request, and the views they answer with.

use std::collections::HashSet;

use l2tp_proto::engine::{FailoverCapability, SessionStatus, TunnelInfo, TunnelStatus};

use super::Daemon;
use crate::api::{
    ControlStats, DataplaneView, FailoverBits, FailoverView, MetricsView, Reply, Request, Response, SessionMetrics,
    SessionView, StatsView, StatusView, TunnelMetrics, TunnelView,
};

fn failover_bits(f: Option<FailoverCapability>) -> Option<FailoverBits> {
    f.map(|f| FailoverBits { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms })
}

/// An answer to a request, or one whose sessions' data-plane state is
/// still to be read: a read per session (five map lookups), done on a
/// blocking thread so that the event loop never waits for 65,536 of them.
#[allow(clippy::large_enum_variant, reason = "one per request, never stored")]
pub(super) enum Answer {
    Now(Response),
    Later(Box<dyn FnOnce() -> Response + Send>),
}

/// The installed sessions of a reply whose data-plane views are still to
/// be read, from the pins in `dir`.
struct Fill {
    dir: std::path::PathBuf,
    installed: HashSet<u32>,
}

impl Fill {
    /// Reads the data-plane view of every installed session of `reply`
    /// (none if the pins cannot be opened: as when a read fails).
    fn apply(self, mut reply: Reply) -> Reply {
        let table = match crate::dataplane::Pinned::open(&self.dir).and_then(|p| p.sessions()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "data-plane views not read: {e}");
                return reply;
            }
        };
        let fill = |s: &mut SessionView| {
            if let Some(sid) = s.local_id.filter(|sid| self.installed.contains(sid)) {
                s.dataplane = DataplaneView::read(&table, sid);
            }
        };
        match &mut reply {
            Reply::Tunnels { tunnels } => tunnels.iter_mut().flat_map(|t| t.sessions.iter_mut()).for_each(fill),
            Reply::Tunnel(t) => t.sessions.iter_mut().for_each(fill),
            Reply::Sessions { sessions } => sessions.iter_mut().for_each(fill),
            Reply::Session(s) => fill(s),
            Reply::Stats(st) => st.sessions.iter_mut().for_each(fill),
            _ => {}
        }
        reply
    }
}

impl Daemon {
    pub(super) fn handle(&mut self, req: Request) -> Answer {
        let mut installed = HashSet::new();
        match self.answer(req, &mut installed) {
            Ok(r) => match self.dp.as_ref().filter(|_| !installed.is_empty()) {
                Some(dp) => {
                    let fill = Fill { dir: dp.dir().to_owned(), installed };
                    Answer::Later(Box::new(move || Response::Ok(fill.apply(r))))
                }
                None => Answer::Now(Response::Ok(r)),
            },
            Err(e) => Answer::Now(Response::Error(format!("{e:#}"))),
        }
    }

    /// The reply to `req`; sessions whose data-plane views the reply needs
    /// go into `installed` (read later by [`Fill`]).
    fn answer(&mut self, req: Request, installed: &mut HashSet<u32>) -> anyhow::Result<Reply> {
        Ok(match req {
            Request::Status => Reply::Status(self.status()),
            Request::TunnelList => Reply::Tunnels { tunnels: self.tunnel_views(None, installed) },
            Request::TunnelShow { name } => Reply::Tunnel(
                self.tunnel_views(Some(&name), installed)
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
                    if !self.reg.contains(t) {
                        anyhow::bail!("no tunnel named {t:?}");
                    }
                }
                let sessions = self
                    .tunnel_views(tunnel.as_deref(), installed)
                    .into_iter()
                    .filter(|t| tunnel.as_ref().is_none_or(|n| *n == t.name))
                    .flat_map(|t| t.sessions)
                    .collect();
                Reply::Sessions { sessions }
            }
            Request::SessionShow { tunnel, name } => Reply::Session(
                self.tunnel_views(Some(&tunnel), installed)
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
            Request::Stats => Reply::Stats(self.stats(installed)?),
            Request::FailoverStatus => Reply::Failover { tunnels: self.failover_views() },
            Request::Metrics => Reply::Metrics(self.metrics_view()),
            Request::FailoverQuery { tunnel, sessions } => Reply::Done { message: self.query(&tunnel, &sessions)? },
            Request::Reload => Reply::Done { message: self.reload()? },
            Request::HaStatus => Reply::Ha(
                self.ha.as_ref().map(|h| h.view()).ok_or_else(|| anyhow::anyhow!("no [ha] section is configured"))?,
            ),
            Request::HaTakeover => Reply::Done { message: self.ha_takeover()? },
            Request::HaSwitchover => Reply::Done { message: self.ha_switchover()? },
            Request::Events | Request::Shutdown { .. } => anyhow::bail!("not handled here"),
        })
    }

    fn status(&self) -> StatusView {
        let (mut tunnels_established, mut sessions_established) = (0, 0);
        for (_, t) in self.engine.tunnel_summaries() {
            tunnels_established += usize::from(t.state == TunnelStatus::Established);
            sessions_established += t.established;
        }
        StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            tunnels_configured: self.reg.len(),
            tunnels_established,
            sessions_established,
            dataplane: self.dp.as_ref().map(|d| d.dir().display().to_string()),
            startup: self.startup.steps(),
        }
    }

    /// The tunnels (`only`: the one of that name) with their sessions; the
    /// installed ones go into `installed`, their data-plane views to be
    /// read off the event loop ([`Fill`]).
    fn tunnel_views(&self, only: Option<&str>, installed: &mut HashSet<u32>) -> Vec<TunnelView> {
        self.reg
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, slot)| {
                let info: Option<TunnelInfo> = slot.id().and_then(|id| self.engine.tunnel_info(id));
                let mut sessions: Vec<SessionView> = Vec::new();
                if let Some(i) = &info {
                    for s in &i.sessions {
                        let rid = String::from_utf8_lossy(&s.remote_end_id).into_owned();
                        let cfg = slot.cfg.sessions.iter().find(|c| c.remote_end_id() == rid);
                        let local = self.reg.session(i.local_id, s.local_id);
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
                            dataplane: None,
                        });
                        if self.dp.is_some() && local.is_some_and(|l| l.installed) {
                            installed.insert(s.local_id);
                        }
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
                    encapsulation: slot.cfg.encapsulation,
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

    /// For `GET /metrics`: names, states and counts from the engine and the
    /// registry, no data-plane read (a syscall per session, which the
    /// metrics task does on its own thread).
    fn metrics_view(&self) -> MetricsView {
        let tunnels = self
            .reg
            .iter()
            .map(|(name, slot)| {
                let info = slot.id().and_then(|id| self.engine.tunnel_info(id));
                let (local, peer) =
                    (info.as_ref().and_then(|i| i.local_failover), info.as_ref().and_then(|i| i.peer_failover));
                let mut m = TunnelMetrics {
                    name: name.clone(),
                    state: info.as_ref().map_or("down", |i| i.state.as_str()).into(),
                    control_recovery: local.is_some_and(|l| l.control) && peer.is_some_and(|p| p.control),
                    sessions_configured: slot.cfg.sessions.len(),
                    stale_sessions: slot.id().map_or(0, |id| self.engine.stale_sessions(id).len()),
                    ..TunnelMetrics::default()
                };
                if let Some(i) = &info {
                    m.unacknowledged = i.unacknowledged;
                    m.messages_received = i.channel.received;
                    m.messages_sent = i.channel.sent;
                    m.retransmissions = i.channel.retransmitted;
                    m.auth_failures = i.auth_failures;
                    m.sessions_established =
                        i.sessions.iter().filter(|s| s.state == SessionStatus::Established).count();
                    m.unconfirmed_sessions = i.sessions.iter().filter(|s| s.unconfirmed).count();
                    m.sessions = i
                        .sessions
                        .iter()
                        .filter_map(|s| {
                            let l = self.reg.session(i.local_id, s.local_id).filter(|l| l.installed)?;
                            Some(SessionMetrics { name: l.name.clone(), local_id: s.local_id })
                        })
                        .collect();
                }
                m
            })
            .collect();
        MetricsView {
            control: self.control_stats(),
            dataplane: self.dp.as_ref().map(|d| d.dir().display().to_string()),
            tunnels,
        }
    }

    fn control_stats(&self) -> ControlStats {
        let c = self.engine.stats();
        ControlStats {
            datagrams: c.datagrams,
            malformed: c.malformed,
            unknown_tunnel: c.unknown_tunnel,
            auth_failures: c.auth_failures,
            refused: c.refused,
            stopccn_sent: c.stopccn_sent,
            cdn_sent: c.cdn_sent,
            ignored: c.ignored,
        }
    }

    fn stats(&self, installed: &mut HashSet<u32>) -> anyhow::Result<StatsView> {
        let dataplane_global = match &self.dp {
            Some(dp) => dp.global_stats()?,
            None => Vec::new(),
        };
        Ok(StatsView {
            control: self.control_stats(),
            dataplane_global,
            sessions: self
                .tunnel_views(None, installed)
                .into_iter()
                .flat_map(|t| t.sessions)
                .filter(|s| s.local_id.is_some())
                .collect(),
        })
    }

    fn failover_views(&self) -> Vec<FailoverView> {
        self.reg
            .iter()
            .map(|(name, slot)| {
                let info = slot.id().and_then(|id| self.engine.tunnel_summary(id));
                let local = info.as_ref().and_then(|i| i.local_failover);
                let peer = info.as_ref().and_then(|i| i.peer_failover);
                FailoverView {
                    tunnel: name.clone(),
                    state: info.as_ref().map_or("down", |i| i.state.as_str()).into(),
                    control_recovery: local.is_some_and(|l| l.control) && peer.is_some_and(|p| p.control),
                    data_recovery: local.is_some_and(|l| l.data) && peer.is_some_and(|p| p.data),
                    local: failover_bits(local),
                    peer: failover_bits(peer),
                    stale_sessions: slot.id().map(|id| self.engine.stale_sessions(id)).unwrap_or_default(),
                    unconfirmed_sessions: info.as_ref().map_or(0, |i| i.unconfirmed),
                    last_event: slot.last_event.clone(),
                }
            })
            .collect()
    }
}
