//! Per-session data-plane maps: configuration (written by the daemon),
//! state (owned by the data path), commands (posted by the daemon with an
//! epoch, applied by the data path on the next packet) and counters.
//!
//! Every field of the data path's state has one writer. Receive state
//! ([`SessionRxState`], `SESSION_RX_STATE`) is written only by
//! `l2tp_uplink`, transmit state ([`SessionTxState`], `SESSION_TX_STATE`)
//! only by `l2tp_attach`; each has its own command slot
//! (`SESSION_RX_CMD`, `SESSION_TX_CMD`), so a command is applied by the
//! program that owns what it changes ([`cmd`] says which).
//!
//! Sessions live in array maps indexed by a local session index
//! (`0..MAX_SESSIONS`); `SESSION_BY_ID` maps a received L2TPv3 Session ID to
//! that index and `SESSION_BY_ATTACH` maps an attachment circuit (an interface,
//! or one VLAN of it: [`attach_key`]) to it.

/// Key of `SESSION_BY_ATTACH`: the attachment interface and the 802.1Q
/// VLAN ID of the circuit (0: every frame of the interface that no VLAN
/// circuit claims).
pub const fn attach_key(ifindex: u32, vlan: u16) -> u64 {
    ((vlan as u64) << 32) | ifindex as u64
}

/// Sessions per endpoint.
pub const MAX_SESSIONS: u32 = 65_536;

pub const MAP_SESSION_BY_ID: &str = "SESSION_BY_ID";
pub const MAP_SESSION_BY_ATTACH: &str = "SESSION_BY_ATTACH";
/// `ATTACH_PORT[ifindex]`: slot + 1 of the session that takes the whole
/// interface (0: none), for ifindexes below [`ATTACH_PORT_MAX`]: the
/// encapsulation fast path, an array read instead of a hash lookup.
pub const MAP_ATTACH_PORT: &str = "ATTACH_PORT";
pub const ATTACH_PORT_MAX: u32 = 4096;
pub const MAP_SESSION_CFG: &str = "SESSION_CFG";
/// [`SessionRxState`] by slot: written by `l2tp_uplink` only.
pub const MAP_SESSION_RX_STATE: &str = "SESSION_RX_STATE";
/// [`SessionTxState`] by slot: written by `l2tp_attach` only.
pub const MAP_SESSION_TX_STATE: &str = "SESSION_TX_STATE";
/// [`SessionCommand`] for the receive side, applied by `l2tp_uplink`.
pub const MAP_SESSION_RX_CMD: &str = "SESSION_RX_CMD";
/// [`SessionCommand`] for the transmit side, applied by `l2tp_attach`.
pub const MAP_SESSION_TX_CMD: &str = "SESSION_TX_CMD";
pub const MAP_SESSION_STATS: &str = "SESSION_STATS";
/// `DEVMAP[port]`: the interfaces the data plane redirects to, by port
/// slot (an array index, cheaper to redirect through than a hash).
pub const MAP_TX_PORTS: &str = "TX_PORTS";
/// `PORT_SLOTS[ifindex]`: the port slot of an interface in `TX_PORTS`.
pub const MAP_PORT_SLOTS: &str = "PORT_SLOTS";
pub const MAX_PORTS: u32 = 4096;
/// [`NextHop`] by slot: the next hop `bpf_fib_lookup` last gave a
/// session with [`flags::FIB_LOOKUP`]; written by `l2tp_attach` only.
pub const MAP_SESSION_NEXT_HOP: &str = "SESSION_NEXT_HOP";
/// `DataplaneConfig[1]`: switches userspace flips for the whole data plane.
pub const MAP_DP_CONFIG: &str = "DP_CONFIG";
/// `TraceConfig[1]`: drop tracing, written by `l2tp-ctl dataplane trace`
/// only (a map of its own, so it never races the daemon's writes of
/// `DP_CONFIG`).
pub const MAP_TRACE_CFG: &str = "TRACE_CFG";
/// Jiffies a cached next hop is used for before it is looked up again
/// (0.1 s at HZ=1000, 1 s at HZ=100): the bound on how long a change of
/// route or neighbour goes unseen when nobody bumps
/// [`DataplaneConfig::next_hop_gen`].
pub const NEXT_HOP_TTL_JIFFIES: u64 = 100;
pub const PROG_UPLINK: &str = "l2tp_uplink";
pub const PROG_ATTACH: &str = "l2tp_attach";

