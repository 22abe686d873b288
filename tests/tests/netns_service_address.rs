//! The hot-standby service address (issue 14), `l2tp_ctl::service_addr`,
//! between two namespaces joined by a veth pair:
//!
//! ```text
//!  [a] sa0 02:00:00:00:5a:01 ---- sb0 02:00:00:00:5b:01 [b]
//! ```
//!
//! Probes (RFC 5227 ARP probe, RFC 4862 DAD), the netlink add/remove round
//! trip, and announcements (gratuitous ARP, unsolicited NA) that change
//! the other namespace's neighbour table. Addresses from 198.18.0.0/15 and
//! 2001:2::/48 only; the namespaces (and the veth) go on drop.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use l2tp_ctl::service_addr::{self, ServiceAddrError};
use l2tp_tests::{netns::run, NetNs};

const MAC_A: &str = "02:00:00:00:5a:01";
const MAC_A2: &str = "02:00:00:00:5a:02";
const MAC_B: &str = "02:00:00:00:5b:01";
const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
const WAIT: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

struct Pair {
    a: NetNs,
    b: NetNs,
}

fn pair() -> Pair {
    let (a, b) = (NetNs::new("sa").expect("netns a"), NetNs::new("sb").expect("netns b"));
    a.veth("sa0", &b, "sb0").expect("veth");
    a.ip(&["link", "set", "sa0", "address", MAC_A]).expect("mac a");
    b.ip(&["link", "set", "sb0", "address", MAC_B]).expect("mac b");
    Pair { a, b }
}

/// `ip addr add CIDR dev IFACE nodad` (no DAD, so that a probe cannot
/// make a tentative address fail and the address is usable at once).
fn addr_nodad(ns: &NetNs, iface: &str, cidr: &str) {
    let mut args = vec!["addr", "add", cidr, "dev", iface];
    if cidr.contains(':') {
        args.push("nodad");
    }
    ns.ip(&args).expect("addr");
}

fn probe(ns: &NetNs, iface: &'static str, addr: &str) -> bool {
    let addr = ip(addr);
    let start = Instant::now();
    let r = ns.enter(move || service_addr::probe(iface, addr, PROBE_TIMEOUT)).expect("enter").expect("probe");
    let took = start.elapsed();
    assert!(took < PROBE_TIMEOUT + Duration::from_millis(500), "probe for {addr} took {took:?}");
    if !r {
        assert!(took + Duration::from_millis(20) >= PROBE_TIMEOUT, "probe for {addr} gave up after {took:?}");
    }
    r
}

