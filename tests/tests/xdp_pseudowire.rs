//! BPF_PROG_TEST_RUN fixture table for the pseudowire programs: every
//! branch of decapsulation (`l2tp_uplink`) and encapsulation
//! (`l2tp_attach`), with the expected action and output bytes, diffed on
//! failure; then the sequence-number receive modes packet by packet.
//!
//! The rig, the frame builders and the test-run wrapper are
//! `l2tp_tests::xdp`'s; malformed and foreign frames are
//! `xdp_validation.rs`'s.

use l2tp_ctl::dataplane::{session::Command, Cookie, Encap, Role, RxMode, SessionParams};
use l2tp_tests::{frames::*, xdp::*};

struct Case {
    what: &'static str,
    role: Role,
    input: Vec<u8>,
    action: u32,
    /// `None`: output must equal the input.
    output: Option<Vec<u8>>,
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn decap_and_encap_fixture_table() {
    let payload = inner();
    let c4 = [0xca, 0xfe, 0xf0, 0x0d];
    let c8 = [1, 2, 3, 4, 5, 6, 7, 8];
    // One rig per session layout (one attachment interface carries one
    // session).
    struct Layout {
        what: &'static str,
        p: SessionParams,
        ipv6: bool,
    }
    let mut layouts = vec![
        Layout { what: "v4/UDP, no cookie, no sublayer", p: params(0x100, UDP, false), ipv6: false },
        Layout { what: "v4/IP, 4-byte cookie", p: params(0x101, Encap::Ip, false), ipv6: false },
        Layout { what: "v6/UDP, 8-byte cookie, sublayer", p: params(0x102, UDP, true), ipv6: true },
        Layout { what: "v6/IP, sublayer with sequencing", p: params(0x103, Encap::Ip, true), ipv6: true },
        Layout { what: "v4/UDP, 8-byte cookie, sequencing", p: params(0x104, UDP, false), ipv6: false },
    ];
    layouts[1].p.rx_cookie = Cookie::new(&c4).expect("cookie");
    layouts[1].p.tx_cookie = Cookie::new(&c4).expect("cookie");
    layouts[2].p.rx_cookie = Cookie::new(&c8).expect("cookie");
    layouts[2].p.tx_cookie = Cookie::new(&c8).expect("cookie");
    layouts[2].p.sublayer = true;
    layouts[3].p.sublayer = true;
    layouts[3].p.sequencing = true;
    layouts[4].p.rx_cookie = Cookie::new(&c8).expect("cookie");
    layouts[4].p.tx_cookie = Cookie::new(&c8).expect("cookie");
    layouts[4].p.sublayer = true;
    layouts[4].p.sequencing = true;

    let mut failures = Vec::new();
    for l in &layouts {
        let mut rig = Rig::new();
        rig.table.add(&l.p).expect("session installs");
        let id = l.p.local_session_id;
        let cookie = l.p.rx_cookie.as_bytes().to_vec();
        let seq = |ns: u32| {
            if l.p.sequencing {
                Some(0x4000_0000 | ns)
            } else if l.p.sublayer {
                Some(0)
            } else {
                None
            }
        };
        let good = wire_in(l.p.encap, l.ipv6, &l2tp(id, &cookie, seq(0)), &payload);
        let mut bad_cookie = cookie.clone();
        if let Some(b) = bad_cookie.last_mut() {
            *b ^= 0xff;
        }
        let mut cases = vec![
            Case {
                what: "decap",
                role: Role::Uplink,
                input: good.clone(),
                action: XDP_REDIRECT,
                output: Some(payload.clone()),
            },
            Case {
                what: "unknown session passes",
                role: Role::Uplink,
                input: wire_in(l.p.encap, l.ipv6, &l2tp(0x7777, &cookie, seq(1)), &payload),
                action: XDP_PASS,
                output: None,
            },
            Case {
                what: "encap",
                role: Role::Attachment,
                input: payload.clone(),
                action: XDP_REDIRECT,
                output: Some(wire_out(
                    l.p.encap,
                    l.ipv6,
                    &l2tp(l.p.peer_session_id, l.p.tx_cookie.as_bytes(), seq(0)),
                    &payload,
                )),
            },
        ];
        if !cookie.is_empty() {
            cases.push(Case {
                what: "wrong cookie dropped",
                role: Role::Uplink,
                input: wire_in(l.p.encap, l.ipv6, &l2tp(id, &bad_cookie, seq(1)), &payload),
                action: XDP_DROP,
                output: None,
            });
        }
        if l.p.encap != Encap::Ip {
            // A control message to a session's tunnel goes to the kernel.
            let ctl = if l.ipv6 {
                udp6_frame(1701, 1701, &l2tpv2_zlb(1, 0, 0))
            } else {
                udp4_frame(1701, 1701, &l2tpv2_zlb(1, 0, 0))
            };
            cases.push(Case { what: "control passes", role: Role::Uplink, input: ctl, action: XDP_PASS, output: None });
        } else {
            let ctl = if l.ipv6 {
                ip6_l2tp_frame(&[0, 0, 0, 0, 0xc8, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0])
            } else {
                ip4_l2tp_frame(&[0, 0, 0, 0, 0xc8, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0])
            };
            cases.push(Case {
                what: "control (session 0) passes",
                role: Role::Uplink,
                input: ctl,
                action: XDP_PASS,
                output: None,
            });
        }
        for c in cases {
            let (action, out) = rig.run(c.role, &c.input);
            let want = c.output.clone().unwrap_or_else(|| c.input.clone());
            if action != c.action || out != want {
                failures.push(format!(
                    "{} / {}: action {action} (want {})\n{}",
                    l.what,
                    c.what,
                    c.action,
                    hexdiff(&out, &want)
                ));
            }
        }
        // Truncated at every offset: never redirected, never a panic.
        for len in 14..good.len() - payload.len() + 14 {
            let (action, _) = rig.run(Role::Uplink, &good[..len]);
            if action == XDP_REDIRECT {
                failures.push(format!("{}: truncated to {len} bytes was redirected", l.what));
            }
        }
        let s = rig.stats(id);
        if s.rx_packets != 1 || s.tx_packets != 1 {
            failures.push(format!("{}: counters {s:?}", l.what));
        }
        if !cookie.is_empty() && s.rx_cookie_mismatch == 0 {
            failures.push(format!("{}: cookie mismatch not counted", l.what));
        }
        if s.rx_malformed == 0 {
            failures.push(format!("{}: truncated frames not counted as malformed: {s:?}", l.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn fragments_and_ip_options_pass_untouched() {
    let mut rig = Rig::new();
    rig.table.add(&params(0x200, UDP, false)).expect("session");
    let good = wire_in(UDP, false, &l2tp(0x200, &[], None), &inner());
    let mut frag = good.clone();
    frag[14 + 6] = 0x20;
    let mut opts = good.clone();
    opts[14] = 0x46;
    for (what, f) in [("fragment", frag), ("IP options", opts)] {
        let (action, out) = rig.run(Role::Uplink, &f);
        assert_eq!((action, out == f), (XDP_PASS, true), "{what}");
    }
    assert_eq!(rig.stats(0x200).rx_packets, 0);
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn encap_drops_frames_beyond_the_uplink_mtu() {
    let mut rig = Rig::new();
    let mut p = params(0x300, UDP, false);
    p.uplink_mtu = 576;
    rig.table.add(&p).expect("session");
    // 20 IP + 8 UDP + 8 L2TP + frame: 540 fits exactly, 541 does not.
    let fits = eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800, &[0; 526]);
    assert_eq!(fits.len(), 540);
    assert_eq!(rig.run(Role::Attachment, &fits).0, XDP_REDIRECT);
    let big = eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800, &[0; 527]);
    assert_eq!(rig.run(Role::Attachment, &big).0, XDP_DROP);
    let s = rig.stats(0x300);
    assert_eq!((s.tx_packets, s.tx_mtu_drops), (1, 1));
}

/// Sends sequenced packets with the given Ns values and returns which were
/// delivered.
fn deliveries(rig: &mut Rig, id: u32, ns: &[u32]) -> Vec<bool> {
    ns.iter()
        .map(|&n| {
            let f = wire_in(UDP, false, &l2tp(id, &[], Some(0x4000_0000 | (n & 0xff_ffff))), &inner());
            match rig.run(Role::Uplink, &f).0 {
                XDP_REDIRECT => true,
                XDP_DROP => false,
                a => panic!("ns {n}: action {a}"),
            }
        })
        .collect()
}

fn seq_rig(mode: RxMode) -> Rig {
    let mut rig = Rig::new();
    let mut p = params(0x400, UDP, false);
    p.sublayer = true;
    p.sequencing = true;
    p.rx_mode = mode;
    rig.table.add(&p).expect("session");
    rig
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn accept_new_mode_with_loss_reordering_duplicates_and_wrap() {
    let mut rig = seq_rig(RxMode::AcceptNew);
    let ns = [0, 1, 2, 5, 3, 5, 6, 0xff_fffe];
    // 0xfffffe is behind 6 by less than half the space... it is 2^24-8
    // ahead, i.e. behind: dropped.
    assert_eq!(deliveries(&mut rig, 0x400, &ns), [true, true, true, true, false, false, true, false]);
    let s = rig.stats(0x400);
    assert_eq!((s.rx_lost, s.rx_out_of_seq, s.rx_duplicates), (2, 2, 1), "{s:?}");
    // Wrap-around of the 24-bit space.
    let mut rig = seq_rig(RxMode::AcceptNew);
    assert_eq!(deliveries(&mut rig, 0x400, &[0xff_fffe, 0xff_ffff, 0, 1]), [true; 4]);
    assert_eq!(rig.stats(0x400).rx_lost, 0);
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn strict_mode_resyncs_after_n_in_sequence_both_directions() {
    // Forward jump: 10..12 dropped until the third in a row resyncs.
    let mut rig = seq_rig(RxMode::Strict { n: 3 });
    assert_eq!(deliveries(&mut rig, 0x400, &[0, 1, 10, 11, 12, 13]), [true, true, false, false, true, true]);
    // Backward jump.
    let mut rig = seq_rig(RxMode::Strict { n: 3 });
    assert_eq!(
        deliveries(&mut rig, 0x400, &[100, 101, 5, 6, 7, 8, 102]),
        [true, true, false, false, true, true, false]
    );
    let s = rig.stats(0x400);
    assert_eq!(s.rx_resyncs, 1, "{s:?}");
}

/// RFC 4951 F-DC-3: after the peer's data channel reset (its Ns restarts
/// at 0, F-DC-1), n consecutive packets set Nr, whatever their distance.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn f_dc_3_resync_mode_follows_a_peer_ns_reset() {
    let mut rig = seq_rig(RxMode::AcceptNew);
    assert_eq!(deliveries(&mut rig, 0x400, &[5000, 5001]), [true, true]);
    // The daemon posts "enter resync with n=3" (what recovery does).
    let idx = rig.table.index_of(0x400).expect("idx");
    let epoch = rig.table.post(idx, Command::EnterResync { n: 3 }).expect("post");
    // The peer restarted at 0: two dropped, the third resyncs, then normal.
    assert_eq!(deliveries(&mut rig, 0x400, &[0, 1, 2, 3, 4]), [false, false, true, true, true]);
    let st = rig.table.state(idx).expect("state");
    assert_eq!(st.rx_applied_epoch, epoch);
    assert_eq!(st.rx_nr, 5);
    assert_eq!(rig.stats(0x400).rx_resyncs, 1);
    // Forward distance is accepted at once in resync mode.
    assert_eq!(deliveries(&mut rig, 0x400, &[900_000]), [true]);
}

/// RFC 4951 F-DC-1: the recovery endpoint restarts its data channel Ns at
/// 0; the command is applied once, on the next packet.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn f_dc_1_reset_ns_command_restarts_sent_sequence_numbers() {
    let mut rig = seq_rig(RxMode::AcceptNew);
    let ns_of = |rig: &mut Rig| {
        let (action, out) = rig.run(Role::Attachment, &inner());
        assert_eq!(action, XDP_REDIRECT);
        // v4/UDP, no cookie: sublayer at 14 + 20 + 8 + 8.
        u32::from_be_bytes([out[50], out[51], out[52], out[53]]) & 0xff_ffff
    };
    assert_eq!((ns_of(&mut rig), ns_of(&mut rig), ns_of(&mut rig)), (0, 1, 2));
    let idx = rig.table.index_of(0x400).expect("idx");
    rig.table.post(idx, Command::ResetNs(0)).expect("post");
    assert_eq!((ns_of(&mut rig), ns_of(&mut rig)), (0, 1));
    // Applied once: a later packet does not reset again.
    assert_eq!(ns_of(&mut rig), 2);
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn bad_session_parameters_are_refused_and_leave_nothing() {
    let mut rig = Rig::new();
    let mut p = params(0x500, UDP, true);
    p.uplink_mtu = 1000;
    assert!(rig.table.add(&p).is_err(), "an IPv6 uplink below 1280 bytes");
    let mut p = params(0x500, UDP, false);
    p.sequencing = true;
    assert!(rig.table.add(&p).is_err(), "sequencing without sublayer");
    let mut p = params(0, UDP, false);
    p.peer_session_id = 5;
    assert!(rig.table.add(&p).is_err(), "session ID 0");
    assert!(rig.table.list().is_empty());
    rig.table.add(&params(0x500, UDP, false)).expect("valid");
    assert!(rig.table.add(&params(0x500, UDP, false)).is_err(), "duplicate ID");
    rig.table.remove(0x500).expect("remove");
    assert!(rig.table.list().is_empty());
    // A removed session's traffic is no longer ours.
    let f = wire_in(UDP, false, &l2tp(0x500, &[], None), &inner());
    assert_eq!(rig.run(Role::Uplink, &f).0, XDP_PASS);
}

/// `inner()` with an 802.1Q tag.
fn tagged(vid: u16) -> Vec<u8> {
    let f = inner();
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    t.extend_from_slice(&vid.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

/// Peer session ID in an encapsulated UDP/IPv4 frame.
fn sent_session(out: &[u8]) -> u32 {
    u32::from_be_bytes(out[46..50].try_into().expect("long enough"))
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn vlan_circuits_take_their_vid_and_the_port_session_the_rest() {
    let mut rig = Rig::new();
    let port = params(0x600, UDP, false);
    let mut v100 = params(0x601, UDP, false);
    v100.attach_vlan = 100;
    let mut v200 = params(0x602, UDP, false);
    v200.attach_vlan = 200;
    for p in [&port, &v100, &v200] {
        rig.table.add(p).expect("install");
    }
    // The same circuit twice is refused, and leaves the first in place.
    assert!(rig.table.add(&SessionParams { local_session_id: 0x603, ..v100.clone() }).is_err());
    let mut bad = params(0x604, UDP, false);
    bad.attach_vlan = 4095;
    assert!(rig.table.add(&bad).is_err(), "VLAN 4095 is reserved");
    for (frame, want) in [
        (inner(), port.peer_session_id),
        (tagged(100), v100.peer_session_id),
        (tagged(200), v200.peer_session_id),
        // A VLAN with no circuit of its own belongs to the port session.
        (tagged(300), port.peer_session_id),
        // Priority bits do not change the VLAN.
        (tagged(0xE000 | 100), v100.peer_session_id),
    ] {
        let (act, out) = rig.run(Role::Attachment, &frame);
        assert_eq!(act, XDP_REDIRECT);
        assert_eq!(sent_session(&out), want, "frame {:02x?}", &frame[12..16]);
        // RFC 4448 tagged mode: the customer frame crosses with its tag.
        assert_eq!(&out[out.len() - frame.len()..], &frame[..]);
    }
    // Without the port session, untagged frames and other VLANs are not ours.
    rig.table.remove(port.local_session_id).expect("remove");
    assert_eq!(rig.run(Role::Attachment, &inner()).0, XDP_PASS);
    assert_eq!(rig.run(Role::Attachment, &tagged(300)).0, XDP_PASS);
    assert_eq!(rig.run(Role::Attachment, &tagged(200)).0, XDP_REDIRECT);
    assert_eq!(rig.stats(v100.local_session_id).tx_packets, 2);
}

/// A customer frame of exactly `len` bytes.
fn customer_of(len: usize) -> Vec<u8> {
    let mut f = inner();
    f.resize(len.max(14), 0x5a);
    f.truncate(len);
    f
}

#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn ipv6_udp_checksum_is_computed_for_every_length_and_zero_where_configured() {
    let mut rig = Rig::new();
    let mut p = params(0x700, UDP, true);
    p.udp6_zero_checksum = false;
    // Room for full-size customer frames plus the outer headers.
    p.uplink_mtu = 3000;
    rig.table.add(&p).expect("IPv6 UDP with computed checksums");
    // Lengths that end on every remainder of the 512/256/.../4-byte
    // pieces and of 4, up to a full-size frame.
    for len in [60, 61, 62, 63, 64, 65, 127, 128, 129, 255, 511, 512, 513, 1000, 1023, 1497, 1498, 1499, 1500] {
        let frame = customer_of(len);
        let (act, out) = rig.run(Role::Attachment, &frame);
        assert_eq!(act, XDP_REDIRECT, "len {len}");
        let udp = &out[54..];
        assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len(), "UDP length, len {len}");
        assert_ne!(&udp[6..8], &[0, 0], "a checksum, len {len}");
        // Valid iff the sum over pseudo-header and datagram folds to zero.
        let pseudo = csum_fold(csum_fold(u32::from(IPPROTO_UDP) + udp.len() as u32, &out[22..38]), &out[38..54]);
        assert_eq!(csum_finish(csum_fold(pseudo, udp)), 0, "checksum of a {len}-byte frame: {:02x?}", &udp[6..8]);
        assert_eq!(&out[out.len() - len..], &frame[..]);
    }
    // Where configured, checksum 0 (RFC 6935/6936).
    rig.table.remove(0x700).expect("remove");
    rig.table.add(&params(0x701, UDP, true)).expect("zero-checksum session");
    let (_, out) = rig.run(Role::Attachment, &inner());
    assert_eq!(&out[60..62], &[0, 0]);
}

/// F-DC-3 resync after a failover is temporary: the configured receive
/// mode (here strict) comes back once the resync happened, or once `n`
/// packets arrived in sequence (the peer's Ns did not restart), so a
/// recovered session ends up exactly as configured.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn f_dc_3_resync_after_failover_returns_to_the_configured_mode() {
    use l2tp_common::session::rx_mode;
    let mut rig = seq_rig(RxMode::Strict { n: 4 });
    let idx = rig.table.index_of(0x400).expect("idx");
    assert_eq!(deliveries(&mut rig, 0x400, &[100, 101]), [true, true]);
    // The peer's Ns went on: three in sequence end the resync.
    rig.table.post(idx, Command::EnterResync { n: 3 }).expect("post");
    assert_eq!(deliveries(&mut rig, 0x400, &[102, 103]), [true, true]);
    assert_eq!(rig.table.state(idx).expect("state").mode, u32::from(rx_mode::RESYNC));
    assert_eq!(deliveries(&mut rig, 0x400, &[104]), [true]);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.mode, st.resync_n, st.resync_left), (u32::from(rx_mode::STRICT), 4, 0), "strict again");
    // Strict again: a jump ahead is dropped, not accepted.
    assert_eq!(deliveries(&mut rig, 0x400, &[200]), [false]);
    assert_eq!(deliveries(&mut rig, 0x400, &[105]), [true]);
    // The peer's Ns restarted: the resync happens, then strict again.
    rig.table.post(idx, Command::EnterResync { n: 3 }).expect("post");
    assert_eq!(deliveries(&mut rig, 0x400, &[0, 1, 2, 3]), [false, false, true, true]);
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.mode, st.rx_nr), (u32::from(rx_mode::STRICT), 4));
    assert_eq!(rig.stats(0x400).rx_resyncs, 1);
}

/// `SessionTable::update` changes a session in place: new cookie and
/// receive mode take effect, the slot, sequence state and counters stay.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn update_changes_a_session_in_place() {
    use l2tp_common::session::rx_mode;
    let mut rig = seq_rig(RxMode::AcceptNew);
    let idx = rig.table.index_of(0x400).expect("idx");
    assert_eq!(deliveries(&mut rig, 0x400, &[10, 11]), [true, true]);
    let mut p = params(0x400, UDP, false);
    p.sublayer = true;
    p.sequencing = true;
    p.rx_mode = RxMode::Strict { n: 2 };
    p.rx_cookie = Cookie::new(&[1, 2, 3, 4]).expect("cookie");
    assert_eq!(rig.table.update(&p).expect("update"), idx, "same slot");
    // The old frames (no cookie) are now refused, the new ones pass.
    let without = wire_in(UDP, false, &l2tp(0x400, &[], Some(0x4000_0000 | 12)), &inner());
    assert_eq!(rig.run(Role::Uplink, &without).0, XDP_DROP);
    let with = |ns: u32| wire_in(UDP, false, &l2tp(0x400, &[1, 2, 3, 4], Some(0x4000_0000 | ns)), &inner());
    assert_eq!(rig.run(Role::Uplink, &with(12)).0, XDP_REDIRECT, "Nr went on from 12");
    let st = rig.table.state(idx).expect("state");
    assert_eq!((st.mode, st.resync_n, st.rx_nr), (u32::from(rx_mode::STRICT), 2, 13));
    // Strict now: a jump ahead is dropped.
    assert_eq!(rig.run(Role::Uplink, &with(50)).0, XDP_DROP);
    assert_eq!(rig.stats(0x400).rx_packets, 3, "counters kept");
    // Unknown sessions and a taken circuit are refused, nothing changes.
    assert!(rig.table.update(&params(0x999, UDP, false)).is_err());
    let mut other = params(0x401, UDP, false);
    other.attach_vlan = 7;
    rig.table.add(&other).expect("a VLAN circuit of the same interface");
    p.attach_vlan = 7;
    assert!(rig.table.update(&p).is_err(), "VLAN 7 is taken");
    assert_eq!(rig.table.config(idx).expect("cfg").attach_vlan, 0, "unchanged");
}

/// The per-session resync policy: with `resync_deliver` the packets of a
/// run that is not yet confirmed are delivered, without it dropped.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn resync_deliver_policy_delivers_or_drops_the_unconfirmed_run() {
    for deliver in [false, true] {
        let mut rig = Rig::new();
        let mut p = params(0x410, UDP, false);
        p.sublayer = true;
        p.sequencing = true;
        p.resync_deliver = deliver;
        rig.table.add(&p).expect("session");
        let idx = rig.table.index_of(0x410).expect("idx");
        assert_eq!(deliveries(&mut rig, 0x410, &[5000, 5001]), [true, true]);
        rig.table.post(idx, Command::EnterResync { n: 3 }).expect("post");
        assert_eq!(deliveries(&mut rig, 0x410, &[0, 1, 2, 3]), [deliver, deliver, true, true], "deliver {deliver}");
        assert_eq!(rig.stats(0x410).rx_resyncs, 1);
    }
}

