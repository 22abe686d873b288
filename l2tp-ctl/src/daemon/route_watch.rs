//! Route and neighbour changes, from the kernel's rtnetlink multicast
//! groups: each one makes the data plane's cached next hops stale at once
//! (one map write), so a changed route or neighbour is followed on the next
//! frame instead of after the cache's time to live.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{debug, warn};

/// `RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE`.
const GROUPS: u32 = 0x1 | 0x4 | 0x40 | 0x400;

fn subscribe() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, libc::NETLINK_ROUTE)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zero is a valid start.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = GROUPS;
    // SAFETY: a valid sockaddr_nl of its own size.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Watches the kernel's routes, neighbours and links; `changed` gets one
/// message per burst of changes (it holds at most one). Errors opening the
/// socket are returned; later ones end the watch with a warning (the
/// cache's time to live still bounds staleness).
pub(super) fn spawn(changed: mpsc::Sender<()>) -> io::Result<()> {
    // SAFETY: an OwnedFd: open, the same descriptor, for as long as the
    // AsyncFd owns it.
    let fd = unsafe { AsyncFd::register(subscribe()?) }?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut guard = match fd.readable().await {
                Ok(g) => g,
                Err(e) => return warn!("route watch ended: {e}"),
            };
            // Drain everything queued: one invalidation covers the burst.
            let mut any = false;
            loop {
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n >= 0 {
                    any = true;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    // Messages were dropped: something changed.
                    Some(libc::ENOBUFS) => any = true,
                    Some(libc::EINTR) => {}
                    _ => return warn!("route watch ended: {e}"),
                }
            }
            guard.clear_ready();
            if any {
                debug!("route, neighbour or link change: cached next hops made stale");
                // Full: an invalidation is already pending.
                let _ = changed.try_send(());
            }
        }
    });
    Ok(())
}
