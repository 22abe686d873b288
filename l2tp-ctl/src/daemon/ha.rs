//! The hot standby on another host (issue 14): the partner channel, the
//! replication of the store to the standby, failure detection, takeover
//! through RFC 4951 recovery, and stepping down.
//!
//! The protocol is `l2tp_ha`'s sans-IO [`Partner`]; `ha_link.rs` moves its
//! messages over one TCP connection secured by Noise `NNpsk0` (the key
//! from `ha.key_file`); this file runs its probes of the service address
//! and carries out what it decides:
//! - active: every store change is replicated as a numbered update; the
//!   standby asks for a snapshot on connect;
//! - standby: replicated records go into its own store, exactly the
//!   records a restart would recover from; no service address, no
//!   tunnels, no forwarding;
//! - takeover: the service address taken and announced, the standby's
//!   warm sessions activated (`warm.rs`: Ns from 0 and Nr resynchronised,
//!   F-DC-1, F-DC-3), then the replicated tunnels recovered as on a restart
//!   (RFC 4951 recovery endpoint, the old tunnel IDs); tunnels that are not
//!   failover capable are cleared and brought up anew if configured;
//! - step down (a higher term met): the service address given up at once,
//!   every tunnel forgotten without a word to the peer (the new active
//!   recovers them), and a fresh snapshot taken.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use l2tp_ha::{HaEvent, Msg, Partner, PartnerState, Role};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use l2tp_proto::engine::{RestoredSession, TunnelId};

use super::{
    persist::{self, session_key, UpSession},
    Daemon,
};
use crate::{api::HaView, config, service_addr, store::SessionRecord};

/// Store keys of what outlives tunnels.
const TERM_KEY: &str = "ha.term";
const ROLE_KEY: &str = "ha.role";
/// Pause between attempts to (re)connect to the partner.
pub(super) const RECONNECT: Duration = Duration::from_millis(200);

/// What the partner connection task reports to the daemon.
#[derive(Debug)]
pub(super) enum HaInput {
    /// The channel is up (authenticated); messages for the partner go here.
    Up(mpsc::Sender<Vec<u8>>),
    Down,
    /// One authenticated message's plaintext.
    Msg(Vec<u8>),
    /// The answer to a probe of the service address.
    Probe(bool),
}

#[derive(Debug)]
pub(super) struct HaState {
    pub cfg: config::Ha,
    pub partner: Partner,
    link: Option<mpsc::Sender<Vec<u8>>>,
    /// Standby: the records of a snapshot being received.
    snapshot: Vec<(String, Option<Vec<u8>>)>,
    inputs: mpsc::Sender<HaInput>,
    /// The interface of the service address.
    iface: String,
    pub takeovers: u64,
    /// Unix ms of the last takeover.
    last_takeover: Option<u64>,
    /// Synchronous replication: sessions whose establishing message waits
    /// for the standby's acknowledgement of the update numbered by the key.
    held: std::collections::BTreeMap<u64, Vec<(TunnelId, u32)>>,
    /// Standby: the replicated sessions installed inactive.
    pub warm: super::warm::Warm,
    /// Standby: numbered updates not yet durable (one store commit per
    /// burst), and the number of the last.
    updates: Vec<(String, Option<Vec<u8>>)>,
    updates_seq: u64,
}

