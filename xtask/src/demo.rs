//! `cargo xtask demo`: two sites, each with an endpoint and a customer
//! host, in network namespaces; the data plane on both endpoints; traffic
//! across; everything removed at the end, also on Ctrl-C or failure.
//!
//! ```text
//!  cust-a --- ac0 [endpoint A] up0 ===== up0 [endpoint B] ac0 --- cust-b
//!  198.18.1.2    198.18.1.1  198.18.0.1   198.18.0.2  198.18.2.1    198.18.2.2
//! ```

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Result};
use l2tp_tests::{NetNs, PinDir};

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

    step("building the topology (4 network namespaces, 3 veth links)");
    let cust_a = NetNs::new("cust-a")?;
    let pe_a = NetNs::new("pe-a")?;
    let pe_b = NetNs::new("pe-b")?;
    let cust_b = NetNs::new("cust-b")?;
    cust_a.veth("eth0", &pe_a, "ac0")?;
    pe_a.veth("up0", &pe_b, "up0")?;
    pe_b.veth("ac0", &cust_b, "eth0")?;
    cust_a.addr("eth0", "198.18.1.2/24")?;
    pe_a.addr("ac0", "198.18.1.1/24")?;
    pe_a.addr("up0", "198.18.0.1/24")?;
    pe_b.addr("up0", "198.18.0.2/24")?;
    pe_b.addr("ac0", "198.18.2.1/24")?;
    cust_b.addr("eth0", "198.18.2.2/24")?;
    cust_a.ip(&["route", "add", "default", "via", "198.18.1.1"])?;
    cust_b.ip(&["route", "add", "default", "via", "198.18.2.1"])?;
    pe_a.ip(&["route", "add", "198.18.2.0/24", "via", "198.18.0.2"])?;
    pe_b.ip(&["route", "add", "198.18.1.0/24", "via", "198.18.0.1"])?;
    for pe in [&pe_a, &pe_b] {
        sh(pe.command("sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]))?;
    }
    check_interrupt()?;

    step("attaching the XDP data plane to both uplinks");
    let pins_a = PinDir::new("demo-pe-a");
    let pins_b = PinDir::new("demo-pe-b");
    for (pe, pins) in [(&pe_a, &pins_a), (&pe_b, &pins_b)] {
        sh(pe.command(&ctl).args(["dataplane", "attach", "--interface", "up0", "--pin-dir"]).arg(pins.path()))?;
    }
    check_interrupt()?;

    step("customer A pings customer B across both endpoints");
    sh(cust_a.command("ping").args(["-c", "5", "-i", "0.2", "-W", "2", "198.18.2.2"]))?;
    check_interrupt()?;

    step("endpoint A sends 3 L2TPv2 control messages (ZLB) to endpoint B, UDP port 1701");
    for ns in 0..3u8 {
        let zlb = format!("\\xc8\\x02\\x00\\x0c\\x00\\x01\\x00\\x00\\x00\\x{ns:02x}\\x00\\x00");
        sh(pe_a.command("bash").args(["-c", &format!("printf '{zlb}' > /dev/udp/198.18.0.2/1701")]))?;
    }
    check_interrupt()?;

    for (name, pe, pins) in [("A", &pe_a, &pins_a), ("B", &pe_b, &pins_b)] {
        step(&format!("data-plane counters at endpoint {name}"));
        sh(pe.command(&ctl).args(["dataplane", "stats", "--pin-dir"]).arg(pins.path()))?;
    }

    step("removing the data plane and the topology");
    for (pe, pins) in [(&pe_a, &pins_a), (&pe_b, &pins_b)] {
        sh(pe.command(&ctl).args(["dataplane", "detach", "--all", "--pin-dir"]).arg(pins.path()))?;
    }
    drop((cust_a, pe_a, pe_b, cust_b, pins_a, pins_b));
    let left = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout).into_owned();
    if left.contains(l2tp_tests::netns::PREFIX) {
        bail!("namespaces left behind: {left}");
    }
    step("demo finished; nothing left behind");
    Ok(())
}
