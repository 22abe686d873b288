//! XDP programs of the L2TP data plane.
//!
//! - `l2tp_uplink`, on uplink interfaces: counts L2TP traffic, passes control
//!   messages and everything that is not ours to the kernel, and
//!   decapsulates L2TPv3 data of known sessions (UDP or IP, IPv4 or IPv6,
//!   cookie, default L2-Specific Sublayer, sequence numbers) into the
//!   session's attachment interface.
//! - `l2tp_attach`, on attachment interfaces: encapsulates customer frames
//!   into the session's pseudowire and redirects them out of the uplink.
#![no_std]
#![no_main]
// The BPF target has no atomic types (no CAS); the intrinsics map to BPF
// atomic instructions.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "BPF atomic add with fetch has no stable API")]

use core::{intrinsics::AtomicOrdering, mem};

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibLookup, xdp_action, BPF_FIB_LOOKUP_OUTPUT},
    helpers::{bpf_csum_diff, bpf_fib_lookup, bpf_xdp_adjust_head, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::XdpContext,
};
use l2tp_common::{
    session::{
        attach_key, cmd, flags, rx_mode, SessionCommand, SessionConfig, SessionState, SessionStats, ATTACH_PORT_MAX,
        MAX_PORTS, MAX_SESSIONS,
    },
    wire::*,
    GlobalCounter,
};

/// One slot per CPU holding every global counter: one lookup per frame.
#[map(name = "GLOBAL_STATS")]
static GLOBAL_STATS: PerCpuArray<Global> = PerCpuArray::with_max_entries(1, 0);

type Global = [u64; GlobalCounter::COUNT as usize];
#[map(name = "SESSION_BY_ID")]
static SESSION_BY_ID: HashMap<u32, u32> = HashMap::with_max_entries(MAX_SESSIONS, 0);
#[map(name = "SESSION_BY_ATTACH")]
static SESSION_BY_ATTACH: HashMap<u64, u32> = HashMap::with_max_entries(MAX_SESSIONS, 0);
#[map(name = "ATTACH_PORT")]
static ATTACH_PORT: Array<u32> = Array::with_max_entries(ATTACH_PORT_MAX, 0);
#[map(name = "SESSION_CFG")]
static SESSION_CFG: Array<SessionConfig> = Array::with_max_entries(MAX_SESSIONS, 0);
#[map(name = "SESSION_STATE")]
static SESSION_STATE: Array<SessionState> = Array::with_max_entries(MAX_SESSIONS, 0);
#[map(name = "SESSION_CMD")]
static SESSION_CMD: Array<SessionCommand> = Array::with_max_entries(MAX_SESSIONS, 0);
#[map(name = "SESSION_STATS")]
static SESSION_STATS: PerCpuArray<SessionStats> = PerCpuArray::with_max_entries(MAX_SESSIONS, 0);
/// Per-CPU scratch for the tail of a UDP/IPv6 checksum.
#[map(name = "CSUM_SCRATCH")]
static CSUM_SCRATCH: PerCpuArray<[u8; 512]> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "TX_PORTS")]
static TX_PORTS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
#[map(name = "PORT_SLOTS")]
static PORT_SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_PORTS, 0);

const HALF: u32 = 1 << 23;

mod tools;

/// This CPU's global counters (null if the map has no slot, never in
/// practice).
#[inline(always)]
fn global() -> *mut Global {
    GLOBAL_STATS.get_ptr_mut(0).unwrap_or_default()
}

#[inline(always)]
fn count(g: *mut Global, c: GlobalCounter) {
    if !g.is_null() {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { (*g)[c as usize] += 1 };
    }
}

/// Bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
fn load_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    // SAFETY: ptr_at checked that 2 bytes are inside the frame.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn load_be32(ctx: &XdpContext, offset: usize) -> Option<u32> {
    // SAFETY: ptr_at checked that 4 bytes are inside the frame.
    ptr_at::<[u8; 4]>(ctx, offset).map(|p| u32::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn load_u8(ctx: &XdpContext, offset: usize) -> Option<u8> {
    // SAFETY: ptr_at checked that the byte is inside the frame.
    ptr_at::<u8>(ctx, offset).map(|p| unsafe { *p })
}

#[inline(always)]
fn store<const N: usize>(ctx: &XdpContext, offset: usize, bytes: [u8; N]) -> Option<()> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: ptr_at checked that N bytes are inside the frame.
    unsafe { *p = bytes };
    Some(())
}

