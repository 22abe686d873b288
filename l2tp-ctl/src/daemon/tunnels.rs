//! Tunnels and sessions as the operator configures them: added from the
//! file or the API, connected, deleted, reloaded; and the sessions an
//! initiator requests once its tunnel is up.

use std::{collections::HashSet, time::Duration};

use l2tp_proto::engine::{TunnelId, TunnelStatus};
use tracing::{debug, warn};

use super::{registry::TunnelSlot, Daemon};
use crate::{
    config::{Config, SessionConfig, TunnelConfig},
    dataplane::{self, Role},
};

impl Daemon {
    /// Adds a tunnel (config or API) and starts it.
    pub(super) fn add_tunnel(&mut self, t: TunnelConfig, from_api: bool, connect: bool) -> anyhow::Result<()> {
        self.add_tunnel_among(t, from_api, connect, None)
    }

    /// Adds the tunnels of a configuration at start-up, the circuits
    /// already taken gathered once and grown tunnel by tunnel (gathering
    /// them for each tunnel was quadratic in tunnels x sessions).
    pub(super) fn add_tunnels(&mut self, tunnels: Vec<TunnelConfig>, connect: bool) -> anyhow::Result<()> {
        let mut taken: Taken = self.reg.circuits().into_iter().collect();
        for t in tunnels {
            let name = t.name.clone();
            self.add_tunnel_among(t, false, connect, Some(&taken))?;
            for s in self.reg.get(&name).into_iter().flat_map(|slot| &slot.cfg.sessions) {
                let (i, v) = s.circuit();
                taken.insert(i, v);
            }
        }
        Ok(())
    }

    /// [`Self::add_tunnel`]; `taken`: the circuits of the other tunnels,
    /// if the caller has them.
    fn add_tunnel_among(
        &mut self,
        t: TunnelConfig,
        from_api: bool,
        connect: bool,
        taken: Option<&Taken>,
    ) -> anyhow::Result<()> {
        let key = format!("tunnel {:?}", t.name);
        t.check(&key).map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        t.check_timers(&key, &self.cfg.global).map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        if self.reg.contains(&t.name) {
            anyhow::bail!("a tunnel named {:?} exists", t.name);
        }
        if self
            .reg
            .iter()
            .any(|(_, s)| s.cfg.peer == t.peer && s.cfg.version == t.version && s.cfg.encapsulation == t.encapsulation)
        {
            anyhow::bail!("another L2TPv{} tunnel over {:?} already goes to {}", t.version, t.encapsulation, t.peer);
        }
        let uplink = self.cfg.uplink_of(&t).map(str::to_owned);
        if let Some(dp) = self.dp.as_mut().filter(|_| t.version == 3 && !t.sessions.is_empty()) {
            let Some(u) = &uplink else { anyhow::bail!("tunnel {:?}: pseudowires need an uplink", t.name) };
            dp.ensure_attached(u, Role::Uplink)?;
            // Circuits of the other tunnels, gathered once (a check per
            // session against every session would be quadratic).
            let gathered;
            let taken = match taken {
                Some(t) => t,
                None => {
                    gathered = self.reg.circuits().into_iter().collect();
                    &gathered
                }
            };
            let mut attached = HashSet::new();
            for s in &t.sessions {
                let (iface, vlan) = s.circuit();
                if taken.contains(iface, vlan) {
                    anyhow::bail!("{} already carries a session of another tunnel", s.circuit_name());
                }
                if attached.insert(s.interface.as_str()) {
                    dp.ensure_attached(&s.interface, Role::Attachment)?;
                }
            }
        }
        if from_api {
            for w in t.warnings(&key) {
                warn!("{w}");
            }
        }
        let secret = t.load_secret().map_err(|(k, m)| anyhow::anyhow!("tunnel {:?}: {k}: {m}", t.name))?;
        let params = t.tunnel_params(secret.as_ref(), &self.cfg.global);
        self.engine.set_peer(t.peer, params);
        let name = t.name.clone();
        let initiate = t.initiate;
        self.reg.insert(TunnelSlot::new(t, secret, from_api));
        if initiate && connect {
            self.connect(&name);
        }
        Ok(())
    }

    pub(super) fn connect(&mut self, name: &str) {
        // A hot standby opens nothing: the active holds the tunnels.
        if !self.serving() {
            return;
        }
        let Some(slot) = self.reg.get(name) else { return };
        let params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
        match self.engine.connect(Self::now(), slot.cfg.peer_addr(), params) {
            Ok(id) => {
                self.reg.bind(name, id);
                debug!(tunnel = name, id, "connecting");
            }
            Err(e) => {
                let retry = Self::now() + Duration::from_secs(self.cfg.global.reconnect_interval);
                if let Some(slot) = self.reg.get_mut(name) {
                    slot.retry_at = Some(retry);
                }
                warn!(tunnel = name, "cannot connect: {e}");
            }
        }
    }

