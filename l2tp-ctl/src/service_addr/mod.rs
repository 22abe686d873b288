//! The hot-standby service address (issue 14): the address the peers know,
//! held by whichever daemon is active and moved to the standby on takeover.
//!
//! - [`holds`], [`add`], [`add_with_prefix`], [`remove`]: rtnetlink
//!   (`RTM_GETADDR` dump, `RTM_NEWADDR`, `RTM_DELADDR`) over a raw
//!   `NETLINK_ROUTE` socket; no `ip` command. [`add`] assigns a host
//!   address (/32 or /128); IPv6 addresses get `IFA_F_NODAD`, because the
//!   standby has already probed with [`probe`]. Adding a held address and
//!   removing an absent one are no-ops.
//! - [`probe`]: duplicate address detection done by hand. IPv4: RFC 5227
//!   ARP probes; IPv6: RFC 4862 DAD neighbour solicitations from `::`. Both
//!   are built as Ethernet frames and sent on an `AF_PACKET` socket bound to
//!   the interface, because the kernel will not send from an unspecified
//!   source address.
//! - [`announce`]: IPv4: two RFC 5227 ARP announcements (`AF_PACKET`);
//!   IPv6: two unsolicited neighbour advertisements (RFC 4861 7.2.6) on a
//!   raw ICMPv6 socket (the kernel computes the checksum and picks the
//!   link-local source).
//!
//! Everything blocks (the daemon calls it from `spawn_blocking`), [`probe`]
//! at most for its timeout and [`announce`] for [`ANNOUNCE_INTERVAL`].
//! Everything needs `CAP_NET_ADMIN` and `CAP_NET_RAW`, works in the
//! network namespace of the calling thread, and only on Ethernet-like
//! interfaces (ARP hardware type 1) for [`probe`] and [`announce`].

