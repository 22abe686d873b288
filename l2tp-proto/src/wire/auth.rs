//! L2TPv3 control message authentication (RFC 3931 4.3 and 5.4.1): the
//! Message Digest AVP right after the Message Type AVP, an HMAC over the
//! whole control message (digest bytes zeroed) keyed with
//! HMAC-MD5(secret, 2), with both ends' nonces except in the SCCRQ.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;

use super::{avp::digest_type, be16, header::Transport, hidden::hmac_md5};

/// RFC 3931 5.4.1: "shared_key = HMAC_MD5 (shared_secret, 2)".
pub fn cma_key(secret: &[u8]) -> [u8; 16] {
    hmac_md5(secret, &[2])
}

/// Start of the control message (the T bit) in a datagram.
fn start(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Ip => 4,
    }
}

/// Digest type and byte range of the digest in the first Message Digest
/// AVP, which must directly follow the Message Type AVP ("MUST be placed
/// immediately after the Message Type AVP").
fn digest_field(transport: Transport, datagram: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    let msg = start(transport);
    let mt = msg + 12;
    let mt_len = usize::from(be16(datagram, mt)? & 0x03FF);
    if mt_len != 8 {
        return None;
    }
    let md = mt + mt_len;
    let md_len = usize::from(be16(datagram, md)? & 0x03FF);
    if be16(datagram, md + 2)? != 0 || be16(datagram, md + 4)? != 59 {
        return None;
    }
    let dt = *datagram.get(md + 6)?;
    let want = match dt {
        digest_type::HMAC_MD5 => 16,
        digest_type::HMAC_SHA1 => 20,
        _ => return None,
    };
    if md_len != 7 + want || datagram.len() < md + md_len {
        return None;
    }
    Some((dt, md + 7..md + 7 + want))
}

/// A Message Digest key with its HMAC states prepared: RFC 2104's padded
/// key blocks are hashed once (per tunnel), not for every message.
#[derive(Clone)]
pub struct DigestKey {
    md5: Hmac<Md5>,
    sha1: Hmac<Sha1>,
}

impl DigestKey {
    pub fn new(key: &[u8]) -> Self {
        let (Ok(md5), Ok(sha1)) = (<Hmac<Md5> as Mac>::new_from_slice(key), <Hmac<Sha1> as Mac>::new_from_slice(key))
        else {
            unreachable!("HMAC accepts keys of any length")
        };
        Self { md5, sha1 }
    }

    fn mac(&self, dt: u8, parts: &[&[u8]]) -> Option<Vec<u8>> {
        match dt {
            digest_type::HMAC_MD5 => {
                let mut m = self.md5.clone();
                parts.iter().for_each(|p| m.update(p));
                Some(m.finalize().into_bytes().to_vec())
            }
            digest_type::HMAC_SHA1 => {
                let mut m = self.sha1.clone();
                parts.iter().for_each(|p| m.update(p));
                Some(m.finalize().into_bytes().to_vec())
            }
            _ => None,
        }
    }
}

/// Key material stays out of logs.
impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// Computes and writes the digest of an encoded datagram whose Message
/// Digest AVP (zeroed) follows the Message Type AVP. `nonces` are the
/// sender's own nonce and the peer's, `None` for an SCCRQ. False if the
/// datagram has no digest field.
pub fn sign(transport: Transport, datagram: &mut [u8], key: &[u8], nonces: Option<(&[u8], &[u8])>) -> bool {
    sign_with(transport, datagram, &DigestKey::new(key), nonces)
}

/// [`sign`] with a prepared key.
pub fn sign_with(transport: Transport, datagram: &mut [u8], key: &DigestKey, nonces: Option<(&[u8], &[u8])>) -> bool {
    let Some((dt, range)) = digest_field(transport, datagram) else { return false };
    datagram[range.clone()].fill(0);
    let body = &datagram[start(transport)..];
    let digest = match nonces {
        Some((local, remote)) => key.mac(dt, &[local, remote, body]),
        None => key.mac(dt, &[body]),
    };
    match digest {
        Some(d) => {
            datagram[range].copy_from_slice(&d);
            true
        }
        None => false,
    }
}

/// Checks a received datagram. `nonces` are the sender's nonce and ours
/// (the receiver computes "with local and remote nonces swapped"), `None`
/// for an SCCRQ. Constant-time comparison.
pub fn verify(transport: Transport, datagram: &[u8], key: &[u8], nonces: Option<(&[u8], &[u8])>) -> bool {
    verify_with(transport, datagram, &DigestKey::new(key), nonces)
}

