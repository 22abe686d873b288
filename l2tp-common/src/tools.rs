//! Programs and maps of the packet generator (`l2tp-ctl pktgen`) and of the
//! benchmark rig (`cargo xtask bench`). They live in the same object as the
//! data plane so that the benchmarks measure exactly the code that forwards,
//! but the data-plane loader never loads them.

/// Live-frames generator: stamps the next sequence number (if configured)
/// and transmits the frame out of its ingress interface (XDP_TX).
pub const PROG_PKTGEN: &str = "l2tp_pktgen";
/// Counting sink: XDP_DROP, counting packets and bytes per CPU.
pub const PROG_SINK: &str = "l2tp_sink";
/// Baseline: the empty program (XDP_DROP).
pub const PROG_BENCH_EMPTY: &str = "bench_empty";
/// Baseline: a minimal `redirect_map` to slot 0 of [`MAP_BENCH_PORTS`].
pub const PROG_BENCH_REDIRECT: &str = "bench_redirect";
/// `l2tp_uplink` followed by a restoring `bpf_xdp_adjust_head` and the next
/// sequence number stamped, so that BPF_PROG_TEST_RUN repetitions each see
/// the same, in-sequence L2TP frame.
pub const PROG_BENCH_DECAP: &str = "bench_decap";
/// `l2tp_attach` followed by a restoring `bpf_xdp_adjust_head`.
pub const PROG_BENCH_ENCAP: &str = "bench_encap";

/// `u32[1]`: byte offset of the L2-Specific Sublayer word to stamp with the
/// next sequence number (S=1), or 0 for frames without one.
pub const MAP_PKTGEN_CFG: &str = "PKTGEN_CFG";
/// Per-CPU `u32[1]`: the next sequence number to stamp.
pub const MAP_PKTGEN_NS: &str = "PKTGEN_NS";
/// Per-CPU `u64[2]`: packets and bytes dropped by the sink.
pub const MAP_SINK_STATS: &str = "SINK_STATS";
/// `DEVMAP[1]`: the redirect baseline's target.
pub const MAP_BENCH_PORTS: &str = "BENCH_PORTS";

/// Highest sublayer offset the generator stamps (frame headers only).
pub const MAX_STAMP_OFFSET: u32 = 255;
