//! `cargo xtask bench`: data-plane and control-plane measurements in one
//! run, baselines interleaved with the programs under test (A B A B ...),
//! several rounds, min and median reported. Writes `report.json`,
//! `report.md` and `dataplane.svg` into the output directory.
//!
//! Everything runs inside network namespaces this program creates (and
//! removes, also on failure); test hosts use 198.18.0.0/15 and 2001:2::/48.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use aya::{
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::{TestRun as _, TestRunOptions, Xdp, XdpMode},
};
use l2tp_common::{
    session::{SessionConfig, MAP_SESSION_BY_ID, MAP_SESSION_CFG, MAX_SESSIONS, PROG_ATTACH, PROG_UPLINK},
    tools::{
        MAP_BENCH_PORTS, MAP_PKTGEN_CFG, MAP_PKTGEN_NS, MAP_SINK_STATS, PROG_BENCH_DECAP, PROG_BENCH_EMPTY,
        PROG_BENCH_ENCAP, PROG_BENCH_REDIRECT, PROG_SINK,
    },
};
use l2tp_ctl::{
    dataplane::{Cookie, Encap, Loaded, RxMode, SessionParams, SessionTable, EBPF_OBJECT},
    pktgen::{self, Frame, FrameSpec, Generator, Payload, RunSpec},
};
use l2tp_tests::NetNs;

mod control;
mod ha;
mod report;

use report::{num, r1, report};

const UDP: Encap = Encap::Udp { local_port: 1701, peer_port: 1701 };
const MAC_GEN: [u8; 6] = [0x02, 0x18, 0, 0, 0, 0x02];
const MAC_UP: [u8; 6] = [0x02, 0x18, 0, 0, 0, 0x01];
const IP4_US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const IP4_PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const IP6_US: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const IP6_PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// Session IDs: ours (received data carries it) and the peer's.
const SID_UDP4: u32 = 0x100;
const SID_IP6: u32 = 0x200;
const PEER_SID: u32 = 0x1000;
/// Slices of each round's live-frames time per path (see `dataplane`).
const LIVE_SLICES: usize = 5;
/// The live-frames rate ratios reported: (name, our path, its baseline).
const RATIOS: [(&str, &str, &str); 4] = [
    ("encap_vs_redirect", "encap", "redirect"),
    ("encap_fib_vs_redirect", "encap_fib", "redirect"),
    ("decap_vs_redirect", "decap", "redirect"),
    ("vxlan_vs_encap", "encap", "vxlan"),
];
/// Customer frame sizes measured (without FCS).
const SIZES: [usize; 2] = [64, 1500];

struct Opts {
    out: PathBuf,
    rounds: usize,
    testrun_repeat: u32,
    live_time: Duration,
    control: bool,
    dataplane: bool,
    tunnels: usize,
    sessions_per_tunnel: usize,
    /// `--scale`: also tunnels x sessions per tunnel at the data plane's
    /// capacity, one round.
    scale: Option<(usize, usize)>,
    /// `--ha` / `--no-ha`: the hot-standby run (default: with the control
    /// plane's).
    ha: Option<bool>,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        out: PathBuf::from("target/bench"),
        rounds: 5,
        testrun_repeat: 1_000_000,
        live_time: Duration::from_millis(500),
        control: true,
        dataplane: true,
        tunnels: 100,
        sessions_per_tunnel: 100,
        scale: None,
        ha: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => o.out = val()?.into(),
            "--rounds" => o.rounds = val()?.parse()?,
            "--quick" => {
                o.rounds = 2;
                o.testrun_repeat = 100_000;
                o.live_time = Duration::from_millis(200);
                o.tunnels = 10;
                o.sessions_per_tunnel = 10;
            }
            "--no-control" => o.control = false,
            "--no-dataplane" => o.dataplane = false,
            "--ha" => o.ha = Some(true),
            "--no-ha" => o.ha = Some(false),
            "--tunnels" => o.tunnels = val()?.parse()?,
            "--sessions-per-tunnel" => o.sessions_per_tunnel = val()?.parse()?,
            "--scale" => o.scale = Some(o.scale.unwrap_or((1000, 65))),
            "--scale-tunnels" => o.scale = Some((val()?.parse()?, o.scale.map_or(65, |s| s.1))),
            "--scale-sessions-per-tunnel" => o.scale = Some((o.scale.map_or(1000, |s| s.0), val()?.parse()?)),
            _ => bail!("unknown argument {a} (--out DIR, --rounds N, --quick, --no-control, --no-dataplane, --ha, --no-ha, --tunnels N, --sessions-per-tunnel N, --scale, --scale-tunnels N, --scale-sessions-per-tunnel N)"),
        }
    }
    ensure!(o.rounds >= 1, "--rounds must be at least 1");
    Ok(o)
}

