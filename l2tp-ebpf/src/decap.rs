//! Decapsulation (`l2tp_uplink`): L2TPv3 data of a session of ours out of
//! its attachment interface, everything else to the kernel.
//!
//! One pipeline per frame, each step on what the previous ones proved:
//! 1. outer headers parsed and sound (IPv4 header checksum, IPv4/IPv6/UDP
//!    lengths), which gives the end of the L2TP message;
//! 2. L2TP header: control and L2TPv2 go to the kernel; the Session ID
//!    finds the session (none: not ours);
//! 3. addressed to us: the outer destination is the session's local
//!    address (else not ours: passed, nothing counted against the session);
//! 4. the frame is good: carrier, UDP checksum, cookie, sublayer and an
//!    inner Ethernet header inside the declared end (else dropped as
//!    malformed, or as a cookie mismatch);
//! 5. only then session state: a pending receive command, the sequence
//!    check, the counters; the customer frame (to the declared end, not to
//!    the frame's end) is redirected.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use l2tp_common::{
    session::{flags, trace, SessionConfig, MAX_SESSIONS},
    wire::*,
    GlobalCounter,
};

use crate::{
    checksum,
    maps::{count, session_stats, Global, SESSION_BY_ID, SESSION_CFG, SESSION_RX_STATE, TX_PORTS},
    parse::{self, frame_len, load_be16, load_be32, ptr_at, words, Outer},
    sequence,
    trace::Trace,
};

/// The L2TP data header of a frame: the Session ID and where the header
/// after it (cookie) starts.
struct Data {
    session_id: u32,
    next: usize,
}

/// Reads the L2TP header. Counts control and data messages of sound
/// frames; `None` when the frame is not L2TPv3 data (the kernel's), or is
/// cut before its Session ID. `*bad` is set when the declared end cuts the
/// header (such a frame is still looked up, to drop it if it is ours); the
/// caller counts it malformed, once.
#[inline(always)]
fn l2tp_data(ctx: &XdpContext, o: &Outer, end: usize, bad: &mut bool, g: &mut Global) -> Option<Data> {
    let mark = |bad: &mut bool| *bad = true;
    if o.over_ip {
        // RFC 3931 4.1.1.2: a Session ID of zero marks a control message.
        if o.l2tp + V3_IP_SESSION_HLEN > end {
            mark(bad);
        }
        let Some(sid) = load_be32(ctx, o.l2tp) else {
            mark(bad);
            return None;
        };
        if sid == 0 {
            if !*bad {
                count(g, GlobalCounter::Control);
            }
            return None;
        }
        if !*bad {
            count(g, GlobalCounter::Data);
        }
        return Some(Data { session_id: sid, next: o.l2tp + V3_IP_SESSION_HLEN });
    }
    if o.l2tp + 2 > end {
        mark(bad);
    }
    let Some(first) = load_be16(ctx, o.l2tp) else {
        mark(bad);
        return None;
    };
    if first & HDR_T != 0 {
        if !*bad {
            count(g, GlobalCounter::Control);
        }
        return None;
    }
    if !*bad {
        count(g, GlobalCounter::Data);
    }
    // L2TPv2 data is not switched here: the kernel gets it.
    if first & HDR_VER_MASK != HDR_VER_3 {
        return None;
    }
    if o.l2tp + V3_UDP_DATA_HLEN > end {
        mark(bad);
    }
    let Some(sid) = load_be32(ctx, o.l2tp + V3_UDP_SESSION_OFF) else {
        mark(bad);
        return None;
    };
    Some(Data { session_id: sid, next: o.l2tp + V3_UDP_DATA_HLEN })
}

/// A cookie as the 16-bit words it is read as from the frame.
#[inline(always)]
fn cookie_words(c: &[u8; 8]) -> [u16; 4] {
    [
        u16::from_ne_bytes([c[0], c[1]]),
        u16::from_ne_bytes([c[2], c[3]]),
        u16::from_ne_bytes([c[4], c[5]]),
        u16::from_ne_bytes([c[6], c[7]]),
    ]
}

