//! The partner channel's security: Noise `NNpsk0` (X25519, ChaCha20-Poly1305,
//! BLAKE2s) keyed with a pre-shared key from a file.
//!
//! - Authenticated: only a holder of the key completes the handshake (the
//!   key is mixed in before the first message, whose payload carries an
//!   authentication tag).
//! - Encrypted: session cookies travel on this channel, and cookies are
//!   secrets.
//! - Replay-protected: each connection has fresh ephemeral keys, and within
//!   it every frame has the next implicit nonce, so a replayed, reordered or
//!   altered frame fails to decrypt and ends the connection.
//!
//! No key material ever appears in an error.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use snow::{HandshakeState, TransportState};

const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake: partners of another protocol version fail it.
const PROLOGUE: &[u8] = b"l2tp-failover partner channel v1";
/// At least this many bytes of key material in the key file.
pub const MIN_KEY_BYTES: usize = 16;

/// Why the channel cannot go on. The connection is closed on any of them.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("the partner key file holds {0} bytes; at least {MIN_KEY_BYTES} are needed")]
    WeakKey(usize),
    #[error("partner handshake failed (wrong key, or not a partner)")]
    Handshake,
    #[error("partner frame does not authenticate (altered, replayed or out of order)")]
    Frame,
    #[error("partner channel used out of turn: {0}")]
    State(&'static str),
    #[error("partner message too long for a frame")]
    TooLong,
}

/// The 32-byte Noise PSK derived from the contents of the key file
/// (surrounding whitespace ignored): HMAC-SHA256 with a fixed label, so any
/// file of at least [`MIN_KEY_BYTES`] bytes of secret gives a uniform key.
pub fn psk_from_file_contents(contents: &[u8]) -> Result<[u8; 32], SecureError> {
    let trimmed = contents.trim_ascii();
    if trimmed.len() < MIN_KEY_BYTES {
        return Err(SecureError::WeakKey(trimmed.len()));
    }
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(b"l2tp-failover partner psk v1").map_err(|_| SecureError::Handshake)?;
    mac.update(trimmed);
    Ok(mac.finalize().into_bytes().into())
}

/// What a received frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The responder's handshake answer, to send; the channel is now
    /// established on the responder.
    Reply(Vec<u8>),
    /// The initiator's handshake completed.
    Established,
    /// A message's plaintext.
    Message(Vec<u8>),
}

enum State {
    Handshake(Box<HandshakeState>),
    Transport(Box<TransportState>),
    Failed,
}

/// One end of a partner connection.
pub struct SecureChannel {
    state: State,
    initiator: bool,
}

impl std::fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureChannel")
            .field("initiator", &self.initiator)
            .field("established", &self.is_established())
            .finish_non_exhaustive()
    }
}

fn builder(psk: &[u8; 32]) -> Result<snow::Builder<'_>, SecureError> {
    let params = PATTERN.parse().map_err(|_| SecureError::Handshake)?;
    snow::Builder::new(params)
        .prologue(PROLOGUE)
        .map_err(|_| SecureError::Handshake)?
        .psk(0, psk)
        .map_err(|_| SecureError::Handshake)
}

impl SecureChannel {
    /// The connecting end, and the first handshake frame payload to send.
    pub fn initiator(psk: &[u8; 32]) -> Result<(Self, Vec<u8>), SecureError> {
        let mut hs = builder(psk)?.build_initiator().map_err(|_| SecureError::Handshake)?;
        let mut buf = vec![0u8; 256];
        let n = hs.write_message(&[], &mut buf).map_err(|_| SecureError::Handshake)?;
        buf.truncate(n);
        Ok((Self { state: State::Handshake(Box::new(hs)), initiator: true }, buf))
    }

