//! BPF_PROG_TEST_RUN fixtures for what decapsulation must refuse before it
//! acts on a frame: unsound outer headers (issue 13, defect 8), frames not
//! addressed to us (9), malformed frames that must not touch session state
//! (10), frames cut inside the cookie (11), and commands applied by the
//! program that owns what they change (12). Each case gives the expected
//! action, counters and session state.

use l2tp_common::{
    session::{rx_mode, SessionStats},
    GlobalCounter,
};
use l2tp_ctl::dataplane::{session::Command, Cookie, Encap, Role, RxMode, SessionParams};
use l2tp_tests::{frames::*, xdp::*};

const S: u32 = 0x4000_0000;
const ID: u32 = 0x900;
const COOKIE: [u8; 8] = [0xc0, 0x0c, 0x1e, 0x00, 0x11, 0x22, 0x33, 0x44];

/// A sequenced session (accept-new) of ours.
fn seq_params(encap: Encap, ipv6: bool, cookie: &[u8]) -> SessionParams {
    let mut p = params(ID, encap, ipv6);
    p.sublayer = true;
    p.sequencing = true;
    p.rx_cookie = Cookie::new(cookie).expect("cookie");
    p.tx_cookie = p.rx_cookie;
    p
}

fn rig_with(p: &SessionParams) -> (Rig, u32) {
    let mut rig = Rig::new();
    let idx = rig.table.add(p).expect("session");
    (rig, idx)
}

/// A good frame of the session with sequence number `ns`.
fn frame(p: &SessionParams, ipv6: bool, ns: u32) -> Vec<u8> {
    wire_in(p.encap, ipv6, &l2tp(ID, p.rx_cookie.as_bytes(), Some(S | ns)), &inner())
}

fn set16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// IPv4 frame offsets: IP header at 14, UDP at 34, L2TP at 42 (over UDP)
/// or 34 (over IP).
const IP: usize = 14;
const UDP_OFF: usize = 34;

/// Declares the IPv4 total length (header checksum kept right) and, over
/// UDP, the UDP length, so that the L2TP message is `l2tp_len` bytes; the
/// frame keeps every byte (as if the rest were padding).
fn declare_v4(mut f: Vec<u8>, over_udp: bool, l2tp_len: usize) -> Vec<u8> {
    let l4 = if over_udp { 8 + l2tp_len } else { l2tp_len };
    set16(&mut f, IP + 2, (20 + l4) as u16);
    fix_ipv4_checksum(&mut f, IP);
    if over_udp {
        set16(&mut f, UDP_OFF + 4, l4 as u16);
    }
    f
}

/// The good v4/UDP frame with a right non-zero UDP checksum.
fn with_udp4_checksum(ns: u32, cookie: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x03, 0, 0];
    body.extend_from_slice(&l2tp(ID, cookie, Some(S | ns)));
    body.extend_from_slice(&inner());
    let pseudo = csum_fold(csum_fold(u32::from(IPPROTO_UDP), &IP4_A), &IP4_B);
    eth(MAC_B, MAC_A, ETH_P_IP, &ipv4(IP4_A, IP4_B, IPPROTO_UDP, &udp(1701, 1701, &body, Some(pseudo))))
}

fn global(rig: &Rig, c: GlobalCounter) -> u64 {
    rig.dp.global_stats().expect("global stats").get(c)
}

