//! RFC 4951 3.2: the recovery tunnel in both roles, and the control and
//! data channel reset of the recovered tunnel.

use std::{net::SocketAddr, time::Instant};

use rand::RngCore;

use super::super::*;
use crate::{
    channel::Channel,
    wire::{
        types::{cdn, stopccn},
        AvpValue, ControlHeader, Message, ResultCode, Transport,
    },
};

impl Engine {
    /// Hook: the handshake of tunnel `id` is done (our SCCCN sent for the
    /// peer's `sccrp`, or the peer's SCCCN received: `None`). False unless
    /// it is a recovery tunnel, which this handles: the control channel
    /// reset of the old tunnel (RFC 4951 3.2.2).
    pub(in crate::engine) fn recovery_tunnel_up(&mut self, now: Instant, id: u32, sccrp: Option<&Message>) -> bool {
        let Some((old, scs)) = self.tunnels.get(&id).and_then(|t| Some((t.recovers?, t.scs))) else { return false };
        match sccrp {
            Some(m) => {
                // F-CC-2: "With SCS in the SCCRP, the recovery endpoint MUST
                // set Ns and Nr of the recovered tunnel to Suggested Ns and
                // Suggested Nr ... Without SCS both ends MUST reset Ns and
                // Nr to 0."
                let (ns, nr) = m
                    .find(|a| match a {
                        AvpValue::SuggestedControlSequence { ns, nr } => Some((*ns, *nr)),
                        _ => None,
                    })
                    .unwrap_or((0, 0));
                // The SCCCN leaves before anything on the reset old tunnel:
                // the peer resets on it, and drops what comes before
                // (F-RT-12).
                self.flush(now, id);
                self.reset_recovered(now, old, id, ns, nr, true);
                // F-CC-3: the recovery tunnel has done its job (the SCCCN
                // goes first on its channel).
                self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_CLEAR, None, ""));
            }
            None => {
                // F-CC-1/F-CC-2: the remote endpoint resets on a valid SCCCN,
                // with the mirror image of what it suggested.
                let (ns, nr) = scs.map(|(ns, nr)| (nr, ns)).unwrap_or((0, 0));
                if !self.tunnels.contains_key(&old) {
                    // The old tunnel timed out meanwhile: nothing to recover.
                    self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_ERROR, Some(0), "old tunnel gone"));
                    return true;
                }
                self.reset_recovered(now, old, id, ns, nr, false);
            }
        }
        true
    }

    /// RFC 4951 3.2.1: takes over `old`, a tunnel persisted before a control
    /// channel failure, and starts recovering it: the old tunnel and its
    /// sessions are valid again (their IDs reserved, F-RT-5; control packets
    /// for it discarded until the reset, F-RT-12) and a recovery tunnel is
    /// set up to the peer (F-RT-1). Returns the recovery tunnel's ID. The
    /// outcome is [`Event::TunnelRecovered`] or, when the recovery tunnel
    /// fails, [`Event::TunnelDown`] with [`DownReason::RecoveryFailed`]
    /// (F-RT-11: cleared silently).
    pub fn recover_tunnel(&mut self, now: Instant, old: RestoredTunnel) -> Result<TunnelId, CommandError> {
        if old.local_id == 0 || old.peer_id == 0 {
            return Err(CommandError::Invalid("tunnel IDs must be non-zero"));
        }
        if self.tunnels.contains_key(&old.local_id) {
            return Err(CommandError::Invalid("tunnel ID already in use"));
        }
        if self.tunnels.len() + 2 > self.cfg.max_tunnels {
            return Err(CommandError::Limit("tunnels"));
        }
        // F-CAP-4: "A tunnel is recoverable only if both ends advertised C."
        let ours = old.params.failover.is_some_and(|f| f.control);
        let theirs = old.peer_failover.is_some_and(|f| f.control);
        if !(ours && theirs) {
            return Err(CommandError::Invalid("control channel failover was not negotiated by both ends"));
        }
        for s in &old.sessions {
            // F-RT-5: the old sessions' IDs are reserved again.
            self.hold_session_id(s.local_id);
        }
        let sessions = old.sessions.iter().map(|s| (s.local_id, Session::restored(s))).collect();
        let id = old.local_id;
        let channel = Channel::new(self.channel_config(&old.params));
        self.tunnels.insert(
            id,
            // F-RT-10: no nonces: the recovery tunnel's are taken at the
            // reset.
            Tunnel {
                peer_id: old.peer_id,
                initiator: old.initiator,
                peer_failover: old.peer_failover,
                peer_host_name: old.peer_host_name,
                sessions,
                ..Tunnel::new(now, TunnelState::Recovering, id, old.peer, old.params, channel)
            },
        );
        let rec = self.open_recovery_tunnel(now, id);
        self.events.push_back(Event::RecoveryStarted { tunnel: id, recovery_tunnel: rec });
        Ok(rec)
    }

    /// F-RT-1..F-RT-6: a new control connection, same version, transport
    /// and secret as the old tunnel, no Failover Capability, with Tunnel
    /// Recovery and a Tie Breaker in its SCCRQ.
    pub(in crate::engine) fn open_recovery_tunnel(&mut self, now: Instant, old_id: u32) -> u32 {
        let (peer, params) = match self.tunnels.get(&old_id) {
            Some(o) => (o.peer, TunnelParams { failover: None, pseudowires: Vec::new(), ..o.params.clone() }),
            None => return 0,
        };
        // F-RT-5: never an old tunnel's ID (they are all in the table).
        self.open_tunnel(now, peer, params, Some(old_id))
    }

    /// A recovery tunnel ended. Before the reset that is F-RT-11: the old
    /// tunnel (if it is still waiting for its recovery) and its sessions
    /// are cleared silently.
    pub(in crate::engine) fn recovery_tunnel_gone(&mut self, old_id: u32) {
        if !self.tunnels.get(&old_id).is_some_and(|o| o.state == TunnelState::Recovering) {
            return;
        }
        let Some(old) = self.tunnels.remove(&old_id) else { return };
        self.rearm(old_id);
        for s in old.sessions.values() {
            self.session_gone(old_id, s, DownReason::RecoveryFailed);
            self.release_session_id(s.local_id);
        }
        self.events.push_back(Event::TunnelDown { tunnel: old_id, reason: DownReason::RecoveryFailed });
    }

    /// RFC 4951 3.2.2 control channel reset of the old tunnel `old_id`,
    /// recovered through recovery tunnel `rec_id`, and what follows it.
    pub(in crate::engine) fn reset_recovered(
        &mut self,
        now: Instant,
        old_id: u32,
        rec_id: u32,
        ns: u16,
        nr: u16,
        recovery_endpoint: bool,
    ) {
        let (cma, rec_peer) = match self.tunnels.get(&rec_id) {
            Some(r) => (
                r.cma.as_ref().map(|c| Cma { key: c.key.clone(), ours: c.ours.clone(), theirs: c.theirs.clone() }),
                r.peer,
            ),
            None => return,
        };
        let Some(old) = self.tunnels.get_mut(&old_id) else { return };
        // F-CC-1/F-CC-2: windows flushed, Ns/Nr set to the suggested values
        // (or zero without Suggested Control Sequence).
        old.channel.reset(ns, nr);
        // The old tunnel passes from recovering (F-RT-12) to established.
        // On the remote endpoint of an L2TPv2 recovery with a secret it was
        // not marked recovering yet (its peer authenticates in the SCCCN).
        if old.state != TunnelState::Recovering && !old.move_to(TunnelState::Recovering) {
            return;
        }
        if !old.move_to(TunnelState::Established) {
            return;
        }
        old.last_rx = now;
        // F-RT-10: "the recovered tunnel MUST then use the nonces exchanged
        // on the recovery tunnel (both ends)".
        if cma.is_some() {
            old.cma = cma;
        }
        // A recovery peer (F-SEC-2) now speaks for the tunnel.
        old.peer = rec_peer;
        // F-SS-1: "each end MUST silently (no CDN) clear the sessions that
        // were not in the established state".
        let pending: Vec<u32> =
            old.sessions.values().filter(|s| s.state != SessionState::Established).map(|s| s.local_id).collect();
        let data_ok = old.params.failover.is_some_and(|f| f.data) && old.peer_failover.is_some_and(|f| f.data);
        let sequenced: Vec<u32> = old
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Established && (s.params.sequencing || s.peer_sequencing))
            .map(|s| s.local_id)
            .collect();
        for sid in pending {
            if let Some(s) = self.tunnels.get_mut(&old_id).and_then(|o| o.sessions.remove(&sid)) {
                self.session_gone(old_id, &s, DownReason::Cleared);
                self.release_session_id(sid);
            }
        }
        if recovery_endpoint && !data_ok {
            // F-DC-4: "If either end did not advertise D, sessions with
            // sequence numbers are not recoverable; the recovery endpoint
            // SHOULD tear them down with CDN."
            for sid in sequenced {
                self.send_cdn(
                    now,
                    old_id,
                    sid,
                    ResultCode::new(cdn::GENERAL_ERROR, Some(0), "data channel failover not negotiated"),
                );
            }
        }
        let Some(old) = self.tunnels.get(&old_id) else { return };
        let mut sessions: Vec<RecoveredSession> = old
            .sessions
            .values()
            .map(|s| RecoveredSession {
                local_session_id: s.local_id,
                peer_session_id: s.peer_id,
                sequencing: s.params.sequencing || s.peer_sequencing,
            })
            .collect();
        sessions.sort_by_key(|s| s.local_session_id);
        // F-SS-2/F-SS-3: both ends query every session they carried over,
        // so that a failure in the middle of a call setup or teardown
        // leaves nothing established on one side only (Appendix C).
        let all: Vec<u32> = sessions.iter().map(|s| s.local_session_id).collect();
        for chunk in all.chunks(FSQ_BATCH) {
            let _ = self.query_sessions(now, old_id, chunk);
        }
        self.events.push_back(Event::TunnelRecovered { tunnel: old_id, recovery_endpoint, ns, nr, sessions });
        self.flush(now, old_id);
    }

    /// The old tunnel a recovery SCCRQ names: ours is its Recover Remote
    /// Tunnel ID, the peer's its Recover Tunnel ID.
    pub(in crate::engine) fn recovery_target(&self, theirs: u32, ours: u32) -> Option<&Tunnel> {
        self.tunnels.get(&ours).filter(|t| t.peer_id == theirs && t.recovers.is_none())
    }

    /// Remote endpoint (or the loser of a double failover): an SCCRQ with
    /// Tunnel Recovery (RFC 4951 3.2.1), `ids` its (Recover Tunnel ID,
    /// Recover Remote Tunnel ID).
    #[expect(clippy::too_many_arguments, reason = "the SCCRQ and what the pipeline learnt of it")]
    pub(in crate::engine) fn on_recovery_sccrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        header: ControlHeader,
        m: Message,
        peer_tid: u32,
        (theirs, ours): (u32, u32),
        sign: Option<RefusalKey>,
    ) {
        let v = header.version;
        // F-RT-8: validate the IDs, the capability of both ends and the
        // version; refuse with StopCCN.
        let refusal = match self.recovery_target(theirs, ours) {
            None => Some("recovery of an unknown tunnel"),
            Some(o) if o.params.version != v || o.params.transport != transport => {
                Some("recovery with another version or transport than the old tunnel")
            }
            Some(o)
                if !(o.params.failover.is_some_and(|f| f.control) && o.peer_failover.is_some_and(|f| f.control)) =>
            {
                Some("failover capability was not advertised by both ends for the old tunnel")
            }
            // F-SEC-2: only the peer, or a configured recovery peer.
            Some(o) if o.peer.ip() != from.ip() && !o.params.recovery_peers.contains(&from.ip()) => {
                Some("this address may not recover the tunnel")
            }
            Some(_) => None,
        };
        if let Some(why) = refusal {
            // A refusal is sent in the version and on the connection of the
            // SCCRQ it refuses, without keeping state (nothing of the old
            // tunnel's parameters is used).
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: format!("recovery SCCRQ refused: {why}") });
            self.refuse_sccrq(
                from,
                transport,
                v,
                peer_tid,
                ResultCode::new(stopccn::GENERAL_ERROR, Some(0), why),
                sign,
            );
            return;
        }
        let Some(old) = self.recovery_target(theirs, ours) else { return };
        let (old_id, old_state) = (old.local_id, old.state);
        let params = TunnelParams { failover: None, pseudowires: Vec::new(), ..old.params.clone() };
        if old_state == TunnelState::Recovering {
            // Double failover (Appendix B): our own recovery tunnel for the
            // same old tunnel is outstanding. F-RT-6/F-RT-7: the tie breaker
            // decides between these two only.
            let theirs = m.find(|a| if let AvpValue::TieBreaker(t) = a { Some(*t) } else { None });
            let mine: Vec<(u32, Option<[u8; 8]>)> = self
                .tunnels
                .values()
                .filter(|t| t.recovers == Some(old_id))
                .filter_map(|t| Some((t.local_id, Some(t.tie_breaker()?))))
                .collect();
            for (rec, tb) in mine {
                if let (Some(tb), Some(theirs)) = (tb, theirs) {
                    if tb < theirs {
                        // We win: the peer drops its recovery tunnel and
                        // answers ours.
                        self.stats.ignored += 1;
                        return;
                    }
                }
                // We lose: ours goes (the old tunnel stays), theirs is
                // answered as the remote endpoint would.
                self.tunnels.remove(&rec);
                self.rearm(rec);
            }
        }
        let Some(cma) = self.responder_cma(from, &params, &m) else { return };
        // F-RT-9 / F-SEC-2: a suggested window nobody can predict.
        let scs = (self.rng.next_u32() as u16, self.rng.next_u32() as u16);
        let authenticated_now = cma.is_some() || params.secret.is_none();
        let id = self.accept_tunnel(now, from, &header, peer_tid, params, cma, Some(old_id), Some(scs));
        if authenticated_now {
            // F-CAP-3: the Recovery Time stops once the recovering peer is
            // authenticated (here: its SCCRQ verified, or no secret); the
            // old tunnel now waits for the reset (F-RT-12).
            // Already recovering on a double failover.
            if let Some(o) = self.tunnels.get_mut(&old_id).filter(|o| o.state != TunnelState::Recovering) {
                if !o.move_to(TunnelState::Recovering) {
                    self.stats.ignored += 1;
                }
            }
        }
        self.on_control_connection_request(now, id, &m);
    }
}
