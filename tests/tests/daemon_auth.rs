//! Issue 13, defect 1, with real daemons: on an authenticated L2TPv3
//! tunnel, a datagram from the peer's address and port with the tunnel's
//! Control Connection ID, no Message Digest and an unknown AVP with M=1 is
//! dropped before anything in it is used (RFC 3931 4.3, RFC 4951 F-SEC-1):
//! no StopCCN, the tunnel stays up.

use std::{net::UdpSocket, time::Duration};

use l2tp_proto::wire::{
    Avp, AvpFlags, AvpValue, ControlHeader, ControlMessage, Message, MessageType, Transport, Version,
};
use l2tp_tests::{
    daemon::Daemon,
    topology::{self, TwoSites},
    PinDir,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn config(me: &str, peer: &str, initiate: bool, pins: &PinDir) -> String {
    format!(
        r#"
[global]
host_name = "{me}"
router_id = "{me}"
listen = ["0.0.0.0:1701"]
state_dir = "{{dir}}/state"
socket = "{{dir}}/ctl.sock"
reconnect_interval = 1
hello_interval = 60

[dataplane]
pin_dir = "{pins}"
uplink = "up0"

[[tunnel]]
name = "udp"
peer = "{peer}"
initiate = {initiate}
secret = "v3-secret"
"#,
        pins = pins.path().display()
    )
}

fn udp_tunnel(list: &Value) -> Option<&Value> {
    list.as_array()?.iter().find(|t| t["name"] == "udp")
}

#[test]
#[ignore = "privileged: needs root, BPF and network namespaces; run by `cargo xtask test`"]
fn f_sec_1_unauthenticated_message_from_the_peer_address_does_not_tear_the_daemons_tunnel_down() {
    let t = TwoSites::new().expect("topology");
    let (pins_a, pins_b) = (PinDir::new("aa"), PinDir::new("ab"));
    let b = Daemon::start(&t.pe_b, "pe-b", &config(topology::PE_B_UP, topology::PE_A_UP, false, &pins_b))
        .expect("daemon b");
    let mut a =
        Daemon::start(&t.pe_a, "pe-a", &config(topology::PE_A_UP, topology::PE_B_UP, true, &pins_a)).expect("daemon a");
    let up = |v: &Value| udp_tunnel(v).is_some_and(|t| t["state"] == "established");
    let list = b.wait_json(&["tunnel", "list"], "tunnel up", WAIT, up).expect("tunnel up at b");
    let b_id = udp_tunnel(&list).and_then(|t| t["local_id"].as_u64()).expect("b's tunnel ID") as u32;
    // A steps aside (maintenance stop: nothing is torn down, its port is
    // free), and the forged datagram comes from A's address and port.
    a.ctl(&["stop", "--keep"]).expect("stop --keep");
    a.wait(WAIT).expect("a stopped");
    let before = b.json(&["stats"]).expect("stats")["control"]["auth_failures"].as_u64().expect("auth_failures");
    let msg = Message::new(
        MessageType::Hello,
        vec![Avp { flags: AvpFlags::MANDATORY, value: AvpValue::Unknown { vendor: 9, attr: 1, value: vec![1] } }],
    );
    let header = ControlHeader { version: Version::V3, tunnel_id: b_id, session_id: 0, ns: 3, nr: 3 };
    let bytes = ControlMessage { header, message: Some(msg) }.encode(Transport::Udp, None).expect("encode");
    let src = format!("{}:1701", topology::PE_A_UP);
    let dst = format!("{}:1701", topology::PE_B_UP);
    let replies = t
        .pe_a
        .enter(move || {
            let sock = UdpSocket::bind(&src)?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            for _ in 0..3 {
                sock.send_to(&bytes, &dst)?;
            }
            // Whatever B sends back within 2 s (a StopCCN would be one).
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            std::io::Result::Ok(got)
        })
        .expect("enter pe-a")
        .expect("forged datagrams");
    let stopccns = replies
        .iter()
        .filter_map(|r| ControlMessage::decode(Transport::Udp, r, None).ok()?.message)
        .filter(|m| m.msg_type == MessageType::StopCcn)
        .count();
    assert_eq!(stopccns, 0, "B answered an unauthenticated message with StopCCN");
    let stats = b.json(&["stats"]).expect("stats");
    assert!(stats["control"]["auth_failures"].as_u64() >= Some(before + 3), "{stats:#}");
    let list = b.json(&["tunnel", "list"]).expect("list");
    assert!(up(&list), "B's tunnel went down: {list:#}\n{}", b.log());
}
