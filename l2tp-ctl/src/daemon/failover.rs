//! RFC 4951 orchestration in the daemon: recovery of the previous run's
//! tunnels at start-up, the rebuild of a data plane lost under a running
//! daemon, and FSQ queries on demand. The protocol itself is the engine's.

use std::collections::HashSet;

use l2tp_proto::engine::{TunnelId, FSQ_BATCH};
use tracing::{error, info, warn};

use super::{
    dataplane::Wire,
    persist,
    registry::{SessionSlot, TunnelSlot},
    Daemon,
};
use crate::{
    config::TunnelConfig,
    dataplane::Role,
    store::{SessionRecord, TunnelRecord},
};

impl Daemon {
    /// State left by an earlier run (a crash, SIGKILL or `stop --keep`):
    /// every tunnel in the store whose failover capability both ends
    /// advertised is recovered (RFC 4951 3.2); the others are cleared (and
    /// brought up anew if configured). When the data plane did not survive,
    /// the recovered sessions are put back into it from the store before
    /// recovery starts. Data-plane sessions the store does not know are
    /// removed.
    pub(super) fn previous_run(&mut self) -> anyhow::Result<()> {
        let now = Self::now();
        let mut keep: HashSet<u32> = HashSet::new();
        for rec in self.store.tunnels()? {
            let sessions = self.store.sessions(rec.local_id)?;
            let slot = self
                .reg
                .get(&rec.name)
                .filter(|s| s.cfg.peer == rec.peer.ip() && s.cfg.version == rec.version && s.id().is_none());
            let recoverable = rec.local_failover.is_some_and(|f| f.control)
                && rec.peer_failover.is_some_and(|f| f.control)
                && slot.is_some();
            let Some(slot) = slot.filter(|_| recoverable) else {
                info!(tunnel = %rec.name, id = rec.local_id, "tunnel of the previous run is not recoverable: cleared");
                self.store.remove_tunnel(rec.local_id);
                continue;
            };
            let params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
            let mut restored = Vec::new();
            let mut slots = Vec::new();
            let mut missing = Vec::new();
            let by_end = slot.cfg.sessions_by_end();
            for (k, s) in sessions.iter().enumerate() {
                let configured = by_end.contains_key(s.remote_end_id.as_str());
                let mut installed = false;
                if configured && s.interface.is_some() {
                    if let Some(dp) = &self.dp {
                        installed = dp.has(s.local_id);
                        if !installed {
                            missing.push(k);
                        }
                    }
                }
                restored.push(persist::restored_session(s));
                slots.push((
                    s.local_id,
                    SessionSlot { name: s.name.clone(), interface: s.interface.clone(), installed },
                ));
            }
            // The data plane did not survive: rebuilt from the store before
            // recovery starts, the tunnel's sessions in one batch (with a
            // copy of the tunnel's configuration, taken only then).
            if let Some(tcfg) = (!missing.is_empty()).then(|| slot.cfg.clone()) {
                let records: Vec<&SessionRecord> = missing.iter().map(|k| &sessions[*k]).collect();
                for (k, r) in missing.iter().zip(self.reinstall_many(&tcfg, &rec, &records, false)) {
                    match r {
                        Ok(()) => slots[*k].1.installed = true,
                        Err(e) => warn!(tunnel = %rec.name, session = %sessions[*k].name, "not reinstalled: {e:#}"),
                    }
                }
            }
            match self.engine.recover_tunnel(now, persist::restored_tunnel(&rec, params, restored)) {
                Ok(_) => {
                    keep.extend(slots.iter().map(|(sid, _)| *sid));
                    self.reg.bind(&rec.name, rec.local_id);
                    for (sid, slot) in slots {
                        self.reg.insert_session(rec.local_id, sid, slot);
                    }
                }
                Err(e) => {
                    warn!(tunnel = %rec.name, "cannot recover: {e}");
                    if let Some(dp) = &mut self.dp {
                        dp.uninstall(slots.iter().map(|(sid, s)| (*sid, s)));
                    }
                    self.store.remove_tunnel(rec.local_id);
                }
            }
        }
        // Orphans: in the data plane, not in a recovered tunnel.
        if let Some(dp) = &mut self.dp {
            dp.remove_unless(|sid| keep.contains(&sid))?;
        }
        Ok(())
    }

