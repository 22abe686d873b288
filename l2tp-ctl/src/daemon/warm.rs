//! The hot standby's warm data plane (issue 14): every replicated session
//! is installed in the standby's XDP maps as soon as its record is durable,
//! but inactive (`flags::STANDBY`: it neither decapsulates nor
//! encapsulates). A takeover then activates each with one map update
//! instead of building the data plane while the peers wait; recovery
//! follows at once.

use std::collections::{HashMap, HashSet};

use l2tp_proto::engine::TunnelId;
use tracing::{debug, warn};

use super::{persist::Applied, Daemon};
use crate::store::{SessionRecord, TunnelRecord};

/// What the standby mirrored into its data plane.
#[derive(Debug, Default)]
pub(super) struct Warm {
    /// Replicated tunnels, by the active's tunnel ID: the peer and name
    /// that installing their sessions needs.
    tunnels: HashMap<TunnelId, TunnelRecord>,
    /// Warm sessions (local session IDs) by tunnel.
    sessions: HashMap<TunnelId, HashSet<u32>>,
    /// Sessions that could not be installed warm (their takeover installs
    /// them from the store instead).
    pub failed: u64,
}

impl Warm {
    /// Sessions installed inactive.
    pub fn sessions(&self) -> usize {
        self.sessions.values().map(HashSet::len).sum()
    }
}

impl Daemon {
    /// Standby: mirrors records just made durable into the data plane,
    /// inactive. A snapshot (`whole`) replaces what was mirrored.
    pub(super) fn warm(&mut self, applied: Vec<Applied>, whole: bool) {
        if self.dp.is_none() || self.serving() {
            return;
        }
        if whole {
            self.warm_clear();
        }
        for a in applied {
            match a {
                Applied::Tunnel(rec) => {
                    self.warm_state().tunnels.insert(rec.local_id, rec);
                }
                Applied::TunnelGone(t) => {
                    let w = self.warm_state();
                    w.tunnels.remove(&t);
                    let gone = w.sessions.remove(&t).unwrap_or_default();
                    for sid in gone {
                        self.warm_remove(sid);
                    }
                }
                Applied::Session(s) => self.warm_session(&s),
                Applied::SessionGone(t, sid) => {
                    let was = self.warm_state().sessions.get_mut(&t).is_some_and(|s| s.remove(&sid));
                    if was {
                        self.warm_remove(sid);
                    }
                }
            }
        }
    }

    /// Forgets every warm session and empties the data plane.
    pub(super) fn warm_clear(&mut self) {
        if let Some(ha) = &mut self.ha {
            ha.warm = Warm::default();
        }
        if let Some(dp) = &mut self.dp {
            if let Err(e) = dp.remove_unless(|_| false) {
                warn!("standby: data plane sessions not removed: {e:#}");
            }
        }
    }

    /// Takeover, step 2: the warm sessions start forwarding. Returns how
    /// many were activated.
    pub(super) fn warm_activate(&mut self) -> usize {
        let n = self.dp.as_mut().map_or(0, |dp| dp.activate_all());
        if let Some(ha) = &mut self.ha {
            ha.warm = Warm::default();
        }
        n
    }

    /// The standby's data plane was rebuilt empty: every replicated session
    /// of the store is installed warm again.
    pub(super) fn warm_rebuild(&mut self) {
        let mut applied = Vec::new();
        match self.store.tunnels() {
            Ok(tunnels) => {
                for t in tunnels {
                    match self.store.sessions(t.local_id) {
                        Ok(s) => {
                            applied.push(Applied::Tunnel(t));
                            applied.extend(s.into_iter().map(Applied::Session));
                        }
                        Err(e) => warn!(tunnel = %t.name, "warm data plane: the store cannot be read: {e}"),
                    }
                }
            }
            Err(e) => warn!("warm data plane: the store cannot be read: {e}"),
        }
        self.warm(applied, true);
    }

    fn warm_state(&mut self) -> &mut Warm {
        &mut self.ha.as_mut().expect("warm data plane without [ha]").warm
    }

    fn warm_session(&mut self, s: &SessionRecord) {
        if s.interface.is_none() {
            return;
        }
        let Some(rec) = self.warm_state().tunnels.get(&s.tunnel_id).cloned() else {
            debug!(tunnel = s.tunnel_id, session = %s.name, "warm data plane: session of an unknown tunnel");
            return;
        };
        let Some(tcfg) = self
            .reg
            .get(&rec.name)
            .filter(|t| t.cfg.peer == rec.peer.ip() && t.cfg.version == rec.version)
            .map(|t| t.cfg.clone())
        else {
            debug!(tunnel = %rec.name, "warm data plane: tunnel not configured here");
            return;
        };
        // A record written again (its final state after the synchronous
        // acknowledgement) replaces the session installed for it.
        if self.dp.as_ref().is_some_and(|dp| dp.has(s.local_id)) {
            self.warm_remove(s.local_id);
        }
        match self.reinstall(&tcfg, &rec, s, true) {
            Ok(()) => {
                self.warm_state().sessions.entry(s.tunnel_id).or_default().insert(s.local_id);
            }
            Err(e) => {
                self.warm_state().failed += 1;
                warn!(tunnel = %rec.name, session = %s.name, "not installed warm (the takeover installs it): {e:#}");
            }
        }
    }

    fn warm_remove(&mut self, sid: u32) {
        if let Some(dp) = &mut self.dp {
            if let Err(e) = dp.remove(sid) {
                debug!(sid, "warm session not removed: {e:#}");
            }
        }
    }
}
