//! Hidden AVPs: RFC 2661 section 4.3 and RFC 3931 section 5.3.
//!
//! ```text
//! b_1 = MD5(A + S + RV)   c_1 = p_1 xor b_1
//! b_i = MD5(S + c_i-1)    c_i = p_i xor b_i
//! ```
//! `A` is the 2-octet attribute type, `RV` the value of the last Random
//! Vector AVP before the hidden AVP, and `S` the shared secret (L2TPv2) or
//! the key derived from it as HMAC-MD5(secret, 0x01) (L2TPv3, 5.3). The
//! plaintext is the Hidden AVP Subformat: the 2-octet original length, the
//! original value and optional padding. A last chunk shorter than 16 octets
//! is XORed with the first octets of its hash only.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use super::header::Version;

/// HMAC-MD5 (RFC 2104).
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let Ok(mut mac) = <Hmac<Md5> as Mac>::new_from_slice(key) else { unreachable!("HMAC accepts keys of any length") };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key that goes into the hash for `version`.
pub fn hiding_key(version: Version, secret: &[u8]) -> Vec<u8> {
    match version {
        Version::V2 => secret.to_vec(),
        // RFC 3931 5.3: shared_key = HMAC_MD5 (shared_secret, 1)
        Version::V3 => hmac_md5(secret, &[1]).to_vec(),
    }
}

fn xor_stream(attr: u16, key: &[u8], rv: &[u8], data: &mut [u8], encrypt: bool) {
    let mut prev: Option<[u8; 16]> = None;
    for chunk in data.chunks_mut(16) {
        let mut h = Md5::new();
        match prev {
            None => {
                h.update(attr.to_be_bytes());
                h.update(key);
                h.update(rv);
            }
            Some(c) => {
                h.update(key);
                h.update(c);
            }
        }
        let b = h.finalize();
        let mut cipher = [0u8; 16];
        for (i, byte) in chunk.iter_mut().enumerate() {
            if !encrypt {
                cipher[i] = *byte;
            }
            *byte ^= b[i];
            if encrypt {
                cipher[i] = *byte;
            }
        }
        prev = Some(cipher);
    }
}

/// Hides `value` of attribute `attr`: returns the new AVP value (subformat
/// with `padding` appended, XORed). `None` if the value is too long for an
/// AVP.
pub fn hide(attr: u16, key: &[u8], rv: &[u8], value: &[u8], padding: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(value.len()).ok()?;
    let mut sub = Vec::with_capacity(2 + value.len() + padding.len());
    sub.extend_from_slice(&len.to_be_bytes());
    sub.extend_from_slice(value);
    sub.extend_from_slice(padding);
    xor_stream(attr, key, rv, &mut sub, true);
    Some(sub)
}

/// Recovers the original value of a hidden AVP. `None` if the recovered
/// length field does not fit the AVP (wrong secret or corrupt AVP).
pub fn unhide(attr: u16, key: &[u8], rv: &[u8], hidden: &[u8]) -> Option<Vec<u8>> {
    let mut sub = hidden.to_vec();
    xor_stream(attr, key, rv, &mut sub, false);
    let len = usize::from(u16::from_be_bytes([*sub.first()?, *sub.get(1)?]));
    sub.get(2..2 + len).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hide_unhide_round_trip_all_lengths() {
        for v in [Version::V2, Version::V3] {
            let key = hiding_key(v, b"s3cret");
            for len in 0..70usize {
                let value: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
                for pad in [&[][..], &[1, 2, 3][..], &[9; 16][..]] {
                    let h = hide(7, &key, b"rv-bytes", &value, pad).expect("fits");
                    assert_eq!(h.len(), 2 + len + pad.len());
                    assert_eq!(unhide(7, &key, b"rv-bytes", &h).expect("unhides"), value);
                }
            }
        }
    }

    #[test]
    fn first_block_matches_rfc_construction() {
        // b_1 = MD5(A + S + RV), c_1 = p_1 xor b_1, computed by hand.
        let (attr, secret, rv) = (0x0009u16, b"abc", [0x11u8, 0x22, 0x33, 0x44]);
        let value = [0x12, 0x34];
        let mut h = Md5::new();
        h.update([0x00, 0x09]);
        h.update(secret);
        h.update(rv);
        let b1 = h.finalize();
        let want = [b1[0], 0x02 ^ b1[1], 0x12 ^ b1[2], 0x34 ^ b1[3]];
        assert_eq!(hide(attr, secret, &rv, &value, &[]).expect("fits"), want);
    }

    #[test]
    fn second_block_chains_on_first_ciphertext() {
        let (attr, secret, rv) = (7u16, b"k", [1u8; 16]);
        let value = [0xABu8; 20]; // subformat 22 octets: two blocks
        let hidden = hide(attr, secret, &rv, &value, &[]).expect("fits");
        let mut h = Md5::new();
        h.update(secret);
        h.update(&hidden[..16]);
        let b2 = h.finalize();
        for i in 0..6 {
            assert_eq!(hidden[16 + i], 0xAB ^ b2[i]);
        }
    }

    #[test]
    fn v3_key_is_hmac_md5_of_one() {
        let k = hiding_key(Version::V3, b"secret");
        let mut mac = <Hmac<Md5> as Mac>::new_from_slice(b"secret").expect("key");
        mac.update(&[1]);
        assert_eq!(k, mac.finalize().into_bytes().to_vec());
        assert_eq!(hiding_key(Version::V2, b"secret"), b"secret");
    }

    #[test]
    fn wrong_secret_does_not_panic() {
        let h = hide(7, b"right", b"rv", b"value", &[]).expect("fits");
        // With a wrong key the length field is garbage: None or some bytes.
        let _ = unhide(7, b"wrong", b"rv", &h);
        assert_eq!(unhide(7, b"k", b"rv", &[]), None);
        assert_eq!(unhide(7, b"k", b"rv", &[1]), None);
    }
}
