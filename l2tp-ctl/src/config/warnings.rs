//! Legal values worth a warning (`config check` and the daemon).

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

impl Config {
    /// Legal values worth a warning: a retransmission cap under 8 s.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = retransmit_cap_warning("global", self.global.retransmit.max_ms).into_iter().collect();
        for (i, t) in self.tunnels.iter().enumerate() {
            w.extend(t.warnings(&format!("tunnel[{i}]")));
        }
        w
    }
}
