//! Customer traffic for the end-to-end tests: bounded UDP streams between
//! namespaces, counted at the receiver.

use std::{
    net::UdpSocket,
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::NetNs;

/// A stream of `n` datagrams of `size` bytes from `from_addr` (in `from`)
/// to `to_addr:5000` (in `to`), with a pause of `pace` every 50 datagrams.
#[derive(Clone, Copy, Debug)]
pub struct Stream<'a> {
    pub from: &'a NetNs,
    pub from_addr: &'a str,
    pub to: &'a NetNs,
    pub to_addr: &'a str,
    pub n: usize,
    pub size: usize,
    pub pace: Duration,
}

impl<'a> Stream<'a> {
    pub fn new(from: &'a NetNs, from_addr: &'a str, to: &'a NetNs, to_addr: &'a str, n: usize) -> Self {
        Self { from, from_addr, to, to_addr, n, size: 300, pace: Duration::from_millis(2) }
    }

    /// Sends the stream; returns how many datagrams of the right size
    /// arrived (the receiver gives up 500 ms after the last one).
    pub fn run(self) -> usize {
        let (ready_tx, ready_rx) = mpsc::channel();
        let Self { from, from_addr, to, to_addr, n, size, pace } = self;
        std::thread::scope(|s| {
            let receiver = s.spawn(|| {
                to.enter(|| {
                    let sock = UdpSocket::bind(format!("{to_addr}:5000")).expect("bind");
                    // Room for the whole stream: a receiver descheduled
                    // under the test suite's load must not lose datagrams
                    // the pseudowire delivered (what is counted is the
                    // pseudowire, not this socket).
                    set_rcvbuf(&sock, 4 << 20);
                    sock.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
                    ready_tx.send(()).expect("ready");
                    let mut got = 0;
                    let mut buf = vec![0u8; size + 100];
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while got < n && Instant::now() < deadline {
                        match sock.recv(&mut buf) {
                            Ok(len) if len == size => got += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    got
                })
                .expect("enter")
            });
            ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
            from.enter(|| {
                let sock = UdpSocket::bind(format!("{from_addr}:0")).expect("bind");
                let payload = vec![0x5a; size];
                for i in 0..n {
                    sock.send_to(&payload, format!("{to_addr}:5000")).expect("send");
                    if i % 50 == 49 {
                        std::thread::sleep(pace);
                    }
                }
            })
            .expect("enter");
            receiver.join().expect("receiver")
        })
    }
}

/// Asks for a receive buffer of `bytes` (root may exceed `rmem_max`);
/// best effort, the default otherwise.
fn set_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on our own socket with an int option value.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const bytes).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}
