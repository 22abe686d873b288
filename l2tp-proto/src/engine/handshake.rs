//! Control connection establishment: SCCRQ/SCCRP/SCCCN, the tie breaker,
//! v2 challenge/response and the v3 nonces of message authentication.

use std::{net::SocketAddr, time::Instant};

use md5::{Digest, Md5};

use super::*;
use crate::{
    channel::Channel,
    wire::{
        rules::validate,
        types::{error, stopccn},
        Avp, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Reply, ResultCode, Transport, Version,
    },
};

/// L2TPv3 control message authentication state (RFC 3931 4.3).
#[derive(Debug)]
pub(in crate::engine) struct Cma {
    pub(in crate::engine) key: crate::wire::auth::DigestKey,
    pub(in crate::engine) ours: Vec<u8>,
    pub(in crate::engine) theirs: Option<Vec<u8>>,
}

/// RFC 2661 4.2 / RFC 1994 4.1: MD5(ID || secret || challenge), ID being
/// the Message Type of the message that carries the response.
pub fn challenge_response(msg_type: MessageType, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([msg_type.to_u16() as u8]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Constant-time equality for secrets and digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What signs a StopCCN refusing an authenticated SCCRQ: the secret that
/// authenticated it and its nonce (see [`Engine::refuse_sccrq`]).
#[derive(Clone, Debug)]
pub(in crate::engine) struct RefusalKey {
    pub(in crate::engine) secret: Vec<u8>,
    pub(in crate::engine) nonce: Vec<u8>,
}

impl Engine {
    /// The key of a refusal of the SCCRQ `body`, if it was authenticated.
    pub(in crate::engine) fn refusal_signature(
        &self,
        from: SocketAddr,
        version: Version,
        transport: Transport,
        body: &[u8],
    ) -> Option<RefusalKey> {
        let secret = self.sccrq_secret(from, version, transport, body)?;
        match crate::wire::message::peek_avp(version, body, 0, crate::wire::avp::attr::CONTROL_AUTH_NONCE)? {
            AvpValue::ControlAuthNonce(nonce) => Some(RefusalKey { secret, nonce }),
            _ => None,
        }
    }

    /// Opens a control connection to `peer`.
    pub fn connect(&mut self, now: Instant, peer: SocketAddr, params: TunnelParams) -> Result<TunnelId, CommandError> {
        if self.tunnels.len() >= self.cfg.max_tunnels {
            return Err(CommandError::Limit("tunnels"));
        }
        if params.transport == Transport::Ip && params.version == Version::V2 {
            return Err(CommandError::Invalid("L2TPv2 runs over UDP only"));
        }
        Ok(self.open_tunnel(now, peer, params, None))
    }

    /// Initiator: a new control connection with its SCCRQ sent (a recovery
    /// tunnel for `recovers`, if given).
    pub(in crate::engine) fn open_tunnel(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        params: TunnelParams,
        recovers: Option<u32>,
    ) -> u32 {
        let id = self.alloc_tunnel_id(params.version);
        let challenge = params.secret.as_ref().filter(|_| params.version == Version::V2).map(|_| self.random_array());
        let tie_breaker = self.random_array();
        let cma = self.new_cma(&params);
        let channel = Channel::new(self.channel_config(&params));
        let state = TunnelState::WaitReply { tie_breaker, challenge };
        let mut t = Tunnel { cma, initiator: true, recovers, ..Tunnel::new(now, state, id, peer, params, channel) };
        let msg = self.sccrq_or_sccrp(&t, MessageType::Sccrq, None);
        t.channel.send(now, Outgoing { session_id: 0, msg });
        self.tunnels.insert(id, t);
        self.flush(now, id);
        id
    }

    /// RFC 3931 4.3: with a shared secret, L2TPv3 control messages are
    /// authenticated, with a nonce of ours.
    pub(in crate::engine) fn new_cma(&mut self, params: &TunnelParams) -> Option<Cma> {
        let secret = params.secret.as_ref().filter(|_| params.version == Version::V3)?;
        Some(Cma {
            key: crate::wire::auth::DigestKey::new(&crate::wire::auth::cma_key(secret)),
            ours: self.random_bytes(16),
            theirs: None,
        })
    }

    pub(in crate::engine) fn sccrq_or_sccrp(
        &mut self,
        t: &Tunnel,
        msg_type: MessageType,
        response: Option<[u8; 16]>,
    ) -> Message {
        use AvpValue::*;
        let v = t.params.version;
        let mut avps = Vec::new();
        match v {
            Version::V2 => {
                avps.push(avp(v, ProtocolVersion { version: 1, revision: 0 }));
                avps.push(avp(v, HostName(self.cfg.host_name.as_bytes().to_vec())));
                avps.push(avp(v, FramingCapabilities(3)));
                avps.push(avp(v, AssignedTunnelId(t.local_id as u16)));
            }
            Version::V3 => {
                avps.push(avp(v, HostName(self.cfg.host_name.as_bytes().to_vec())));
                avps.push(avp(v, RouterId(self.cfg.router_id)));
                avps.push(avp(v, AssignedConnectionId(t.local_id)));
                avps.push(avp(v, PwCapabilities(t.params.pw_types.clone())));
            }
        }
        avps.push(avp(v, ReceiveWindowSize(t.channel.receive_window())));
        avps.push(avp(v, VendorName(self.cfg.vendor_name.as_bytes().to_vec())));
        if msg_type == MessageType::Sccrq {
            if let Some(tb) = t.tie_breaker() {
                avps.push(avp(v, TieBreaker(tb)));
            }
        }
        avps.extend(self.failover_avps(t, msg_type));
        if let Some(r) = response {
            avps.push(avp(v, ChallengeResponse(r)));
        }
        if let Some(c) = &t.cma {
            avps.push(avp(v, ControlAuthNonce(c.ours.clone())));
        }
        if let Some(c) = t.our_challenge() {
            avps.push(avp(v, Challenge(c.to_vec())));
        }
        // Nothing hidden while the control connection is set up: the peer
        // learns from these very messages who we are and so which secret to
        // use (xl2tpd 1.3 cannot unhide AVPs in SCCRQ or SCCRP). Session
        // messages hide theirs.
        Message::new(msg_type, avps)
    }

    /// With `hide_avps` (v2 and a secret): a Random Vector first and the
    /// AVPs that may be hidden hidden (RFC 2661 4.3).
    pub(in crate::engine) fn maybe_hide(&mut self, t: &Tunnel, mut msg: Message) -> Message {
        if !(t.params.hide_avps && t.params.secret.is_some() && t.params.version == Version::V2) {
            return msg;
        }
        let hideable = |a: &Avp| {
            matches!(
                a.value,
                AvpValue::AssignedTunnelId(_) | AvpValue::AssignedSessionId(_) | AvpValue::CallSerialNumber(_)
            )
        };
        if !msg.avps.iter().any(hideable) {
            return msg;
        }
        for a in msg.avps.iter_mut().filter(|a| hideable(a)) {
            a.flags.hidden = true;
        }
        let rv = self.random_bytes(16);
        msg.avps.insert(0, avp(t.params.version, AvpValue::RandomVector(rv)));
        msg
    }

    pub(in crate::engine) fn on_new_sccrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        header: ControlHeader,
        m: Message,
        sign: Option<RefusalKey>,
    ) {
        let v = header.version;
        let peer_tid = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedTunnelId(t) = a { Some(u32::from(*t)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::AssignedConnectionId(t) = a { Some(*t) } else { None }),
        };
        if let Err(vio) = validate(v, &m) {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: format!("SCCRQ: {vio}") });
            if let (Some(peer_tid), Reply::StopCcn(rc)) = (peer_tid, vio.reply()) {
                self.refuse_sccrq(from, transport, v, peer_tid, rc, sign);
            }
            return;
        }
        let Some(peer_tid) = peer_tid.filter(|t| *t != 0) else {
            // Nobody to answer: the peer's tunnel has no ID.
            self.stats.refused += 1;
            return;
        };
        if let Some(ids) = m.find(|a| match a {
            AvpValue::TunnelRecovery { recover_tunnel_id, recover_remote_tunnel_id } => {
                Some((*recover_tunnel_id, *recover_remote_tunnel_id))
            }
            _ => None,
        }) {
            self.on_recovery_sccrq(now, from, transport, header, m, peer_tid, ids, sign);
            return;
        }
        // Tie breaker (RFC 2661 4.4.3, RFC 3931 5.4.3): our own SCCRQ to
        // the same peer is outstanding. F-RT-7: never a recovery tunnel.
        let their_tb = m.find(|a| if let AvpValue::TieBreaker(t) = a { Some(*t) } else { None });
        if let Some(theirs) = their_tb {
            let ours: Vec<(u32, [u8; 8])> = self
                .tunnels
                .values()
                .filter(|t| t.peer == from && t.params.version == v)
                .filter(|t| t.recovers.is_none())
                .filter_map(|t| t.tie_breaker().map(|tb| (t.local_id, tb)))
                .collect();
            for (our_id, tb) in ours {
                if tb < theirs {
                    // We win: the peer discards its SCCRQ; ignore it.
                    self.stats.ignored += 1;
                    return;
                }
                // We lose (or tie: both discard): drop our own attempt.
                self.tunnels.remove(&our_id);
                self.rearm(our_id);
                self.events.push_back(Event::TunnelDown { tunnel: our_id, reason: DownReason::LostTie });
                if tb == theirs {
                    self.stats.ignored += 1;
                    return;
                }
            }
        }
        let Some(params) = self.accept_params(from, v, transport).cloned() else {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ refused: no tunnels accepted".into() });
            // RFC 2661 4.4.2 / RFC 3931 5.4.2 StopCCN result 4: "Requester
            // is not authorized to establish a control channel".
            let rc = ResultCode::new(stopccn::NOT_AUTHORIZED, None, "no tunnel configured for this peer");
            self.refuse_sccrq(from, transport, v, peer_tid, rc, sign);
            return;
        };
        if params.version != v || params.transport != transport {
            self.stats.refused += 1;
            self.events
                .push_back(Event::Rejected { peer: from, what: format!("SCCRQ for {v:?} over {transport:?} refused") });
            let rc = if params.version != v {
                // Result 5: "Protocol version not supported".
                ResultCode::new(stopccn::BAD_PROTOCOL_VERSION, None, "")
            } else {
                ResultCode::new(stopccn::NOT_AUTHORIZED, None, "not accepted over this transport")
            };
            self.refuse_sccrq(from, transport, v, peer_tid, rc, sign);
            return;
        }
        // Counted per address, whatever the source port.
        let half_open =
            self.tunnels.values().filter(|t| t.peer.ip() == from.ip() && t.state != TunnelState::Established).count();
        if self.tunnels.len() >= self.cfg.max_tunnels || half_open >= self.cfg.max_half_open_per_peer {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ refused: tunnel limit".into() });
            // Result 2, error 4: "Insufficient resources to handle this
            // operation now".
            let rc = ResultCode::new(stopccn::GENERAL_ERROR, Some(error::NO_RESOURCES), "tunnel limit");
            self.refuse_sccrq(from, transport, v, peer_tid, rc, sign);
            return;
        }
        let Some(cma) = self.responder_cma(from, &params, &m) else {
            let rc = ResultCode::new(stopccn::NOT_AUTHORIZED, None, "SCCRQ without a nonce");
            self.refuse_sccrq(from, transport, v, peer_tid, rc, sign);
            return;
        };
        let id = self.accept_tunnel(now, from, &header, peer_tid, params, cma, None, None);
        self.on_control_connection_request(now, id, &m);
    }

    /// Refuses the tunnel an SCCRQ asks for with a StopCCN carrying the
    /// reason (RFC 2661 4.4.2, RFC 3931 5.4.2), sent once and without
    /// keeping state: the peer's retransmitted SCCRQ gets another one, and a
    /// flood of SCCRQs cannot grow the engine. The StopCCN acknowledges the
    /// SCCRQ (Ns 0, Nr 1) and names, as our Assigned ID, an ID no tunnel
    /// holds.
    ///
    /// RFC 3931 4.3: "If an SCCRQ ... contains a Control Message
    /// Authentication Nonce AVP, the receiver of the message MUST respond
    /// with a Message Digest AVP in all subsequent messages sent." The
    /// digest is over "local_nonce + remote_nonce", but a StopCCN cannot
    /// carry a nonce of ours (the Nonce AVP is for SCCRQ and SCCRP only) and
    /// none was sent: what the peer can verify is the digest with an empty
    /// local nonce and its own, which `sign` gives (the secret that
    /// authenticated the SCCRQ, and its nonce). Our own engine accepts such
    /// a StopCCN on a tunnel still waiting for its SCCRP.
    pub(in crate::engine) fn refuse_sccrq(
        &mut self,
        to: SocketAddr,
        transport: Transport,
        v: Version,
        peer_tid: u32,
        rc: ResultCode,
        sign: Option<RefusalKey>,
    ) {
        if peer_tid == 0 {
            return;
        }
        let sign = sign.filter(|_| v == Version::V3);
        let ours = self.alloc_tunnel_id(v);
        let assigned = match v {
            Version::V2 => AvpValue::AssignedTunnelId(ours as u16),
            Version::V3 => AvpValue::AssignedConnectionId(ours),
        };
        let mut avps = vec![avp(v, assigned), avp(v, AvpValue::ResultCode(rc))];
        if sign.is_some() {
            // "MUST be placed immediately after the Message Type AVP".
            let md =
                AvpValue::MessageDigest { digest_type: crate::wire::avp::digest_type::HMAC_MD5, digest: vec![0; 16] };
            avps.insert(0, avp(v, md));
        }
        let msg = Message::new(MessageType::StopCcn, avps);
        let header = ControlHeader { version: v, tunnel_id: peer_tid, session_id: 0, ns: 0, nr: 1 };
        match (ControlMessage { header, message: Some(msg) }).encode(transport, None) {
            Ok(mut bytes) => {
                if let Some(k) = &sign {
                    crate::wire::auth::sign(
                        transport,
                        &mut bytes,
                        &crate::wire::auth::cma_key(&k.secret),
                        Some((&[], &k.nonce)),
                    );
                }
                self.stats.stopccn_sent += 1;
                self.transmits.push_back((to, transport, bytes));
            }
            Err(e) => self.events.push_back(Event::Rejected { peer: to, what: format!("cannot encode: {e}") }),
        }
    }

    /// RFC 3931 4.3 state of a tunnel we answer: our nonce and the one of
    /// the peer's SCCRQ. `None` (counted) when authentication is on and
    /// the SCCRQ brought no nonce.
    pub(in crate::engine) fn responder_cma(
        &mut self,
        from: SocketAddr,
        params: &TunnelParams,
        m: &Message,
    ) -> Option<Option<Cma>> {
        let mut cma = self.new_cma(params);
        if let Some(c) = &mut cma {
            c.theirs = m.find(|a| if let AvpValue::ControlAuthNonce(n) = a { Some(n.clone()) } else { None });
            if c.theirs.is_none() {
                self.stats.auth_failures += 1;
                self.events.push_back(Event::Rejected { peer: from, what: "SCCRQ without a nonce".into() });
                return None;
            }
        }
        Some(cma)
    }

    /// Responder: a new tunnel for the peer's SCCRQ `m`, which takes Ns 0
    /// on its channel; returns its ID.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::engine) fn accept_tunnel(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &ControlHeader,
        peer_id: u32,
        params: TunnelParams,
        cma: Option<Cma>,
        recovers: Option<u32>,
        scs: Option<(u16, u16)>,
    ) -> u32 {
        let id = self.alloc_tunnel_id(params.version);
        // RFC 2661 5.1.1: with a secret, our SCCRP challenges the peer.
        let challenge = params.secret.as_ref().filter(|_| params.version == Version::V2).map(|_| self.random_array());
        let mut channel = Channel::new(self.channel_config(&params));
        // The SCCRQ takes Ns 0 (its caller handles it: nothing to deliver).
        let _ = channel.on_receive(now, header.ns, header.nr, Some(Incoming { session_id: 0, body: Vec::new() }));
        let state = TunnelState::WaitConnected { challenge };
        let t = Tunnel { cma, peer_id, recovers, scs, ..Tunnel::new(now, state, id, from, params, channel) };
        self.tunnels.insert(id, t);
        id
    }

    /// Responder: answers a new SCCRQ with SCCRP.
    pub(in crate::engine) fn on_control_connection_request(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(mut t) = self.tunnels.remove(&id) else { return };
        Self::learn_peer(&mut t, m);
        let their_challenge = m.find(|a| if let AvpValue::Challenge(c) = a { Some(c.clone()) } else { None });
        let mut response = None;
        if let Some(secret) = t.params.secret.clone().filter(|_| t.params.version == Version::V2) {
            if let Some(c) = &their_challenge {
                response = Some(challenge_response(MessageType::Sccrp, &secret, c));
            }
        } else if their_challenge.is_some() {
            // Challenged without a secret: "Requester is not authorized".
            self.tunnels.insert(id, t);
            self.stats.auth_failures += 1;
            self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, ""));
            return;
        }
        let msg = self.sccrq_or_sccrp(&t, MessageType::Sccrp, response);
        t.channel.send(now, Outgoing { session_id: 0, msg });
        self.tunnels.insert(id, t);
        self.flush(now, id);
    }

    pub(in crate::engine) fn on_sccrp(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(mut t) = self.tunnels.remove(&id) else { return };
        let peer_tid = match t.params.version {
            Version::V2 => m.find(|a| if let AvpValue::AssignedTunnelId(x) = a { Some(u32::from(*x)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::AssignedConnectionId(x) = a { Some(*x) } else { None }),
        };
        t.peer_id = peer_tid.unwrap_or(0);
        Self::learn_peer(&mut t, m);
        let secret = t.params.secret.clone().filter(|_| t.params.version == Version::V2);
        // RFC 2661 5.1.1: the SCCRP must answer our challenge.
        if !Self::answers_our_challenge(&t, MessageType::Sccrp, m) {
            self.tunnels.insert(id, t);
            self.refuse_unauthenticated(now, id);
            return;
        }
        let their_challenge = m.find(|a| if let AvpValue::Challenge(c) = a { Some(c.clone()) } else { None });
        let mut avps = Vec::new();
        match (&secret, their_challenge) {
            (Some(s), Some(c)) => avps.push(avp(
                t.params.version,
                AvpValue::ChallengeResponse(challenge_response(MessageType::Scccn, s, &c)),
            )),
            (None, Some(_)) => {
                self.stats.auth_failures += 1;
                self.tunnels.insert(id, t);
                self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, "no secret configured"));
                return;
            }
            _ => {}
        }
        if !t.move_to(TunnelState::Established) {
            self.tunnels.insert(id, t);
            return;
        }
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Scccn, avps) });
        self.tunnels.insert(id, t);
        if self.recovery_tunnel_up(now, id, Some(m)) {
            return;
        }
        let Some(t) = self.tunnels.get(&id) else { return };
        self.events.push_back(Self::tunnel_up_event(t));
    }

    pub(in crate::engine) fn on_scccn(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        if !Self::answers_our_challenge(t, MessageType::Scccn, m) {
            self.refuse_unauthenticated(now, id);
            return;
        }
        if !t.move_to(TunnelState::Established) {
            return;
        }
        if self.recovery_tunnel_up(now, id, None) {
            return;
        }
        let Some(t) = self.tunnels.get(&id) else { return };
        let up = Self::tunnel_up_event(t);
        self.events.push_back(up);
    }

    /// RFC 2661 5.1.1: true unless we challenged the peer and `m` (of type
    /// `answer_type`) lacks the right Challenge Response. Constant time.
    pub(in crate::engine) fn answers_our_challenge(t: &Tunnel, answer_type: MessageType, m: &Message) -> bool {
        let (Some(secret), Some(ours)) = (&t.params.secret, t.our_challenge()) else { return true };
        let want = challenge_response(answer_type, secret, &ours);
        let got = m.find(|a| if let AvpValue::ChallengeResponse(r) = a { Some(*r) } else { None });
        got.is_some_and(|g| ct_eq(&g, &want))
    }

    /// StopCCN result 4, "Requester is not authorized".
    pub(in crate::engine) fn refuse_unauthenticated(&mut self, now: Instant, id: u32) {
        self.stats.auth_failures += 1;
        self.stop_tunnel(now, id, ResultCode::new(stopccn::NOT_AUTHORIZED, None, "challenge response mismatch"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_response_matches_rfc_1994_construction() {
        let mut h = Md5::new();
        h.update([2u8]);
        h.update(b"secret");
        h.update(b"challenge");
        let want: [u8; 16] = h.finalize().into();
        assert_eq!(challenge_response(MessageType::Sccrp, b"secret", b"challenge"), want);
        assert!(ct_eq(&want, &want));
        assert!(!ct_eq(&want, &want[..15]));
    }
}
