//! Typed API over the per-session maps: add, remove, read state and
//! counters, post commands (each to the program that owns what it changes).

use std::collections::BTreeSet;

use aya::maps::{xdp::DevMap, Array, HashMap, IterableMap as _, Map, MapData};
use l2tp_common::session::{
    attach_key, cmd, flags, rx_mode, SessionCommand, SessionConfig, SessionRxState, SessionStats, SessionTxState,
    ATTACH_PORT_MAX, HDR_TEMPLATE_MAX, MAP_ATTACH_PORT, MAP_PORT_SLOTS, MAP_SESSION_BY_ATTACH, MAP_SESSION_BY_ID,
    MAP_SESSION_CFG, MAP_SESSION_RX_CMD, MAP_SESSION_RX_STATE, MAP_SESSION_STATS, MAP_SESSION_TX_CMD,
    MAP_SESSION_TX_STATE, MAP_TX_PORTS, MAX_SESSIONS,
};

use super::{DataplaneError, Result};

/// The table's own maps, keyed by IDs and slots it hands out (not by
/// anything a peer picks): foldhash, a few times faster than SipHash on
/// these `u32`/`u64` keys, which recovery and batch installs look up once
/// or more per session.
type FastMap<K, V> = foldhash::HashMap<K, V>;

mod install;

pub use super::params::{Cookie, Encap, RxMode, SessionParams};

/// A session's data-path state as [`SessionTable::state`] reads it: the
/// receive side (`SESSION_RX_STATE`, written by `l2tp_uplink`) and the
/// transmit side (`SESSION_TX_STATE`, written by `l2tp_attach`) side by
/// side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Next Ns to send.
    pub tx_ns: u32,
    /// Next Ns expected.
    pub rx_nr: u32,
    /// 1 once a first sequenced packet set `rx_nr`.
    pub rx_valid: u32,
    pub run_len: u32,
    pub run_next: u32,
    /// Effective receive mode (an `rx_mode`) and run length.
    pub mode: u32,
    pub resync_n: u32,
    /// Packets in sequence left in a temporary resync (0: none).
    pub resync_left: u32,
    /// Epochs of the last receive and transmit commands applied.
    pub rx_applied_epoch: u32,
    pub tx_applied_epoch: u32,
}

impl SessionState {
    fn new(rx: SessionRxState, tx: SessionTxState) -> Self {
        Self {
            tx_ns: tx.tx_ns,
            rx_nr: rx.rx_nr,
            rx_valid: rx.rx_valid,
            run_len: rx.run_len,
            run_next: rx.run_next,
            mode: rx.mode,
            resync_n: rx.resync_n,
            resync_left: rx.resync_left,
            rx_applied_epoch: rx.applied_epoch,
            tx_applied_epoch: tx.applied_epoch,
        }
    }
}

/// A command for [`SessionTable::post`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Next Ns to send (RFC 4951 F-DC-1: 0 after recovery).
    ResetNs(u32),
    /// Resync after `n` consecutive packets (F-DC-3).
    EnterResync {
        n: u16,
    },
    SetMode(RxMode),
    /// Forget Nr: the next packet sets it.
    ResetNr,
}

impl Command {
    /// Whether the transmit side (`l2tp_attach`) owns what the command
    /// changes; else the receive side (`l2tp_uplink`) does.
    pub fn is_tx(self) -> bool {
        matches!(self, Self::ResetNs(_))
    }
}

/// Summed per-CPU session counters.
pub fn sum_stats<'a>(per_cpu: impl IntoIterator<Item = &'a SessionStats>) -> SessionStats {
    per_cpu.into_iter().fold(SessionStats::default(), |mut a, s| {
        a.rx_packets += s.rx_packets;
        a.rx_bytes += s.rx_bytes;
        a.tx_packets += s.tx_packets;
        a.tx_bytes += s.tx_bytes;
        a.rx_out_of_seq += s.rx_out_of_seq;
        a.rx_lost += s.rx_lost;
        a.rx_duplicates += s.rx_duplicates;
        a.rx_resyncs += s.rx_resyncs;
        a.rx_cookie_mismatch += s.rx_cookie_mismatch;
        a.rx_malformed += s.rx_malformed;
        a.tx_mtu_drops += s.tx_mtu_drops;
        a.redirect_errors += s.redirect_errors;
        a.tx_no_route += s.tx_no_route;
        a
    })
}

