//! Persistent state: every established tunnel and session, written to a
//! crash-safe embedded store (redb: copy-on-write B-trees, each commit
//! durable before it returns) before the daemon reports it up. A restart
//! reads it back; failover recovery starts from it.
//!
//! Secrets are not stored: a tunnel refers to its configuration by name.

use std::{net::SocketAddr, path::Path};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::config::{Encapsulation, ReceiveMode};

/// Key: local tunnel ID. Value: a [`TunnelRecord`] (see [`encode`]).
const TUNNELS: TableDefinition<'static, u32, &'static [u8]> = TableDefinition::new("tunnels");
/// Key: (local tunnel ID, local session ID). Value: a [`SessionRecord`]
/// (see [`encode`]).
const SESSIONS: TableDefinition<'static, (u32, u32), &'static [u8]> = TableDefinition::new("sessions");
/// Key: a name. Value: bytes. What outlives tunnels (the hot standby's
/// role and term); not removed by [`Store::clear`].
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {message}")]
    Open { path: String, message: String },
    #[error("state store: {0}")]
    Io(String),
    #[error("state store record: {0}")]
    Record(#[from] serde_json::Error),
    #[error("state store record: {0}")]
    Binary(String),
}

/// First byte of a record in the binary form of version 1: the record's
/// fields in declaration order, postcard-encoded (varint integers,
/// length-prefixed strings and byte strings, enum variants by index).
/// Postcard is not self-describing, so a change to a record's fields gets
/// a new version byte, and the old version's decoder stays.
const RECORD_V1: u8 = 1;

/// A record as stored: [`RECORD_V1`] and its binary form. About a fifth of
/// its JSON (field names, numbers in decimal, cookies as arrays), so that
/// a commit dirties fewer pages, and cheaper to write and read back.
fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, vec![RECORD_V1]).map_err(|e| StoreError::Binary(e.to_string()))
}

/// A stored record: the binary form of [`encode`], or JSON, as stores
/// written before it hold (a JSON record is an object: it starts with
/// `{`). Anything else, trailing bytes after a binary record included, is
/// an error, never a default.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => match postcard::take_from_bytes(rest) {
            Ok((record, [])) => Ok(record),
            Ok((_, extra)) => Err(StoreError::Binary(format!("{} bytes after the record", extra.len()))),
            Err(e) => Err(StoreError::Binary(e.to_string())),
        },
        Some((b'{', _)) => Ok(serde_json::from_slice(bytes)?),
        Some((v, _)) => Err(StoreError::Binary(format!("unknown record format {v:#04x}"))),
        None => Err(StoreError::Binary("empty record".into())),
    }
}

macro_rules! io_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Io(e.to_string())
            }
        }
    )*};
}
io_err!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// RFC 4951 Failover Capability as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub control: bool,
    pub data: bool,
    pub recovery_time_ms: u32,
}

/// An established tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// Configuration name (the secret is found through it).
    pub name: String,
    pub local_id: u32,
    pub peer_id: u32,
    pub peer: SocketAddr,
    pub version: u8,
    /// Stored as "udp" or "ip".
    pub encapsulation: Encapsulation,
    pub initiator: bool,
    pub local_failover: Option<FailoverRecord>,
    pub peer_failover: Option<FailoverRecord>,
    pub peer_host_name: String,
    /// Unix time in milliseconds.
    pub established_ms: u64,
}

/// An established session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub tunnel_id: u32,
    pub name: String,
    pub local_id: u32,
    pub peer_id: u32,
    pub remote_end_id: String,
    pub pw_type: u16,
    /// Attachment interface, if the session has a data plane.
    pub interface: Option<String>,
    pub rx_cookie: Vec<u8>,
    pub tx_cookie: Vec<u8>,
    pub sublayer: bool,
    pub sequencing: bool,
    /// Stored as "accept-new", "strict" or "resync".
    pub receive_mode: ReceiveMode,
    pub resync_n: u16,
    pub established_ms: u64,
}

