//! `l2tp-ctl pktgen` against our own decapsulation: the generator's frames
//! leave one veth by XDP live frames, arrive on its peer where `l2tp_uplink`
//! decapsulates them for a session with sequencing on, and the session's
//! counters prove every frame arrived, in sequence, with nothing lost.

use aya::programs::XdpMode;
use l2tp_common::tools::PROG_SINK;
use l2tp_ctl::dataplane::{Cookie, Encap, Loaded, Role, RxMode, SessionParams, EBPF_OBJECT};
use l2tp_tests::{daemon::ctl_bin, netns::run, NetNs};
use serde_json::Value;

const SESSION: u32 = 0x4242;

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn generated_frames_arrive_in_sequence_with_exact_counts() {
    let ns = NetNs::new("pktgen").expect("netns");
    for (a, b) in [("gen0", "up0"), ("ac0", "ac0p")] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]).expect("veth");
        ns.ip(&["link", "set", a, "up"]).expect("up");
        ns.ip(&["link", "set", b, "up"]).expect("up");
    }
    let (up0, ac0) = (ns.ifindex("up0").expect("up0"), ns.ifindex("ac0").expect("ac0"));
    let count = 20_000u64;
    let (stats, json) = ns
        .enter(|| {
            let mut dp = Loaded::load(EBPF_OBJECT).expect("load");
            let mut table = dp.sessions().expect("maps");
            let idx = table
                .add(&SessionParams {
                    local_session_id: SESSION,
                    peer_session_id: SESSION + 1,
                    encap: Encap::Udp { local_port: 1701, peer_port: 1701 },
                    local_addr: "198.18.0.1".parse().expect("addr"),
                    peer_addr: "198.18.0.2".parse().expect("addr"),
                    local_mac: [2, 0, 0, 0, 0, 1],
                    next_hop_mac: [2, 0, 0, 0, 0, 2],
                    fib_lookup: false,
                    uplink_ifindex: up0,
                    attach_ifindex: ac0,
                    attach_vlan: 0,
                    uplink_mtu: 1500,
                    rx_cookie: Cookie::NONE,
                    tx_cookie: Cookie::NONE,
                    sublayer: true,
                    sequencing: true,
                    rx_mode: RxMode::AcceptNew,
                    resync_deliver: false,
                    udp6_zero_checksum: false,
                    standby: false,
                })
                .expect("session");
            let _up = dp.program(Role::Uplink).expect("uplink").attach("up0", XdpMode::Driver).expect("attach up0");
            dp.tool(PROG_SINK).expect("sink").attach("ac0p", XdpMode::Driver).expect("sink on ac0p");
            let out = run(std::process::Command::new(ctl_bin()).args([
                "pktgen",
                "-i",
                "gen0",
                "--session-id",
                &SESSION.to_string(),
                "--sequence",
                "--seq-start",
                "16777000",
                "--src",
                "198.18.0.2",
                "--dst",
                "198.18.0.1",
                "--size",
                "128",
                "--count",
                &count.to_string(),
                "--json",
            ]))
            .expect("pktgen");
            let json: Value = serde_json::from_slice(&out.stdout).expect("JSON result");
            (table.stats(idx).expect("stats"), json)
        })
        .expect("enter");
    assert_eq!(json["packets"].as_u64(), Some(count), "{json:#}");
    assert_eq!(json["frame_bytes"].as_u64(), Some(128));
    assert!(json["pps"].as_f64().is_some_and(|p| p > 0.0), "{json:#}");
    // Every frame decapsulated, in sequence across the 24-bit wrap (the
    // generator started 536 below it), none lost or out of order.
    assert_eq!(stats.rx_packets, count, "{stats:?}");
    assert_eq!((stats.rx_out_of_seq, stats.rx_lost, stats.rx_duplicates), (0, 0, 0), "{stats:?}");
    // Bad arguments: one clear line, nothing sent.
    for (args, want) in [
        (vec!["pktgen", "-i", "gen0", "--session-id", "1", "--src", "198.18.0.2", "--dst", "198.18.0.1"], "--count"),
        (
            vec![
                "pktgen",
                "-i",
                "gen0",
                "--session-id",
                "1",
                "--src",
                "198.18.0.2",
                "--dst",
                "2001:2::1",
                "--count",
                "1",
            ],
            "address family",
        ),
        (
            vec!["pktgen", "-i", "nosuch0", "--ethernet", "--src", "198.18.0.2", "--dst", "198.18.0.1", "--count", "1"],
            "nosuch0",
        ),
    ] {
        let out = ns.command(ctl_bin()).args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