/// Runs one malformed frame: dropped, counted as malformed (session and, as
/// given, global), nothing received, Nr where it was.
fn expect_malformed(rig: &mut Rig, idx: u32, what: &str, f: &[u8], global_malformed: u64, failures: &mut Vec<String>) {
    let before = rig.table.stats(idx).expect("stats");
    let nr = rig.table.state(idx).expect("state").rx_nr;
    let g = global(rig, GlobalCounter::Malformed);
    let (action, _) = rig.run(Role::Uplink, f);
    let after = rig.table.stats(idx).expect("stats");
    let st = rig.table.state(idx).expect("state");
    let g = global(rig, GlobalCounter::Malformed) - g;
    let want = SessionStats { rx_malformed: before.rx_malformed + 1, ..before };
    if action != XDP_DROP || after != want || st.rx_nr != nr || g != global_malformed {
        failures.push(format!(
            "{what}: action {action} (want {XDP_DROP}), Nr {} (want {nr}), global malformed +{g} (want \
             +{global_malformed})\n  counters {after:?}\n  want     {want:?}",
            st.rx_nr
        ));
    }
}

/// Defect 8: frames the IP/UDP layer must discard (RFC 1122 3.2.1.2 and
/// 4.1.3.4, RFC 791, RFC 768, RFC 8200) or whose declared lengths cut the
/// L2TP message are dropped and counted as malformed, not received, and
/// their far-ahead Ns does not move Nr; a right non-zero UDP checksum over
/// IPv4 is accepted.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn unsound_outer_headers_are_dropped_as_malformed_and_do_not_move_nr() {
    let mut failures = Vec::new();

    // UDP/IPv4, no cookie: sublayer at 50, inner frame at 54.
    let p = seq_params(UDP, false, &[]);
    let (mut rig, idx) = rig_with(&p);
    assert_eq!(rig.run(Role::Uplink, &frame(&p, false, 10)).0, XDP_REDIRECT);
    let far = || frame(&p, false, 1000);
    let total = |f: &[u8]| get16(f, IP + 2);
    let mut cases: Vec<(&str, Vec<u8>, u64)> = Vec::new();
    let mut f = far();
    f[IP + 11] ^= 0x01;
    cases.push(("IPv4 header checksum wrong (RFC 1122 MUST discard)", f, 1));
    let mut f = far();
    let t = total(&f);
    set16(&mut f, IP + 2, t + 1);
    fix_ipv4_checksum(&mut f, IP);
    cases.push(("IPv4 total length beyond the frame", f, 1));
    let mut f = far();
    set16(&mut f, IP + 2, 19);
    fix_ipv4_checksum(&mut f, IP);
    cases.push(("IPv4 total length below the header", f, 1));
    let mut f = far();
    let ulen = get16(&f, UDP_OFF + 4);
    set16(&mut f, UDP_OFF + 4, ulen + 1);
    cases.push(("UDP length beyond the IP payload", f, 1));
    let mut f = far();
    set16(&mut f, UDP_OFF + 4, 7);
    cases.push(("UDP length below 8", f, 1));
    let mut f = with_udp4_checksum(1000, &[]);
    f[UDP_OFF + 7] ^= 0x01;
    // Summed only for frames of our sessions: a session-level count.
    cases.push(("wrong non-zero UDP checksum over IPv4", f, 0));
    cases.push(("declared lengths cut the Session ID", declare_v4(far(), true, 6), 1));
    // The fixed L2TP header is whole: the session finds the cut.
    cases.push(("declared lengths cut the sublayer", declare_v4(far(), true, 8 + 2), 0));
    cases.push(("declared lengths cut the inner Ethernet header", declare_v4(far(), true, 8 + 4 + 10), 0));
    for (what, f, g) in &cases {
        expect_malformed(&mut rig, idx, what, f, *g, &mut failures);
    }
    // A right non-zero checksum is verified and accepted; Nr never moved.
    let (action, out) = rig.run(Role::Uplink, &with_udp4_checksum(11, &[]));
    if (action, &out) != (XDP_REDIRECT, &inner()) {
        failures.push(format!("right UDP checksum: action {action}\n{}", hexdiff(&out, &inner())));
    }
    let s = rig.table.stats(idx).expect("stats");
    let st = rig.table.state(idx).expect("state");
    if (s.rx_packets, s.rx_lost, s.rx_malformed, st.rx_nr) != (2, 0, cases.len() as u64, 12) {
        failures.push(format!("v4/UDP after the cases: {s:?}, Nr {}", st.rx_nr));
    }

    // IP/IPv4: total length cutting the Session ID.
    let p = seq_params(Encap::Ip, false, &[]);
    let (mut rig, idx) = rig_with(&p);
    let f = declare_v4(frame(&p, false, 1000), false, 2);
    expect_malformed(&mut rig, idx, "IP/IPv4: total length cuts the Session ID", &f, 1, &mut failures);

    // UDP/IPv6: payload length beyond the frame.
    let p = seq_params(UDP, true, &[]);
    let (mut rig, idx) = rig_with(&p);
    assert_eq!(rig.run(Role::Uplink, &frame(&p, true, 10)).0, XDP_REDIRECT);
    let mut f = frame(&p, true, 1000);
    let plen = get16(&f, IP + 4);
    set16(&mut f, IP + 4, plen + 1);
    expect_malformed(&mut rig, idx, "IPv6 payload length beyond the frame", &f, 1, &mut failures);
    let mut f = frame(&p, true, 1000);
    set16(&mut f, IP + 4, 8 + 6);
    set16(&mut f, IP + 40 + 4, 8 + 6);
    expect_malformed(&mut rig, idx, "IPv6 and UDP lengths cut the Session ID", &f, 1, &mut failures);
    assert_eq!(rig.run(Role::Uplink, &frame(&p, true, 11)).0, XDP_REDIRECT, "IPv6: Nr did not move");

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Defect 8: bytes after the IP packet (Ethernet padding of a short frame)
/// are not part of the customer frame: decapsulation delivers what the IP
/// and UDP lengths declare, and counts those bytes.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn trailing_padding_after_the_ip_packet_is_not_delivered_to_the_customer() {
    for (encap, ipv6) in [(UDP, false), (Encap::Ip, false), (UDP, true), (Encap::Ip, true)] {
        let p = seq_params(encap, ipv6, &COOKIE[..4]);
        let (mut rig, idx) = rig_with(&p);
        let mut f = frame(&p, ipv6, 0);
        f.extend_from_slice(&[0; 18]);
        let (action, out) = rig.run(Role::Uplink, &f);
        assert_eq!(action, XDP_REDIRECT, "{encap:?} v6 {ipv6}");
        assert_eq!(out, inner(), "{encap:?} v6 {ipv6}: {}", hexdiff(&out, &inner()));
        let s = rig.table.stats(idx).expect("stats");
        assert_eq!((s.rx_packets, s.rx_bytes), (1, inner().len() as u64), "{encap:?} v6 {ipv6}: {s:?}");
    }
}