    /// Reinstalls a session of the store in the data plane.
    /// `standby`: installed inactive (a hot standby's warm session).
    pub(super) fn reinstall(
        &mut self,
        tcfg: &TunnelConfig,
        rec: &TunnelRecord,
        s: &SessionRecord,
        standby: bool,
    ) -> anyhow::Result<()> {
        self.reinstall_many(tcfg, rec, &[s], standby).pop().unwrap_or_else(|| Err(anyhow::anyhow!("not installed")))
    }

    /// [`Self::reinstall`] for many sessions of one tunnel, by batch; one
    /// result per session, in order.
    pub(super) fn reinstall_many(
        &mut self,
        tcfg: &TunnelConfig,
        rec: &TunnelRecord,
        sessions: &[&SessionRecord],
        standby: bool,
    ) -> Vec<anyhow::Result<()>> {
        if sessions.is_empty() {
            return Vec::new();
        }
        let (Some(uplink), Some(dp)) = (self.cfg.uplink_of(tcfg), &mut self.dp) else {
            return sessions.iter().map(|_| Err(anyhow::anyhow!("no uplink or no data plane"))).collect();
        };
        let mut results: Vec<anyhow::Result<()>> = Vec::with_capacity(sessions.len());
        let (mut items, mut at) = (Vec::new(), Vec::new());
        // A hash lookup per session (a scan each was quadratic in sessions
        // per tunnel).
        let by_end = tcfg.sessions_by_end();
        for (i, s) in sessions.iter().enumerate() {
            match by_end.get(s.remote_end_id.as_str()).copied() {
                Some(c) => {
                    items.push((
                        c,
                        Wire {
                            peer: rec.peer,
                            transport: tcfg.transport(),
                            local_session_id: s.local_id,
                            peer_session_id: s.peer_id,
                            rx_cookie: &s.rx_cookie,
                            tx_cookie: &s.tx_cookie,
                            sublayer: s.sublayer,
                            sequencing: s.sequencing,
                        },
                    ));
                    at.push(i);
                    results.push(Ok(()));
                }
                None => results.push(Err(anyhow::anyhow!("no longer configured"))),
            }
        }
        for (i, r) in at.into_iter().zip(dp.install_many(uplink, tcfg, &items, standby)) {
            if let Err(e) = r {
                results[i] = Err(e);
            }
        }
        results
    }

    /// The resync run length of a tunnel's sessions (F-DC-3 `n`).
    pub(super) fn resync_n(&self, tunnel: Option<&str>) -> u16 {
        tunnel
            .and_then(|n| self.reg.get(n))
            .map_or(crate::config::Failover::default().resync_n, |s| s.cfg.failover.resync_n)
    }

