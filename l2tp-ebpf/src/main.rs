//! XDP programs of the L2TP data plane: the entry points. One module per
//! concern (Katran style):
//!
//! - [`decap`]: `l2tp_uplink`, on uplink interfaces: counts L2TP traffic,
//!   passes control messages and everything that is not ours to the
//!   kernel, and decapsulates L2TPv3 data of known sessions (UDP or IP,
//!   IPv4 or IPv6, cookie, default L2-Specific Sublayer, sequence numbers)
//!   into the session's attachment interface;
//! - [`encap`]: `l2tp_attach`, on attachment interfaces: encapsulates
//!   customer frames into the session's pseudowire and redirects them out
//!   of the uplink;
//! - [`parse`]: frame access and the outer headers, with their soundness
//!   checks; [`checksum`]: Internet checksums; [`sequence`]: sequence
//!   numbers and the commands that change them; [`maps`]: every map;
//!   [`trace`]: drop tracing; `tools`: the packet generator's and the
//!   benchmarks' programs.
#![no_std]
#![no_main]
// The BPF target has no atomic types (no CAS); the intrinsics map to BPF
// atomic instructions.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "BPF atomic add with fetch has no stable API")]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use l2tp_common::GlobalCounter;

mod checksum;
mod decap;
mod encap;
mod maps;
mod parse;
mod sequence;
mod tools;
mod trace;

#[xdp]
pub fn l2tp_uplink(ctx: XdpContext) -> u32 {
    uplink_entry(&ctx)
}

/// `l2tp_uplink`'s body (also wrapped by `tools::bench_decap`).
#[inline(always)]
fn uplink_entry(ctx: &XdpContext) -> u32 {
    let Some(g) = maps::global() else { return xdp_action::XDP_PASS };
    maps::count(g, GlobalCounter::Frames);
    let mut t = trace::Trace::none();
    let action = decap::uplink(ctx, g, &mut t).unwrap_or(xdp_action::XDP_PASS);
    if cfg!(feature = "trace") && t.is_set() {
        trace::emit(ctx, l2tp_common::session::trace::UPLINK, &t);
    }
    action
}

#[xdp]
pub fn l2tp_attach(ctx: XdpContext) -> u32 {
    attach_entry(&ctx)
}

/// `l2tp_attach`'s body (also wrapped by `tools::bench_encap`).
#[inline(always)]
fn attach_entry(ctx: &XdpContext) -> u32 {
    let mut t = trace::Trace::none();
    let action = encap::attach(ctx, &mut t).unwrap_or(xdp_action::XDP_PASS);
    if cfg!(feature = "trace") && t.is_set() {
        trace::emit(ctx, l2tp_common::session::trace::ATTACH, &t);
    }
    action
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
