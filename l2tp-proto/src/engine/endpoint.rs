//! The endpoint: demultiplexing of received datagrams, authentication,
//! the timers, encoding of what the channels send, and peer settings.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use rand::RngCore;

use super::*;
use crate::{
    channel::{ChannelConfig, Received, Transmit},
    wire::{
        avp::attr,
        message::{peek_avp, peek_message_type, sccrq_sender_id, DecodeError},
        AvpValue, ControlHeader, ControlMessage, Message, MessageType, Reply, Transport, Version,
    },
};

impl Engine {
    /// Parameters for tunnels that `peer` opens (SCCRQ from it): the
    /// per-peer ones, else [`EngineConfig::accept`].
    pub(in crate::engine) fn accept_params(
        &self,
        peer: SocketAddr,
        version: Version,
        transport: Transport,
    ) -> Option<&TunnelParams> {
        self.peers.get(&(peer.ip(), version, transport)).or(self.cfg.accept.as_ref())
    }

    /// Accepts tunnels from `peer` of the version and transport of
    /// `params`, with these parameters (replacing any earlier ones);
    /// tunnels already up are not touched.
    pub fn set_peer(&mut self, peer: std::net::IpAddr, params: TunnelParams) {
        self.peers.insert((peer, params.version, params.transport), params);
    }

    /// Stops accepting new tunnels from `peer` of that version and
    /// transport by their own parameters.
    pub fn remove_peer(&mut self, peer: std::net::IpAddr, version: Version, transport: Transport) {
        self.peers.remove(&(peer, version, transport));
    }

