//! Internet checksums (RFC 1071) over frame bytes: the IPv4 header check
//! on receipt, the UDP checksum over IPv4 or IPv6 (verified on receipt,
//! computed on send over IPv6) and the RFC 1624 update of the IPv4 header
//! template on send.

use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use l2tp_common::wire::{ETH_HLEN, IPPROTO_UDP, IPV4_MIN_HLEN, IPV4_SADDR_OFF, IPV6_SADDR_OFF};

use crate::{
    maps::CSUM_SCRATCH,
    parse::{ptr_at, words},
};

/// Folds a 32-bit ones'-complement accumulator to 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Whether the 20-byte IPv4 header at `ip` (no options: the parser takes
/// no others) has a right header checksum: ten 16-bit loads and adds, no
/// helper call. The sum is independent of byte order, so the words are
/// summed as they are in memory.
#[inline(always)]
pub fn ipv4_header_ok(ctx: &XdpContext, ip: usize) -> bool {
    let Some(w) = words::<{ IPV4_MIN_HLEN / 2 }>(ctx, ip) else { return false };
    let mut sum = 0u32;
    for x in w {
        sum += u32::from(x);
    }
    fold(sum) == 0xffff
}

/// IPv4 header checksum of a template whose checksum `base` was computed
/// with Total Length 0, once Total Length is `ip_len` (RFC 1624
/// incremental update), ready to store big-endian.
#[inline(always)]
pub fn ipv4_with_length(base: u16, ip_len: u32) -> u16 {
    !fold(u32::from(!base) + ip_len)
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

/// UDP checksum over IPv6 (RFC 8200 8.1) of the datagram at `l4` sent with
/// the IPv6 header at the start of the frame's IP layer, in memory byte
/// order, ready to store. `None` for datagrams too long to sum.
#[inline(always)]
pub fn udp6_for_send(ctx: &XdpContext, l4: usize, udp_len: u16) -> Option<[u8; 2]> {
    let c = !udp_sum(ctx, ETH_HLEN, true, l4, udp_len)?;
    // A computed zero goes out as all ones (zero means "no checksum").
    Some(if c == 0 { 0xffff } else { c }.to_ne_bytes())
}

/// Ones'-complement sum, folded, of the UDP pseudo-header (addresses from
/// the IPv4 or IPv6 header at `ip`, length, protocol) and the datagram at
/// `l4` of `udp_len` bytes, in memory byte order: 0xffff over a datagram
/// whose checksum is right. `None` for datagrams too long to sum.
#[inline(always)]
pub fn udp_sum(ctx: &XdpContext, ip: usize, ipv6: bool, l4: usize, udp_len: u16) -> Option<u16> {
    // Source and destination addresses are adjacent in both headers.
    let mut sum = if ipv6 {
        csum_add::<32>(ctx, (ip & 0xff) + IPV6_SADDR_OFF, 0)?
    } else {
        csum_add::<8>(ctx, (ip & 0xff) + IPV4_SADDR_OFF, 0)?
    };
    // Length and protocol: the IPv4 pseudo-header's zero/protocol/length
    // words and the IPv6 one's length/zero/next-header words sum alike.
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
    Some(fold(sum))
}
