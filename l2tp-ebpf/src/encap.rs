//! Encapsulation (`l2tp_attach`): a customer frame of an attachment
//! circuit into its session's pseudowire, out of the uplink (or the
//! interface the kernel's FIB names).

use core::mem;

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibLookup, xdp_action, BPF_FIB_LOOKUP_OUTPUT},
    helpers::{bpf_fib_lookup, bpf_jiffies64, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use l2tp_common::{
    session::{attach_key, flags, trace, SessionConfig, ATTACH_PORT_MAX, HDR_TEMPLATE_MAX, NEXT_HOP_TTL_JIFFIES},
    wire::*,
    GlobalCounter,
};

use crate::{
    checksum,
    maps::{
        ATTACH_PORT, DP_CONFIG, PORT_SLOTS, SESSION_BY_ATTACH, SESSION_CFG, SESSION_NEXT_HOP, SESSION_TX_STATE,
        TX_PORTS,
    },
    parse::{frame_len, load_be16, ptr_at, store},
    sequence,
    trace::Trace,
};

/// Outer header sizes: Ethernet + IPv4 or IPv6, + UDP over UDP.
const V4_L4: usize = ETH_HLEN + IPV4_MIN_HLEN;
const V6_L4: usize = ETH_HLEN + IPV6_HLEN;

/// Copies the `N`-byte outer header template to the start of the frame,
/// 2 bytes per load and store: the frame starts on an even address (see
/// `parse::words`) and the template lies at an even offset of its map
/// value, so the copy is `N / 2` plain moves, with the frame's bounds
/// checked once. (A byte array copy would go byte by byte; the
/// `bpf_xdp_store_bytes` helper cost as much as the rest of the program.)
#[inline(always)]
fn put_template<const N: usize>(ctx: &XdpContext, cfg: &SessionConfig) -> Option<()> {
    const { assert!(N.is_multiple_of(2) && N <= HDR_TEMPLATE_MAX) };
    const { assert!(mem::offset_of!(SessionConfig, hdr).is_multiple_of(2)) };
    let dst = ptr_at::<[u8; N]>(ctx, 0)?.cast::<u16>();
    let src = cfg.hdr.as_ptr().cast::<u16>();
    let mut i = 0;
    while i < N / 2 {
        // SAFETY: ptr_at checked the frame holds N bytes; both sides are
        // 2-aligned (see above) and `src` reads within the template.
        unsafe { *dst.add(i) = *src.add(i) };
        i += 1;
    }
    Some(())
}

#[inline(always)]
pub fn attach(ctx: &XdpContext, t: &mut Trace) -> Option<u32> {
    let ifindex = ctx.ingress_ifindex() as u32;
    // A VLAN circuit of this interface first (802.1Q tag: RFC 4448 tagged
    // mode, the frame crosses with its tag), else the whole interface.
    let vid = match load_be16(ctx, ETH_TYPE_OFF)? {
        ETH_P_8021Q => load_be16(ctx, ETH_HLEN)? & VLAN_VID_MASK,
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
    // A hot standby's warm session: the active forwards this circuit.
    let sid = cfg.local_session_id;
    if cfg.flags & flags::STANDBY != 0 {
        if let Some(g) = crate::maps::global() {
            crate::maps::count(g, GlobalCounter::Standby);
        }
        t.set(trace::STANDBY, sid);
        return Some(xdp_action::XDP_DROP);
    }
    let tx = SESSION_TX_STATE.get_ptr_mut(idx)?;
    let stats = crate::maps::session_stats(idx)?;

    let inner_len = frame_len(ctx) as u32;
    let over_ip = cfg.flags & flags::ENCAP_IP != 0;
    let ipv6 = cfg.flags & flags::IPV6 != 0;
    let sublayer = cfg.flags & flags::SUBLAYER != 0;
    let cookie_len = u32::from(cfg.tx_cookie_len & 0xC);
    let session_hdr = if over_ip { V3_IP_SESSION_HLEN } else { V3_UDP_DATA_HLEN } as u32;
    let l2tp_len = session_hdr + cookie_len + if sublayer { V3_SUBLAYER_LEN as u32 } else { 0 };
    let hdr_len = u32::from(cfg.hdr_len);
    let ip_len = hdr_len - ETH_HLEN as u32 + l2tp_len + inner_len;
    if ip_len > u32::from(cfg.uplink_mtu) {
        // No fragmentation: too big for the uplink.
        stats.tx_mtu_drops += 1;
        t.set(trace::MTU_EXCEEDED, sid);
        return Some(xdp_action::XDP_DROP);
    }
    let push = hdr_len + l2tp_len;
    // SAFETY: ctx.ctx is the program's xdp_md.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(push as i32)) } != 0 {
        stats.redirect_errors += 1;
        t.set(trace::NO_HEADROOM, sid);
        return Some(xdp_action::XDP_DROP);
    }
    // Outer headers from the template, then the length fields.
    let l4 = match (ipv6, over_ip) {
        (false, false) => put_template::<{ V4_L4 + UDP_HLEN }>(ctx, cfg).map(|_| V4_L4),
        (false, true) => put_template::<V4_L4>(ctx, cfg).map(|_| V4_L4),
        (true, false) => put_template::<{ V6_L4 + UDP_HLEN }>(ctx, cfg).map(|_| V6_L4),
        (true, true) => put_template::<V6_L4>(ctx, cfg).map(|_| V6_L4),
    };
    let Some(l4) = l4 else {
        stats.redirect_errors += 1;
        t.set(trace::NO_HEADROOM, sid);
        return Some(xdp_action::XDP_DROP);
    };
    if ipv6 {
        store(ctx, ETH_HLEN + IPV6_PAYLOAD_LEN_OFF, ((ip_len - IPV6_HLEN as u32) as u16).to_be_bytes())?;
    } else {
        store(ctx, ETH_HLEN + IPV4_TOT_LEN_OFF, (ip_len as u16).to_be_bytes())?;
        let csum = checksum::ipv4_with_length(cfg.ip4_csum_base, ip_len);
        store(ctx, ETH_HLEN + IPV4_CSUM_OFF, csum.to_be_bytes())?;
    }
    // Before an Ns is taken: a dropped frame must not open a gap.
    let mut egress = u32::from(cfg.uplink_port);
    if cfg.flags & flags::FIB_LOOKUP != 0 {
        match cached_next_hop(ctx, idx, cfg, ipv6, ip_len) {
            Some(port) => egress = port,
            // No route or no neighbour: the template's MACs, if any.
            None if cfg.hdr[..ETH_ALEN] != [0; ETH_ALEN] => {}
            None => {
                stats.tx_no_route += 1;
                t.set(trace::NO_ROUTE, sid);
                return Some(xdp_action::XDP_DROP);
            }
        }
    }
    let mut off = l4;
    let mut udp_len = 0;
    if !over_ip {
        udp_len = (ip_len - (l4 - ETH_HLEN) as u32) as u16;
        store(ctx, off + UDP_LEN_OFF, udp_len.to_be_bytes())?;
        // Checksum 0 while the headers are written: left so on IPv4, and
        // on IPv6 where configured (RFC 6935/6936); else computed below.
        store(ctx, off + UDP_CSUM_OFF, [0, 0])?;
        off += UDP_HLEN;
        store(ctx, off, V3_UDP_DATA_WORD)?;
        off += V3_UDP_SESSION_OFF;
    }
    store(ctx, off, cfg.peer_session_id.to_be_bytes())?;
    off += mem::size_of::<u32>();
    match cookie_len {
        4 => store(ctx, off, [cfg.tx_cookie[0], cfg.tx_cookie[1], cfg.tx_cookie[2], cfg.tx_cookie[3]])?,
        8 => store(ctx, off, cfg.tx_cookie)?,
        _ => {}
    }
    off += cookie_len as usize;
    // Transmit state is this program's: a pending RESET_NS first.
    sequence::apply_tx_command(idx, tx);
    if sublayer {
        let word = if cfg.flags & flags::SEQ_TX != 0 { V3_SUBLAYER_S | sequence::next_ns(tx) } else { 0 };
        store(ctx, off, word.to_be_bytes())?;
    }
    if ipv6 && !over_ip && cfg.flags & flags::UDP6_ZERO_CSUM == 0 {
        // RFC 8200 8.1: "a UDP checksum ... is mandatory" over IPv6.
        let Some(c) = checksum::udp6_for_send(ctx, l4, udp_len) else {
            stats.tx_mtu_drops += 1;
            t.set(trace::MTU_EXCEEDED, sid);
            return Some(xdp_action::XDP_DROP);
        };
        store(ctx, l4 + UDP_CSUM_OFF, c)?;
    }
    stats.tx_packets += 1;
    stats.tx_bytes += u64::from(inner_len);
    match TX_PORTS.redirect(egress, 0) {
        Ok(action) => Some(action),
        Err(_) => {
            stats.redirect_errors += 1;
            t.set(trace::REDIRECT_FAILED, sid);
            Some(xdp_action::XDP_DROP)
        }
    }
}

/// The session's next hop from its cache entry while that is fresh (see
/// [`NextHop`]), else from [`next_hop`], which then refills the entry:
/// one `bpf_fib_lookup` per session per generation or TTL instead of one
/// per frame. Writes the MACs into the frame and returns the egress port.
#[inline(always)]
fn cached_next_hop(ctx: &XdpContext, idx: u32, cfg: &SessionConfig, ipv6: bool, ip_len: u32) -> Option<u32> {
    let gen = DP_CONFIG.get(0).map_or(0, |c| c.next_hop_gen);
    let e = SESSION_NEXT_HOP.get_ptr_mut(idx)?;
    // SAFETY: a program-lifetime map value pointer.
    let now = unsafe { bpf_jiffies64() };
    if gen != 0 {
        // SAFETY: as above; volatile reads, the ends first and last, so a
        // refill under way on another CPU (gen_end zeroed first) is a miss.
        unsafe {
            let begin = core::ptr::read_volatile(&(*e).gen_begin);
            if begin == gen && now < core::ptr::read_volatile(&(*e).expires) {
                let port = core::ptr::read_volatile(&(*e).port);
                let dmac = core::ptr::read_volatile(&(*e).dmac);
                let smac = core::ptr::read_volatile(&(*e).smac);
                if core::ptr::read_volatile(&(*e).gen_end) == gen {
                    store(ctx, 0, dmac)?;
                    store(ctx, ETH_ALEN, smac)?;
                    return Some(port);
                }
            }
        }
    }
    let (port, dmac, smac) = next_hop(ctx, cfg, ipv6, ip_len)?;
    if gen != 0 {
        // SAFETY: as above; this program is the entry's only writer.
        unsafe {
            core::ptr::write_volatile(&raw mut (*e).gen_end, 0);
            core::ptr::write_volatile(&raw mut (*e).gen_begin, gen);
            core::ptr::write_volatile(&raw mut (*e).port, port);
            core::ptr::write_volatile(&raw mut (*e).expires, now + NEXT_HOP_TTL_JIFFIES);
            core::ptr::write_volatile(&raw mut (*e).dmac, dmac);
            core::ptr::write_volatile(&raw mut (*e).smac, smac);
            core::ptr::write_volatile(&raw mut (*e).gen_end, gen);
        }
    }
    Some(port)
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Next hop of the outer packet by the kernel's FIB and neighbour tables:
/// writes the MACs into the frame and returns the egress port slot and the
/// MACs, or `None`
/// (no route, no neighbour entry, forwarding disabled on the uplink, or an
/// egress the data plane cannot redirect to).
#[inline(always)]
fn next_hop(ctx: &XdpContext, cfg: &SessionConfig, ipv6: bool, ip_len: u32) -> Option<(u32, [u8; 6], [u8; 6])> {
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
            let o = ETH_HLEN + IPV6_SADDR_OFF + 4 * i;
            let d = ETH_HLEN + IPV6_DADDR_OFF + 4 * i;
            src[i] = u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            dst[i] = u32::from_ne_bytes([h[d], h[d + 1], h[d + 2], h[d + 3]]);
        }
        p.__bindgen_anon_3.ipv6_src = src;
        p.__bindgen_anon_4.ipv6_dst = dst;
    } else {
        p.family = AF_INET;
        let o = ETH_HLEN + IPV4_SADDR_OFF;
        let d = ETH_HLEN + IPV4_DADDR_OFF;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([h[d], h[d + 1], h[d + 2], h[d + 3]]);
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
    store(ctx, ETH_ALEN, p.smac)?;
    Some((port, p.dmac, p.smac))
}
