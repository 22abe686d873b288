//! BPF_PROG_TEST_RUN tests of the `l2tp_classify` XDP program.

use l2tp_common::GlobalCounter::{self, *};
use l2tp_ctl::dataplane::{GlobalStats, Loaded, Role, EBPF_OBJECT};
use l2tp_tests::{frames::*, xdp::test_run, xdp::XDP_PASS};

/// Expected non-zero counter increments.
type Counts = Vec<(GlobalCounter, u64)>;

fn run(dp: &mut Loaded, frame: &[u8]) -> (u32, Vec<u8>) {
    test_run(dp.program(Role::Uplink).expect("program"), frame)
}

fn delta(before: &GlobalStats, after: &GlobalStats) -> Counts {
    GlobalCounter::ALL
        .iter()
        .filter_map(|&c| {
            let d = after.get(c) - before.get(c);
            (d != 0).then_some((c, d))
        })
        .collect()
}

fn with_vlan(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x64]);
    f.extend_from_slice(&frame[12..]);
    f
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn classify_counts_and_passes_everything() {
    let mut dp = Loaded::load(EBPF_OBJECT).expect("release object loads and verifies");
    let v2_ctl = l2tpv2_zlb(7, 1, 2);
    let v3_data = l2tpv3_udp_data(0x1234_5678, &[0xAA; 32]);
    let mut frag = udp4_frame(1701, 1701, &v2_ctl);
    frag[14 + 6] = 0x20; // More Fragments
    let mut opts = udp4_frame(1701, 1701, &v2_ctl);
    opts[14] = 0x46;
    let cases: Vec<(&str, Vec<u8>, Counts)> = vec![
        ("v2 control over UDP/IPv4", udp4_frame(1701, 1701, &v2_ctl), vec![(Frames, 1), (L2tpUdp, 1), (Control, 1)]),
        ("v3 data over UDP/IPv6", udp6_frame(40000, 1701, &v3_data), vec![(Frames, 1), (L2tpUdp, 1), (Data, 1)]),
        (
            "v3 data over IPv4 proto 115",
            ip4_l2tp_frame(&[0, 0, 0, 9, 1, 2, 3, 4]),
            vec![(Frames, 1), (L2tpIp, 1), (Data, 1)],
        ),
        (
            "v3 control over IPv6 proto 115",
            ip6_l2tp_frame(&[0, 0, 0, 0, 0xC8, 3, 0, 12]),
            vec![(Frames, 1), (L2tpIp, 1), (Control, 1)],
        ),
        (
            "VLAN-tagged v2 control",
            with_vlan(&udp4_frame(1701, 1701, &v2_ctl)),
            vec![(Frames, 1), (L2tpUdp, 1), (Control, 1)],
        ),
        ("UDP from 1701 to another port", udp4_frame(1701, 53, &[1, 2]), vec![(Frames, 1), (L2tpUdp, 1), (Data, 1)]),
        ("UDP neither port 1701", udp4_frame(5000, 53, &[1, 2]), vec![(Frames, 1)]),
        ("empty L2TP payload", udp4_frame(1701, 1701, &[]), vec![(Frames, 1), (L2tpUdp, 1), (Malformed, 1)]),
        ("IPv4 fragment", frag, vec![(Frames, 1), (IpUnparsed, 1)]),
        ("IPv4 options", opts, vec![(Frames, 1), (IpUnparsed, 1)]),
        ("ARP", eth(MAC_B, MAC_A, 0x0806, &[0; 28]), vec![(Frames, 1)]),
        ("truncated IPv4 header", udp4_frame(1701, 1701, &v2_ctl)[..20].to_vec(), vec![(Frames, 1)]),
        ("truncated UDP header", udp4_frame(1701, 1701, &v2_ctl)[..36].to_vec(), vec![(Frames, 1)]),
        ("bare Ethernet header", vec![0xff; 14], vec![(Frames, 1)]),
    ];
    let mut failures = Vec::new();
    for (name, frame, expected) in cases {
        let before = dp.global_stats().expect("stats");
        let (action, out) = run(&mut dp, &frame);
        let after = dp.global_stats().expect("stats");
        let got = delta(&before, &after);
        if action != XDP_PASS {
            failures.push(format!("{name}: action {action}, want XDP_PASS"));
        }
        if out != frame {
            failures.push(format!("{name}: frame changed"));
        }
        if got != expected {
            failures.push(format!("{name}: counters {got:?}, want {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn dev_object_passes_the_verifier() {
    let path = std::env::var("L2TP_EBPF_DEV_OBJ")
        .expect("L2TP_EBPF_DEV_OBJ names the dev-profile eBPF object; `cargo xtask test` sets it");
    let object = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut dp = Loaded::load(&object).expect("dev object loads and verifies");
    let (action, _) = run(&mut dp, &udp4_frame(1701, 1701, &l2tpv2_zlb(1, 0, 0)));
    assert_eq!(action, XDP_PASS);
    assert_eq!(dp.global_stats().expect("stats").get(Control), 1);
}
