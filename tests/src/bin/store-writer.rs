//! Test helper for `store_crash`: writes tunnel and session records to the
//! daemon's state store as fast as it can, printing the index of each one
//! once its commit returned (durable), until it is killed.

use std::io::Write;

use l2tp_ctl::{
    config::{Encapsulation, ReceiveMode},
    store::{FailoverRecord, SessionRecord, Store, TunnelRecord},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: store-writer DIR START"))?;
    let start: u32 = args.next().ok_or_else(|| anyhow::anyhow!("usage: store-writer DIR START"))?.parse()?;
    let store = Store::open(dir.as_ref())?;
    let mut out = std::io::stdout().lock();
    for i in start.. {
        store.put_tunnel(&TunnelRecord {
            name: format!("t{i}"),
            local_id: i,
            peer_id: i ^ 0xffff,
            peer: "198.18.0.2:1701".parse()?,
            version: 3,
            encapsulation: Encapsulation::Udp,
            initiator: true,
            local_failover: Some(FailoverRecord { control: true, data: true, recovery_time_ms: i }),
            peer_failover: None,
            peer_host_name: "x".repeat((i % 200) as usize),
            established_ms: u64::from(i),
        })?;
        store.put_session(&SessionRecord {
            tunnel_id: i,
            name: format!("s{i}"),
            local_id: i + 1,
            peer_id: i + 2,
            remote_end_id: format!("pw{i}"),
            pw_type: 5,
            interface: Some("ac0".into()),
            rx_cookie: i.to_be_bytes().to_vec(),
            tx_cookie: vec![],
            sublayer: true,
            sequencing: true,
            receive_mode: ReceiveMode::Resync,
            resync_n: 5,
            established_ms: u64::from(i),
        })?;
        // Every tenth tunnel is torn down again: removals are crashed too.
        if i % 10 == 9 {
            store.remove_tunnel(i - 5)?;
        }
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}
