//! Control messages captured from Debian's xl2tpd 1.3.18 (LAC and LNS, tunnel
//! challenge authentication with the secret below; see
//! `fixtures/xl2tpd/README.md` and `tests/tools/capture-xl2tpd.sh`). Every
//! message decodes, passes the message table, carries what its type needs,
//! and re-encodes to the captured bytes.

use std::path::Path;

use l2tp_proto::wire::{rules::validate, AvpValue, ControlMessage, MessageType, Transport, Version};
use md5::{Digest, Md5};

const SECRET: &[u8] = b"fixture-secret";

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xl2tpd");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".hex")?.to_owned();
            let text = std::fs::read_to_string(e.path()).ok()?;
            let text = text.trim();
            let bytes =
                (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect();
            Some((stem, bytes))
        })
        .collect();
    out.sort();
    out
}

/// "07-lac2lns-ICCN" -> "ICCN"
fn kind(stem: &str) -> &str {
    stem.rsplit('-').next().unwrap_or_default()
}

#[test]
fn every_captured_message_decodes_validates_and_re_encodes() {
    let all = fixtures();
    let kinds: Vec<&str> = all.iter().map(|(s, _)| kind(s)).collect();
    for want in ["SCCRQ", "SCCRP", "SCCCN", "HELLO", "ICRQ", "ICRP", "ICCN", "CDN", "StopCCN", "ZLB"] {
        assert!(kinds.contains(&want), "no {want} fixture");
    }
    for (stem, bytes) in &all {
        let msg = ControlMessage::decode(Transport::Udp, bytes, Some(SECRET)).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(msg.header.version, Version::V2, "{stem}");
        match (&msg.message, kind(stem)) {
            (None, "ZLB") => {}
            (Some(m), k) => {
                assert_eq!(m.msg_type.name(), k.to_uppercase().replace("STOPCCN", "StopCCN"), "{stem}");
                validate(Version::V2, m).unwrap_or_else(|e| panic!("{stem}: {e}"));
            }
            (None, k) => panic!("{stem}: ZLB where {k} was captured"),
        }
        let again = msg.encode(Transport::Udp, Some(SECRET)).expect("encode");
        assert_eq!(&again, bytes, "{stem}: re-encoding differs");
    }
}

/// RFC 2661 4.2 / RFC 1994: Challenge Response = MD5(message type octet ||
/// secret || challenge). The SCCRP answers the SCCRQ's challenge, the SCCCN
/// the SCCRP's.
#[test]
fn captured_challenge_responses_verify_with_the_secret() {
    let all = fixtures();
    let get = |k: &str| {
        let (_, bytes) = all.iter().find(|(s, _)| kind(s) == k).expect(k);
        ControlMessage::decode(Transport::Udp, bytes, Some(SECRET)).expect("decode").message.expect("message")
    };
    let challenge =
        |m: &l2tp_proto::wire::Message| m.find(|v| if let AvpValue::Challenge(c) = v { Some(c.clone()) } else { None });
    let response = |m: &l2tp_proto::wire::Message| {
        m.find(|v| if let AvpValue::ChallengeResponse(r) = v { Some(*r) } else { None })
    };
    let (sccrq, sccrp, scccn) = (get("SCCRQ"), get("SCCRP"), get("SCCCN"));
    for (challenger, answer, t) in [(&sccrq, &sccrp, MessageType::Sccrp), (&sccrp, &scccn, MessageType::Scccn)] {
        let c = challenge(challenger).expect("challenge");
        let mut h = Md5::new();
        h.update([t.to_u16() as u8]);
        h.update(SECRET);
        h.update(&c);
        let want: [u8; 16] = h.finalize().into();
        assert_eq!(response(answer), Some(want), "{t}");
    }
}

/// What xl2tpd sends that matters for interop: M=0 on Firmware Revision and
/// Vendor Name, a Random Vector in every message but HELLO, Receive Window 4.
#[test]
fn xl2tpd_sccrq_contents() {
    let all = fixtures();
    let (_, bytes) = all.iter().find(|(s, _)| kind(s) == "SCCRQ").expect("SCCRQ");
    let m = ControlMessage::decode(Transport::Udp, bytes, Some(SECRET)).expect("decode").message.expect("message");
    let flag = |attr: u16| m.avps.iter().find(|a| a.value.key() == (0, attr)).map(|a| a.flags.mandatory);
    assert_eq!(flag(6), Some(false), "Firmware Revision M=0");
    assert_eq!(flag(8), Some(false), "Vendor Name M=0");
    assert_eq!(m.find(|v| if let AvpValue::ReceiveWindowSize(w) = v { Some(*w) } else { None }), Some(4));
    assert!(m.find(|v| if let AvpValue::RandomVector(r) = v { Some(r.len()) } else { None }).is_some());
}