impl HaState {
    /// Reads the key, the persisted term and role, and starts the partner
    /// connection task.
    pub fn start(
        cfg: &config::Ha,
        iface: String,
        term: u64,
        role: Option<Role>,
    ) -> anyhow::Result<(Self, mpsc::Receiver<HaInput>)> {
        let key = std::fs::read(&cfg.key_file)
            .with_context(|| format!("ha.key_file {}: cannot read the partner key", cfg.key_file.display()))?;
        let psk = l2tp_ha::psk_from_file_contents(&key).map_err(|e| anyhow::anyhow!("ha.key_file: {e}"))?;
        let (tx, rx) = mpsc::channel(4096);
        let now = Instant::now();
        let partner = Partner::new(cfg.partner_config(), now, term, role);
        tokio::spawn(super::ha_link::link_task(cfg.listen, cfg.partner, psk, tx.clone()));
        let s = Self {
            cfg: cfg.clone(),
            partner,
            link: None,
            snapshot: Vec::new(),
            inputs: tx,
            iface,
            takeovers: 0,
            last_takeover: None,
            held: std::collections::BTreeMap::new(),
            warm: Default::default(),
            updates: Vec::new(),
            updates_seq: 0,
        };
        Ok((s, rx))
    }

    pub fn role(&self) -> Role {
        self.partner.role()
    }

    pub fn view(&self) -> HaView {
        let (unacked, oldest) = self.partner.lag(Instant::now());
        HaView {
            node: self.cfg.node.clone(),
            role: self.partner.role().as_str().into(),
            partner_state: self.partner.state().as_str().into(),
            term: self.partner.term(),
            connected: self.link.is_some(),
            seq: self.partner.seq(),
            unacknowledged: unacked as u64,
            oldest_unacknowledged_ms: oldest.map(|d| d.as_millis() as u64),
            service_address: self.cfg.service_address.clone(),
            takeovers: self.takeovers,
            last_takeover_ms: self.last_takeover,
            warm_sessions: self.warm.sessions() as u64,
            warm_failed: self.warm.failed,
        }
    }

    /// Sends what the partner state machine queued.
    fn transmit(&mut self) {
        while let Some(m) = self.partner.poll_transmit() {
            let Some(link) = &self.link else { continue };
            match m.encode() {
                Ok(bytes) => {
                    if link.try_send(bytes).is_err() {
                        // The connection is gone or hopelessly behind: it
                        // is dropped, and the standby resynchronises.
                        warn!("partner channel backlog full: reconnecting");
                        self.link = None;
                    }
                }
                Err(e) => error!("partner message not sent: {e}"),
            }
        }
    }

    /// Announces the service address again (in the background: it takes
    /// about 100 ms).
    fn announce(&self) {
        let (iface, addrs) = (self.iface.clone(), self.cfg.service_address.clone());
        tokio::task::spawn_blocking(move || {
            for a in addrs {
                if let Err(e) = service_addr::announce(&iface, a) {
                    warn!("announcing the service address {a}: {e}");
                }
            }
        });
    }

    fn probe(&self) {
        let (iface, addrs, tx) = (self.iface.clone(), self.cfg.service_address.clone(), self.inputs.clone());
        // As long as the partner state machine began it before `dead_ms`
        // ran out.
        let timeout = self.partner.config().probe;
        tokio::task::spawn_blocking(move || {
            // Answered when anybody answers for any service address.
            let answered = addrs.iter().any(|a| match service_addr::probe(&iface, *a, timeout) {
                Ok(yes) => yes,
                Err(e) => {
                    // A probe we cannot make proves nothing: no takeover.
                    warn!("probe of the service address {a}: {e}");
                    true
                }
            });
            let _ = tx.blocking_send(HaInput::Probe(answered));
        });
    }
}

impl Daemon {
    /// The persisted term and role of the hot standby.
    pub(super) fn ha_persisted(&self) -> anyhow::Result<(u64, Option<Role>)> {
        let term = match self.store.meta(TERM_KEY)? {
            Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
            None => 0,
        };
        let role = self.store.meta(ROLE_KEY)?.and_then(|v| match v.as_slice() {
            b"active" => Some(Role::Active),
            b"standby" => Some(Role::Standby),
            _ => None,
        });
        Ok((term, role))
    }

    fn ha_persist_role(&mut self, term: u64, role: Role) {
        let r = self.store.put_meta(TERM_KEY, term.to_string().as_bytes());
        let r = r.and_then(|()| self.store.put_meta(ROLE_KEY, role.as_str().as_bytes()));
        if let Err(e) = r {
            // Without it a restart could come back in the wrong role.
            error!("hot standby: term and role not persisted: {e}");
        }
    }

