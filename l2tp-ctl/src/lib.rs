//! L2TP control daemon and CLI: library half, shared by the `l2tp-ctl`
//! binary and the integration tests.

pub mod dataplane;
