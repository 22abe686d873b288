//! The partner state machine of one daemon of a hot-standby pair.
//!
//! Inputs: [`Partner::connected`], [`Partner::disconnected`],
//! [`Partner::handle_msg`], [`Partner::handle_timeout`],
//! [`Partner::probe_result`], the commands [`Partner::takeover`],
//! [`Partner::replicate`], [`Partner::send_snapshot`] and
//! [`Partner::durable`]. Outputs: [`Partner::poll_transmit`] (messages for
//! the partner), [`Partner::poll_event`] (what the daemon must do) and
//! [`Partner::poll_timeout`]. Time is injected.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::wire::Msg;

/// Who holds the service address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Holds the service address and is the L2TP endpoint for it.
    Active,
    /// Holds no service address and forwards nothing; keeps a copy of
    /// every tunnel and session, and a warm data plane.
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Standby => "standby",
        }
    }
}

/// This daemon's view of its partnership (DHCP failover's server states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartnerState {
    /// Started; the partner not heard yet.
    Startup,
    /// The partner is reachable and, on a standby, the copy is complete.
    Normal,
    /// A standby receiving a fresh snapshot (on connect, after stepping
    /// down, or after a gap in the updates): it may not take over on this
    /// copy's behalf until it is complete... unless the partner is down.
    Recover,
    /// The partner is unreachable but may be alive: no takeover on that
    /// alone.
    CommunicationsInterrupted,
    /// The partner is known to be down (nobody answers for the service
    /// address, or VRRP said so): this daemon took over.
    PartnerDown,
}

impl PartnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Normal => "normal",
            Self::Recover => "recover",
            Self::CommunicationsInterrupted => "communications-interrupted",
            Self::PartnerDown => "partner-down",
        }
    }
}

/// Who decides that a silent partner is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TakeoverMode {
    /// The standby probes the service address (ARP probe / neighbour
    /// solicitation, as in duplicate address detection) and takes over
    /// only when nobody answers.
    Probe,
    /// An external VRRP instance decides (keepalived `notify_master`
    /// running `l2tp-ctl ha takeover`).
    External,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerConfig {
    /// This daemon's name, unique in the pair (breaks a tie of two actives
    /// of one term: the smaller name stays active).
    pub node: String,
    /// The role it starts in when its store holds none.
    pub role: Role,
    /// Hello interval (HARP), default 100 ms.
    pub hello: Duration,
    /// The partner is unreachable after this long without a message,
    /// default 300 ms.
    pub dead: Duration,
    /// After start, how long a partner never heard from is given before it
    /// counts as unreachable (its host may still be booting), default 3 s.
    pub startup: Duration,
    pub takeover: TakeoverMode,
    /// How long a probe of the service address waits for an answer. The
    /// standby begins it this long before `dead` runs out, so that a probe
    /// nobody answered has ended when the partner counts as unreachable
    /// (see [`probe_time`]).
    pub probe: Duration,
}

/// How long a probe of the service address waits for an answer, for a
/// `dead` timer: half of it, 50 to 150 ms (three probes spread over it). A
/// host on the link answers ARP or neighbour solicitation from its kernel
/// in well under a millisecond.
pub fn probe_time(dead: Duration) -> Duration {
    (dead / 2).clamp(Duration::from_millis(50), Duration::from_millis(150))
}