    /// One input from the partner connection task.
    /// One input and whatever else has arrived: the updates of a burst are
    /// made durable in one store commit (one per update let a standby fall
    /// seconds behind a setup burst).
    pub(super) fn on_ha_inputs(&mut self, first: HaInput, more: &mut mpsc::Receiver<HaInput>) {
        self.ha_input(first);
        for _ in 0..256 {
            let Ok(input) = more.try_recv() else { break };
            self.ha_input(input);
        }
        self.ha_drive();
    }

    fn ha_input(&mut self, input: HaInput) {
        let now = Self::now();
        let Some(ha) = &mut self.ha else { return };
        match input {
            HaInput::Up(link) => {
                info!("partner channel up");
                ha.link = Some(link);
                ha.partner.connected(now);
            }
            HaInput::Down => {
                ha.link = None;
                ha.partner.disconnected(now);
            }
            HaInput::Msg(bytes) => match Msg::decode(&bytes) {
                Ok(m) => ha.partner.handle_msg(now, m),
                Err(e) => warn!("partner message dropped: {e}"),
            },
            HaInput::Probe(answered) => {
                if answered {
                    info!("the service address still answers: the active is alive, staying standby");
                }
                ha.partner.probe_result(now, answered);
            }
        }
    }

    /// Timers of the partner state machine.
    pub(super) fn ha_timeout(&mut self) {
        if let Some(ha) = &mut self.ha {
            ha.partner.handle_timeout(Self::now());
        }
        self.ha_drive();
    }

    pub(super) fn ha_deadline(&self) -> Option<Instant> {
        self.ha.as_ref().and_then(|h| h.partner.poll_timeout())
    }

    /// Replicates the store's changes (active), sends what is queued and
    /// carries out the partner state machine's decisions.
    pub(super) fn ha_drive(&mut self) {
        let Some(ha) = &mut self.ha else { return };
        if ha.partner.role() == Role::Active {
            let now = Self::now();
            for (key, value) in self.store.take_changes() {
                ha.partner.replicate(now, key, value);
            }
        }
        loop {
            let Some(ha) = &mut self.ha else { return };
            ha.transmit();
            let Some(e) = ha.partner.poll_event() else { break };
            // Consecutive numbered updates are made durable together,
            // before anything else happens.
            if !matches!(e, HaEvent::Apply { seq: Some(_), .. }) {
                self.apply_updates();
            }
            self.on_ha_event(e);
        }
        self.apply_updates();
        if let Some(ha) = &mut self.ha {
            ha.transmit();
        }
    }

    /// Standby: the numbered updates received so far into the store in one
    /// commit, then acknowledged up to the last (acknowledgements are
    /// cumulative) and mirrored into the warm data plane.
    fn apply_updates(&mut self) {
        let Some(ha) = self.ha.as_mut().filter(|h| !h.updates.is_empty()) else { return };
        let records = std::mem::take(&mut ha.updates);
        let seq = ha.updates_seq;
        match self.store.apply_replicated(&records) {
            Ok(applied) => {
                if let Some(ha) = &mut self.ha {
                    ha.partner.durable(seq);
                }
                self.warm(applied, false);
            }
            // Not acknowledged: the active keeps them as lag.
            Err(e) => error!(seq, updates = records.len(), "replicated updates not stored: {e}"),
        }
    }

