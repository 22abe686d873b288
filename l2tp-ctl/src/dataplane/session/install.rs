//! Installing sessions into the table: one ([`SessionTable::add`]) or a
//! batch ([`SessionTable::add_many`], a data plane rebuilt from the store),
//! by the same steps: decide the slot, write what the data path reads,
//! then publish the IDs that make it find the session.

use l2tp_common::session::{
    SessionCommand, SessionConfig, SessionRxState, SessionStats, SessionTxState, ATTACH_PORT_MAX, MAX_PORTS,
    MAX_SESSIONS,
};

use aya::maps::IterableMap as _;

use super::{attach_key, zeroed_config, Meta, SessionTable};
use crate::dataplane::{batch, DataplaneError, Result, SessionParams};

/// A session's slot as [`SessionTable::prepare`] decided it.
struct Slot {
    idx: u32,
    sid: u32,
    key: u64,
    cfg: SessionConfig,
    rx: SessionRxState,
    /// The whole-interface circuit's `ATTACH_PORT` entry to set.
    whole_port: Option<u32>,
    /// The slot holds zeros (maps created empty, not used since).
    clean: bool,
}

/// Slots, circuits and IDs taken by sessions of one batch not yet
/// published.
#[derive(Default)]
struct Reserved {
    slots: foldhash::HashSet<u32>,
    keys: foldhash::HashSet<u64>,
    ids: foldhash::HashSet<u32>,
}

impl SessionTable {
    /// Installs a session; returns its index. The configuration and state are
    /// written before the IDs that make the data path find it.
    pub fn add(&mut self, p: &SessionParams) -> Result<u32> {
        let slot = self.prepare(p, &Reserved::default())?;
        self.write_slot(&slot)?;
        self.publish(&slot)?;
        Ok(slot.idx)
    }

