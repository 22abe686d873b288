//! Bounds-checked frame access and the outer headers: Ethernet, up to two
//! VLAN tags, IPv4 or IPv6, UDP; and the soundness checks every received
//! frame passes before anything looks inside it.

use core::mem;

use aya_ebpf::programs::XdpContext;
use l2tp_common::{wire::*, GlobalCounter};

use crate::{
    checksum,
    maps::{count, Global},
};

/// Bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Bytes in the frame.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// The big-endian 16-bit field at `offset`, with one 2-byte load (a byte
/// array would take two loads, a shift and an or; the byte swap folds into
/// the comparisons with constants). Every 16-bit field read this way lies
/// on an even offset: see [`words`] for the alignment.
#[inline(always)]
pub fn load_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    words::<1>(ctx, offset).map(|[w]| u16::from_be(w))
}

/// The big-endian 32-bit field at `offset` (2-aligned, not always
/// 4-aligned: two 2-byte loads).
#[inline(always)]
pub fn load_be32(ctx: &XdpContext, offset: usize) -> Option<u32> {
    words::<2>(ctx, offset).map(|[hi, lo]| (u32::from(u16::from_be(hi)) << 16) | u32::from(u16::from_be(lo)))
}

#[inline(always)]
pub fn load_u8(ctx: &XdpContext, offset: usize) -> Option<u8> {
    // SAFETY: ptr_at checked that the byte is inside the frame.
    ptr_at::<u8>(ctx, offset).map(|p| unsafe { *p })
}

/// `N` 16-bit words at `offset` as they are in memory (network byte
/// order), with one 2-byte load each (a byte array would take two loads
/// and a shift per word).
///
/// Alignment: frames start on an even address (every driver's headroom,
/// `XDP_PACKET_HEADROOM` with or without `NET_IP_ALIGN`, is even) and every
/// header before the ones read this way has an even length, so `offset`
/// keeps the words 2-aligned.
#[inline(always)]
pub fn words<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u16; N]> {
    // SAFETY: ptr_at checked that 2N bytes are inside the frame; see above
    // for the alignment.
    ptr_at::<[u16; N]>(ctx, offset).map(|p| unsafe { *p })
}

/// Writes `bytes` at `offset`, 2 bytes per store (a byte array would be
/// stored byte by byte). Every field written this way lies on an even
/// offset of a frame that starts on an even address: see [`words`].
#[inline(always)]
pub fn store<const N: usize>(ctx: &XdpContext, offset: usize, bytes: [u8; N]) -> Option<()> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    let mut i = 0;
    while i + 1 < N {
        // SAFETY: ptr_at checked that N bytes are inside the frame; see
        // above for the alignment.
        unsafe { *(p.cast::<u8>().add(i).cast::<u16>()) = u16::from_ne_bytes([bytes[i], bytes[i + 1]]) };
        i += 2;
    }
    if i < N {
        // SAFETY: as above, the last byte of an odd-sized array.
        unsafe { *p.cast::<u8>().add(i) = bytes[i] };
    }
    Some(())
}

/// The outer headers of an L2TP frame, as offsets into it.
#[derive(Clone, Copy)]
pub struct Outer {
    /// The IP header.
    pub ip: usize,
    pub ipv6: bool,
    /// L2TPv3 over IP (protocol 115), else over UDP.
    pub over_ip: bool,
    /// The UDP header (over UDP) or the L2TP header (over IP).
    pub l4: usize,
    /// The L2TP header.
    pub l2tp: usize,
}

/// Untagged IPv4 without options, UDP: the common layout.
pub const UDP4: Outer = Outer {
    ip: ETH_HLEN,
    ipv6: false,
    over_ip: false,
    l4: ETH_HLEN + IPV4_MIN_HLEN,
    l2tp: ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN,
};