/// The number of possible CPUs (per-CPU map values), read once.
/// Entries of `SESSION_STATS`: a slot per session and possible CPU.
pub(super) fn stats_entries() -> Result<u32> {
    let cpus = u32::try_from(possible_cpus()?).unwrap_or(u32::MAX);
    MAX_SESSIONS.checked_mul(cpus).ok_or_else(|| {
        DataplaneError::Session(format!("{cpus} possible CPUs: too many for {MAX_SESSIONS} sessions each"))
    })
}

fn possible_cpus() -> Result<usize> {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(n) = CPUS.get() {
        return Ok(*n);
    }
    let n = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Io {
        what: "counting CPUs",
        path: "/sys/devices/system/cpu/possible".into(),
        source: e,
    })?;
    Ok(*CPUS.get_or_init(|| n))
}

/// A used slot as the table last wrote it.
#[derive(Clone, Copy, Debug, Default)]
/// Each fact is read from the maps the first time it is needed (after a
/// restart, recovery posts a receive command to every session: one read of
/// its command slot, not of everything).
struct Meta {
    /// `SessionConfig::flags`.
    flags: Option<u32>,
    /// The highest epoch posted (or applied) on each side's command slot:
    /// the next command's epoch is one more.
    rx_epoch: Option<u32>,
    tx_epoch: Option<u32>,
}

/// Slot `idx`'s entry of a per-slot vector, grown to it with defaults.
fn slot_mut<T: Clone + Default>(v: &mut Vec<T>, idx: u32) -> &mut T {
    let i = idx as usize;
    if i >= v.len() {
        v.resize(i + 1, T::default());
    }
    &mut v[i]
}

/// The per-session maps of one data plane.
pub struct SessionTable {
    by_id: HashMap<MapData, u32, u32>,
    by_attach: HashMap<MapData, u64, u32>,
    whole_port: Array<MapData, u32>,
    cfg: Array<MapData, SessionConfig>,
    rx_state: Array<MapData, SessionRxState>,
    tx_state: Array<MapData, SessionTxState>,
    rx_cmd: Array<MapData, SessionCommand>,
    tx_cmd: Array<MapData, SessionCommand>,
    /// The same two arrays mapped into memory, at the first command (a
    /// table that only reads, as a metrics scrape's, maps nothing); `Some(None)`
    /// with pins of an object whose slots are not mappable.
    rx_slots: Option<Option<super::mapped::Mapped<SessionCommand>>>,
    tx_slots: Option<Option<super::mapped::Mapped<SessionCommand>>>,
    /// `SESSION_CFG` mapped into memory, at the first batch install or
    /// takeover (as the command slots; `Some(None)`: not mappable).
    cfg_slots: Option<Option<super::mapped::Mapped<SessionConfig>>>,
    /// `cpu * MAX_SESSIONS + slot` (see the program's `session_stats`).
    stats: Array<MapData, SessionStats>,
    /// CPUs `stats` has slots for.
    stat_cpus: u32,
    tx_ports: DevMap<MapData>,
    port_slots: HashMap<MapData, u32, u32>,
    /// `ifindex -> slot` of `TX_PORTS`, as `PORT_SLOTS` holds it.
    ports: FastMap<u32, u32>,
    /// The slots `ports` holds, and the lowest slot that may be free: port
    /// slots are never given back while the table is open, so it only
    /// moves up (a search from 0 over every taken slot, per new interface,
    /// was quadratic in interfaces).
    port_taken: foldhash::HashSet<u32>,
    next_port: u32,
    used: BTreeSet<u32>,
    /// `SESSION_BY_ID` as this table wrote it (the daemon is the maps'
    /// only writer while it runs): lookups without a syscall.
    ids: FastMap<u32, u32>,
    /// `SESSION_BY_ATTACH` as this table wrote it (circuit key -> slot).
    attach: FastMap<u64, u32>,
    /// What the table knows of each used slot without reading the maps, by
    /// slot (grown to the highest slot used: slots are taken from 0 up).
    meta: Vec<Meta>,
    /// The maps were created empty just before this table was opened
    /// ([`Self::assume_pristine`]): a slot not `dirtied` since holds zeros.
    pristine: bool,
    /// By slot: written since the table was opened (grown like `meta`).
    dirtied: Vec<bool>,
    /// The data-plane switches, to make cached next hops stale when a
    /// session changes (absent in pins of an older object).
    switches: Option<super::Switches>,
    next_hop: Option<Array<MapData, l2tp_common::session::NextHop>>,
    /// Where the search for a free slot starts (one past the last taken):
    /// sequential installs stay O(1) each.
    next_free: u32,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable").field("sessions", &self.used.len()).finish_non_exhaustive()
    }
}

