//! The endpoint: demultiplexing of received datagrams, authentication,
//! the timers, encoding of what the channels send, and peer settings.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use rand::RngCore;

use super::*;
use crate::{
    channel::{ChannelConfig, Transmit},
    wire::{
        message::DecodeError, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Reply, Transport, Version,
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
        params.timers.as_ref().map_or_else(|| self.cfg.channel.clone(), |t| t.channel.clone())
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

    pub(in crate::engine) fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// Encodes and queues everything the tunnel's channel wants to send.
    pub(in crate::engine) fn flush(&mut self, now: Instant, id: u32) {
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
                        crate::wire::auth::sign(t.params.transport, &mut bytes, &c.key, nonces);
                    }
                    self.transmits.push_back((t.peer, t.params.transport, bytes))
                }
                Err(e) => self.events.push_back(Event::Rejected { peer: t.peer, what: format!("cannot encode: {e}") }),
            }
        }
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tunnels
            .values()
            .filter(|t| t.state != TunnelState::Recovering)
            .flat_map(|t| {
                let hello = (t.state == TunnelState::Established).then(|| t.last_rx + self.hello_interval(t));
                let closing = match t.state {
                    TunnelState::Closing { until } | TunnelState::AwaitingRecovery { until } => Some(until),
                    _ => None,
                };
                [t.channel.poll_timeout(), hello, closing]
            })
            .flatten()
            .min()
    }

    /// Runs the timers: retransmissions, delayed acks, HELLO, teardown.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u32> = self.tunnels.keys().copied().collect();
        for id in ids {
            let Some(hello) = self.tunnels.get(&id).map(|t| self.hello_interval(t)) else { continue };
            let Some(t) = self.tunnels.get_mut(&id) else { continue };
            if t.state == TunnelState::Recovering {
                // Waits for its recovery tunnel; no timers of its own.
                continue;
            }
            if let TunnelState::Closing { until } = t.state {
                if now >= until {
                    self.tunnels.remove(&id);
                    continue;
                }
            }
            if let TunnelState::AwaitingRecovery { until } = t.state {
                if now >= until {
                    // F-CAP-3: the Recovery Time ran out: recovery failed.
                    self.clear_tunnel(id, DownReason::Timeout);
                    continue;
                }
                if t.channel.retries() == 0 && t.channel.unacknowledged() == 0 {
                    // "stops ... when a control message gets acknowledged
                    // (the loss was temporary)".
                    t.state = TunnelState::Established;
                    self.events.push_back(Event::TunnelResumed { tunnel: id });
                }
            }
            if t.channel.handle_timeout(now).is_err() {
                let recovery_time = match (t.state, t.params.failover, t.peer_failover) {
                    // F-CAP-4: only when both ends advertised C.
                    (TunnelState::Established, Some(ours), Some(theirs)) if ours.control && theirs.control => {
                        Some(Duration::from_millis(u64::from(theirs.recovery_time_ms)))
                    }
                    (TunnelState::AwaitingRecovery { .. }, ..) => Some(Duration::ZERO),
                    _ => None,
                };
                match recovery_time {
                    Some(extra) => {
                        if let TunnelState::Established = t.state {
                            t.state = TunnelState::AwaitingRecovery { until: now + extra };
                            self.events.push_back(Event::FailureDetected { tunnel: id, recovery_time: extra });
                        }
                        t.channel.extend(now);
                    }
                    None => {
                        // RFC 2661 5.8: "the tunnel and all sessions within
                        // MUST be cleared".
                        self.clear_tunnel(id, DownReason::Timeout);
                        continue;
                    }
                }
            }
            if t.state == TunnelState::Established && now >= t.last_rx + hello && t.channel.is_idle() {
                // RFC 2661 6.5 / RFC 3931 6.5: keepalive on an idle tunnel.
                t.last_rx = now;
                t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Hello, Vec::new()) });
            }
            self.flush(now, id);
        }
    }

    /// Feeds one received control datagram (UDP payload or IP-115 payload).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, transport: Transport, bytes: &[u8]) {
        self.stats.datagrams += 1;
        let (header, body) = match ControlHeader::parse(transport, bytes) {
            Ok(h) => h,
            Err(e) => {
                // RFC 2661 3.1: such packets are discarded.
                self.stats.malformed += 1;
                self.events.push_back(Event::Rejected { peer: from, what: format!("header: {e}") });
                return;
            }
        };
        // The tunnel this is for: by our ID, or a new one for an SCCRQ.
        let id = if header.tunnel_id != 0 {
            match self.tunnels.get(&header.tunnel_id) {
                Some(t) if t.state == TunnelState::Recovering => {
                    // RFC 4951 F-RT-12: "A control packet received on the
                    // recovered (old) tunnel before its control channel
                    // reset MUST be silently discarded."
                    self.stats.ignored += 1;
                    return;
                }
                Some(t) if t.peer == from => header.tunnel_id,
                _ => {
                    self.stats.unknown_tunnel += 1;
                    self.events.push_back(Event::Rejected {
                        peer: from,
                        what: format!("unknown tunnel {}", header.tunnel_id),
                    });
                    return;
                }
            }
        } else {
            0
        };
        let secret = if id != 0 { self.tunnels.get(&id).and_then(|t| t.params.secret.clone()) } else { None };
        let secret =
            secret.or_else(|| self.accept_params(from, header.version, transport).and_then(|p| p.secret.clone()));
        let message = if body.is_empty() {
            None
        } else {
            match Message::decode(header.version, body, secret.as_deref()) {
                Ok(m) => Some(m),
                Err(e) => {
                    if matches!(e, DecodeError::HiddenCorrupt { .. } | DecodeError::HiddenWithoutSecret { .. }) {
                        self.stats.auth_failures += 1;
                    } else {
                        self.stats.malformed += 1;
                    }
                    self.events.push_back(Event::Rejected { peer: from, what: format!("message: {e}") });
                    if id != 0 {
                        self.apply_reply(now, id, header.session_id, e.reply(), None);
                    } else if let (Some(peer_tid), Reply::StopCcn(rc)) =
                        (crate::wire::message::sccrq_sender_id(header.version, body), e.reply())
                    {
                        // An SCCRQ that does not decode: the tunnel it asks
                        // for is refused with the code of the fault.
                        self.refuse_sccrq(from, transport, header.version, peer_tid, rc);
                    }
                    return;
                }
            }
        };
        if !self.authentic(from, header.version, id, transport, bytes, message.as_ref()) {
            // RFC 3931 4.3: a message whose digest does not verify is
            // dropped before anything in it is used.
            self.stats.auth_failures += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "message digest does not verify".into() });
            return;
        }
        if id == 0 {
            match message {
                Some(m) if m.msg_type == MessageType::Sccrq => self.on_new_sccrq(now, from, transport, header, m),
                _ => {
                    self.stats.unknown_tunnel += 1;
                    self.events.push_back(Event::Rejected {
                        peer: from,
                        what: "message for tunnel 0 that is not an SCCRQ".into(),
                    });
                }
            }
            return;
        }
        self.on_tunnel_message(now, id, header, message);
    }

    /// RFC 3931 4.3 check of a decoded datagram for tunnel `id` (0: a new
    /// SCCRQ). True when authentication is off for it.
    pub(in crate::engine) fn authentic(
        &mut self,
        from: SocketAddr,
        version: Version,
        id: u32,
        transport: Transport,
        bytes: &[u8],
        message: Option<&Message>,
    ) -> bool {
        use crate::wire::auth::{cma_key, verify};
        if id == 0 {
            if version != Version::V3 {
                return true;
            }
            // F-RT-10: a recovery SCCRQ is authenticated with the secret of
            // the tunnel it recovers.
            if let Some(old) = message.and_then(|m| self.recovery_target(m)) {
                let Some(secret) = old.params.secret.clone() else { return true };
                return verify(transport, bytes, &cma_key(&secret), None);
            }
            let Some(secret) = self
                .accept_params(from, version, transport)
                .filter(|p| p.version == version)
                .and_then(|p| p.secret.clone())
            else {
                return true;
            };
            return message.is_some() && verify(transport, bytes, &cma_key(&secret), None);
        }
        let Some(c) = self.tunnels.get_mut(&id).and_then(|t| t.cma.as_mut()) else { return true };
        let Some(m) = message else { return false };
        // The SCCRP brings the peer's nonce; it is kept once it verified.
        let theirs = c
            .theirs
            .clone()
            .or_else(|| m.find(|a| if let AvpValue::ControlAuthNonce(n) = a { Some(n.clone()) } else { None }));
        let Some(theirs) = theirs else { return false };
        let ok = verify(transport, bytes, &c.key, Some((&theirs, &c.ours)));
        if ok {
            c.theirs = Some(theirs);
        }
        ok
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
