//! L2TP headers: control (v2, v3 over UDP, v3 over IP) and data (v2, v3
//! over UDP and IP with cookie and default L2-Specific Sublayer).
//!
//! Layouts: RFC 2661 section 3.1, RFC 3931 sections 3.2.1, 4.1.1.1,
//! 4.1.1.2, 4.1.2.1 and 4.6. The bit values are shared with the XDP
//! program through `l2tp_common::wire`.

use l2tp_common::wire::{HDR_L, HDR_O, HDR_P, HDR_S, HDR_T, HDR_VER_MASK, V3_SEQ_MASK, V3_SUBLAYER_S};

use super::{be16, be32, HeaderError};

/// L2TP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub const fn number(self) -> u16 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

/// How L2TP is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (port 1701 by default), v2 or v3.
    Udp,
    /// IP protocol 115, v3 only.
    Ip,
}

/// Length of a control header, without the 4-byte zero Session ID of v3
/// over IP.
pub const CONTROL_HLEN_V2: usize = 12;
pub const CONTROL_HLEN_V3: usize = 12;

/// The header of a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlHeader {
    pub version: Version,
    /// v2: the recipient's Tunnel ID (16 bits); v3: the recipient's Control
    /// Connection ID.
    pub tunnel_id: u32,
    /// v2: the recipient's Session ID (0 for tunnel messages). Always 0 in
    /// v3, whose header has no such field.
    pub session_id: u16,
    pub ns: u16,
    pub nr: u16,
}

/// What the first bytes of a datagram say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Control(Version),
    Data(Version),
}

/// Classifies an L2TP datagram (UDP payload, or IP-115 payload) without
/// parsing it further.
pub fn classify(transport: Transport, buf: &[u8]) -> Result<Kind, HeaderError> {
    match transport {
        Transport::Udp => {
            let flags = be16(buf, 0).ok_or(HeaderError::Truncated)?;
            let version = version_of(flags)?;
            Ok(if flags & HDR_T != 0 { Kind::Control(version) } else { Kind::Data(version) })
        }
        Transport::Ip => {
            // RFC 3931 4.1.1.2: Session ID 0 marks a control message.
            let session = be32(buf, 0).ok_or(HeaderError::Truncated)?;
            if session == 0 {
                let flags = be16(buf, 4).ok_or(HeaderError::Truncated)?;
                match version_of(flags)? {
                    Version::V3 => Ok(Kind::Control(Version::V3)),
                    Version::V2 => Err(HeaderError::UnsupportedVersion(2)),
                }
            } else {
                Ok(Kind::Data(Version::V3))
            }
        }
    }
}

fn version_of(flags: u16) -> Result<Version, HeaderError> {
    match flags & HDR_VER_MASK {
        2 => Ok(Version::V2),
        3 => Ok(Version::V3),
        // RFC 2661 3.1: "Ver ... Packets received with an unknown Ver field
        // MUST be discarded." (1 is L2F.)
        v => Err(HeaderError::UnsupportedVersion(v as u8)),
    }
}

impl ControlHeader {
    /// Bytes the header occupies on the wire for `transport`.
    pub const fn wire_len(transport: Transport) -> usize {
        match transport {
            Transport::Udp => CONTROL_HLEN_V2,
            Transport::Ip => 4 + CONTROL_HLEN_V3,
        }
    }

    /// Parses the control header at the start of `buf` and returns it with
    /// the message body (the AVPs; empty for a ZLB/ACK-less message), cut at
    /// the header's Length field. Bytes past Length are ignored.
    pub fn parse(transport: Transport, buf: &[u8]) -> Result<(Self, &[u8]), HeaderError> {
        let start = match transport {
            Transport::Udp => 0,
            Transport::Ip => {
                if be32(buf, 0).ok_or(HeaderError::Truncated)? != 0 {
                    return Err(HeaderError::NotControl);
                }
                4
            }
        };
        let msg = buf.get(start..).ok_or(HeaderError::Truncated)?;
        let flags = be16(msg, 0).ok_or(HeaderError::Truncated)?;
        let version = version_of(flags)?;
        if flags & HDR_T == 0 {
            return Err(HeaderError::NotControl);
        }
        if transport == Transport::Ip && version == Version::V2 {
            return Err(HeaderError::UnsupportedVersion(2));
        }
        // RFC 2661 3.1 / RFC 3931 3.2.1: "The L and S bits MUST be set to 1"
        // in control messages; RFC 2661: O and P "MUST be set to 0".
        if flags & HDR_L == 0 || flags & HDR_S == 0 {
            return Err(HeaderError::ControlFlags(flags));
        }
        if version == Version::V2 && flags & (HDR_O | HDR_P) != 0 {
            return Err(HeaderError::ControlFlags(flags));
        }
        let length = usize::from(be16(msg, 2).ok_or(HeaderError::Truncated)?);
        if length < CONTROL_HLEN_V2 {
            return Err(HeaderError::BadLength { declared: length, available: msg.len() });
        }
        let msg = msg.get(..length).ok_or(HeaderError::BadLength { declared: length, available: msg.len() })?;
        let (tunnel_id, session_id) = match version {
            Version::V2 => {
                (u32::from(be16(msg, 4).ok_or(HeaderError::Truncated)?), be16(msg, 6).ok_or(HeaderError::Truncated)?)
            }
            Version::V3 => (be32(msg, 4).ok_or(HeaderError::Truncated)?, 0),
        };
        let ns = be16(msg, 8).ok_or(HeaderError::Truncated)?;
        let nr = be16(msg, 10).ok_or(HeaderError::Truncated)?;
        let body = msg.get(CONTROL_HLEN_V2..).ok_or(HeaderError::Truncated)?;
        Ok((Self { version, tunnel_id, session_id, ns, nr }, body))
    }