/// Defect 9: a frame whose outer destination is not the session's local
/// address is not ours, whatever its session ID and cookie: passed to the
/// kernel untouched (a forwarding host routes it on), nothing counted
/// against the session, its state untouched.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn frames_for_another_destination_are_passed_untouched_and_not_counted() {
    let other4 = [198, 18, 0, 99];
    let mut other6 = IP6_B;
    other6[15] = 0x99;
    let mut failures = Vec::new();
    for (encap, ipv6) in [(UDP, false), (Encap::Ip, false), (UDP, true), (Encap::Ip, true)] {
        let p = seq_params(encap, ipv6, &COOKIE);
        let (mut rig, idx) = rig_with(&p);
        let mut bad_cookie = COOKIE;
        bad_cookie[7] ^= 0xff;
        for (what, cookie) in [("right cookie", COOKIE), ("wrong cookie", bad_cookie)] {
            let hdr = l2tp(ID, &cookie, Some(S | 5));
            let mut body = Vec::new();
            if encap != Encap::Ip {
                body.extend_from_slice(&[0x00, 0x03, 0, 0]);
            }
            body.extend_from_slice(&hdr);
            body.extend_from_slice(&inner());
            let (src, dst) = if ipv6 { (v6(IP6_A), v6(other6)) } else { (v4(IP4_A), v4(other4)) };
            let (proto, l4) = match encap {
                Encap::Ip => (IPPROTO_L2TP, body),
                Encap::Udp { .. } => (IPPROTO_UDP, udp_between(src, dst, 1701, 1701, &body)),
            };
            let (ethertype, ip) = ip_packet(src, dst, proto, &l4).expect("packet");
            let f = eth(OUR_MAC, MAC_A, ethertype, &ip);
            let (action, out) = rig.run(Role::Uplink, &f);
            let s = rig.table.stats(idx).expect("stats");
            let st = rig.table.state(idx).expect("state");
            if action != XDP_PASS || out != f || s != SessionStats::default() || (st.rx_valid, st.rx_nr) != (0, 0) {
                failures.push(format!("{encap:?} v6 {ipv6}, {what}: action {action}, {s:?}, state {st:?}"));
            }
        }
        // The session still takes its own traffic.
        if rig.run(Role::Uplink, &frame(&p, ipv6, 5)).0 != XDP_REDIRECT {
            failures.push(format!("{encap:?} v6 {ipv6}: own traffic not decapsulated"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Defect 10: nothing touches session state before the frame is known to
/// be good. A frame with a far-ahead Ns whose inner frame is too short is
/// dropped as malformed without moving Nr (the peer's next frame is still
/// in sequence) and without applying a pending receive command.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_malformed_frame_moves_no_nr_and_applies_no_pending_command() {
    let p = seq_params(UDP, false, &[]);
    let (mut rig, idx) = rig_with(&p);
    for ns in [0, 1] {
        assert_eq!(rig.run(Role::Uplink, &frame(&p, false, ns)).0, XDP_REDIRECT);
    }
    rig.table.post(idx, Command::SetMode(RxMode::Strict { n: 2 })).expect("post");
    // Ns 1000, and 5 bytes where the inner Ethernet header should be.
    let short = wire_in(UDP, false, &l2tp(ID, &[], Some(S | 1000)), &[0xee; 5]);
    assert_eq!(rig.run(Role::Uplink, &short).0, XDP_DROP);
    let s = rig.stats(ID);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((s.rx_packets, s.rx_malformed, s.rx_lost), (2, 1, 0), "{s:?}");
    assert_eq!((st.rx_nr, st.mode), (2, u32::from(rx_mode::ACCEPT_NEW)), "Nr and mode untouched: {st:?}");
    // The peer's next frame is in sequence, and applies the command.
    assert_eq!(rig.run(Role::Uplink, &frame(&p, false, 2)).0, XDP_REDIRECT);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.rx_nr, st.mode), (3, u32::from(rx_mode::STRICT)), "{st:?}");
    let s = rig.stats(ID);
    assert_eq!((s.rx_packets, s.rx_lost, s.rx_out_of_seq), (3, 0, 0), "{s:?}");
}

/// Defect 11: a frame that ends inside the cookie is malformed, not a
/// cookie mismatch (whether the lengths declare the cut or the frame is
/// truncated).
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_frame_cut_inside_the_cookie_is_malformed_not_a_cookie_mismatch() {
    let mut failures = Vec::new();
    for encap in [UDP, Encap::Ip] {
        let p = seq_params(encap, false, &COOKIE);
        let (mut rig, idx) = rig_with(&p);
        // Session ID and half the cookie, lengths consistent.
        let cut = wire_in(encap, false, &l2tp(ID, &COOKIE[..4], None), &[]);
        // The same bytes as the head of a longer frame (lengths beyond it).
        let truncated = frame(&p, false, 0)[..cut.len()].to_vec();
        for (what, f) in [("declared", &cut), ("truncated", &truncated)] {
            let (action, _) = rig.run(Role::Uplink, f);
            let s = rig.table.stats(idx).expect("stats");
            if action != XDP_DROP || s.rx_cookie_mismatch != 0 {
                failures.push(format!("{encap:?}, {what}: action {action}, {s:?}"));
            }
        }
        let s = rig.table.stats(idx).expect("stats");
        if (s.rx_malformed, s.rx_cookie_mismatch, s.rx_packets) != (2, 0, 0) {
            failures.push(format!("{encap:?}: {s:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Defect 12: each command is applied by the program that owns what it
/// changes: receive commands (ENTER_RESYNC, SET_MODE, RESET_NR) by the
/// uplink program on a received frame, never by the attachment program;
/// RESET_NS by the attachment program, never by the uplink one; a receive
/// and a transmit command pending at once are both applied, once.
/// Commands go through the mapped command slots.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn commands_are_applied_by_the_program_that_owns_what_they_change() {
    let p = seq_params(UDP, false, &[]);
    let (mut rig, idx) = rig_with(&p);
    // Posted with plain stores into the mapped slots (no syscall).
    assert!(rig.table.commands_mapped(), "command slots mapped");
    let ns_sent = |rig: &mut Rig| {
        let (action, out) = rig.run(Role::Attachment, &inner());
        assert_eq!(action, XDP_REDIRECT);
        // v4/UDP, no cookie: sublayer at 14 + 20 + 8 + 8.
        u32::from_be_bytes([out[50], out[51], out[52], out[53]]) & 0xff_ffff
    };
    let recv = |rig: &mut Rig, ns: u32| rig.run(Role::Uplink, &frame(&p, false, ns)).0;
    assert_eq!((ns_sent(&mut rig), ns_sent(&mut rig)), (0, 1));
    assert_eq!(recv(&mut rig, 100), XDP_REDIRECT);

    // ENTER_RESYNC: not the attachment program's to apply.
    let e1 = rig.table.post(idx, Command::EnterResync { n: 3 }).expect("post");
    assert_eq!(ns_sent(&mut rig), 2);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.mode, st.resync_left), (u32::from(rx_mode::ACCEPT_NEW), 0), "attach applied it: {st:?}");
    assert_eq!(recv(&mut rig, 101), XDP_REDIRECT);
    let st = rig.table.state(idx).expect("state");
    assert_eq!(st.mode, u32::from(rx_mode::RESYNC), "{st:?}");
    assert_eq!(rig.table.rx_state(idx).expect("rx").applied_epoch, e1);

    // RESET_NS: not the uplink program's to apply.
    let e2 = rig.table.post(idx, Command::ResetNs(0)).expect("post");
    assert_eq!(recv(&mut rig, 102), XDP_REDIRECT);
    assert_eq!(rig.table.state(idx).expect("state").tx_ns, 3, "uplink applied RESET_NS");
    assert_eq!(ns_sent(&mut rig), 0);
    assert_eq!(rig.table.tx_state(idx).expect("tx").applied_epoch, e2);

    // RESET_NR: not applied by the attachment program.
    rig.table.post(idx, Command::ResetNr).expect("post");
    assert_eq!(ns_sent(&mut rig), 1);
    assert_eq!(rig.table.state(idx).expect("state").rx_valid, 1, "attach applied RESET_NR");

    // A receive and a transmit command pending at once: both applied.
    rig.table.post(idx, Command::SetMode(RxMode::Strict { n: 2 })).expect("post");
    rig.table.post(idx, Command::ResetNs(7)).expect("post");
    assert_eq!(ns_sent(&mut rig), 7);
    assert_eq!(rig.table.state(idx).expect("state").mode, u32::from(rx_mode::RESYNC), "attach applied SET_MODE");
    // RESET_NR was replaced by SET_MODE (one pending command per side).
    assert_eq!(recv(&mut rig, 103), XDP_REDIRECT);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.mode, st.resync_n, st.rx_nr), (u32::from(rx_mode::STRICT), 2, 104), "{st:?}");
    // Once: later frames of either side apply nothing again.
    assert_eq!((ns_sent(&mut rig), ns_sent(&mut rig)), (8, 9));
    assert_eq!(recv(&mut rig, 104), XDP_REDIRECT);
    assert_eq!(rig.table.state(idx).expect("state").mode, u32::from(rx_mode::STRICT));
}

/// Issue 14, the warm data plane: a session installed inactive on a hot
/// standby neither decapsulates (its frames are the kernel's, passed
/// unchanged) nor encapsulates (customer frames dropped), touches no
/// session counter or state, and is counted globally as standby traffic.
/// One activation later it forwards both ways with the state it was
/// installed with: Ns from 0 (RFC 4951 F-DC-1) and Nr set by the first
/// packet.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_warm_standby_session_forwards_nothing_until_one_activation() {
    let mut p = seq_params(UDP, false, &COOKIE);
    p.standby = true;
    let (mut rig, idx) = rig_with(&p);
    let before = (global(&rig, GlobalCounter::Standby), rig.table.stats(idx).expect("stats"));
    let f = frame(&p, false, 500);
    let (action, out) = rig.run(Role::Uplink, &f);
    assert_eq!(action, XDP_PASS, "a standby session's frame is the kernel's");
    assert_eq!(out, f, "passed unchanged");
    let (action, _) = rig.run(Role::Attachment, &inner());
    assert_eq!(action, XDP_DROP, "a standby session encapsulates nothing");
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.tx_ns, st.rx_valid, st.rx_nr), (0, 0, 0), "state touched while inactive: {st:?}");
    assert_eq!(rig.table.stats(idx).expect("stats"), before.1, "session counters moved while inactive");
    assert_eq!(global(&rig, GlobalCounter::Standby) - before.0, 2, "standby frames counted");

    assert!(rig.table.activate(ID).expect("activate"), "was inactive");
    assert!(!rig.table.activate(ID).expect("activate"), "activated once");
    assert_eq!(rig.table.config(idx).expect("config").flags & l2tp_common::session::flags::STANDBY, 0);
    let (action, out) = rig.run(Role::Attachment, &inner());
    assert_eq!(action, XDP_REDIRECT);
    // v4/UDP, 8-byte cookie: sublayer at 14 + 20 + 8 + 8 + 8.
    assert_eq!(u32::from_be_bytes([out[58], out[59], out[60], out[61]]) & 0xff_ffff, 0, "first Ns after activation");
    assert_eq!(rig.run(Role::Uplink, &f).0, XDP_REDIRECT);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.rx_valid, st.rx_nr), (1, 501), "{st:?}");
    assert_eq!(global(&rig, GlobalCounter::Standby) - before.0, 2, "no more standby frames");
}