/// `SessionConfig::flags` bits.
pub mod flags {
    /// Outer IPv6 (else IPv4).
    pub const IPV6: u32 = 1 << 0;
    /// L2TPv3 over IP protocol 115 (else over UDP).
    pub const ENCAP_IP: u32 = 1 << 1;
    /// Default L2-Specific Sublayer present (RFC 3931 4.6).
    pub const SUBLAYER: u32 = 1 << 2;
    /// Send sequence numbers (S=1 with Ns in the sublayer).
    pub const SEQ_TX: u32 = 1 << 3;
    /// Check received sequence numbers.
    pub const SEQ_RX: u32 = 1 << 4;
    /// IPv6 outer UDP: send checksum 0 (RFC 6935/6936) instead of computing it.
    pub const UDP6_ZERO_CSUM: u32 = 1 << 5;
    /// During a resync, deliver the packets of a not yet confirmed run
    /// (else drop them).
    pub const RESYNC_DELIVER: u32 = 1 << 6;
    /// Next hop by `bpf_fib_lookup` on every encapsulated frame; the
    /// template's MACs are the fallback when the kernel has no neighbour
    /// entry (an all-zero fallback drops and counts `tx_no_route`).
    pub const FIB_LOOKUP: u32 = 1 << 7;
    /// Installed on a hot standby but inactive: the session neither
    /// decapsulates (its frames are passed to the kernel) nor encapsulates
    /// (its customer frames are dropped), and its state stays as installed
    /// (Ns 0, no Nr) until a takeover clears this bit: one map update.
    pub const STANDBY: u32 = 1 << 8;
    /// Session in use (a zeroed slot is free).
    pub const ACTIVE: u32 = 1 << 31;
}

/// Receive modes for sequenced sessions (RFC 3931 4.6.1, Appendix C; RFC
/// 4951 F-DC-3).
pub mod rx_mode {
    /// RFC default: a packet ahead of Nr (within half the space) is accepted
    /// and Nr moves past it; older ones are dropped.
    pub const ACCEPT_NEW: u8 = 0;
    /// Out-of-sequence packets are dropped until `resync_n` consecutive
    /// in-sequence ones arrive, then Nr is set from them.
    pub const STRICT: u8 = 1;
    /// As accept-new, but `resync_n` consecutive packets that accept-new
    /// would drop (older than Nr, whatever their distance) move Nr to them.
    pub const RESYNC: u8 = 2;
}

/// Largest outer header template: Ethernet (14) + IPv6 (40) + UDP (8).
pub const HDR_TEMPLATE_MAX: usize = 64;

/// Session configuration, written by the daemon before the session's ID is
/// published in `SESSION_BY_ID` / `SESSION_BY_ATTACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub flags: u32,
    /// Our Session ID (received data carries it): lets decapsulation find
    /// a session in its home slot `local_session_id % MAX_SESSIONS` without
    /// the hash lookup.
    pub local_session_id: u32,
    /// Session ID the peer expects on data we send.
    pub peer_session_id: u32,
    /// Interface decapsulated frames go out of.
    pub attach_ifindex: u32,
    /// Interface encapsulated packets go out of.
    pub uplink_ifindex: u32,
    /// Cookie the peer puts on data we receive (checked).
    pub rx_cookie: [u8; 8],
    /// Cookie we put on data we send.
    pub tx_cookie: [u8; 8],
    pub rx_cookie_len: u8,
    pub tx_cookie_len: u8,
    pub rx_mode: u8,
    pub _pad0: u8,
    /// Run length for strict/resync (F-DC-3 `n`).
    pub resync_n: u16,
    /// Largest outer IP packet the uplink carries (its MTU).
    pub uplink_mtu: u16,
    /// Bytes of `hdr` in use: 42 (v4 UDP), 34 (v4 IP), 62 (v6 UDP), 54 (v6 IP).
    pub hdr_len: u16,
    /// IPv4 header checksum of the template with Total Length 0.
    pub ip4_csum_base: u16,
    /// 802.1Q VLAN ID of the attachment circuit (0: the whole interface).
    pub attach_vlan: u16,
    /// `TX_PORTS` slots of `uplink_ifindex` and `attach_ifindex`.
    pub uplink_port: u16,
    pub attach_port: u16,
    /// Our address (the outer destination of every frame of the session),
    /// in network byte order read as native 16-bit words, so that the data
    /// path compares it word by word with the frame; IPv4 in the first two
    /// words, the rest zero.
    pub local_addr: [u16; 8],
    /// Outer Ethernet + IP (+ UDP) header; length fields zero.
    pub hdr: [u8; HDR_TEMPLATE_MAX],
    pub _pad1: [u8; 2],
}

