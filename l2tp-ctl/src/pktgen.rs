//! Packet generator: L2TPv3 data frames (or plain Ethernet frames for the
//! encapsulation direction) sent out of an interface at the highest rate
//! the machine allows, with XDP live frames (BPF_PROG_TEST_RUN with
//! `BPF_F_TEST_XDP_LIVE_FRAMES`): the kernel builds the frame once per page
//! of a page pool and transmits it from the `l2tp_pktgen` program with
//! XDP_TX, which under live frames goes out of the interface named in the
//! context. The program stamps an advancing sequence number into the
//! L2-Specific Sublayer when one is present.
//!
//! The sequence counter is per CPU: a run pins its thread to one CPU.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, PerCpuArray, PerCpuValues},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
    util::nr_cpus,
    Ebpf, EbpfLoader,
};
use l2tp_common::{
    tools::{MAP_PKTGEN_CFG, MAP_PKTGEN_NS, MAX_STAMP_OFFSET, PROG_PKTGEN},
    wire::V3_SUBLAYER_S,
};

use crate::{
    dataplane::Encap,
    frames::{eth, ip_packet, udp_between, IPPROTO_L2TP, IPPROTO_UDP},
};

/// Largest frame the kernel's live-frames page layout takes (a 4 KiB page
/// minus headroom and shared info), rounded down.
pub const MAX_FRAME: usize = 3_400;
/// Ethernet minimum without the FCS.
pub const MIN_FRAME: usize = 60;
/// Frames per BPF_PROG_TEST_RUN batch (the kernel's default, at most 256).
pub const DEFAULT_BATCH: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    #[error("source {0} and destination {1} are not of the same address family")]
    Family(IpAddr, IpAddr),
    #[error("frame size {size} out of range: this frame needs at least {min} bytes and at most {MAX_FRAME}")]
    Size { size: usize, min: usize },
    #[error("cookie must be 0, 4 or 8 bytes, not {0}")]
    Cookie(usize),
    #[error("batch size {0} out of range 1..=256")]
    Batch(u32),
    #[error("give a packet count or a duration (or both)")]
    Unbounded,
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("pinning to CPU {0}: {1}")]
    Cpu(usize, std::io::Error),
    #[error("loading the generator: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("generator program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("generator maps: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the object has no {0}")]
    Missing(&'static str),
}

type Result<T, E = PktgenError> = std::result::Result<T, E>;

/// What the frames carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// L2TPv3 data of one session, as a peer would send it to us.
    L2tp { session_id: u32, encap: Encap, cookie: Vec<u8>, sequence: bool },
    /// A customer frame (IPv4/IPv6 UDP in Ethernet), for the encapsulation
    /// direction.
    Ethernet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub payload: Payload,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Frame length without the FCS.
    pub size: usize,
}

/// A built frame and where its sequence number goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Offset of the sublayer word to stamp (0: none).
    pub seq_offset: u32,
}

/// Customer frame of `len` bytes: Ethernet + IP + UDP when it fits, else
/// an Ethernet header and padding.
fn customer(spec: &FrameSpec, len: usize) -> Result<Vec<u8>> {
    // Inner addresses: the outer ones with the last byte flipped, so that a
    // capture tells the layers apart.
    let flip = |a: IpAddr| match a {
        IpAddr::V4(v) => {
            let mut o = v.octets();
            o[3] ^= 0x80;
            IpAddr::from(o)
        }
        IpAddr::V6(v) => {
            let mut o = v.octets();
            o[15] ^= 0x80;
            IpAddr::from(o)
        }
    };
    let (src, dst) = (flip(spec.src), flip(spec.dst));
    let mut inner_src = spec.src_mac;
    inner_src[0] |= 0x02;
    inner_src[5] ^= 0x80;
    let inner_dst = [0x02, 0, 0, 0, 0, 0x22];
    let hdr = 14 + if src.is_ipv4() { 20 } else { 40 } + 8;
    if len < hdr {
        // No room for IP: an Ethernet header (local experimental
        // EtherType) and padding.
        return Ok(eth(inner_dst, inner_src, 0x88B5, &vec![0x5a; len.saturating_sub(14)]));
    }
    let udp = udp_between(src, dst, 9, 9, &vec![0x5a; len - hdr]);
    let (ethertype, ip) = ip_packet(src, dst, IPPROTO_UDP, &udp).ok_or(PktgenError::Family(spec.src, spec.dst))?;
    Ok(eth(inner_dst, inner_src, ethertype, &ip))
}

