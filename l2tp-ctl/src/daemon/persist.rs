//! Persistence: the state store behind the daemon, and the conversions
//! between its records and the engine's types.
//!
//! No store error is dropped. A failed write of a tunnel or session that
//! came up is the caller's to handle (it is not up: it is closed); a
//! failed removal is logged and retried at every tick until it succeeds,
//! so that a record the daemon has let go of cannot come back at the next
//! start.

use std::{net::SocketAddr, path::Path};

use l2tp_proto::{
    engine::{FailoverCapability, RestoredSession, RestoredTunnel, SessionParams, TunnelId, TunnelInfo, TunnelParams},
    wire::Version,
};
use tracing::{error, info};

use crate::{
    config::{Encapsulation, SessionConfig},
    store::{self, FailoverRecord, SessionRecord, Store, StoreError, TunnelRecord},
};

/// A removal the store refused, to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Tunnel(TunnelId),
    Session(TunnelId, u32),
}

#[derive(Debug)]
pub(super) struct Persistence {
    store: Store,
    retry: Vec<Removal>,
}

impl Persistence {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self { store: Store::open(dir)?, retry: Vec::new() })
    }

    /// Durable when this returns `Ok`.
    pub fn put_tunnel(&mut self, t: &TunnelRecord) -> Result<(), StoreError> {
        // A removal of an earlier tunnel with this ID must not undo it.
        self.retry.retain(|r| !matches!(r, Removal::Tunnel(id) if *id == t.local_id));
        self.store.put_tunnel(t)
    }

    /// All durable or none.
    pub fn put_sessions(&mut self, sessions: &[&SessionRecord]) -> Result<(), StoreError> {
        self.retry.retain(|r| match r {
            Removal::Session(t, s) => !sessions.iter().any(|x| (x.tunnel_id, x.local_id) == (*t, *s)),
            Removal::Tunnel(_) => true,
        });
        self.store.put_sessions(sessions)
    }

    /// Removes a tunnel and its sessions; retried later if the store
    /// refuses.
    pub fn remove_tunnel(&mut self, id: TunnelId) {
        self.remove(Removal::Tunnel(id));
    }

    /// Removes a session; retried later if the store refuses.
    pub fn remove_session(&mut self, tunnel: TunnelId, sid: u32) {
        self.remove(Removal::Session(tunnel, sid));
    }

    fn remove(&mut self, r: Removal) {
        if let Err(e) = self.apply(r) {
            error!(?r, "state store removal failed, will retry: {e}");
            if !self.retry.contains(&r) {
                self.retry.push(r);
            }
        }
    }

    fn apply(&self, r: Removal) -> Result<(), StoreError> {
        match r {
            Removal::Tunnel(id) => self.store.remove_tunnel(id),
            Removal::Session(t, s) => self.store.remove_session(t, s),
        }
    }

    /// Tries the removals that failed before again.
    pub fn retry(&mut self) {
        if self.retry.is_empty() {
            return;
        }
        let todo = std::mem::take(&mut self.retry);
        for r in todo {
            match self.apply(r) {
                Ok(()) => info!(?r, "state store removal done on retry"),
                Err(e) => {
                    error!(?r, "state store removal failed again, will retry: {e}");
                    self.retry.push(r);
                }
            }
        }
    }

    pub fn tunnels(&self) -> Result<Vec<TunnelRecord>, StoreError> {
        self.store.tunnels()
    }

    pub fn sessions(&self, tunnel: TunnelId) -> Result<Vec<SessionRecord>, StoreError> {
        self.store.sessions(tunnel)
    }

    /// Forgets everything (after an orderly shutdown).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.retry.clear();
        self.store.clear()
    }
}

// --- records <-> engine types ---

impl From<FailoverCapability> for FailoverRecord {
    fn from(f: FailoverCapability) -> Self {
        Self { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms }
    }
}

impl From<FailoverRecord> for FailoverCapability {
    fn from(f: FailoverRecord) -> Self {
        Self { control: f.control, data: f.data, recovery_time_ms: f.recovery_time_ms }
    }
}

/// The record of a tunnel that just came up.
pub(super) fn tunnel_record(
    name: &str,
    info: &TunnelInfo,
    peer: SocketAddr,
    peer_host_name: &[u8],
    peer_failover: Option<FailoverCapability>,
) -> TunnelRecord {
    TunnelRecord {
        name: name.to_owned(),
        local_id: info.local_id,
        peer_id: info.peer_id,
        peer,
        version: match info.version {
            Version::V2 => 2,
            Version::V3 => 3,
        },
        encapsulation: Encapsulation::from(info.transport),
        initiator: info.initiator,
        local_failover: info.local_failover.map(Into::into),
        peer_failover: peer_failover.map(Into::into),
        peer_host_name: String::from_utf8_lossy(peer_host_name).into_owned(),
        established_ms: store::now_ms(),
    }
}

