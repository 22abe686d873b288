//! Arrays of the data plane mapped into the daemon's memory (the maps are
//! `BPF_F_MMAPABLE`): the command slots (`SESSION_RX_CMD`,
//! `SESSION_TX_CMD`), where posting a command or reading a slot's epoch is
//! a few stores or a load, not a syscall (a recovery posts a command to
//! every session at both ends: 10,000 syscalls each per pass at 10,000
//! sessions); and `SESSION_CFG`, where a batch of new sessions'
//! configurations is written (a syscall fewer per batch, no copy through
//! the kernel's batch buffer) and a takeover activates every warm session.
//! Pins of an object whose arrays are not mappable are read and written by
//! syscalls instead.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use aya::maps::MapData;
use l2tp_common::session::SessionCommand;

/// `BPF_F_MMAPABLE` of linux/bpf.h.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// One array of `T`, mapped read-write.
pub(super) struct Mapped<T> {
    ptr: NonNull<T>,
    entries: usize,
    len: usize,
}

// SAFETY: a shared mapping of kernel memory, valid until dropped; every
// access is a volatile load or store of a whole field.
unsafe impl<T> Send for Mapped<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Mapped<T> {}

impl<T> Mapped<T> {
    /// `None` when the map cannot be mapped (an older object's pins).
    pub(super) fn map(data: &MapData) -> Option<Self> {
        let info = data.info().ok()?;
        if info.value_size() as usize != std::mem::size_of::<T>() || info.map_flags() & BPF_F_MMAPABLE == 0 {
            return None;
        }
        let entries = info.max_entries() as usize;
        let len = (entries * std::mem::size_of::<T>()).next_multiple_of(4096).max(4096);
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: a new shared mapping of the map's memory; the kernel
        // checks `len` against the map's size.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Self { ptr: NonNull::new(p.cast())?, entries, len })
    }

    /// Entry `idx`, inside the mapping.
    pub(super) fn slot(&self, idx: u32) -> Option<*mut T> {
        let i = idx as usize;
        // SAFETY: inside the mapping (checked).
        (i < self.entries).then(|| unsafe { self.ptr.as_ptr().add(i) })
    }
}

impl<T: Copy> Mapped<T> {
    /// Stores `v` into entry `idx` (nothing outside the mapping). For
    /// entries no program reads meanwhile: the store is not atomic.
    pub(super) fn write(&self, idx: u32, v: T) -> Option<()> {
        let p = self.slot(idx)?;
        // SAFETY: an entry inside the mapping, of the map's value size.
        unsafe { std::ptr::write_volatile(p, v) };
        Some(())
    }
}

impl Mapped<SessionCommand> {
    /// The epoch last posted in slot `idx`.
    pub(super) fn epoch(&self, idx: u32) -> Option<u32> {
        let p = self.slot(idx)?;
        // SAFETY: a field of a slot inside the mapping.
        Some(unsafe { std::ptr::read_volatile(&raw const (*p).epoch_end) })
    }

    /// Writes `c` into slot `idx` in the order the programs read it back
    /// (`sequence::take`): the begin epoch, the command, then the end
    /// epoch. A program that sees the new end epoch sees the rest; one
    /// that reads while this writes sees two different epochs and leaves
    /// the slot for its next frame.
    pub(super) fn post(&self, idx: u32, c: SessionCommand) -> Option<()> {
        let p = self.slot(idx)?;
        // SAFETY: fields of a slot inside the mapping, stored one by one.
        unsafe {
            std::ptr::write_volatile(&raw mut (*p).epoch_begin, c.epoch_begin);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*p).op, c.op);
            std::ptr::write_volatile(&raw mut (*p).value, c.value);
            std::ptr::write_volatile(&raw mut (*p).n, c.n);
            fence(Ordering::Release);
            std::ptr::write_volatile(&raw mut (*p).epoch_end, c.epoch_end);
        }
        Some(())
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