    /// Tears a tunnel down (StopCCN) and forgets it.
    pub(super) fn delete_tunnel(&mut self, name: &str) -> anyhow::Result<()> {
        let slot = self.reg.remove(name).ok_or_else(|| anyhow::anyhow!("no tunnel named {name:?}"))?;
        self.engine.remove_peer(slot.cfg.peer, slot.cfg.version(), slot.cfg.transport());
        if let Some(id) = slot.id() {
            self.retire_tunnel(id, Some(name.to_owned()));
        }
        self.emit("tunnel-deleted", Some(name), slot.id(), None, "deleted".into());
        Ok(())
    }

    /// Closes (StopCCN) and forgets a tunnel the daemon no longer wants,
    /// known as `name` if it has one; its last events (its sessions' and
    /// its own down) still carry its name and its sessions' names.
    pub(super) fn retire_tunnel(&mut self, id: TunnelId, name: Option<String>) {
        if let Some(name) = name {
            self.reg.depart(id, name);
        }
        self.forget_tunnel(id);
        self.close_tunnel(id);
    }

    /// Removes a tunnel's sessions from the data plane and the store, and
    /// its ID from the registry.
    pub(super) fn forget_tunnel(&mut self, id: TunnelId) {
        // Its sessions that wait for their write are stored (and reported
        // up) first, so that each one's session-down follows its session-up;
        // the removal below takes them out again.
        self.persist_pending();
        let gone = self.reg.take_sessions(id);
        if let Some(dp) = &mut self.dp {
            dp.uninstall(gone.iter().map(|(sid, s)| (*sid, s)));
        }
        self.store.remove_tunnel(id);
        self.reg.unbind(id);
    }

    /// The pseudowires of a tunnel changed: the engine accepts exactly
    /// those from the peer from now on.
    fn pseudowires_changed(&mut self, tunnel: &str) {
        let Some(slot) = self.reg.get(tunnel) else { return };
        let pws: Vec<_> = slot.cfg.sessions.iter().map(SessionConfig::engine_params).collect();
        let mut params = slot.cfg.tunnel_params(slot.secret.as_ref(), &self.cfg.global);
        params.pseudowires = pws.clone();
        let (peer, id) = (slot.cfg.peer, slot.id());
        self.engine.set_peer(peer, params);
        if let Some(id) = id {
            if let Err(e) = self.engine.set_pseudowires(id, pws) {
                debug!(tunnel, id, "pseudowires of a tunnel going away: {e}");
            }
        }
    }

    pub(super) fn add_session(&mut self, tunnel: &str, s: SessionConfig) -> anyhow::Result<String> {
        s.check("session").map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
        let slot = self.reg.get(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        if slot.cfg.sessions.iter().any(|x| x.name == s.name) {
            anyhow::bail!("tunnel {tunnel:?} already has a session named {:?}", s.name);
        }
        if slot.cfg.sessions.iter().any(|x| x.remote_end_id() == s.remote_end_id()) {
            anyhow::bail!("tunnel {tunnel:?} already has Remote End ID {:?}", s.remote_end_id());
        }
        self.reg.check_circuit_free(&s, None)?;
        if let Some(dp) = self.dp.as_mut().filter(|_| slot.cfg.version == 3) {
            let uplink = self
                .cfg
                .uplink_of(&slot.cfg)
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} has no uplink for pseudowires"))?;
            dataplane::ifindex(&s.interface)?;
            dp.ensure_attached(&uplink, Role::Uplink)?;
            dp.ensure_attached(&s.interface, Role::Attachment)?;
        }
        let slot = self.reg.get_mut(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        slot.cfg.sessions.push(s.clone());
        let id = slot.id();
        self.pseudowires_changed(tunnel);
        if let Some(id) = id {
            if self.engine.tunnel_info(id).is_some_and(|i| i.initiator && i.state == TunnelStatus::Established) {
                self.engine.open_session(Self::now(), id, s.engine_params())?;
                return Ok(format!("session {:?} requested on tunnel {tunnel:?}", s.name));
            }
        }
        Ok(format!("session {:?} added to tunnel {tunnel:?}", s.name))
    }

    pub(super) fn delete_session(&mut self, tunnel: &str, name: &str) -> anyhow::Result<()> {
        let slot = self.reg.get_mut(tunnel).ok_or_else(|| anyhow::anyhow!("no tunnel named {tunnel:?}"))?;
        let pos = slot
            .cfg
            .sessions
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("tunnel {tunnel:?} has no session named {name:?}"))?;
        let removed = slot.cfg.sessions.remove(pos);
        let id = slot.id();
        self.pseudowires_changed(tunnel);
        if let Some(id) = id {
            let sid = self.reg.sessions_of(id).find(|(_, s)| s.name == name).map(|(sid, _)| sid);
            if let Some(sid) = sid {
                let (gone, _) = self.reg.remove_session(id, sid);
                if let Some(dp) = &mut self.dp {
                    dp.uninstall(gone.iter().map(|s| (sid, s)));
                }
                self.store.remove_session(id, sid);
                self.close_session(id, sid);
            } else if let Some(info) = self.engine.tunnel_info(id) {
                // Not up yet: withdraw the request.
                let rid = removed.remote_end_id().as_bytes();
                if let Some(s) = info.sessions.iter().find(|s| s.remote_end_id == rid) {
                    self.close_session(id, s.local_id);
                }
            }
        }
        // Other VLAN circuits of the interface keep it attached.
        if !self.reg.interface_in_use(&removed.interface) {
            if let Some(dp) = &mut self.dp {
                dp.detach(&removed.interface)?;
            }
        }
        self.emit("session-deleted", Some(tunnel), id, None, format!("session {name:?} deleted"));
        Ok(())
    }