/// A session's cached next hop (RFC-free: a cache of the kernel's FIB and
/// neighbour tables). Valid while `gen_begin == gen_end ==
/// DataplaneConfig::next_hop_gen` (non-zero) and `expires` (jiffies) is
/// ahead; else `l2tp_attach` calls `bpf_fib_lookup` and refills it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub gen_begin: u32,
    /// `TX_PORTS` slot of the egress interface.
    pub port: u32,
    pub expires: u64,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub gen_end: u32,
}

/// Data-plane wide switches (one slot of `DP_CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Generation of the next-hop cache: bumping it makes every cached next
    /// hop stale at once (on a route or neighbour change, and when a
    /// session is changed in place; installing a session clears its slot's
    /// entry). 0: no cache, a lookup on every frame.
    pub next_hop_gen: u32,
    /// Reserved (zero).
    pub _reserved0: u32,
    pub _reserved1: u32,
    pub _pad: u32,
    pub _reserved2: u64,
}

/// Drop tracing (one slot of `TRACE_CFG`). While `on` and
/// `bpf_ktime_get_ns() < until_ns`, every frame the programs drop or pass
/// up unexpectedly (of `session`, or of any session when 0) is written to
/// the aya-log ring as one record: see [`trace`]. The deadline stops
/// tracing in the kernel even if the tracer dies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    pub on: u32,
    /// Local session ID to trace (0: all).
    pub session: u32,
    /// CLOCK_MONOTONIC ns after which nothing is traced.
    pub until_ns: u64,
}

/// Why a frame was traced: the `reason` of a trace record. Records are
/// `"<program << 16 | reason> <session> <ns << 32 | nr>"`, three decimal
/// integers (integers only: the verifier refuses variable-length log
/// arguments; and each argument costs the programs code).
pub mod trace {
    /// `<program>` of a record.
    pub const UPLINK: u32 = 1;
    pub const ATTACH: u32 = 2;

    /// Unsound outer headers, or an L2TP header, cookie, sublayer or inner
    /// frame cut by the declared end (dropped).
    pub const MALFORMED: u32 = 1;
    /// Over UDP for a session over IP, or the reverse (dropped).
    pub const WRONG_ENCAPSULATION: u32 = 2;
    /// Non-zero and wrong UDP checksum, or zero over IPv6 where not
    /// allowed (dropped).
    pub const UDP_CHECKSUM: u32 = 3;
    pub const COOKIE_MISMATCH: u32 = 4;
    /// Older than Nr, or any mismatch in strict mode, or a run not yet
    /// confirmed in resync mode (dropped).
    pub const OUT_OF_SEQUENCE: u32 = 5;
    /// Ns = Nr - 1 (dropped).
    pub const DUPLICATE: u32 = 6;
    pub const REDIRECT_FAILED: u32 = 7;
    /// L2TPv3 data for a Session ID we do not have (passed to the kernel).
    pub const UNKNOWN_SESSION: u32 = 8;
    /// A session's data for another destination address (passed).
    pub const NOT_ADDRESSED_TO_US: u32 = 9;
    /// A hot standby's inactive session (received: passed; customer
    /// frame: dropped).
    pub const STANDBY: u32 = 10;
    /// Encapsulated packet larger than the uplink's MTU (dropped).
    pub const MTU_EXCEEDED: u32 = 11;
    /// No route or neighbour, and no fallback next hop (dropped).
    pub const NO_ROUTE: u32 = 12;
    /// The frame could not be grown for the outer headers (dropped).
    pub const NO_HEADROOM: u32 = 13;

    /// Stable name of a reason, as `dataplane trace` prints it.
    pub const fn name(reason: u32) -> &'static str {
        match reason {
            MALFORMED => "malformed",
            WRONG_ENCAPSULATION => "wrong-encapsulation",
            UDP_CHECKSUM => "udp-checksum",
            COOKIE_MISMATCH => "cookie-mismatch",
            OUT_OF_SEQUENCE => "out-of-sequence",
            DUPLICATE => "duplicate",
            REDIRECT_FAILED => "redirect-failed",
            UNKNOWN_SESSION => "unknown-session",
            NOT_ADDRESSED_TO_US => "not-addressed-to-us",
            STANDBY => "standby",
            MTU_EXCEEDED => "mtu-exceeded",
            NO_ROUTE => "no-route",
            NO_HEADROOM => "no-headroom",
            _ => "unknown",
        }
    }

    /// Whether frames traced for `reason` are dropped (else passed to the
    /// kernel).
    pub const fn dropped(program: u32, reason: u32) -> bool {
        let passed =
            matches!(reason, UNKNOWN_SESSION | NOT_ADDRESSED_TO_US) || (program == UPLINK && reason == STANDBY);
        !passed
    }
}

