//! Fixtures for the integration tests: network namespaces, veth links, pin
//! directories and test frames. Every fixture is an RAII guard that removes
//! what it created when dropped, also while a failing test unwinds; guards
//! left behind by a killed test process are swept by the next one.
//!
//! Test hosts use 198.18.0.0/15 and 2001:2::/48 only.

pub mod daemon;
pub mod ha;
pub mod netns;
pub mod pcap;
pub mod topology;
pub mod traffic;
#[cfg(feature = "ctl")]
pub mod xdp;
pub mod xl2tpd;

/// Test-frame builders (shared with `l2tp-ctl pktgen`).
#[cfg(feature = "ctl")]
pub use l2tp_ctl::frames;
pub use netns::{NetNs, PinDir};

/// True when the process may create namespaces and load BPF programs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