/// Builds the frame `spec` describes, padded to exactly `spec.size` bytes.
pub fn build(spec: &FrameSpec) -> Result<Frame> {
    if spec.src.is_ipv4() != spec.dst.is_ipv4() {
        return Err(PktgenError::Family(spec.src, spec.dst));
    }
    let ip_hlen = if spec.src.is_ipv4() { 20 } else { 40 };
    match &spec.payload {
        Payload::Ethernet => {
            let min = MIN_FRAME;
            if !(min..=MAX_FRAME).contains(&spec.size) {
                return Err(PktgenError::Size { size: spec.size, min });
            }
            let mut f = customer(spec, spec.size)?;
            f[..6].copy_from_slice(&spec.dst_mac);
            f[6..12].copy_from_slice(&spec.src_mac);
            Ok(Frame { bytes: f, seq_offset: 0 })
        }
        Payload::L2tp { session_id, encap, cookie, sequence } => {
            if ![0, 4, 8].contains(&cookie.len()) {
                return Err(PktgenError::Cookie(cookie.len()));
            }
            let carrier = match encap {
                Encap::Udp { .. } => 8 + 4,
                Encap::Ip => 0,
            };
            let l2tp = 4 + cookie.len() + if *sequence { 4 } else { 0 };
            let outer = 14 + ip_hlen + carrier + l2tp;
            let min = (outer + 14).max(MIN_FRAME);
            if !(min..=MAX_FRAME).contains(&spec.size) {
                return Err(PktgenError::Size { size: spec.size, min });
            }
            let mut body = session_id.to_be_bytes().to_vec();
            body.extend_from_slice(cookie);
            if *sequence {
                body.extend_from_slice(&V3_SUBLAYER_S.to_be_bytes());
            }
            body.extend_from_slice(&customer(spec, spec.size - outer)?);
            let (proto, l4) = match encap {
                Encap::Udp { local_port, peer_port } => {
                    // From the peer's port to ours; T=0, Ver=3.
                    let mut u = vec![0x00, 0x03, 0, 0];
                    u.extend_from_slice(&body);
                    (IPPROTO_UDP, udp_between(spec.src, spec.dst, *peer_port, *local_port, &u))
                }
                Encap::Ip => (IPPROTO_L2TP, body),
            };
            let (ethertype, ip) =
                ip_packet(spec.src, spec.dst, proto, &l4).ok_or(PktgenError::Family(spec.src, spec.dst))?;
            let bytes = eth(spec.dst_mac, spec.src_mac, ethertype, &ip);
            let seq_offset = if *sequence { (outer - 4) as u32 } else { 0 };
            debug_assert!(seq_offset <= MAX_STAMP_OFFSET);
            Ok(Frame { bytes, seq_offset })
        }
    }
}

/// Limits and knobs of one run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub ifindex: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub batch: u32,
    /// First sequence number stamped.
    pub seq_start: u32,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub sent: u64,
    /// Wall time since the start.
    pub elapsed: Duration,
    /// Time the kernel spent running and transmitting the frames.
    pub kernel: Duration,
}

impl Progress {
    /// Packets per second over the kernel's run time.
    pub fn rate(&self) -> f64 {
        if self.kernel.is_zero() {
            return 0.0;
        }
        self.sent as f64 / self.kernel.as_secs_f64()
    }
}

/// The generator program, loaded on its own (the data-plane maps it shares
/// the object with are shrunk to one entry).
#[derive(Debug)]
pub struct Generator {
    ebpf: Ebpf,
}

impl Generator {
    pub fn load(object: &[u8]) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        for m in crate::dataplane::MAPS {
            loader.map_max_entries(m, 1);
        }
        let mut ebpf = loader.load(object)?;
        let prog: &mut Xdp = ebpf.program_mut(PROG_PKTGEN).ok_or(PktgenError::Missing(PROG_PKTGEN))?.try_into()?;
        prog.load()?;
        Ok(Self { ebpf })
    }

    fn configure(&mut self, seq_offset: u32, seq_start: u32) -> Result<()> {
        let mut cfg: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut(MAP_PKTGEN_CFG).ok_or(PktgenError::Missing(MAP_PKTGEN_CFG))?)?;
        cfg.set(0, seq_offset, 0)?;
        let mut ns: PerCpuArray<_, u32> =
            PerCpuArray::try_from(self.ebpf.map_mut(MAP_PKTGEN_NS).ok_or(PktgenError::Missing(MAP_PKTGEN_NS))?)?;
        let cpus = nr_cpus().map_err(|(_, e)| PktgenError::Cpu(0, e))?;
        ns.set(0, PerCpuValues::try_from(vec![seq_start; cpus]).map_err(|e| PktgenError::Cpu(0, e))?, 0)?;
        Ok(())
    }

    /// Sends `frame` out of `spec.ifindex` until the count or the duration
    /// is reached; `progress` is called after every kernel call.
    pub fn run(&mut self, frame: &Frame, spec: &RunSpec, mut progress: impl FnMut(&Progress)) -> Result<Progress> {
        if spec.count.is_none() && spec.duration.is_none() {
            return Err(PktgenError::Unbounded);
        }
        if !(1..=256).contains(&spec.batch) {
            return Err(PktgenError::Batch(spec.batch));
        }
        self.configure(frame.seq_offset, spec.seq_start)?;
        let prog: &mut Xdp = self.ebpf.program_mut(PROG_PKTGEN).ok_or(PktgenError::Missing(PROG_PKTGEN))?.try_into()?;
        // xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue, egress.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.bytes.len() as u32).to_le_bytes());
        ctx[12..16].copy_from_slice(&spec.ifindex.to_le_bytes());
        let start = Instant::now();
        let mut p = Progress::default();
        // Each call has a fixed set-up cost (page pool): calls are sized to
        // last about 100 ms once the rate is known.
        let mut chunk: u64 = 65_536;
        loop {
            let left = spec.count.map_or(u64::MAX, |c| c - p.sent);
            if left == 0 || spec.duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
            let mut n = chunk.min(left);
            if let Some(d) = spec.duration {
                let rate = p.rate();
                if rate > 0.0 {
                    let remaining = d.saturating_sub(start.elapsed()).as_secs_f64();
                    n = n.min(((remaining * rate) as u64).max(spec.batch as u64));
                }
            }
            let n = n.min(u64::from(u32::MAX)) as u32;
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(&frame.bytes);
            opts.ctx_in = Some(&ctx);
            opts.repeat = n;
            opts.attrs = TestRunAttrs::new().xdp_live_frames(spec.batch);
            let res = prog.test_run(opts)?;
            p.sent += u64::from(n);
            p.kernel += res.duration * n;
            p.elapsed = start.elapsed();
            progress(&p);
            let per_pkt = p.kernel.as_secs_f64() / p.sent as f64;
            if per_pkt > 0.0 {
                chunk = ((0.1 / per_pkt) as u64).clamp(1_024, 1 << 24);
            }
        }
        p.elapsed = start.elapsed();
        Ok(p)
    }
}

