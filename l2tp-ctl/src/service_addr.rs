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
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::frames::{csum_finish, csum_fold, eth};

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
    let cx = Ctx { iface, addr };
    let index = cx.ifindex()?;
    match addr {
        IpAddr::V4(a) => {
            let sock = PacketSocket::open(cx, index, ETH_P_ARP, Some(&DROP_ALL))?;
            let frame = arp_frame(sock.mac, a, a);
            sock.send(cx, &frame)?;
            std::thread::sleep(ANNOUNCE_INTERVAL);
            sock.send(cx, &frame)
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
            for i in 0..2 {
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

// ---------------------------------------------------------------------------
// rtnetlink

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const NLMSG_HDRLEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NL_TIMEOUT: Duration = Duration::from_secs(5);

fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn nl_align(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(nl_align(msg.len()), 0);
}

/// nlmsghdr + ifaddrmsg, the length fixed up by [`nl_finish`].
fn nl_message(kind: u16, flags: u16, ifa: [u8; IFADDRMSG_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq: one request per socket
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.extend_from_slice(&ifa);
    m
}

fn nl_finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut h = [family, prefix_len, flags, 0 /* RT_SCOPE_UNIVERSE */, 0, 0, 0, 0];
    h[4..].copy_from_slice(&index.to_ne_bytes());
    h
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

struct Netlink(OwnedFd);

impl Netlink {
    fn open(cx: Ctx<'_>) -> Result<Self, ServiceAddrError> {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(cx.io("netlink socket")(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_rcvtimeo(fd.as_raw_fd(), NL_TIMEOUT).map_err(cx.io("netlink SO_RCVTIMEO"))?;
        Ok(Self(fd))
    }

    fn send(&self, cx: Ctx<'_>, msg: &[u8]) -> Result<(), ServiceAddrError> {
        // SAFETY: zeroed sockaddr_nl is the kernel's address (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const sa).cast(),
                mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(cx.io("netlink send")(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Receives replies, calling `each(type, payload)` for every message
    /// until the ACK (returned as its errno) or NLMSG_DONE (0).
    fn replies(&self, cx: Ctx<'_>, mut each: impl FnMut(u16, &[u8])) -> Result<i32, ServiceAddrError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: valid buffer.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(cx.io("netlink receive")(e));
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDRLEN {
                let len = u32_at(rest, 0) as usize;
                if len < NLMSG_HDRLEN || len > rest.len() {
                    return Err(cx.io("netlink receive")(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    )));
                }
                let (kind, seq) = (u16_at(rest, 4), u32_at(rest, 8));
                let payload = &rest[NLMSG_HDRLEN..len];
                rest = &rest[nl_align(len).min(rest.len())..];
                if seq != 1 {
                    continue;
                }
                match i32::from(kind) {
                    libc::NLMSG_DONE => return Ok(0),
                    libc::NLMSG_ERROR if payload.len() >= 4 => {
                        return Ok(-i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]))
                    }
                    _ => each(kind, payload),
                }
            }
        }
    }
}

/// The prefix length `addr` has on interface `index`, or None.
fn find(cx: Ctx<'_>, index: u32) -> Result<Option<u8>, ServiceAddrError> {
    let nl = Netlink::open(cx)?;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    nl.send(cx, &nl_finish(nl_message(RTM_GETADDR, flags, ifaddrmsg(family(cx.addr), 0, 0, 0))))?;
    let want = addr_bytes(cx.addr);
    let mut found = None;
    let errno = nl.replies(cx, |kind, p| {
        if kind != RTM_NEWADDR || p.len() < IFADDRMSG_LEN || p[0] != family(cx.addr) || u32_at(p, 4) != index {
            return;
        }
        // IFA_LOCAL is the local address where there is a peer (IFA_ADDRESS
        // then is the peer); otherwise IFA_ADDRESS is.
        let (mut local, mut address) = (None, None);
        let mut attrs = &p[IFADDRMSG_LEN..];
        while attrs.len() >= 4 {
            let (len, kind) = (u16_at(attrs, 0) as usize, u16_at(attrs, 2));
            if len < 4 || len > attrs.len() {
                break;
            }
            let data = &attrs[4..len];
            match kind {
                IFA_LOCAL => local = Some(data),
                IFA_ADDRESS => address = Some(data),
                _ => {}
            }
            attrs = &attrs[nl_align(len).min(attrs.len())..];
        }
        if local.or(address) == Some(&want[..]) {
            found = Some(p[1]);
        }
    })?;
    if errno != 0 {
        return Err(cx.io("listing addresses")(io::Error::from_raw_os_error(errno)));
    }
    Ok(found)
}

fn addr_request(cx: Ctx<'_>, kind: u16, flags: u16, index: u32, prefix_len: u8) -> Result<(), ServiceAddrError> {
    let ifa_flags = if cx.addr.is_ipv6() && kind == RTM_NEWADDR { IFA_F_NODAD } else { 0 };
    let mut m = nl_message(kind, flags, ifaddrmsg(family(cx.addr), prefix_len, ifa_flags, index));
    let a = addr_bytes(cx.addr);
    push_attr(&mut m, IFA_LOCAL, &a);
    push_attr(&mut m, IFA_ADDRESS, &a);
    let nl = Netlink::open(cx)?;
    nl.send(cx, &nl_finish(m))?;
    let op = if kind == RTM_NEWADDR { "adding the address" } else { "removing the address" };
    match nl.replies(cx, |_, _| {})? {
        0 => Ok(()),
        e => Err(cx.io(op)(io::Error::from_raw_os_error(e))),
    }
}

fn set_rcvtimeo(fd: RawFd, d: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as libc::suseconds_t };
    // SAFETY: valid option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            mem::size_of::<libc::timeval>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// AF_PACKET

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86DD;
const ARPHRD_ETHER: u16 = 1;
const PACKET_OUTGOING: u8 = 4;
const BROADCAST: [u8; 6] = [0xff; 6];
const IPPROTO_ICMPV6: u8 = 58;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;

/// Classic BPF for the IPv6 probe socket: only ICMPv6 NS/NA without
/// extension headers (next header at 14 + 6, ICMPv6 type at 14 + 40).
const ND_FILTER: [libc::sock_filter; 7] = [
    bpf(0x30, 0, 0, 20), // ldb [20]
    bpf(0x15, 0, 4, IPPROTO_ICMPV6 as u32),
    bpf(0x30, 0, 0, 54), // ldb [54]
    bpf(0x15, 1, 0, ND_NS as u32),
    bpf(0x15, 0, 1, ND_NA as u32),
    bpf(0x06, 0, 0, 0xffff), // accept
    bpf(0x06, 0, 0, 0),      // drop
];

/// Send-only sockets take nothing in.
const DROP_ALL: [libc::sock_filter; 1] = [bpf(0x06, 0, 0, 0)];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

struct PacketSocket {
    fd: OwnedFd,
    index: u32,
    mac: [u8; 6],
}

impl PacketSocket {
    /// A raw packet socket on interface `index` for `ethertype`, the filter
    /// attached before it is bound so that nothing else is queued.
    fn open(
        cx: Ctx<'_>,
        index: u32,
        ethertype: u16,
        filter: Option<&[libc::sock_filter]>,
    ) -> Result<Self, ServiceAddrError> {
        // Protocol 0: receives nothing until bound.
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(cx.io("packet socket")(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mac = hw_addr(cx, fd.as_raw_fd())?;
        if let Some(f) = filter {
            let prog = libc::sock_fprog { len: f.len() as u16, filter: f.as_ptr().cast_mut() };
            // SAFETY: the program outlives the call (the kernel copies it).
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    (&raw const prog).cast(),
                    mem::size_of::<libc::sock_fprog>() as u32,
                )
            };
            if r < 0 {
                return Err(cx.io("attaching the packet filter")(io::Error::last_os_error()));
            }
        }
        let sa = sockaddr_ll(index, ethertype, None);
        // SAFETY: valid address of the right size.
        let r =
            unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), mem::size_of::<libc::sockaddr_ll>() as u32) };
        if r < 0 {
            return Err(cx.io("binding the packet socket to the interface")(io::Error::last_os_error()));
        }
        Ok(Self { fd, index, mac })
    }

    fn send(&self, cx: Ctx<'_>, frame: &[u8]) -> Result<(), ServiceAddrError> {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let sa = sockaddr_ll(self.index, ethertype, Some(dst));
        // SAFETY: valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sa).cast(),
                mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(cx.io("sending")(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// One incoming frame (outgoing copies skipped), or None after `wait`.
    fn recv(&self, cx: Ctx<'_>, buf: &mut [u8], wait: Duration) -> Result<Option<usize>, ServiceAddrError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(cx.io("waiting for an answer")(e));
            }
            if r == 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid.
            let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut len = mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) {
                    continue;
                }
                return Err(cx.io("receiving")(e));
            }
            if from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}

fn sockaddr_ll(index: u32, ethertype: u16, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: zeroed sockaddr_ll is valid.
    let mut sa: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ethertype.to_be();
    sa.sll_ifindex = index as i32;
    if let Some(d) = dst {
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&d);
    }
    sa
}

