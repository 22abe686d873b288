//! A minimal pcap (libpcap classic format) writer for Ethernet frames.

use std::{io::Write, path::Path};

/// Writes `frames` as an Ethernet (linktype 1) capture, one microsecond
/// apart.
pub fn write(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    // magic, version 2.4, thiszone, sigfigs, snaplen, linktype
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).map_err(|_| std::io::Error::other("frame too long"))?;
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::File::create(path)?.write_all(&out)
}