/// A takeover activates every warm session at once (through the mapped
/// configurations): each forwards afterwards with the state it was
/// installed with, an already active one is left as it was, and a second
/// pass finds nothing to activate.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_takeover_activates_every_warm_session_at_once() {
    let mut rig = Rig::new();
    let frame_of = |id: u32| wire_in(UDP, false, &l2tp(id, &[], None), &inner());
    for i in 0..4u32 {
        let mut p = params(ID + i, UDP, false);
        p.attach_vlan = (i + 1) as u16;
        p.standby = i != 3;
        rig.table.add(&p).expect("session");
    }
    assert_eq!(rig.run(Role::Uplink, &frame_of(ID)).0, XDP_PASS, "warm: the kernel's");
    let (n, errors) = rig.table.activate_all();
    assert_eq!(n, 3, "the three warm ones");
    assert!(errors.is_empty(), "{errors:?}");
    for i in 0..4u32 {
        let idx = rig.table.index_of(ID + i).expect("index");
        assert_eq!(rig.table.config(idx).expect("config").flags & l2tp_common::session::flags::STANDBY, 0, "{i}");
        assert_eq!(rig.table.flags(idx).map(|f| f & l2tp_common::session::flags::STANDBY), Some(0), "{i}: known");
        assert_eq!(rig.run(Role::Uplink, &frame_of(ID + i)).0, XDP_REDIRECT, "session {i} forwards");
    }
    let (n, errors) = rig.table.activate_all();
    assert_eq!(n, 0, "nothing left to activate");
    assert!(errors.is_empty(), "{errors:?}");
}