/// Remaining branches of decapsulation: the 24-bit wrap in strict and
/// resync modes, an IPv6 extension header and L2TPv2 data (passed), an
/// 802.1Q-tagged uplink frame (decapsulated), a session's frame on the
/// other carrier (dropped, malformed), and the SET_MODE and RESET_NR
/// commands.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn decap_branches_wrap_extension_headers_v2_vlan_carrier_and_commands() {
    // Wrap-around in strict and resync modes.
    for mode in [RxMode::Strict { n: 3 }, RxMode::Resync { n: 3, deliver_unconfirmed: false }] {
        let mut rig = seq_rig(mode);
        assert_eq!(deliveries(&mut rig, 0x400, &[0xff_fffe, 0xff_ffff, 0, 1]), [true; 4], "{mode:?}");
        assert_eq!(rig.stats(0x400).rx_out_of_seq, 0, "{mode:?}");
    }
    let mut rig = seq_rig(RxMode::AcceptNew);
    let idx = rig.table.index_of(0x400).expect("idx");
    let frame = |ns: u32| wire_in(UDP, false, &l2tp(0x400, &[], Some(0x4000_0000 | ns)), &inner());
    assert_eq!(rig.run(Role::Uplink, &frame(1)).0, XDP_REDIRECT);
    // 802.1Q-tagged on the uplink: found under the tag.
    let mut tagged = frame(2);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    let (act, out) = rig.run(Role::Uplink, &tagged);
    assert_eq!(act, XDP_REDIRECT);
    assert_eq!(out, inner(), "the customer frame, whatever the outer tag");
    // The same session ID over IP protocol 115 (it is a UDP session).
    let over_ip = wire_in(Encap::Ip, false, &l2tp(0x400, &[], Some(0x4000_0000 | 3)), &inner());
    assert_eq!(rig.run(Role::Uplink, &over_ip).0, XDP_DROP);
    assert_eq!(rig.stats(0x400).rx_malformed, 1);
    // An IPv6 extension header (hop-by-hop) in front of UDP: not parsed.
    let mut hbh = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    let udp = udp6_frame(1701, 1701, &l2tp(0x400, &[], None));
    hbh.extend_from_slice(&udp[54..]);
    let v6 = eth(MAC_B, MAC_A, ETH_P_IPV6, &ipv6(IP6_A, IP6_B, 0, &hbh));
    assert_eq!(rig.run(Role::Uplink, &v6).0, XDP_PASS);
    // L2TPv2 data (T=0, Ver=2): the kernel's business.
    let v2 = udp4_frame(1701, 1701, &[0x00, 0x02, 0x12, 0x34, 0x56, 0x78, 0xff, 0x03]);
    assert_eq!(rig.run(Role::Uplink, &v2).0, XDP_PASS);
    // SET_MODE to strict: a jump ahead is now dropped.
    rig.table.post(idx, Command::SetMode(RxMode::Strict { n: 2 })).expect("post");
    assert_eq!(deliveries(&mut rig, 0x400, &[3, 40]), [true, false]);
    // RESET_NR: the next packet sets Nr, wherever it is.
    rig.table.post(idx, Command::ResetNr).expect("post");
    assert_eq!(deliveries(&mut rig, 0x400, &[9000, 9001]), [true, true]);
    assert_eq!(rig.table.state(idx).expect("state").rx_nr, 9002);
}

