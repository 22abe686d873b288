//! The one owner of what the daemon knows by name: configured tunnels
//! (their configuration, secret and engine handle), the index from engine
//! tunnel IDs back to names, the sessions that are up (their names,
//! interfaces and data-plane slots), which of them wait for their store
//! write, and the tunnels whose configured sessions must be requested.
//!
//! The index and the slots change only through the methods here, so a
//! tunnel's `id` and the `by_id` entry pointing at it never disagree.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Instant,
};

/// Keyed by our own tunnel IDs, looked up for every session event:
/// foldhash rather than SipHash.
use foldhash::HashMap;

use l2tp_proto::{
    engine::TunnelId,
    wire::{Transport, Version},
};

use crate::{
    config::{Secret, SessionConfig, TunnelConfig},
    store::SessionRecord,
};

/// A configured tunnel.
#[derive(Debug)]
pub(super) struct TunnelSlot {
    pub cfg: TunnelConfig,
    pub secret: Option<Secret>,
    /// Added through the API (a reload leaves it alone).
    pub from_api: bool,
    /// Next connection attempt (initiating tunnels that are down).
    pub retry_at: Option<Instant>,
    pub last_event: Option<String>,
    /// Engine handle while connecting or up; changed by
    /// [`Registry::bind`] and [`Registry::unbind`] only.
    id: Option<TunnelId>,
}

impl TunnelSlot {
    pub fn new(cfg: TunnelConfig, secret: Option<Secret>, from_api: bool) -> Self {
        Self { cfg, secret, from_api, retry_at: None, last_event: None, id: None }
    }

    pub fn id(&self) -> Option<TunnelId> {
        self.id
    }
}

/// A session that is up in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SessionSlot {
    pub name: String,
    pub interface: Option<String>,
    /// Installed in the data plane.
    pub installed: bool,
}

/// A session up in the engine whose store write is due.
#[derive(Debug)]
pub(super) struct Unstored {
    pub rec: SessionRecord,
    /// Its `session-up` event, held until the session is stored: the
    /// peer's session ID.
    pub up_event: Option<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    tunnels: BTreeMap<String, TunnelSlot>,
    by_id: HashMap<TunnelId, String>,
    /// Sessions up in the engine, per engine tunnel (a superseded tunnel's
    /// sessions stay here until it is forgotten), stored or in `unstored`.
    sessions: HashMap<TunnelId, BTreeMap<u32, SessionSlot>>,
    /// Sessions of `sessions` waiting for their store write, by (tunnel,
    /// session): not yet reported up.
    unstored: BTreeMap<(TunnelId, u32), Unstored>,
    /// Initiated tunnels that may lack some of their configured sessions.
    wanting: BTreeSet<TunnelId>,
    /// Tunnels the daemon closed and forgot (deleted, superseded, or at
    /// shutdown) while the engine still tears them down: the names of the
    /// tunnel and its sessions, for their last events.
    departed: HashMap<TunnelId, (String, HashMap<u32, String>)>,
}

impl Registry {
    // --- tunnels by name ---