impl SessionTable {
    pub(super) fn open(get: impl Fn(&str) -> Result<Map>) -> Result<Self> {
        let by_id: HashMap<MapData, u32, u32> = HashMap::try_from(get(MAP_SESSION_BY_ID)?)?;
        let port_slots: HashMap<MapData, u32, u32> = HashMap::try_from(get(MAP_PORT_SLOTS)?)?;
        let ids = Self::read_all(&get, MAP_SESSION_BY_ID, &by_id);
        let by_attach: HashMap<MapData, u64, u32> = HashMap::try_from(get(MAP_SESSION_BY_ATTACH)?)?;
        let attach = Self::read_all(&get, MAP_SESSION_BY_ATTACH, &by_attach);
        let stats: Array<MapData, SessionStats> = Array::try_from(get(MAP_SESSION_STATS)?)
            .map_err(|e| DataplaneError::Incompatible(format!("{MAP_SESSION_STATS}: {e}")))?;
        let stat_cpus = (stats.len() / MAX_SESSIONS).max(1);
        let (rx_cmd, tx_cmd) = (get(MAP_SESSION_RX_CMD)?, get(MAP_SESSION_TX_CMD)?);
        let used = ids.values().copied().collect();
        let ports: FastMap<u32, u32> = port_slots.iter().filter_map(|r| r.ok()).collect();
        let port_taken = ports.values().copied().collect();
        Ok(Self {
            ids,
            meta: Vec::new(),
            pristine: false,
            dirtied: Vec::new(),
            by_id,
            by_attach,
            attach,
            whole_port: Array::try_from(get(MAP_ATTACH_PORT)?)?,
            cfg: Array::try_from(get(MAP_SESSION_CFG)?)?,
            rx_state: Array::try_from(get(MAP_SESSION_RX_STATE)?)?,
            tx_state: Array::try_from(get(MAP_SESSION_TX_STATE)?)?,
            rx_cmd: Array::try_from(rx_cmd)?,
            tx_cmd: Array::try_from(tx_cmd)?,
            rx_slots: None,
            tx_slots: None,
            cfg_slots: None,
            stats,
            stat_cpus,
            tx_ports: DevMap::try_from(get(MAP_TX_PORTS)?)?,
            ports,
            port_taken,
            next_port: 0,
            port_slots,
            used,
            switches: get(l2tp_common::session::MAP_DP_CONFIG).ok().and_then(|m| super::Switches::new(m).ok()),
            next_hop: get(l2tp_common::session::MAP_SESSION_NEXT_HOP).ok().and_then(|m| Array::try_from(m).ok()),
            next_free: 0,
        })
    }