/// RFC 8200 8.1 on receipt: the UDP checksum of an IPv6 frame is verified
/// (under an 802.1Q tag too), and checksum 0 is accepted only by sessions
/// configured for it (RFC 6935/6936). Bad frames are dropped and counted.
#[test]
#[ignore = "privileged: needs root and BPF; run by `cargo xtask test`"]
fn ipv6_udp_checksum_is_verified_on_decap() {
    for zero_ok in [false, true] {
        let mut rig = Rig::new();
        let mut p = params(0x720, UDP, true);
        p.udp6_zero_checksum = zero_ok;
        rig.table.add(&p).expect("session");
        let good = wire_in(UDP, true, &l2tp(0x720, &[], None), &inner());
        let mut bad = good.clone();
        bad[60] ^= 0x01;
        let mut zero = good.clone();
        zero[60..62].copy_from_slice(&[0, 0]);
        let mut tagged = good.clone();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        let runs = [
            (&good, XDP_REDIRECT),
            (&tagged, XDP_REDIRECT),
            (&bad, XDP_DROP),
            (&zero, if zero_ok { XDP_REDIRECT } else { XDP_DROP }),
        ];
        for (i, (frame, want)) in runs.iter().enumerate() {
            assert_eq!(rig.run(Role::Uplink, frame).0, *want, "case {i}, zero checksum accepted: {zero_ok}");
        }
        let st = rig.stats(0x720);
        assert_eq!(st.rx_malformed, if zero_ok { 1 } else { 2 }, "{st:?}");
        assert_eq!(st.rx_packets, if zero_ok { 3 } else { 2 }, "{st:?}");
    }
}
