//! AF_PACKET sockets on the service interface: sending frames and waiting for answers.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use super::*;

// ---------------------------------------------------------------------------
// AF_PACKET

pub(super) const ETH_P_ARP: u16 = 0x0806;
pub(super) const ETH_P_IPV6: u16 = 0x86DD;
pub(super) const ARPHRD_ETHER: u16 = 1;
pub(super) const PACKET_OUTGOING: u8 = 4;
pub(super) const BROADCAST: [u8; 6] = [0xff; 6];
pub(super) const IPPROTO_ICMPV6: u8 = 58;
pub(super) const ND_NS: u8 = 135;
pub(super) const ND_NA: u8 = 136;

/// Classic BPF for the IPv6 probe socket: only ICMPv6 NS/NA without
/// extension headers (next header at 14 + 6, ICMPv6 type at 14 + 40).
pub(super) const ND_FILTER: [libc::sock_filter; 7] = [
    bpf(0x30, 0, 0, 20), // ldb [20]
    bpf(0x15, 0, 4, IPPROTO_ICMPV6 as u32),
    bpf(0x30, 0, 0, 54), // ldb [54]
    bpf(0x15, 1, 0, ND_NS as u32),
    bpf(0x15, 0, 1, ND_NA as u32),
    bpf(0x06, 0, 0, 0xffff), // accept
    bpf(0x06, 0, 0, 0),      // drop
];

/// Send-only sockets take nothing in.
pub(super) const DROP_ALL: [libc::sock_filter; 1] = [bpf(0x06, 0, 0, 0)];

pub(super) const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

pub(super) struct PacketSocket {
    fd: OwnedFd,
    index: u32,
    pub(super) mac: [u8; 6],
}

impl PacketSocket {
    /// A raw packet socket on interface `index` for `ethertype`, the filter
    /// attached before it is bound so that nothing else is queued.
    pub(super) fn open(
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

    pub(super) fn send(&self, cx: Ctx<'_>, frame: &[u8]) -> Result<(), ServiceAddrError> {
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
    pub(super) fn recv(&self, cx: Ctx<'_>, buf: &mut [u8], wait: Duration) -> Result<Option<usize>, ServiceAddrError> {
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

pub(super) fn sockaddr_ll(index: u32, ethertype: u16, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
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
pub(super) fn hw_addr(cx: Ctx<'_>, fd: RawFd) -> Result<[u8; 6], ServiceAddrError> {
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