    /// Every entry of the hash map `name` (`map`, opened: the installed IDs,
    /// the circuits): one batch read (a few syscalls), else entry by entry
    /// (two syscalls each, before Linux 5.6). Slot facts ([`Meta`]) are
    /// read on first use instead: reading every slot of the arrays costs
    /// more (the kernel copies them one by one) than the few a restart
    /// touches.
    fn read_all<K>(get: &impl Fn(&str) -> Result<Map>, name: &str, map: &HashMap<MapData, K, u32>) -> FastMap<K, u32>
    where
        K: aya::Pod + Eq + std::hash::Hash,
    {
        let batched =
            get(name).ok().and_then(super::batch::data).and_then(|d| super::batch::lookup_all::<K, u32>(&d).ok());
        // An entry naming a slot outside the arrays is nobody's (a map
        // written by something else): no program can use it either.
        let in_range = |(_, idx): &(K, u32)| *idx < MAX_SESSIONS;
        match batched {
            Some(v) => v.into_iter().filter(in_range).collect(),
            None => map.iter().filter_map(|r| r.ok()).filter(in_range).collect(),
        }
    }

    /// The configuration's flags of slot `idx`, read from the map the
    /// first time.
    fn meta_flags(&mut self, idx: u32) -> Result<u32> {
        if let Some(f) = self.meta.get(idx as usize).and_then(|m| m.flags) {
            return Ok(f);
        }
        let f = self.cfg.get(&idx, 0)?.flags;
        self.meta_mut(idx).flags = Some(f);
        Ok(f)
    }

    /// The last epoch posted on one side's command slot of `idx`, read from
    /// the map the first time (a side's applied epoch never passes its
    /// slot's, which holds the last posted).
    fn meta_epoch(&mut self, idx: u32, tx: bool) -> Result<u32> {
        let known = self.meta.get(idx as usize).and_then(|m| if tx { m.tx_epoch } else { m.rx_epoch });
        if let Some(e) = known {
            return Ok(e);
        }
        let e = match self.command_slots(tx).and_then(|m| m.epoch(idx)) {
            Some(e) => e,
            None => if tx { self.tx_cmd.get(&idx, 0)? } else { self.rx_cmd.get(&idx, 0)? }.epoch_end,
        };
        let m = self.meta_mut(idx);
        if tx {
            m.tx_epoch = Some(e);
        } else {
            m.rx_epoch = Some(e);
        }
        Ok(e)
    }

    /// What the table knows of slot `idx` (`idx` below `MAX_SESSIONS`, as
    /// every slot the table hands out).
    fn meta_mut(&mut self, idx: u32) -> &mut Meta {
        slot_mut(&mut self.meta, idx)
    }

    /// Whether slot `idx` was written since the table was opened.
    fn dirty(&self, idx: u32) -> bool {
        self.dirtied.get(idx as usize).copied().unwrap_or(false)
    }

    fn mark_dirty(&mut self, idx: u32) {
        *slot_mut(&mut self.dirtied, idx) = true;
    }

    /// The maps were created empty just now (not reopened): slots not used
    /// since need no zeroing when a session is installed.
    pub fn assume_pristine(&mut self) {
        self.pristine = self.used.is_empty();
        self.dirtied.clear();
    }

