//! Simulated-network scenarios: two engines, a lossy reordering network and
//! a simulated clock. Each runs in milliseconds of real time.

mod failover;
mod harness;
mod pacing;
mod pipeline;
mod session;
mod tunnel;
