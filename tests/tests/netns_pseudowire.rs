//! An L2TPv3 Ethernet pseudowire across two endpoints in network
//! namespaces, with sequencing and cookies: ping and bounded UDP streams in
//! both directions, then exact per-session counters on both endpoints.

use std::time::Duration;

use l2tp_ctl::dataplane::{self, AttachMode, Cookie, Encap, Pinned, Role, RxMode, SessionParams};
use l2tp_tests::{
    daemon::ctl_bin,
    netns::run,
    topology::{self, TwoSites},
    traffic::Stream,
    NetNs, PinDir,
};

const ID_A: u32 = 0x1001;
const ID_B: u32 = 0x2002;

fn mac(s: &str) -> [u8; 6] {
    let b: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16).expect("mac")).collect();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

#[derive(Clone, Copy, Debug)]
enum NextHop<'a> {
    /// A configured next-hop MAC.
    Static(&'a str),
    /// `bpf_fib_lookup`, with no fallback.
    Fib,
}

/// Loads, attaches and installs one end of the pseudowire.
fn endpoint(
    ns: &NetNs,
    pins: &PinDir,
    local: &str,
    peer: &str,
    next_hop: NextHop<'_>,
    ids: (u32, u32),
    encap: Encap,
) -> Pinned {
    let dp = Pinned::open_or_create(pins.path()).expect("load and pin");
    let cookie_in = Cookie::new(&ids.0.to_be_bytes().repeat(2)).expect("cookie");
    let cookie_out = Cookie::new(&ids.1.to_be_bytes().repeat(2)).expect("cookie");
    ns.enter(|| {
        assert_eq!(
            dp.attach("up0", Role::Uplink, AttachMode::Native).expect("attach up0"),
            dataplane::AttachedMode::Native
        );
        dp.attach("ac0", Role::Attachment, AttachMode::Native).expect("attach ac0");
        if matches!(next_hop, NextHop::Fib) {
            dataplane::enable_forwarding("up0").expect("forwarding");
        }
        let params = SessionParams {
            local_session_id: ids.0,
            peer_session_id: ids.1,
            encap,
            local_addr: local.parse().expect("addr"),
            peer_addr: peer.parse().expect("addr"),
            local_mac: dataplane::hwaddr("up0").expect("mac"),
            next_hop_mac: match next_hop {
                NextHop::Static(m) => mac(m),
                NextHop::Fib => [0; 6],
            },
            fib_lookup: matches!(next_hop, NextHop::Fib),
            uplink_ifindex: dataplane::ifindex("up0").expect("up0"),
            attach_ifindex: dataplane::ifindex("ac0").expect("ac0"),
            attach_vlan: 0,
            uplink_mtu: 1500,
            rx_cookie: cookie_in,
            tx_cookie: cookie_out,
            sublayer: true,
            sequencing: true,
            rx_mode: RxMode::AcceptNew,
            resync_deliver: false,
            udp6_zero_checksum: false,
            standby: false,
        };
        dp.sessions().expect("maps").add(&params).expect("session");
    })
    .expect("enter");
    dp
}

fn udp_stream(from: &NetNs, from_addr: &str, to: &NetNs, to_addr: &str, n: usize) -> usize {
    Stream { size: 200, pace: Duration::from_millis(1), ..Stream::new(from, from_addr, to, to_addr, n) }.run()
}