    /// Replaces the pseudowires `peer` may open on tunnel `id` (and on
    /// its next tunnels).
    pub fn set_pseudowires(&mut self, id: TunnelId, pseudowires: Vec<SessionParams>) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        t.params.pseudowires = pseudowires.clone();
        if let Some(p) = self.peers.get_mut(&(t.peer.ip(), t.params.version, t.params.transport)) {
            p.pseudowires = pseudowires;
        }
        Ok(())
    }

    /// The channel settings of a tunnel with `params`.
    pub(in crate::engine) fn channel_config(&self, params: &TunnelParams) -> ChannelConfig {
        let mut cfg = params.timers.as_ref().map_or_else(|| self.cfg.channel.clone(), |t| t.channel.clone());
        if params.version == Version::V2 {
            // RFC 2661 5.8: "This cap MUST be no less than 8 seconds per
            // retransmission." (L2TPv3 honours a lower cap: RFC 3931 4.2
            // makes it a SHOULD.)
            cfg.retransmit_cap = cfg.retransmit_cap.max(Duration::from_secs(8));
        }
        cfg
    }

    pub(in crate::engine) fn hello_interval(&self, t: &Tunnel) -> Duration {
        t.params.timers.as_ref().map_or(self.cfg.hello_interval, |x| x.hello_interval)
    }

    pub(in crate::engine) fn alloc_tunnel_id(&mut self, version: Version) -> u32 {
        loop {
            let id = match version {
                Version::V2 => u32::from(self.rng.next_u32() as u16),
                Version::V3 => self.rng.next_u32(),
            };
            if id != 0 && !self.tunnels.contains_key(&id) {
                return id;
            }
        }
    }

    pub(in crate::engine) fn random_array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        self.rng.fill_bytes(&mut a);
        a
    }

    pub(in crate::engine) fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// Encodes and queues everything the tunnel's channel wants to send.
    pub(in crate::engine) fn flush(&mut self, now: Instant, id: u32) {
        self.encode_transmits(now, id);
        self.rearm(id);
    }

    fn encode_transmits(&mut self, now: Instant, id: u32) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let secret = t.params.secret.clone();
        while let Some(tx) = t.channel.poll_transmit(now) {
            let (header, message) = match tx {
                Transmit::Message { ns, nr, msg } => (
                    ControlHeader {
                        version: t.params.version,
                        tunnel_id: t.peer_id,
                        session_id: msg.session_id,
                        ns,
                        nr,
                    },
                    Some(msg.msg.clone()),
                ),
                Transmit::Ack { ns, nr } => {
                    let message = match t.params.version {
                        // RFC 3931 6.15: an explicit ACK message.
                        Version::V3 => Some(Message::new(MessageType::Ack, Vec::new())),
                        Version::V2 => None,
                    };
                    (ControlHeader { version: t.params.version, tunnel_id: t.peer_id, session_id: 0, ns, nr }, message)
                }
            };
            let message = match (&t.cma, message) {
                // "MUST be placed immediately after the Message Type AVP";
                // with authentication there are no ZLBs (RFC 3931 6.15).
                (Some(_), m) => {
                    let mut m = m.unwrap_or_else(|| Message::new(MessageType::Ack, Vec::new()));
                    let md = AvpValue::MessageDigest {
                        digest_type: crate::wire::avp::digest_type::HMAC_MD5,
                        digest: vec![0; 16],
                    };
                    m.avps.insert(0, avp(Version::V3, md));
                    Some(m)
                }
                (None, m) => m,
            };
            let is_sccrq = message.as_ref().is_some_and(|m| m.msg_type == MessageType::Sccrq);
            match (ControlMessage { header, message }).encode(t.params.transport, secret.as_deref()) {
                Ok(mut bytes) => {
                    if let Some(c) = &t.cma {
                        let nonces = match (&c.theirs, is_sccrq) {
                            (Some(theirs), false) => Some((c.ours.as_slice(), theirs.as_slice())),
                            _ => None,
                        };
                        crate::wire::auth::sign_with(t.params.transport, &mut bytes, &c.key, nonces);
                    }
                    self.transmits.push_back((t.peer, t.params.transport, bytes))
                }
                Err(e) => self.events.push_back(Event::Rejected { peer: t.peer, what: format!("cannot encode: {e}") }),
            }
        }
    }

    /// When [`Engine::handle_timeout`] must next be called. O(1): every
    /// tunnel's next deadline is kept in one ordered set ([`Engine::rearm`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next deadline of tunnel `t`: its channel's timers, HELLO on an
    /// idle established tunnel, the end of closing or of the peer's
    /// Recovery Time, the query of stale sessions. A recovering (old)
    /// tunnel has none (F-RT-12).
    fn deadline(&self, t: &Tunnel) -> Option<Instant> {
        let hello =
            (t.state == TunnelState::Established && t.channel.is_idle()).then(|| t.last_rx + self.hello_interval(t));
        let until = match t.state {
            TunnelState::Recovering => return None,
            TunnelState::Closing { until } => Some(until),
            // Acknowledged again: due now, to end the wait (F-CAP-3).
            TunnelState::AwaitingRecovery { .. } if t.channel.retries() == 0 && t.channel.unacknowledged() == 0 => {
                Some(t.last_rx)
            }
            TunnelState::AwaitingRecovery { until } => Some(until),
            _ => None,
        };
        [t.channel.poll_timeout(), hello, until, t.stale_query_at].into_iter().flatten().min()
    }

    /// Re-files tunnel `id` under its next deadline (or takes it out of
    /// the timers when it is gone). Called after everything that changes
    /// a tunnel, through [`Engine::flush`].
    pub(in crate::engine) fn rearm(&mut self, id: u32) {
        let next = self.tunnels.get(&id).and_then(|t| self.deadline(t));
        let old = match next {
            Some(n) => self.armed.insert(id, n),
            None => self.armed.remove(&id),
        };
        if old != next {
            if let Some(o) = old {
                self.timers.remove(&(o, id));
            }
            if let Some(n) = next {
                self.timers.insert((n, id));
            }
        }
    }

    /// Runs the timers that are due: retransmissions, delayed acks, HELLO,
    /// teardown, RFC 4951's.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut ids: Vec<u32> = self.timers.range(..=(now, u32::MAX)).map(|(_, id)| *id).collect();
        ids.dedup();
        for id in ids {
            self.run_timers(now, id);
            self.rearm(id);
        }
    }

    fn run_timers(&mut self, now: Instant, id: u32) {
        {
            let Some(hello) = self.tunnels.get(&id).map(|t| self.hello_interval(t)) else { return };
            let Some(t) = self.tunnels.get_mut(&id) else { return };
            if t.state == TunnelState::Recovering {
                // Waits for its recovery tunnel; no timers of its own.
                return;
            }
            if let TunnelState::Closing { until } = t.state {
                if now >= until {
                    self.tunnels.remove(&id);
                    return;
                }
            }
            if self.failover_timers(now, id) == TimerOutcome::Cleared {
                return;
            }
            let Some(t) = self.tunnels.get_mut(&id) else { return };
            if t.state == TunnelState::Established && now >= t.last_rx + hello && t.channel.is_idle() {
                // RFC 2661 6.5 / RFC 3931 6.5: keepalive on an idle tunnel.
                t.last_rx = now;
                t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Hello, Vec::new()) });
            }
            self.query_stale(now, id);
            self.flush(now, id);
        }
    }

    /// Feeds one received control datagram (UDP payload or IP-115 payload).
    ///
    /// One pipeline, in this order; nothing acts on a message that has not
    /// passed every earlier stage: 1. the header; 2. the tunnel it is for;
    /// 3. authentication (RFC 3931 4.3); 4. the reliable channel
    /// (sequencing, duplicates, acknowledgement: RFC 2661 5.8, RFC 3931
    /// 4.2); 5. decoding and validation; 6. the state machine.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, transport: Transport, bytes: &[u8]) {
        self.stats.datagrams += 1;
        // 1. Header.
        let (header, body) = match ControlHeader::parse(transport, bytes) {
            Ok(h) => h,
            Err(e) => {
                // RFC 2661 3.1: such packets are discarded.
                self.stats.malformed += 1;
                self.events.push_back(Event::Rejected { peer: from, what: format!("header: {e}") });
                return;
            }
        };
        let msg_type = peek_message_type(body);
        // 2. Tunnel (0: a new SCCRQ).
        let Some(id) = self.demux(from, &header, body, msg_type) else { return };
        // 3. Authentication.
        if !self.authentic(from, &header, id, transport, bytes, body, msg_type) {
            // RFC 3931 4.3: "This message authenticity and integrity checking
            // MUST be performed before utilizing any information contained
            // within the control message. If the calculation fails, the
            // message MUST be dropped."
            self.stats.auth_failures += 1;
            if let Some(t) = self.tunnels.get_mut(&id) {
                t.auth_failures += 1;
            }
            self.events.push_back(Event::Rejected { peer: from, what: "message digest does not verify".into() });
            return;
        }
        if id == 0 {
            // A new tunnel has no reliable channel yet: the SCCRQ takes Ns 0
            // on the channel of the tunnel it creates.
            self.on_sccrq_datagram(now, from, transport, header, body);
            return;
        }
        // 4. Reliable channel; 5. and 6. for what it delivers in order.
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        // An empty body is a ZLB; a v3 ACK carries no sequenced message.
        let incoming = (!body.is_empty() && msg_type != Some(MessageType::Ack))
            .then(|| Incoming { session_id: header.session_id, body: body.to_vec() });
        let received = t.channel.on_receive(now, header.ns, header.nr, incoming);
        t.last_rx = now;
        if let Received::Deliver(delivered) = received {
            for m in delivered {
                self.deliver(now, id, m);
            }
        }
        self.flush(now, id);
    }

    /// The tunnel a datagram is for: by our ID, or 0 for a new SCCRQ.
    /// `None` (counted) when it is for no tunnel of ours.
    fn demux(
        &mut self,
        from: SocketAddr,
        header: &ControlHeader,
        body: &[u8],
        msg_type: Option<MessageType>,
    ) -> Option<u32> {
        if header.tunnel_id != 0 {
            return match self.tunnels.get(&header.tunnel_id) {
                Some(t) if t.state == TunnelState::Recovering => {
                    // RFC 4951 F-RT-12: "A control packet received on the
                    // recovered (old) tunnel before its control channel
                    // reset MUST be silently discarded."
                    self.stats.ignored += 1;
                    None
                }
                Some(t) if t.peer == from => Some(header.tunnel_id),
                _ => {
                    self.stats.unknown_tunnel += 1;
                    self.events.push_back(Event::Rejected {
                        peer: from,
                        what: format!("unknown tunnel {}", header.tunnel_id),
                    });
                    None
                }
            };
        }
        if msg_type != Some(MessageType::Sccrq) {
            self.stats.unknown_tunnel += 1;
            self.events
                .push_back(Event::Rejected { peer: from, what: "message for tunnel 0 that is not an SCCRQ".into() });
            return None;
        }
        // A retransmitted SCCRQ belongs to the tunnel it created.
        let peer_tid = sccrq_sender_id(header.version, body);
        let existing = self
            .tunnels
            .values()
            .find(|t| t.peer == from && Some(t.peer_id) == peer_tid && !t.initiator)
            .map(|t| t.local_id);
        Some(existing.unwrap_or(0))
    }

    /// RFC 3931 4.3 check of a datagram for tunnel `id` (0: a new SCCRQ),
    /// on its bytes, before anything in it is decoded. True when
    /// authentication is off for it.
    #[expect(clippy::too_many_arguments, reason = "the stages' inputs, passed as they are")]
    fn authentic(
        &mut self,
        from: SocketAddr,
        header: &ControlHeader,
        id: u32,
        transport: Transport,
        bytes: &[u8],
        body: &[u8],
        msg_type: Option<MessageType>,
    ) -> bool {
        use crate::wire::auth::{cma_key, verify, verify_with};
        if id == 0 {
            return match self.sccrq_secret(from, header.version, transport, body) {
                Some(secret) => verify(transport, bytes, &cma_key(&secret), None),
                None => true,
            };
        }
        let Some(t) = self.tunnels.get_mut(&id) else { return false };
        let state = t.state;
        let Some(c) = t.cma.as_mut() else { return true };
        if msg_type == Some(MessageType::Sccrq) {
            // A retransmitted SCCRQ: "there is only one nonce available".
            return verify_with(transport, bytes, &c.key, None);
        }
        let theirs = match (&c.theirs, state, msg_type) {
            (Some(n), ..) => n.clone(),
            // The SCCRP brings the peer's nonce; it is kept once it verified.
            (None, TunnelState::WaitReply { .. }, Some(MessageType::Sccrp)) => {
                match peek_avp(Version::V3, body, 0, attr::CONTROL_AUTH_NONCE) {
                    Some(AvpValue::ControlAuthNonce(n)) => n,
                    _ => return false,
                }
            }
            // A StopCCN that refuses our SCCRQ: the peer never sent a nonce
            // of its own, so it signs with an empty one (refuse_sccrq).
            (None, TunnelState::WaitReply { .. }, Some(MessageType::StopCcn)) => Vec::new(),
            _ => return false,
        };
        let ok = verify_with(transport, bytes, &c.key, Some((&theirs, &c.ours)));
        if ok && c.theirs.is_none() && !theirs.is_empty() {
            c.theirs = Some(theirs);
        }
        ok
    }

    /// The L2TPv3 secret a new SCCRQ is authenticated with: that of the
    /// tunnel a recovery SCCRQ names (RFC 4951 F-RT-10), else of the
    /// parameters for its sender. `None`: authentication is off for it.
    pub(in crate::engine) fn sccrq_secret(
        &self,
        from: SocketAddr,
        version: Version,
        transport: Transport,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        if version != Version::V3 {
            return None;
        }
        if let Some(AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id }) =
            peek_avp(version, body, attr::TUNNEL_RECOVERY, attr::TUNNEL_RECOVERY)
        {
            if let Some(old) = self.recovery_target(recover_tunnel_id, recover_remote_tunnel_id) {
                return old.params.secret.clone();
            }
        }
        self.accept_params(from, version, transport).filter(|p| p.version == version).and_then(|p| p.secret.clone())
    }

    /// Stages 5 and 6: decodes and validates one message the reliable
    /// channel delivered in order, then hands it to the state machine. A
    /// message that does not decode is answered here, once (RFC 2661 4.1,
    /// RFC 3931 5.2).
    fn deliver(&mut self, now: Instant, id: u32, m: Incoming) {
        let Some(t) = self.tunnels.get(&id) else { return };
        let (version, peer) = (t.params.version, t.peer);
        let closing = matches!(t.state, TunnelState::Closing { .. });
        match Message::decode(version, &m.body, t.params.secret.as_deref()) {
            Ok(msg) => self.on_message(now, id, m.session_id, msg),
            Err(e) => {
                if matches!(e, DecodeError::HiddenCorrupt { .. } | DecodeError::HiddenWithoutSecret { .. }) {
                    self.stats.auth_failures += 1;
                    if let Some(t) = self.tunnels.get_mut(&id) {
                        t.auth_failures += 1;
                    }
                } else {
                    self.stats.malformed += 1;
                }
                self.events.push_back(Event::Rejected { peer, what: format!("message: {e}") });
                if closing {
                    // Only acknowledging now.
                    self.stats.ignored += 1;
                    return;
                }
                // The session of a session message is named by its header
                // (v2) or its Remote Session ID AVP (v3).
                let sid = match peek_avp(version, &m.body, attr::REMOTE_SESSION_ID, attr::REMOTE_SESSION_ID) {
                    Some(AvpValue::RemoteSessionId(s)) if version == Version::V3 && s != 0 => Some(s),
                    _ => None,
                };
                self.apply_reply(now, id, m.session_id, e.reply(), sid);
            }
        }
    }

    /// Stages 5 and 6 for a new SCCRQ (authenticated): decodes it, and
    /// refuses it with the code of the fault if it does not decode.
    fn on_sccrq_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        header: ControlHeader,
        body: &[u8],
    ) {
        let secret = self.accept_params(from, header.version, transport).and_then(|p| p.secret.clone());
        let sign = self.refusal_signature(from, header.version, transport, body);
        match Message::decode(header.version, body, secret.as_deref()) {
            Ok(m) => self.on_new_sccrq(now, from, transport, header, m, sign),
            Err(e) => {
                if matches!(e, DecodeError::HiddenCorrupt { .. } | DecodeError::HiddenWithoutSecret { .. }) {
                    self.stats.auth_failures += 1;
                } else {
                    self.stats.malformed += 1;
                }
                self.events.push_back(Event::Rejected { peer: from, what: format!("message: {e}") });
                if let (Some(peer_tid), Reply::StopCcn(rc)) = (sccrq_sender_id(header.version, body), e.reply()) {
                    // An SCCRQ that does not decode: the tunnel it asks for
                    // is refused with the code of the fault.
                    self.refuse_sccrq(from, transport, header.version, peer_tid, rc, sign);
                }
            }
        }
    }

    pub(in crate::engine) fn apply_reply(
        &mut self,
        now: Instant,
        id: u32,
        header_sid: u16,
        reply: Reply,
        sid: Option<u32>,
    ) {
        match reply {
            Reply::Discard | Reply::Ignore => self.stats.ignored += 1,
            Reply::StopCcn(rc) => self.stop_tunnel(now, id, rc),
            Reply::Cdn(rc) => {
                let sid = sid.unwrap_or(u32::from(header_sid));
                if self.tunnels.get(&id).is_some_and(|t| t.sessions.contains_key(&sid)) {
                    self.send_cdn(now, id, sid, rc);
                } else {
                    self.stats.ignored += 1;
                }
            }
        }
    }
}