use std::{
    ffi::CString,
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

mod frames;
mod link;
mod netlink;

use self::{frames::*, link::*, netlink::*};

/// Gap between the two announcements [`announce`] sends. RFC 5227 spaces
/// ARP announcements by 2 s (ANNOUNCE_INTERVAL); a takeover wants the
/// neighbours' caches right at once, so the second, which only covers the
/// loss of the first, follows after this shorter gap.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);

/// How many probes [`probe`] sends, spread evenly over its timeout
/// (RFC 5227 PROBE_NUM; RFC 4862 sends DupAddrDetectTransmits = 1, the
/// extra ones only cover loss).
pub const PROBE_NUM: u32 = 3;

/// A failed service-address operation. Every variant names the interface
/// and the address.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAddrError {
    #[error("service address {addr} on {iface}: no such interface")]
    NoSuchInterface { iface: String, addr: IpAddr },
    #[error("service address {addr} on {iface}: not an Ethernet interface (hardware type {hw_type})")]
    NotEthernet { iface: String, addr: IpAddr, hw_type: u16 },
    #[error("service address {addr} on {iface}: prefix length {prefix_len} out of range")]
    PrefixLength { iface: String, addr: IpAddr, prefix_len: u8 },
    #[error("service address {addr} on {iface}: {op}: {source}")]
    Io {
        iface: String,
        addr: IpAddr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ServiceAddrError {
    pub fn iface(&self) -> &str {
        match self {
            Self::NoSuchInterface { iface, .. }
            | Self::NotEthernet { iface, .. }
            | Self::PrefixLength { iface, .. }
            | Self::Io { iface, .. } => iface,
        }
    }

    pub fn addr(&self) -> IpAddr {
        match self {
            Self::NoSuchInterface { addr, .. }
            | Self::NotEthernet { addr, .. }
            | Self::PrefixLength { addr, .. }
            | Self::Io { addr, .. } => *addr,
        }
    }
}

/// What the error constructors need: the interface and the address.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    iface: &'a str,
    addr: IpAddr,
}

impl<'a> Ctx<'a> {
    fn io(self, op: &'static str) -> impl FnOnce(io::Error) -> ServiceAddrError + 'a {
        move |source| ServiceAddrError::Io { iface: self.iface.to_owned(), addr: self.addr, op, source }
    }

    fn no_iface(self) -> ServiceAddrError {
        ServiceAddrError::NoSuchInterface { iface: self.iface.to_owned(), addr: self.addr }
    }

    fn ifindex(self) -> Result<u32, ServiceAddrError> {
        let name = CString::new(self.iface).map_err(|_| self.no_iface())?;
        // SAFETY: valid NUL-terminated string.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => Err(self.no_iface()),
            i => Ok(i),
        }
    }
}

/// Whether `addr` is assigned on `iface` (with any prefix length, in any
/// state, tentative or DAD-failed included).
pub fn holds(iface: &str, addr: IpAddr) -> io::Result<bool> {
    let cx = Ctx { iface, addr };
    let to_io = |e: ServiceAddrError| match e {
        ServiceAddrError::Io { ref source, .. } => io::Error::new(source.kind(), e.to_string()),
        e => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
    };
    let index = cx.ifindex().map_err(to_io)?;
    find(cx, index).map(|p| p.is_some()).map_err(to_io)
}

/// Assigns `addr` as a host address (/32, /128) on `iface`; Ok if it is
/// already assigned (with any prefix length).
pub fn add(iface: &str, addr: IpAddr) -> Result<(), ServiceAddrError> {
    add_with_prefix(iface, addr, host_prefix(addr))
}

/// Assigns `addr/prefix_len` on `iface` (the kernel then also adds the
/// prefix route); Ok if `addr` is already assigned, with any prefix length.
/// IPv6 addresses are added with `nodad`: permanent and usable at once.
pub fn add_with_prefix(iface: &str, addr: IpAddr, prefix_len: u8) -> Result<(), ServiceAddrError> {
    let cx = Ctx { iface, addr };
    if prefix_len > host_prefix(addr) {
        return Err(ServiceAddrError::PrefixLength { iface: iface.to_owned(), addr, prefix_len });
    }
    let index = cx.ifindex()?;
    if find(cx, index)?.is_some() {
        return Ok(());
    }
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    match addr_request(cx, RTM_NEWADDR, flags, index, prefix_len) {
        Err(ServiceAddrError::Io { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Removes `addr` from `iface`, whatever its prefix length; Ok if it is
/// not assigned.
pub fn remove(iface: &str, addr: IpAddr) -> Result<(), ServiceAddrError> {
    let cx = Ctx { iface, addr };
    let index = cx.ifindex()?;
    let Some(prefix_len) = find(cx, index)? else { return Ok(()) };
    match addr_request(cx, RTM_DELADDR, (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16, index, prefix_len) {
        Err(ServiceAddrError::Io { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ESRCH)) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Whether another host on the link of `iface` answers for `addr` within
/// `timeout`: sends [`PROBE_NUM`] probes spread over the timeout and
/// returns true at the first answer, false when the timeout passes.
///
/// IPv4 (RFC 5227 2.1.1): ARP requests, broadcast, sender hardware address
/// ours, sender IP 0.0.0.0, target IP `addr`. An answer is any ARP request
/// or reply from another hardware address with sender IP `addr`.
///
/// IPv6 (RFC 4862 5.4.2): neighbour solicitations from `::` to the
/// solicited-node group of `addr` (hop limit 255, no source link-layer
/// option). An answer is a neighbour advertisement for target `addr`.
///
/// Unlike RFC 5227 and RFC 4862, another host's simultaneous probe for
/// `addr` is not an answer: a host probing does not hold the address, and
/// the partner protocol's terms decide between two standbys.
pub fn probe(iface: &str, addr: IpAddr, timeout: Duration) -> Result<bool, ServiceAddrError> {
    let cx = Ctx { iface, addr };
    let deadline = Instant::now() + timeout;
    let index = cx.ifindex()?;
    let (ethertype, filter) = match addr {
        IpAddr::V4(_) => (ETH_P_ARP, None),
        IpAddr::V6(_) => (ETH_P_IPV6, Some(&ND_FILTER[..])),
    };
    let sock = PacketSocket::open(cx, index, ethertype, filter)?;
    let frame = match addr {
        IpAddr::V4(a) => arp_frame(sock.mac, Ipv4Addr::UNSPECIFIED, a),
        IpAddr::V6(a) => dad_ns_frame(sock.mac, a),
    };
    let mut buf = [0u8; 2048];
    for i in 0..PROBE_NUM {
        sock.send(cx, &frame)?;
        let until = if i + 1 == PROBE_NUM { deadline } else { Instant::now() + timeout / PROBE_NUM };
        let until = until.min(deadline);
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let Some(n) = sock.recv(cx, &mut buf, until - now)? else { break };
            let f = &buf[..n];
            let answered = match addr {
                IpAddr::V4(a) => is_arp_claim(f, sock.mac, a),
                IpAddr::V6(a) => is_na_for(f, sock.mac, a),
            };
            if answered {
                return Ok(true);
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(false)
}

/// Tells the link that `addr` is here now, twice, [`ANNOUNCE_INTERVAL`]
/// apart. Does not check that `addr` is assigned: call [`add`] first.
///
/// IPv4 (RFC 5227 2.3): ARP requests, broadcast, sender IP = target IP =
/// `addr`, sender hardware address ours. Receivers update an existing
/// entry; Linux creates a new one only with `arp_accept`.
///
/// IPv6 (RFC 4861 7.2.6): unsolicited neighbour advertisements to ff02::1,
/// hop limit 255, Override set, Solicited clear, Router set when IPv6
/// forwarding is on for `iface`, with a target link-layer address option
/// carrying our MAC. Receivers update an existing entry (to STALE).
pub fn announce(iface: &str, addr: IpAddr) -> Result<(), ServiceAddrError> {
    announce_times(iface, addr, 2)
}

/// One announcement, at once (a takeover sends the first without waiting
/// and the second later, off the event loop).
pub fn announce_once(iface: &str, addr: IpAddr) -> Result<(), ServiceAddrError> {
    announce_times(iface, addr, 1)
}

/// The service address announced `times` times, [`ANNOUNCE_INTERVAL`]
/// apart.
fn announce_times(iface: &str, addr: IpAddr, times: usize) -> Result<(), ServiceAddrError> {
    let cx = Ctx { iface, addr };
    let index = cx.ifindex()?;
    match addr {
        IpAddr::V4(a) => {
            let sock = PacketSocket::open(cx, index, ETH_P_ARP, Some(&DROP_ALL))?;
            let frame = arp_frame(sock.mac, a, a);
            for i in 0..times {
                if i > 0 {
                    std::thread::sleep(ANNOUNCE_INTERVAL);
                }
                sock.send(cx, &frame)?;
            }
            Ok(())
        }
        IpAddr::V6(a) => {
            let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(cx.io("ICMPv6 socket"))?;
            let mac = hw_addr(cx, sock.as_raw_fd())?;
            sock.bind_device(Some(iface.as_bytes())).map_err(cx.io("binding the ICMPv6 socket to the interface"))?;
            sock.set_multicast_if_v6(index).map_err(cx.io("IPV6_MULTICAST_IF"))?;
            sock.set_multicast_hops_v6(255).map_err(cx.io("IPV6_MULTICAST_HOPS"))?;
            sock.set_multicast_loop_v6(false).map_err(cx.io("IPV6_MULTICAST_LOOP"))?;
            let router = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"))
                .is_ok_and(|s| s.trim() == "1");
            let na = unsolicited_na(mac, a, router);
            let dst = SockAddr::from(SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index));
            for i in 0..times {
                if i > 0 {
                    std::thread::sleep(ANNOUNCE_INTERVAL);
                }
                sock.send_to(&na, &dst).map_err(cx.io("sending the neighbour advertisement"))?;
            }
            Ok(())
        }
    }
}

fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x5a, 1];

    #[test]
    fn arp_probe_and_announcement_layout() {
        let a: Ipv4Addr = "198.18.50.2".parse().expect("addr");
        let p = arp_frame(MAC, Ipv4Addr::UNSPECIFIED, a);
        assert_eq!(p.len(), 60);
        assert_eq!(&p[..6], &BROADCAST);
        assert_eq!(&p[12..14], &[0x08, 0x06]);
        assert_eq!(&p[14 + 14..14 + 18], &[0, 0, 0, 0]);
        assert_eq!(&p[14 + 24..14 + 28], &a.octets());
        let g = arp_frame(MAC, a, a);
        assert_eq!(&g[14 + 14..14 + 18], &a.octets());
        // Our own frames are not claims; another host's announcement is.
        assert!(!is_arp_claim(&g, MAC, a));
        assert!(is_arp_claim(&g, [2, 0, 0, 0, 0x5b, 1], a));
        // A probe (sender 0.0.0.0) claims nothing.
        assert!(!is_arp_claim(&p, [2, 0, 0, 0, 0x5b, 1], a));
    }

    #[test]
    fn dad_ns_is_a_valid_icmpv6_message() {
        let t: Ipv6Addr = "2001:2::50:2".parse().expect("addr");
        let f = dad_ns_frame(MAC, t);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x50, 0, 0x02]);
        let ip = &f[14..];
        assert_eq!(ip[7], 255);
        let (src, dst) =
            (<[u8; 16]>::try_from(&ip[8..24]).expect("src"), <[u8; 16]>::try_from(&ip[24..40]).expect("dst"));
        assert_eq!(dst, solicited_node(t));
        // A correct checksum sums to zero.
        assert_eq!(icmpv6_csum(&src, &dst, &ip[40..]), 0);
    }

    #[test]
    fn unsolicited_na_sets_override_only() {
        let na = unsolicited_na(MAC, Ipv6Addr::LOCALHOST, false);
        assert_eq!(na.len(), 32);
        assert_eq!(na[4], 0x20);
        assert_eq!(&na[26..32], &MAC);
        assert_eq!(unsolicited_na(MAC, Ipv6Addr::LOCALHOST, true)[4], 0xa0);
    }

    #[test]
    fn errors_name_interface_and_address() {
        let addr: IpAddr = "198.18.9.9".parse().expect("addr");
        let e = add("l2tpt-none0", addr).expect_err("no interface");
        assert!(matches!(e, ServiceAddrError::NoSuchInterface { .. }), "{e}");
        assert_eq!((e.iface(), e.addr()), ("l2tpt-none0", addr));
        assert!(e.to_string().contains("l2tpt-none0") && e.to_string().contains("198.18.9.9"));
        let e = holds("l2tpt-none0", addr).expect_err("no interface");
        assert!(e.to_string().contains("l2tpt-none0"));
        let e = add_with_prefix("lo", addr, 33).expect_err("prefix");
        assert!(matches!(e, ServiceAddrError::PrefixLength { .. }));
    }
}
