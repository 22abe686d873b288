//! The two-site pseudowire topology used by the namespace tests and by
//! `cargo xtask demo`:
//!
//! ```text
//!  cust-a eth0 --- ac0 [pe-a] up0 ======= up0 [pe-b] ac0 --- eth0 cust-b
//!  198.18.1.1/24       198.18.0.1/24   198.18.0.2/24         198.18.1.2/24
//! ```
//! Both customers are on one Ethernet segment (the pseudowire joins them).
//! Static neighbour entries and disabled IPv6 on the customer interfaces
//! keep the customer traffic exactly what a test sends.

use anyhow::Result;

use crate::netns::{run, NetNs};

pub const PE_A_UP: &str = "198.18.0.1";
pub const PE_B_UP: &str = "198.18.0.2";
pub const CUST_A: &str = "198.18.1.1";
pub const CUST_B: &str = "198.18.1.2";
pub const PE_A_UP_MAC: &str = "02:00:00:00:0a:01";
pub const PE_B_UP_MAC: &str = "02:00:00:00:0b:01";
pub const CUST_A_MAC: &str = "02:00:00:00:0a:02";
pub const CUST_B_MAC: &str = "02:00:00:00:0b:02";

/// Four namespaces; dropping this removes them and every link.
#[derive(Debug)]
pub struct TwoSites {
    pub cust_a: NetNs,
    pub pe_a: NetNs,
    pub pe_b: NetNs,
    pub cust_b: NetNs,
}

