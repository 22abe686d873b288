//! The hot-standby partner protocol of two `l2tp-ctl` daemons, sans-IO.
//!
//! RFC 4951 lets "the recovery endpoint: the endpoint that failed, or its
//! backup" recover tunnels, and leaves to the implementation how a failure
//! is detected (its I-1) and how the backup learns the tunnels and sessions
//! (I-2). This crate answers both, after two published designs:
//!
//! - Failure detection as in the Home Agent Reliability Protocol (Mobile
//!   IPv6): hellos every `hello` interval on the partner channel, the
//!   partner unreachable after `dead`. Unreachable is not yet down: before
//!   a standby takes over, the daemon checks that nobody answers for the
//!   service address (ARP probe / neighbour solicitation), or an external
//!   VRRP instance decides ([`TakeoverMode::External`]).
//! - State as in the DHCP Failover Protocol: the standby asks for
//!   everything on connect ([`Msg::SnapshotRequest`]), then receives each
//!   change as a numbered update that it acknowledges once durable. Partner
//!   states are [`PartnerState::Normal`],
//!   [`PartnerState::CommunicationsInterrupted`] (no takeover on that
//!   alone), [`PartnerState::PartnerDown`] (taking over is safe) and
//!   [`PartnerState::Recover`] (a returning server resynchronises before it
//!   serves). Every takeover increments a persisted term; a daemon that
//!   meets a higher term steps down at once (split brain after a partition
//!   heals).
//!
//! - [`wire`]: the messages and their framing;
//! - [`secure`]: the authenticated, encrypted, replay-protected channel
//!   (Noise `NNpsk0` with a pre-shared key from a file);
//! - [`partner`]: the state machine, driven by `handle_*` and read with
//!   `poll_*`, with no sockets, clock or global randomness.
//!
//! Control and data Ns/Nr are never replicated: RFC 4951 recovers them.

pub mod partner;
pub mod secure;
pub mod wire;

pub use partner::{probe_time, HaEvent, Partner, PartnerConfig, PartnerState, Role, TakeoverMode};
pub use secure::{psk_from_file_contents, SecureChannel, SecureError};
pub use wire::{Msg, WireError};