    /// Appends the header with its Length set for a body of `body_len`
    /// bytes. For v2 the Tunnel ID must fit 16 bits; v3 over IP gets its
    /// zero Session ID first.
    pub fn emit(&self, transport: Transport, body_len: usize, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        let length = u16::try_from(CONTROL_HLEN_V2 + body_len).map_err(|_| HeaderError::TooLong)?;
        if transport == Transport::Ip {
            if self.version == Version::V2 {
                return Err(HeaderError::UnsupportedVersion(2));
            }
            out.extend_from_slice(&[0; 4]);
        }
        let flags = HDR_T | HDR_L | HDR_S | self.version.number();
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        match self.version {
            Version::V2 => {
                let tid = u16::try_from(self.tunnel_id).map_err(|_| HeaderError::IdTooLarge(self.tunnel_id))?;
                out.extend_from_slice(&tid.to_be_bytes());
                out.extend_from_slice(&self.session_id.to_be_bytes());
            }
            Version::V3 => out.extend_from_slice(&self.tunnel_id.to_be_bytes()),
        }
        out.extend_from_slice(&self.ns.to_be_bytes());
        out.extend_from_slice(&self.nr.to_be_bytes());
        Ok(())
    }
}

/// L2TPv2 data message header (RFC 2661 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V2DataHeader {
    /// Length field present (L bit).
    pub with_length: bool,
    pub tunnel_id: u16,
    pub session_id: u16,
    /// Ns and Nr (S bit).
    pub sequence: Option<(u16, u16)>,
    /// Offset Size (O bit): that many pad bytes follow the header.
    pub offset: Option<u16>,
    /// P bit.
    pub priority: bool,
}

impl V2DataHeader {
    pub fn wire_len(&self) -> usize {
        6 + if self.with_length { 2 } else { 0 }
            + if self.sequence.is_some() { 4 } else { 0 }
            + self.offset.map_or(0, |o| 2 + usize::from(o))
    }

    /// Parses the header and returns it with the payload (after the offset
    /// padding, cut at Length when present).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), HeaderError> {
        let flags = be16(buf, 0).ok_or(HeaderError::Truncated)?;
        if version_of(flags)? != Version::V2 {
            return Err(HeaderError::UnsupportedVersion((flags & HDR_VER_MASK) as u8));
        }
        if flags & HDR_T != 0 {
            return Err(HeaderError::NotData);
        }
        let mut off = 2;
        let with_length = flags & HDR_L != 0;
        let mut buf = buf;
        if with_length {
            let length = usize::from(be16(buf, off).ok_or(HeaderError::Truncated)?);
            buf = buf.get(..length).ok_or(HeaderError::BadLength { declared: length, available: buf.len() })?;
            off += 2;
        }
        let tunnel_id = be16(buf, off).ok_or(HeaderError::Truncated)?;
        let session_id = be16(buf, off + 2).ok_or(HeaderError::Truncated)?;
        off += 4;
        let sequence = if flags & HDR_S != 0 {
            let s = (be16(buf, off).ok_or(HeaderError::Truncated)?, be16(buf, off + 2).ok_or(HeaderError::Truncated)?);
            off += 4;
            Some(s)
        } else {
            None
        };
        let offset = if flags & HDR_O != 0 {
            let o = be16(buf, off).ok_or(HeaderError::Truncated)?;
            off += 2 + usize::from(o);
            Some(o)
        } else {
            None
        };
        let payload = buf.get(off..).ok_or(HeaderError::Truncated)?;
        let hdr = Self { with_length, tunnel_id, session_id, sequence, offset, priority: flags & HDR_P != 0 };
        Ok((hdr, payload))
    }

    /// Appends the header (and zero offset padding) for a payload of
    /// `payload_len` bytes.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        let mut flags = Version::V2.number();
        if self.with_length {
            flags |= HDR_L;
        }
        if self.sequence.is_some() {
            flags |= HDR_S;
        }
        if self.offset.is_some() {
            flags |= HDR_O;
        }
        if self.priority {
            flags |= HDR_P;
        }
        out.extend_from_slice(&flags.to_be_bytes());
        if self.with_length {
            let len = u16::try_from(self.wire_len() + payload_len).map_err(|_| HeaderError::TooLong)?;
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(&self.tunnel_id.to_be_bytes());
        out.extend_from_slice(&self.session_id.to_be_bytes());
        if let Some((ns, nr)) = self.sequence {
            out.extend_from_slice(&ns.to_be_bytes());
            out.extend_from_slice(&nr.to_be_bytes());
        }
        if let Some(o) = self.offset {
            out.extend_from_slice(&o.to_be_bytes());
            out.resize(out.len() + usize::from(o), 0);
        }
        Ok(())
    }
}