    pub fn contains(&self, name: &str) -> bool {
        self.tunnels.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&TunnelSlot> {
        self.tunnels.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut TunnelSlot> {
        self.tunnels.get_mut(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TunnelSlot)> {
        self.tunnels.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.tunnels.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    /// Adds a tunnel; `false` (nothing changed) when the name is taken.
    pub fn insert(&mut self, slot: TunnelSlot) -> bool {
        if self.tunnels.contains_key(&slot.cfg.name) {
            return false;
        }
        self.tunnels.insert(slot.cfg.name.clone(), slot);
        true
    }

    /// Removes a tunnel and its index entry (its sessions stay until
    /// [`Registry::take_sessions`]).
    pub fn remove(&mut self, name: &str) -> Option<TunnelSlot> {
        let slot = self.tunnels.remove(name)?;
        if let Some(id) = slot.id {
            self.by_id.remove(&id);
            self.wanting.remove(&id);
        }
        Some(slot)
    }

    /// The configured tunnel a peer's tunnel of this kind belongs to.
    pub fn find_peer(&self, peer: IpAddr, version: Version, transport: Transport) -> Option<String> {
        self.tunnels
            .iter()
            .find(|(_, s)| s.cfg.peer == peer && s.cfg.version() == version && s.cfg.transport() == transport)
            .map(|(n, _)| n.clone())
    }

    /// The earliest reconnection attempt due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.tunnels.values().filter_map(|s| s.retry_at).min()
    }

    // --- the ID index ---

    pub fn name_of(&self, id: TunnelId) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The slot engine tunnel `id` is bound to.
    pub fn slot_of(&mut self, id: TunnelId) -> Option<&mut TunnelSlot> {
        let name = self.by_id.get(&id)?;
        self.tunnels.get_mut(name)
    }

    /// Engine tunnel `id` is now tunnel `name` (a tunnel it replaces is
    /// unbound). `false` when no tunnel has that name.
    pub fn bind(&mut self, name: &str, id: TunnelId) -> bool {
        let Some(slot) = self.tunnels.get_mut(name) else { return false };
        if let Some(old) = slot.id.replace(id) {
            if old != id {
                self.by_id.remove(&old);
                self.wanting.remove(&old);
            }
        }
        slot.retry_at = None;
        if let Some(other) = self.by_id.insert(id, name.to_owned()) {
            if other != name {
                if let Some(o) = self.tunnels.get_mut(&other) {
                    o.id = None;
                }
            }
        }
        true
    }

    /// Engine tunnel `id` is no tunnel's any more; returns the name it had.
    pub fn unbind(&mut self, id: TunnelId) -> Option<String> {
        self.wanting.remove(&id);
        let name = self.by_id.remove(&id)?;
        if let Some(slot) = self.tunnels.get_mut(&name) {
            if slot.id == Some(id) {
                slot.id = None;
            }
        }
        Some(name)
    }

    // --- tunnels closed by us, still going down ---

    /// Keeps the names of engine tunnel `id` (as `name`) and of its
    /// sessions until [`Registry::departed_gone`].
    pub fn depart(&mut self, id: TunnelId, name: String) {
        let sessions = self.sessions_of(id).map(|(sid, s)| (sid, s.name.clone())).collect();
        self.departed.insert(id, (name, sessions));
    }

    pub fn departed_tunnel(&self, id: TunnelId) -> Option<&str> {
        self.departed.get(&id).map(|(n, _)| n.as_str())
    }

    pub fn departed_session(&self, id: TunnelId, sid: u32) -> Option<&str> {
        self.departed.get(&id)?.1.get(&sid).map(String::as_str)
    }

    /// Its last event is out (or the engine forgot it): the names go.
    pub fn departed_gone(&mut self, id: TunnelId) {
        self.departed.remove(&id);
    }

    pub fn departed_ids(&self) -> Vec<TunnelId> {
        self.departed.keys().copied().collect()
    }

    // --- sessions ---

    pub fn session(&self, tunnel: TunnelId, sid: u32) -> Option<&SessionSlot> {
        self.sessions.get(&tunnel)?.get(&sid)
    }

    /// The established sessions of a tunnel, by local session ID.
    pub fn sessions_of(&self, tunnel: TunnelId) -> impl Iterator<Item = (u32, &SessionSlot)> {
        self.sessions.get(&tunnel).into_iter().flat_map(|m| m.iter().map(|(k, v)| (*k, v)))
    }

    pub fn insert_session(&mut self, tunnel: TunnelId, sid: u32, slot: SessionSlot) {
        self.sessions.entry(tunnel).or_default().insert(sid, slot);
    }

    /// Forgets a session, stored or not; returns what it held, and its
    /// held `session-up` event (the peer's session ID) if it was not
    /// stored yet.
    pub fn remove_session(&mut self, tunnel: TunnelId, sid: u32) -> (Option<SessionSlot>, Option<u32>) {
        let held = self.unstored.remove(&(tunnel, sid)).and_then(|u| u.up_event);
        let mut gone = None;
        if let Some(m) = self.sessions.get_mut(&tunnel) {
            gone = m.remove(&sid);
            if m.is_empty() {
                self.sessions.remove(&tunnel);
            }
        }
        (gone, held)
    }

    /// Forgets every session of a tunnel (the unstored ones are not to be
    /// stored any more).
    pub fn take_sessions(&mut self, tunnel: TunnelId) -> Vec<(u32, SessionSlot)> {
        let Some(m) = self.sessions.remove(&tunnel) else { return Vec::new() };
        if !self.unstored.is_empty() {
            let mine: Vec<_> = self.unstored.range((tunnel, 0)..=(tunnel, u32::MAX)).map(|(k, _)| *k).collect();
            for k in mine {
                self.unstored.remove(&k);
            }
        }
        m.into_iter().collect()
    }

    /// A session up in the engine, to be stored before it counts as up.
    pub fn stage(&mut self, rec: SessionRecord, slot: SessionSlot) {
        let key = (rec.tunnel_id, rec.local_id);
        self.sessions.entry(key.0).or_default().insert(key.1, slot);
        self.unstored.insert(key, Unstored { rec, up_event: None });
    }

    /// Holds the `session-up` event of a session not stored yet; false
    /// (nothing held) when it is stored.
    pub fn hold_up_event(&mut self, tunnel: TunnelId, sid: u32, peer_sid: u32) -> bool {
        match self.unstored.get_mut(&(tunnel, sid)) {
            Some(u) => {
                u.up_event = Some(peer_sid);
                true
            }
            None => false,
        }
    }

    pub fn has_unstored(&self) -> bool {
        !self.unstored.is_empty()
    }

    /// The sessions waiting for their store write, taken (by tunnel, then
    /// session).
    pub fn take_unstored(&mut self) -> Vec<Unstored> {
        std::mem::take(&mut self.unstored).into_values().collect()
    }

    // --- sessions to request ---

    /// Tunnel `id` may lack configured sessions (it came up, one went down,
    /// one was added or could not be requested).
    pub fn want_sessions(&mut self, id: TunnelId) {
        if self.by_id.contains_key(&id) {
            self.wanting.insert(id);
        }
    }

    /// The tunnels marked by [`Registry::want_sessions`], unmarked.
    pub fn take_wanting(&mut self) -> Vec<(String, TunnelId)> {
        let ids = std::mem::take(&mut self.wanting);
        ids.into_iter().filter_map(|id| self.by_id.get(&id).map(|n| (n.clone(), id))).collect()
    }

    // --- attachment circuits ---

    /// The attachment circuit (interface, VLAN) of `s` is not another
    /// session's (`except`: the tunnel and session that may hold it).
    pub fn check_circuit_free(&self, s: &SessionConfig, except: Option<(&str, &str)>) -> anyhow::Result<()> {
        for (tn, slot) in &self.tunnels {
            for o in &slot.cfg.sessions {
                if o.circuit() == s.circuit() && except != Some((tn.as_str(), o.name.as_str())) {
                    anyhow::bail!("{} already carries session {:?} of tunnel {tn:?}", s.circuit_name(), o.name);
                }
            }
        }
        Ok(())
    }

    /// Circuits of every configured tunnel.
    pub fn circuits(&self) -> std::collections::HashSet<(&str, u16)> {
        self.tunnels.values().flat_map(|x| x.cfg.sessions.iter().map(SessionConfig::circuit)).collect()
    }

    /// Sessions of any tunnel attached through `iface`.
    pub fn interface_in_use(&self, iface: &str) -> bool {
        self.tunnels.values().any(|t| t.cfg.sessions.iter().any(|s| s.interface == iface))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str) -> TunnelSlot {
        let cfg: TunnelConfig =
            toml::from_str(&format!("name = \"{name}\"\npeer = \"198.18.0.2\"\n")).expect("tunnel config");
        TunnelSlot::new(cfg, None, false)
    }

    fn session(name: &str) -> SessionSlot {
        SessionSlot { name: name.into(), interface: None, installed: false }
    }

    #[test]
    fn the_id_index_follows_the_slots() {
        let mut r = Registry::default();
        assert!(r.insert(slot("a")) && r.insert(slot("b")));
        assert!(!r.insert(slot("a")), "names are unique");
        assert!(r.bind("a", 7));
        assert_eq!((r.name_of(7), r.get("a").and_then(TunnelSlot::id)), (Some("a"), Some(7)));
        // A new tunnel supersedes the old one: the old ID is unbound.
        assert!(r.bind("a", 8));
        assert_eq!((r.name_of(7), r.name_of(8)), (None, Some("a")));
        assert_eq!(r.unbind(7), None);
        assert_eq!(r.unbind(8).as_deref(), Some("a"));
        assert_eq!(r.get("a").and_then(TunnelSlot::id), None);
        assert!(r.bind("b", 9));
        assert!(r.remove("b").is_some());
        assert_eq!(r.name_of(9), None, "removing a tunnel removes its index entry");
        assert!(!r.bind("nope", 1));
    }

    #[test]
    fn a_departed_tunnel_keeps_its_names_until_its_last_event() {
        let mut r = Registry::default();
        r.insert_session(7, 1, session("x"));
        r.depart(7, "t".into());
        assert_eq!(r.take_sessions(7).len(), 1);
        assert_eq!((r.departed_tunnel(7), r.departed_session(7, 1)), (Some("t"), Some("x")));
        assert_eq!((r.departed_tunnel(8), r.departed_session(7, 2)), (None, None));
        r.departed_gone(7);
        assert_eq!((r.departed_tunnel(7), r.departed_session(7, 1)), (None, None));
        assert!(r.departed_ids().is_empty());
    }

    #[test]
    fn sessions_are_kept_per_tunnel_and_removed_once() {
        let mut r = Registry::default();
        r.insert_session(7, 1, session("x"));
        r.insert_session(7, 2, session("y"));
        r.insert_session(8, 3, session("z"));
        assert_eq!(r.sessions_of(7).map(|(s, _)| s).collect::<Vec<_>>(), vec![1, 2]);
        assert!(r.remove_session(7, 1).0.is_some());
        assert!(r.remove_session(7, 1).0.is_none());
        assert_eq!(r.take_sessions(7).len(), 1);
        assert_eq!(r.sessions_of(8).count(), 1);
    }

    use crate::store::tests::session as record;

    #[test]
    fn a_staged_session_is_known_at_once_and_reported_up_once_stored() {
        let mut r = Registry::default();
        r.stage(record(7, 1), session("x"));
        r.stage(record(7, 2), session("y"));
        r.stage(record(8, 3), session("z"));
        // Lookups, views and tear-downs see it before its store write...
        assert_eq!(r.session(7, 1).map(|s| s.name.as_str()), Some("x"));
        assert_eq!(r.sessions_of(7).count(), 2);
        // ...but its up event waits for the write.
        assert!(r.hold_up_event(7, 1, 101));
        assert!(!r.hold_up_event(7, 9, 109), "no such session: nothing held");
        // A session that goes down before it is stored is not written, and
        // its held event comes back with it.
        assert_eq!(r.remove_session(7, 1), (Some(session("x")), Some(101)));
        // A forgotten tunnel's sessions are not written either.
        assert_eq!(r.take_sessions(8).len(), 1);
        assert!(r.has_unstored());
        let due: Vec<(u32, u32)> = r.take_unstored().iter().map(|u| (u.rec.tunnel_id, u.rec.local_id)).collect();
        assert_eq!(due, vec![(7, 2)]);
        assert!(!r.has_unstored());
        // Stored: its event is no longer held.
        assert!(!r.hold_up_event(7, 2, 102));
        assert_eq!(r.session(7, 2).map(|s| s.name.as_str()), Some("y"));
    }

    #[test]
    fn only_bound_tunnels_want_sessions() {
        let mut r = Registry::default();
        r.insert(slot("a"));
        r.want_sessions(7);
        assert!(r.take_wanting().is_empty());
        r.bind("a", 7);
        r.want_sessions(7);
        assert_eq!(r.take_wanting(), vec![("a".to_owned(), 7)]);
        assert!(r.take_wanting().is_empty(), "taken once");
    }
}
