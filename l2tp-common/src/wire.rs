//! Wire constants shared by the XDP program and the userspace codec.
//!
//! Offsets and bit values come from RFC 2661 section 3.1 (L2TPv2 header) and
//! RFC 3931 sections 3.2, 4.1 and 4.6 (L2TPv3 over UDP and over IP).

/// UDP port of L2TP (RFC 2661 section 8.1, RFC 3931 section 4.1.2.1).
pub const L2TP_UDP_PORT: u16 = 1701;
/// IP protocol number of L2TPv3 over IP (RFC 3931 section 4.1.1.1).
pub const IPPROTO_L2TP: u8 = 115;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const IPPROTO_UDP: u8 = 17;

/// First 16 bits of an L2TP header (v2 and v3 over UDP): flag bits.
/// T: control message.
pub const HDR_T: u16 = 0x8000;
/// L: Length field present.
pub const HDR_L: u16 = 0x4000;
/// S: Ns/Nr present.
pub const HDR_S: u16 = 0x0800;
/// O: Offset Size present (L2TPv2 data only).
pub const HDR_O: u16 = 0x0200;
/// P: priority (L2TPv2 data only).
pub const HDR_P: u16 = 0x0100;
/// Version field mask (low 4 bits).
pub const HDR_VER_MASK: u16 = 0x000F;
/// Bits that must be zero in a v2 header (RFC 2661 3.1 "x" bits and the
/// reserved bits between them): everything but T, L, S, O, P and Ver.
pub const HDR_V2_RESERVED: u16 = !(HDR_T | HDR_L | HDR_S | HDR_O | HDR_P | HDR_VER_MASK);

/// L2TPv3 over UDP data header: flags/ver (2), reserved (2), Session ID (4).
pub const V3_UDP_DATA_HLEN: usize = 8;
/// L2TPv3 over IP data header: Session ID (4); a zero Session ID marks a
/// control message (RFC 3931 section 4.1.1.2).
pub const V3_IP_SESSION_HLEN: usize = 4;
/// Default L2-Specific Sublayer (RFC 3931 section 4.6): one 32-bit word,
/// S bit 0x40000000 and a 24-bit sequence number.
pub const V3_SUBLAYER_LEN: usize = 4;
pub const V3_SUBLAYER_S: u32 = 0x4000_0000;
pub const V3_SEQ_MASK: u32 = 0x00FF_FFFF;
