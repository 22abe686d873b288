//! Tunnels (control connections): their state, the dispatch of every
//! in-order message to its handler, teardown and the views reported.

use std::{net::SocketAddr, time::Instant};

use foldhash::{HashMap, HashMapExt as _};

use super::*;
use crate::{
    channel::Channel,
    wire::{rules::validate, types::stopccn, AvpValue, Message, MessageType, ResultCode, Version},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum TunnelState {
    /// Sent SCCRQ, waiting for SCCRP: with the Tie Breaker it carried
    /// (RFC 2661 4.4.3, RFC 3931 5.4.3) and our v2 challenge, if any (RFC
    /// 2661 5.1.1).
    WaitReply {
        tie_breaker: [u8; 8],
        challenge: Option<[u8; 16]>,
    },
    /// Sent SCCRP, waiting for SCCCN: with our v2 challenge, if any.
    WaitConnected {
        challenge: Option<[u8; 16]>,
    },
    Established,
    /// The control channel timed out, but both ends are failover capable:
    /// the peer gets its Recovery Time on top (RFC 4951 F-CAP-3) before the
    /// tunnel is cleared. Retransmissions go on; an acknowledgement ends it.
    AwaitingRecovery {
        until: Instant,
    },
    /// StopCCN sent or received: only acknowledging until `until`.
    Closing {
        until: Instant,
    },
    /// RFC 4951: an old tunnel whose control channel is being recovered:
    /// no timers, and control packets for it are discarded until its reset
    /// (F-RT-12). Its sessions keep forwarding.
    Recovering,
}

impl TunnelState {
    /// The transitions of the control connection state machine (RFC 2661
    /// 7.2, RFC 3931 5) with RFC 4951's: awaiting recovery after a timeout
    /// (F-CAP-3), recovering until the reset (F-RT-12), established again
    /// at the reset (F-CC-1/F-CC-2).
    fn may_move_to(self, next: TunnelState) -> bool {
        use TunnelState::*;
        matches!(
            (self, next),
            (WaitReply { .. } | WaitConnected { .. }, Established)
                | (Established, AwaitingRecovery { .. })
                | (AwaitingRecovery { .. }, Established)
                | (Established | AwaitingRecovery { .. }, Recovering)
                | (Recovering, Established)
                | (
                    WaitReply { .. } | WaitConnected { .. } | Established | AwaitingRecovery { .. } | Recovering,
                    Closing { .. }
                )
        )
    }
}

/// A message queued on the reliable channel, with the v2 header Session ID.
#[derive(Clone, Debug)]
pub(in crate::engine) struct Outgoing {
    pub(in crate::engine) session_id: u16,
    pub(in crate::engine) msg: Message,
}

/// A received control message, held by the reliable channel until it is
/// in order, with the v2 header Session ID; decoded only when delivered.
#[derive(Clone, Debug)]
pub(in crate::engine) struct Incoming {
    pub(in crate::engine) session_id: u16,
    pub(in crate::engine) body: Vec<u8>,
}

#[derive(Debug)]
pub(in crate::engine) struct Tunnel {
    pub(in crate::engine) state: TunnelState,
    pub(in crate::engine) cma: Option<Cma>,
    pub(in crate::engine) local_id: u32,
    pub(in crate::engine) peer_id: u32,
    pub(in crate::engine) peer: SocketAddr,
    pub(in crate::engine) params: TunnelParams,
    pub(in crate::engine) channel: Channel<Outgoing, Incoming>,
    pub(in crate::engine) initiator: bool,
    pub(in crate::engine) peer_failover: Option<FailoverCapability>,
    pub(in crate::engine) peer_host_name: Vec<u8>,
    pub(in crate::engine) last_rx: Instant,
    pub(in crate::engine) sessions: HashMap<u32, Session>,
    pub(in crate::engine) serial: u32,
    /// A recovery tunnel: the local ID of the old tunnel it recovers.
    pub(in crate::engine) recovers: Option<u32>,
    /// Remote endpoint of a recovery: the Suggested Control Sequence we sent
    /// (the recovery endpoint's Ns and Nr).
    pub(in crate::engine) scs: Option<(u16, u16)>,
    /// RFC 4951 F-SS-6: when the sessions marked stale are queried.
    pub(in crate::engine) stale_query_at: Option<Instant>,
    /// Messages of this tunnel that failed authentication.
    pub(in crate::engine) auth_failures: u64,
}

impl Tunnel {
    /// A tunnel in `state` with nothing learnt of the peer yet.
    pub(in crate::engine) fn new(
        now: Instant,
        state: TunnelState,
        local_id: u32,
        peer: SocketAddr,
        params: TunnelParams,
        channel: Channel<Outgoing, Incoming>,
    ) -> Self {
        Self {
            state,
            cma: None,
            local_id,
            peer_id: 0,
            peer,
            params,
            channel,
            initiator: false,
            peer_failover: None,
            peer_host_name: Vec::new(),
            last_rx: now,
            sessions: HashMap::new(),
            serial: 0,
            recovers: None,
            scs: None,
            stale_query_at: None,
            auth_failures: 0,
        }
    }

    /// Every change of a tunnel's state goes through here. An illegal one
    /// is refused: the state is left as it is and the answer is false.
    #[must_use]
    pub(in crate::engine) fn move_to(&mut self, next: TunnelState) -> bool {
        let ok = self.state.may_move_to(next);
        if ok {
            self.state = next;
        }
        ok
    }

    /// The Tie Breaker of our outstanding SCCRQ.
    pub(in crate::engine) fn tie_breaker(&self) -> Option<[u8; 8]> {
        match self.state {
            TunnelState::WaitReply { tie_breaker, .. } => Some(tie_breaker),
            _ => None,
        }
    }

    /// The v2 challenge we sent and wait to see answered.
    pub(in crate::engine) fn our_challenge(&self) -> Option<[u8; 16]> {
        match self.state {
            TunnelState::WaitReply { challenge, .. } | TunnelState::WaitConnected { challenge } => challenge,
            _ => None,
        }
    }

    /// Up for messages: established, or established and waiting for a
    /// lost peer (RFC 4951 F-CAP-3; a message from it ends the wait).
    pub(in crate::engine) fn is_up(&self) -> bool {
        matches!(self.state, TunnelState::Established | TunnelState::AwaitingRecovery { .. })
    }
}

impl Engine {
    /// Established tunnels and their established sessions.
    pub fn tunnels(&self) -> Vec<(TunnelId, Vec<u32>)> {
        let mut v: Vec<(TunnelId, Vec<u32>)> = self
            .tunnels
            .values()
            .filter(|t| t.state == TunnelState::Established)
            .map(|t| {
                let mut s: Vec<u32> =
                    t.sessions.values().filter(|s| s.state == SessionState::Established).map(|s| s.local_id).collect();
                s.sort();
                (t.local_id, s)
            })
            .collect();
        v.sort();
        v
    }

    /// Every tunnel, in any state, with its sessions.
    pub fn tunnel_infos(&self) -> Vec<TunnelInfo> {
        let mut v: Vec<TunnelInfo> = self.tunnels.keys().filter_map(|id| self.tunnel_info(*id)).collect();
        v.sort_by_key(|t| t.local_id);
        v
    }

    /// A tunnel's state and session counts, without copying its sessions:
    /// for `status` and `failover status`, which operators and scripts
    /// poll, at up to 65,536 sessions.
    pub fn tunnel_summary(&self, id: TunnelId) -> Option<TunnelSummary> {
        let t = self.tunnels.get(&id)?;
        let mut s = TunnelSummary {
            state: status_of(&t.state),
            sessions: t.sessions.len(),
            established: 0,
            unconfirmed: 0,
            local_failover: t.params.failover,
            peer_failover: t.peer_failover,
        };
        for x in t.sessions.values() {
            s.established += usize::from(x.state == SessionState::Established);
            s.unconfirmed += usize::from(x.unconfirmed);
        }
        Some(s)
    }

    /// Every tunnel's [`TunnelSummary`], by local ID.
    pub fn tunnel_summaries(&self) -> impl Iterator<Item = (TunnelId, TunnelSummary)> + '_ {
        self.tunnels.keys().filter_map(|id| Some((*id, self.tunnel_summary(*id)?)))
    }

    /// One tunnel and its sessions.
    pub fn tunnel_info(&self, id: TunnelId) -> Option<TunnelInfo> {
        let t = self.tunnels.get(&id)?;
        let mut sessions: Vec<SessionInfo> = t
            .sessions
            .values()
            .map(|s| SessionInfo {
                local_id: s.local_id,
                peer_id: s.peer_id,
                state: match s.state {
                    SessionState::WaitReply => SessionStatus::WaitReply,
                    SessionState::WaitConnected => SessionStatus::WaitConnect,
                    SessionState::Established => SessionStatus::Established,
                },
                outgoing: s.outgoing,
                stale: s.stale,
                unconfirmed: s.unconfirmed,
                remote_end_id: s.params.remote_end_id.clone(),
                pw_type: s.params.pw_type,
                sequencing: s.params.sequencing || s.peer_sequencing,
                cookies: (s.rx_cookie.len() as u8, s.tx_cookie.len() as u8),
            })
            .collect();
        sessions.sort_by_key(|s| s.local_id);
        let state = status_of(&t.state);
        let closing = state == TunnelStatus::Closing;
        let (ns, nr) = t.channel.ns_nr();
        Some(TunnelInfo {
            local_id: t.local_id,
            peer_id: t.peer_id,
            peer: t.peer,
            version: t.params.version,
            transport: t.params.transport,
            state,
            closing,
            initiator: t.initiator,
            peer_host_name: String::from_utf8_lossy(&t.peer_host_name).into_owned(),
            local_failover: t.params.failover,
            peer_failover: t.peer_failover,
            ns,
            nr,
            unacknowledged: t.channel.unacknowledged(),
            channel: t.channel.stats(),
            auth_failures: t.auth_failures,
            sessions,
        })
    }

    /// Removes a tunnel at once, reporting every session down.
    pub(in crate::engine) fn clear_tunnel(&mut self, id: u32, reason: DownReason) {
        let Some(t) = self.tunnels.remove(&id) else { return };
        self.rearm(id);
        let was_up = t.state == TunnelState::Established || matches!(t.state, TunnelState::Closing { .. });
        for s in t.sessions.values() {
            self.session_gone(id, s, reason.clone());
        }
        let ids: Vec<u32> = t.sessions.keys().copied().collect();
        for s in ids {
            self.release_session_id(s);
        }
        if let Some(old) = t.recovers {
            self.recovery_tunnel_gone(old);
        } else if was_up || reason == DownReason::Timeout || reason == DownReason::LostTie {
            self.events.push_back(Event::TunnelDown { tunnel: id, reason });
        }
    }

    /// Sends StopCCN and keeps the tunnel only to acknowledge (RFC 2661
    /// 5.8: state kept "for the full retransmission interval").
    pub(in crate::engine) fn stop_tunnel(&mut self, now: Instant, id: u32, rc: ResultCode) {
        let until = now + self.cfg.close_hold;
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        if matches!(t.state, TunnelState::Closing { .. }) {
            return;
        }
        let v = t.params.version;
        let mut avps = vec![match v {
            Version::V2 => avp(v, AvpValue::AssignedTunnelId(t.local_id as u16)),
            Version::V3 => avp(v, AvpValue::AssignedConnectionId(t.local_id)),
        }];
        avps.push(avp(v, AvpValue::ResultCode(rc.clone())));
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::StopCcn, avps) });
        let was_established = t.state == TunnelState::Established;
        let recovers = t.recovers;
        if !t.move_to(TunnelState::Closing { until }) {
            return;
        }
        let sessions: Vec<Session> = t.sessions.drain().map(|(_, s)| s).collect();
        self.stats.stopccn_sent += 1;
        for s in &sessions {
            self.session_gone(id, s, DownReason::Local(rc.clone()));
            self.release_session_id(s.local_id);
        }
        if let Some(old) = recovers {
            self.recovery_tunnel_gone(old);
        } else if was_established {
            self.events.push_back(Event::TunnelDown { tunnel: id, reason: DownReason::Local(rc) });
        }
        self.flush(now, id);
    }

    /// Tears a tunnel down (StopCCN, result 1: general request to clear).
    pub fn close_tunnel(&mut self, now: Instant, id: TunnelId) -> Result<(), CommandError> {
        if !self.tunnels.contains_key(&id) {
            return Err(CommandError::NoTunnel(id));
        }
        self.stop_tunnel(now, id, ResultCode::new(stopccn::GENERAL_CLEAR, None, ""));
        Ok(())
    }

    /// Stage 6: one in-order, decoded message of an existing tunnel. It is
    /// validated (RFC 2661 4.4.1, RFC 3931 5: the message table and the
    /// M-bit rule), then handled by one exhaustive match on (state,
    /// message type); what the state does not expect goes to
    /// [`Engine::unexpected`].
    pub(in crate::engine) fn on_message(&mut self, now: Instant, id: u32, header_sid: u16, m: Message) {
        use MessageType as M;
        use TunnelState as S;
        let Some(t) = self.tunnels.get(&id) else { return };
        let (v, state, up) = (t.params.version, t.state, t.is_up());
        if let S::Closing { .. } = state {
            // RFC 2661 5.8: after StopCCN, state is kept only to acknowledge.
            self.stats.ignored += 1;
            return;
        }
        if let Err(vio) = validate(v, &m) {
            self.events.push_back(Event::Rejected { peer: t.peer, what: format!("{vio}") });
            let sid = self.session_of(id, header_sid, &m);
            self.apply_reply(now, id, header_sid, vio.reply(), sid);
            return;
        }
        match (state, m.msg_type) {
            // Only acknowledging (returned above, before validation).
            (S::Closing { .. }, _) => self.stats.ignored += 1,
            // A retransmitted SCCRQ, acknowledged by the channel.
            (_, M::Sccrq) => {}
            (S::WaitReply { .. }, M::Sccrp) => self.on_sccrp(now, id, &m),
            (S::WaitConnected { .. }, M::Scccn) => self.on_scccn(now, id, &m),
            (_, M::StopCcn) => self.on_stopccn(now, id, &m),
            // Keepalive: the channel acknowledged it.
            (_, M::Hello) => {}
            (_, M::Icrq | M::Ocrq) if up => self.on_icrq(now, id, &m),
            (_, M::Icrp | M::Ocrp) if up => self.on_icrp(now, id, header_sid, &m),
            (_, M::Iccn | M::Occn) if up => self.on_iccn(now, id, header_sid, &m),
            (_, M::Cdn) if up => self.on_cdn(id, header_sid, &m),
            (_, M::Sli | M::Wen) if up => self.on_link_info(id, header_sid, &m),
            (_, M::Fsq) if up => self.on_fsq(now, id, &m),
            (_, M::Fsr) if up => self.on_fsr(id, &m),
            // RFC 2661 4.4.1 / RFC 3931 5.2: an unknown message type with
            // M=0 "MUST be ignored" (M=1 failed to decode).
            (_, M::Unknown(_)) => self.stats.ignored += 1,
            // An ACK never enters the channel's delivery (it carries no
            // sequenced message); counted if one ever does.
            (_, M::Ack) => self.stats.ignored += 1,
            (
                S::WaitReply { .. }
                | S::WaitConnected { .. }
                | S::Established
                | S::AwaitingRecovery { .. }
                | S::Recovering,
                M::Sccrp
                | M::Scccn
                | M::Icrq
                | M::Ocrq
                | M::Icrp
                | M::Ocrp
                | M::Iccn
                | M::Occn
                | M::Cdn
                | M::Sli
                | M::Wen
                | M::Fsq
                | M::Fsr,
            ) => self.unexpected(now, id, &m),
        }
    }

    /// A valid message that the tunnel's state does not expect: counted and
    /// answered as the RFCs say. RFC 2661 7.2 / RFC 3931 5: an out-of-order
    /// control connection message clears the tunnel with StopCCN result 2,
    /// error 0 ... "FSM error"; a call message before the tunnel is up
    /// likewise ("call request before SCCCN").
    pub(in crate::engine) fn unexpected(&mut self, now: Instant, id: u32, m: &Message) {
        self.stats.ignored += 1;
        let Some(peer) = self.tunnels.get(&id).map(|t| t.peer) else { return };
        self.events.push_back(Event::Rejected { peer, what: format!("unexpected {:?}", m.msg_type) });
        let why = match m.msg_type {
            MessageType::Sccrp => "unexpected SCCRP",
            MessageType::Scccn => "unexpected SCCCN",
            _ => "call request before SCCCN",
        };
        self.stop_tunnel(now, id, ResultCode::new(stopccn::FSM_ERROR, None, why));
    }

    /// StopCCN from the peer: the tunnel and its sessions are cleared; its
    /// state is kept only to acknowledge (RFC 2661 5.8).
    fn on_stopccn(&mut self, now: Instant, id: u32, m: &Message) {
        let rc = m
            .find(|a| if let AvpValue::ResultCode(r) = a { Some(r.clone()) } else { None })
            .unwrap_or(ResultCode::new(0, None, ""));
        let until = now + self.cfg.close_hold;
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let was_up = t.state == TunnelState::Established;
        if !t.move_to(TunnelState::Closing { until }) {
            return;
        }
        let recovers = t.recovers;
        let sessions: Vec<Session> = t.sessions.drain().map(|(_, s)| s).collect();
        for s in &sessions {
            self.session_gone(id, s, DownReason::Peer(rc.clone()));
            self.release_session_id(s.local_id);
        }
        if let Some(old) = recovers {
            // F-CC-3: after the reset this only ends the recovery tunnel;
            // before it, the recovery failed.
            self.recovery_tunnel_gone(old);
        } else if was_up {
            self.events.push_back(Event::TunnelDown { tunnel: id, reason: DownReason::Peer(rc) });
        }
    }

    /// SLI and WEN of a known session: reported.
    fn on_link_info(&mut self, id: u32, header_sid: u16, m: &Message) {
        let known = self
            .session_of(id, header_sid, m)
            .filter(|sid| self.tunnels.get(&id).is_some_and(|t| t.sessions.contains_key(sid)));
        let Some(sid) = known else {
            self.stats.ignored += 1;
            return;
        };
        if m.msg_type == MessageType::Sli {
            let circuit_active =
                m.find(|a| if let AvpValue::CircuitStatus { active, .. } = a { Some(*active) } else { None });
            self.events.push_back(Event::LinkInfo { tunnel: id, local_session_id: sid, circuit_active });
        } else {
            self.events.push_back(Event::WanError { tunnel: id, local_session_id: sid });
        }
    }

    /// Common SCCRQ/SCCRP bookkeeping: peer window, host name, failover.
    pub(in crate::engine) fn learn_peer(t: &mut Tunnel, m: &Message) {
        if let Some(w) = m.find(|a| if let AvpValue::ReceiveWindowSize(w) = a { Some(*w) } else { None }) {
            t.channel.set_peer_window(w);
        }
        if let Some(h) = m.find(|a| if let AvpValue::HostName(h) = a { Some(h.clone()) } else { None }) {
            t.peer_host_name = h;
        }
        t.peer_failover = failover::peer_capability(m);
    }

    pub(in crate::engine) fn tunnel_up_event(t: &Tunnel) -> Event {
        Event::TunnelUp {
            tunnel: t.local_id,
            peer: t.peer,
            peer_host_name: t.peer_host_name.clone(),
            peer_failover: t.peer_failover,
        }
    }
}

/// The public status of a tunnel state.
fn status_of(state: &TunnelState) -> TunnelStatus {
    match state {
        TunnelState::WaitReply { .. } => TunnelStatus::WaitReply,
        TunnelState::WaitConnected { .. } => TunnelStatus::WaitConnect,
        TunnelState::Established => TunnelStatus::Established,
        TunnelState::AwaitingRecovery { .. } => TunnelStatus::AwaitingRecovery,
        TunnelState::Closing { .. } => TunnelStatus::Closing,
        TunnelState::Recovering => TunnelStatus::Recovering,
    }
}