impl PartnerConfig {
    pub fn new(node: impl Into<String>, role: Role) -> Self {
        Self {
            node: node.into(),
            role,
            hello: Duration::from_millis(100),
            dead: Duration::from_millis(300),
            startup: Duration::from_secs(3),
            takeover: TakeoverMode::Probe,
            probe: probe_time(Duration::from_millis(300)),
        }
    }
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaEvent {
    /// Persist the term (before acting on what comes next).
    Term { term: u64 },
    /// Become active at once: take the service address and announce it,
    /// activate the warm sessions, run RFC 4951 recovery for every
    /// replicated failover-capable tunnel.
    TakeOver { term: u64 },
    /// Give up the service address at once and become standby (a fresh
    /// snapshot follows): a partner of a higher term met (a split brain
    /// resolved), or `handover`, a planned switchover.
    StepDown { term: u64, handover: bool },
    /// Standby: check whether anybody answers for the service address, and
    /// report with [`Partner::probe_result`].
    Probe,
    /// Active: the partner wants everything: call [`Partner::send_snapshot`].
    SnapshotWanted,
    /// Standby: a snapshot starts: the replicated copy is replaced by the
    /// records that follow.
    SnapshotBegin,
    /// Standby: store this record (`None` deletes it). Updates carry their
    /// number: once durable, call [`Partner::durable`] with it.
    Apply { seq: Option<u64>, key: String, value: Option<Vec<u8>> },
    /// Standby: the snapshot is complete and reflects every update up to
    /// `seq`: once it is durable, call [`Partner::durable`] with `seq`.
    SnapshotEnd { seq: u64 },
    /// Active: every update up to `seq` is durable on the standby.
    Acked { seq: u64 },
    /// The partner state changed.
    State { from: PartnerState, to: PartnerState },
    /// A partner message that breaks the protocol (ignored, or answered
    /// with a fresh snapshot request); for the log.
    Violation { what: &'static str },
}

/// One daemon's side of the partnership.
#[derive(Debug)]
pub struct Partner {
    cfg: PartnerConfig,
    role: Role,
    state: PartnerState,
    term: u64,
    started: Instant,
    connected: bool,
    last_heard: Option<Instant>,
    next_hello: Option<Instant>,
    /// Standby: a probe is out, or the next is due at.
    probe_out: bool,
    next_probe: Option<Instant>,
    /// Standby: the silent deadline (see `silent_deadline`) an early probe
    /// was begun for (one per deadline), and the deadline for which one
    /// found nobody. A hello moves the deadline, which voids both.
    early_probe_for: Option<Instant>,
    silent_probe_for: Option<Instant>,
    /// Active: the number of the next update, and the updates sent and not
    /// acknowledged, with when they were made.
    next_seq: u64,
    unacked: VecDeque<(u64, Instant)>,
    /// Active: the partner acknowledged a snapshot and every update since.
    partner_synced: bool,
    snapshot_end: Option<u64>,
    /// Standby: the copy is complete; the last update received, and the
    /// snapshot being received.
    synced: bool,
    last_seq: u64,
    receiving: bool,
    /// Standby: a snapshot request is out (one at a time).
    requested: bool,
    /// The term this daemon handed the active role over in (switchover):
    /// a partner still saying "standby" in it has not taken over yet, and
    /// nobody-serves is not to be concluded from it.
    handed_over: Option<u64>,
    partner_role: Option<Role>,
    out: VecDeque<Msg>,
    events: VecDeque<HaEvent>,
}

impl Partner {
    /// `term` and `role` as persisted (the configured role when none was).
    pub fn new(cfg: PartnerConfig, now: Instant, term: u64, role: Option<Role>) -> Self {
        let role = role.unwrap_or(cfg.role);
        Self {
            cfg,
            role,
            state: PartnerState::Startup,
            term,
            started: now,
            connected: false,
            last_heard: None,
            next_hello: None,
            probe_out: false,
            next_probe: None,
            early_probe_for: None,
            silent_probe_for: None,
            next_seq: 1,
            unacked: VecDeque::new(),
            partner_synced: false,
            snapshot_end: None,
            synced: false,
            last_seq: 0,
            receiving: false,
            requested: false,
            handed_over: None,
            partner_role: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> PartnerState {
        self.state
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn config(&self) -> &PartnerConfig {
        &self.cfg
    }

    /// Active: updates must wait for the partner's acknowledgement (sync
    /// mode) only while the partner is reachable and holds a complete copy;
    /// otherwise nobody could confirm them and the active serves alone.
    pub fn replicating(&self) -> bool {
        self.role == Role::Active && self.state == PartnerState::Normal && self.partner_synced
    }

    /// Active: updates not yet acknowledged, and the age of the oldest.
    pub fn lag(&self, now: Instant) -> (usize, Option<Duration>) {
        (self.unacked.len(), self.unacked.front().map(|(_, at)| now.saturating_duration_since(*at)))
    }

    /// The last update number made (active) or received (standby).
    pub fn seq(&self) -> u64 {
        match self.role {
            Role::Active => self.next_seq - 1,
            Role::Standby => self.last_seq,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<HaEvent> {
        self.events.pop_front()
    }

    /// When [`Partner::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dead = self.reachable().then(|| self.silent_deadline());
        let probe = self.next_probe.filter(|_| !self.probe_out);
        let early = self.early_probe_due();
        [self.next_hello, dead, probe, early].into_iter().flatten().min()
    }

    /// Standby taking over by probe, partner still reachable: when the
    /// early probe for the current silent deadline is due (`probe` before
    /// it), unless it is out or was made.
    fn early_probe_due(&self) -> Option<Instant> {
        if self.role != Role::Standby || self.cfg.takeover != TakeoverMode::Probe || !self.reachable() || self.probe_out
        {
            return None;
        }
        let deadline = self.silent_deadline();
        if self.early_probe_for == Some(deadline) {
            return None;
        }
        Some(deadline.checked_sub(self.cfg.probe).unwrap_or(deadline))
    }

    /// Not yet declared unreachable (the dead timer runs).
    fn reachable(&self) -> bool {
        !matches!(self.state, PartnerState::CommunicationsInterrupted | PartnerState::PartnerDown)
    }

    /// When the partner counts as unreachable if nothing comes from it.
    fn silent_deadline(&self) -> Instant {
        match self.last_heard {
            Some(t) => t + self.cfg.dead,
            None => self.started + self.cfg.startup.max(self.cfg.dead),
        }
    }

    fn set_state(&mut self, to: PartnerState) {
        if self.state != to {
            self.events.push_back(HaEvent::State { from: self.state, to });
            self.state = to;
        }
    }

    fn hello(&self) -> Msg {
        Msg::Hello { node: self.cfg.node.clone(), term: self.term, role: self.role, state: self.state, seq: self.seq() }
    }

    /// The partner connection is up (authenticated): hellos start, and a
    /// standby asks for everything.
    pub fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.out.clear();
        self.out.push_back(self.hello());
        self.next_hello = Some(now + self.cfg.hello);
        if self.role == Role::Standby {
            self.request_snapshot();
        }
    }

    /// The partner connection is gone. The partner is declared unreachable
    /// only when `dead` has passed since it was last heard.
    pub fn disconnected(&mut self, _now: Instant) {
        self.connected = false;
        self.next_hello = None;
        self.out.clear();
        self.receiving = false;
        self.requested = false;
        self.partner_synced = false;
        self.snapshot_end = None;
        self.unacked.clear();
    }

    fn request_snapshot(&mut self) {
        self.synced = false;
        self.receiving = false;
        self.set_state(PartnerState::Recover);
        if self.connected {
            self.requested = true;
            self.out.push_back(Msg::SnapshotRequest);
        }
    }

    /// Runs the hello, dead and probe timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_hello.is_some_and(|t| t <= now) {
            self.out.push_back(self.hello());
            self.next_hello = Some(now + self.cfg.hello);
        }
        if self.early_probe_due().is_some_and(|t| t <= now) {
            // Begun `probe` before the partner counts as unreachable: the
            // same evidence as a probe begun then (nobody answered for the
            // service address for `probe`, all of it after the partner was
            // last heard), ready when `dead` runs out instead of `probe`
            // later.
            self.probe_out = true;
            self.early_probe_for = Some(self.silent_deadline());
            self.events.push_back(HaEvent::Probe);
        }
        if self.reachable() && now >= self.silent_deadline() {
            // HARP: no hello for `dead`: unreachable, not yet down.
            let silent = self.silent_probe_for == Some(self.silent_deadline());
            self.set_state(PartnerState::CommunicationsInterrupted);
            self.partner_synced = false;
            if self.role == Role::Standby && self.cfg.takeover == TakeoverMode::Probe {
                if silent {
                    // The early probe found nobody: down.
                    self.become_active(PartnerState::PartnerDown);
                    return;
                }
                // Probed now, unless the early probe is still out (its
                // answer then decides, as below).
                self.next_probe = Some(now);
            }
        }
        if self.role == Role::Standby
            && self.state == PartnerState::CommunicationsInterrupted
            && !self.probe_out
            && self.next_probe.is_some_and(|t| t <= now)
        {
            self.probe_out = true;
            self.next_probe = None;
            self.events.push_back(HaEvent::Probe);
        }
    }

    /// The answer to [`HaEvent::Probe`]: whether anybody answered for the
    /// service address.
    pub fn probe_result(&mut self, now: Instant, answered: bool) {
        self.probe_out = false;
        if self.role != Role::Standby {
            return;
        }
        if self.state != PartnerState::CommunicationsInterrupted {
            // An early probe: nobody answered, and nothing was heard from
            // the partner since it was begun (the deadline it was begun for
            // still holds): down when that deadline passes in silence.
            let deadline = self.silent_deadline();
            if !answered && self.early_probe_for == Some(deadline) {
                self.silent_probe_for = Some(deadline);
            }
            return;
        }
        if answered {
            // The active is alive; only the partner link failed. Probe
            // again a `dead` later.
            self.next_probe = Some(now + self.cfg.dead);
        } else {
            self.become_active(PartnerState::PartnerDown);
        }
    }

    /// The external decision (VRRP master): take over now, whatever the
    /// partner state. The partner steps down when it meets the new term.
    pub fn takeover(&mut self, _now: Instant) -> bool {
        if self.role == Role::Active {
            return false;
        }
        let state = if self.connected && self.state != PartnerState::CommunicationsInterrupted {
            PartnerState::Normal
        } else {
            PartnerState::PartnerDown
        };
        self.become_active(state);
        true
    }

    fn become_active(&mut self, state: PartnerState) {
        self.term += 1;
        self.role = Role::Active;
        self.probe_out = false;
        self.next_probe = None;
        self.early_probe_for = None;
        self.silent_probe_for = None;
        self.receiving = false;
        self.partner_synced = false;
        self.next_seq = self.last_seq + 1;
        self.unacked.clear();
        self.events.push_back(HaEvent::Term { term: self.term });
        self.events.push_back(HaEvent::TakeOver { term: self.term });
        self.set_state(state);
        if self.connected {
            self.out.push_back(self.hello());
        }
    }

    fn step_down(&mut self, term: u64) {
        self.term = term;
        self.role = Role::Standby;
        self.unacked.clear();
        self.partner_synced = false;
        self.last_seq = 0;
        self.events.push_back(HaEvent::Term { term });
        self.events.push_back(HaEvent::StepDown { term, handover: false });
        // RECOVER: a fresh snapshot before it may serve again.
        self.request_snapshot();
    }

    /// Planned switchover (active): hands the active role to a reachable,
    /// synchronised standby with no detection delay. This daemon becomes
    /// standby at once ([`HaEvent::StepDown`] with the same term: give up the
    /// service address and the tunnels, silently); the partner takes over
    /// with the next term. False when the partner could not take over.
    pub fn switchover(&mut self, _now: Instant) -> bool {
        if !self.replicating() {
            return false;
        }
        let term = self.term;
        self.handed_over = Some(term);
        self.out.push_back(Msg::Handover { term });
        self.role = Role::Standby;
        self.unacked.clear();
        self.partner_synced = false;
        self.events.push_back(HaEvent::StepDown { term, handover: true });
        // Its copy is the one just handed over; a fresh snapshot follows
        // from the new active all the same (asked for after the handover,
        // which the partner handles first).
        self.request_snapshot();
        true
    }

    /// Active: a change to replicate; returns its number.
    pub fn replicate(&mut self, now: Instant, key: String, value: Option<Vec<u8>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.role == Role::Active && self.connected && self.snapshot_end.is_some() {
            self.unacked.push_back((seq, now));
            self.out.push_back(Msg::Update { seq, key, value });
        }
        seq
    }

    /// Active, after [`HaEvent::SnapshotWanted`]: every record as it is now
    /// (it reflects every update made so far).
    pub fn send_snapshot(&mut self, now: Instant, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
        if self.role != Role::Active || !self.connected {
            return;
        }
        let seq = self.next_seq - 1;
        self.out.push_back(Msg::SnapshotBegin { seq });
        self.out.extend(records.into_iter().map(|(key, value)| Msg::Record { key, value }));
        self.out.push_back(Msg::SnapshotEnd { seq });
        self.snapshot_end = Some(seq);
        self.unacked.clear();
        self.unacked.push_back((seq, now));
    }

    /// Standby: everything up to update `seq` (or the snapshot ending at
    /// `seq`) is durable in its store: acknowledged.
    pub fn durable(&mut self, seq: u64) {
        if self.role == Role::Standby && self.connected {
            self.out.push_back(Msg::Ack { seq });
        }
    }

    fn violation(&mut self, what: &'static str) {
        self.events.push_back(HaEvent::Violation { what });
    }

    /// One message from the partner (after the channel authenticated it).
    pub fn handle_msg(&mut self, now: Instant, msg: Msg) {
        self.last_heard = Some(now);
        if matches!(self.state, PartnerState::CommunicationsInterrupted | PartnerState::Startup) {
            let to =
                if self.role == Role::Standby && !self.synced { PartnerState::Recover } else { PartnerState::Normal };
            self.set_state(to);
            // A probe still out stays out until its answer (which no longer
            // decides anything: the deadline it was for has moved), so that
            // its answer is not taken for a later probe's.
            self.next_probe = None;
        }
        match (self.role, msg) {
            (_, Msg::Hello { node, term, role, .. }) => self.on_hello(&node, term, role),
            (Role::Active, Msg::SnapshotRequest) => {
                self.partner_synced = false;
                self.snapshot_end = None;
                self.events.push_back(HaEvent::SnapshotWanted);
            }
            (Role::Active, Msg::Ack { seq }) => self.on_ack(seq),
            (Role::Standby, Msg::SnapshotBegin { .. }) => {
                self.receiving = true;
                self.requested = false;
                self.events.push_back(HaEvent::SnapshotBegin);
            }
            (Role::Standby, Msg::Record { key, value }) if self.receiving => {
                self.events.push_back(HaEvent::Apply { seq: None, key, value: Some(value) });
            }
            (Role::Standby, Msg::SnapshotEnd { seq }) if self.receiving => {
                self.receiving = false;
                self.synced = true;
                self.last_seq = seq;
                self.events.push_back(HaEvent::SnapshotEnd { seq });
                self.set_state(PartnerState::Normal);
            }
            (Role::Standby, Msg::Update { seq, key, value }) if self.synced => {
                if seq != self.last_seq + 1 {
                    // A gap: the copy can no longer be trusted.
                    self.violation("update out of sequence: a fresh snapshot is requested");
                    self.request_snapshot();
                    return;
                }
                self.last_seq = seq;
                self.events.push_back(HaEvent::Apply { seq: Some(seq), key, value });
            }
            // Updates before the copy is complete are covered by the
            // snapshot being requested.
            (Role::Standby, Msg::Update { .. }) => {}
            (Role::Standby, Msg::Record { .. } | Msg::SnapshotEnd { .. }) => {
                self.violation("snapshot record outside a snapshot")
            }
            (
                Role::Active,
                Msg::SnapshotBegin { .. } | Msg::Record { .. } | Msg::SnapshotEnd { .. } | Msg::Update { .. },
            ) => {
                // Two actives: the hello exchange settles who steps down.
                self.violation("replication from the partner while active")
            }
            (Role::Standby, Msg::Handover { term }) if self.synced && term >= self.term => {
                self.term = term;
                self.become_active(PartnerState::Normal);
            }
            (Role::Standby, Msg::Handover { .. }) => {
                // A copy that is not complete cannot serve: the partner
                // learns it from our hellos (still standby) and keeps, or
                // takes back, the role.
                self.violation("handover to a standby without a complete copy")
            }
            (Role::Active, Msg::Handover { .. }) => self.violation("handover to an active"),
            (Role::Standby, Msg::SnapshotRequest | Msg::Ack { .. }) => {
                self.violation("active-side message to a standby")
            }
        }
    }

    fn on_hello(&mut self, node: &str, term: u64, role: Role) {
        self.partner_role = Some(role);
        if term > self.term {
            if self.role == Role::Active {
                // Split brain healed: the higher term wins at once.
                self.step_down(term);
            } else {
                self.term = term;
                self.events.push_back(HaEvent::Term { term });
            }
            return;
        }
        match (self.role, role) {
            (Role::Active, Role::Active) if term == self.term && node < self.cfg.node.as_str() => {
                // Two actives of one term: the smaller name stays.
                self.step_down(term);
            }
            (Role::Standby, Role::Standby)
                if term == self.term && self.cfg.role == Role::Active && self.handed_over != Some(term) =>
            {
                // Nobody serves: the one configured active takes over.
                let state = PartnerState::Normal;
                self.become_active(state);
            }
            (Role::Standby, Role::Active) if !self.synced && !self.receiving && !self.requested => {
                self.request_snapshot()
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
        if self.snapshot_end.is_some_and(|end| seq >= end) {
            self.partner_synced = true;
        }
        self.events.push_back(HaEvent::Acked { seq });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Two partners, a link between them that can be cut, and a simple
    /// store per side (what the daemon would do with the events).
    struct Pair {
        now: Instant,
        p: [Partner; 2],
        link: bool,
        store: [std::collections::BTreeMap<String, Vec<u8>>; 2],
        events: [Vec<HaEvent>; 2],
        /// Answer to probes: somebody holds the service address.
        address_answers: bool,
        active_records: std::collections::BTreeMap<String, Vec<u8>>,
    }

    impl Pair {
        fn new(mode: TakeoverMode) -> Self {
            let now = Instant::now();
            let cfg = |n: &str, r| PartnerConfig { takeover: mode, ..PartnerConfig::new(n, r) };
            let mut pair = Self {
                now,
                p: [
                    Partner::new(cfg("a", Role::Active), now, 1, None),
                    Partner::new(cfg("b", Role::Standby), now, 1, None),
                ],
                link: true,
                store: Default::default(),
                events: Default::default(),
                address_answers: true,
                active_records: Default::default(),
            };
            pair.p[0].connected(now);
            pair.p[1].connected(now);
            pair
        }

        fn step(&mut self) {
            for i in 0..2 {
                while let Some(m) = self.p[i].poll_transmit() {
                    // Frames survive an encode/decode round trip.
                    let m = Msg::decode(&m.encode().expect("encode")).expect("decode");
                    if self.link {
                        self.p[1 - i].handle_msg(self.now, m);
                    }
                }
                while let Some(e) = self.p[i].poll_event() {
                    match &e {
                        HaEvent::SnapshotWanted => {
                            let recs: Vec<_> = self.active_records.clone().into_iter().collect();
                            self.p[i].send_snapshot(self.now, recs);
                        }
                        HaEvent::SnapshotBegin => self.store[i].clear(),
                        HaEvent::Apply { seq, key, value } => {
                            match value {
                                Some(v) => self.store[i].insert(key.clone(), v.clone()),
                                None => self.store[i].remove(key),
                            };
                            if let Some(s) = seq {
                                self.p[i].durable(*s);
                            }
                        }
                        HaEvent::SnapshotEnd { seq } => self.p[i].durable(*seq),
                        HaEvent::Probe => {
                            let answered = self.address_answers;
                            self.p[i].probe_result(self.now, answered);
                        }
                        _ => {}
                    }
                    self.events[i].push(e);
                }
            }
        }

        fn run(&mut self, span: Duration) {
            let end = self.now + span;
            while self.now < end {
                self.step();
                self.step();
                let next = self.p.iter().filter_map(Partner::poll_timeout).min().unwrap_or(end).min(end);
                self.now = next.max(self.now + MS);
                for p in &mut self.p {
                    p.handle_timeout(self.now);
                }
            }
            self.step();
            self.step();
        }

        fn replicate(&mut self, key: &str, value: Option<&[u8]>) -> u64 {
            match value {
                Some(v) => self.active_records.insert(key.into(), v.to_vec()),
                None => self.active_records.remove(key),
            };
            let now = self.now;
            self.p[0].replicate(now, key.into(), value.map(<[u8]>::to_vec))
        }

        fn took_over(&self, i: usize) -> Option<u64> {
            self.events[i].iter().find_map(|e| if let HaEvent::TakeOver { term } = e { Some(*term) } else { None })
        }
    }

    #[test]
    fn the_standby_takes_a_snapshot_then_numbered_updates_it_acknowledges() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.active_records.insert("tunnel/pw".into(), b"t1".to_vec());
        pair.run(50 * MS);
        assert_eq!(pair.store[1].get("tunnel/pw").map(Vec::as_slice), Some(&b"t1"[..]));
        assert_eq!((pair.p[0].state(), pair.p[1].state()), (PartnerState::Normal, PartnerState::Normal));
        assert!(pair.p[0].replicating());
        let s1 = pair.replicate("session/pw/1", Some(b"s1"));
        let s2 = pair.replicate("tunnel/pw", None);
        assert_eq!((s1, s2), (1, 2));
        // Before the standby answers, the active counts the lag.
        assert_eq!(pair.p[0].lag(pair.now).0, 2);
        pair.run(10 * MS);
        assert_eq!(pair.p[0].lag(pair.now), (0, None));
        assert!(pair.events[0].contains(&HaEvent::Acked { seq: 2 }));
        assert_eq!(pair.store[1].keys().collect::<Vec<_>>(), vec!["session/pw/1"]);
        // Nothing taken over while hellos flow.
        pair.run(Duration::from_secs(2));
        assert_eq!((pair.took_over(0), pair.took_over(1)), (None, None));
    }

    #[test]
    fn an_unreachable_partner_whose_address_still_answers_is_not_taken_over() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.run(50 * MS);
        pair.link = false;
        pair.address_answers = true;
        pair.run(Duration::from_secs(2));
        assert_eq!(pair.p[1].state(), PartnerState::CommunicationsInterrupted);
        assert_eq!(pair.p[1].role(), Role::Standby);
        assert!(pair.events[1].iter().filter(|e| **e == HaEvent::Probe).count() >= 2, "probes again");
        assert_eq!(pair.p[0].role(), Role::Active, "the active serves on alone");
        assert!(!pair.p[0].replicating());
    }

    #[test]
    fn a_dead_partner_is_taken_over_after_dead_and_a_silent_probe_with_a_new_term() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.run(50 * MS);
        pair.link = false;
        pair.address_answers = false;
        // Not before `dead` (300 ms) has passed without a hello.
        pair.run(Duration::from_millis(250));
        assert_eq!(pair.took_over(1), None);
        assert_eq!(pair.p[1].state(), PartnerState::Normal);
        pair.run(Duration::from_millis(150));
        assert_eq!(pair.took_over(1), Some(2));
        assert_eq!((pair.p[1].role(), pair.p[1].state()), (Role::Active, PartnerState::PartnerDown));
        assert!(pair.events[1].contains(&HaEvent::Term { term: 2 }));
    }

    /// A hello of the active "a" in term 1.
    fn hello_of_a() -> Msg {
        Msg::Hello { node: "a".into(), term: 1, role: Role::Active, state: PartnerState::Normal, seq: 0 }
    }

    /// A standby heard from its partner at `t0`: connected, one hello.
    fn standby_heard_at(t0: Instant) -> Partner {
        let mut b = Partner::new(PartnerConfig::new("b", Role::Standby), t0, 1, None);
        b.connected(t0);
        b.handle_msg(t0, hello_of_a());
        while b.poll_event().is_some() {}
        b
    }

    /// [`standby_heard_at`] 150 ms later: its early probe is out.
    fn early_probe_out(t0: Instant) -> Partner {
        let mut b = standby_heard_at(t0);
        b.handle_timeout(t0 + 150 * MS);
        assert_eq!(probes(&mut b), 1, "early probe begun");
        b
    }

    fn probes(b: &mut Partner) -> usize {
        std::iter::from_fn(|| b.poll_event()).filter(|e| *e == HaEvent::Probe).count()
    }

    #[test]
    fn the_probe_begins_before_dead_runs_out_and_a_silent_one_takes_over_when_it_does() {
        let t0 = Instant::now();
        let mut b = standby_heard_at(t0);
        // dead 300 ms, probe 150 ms: the probe is due at 150 ms of silence.
        assert_eq!(b.config().probe, 150 * MS);
        assert!(b.poll_timeout().is_some_and(|t| t <= t0 + 150 * MS));
        b.handle_timeout(t0 + 149 * MS);
        assert_eq!(probes(&mut b), 0, "not before");
        b.handle_timeout(t0 + 150 * MS);
        assert_eq!(probes(&mut b), 1, "probe begun 150 ms before dead runs out");
        b.handle_timeout(t0 + 200 * MS);
        assert_eq!(probes(&mut b), 0, "one probe per silence");
        // Its whole wait without an answer.
        b.probe_result(t0 + 299 * MS, false);
        assert_eq!(b.role(), Role::Standby, "not before dead has passed");
        b.handle_timeout(t0 + 300 * MS);
        assert_eq!((b.role(), b.state()), (Role::Active, PartnerState::PartnerDown), "at dead, not a probe later");
        assert!(std::iter::from_fn(|| b.poll_event()).any(|e| e == HaEvent::TakeOver { term: 2 }));
    }

    #[test]
    fn a_partner_heard_while_the_early_probe_is_out_voids_its_silent_answer() {
        let t0 = Instant::now();
        let mut b = early_probe_out(t0);
        b.handle_msg(t0 + 200 * MS, hello_of_a());
        // The answer of a probe begun before the partner was heard again.
        b.probe_result(t0 + 300 * MS, false);
        b.handle_timeout(t0 + 300 * MS);
        assert_eq!(b.role(), Role::Standby);
        assert_ne!(b.state(), PartnerState::CommunicationsInterrupted, "heard 100 ms ago");
        // The next silence gets its own probe; answered, so no takeover.
        b.handle_timeout(t0 + 350 * MS);
        assert_eq!(probes(&mut b), 1);
        b.probe_result(t0 + 360 * MS, true);
        b.handle_timeout(t0 + 500 * MS);
        assert_eq!((b.role(), b.state()), (Role::Standby, PartnerState::CommunicationsInterrupted));
        assert_eq!(probes(&mut b), 1, "probed again when dead ran out, as without an early probe");
        b.probe_result(t0 + 510 * MS, true);
        assert_eq!(b.role(), Role::Standby);
    }

    #[test]
    fn an_early_probe_answered_after_dead_ran_out_decides_and_none_overlaps_it() {
        let t0 = Instant::now();
        let mut b = early_probe_out(t0);
        // Still out when dead runs out: unreachable, no second probe.
        b.handle_timeout(t0 + 300 * MS);
        assert_eq!((b.role(), b.state()), (Role::Standby, PartnerState::CommunicationsInterrupted));
        b.handle_timeout(t0 + 305 * MS);
        assert_eq!(probes(&mut b), 0, "one probe out at a time");
        b.probe_result(t0 + 310 * MS, false);
        assert_eq!((b.role(), b.state()), (Role::Active, PartnerState::PartnerDown));
    }

    #[test]
    fn after_a_partition_heals_the_higher_term_wins_and_the_other_steps_down_to_recover() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.active_records.insert("tunnel/pw".into(), b"t1".to_vec());
        pair.run(50 * MS);
        pair.link = false;
        pair.address_answers = false;
        pair.run(Duration::from_millis(500));
        assert_eq!((pair.p[0].role(), pair.p[1].role()), (Role::Active, Role::Active), "split brain");
        // Heal: the old active (term 1) meets term 2 and steps down at once.
        pair.link = true;
        pair.active_records = pair.store[1].clone();
        pair.p[0].disconnected(pair.now);
        pair.p[1].disconnected(pair.now);
        let now = pair.now;
        pair.p[0].connected(now);
        pair.p[1].connected(now);
        // The snapshot now comes from b (the new active).
        pair.run(50 * MS);
        assert!(pair.events[0].contains(&HaEvent::StepDown { term: 2, handover: false }));
        assert_eq!((pair.p[0].role(), pair.p[0].term()), (Role::Standby, 2));
        assert_eq!(pair.p[0].state(), PartnerState::Normal, "resynchronised");
        assert!(pair.events[0].contains(&HaEvent::SnapshotBegin));
    }

    #[test]
    fn a_partner_never_heard_from_gets_the_startup_grace_before_a_probe() {
        let now = Instant::now();
        let mut b = Partner::new(PartnerConfig::new("b", Role::Standby), now, 0, None);
        b.handle_timeout(now + Duration::from_secs(2));
        assert_eq!(b.state(), PartnerState::Startup);
        assert_eq!(b.poll_event(), None);
        b.handle_timeout(now + Duration::from_secs(3));
        assert_eq!(b.state(), PartnerState::CommunicationsInterrupted);
        assert!(std::iter::from_fn(|| b.poll_event()).any(|e| e == HaEvent::Probe));
    }

    #[test]
    fn a_planned_switchover_hands_the_role_over_with_the_next_term_and_no_detection_delay() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.active_records.insert("tunnel/pw".into(), b"t1".to_vec());
        pair.run(50 * MS);
        let now = pair.now;
        assert!(pair.p[0].switchover(now));
        assert!(!pair.p[0].switchover(now), "no longer active");
        // A hello the partner sent before it saw the handover ("standby",
        // same term) does not make the old active take the role back.
        let old = Msg::Hello { node: "b".into(), term: 1, role: Role::Standby, state: PartnerState::Normal, seq: 0 };
        pair.p[0].handle_msg(now, old);
        assert_eq!(pair.p[0].role(), Role::Standby);
        pair.step();
        pair.step();
        assert!(pair.events[0].contains(&HaEvent::StepDown { term: 1, handover: true }));
        assert_eq!(pair.took_over(1), Some(2));
        assert_eq!((pair.p[0].role(), pair.p[1].role()), (Role::Standby, Role::Active));
        pair.active_records = pair.store[1].clone();
        pair.run(50 * MS);
        assert_eq!((pair.p[0].term(), pair.p[0].state()), (2, PartnerState::Normal), "the old active resynchronised");
        // A standby with no complete copy refuses a handover.
        let now = pair.now;
        let mut fresh = Partner::new(PartnerConfig::new("c", Role::Standby), now, 0, None);
        fresh.handle_msg(now, Msg::Handover { term: 5 });
        assert_eq!(fresh.role(), Role::Standby);
    }

    #[test]
    fn in_external_mode_only_the_takeover_command_takes_over() {
        let mut pair = Pair::new(TakeoverMode::External);
        pair.run(50 * MS);
        pair.link = false;
        pair.address_answers = false;
        pair.run(Duration::from_secs(2));
        assert_eq!(pair.p[1].role(), Role::Standby);
        assert!(!pair.events[1].contains(&HaEvent::Probe));
        let now = pair.now;
        assert!(pair.p[1].takeover(now));
        assert!(!pair.p[1].takeover(now), "already active");
        pair.step();
        assert_eq!(pair.took_over(1), Some(2));
    }

    #[test]
    fn a_gap_in_the_updates_asks_for_a_fresh_snapshot_and_stray_messages_are_violations() {
        let mut pair = Pair::new(TakeoverMode::Probe);
        pair.run(50 * MS);
        let now = pair.now;
        pair.p[1].handle_msg(now, Msg::Update { seq: 7, key: "k".into(), value: None });
        assert_eq!(pair.p[1].state(), PartnerState::Recover);
        pair.p[1].handle_msg(now, Msg::Ack { seq: 1 });
        pair.p[0].handle_msg(now, Msg::Record { key: "k".into(), value: vec![] });
        pair.step();
        assert!(pair.events[1].iter().any(|e| matches!(e, HaEvent::Violation { .. })));
        assert!(pair.events[0].iter().any(|e| matches!(e, HaEvent::Violation { .. })));
        pair.run(50 * MS);
        assert_eq!(pair.p[1].state(), PartnerState::Normal);
        let snapshots = pair.events[1].iter().filter(|e| **e == HaEvent::SnapshotBegin).count();
        assert_eq!(snapshots, 2, "one fresh snapshot, not one per hello");
    }
}
