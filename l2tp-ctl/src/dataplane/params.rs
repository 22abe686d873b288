//! What a pseudowire needs from the daemon ([`SessionParams`]), checked and
//! turned into the map value the data path reads (`SessionConfig`: flags,
//! cookies, the outer header template).

use std::net::IpAddr;

use l2tp_common::session::{flags, rx_mode, SessionConfig, HDR_TEMPLATE_MAX};

use super::{DataplaneError, Result};

/// How the pseudowire is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// L2TPv3 over UDP with these ports.
    Udp { local_port: u16, peer_port: u16 },
    /// L2TPv3 over IP protocol 115.
    Ip,
}

/// Cookie of 0, 4 or 8 bytes (RFC 3931 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cookie {
    len: u8,
    bytes: [u8; 8],
}

impl Cookie {
    pub const NONE: Self = Self { len: 0, bytes: [0; 8] };

    /// `None` unless `b` has 0, 4 or 8 bytes.
    pub fn new(b: &[u8]) -> Option<Self> {
        if !matches!(b.len(), 0 | 4 | 8) {
            return None;
        }
        let mut bytes = [0; 8];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self { len: b.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Receive behaviour of a sequenced session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxMode {
    AcceptNew,
    Strict { n: u16 },
    Resync { n: u16, deliver_unconfirmed: bool },
}

/// Everything the data path needs to forward one L2TPv3 Ethernet
/// pseudowire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// Session ID we assigned: received data carries it.
    pub local_session_id: u32,
    /// Session ID the peer assigned: data we send carries it.
    pub peer_session_id: u32,
    pub encap: Encap,
    pub local_addr: IpAddr,
    pub peer_addr: IpAddr,
    /// Uplink's MAC and the next hop's MAC. With `fib_lookup` these are
    /// the fallback used when the kernel has no neighbour entry; an
    /// all-zero `next_hop_mac` then means "drop and count".
    pub local_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    /// Look the next hop up in the kernel's FIB and neighbour tables for
    /// every frame (`bpf_fib_lookup`), following route changes.
    pub fib_lookup: bool,
    pub uplink_ifindex: u32,
    pub attach_ifindex: u32,
    /// 802.1Q VLAN ID of the attachment circuit: 1 to 4094, or 0 for the
    /// whole interface (frames of VLANs that have their own session go to
    /// that session).
    pub attach_vlan: u16,
    /// Largest outer IP packet the uplink carries.
    pub uplink_mtu: u16,
    /// Cookie the peer sends (we check it) and cookie we send.
    pub rx_cookie: Cookie,
    pub tx_cookie: Cookie,
    /// Default L2-Specific Sublayer on the wire.
    pub sublayer: bool,
    /// Send and check sequence numbers (needs the sublayer).
    pub sequencing: bool,
    pub rx_mode: RxMode,
    /// While a resync is pending (resync mode, or after a failover's
    /// ENTER_RESYNC), deliver the packets of a run not yet confirmed
    /// (else drop them): the per-session policy of RFC 4951 F-DC-3.
    pub resync_deliver: bool,
    /// IPv6 over UDP: send UDP checksum 0 (RFC 6935/6936) instead of
    /// computing it for every frame.
    pub udp6_zero_checksum: bool,
    /// Installed inactive on a hot standby (`flags::STANDBY`): nothing is
    /// forwarded until [`SessionTable::activate`].
    pub standby: bool,
}

fn ip4_checksum(h: &[u8]) -> u16 {
    crate::frames::csum_finish(crate::frames::csum_fold(0, h))
}

impl SessionParams {
    /// Checks the parameters and builds the map value.
    pub fn to_config(&self) -> Result<SessionConfig> {
        let bad = |m: &str| Err(DataplaneError::Session(m.to_owned()));
        if self.local_session_id == 0 || self.peer_session_id == 0 {
            // RFC 3931 4.1: Session ID 0 is reserved for control messages.
            return bad("session IDs must be non-zero");
        }
        if self.sequencing && !self.sublayer {
            // RFC 3931 CDN result 15: sequencing needs the sublayer.
            return bad("sequencing needs the default L2-Specific Sublayer");
        }
        let ipv6 = match (self.local_addr, self.peer_addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => return bad("local and peer addresses must be of the same family"),
        };
        let min_mtu = if ipv6 { 1280 } else { 576 };
        if self.uplink_mtu < min_mtu {
            return bad("uplink MTU too small");
        }
        if self.attach_vlan > 4094 {
            return bad("VLAN ID out of range 1..=4094 (0: the whole interface)");
        }
        if self.uplink_ifindex == 0 || self.attach_ifindex == 0 {
            return bad("interface indexes must be set");
        }
        let (mode, n, deliver) = match self.rx_mode {
            RxMode::AcceptNew => (rx_mode::ACCEPT_NEW, 1, false),
            RxMode::Strict { n } => (rx_mode::STRICT, n, false),
            RxMode::Resync { n, deliver_unconfirmed } => (rx_mode::RESYNC, n, deliver_unconfirmed),
        };
        if n == 0 {
            return bad("resync run length n must be at least 1");
        }
        let mut f = flags::ACTIVE;
        let proto = match self.encap {
            Encap::Udp { .. } => 17,
            Encap::Ip => {
                f |= flags::ENCAP_IP;
                115
            }
        };
        if ipv6 {
            f |= flags::IPV6;
        }
        if self.sublayer {
            f |= flags::SUBLAYER;
        }
        if self.sequencing {
            f |= flags::SEQ_TX | flags::SEQ_RX;
        }
        if self.udp6_zero_checksum {
            f |= flags::UDP6_ZERO_CSUM;
        }
        if deliver || self.resync_deliver {
            f |= flags::RESYNC_DELIVER;
        }
        if self.standby {
            f |= flags::STANDBY;
        }
        if self.fib_lookup {
            f |= flags::FIB_LOOKUP;
        } else if self.next_hop_mac == [0; 6] {
            return bad("a next-hop MAC is needed without FIB lookup");
        }
        let mut hdr = Vec::with_capacity(HDR_TEMPLATE_MAX);
        hdr.extend_from_slice(&self.next_hop_mac);
        hdr.extend_from_slice(&self.local_mac);
        let mut ip4_csum_base = 0;
        let mut local_addr = [0u16; 8];
        let local_octets = match self.local_addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        for (w, b) in local_addr.iter_mut().zip(local_octets.chunks_exact(2)) {
            *w = u16::from_ne_bytes([b[0], b[1]]);
        }
        match (self.local_addr, self.peer_addr) {
            (IpAddr::V4(l), IpAddr::V4(p)) => {
                hdr.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
                ip.extend_from_slice(&l.octets());
                ip.extend_from_slice(&p.octets());
                ip4_csum_base = ip4_checksum(&ip);
                ip[10..12].copy_from_slice(&ip4_csum_base.to_be_bytes());
                hdr.extend_from_slice(&ip);
            }
            (IpAddr::V6(l), IpAddr::V6(p)) => {
                hdr.extend_from_slice(&0x86DDu16.to_be_bytes());
                hdr.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, proto, 64]);
                hdr.extend_from_slice(&l.octets());
                hdr.extend_from_slice(&p.octets());
            }
            _ => return bad("address family mismatch"),
        }
        if let Encap::Udp { local_port, peer_port } = self.encap {
            hdr.extend_from_slice(&local_port.to_be_bytes());
            hdr.extend_from_slice(&peer_port.to_be_bytes());
            hdr.extend_from_slice(&[0; 4]);
        }
        let hdr_len = hdr.len() as u16;
        hdr.resize(HDR_TEMPLATE_MAX, 0);
        let mut hdr_arr = [0u8; HDR_TEMPLATE_MAX];
        hdr_arr.copy_from_slice(&hdr);
        Ok(SessionConfig {
            flags: f,
            local_session_id: self.local_session_id,
            peer_session_id: self.peer_session_id,
            attach_ifindex: self.attach_ifindex,
            uplink_ifindex: self.uplink_ifindex,
            rx_cookie: self.rx_cookie.bytes,
            tx_cookie: self.tx_cookie.bytes,
            rx_cookie_len: self.rx_cookie.len,
            tx_cookie_len: self.tx_cookie.len,
            rx_mode: mode,
            _pad0: 0,
            resync_n: n,
            uplink_mtu: self.uplink_mtu,
            hdr_len,
            ip4_csum_base,
            attach_vlan: self.attach_vlan,
            uplink_port: 0,
            attach_port: 0,
            local_addr,
            hdr: hdr_arr,
            _pad1: [0; 2],
        })
    }
}