/// Where the L2TP header starts and how it is carried.
enum Carrier {
    /// L2TP start, and whether the packet is IPv6.
    Udp(usize, bool),
    Ip(usize),
    NotOurs,
}

/// Walks Ethernet, VLAN tags and the IP header; returns the L2TP carrier.
/// `None` means the frame is not parseable L3 we look at (it is passed).
#[inline(always)]
fn find_l4(ctx: &XdpContext, g: *mut Global) -> Option<Carrier> {
    let mut off = ETH_HLEN;
    let mut proto = load_be16(ctx, 12)?;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = load_be16(ctx, off + 2)?;
            off += 4;
        }
    }
    let (l4proto, l4off) = if proto == ETH_P_IP {
        let vihl = load_u8(ctx, off)?;
        let frag = load_be16(ctx, off + 6)?;
        if vihl != 0x45 || frag & 0x3FFF != 0 {
            // IP options or a fragment: never parsed here.
            count(g, GlobalCounter::IpUnparsed);
            return None;
        }
        (load_u8(ctx, off + 9)?, off + IPV4_MIN_HLEN)
    } else if proto == ETH_P_IPV6 {
        (load_u8(ctx, off + 6)?, off + IPV6_HLEN)
    } else {
        return Some(Carrier::NotOurs);
    };
    if l4proto == IPPROTO_UDP {
        let sport = load_be16(ctx, l4off)?;
        let dport = load_be16(ctx, l4off + 2)?;
        if sport == L2TP_UDP_PORT || dport == L2TP_UDP_PORT {
            return Some(Carrier::Udp(l4off + UDP_HLEN, proto == ETH_P_IPV6));
        }
        Some(Carrier::NotOurs)
    } else if l4proto == IPPROTO_L2TP {
        Some(Carrier::Ip(l4off))
    } else {
        Some(Carrier::NotOurs)
    }
}

/// Applies a command the daemon posted, once (see `SessionCommand`).
#[inline(always)]
fn apply_command(idx: u32, state: *mut SessionState) {
    let Some(c) = SESSION_CMD.get_ptr(idx) else { return };
    // SAFETY: map value pointers are valid for the value's size; fields are
    // read with volatile loads, end epoch first, so a half-written command
    // (epochs differ) is never applied.
    unsafe {
        let end = core::ptr::read_volatile(&(*c).epoch_end);
        if end == 0 || end == (*state).applied_epoch {
            return;
        }
        let op = core::ptr::read_volatile(&(*c).op);
        let value = core::ptr::read_volatile(&(*c).value);
        let n = core::ptr::read_volatile(&(*c).n);
        let begin = core::ptr::read_volatile(&(*c).epoch_begin);
        if begin != end {
            return;
        }
        // Exactly once, whichever program sees it first on whichever CPU:
        // only the one that moves applied_epoch to `end` applies it.
        let seen = core::ptr::read_volatile(&(*state).applied_epoch);
        if seen == end {
            return;
        }
        let (_, won) = core::intrinsics::atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            &raw mut (*state).applied_epoch,
            seen,
            end,
        );
        if !won {
            return;
        }
        match op {
            // An aligned 32-bit store is atomic; concurrent fetch-adds on
            // other CPUs land before or after it.
            cmd::RESET_NS => core::ptr::write_volatile(&raw mut (*state).tx_ns, value & V3_SEQ_MASK),
            cmd::ENTER_RESYNC => {
                (*state).mode = rx_mode::RESYNC as u32;
                (*state).resync_n = value;
                (*state).run_len = 0;
                (*state).resync_left = value.max(1);
            }
            cmd::SET_MODE => {
                (*state).mode = value;
                (*state).resync_n = n;
                (*state).run_len = 0;
                (*state).resync_left = 0;
            }
            cmd::RESET_NR => {
                (*state).rx_valid = 0;
                (*state).run_len = 0;
            }
            _ => {}
        }
    }
}

