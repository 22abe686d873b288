//! Data-plane programming: the pinned XDP programs and maps, the session
//! table opened once over them, and the interface and route facts that
//! installing a session needs. Every change goes through `&mut self`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use l2tp_proto::wire::Transport;
use tracing::{debug, error, info, warn};

use super::registry::SessionSlot;
use crate::{
    config::{self, Encapsulation, SessionConfig, TunnelConfig},
    dataplane::{
        self, session::Command, AttachMode, Cookie, DataplaneError, Pinned, Role, SessionParams, SessionTable,
    },
};

/// What the wire says about one session, for [`DataPlane::install`].
#[derive(Debug)]
pub(super) struct Wire<'a> {
    pub peer: SocketAddr,
    pub transport: Transport,
    pub local_session_id: u32,
    pub peer_session_id: u32,
    pub rx_cookie: &'a [u8],
    pub tx_cookie: &'a [u8],
    pub sublayer: bool,
    pub sequencing: bool,
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

impl NetFacts {
    fn source(&mut self, peer: IpAddr) -> anyhow::Result<IpAddr> {
        if let Some(l) = self.source.get(&peer) {
            return Ok(*l);
        }
        let l = source_for(peer)?;
        self.source.insert(peer, l);
        Ok(l)
    }

    fn uplink(&mut self, uplink: &str) -> anyhow::Result<([u8; 6], u32, u16)> {
        if let Some(f) = self.uplinks.get(uplink) {
            return Ok(*f);
        }
        let f = (
            dataplane::hwaddr(uplink)?,
            dataplane::ifindex(uplink)?,
            dataplane::mtu(uplink)?.min(u32::from(u16::MAX)) as u16,
        );
        self.uplinks.insert(uplink.to_owned(), f);
        Ok(f)
    }

    fn ifindex(&mut self, iface: &str) -> anyhow::Result<u32> {
        if let Some(i) = self.ifindex.get(iface) {
            return Ok(*i);
        }
        let i = dataplane::ifindex(iface)?;
        self.ifindex.insert(iface.to_owned(), i);
        Ok(i)
    }
}

/// Whether session maps are pinned under `dir` (a load then reuses them,
/// with whatever they hold).
fn maps_pinned(dir: &Path) -> bool {
    dataplane::map_pin(dir, l2tp_common::session::MAP_SESSION_CFG).exists()
}

/// Our address towards `peer`, as the kernel would choose it.
fn source_for(peer: IpAddr) -> anyhow::Result<IpAddr> {
    let any: IpAddr = if peer.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(SocketAddr::new(peer, 1701)).with_context(|| format!("no route to {peer}"))?;
    Ok(s.local_addr()?.ip())
}

/// The pinned data plane as the daemon programs it.
pub(super) struct DataPlane {
    pinned: Pinned,
    /// The session maps of `pinned`, opened once (opening reads every entry).
    table: SessionTable,
    facts: NetFacts,
    mode: AttachMode,
    enable_forwarding: bool,
    /// Interfaces with our attachment, as this daemon made them (read from
    /// the pins once: a directory read per interface was quadratic in
    /// tunnels at start-up).
    attached: Option<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").field("dir", &self.pinned.dir()).finish_non_exhaustive()
    }
}