/// Whether the frame's outer destination is the session's local address
/// (and family).
#[inline(always)]
fn addressed_to(ctx: &XdpContext, o: &Outer, cfg: &SessionConfig) -> bool {
    if o.ipv6 != (cfg.flags & flags::IPV6 != 0) {
        return false;
    }
    let mut diff = 0u16;
    if o.ipv6 {
        let Some(dst) = words::<8>(ctx, o.ip + IPV6_DADDR_OFF) else { return false };
        for (d, l) in dst.iter().zip(cfg.local_addr.iter()) {
            diff |= d ^ l;
        }
    } else {
        let Some(dst) = words::<2>(ctx, o.ip + IPV4_DADDR_OFF) else { return false };
        diff = (dst[0] ^ cfg.local_addr[0]) | (dst[1] ^ cfg.local_addr[1]);
    }
    diff == 0
}

/// Whether the UDP checksum of a sound frame of this session is acceptable.
#[inline(always)]
fn udp_checksum_ok(ctx: &XdpContext, o: &Outer, cfg: &SessionConfig, end: usize) -> bool {
    let Some([csum]) = words::<1>(ctx, o.l4 + UDP_CSUM_OFF) else { return false };
    if csum == 0 {
        // IPv4: no checksum was sent (RFC 768). IPv6: RFC 8200 8.1 makes
        // it mandatory; zero is accepted only on sessions configured for
        // it (RFC 6935/6936).
        return !o.ipv6 || cfg.flags & flags::UDP6_ZERO_CSUM != 0;
    }
    // RFC 1122 4.1.3.4: "If a UDP datagram is received with a checksum
    // that is non-zero and invalid, UDP MUST silently discard the
    // datagram." Verified only when the sender used one (over IPv4), so
    // peers that send zero pay nothing.
    let udp_len = (end - o.l4) as u16;
    checksum::udp_sum(ctx, o.ip, o.ipv6, o.l4, udp_len) == Some(0xffff)
}

#[inline(always)]
pub fn uplink(ctx: &XdpContext, g: &mut Global, t: &mut Trace) -> Option<u32> {
    // 1. Outer headers.
    let o = parse::outer(ctx, g)?;
    if o.ip == ETH_HLEN && !o.ipv6 && !o.over_ip {
        // The common layout (untagged IPv4, UDP): the same pipeline, which
        // the compiler specialises for constant offsets.
        return carried(ctx, g, t, parse::UDP4);
    }
    carried(ctx, g, t, o)
}