/// The store in `state_dir/state.redb`.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating `dir` (mode 0700).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        let err = |m: String| StoreError::Open { path: dir.display().to_string(), message: m };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(e.to_string()))?;
        let path = dir.join("state.redb");
        let db = Database::create(&path).map_err(|e| err(e.to_string()))?;
        let tx = db.begin_write()?;
        tx.open_table(TUNNELS)?;
        tx.open_table(SESSIONS)?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Writes (or replaces) a named value; durable when this returns.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(key, value)?;
        tx.commit()?;
        Ok(())
    }

    /// A named value, if written.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes (or replaces) a tunnel; durable when this returns.
    pub fn put_tunnel(&self, t: &TunnelRecord) -> Result<(), StoreError> {
        let v = encode(t)?;
        let tx = self.db.begin_write()?;
        tx.open_table(TUNNELS)?.insert(t.local_id, v.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a tunnel and all its sessions in one transaction.
    pub fn remove_tunnel(&self, local_id: u32) -> Result<(), StoreError> {
        self.remove_many(&[local_id], &[])
    }

    /// Removes tunnels (each with all its sessions) and sessions, all in
    /// one transaction: all or none are durable. Absent ones are fine.
    pub fn remove_many(&self, tunnels: &[u32], sessions: &[(u32, u32)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(TUNNELS)?;
            let mut s = tx.open_table(SESSIONS)?;
            for &local_id in tunnels {
                t.remove(local_id)?;
                let keys: Vec<(u32, u32)> = s
                    .range((local_id, 0)..=(local_id, u32::MAX))?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for k in keys {
                    s.remove(k)?;
                }
            }
            for &k in sessions {
                s.remove(k)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn put_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.put_sessions(&[s])
    }

    /// Writes several sessions in one transaction: all or none are durable.
    pub fn put_sessions(&self, sessions: &[&SessionRecord]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SESSIONS)?;
            for s in sessions {
                let v = encode(*s)?;
                t.insert((s.tunnel_id, s.local_id), v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn remove_session(&self, tunnel_id: u32, local_id: u32) -> Result<(), StoreError> {
        self.remove_many(&[], &[(tunnel_id, local_id)])
    }

    pub fn tunnels(&self) -> Result<Vec<TunnelRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TUNNELS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (_, v) = r?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    pub fn sessions(&self, tunnel_id: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for r in t.range((tunnel_id, 0)..=(tunnel_id, u32::MAX))? {
            let (_, v) = r?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Forgets everything (after an orderly shutdown tore it all down).
    pub fn clear(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.delete_table(TUNNELS)?;
        tx.delete_table(SESSIONS)?;
        tx.open_table(TUNNELS)?;
        tx.open_table(SESSIONS)?;
        tx.commit()?;
        Ok(())
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn tunnel(id: u32) -> TunnelRecord {
        TunnelRecord {
            name: format!("t{id}"),
            local_id: id,
            peer_id: id + 100,
            peer: "198.18.0.2:1701".parse().expect("addr"),
            version: 3,
            encapsulation: Encapsulation::Udp,
            initiator: true,
            local_failover: Some(FailoverRecord { control: true, data: true, recovery_time_ms: 3000 }),
            peer_failover: None,
            peer_host_name: "b".into(),
            established_ms: 1,
        }
    }

    /// A session record for tests.
    pub(crate) fn session(t: u32, id: u32) -> SessionRecord {
        SessionRecord {
            tunnel_id: t,
            name: format!("s{id}"),
            local_id: id,
            peer_id: id + 1,
            remote_end_id: "pw".into(),
            pw_type: 5,
            interface: Some("ac0".into()),
            rx_cookie: vec![1, 2, 3, 4],
            tx_cookie: vec![],
            sublayer: true,
            sequencing: true,
            receive_mode: ReceiveMode::AcceptNew,
            resync_n: 5,
            established_ms: 2,
        }
    }

    /// Records written before the enums were typed read back the same.
    #[test]
    fn records_keep_their_json_form() {
        let t = serde_json::to_value(tunnel(1)).expect("json");
        assert_eq!(t["encapsulation"], "udp");
        let s = serde_json::to_value(session(1, 2)).expect("json");
        assert_eq!(s["receive_mode"], "accept-new");
        let mut old = s.clone();
        old["receive_mode"] = "resync".into();
        let back: SessionRecord = serde_json::from_value(old).expect("typed");
        assert_eq!(back.receive_mode, ReceiveMode::Resync);
        let mut bad = s;
        bad["receive_mode"] = "sometimes".into();
        assert!(serde_json::from_value::<SessionRecord>(bad).is_err(), "an unknown mode is an error, not a default");
    }

    fn temp_store(what: &str) -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!("l2tp-store-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).expect("open");
        (dir, s)
    }

    fn raw_session(s: &Store, key: (u32, u32), bytes: &[u8]) {
        let tx = s.db.begin_write().expect("tx");
        tx.open_table(SESSIONS).expect("table").insert(key, bytes).expect("insert");
        tx.commit().expect("commit");
    }

    fn stored_session(s: &Store, key: (u32, u32)) -> Vec<u8> {
        let tx = s.db.begin_read().expect("tx");
        let t = tx.open_table(SESSIONS).expect("table");
        t.get(key).expect("get").expect("present").value().to_vec()
    }

    #[test]
    fn records_are_written_in_the_compact_binary_form_and_read_back_equal() {
        let (dir, s) = temp_store("binary");
        let mut rec = session(7, 1);
        rec.tx_cookie = vec![9; 8];
        rec.receive_mode = ReceiveMode::Resync;
        s.put_session(&rec).expect("put");
        s.put_tunnel(&tunnel(7)).expect("put");
        let raw = stored_session(&s, (7, 1));
        assert_eq!(raw[0], RECORD_V1);
        let json = serde_json::to_vec(&rec).expect("json");
        assert!(raw.len() * 3 < json.len(), "binary {} bytes against JSON {}", raw.len(), json.len());
        drop(s);
        let s = Store::open(&dir).expect("reopen");
        assert_eq!(s.sessions(7).expect("read"), vec![rec]);
        assert_eq!(s.tunnels().expect("read"), vec![tunnel(7)]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A store written by an earlier version holds JSON records: they read
    /// back, beside binary ones, and are rewritten in binary when next put.
    #[test]
    fn json_records_of_an_earlier_store_still_read_back() {
        let (dir, s) = temp_store("json");
        let old = session(7, 1);
        raw_session(&s, (7, 1), &serde_json::to_vec(&old).expect("json"));
        let tx = s.db.begin_write().expect("tx");
        tx.open_table(TUNNELS)
            .expect("table")
            .insert(7, serde_json::to_vec(&tunnel(7)).expect("json").as_slice())
            .expect("insert");
        tx.commit().expect("commit");
        s.put_session(&session(7, 2)).expect("put");
        assert_eq!(s.sessions(7).expect("read"), vec![old.clone(), session(7, 2)]);
        assert_eq!(s.tunnels().expect("read"), vec![tunnel(7)]);
        s.put_session(&old).expect("rewrite");
        assert_eq!(stored_session(&s, (7, 1))[0], RECORD_V1);
        assert_eq!(s.sessions(7).expect("read"), vec![old, session(7, 2)]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A damaged record is an error naming the fault, never a panic or a
    /// record made up of defaults.
    #[test]
    fn a_damaged_record_is_an_error() {
        let (dir, s) = temp_store("damaged");
        let good = encode(&session(7, 1)).expect("encode");
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: [(&str, Vec<u8>); 5] = [
            ("empty", vec![]),
            ("unknown format", vec![0x7f, 1, 2]),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("trailing", trailing),
            ("bad JSON", b"{\"tunnel_id\": 7".to_vec()),
        ];
        for (what, bytes) in cases {
            raw_session(&s, (7, 1), &bytes);
            let e = s.sessions(7).expect_err(what);
            assert!(e.to_string().starts_with("state store record: "), "{what}: {e}");
        }
        raw_session(&s, (7, 1), &good);
        assert_eq!(s.sessions(7).expect("read"), vec![session(7, 1)]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn records_survive_reopen_and_tunnel_removal_takes_its_sessions() {
        let (dir, s) = temp_store("reopen");
        s.put_tunnel(&tunnel(7)).expect("put");
        s.put_tunnel(&tunnel(8)).expect("put");
        s.put_session(&session(7, 1)).expect("put");
        s.put_session(&session(7, 2)).expect("put");
        s.put_session(&session(8, 3)).expect("put");
        drop(s);
        let s = Store::open(&dir).expect("reopen");
        assert_eq!(s.tunnels().expect("read"), vec![tunnel(7), tunnel(8)]);
        assert_eq!(s.sessions(7).expect("read"), vec![session(7, 1), session(7, 2)]);
        s.remove_tunnel(7).expect("remove");
        assert_eq!(s.tunnels().expect("read"), vec![tunnel(8)]);
        assert!(s.sessions(7).expect("read").is_empty());
        assert_eq!(s.sessions(8).expect("read").len(), 1);
        s.remove_session(8, 3).expect("remove");
        assert!(s.sessions(8).expect("read").is_empty());
        s.clear().expect("clear");
        assert!(s.tunnels().expect("read").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
