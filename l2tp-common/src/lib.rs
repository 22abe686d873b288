//! Types and constants shared by the XDP data plane (`l2tp-ebpf`) and the
//! control daemon (`l2tp-ctl`).
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of `bool`/`Option`
//! so that the same layout is seen on both sides of a BPF map. With the
//! `user` feature the map value types implement `aya::Pod`.
#![no_std]

pub mod session;
pub mod tools;
pub mod wire;

/// Name of the XDP program that classifies and counts L2TP traffic.
pub const PROG_CLASSIFY: &str = "l2tp_classify";
/// Name of the global per-CPU counter map.
pub const MAP_GLOBAL_STATS: &str = "GLOBAL_STATS";

/// Global data-plane counters, indexes into the one per-CPU `[u64; COUNT]`
/// slot of [`MAP_GLOBAL_STATS`]. Userspace sums them over all CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalCounter {
    /// Every frame the program saw.
    Frames = 0,
    /// L2TP over UDP (either port 1701), any version.
    L2tpUdp = 1,
    /// L2TPv3 over IP (protocol 115).
    L2tpIp = 2,
    /// L2TP control messages (T bit set, or v3/IP session ID 0).
    Control = 3,
    /// L2TP data messages.
    Data = 4,
    /// L2TP frames whose outer headers are unsound (IPv4 header checksum,
    /// IPv4/IPv6/UDP lengths beyond the frame or below their header) or
    /// whose declared length is too short for the L2TP header they
    /// announce. Those of a session of ours are dropped (and counted in its
    /// `rx_malformed` too), the others are the kernel's.
    Malformed = 5,
    /// IPv4 fragments and packets with IP options (never parsed, passed).
    IpUnparsed = 6,
    /// Frames of sessions installed inactive on a hot standby
    /// (`flags::STANDBY`): received ones passed to the kernel, customer
    /// ones dropped.
    Standby = 7,
}

impl GlobalCounter {
    /// Number of slots in [`MAP_GLOBAL_STATS`].
    pub const COUNT: u32 = 8;
    /// All counters, in slot order.
    pub const ALL: [GlobalCounter; Self::COUNT as usize] = [
        Self::Frames,
        Self::L2tpUdp,
        Self::L2tpIp,
        Self::Control,
        Self::Data,
        Self::Malformed,
        Self::IpUnparsed,
        Self::Standby,
    ];

    /// Stable name used in logs, tables and `--json` output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Frames => "frames",
            Self::L2tpUdp => "l2tp_udp",
            Self::L2tpIp => "l2tp_ip",
            Self::Control => "control",
            Self::Data => "data",
            Self::Malformed => "malformed",
            Self::IpUnparsed => "ip_unparsed",
            Self::Standby => "standby",
        }
    }
}