    fn on_ha_event(&mut self, e: HaEvent) {
        let now = Self::now();
        match e {
            HaEvent::Term { term } => {
                let role = self.ha.as_ref().map_or(Role::Standby, HaState::role);
                self.ha_persist_role(term, role);
            }
            HaEvent::TakeOver { term } => {
                self.ha_persist_role(term, Role::Active);
                self.take_over(term);
            }
            HaEvent::StepDown { term, handover } => {
                self.ha_persist_role(term, Role::Standby);
                self.step_down(term, handover);
            }
            HaEvent::Probe => {
                if let Some(ha) = &self.ha {
                    ha.probe();
                }
            }
            HaEvent::SnapshotWanted => match self.store.snapshot() {
                Ok(records) => {
                    if let Some(ha) = &mut self.ha {
                        info!(records = records.len(), "sending the standby a snapshot");
                        ha.partner.send_snapshot(now, records);
                    }
                }
                Err(e) => error!("snapshot for the standby not read: {e}"),
            },
            HaEvent::SnapshotBegin => {
                if let Some(ha) = &mut self.ha {
                    ha.snapshot.clear();
                }
            }
            HaEvent::Apply { seq: None, key, value } => {
                if let Some(ha) = &mut self.ha {
                    ha.snapshot.push((key, value));
                }
            }
            HaEvent::SnapshotEnd { seq } => {
                let records = self.ha.as_mut().map(|h| std::mem::take(&mut h.snapshot)).unwrap_or_default();
                // The copy is replaced as a whole: what the active no longer
                // has goes.
                let r = self.store.clear().and_then(|()| self.store.apply_replicated(&records));
                match r {
                    Ok(applied) => {
                        info!(records = records.len(), seq, "snapshot from the active stored");
                        if let Some(ha) = &mut self.ha {
                            ha.partner.durable(seq);
                        }
                        self.warm(applied, true);
                    }
                    Err(e) => error!("snapshot from the active not stored: {e}"),
                }
            }
            HaEvent::Apply { seq: Some(seq), key, value } => {
                if let Some(ha) = &mut self.ha {
                    ha.updates.push((key, value));
                    ha.updates_seq = seq;
                }
            }
            HaEvent::Acked { seq } => {
                let Some(ha) = &mut self.ha else { return };
                let later = ha.held.split_off(&(seq + 1));
                let done = std::mem::replace(&mut ha.held, later);
                self.release_held(done.into_values().flatten());
            }
            HaEvent::State { from, to } => {
                let what = match (from, to) {
                    (_, PartnerState::Normal | PartnerState::Recover) => "ha-partner-up",
                    (_, PartnerState::CommunicationsInterrupted) => "ha-partner-down",
                    _ => "ha-partner-state",
                };
                self.emit(what, None, None, None, format!("partner state {} -> {}", from.as_str(), to.as_str()));
                if to != PartnerState::Normal {
                    // Nobody will acknowledge: the held sessions go on
                    // without the standby (its FSQ after a takeover, or the
                    // snapshot, reconciles them).
                    let held = self.ha.as_mut().map(|h| std::mem::take(&mut h.held)).unwrap_or_default();
                    self.release_held(held.into_values().flatten());
                }
                if let Some(ha) = self.ha.as_ref().filter(|h| h.role() == Role::Active && to == PartnerState::Normal) {
                    // The partner is back: if it held the service address
                    // while cut off, the link's caches may point at it.
                    ha.announce();
                }
            }
            HaEvent::Violation { what } => warn!("partner: {what}"),
        }
    }

    /// Synchronous replication (`ha.sync`): a session the peer may consider
    /// established once our next message arrives is replicated first, as
    /// a record the standby stores; the message goes when the standby has
    /// acknowledged it. Answered-but-unconfirmed on the standby, it is
    /// recovered after a takeover and confirmed or cleared by FSQ/FSR
    /// (RFC 4951 F-SS-8). Without a reachable, synchronised standby the
    /// message goes at once.
    pub(super) fn replicate_before_establishing(&mut self, tunnel: TunnelId, session: RestoredSession) {
        let now = Self::now();
        let sid = session.local_id;
        let replicating = self.ha.as_ref().is_some_and(|h| h.partner.replicating());
        let record = replicating.then(|| self.pending_record(tunnel, &session)).flatten();
        if let (Some(rec), Some(ha)) = (record, self.ha.as_mut()) {
            match serde_json::to_vec(&rec) {
                Ok(value) => {
                    let seq = ha.partner.replicate(now, session_key(tunnel, sid), Some(value));
                    ha.held.entry(seq).or_default().push((tunnel, sid));
                    return;
                }
                Err(e) => error!("session record not replicated: {e}"),
            }
        }
        self.release_held([(tunnel, sid)]);
    }

