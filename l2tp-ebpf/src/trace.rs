//! Drop tracing (`l2tp-ctl dataplane trace`): the one place a frame's
//! unexpected fate is logged. The programs fill a [`Trace`] where they drop
//! a frame or pass it up unexpectedly; the entry points call [`emit`] once
//! when its reason is set. A frame that is forwarded pays one compare;
//! `TRACE_CFG` is read only for traced fates, and the log record is
//! written only while someone traces.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};

use crate::maps::TRACE_CFG;

/// A frame's fate to trace (`reason` 0: nothing to trace). Fields as in
/// `l2tp_common::session::trace`. Two 8-byte words: zeroed with two
/// stores (16 bytes of u32s became a call to memset).
pub struct Trace {
    /// `reason << 32 | session`: the reason, and the local session ID
    /// (received data: the Session ID in the frame).
    what: u64,
    /// `ns << 32 | nr`: the sequence numbers involved.
    pub seq: u64,
}

impl Trace {
    #[inline(always)]
    pub const fn none() -> Self {
        Self { what: 0, seq: 0 }
    }

    /// Records `reason` for `session`.
    #[inline(always)]
    pub fn set(&mut self, reason: u32, session: u32) {
        self.what = u64::from(reason) << 32 | u64::from(session);
    }

    /// Whether a fate was recorded.
    #[inline(always)]
    pub fn is_set(&self) -> bool {
        self.what != 0
    }

    /// The Ns received and the Nr expected.
    #[inline(always)]
    pub fn set_seq(&mut self, ns: u32, nr: u32) {
        self.seq = u64::from(ns) << 32 | u64::from(nr);
    }
}

/// Writes one record for `t` if tracing is on, for its session, and
/// before the deadline.
#[inline(always)]
pub fn emit(ctx: &XdpContext, program: u32, t: &Trace) {
    let Some(c) = TRACE_CFG.get(0) else { return };
    let (reason, session) = ((t.what >> 32) as u32, t.what as u32);
    if c.on == 0 || (c.session != 0 && c.session != session) {
        return;
    }
    // SAFETY: a helper without arguments.
    if unsafe { bpf_ktime_get_ns() } >= c.until_ns {
        return;
    }
    // Three integers (each argument costs code): see `l2tp_common::session::trace`.
    // Copies: the log macro takes its arguments by reference, and a `t`
    // whose address escapes could not live in registers.
    let (what, seq) = (program << 16 | reason, t.seq);
    aya_log_ebpf::info!(ctx, "{} {} {}", what, session, seq);
}