impl TwoSites {
    pub fn new() -> Result<Self> {
        let t = Self {
            cust_a: NetNs::new("cust-a")?,
            pe_a: NetNs::new("pe-a")?,
            pe_b: NetNs::new("pe-b")?,
            cust_b: NetNs::new("cust-b")?,
        };
        for c in [&t.cust_a, &t.cust_b] {
            run(c.command("sysctl").args(["-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]))?;
            run(c.command("sysctl").args(["-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]))?;
        }
        t.cust_a.veth("eth0", &t.pe_a, "ac0")?;
        t.pe_a.veth("up0", &t.pe_b, "up0")?;
        t.pe_b.veth("ac0", &t.cust_b, "eth0")?;
        for (ns, dev, mac) in [
            (&t.pe_a, "up0", PE_A_UP_MAC),
            (&t.pe_b, "up0", PE_B_UP_MAC),
            (&t.cust_a, "eth0", CUST_A_MAC),
            (&t.cust_b, "eth0", CUST_B_MAC),
        ] {
            ns.ip(&["link", "set", dev, "address", mac])?;
        }
        t.pe_a.addr("up0", &format!("{PE_A_UP}/24"))?;
        t.pe_b.addr("up0", &format!("{PE_B_UP}/24"))?;
        t.cust_a.addr("eth0", &format!("{CUST_A}/24"))?;
        t.cust_b.addr("eth0", &format!("{CUST_B}/24"))?;
        t.cust_a.ip(&["neigh", "replace", CUST_B, "lladdr", CUST_B_MAC, "dev", "eth0", "nud", "permanent"])?;
        t.cust_b.ip(&["neigh", "replace", CUST_A, "lladdr", CUST_A_MAC, "dev", "eth0", "nud", "permanent"])?;
        // A veth only delivers XDP_REDIRECTed frames when its peer runs XDP
        // or has GRO on: the customer ends get GRO. And a veth hands its
        // peer frames with checksums left to "hardware" (CHECKSUM_PARTIAL);
        // XDP forwards raw bytes, so the customers compute theirs (as any
        // host behind a real NIC does).
        for c in [&t.cust_a, &t.cust_b] {
            run(c.command("ethtool").args(["-K", "eth0", "gro", "on", "tx", "off"]))?;
        }
        Ok(t)
    }
}

/// The hot-standby topology (issue 14) used by the HA tests and `cargo
/// xtask demo`: a peer endpoint P and a pair A (active) / B (standby) that
/// share a service address on one uplink segment and one customer
/// segment; A and B also have a partner link of their own.
///
/// ```text
///  cust-p eth0 --- ac0 [P] up0 ---+                +--- ac0 [A] up0 ---+
///  198.18.1.2/24      198.18.0.2  |                |   198.18.0.1      |
///                                 +-- sw (bridge) -+-- up0 [B] ac0 ----+-- swc (bridge) --- eth0 cust-a
///                                     198.18.0.10 = service address      198.18.0.3            198.18.1.1/24
///  partner link: A ha0 198.19.0.1/30 ==== 198.19.0.2/30 ha0 B
/// ```
#[derive(Debug)]
pub struct HaSites {
    pub sw: NetNs,
    pub swc: NetNs,
    pub p: NetNs,
    pub a: NetNs,
    pub b: NetNs,
    pub cust_a: NetNs,
    pub cust_p: NetNs,
}

pub const HA_P_UP: &str = "198.18.0.2";
pub const HA_A_UP: &str = "198.18.0.1";
pub const HA_B_UP: &str = "198.18.0.3";
pub const HA_SERVICE: &str = "198.18.0.10";
pub const HA_A_PARTNER: &str = "198.19.0.1";
pub const HA_B_PARTNER: &str = "198.19.0.2";

impl HaSites {
    pub fn new() -> Result<Self> {
        let t = Self {
            sw: NetNs::new("sw")?,
            swc: NetNs::new("swc")?,
            p: NetNs::new("p")?,
            a: NetNs::new("a")?,
            b: NetNs::new("b")?,
            cust_a: NetNs::new("cust-a")?,
            cust_p: NetNs::new("cust-p")?,
        };
        for c in [&t.cust_a, &t.cust_p] {
            run(c.command("sysctl").args(["-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]))?;
            run(c.command("sysctl").args(["-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]))?;
        }
        for s in [&t.sw, &t.swc] {
            s.ip(&["link", "add", "br0", "type", "bridge"])?;
            s.ip(&["link", "set", "br0", "up"])?;
        }
        // Uplink segment.
        for (ns, port, addr) in [(&t.p, "swp", HA_P_UP), (&t.a, "swa", HA_A_UP), (&t.b, "swb", HA_B_UP)] {
            ns.veth("up0", &t.sw, port)?;
            t.sw.ip(&["link", "set", port, "master", "br0"])?;
            ns.addr("up0", &format!("{addr}/24"))?;
        }
        // Customer segment of the pair, and P's customer.
        t.cust_a.veth("eth0", &t.swc, "swcc")?;
        t.swc.ip(&["link", "set", "swcc", "master", "br0"])?;
        for (ns, port) in [(&t.a, "swca"), (&t.b, "swcb")] {
            ns.veth("ac0", &t.swc, port)?;
            t.swc.ip(&["link", "set", port, "master", "br0"])?;
        }
        t.cust_p.veth("eth0", &t.p, "ac0")?;
        t.a.veth("ha0", &t.b, "ha0")?;
        t.a.addr("ha0", &format!("{HA_A_PARTNER}/30"))?;
        t.b.addr("ha0", &format!("{HA_B_PARTNER}/30"))?;
        t.cust_a.ip(&["link", "set", "eth0", "address", CUST_A_MAC])?;
        t.cust_p.ip(&["link", "set", "eth0", "address", CUST_B_MAC])?;
        t.cust_a.addr("eth0", &format!("{CUST_A}/24"))?;
        t.cust_p.addr("eth0", &format!("{CUST_B}/24"))?;
        t.cust_a.ip(&["neigh", "replace", CUST_B, "lladdr", CUST_B_MAC, "dev", "eth0", "nud", "permanent"])?;
        t.cust_p.ip(&["neigh", "replace", CUST_A, "lladdr", CUST_A_MAC, "dev", "eth0", "nud", "permanent"])?;
        // XDP_REDIRECTed frames leave through veths whose peers are bridge
        // ports or customers: GRO on there (see `TwoSites`), checksums by
        // the customers.
        for (ns, dev) in [
            (&t.sw, "swp"),
            (&t.sw, "swa"),
            (&t.sw, "swb"),
            (&t.swc, "swca"),
            (&t.swc, "swcb"),
            (&t.cust_a, "eth0"),
            (&t.cust_p, "eth0"),
        ] {
            run(ns.command("ethtool").args(["-K", dev, "gro", "on", "tx", "off"]))?;
        }
        Ok(t)
    }
}
