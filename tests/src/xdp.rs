//! BPF_PROG_TEST_RUN fixtures for the XDP programs: one test-run wrapper,
//! a rig holding a freshly loaded data plane and its session tables, the
//! session and frame builders of the pseudowire fixture tables, and a
//! byte diff for failures.
//!
//! The loopback interface (ifindex 1) stands in for both the uplink and the
//! attachment circuit: test runs need an existing device, never traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use l2tp_common::session::SessionStats;
use l2tp_ctl::dataplane::{Cookie, Encap, Loaded, Role, RxMode, SessionParams, SessionTable, EBPF_OBJECT};

use crate::frames::*;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
/// Loopback's ifindex: the ingress interface of every test run.
pub const LO: u32 = 1;
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];
pub const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const UDP: Encap = Encap::Udp { local_port: 1701, peer_port: 1701 };

/// One BPF_PROG_TEST_RUN of `prog` on `frame`, received on loopback:
/// the action and the frame as the program left it.
pub fn test_run(prog: &mut Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    // xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue, egress.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    ctx[12..16].copy_from_slice(&LO.to_le_bytes());
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(&ctx);
    let res = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

/// A loaded data plane (the release object) and its session tables.
#[derive(Debug)]
pub struct Rig {
    pub dp: Loaded,
    pub table: SessionTable,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    pub fn new() -> Self {
        let dp = Loaded::load(EBPF_OBJECT).expect("object loads and verifies");
        let table = dp.sessions().expect("session maps");
        Self { dp, table }
    }

    pub fn run(&mut self, role: Role, frame: &[u8]) -> (u32, Vec<u8>) {
        test_run(self.dp.program(role).expect("program"), frame)
    }

    pub fn stats(&self, local_id: u32) -> SessionStats {
        let idx = self.table.index_of(local_id).expect("installed");
        self.table.stats(idx).expect("stats")
    }
}

/// Where two frames first differ, and both in hex.
pub fn hexdiff(got: &[u8], want: &[u8]) -> String {
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    format!(
        "lengths {} vs {}, first difference at byte {first}\n got  {:02x?}\n want {:02x?}",
        got.len(),
        want.len(),
        got,
        want
    )
}

/// A customer frame (what crosses the pseudowire).
pub fn inner() -> Vec<u8> {
    eth(
        [0x02, 0, 0, 0, 0, 0x11],
        [0x02, 0, 0, 0, 0, 0x22],
        0x0800,
        &ipv4([198, 19, 0, 1], [198, 19, 0, 2], 17, &[0x5a; 40]),
    )
}

pub fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

/// A session of ours (B) with the peer A: no cookie, no sublayer, a static
/// next hop, loopback for both interfaces.
pub fn params(local_id: u32, encap: Encap, ipv6: bool) -> SessionParams {
    SessionParams {
        local_session_id: local_id,
        peer_session_id: local_id + 0x1000,
        encap,
        local_addr: if ipv6 { v6(IP6_B) } else { v4(IP4_B) },
        peer_addr: if ipv6 { v6(IP6_A) } else { v4(IP4_A) },
        local_mac: OUR_MAC,
        next_hop_mac: PEER_MAC,
        fib_lookup: false,
        uplink_ifindex: LO,
        attach_ifindex: LO,
        attach_vlan: 0,
        uplink_mtu: 1500,
        rx_cookie: Cookie::NONE,
        tx_cookie: Cookie::NONE,
        sublayer: false,
        sequencing: false,
        rx_mode: RxMode::AcceptNew,
        resync_deliver: false,
        udp6_zero_checksum: ipv6,
        standby: false,
    }
}

/// L2TPv3 data header bytes: session ID, cookie, optional sublayer word.
pub fn l2tp(session: u32, cookie: &[u8], sublayer: Option<u32>) -> Vec<u8> {
    let mut h = session.to_be_bytes().to_vec();
    h.extend_from_slice(cookie);
    if let Some(w) = sublayer {
        h.extend_from_slice(&w.to_be_bytes());
    }
    h
}

/// The frame a peer sends us (from A to B) for this session.
pub fn wire_in(encap: Encap, ipv6: bool, l2tp_hdr: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = l2tp_hdr.to_vec();
    body.extend_from_slice(payload);
    match (encap, ipv6) {
        (Encap::Ip, false) => ip4_l2tp_frame(&body),
        (Encap::Ip, true) => ip6_l2tp_frame(&body),
        (Encap::Udp { .. }, v6) => {
            let mut u = vec![0x00, 0x03, 0, 0];
            u.extend_from_slice(&body);
            if v6 {
                udp6_frame(1701, 1701, &u)
            } else {
                udp4_frame(1701, 1701, &u)
            }
        }
    }
}

/// The frame we must send (B to A) for this session: our template with
/// checksum 0 UDP (IPv4 and zero-checksum IPv6) and DF set on IPv4.
pub fn wire_out(encap: Encap, ipv6: bool, l2tp_hdr: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = l2tp_hdr.to_vec();
    body.extend_from_slice(payload);
    let (proto, l4) = match encap {
        Encap::Ip => (IPPROTO_L2TP, body),
        Encap::Udp { .. } => {
            let mut u = Vec::new();
            u.extend_from_slice(&1701u16.to_be_bytes());
            u.extend_from_slice(&1701u16.to_be_bytes());
            u.extend_from_slice(&((8 + 4 + body.len()) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0, 0x00, 0x03, 0, 0]);
            u.extend_from_slice(&body);
            (IPPROTO_UDP, u)
        }
    };
    let (src, dst) = if ipv6 { (v6(IP6_B), v6(IP6_A)) } else { (v4(IP4_B), v4(IP4_A)) };
    let (ethertype, ip) = ip_packet(src, dst, proto, &l4).expect("one family");
    eth(PEER_MAC, OUR_MAC, ethertype, &ip)
}

/// Sets the IPv4 header checksum of the frame's IPv4 header at `ip` right
/// (after a test changed a field).
pub fn fix_ipv4_checksum(frame: &mut [u8], ip: usize) {
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let c = csum_finish(csum_fold(0, &frame[ip..ip + 20]));
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}
