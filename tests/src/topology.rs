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