/// Min and median of a series.
fn stats(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    (s[0], med)
}

#[derive(Default)]
struct Series(BTreeMap<String, Vec<f64>>);

impl Series {
    fn push(&mut self, key: &str, v: f64) {
        self.0.entry(key.to_owned()).or_default().push(v);
    }
    fn median(&self, key: &str) -> f64 {
        self.0.get(key).map_or(f64::NAN, |v| stats(v).1)
    }
    fn min(&self, key: &str) -> f64 {
        self.0.get(key).map_or(f64::NAN, |v| stats(v).0)
    }
    fn last(&self, key: &str) -> f64 {
        self.0.get(key).and_then(|v| v.last().copied()).unwrap_or(f64::NAN)
    }
}

fn session(local: u32, encap: Encap, v6: bool, uplink: u32, attach: u32) -> SessionParams {
    let (local_addr, peer_addr): (IpAddr, IpAddr) =
        if v6 { (IP6_US.into(), IP6_PEER.into()) } else { (IP4_US.into(), IP4_PEER.into()) };
    SessionParams {
        local_session_id: local,
        peer_session_id: PEER_SID + local,
        encap,
        local_addr,
        peer_addr,
        local_mac: MAC_UP,
        next_hop_mac: MAC_GEN,
        fib_lookup: false,
        uplink_ifindex: uplink,
        attach_ifindex: attach,
        attach_vlan: 0,
        uplink_mtu: 9000,
        rx_cookie: Cookie::NONE,
        tx_cookie: Cookie::NONE,
        sublayer: true,
        sequencing: true,
        rx_mode: RxMode::AcceptNew,
        resync_deliver: false,
        udp6_zero_checksum: v6,
        standby: false,
    }
}

/// The frame the peer sends for a session: `inner` bytes of customer frame.
fn l2tp_frame(local: u32, encap: Encap, v6: bool, inner: usize) -> Result<Frame> {
    let (src, dst): (IpAddr, IpAddr) =
        if v6 { (IP6_PEER.into(), IP6_US.into()) } else { (IP4_PEER.into(), IP4_US.into()) };
    let ip = if v6 { 40 } else { 20 };
    let carrier = if matches!(encap, Encap::Udp { .. }) { 12 } else { 0 };
    let size = 14 + ip + carrier + 4 + 4 + inner;
    Ok(pktgen::build(&FrameSpec {
        payload: Payload::L2tp { session_id: local, encap, cookie: vec![], sequence: true },
        src_mac: MAC_GEN,
        dst_mac: MAC_UP,
        src,
        dst,
        size,
    })?)
}

fn customer_frame(size: usize) -> Result<Frame> {
    Ok(pktgen::build(&FrameSpec {
        payload: Payload::Ethernet,
        src_mac: [0x02, 0x19, 0, 0, 0, 0x11],
        dst_mac: [0x02, 0x19, 0, 0, 0, 0x22],
        src: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)),
        size,
    })?)
}

fn set_u32(dp: &mut Loaded, map: &str, v: u32) -> Result<()> {
    let mut a: Array<_, u32> = Array::try_from(dp.map_mut(map)?)?;
    a.set(0, v, 0)?;
    Ok(())
}

fn set_percpu_u32(dp: &mut Loaded, map: &str, v: u32) -> Result<()> {
    let mut a: PerCpuArray<_, u32> = PerCpuArray::try_from(dp.map_mut(map)?)?;
    let n = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    a.set(0, aya::maps::PerCpuValues::try_from(vec![v; n])?, 0)?;
    Ok(())
}

/// One BPF_PROG_TEST_RUN of `repeat` runs: the kernel's ns per run.
fn testrun(prog: &mut Xdp, frame: &[u8], ifindex: u32, repeat: u32) -> Result<(u32, f64)> {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_le_bytes());
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.ctx_in = Some(&ctx);
    opts.repeat = repeat;
    let res = prog.test_run(opts)?;
    Ok((res.return_value, res.duration.as_nanos() as f64))
}

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

