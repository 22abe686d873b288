//! I/O: the control sockets (UDP and IP protocol 115) and their readers,
//! the Unix-socket API server, and the event log streamed to `events`
//! clients. Readers and API connections talk to the daemon task through
//! channels; nothing here touches the engine.

use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use l2tp_proto::wire::Transport;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UdpSocket, UnixListener, UnixStream},
    sync::{broadcast, mpsc, oneshot},
};
use tracing::{debug, warn};

use crate::api::{EventView, Reply, Request, Response};

/// A control datagram as a reader hands it to the daemon.
#[derive(Debug)]
pub(super) struct Datagram {
    pub from: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

pub(super) type ApiCall = (Request, oneshot::Sender<Response>);

/// Receive buffer for control sockets. A burst of control messages (every
/// tunnel of a peer opening its sessions at once, or a recovery) overflows
/// the kernel default of about 200 KiB, and every lost message costs a
/// retransmission timeout (1 s, then doubling). The burst is bounded by
/// the tunnels' windows: 1,000 tunnels of a window of 16 put 16,000
/// messages and their acknowledgements in flight, each about 1.3 KB of
/// socket memory (8 MB lost 7,917 of them in such a setup). The memory is
/// only taken while messages wait. Root may exceed net.core.rmem_max.
const CONTROL_RCVBUF: usize = 32 << 20;

/// The control sockets, one per transport and address family.
#[derive(Debug, Default)]
pub(super) struct Sockets {
    udp4: Option<Arc<UdpSocket>>,
    udp6: Option<Arc<UdpSocket>>,
    ip4: Option<Arc<UdpSocket>>,
    ip6: Option<Arc<UdpSocket>>,
}

impl Sockets {
    /// Binds the UDP addresses (and IP protocol 115 when `listen_ip`), each
    /// with a reader feeding `tx`.
    pub fn open(listen: &[SocketAddr], listen_ip: bool, tx: &mpsc::Sender<Datagram>) -> anyhow::Result<Self> {
        let mut s = Self::default();
        for addr in listen {
            let sock = Arc::new(udp_socket(*addr)?);
            reader(sock.clone(), Transport::Udp, false, tx.clone());
            if addr.is_ipv4() {
                s.udp4 = Some(sock);
            } else {
                s.udp6 = Some(sock);
            }
        }
        if listen_ip {
            let s4 = Arc::new(ip_socket(false)?);
            reader(s4.clone(), Transport::Ip, true, tx.clone());
            s.ip4 = Some(s4);
            // IPv6 may be off in this namespace.
            match ip_socket(true) {
                Ok(s6) => {
                    let s6 = Arc::new(s6);
                    reader(s6.clone(), Transport::Ip, false, tx.clone());
                    s.ip6 = Some(s6);
                }
                Err(e) => warn!("no IPv6 L2TPv3-over-IP socket: {e:#}"),
            }
        }
        Ok(s)
    }

    /// Sends one control message; failures are logged (the reliable
    /// channel retransmits).
    pub async fn send(&self, to: SocketAddr, transport: Transport, bytes: &[u8]) {
        let sock = match (transport, to.is_ipv4()) {
            (Transport::Udp, true) => &self.udp4,
            (Transport::Udp, false) => &self.udp6,
            (Transport::Ip, true) => &self.ip4,
            (Transport::Ip, false) => &self.ip6,
        };
        let Some(sock) = sock else {
            warn!(%to, ?transport, "no socket to send on");
            return;
        };
        let to = if transport == Transport::Ip { SocketAddr::new(to.ip(), 0) } else { to };
        if let Err(e) = sock.send_to(bytes, to).await {
            warn!(%to, "send: {e}");
        }
    }
}

fn udp_socket(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // An address not (yet) held here may be bound: a hot standby listens
    // on the service address before it takes it over.
    if addr.is_ipv6() {
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    big_receive_buffer(&s);
    s.bind(&addr.into()).with_context(|| format!("binding UDP {addr}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// A raw IP socket for protocol 115 (L2TPv3 over IP). Read and written
/// with recvfrom/sendto like a datagram socket; IPv4 reads start with the
/// IP header.
fn ip_socket(v6: bool) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(l2tp_common::wire::IPPROTO_L2TP))))
        .context("raw socket for IP protocol 115 (needs CAP_NET_RAW)")?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    big_receive_buffer(&s);
    Ok(UdpSocket::from_std(s.into())?)
}

fn big_receive_buffer(s: &socket2::Socket) {
    use std::os::fd::AsRawFd as _;
    let size = CONTROL_RCVBUF as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a c_int option value.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        // Unprivileged: as much as net.core.rmem_max allows.
        if let Err(e) = s.set_recv_buffer_size(CONTROL_RCVBUF) {
            debug!("control socket receive buffer stays at the default: {e}");
        }
    }
}

