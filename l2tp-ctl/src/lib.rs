//! L2TP control daemon and CLI: library half, shared by the `l2tp-ctl`
//! binary and the integration tests.

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod frames;
pub mod pktgen;
pub mod service_addr;
pub mod store;
