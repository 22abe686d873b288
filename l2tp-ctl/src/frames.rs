//! Frame builders: Ethernet, IPv4/IPv6, UDP and L2TP headers, with correct
//! lengths and checksums. Used by the packet generator and by the tests
//! (whose fixed A/B addresses are below).

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// Test addresses from 198.18.0.0/15 and 2001:2::/48.
pub const IP4_A: [u8; 4] = [198, 18, 0, 1];
pub const IP4_B: [u8; 4] = [198, 18, 0, 2];
pub const IP6_A: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const IP6_B: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_L2TP: u8 = 115;

/// Ethernet II frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Ones' complement sum folded to 16 bits (RFC 1071).
pub fn csum_fold(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

pub fn csum_finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (no options, TTL 64, DF clear) followed by `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("IPv4 packet too long");
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum_finish(csum_fold(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv6 header (hop limit 64) followed by `payload`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("IPv6 payload too long");
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// UDP datagram; the checksum is computed over the given pseudo-header sum
/// (`None`: checksum 0, allowed on IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8], pseudo: Option<u32>) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP datagram too long");
    let mut u = Vec::with_capacity(usize::from(len));
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    if let Some(p) = pseudo {
        let mut c = csum_finish(csum_fold(p + u32::from(len), &u));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    u
}

/// Ethernet + IPv4 + UDP (checksum 0) frame from A to B.
pub fn udp4_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(MAC_B, MAC_A, ETH_P_IP, &ipv4(IP4_A, IP4_B, IPPROTO_UDP, &udp(sport, dport, payload, None)))
}

/// Ethernet + IPv6 + UDP (checksum computed) frame from A to B.
pub fn udp6_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let pseudo = csum_fold(csum_fold(u32::from(IPPROTO_UDP), &IP6_A), &IP6_B);
    eth(MAC_B, MAC_A, ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_UDP, &udp(sport, dport, payload, Some(pseudo))))
}

/// Ethernet + IPv4 + L2TPv3-over-IP (protocol 115) frame from A to B.
pub fn ip4_l2tp_frame(payload: &[u8]) -> Vec<u8> {
    eth(MAC_B, MAC_A, ETH_P_IP, &ipv4(IP4_A, IP4_B, IPPROTO_L2TP, payload))
}

/// Ethernet + IPv6 + L2TPv3-over-IP frame from A to B.
pub fn ip6_l2tp_frame(payload: &[u8]) -> Vec<u8> {
    eth(MAC_B, MAC_A, ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_L2TP, payload))
}

/// An L2TPv2 ZLB control message (T, L, S set; 12 bytes).
pub fn l2tpv2_zlb(tunnel: u16, ns: u16, nr: u16) -> Vec<u8> {
    let mut m = vec![0xC8, 0x02, 0, 12];
    m.extend_from_slice(&tunnel.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&ns.to_be_bytes());
    m.extend_from_slice(&nr.to_be_bytes());
    m
}

/// An L2TPv3-over-UDP data header (no cookie, no sublayer) and payload.
pub fn l2tpv3_udp_data(session: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0x00, 0x03, 0, 0];
    m.extend_from_slice(&session.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// IP packet of either family, `proto` carrying `payload` (IPv4: DF set).
pub fn ip_packet(src: std::net::IpAddr, dst: std::net::IpAddr, proto: u8, payload: &[u8]) -> Option<(u16, Vec<u8>)> {
    use std::net::IpAddr;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = ipv4(s.octets(), d.octets(), proto, payload);
            ip[6] = 0x40;
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = csum_finish(csum_fold(0, &ip[..20]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            Some((ETH_P_IP, ip))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => Some((ETH_P_IPV6, ipv6(s.octets(), d.octets(), proto, payload))),
        _ => None,
    }
}

/// UDP datagram between `src` and `dst`: checksum 0 on IPv4, computed on
/// IPv6 (RFC 8200 8.1).
pub fn udp_between(src: std::net::IpAddr, dst: std::net::IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    use std::net::IpAddr;
    let pseudo = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(csum_fold(csum_fold(u32::from(IPPROTO_UDP), &s.octets()), &d.octets())),
        _ => None,
    };
    udp(sport, dport, payload, pseudo)
}