impl DataPlane {
    /// Opens the pinned data plane, or creates it. The flag says it had to
    /// be created: it did not survive the previous run.
    pub fn open(cfg: &config::Dataplane) -> anyhow::Result<(Self, bool)> {
        let mut created = Pinned::open(&cfg.pin_dir).is_err();
        let mut fresh_maps = !maps_pinned(&cfg.pin_dir);
        let mut pinned = Pinned::open_or_create(&cfg.pin_dir).context("data plane")?;
        let mut table = match pinned.sessions() {
            Err(DataplaneError::Incompatible(why)) if !created => {
                // Pins of an earlier version (an upgrade): rebuilt from the
                // store like a lost data plane (RFC 4951 data channel
                // reset, F-DC-1/F-DC-3), not used half-understood.
                warn!(
                    dir = %cfg.pin_dir.display(),
                    "the pinned data plane is another version's ({why}): removing it and rebuilding it from the store"
                );
                pinned.destroy().context("removing the earlier version's data plane")?;
                (created, fresh_maps) = (true, true);
                pinned = Pinned::open_or_create(&cfg.pin_dir).context("data plane")?;
                pinned.sessions()
            }
            t => t,
        }
        .context("data plane session maps")?;
        if fresh_maps {
            table.assume_pristine();
        }
        let dp = Self {
            pinned,
            table,
            facts: NetFacts::default(),
            mode: cfg.xdp_mode.into(),
            enable_forwarding: cfg.enable_forwarding,
            attached: None,
        };
        Ok((dp, created))
    }

    pub fn dir(&self) -> &Path {
        self.pinned.dir()
    }

    /// The pins are gone (removed under us: a data channel failure).
    pub fn is_lost(&self) -> bool {
        Pinned::open(self.pinned.dir()).is_err()
    }

    /// Loads and pins the data plane afresh (empty maps).
    pub fn recreate(&mut self) -> anyhow::Result<()> {
        let fresh_maps = !maps_pinned(self.pinned.dir());
        let pinned = Pinned::open_or_create(self.pinned.dir())?;
        let mut table = pinned.sessions()?;
        if fresh_maps {
            table.assume_pristine();
        }
        self.pinned = pinned;
        self.table = table;
        self.facts = NetFacts::default();
        self.attached = None;
        Ok(())
    }

    /// A route, neighbour or link changed: every cached next hop is looked
    /// up again on its session's next frame.
    pub fn invalidate_next_hops(&mut self) {
        if let Err(e) = self.table.invalidate_next_hops() {
            debug!("next-hop cache not invalidated: {e}");
        }
    }

    /// Forgets the interface and route facts (read again on next use).
    pub fn forget_facts(&mut self) {
        self.facts = NetFacts::default();
    }

    /// Attaches `role`'s program to `iface` unless it already is.
    pub fn ensure_attached(&mut self, iface: &str, role: Role) -> anyhow::Result<()> {
        if self.attached_set()?.contains(iface) {
            return Ok(());
        }
        let mode = self.pinned.attach(iface, role, self.mode).with_context(|| format!("attaching XDP to {iface}"))?;
        self.attached_set()?.insert(iface.to_owned());
        if role == Role::Uplink && self.enable_forwarding {
            dataplane::enable_forwarding(iface)?;
        }
        info!(iface, ?role, ?mode, "XDP attached");
        Ok(())
    }

    /// Detaches from `iface` if attached.
    pub fn detach(&mut self, iface: &str) -> anyhow::Result<()> {
        if self.attached_set()?.contains(iface) {
            self.pinned.detach(iface)?;
            self.attached_set()?.remove(iface);
        }
        Ok(())
    }

    fn attached_set(&mut self) -> anyhow::Result<&mut std::collections::HashSet<String>> {
        if self.attached.is_none() {
            self.attached = Some(self.pinned.attached()?.into_iter().collect());
        }
        Ok(self.attached.get_or_insert_with(Default::default))
    }

