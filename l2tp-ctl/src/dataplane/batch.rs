//! Whole-map reads in a few syscalls (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6),
//! which aya 0.14 does not offer: opening the session table after a restart
//! reads every session's slot at once instead of several syscalls per
//! session while the peers wait for recovery.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    maps::{Map, MapData},
    Pod,
};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries read per syscall.
const CHUNK: usize = 8192;

/// Every `(key, value)` of the map, for maps whose value is one `V` (not
/// per-CPU): arrays (every index) and hashes.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let fd = map.fd().as_fd().as_raw_fd();
    let mut out = Vec::new();
    // The batch token: a key for arrays, a bucket for hashes (both 4
    // bytes); room for 8.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    loop {
        // SAFETY: Pod types are valid for any bit pattern, zero included.
        let (k0, v0): (K, V) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let mut keys = vec![k0; CHUNK];
        let mut values = vec![v0; CHUNK];
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw mut token_in as u64 },
            out_batch: &raw mut token_out as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: attr points at buffers of `count` keys and values of the
        // map's sizes (the caller's types), and at the two tokens.
        let rc = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &raw mut attr, std::mem::size_of::<BatchAttr>())
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = attr.count as usize;
        keys.truncate(n);
        values.truncate(n);
        out.extend(keys.into_iter().zip(values));
        match err {
            None => {}
            // The end of the map (what was read before it is in `count`).
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Writes `values[i]` at `keys[i]` (`BPF_ANY`), `CHUNK` entries per
/// syscall. On an error, the entries before the failing one are written.
pub fn update_all<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let fd = map.fd().as_fd().as_raw_fd();
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: attr points at `count` keys and values of the map's sizes
        // (the caller's types), which the kernel only reads.
        let rc = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_BATCH, &raw mut attr, std::mem::size_of::<BatchAttr>())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The `MapData` inside a map of the kinds the session table batch-reads.
pub fn data(map: Map) -> Option<MapData> {
    match map {
        Map::Array(d) | Map::HashMap(d) => Some(d),
        _ => None,
    }
}