/// Walks Ethernet, VLAN tags and the IP header to an L2TP carrier: UDP
/// from or to port 1701, or IP protocol 115. `None`: not an L2TP frame we
/// look at (not IP, another protocol, IP options, a fragment, or too short
/// to hold the fixed headers); the kernel gets it.
#[inline(always)]
pub fn outer(ctx: &XdpContext, g: &mut Global) -> Option<Outer> {
    // The common layout first: Ethernet, IPv4 and UDP headers read with
    // one bounds check and constant offsets. Anything else (and every
    // case that counts) takes the general walk below.
    if let Some(h) = words::<{ (ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN) / 2 }>(ctx, 0) {
        let be = u16::from_be;
        let ip = ETH_HLEN / 2;
        let udp = (ETH_HLEN + IPV4_MIN_HLEN) / 2;
        if be(h[ETH_TYPE_OFF / 2]) == ETH_P_IP
            && be(h[ip]) >> 8 == u16::from(IPV4_VIHL_NO_OPTIONS)
            && be(h[ip + IPV4_FRAG_OFF / 2]) & IPV4_FRAG_MASK == 0
            && be(h[ip + IPV4_PROTO_OFF / 2]) & 0xff == u16::from(IPPROTO_UDP)
            && (be(h[udp]) == L2TP_UDP_PORT || be(h[udp + UDP_DPORT_OFF / 2]) == L2TP_UDP_PORT)
        {
            return Some(UDP4);
        }
    }
    let mut ip = ETH_HLEN;
    let mut proto = load_be16(ctx, ETH_TYPE_OFF)?;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = load_be16(ctx, ip + 2)?;
            ip += VLAN_HLEN;
        }
    }
    let ipv6 = proto == ETH_P_IPV6;
    let (l4proto, l4) = if proto == ETH_P_IP {
        ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, ip)?;
        let vihl = load_u8(ctx, ip)?;
        let frag = load_be16(ctx, ip + IPV4_FRAG_OFF)?;
        if vihl != IPV4_VIHL_NO_OPTIONS || frag & IPV4_FRAG_MASK != 0 {
            // IP options or a fragment: never parsed here.
            count(g, GlobalCounter::IpUnparsed);
            return None;
        }
        (load_u8(ctx, ip + IPV4_PROTO_OFF)?, ip + IPV4_MIN_HLEN)
    } else if ipv6 {
        ptr_at::<[u8; IPV6_HLEN]>(ctx, ip)?;
        (load_u8(ctx, ip + IPV6_NEXT_OFF)?, ip + IPV6_HLEN)
    } else {
        return None;
    };
    if l4proto == IPPROTO_UDP {
        let sport = load_be16(ctx, l4)?;
        let dport = load_be16(ctx, l4 + UDP_DPORT_OFF)?;
        ptr_at::<[u8; UDP_HLEN]>(ctx, l4)?;
        if sport != L2TP_UDP_PORT && dport != L2TP_UDP_PORT {
            return None;
        }
        Some(Outer { ip, ipv6, over_ip: false, l4, l2tp: l4 + UDP_HLEN })
    } else if l4proto == IPPROTO_L2TP {
        Some(Outer { ip, ipv6, over_ip: true, l4, l2tp: l4 })
    } else {
        None
    }
}

/// Checks the outer headers of `o` against each other and the frame;
/// returns where the L2TP message ends as they declare it (the UDP length,
/// or over IP the IP length), or `None` when they are unsound. Bytes past
/// that end (Ethernet padding of a short frame) are not part of it.
#[inline(always)]
pub fn declared_end(ctx: &XdpContext, o: &Outer) -> Option<usize> {
    let frame = frame_len(ctx);
    let ip_end = if o.ipv6 {
        // RFC 8200 3: Payload Length, the rest of the packet after the
        // header; none of it may lie beyond the frame.
        o.ip + IPV6_HLEN + usize::from(load_be16(ctx, o.ip + IPV6_PAYLOAD_LEN_OFF)?)
    } else {
        // RFC 1122 3.2.1.2: "A host MUST verify the IP header checksum on
        // every received datagram and silently discard every datagram that
        // has a bad checksum."
        if !checksum::ipv4_header_ok(ctx, o.ip) {
            return None;
        }
        // RFC 791 3.1: Total Length covers header and data; at least the
        // header, at most what arrived.
        let total = usize::from(load_be16(ctx, o.ip + IPV4_TOT_LEN_OFF)?);
        if total < IPV4_MIN_HLEN {
            return None;
        }
        o.ip + total
    };
    if ip_end > frame {
        return None;
    }
    if o.over_ip {
        return Some(ip_end);
    }
    // RFC 768: the UDP Length counts header and data, "the minimum value of
    // the length is eight", and the datagram lies inside the IP payload.
    let udp_len = usize::from(load_be16(ctx, o.l4 + UDP_LEN_OFF)?);
    if udp_len < UDP_HLEN || o.l4 + udp_len > ip_end {
        return None;
    }
    Some(o.l4 + udp_len)
}
