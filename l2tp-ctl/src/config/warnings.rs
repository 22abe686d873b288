//! Legal values worth a warning (`config check` and the daemon).

use std::time::Duration;

use l2tp_proto::channel::ChannelConfig;

use super::{Config, TunnelConfig};

/// The smallest retransmission cap the RFCs ask for: RFC 3931 4.2 "SHOULD
/// be no less than 8 seconds", RFC 2661 5.8 "MUST" for L2TPv2. A smaller
/// `retransmit.max_ms` is the operator's choice and is honoured; `config
/// check` and the daemon warn about it ([`Config::warnings`]).
pub const RFC_RETRANSMIT_CAP_MS: u64 = 8000;

fn retransmit_cap_warning(key: &str, max_ms: u64) -> Option<String> {
    (max_ms < RFC_RETRANSMIT_CAP_MS).then(|| {
        format!(
            "{key}.retransmit.max_ms = {max_ms}: below the {RFC_RETRANSMIT_CAP_MS} ms the RFCs ask for \
             (RFC 3931 4.2 SHOULD, RFC 2661 5.8 MUST for L2TPv2); used as configured"
        )
    })
}

impl TunnelConfig {
    /// Legal values worth a warning (`key`: `tunnel[0]` or the tunnel's
    /// name); the global ones are [`Config::warnings`]'.
    pub fn warnings(&self, key: &str) -> Vec<String> {
        self.retransmit.max_ms.and_then(|ms| retransmit_cap_warning(key, ms)).into_iter().collect()
    }
}

/// How long a reliable control channel with these timers retransmits
/// before it declares the connection dead: the first timeout, then one per
/// retransmission, doubling up to the cap (as `l2tp_proto::channel` does).
pub fn control_timeout(c: &ChannelConfig) -> Duration {
    let cap = c.retransmit_cap.max(c.retransmit_initial);
    let mut rto = c.retransmit_initial;
    let mut total = rto;
    for _ in 0..c.max_retries {
        rto = (rto * 2).min(cap);
        total += rto;
    }
    total
}

/// RFC 4951 F-CAP-3: the peer's Recovery Time timer "starts when its
/// control channel timeout starts". A Recovery Time shorter than that
/// timeout (the peer's timers taken to be this tunnel's) then gives a
/// recovering endpoint no time beyond the timeout itself; this daemon
/// waits the Recovery Time after its timeout, but a peer that follows
/// the RFC to the letter does not.
fn recovery_time_warning(key: &str, t: &TunnelConfig, channel: &ChannelConfig) -> Option<String> {
    let timeout = control_timeout(channel);
    let rt = u128::from(t.failover.recovery_time_ms);
    // The default (3 s) is meant for peers like this daemon, which wait the
    // Recovery Time after their timeout; only a value the operator chose is
    // worth a word (a warning on every default tunnel would be noise).
    let default = t.failover.recovery_time_ms == super::Failover::default().recovery_time_ms;
    (t.failover.control && !default && rt < timeout.as_millis()).then(|| {
        format!(
            "{key}.failover.recovery_time_ms = {rt}: shorter than the control channel timeout of {} ms \
             (retransmissions from {} ms doubling to {} ms, {} of them; the peer's taken to be the same): a \
             peer that starts the Recovery Time with its control timeout (RFC 4951 F-CAP-3) gives a \
             recovery no time beyond that timeout",
            timeout.as_millis(),
            channel.retransmit_initial.as_millis(),
            channel.retransmit_cap.as_millis(),
            channel.max_retries,
        )
    })
}

impl Config {
    /// Legal values worth a warning: a retransmission cap under 8 s, a
    /// Recovery Time shorter than the control channel timeout.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = retransmit_cap_warning("global", self.global.retransmit.max_ms).into_iter().collect();
        for (i, t) in self.tunnels.iter().enumerate() {
            let key = format!("tunnel[{i}]");
            w.extend(t.warnings(&key));
            w.extend(recovery_time_warning(&key, t, &t.timers(&self.global).channel));
        }
        w
    }
}
