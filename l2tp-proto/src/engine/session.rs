//! Sessions (calls): incoming and outgoing call setup, CDN, circuit
//! status, and their data-plane updates.

use std::time::Instant;

use super::*;
use crate::wire::{avp::attr, types::cdn, Avp, AvpValue, Message, MessageType, ResultCode, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum SessionState {
    /// Sent ICRQ, waiting for ICRP.
    WaitReply,
    /// Sent ICRP, waiting for ICCN.
    WaitConnected,
    Established,
}

#[derive(Debug)]
pub(in crate::engine) struct Session {
    pub(in crate::engine) state: SessionState,
    /// Outgoing call (OCRQ/OCRP/OCCN) rather than incoming (ICRQ/...).
    pub(in crate::engine) outgoing: bool,
    /// RFC 4951 F-SS-6: the peer queried it paired with another ID.
    pub(in crate::engine) stale: bool,
    /// Queried with an FSQ, no FSR yet (F-SS-3).
    pub(in crate::engine) unconfirmed: bool,
    pub(in crate::engine) local_id: u32,
    pub(in crate::engine) peer_id: u32,
    pub(in crate::engine) params: SessionParams,
    pub(in crate::engine) rx_cookie: Vec<u8>,
    pub(in crate::engine) tx_cookie: Vec<u8>,
    pub(in crate::engine) peer_sublayer: bool,
    pub(in crate::engine) peer_sequencing: bool,
    /// Held until the session is replicated: the reply that lets the peer
    /// consider it established, and whether it is up once sent (our ICCN).
    pub(in crate::engine) held: Option<(Outgoing, bool)>,
}

impl SessionState {
    /// RFC 2661 7.4/7.5, RFC 3931 5: a call is established once, from
    /// waiting for its reply (ICRQ/OCRQ sent) or for its connect (ICRP/OCRP
    /// sent); it leaves the table when it goes.
    fn may_move_to(self, next: SessionState) -> bool {
        matches!((self, next), (SessionState::WaitReply | SessionState::WaitConnected, SessionState::Established))
    }
}

impl Session {
    /// A session carried over by a recovery (RFC 4951 F-RT-5): established,
    /// with what was negotiated before the failure.
    pub(in crate::engine) fn restored(s: &RestoredSession) -> Self {
        Session {
            state: SessionState::Established,
            outgoing: false,
            stale: false,
            unconfirmed: false,
            local_id: s.local_id,
            peer_id: s.peer_id,
            params: s.params.clone(),
            rx_cookie: s.rx_cookie.clone(),
            tx_cookie: s.tx_cookie.clone(),
            peer_sublayer: s.peer_sublayer,
            peer_sequencing: s.peer_sequencing,
            held: None,
        }
    }

    /// What a store (or a standby) keeps of this session to restore it.
    pub(in crate::engine) fn to_restored(&self) -> RestoredSession {
        RestoredSession {
            local_id: self.local_id,
            peer_id: self.peer_id,
            params: self.params.clone(),
            rx_cookie: self.rx_cookie.clone(),
            tx_cookie: self.tx_cookie.clone(),
            peer_sublayer: self.peer_sublayer,
            peer_sequencing: self.peer_sequencing,
        }
    }

    /// Every change of a session's state goes through here; an illegal one
    /// is refused (state unchanged, false).
    #[must_use]
    pub(in crate::engine) fn move_to(&mut self, next: SessionState) -> bool {
        let ok = self.state.may_move_to(next);
        if ok {
            self.state = next;
        }
        ok
    }
}

impl Engine {
    pub(in crate::engine) fn alloc_session_id(&mut self, tunnel: u32, version: Version) -> u32 {
        loop {
            let id = match version {
                Version::V2 => u32::from(self.rng.next_u32() as u16),
                Version::V3 => self.rng.next_u32(),
            };
            let in_use = match version {
                // v2 session IDs are per tunnel; v3 per endpoint.
                Version::V2 => self.tunnels.get(&tunnel).is_some_and(|t| t.sessions.contains_key(&id)),
                Version::V3 => self.session_ids.contains_key(&id),
            };
            if id != 0 && !in_use && !self.released_set.contains_key(&id) {
                self.hold_session_id(id);
                return id;
            }
        }
    }

    /// Counts `id` as held by a session (allocated or restored).
    pub(in crate::engine) fn hold_session_id(&mut self, id: u32) {
        *self.session_ids.entry(id).or_insert(0) += 1;
    }

    /// A session that held `id` is gone: the ID is kept from reuse for a
    /// while (F-SS-4).
    pub(in crate::engine) fn release_session_id(&mut self, id: u32) {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.session_ids.entry(id) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        self.released_sessions.push_back(id);
        *self.released_set.entry(id).or_insert(0) += 1;
        while self.released_sessions.len() > RELEASED_KEEP {
            let Some(old) = self.released_sessions.pop_front() else { break };
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.released_set.entry(old) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    pub(in crate::engine) fn session_gone(&mut self, tunnel: u32, s: &Session, reason: DownReason) {
        if s.state == SessionState::Established {
            self.dataplane.push_back(DataplaneUpdate::SessionDown { tunnel, local_session_id: s.local_id });
        }
        self.events.push_back(Event::SessionDown { tunnel, local_session_id: s.local_id, reason });
    }

    /// Places an incoming call on an established tunnel (ICRQ).
    pub fn open_session(&mut self, now: Instant, id: TunnelId, params: SessionParams) -> Result<u32, CommandError> {
        self.place_call(now, id, params, false)
    }

    /// Places an outgoing call on an established tunnel (OCRQ).
    pub fn open_outgoing_session(
        &mut self,
        now: Instant,
        id: TunnelId,
        params: SessionParams,
    ) -> Result<u32, CommandError> {
        self.place_call(now, id, params, true)
    }

    pub(in crate::engine) fn place_call(
        &mut self,
        now: Instant,
        id: TunnelId,
        params: SessionParams,
        outgoing: bool,
    ) -> Result<u32, CommandError> {
        let (version, count) = match self.tunnels.get(&id) {
            None => return Err(CommandError::NoTunnel(id)),
            Some(t) if t.state != TunnelState::Established => return Err(CommandError::NotEstablished(id)),
            Some(t) => (t.params.version, t.sessions.len()),
        };
        if count >= self.cfg.max_sessions_per_tunnel {
            return Err(CommandError::Limit("sessions per tunnel"));
        }
        if !matches!(params.cookie_len, 0 | 4 | 8) {
            return Err(CommandError::Invalid("cookie length must be 0, 4 or 8"));
        }
        let sid = self.alloc_session_id(id, version);
        let rx_cookie = self.random_bytes(params.cookie_len);
        let Some(t) = self.tunnels.get_mut(&id) else { return Err(CommandError::NoTunnel(id)) };
        t.serial = t.serial.wrapping_add(1);
        let v = version;
        let avps = match v {
            Version::V2 => {
                let mut a =
                    vec![avp(v, AvpValue::AssignedSessionId(sid as u16)), avp(v, AvpValue::CallSerialNumber(t.serial))];
                if outgoing {
                    // RFC 2661 6.9: OCRQ also carries the call's bearer.
                    a.extend([
                        avp(v, AvpValue::MinimumBps(0)),
                        avp(v, AvpValue::MaximumBps(u32::MAX)),
                        avp(v, AvpValue::BearerType(3)),
                        avp(v, AvpValue::FramingType(3)),
                        avp(v, AvpValue::CalledNumber(params.remote_end_id.clone())),
                    ]);
                }
                a
            }
            Version::V3 => {
                let mut a = vec![
                    avp(v, AvpValue::LocalSessionId(sid)),
                    avp(v, AvpValue::RemoteSessionId(0)),
                    avp(v, AvpValue::CallSerialNumber(t.serial)),
                    avp(v, AvpValue::PwType(params.pw_type)),
                    avp(v, AvpValue::RemoteEndId(params.remote_end_id.clone())),
                    avp(v, AvpValue::CircuitStatus { new: true, active: true }),
                ];
                a.extend(Self::v3_session_avps(&params, &rx_cookie));
                a
            }
        };
        t.sessions.insert(
            sid,
            Session {
                state: SessionState::WaitReply,
                outgoing,
                stale: false,
                unconfirmed: false,
                local_id: sid,
                peer_id: 0,
                params,
                rx_cookie,
                tx_cookie: Vec::new(),
                peer_sublayer: false,
                peer_sequencing: false,
                held: None,
            },
        );
        let request = if outgoing { MessageType::Ocrq } else { MessageType::Icrq };
        let msg = self.maybe_hide_id(id, Message::new(request, avps));
        if let Some(t) = self.tunnels.get_mut(&id) {
            t.channel.send(now, Outgoing { session_id: 0, msg });
        }
        self.flush(now, id);
        Ok(sid)
    }

    pub(in crate::engine) fn maybe_hide_id(&mut self, id: u32, msg: Message) -> Message {
        let Some(t) = self.tunnels.remove(&id) else { return msg };
        let msg = self.maybe_hide(&t, msg);
        self.tunnels.insert(id, t);
        msg
    }

    pub(in crate::engine) fn v3_session_avps(params: &SessionParams, rx_cookie: &[u8]) -> Vec<Avp> {
        let v = Version::V3;
        let mut a = Vec::new();
        if !rx_cookie.is_empty() {
            a.push(avp(v, AvpValue::AssignedCookie(rx_cookie.to_vec())));
        }
        a.push(avp(v, AvpValue::L2SpecificSublayer(u16::from(params.sublayer))));
        a.push(avp(v, AvpValue::DataSequencing(if params.sequencing { 2 } else { 0 })));
        a
    }

    /// Reports our circuit up or down to the peer (v3 SLI with Circuit
    /// Status, RFC 3931 5.4.5).
    pub fn set_circuit_status(
        &mut self,
        now: Instant,
        id: TunnelId,
        sid: u32,
        active: bool,
    ) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        if t.params.version != Version::V3 {
            return Err(CommandError::Invalid("Circuit Status is L2TPv3"));
        }
        let s = t.sessions.get(&sid).ok_or(CommandError::NoSession(id, sid))?;
        let v = Version::V3;
        let avps = vec![
            avp(v, AvpValue::LocalSessionId(sid)),
            avp(v, AvpValue::RemoteSessionId(s.peer_id)),
            avp(v, AvpValue::CircuitStatus { new: false, active }),
        ];
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Sli, avps) });
        self.flush(now, id);
        Ok(())
    }

    /// Tears a session down (CDN, result 3: administrative).
    pub fn close_session(&mut self, now: Instant, id: TunnelId, sid: u32) -> Result<(), CommandError> {
        let t = self.tunnels.get(&id).ok_or(CommandError::NoTunnel(id))?;
        if !t.sessions.contains_key(&sid) {
            return Err(CommandError::NoSession(id, sid));
        }
        self.send_cdn(now, id, sid, ResultCode::new(cdn::ADMINISTRATIVE, None, ""));
        Ok(())
    }

    pub(in crate::engine) fn send_cdn(&mut self, now: Instant, id: u32, sid: u32, rc: ResultCode) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let Some(s) = t.sessions.remove(&sid) else { return };
        let v = t.params.version;
        let avps = match v {
            Version::V2 => {
                vec![avp(v, AvpValue::ResultCode(rc.clone())), avp(v, AvpValue::AssignedSessionId(sid as u16))]
            }
            Version::V3 => vec![
                avp(v, AvpValue::ResultCode(rc.clone())),
                avp(v, AvpValue::LocalSessionId(sid)),
                avp(v, AvpValue::RemoteSessionId(s.peer_id)),
            ],
        };
        t.channel.send(now, Outgoing { session_id: s.peer_id as u16, msg: Message::new(MessageType::Cdn, avps) });
        self.stats.cdn_sent += 1;
        self.session_gone(id, &s, DownReason::Local(rc));
        self.release_session_id(sid);
        self.flush(now, id);
    }

    /// Our local session ID a session message refers to.
    pub(in crate::engine) fn session_of(&self, id: u32, header_sid: u16, m: &Message) -> Option<u32> {
        let t = self.tunnels.get(&id)?;
        match t.params.version {
            Version::V2 => (header_sid != 0).then_some(u32::from(header_sid)),
            Version::V3 => {
                m.find(|a| if let AvpValue::RemoteSessionId(s) = a { Some(*s) } else { None }).filter(|s| *s != 0)
            }
        }
    }

    pub(in crate::engine) fn on_icrq(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(t) = self.tunnels.get(&id) else { return };
        let v = t.params.version;
        let peer_sid = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedSessionId(s) = a { Some(u32::from(*s)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::LocalSessionId(s) = a { Some(*s) } else { None }),
        }
        .unwrap_or(0);
        // A retransmitted ICRQ is caught by the channel.
        if let Some(existing) = t.sessions.values().find(|s| s.peer_id == peer_sid) {
            if existing.state == SessionState::Established {
                // RFC 4951 F-SS-4: "an ICRQ that names an already-established
                // session ID MUST be answered with CDN whose Assigned Session
                // ID is the local session ID, and that session is cleared."
                let sid = existing.local_id;
                self.send_cdn(now, id, sid, ResultCode::new(cdn::GENERAL_ERROR, Some(0), "session ID in use"));
            } else {
                // A second request for a call being set up: ignored.
                self.stats.ignored += 1;
            }
            return;
        }
        let remote_end_id = m.find(|a| if let AvpValue::RemoteEndId(r) = a { Some(r.clone()) } else { None });
        // Our settings for the pseudowire the peer names, if we have any.
        let (params, known) = if v == Version::V3 && !t.params.pseudowires.is_empty() {
            match t.params.pseudowires.iter().find(|p| Some(&p.remote_end_id) == remote_end_id.as_ref()) {
                Some(p) => (p.clone(), true),
                None => (SessionParams::default(), false),
            }
        } else {
            (SessionParams { remote_end_id: remote_end_id.unwrap_or_default(), ..SessionParams::default() }, true)
        };
        let pw_type = m.find(|a| if let AvpValue::PwType(p) = a { Some(*p) } else { None });
        let supported = v == Version::V2 || pw_type.is_some_and(|p| t.params.pw_types.contains(&p));
        let full = t.sessions.len() >= self.cfg.max_sessions_per_tunnel;
        let sid = self.alloc_session_id(id, v);
        let rx_cookie = if known && supported && !full { self.random_bytes(params.cookie_len) } else { Vec::new() };
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let (peer_sublayer, peer_sequencing, tx_cookie) = Self::peer_session_avps(m);
        t.sessions.insert(
            sid,
            Session {
                state: SessionState::WaitConnected,
                outgoing: m.msg_type == MessageType::Ocrq,
                stale: false,
                unconfirmed: false,
                local_id: sid,
                peer_id: peer_sid,
                params: SessionParams { pw_type: pw_type.unwrap_or(params.pw_type), ..params },
                rx_cookie,
                tx_cookie,
                peer_sublayer,
                peer_sequencing,
                held: None,
            },
        );
        if !supported {
            // RFC 3931 5.4.4: unsupported PW type, CDN result 14.
            self.send_cdn(now, id, sid, ResultCode::new(cdn::UNSUPPORTED_PW_TYPE, None, ""));
            return;
        }
        if full {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::NO_FACILITIES_TEMPORARY, None, ""));
            return;
        }
        if !known {
            // No pseudowire of that Remote End ID is configured here: the
            // circuit does not exist, a permanent condition.
            self.send_cdn(now, id, sid, ResultCode::new(cdn::NO_FACILITIES_PERMANENT, None, ""));
            return;
        }
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let avps = match v {
            Version::V2 => vec![avp(v, AvpValue::AssignedSessionId(sid as u16))],
            Version::V3 => {
                let s = &t.sessions[&sid];
                let mut a = vec![
                    avp(v, AvpValue::LocalSessionId(sid)),
                    avp(v, AvpValue::RemoteSessionId(peer_sid)),
                    avp(v, AvpValue::CircuitStatus { new: true, active: true }),
                ];
                a.extend(Self::v3_session_avps(&s.params, &s.rx_cookie));
                a
            }
        };
        let reply = if m.msg_type == MessageType::Ocrq { MessageType::Ocrp } else { MessageType::Icrp };
        let msg = Message::new(reply, avps);
        let msg = self.maybe_hide_id(id, msg);
        self.send_or_hold(now, id, sid, Outgoing { session_id: peer_sid as u16, msg }, false);
    }

    /// Sends the message that lets the peer consider session `sid`
    /// established (and brings the session up after it when `up`), or, in
    /// synchronous replication, holds it until the session is replicated.
    fn send_or_hold(&mut self, now: Instant, id: u32, sid: u32, out: Outgoing, up: bool) {
        let hold = self.cfg.hold_for_replication;
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let Some(s) = t.sessions.get_mut(&sid) else { return };
        if hold {
            s.held = Some((out, up));
            let session = s.to_restored();
            self.events.push_back(Event::SessionToReplicate { tunnel: id, session });
            return;
        }
        t.channel.send(now, out);
        if up {
            self.session_up(id, sid);
        }
    }

    /// Synchronous replication: session `sid` is replicated; the message
    /// held for it goes out.
    pub fn session_replicated(&mut self, now: Instant, id: TunnelId, sid: u32) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        let s = t.sessions.get_mut(&sid).ok_or(CommandError::NoSession(id, sid))?;
        let (out, up) = s.held.take().ok_or(CommandError::Invalid("nothing is held for this session"))?;
        t.channel.send(now, out);
        if up {
            self.session_up(id, sid);
        }
        self.flush(now, id);
        Ok(())
    }

    pub(in crate::engine) fn peer_session_avps(m: &Message) -> (bool, bool, Vec<u8>) {
        let sublayer =
            m.find(|a| if let AvpValue::L2SpecificSublayer(x) = a { Some(*x == 1) } else { None }).unwrap_or(false);
        let sequencing =
            m.find(|a| if let AvpValue::DataSequencing(x) = a { Some(*x != 0) } else { None }).unwrap_or(false);
        let cookie =
            m.find(|a| if let AvpValue::AssignedCookie(c) = a { Some(c.clone()) } else { None }).unwrap_or_default();
        (sublayer, sequencing, cookie)
    }

    pub(in crate::engine) fn on_icrp(&mut self, now: Instant, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let v = t.params.version;
        let Some(s) = t.sessions.get_mut(&sid) else {
            self.stats.ignored += 1;
            return;
        };
        let reply_kind_ok = s.outgoing == (m.msg_type == MessageType::Ocrp);
        if s.state != SessionState::WaitReply || !reply_kind_ok {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::FSM_ERROR, None, "unexpected call reply"));
            return;
        }
        s.peer_id = match v {
            Version::V2 => m.find(|a| if let AvpValue::AssignedSessionId(x) = a { Some(u32::from(*x)) } else { None }),
            Version::V3 => m.find(|a| if let AvpValue::LocalSessionId(x) = a { Some(*x) } else { None }),
        }
        .unwrap_or(0);
        let (peer_sublayer, peer_sequencing, tx_cookie) = Self::peer_session_avps(m);
        s.peer_sublayer = peer_sublayer;
        s.peer_sequencing = peer_sequencing;
        s.tx_cookie = tx_cookie;
        let avps = match v {
            Version::V2 => vec![avp(v, AvpValue::TxConnectSpeed(10_000_000)), avp(v, AvpValue::FramingType(1))],
            Version::V3 => vec![avp(v, AvpValue::LocalSessionId(sid)), avp(v, AvpValue::RemoteSessionId(s.peer_id))],
        };
        let peer_id = s.peer_id;
        let connected = if s.outgoing { MessageType::Occn } else { MessageType::Iccn };
        let out = Outgoing { session_id: peer_id as u16, msg: Message::new(connected, avps) };
        self.send_or_hold(now, id, sid, out, true);
    }

    pub(in crate::engine) fn on_iccn(&mut self, now: Instant, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(s) = self.tunnels.get_mut(&id).and_then(|t| t.sessions.get_mut(&sid)) else {
            self.stats.ignored += 1;
            return;
        };
        if s.state != SessionState::WaitConnected || s.outgoing != (m.msg_type == MessageType::Occn) {
            self.send_cdn(now, id, sid, ResultCode::new(cdn::FSM_ERROR, None, "unexpected call connected"));
            return;
        }
        // ICCN may restate the sublayer and sequencing the peer requires.
        if m.has(attr::L2_SPECIFIC_SUBLAYER) || m.has(attr::DATA_SEQUENCING) {
            let (sub, seq, _) = Self::peer_session_avps(m);
            s.peer_sublayer = sub;
            s.peer_sequencing = seq;
        }
        self.session_up(id, sid);
    }

    pub(in crate::engine) fn session_up(&mut self, id: u32, sid: u32) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let Some(s) = t.sessions.get_mut(&sid) else { return };
        if !s.move_to(SessionState::Established) {
            return;
        }
        self.dataplane.push_back(DataplaneUpdate::SessionUp(SessionUp {
            tunnel: id,
            version: t.params.version,
            transport: t.params.transport,
            peer: t.peer,
            remote_end_id: s.params.remote_end_id.clone(),
            pw_type: s.params.pw_type,
            local_session_id: sid,
            peer_session_id: s.peer_id,
            rx_cookie: s.rx_cookie.clone(),
            tx_cookie: s.tx_cookie.clone(),
            rx_sublayer: s.params.sublayer || s.params.sequencing,
            tx_sublayer: s.peer_sublayer || s.peer_sequencing,
            rx_sequencing: s.params.sequencing,
            tx_sequencing: s.peer_sequencing,
        }));
        self.events.push_back(Event::SessionUp { tunnel: id, local_session_id: sid, peer_session_id: s.peer_id });
    }

    pub(in crate::engine) fn on_cdn(&mut self, id: u32, header_sid: u16, m: &Message) {
        let Some(sid) = self.session_of(id, header_sid, m) else {
            self.stats.ignored += 1;
            return;
        };
        let rc = m
            .find(|a| if let AvpValue::ResultCode(r) = a { Some(r.clone()) } else { None })
            .unwrap_or(ResultCode::new(0, None, ""));
        let Some(s) = self.tunnels.get_mut(&id).and_then(|t| t.sessions.remove(&sid)) else {
            self.stats.ignored += 1;
            return;
        };
        self.session_gone(id, &s, DownReason::Peer(rc));
        self.release_session_id(sid);
    }
}