/// Pins the calling thread to `cpu` (the sequence counter is per CPU).
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks the index.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(PktgenError::Cpu(cpu, std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> usize {
    // SAFETY: no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn spec(payload: Payload, v6: bool, size: usize) -> FrameSpec {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1).into(), Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2).into())
        } else {
            (Ipv4Addr::new(198, 18, 0, 1).into(), Ipv4Addr::new(198, 18, 0, 2).into())
        };
        FrameSpec { payload, src_mac: [2, 0, 0, 0, 0, 1], dst_mac: [2, 0, 0, 0, 0, 2], src, dst, size }
    }

    const UDP: Encap = Encap::Udp { local_port: 1701, peer_port: 1701 };

    #[test]
    fn l2tp_frames_have_the_exact_size_and_the_sublayer_where_stamped() {
        for (encap, v6, cookie, seq) in [
            (UDP, false, vec![], true),
            (UDP, true, vec![1, 2, 3, 4], true),
            (Encap::Ip, false, vec![1; 8], false),
            (Encap::Ip, true, vec![], true),
        ] {
            for size in [MIN_FRAME.max(200), 1500] {
                let f = build(&spec(
                    Payload::L2tp { session_id: 7, encap, cookie: cookie.clone(), sequence: seq },
                    v6,
                    size,
                ))
                .expect("builds");
                assert_eq!(f.bytes.len(), size);
                if seq {
                    let o = f.seq_offset as usize;
                    assert_eq!(&f.bytes[o..o + 4], &V3_SUBLAYER_S.to_be_bytes());
                    assert_eq!(&f.bytes[o - 4 - cookie.len()..o - cookie.len()], &7u32.to_be_bytes());
                } else {
                    assert_eq!(f.seq_offset, 0);
                }
            }
        }
    }

    #[test]
    fn ipv4_header_checksum_verifies_and_sizes_are_checked() {
        let f = build(&spec(Payload::Ethernet, false, 64)).expect("builds");
        assert_eq!(f.bytes.len(), 64);
        let sum = crate::frames::csum_finish(crate::frames::csum_fold(0, &f.bytes[14..34]));
        assert_eq!(sum, 0, "IPv4 header checksum");
        assert!(matches!(build(&spec(Payload::Ethernet, false, 59)), Err(PktgenError::Size { min: 60, .. })));
        assert!(matches!(build(&spec(Payload::Ethernet, true, MAX_FRAME + 1)), Err(PktgenError::Size { .. })));
        let tiny = spec(Payload::L2tp { session_id: 1, encap: UDP, cookie: vec![], sequence: true }, true, 80);
        assert!(matches!(build(&tiny), Err(PktgenError::Size { min: 88, .. })));
        let bad_cookie =
            spec(Payload::L2tp { session_id: 1, encap: UDP, cookie: vec![1, 2], sequence: false }, false, 200);
        assert!(matches!(build(&bad_cookie), Err(PktgenError::Cookie(2))));
        let mut mixed = spec(Payload::Ethernet, false, 100);
        mixed.dst = Ipv6Addr::LOCALHOST.into();
        assert!(matches!(build(&mixed), Err(PktgenError::Family(..))));
    }
}