/// A session table opened again over the same maps (a restarted daemon)
/// knows every session, its flags and each side's last command epoch from
/// batch reads: a command it posts is applied once, by the right program.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_reopened_session_table_knows_sessions_and_epochs_and_its_commands_apply() {
    let p = seq_params(UDP, false, &[]);
    let (mut rig, idx) = rig_with(&p);
    let mut other = params(ID + 1, UDP, false);
    other.attach_vlan = 7;
    let idx2 = rig.table.add(&other).expect("second session");
    // Epochs moved on both sides before the "restart".
    let recv = |rig: &mut Rig, ns: u32| rig.run(Role::Uplink, &frame(&p, false, ns)).0;
    assert_eq!(recv(&mut rig, 10), XDP_REDIRECT);
    let e1 = rig.table.post(idx, Command::EnterResync { n: 2 }).expect("post");
    assert_eq!(recv(&mut rig, 11), XDP_REDIRECT);
    assert_eq!(rig.table.rx_state(idx).expect("rx").applied_epoch, e1);
    let e2 = rig.table.post(idx, Command::ResetNs(5)).expect("post");

    let mut reopened = rig.dp.sessions().expect("session maps again");
    assert_eq!(reopened.list(), rig.table.list());
    assert_eq!((reopened.index_of(ID), reopened.index_of(ID + 1)), (Some(idx), Some(idx2)));
    assert_eq!(reopened.flags(idx), rig.table.config(idx).ok().map(|c| c.flags));
    // The next epochs follow what was posted (pending or applied).
    let e3 = reopened.post(idx, Command::SetMode(RxMode::Strict { n: 3 })).expect("post");
    let e4 = reopened.post(idx, Command::ResetNs(0)).expect("post");
    assert!(e3 > e1 && e4 > e2, "epochs {e1} {e2} then {e3} {e4}");
    assert_eq!(recv(&mut rig, 12), XDP_REDIRECT);
    let st = reopened.state(idx).expect("state");
    assert_eq!((st.mode, st.resync_n), (u32::from(rx_mode::STRICT), 3), "{st:?}");
    let (action, out) = rig.run(Role::Attachment, &inner());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(u32::from_be_bytes([out[50], out[51], out[52], out[53]]) & 0xff_ffff, 0, "RESET_NS(0) applied, not 5");
    reopened.remove(ID + 1).expect("remove");
    assert_eq!(reopened.index_of(ID + 1), None);
}

