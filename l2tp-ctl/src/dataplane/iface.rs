//! The interface facts the loader and the daemon need (index, MAC, MTU,
//! IP forwarding), read with ioctls and sysfs, names checked first.

use std::{fs, io, path::PathBuf};

use super::{DataplaneError, Result};

/// Checks an interface name the way the kernel does (IFNAMSIZ 16 with NUL,
/// no '/', ':' or whitespace), before it reaches any syscall.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':');
    if ok {
        Ok(())
    } else {
        Err(DataplaneError::InvalidInterface(name.to_owned()))
    }
}

/// Interface index of `name` in the caller's network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    validate_ifname(name)?;
    let cname = std::ffi::CString::new(name).map_err(|_| DataplaneError::InvalidInterface(name.to_owned()))?;
    // SAFETY: cname is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(cname.as_ptr()) } {
        0 => Err(DataplaneError::UnknownInterface(name.to_owned())),
        i => Ok(i),
    }
}

/// Turns IP forwarding on for the uplink `name` (IPv4, and IPv6 when the
/// interface has it), in the caller's network namespace. `bpf_fib_lookup`
/// answers "forwarding disabled" for interfaces without it, so sessions
/// that look their next hop up need it on their uplink.
pub fn enable_forwarding(name: &str) -> Result<()> {
    validate_ifname(name)?;
    for (family, required) in [("ipv4", true), ("ipv6", false)] {
        let path = PathBuf::from(format!("/proc/sys/net/{family}/conf/{name}/forwarding"));
        match std::fs::write(&path, b"1") {
            Ok(()) => {}
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DataplaneError::Io { what: "enabling forwarding in", path, source }),
        }
    }
    Ok(())
}

/// Whether IP forwarding is on for the uplink `name` in the caller's network
/// namespace, for IPv6 or IPv4: the per-interface setting `bpf_fib_lookup`
/// checks. Without it the lookup answers "forwarding disabled"
/// (`BPF_FIB_LKUP_RET_FWD_DISABLED`) and a session without a fallback
/// next-hop MAC drops every frame as `tx_no_route`.
pub fn forwarding_enabled(name: &str, ipv6: bool) -> Result<bool> {
    validate_ifname(name)?;
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    let path = PathBuf::from(format!("/proc/sys/net/{family}/conf/{name}/forwarding"));
    match fs::read_to_string(&path) {
        Ok(v) => Ok(v.trim() != "0"),
        // No IPv6 on the interface: nothing forwards IPv6 there.
        Err(e) if e.kind() == io::ErrorKind::NotFound && ipv6 => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DataplaneError::UnknownInterface(name.to_owned())),
        Err(source) => Err(DataplaneError::Io { what: "reading", path, source }),
    }
}

/// One SIOCGIF* ioctl on `name` in the caller's network namespace
/// (/sys/class/net may show another namespace).
fn ifreq(name: &str, request: libc::Ioctl, what: &'static str) -> Result<libc::ifreq> {
    validate_ifname(name)?;
    // SAFETY: plain socket/ioctl/close on a zeroed ifreq we own; the name
    // was checked to fit IFNAMSIZ with its NUL.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(DataplaneError::Io {
                what: "socket for",
                path: name.into(),
                source: io::Error::last_os_error(),
            });
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let rc = libc::ioctl(fd, request, &mut req);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(if err.raw_os_error() == Some(libc::ENODEV) {
                DataplaneError::UnknownInterface(name.to_owned())
            } else {
                DataplaneError::Io { what, path: name.into(), source: err }
            });
        }
        Ok(req)
    }
}

/// MAC address of `name` in the caller's network namespace.
pub fn hwaddr(name: &str) -> Result<[u8; 6]> {
    let req = ifreq(name, libc::SIOCGIFHWADDR, "reading MAC address of")?;
    let mut mac = [0u8; 6];
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    for (d, s) in mac.iter_mut().zip(data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// MTU of `name` in the caller's network namespace.
pub fn mtu(name: &str) -> Result<u32> {
    let req = ifreq(name, libc::SIOCGIFMTU, "reading MTU of")?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32)
}
