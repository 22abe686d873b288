//! Sequence numbers (RFC 3931 4.6.1, Appendix C; RFC 4951 F-DC-1/3) and
//! the commands that change them.
//!
//! Receive state ([`SessionRxState`]) belongs to `l2tp_uplink`, transmit
//! state ([`SessionTxState`]) to `l2tp_attach`: each program applies the
//! commands of its own side, from its own command slot, and no field has
//! two writers.

use core::intrinsics::AtomicOrdering;

use l2tp_common::{
    session::{cmd, flags, rx_mode, SessionCommand, SessionConfig, SessionRxState, SessionStats, SessionTxState},
    wire::{V3_SEQ_HALF, V3_SEQ_MASK},
};

use crate::maps::{SESSION_RX_CMD, SESSION_TX_CMD};

/// The command in `c` if the caller must apply it now: both epochs equal
/// (not torn), different from `*applied`, and this CPU moved `*applied` to
/// it by compare-and-swap, so that exactly one of the CPUs that see it
/// applies it. Returns `(op, value, n)`.
///
/// # Safety
/// `c` and `applied` point into map values valid for this program run.
#[inline(always)]
unsafe fn take(c: *const SessionCommand, applied: *mut u32) -> Option<(u32, u32, u32)> {
    // SAFETY: per the caller; fields are read with volatile loads, end
    // epoch first, so a half-written command (epochs differ) is never
    // applied.
    unsafe {
        let end = core::ptr::read_volatile(&(*c).epoch_end);
        let seen = core::ptr::read_volatile(applied);
        if end == 0 || end == seen {
            return None;
        }
        let op = core::ptr::read_volatile(&(*c).op);
        let value = core::ptr::read_volatile(&(*c).value);
        let n = core::ptr::read_volatile(&(*c).n);
        let begin = core::ptr::read_volatile(&(*c).epoch_begin);
        if begin != end {
            return None;
        }
        let (_, won) = core::intrinsics::atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            applied, seen, end,
        );
        won.then_some((op, value, n))
    }
}

/// Applies a pending receive command (ENTER_RESYNC, SET_MODE, RESET_NR)
/// of slot `idx`, once. Called by `l2tp_uplink` only, once the frame is
/// known to be good.
#[inline(always)]
pub fn apply_rx_command(idx: u32, st: *mut SessionRxState) {
    let Some(c) = SESSION_RX_CMD.get_ptr(idx) else { return };
    // SAFETY: map value pointers are valid for this program run.
    let Some((op, value, n)) = (unsafe { take(c, &raw mut (*st).applied_epoch) }) else { return };
    // SAFETY: as above; only the uplink program writes receive state.
    let st = unsafe { &mut *st };
    match op {
        cmd::ENTER_RESYNC => {
            st.mode = u32::from(rx_mode::RESYNC);
            st.resync_n = value;
            st.run_len = 0;
            st.resync_left = value.max(1);
        }
        cmd::SET_MODE => {
            st.mode = value;
            st.resync_n = n;
            st.run_len = 0;
            st.resync_left = 0;
        }
        cmd::RESET_NR => {
            st.rx_valid = 0;
            st.run_len = 0;
        }
        // A transmit command in the receive slot: consumed, nothing to do
        // here (userspace never posts one there).
        _ => {}
    }
}

/// Applies a pending transmit command (RESET_NS) of slot `idx`, once.
/// Called by `l2tp_attach` only.
#[inline(always)]
pub fn apply_tx_command(idx: u32, st: *mut SessionTxState) {
    let Some(c) = SESSION_TX_CMD.get_ptr(idx) else { return };
    // SAFETY: map value pointers are valid for this program run.
    let Some((op, value, _)) = (unsafe { take(c, &raw mut (*st).applied_epoch) }) else { return };
    if op == cmd::RESET_NS {
        // An aligned 32-bit store is atomic; concurrent fetch-adds on other
        // CPUs land before or after it.
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&raw mut (*st).tx_ns, value & V3_SEQ_MASK) };
    }
}

/// The next Ns to send, taken from the session's one shared counter.
#[inline(always)]
pub fn next_ns(st: *mut SessionTxState) -> u32 {
    // SAFETY: tx_ns is only ever accessed atomically (or by the aligned
    // store above). SeqCst, not Relaxed: for a relaxed add LLVM's BPF
    // backend emits a lock add without BPF_FETCH even when the old value is
    // used (wrong code).
    let ns = unsafe { core::intrinsics::atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(&raw mut (*st).tx_ns, 1) };
    ns & V3_SEQ_MASK
}

/// RFC 3931 4.6.1 / Appendix C receive check of sequence number `ns` in the
/// session's mode; `true` delivers the packet.
#[inline(always)]
pub fn rx_sequence(cfg: &SessionConfig, st: &mut SessionRxState, stats: &mut SessionStats, ns: u32) -> bool {
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
    let strict = st.mode == u32::from(rx_mode::STRICT);
    if d < V3_SEQ_HALF && !strict {
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
    if st.mode == u32::from(rx_mode::ACCEPT_NEW) {
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
fn in_sequence(cfg: &SessionConfig, st: &mut SessionRxState) {
    if st.resync_left != 0 {
        st.resync_left -= 1;
        if st.resync_left == 0 {
            end_temporary_resync(cfg, st);
        }
    }
}

/// Back to the configured receive mode after ENTER_RESYNC.
#[inline(always)]
fn end_temporary_resync(cfg: &SessionConfig, st: &mut SessionRxState) {
    st.mode = u32::from(cfg.rx_mode);
    st.resync_n = u32::from(cfg.resync_n);
    st.resync_left = 0;
    st.run_len = 0;
}