/// RFC 3931 4.6.1 / Appendix C receive check of sequence number `ns` in the
/// session's mode; `true` delivers the packet.
#[inline(always)]
fn rx_sequence(cfg: &SessionConfig, st: &mut SessionState, stats: &mut SessionStats, ns: u32) -> bool {
    if st.rx_valid == 0 {
        st.rx_valid = 1;
        st.rx_nr = (ns + 1) & V3_SEQ_MASK;
        st.run_len = 0;
        in_sequence(cfg, st);
        return true;
    }
    let d = ns.wrapping_sub(st.rx_nr) & V3_SEQ_MASK;
    if d == 0 {
        st.rx_nr = (ns + 1) & V3_SEQ_MASK;
        st.run_len = 0;
        in_sequence(cfg, st);
        return true;
    }
    let strict = st.mode == rx_mode::STRICT as u32;
    if d < HALF && !strict {
        // Ahead: the packets in between are lost (or late and will be
        // dropped).
        stats.rx_lost += u64::from(d);
        st.rx_nr = (ns + 1) & V3_SEQ_MASK;
        st.run_len = 0;
        in_sequence(cfg, st);
        return true;
    }
    if d == V3_SEQ_MASK {
        stats.rx_duplicates += 1;
    } else {
        stats.rx_out_of_seq += 1;
    }
    if st.mode == rx_mode::ACCEPT_NEW as u32 {
        return false;
    }
    // Strict and resync: track runs of packets in sequence with each other.
    if st.run_len > 0 && ns == st.run_next {
        st.run_len += 1;
    } else {
        st.run_len = 1;
    }
    st.run_next = (ns + 1) & V3_SEQ_MASK;
    if st.run_len >= st.resync_n.max(1) {
        // F-DC-3: "after receiving n consecutive packets that are out of
        // order but in sequence with each other, an endpoint MUST set Nr
        // from the incoming Ns".
        st.rx_nr = st.run_next;
        st.run_len = 0;
        stats.rx_resyncs += 1;
        if st.resync_left != 0 {
            end_temporary_resync(cfg, st);
        }
        return true;
    }
    !strict && cfg.flags & flags::RESYNC_DELIVER != 0
}

/// A packet accepted in sequence: counts down a temporary resync (after a
/// failover the peer's Ns did not restart, or we already followed it).
#[inline(always)]
fn in_sequence(cfg: &SessionConfig, st: &mut SessionState) {
    if st.resync_left != 0 {
        st.resync_left -= 1;
        if st.resync_left == 0 {
            end_temporary_resync(cfg, st);
        }
    }
}

/// Back to the configured receive mode after ENTER_RESYNC.
#[inline(always)]
fn end_temporary_resync(cfg: &SessionConfig, st: &mut SessionState) {
    st.mode = u32::from(cfg.rx_mode);
    st.resync_n = u32::from(cfg.resync_n);
    st.resync_left = 0;
    st.run_len = 0;
}

#[xdp]
pub fn l2tp_uplink(ctx: XdpContext) -> u32 {
    uplink_entry(&ctx)
}

