//! rtnetlink: the addresses of an interface (RTM_GETADDR, RTM_NEWADDR, RTM_DELADDR).

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use super::*;

// ---------------------------------------------------------------------------
// rtnetlink

pub(super) const RTM_NEWADDR: u16 = 20;
pub(super) const RTM_DELADDR: u16 = 21;
pub(super) const RTM_GETADDR: u16 = 22;
pub(super) const IFA_ADDRESS: u16 = 1;
pub(super) const IFA_LOCAL: u16 = 2;
pub(super) const IFA_F_NODAD: u8 = 0x02;
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const IFADDRMSG_LEN: usize = 8;
pub(super) const NL_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

pub(super) fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

pub(super) fn nl_align(n: usize) -> usize {
    (n + 3) & !3
}

pub(super) fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(nl_align(msg.len()), 0);
}

/// nlmsghdr + ifaddrmsg, the length fixed up by [`nl_finish`].
pub(super) fn nl_message(kind: u16, flags: u16, ifa: [u8; IFADDRMSG_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq: one request per socket
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.extend_from_slice(&ifa);
    m
}

pub(super) fn nl_finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

pub(super) fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut h = [family, prefix_len, flags, 0 /* RT_SCOPE_UNIVERSE */, 0, 0, 0, 0];
    h[4..].copy_from_slice(&index.to_ne_bytes());
    h
}

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) struct Netlink(OwnedFd);

impl Netlink {
    pub(super) fn open(cx: Ctx<'_>) -> Result<Self, ServiceAddrError> {
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

    pub(super) fn send(&self, cx: Ctx<'_>, msg: &[u8]) -> Result<(), ServiceAddrError> {
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
    pub(super) fn replies(&self, cx: Ctx<'_>, mut each: impl FnMut(u16, &[u8])) -> Result<i32, ServiceAddrError> {
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
pub(super) fn find(cx: Ctx<'_>, index: u32) -> Result<Option<u8>, ServiceAddrError> {
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

pub(super) fn addr_request(
    cx: Ctx<'_>,
    kind: u16,
    flags: u16,
    index: u32,
    prefix_len: u8,
) -> Result<(), ServiceAddrError> {
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

pub(super) fn set_rcvtimeo(fd: RawFd, d: Duration) -> io::Result<()> {
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