/// What the wire negotiated for a session that came up.
#[derive(Debug)]
pub(super) struct UpSession {
    pub tunnel: TunnelId,
    pub name: String,
    pub local_id: u32,
    pub peer_id: u32,
    pub remote_end_id: String,
    pub pw_type: u16,
    pub rx_cookie: Vec<u8>,
    pub tx_cookie: Vec<u8>,
    pub sublayer: bool,
    pub sequencing: bool,
}

/// The record of a session that just came up; `cfg` is its configuration
/// when it has one.
pub(super) fn session_record(s: UpSession, cfg: Option<&SessionConfig>) -> SessionRecord {
    SessionRecord {
        tunnel_id: s.tunnel,
        name: s.name,
        local_id: s.local_id,
        peer_id: s.peer_id,
        remote_end_id: s.remote_end_id,
        pw_type: s.pw_type,
        interface: cfg.map(|c| c.interface.clone()),
        rx_cookie: s.rx_cookie,
        tx_cookie: s.tx_cookie,
        sublayer: s.sublayer,
        sequencing: s.sequencing,
        receive_mode: cfg.map(|c| c.receive_mode).unwrap_or_default(),
        resync_n: cfg.map_or(crate::config::SessionConfig::DEFAULT_RESYNC_N, |c| c.resync_n),
        established_ms: store::now_ms(),
    }
}

/// A stored session as the engine takes it back for recovery.
pub(super) fn restored_session(s: &SessionRecord) -> RestoredSession {
    RestoredSession {
        local_id: s.local_id,
        peer_id: s.peer_id,
        params: SessionParams {
            pw_type: s.pw_type,
            remote_end_id: s.remote_end_id.as_bytes().to_vec(),
            cookie_len: s.rx_cookie.len(),
            sublayer: s.sublayer,
            sequencing: s.sequencing,
        },
        rx_cookie: s.rx_cookie.clone(),
        tx_cookie: s.tx_cookie.clone(),
        peer_sublayer: s.sublayer,
        peer_sequencing: s.sequencing,
    }
}

/// A stored tunnel as the engine takes it back for recovery, with the
/// parameters of its configuration (the secret is never stored).
pub(super) fn restored_tunnel(
    rec: &TunnelRecord,
    params: TunnelParams,
    sessions: Vec<RestoredSession>,
) -> RestoredTunnel {
    RestoredTunnel {
        local_id: rec.local_id,
        peer_id: rec.peer_id,
        peer: rec.peer,
        params,
        initiator: rec.initiator,
        peer_failover: rec.peer_failover.map(Into::into),
        peer_host_name: rec.peer_host_name.clone().into_bytes(),
        sessions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(t: TunnelId, s: u32) -> SessionRecord {
        session_record(
            UpSession {
                tunnel: t,
                name: format!("s{s}"),
                local_id: s,
                peer_id: s + 1,
                remote_end_id: "pw".into(),
                pw_type: 5,
                rx_cookie: vec![1, 2, 3, 4],
                tx_cookie: vec![5, 6, 7, 8],
                sublayer: true,
                sequencing: true,
            },
            None,
        )
    }

    #[test]
    fn a_session_record_restores_what_was_negotiated() {
        let rec = record(7, 3);
        assert_eq!((rec.receive_mode, rec.resync_n), (crate::config::ReceiveMode::AcceptNew, 5), "defaults");
        let r = restored_session(&rec);
        assert_eq!((r.local_id, r.peer_id, r.params.cookie_len), (3, 4, 4));
        assert_eq!((r.rx_cookie, r.tx_cookie), (vec![1, 2, 3, 4], vec![5, 6, 7, 8]));
        assert!(r.params.sequencing && r.peer_sequencing && r.peer_sublayer);
    }

    #[test]
    fn removals_and_writes_reach_the_store() {
        let dir = std::env::temp_dir().join(format!("l2tp-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut p = Persistence::open(&dir).expect("open");
        p.put_sessions(&[&record(7, 1), &record(7, 2)]).expect("put");
        p.remove_session(7, 1);
        assert_eq!(p.sessions(7).expect("read").len(), 1);
        assert!(p.retry.is_empty());
        p.remove_tunnel(7);
        assert!(p.sessions(7).expect("read").is_empty());
        drop(p);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
