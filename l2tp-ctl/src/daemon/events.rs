//! What the engine reports: data-plane updates (sessions installed,
//! persisted, removed) and events (logged, recorded on the tunnel, and
//! streamed to `events` clients).

use std::time::Duration;

use l2tp_proto::{
    engine::{DataplaneUpdate, DownReason, Event, SessionUp},
    wire::Version,
};
use tracing::{debug, error, info, warn};

use super::{
    dataplane::Wire,
    persist::{self, UpSession},
    registry::SessionSlot,
    Burst, Daemon,
};
use crate::{api::EventView, store};

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

impl Daemon {
    /// Group commit: the sessions that came up are written together once
    /// the first of them has waited `global.commit_delay_ms` (0: at every
    /// round). Whether it wrote (or closed) any.
    pub(super) fn persist_due(&mut self) -> bool {
        if !self.reg.has_unstored() {
            self.commit_at = None;
            return false;
        }
        let now = Self::now();
        let at = *self.commit_at.get_or_insert_with(|| now + Duration::from_millis(self.cfg.global.commit_delay_ms));
        if now < at {
            return false;
        }
        self.persist_pending();
        true
    }

    /// Writes the sessions that came up and are not stored yet, in one
    /// store transaction (one fsync for a burst of sessions), then reports
    /// them up; a session that cannot be persisted is not up: it is removed
    /// from the data plane and closed. Called before anything that shows
    /// sessions or lets them go (an API answer, a stop).
    pub(super) fn persist_pending(&mut self) {
        self.commit_at = None;
        if !self.reg.has_unstored() {
            return;
        }
        let due = self.reg.take_unstored();
        let records: Vec<&store::SessionRecord> = due.iter().map(|u| &u.rec).collect();
        match self.store.put_sessions(&records) {
            Ok(()) => {
                for u in due {
                    if let Some(peer) = u.up_event {
                        self.session_up_event(u.rec.tunnel_id, u.rec.local_id, peer);
                    }
                }
            }
            Err(e) => {
                error!("{} session(s) not persisted, closing them: {e}", due.len());
                for u in due {
                    let (tunnel, sid) = (u.rec.tunnel_id, u.rec.local_id);
                    let (gone, _) = self.reg.remove_session(tunnel, sid);
                    if let (Some(dp), Some(slot)) = (&mut self.dp, &gone) {
                        dp.uninstall([(sid, slot)]);
                    }
                    self.close_session(tunnel, sid);
                }
            }
        }
    }

    /// `session-up` for a session of the registry.
    fn session_up_event(&mut self, tunnel: u32, sid: u32, peer_sid: u32) {
        if let Some(s) = self.reg.session(tunnel, sid) {
            self.emit_session_up(tunnel, &s.name, sid, peer_sid);
            *self.unlogged.entry((tunnel, Burst::Up)).or_default() += 1;
        }
    }

    /// Logged at debug; the caller counts it for `log_bursts`.
    fn emit_session_up(&self, tunnel: u32, sname: &str, sid: u32, peer_sid: u32) {
        self.publish(
            false,
            "session-up",
            self.tunnel_name_ref(tunnel),
            Some(tunnel),
            Some((sname, sid)),
            format!("peer session {peer_sid}"),
        );
    }

    /// The engine's data-plane updates of one round, in order: the sessions
    /// that came up are installed together (by batch: a burst of ICCNs, or
    /// of ICRPs, is a few map writes instead of five per session), before
    /// any later removal.
    pub(super) fn on_dataplane(&mut self, updates: Vec<DataplaneUpdate>) {
        let mut ups: Vec<SessionUp> = Vec::new();
        for u in updates {
            match u {
                DataplaneUpdate::SessionUp(up) => ups.push(up),
                DataplaneUpdate::SessionDown { tunnel, local_session_id } => {
                    self.sessions_up(std::mem::take(&mut ups));
                    self.session_gone(tunnel, local_session_id);
                }
            }
        }
        self.sessions_up(ups);
    }