    /// RFC 4951 data channel failure while the control plane runs: the
    /// pinned data plane is gone (pins removed, programs detached). It is
    /// rebuilt from the store, Ns restarting at 0 (F-DC-1) and Nr
    /// following the peer after n packets (F-DC-3); every session is then
    /// queried with FSQ (F-DC-5), which also tells the peer to resync to
    /// our restarted Ns.
    pub(super) fn check_dataplane(&mut self) {
        let Some(dp) = &mut self.dp else { return };
        if !dp.is_lost() {
            return;
        }
        warn!(dir = %dp.dir().display(), "the pinned data plane is gone: rebuilding it (RFC 4951 data channel failure)");
        // The rebuild reinstalls what the store holds: the sessions that
        // wait for their write go in first.
        self.persist_pending();
        let Some(dp) = &mut self.dp else { return };
        if let Err(e) = dp.recreate() {
            return error!("rebuilding the data plane: {e:#}");
        }
        let configs: Vec<TunnelConfig> = self.reg.iter().map(|(_, s)| s.cfg.clone()).collect();
        for t in configs.iter().filter(|t| t.version == 3 && !t.sessions.is_empty()) {
            if let Some(u) = self.cfg.uplink_of(t) {
                if let Err(e) = dp.ensure_attached(u, Role::Uplink) {
                    error!(tunnel = %t.name, "uplink: {e:#}");
                }
            }
            for s in &t.sessions {
                if let Err(e) = dp.ensure_attached(&s.interface, Role::Attachment) {
                    error!(tunnel = %t.name, session = %s.name, "{e:#}");
                }
            }
        }
        if !self.serving() {
            // A standby's data plane holds the warm copy, nothing else.
            self.warm_rebuild();
            return info!("standby: warm data plane rebuilt from the replicated store");
        }
        let records = match self.store.tunnels() {
            Ok(r) => r,
            Err(e) => return error!("data plane rebuilt empty: the state store cannot be read: {e}"),
        };
        let mut rebuilt = 0;
        let mut queries: Vec<(TunnelId, Vec<u32>)> = Vec::new();
        for rec in records {
            let Some(tcfg) =
                self.reg.get(&rec.name).filter(|s| s.id() == Some(rec.local_id)).map(|s: &TunnelSlot| s.cfg.clone())
            else {
                continue;
            };
            let stored = match self.store.sessions(rec.local_id) {
                Ok(s) => s,
                Err(e) => {
                    error!(tunnel = %rec.name, "sessions not rebuilt: the state store cannot be read: {e}");
                    continue;
                }
            };
            let (mut sids, mut installed) = (Vec::new(), Vec::new());
            for s in &stored {
                let Some(slot) = self.reg.session(rec.local_id, s.local_id) else { continue };
                sids.push(s.local_id);
                if slot.installed {
                    installed.push(s);
                }
            }
            for (s, r) in installed.iter().zip(self.reinstall_many(&tcfg, &rec, &installed, false)) {
                match r {
                    Ok(()) => rebuilt += 1,
                    Err(e) => error!(tunnel = %rec.name, session = %s.name, "not reinstalled: {e:#}"),
                }
            }
            let sequenced: Vec<u32> = installed.iter().filter(|s| s.sequencing).map(|s| s.local_id).collect();
            if let Some(dp) = &mut self.dp {
                dp.enter_resync(&sequenced, tcfg.failover.resync_n);
            }
            if !sids.is_empty() {
                queries.push((rec.local_id, sids));
            }
        }
        for (id, sids) in queries {
            if let Err(e) = self.query_sessions(id, &sids) {
                warn!(id, "FSQ after the rebuild: {e}");
            }
            self.emit(
                "dataplane-rebuilt",
                self.reg.name_of(id),
                Some(id),
                None,
                "data plane lost and rebuilt from the store; sessions queried with FSQ (RFC 4951 F-DC-5)".into(),
            );
        }
        info!(sessions = rebuilt, "data plane rebuilt");
    }

    /// FSQ for `sids` of tunnel `id`, the engine's [`FSQ_BATCH`] sessions
    /// per message.
    fn query_sessions(&mut self, id: TunnelId, sids: &[u32]) -> anyhow::Result<()> {
        let now = Self::now();
        for chunk in sids.chunks(FSQ_BATCH) {
            self.engine.query_sessions(now, id, chunk).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    /// RFC 4951 F-SS-2/F-SS-3 on demand: FSQ for the named sessions of a
    /// tunnel (all of them when none is named); the answers show as
    /// session-confirmed, session-cleared and session-stale events.
    pub(super) fn query(&mut self, tunnel: &str, names: &[String]) -> anyhow::Result<String> {
        let id = self
            .reg
            .get(tunnel)
            .ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?
            .id()
            .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} is not up"))?;
        let mine: Vec<(u32, &str)> = self.reg.sessions_of(id).map(|(sid, s)| (sid, s.name.as_str())).collect();
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
        self.query_sessions(id, &sids)?;
        Ok(format!("queried {} session(s) of {tunnel:?}; the answers come as events", sids.len()))
    }
}
