//! The packet generator and the benchmark programs (see
//! `l2tp_common::tools`). Never attached by the data-plane loader.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::XdpContext,
};
use l2tp_common::{tools::MAX_STAMP_OFFSET, wire::*};

use crate::{attach_entry, parse::ptr_at, uplink_entry};

#[map(name = "PKTGEN_CFG")]
static PKTGEN_CFG: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "PKTGEN_NS")]
static PKTGEN_NS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "SINK_STATS")]
static SINK_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
#[map(name = "BENCH_PORTS")]
static BENCH_PORTS: DevMap = DevMap::with_max_entries(1, 0);

/// Writes S=1 and the next sequence number into the sublayer word at the
/// configured offset (nothing when none is configured).
#[inline(always)]
fn stamp(ctx: &XdpContext) {
    let Some(&off) = PKTGEN_CFG.get(0) else { return };
    if off == 0 || off > MAX_STAMP_OFFSET {
        return;
    }
    let (Some(p), Some(ns)) = (ptr_at::<[u8; 4]>(ctx, off as usize), PKTGEN_NS.get_ptr_mut(0)) else {
        return;
    };
    // SAFETY: ptr_at checked the 4 bytes; the counter slot is this CPU's.
    unsafe {
        *p = (V3_SUBLAYER_S | (*ns & V3_SEQ_MASK)).to_be_bytes();
        *ns = (*ns).wrapping_add(1);
    }
}

#[xdp]
pub fn l2tp_pktgen(ctx: XdpContext) -> u32 {
    stamp(&ctx);
    // Under BPF_F_TEST_XDP_LIVE_FRAMES the kernel turns XDP_TX into a
    // transmission out of the ingress interface given in the context.
    xdp_action::XDP_TX
}

#[xdp]
pub fn l2tp_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let (Some(p), Some(b)) = (SINK_STATS.get_ptr_mut(0), SINK_STATS.get_ptr_mut(1)) {
        // SAFETY: per-CPU slots.
        unsafe {
            *p += 1;
            *b += len;
        }
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_redirect(_ctx: XdpContext) -> u32 {
    BENCH_PORTS.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}

/// The frame's length, from the helper: a plain scalar to keep across
/// the program (a difference of packet pointers can be reordered by the
/// compiler into arithmetic the verifier refuses).
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> i64 {
    // SAFETY: ctx.ctx is the program's xdp_md.
    unsafe { aya_ebpf::helpers::bpf_xdp_get_buff_len(ctx.ctx) as i64 }
}

/// Gives the frame back the length it had when the program began (the
/// frame end never moves, so this restores its start).
#[inline(always)]
fn restore_head(ctx: &XdpContext, len: i64) {
    let grown = frame_len(ctx) - len;
    if grown != 0 {
        // SAFETY: ctx.ctx is the program's xdp_md; the bytes in front of the
        // frame are the ones the program itself pushed or pulled over.
        unsafe { bpf_xdp_adjust_head(ctx.ctx, grown as i32) };
    }
}

#[xdp]
pub fn bench_decap(ctx: XdpContext) -> u32 {
    let start = frame_len(&ctx);
    let action = uplink_entry(&ctx);
    restore_head(&ctx, start);
    stamp(&ctx);
    action
}

#[xdp]
pub fn bench_encap(ctx: XdpContext) -> u32 {
    let start = frame_len(&ctx);
    let action = attach_entry(&ctx);
    restore_head(&ctx, start);
    action
}