/// Re-installs a session so that its receive state starts afresh.
fn reinstall(table: &mut SessionTable, p: &SessionParams) -> Result<u32> {
    if table.index_of(p.local_session_id).is_some() {
        table.remove(p.local_session_id)?;
    }
    Ok(table.add(p)?)
}

/// Fills the decapsulation lookup table up to `MAX_SESSIONS` session IDs,
/// each with its own slot and a configuration like `like`'s (received
/// frames never name them; they only make the hash table full).
fn fill_sessions(dp: &mut Loaded, like: u32, like_idx: u32, installed: u32) -> Result<()> {
    let cfg: SessionConfig = {
        let a: Array<_, SessionConfig> = Array::try_from(dp.map_mut(MAP_SESSION_CFG)?)?;
        a.get(&like_idx, 0)?
    };
    let taken: Vec<u32> = {
        let h: HashMap<_, u32, u32> = HashMap::try_from(dp.map_mut(MAP_SESSION_BY_ID)?)?;
        h.iter().filter_map(|r| r.ok().map(|(_, v)| v)).collect()
    };
    let mut idx = 0u32;
    let mut id = like + 1;
    let mut n = installed;
    while n < MAX_SESSIONS {
        if idx == like_idx || taken.contains(&idx) {
            idx += 1;
            continue;
        }
        let mut c = cfg;
        c.local_session_id = id;
        c.peer_session_id = PEER_SID + id;
        {
            let mut a: Array<_, SessionConfig> = Array::try_from(dp.map_mut(MAP_SESSION_CFG)?)?;
            a.set(idx, c, 0)?;
        }
        let mut h: HashMap<_, u32, u32> = HashMap::try_from(dp.map_mut(MAP_SESSION_BY_ID)?)?;
        h.insert(id, idx, 0)?;
        idx += 1;
        id += 1;
        n += 1;
    }
    Ok(())
}

struct Rig {
    ns: NetNs,
    up0: u32,
    gen0: u32,
    ac0: u32,
    ac0p: u32,
    dm0: u32,
    vxap: u32,
}

