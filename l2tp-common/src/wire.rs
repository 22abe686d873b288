//! Wire constants shared by the XDP program and the userspace codec.
//!
//! Offsets and bit values come from RFC 2661 section 3.1 (L2TPv2 header) and
//! RFC 3931 sections 3.2, 4.1 and 4.6 (L2TPv3 over UDP and over IP), and
//! for the outer headers from RFC 791 (IPv4), RFC 8200 (IPv6), RFC 768
//! (UDP) and IEEE 802.1Q (VLAN tags).

/// UDP port of L2TP (RFC 2661 section 8.1, RFC 3931 section 4.1.2.1).
pub const L2TP_UDP_PORT: u16 = 1701;
/// IP protocol number of L2TPv3 over IP (RFC 3931 section 4.1.1.1).
pub const IPPROTO_L2TP: u8 = 115;

pub const ETH_HLEN: usize = 14;
/// Offset of the EtherType in an Ethernet header (after both MACs).
pub const ETH_TYPE_OFF: usize = 12;
/// Length of a MAC address.
pub const ETH_ALEN: usize = 6;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
/// An 802.1Q/802.1ad tag: TCI (2) and the next EtherType (2).
pub const VLAN_HLEN: usize = 4;
/// VLAN ID bits of the TCI.
pub const VLAN_VID_MASK: u16 = 0x0FFF;

pub const IPV4_MIN_HLEN: usize = 20;
/// Version 4, IHL 5: an IPv4 header without options, the only kind parsed.
pub const IPV4_VIHL_NO_OPTIONS: u8 = 0x45;
/// IPv4 field offsets (RFC 791 3.1).
pub const IPV4_TOT_LEN_OFF: usize = 2;
pub const IPV4_FRAG_OFF: usize = 6;
pub const IPV4_PROTO_OFF: usize = 9;
pub const IPV4_CSUM_OFF: usize = 10;
pub const IPV4_SADDR_OFF: usize = 12;
pub const IPV4_DADDR_OFF: usize = 16;
/// More Fragments and Fragment Offset bits of the flags/offset word: any
/// of them set makes the packet a fragment.
pub const IPV4_FRAG_MASK: u16 = 0x3FFF;
/// Don't Fragment, set on everything we send.
pub const IPV4_DF: u16 = 0x4000;

pub const IPV6_HLEN: usize = 40;
/// IPv6 field offsets (RFC 8200 3).
pub const IPV6_PAYLOAD_LEN_OFF: usize = 4;
pub const IPV6_NEXT_OFF: usize = 6;
pub const IPV6_SADDR_OFF: usize = 8;
pub const IPV6_DADDR_OFF: usize = 24;

pub const UDP_HLEN: usize = 8;
/// UDP field offsets (RFC 768).
pub const UDP_DPORT_OFF: usize = 2;
pub const UDP_LEN_OFF: usize = 4;
pub const UDP_CSUM_OFF: usize = 6;
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
/// Version field of L2TPv3.
pub const HDR_VER_3: u16 = 3;
/// Bits that must be zero in a v2 header (RFC 2661 3.1 "x" bits and the
/// reserved bits between them): everything but T, L, S, O, P and Ver.
pub const HDR_V2_RESERVED: u16 = !(HDR_T | HDR_L | HDR_S | HDR_O | HDR_P | HDR_VER_MASK);

/// L2TPv3 over UDP data header: flags/ver (2), reserved (2), Session ID (4).
pub const V3_UDP_DATA_HLEN: usize = 8;
/// The first word of an L2TPv3-over-UDP data header we send: T=0, Ver=3,
/// reserved 0 (RFC 3931 4.1.2.1).
pub const V3_UDP_DATA_WORD: [u8; 4] = [0, HDR_VER_3 as u8, 0, 0];
/// Offset of the Session ID in an L2TPv3-over-UDP data header.
pub const V3_UDP_SESSION_OFF: usize = 4;
/// L2TPv3 over IP data header: Session ID (4); a zero Session ID marks a
/// control message (RFC 3931 section 4.1.1.2).
pub const V3_IP_SESSION_HLEN: usize = 4;
/// Default L2-Specific Sublayer (RFC 3931 section 4.6): one 32-bit word,
/// S bit 0x40000000 and a 24-bit sequence number.
pub const V3_SUBLAYER_LEN: usize = 4;
pub const V3_SUBLAYER_S: u32 = 0x4000_0000;
pub const V3_SEQ_MASK: u32 = 0x00FF_FFFF;
/// Half the 24-bit sequence space: a sequence number less than this far
/// ahead of the expected one is "ahead", else "behind" (RFC 3931 4.6.1).
pub const V3_SEQ_HALF: u32 = 1 << 23;