    /// Changes an installed session in place (cookies, addresses, MTU,
    /// sequencing, receive mode, attachment circuit...): its slot, state and
    /// counters stay, so traffic and sequence numbers go on. A changed
    /// receive mode is applied through a command on the next packet.
    pub fn update(&mut self, p: &SessionParams) -> Result<u32> {
        let idx = self
            .index_of(p.local_session_id)
            .ok_or_else(|| DataplaneError::Session(format!("no session {}", p.local_session_id)))?;
        let old = self.cfg.get(&idx, 0)?;
        let mut cfg = p.to_config()?;
        let (old_key, key) =
            (attach_key(old.attach_ifindex, old.attach_vlan), attach_key(p.attach_ifindex, p.attach_vlan));
        if key != old_key && self.attach.contains_key(&key) {
            return Err(DataplaneError::Session("the new attachment circuit already carries a session".into()));
        }
        cfg.uplink_port = self.port(p.uplink_ifindex)?;
        cfg.attach_port = self.port(p.attach_ifindex)?;
        self.cfg.set(idx, cfg, 0)?;
        self.meta_mut(idx).flags = Some(cfg.flags);
        // The peer or uplink may have changed: what the data path cached
        // for the old configuration must not be used.
        self.invalidate_next_hops()?;
        if key != old_key {
            self.by_attach.insert(key, idx, 0)?;
            self.attach.insert(key, idx);
            if self.attach.get(&old_key) == Some(&idx) {
                self.by_attach.remove(&old_key)?;
                self.attach.remove(&old_key);
            }
            if old.attach_vlan == 0
                && old.attach_ifindex < ATTACH_PORT_MAX
                && self.whole_port.get(&old.attach_ifindex, 0).ok() == Some(idx + 1)
            {
                self.whole_port.set(old.attach_ifindex, 0, 0)?;
            }
            if p.attach_vlan == 0 && p.attach_ifindex < ATTACH_PORT_MAX {
                self.whole_port.set(p.attach_ifindex, idx + 1, 0)?;
            }
        }
        if (cfg.rx_mode, cfg.resync_n) != (old.rx_mode, old.resync_n) {
            self.post(idx, Command::SetMode(p.rx_mode))?;
        }
        Ok(idx)
    }

    /// Activates a session installed inactive (a hot standby's warm
    /// session at takeover): one write of its configuration, the standby
    /// bit cleared. Its state is as installed, since nothing ran on it: Ns
    /// starts at 0 (RFC 4951 F-DC-1) and the first packet sets Nr; the
    /// recovery that follows posts the resync of F-DC-3. Returns whether
    /// it was inactive.
    pub fn activate(&mut self, local_session_id: u32) -> Result<bool> {
        let idx = self
            .index_of(local_session_id)
            .ok_or_else(|| DataplaneError::Session(format!("no session {local_session_id}")))?;
        let mut cfg = self.cfg.get(&idx, 0)?;
        if cfg.flags & flags::STANDBY == 0 {
            return Ok(false);
        }
        cfg.flags &= !flags::STANDBY;
        self.cfg.set(idx, cfg, 0)?;
        self.meta_mut(idx).flags = Some(cfg.flags);
        Ok(true)
    }