/// The interface's Ethernet address (SIOCGIFHWADDR on any socket).
fn hw_addr(cx: Ctx<'_>, fd: RawFd) -> Result<[u8; 6], ServiceAddrError> {
    if cx.iface.len() >= libc::IFNAMSIZ {
        return Err(cx.no_iface());
    }
    // SAFETY: zeroed ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(cx.iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: valid ifreq for SIOCGIFHWADDR.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &raw mut ifr) } < 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENODEV) { cx.no_iface() } else { cx.io("SIOCGIFHWADDR")(e) });
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != ARPHRD_ETHER {
        return Err(ServiceAddrError::NotEthernet { iface: cx.iface.to_owned(), addr: cx.addr, hw_type: sa.sa_family });
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

// ---------------------------------------------------------------------------
// Frames

/// A broadcast ARP request (RFC 5227: probe with `spa` 0.0.0.0,
/// announcement with `spa` = `tpa`), padded to the 60-byte minimum.
fn arp_frame(mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
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
fn is_arp_claim(f: &[u8], mac: [u8; 6], addr: Ipv4Addr) -> bool {
    if f.len() < 42 || u16::from_be_bytes([f[12], f[13]]) != ETH_P_ARP {
        return false;
    }
    let a = &f[14..];
    let op = u16::from_be_bytes([a[6], a[7]]);
    a[..6] == [0, 1, 0x08, 0x00, 6, 4] && (op == 1 || op == 2) && a[8..14] != mac && a[14..18] == addr.octets()
}

fn solicited_node(a: Ipv6Addr) -> [u8; 16] {
    let o = a.octets();
    [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]]
}

/// ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 8.1).
fn icmpv6_csum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let mut s = csum_fold(0, src);
    s = csum_fold(s, dst);
    s = csum_fold(s, &(msg.len() as u32).to_be_bytes());
    s = csum_fold(s, &[0, 0, 0, IPPROTO_ICMPV6]);
    csum_finish(csum_fold(s, msg))
}

/// RFC 4862 DAD: NS from :: to the solicited-node group, hop limit 255,
/// no source link-layer address option.
fn dad_ns_frame(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
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
fn is_na_for(f: &[u8], mac: [u8; 6], target: Ipv6Addr) -> bool {
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
fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, router: bool) -> Vec<u8> {
    let flags: u32 = 0x2000_0000 | if router { 0x8000_0000 } else { 0 };
    let mut na = vec![ND_NA, 0, 0, 0];
    na.extend_from_slice(&flags.to_be_bytes());
    na.extend_from_slice(&target.octets());
    na.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    na.extend_from_slice(&mac);
    na
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
