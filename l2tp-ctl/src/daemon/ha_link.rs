//! The hot standby's partner connection: one TCP connection to the
//! partner at a time, secured by [`SecureChannel`] (Noise `NNpsk0`),
//! length-framed, re-established after any failure; what arrives goes to
//! the daemon as [`HaInput`].

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use l2tp_ha::{wire, SecureChannel};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tracing::{debug, info, warn};

use super::ha::{HaInput, RECONNECT};

/// The partner connection: the lower address of the pair connects, the
/// other accepts (from the partner's address only); one connection at a
/// time, re-established after any failure.
pub(super) async fn link_task(listen: SocketAddr, partner: SocketAddr, psk: [u8; 32], tx: mpsc::Sender<HaInput>) {
    let initiator = listen < partner;
    let listener = if initiator {
        None
    } else {
        loop {
            match bind_listener(listen) {
                Ok(l) => break Some(l),
                Err(e) => {
                    warn!("ha.listen {listen}: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    loop {
        let stream = match &listener {
            None => match connect(listen, partner).await {
                Ok(s) => s,
                Err(e) => {
                    debug!("partner {partner}: {e:#}");
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            },
            Some(l) => match l.accept().await {
                Ok((s, from)) if from.ip() == partner.ip() => s,
                Ok((_, from)) => {
                    warn!(%from, "partner channel: connection from another address refused");
                    continue;
                }
                Err(e) => {
                    warn!("partner channel accept: {e}");
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            },
        };
        if let Err(e) = run_link(stream, initiator, &psk, &tx).await {
            info!("partner channel closed: {e:#}");
        }
        if tx.send(HaInput::Down).await.is_err() {
            return;
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

fn bind_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4)?;
    Ok(TcpListener::from_std(s.into())?)
}

async fn connect(listen: SocketAddr, partner: SocketAddr) -> anyhow::Result<TcpStream> {
    let sock = match partner {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.bind(SocketAddr::new(listen.ip(), 0))?;
    let s =
        tokio::time::timeout(Duration::from_secs(1), sock.connect(partner)).await.context("connect timed out")??;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some((payload, used)) = wire::deframe(buf) {
            let p = payload.to_vec();
            buf.drain(..used);
            return Ok(p);
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            anyhow::bail!("closed by the partner");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn write_frame(s: &mut TcpStream, payload: &[u8]) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 2);
    wire::frame(payload, &mut out)?;
    s.write_all(&out).await?;
    Ok(())
}

/// One connection: the handshake, then frames both ways until either
/// side fails.
async fn run_link(mut s: TcpStream, initiator: bool, psk: &[u8; 32], tx: &mpsc::Sender<HaInput>) -> anyhow::Result<()> {
    use l2tp_ha::secure::Received;
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    let handshake = Duration::from_secs(2);
    let mut ch = if initiator {
        let (mut ch, first) = SecureChannel::initiator(psk)?;
        write_frame(&mut s, &first).await?;
        let reply =
            tokio::time::timeout(handshake, read_frame(&mut s, &mut buf)).await.context("handshake timed out")??;
        ch.receive(&reply)?;
        ch
    } else {
        let mut ch = SecureChannel::responder(psk)?;
        let first =
            tokio::time::timeout(handshake, read_frame(&mut s, &mut buf)).await.context("handshake timed out")??;
        match ch.receive(&first)? {
            Received::Reply(r) => write_frame(&mut s, &r).await?,
            _ => anyhow::bail!("unexpected handshake"),
        }
        ch
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(65_536);
    tx.send(HaInput::Up(out_tx)).await?;
    loop {
        tokio::select! {
            frame = read_frame(&mut s, &mut buf) => {
                match ch.receive(&frame?)? {
                    Received::Message(m) => tx.send(HaInput::Msg(m)).await?,
                    _ => anyhow::bail!("handshake frame after the handshake"),
                }
            }
            out = out_rx.recv() => {
                let Some(plain) = out else { anyhow::bail!("closed by the daemon") };
                let sealed = ch.seal(&plain)?;
                write_frame(&mut s, &sealed).await?;
            }
        }
    }
}