fn pseudowire(encap: Encap, fib: bool) {
    let t = TwoSites::new().expect("topology");
    let (pins_a, pins_b) = (PinDir::new("pw-a"), PinDir::new("pw-b"));
    let (hop_a, hop_b) = if fib {
        (NextHop::Fib, NextHop::Fib)
    } else {
        (NextHop::Static(topology::PE_B_UP_MAC), NextHop::Static(topology::PE_A_UP_MAC))
    };
    let dp_a = endpoint(&t.pe_a, &pins_a, topology::PE_A_UP, topology::PE_B_UP, hop_a, (ID_A, ID_B), encap);
    let dp_b = endpoint(&t.pe_b, &pins_b, topology::PE_B_UP, topology::PE_A_UP, hop_b, (ID_B, ID_A), encap);

    let mut no_route = 0;
    if fib {
        // No neighbour entry for the peer yet: the frame is dropped and
        // counted, not sent with a made-up MAC.
        assert!(run(t.cust_a.command("ping").args(["-c", "1", "-W", "1", topology::CUST_B])).is_err());
        let table = dp_a.sessions().expect("maps");
        let s = table.stats(table.index_of(ID_A).expect("session")).expect("stats");
        assert_eq!((s.tx_packets, s.tx_no_route), (0, 1), "{s:?}");
        no_route = 1;
        // Control traffic resolves the neighbours, as the daemon's does.
        run(t.pe_a.command("ping").args(["-c", "1", "-W", "2", topology::PE_B_UP])).expect("uplink ping");
    }

    const PINGS: u64 = 5;
    if let Err(e) = run(t.cust_a.command("ping").args(["-c", "5", "-i", "0.05", "-W", "2", topology::CUST_B])) {
        for (dp, id) in [(&dp_a, ID_A), (&dp_b, ID_B)] {
            let table = dp.sessions().expect("maps");
            let s = table.stats(table.index_of(id).expect("session")).expect("stats");
            eprintln!("{id:x}: {s:?}");
        }
        panic!("ping across the pseudowire: {e}");
    }
    const N: usize = 1000;
    assert_eq!(udp_stream(&t.cust_a, topology::CUST_A, &t.cust_b, topology::CUST_B, N), N, "a -> b");
    assert_eq!(udp_stream(&t.cust_b, topology::CUST_B, &t.cust_a, topology::CUST_A, N), N, "b -> a");

    let n = N as u64;
    for (name, dp, id) in [("pe-a", &dp_a, ID_A), ("pe-b", &dp_b, ID_B)] {
        let table = dp.sessions().expect("maps");
        let idx = table.index_of(id).expect("session");
        let s = table.stats(idx).expect("stats");
        // Pings: requests a->b, replies b->a. Streams: n each way.
        let (tx, rx) = (PINGS + n, PINGS + n);
        assert_eq!((s.tx_packets, s.rx_packets), (tx, rx), "{name}: {s:?}");
        assert_eq!(
            (s.rx_out_of_seq, s.rx_lost, s.rx_duplicates, s.rx_cookie_mismatch, s.rx_malformed, s.tx_mtu_drops),
            (0, 0, 0, 0, 0, 0),
            "{name}: {s:?}"
        );
        let expected_no_route = if id == ID_A { no_route } else { 0 };
        assert_eq!(s.tx_no_route, expected_no_route, "{name}: {s:?}");
        let st = table.state(idx).expect("state");
        assert_eq!((u64::from(st.tx_ns), u64::from(st.rx_nr)), (tx, rx), "{name}: Ns/Nr {st:?}");
    }
    dp_a.destroy().expect("destroy a");
    dp_b.destroy().expect("destroy b");
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn pseudowire_over_udp_carries_ping_and_streams_with_exact_counters() {
    pseudowire(Encap::Udp { local_port: 1701, peer_port: 1701 }, false);
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn pseudowire_with_fib_next_hop_drops_until_the_neighbour_is_known() {
    pseudowire(Encap::Udp { local_port: 1701, peer_port: 1701 }, true);
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn pseudowire_over_ip_carries_ping_and_streams_with_exact_counters() {
    pseudowire(Encap::Ip, false);
}

/// `net.ipv4.conf.<iface>.forwarding` inside `ns`.
fn ipv4_forwarding(ns: &NetNs, iface: &str) -> String {
    let out = run(ns.command("sysctl").args(["-n", &format!("net.ipv4.conf.{iface}.forwarding")])).expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Issue 13, defect 13: `l2tp-ctl dataplane session add` without
/// `--next-hop-mac` on an uplink with forwarding off (where bpf_fib_lookup
/// answers "forwarding disabled" and every frame would be dropped as
/// tx_no_route) turns forwarding on and says so, as the daemon does; with
/// `--no-enable-forwarding` it refuses, naming the cause, and installs
/// nothing. The session then carries traffic with no tx_no_route.
#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn dataplane_session_add_without_next_hop_mac_turns_forwarding_on_and_says_so() {
    let t = TwoSites::new().expect("topology");
    let (pins_a, pins_b) = (PinDir::new("fwd-a"), PinDir::new("fwd-b"));
    let dp_b = endpoint(
        &t.pe_b,
        &pins_b,
        topology::PE_B_UP,
        topology::PE_A_UP,
        NextHop::Static(topology::PE_A_UP_MAC),
        (ID_B, ID_A),
        Encap::Udp { local_port: 1701, peer_port: 1701 },
    );
    let pin_a = pins_a.path().to_str().expect("utf-8 path").to_owned();
    let ctl = |args: &[&str]| t.pe_a.command(ctl_bin()).args(args).output().expect("l2tp-ctl runs");
    for (iface, role) in [("up0", "uplink"), ("ac0", "attachment")] {
        let out = ctl(&["dataplane", "attach", "-i", iface, "--role", role, "--pin-dir", &pin_a]);
        assert!(out.status.success(), "attach {iface}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(ipv4_forwarding(&t.pe_a, "up0"), "0", "a fresh namespace does not forward");
    let cookie = |id: u32| id.to_be_bytes().repeat(2).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (rx_cookie, tx_cookie) = (cookie(ID_A), cookie(ID_B));
    let (id_a, id_b) = (ID_A.to_string(), ID_B.to_string());
    let add = |extra: &[&str]| {
        let mut args = vec![
            "dataplane",
            "session",
            "add",
            "--session-id",
            &id_a,
            "--peer-session-id",
            &id_b,
            "--local",
            topology::PE_A_UP,
            "--peer",
            topology::PE_B_UP,
            "--uplink",
            "up0",
            "--attachment",
            "ac0",
            "--cookie",
            &rx_cookie,
            "--peer-cookie",
            &tx_cookie,
            "--sequencing",
            "--pin-dir",
            &pin_a,
        ];
        args.extend_from_slice(extra);
        ctl(&args)
    };

    // Told not to touch forwarding: refused, with the cause, nothing installed.
    let out = add(&["--no-enable-forwarding"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted with forwarding off: {err}");
    for word in ["forwarding is off on up0", "tx_no_route", "--next-hop-mac"] {
        assert!(err.contains(word), "the refusal names {word:?}: {err}");
    }
    let dp_a = Pinned::open(pins_a.path()).expect("pins");
    assert!(dp_a.sessions().expect("maps").list().is_empty(), "nothing installed");
    assert_eq!(ipv4_forwarding(&t.pe_a, "up0"), "0");

    // The default: forwarding turned on, and said.
    let out = add(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "session add: {err}");
    assert!(err.contains("turned IPv4 forwarding on for up0"), "says so: {err}");
    assert_eq!(ipv4_forwarding(&t.pe_a, "up0"), "1");

    // Traffic crosses; the next hop is found (control traffic resolves
    // the neighbour, as the daemon's does), nothing dropped as no route.
    run(t.pe_a.command("ping").args(["-c", "1", "-W", "2", topology::PE_B_UP])).expect("uplink ping");
    let ping = run(t.cust_a.command("ping").args(["-c", "3", "-i", "0.05", "-W", "2", topology::CUST_B]));
    let table = dp_a.sessions().expect("maps");
    let s = table.stats(table.index_of(ID_A).expect("session")).expect("stats");
    assert!(ping.is_ok(), "ping across the pseudowire: {ping:?}, {s:?}");
    assert_eq!((s.tx_packets, s.tx_no_route), (3, 0), "{s:?}");
    dp_a.destroy().expect("destroy a");
    dp_b.destroy().expect("destroy b");
}

/// The next hop from `bpf_fib_lookup` is cached per session, and a bump of
/// the cache's generation (what the daemon does on an rtnetlink neighbour
/// or route change) makes the next frame look it up again.
#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn fib_next_hop_is_cached_and_looked_up_again_after_invalidation() {
    let t = TwoSites::new().expect("topology");
    let (pins_a, pins_b) = (PinDir::new("nh-a"), PinDir::new("nh-b"));
    let udp = Encap::Udp { local_port: 1701, peer_port: 1701 };
    let dp_a = endpoint(&t.pe_a, &pins_a, topology::PE_A_UP, topology::PE_B_UP, NextHop::Fib, (ID_A, ID_B), udp);
    let dp_b = endpoint(&t.pe_b, &pins_b, topology::PE_B_UP, topology::PE_A_UP, NextHop::Fib, (ID_B, ID_A), udp);
    run(t.pe_a.command("ping").args(["-c", "1", "-W", "2", topology::PE_B_UP])).expect("uplink ping");
    run(t.pe_b.command("ping").args(["-c", "1", "-W", "2", topology::PE_A_UP])).expect("uplink ping");
    run(t.cust_a.command("ping").args(["-c", "2", "-i", "0.05", "-W", "2", topology::CUST_B])).expect("ping");
    let table = dp_a.sessions().expect("maps");
    let idx = table.index_of(ID_A).expect("session");
    let gen = dp_a.switches().expect("switches").get().expect("config").next_hop_gen;
    assert_ne!(gen, 0, "the cache is on after a load");
    let nh = table.next_hop(idx).expect("read").expect("cache map");
    assert_eq!((nh.gen_begin, nh.gen_end, nh.dmac), (gen, gen, mac(topology::PE_B_UP_MAC)), "{nh:?}");

    // The neighbour changes; after the invalidation the next frame sees it.
    const OTHER: &str = "02:00:00:00:0e:01";
    t.pe_a
        .ip(&["neigh", "replace", topology::PE_B_UP, "lladdr", OTHER, "dev", "up0", "nud", "permanent"])
        .expect("neigh");
    dp_a.switches().expect("switches").invalidate_next_hops().expect("invalidate");
    // Whether the ping gets through does not matter (the peer's veth takes
    // any MAC); the frames it sends refill the cache.
    let _ = run(t.cust_a.command("ping").args(["-c", "1", "-W", "1", topology::CUST_B]));
    let nh = table.next_hop(idx).expect("read").expect("cache map");
    assert_eq!((nh.gen_begin, nh.gen_end), (gen + 1, gen + 1), "{nh:?}");
    assert_eq!(nh.dmac, mac(OTHER), "{nh:?}");
    let s = table.stats(idx).expect("stats");
    assert_eq!(s.tx_no_route, 0, "{s:?}");
    dp_a.destroy().expect("destroy a");
    dp_b.destroy().expect("destroy b");
}