    /// Installs pseudowires of tunnel `t` (sessions that came up together,
    /// or a data plane rebuilt from the store): their map writes go by
    /// batch. `standby`: inactive, a hot standby's warm sessions
    /// (forwarding nothing until [`Self::activate_all`]). One result per
    /// session, in order.
    pub fn install_many(
        &mut self,
        uplink: &str,
        t: &TunnelConfig,
        sessions: &[(&SessionConfig, Wire<'_>)],
        standby: bool,
    ) -> Vec<anyhow::Result<()>> {
        let mut results: Vec<anyhow::Result<()>> = Vec::with_capacity(sessions.len());
        let (mut params, mut at) = (Vec::new(), Vec::new());
        for (i, (s, w)) in sessions.iter().enumerate() {
            match self.params(uplink, t, s, w, standby) {
                Ok(p) => {
                    params.push(p);
                    at.push(i);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        for (i, r) in at.into_iter().zip(self.table.add_many(&params)) {
            if let Err(e) = r {
                results[i] = Err(e.into());
            }
        }
        results
    }

    /// The data-plane parameters of a session.
    fn params(
        &mut self,
        uplink: &str,
        t: &TunnelConfig,
        s: &SessionConfig,
        w: &Wire<'_>,
        standby: bool,
    ) -> anyhow::Result<SessionParams> {
        let local = match t.local {
            Some(l) => l,
            None => self.facts.source(w.peer.ip())?,
        };
        let (uplink_mac, uplink_ifindex, uplink_mtu) = self.facts.uplink(uplink)?;
        let attach_ifindex = self.facts.ifindex(&s.interface)?;
        Ok(SessionParams {
            local_session_id: w.local_session_id,
            peer_session_id: w.peer_session_id,
            encap: Encapsulation::from(w.transport).dataplane(w.peer.port()),
            local_addr: local,
            peer_addr: w.peer.ip(),
            local_mac: uplink_mac,
            next_hop_mac: t.next_hop_mac().unwrap_or_default(),
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
            udp6_zero_checksum: t.udp6_zero_checksum,
            standby,
        })
    }

    /// Takeover: every session installed inactive starts forwarding, one
    /// map update each (see [`SessionTable::activate`]). Returns how many.
    pub fn activate_all(&mut self) -> usize {
        let (n, errors) = self.table.activate_all();
        for (sid, e) in errors {
            error!(sid, "activating a warm session: {e}");
        }
        n
    }

    /// Whether a session receiving on `sid` is installed.
    pub fn has(&self, sid: u32) -> bool {
        self.table.index_of(sid).is_some()
    }

    /// Removes the installed ones of `sessions`; errors are logged.
    pub fn uninstall<'a>(&mut self, sessions: impl IntoIterator<Item = (u32, &'a SessionSlot)>) {
        for (sid, s) in sessions.into_iter().filter(|(_, s)| s.installed) {
            if let Err(e) = self.table.remove(sid) {
                error!(session = %s.name, "removing from the data plane: {e}");
            }
        }
    }

    /// Removes the session receiving on `sid`.
    pub fn remove(&mut self, sid: u32) -> anyhow::Result<()> {
        Ok(self.table.remove(sid)?)
    }

    /// Removes every installed session `keep` does not want.
    pub fn remove_unless(&mut self, keep: impl Fn(u32) -> bool) -> anyhow::Result<()> {
        for (_, sid) in self.table.list() {
            if !keep(sid) {
                self.table.remove(sid)?;
            }
        }
        Ok(())
    }

    /// F-DC-3: the installed ones of `sids` follow the peer's Ns after `n`
    /// packets (ENTER_RESYNC). `sids` are sessions known to carry sequence
    /// numbers (the engine's or the store's word: a session is installed
    /// only when both directions agree, so these are the ones whose slot
    /// has `SEQ_RX`); no slot's flags are read, which after a restart would
    /// be a syscall per session. Returns how many were posted.
    pub fn enter_resync(&mut self, sids: &[u32], n: u16) -> usize {
        let mut posted = 0;
        for sid in sids {
            if let Some(idx) = self.table.index_of(*sid) {
                posted += usize::from(self.table.post(idx, Command::EnterResync { n }).is_ok());
            }
        }
        posted
    }

    pub fn global_stats(&self) -> anyhow::Result<Vec<(String, u64)>> {
        Ok(self.pinned.global_stats()?.iter().map(|(n, v)| (n.to_owned(), v)).collect())
    }

    /// Detaches everything and removes the pins.
    pub fn destroy(self) -> anyhow::Result<()> {
        drop(self.table);
        self.pinned.destroy().context("removing the data plane")
    }
}
