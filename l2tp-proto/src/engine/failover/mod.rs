//! Everything of RFC 4951 (Fail Over Extensions for L2TP): the failover
//! capability, the recovery tunnel in both roles, the control and data
//! channel reset, and FSQ/FSR session state synchronisation with stale
//! sessions. Ordinary tunnel and session paths call into it through the
//! hooks of this module.

mod query;
mod recovery;

/// Failover Session State AVPs per FSQ after a recovery (16 bytes each).
pub const FSQ_BATCH: usize = 64;