    /// Installs many sessions (a data plane rebuilt from the store): what
    /// [`Self::add`] does for each, with the slots' configuration and state,
    /// then their two IDs, written by batch (`BPF_MAP_UPDATE_BATCH`, Linux
    /// 5.6) instead of four syscalls per session. Each session gets its own
    /// result; one that fails leaves nothing behind, as with `add`.
    pub fn add_many(&mut self, ps: &[SessionParams]) -> Vec<Result<u32>> {
        let mut reserved = Reserved::default();
        let mut results: Vec<Result<u32>> = Vec::with_capacity(ps.len());
        let mut slots: Vec<(usize, Slot)> = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            match self.prepare(p, &reserved) {
                Ok(slot) => {
                    reserved.slots.insert(slot.idx);
                    reserved.keys.insert(slot.key);
                    reserved.ids.insert(slot.sid);
                    results.push(Ok(slot.idx));
                    slots.push((i, slot));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        // Unpublished writes: clean slots by batch, the others one by one
        // (they need zeroing too).
        let (clean, dirty): (Vec<_>, Vec<_>) = slots.iter().partition(|(_, s)| s.clean);
        let idxs: Vec<u32> = clean.iter().map(|(_, s)| s.idx).collect();
        let cfgs: Vec<SessionConfig> = clean.iter().map(|(_, s)| s.cfg).collect();
        let rxs: Vec<SessionRxState> = clean.iter().map(|(_, s)| s.rx).collect();
        // The configurations go through the mapped array where it can be
        // mapped (stores into memory no program reads before the IDs are
        // published), else by batch.
        let cfgs_written = match self.cfg_slots() {
            Some(mapped) => idxs
                .iter()
                .zip(&cfgs)
                .try_for_each(|(idx, cfg)| mapped.write(*idx, *cfg))
                .ok_or_else(|| std::io::Error::other("a session slot outside SESSION_CFG")),
            None => batch::update_all(self.cfg.map(), &idxs, &cfgs),
        };
        let batched = cfgs_written.and_then(|()| batch::update_all(self.rx_state.map(), &idxs, &rxs));
        let mut failed: Vec<(usize, DataplaneError)> = Vec::new();
        let singly: Vec<&(usize, Slot)> = if batched.is_ok() {
            for idx in &idxs {
                self.mark_dirty(*idx);
            }
            dirty
        } else {
            slots.iter().collect()
        };
        for (i, slot) in singly {
            if let Err(e) = self.write_slot(slot) {
                failed.push((*i, e));
            }
        }
        // Publication, by batch; what a batch did not take goes one by one.
        let unwritten: std::collections::HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
        let live: Vec<&(usize, Slot)> = slots.iter().filter(|(i, _)| !unwritten.contains(i)).collect();
        let keys: Vec<u64> = live.iter().map(|(_, s)| s.key).collect();
        let ids: Vec<u32> = live.iter().map(|(_, s)| s.sid).collect();
        let values: Vec<u32> = live.iter().map(|(_, s)| s.idx).collect();
        let batched = batch::update_all(self.by_attach.map(), &keys, &values)
            .and_then(|()| batch::update_all(self.by_id.map(), &ids, &values))
            .is_ok();
        for (i, slot) in live {
            // A whole-interface circuit also needs its ATTACH_PORT entry.
            let done = batched && slot.whole_port.is_none();
            match if done { Ok(()) } else { self.publish_ids(slot) } {
                Ok(()) => self.commit(slot),
                Err(e) => failed.push((*i, e)),
            }
        }
        for (i, e) in failed {
            results[i] = Err(e);
        }
        results
    }

    /// Everything [`Self::add`] decides before it writes: checks, the slot,
    /// the configuration and the ports. `reserved`: what sessions prepared
    /// in the same batch take.
    fn prepare(&mut self, p: &SessionParams, reserved: &Reserved) -> Result<Slot> {
        let mut cfg = p.to_config()?;
        if self.ids.contains_key(&p.local_session_id) || reserved.ids.contains(&p.local_session_id) {
            return Err(DataplaneError::Session(format!("session ID {} is already installed", p.local_session_id)));
        }
        let key = attach_key(p.attach_ifindex, p.attach_vlan);
        if reserved.keys.contains(&key) || self.attach.contains_key(&key) {
            return Err(DataplaneError::Session(match p.attach_vlan {
                0 => format!("interface {} already carries a session", p.attach_ifindex),
                v => format!("VLAN {v} of interface {} already carries a session", p.attach_ifindex),
            }));
        }
        // The session's home slot (its ID's low bits), where decapsulation
        // finds it without a hash lookup; else the next free one.
        let home = p.local_session_id & (MAX_SESSIONS - 1);
        let idx = std::iter::once(home)
            .chain(self.next_free..MAX_SESSIONS)
            .chain(0..self.next_free)
            .find(|i| !self.used.contains(i) && !reserved.slots.contains(i))
            .ok_or_else(|| DataplaneError::Session(format!("all {MAX_SESSIONS} session slots in use")))?;
        let rx =
            SessionRxState { mode: u32::from(cfg.rx_mode), resync_n: u32::from(cfg.resync_n), ..Default::default() };
        cfg.uplink_port = self.port(p.uplink_ifindex)?;
        cfg.attach_port = self.port(p.attach_ifindex)?;
        if idx != home {
            self.next_free = (idx + 1) % MAX_SESSIONS;
        }
        let whole_port = match (p.attach_vlan, p.attach_ifindex) {
            (0, i) if i < ATTACH_PORT_MAX => Some(i),
            _ => None,
        };
        let clean = self.pristine && !self.dirty(idx);
        Ok(Slot { idx, sid: p.local_session_id, key, cfg, rx, whole_port, clean })
    }

    /// The writes before publication: configuration and state (and zeros
    /// where an earlier session left something).
    fn write_slot(&mut self, s: &Slot) -> Result<()> {
        let idx = s.idx;
        // From here the slot holds something of this session.
        self.mark_dirty(idx);
        self.cfg.set(idx, s.cfg, 0)?;
        // Before the session is published: no program runs on it yet.
        self.rx_state.set(idx, s.rx, 0)?;
        // A slot of maps created empty holds zeros already (a data plane
        // rebuilt from the store installs every session in one: five
        // writes fewer each).
        if !s.clean {
            self.tx_state.set(idx, SessionTxState::default(), 0)?;
            self.rx_cmd.set(idx, SessionCommand::default(), 0)?;
            self.tx_cmd.set(idx, SessionCommand::default(), 0)?;
            // No next hop cached for a slot's earlier session survives.
            if let Some(nh) = &mut self.next_hop {
                nh.set(idx, l2tp_common::session::NextHop::default(), 0)?;
            }
            for cpu in 0..self.stat_cpus {
                self.stats.set(cpu * MAX_SESSIONS + idx, SessionStats::default(), 0)?;
            }
        }
        Ok(())
    }

    /// Publishes a written slot: the data path finds it from here.
    fn publish(&mut self, s: &Slot) -> Result<()> {
        self.publish_ids(s)?;
        self.commit(s);
        Ok(())
    }

    /// The IDs that make the data path find slot `s` (all or none).
    fn publish_ids(&mut self, s: &Slot) -> Result<()> {
        let publish = self.by_attach.insert(s.key, s.idx, 0).and_then(|()| self.by_id.insert(s.sid, s.idx, 0));
        let publish = publish.and_then(|()| match s.whole_port {
            Some(i) => self.whole_port.set(i, s.idx + 1, 0),
            None => Ok(()),
        });
        if let Err(e) = publish {
            let _ = self.by_id.remove(&s.sid);
            let _ = self.by_attach.remove(&s.key);
            let _ = self.cfg.set(s.idx, zeroed_config(), 0);
            return Err(e.into());
        }
        Ok(())
    }

    /// What the table remembers of a published slot.
    fn commit(&mut self, s: &Slot) {
        self.mark_dirty(s.idx);
        self.used.insert(s.idx);
        self.ids.insert(s.sid, s.idx);
        self.attach.insert(s.key, s.idx);
        *self.meta_mut(s.idx) = Meta { flags: Some(s.cfg.flags), rx_epoch: Some(0), tx_epoch: Some(0) };
    }

    /// The `TX_PORTS` slot of an interface, given one on first use (slots
    /// stay: an interface's slot is the same for every session).
    pub(super) fn port(&mut self, ifindex: u32) -> Result<u16> {
        if let Some(slot) = self.ports.get(&ifindex) {
            return Ok(*slot as u16);
        }
        while self.next_port < MAX_PORTS && self.port_taken.contains(&self.next_port) {
            self.next_port += 1;
        }
        let slot = self.next_port;
        if slot >= MAX_PORTS {
            return Err(DataplaneError::Session(format!("all {MAX_PORTS} port slots in use")));
        }
        self.tx_ports
            .set(slot, ifindex, None, 0)
            .map_err(|e| DataplaneError::Session(format!("port {ifindex}: {e}")))?;
        self.port_slots.insert(ifindex, slot, 0)?;
        self.ports.insert(ifindex, slot);
        self.port_taken.insert(slot);
        Ok(slot as u16)
    }
}
