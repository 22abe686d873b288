//! `cargo xtask demo`: two sites, each with an endpoint and a customer
//! host, in network namespaces; an L2TPv3 Ethernet pseudowire between the
//! endpoints on the XDP data plane (sequencing and cookies on); customer
//! traffic across it; everything removed at the end, also on Ctrl-C or
//! failure.
//!
//! ```text
//!  cust-a eth0 --- ac0 [pe-a] up0 ======= up0 [pe-b] ac0 --- eth0 cust-b
//!  198.18.1.1/24       198.18.0.1/24   198.18.0.2/24         198.18.1.2/24
//! ```

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Result};
use l2tp_tests::{
    topology::{self, TwoSites},
    NetNs, PinDir,
};

use crate::util::{cargo, run as sh, step, workspace};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: removing the topology");
    }
    Ok(())
}

/// Brings up one end of the pseudowire with the CLI, as an operator would.
fn endpoint(ctl: &Path, pe: &NetNs, pins: &PinDir, ends: (&str, &str, &str), ids: (u32, u32)) -> Result<()> {
    let pin = pins.path().to_string_lossy().into_owned();
    sh(pe.command(ctl).args(["dataplane", "attach", "-i", "up0", "--role", "uplink", "--pin-dir", &pin]))?;
    sh(pe.command(ctl).args(["dataplane", "attach", "-i", "ac0", "--role", "attachment", "--pin-dir", &pin]))?;
    let (local, peer, peer_mac) = ends;
    sh(pe.command(ctl).args([
        "dataplane",
        "session",
        "add",
        "--session-id",
        &ids.0.to_string(),
        "--peer-session-id",
        &ids.1.to_string(),
        "--encap",
        "udp",
        "--local",
        local,
        "--peer",
        peer,
        "--uplink",
        "up0",
        "--attachment",
        "ac0",
        "--next-hop-mac",
        peer_mac,
        "--cookie",
        &format!("{:08x}{:08x}", ids.0, ids.0),
        "--peer-cookie",
        &format!("{:08x}{:08x}", ids.1, ids.1),
        "--sequencing",
        "--pin-dir",
        &pin,
    ]))
}

pub fn run() -> Result<()> {
    if !crate::util::is_root() {
        bail!("the demo builds network namespaces and loads XDP programs: run it as root");
    }
    crate::bootstrap::ensure()?;
    step("building l2tp-ctl");
    sh(cargo().args(["build", "--package", "l2tp-ctl"]))?;
    let ctl = workspace().join("target/debug/l2tp-ctl");

    // Ctrl-C and SIGTERM end the demo through the normal path, so every
    // guard below is dropped and the topology removed.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }

    step("building two sites: 4 network namespaces, 3 veth links (198.18.0.0/15)");
    let t = TwoSites::new()?;
    check_interrupt()?;

    step("loading the XDP data plane on both endpoints and installing an L2TPv3 pseudowire (UDP, cookies, sequencing)");
    let pins_a = PinDir::new("demo-pe-a");
    let pins_b = PinDir::new("demo-pe-b");
    endpoint(&ctl, &t.pe_a, &pins_a, (topology::PE_A_UP, topology::PE_B_UP, topology::PE_B_UP_MAC), (4097, 8194))?;
    endpoint(&ctl, &t.pe_b, &pins_b, (topology::PE_B_UP, topology::PE_A_UP, topology::PE_A_UP_MAC), (8194, 4097))?;
    check_interrupt()?;

    step("customer A pings customer B on the same Ethernet segment, across the pseudowire");
    sh(t.cust_a.command("ping").args(["-c", "5", "-i", "0.2", "-W", "2", topology::CUST_B]))?;
    check_interrupt()?;

    for (name, pe, pins) in [("A", &t.pe_a, &pins_a), ("B", &t.pe_b, &pins_b)] {
        step(&format!("endpoint {name}: pseudowire counters and L2TP traffic seen on the uplink"));
        let pin = pins.path().to_string_lossy().into_owned();
        sh(pe.command(&ctl).args(["dataplane", "session", "list", "--pin-dir", &pin]))?;
        sh(pe.command(&ctl).args(["dataplane", "stats", "--pin-dir", &pin]))?;
    }

    step("removing the data plane and the topology");
    for (pe, pins) in [(&t.pe_a, &pins_a), (&t.pe_b, &pins_b)] {
        sh(pe.command(&ctl).args(["dataplane", "detach", "--all", "--pin-dir"]).arg(pins.path()))?;
    }
    drop((t, pins_a, pins_b));
    let left = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout).into_owned();
    if left.contains(l2tp_tests::netns::PREFIX) {
        bail!("namespaces left behind: {left}");
    }
    step("demo finished; nothing left behind");
    Ok(())
}