    /// The record of a session not established yet, as the standby keeps
    /// it.
    fn pending_record(&self, tunnel: TunnelId, s: &RestoredSession) -> Option<SessionRecord> {
        let tname = self.reg.name_of(tunnel)?;
        let slot = self.reg.get(tname)?;
        let rid = String::from_utf8_lossy(&s.params.remote_end_id).into_owned();
        let scfg = slot.cfg.sessions.iter().find(|c| c.remote_end_id() == rid);
        let up = UpSession {
            tunnel,
            name: scfg.map_or_else(|| s.local_id.to_string(), |c| c.name.clone()),
            local_id: s.local_id,
            peer_id: s.peer_id,
            remote_end_id: rid,
            pw_type: s.params.pw_type,
            rx_cookie: s.rx_cookie.clone(),
            tx_cookie: s.tx_cookie.clone(),
            sublayer: s.params.sublayer || s.params.sequencing,
            sequencing: s.params.sequencing,
        };
        Some(persist::session_record(up, scfg))
    }

    fn release_held(&mut self, sessions: impl IntoIterator<Item = (TunnelId, u32)>) {
        let now = Self::now();
        for (tunnel, sid) in sessions {
            // Gone meanwhile (CDN, StopCCN): nothing to release.
            if let Err(e) = self.engine.session_replicated(now, tunnel, sid) {
                debug!(tunnel, sid, "held session: {e}");
            }
        }
    }

    /// Becomes the active: the service address, then recovery of every
    /// replicated tunnel as on a restart.
    fn take_over(&mut self, term: u64) {
        let Some(ha) = &mut self.ha else { return };
        ha.takeovers += 1;
        ha.last_takeover = Some(crate::store::now_ms());
        let (iface, addrs) = (ha.iface.clone(), ha.cfg.service_address.clone());
        // 1. Take the service address and announce it.
        for a in &addrs {
            if let Err(e) = service_addr::add(&iface, *a) {
                error!("taking the service address {a} on {iface}: {e}");
            }
            // The first announcement now, before the recovery SCCRQs; the
            // second later, off the event loop (it waits 100 ms).
            if let Err(e) = service_addr::announce_once(&iface, *a) {
                warn!("announcing the service address {a}: {e}");
            }
        }
        {
            let (iface, addrs) = (iface.clone(), addrs.clone());
            tokio::task::spawn_blocking(move || {
                std::thread::sleep(service_addr::ANNOUNCE_INTERVAL);
                for a in addrs {
                    if let Err(e) = service_addr::announce_once(&iface, a) {
                        warn!("announcing the service address {a} again: {e}");
                    }
                }
            });
        }
        // 2. The warm sessions start forwarding, one map update each, with
        // the state they were installed with: Ns from 0 (F-DC-1), Nr set
        // by the peer's next packet and resynchronised after n once the
        // tunnel is recovered (F-DC-3).
        let warm = self.warm_activate();
        info!(sessions = warm, "warm sessions activated");
        self.store.record_changes(true);
        // 3. RFC 4951 recovery of every failover-capable tunnel with its old
        // IDs (a replicated session that was not warm is installed from the
        // store first); 4. the others cleared, and brought up anew if
        // configured.
        self.dp_rebuilt = true;
        if let Err(e) = self.previous_run() {
            error!("takeover: replicated state not recovered: {e:#}");
        }
        let idle: Vec<String> =
            self.reg.iter().filter(|(_, s)| s.id().is_none() && s.cfg.initiate).map(|(n, _)| n.clone()).collect();
        for name in idle {
            self.connect(&name);
        }
        self.emit(
            "ha-takeover",
            None,
            None,
            None,
            format!(
                "active with term {term} (service address {}, {warm} warm session(s) activated)",
                fmt_addrs(&addrs)
            ),
        );
    }