/// Cookie of an L2TPv3 session: 0, 4 or 8 bytes (RFC 3931 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Cookie {
    #[default]
    None,
    C32([u8; 4]),
    C64([u8; 8]),
}

impl Cookie {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        match b.len() {
            0 => Some(Self::None),
            4 => b.try_into().ok().map(Self::C32),
            8 => b.try_into().ok().map(Self::C64),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::C32(c) => c,
            Self::C64(c) => c,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// L2TPv3 data message header, over UDP or IP, with the session's cookie
/// and, when the session uses it, the default L2-Specific Sublayer
/// (RFC 3931 4.6: S bit and 24-bit sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V3DataHeader {
    pub session_id: u32,
    pub cookie: Cookie,
    /// `None`: no sublayer. `Some(None)`: sublayer with S=0. `Some(Some(ns))`:
    /// S=1 and the 24-bit sequence number.
    pub sublayer: Option<Option<u32>>,
}

impl V3DataHeader {
    pub fn wire_len(&self, transport: Transport) -> usize {
        let session = match transport {
            Transport::Udp => 8,
            Transport::Ip => 4,
        };
        session + self.cookie.len() + if self.sublayer.is_some() { 4 } else { 0 }
    }

    /// The Session ID of a v3 data message, to find the session whose
    /// cookie length and sublayer settings [`V3DataHeader::parse`] needs.
    pub fn peek_session_id(transport: Transport, buf: &[u8]) -> Result<u32, HeaderError> {
        match transport {
            Transport::Udp => {
                let flags = be16(buf, 0).ok_or(HeaderError::Truncated)?;
                if flags & HDR_T != 0 {
                    return Err(HeaderError::NotData);
                }
                if version_of(flags)? != Version::V3 {
                    return Err(HeaderError::UnsupportedVersion((flags & HDR_VER_MASK) as u8));
                }
                be32(buf, 4).ok_or(HeaderError::Truncated)
            }
            Transport::Ip => match be32(buf, 0).ok_or(HeaderError::Truncated)? {
                0 => Err(HeaderError::NotData),
                id => Ok(id),
            },
        }
    }

    /// Parses the header of a session with a `cookie_len`-byte cookie and
    /// (if `sublayer`) the default L2-Specific Sublayer; returns it with
    /// the payload.
    pub fn parse(
        transport: Transport,
        buf: &[u8],
        cookie_len: usize,
        sublayer: bool,
    ) -> Result<(Self, &[u8]), HeaderError> {
        if !matches!(cookie_len, 0 | 4 | 8) {
            return Err(HeaderError::BadCookieLength(cookie_len));
        }
        let session_id = Self::peek_session_id(transport, buf)?;
        let mut off = match transport {
            Transport::Udp => 8,
            Transport::Ip => 4,
        };
        let cookie = buf.get(off..off + cookie_len).and_then(Cookie::from_slice).ok_or(HeaderError::Truncated)?;
        off += cookie_len;
        let sublayer = if sublayer {
            let word = be32(buf, off).ok_or(HeaderError::Truncated)?;
            off += 4;
            Some((word & V3_SUBLAYER_S != 0).then_some(word & V3_SEQ_MASK))
        } else {
            None
        };
        let payload = buf.get(off..).ok_or(HeaderError::Truncated)?;
        Ok((Self { session_id, cookie, sublayer }, payload))
    }

    pub fn emit(&self, transport: Transport, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        if self.session_id == 0 {
            // RFC 3931 4.1: Session ID 0 is reserved for control messages.
            return Err(HeaderError::NotData);
        }
        if transport == Transport::Udp {
            out.extend_from_slice(&Version::V3.number().to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(self.cookie.as_bytes());
        if let Some(seq) = self.sublayer {
            let word = match seq {
                Some(ns) if ns > V3_SEQ_MASK => return Err(HeaderError::SequenceTooLarge(ns)),
                Some(ns) => V3_SUBLAYER_S | ns,
                None => 0,
            };
            out.extend_from_slice(&word.to_be_bytes());
        }
        Ok(())
    }
}
