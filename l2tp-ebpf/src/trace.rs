//! Drop tracing (`l2tp-ctl dataplane trace`): the one place a frame's
//! unexpected fate is logged. The programs fill a [`Trace`] where they drop
//! a frame or pass it up unexpectedly; the entry points call [`emit`] once
//! when its reason is set. A frame that is forwarded pays one compare;
//! `TRACE_CFG` is read only for traced fates, and the log record is
//! written only while someone traces.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};

use crate::maps::TRACE_CFG;

/// A frame's fate to trace (`reason` 0: nothing to trace). Fields as in
/// `l2tp_common::session::trace`.
pub struct Trace {
    pub reason: u32,
    /// Local session ID (received data: the Session ID in the frame).
    pub session: u32,
    pub ns: u32,
    pub nr: u32,
}

impl Trace {
    #[inline(always)]
    pub const fn none() -> Self {
        Self { reason: 0, session: 0, ns: 0, nr: 0 }
    }

    /// Records `reason` for `session`.
    #[inline(always)]
    pub fn set(&mut self, reason: u32, session: u32) {
        self.reason = reason;
        self.session = session;
    }
}

/// Writes one record for `t` if tracing is on, for its session, and
/// before the deadline.
#[inline(always)]
pub fn emit(ctx: &XdpContext, program: u32, t: &Trace) {
    let Some(c) = TRACE_CFG.get(0) else { return };
    if c.on == 0 || (c.session != 0 && c.session != t.session) {
        return;
    }
    // SAFETY: a helper without arguments.
    if unsafe { bpf_ktime_get_ns() } >= c.until_ns {
        return;
    }
    // Three integers (each argument costs code): see `l2tp_common::session::trace`.
    let what = program << 16 | t.reason;
    let seq = u64::from(t.ns) << 32 | u64::from(t.nr);
    aya_log_ebpf::info!(ctx, "{} {} {}", what, t.session, seq);
}