    /// Initiator: requests every configured session not up or pending, on
    /// the tunnels that may lack some (marked by
    /// [`super::registry::Registry::want_sessions`]); each such tunnel
    /// costs one pass over its sessions.
    pub(super) fn open_missing_sessions(&mut self) {
        for (name, id) in self.reg.take_wanting() {
            let Some(slot) = self.reg.get(&name) else { continue };
            let Some(info) = self.engine.tunnel_info(id) else { continue };
            if !info.initiator || info.state != TunnelStatus::Established {
                continue;
            }
            let have: HashSet<&[u8]> = info.sessions.iter().map(|x| x.remote_end_id.as_slice()).collect();
            let wanted: Vec<SessionConfig> =
                slot.cfg.sessions.iter().filter(|s| !have.contains(s.remote_end_id().as_bytes())).cloned().collect();
            for s in wanted {
                if let Err(e) = self.engine.open_session(Self::now(), id, s.engine_params()) {
                    warn!(tunnel = %name, session = %s.name, "cannot open: {e}");
                    // Tried again at the next tick.
                    self.reg.want_sessions(id);
                }
            }
        }
    }

    /// SIGHUP / `reload`: re-reads the file and applies the differences:
    /// new tunnels started, removed ones torn down, changed ones restarted,
    /// sessions added or deleted, nothing else touched. A bad file changes
    /// nothing.
    pub(super) fn reload(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config_path)?;
        super::warn_about(&new);
        // Tunnels (re)added below take their timers over the new globals;
        // running ones keep theirs.
        self.cfg.global = new.global.clone();
        let old_names: Vec<String> = self.reg.iter().filter(|(_, s)| !s.from_api).map(|(n, _)| n.clone()).collect();
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for name in &old_names {
            let Some(slot) = self.reg.get(name) else { continue };
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
        let fresh: Vec<TunnelConfig> = new.tunnels.iter().filter(|t| !self.reg.contains(&t.name)).cloned().collect();
        added += fresh.len();
        self.add_tunnels(fresh, true)?;
        // The tunnels are the registry's (see `Daemon::start`).
        self.cfg = Config { tunnels: Vec::new(), ..new };
        Ok(format!("{added} tunnel(s) added, {removed} removed, {changed} change(s)"))
    }
}

/// Circuits (interface, VLAN; 0 for the whole interface) taken by other
/// tunnels' sessions, looked up without building a key per session.
#[derive(Default)]
struct Taken(foldhash::HashMap<String, foldhash::HashSet<u16>>);

impl Taken {
    fn insert(&mut self, iface: &str, vlan: u16) {
        match self.0.get_mut(iface) {
            Some(v) => {
                v.insert(vlan);
            }
            None => {
                self.0.insert(iface.to_owned(), std::iter::once(vlan).collect());
            }
        }
    }

    fn contains(&self, iface: &str, vlan: u16) -> bool {
        self.0.get(iface).is_some_and(|v| v.contains(&vlan))
    }
}

impl<'a> FromIterator<(&'a str, u16)> for Taken {
    fn from_iter<I: IntoIterator<Item = (&'a str, u16)>>(circuits: I) -> Self {
        let mut t = Self::default();
        for (iface, vlan) in circuits {
            t.insert(iface, vlan);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::Taken;

    #[test]
    fn taken_circuits_are_told_apart_by_interface_and_vlan() {
        let t: Taken = [("ac0", 0), ("ac1", 10), ("ac1", 11)].into_iter().collect();
        assert!(t.contains("ac0", 0) && t.contains("ac1", 10) && t.contains("ac1", 11));
        assert!(!t.contains("ac0", 10), "a VLAN of a taken whole interface is another circuit");
        assert!(!t.contains("ac1", 0) && !t.contains("ac1", 12) && !t.contains("ac2", 10));
    }
}