    /// [`Self::activate`] for every installed session (a takeover): the
    /// `STANDBY` bit of each configuration cleared with one store through
    /// `SESSION_CFG` mapped into memory (10,000 sessions: 20,000
    /// syscalls otherwise), one syscall read and write each where it cannot
    /// be mapped. The flags word is read by the programs as one aligned
    /// load: they see a session warm or active, nothing in between. Returns
    /// how many were inactive, and the errors.
    pub fn activate_all(&mut self) -> (usize, Vec<(u32, DataplaneError)>) {
        let sessions = self.list();
        let Some(cfgs) = self.cfg_slots() else { return self.activate_each(sessions) };
        let mut cleared = Vec::new();
        for (idx, _) in sessions {
            let Some(c) = cfgs.slot(idx) else { continue };
            // SAFETY: the flags word of an entry inside the mapping.
            let f = unsafe { std::ptr::read_volatile(&raw const (*c).flags) };
            if f & flags::STANDBY != 0 {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile(&raw mut (*c).flags, f & !flags::STANDBY) };
                cleared.push((idx, f & !flags::STANDBY));
            }
        }
        let n = cleared.len();
        for (idx, f) in cleared {
            self.meta_mut(idx).flags = Some(f);
        }
        (n, Vec::new())
    }

    /// [`Self::activate_all`] by syscalls, one session at a time.
    fn activate_each(&mut self, sessions: Vec<(u32, u32)>) -> (usize, Vec<(u32, DataplaneError)>) {
        let (mut n, mut errors) = (0, Vec::new());
        for (_, sid) in sessions {
            match self.activate(sid) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => errors.push((sid, e)),
            }
        }
        (n, errors)
    }

    /// Makes every session's cached next hop stale (a route, neighbour or
    /// session changed); nothing with pins of an older object.
    pub fn invalidate_next_hops(&mut self) -> Result<()> {
        match &mut self.switches {
            Some(sw) => sw.invalidate_next_hops(),
            None => Ok(()),
        }
    }

    /// Index of the session receiving `local_session_id`.
    pub fn index_of(&self, local_session_id: u32) -> Option<u32> {
        self.ids.get(&local_session_id).copied()
    }

    /// `SessionConfig::flags` of slot `idx` (a map read only the first
    /// time after the table was opened).
    pub fn flags(&mut self, idx: u32) -> Option<u32> {
        self.meta_flags(idx).ok()
    }

    /// Removes a session: unpublished first, then its slot cleared.
    pub fn remove(&mut self, local_session_id: u32) -> Result<()> {
        let idx = self
            .index_of(local_session_id)
            .ok_or_else(|| DataplaneError::Session(format!("no session {local_session_id}")))?;
        let cfg = self.cfg.get(&idx, 0)?;
        self.by_id.remove(&local_session_id)?;
        let key = attach_key(cfg.attach_ifindex, cfg.attach_vlan);
        if cfg.attach_vlan == 0
            && cfg.attach_ifindex < ATTACH_PORT_MAX
            && self.whole_port.get(&cfg.attach_ifindex, 0).ok() == Some(idx + 1)
        {
            self.whole_port.set(cfg.attach_ifindex, 0, 0)?;
        }
        if self.attach.get(&key) == Some(&idx) {
            self.by_attach.remove(&key)?;
            self.attach.remove(&key);
        }
        self.cfg.set(idx, zeroed_config(), 0)?;
        self.used.remove(&idx);
        self.ids.remove(&local_session_id);
        if let Some(m) = self.meta.get_mut(idx as usize) {
            *m = Meta::default();
        }
        Ok(())
    }

    /// The next hop the data path cached for slot `idx` (`None`: pins of
    /// an older object, without the cache).
    pub fn next_hop(&self, idx: u32) -> Result<Option<l2tp_common::session::NextHop>> {
        match &self.next_hop {
            Some(m) => Ok(Some(m.get(&idx, 0)?)),
            None => Ok(None),
        }
    }

    pub fn config(&self, idx: u32) -> Result<SessionConfig> {
        Ok(self.cfg.get(&idx, 0)?)
    }

    /// Both sides' state of slot `idx` (two map reads, not one snapshot).
    pub fn state(&self, idx: u32) -> Result<SessionState> {
        Ok(SessionState::new(self.rx_state(idx)?, self.tx_state(idx)?))
    }

    /// Receive state of slot `idx`, as `l2tp_uplink` keeps it.
    pub fn rx_state(&self, idx: u32) -> Result<SessionRxState> {
        Ok(self.rx_state.get(&idx, 0)?)
    }

    /// Transmit state of slot `idx`, as `l2tp_attach` keeps it.
    pub fn tx_state(&self, idx: u32) -> Result<SessionTxState> {
        Ok(self.tx_state.get(&idx, 0)?)
    }

    /// The counters of slot `idx`, summed over the CPUs.
    pub fn stats(&self, idx: u32) -> Result<SessionStats> {
        let per_cpu = (0..self.stat_cpus)
            .map(|cpu| self.stats.get(&(cpu * MAX_SESSIONS + idx), 0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(sum_stats(per_cpu.iter()))
    }

    /// Posts a command to the program that owns what it changes: receive
    /// commands (ENTER_RESYNC, SET_MODE, RESET_NR) to `l2tp_uplink`, which
    /// applies them on the session's next good received frame; RESET_NS to
    /// `l2tp_attach`, on the next customer frame. Each is applied exactly
    /// once. Each side holds one pending command: a new one replaces one of
    /// the same side not applied yet (the daemon never needs two at once: a
    /// rebuilt session starts with Ns 0, so recovery only posts
    /// ENTER_RESYNC). Returns the command's epoch, which that side's
    /// `applied_epoch` shows once applied.
    pub fn post(&mut self, idx: u32, command: Command) -> Result<u32> {
        // The side's last epoch, known without reading the maps: a side
        // applies only epochs this table posted.
        let last = self.meta_epoch(idx, command.is_tx())?;

        let epoch = last.wrapping_add(1).max(1);
        let (op, value, n) = match command {
            Command::ResetNs(ns) => (cmd::RESET_NS, ns, 0),
            Command::EnterResync { n } => (cmd::ENTER_RESYNC, u32::from(n.max(1)), 0),
            Command::SetMode(RxMode::AcceptNew) => (cmd::SET_MODE, u32::from(rx_mode::ACCEPT_NEW), 1),
            Command::SetMode(RxMode::Strict { n }) => (cmd::SET_MODE, u32::from(rx_mode::STRICT), u32::from(n.max(1))),
            Command::SetMode(RxMode::Resync { n, .. }) => {
                (cmd::SET_MODE, u32::from(rx_mode::RESYNC), u32::from(n.max(1)))
            }
            Command::ResetNr => (cmd::RESET_NR, 0, 0),
        };
        debug_assert_eq!(cmd::is_tx(op), command.is_tx());
        let c = SessionCommand { epoch_begin: epoch, op, value, n, epoch_end: epoch, _pad: 0 };
        if self.command_slots(command.is_tx()).and_then(|m| m.post(idx, c)).is_none() {
            let slot = if command.is_tx() { &mut self.tx_cmd } else { &mut self.rx_cmd };
            slot.set(idx, c, 0)?;
        }
        let m = self.meta_mut(idx);
        if command.is_tx() {
            m.tx_epoch = Some(epoch);
        } else {
            m.rx_epoch = Some(epoch);
        }
        Ok(epoch)
    }

    /// Whether commands are posted through the mapped command slots (else
    /// by one syscall each).
    pub fn commands_mapped(&mut self) -> bool {
        self.command_slots(false).is_some() && self.command_slots(true).is_some()
    }

    /// One side's mapped command slots, mapped on first use.
    fn command_slots(&mut self, tx: bool) -> Option<&super::mapped::Mapped<SessionCommand>> {
        let (slots, array) = if tx { (&mut self.tx_slots, &self.tx_cmd) } else { (&mut self.rx_slots, &self.rx_cmd) };
        slots.get_or_insert_with(|| super::mapped::Mapped::map(array.map())).as_ref()
    }

    /// `SESSION_CFG` mapped, on first use.
    pub(super) fn cfg_slots(&mut self) -> Option<&super::mapped::Mapped<SessionConfig>> {
        let cfg = &self.cfg;
        self.cfg_slots.get_or_insert_with(|| super::mapped::Mapped::map(cfg.map())).as_ref()
    }

    /// Installed sessions as `(index, local session ID)`.
    pub fn list(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.ids.iter().map(|(id, idx)| (*idx, *id)).collect();
        v.sort();
        v
    }
}

fn zeroed_config() -> SessionConfig {
    SessionConfig {
        flags: 0,
        local_session_id: 0,
        peer_session_id: 0,
        attach_ifindex: 0,
        uplink_ifindex: 0,
        rx_cookie: [0; 8],
        tx_cookie: [0; 8],
        rx_cookie_len: 0,
        tx_cookie_len: 0,
        rx_mode: 0,
        _pad0: 0,
        resync_n: 0,
        uplink_mtu: 0,
        hdr_len: 0,
        ip4_csum_base: 0,
        attach_vlan: 0,
        uplink_port: 0,
        attach_port: 0,
        local_addr: [0; 8],
        hdr: [0; HDR_TEMPLATE_MAX],
        _pad1: [0; 2],
    }
}