    /// Becomes a standby: the service address given up at once, every
    /// tunnel forgotten silently (the new active recovers them).
    /// Removes the service address from its interface.
    pub(super) fn give_up_service_address(&self) {
        let Some(ha) = &self.ha else { return };
        for a in &ha.cfg.service_address {
            if let Err(e) = service_addr::remove(&ha.iface, *a) {
                error!("giving up the service address {a} on {}: {e}", ha.iface);
            }
        }
    }

    fn step_down(&mut self, term: u64, handover: bool) {
        self.give_up_service_address();
        self.store.record_changes(false);
        self.forget_everything();
        if handover {
            self.emit(
                "ha-switchover",
                None,
                None,
                None,
                format!("handed the active role to the partner (term {term})"),
            );
        } else {
            // Two actives met (a partition healed): the higher term won.
            self.emit("ha-split-brain-resolved", None, None, None, format!("standby: the partner holds term {term}"));
        }
        self.emit("ha-standby", None, None, None, "gave up the service address; a fresh snapshot follows".into());
    }

    /// Drops every tunnel and session without a message to the peers, and
    /// empties the data plane; the engine starts afresh.
    pub(super) fn forget_everything(&mut self) {
        let ids: Vec<_> = self.reg.iter().filter_map(|(_, s)| s.id()).collect();
        for id in ids {
            let gone = self.reg.take_sessions(id);
            if let Some(dp) = &mut self.dp {
                dp.uninstall(gone.iter().map(|(sid, s)| (*sid, s)));
            }
            self.reg.unbind(id);
        }
        if let Some(dp) = &mut self.dp {
            if let Err(e) = dp.remove_unless(|_| false) {
                error!("standby: data plane sessions not removed: {e:#}");
            }
        }
        self.engine = l2tp_proto::engine::Engine::new(
            self.cfg.engine(),
            Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_entropy()),
        );
        let peers: Vec<_> = self
            .reg
            .iter()
            .map(|(_, s)| (s.cfg.peer, s.cfg.tunnel_params(s.secret.as_ref(), &self.cfg.global)))
            .collect();
        for (peer, params) in peers {
            self.engine.set_peer(peer, params);
        }
    }

    /// `l2tp-ctl ha takeover` (keepalived's notify_master): take over now.
    pub(super) fn ha_takeover(&mut self) -> anyhow::Result<String> {
        let Some(ha) = &mut self.ha else { anyhow::bail!("no [ha] section is configured") };
        if !ha.partner.takeover(Self::now()) {
            return Ok("already active".into());
        }
        self.ha_drive();
        Ok("taking over".into())
    }

    /// `l2tp-ctl ha switchover`: hands the active role to the standby
    /// (maintenance), with no detection delay.
    pub(super) fn ha_switchover(&mut self) -> anyhow::Result<String> {
        let Some(ha) = &mut self.ha else { anyhow::bail!("no [ha] section is configured") };
        if ha.partner.role() != Role::Active {
            anyhow::bail!("this daemon is not the active one");
        }
        if !ha.partner.switchover(Self::now()) {
            anyhow::bail!("the partner cannot take over now: it is not reachable with a complete copy (see ha status)");
        }
        self.ha_drive();
        Ok("switching over: the partner takes the service address and recovers the tunnels".into())
    }

    /// Whether this daemon serves (no standby pair, or the active of one).
    pub(super) fn serving(&self) -> bool {
        self.ha.as_ref().is_none_or(|h| h.role() == Role::Active)
    }
}

fn fmt_addrs(a: &[IpAddr]) -> String {
    a.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
