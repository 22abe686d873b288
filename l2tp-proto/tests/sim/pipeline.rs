//! One pipeline per received datagram, in this order: header, tunnel,
//! authentication (RFC 3931 4.3), reliable channel (RFC 2661 5.8, RFC 3931
//! 4.2), decode and validate, state machine. Nothing acts on a message
//! that has not passed every earlier stage.

use crate::harness::*;

/// A message from the peer's address with the tunnel's ID, without a
/// Message Digest, carrying an unknown AVP with M=1.
fn undigested_hello_with_unknown_mandatory_avp(pair: &Pair, ns: u16, nr: u16) -> Vec<u8> {
    let msg = Message::new(
        MessageType::Hello,
        vec![Avp { flags: AvpFlags::MANDATORY, value: AvpValue::Unknown { vendor: 9, attr: 1, value: vec![1] } }],
    );
    ControlMessage { header: a_to_b_header(pair, ns, nr), message: Some(msg) }
        .encode(Transport::Udp, None)
        .expect("encode")
}

fn stopccns(pair: &Pair, i: usize, from: usize) -> Vec<ControlMessage> {
    pair.sent[i][from..]
        .iter()
        .filter_map(|(_, b)| ControlMessage::decode(Transport::Udp, b, None).ok())
        .filter(|c| c.message.as_ref().is_some_and(|m| m.msg_type == MessageType::StopCcn))
        .collect()
}

/// Defect 1 / RFC 3931 4.3 / RFC 4951 F-SEC-1: on an authenticated L2TPv3
/// tunnel, a message that does not authenticate is dropped before anything
/// in it is used, even when it would not decode: no StopCCN, the tunnel
/// stays up.
#[test]
fn f_sec_1_unauthenticated_message_that_would_not_decode_is_dropped_and_the_tunnel_stays_up() {
    let (mut pair, t) = establish(Version::V3, Some(b"v3-secret"));
    assert_eq!(pair.tunnel_up(0), vec![t]);
    let (ns, nr) = next_from(&pair, 0);
    let before = pair.ends[1].stats().auth_failures;
    let from = pair.sent[1].len();
    let bytes = undigested_hello_with_unknown_mandatory_avp(&pair, ns, nr);
    pair.inject(1, &bytes);
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.ends[1].stats().auth_failures, before + 1);
    assert!(stopccns(&pair, 1, from).is_empty(), "B sent StopCCN for an unauthenticated message");
    assert!(!has_down(&pair, 1), "{:?}", pair.events[1]);
    let (tb, _) = pair.ends[1].tunnels()[0];
    assert_eq!(pair.ends[1].tunnel_info(tb).map(|i| i.state), Some(TunnelStatus::Established));
}

/// Defect 2 / RFC 2661 5.8, RFC 3931 4.2: a message that fails to decode
/// still goes through the reliable channel: it is acknowledged, a copy
/// ahead of the expected Ns is held (not acted on), and its StopCCN is
/// given once, when it is delivered in order, whatever the duplicates.
#[test]
fn undecodable_message_is_sequenced_acknowledged_and_answered_once() {
    let (mut pair, _) = establish(Version::V3, None);
    let (ns, nr) = next_from(&pair, 0);
    let from = pair.sent[1].len();
    // First a copy one ahead of the expected Ns: held, so nothing happens.
    let ahead = undigested_hello_with_unknown_mandatory_avp(&pair, ns.wrapping_add(1), nr);
    pair.inject(1, &ahead);
    assert!(stopccns(&pair, 1, from).is_empty(), "acted on a message out of order");
    // Then the expected one, three times: delivered once.
    let bytes = undigested_hello_with_unknown_mandatory_avp(&pair, ns, nr);
    for _ in 0..3 {
        pair.inject(1, &bytes);
    }
    pair.blackhole = [true, false];
    pair.run(Duration::from_millis(200));
    let stops = stopccns(&pair, 1, from);
    let distinct: std::collections::BTreeSet<u16> = stops.iter().map(|c| c.header.ns).collect();
    assert_eq!(distinct.len(), 1, "one StopCCN, whatever the copies: {stops:?}");
    let rc = stops[0].message.as_ref().and_then(|m| {
        m.find(|v| match v {
            AvpValue::ResultCode(r) => Some((r.result, r.error)),
            _ => None,
        })
    });
    assert_eq!(rc, Some((2, Some(8))));
    // Both copies (ns and the held ns+1) were received: the StopCCN
    // acknowledges them.
    assert_eq!(stops[0].header.nr, ns.wrapping_add(2), "the undecodable messages were not acknowledged");
}