#[inline(always)]
fn uplink_entry(ctx: &XdpContext) -> u32 {
    let g = global();
    count(g, GlobalCounter::Frames);
    uplink(ctx, g).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn uplink(ctx: &XdpContext, g: *mut Global) -> Option<u32> {
    let mut udp6 = false;
    let (session_id, l2tp_off, over_ip) = match find_l4(ctx, g)? {
        Carrier::NotOurs => return None,
        Carrier::Udp(off, v6) => {
            udp6 = v6;
            count(g, GlobalCounter::L2tpUdp);
            let Some(first) = load_be16(ctx, off) else {
                count(g, GlobalCounter::Malformed);
                return None;
            };
            if first & HDR_T != 0 {
                count(g, GlobalCounter::Control);
                return None;
            }
            count(g, GlobalCounter::Data);
            // L2TPv2 data is not switched here: the kernel gets it.
            if first & HDR_VER_MASK != 3 {
                return None;
            }
            let Some(sid) = load_be32(ctx, off + 4) else {
                count(g, GlobalCounter::Malformed);
                return None;
            };
            (sid, off + V3_UDP_DATA_HLEN, false)
        }
        Carrier::Ip(off) => {
            count(g, GlobalCounter::L2tpIp);
            // RFC 3931 4.1.1.2: a Session ID of zero marks a control message.
            match load_be32(ctx, off) {
                Some(0) => {
                    count(g, GlobalCounter::Control);
                    return None;
                }
                Some(sid) => {
                    count(g, GlobalCounter::Data);
                    (sid, off + V3_IP_SESSION_HLEN, true)
                }
                None => {
                    count(g, GlobalCounter::Malformed);
                    return None;
                }
            }
        }
    };
    // The session's home slot first (IDs are placed by their low bits),
    // the hash of IDs that could not be. Unknown sessions are not ours:
    // the kernel decides.
    let home = session_id & (MAX_SESSIONS - 1);
    let idx = match SESSION_CFG.get(home) {
        Some(c) if c.local_session_id == session_id && c.flags & flags::ACTIVE != 0 => home,
        // SAFETY: the value is a plain u32 copied out at once.
        _ => unsafe { *SESSION_BY_ID.get(session_id)? },
    };
    let cfg = SESSION_CFG.get(idx)?;
    let state = SESSION_STATE.get_ptr_mut(idx)?;
    let stats = SESSION_STATS.get_ptr_mut(idx)?;
    // SAFETY: map value pointers stay valid for this program run; stats is
    // per CPU and state is only written by the CPU receiving the session
    // (one flow, one RSS queue).
    let (state, stats) = unsafe { (&mut *state, &mut *stats) };
    if over_ip != (cfg.flags & flags::ENCAP_IP != 0) {
        stats.rx_malformed += 1;
        return Some(xdp_action::XDP_DROP);
    }
    if udp6 {
        // RFC 8200 8.1: the UDP checksum over IPv6 is verified; a zero one
        // is accepted only where configured (RFC 6935/6936).
        let udp = l2tp_off - V3_UDP_DATA_HLEN - UDP_HLEN;
        let ok = match load_be16(ctx, udp + 6) {
            Some(0) => cfg.flags & flags::UDP6_ZERO_CSUM != 0,
            Some(_) => match load_be16(ctx, udp + 4) {
                Some(len) => udp6_sum(ctx, udp - IPV6_HLEN, udp, len) == Some(0xffff),
                None => false,
            },
            None => false,
        };
        if !ok {
            stats.rx_malformed += 1;
            return Some(xdp_action::XDP_DROP);
        }
    }
    apply_command(idx, state);
    let mut off = l2tp_off;
    // Cookie (RFC 3931 4.1): compared with what we assigned.
    let cookie_ok = match cfg.rx_cookie_len {
        0 => true,
        4 => {
            ptr_at::<[u8; 4]>(ctx, off)
                .map(|p| unsafe { *p } == [cfg.rx_cookie[0], cfg.rx_cookie[1], cfg.rx_cookie[2], cfg.rx_cookie[3]])
                == Some(true)
        }
        8 => ptr_at::<[u8; 8]>(ctx, off).map(|p| unsafe { *p } == cfg.rx_cookie) == Some(true),
        _ => false,
    };
    if !cookie_ok {
        stats.rx_cookie_mismatch += 1;
        return Some(xdp_action::XDP_DROP);
    }
    off += usize::from(cfg.rx_cookie_len & 0xC);
    if cfg.flags & flags::SUBLAYER != 0 {
        let Some(word) = load_be32(ctx, off) else {
            stats.rx_malformed += 1;
            return Some(xdp_action::XDP_DROP);
        };
        off += V3_SUBLAYER_LEN;
        // S=0: "the Sequence Number contents are undefined and MUST be
        // ignored" (RFC 3931 4.6).
        if cfg.flags & flags::SEQ_RX != 0
            && word & V3_SUBLAYER_S != 0
            && !rx_sequence(cfg, state, stats, word & V3_SEQ_MASK)
        {
            return Some(xdp_action::XDP_DROP);
        }
    }
    // The inner frame needs at least an Ethernet header.
    if ptr_at::<[u8; ETH_HLEN]>(ctx, off).is_none() {
        stats.rx_malformed += 1;
        return Some(xdp_action::XDP_DROP);
    }
    let inner_len = (ctx.data_end() - ctx.data() - off) as u64;
    // SAFETY: ctx.ctx is the program's xdp_md.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, off as i32) } != 0 {
        stats.rx_malformed += 1;
        return Some(xdp_action::XDP_DROP);
    }
    stats.rx_packets += 1;
    stats.rx_bytes += inner_len;
    match TX_PORTS.redirect(u32::from(cfg.attach_port), 0) {
        Ok(action) => Some(action),
        Err(_) => {
            stats.redirect_errors += 1;
            Some(xdp_action::XDP_DROP)
        }
    }
}

#[xdp]
pub fn l2tp_attach(ctx: XdpContext) -> u32 {
    attach_entry(&ctx)
}

#[inline(always)]
fn attach_entry(ctx: &XdpContext) -> u32 {
    attach(ctx).unwrap_or(xdp_action::XDP_PASS)
}

