//! Everything of RFC 4951 (Fail Over Extensions for L2TP): the failover
//! capability (this file), the recovery tunnel in both roles and the
//! control and data channel reset (`recovery`), and FSQ/FSR session state
//! synchronisation with stale sessions (`query`).
//!
//! Ordinary tunnel and session paths call into it through these hooks:
//! [`Engine::failover_avps`] (what an SCCRQ/SCCRP carries),
//! [`peer_capability`] (what the peer's says), [`Engine::failover_timers`]
//! (a control channel timeout, F-CAP-3/F-CAP-4),
//! [`Engine::recovery_tunnel_up`] (a recovery tunnel's handshake done) and
//! [`Engine::recovery_tunnel_gone`] (a recovery tunnel ended).

use std::time::{Duration, Instant};

use super::*;
use crate::wire::{Message, MessageType};

mod query;
mod recovery;

/// Failover Session State AVPs per FSQ after a recovery (16 bytes each).
pub const FSQ_BATCH: usize = 64;

/// F-CAP-1: the peer's Failover Capability, remembered per tunnel. W-7:
/// both bits clear is not a capability.
pub(in crate::engine) fn peer_capability(m: &Message) -> Option<FailoverCapability> {
    m.find(|a| match a {
        AvpValue::FailoverCapability { control, data, recovery_time_ms } if *control || *data => {
            Some(FailoverCapability { control: *control, data: *data, recovery_time_ms: *recovery_time_ms })
        }
        _ => None,
    })
}

/// What the failover timers decided for a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum TimerOutcome {
    /// The tunnel goes on (its other timers run).
    Keep,
    /// The tunnel was cleared.
    Cleared,
}

impl Engine {
    /// The RFC 4951 AVPs of our SCCRQ or SCCRP on tunnel `t`.
    pub(in crate::engine) fn failover_avps(&self, t: &Tunnel, msg_type: MessageType) -> Vec<Avp> {
        let v = t.params.version;
        let mut avps = Vec::new();
        match (msg_type, t.recovers.and_then(|o| self.tunnels.get(&o)), t.scs) {
            // F-RT-2: the old tunnel's IDs as we see them.
            (MessageType::Sccrq, Some(old), _) => avps.push(avp(
                v,
                AvpValue::TunnelRecovery { recover_tunnel_id: old.local_id, recover_remote_tunnel_id: old.peer_id },
            )),
            // F-RT-9: the remote endpoint suggests the recovered Ns/Nr.
            (MessageType::Sccrp, _, Some((ns, nr))) => avps.push(avp(v, AvpValue::SuggestedControlSequence { ns, nr })),
            _ => {}
        }
        // F-CAP-1: advertised per configuration, M=0 (W-1), never with both
        // bits clear (W-7). A recovery tunnel advertises none (F-RT-3).
        if let Some(f) = t.params.failover.filter(|f| f.control || f.data) {
            avps.push(avp(
                v,
                AvpValue::FailoverCapability { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms },
            ));
        }
        avps
    }

    /// The control channel timers of tunnel `id` under RFC 4951: a channel
    /// that timed out waits for the peer's Recovery Time when both ends
    /// advertised control channel failover (F-CAP-3, F-CAP-4), and
    /// otherwise clears the tunnel (RFC 2661 5.8).
    pub(in crate::engine) fn failover_timers(&mut self, now: Instant, id: u32) -> TimerOutcome {
        let Some(t) = self.tunnels.get_mut(&id) else { return TimerOutcome::Cleared };
        if let TunnelState::AwaitingRecovery { until } = t.state {
            if now >= until {
                // F-CAP-3: the Recovery Time ran out: recovery failed.
                self.clear_tunnel(id, DownReason::Timeout);
                return TimerOutcome::Cleared;
            }
            // "stops ... when a control message gets acknowledged (the
            // loss was temporary)".
            if t.channel.retries() == 0 && t.channel.unacknowledged() == 0 && t.move_to(TunnelState::Established) {
                self.events.push_back(Event::TunnelResumed { tunnel: id });
            }
        }
        if t.channel.handle_timeout(now).is_ok() {
            return TimerOutcome::Keep;
        }
        let recovery_time = match (t.state, t.params.failover, t.peer_failover) {
            // F-CAP-4: "A tunnel is recoverable only if both ends advertised
            // C."
            (TunnelState::Established, Some(ours), Some(theirs)) if ours.control && theirs.control => {
                Some(Duration::from_millis(u64::from(theirs.recovery_time_ms)))
            }
            (TunnelState::AwaitingRecovery { .. }, ..) => Some(Duration::ZERO),
            _ => None,
        };
        match recovery_time {
            Some(extra) => {
                if t.move_to(TunnelState::AwaitingRecovery { until: now + extra }) {
                    self.events.push_back(Event::FailureDetected { tunnel: id, recovery_time: extra });
                }
                t.channel.extend(now);
                TimerOutcome::Keep
            }
            None => {
                // RFC 2661 5.8: "the tunnel and all sessions within MUST be
                // cleared".
                self.clear_tunnel(id, DownReason::Timeout);
                TimerOutcome::Cleared
            }
        }
    }
}