/// The map names the loader pins by are the object's (its statics).
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn every_pinned_map_name_is_a_map_of_the_object() {
    let mut rig = Rig::new();
    for name in l2tp_ctl::dataplane::MAPS {
        assert!(rig.dp.map_mut(name).is_ok(), "{name}");
    }
}

/// Runs `f` with this thread pinned to `cpu`; false if it cannot be.
fn on_cpu(cpu: usize, f: impl FnOnce()) -> bool {
    // SAFETY: a zeroed cpu_set_t filled by CPU_SET for this thread only.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut all) != 0 {
            return false;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return false;
        }
        f();
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &all);
    }
    true
}

/// `SESSION_STATS` holds one slot per CPU and session (CPU-major, not a
/// per-CPU array: see the program's `maps::session_stats`); the table sums
/// the CPUs.
#[test]
fn session_counters_of_every_cpu_are_summed() {
    let p = seq_params(UDP, false, &COOKIE);
    let (mut rig, idx) = rig_with(&p);
    let mut ns = 0;
    let mut run_on = |rig: &mut Rig, cpu: usize, n: u32| {
        on_cpu(cpu, || {
            for _ in 0..n {
                let (action, _) = rig.run(Role::Uplink, &frame(&p, false, ns));
                assert_eq!(action, XDP_REDIRECT, "frame {ns} on CPU {cpu}");
                ns += 1;
            }
        })
    };
    assert!(run_on(&mut rig, 0, 3), "pinning to CPU 0");
    let s = rig.table.stats(idx).expect("stats");
    assert_eq!((s.rx_packets, s.rx_bytes), (3, 3 * inner().len() as u64));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 && run_on(&mut rig, 1, 2) {
        let s = rig.table.stats(idx).expect("stats");
        assert_eq!((s.rx_packets, s.rx_bytes), (5, 5 * inner().len() as u64), "both CPUs' counters summed");
    }
    // A slot reused by a new session starts from zero on every CPU.
    rig.table.remove(ID).expect("remove");
    let idx2 = rig.table.add(&p).expect("again");
    assert_eq!(idx2, idx, "the home slot again");
    assert_eq!(rig.table.stats(idx2).expect("stats"), SessionStats::default());
}