/// Copies the `N`-byte outer header template to the start of the frame,
/// with one `bpf_xdp_store_bytes` (a kernel memcpy): the frame start is not
/// word-aligned, and an open-coded copy would go byte by byte.
#[inline(always)]
fn put_template<const N: usize>(ctx: &XdpContext, cfg: &SessionConfig) -> Option<()> {
    // SAFETY: N <= HDR_TEMPLATE_MAX (callers use the four template sizes);
    // the helper checks the frame bounds.
    let rc = unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, cfg.hdr.as_ptr() as *mut _, N as u32) };
    (rc == 0).then_some(())
}

#[inline(always)]
fn attach(ctx: &XdpContext) -> Option<u32> {
    let ifindex = ctx.ingress_ifindex() as u32;
    // A VLAN circuit of this interface first (802.1Q tag: RFC 4448 tagged
    // mode, the frame crosses with its tag), else the whole interface.
    let vid = match load_be16(ctx, 12)? {
        ETH_P_8021Q => load_be16(ctx, 14)? & 0x0FFF,
        _ => 0,
    };
    // SAFETY: the value is a plain u32 copied out at once.
    let by_vlan = if vid != 0 { unsafe { SESSION_BY_ATTACH.get(attach_key(ifindex, vid)).copied() } } else { None };
    let idx = match by_vlan {
        Some(i) => i,
        // The whole interface: an array read for the usual ifindexes.
        None if ifindex < ATTACH_PORT_MAX => ATTACH_PORT.get(ifindex)?.checked_sub(1)?,
        // SAFETY: the value is a plain u32 copied out at once.
        None => unsafe { *SESSION_BY_ATTACH.get(attach_key(ifindex, 0))? },
    };
    let cfg = SESSION_CFG.get(idx)?;
    let state = SESSION_STATE.get_ptr_mut(idx)?;
    let stats = SESSION_STATS.get_ptr_mut(idx)?;
    // SAFETY: see `uplink`; tx_ns is only touched atomically.
    let (state, stats) = unsafe { (&mut *state, &mut *stats) };
    apply_command(idx, state);

    let inner_len = (ctx.data_end() - ctx.data()) as u32;
    let over_ip = cfg.flags & flags::ENCAP_IP != 0;
    let ipv6 = cfg.flags & flags::IPV6 != 0;
    let sublayer = cfg.flags & flags::SUBLAYER != 0;
    let cookie_len = u32::from(cfg.tx_cookie_len & 0xC);
    let l2tp_len = if over_ip { 4 } else { 8 } + cookie_len + if sublayer { 4 } else { 0 };
    let hdr_len = u32::from(cfg.hdr_len);
    let ip_len = hdr_len - ETH_HLEN as u32 + l2tp_len + inner_len;
    if ip_len > u32::from(cfg.uplink_mtu) {
        // No fragmentation: too big for the uplink.
        stats.tx_mtu_drops += 1;
        return Some(xdp_action::XDP_DROP);
    }
    let push = hdr_len + l2tp_len;
    // SAFETY: ctx.ctx is the program's xdp_md.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(push as i32)) } != 0 {
        stats.redirect_errors += 1;
        return Some(xdp_action::XDP_DROP);
    }
    // Outer headers from the template, then the length fields.
    let l4 = match (ipv6, over_ip) {
        (false, false) => put_template::<42>(ctx, cfg).map(|_| 34),
        (false, true) => put_template::<34>(ctx, cfg).map(|_| 34),
        (true, false) => put_template::<62>(ctx, cfg).map(|_| 54),
        (true, true) => put_template::<54>(ctx, cfg).map(|_| 54),
    };
    let Some(l4) = l4 else {
        stats.redirect_errors += 1;
        return Some(xdp_action::XDP_DROP);
    };
    if ipv6 {
        store(ctx, ETH_HLEN + 4, ((ip_len - IPV6_HLEN as u32) as u16).to_be_bytes())?;
    } else {
        store(ctx, ETH_HLEN + 2, (ip_len as u16).to_be_bytes())?;
        // RFC 1624 incremental update from the template's checksum, which
        // was computed with Total Length 0.
        let mut sum = u32::from(!cfg.ip4_csum_base) + ip_len;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        store(ctx, ETH_HLEN + 10, (!(sum as u16)).to_be_bytes())?;
    }
    // Before an Ns is taken: a dropped frame must not open a gap.
    let mut egress = u32::from(cfg.uplink_port);
    if cfg.flags & flags::FIB_LOOKUP != 0 {
        match next_hop(ctx, cfg, ipv6, ip_len) {
            Some(port) => egress = port,
            // No route or no neighbour: the template's MACs, if any.
            None if cfg.hdr[..6] != [0; 6] => {}
            None => {
                stats.tx_no_route += 1;
                return Some(xdp_action::XDP_DROP);
            }
        }
    }
    let mut off = l4;
    let mut udp_len = 0;
    if !over_ip {
        udp_len = (ip_len - (l4 as u32 - ETH_HLEN as u32)) as u16;
        store(ctx, off + 4, udp_len.to_be_bytes())?;
        // Checksum 0 while the headers are written: left so on IPv4, and
        // on IPv6 where configured (RFC 6935/6936); else computed below.
        store(ctx, off + 6, [0, 0])?;
        off += UDP_HLEN;
        store(ctx, off, [0, 3, 0, 0])?;
        off += 4;
    }
    store(ctx, off, cfg.peer_session_id.to_be_bytes())?;
    off += 4;
    match cookie_len {
        4 => store(ctx, off, [cfg.tx_cookie[0], cfg.tx_cookie[1], cfg.tx_cookie[2], cfg.tx_cookie[3]])?,
        8 => store(ctx, off, cfg.tx_cookie)?,
        _ => {}
    }
    off += cookie_len as usize;
    if sublayer {
        let word = if cfg.flags & flags::SEQ_TX != 0 {
            // SAFETY: tx_ns is only ever accessed atomically. SeqCst, not
            // Relaxed: for a relaxed add LLVM's BPF backend emits a lock add
            // without BPF_FETCH even when the old value is used (wrong code).
            let ns = unsafe {
                core::intrinsics::atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(&raw mut state.tx_ns, 1)
            };
            V3_SUBLAYER_S | (ns & V3_SEQ_MASK)
        } else {
            0
        };
        store(ctx, off, word.to_be_bytes())?;
    }
    if ipv6 && !over_ip && cfg.flags & flags::UDP6_ZERO_CSUM == 0 {
        // RFC 8200 8.1: "a UDP checksum ... is mandatory" over IPv6.
        let Some(c) = udp6_checksum(ctx, l4, udp_len) else {
            stats.tx_mtu_drops += 1;
            return Some(xdp_action::XDP_DROP);
        };
        store(ctx, l4 + 6, c)?;
    }
    stats.tx_packets += 1;
    stats.tx_bytes += u64::from(inner_len);
    match TX_PORTS.redirect(egress, 0) {
        Ok(action) => Some(action),
        Err(_) => {
            stats.redirect_errors += 1;
            Some(xdp_action::XDP_DROP)
        }
    }
}

