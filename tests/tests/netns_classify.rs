//! The XDP program attached to a veth in a network namespace sees and
//! counts real L2TP packets, and its pins outlive the attaching process.

use std::net::UdpSocket;

use l2tp_common::GlobalCounter;
use l2tp_ctl::dataplane::{AttachMode, AttachedMode, Pinned, Role};
use l2tp_tests::{frames, NetNs, PinDir};

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn attached_program_counts_real_packets() {
    let a = NetNs::new("a").expect("netns a");
    let b = NetNs::new("b").expect("netns b");
    a.veth("up0", &b, "up0").expect("veth");
    a.addr("up0", "198.18.0.1/24").expect("addr a");
    b.addr("up0", "198.18.0.2/24").expect("addr b");
    let pins = PinDir::new("classify");

    let dp = Pinned::open_or_create(pins.path()).expect("load and pin");
    let mode = a.enter(|| dp.attach("up0", Role::Uplink, AttachMode::Native)).expect("enter").expect("attach");
    assert_eq!(mode, AttachedMode::Native, "veth supports native XDP");
    assert_eq!(dp.attached().expect("list"), vec!["up0".to_owned()]);
    // A second attach to the same interface is refused and changes nothing.
    assert!(a.enter(|| dp.attach("up0", Role::Uplink, AttachMode::Native)).expect("enter").is_err());

    const N: u64 = 5;
    b.enter(|| {
        let sock = UdpSocket::bind("198.18.0.2:1701").expect("bind");
        for i in 0..N {
            sock.send_to(&frames::l2tpv2_zlb(1, i as u16, 0), "198.18.0.1:1701").expect("send");
        }
        sock.send_to(&frames::l2tpv3_udp_data(42, &[0; 20]), "198.18.0.1:1701").expect("send");
    })
    .expect("enter");

    // Stats read through fresh handles on the pins, as another process would.
    let reopened = Pinned::open(pins.path()).expect("open pins");
    let stats = reopened.global_stats().expect("stats");
    assert_eq!(stats.get(GlobalCounter::Control), N, "{stats:?}");
    assert_eq!(stats.get(GlobalCounter::Data), 1, "{stats:?}");
    assert_eq!(stats.get(GlobalCounter::L2tpUdp), N + 1, "{stats:?}");
    assert!(stats.get(GlobalCounter::Frames) > N, "{stats:?}");

    reopened.detach("up0").expect("detach");
    assert!(reopened.attached().expect("list").is_empty());
    reopened.destroy().expect("destroy");
    assert!(!pins.path().exists());
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn attach_errors_are_clear_and_leave_nothing() {
    let a = NetNs::new("err").expect("netns");
    let pins = PinDir::new("err");
    let dp = Pinned::open_or_create(pins.path()).expect("load and pin");
    let err =
        a.enter(|| dp.attach("nosuch0", Role::Uplink, AttachMode::Auto)).expect("enter").expect_err("no such iface");
    assert!(err.to_string().contains("nosuch0 does not exist"), "{err}");
    for bad in ["", "a/b", "sixteen-chars-xx", "a b", "x\0y", ".."] {
        let err = dp.attach(bad, Role::Uplink, AttachMode::Auto).expect_err("invalid name");
        assert!(err.to_string().contains("invalid interface name"), "{bad:?}: {err}");
    }
    assert!(dp.attached().expect("list").is_empty());
}

/// `lo` has no native XDP: `auto` falls back to generic (skb) mode, and
/// `native` alone fails with a message naming the mode.
#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn auto_mode_falls_back_to_generic_where_native_xdp_is_missing() {
    use l2tp_ctl::dataplane::AttachedMode;
    let a = NetNs::new("generic").expect("netns");
    let pins = PinDir::new("generic");
    let dp = Pinned::open_or_create(pins.path()).expect("load and pin");
    let err = a.enter(|| dp.attach("lo", Role::Uplink, AttachMode::Native)).expect("enter").expect_err("no native XDP");
    assert!(err.to_string().contains("native"), "{err}");
    let mode = a.enter(|| dp.attach("lo", Role::Uplink, AttachMode::Auto)).expect("enter").expect("generic fallback");
    assert_eq!(mode, AttachedMode::Generic);
    assert_eq!(dp.attached().expect("list"), ["lo"]);
    dp.destroy().expect("destroy");
}