/// A batch install (a data plane rebuilt from the store): every good
/// session is published (found by its ID, decapsulated, counters from
/// zero, also in a slot an earlier session used), and a session that
/// clashes with another of the batch (same ID, same circuit) is refused on
/// its own, leaving nothing behind.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn a_batch_install_publishes_every_good_session_and_refuses_the_others_alone() {
    let mut rig = Rig::new();
    rig.table.assume_pristine();
    let good = |i: u32| {
        let mut p = params(ID + i, UDP, false);
        p.attach_vlan = (i + 1) as u16;
        p
    };
    let frame_of = |id: u32| wire_in(UDP, false, &l2tp(id, &[], None), &inner());
    // An earlier session in ID's home slot, with counters.
    let earlier = rig.table.add(&good(0)).expect("earlier session");
    for _ in 0..2 {
        assert_eq!(rig.run(Role::Uplink, &frame_of(ID)).0, XDP_REDIRECT);
    }
    assert_eq!(rig.table.stats(earlier).expect("stats").rx_packets, 2);
    rig.table.remove(ID).expect("remove");

    let mut ps: Vec<SessionParams> = (0..50).map(good).collect();
    let mut same_id = params(ID + 3, UDP, false);
    same_id.attach_vlan = 100;
    ps.push(same_id);
    let mut same_circuit = params(ID + 60, UDP, false);
    same_circuit.attach_vlan = 5;
    ps.push(same_circuit);
    let results = rig.table.add_many(&ps);
    assert_eq!(results.len(), 52);
    for (i, r) in results.iter().enumerate().take(50) {
        let idx = *r.as_ref().unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert_eq!(rig.table.index_of(ID + i as u32), Some(idx), "session {i} published");
    }
    assert!(results[50].is_err(), "the same ID twice in one batch");
    assert!(results[51].is_err(), "the same circuit twice in one batch");
    assert_eq!(rig.table.index_of(ID + 60), None, "nothing left of a refused session");
    assert_eq!(rig.table.list().len(), 50);
    assert_eq!(results[0].as_ref().ok(), Some(&earlier), "the home slot again");
    for i in [0, 7, 49] {
        assert_eq!(rig.run(Role::Uplink, &frame_of(ID + i)).0, XDP_REDIRECT, "session {i}");
        let idx = rig.table.index_of(ID + i).expect("index");
        assert_eq!(rig.table.stats(idx).expect("stats").rx_packets, 1, "session {i}: counters from zero");
    }
    // What the table remembers matches the maps (as a restart reads them).
    let reopened = rig.dp.sessions().expect("session maps again");
    assert_eq!(reopened.list(), rig.table.list());
}