/// Adds the `N` frame bytes at `off` to a ones'-complement sum (in memory
/// byte order, as the kernel's csum_partial keeps it).
#[inline(always)]
fn csum_add<const N: usize>(ctx: &XdpContext, off: usize, sum: u32) -> Option<u32> {
    let p = ptr_at::<[u8; N]>(ctx, off)?;
    // SAFETY: ptr_at checked the N bytes; the helper only reads them.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p as *mut u32, N as u32, sum) };
    (r >= 0).then_some(r as u32)
}

/// Largest UDP datagram whose checksum is computed (bulk chunks of 512).
const CSUM_CHUNKS: usize = 6;

/// UDP checksum over IPv6 (RFC 8200 8.1): pseudo-header (addresses from
/// the frame, length, next header) and the datagram at `l4`, in memory
/// byte order, ready to store. `None` for datagrams too long to sum.
#[inline(always)]
fn udp6_checksum(ctx: &XdpContext, l4: usize, udp_len: u16) -> Option<[u8; 2]> {
    let c = !udp6_sum(ctx, ETH_HLEN, l4, udp_len)?;
    // A computed zero goes out as all ones (zero means "no checksum").
    Some(if c == 0 { 0xffff } else { c }.to_ne_bytes())
}

/// Ones'-complement sum, folded, of the IPv6 pseudo-header (addresses from
/// the header at `ip6`) and the UDP datagram at `l4` of `udp_len` bytes, in
/// memory byte order: 0xffff over a datagram whose checksum is right.
#[inline(always)]
fn udp6_sum(ctx: &XdpContext, ip6: usize, l4: usize, udp_len: u16) -> Option<u16> {
    let mut sum = csum_add::<32>(ctx, (ip6 & 0xff) + 8, 0)?;
    let mut tail = [u32::from(udp_len).to_be(), u32::from(IPPROTO_UDP).to_be()];
    // SAFETY: an 8-byte stack buffer.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, tail.as_mut_ptr(), 8, sum) };
    if r < 0 {
        return None;
    }
    sum = r as u32;
    let len = usize::from(udp_len) & 0x3fff;
    let chunks = len >> 9;
    if chunks > CSUM_CHUNKS {
        return None;
    }
    for i in 0..CSUM_CHUNKS {
        if i >= chunks {
            break;
        }
        sum = csum_add::<512>(ctx, l4 + i * 512, sum)?;
    }
    let off = l4 + (len & !0x1ff);
    // The rest (under 512 bytes) through a scratch buffer, padded with
    // zeros to whole words: one copy and one sum whatever the length (a
    // branch per piece would multiply the verifier's paths).
    let n = len & 0x1ff;
    if n > 0 {
        let buf = CSUM_SCRATCH.get_ptr_mut(0)?;
        // SAFETY: the helper bounds-checks the frame; buf is this CPU's
        // 512-byte scratch slot and n < 512.
        if unsafe { bpf_xdp_load_bytes(ctx.ctx, off as u32, buf as *mut _, n as u32) } != 0 {
            return None;
        }
        let padded = (n + 3) & 0x3fc;
        if padded > 512 {
            return None;
        }
        for k in 0..3 {
            let i = n + k;
            if i < padded && i < 512 {
                // SAFETY: i < 512, inside the scratch slot.
                unsafe { (*buf)[i] = 0 };
            }
        }
        // SAFETY: padded <= 512 bytes of the scratch slot.
        let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf as *mut u32, padded as u32, sum) };
        if r < 0 {
            return None;
        }
        sum = r as u32;
    }
    let mut f = (sum & 0xffff) + (sum >> 16);
    f = (f & 0xffff) + (f >> 16);
    Some(f as u16)
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Next hop of the outer packet by the kernel's FIB and neighbour tables:
/// writes the MACs into the frame and returns the egress port slot, or `None`
/// (no route, no neighbour entry, or an egress the data plane cannot
/// redirect to).
#[inline(always)]
fn next_hop(ctx: &XdpContext, cfg: &SessionConfig, ipv6: bool, ip_len: u32) -> Option<u32> {
    // SAFETY: plain C struct, all-zero is a valid value.
    let mut p: FibLookup = unsafe { mem::zeroed() };
    p.l4_protocol = if cfg.flags & flags::ENCAP_IP != 0 { IPPROTO_L2TP } else { IPPROTO_UDP };
    p.__bindgen_anon_1.tot_len = ip_len as u16;
    p.ifindex = cfg.uplink_ifindex;
    // Addresses from the template, in network byte order.
    let h = &cfg.hdr;
    if ipv6 {
        p.family = AF_INET6;
        let mut src = [0u32; 4];
        let mut dst = [0u32; 4];
        for i in 0..4 {
            let o = ETH_HLEN + 8 + 4 * i;
            src[i] = u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            dst[i] = u32::from_ne_bytes([h[o + 16], h[o + 17], h[o + 18], h[o + 19]]);
        }
        p.__bindgen_anon_3.ipv6_src = src;
        p.__bindgen_anon_4.ipv6_dst = dst;
    } else {
        p.family = AF_INET;
        let o = ETH_HLEN + 12;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([h[o + 4], h[o + 5], h[o + 6], h[o + 7]]);
    }
    // SAFETY: ctx.ctx is the program's xdp_md; p is a valid, sized struct.
    let rc =
        unsafe { bpf_fib_lookup(ctx.ctx as *mut _, &mut p, mem::size_of::<FibLookup>() as i32, BPF_FIB_LOOKUP_OUTPUT) };
    if rc != 0 {
        return None;
    }
    let port = if p.ifindex == cfg.uplink_ifindex {
        u32::from(cfg.uplink_port)
    } else {
        // SAFETY: the value is a plain u32 copied out at once.
        unsafe { *PORT_SLOTS.get(p.ifindex)? }
    };
    store(ctx, 0, p.dmac)?;
    store(ctx, 6, p.smac)?;
    Some(port)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