    /// The accepting end.
    pub fn responder(psk: &[u8; 32]) -> Result<Self, SecureError> {
        let hs = builder(psk)?.build_responder().map_err(|_| SecureError::Handshake)?;
        Ok(Self { state: State::Handshake(Box::new(hs)), initiator: false })
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Transport(_))
    }

    /// Feeds one received frame payload. Any error leaves the channel
    /// failed for good.
    pub fn receive(&mut self, payload: &[u8]) -> Result<Received, SecureError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let mut out = vec![0u8; payload.len().max(256)];
        match state {
            State::Handshake(mut hs) => {
                hs.read_message(payload, &mut out).map_err(|_| SecureError::Handshake)?;
                let reply = if self.initiator {
                    None
                } else {
                    let n = hs.write_message(&[], &mut out).map_err(|_| SecureError::Handshake)?;
                    Some(out[..n].to_vec())
                };
                if !hs.is_handshake_finished() {
                    return Err(SecureError::Handshake);
                }
                let t = hs.into_transport_mode().map_err(|_| SecureError::Handshake)?;
                self.state = State::Transport(Box::new(t));
                Ok(reply.map_or(Received::Established, Received::Reply))
            }
            State::Transport(mut t) => {
                let n = t.read_message(payload, &mut out).map_err(|_| SecureError::Frame)?;
                out.truncate(n);
                self.state = State::Transport(t);
                Ok(Received::Message(out))
            }
            State::Failed => Err(SecureError::State("the channel failed earlier")),
        }
    }

    /// Encrypts one message for the established channel.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SecureError> {
        let State::Transport(t) = &mut self.state else { return Err(SecureError::State("not established")) };
        if plaintext.len() > crate::wire::MAX_PLAINTEXT {
            return Err(SecureError::TooLong);
        }
        let mut out = vec![0u8; plaintext.len() + 16];
        let n = t.write_message(plaintext, &mut out).map_err(|_| SecureError::Frame)?;
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &[u8], b: &[u8]) -> Result<(SecureChannel, SecureChannel), SecureError> {
        let (ka, kb) = (psk_from_file_contents(a)?, psk_from_file_contents(b)?);
        let (mut i, first) = SecureChannel::initiator(&ka)?;
        let mut r = SecureChannel::responder(&kb)?;
        let Received::Reply(second) = r.receive(&first)? else { return Err(SecureError::Handshake) };
        assert_eq!(i.receive(&second)?, Received::Established);
        Ok((i, r))
    }

    #[test]
    fn partners_with_the_same_key_exchange_messages_both_ways() {
        let (mut i, mut r) = pair(b"correct horse battery staple\n", b"  correct horse battery staple").expect("pair");
        for n in 0..3u8 {
            let c = i.seal(&[n; 40]).expect("seal");
            assert_ne!(&c[..40], &[n; 40][..], "encrypted");
            assert_eq!(r.receive(&c).expect("open"), Received::Message(vec![n; 40]));
            let c = r.seal(b"ack").expect("seal");
            assert_eq!(i.receive(&c).expect("open"), Received::Message(b"ack".to_vec()));
        }
    }

    #[test]
    fn a_wrong_key_fails_the_handshake() {
        assert!(matches!(
            pair(b"correct horse battery staple", b"wrong horse battery staple!"),
            Err(SecureError::Handshake)
        ));
        assert!(matches!(psk_from_file_contents(b"  short \n"), Err(SecureError::WeakKey(5))));
    }

    #[test]
    fn altered_replayed_or_reordered_frames_are_refused() {
        let (mut i, mut r) = pair(b"0123456789abcdef", b"0123456789abcdef").expect("pair");
        let (c1, c2) = (i.seal(b"one").expect("1"), i.seal(b"two").expect("2"));
        // Reordered: the second frame first.
        let (mut i2, mut r2) = pair(b"0123456789abcdef", b"0123456789abcdef").expect("pair");
        let (_d1, d2) = (i2.seal(b"one").expect("1"), i2.seal(b"two").expect("2"));
        assert!(matches!(r2.receive(&d2), Err(SecureError::Frame)));
        // Replayed.
        assert_eq!(r.receive(&c1).expect("one"), Received::Message(b"one".to_vec()));
        assert!(matches!(r.receive(&c1), Err(SecureError::Frame)));
        // A failed channel stays failed.
        assert!(r.receive(&c2).is_err());
        // Altered.
        let (mut i3, mut r3) = pair(b"0123456789abcdef", b"0123456789abcdef").expect("pair");
        let mut e = i3.seal(b"cookie: 0xdeadbeef").expect("seal");
        e[3] ^= 1;
        assert!(matches!(r3.receive(&e), Err(SecureError::Frame)));
        // Not established yet: nothing is sealed.
        let k = psk_from_file_contents(b"0123456789abcdef").expect("k");
        assert!(SecureChannel::responder(&k).expect("r").seal(b"x").is_err());
        // Garbage as a first handshake frame.
        assert!(matches!(SecureChannel::responder(&k).expect("r").receive(b"\x00\x01"), Err(SecureError::Handshake)));
    }
}
