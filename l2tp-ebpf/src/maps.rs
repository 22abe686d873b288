//! Every map of the data plane. A map's name in the object is the name of
//! its static, which is the `MAP_*` constant of `l2tp_common` the loader
//! pins it by (a test checks the two lists agree).

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::bpf_get_smp_processor_id,
    macros::map,
    maps::{Array, DevMap, HashMap, PerCpuArray},
};
use l2tp_common::{
    session::{
        DataplaneConfig, NextHop, SessionCommand, SessionConfig, SessionRxState, SessionStats, SessionTxState,
        TraceConfig, ATTACH_PORT_MAX, MAX_PORTS, MAX_SESSIONS,
    },
    GlobalCounter,
};

/// All global counters of one CPU: one lookup per frame.
pub type Global = [u64; GlobalCounter::COUNT as usize];

/// One slot per CPU holding every global counter.
#[map]
pub static GLOBAL_STATS: PerCpuArray<Global> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SESSION_BY_ID: HashMap<u32, u32> = HashMap::with_max_entries(MAX_SESSIONS, 0);
#[map]
pub static SESSION_BY_ATTACH: HashMap<u64, u32> = HashMap::with_max_entries(MAX_SESSIONS, 0);
#[map]
pub static ATTACH_PORT: Array<u32> = Array::with_max_entries(ATTACH_PORT_MAX, 0);
/// Mappable: a takeover activates every warm session with one store each
/// (`SessionTable::activate_all`).
#[map]
pub static SESSION_CFG: Array<SessionConfig> = Array::with_max_entries(MAX_SESSIONS, BPF_F_MMAPABLE);
/// Receive state: `l2tp_uplink` is its only writer.
#[map]
pub static SESSION_RX_STATE: Array<SessionRxState> = Array::with_max_entries(MAX_SESSIONS, 0);
/// Transmit state: `l2tp_attach` is its only writer.
#[map]
pub static SESSION_TX_STATE: Array<SessionTxState> = Array::with_max_entries(MAX_SESSIONS, 0);
/// Command slots, mappable: the daemon posts commands with plain stores
/// (see `sequence::take` for the order it writes them in).
#[map]
pub static SESSION_RX_CMD: Array<SessionCommand> = Array::with_max_entries(MAX_SESSIONS, BPF_F_MMAPABLE);
#[map]
pub static SESSION_TX_CMD: Array<SessionCommand> = Array::with_max_entries(MAX_SESSIONS, BPF_F_MMAPABLE);
/// Per-session counters, one slot per CPU and session, CPU-major (slot
/// `cpu * MAX_SESSIONS + idx`: CPUs never share a cache line). A per-CPU
/// array would hold the same, but the kernel allocates its 65,536 per-CPU
/// slots one at a time, a third of the time it takes to load the data
/// plane. The loader sizes it to `MAX_SESSIONS` times the possible CPUs.
/// (Not mmapable: a mapping would count its whole size, MAX_SESSIONS x 104
/// bytes per CPU, in the daemon's resident memory.)
#[map]
pub static SESSION_STATS: Array<SessionStats> = Array::with_max_entries(MAX_SESSIONS, 0);
/// Per-CPU scratch for the tail of a UDP checksum.
#[map]
pub static CSUM_SCRATCH: PerCpuArray<[u8; 512]> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static TX_PORTS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
/// Cached next hops: `l2tp_attach` is its only writer.
#[map]
pub static SESSION_NEXT_HOP: Array<NextHop> = Array::with_max_entries(MAX_SESSIONS, 0);
/// Switches set by userspace (next-hop cache generation, drop tracing).
#[map]
pub static DP_CONFIG: Array<DataplaneConfig> = Array::with_max_entries(1, 0);
/// Drop tracing: written by `l2tp-ctl dataplane trace` only.
#[map]
pub static TRACE_CFG: Array<TraceConfig> = Array::with_max_entries(1, 0);
#[map]
pub static PORT_SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_PORTS, 0);

/// This CPU's counters of session slot `idx`.
#[inline(always)]
pub fn session_stats(idx: u32) -> Option<&'static mut SessionStats> {
    if idx >= MAX_SESSIONS {
        return None;
    }
    // SAFETY: no arguments: the CPU this program runs on.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let p = SESSION_STATS.get_ptr_mut(cpu.wrapping_mul(MAX_SESSIONS).wrapping_add(idx))?;
    // SAFETY: this CPU's counters of the slot; XDP programs run without
    // migration, so nothing else writes them while we run.
    Some(unsafe { &mut *p })
}

/// This CPU's global counters; `None` only if the map has no slot (never
/// in practice: the program then passes every frame, counting nothing).
#[inline(always)]
pub fn global() -> Option<&'static mut Global> {
    // SAFETY: per-CPU slot, only this CPU touches it while we run.
    GLOBAL_STATS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Bumps counter `c` of `g`, as [`global`] returned it (checked once per
/// frame, not once per counter).
#[inline(always)]
pub fn count(g: &mut Global, c: GlobalCounter) {
    g[c as usize] += 1;
}