/// [`verify`] with a prepared key.
pub fn verify_with(transport: Transport, datagram: &[u8], key: &DigestKey, nonces: Option<(&[u8], &[u8])>) -> bool {
    let Some((dt, range)) = digest_field(transport, datagram) else { return false };
    let mut copy = datagram.to_vec();
    copy[range.clone()].fill(0);
    let body = &copy[start(transport)..];
    let want = match nonces {
        Some((sender, receiver)) => key.mac(dt, &[sender, receiver, body]),
        None => key.mac(dt, &[body]),
    };
    let got = &datagram[range];
    want.is_some_and(|w| w.len() == got.len() && w.iter().zip(got).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Avp, AvpFlags, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Version};

    fn hello(dt: u8, transport: Transport) -> Vec<u8> {
        let len = if dt == 0 { 16 } else { 20 };
        let msg = Message::new(
            MessageType::Hello,
            vec![Avp {
                flags: AvpFlags::MANDATORY,
                value: AvpValue::MessageDigest { digest_type: dt, digest: vec![0; len] },
            }],
        );
        ControlMessage {
            header: ControlHeader { version: Version::V3, tunnel_id: 9, session_id: 0, ns: 1, nr: 2 },
            message: Some(msg),
        }
        .encode(transport, None)
        .expect("encode")
    }

    #[test]
    fn sign_then_verify_md5_and_sha1_over_udp_and_ip() {
        let key = cma_key(b"secret");
        for dt in [digest_type::HMAC_MD5, digest_type::HMAC_SHA1] {
            for t in [Transport::Udp, Transport::Ip] {
                let mut d = hello(dt, t);
                assert!(sign(t, &mut d, &key, Some((b"ours", b"theirs"))));
                assert!(verify(t, &d, &key, Some((b"ours", b"theirs"))));
                // Wrong key, swapped nonces, or a flipped bit: rejected.
                assert!(!verify(t, &d, &cma_key(b"other"), Some((b"ours", b"theirs"))));
                assert!(!verify(t, &d, &key, Some((b"theirs", b"ours"))));
                let last = d.len() - 1;
                d[last] ^= 1;
                assert!(!verify(t, &d, &key, Some((b"ours", b"theirs"))));
            }
        }
    }

    #[test]
    fn digest_is_hmac_over_nonces_and_message_with_zeroed_digest() {
        let key = cma_key(b"k");
        let mut d = hello(digest_type::HMAC_MD5, Transport::Udp);
        let zeroed = d.clone();
        assert!(sign(Transport::Udp, &mut d, &key, Some((b"a", b"b"))));
        let mut m = <Hmac<Md5> as Mac>::new_from_slice(&key).expect("key");
        m.update(b"a");
        m.update(b"b");
        m.update(&zeroed);
        assert_eq!(&d[27..43], &m.finalize().into_bytes()[..]);
        assert_eq!(cma_key(b"k"), hmac_md5(b"k", &[2]));
    }

    #[test]
    fn a_prepared_key_signs_message_after_message_as_the_plain_key_does() {
        let key = cma_key(b"secret");
        let prepared = DigestKey::new(&key);
        for dt in [digest_type::HMAC_MD5, digest_type::HMAC_SHA1] {
            for nonces in [None, Some((&b"ours"[..], &b"theirs"[..]))] {
                for t in [Transport::Udp, Transport::Ip] {
                    let (mut plain, mut with) = (hello(dt, t), hello(dt, t));
                    assert!(sign(t, &mut plain, &key, nonces) && sign_with(t, &mut with, &prepared, nonces));
                    assert_eq!(plain, with, "the same digest, whatever was signed before");
                    assert!(verify_with(t, &plain, &prepared, nonces) && verify(t, &with, &key, nonces));
                }
            }
        }
        assert_eq!(format!("{prepared:?}"), "DigestKey(..)", "no key material in logs");
    }

    #[test]
    fn messages_without_a_digest_after_the_message_type_fail() {
        let plain = ControlMessage {
            header: ControlHeader { version: Version::V3, tunnel_id: 9, session_id: 0, ns: 1, nr: 2 },
            message: Some(Message::new(MessageType::Hello, vec![])),
        }
        .encode(Transport::Udp, None)
        .expect("encode");
        assert!(!verify(Transport::Udp, &plain, &cma_key(b"k"), None));
        assert!(!verify(Transport::Udp, &[], &cma_key(b"k"), None));
        let mut short = plain.clone();
        assert!(!sign(Transport::Udp, &mut short, &cma_key(b"k"), None));
    }
}
