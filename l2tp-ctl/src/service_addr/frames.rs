//! The frames of probes and announcements: ARP (RFC 5227), neighbour solicitation and advertisement (RFC 4861, RFC 4862).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::frames::{csum_finish, csum_fold, eth};

// ---------------------------------------------------------------------------
// Frames

/// A broadcast ARP request (RFC 5227: probe with `spa` 0.0.0.0,
/// announcement with `spa` = `tpa`), padded to the 60-byte minimum.
pub(super) fn arp_frame(mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut arp = Vec::with_capacity(46);
    arp.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&spa.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&tpa.octets());
    arp.resize(46, 0);
    eth(BROADCAST, mac, ETH_P_ARP, &arp)
}

/// An ARP request or reply from another host whose sender IP is `addr`.
pub(super) fn is_arp_claim(f: &[u8], mac: [u8; 6], addr: Ipv4Addr) -> bool {
    if f.len() < 42 || u16::from_be_bytes([f[12], f[13]]) != ETH_P_ARP {
        return false;
    }
    let a = &f[14..];
    let op = u16::from_be_bytes([a[6], a[7]]);
    a[..6] == [0, 1, 0x08, 0x00, 6, 4] && (op == 1 || op == 2) && a[8..14] != mac && a[14..18] == addr.octets()
}

pub(super) fn solicited_node(a: Ipv6Addr) -> [u8; 16] {
    let o = a.octets();
    [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]]
}

/// ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 8.1).
pub(super) fn icmpv6_csum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let mut s = csum_fold(0, src);
    s = csum_fold(s, dst);
    s = csum_fold(s, &(msg.len() as u32).to_be_bytes());
    s = csum_fold(s, &[0, 0, 0, IPPROTO_ICMPV6]);
    csum_finish(csum_fold(s, msg))
}

/// RFC 4862 DAD: NS from :: to the solicited-node group, hop limit 255,
/// no source link-layer address option.
pub(super) fn dad_ns_frame(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let (src, dst) = ([0u8; 16], solicited_node(target));
    let mut ns = vec![ND_NS, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    let c = icmpv6_csum(&src, &dst, &ns);
    ns[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&ns);
    let dmac = [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]];
    eth(dmac, mac, ETH_P_IPV6, &ip)
}

/// A neighbour advertisement for `target` from another host.
pub(super) fn is_na_for(f: &[u8], mac: [u8; 6], target: Ipv6Addr) -> bool {
    f.len() >= 14 + 40 + 24
        && u16::from_be_bytes([f[12], f[13]]) == ETH_P_IPV6
        && f[6..12] != mac
        && f[14 + 6] == IPPROTO_ICMPV6
        && f[14 + 7] == 255
        && f[54] == ND_NA
        && f[54 + 8..54 + 24] == target.octets()
}

/// RFC 4861 7.2.6: unsolicited NA, Override set, with a target link-layer
/// address option; the kernel fills in the checksum.
pub(super) fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, router: bool) -> Vec<u8> {
    let flags: u32 = 0x2000_0000 | if router { 0x8000_0000 } else { 0 };
    let mut na = vec![ND_NA, 0, 0, 0];
    na.extend_from_slice(&flags.to_be_bytes());
    na.extend_from_slice(&target.octets());
    na.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    na.extend_from_slice(&mac);
    na
}
