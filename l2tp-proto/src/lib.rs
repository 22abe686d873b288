//! Sans-IO L2TPv2/L2TPv3 protocol with the RFC 4951 failover extensions.
//!
//! No sockets, no clock, no global randomness: the daemon feeds bytes and
//! time in and takes bytes, timers, events and data-plane updates out.

pub mod channel;
pub mod engine;
pub mod fuzzing;
pub mod wire;