/// The rest of the pipeline, for the outer headers `o` of an L2TP carrier.
#[inline(always)]
fn carried(ctx: &XdpContext, g: &mut Global, t: &mut Trace, o: Outer) -> Option<u32> {
    count(g, if o.over_ip { GlobalCounter::L2tpIp } else { GlobalCounter::L2tpUdp });
    let declared = parse::declared_end(ctx, &o);
    let mut bad = declared.is_none();
    let end = declared.unwrap_or(0);

    // 2. L2TP header and session. The session's home slot first (IDs are
    // placed by their low bits), the hash of IDs that could not be.
    // Unknown sessions are not ours: the kernel decides.
    let data = l2tp_data(ctx, &o, end, &mut bad, g);
    // Unsound outer headers, or an L2TP header cut by the declared end.
    if bad {
        count(g, GlobalCounter::Malformed);
    }
    let data = data?;
    let home = data.session_id & (MAX_SESSIONS - 1);
    let sid = data.session_id;
    let idx = match SESSION_CFG.get(home) {
        Some(c) if c.local_session_id == sid && c.flags & flags::ACTIVE != 0 => home,
        // SAFETY: the value is a plain u32 copied out at once.
        _ => match unsafe { SESSION_BY_ID.get(sid) } {
            Some(i) => *i,
            None => {
                t.set(trace::UNKNOWN_SESSION, sid);
                return None;
            }
        },
    };
    let cfg = SESSION_CFG.get(idx)?;
    // A hot standby's warm session: not ours until a takeover activates it.
    if cfg.flags & flags::STANDBY != 0 {
        count(g, GlobalCounter::Standby);
        t.set(trace::STANDBY, sid);
        return None;
    }

    // 3. Addressed to us, or not ours at all (transit traffic of a host
    // that forwards): passed, nothing counted against the session.
    if !addressed_to(ctx, &o, cfg) {
        t.set(trace::NOT_ADDRESSED_TO_US, sid);
        return None;
    }
    let rx = SESSION_RX_STATE.get_ptr_mut(idx)?;
    let stats = session_stats(idx)?;

    // 4. A good frame, checked without touching session state.
    if bad || o.over_ip != (cfg.flags & flags::ENCAP_IP != 0) || (!o.over_ip && !udp_checksum_ok(ctx, &o, cfg, end)) {
        stats.rx_malformed += 1;
        t.set(
            if bad {
                trace::MALFORMED
            } else if o.over_ip != (cfg.flags & flags::ENCAP_IP != 0) {
                trace::WRONG_ENCAPSULATION
            } else {
                trace::UDP_CHECKSUM
            },
            sid,
        );
        return Some(xdp_action::XDP_DROP);
    }
    let mut off = data.next;
    // Cookie (RFC 3931 4.1): compared with what we assigned. A frame that
    // ends inside it is malformed, not a mismatch.
    let cookie_len = usize::from(cfg.rx_cookie_len & 0xC);
    if off + cookie_len > end {
        stats.rx_malformed += 1;
        t.set(trace::MALFORMED, sid);
        return Some(xdp_action::XDP_DROP);
    }
    // Compared word by word as they are in memory (2-byte loads: see
    // `parse::words`).
    let want = cookie_words(&cfg.rx_cookie);
    let cookie_ok = match cookie_len {
        0 => cfg.rx_cookie_len == 0,
        4 => words::<2>(ctx, off).is_some_and(|w| (w[0] ^ want[0]) | (w[1] ^ want[1]) == 0),
        8 => words::<4>(ctx, off)
            .is_some_and(|w| (w[0] ^ want[0]) | (w[1] ^ want[1]) | (w[2] ^ want[2]) | (w[3] ^ want[3]) == 0),
        _ => false,
    };
    if !cookie_ok {
        stats.rx_cookie_mismatch += 1;
        t.set(trace::COOKIE_MISMATCH, sid);
        return Some(xdp_action::XDP_DROP);
    }
    off += cookie_len;
    let mut sublayer = 0;
    if cfg.flags & flags::SUBLAYER != 0 {
        let word = if off + V3_SUBLAYER_LEN <= end { load_be32(ctx, off) } else { None };
        let Some(word) = word else {
            stats.rx_malformed += 1;
            t.set(trace::MALFORMED, sid);
            return Some(xdp_action::XDP_DROP);
        };
        sublayer = word;
        off += V3_SUBLAYER_LEN;
    }
    // The inner frame needs at least an Ethernet header.
    if off + ETH_HLEN > end || ptr_at::<[u8; ETH_HLEN]>(ctx, off).is_none() {
        stats.rx_malformed += 1;
        t.set(trace::MALFORMED, sid);
        return Some(xdp_action::XDP_DROP);
    }
    let inner_len = end - off;
    // Bytes past the declared end (Ethernet padding) are not the customer's.
    let padding = frame_len(ctx) - end;
    // SAFETY: ctx.ctx is the program's xdp_md; both calls shrink the frame
    // to the inner Ethernet frame checked above.
    if padding != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(padding as i32)) } != 0 {
        stats.rx_malformed += 1;
        t.set(trace::MALFORMED, sid);
        return Some(xdp_action::XDP_DROP);
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, off as i32) } != 0 {
        stats.rx_malformed += 1;
        t.set(trace::MALFORMED, sid);
        return Some(xdp_action::XDP_DROP);
    }

    // 5. Session state, now that the frame is known to be good.
    sequence::apply_rx_command(idx, rx);
    // S=0: "the Sequence Number contents are undefined and MUST be ignored"
    // (RFC 3931 4.6).
    if cfg.flags & flags::SEQ_RX != 0 && sublayer & V3_SUBLAYER_S != 0 {
        // SAFETY: receive state is written by this program only (one flow,
        // one RSS queue: one CPU at a time in practice).
        let rx = unsafe { &mut *rx };
        let ns = sublayer & V3_SEQ_MASK;
        if !sequence::rx_sequence(cfg, rx, stats, ns) {
            let duplicate = ns.wrapping_sub(rx.rx_nr) & V3_SEQ_MASK == V3_SEQ_MASK;
            t.set(if duplicate { trace::DUPLICATE } else { trace::OUT_OF_SEQUENCE }, sid);
            t.set_seq(ns, rx.rx_nr);
            return Some(xdp_action::XDP_DROP);
        }
    }
    stats.rx_packets += 1;
    stats.rx_bytes += inner_len as u64;
    match TX_PORTS.redirect(u32::from(cfg.attach_port), 0) {
        Ok(action) => Some(action),
        Err(_) => {
            stats.redirect_errors += 1;
            t.set(trace::REDIRECT_FAILED, sid);
            Some(xdp_action::XDP_DROP)
        }
    }
}