impl Rig {
    /// gen0 <-> up0 (uplink), ac0 <-> ac0p (attachment), dm0 (a second
    /// attachment for test runs, a veth as this kernel has no dummy), and the VXLAN rig: vxap <-> vxa in a
    /// bridge with vxl0 over vxu <-> vxg.
    fn new() -> Result<Self> {
        let ns = NetNs::new("bench")?;
        let pair = |a: &str, b: &str| -> Result<()> {
            ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
            // Room for 1500-byte customer frames plus the L2TP overhead.
            ns.ip(&["link", "set", a, "mtu", "3000"])?;
            ns.ip(&["link", "set", b, "mtu", "3000"])?;
            ns.ip(&["link", "set", a, "up"])?;
            ns.ip(&["link", "set", b, "up"])?;
            Ok(())
        };
        pair("up0", "gen0")?;
        pair("ac0", "ac0p")?;
        pair("vxa", "vxap")?;
        pair("vxu", "vxg")?;
        ns.ip(&["link", "set", "gen0", "address", &mac(MAC_GEN)])?;
        ns.ip(&["link", "set", "up0", "address", &mac(MAC_UP)])?;
        pair("dm0", "dm0p")?;
        // A route and a neighbour for the peer, so that a session with the
        // next hop by bpf_fib_lookup finds one (encap_fib).
        ns.addr("up0", "198.18.0.1/24")?;
        ns.ip(&["neigh", "replace", "198.18.0.2", "lladdr", &mac(MAC_GEN), "dev", "up0", "nud", "permanent"])?;
        // Linux's own L2 tunnel: bridge + VXLAN, over vxu.
        ns.addr("vxu", "198.18.1.1/24")?;
        ns.ip(&["link", "set", "vxg", "address", &mac(MAC_GEN)])?;
        ns.ip(&["neigh", "replace", "198.18.1.2", "lladdr", &mac(MAC_GEN), "dev", "vxu", "nud", "permanent"])?;
        ns.ip(&[
            "link",
            "add",
            "vxl0",
            "type",
            "vxlan",
            "id",
            "42",
            "local",
            "198.18.1.1",
            "remote",
            "198.18.1.2",
            "dev",
            "vxu",
            "dstport",
            "4789",
        ])?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        for port in ["vxa", "vxl0"] {
            ns.ip(&["link", "set", port, "master", "br0"])?;
        }
        ns.ip(&["link", "set", "vxl0", "up"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        // vxa receives frames the generator XDP-transmits from vxap: the
        // veth needs GRO for that when it runs no XDP program.
        l2tp_tests::netns::run(ns.command("ethtool").args(["-K", "vxa", "gro", "on"]))?;
        let idx = |n: &str| ns.ifindex(n);
        Ok(Self {
            up0: idx("up0")?,
            gen0: idx("gen0")?,
            ac0: idx("ac0")?,
            ac0p: idx("ac0p")?,
            dm0: idx("dm0")?,
            vxap: idx("vxap")?,
            ns,
        })
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn sink_packets(dp: &mut Loaded) -> Result<u64> {
    let a: PerCpuArray<_, u64> = PerCpuArray::try_from(dp.map_mut(MAP_SINK_STATS)?)?;
    Ok(a.get(&0, 0)?.iter().sum())
}

/// One live-frames run: ns per delivered packet (kernel time / packets
/// counted by the sink) and the delivered fraction.
fn live(gen: &mut Generator, dp: &mut Loaded, frame: &Frame, ifindex: u32, time: Duration) -> Result<(f64, f64)> {
    let before = sink_packets(dp)?;
    let p = gen.run(frame, &RunSpec { ifindex, count: None, duration: Some(time), batch: 64, seq_start: 0 }, |_| {})?;
    // Frames still in a veth ring are processed by the next softirq.
    std::thread::sleep(Duration::from_millis(20));
    let delivered = sink_packets(dp)? - before;
    ensure!(delivered > 0, "nothing reached the sink ({} sent)", p.sent);
    Ok((p.kernel.as_nanos() as f64 / delivered as f64, delivered as f64 / p.sent as f64))
}

fn dataplane(o: &Opts, s: &mut Series, notes: &mut Vec<String>) -> Result<()> {
    let rig = Rig::new()?;
    let r = &rig;
    rig.ns.enter(|| -> Result<()> {
        let mut dp = Loaded::load(EBPF_OBJECT)?;
        let mut table = dp.sessions()?;
        let udp4 = session(SID_UDP4, UDP, false, r.up0, r.ac0);
        let ip6 = session(SID_IP6, Encap::Ip, true, r.up0, r.dm0);
        // The same session with its next hop looked up in the kernel's FIB
        // on every frame (what a session without a static next hop does).
        let udp4_fib = SessionParams { fib_lookup: true, ..udp4.clone() };
        l2tp_ctl::dataplane::enable_forwarding("up0")?;
        table.add(&udp4)?;
        table.add(&ip6)?;
        // A second data plane whose decap table holds 65,536 sessions.
        let mut big = Loaded::load(EBPF_OBJECT)?;
        let mut big_table = big.sessions()?;
        let big_idx = big_table.add(&udp4)?;
        // A session whose home slot is taken (same low bits as SID_UDP4):
        // decapsulation finds it through the hash.
        let hashed = SessionParams { local_session_id: SID_UDP4 + MAX_SESSIONS, attach_ifindex: r.dm0, ..udp4.clone() };
        big_table.add(&hashed)?;
        fill_sessions(&mut big, SID_UDP4, big_idx, 2)?;
        for d in [&mut dp, &mut big] {
            for name in [PROG_BENCH_EMPTY, PROG_BENCH_ENCAP, PROG_BENCH_DECAP] {
                d.tool(name)?;
            }
        }
        // The same object built without drop tracing (`cargo xtask bench`
        // builds it): what tracing costs while nobody traces, same run.
        let mut no_trace = match std::env::var_os("L2TP_BENCH_NO_TRACE_OBJ") {
            Some(path) => {
                let bytes = std::fs::read(&path).with_context(|| format!("{}", path.to_string_lossy()))?;
                // 8-aligned, as the ELF parser wants it.
                let mut words = vec![0u64; bytes.len().div_ceil(8)];
                // SAFETY: the u64 buffer holds at least bytes.len() bytes.
                let aligned = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
                aligned.copy_from_slice(&bytes);
                let mut d = Loaded::load(aligned)?;
                let mut t = d.sessions()?;
                t.add(&udp4)?;
                for name in [PROG_BENCH_ENCAP, PROG_BENCH_DECAP] {
                    d.tool(name)?;
                }
                Some((d, t))
            }
            None => {
                notes.push(
                    "drop tracing's cost not measured: no L2TP_BENCH_NO_TRACE_OBJ (run through `cargo xtask bench`)"
                        .into(),
                );
                None
            }
        };

        // BPF_PROG_TEST_RUN, interleaved per round.
        for round in 0..o.rounds {
            for size in SIZES {
                let cust = customer_frame(size)?;
                let f_udp4 = l2tp_frame(SID_UDP4, UDP, false, size)?;
                let f_ip6 = l2tp_frame(SID_IP6, Encap::Ip, true, size)?;
                let f_hashed = l2tp_frame(SID_UDP4 + MAX_SESSIONS, UDP, false, size)?;
                let rep = o.testrun_repeat;
                let (act, ns) = testrun(dp.tool(PROG_BENCH_EMPTY)?, &cust.bytes, r.ac0, rep)?;
                ensure!(act == XDP_DROP, "empty program returned {act}");
                s.push(&format!("testrun.{size}.empty"), ns);

                for (key, p) in [("encap", &udp4), ("encap_fib", &udp4_fib)] {
                    let idx = reinstall(&mut table, p)?;
                    let (act, ns) = testrun(dp.tool(PROG_BENCH_ENCAP)?, &cust.bytes, r.ac0, rep)?;
                    let st = table.stats(idx)?;
                    ensure!(
                        act == XDP_REDIRECT && st.tx_packets == u64::from(rep) && st.tx_no_route == 0,
                        "{key}: action {act}, {st:?}"
                    );
                    s.push(&format!("testrun.{size}.{key}"), ns);
                }

                for (key, big_table_used, p, f) in [
                    ("decap_udp4", false, &udp4, &f_udp4),
                    ("decap_ip6", false, &ip6, &f_ip6),
                    ("decap_udp4_65536", true, &udp4, &f_udp4),
                    ("decap_udp4_65536_hash", true, &hashed, &f_hashed),
                ] {
                    let (d, t) = if big_table_used { (&mut big, &mut big_table) } else { (&mut dp, &mut table) };
                    let idx = reinstall(t, p)?;
                    set_u32(d, MAP_PKTGEN_CFG, f.seq_offset)?;
                    set_percpu_u32(d, MAP_PKTGEN_NS, 1)?;
                    let (act, ns) = testrun(d.tool(PROG_BENCH_DECAP)?, &f.bytes, r.up0, rep)?;
                    let st = t.stats(idx)?;
                    ensure!(
                        act == XDP_REDIRECT
                            && st.rx_packets == u64::from(rep)
                            && st.rx_out_of_seq == 0
                            && st.rx_lost == 0,
                        "{key}: every run must take the in-sequence delivery path: action {act}, {st:?}"
                    );
                    s.push(&format!("testrun.{size}.{key}"), ns);
                }

                if let Some((d, t)) = &mut no_trace {
                    let idx = reinstall(t, &udp4)?;
                    let (act, ns) = testrun(d.tool(PROG_BENCH_ENCAP)?, &cust.bytes, r.ac0, rep)?;
                    ensure!(act == XDP_REDIRECT, "encap without tracing: action {act}");
                    s.push(&format!("testrun.{size}.encap_no_trace"), ns);
                    set_u32(d, MAP_PKTGEN_CFG, f_udp4.seq_offset)?;
                    set_percpu_u32(d, MAP_PKTGEN_NS, 1)?;
                    let (act, ns) = testrun(d.tool(PROG_BENCH_DECAP)?, &f_udp4.bytes, r.up0, rep)?;
                    let st = t.stats(idx)?;
                    ensure!(
                        act == XDP_REDIRECT && st.rx_packets == u64::from(rep) && st.rx_out_of_seq == 0,
                        "decap without tracing: action {act}, {st:?}"
                    );
                    s.push(&format!("testrun.{size}.decap_udp4_no_trace"), ns);
                }
            }
            eprintln!("bench: test-run round {}/{} done", round + 1, o.rounds);
        }
        drop(big_table);
        drop(big);

        // Live frames through the veth rig.
        let mut gen = Generator::load(EBPF_OBJECT)?;
        {
            let mut ports: DevMap<_> = DevMap::try_from(dp.map_mut(MAP_BENCH_PORTS)?)?;
            ports.set(0, r.ac0, None, 0)?;
        }
        let sink = dp.tool(PROG_SINK)?;
        for iface in ["ac0p", "gen0", "vxg"] {
            sink.attach(iface, XdpMode::Driver).with_context(|| format!("sink on {iface}"))?;
        }
        dp.tool(PROG_ATTACH)?.attach("ac0", XdpMode::Driver).context("encap on ac0")?;
        dp.tool(PROG_BENCH_REDIRECT)?;
        dp.tool(PROG_UPLINK)?;
        // Each round's time per path in slices, every path once per slice:
        // the ratios are taken per slice (paths measured within a few
        // hundred ms of each other, so that a slow spell of this shared VM
        // hits both sides of a ratio or neither), and their medians
        // reported.
        let slice_time = o.live_time / LIVE_SLICES as u32;
        for round in 0..o.rounds {
            for size in (0..LIVE_SLICES).flat_map(|_| SIZES) {
                let cust = customer_frame(size)?;
                let f_udp4 = l2tp_frame(SID_UDP4, UDP, false, size)?;
                // The speed of light: a minimal redirect_map on the uplink.
                let link = dp.tool(PROG_BENCH_REDIRECT)?.attach("up0", XdpMode::Driver)?;
                let (ns, frac) = live(&mut gen, &mut dp, &f_udp4, r.gen0, slice_time).context("redirect")?;
                dp.tool(PROG_BENCH_REDIRECT)?.detach(link)?;
                s.push(&format!("live.{size}.redirect"), ns);
                s.push(&format!("live.{size}.redirect_delivered"), frac);
                // Our decap on the uplink.
                reinstall(&mut table, &udp4)?;
                let link = dp.tool(PROG_UPLINK)?.attach("up0", XdpMode::Driver)?;
                let (ns, frac) = live(&mut gen, &mut dp, &f_udp4, r.gen0, slice_time).context("decap")?;
                s.push(&format!("live.{size}.decap"), ns);
                s.push(&format!("live.{size}.decap_delivered"), frac);
                // Our encap: customer frames into ac0, out of up0 to gen0.
                let (ns, frac) = live(&mut gen, &mut dp, &cust, r.ac0p, slice_time).context("encap")?;
                s.push(&format!("live.{size}.encap"), ns);
                s.push(&format!("live.{size}.encap_delivered"), frac);
                // The same with the next hop from bpf_fib_lookup.
                reinstall(&mut table, &udp4_fib)?;
                let (ns, frac) = live(&mut gen, &mut dp, &cust, r.ac0p, slice_time).context("encap, FIB")?;
                reinstall(&mut table, &udp4)?;
                dp.tool(PROG_UPLINK)?.detach(link)?;
                s.push(&format!("live.{size}.encap_fib"), ns);
                s.push(&format!("live.{size}.encap_fib_delivered"), frac);
                // Linux bridge + VXLAN encap on the same kind of veth pair.
                let (ns, frac) = live(&mut gen, &mut dp, &cust, r.vxap, slice_time).context("bridge + VXLAN")?;
                s.push(&format!("live.{size}.vxlan"), ns);
                s.push(&format!("live.{size}.vxlan_delivered"), frac);
                // This slice's rate ratios (rate = 1 / ns).
                for (k, ours, base) in RATIOS {
                    let last = |k: &str| s.last(&format!("live.{size}.{k}"));
                    let r = last(base) / last(ours);
                    s.push(&format!("live.{size}.ratio.{k}"), r);
                }
            }
            eprintln!("bench: live-frames round {}/{} done", round + 1, o.rounds);
        }
        Ok(())
    })??;
    for size in SIZES {
        for k in ["redirect", "decap", "encap", "encap_fib", "vxlan"] {
            let d = s.min(&format!("live.{size}.{k}_delivered"));
            if d < 0.99 {
                notes.push(format!(
                    "live {k} at {size} bytes: only {:.1}% of the frames sent reached the sink",
                    d * 100.0
                ));
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let o = parse_args()?;
    ensure!(l2tp_tests::is_root(), "the benchmarks need root (BPF, namespaces)");
    let mut s = Series::default();
    let mut notes = Vec::new();
    if o.dataplane {
        dataplane(&o, &mut s, &mut notes)?;
    }
    let control = if o.control { Some(control::run(o.tunnels, o.sessions_per_tunnel, o.rounds.min(3))?) } else { None };
    let scale = match o.scale {
        Some((tunnels, per)) => Some(control::run(tunnels, per, 1)?),
        None => None,
    };
    let ha = if o.ha.unwrap_or(o.control) {
        Some(ha::run(o.tunnels, o.sessions_per_tunnel, o.rounds.min(3))?)
    } else {
        None
    };
    report(&o, &s, control.as_ref(), scale.as_ref(), ha.as_ref(), &notes)?;
    print!("{}", std::fs::read_to_string(o.out.join("report.md"))?);
    Ok(())
}