    /// Sessions up in the engine: installed in the data plane (each
    /// tunnel's by batch), then staged for the store; one the data plane
    /// refuses is reported and closed.
    fn sessions_up(&mut self, ups: Vec<SessionUp>) {
        let mut i = 0;
        while i < ups.len() {
            let tunnel = ups[i].tunnel;
            let n = ups[i..].iter().take_while(|u| u.tunnel == tunnel).count();
            self.tunnel_sessions_up(&ups[i..i + n]);
            i += n;
        }
    }

    /// [`Self::sessions_up`] for sessions of one tunnel.
    fn tunnel_sessions_up(&mut self, ups: &[SessionUp]) {
        let Some(tunnel) = ups.first().map(|u| u.tunnel) else { return };
        let Some(tname) = self.reg.name_of(tunnel).map(str::to_owned) else { return };
        let Some(slot) = self.reg.get(&tname) else { return };
        // Each session's configuration and name, and whether it goes to the
        // data plane (an L2TPv3 pseudowire of ours, with a data plane).
        let mut named = Vec::with_capacity(ups.len());
        for u in ups {
            let rid = String::from_utf8_lossy(&u.remote_end_id).into_owned();
            let scfg = slot.cfg.sessions.iter().find(|s| s.remote_end_id() == rid).cloned();
            let name = scfg.as_ref().map(|s| s.name.clone()).unwrap_or_else(|| format!("{}", u.local_session_id));
            named.push((u, rid, scfg, name));
        }
        let mut results: Vec<Option<anyhow::Result<()>>> = (0..ups.len()).map(|_| None).collect();
        if let Some(dp) = self.dp.as_mut() {
            let mut batch = Vec::new();
            let mut at = Vec::new();
            for (k, (u, _, scfg, _)) in named.iter().enumerate() {
                let (Version::V3, Some(s)) = (u.version, scfg) else { continue };
                if u.rx_sublayer != u.tx_sublayer || u.rx_sequencing != u.tx_sequencing {
                    results[k] = Some(Err(anyhow::anyhow!(
                        "asymmetric sublayer/sequencing (peer {}/{}, us {}/{}): the data plane needs both ends to agree",
                        u.tx_sublayer,
                        u.tx_sequencing,
                        u.rx_sublayer,
                        u.rx_sequencing
                    )));
                    continue;
                }
                let wire = Wire {
                    peer: u.peer,
                    transport: u.transport,
                    local_session_id: u.local_session_id,
                    peer_session_id: u.peer_session_id,
                    rx_cookie: &u.rx_cookie,
                    tx_cookie: &u.tx_cookie,
                    sublayer: u.rx_sublayer,
                    sequencing: u.rx_sequencing,
                };
                batch.push((s, wire));
                at.push(k);
            }
            if !batch.is_empty() {
                match self.cfg.uplink_of(&slot.cfg) {
                    None => {
                        for k in at {
                            results[k] = Some(Err(anyhow::anyhow!("no uplink")));
                        }
                    }
                    Some(uplink) => {
                        for (k, r) in at.into_iter().zip(dp.install_many(uplink, &slot.cfg, &batch, false)) {
                            results[k] = Some(r);
                        }
                    }
                }
            }
        }
        for ((u, rid, scfg, name), r) in named.into_iter().zip(results) {
            let installed = match r {
                None => false,
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    self.emit(
                        "session-failed",
                        Some(&tname),
                        Some(tunnel),
                        Some((&name, u.local_session_id)),
                        format!("data plane: {e:#}"),
                    );
                    self.close_session(tunnel, u.local_session_id);
                    continue;
                }
            };
            let rec = persist::session_record(
                UpSession {
                    tunnel,
                    name: name.clone(),
                    local_id: u.local_session_id,
                    peer_id: u.peer_session_id,
                    remote_end_id: rid,
                    pw_type: u.pw_type,
                    rx_cookie: u.rx_cookie.clone(),
                    tx_cookie: u.tx_cookie.clone(),
                    sublayer: u.rx_sublayer,
                    sequencing: u.rx_sequencing,
                },
                scfg.as_ref(),
            );
            // Stored in one transaction with the others that come up
            // within `commit_delay_ms` (`persist_due`), before any event
            // reports it up.
            self.reg.stage(rec, SessionSlot { name, interface: scfg.map(|s| s.interface), installed });
        }
    }

    /// A session is down: out of the registry, the data plane and the
    /// store; its tunnel may want it again. Returns its name.
    fn session_gone(&mut self, tunnel: u32, sid: u32) -> Option<String> {
        let (gone, held) = self.reg.remove_session(tunnel, sid);
        if let (Some(slot), Some(peer)) = (&gone, held) {
            // Down before its store write (which it no longer needs): what
            // is reported down was reported up first.
            self.emit_session_up(tunnel, &slot.name, sid, peer);
            *self.unlogged.entry((tunnel, Burst::Up)).or_default() += 1;
        }
        if let Some(dp) = &mut self.dp {
            dp.uninstall(gone.iter().map(|s| (sid, s)));
        }
        self.store.remove_session(tunnel, sid);
        self.reg.want_sessions(tunnel);
        gone.map(|s| s.name)
    }

    /// Records `what` as the last event of the tunnel `tunnel` is bound to.
    fn note(&mut self, tunnel: u32, what: &str) {
        if let Some(s) = self.reg.slot_of(tunnel) {
            s.last_event = Some(what.into());
        }
    }

    /// The tunnel's name: the configured tunnel it is bound to, or the one
    /// it was when we closed it.
    fn tunnel_name(&self, id: u32) -> Option<String> {
        self.tunnel_name_ref(id).map(str::to_owned)
    }

    /// [`Self::tunnel_name`], borrowed.
    pub(super) fn tunnel_name_ref(&self, id: u32) -> Option<&str> {
        self.reg.name_of(id).or_else(|| self.reg.departed_tunnel(id))
    }

    /// The session's name (or the one it had), else its ID; borrowed when
    /// it has a name (a recovery emits one event per session).
    fn session_label_ref(&self, tunnel: u32, sid: u32) -> std::borrow::Cow<'_, str> {
        let name = self.reg.session(tunnel, sid).map(|s| s.name.as_str());
        match name.or_else(|| self.reg.departed_session(tunnel, sid)) {
            Some(n) => n.into(),
            None => sid.to_string().into(),
        }
    }

    fn session_label(&self, tunnel: u32, sid: u32) -> String {
        self.session_label_ref(tunnel, sid).into_owned()
    }

    pub(super) fn on_event(&mut self, e: Event) {
        match e {
            Event::TunnelUp { tunnel, peer, peer_host_name, peer_failover } => {
                let Some(info) = self.engine.tunnel_info(tunnel) else { return };
                // Responder: the tunnel is the configured one for this peer.
                let name = match self.tunnel_name(tunnel) {
                    Some(n) => n,
                    None => match self.reg.find_peer(peer.ip(), info.version, info.transport) {
                        Some(n) => n,
                        None => {
                            warn!(%peer, "tunnel from an unconfigured peer; closing");
                            self.close_tunnel(tunnel);
                            return;
                        }
                    },
                };
                let Some(slot) = self.reg.get(&name) else { return };
                // The peer opened one while ours was pending (and won), or
                // the peer restarted without failover and opened a new one:
                // one tunnel per configured peer, so the old one goes
                // (StopCCN; its sessions leave the data plane before the
                // new ones ask for the same circuits).
                let superseded = slot.id().filter(|o| *o != tunnel);
                let stale = superseded.filter(|o| self.engine.tunnel_info(*o).is_some_and(|i| !i.closing));
                self.reg.bind(&name, tunnel);
                let rec = persist::tunnel_record(&name, &info, peer, &peer_host_name, peer_failover);
                if let Err(e) = self.store.put_tunnel(&rec) {
                    error!(tunnel = %name, "not persisted, closing: {e}");
                    self.close_tunnel(tunnel);
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
                    self.retire_tunnel(old, Some(name.clone()));
                }
                if info.initiator {
                    self.reg.want_sessions(tunnel);
                    self.open_missing_sessions();
                }
            }
            Event::TunnelDown { tunnel, reason } => {
                // Bound to a configured tunnel, or one we closed (whose
                // name may be another tunnel's by now: its slot is not
                // touched).
                let bound = self.reg.name_of(tunnel).map(str::to_owned);
                let name = self.tunnel_name(tunnel);
                self.forget_tunnel(tunnel);
                self.reg.departed_gone(tunnel);
                if let Some(slot) = bound.as_ref().and_then(|n| self.reg.get_mut(n)) {
                    // `forget_tunnel` unbound it if it was this tunnel.
                    if slot.id().is_none() && slot.cfg.initiate {
                        slot.retry_at = Some(Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval));
                    }
                    slot.last_event = Some(format!("down: {}", reason_text(&reason)));
                }
                self.emit("tunnel-down", name.as_deref(), Some(tunnel), None, reason_text(&reason));
            }
            Event::SessionUp { tunnel, local_session_id, peer_session_id } => {
                // Reported when stored (`persist_pending`).
                if !self.reg.hold_up_event(tunnel, local_session_id, peer_session_id) {
                    self.session_up_event(tunnel, local_session_id, peer_session_id);
                }
            }
            Event::SessionDown { tunnel, local_session_id, reason } => {
                let name = self.tunnel_name(tunnel);
                let sname = self
                    .session_gone(tunnel, local_session_id)
                    .unwrap_or_else(|| self.session_label(tunnel, local_session_id));
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
                self.note(tunnel, "failure detected");
                self.emit(
                    "failure-detected",
                    self.tunnel_name(tunnel).as_deref(),
                    Some(tunnel),
                    None,
                    format!("peer silent; waiting its Recovery Time of {} ms", recovery_time.as_millis()),
                );
            }
            Event::RecoveryStarted { tunnel, recovery_tunnel } => {
                self.note(tunnel, "recovery started");
                self.emit(
                    "recovery-started",
                    self.tunnel_name(tunnel).as_deref(),
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
                let sids: Vec<u32> = sessions.iter().filter(|s| s.sequencing).map(|s| s.local_session_id).collect();
                let reset = self.dp.as_mut().map_or(0, |dp| dp.enter_resync(&sids, n));
                self.note(tunnel, "recovered");
                self.reg.want_sessions(tunnel);
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
                self.note(tunnel, "resumed");
                self.reg.want_sessions(tunnel);
                let name = self.tunnel_name(tunnel);
                self.emit("tunnel-resumed", name.as_deref(), Some(tunnel), None, "peer answered again".into());
            }
            Event::SessionsQueried { tunnel, sequenced, .. } => {
                // F-DC-5/F-DC-3: the peer's data channel may have restarted
                // (its data plane was rebuilt): our Nr follows its Ns after
                // n packets in sequence.
                let n = self.resync_n(self.tunnel_name(tunnel).as_deref());
                if let Some(dp) = &mut self.dp {
                    dp.enter_resync(&sequenced, n);
                }
            }
            Event::SessionStale { tunnel, local_session_id } => {
                self.emit(
                    "session-stale",
                    self.tunnel_name(tunnel).as_deref(),
                    Some(tunnel),
                    Some((&self.session_label(tunnel, local_session_id), local_session_id)),
                    "the peer pairs it with another session (RFC 4951 Appendix C); queried with FSQ".into(),
                );
            }
            Event::SessionConfirmed { tunnel, local_session_id } => {
                // Logged per tunnel (`log_bursts`), each at debug.
                *self.unlogged.entry((tunnel, Burst::Confirmed)).or_default() += 1;
                self.publish(
                    false,
                    "session-confirmed",
                    self.tunnel_name_ref(tunnel),
                    Some(tunnel),
                    Some((&self.session_label_ref(tunnel, local_session_id), local_session_id)),
                    "confirmed by FSR".into(),
                );
            }
            Event::LinkInfo { tunnel, local_session_id, circuit_active } => {
                self.emit(
                    "link-info",
                    self.tunnel_name(tunnel).as_deref(),
                    Some(tunnel),
                    Some((&local_session_id.to_string(), local_session_id)),
                    format!("circuit active: {circuit_active:?}"),
                );
            }
            Event::WanError { tunnel, local_session_id } => {
                self.emit(
                    "wan-error",
                    self.tunnel_name(tunnel).as_deref(),
                    Some(tunnel),
                    Some((&local_session_id.to_string(), local_session_id)),
                    "peer reported circuit errors".into(),
                );
            }
            Event::SessionToReplicate { tunnel, session } => self.replicate_before_establishing(tunnel, session),
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
}