/// The lladdr of `addr` in `ns`'s neighbour table on `iface`, if any.
fn neigh(ns: &NetNs, iface: &str, addr: &str) -> Option<String> {
    let out = ns.ip(&["neigh", "show", addr, "dev", iface]).expect("ip neigh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

fn wait_neigh(ns: &NetNs, iface: &str, addr: &str, mac: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = neigh(ns, iface, addr);
        if got.as_deref() == Some(mac) {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} in {}: {got:?}, want {mac}", ns.name());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn addr_listed(ns: &NetNs, iface: &str, cidr: &str) -> bool {
    let out = ns.ip(&["addr", "show", "dev", iface]).expect("ip addr");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().nth(1) == Some(cidr))
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn probe_ipv4_finds_the_holder_and_nobody_else() {
    let p = pair();
    p.a.addr("sa0", "198.18.50.1/24").expect("addr a");
    p.b.addr("sb0", "198.18.50.2/24").expect("addr b");
    assert!(probe(&p.a, "sa0", "198.18.50.2"), "198.18.50.2 is held by b");
    assert!(!probe(&p.a, "sa0", "198.18.50.99"), "nobody holds 198.18.50.99");
    // A prober needs no address of its own; b answers a host address too.
    p.a.ip(&["addr", "flush", "dev", "sa0"]).expect("flush");
    p.b.addr("sb0", "198.18.51.7/32").expect("host addr b");
    assert!(probe(&p.a, "sa0", "198.18.51.7"));
    // The prober's own address is not an answer.
    p.a.addr("sa0", "198.18.50.1/24").expect("addr a");
    assert!(!probe(&p.a, "sa0", "198.18.50.1"));
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn probe_ipv6_finds_the_holder_and_nobody_else() {
    let p = pair();
    addr_nodad(&p.a, "sa0", "2001:2:0:50::1/64");
    addr_nodad(&p.b, "sb0", "2001:2:0:50::2/64");
    assert!(probe(&p.a, "sa0", "2001:2:0:50::2"), "2001:2:0:50::2 is held by b");
    assert!(!probe(&p.a, "sa0", "2001:2:0:50::99"), "nobody holds 2001:2:0:50::99");
    assert!(!probe(&p.a, "sa0", "2001:2:0:50::1"), "our own address is not an answer");
    // The DAD probe did not make b's address fail.
    let out = p.b.ip(&["-6", "addr", "show", "dev", "sb0"]).expect("ip addr");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("dadfailed"));
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn add_holds_remove_round_trip_is_idempotent() {
    let p = pair();
    p.a.addr("sa0", "198.18.52.1/24").expect("addr a");
    for (addr, cidr) in [("198.18.52.10", "198.18.52.10/32"), ("2001:2:0:52::10", "2001:2:0:52::10/128")] {
        let a = ip(addr);
        let held = |ns: &NetNs| ns.enter(move || service_addr::holds("sa0", a)).expect("enter").expect("holds");
        assert!(!held(&p.a), "{addr} before add");
        p.a.enter(move || service_addr::add("sa0", a)).expect("enter").expect("add");
        assert!(held(&p.a), "{addr} after add");
        assert!(addr_listed(&p.a, "sa0", cidr), "{cidr} listed by ip addr");
        p.a.enter(move || service_addr::add("sa0", a)).expect("enter").expect("second add");
        if a.is_ipv6() {
            let out = p.a.ip(&["-6", "addr", "show", "dev", "sa0"]).expect("ip addr");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let line = text.lines().find(|l| l.contains(cidr)).unwrap_or_default();
            assert!(line.contains("nodad") && !line.contains("tentative"), "nodad: {text}");
        }
        // Not visible in the other namespace.
        assert!(!p.b.enter(move || service_addr::holds("sb0", a)).expect("enter").expect("holds b"));
        p.a.enter(move || service_addr::remove("sa0", a)).expect("enter").expect("remove");
        assert!(!held(&p.a), "{addr} after remove");
        assert!(!addr_listed(&p.a, "sa0", cidr));
        p.a.enter(move || service_addr::remove("sa0", a)).expect("enter").expect("second remove");
    }
    // With a prefix: remove finds the prefix length itself.
    let a = ip("2001:2:0:52::20");
    p.a.enter(move || service_addr::add_with_prefix("sa0", a, 64)).expect("enter").expect("add /64");
    assert!(addr_listed(&p.a, "sa0", "2001:2:0:52::20/64"));
    p.a.enter(move || service_addr::remove("sa0", a)).expect("enter").expect("remove /64");
    assert!(!addr_listed(&p.a, "sa0", "2001:2:0:52::20/64"));
    // Errors name the interface and the address.
    let a = ip("198.18.52.30");
    let e = p.a.enter(move || service_addr::add("nosuch0", a)).expect("enter").expect_err("no interface");
    assert!(matches!(e, ServiceAddrError::NoSuchInterface { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("nosuch0") && msg.contains("198.18.52.30"), "{msg}");
    let e = p.a.enter(move || service_addr::probe("nosuch0", a, PROBE_TIMEOUT)).expect("enter").expect_err("probe");
    assert!(e.to_string().contains("nosuch0"), "{e}");
    let e = p.a.enter(move || service_addr::holds("nosuch0", a)).expect("enter").expect_err("holds");
    assert!(e.to_string().contains("nosuch0") && e.to_string().contains("198.18.52.30"), "{e}");
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn gratuitous_arp_creates_and_updates_the_neighbour_entry() {
    let p = pair();
    p.b.addr("sb0", "198.18.53.2/24").expect("addr b");
    // Linux creates an entry from unsolicited ARP only with arp_accept.
    run(p.b.command("sysctl").args(["-qw", "net.ipv4.conf.sb0.arp_accept=1"])).expect("arp_accept");
    let a = ip("198.18.53.1");
    p.a.enter(move || service_addr::add("sa0", a)).expect("enter").expect("add");
    assert_eq!(neigh(&p.b, "sb0", "198.18.53.1"), None, "no entry before the announcement");
    p.a.enter(move || service_addr::announce("sa0", a)).expect("enter").expect("announce");
    wait_neigh(&p.b, "sb0", "198.18.53.1", MAC_A);
    // The "standby" takes over with another MAC: b follows the announcement.
    p.a.ip(&["link", "set", "sa0", "address", MAC_A2]).expect("mac a2");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(neigh(&p.b, "sb0", "198.18.53.1").as_deref(), Some(MAC_A), "nothing announced the change yet");
    p.a.enter(move || service_addr::announce("sa0", a)).expect("enter").expect("announce");
    wait_neigh(&p.b, "sb0", "198.18.53.1", MAC_A2);
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn unsolicited_na_overrides_the_neighbour_entry() {
    let p = pair();
    addr_nodad(&p.b, "sb0", "2001:2:0:53::2/64");
    let a = ip("2001:2:0:53::1");
    p.a.enter(move || service_addr::add_with_prefix("sa0", a, 64)).expect("enter").expect("add");
    // b learns a's MAC by neighbour discovery.
    run(p.b.command("ping").args(["-6", "-c", "1", "-W", "2", "2001:2:0:53::1"])).expect("ping6");
    assert_eq!(neigh(&p.b, "sb0", "2001:2:0:53::1").as_deref(), Some(MAC_A));
    p.a.ip(&["link", "set", "sa0", "address", MAC_A2]).expect("mac a2");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(neigh(&p.b, "sb0", "2001:2:0:53::1").as_deref(), Some(MAC_A), "nothing announced the change yet");
    p.a.enter(move || service_addr::announce("sa0", a)).expect("enter").expect("announce");
    wait_neigh(&p.b, "sb0", "2001:2:0:53::1", MAC_A2);
}