fn reader(sock: Arc<UdpSocket>, transport: Transport, strip_ip4: bool, tx: mpsc::Sender<Datagram>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    warn!("receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let mut bytes = &buf[..n];
            if strip_ip4 {
                let ihl = bytes.first().map(|b| usize::from(b & 0x0f) * 4).unwrap_or(0);
                if ihl < 20 || bytes.len() < ihl {
                    continue;
                }
                bytes = &bytes[ihl..];
            }
            let d = Datagram { from, transport, bytes: bytes.to_vec() };
            if tx.send(d).await.is_err() {
                return;
            }
        }
    });
}

/// Events for `l2tp-ctl events`: the most recent ones kept for a client
/// that starts listening, and a broadcast of the new ones.
#[derive(Clone, Debug)]
pub(super) struct EventLog {
    tx: broadcast::Sender<Arc<EventView>>,
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<Arc<EventView>>>>,
}

impl EventLog {
    /// Events kept for clients that connect later.
    const KEEP: usize = 1000;

    /// Events queued per client: one per session the data plane holds.
    /// A recovery confirms every session in one burst, and a client (such
    /// as a dashboard's `l2tp-ctl events`) may get no CPU before the
    /// daemon is done; about 2.6 MB.
    pub const QUEUE: usize = l2tp_common::session::MAX_SESSIONS as usize;

    pub fn new() -> Self {
        Self { tx: broadcast::channel(Self::QUEUE).0, recent: Arc::default() }
    }

    /// One allocation per event, shared by the kept ones and every client
    /// (a recovery emits one per session).
    pub fn send(&self, v: EventView) {
        let v = Arc::new(v);
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == Self::KEEP {
                r.pop_front();
            }
            r.push_back(Arc::clone(&v));
        }
        // No client listening is not an error.
        let _ = self.tx.send(v);
    }

    /// The kept events and a receiver for the next ones, with nothing lost
    /// or repeated in between (the daemon runs on one thread).
    fn subscribe(&self) -> (Vec<Arc<EventView>>, broadcast::Receiver<Arc<EventView>>) {
        let rx = self.tx.subscribe();
        let recent = self.recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
        (recent, rx)
    }
}

/// Serves the control API on `path` (mode 0600, root or our own user only).
pub(super) async fn serve_api(path: &Path, calls: mpsc::Sender<ApiCall>, events: EventLog) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // No daemon answered on it (checked at start): a stale file, if any.
    remove_socket(path);
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let allowed = stream.peer_cred().is_ok_and(|c| c.uid() == 0 || c.uid() == me);
            if !allowed {
                continue;
            }
            let calls = calls.clone();
            let events = events.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, calls, events).await {
                    debug!("API connection: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Removes the API socket file; one that is already gone is fine.
pub(super) fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), "removing the API socket: {e}"),
    }
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<ApiCall>, events: EventLog) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        if line.len() > 1 << 20 {
            anyhow::bail!("request too long");
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error(format!("bad request: {e}")),
            Ok(Request::Events) => {
                use broadcast::error::{RecvError, TryRecvError};
                let (recent, mut rx) = events.subscribe();
                write_line(&mut w, &Response::Ok(Reply::Following)).await?;
                let mut out = Vec::new();
                for ev in &recent {
                    push_line(&mut out, &**ev)?;
                }
                w.write_all(&out).await?;
                loop {
                    // One write for what has arrived: a recovery emits an
                    // event per session in one flush, and a write each
                    // would cost the daemon a syscall per event and client.
                    out.clear();
                    let mut next = rx.recv().await;
                    loop {
                        match next {
                            Ok(ev) => push_line(&mut out, &*ev)?,
                            Err(RecvError::Lagged(n)) => {
                                warn!("events client lagged by {n} events");
                                // The client is told, in the stream, what it missed.
                                let lost = EventView {
                                    time_ms: crate::store::now_ms(),
                                    event: "events-lost".into(),
                                    tunnel: None,
                                    tunnel_id: None,
                                    session: None,
                                    session_id: None,
                                    detail: format!("{n} event(s) not delivered: this client fell behind"),
                                };
                                push_line(&mut out, &lost)?;
                            }
                            Err(RecvError::Closed) => {
                                w.write_all(&out).await?;
                                return Ok(());
                            }
                        }
                        if out.len() >= EVENT_WRITE_MAX {
                            break;
                        }
                        next = match rx.try_recv() {
                            Ok(ev) => Ok(ev),
                            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                            Err(TryRecvError::Closed) => Err(RecvError::Closed),
                            Err(TryRecvError::Empty) => break,
                        };
                    }
                    w.write_all(&out).await?;
                }
            }
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if calls.send((req, tx)).await.is_err() {
                    return Ok(());
                }
                match rx.await {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            }
        };
        write_line(&mut w, &resp).await?;
    }
    Ok(())
}

/// Bytes of events gathered into one write to an events client.
const EVENT_WRITE_MAX: usize = 256 * 1024;

/// Appends `v` as a JSON line.
fn push_line<T: serde::Serialize>(out: &mut Vec<u8>, v: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.push(b'\n');
    Ok(())
}

async fn write_line<T: serde::Serialize>(w: &mut tokio::net::unix::OwnedWriteHalf, v: &T) -> anyhow::Result<()> {
    let mut b = serde_json::to_vec(v)?;
    b.push(b'\n');
    w.write_all(&b).await?;
    Ok(())
}
