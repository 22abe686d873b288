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

/// A change of the store, as the hot standby replicates it: the record's
/// key and its JSON, or `None` for a removal.
pub(super) type Change = (String, Option<Vec<u8>>);

/// A replicated record the standby made durable.
#[derive(Debug)]
pub(super) enum Applied {
    Tunnel(TunnelRecord),
    TunnelGone(TunnelId),
    Session(SessionRecord),
    SessionGone(TunnelId, u32),
}

/// Replication keys: `t/<tunnel ID>` and `s/<tunnel ID>/<session ID>`.
pub(super) fn tunnel_key(id: TunnelId) -> String {
    format!("t/{id}")
}

pub(super) fn session_key(tunnel: TunnelId, sid: u32) -> String {
    format!("s/{tunnel}/{sid}")
}

#[derive(Debug)]
pub(super) struct Persistence {
    store: Store,
    /// Removals of this round, not yet committed.
    staged: Vec<Removal>,
    retry: Vec<Removal>,
    /// Changes made since the last [`Persistence::take_changes`], when
    /// they are replicated (the active of a hot-standby pair).
    changes: Option<Vec<Change>>,
}

impl Persistence {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self { store: Store::open(dir)?, staged: Vec::new(), retry: Vec::new(), changes: None })
    }

    /// Starts (or stops) recording changes for replication.
    pub fn record_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    /// The changes recorded so far.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn changed(&mut self, key: String, value: Option<Vec<u8>>) {
        if let Some(c) = &mut self.changes {
            c.push((key, value));
        }
    }

    /// Durable when this returns `Ok`.
    pub fn put_tunnel(&mut self, t: &TunnelRecord) -> Result<(), StoreError> {
        self.commit_removals();
        // A removal of an earlier tunnel with this ID must not undo it.
        self.retry.retain(|r| !matches!(r, Removal::Tunnel(id) if *id == t.local_id));
        self.store.put_tunnel(t)?;
        if self.changes.is_some() {
            self.changed(tunnel_key(t.local_id), Some(serde_json::to_vec(t)?));
        }
        Ok(())
    }

    /// All durable or none.
    pub fn put_sessions(&mut self, sessions: &[&SessionRecord]) -> Result<(), StoreError> {
        self.commit_removals();
        self.retry.retain(|r| match r {
            Removal::Session(t, s) => !sessions.iter().any(|x| (x.tunnel_id, x.local_id) == (*t, *s)),
            Removal::Tunnel(_) => true,
        });
        self.store.put_sessions(sessions)?;
        if self.changes.is_some() {
            for x in sessions {
                self.changed(session_key(x.tunnel_id, x.local_id), Some(serde_json::to_vec(x)?));
            }
        }
        Ok(())
    }

    /// A named value that outlives tunnels (the standby's term and role).
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.store.put_meta(key, value)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.meta(key)
    }

    /// Every record, keyed as replicated (a snapshot for the standby).
    pub fn snapshot(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.commit_removals();
        let mut out = Vec::new();
        for t in self.store.tunnels()? {
            out.push((tunnel_key(t.local_id), serde_json::to_vec(&t)?));
            for s in self.store.sessions(t.local_id)? {
                out.push((session_key(s.tunnel_id, s.local_id), serde_json::to_vec(&s)?));
            }
        }
        Ok(out)
    }

    /// Standby: applies replicated records, all in order; durable when
    /// this returns `Ok`, with what was applied (for the warm data plane).
    /// A key or record that does not parse is an error (and nothing after
    /// it is applied).
    pub fn apply_replicated(&mut self, records: &[(String, Option<Vec<u8>>)]) -> Result<Vec<Applied>, StoreError> {
        self.commit_removals();
        let bad = |k: &str| StoreError::Io(format!("replicated record with an unknown key {k:?}"));
        let mut applied = Vec::new();
        // Consecutive session records are written in one transaction.
        let mut run = 0;
        let flush = |p: &mut Self, applied: &[Applied], run: &mut usize| -> Result<(), StoreError> {
            if *run > 0 {
                let refs: Vec<&SessionRecord> = applied[applied.len() - *run..]
                    .iter()
                    .filter_map(|a| match a {
                        Applied::Session(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                p.store.put_sessions(&refs)?;
                *run = 0;
            }
            Ok(())
        };
        for (key, value) in records {
            let mut parts = key.split('/');
            let ids: Vec<u32> = match parts.next() {
                Some("t") | Some("s") => parts.map(|p| p.parse().map_err(|_| bad(key))).collect::<Result<_, _>>()?,
                _ => return Err(bad(key)),
            };
            match (key.as_bytes()[0], ids.as_slice(), value) {
                (b's', [_, _], Some(v)) => {
                    applied.push(Applied::Session(serde_json::from_slice(v)?));
                    run += 1;
                }
                (b't', [t], v) => {
                    flush(self, &applied, &mut run)?;
                    match v {
                        Some(v) => {
                            let rec: TunnelRecord = serde_json::from_slice(v)?;
                            self.store.put_tunnel(&rec)?;
                            applied.push(Applied::Tunnel(rec));
                        }
                        None => {
                            self.store.remove_tunnel(*t)?;
                            applied.push(Applied::TunnelGone(*t));
                        }
                    }
                }
                (b's', [t, s], None) => {
                    flush(self, &applied, &mut run)?;
                    self.store.remove_session(*t, *s)?;
                    applied.push(Applied::SessionGone(*t, *s));
                }
                _ => return Err(bad(key)),
            }
        }
        flush(self, &applied, &mut run)?;
        Ok(applied)
    }

    /// Removes a tunnel and its sessions, with the other removals of this
    /// round ([`Persistence::commit_removals`]); retried later if the store
    /// refuses.
    pub fn remove_tunnel(&mut self, id: TunnelId) {
        self.remove(Removal::Tunnel(id));
    }

    /// Removes a session, with the other removals of this round; retried
    /// later if the store refuses.
    pub fn remove_session(&mut self, tunnel: TunnelId, sid: u32) {
        self.remove(Removal::Session(tunnel, sid));
    }

    fn remove(&mut self, r: Removal) {
        match r {
            Removal::Tunnel(id) => self.changed(tunnel_key(id), None),
            Removal::Session(t, s) => self.changed(session_key(t, s), None),
        }
        self.staged.push(r);
    }

    /// Makes the removals staged since the last call durable, in one
    /// transaction (one fsync for a torn-down tunnel's sessions, or for a
    /// burst of CDNs). The daemon calls it before it answers a request and
    /// at the end of every round of engine output; every other store
    /// access calls it first, so reads and writes see removals in order.
    /// On failure they join the removals retried at every tick.
    pub fn commit_removals(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        if let Err(e) = self.apply(&staged) {
            error!(removals = staged.len(), "state store removal failed, will retry: {e}");
            for r in staged {
                if !self.retry.contains(&r) {
                    self.retry.push(r);
                }
            }
        }
    }

    fn apply(&self, removals: &[Removal]) -> Result<(), StoreError> {
        let (mut tunnels, mut sessions) = (Vec::new(), Vec::new());
        for r in removals {
            match *r {
                Removal::Tunnel(id) => tunnels.push(id),
                Removal::Session(t, s) => sessions.push((t, s)),
            }
        }
        self.store.remove_many(&tunnels, &sessions)
    }

    /// Tries the removals that failed before again.
    pub fn retry(&mut self) {
        self.commit_removals();
        if self.retry.is_empty() {
            return;
        }
        let todo = std::mem::take(&mut self.retry);
        match self.apply(&todo) {
            Ok(()) => info!(removals = todo.len(), "state store removals done on retry"),
            Err(e) => {
                error!(removals = todo.len(), "state store removals failed again, will retry: {e}");
                self.retry = todo;
            }
        }
    }

    pub fn tunnels(&mut self) -> Result<Vec<TunnelRecord>, StoreError> {
        self.commit_removals();
        self.store.tunnels()
    }

    pub fn sessions(&mut self, tunnel: TunnelId) -> Result<Vec<SessionRecord>, StoreError> {
        self.commit_removals();
        self.store.sessions(tunnel)
    }

    /// Forgets every tunnel and session (after an orderly shutdown, or on
    /// a standby before a snapshot).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.staged.clear();
        self.retry.clear();
        if self.changes.is_some() {
            for t in self.store.tunnels()? {
                self.changed(tunnel_key(t.local_id), None);
            }
        }
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

    #[test]
    fn staged_removals_commit_before_later_writes_and_outlive_a_restart() {
        let dir = std::env::temp_dir().join(format!("l2tp-persist-staged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut p = Persistence::open(&dir).expect("open");
        p.put_sessions(&[&record(7, 1), &record(7, 2), &record(8, 1)]).expect("put");
        // Session 7/1 goes, and its ID comes back in the same round: the
        // removal staged first must not undo the write after it.
        p.remove_session(7, 1);
        p.put_sessions(&[&record(7, 1)]).expect("put again");
        p.remove_session(7, 2);
        p.remove_tunnel(8);
        assert_eq!(p.staged.len(), 2, "staged, not yet committed");
        p.commit_removals();
        assert!(p.staged.is_empty() && p.retry.is_empty());
        drop(p);
        let mut p = Persistence::open(&dir).expect("reopen");
        let left: Vec<u32> = p.sessions(7).expect("read").iter().map(|s| s.local_id).collect();
        assert_eq!(left, vec![1]);
        assert!(p.sessions(8).expect("read").is_empty());
        drop(p);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
