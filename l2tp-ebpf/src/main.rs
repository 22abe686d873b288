//! XDP programs of the L2TP data plane.
//!
//! `l2tp_classify` parses Ethernet (with up to two VLAN tags), IPv4/IPv6 and
//! UDP/IP-115, classifies L2TP traffic (control or data) and counts it in
//! per-CPU counters. It passes every frame to the kernel stack: it never
//! changes what the host sees.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::map, macros::xdp, maps::PerCpuArray, programs::XdpContext};
use core::mem;
use l2tp_common::{wire::*, GlobalCounter};

#[map(name = "GLOBAL_STATS")]
static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GlobalCounter::COUNT, 0);

#[inline(always)]
fn count(c: GlobalCounter) {
    if let Some(slot) = GLOBAL_STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *slot += 1 };
    }
}

/// Bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
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

/// Where the L2TP header starts and how it is carried.
enum Carrier {
    Udp(usize),
    Ip(usize),
    NotOurs,
}

#[xdp]
pub fn l2tp_classify(ctx: XdpContext) -> u32 {
    count(GlobalCounter::Frames);
    classify(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn classify(ctx: &XdpContext) {
    let carrier = match find_l4(ctx) {
        Some(c) => c,
        None => return,
    };
    match carrier {
        Carrier::NotOurs => {}
        Carrier::Udp(off) => {
            count(GlobalCounter::L2tpUdp);
            match load_be16(ctx, off) {
                Some(flags) if flags & HDR_T != 0 => count(GlobalCounter::Control),
                Some(_) => count(GlobalCounter::Data),
                None => count(GlobalCounter::Malformed),
            }
        }
        Carrier::Ip(off) => {
            count(GlobalCounter::L2tpIp);
            // RFC 3931 4.1.1.2: a Session ID of zero marks a control message.
            match load_be32(ctx, off) {
                Some(0) => count(GlobalCounter::Control),
                Some(_) => count(GlobalCounter::Data),
                None => count(GlobalCounter::Malformed),
            }
        }
    }
}

/// Walks Ethernet, VLAN tags and the IP header; returns the L2TP carrier.
/// `None` means the frame is not parseable L3 we look at (it is passed).
#[inline(always)]
fn find_l4(ctx: &XdpContext) -> Option<Carrier> {
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
            count(GlobalCounter::IpUnparsed);
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
            return Some(Carrier::Udp(l4off + UDP_HLEN));
        }
        Some(Carrier::NotOurs)
    } else if l4proto == IPPROTO_L2TP {
        Some(Carrier::Ip(l4off))
    } else {
        Some(Carrier::NotOurs)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