/// Receive state of a session: written only by `l2tp_uplink` (and by
/// userspace before the session is published).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionRxState {
    /// Next Ns expected.
    pub rx_nr: u32,
    /// 1 once a first sequenced packet set `rx_nr`.
    pub rx_valid: u32,
    /// Length of the current run of consecutive out-of-sequence packets.
    pub run_len: u32,
    /// Ns that continues that run.
    pub run_next: u32,
    /// Effective receive mode and run length (set by config or command).
    pub mode: u32,
    pub resync_n: u32,
    /// Epoch of the last receive command applied (`SESSION_RX_CMD`).
    pub applied_epoch: u32,
    /// After ENTER_RESYNC: packets accepted in sequence still to see before
    /// the configured mode comes back (0: not in a temporary resync). A
    /// completed resync also ends it.
    pub resync_left: u32,
}

/// Transmit state of a session: written only by `l2tp_attach`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionTxState {
    /// Next Ns to send (24-bit space; incremented atomically, every CPU
    /// encapsulating for the session shares it).
    pub tx_ns: u32,
    /// Epoch of the last transmit command applied (`SESSION_TX_CMD`).
    pub applied_epoch: u32,
}

/// Command kinds (`SessionCommand::op`). `RESET_NS` changes transmit state
/// and goes to `SESSION_TX_CMD`; the others change receive state and go to
/// `SESSION_RX_CMD`. A program ignores a command of the other side.
pub mod cmd {
    /// Set the next Ns to send to `value` (F-DC-1: 0 after recovery).
    pub const RESET_NS: u32 = 1;
    /// Switch to resync mode with run length `value` (F-DC-3) until a
    /// resync happens or `value` packets arrive in sequence, then back to
    /// the configured mode.
    pub const ENTER_RESYNC: u32 = 2;
    /// Set the receive mode to `value` (an `rx_mode`) with run length `n`.
    pub const SET_MODE: u32 = 3;
    /// Forget the receive state: the next packet sets Nr.
    pub const RESET_NR: u32 = 4;

    /// Whether `op` is applied by the transmit side (`l2tp_attach`).
    pub const fn is_tx(op: u32) -> bool {
        op == RESET_NS
    }
}

/// A command posted by the daemon. The program owning the side it changes
/// applies it once, on that side's next good packet of the session, when
/// `epoch_end == epoch_begin` and both differ from that side's
/// `applied_epoch` (a torn write is never applied). The side's
/// `applied_epoch` moves by compare-and-swap: of several CPUs seeing the
/// command, exactly one applies it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCommand {
    pub epoch_begin: u32,
    pub op: u32,
    pub value: u32,
    pub n: u32,
    pub epoch_end: u32,
    pub _pad: u32,
}

/// Per-session, per-CPU counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Dropped as out of sequence (older than Nr, or any mismatch in strict).
    pub rx_out_of_seq: u64,
    /// Sum of the gaps skipped when Nr jumped forward.
    pub rx_lost: u64,
    pub rx_duplicates: u64,
    pub rx_resyncs: u64,
    pub rx_cookie_mismatch: u64,
    pub rx_malformed: u64,
    pub tx_mtu_drops: u64,
    pub redirect_errors: u64,
    /// Encapsulated frames dropped: no route or no neighbour and no
    /// fallback next hop.
    pub tx_no_route: u64,
}

const _: () = assert!(core::mem::size_of::<SessionConfig>() == 136);
const _: () = assert!(core::mem::size_of::<SessionRxState>() == 32);
const _: () = assert!(core::mem::size_of::<SessionTxState>() == 8);
const _: () = assert!(core::mem::size_of::<SessionCommand>() == 24);
const _: () = assert!(core::mem::size_of::<SessionStats>() == 104);
const _: () = assert!(core::mem::size_of::<NextHop>() == 32);
const _: () = assert!(core::mem::size_of::<DataplaneConfig>() == 24);
const _: () = assert!(core::mem::size_of::<TraceConfig>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers and byte arrays, no padding holes
    // (checked by the size asserts above), valid for any bit pattern.
    unsafe impl aya::Pod for super::SessionConfig {}
    unsafe impl aya::Pod for super::SessionRxState {}
    unsafe impl aya::Pod for super::SessionTxState {}
    unsafe impl aya::Pod for super::SessionCommand {}
    unsafe impl aya::Pod for super::SessionStats {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::DataplaneConfig {}
    unsafe impl aya::Pod for super::TraceConfig {}
}
