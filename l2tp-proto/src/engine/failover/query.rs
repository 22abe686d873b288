//! RFC 4951 3.3: session state synchronisation with FSQ/FSR, and stale
//! sessions (F-SS-6, Appendix C).

use std::time::{Duration, Instant};

use super::super::*;
use crate::wire::{AvpValue, Message, MessageType};

/// How long after an FSQ marked sessions stale they are queried.
pub(in crate::engine) const STALE_QUERY_DELAY: Duration = Duration::from_secs(1);

impl Engine {
    /// F-SS-6: "A local session found paired with a different ID MUST NOT
    /// be cleared but marked stale, and queried later with its own FSQ"
    /// (Appendix C). Runs from the timers; the FSR confirms (stale cleared)
    /// or clears each session (F-SS-8).
    pub(in crate::engine) fn query_stale(&mut self, now: Instant, id: u32) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        if t.stale_query_at.is_none_or(|at| at > now) {
            return;
        }
        t.stale_query_at = None;
        if t.state != TunnelState::Established {
            return;
        }
        let mut stale: Vec<u32> =
            t.sessions.values().filter(|s| s.stale && !s.unconfirmed).map(|s| s.local_id).collect();
        stale.sort_unstable();
        for chunk in stale.chunks(FSQ_BATCH) {
            if let Err(e) = self.query_sessions(now, id, chunk) {
                // Every session of the chunk exists on an established tunnel.
                debug_assert!(false, "stale query: {e}");
            }
        }
    }

    /// RFC 4951 3.3 Step III (F-SS-2, F-SS-3): queries the state of some
    /// of our sessions on the peer with one FSQ carrying one Failover
    /// Session State AVP per session.
    ///
    /// After a control channel recovery the engine queries every carried-over
    /// session itself. RFC 4951 F-DC-5 (MAY: FSQ/FSR after a data-channel-only
    /// failure) is this command too; nothing detects such a failure yet.
    pub fn query_sessions(&mut self, now: Instant, id: TunnelId, sids: &[u32]) -> Result<(), CommandError> {
        let t = self.tunnels.get_mut(&id).ok_or(CommandError::NoTunnel(id))?;
        if t.state != TunnelState::Established {
            return Err(CommandError::NotEstablished(id));
        }
        if sids.is_empty() {
            return Err(CommandError::Invalid("an FSQ carries at least one session"));
        }
        let v = t.params.version;
        let mut avps = Vec::with_capacity(sids.len());
        if let Some(missing) = sids.iter().find(|sid| !t.sessions.contains_key(sid)) {
            return Err(CommandError::NoSession(id, *missing));
        }
        for sid in sids {
            let Some(s) = t.sessions.get_mut(sid) else { continue };
            s.unconfirmed = true;
            avps.push(avp(v, AvpValue::FailoverSessionState { session_id: s.local_id, remote_session_id: s.peer_id }));
        }
        // W-5: the Message Type AVP of an FSQ has M=0 (Message::new).
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Fsq, avps) });
        self.flush(now, id);
        Ok(())
    }

    /// Sessions marked stale by an FSQ (F-SS-6), to be queried later.
    pub fn stale_sessions(&self, id: TunnelId) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .tunnels
            .get(&id)
            .map(|t| t.sessions.values().filter(|s| s.stale).map(|s| s.local_id).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// F-SS-5..F-SS-7: every FSS in the FSQ gets an FSS in the FSR.
    pub(in crate::engine) fn on_fsq(&mut self, now: Instant, id: u32, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&id) else { return };
        let v = t.params.version;
        let mut answers = Vec::new();
        let mut stale = Vec::new();
        for a in &m.avps {
            let AvpValue::FailoverSessionState { session_id: theirs, remote_session_id: ours } = a.value else {
                continue;
            };
            let answer = match t.sessions.get_mut(&ours) {
                Some(s) if s.peer_id == theirs && s.state == SessionState::Established => ours,
                Some(s) => {
                    // F-SS-6: paired with another ID: not cleared but marked
                    // stale, to be queried with its own FSQ.
                    if !s.stale {
                        stale.push(ours);
                    }
                    s.stale = true;
                    0
                }
                // F-SS-6: no such session: Session ID 0.
                None => 0,
            };
            // F-SS-7: "Remote Session ID is always the Session ID received
            // in the FSQ's FSS".
            answers.push(avp(v, AvpValue::FailoverSessionState { session_id: answer, remote_session_id: theirs }));
        }
        if answers.is_empty() {
            self.stats.ignored += 1;
            return;
        }
        let confirmed: Vec<u32> = answers
            .iter()
            .filter_map(|a| match a.value {
                AvpValue::FailoverSessionState { session_id, .. } if session_id != 0 => Some(session_id),
                _ => None,
            })
            .collect();
        let sequenced: Vec<u32> = confirmed
            .iter()
            .copied()
            .filter(|sid| t.sessions.get(sid).is_some_and(|s| s.params.sequencing || s.peer_sequencing))
            .collect();
        t.channel.send(now, Outgoing { session_id: 0, msg: Message::new(MessageType::Fsr, answers) });
        if !confirmed.is_empty() {
            self.events.push_back(Event::SessionsQueried { tunnel: id, sessions: confirmed, sequenced });
        }
        if !stale.is_empty() {
            // Appendix C: queried "some time later", so that the peer's own
            // queries in flight are answered first.
            t.stale_query_at.get_or_insert(now + STALE_QUERY_DELAY);
        }
        for local_session_id in stale {
            self.events.push_back(Event::SessionStale { tunnel: id, local_session_id });
        }
    }

    /// F-SS-8: Session ID 0 clears the session silently (no CDN); any other
    /// value confirms it.
    pub(in crate::engine) fn on_fsr(&mut self, id: u32, m: &Message) {
        for a in &m.avps {
            let AvpValue::FailoverSessionState { session_id: theirs, remote_session_id: ours } = a.value else {
                continue;
            };
            let Some(t) = self.tunnels.get_mut(&id) else { return };
            if theirs == 0 {
                if let Some(s) = t.sessions.remove(&ours) {
                    self.session_gone(id, &s, DownReason::Cleared);
                    self.release_session_id(ours);
                }
            } else if let Some(s) = t.sessions.get_mut(&ours) {
                s.stale = false;
                s.unconfirmed = false;
                self.events.push_back(Event::SessionConfirmed { tunnel: id, local_session_id: ours });
            }
        }
    }
}
