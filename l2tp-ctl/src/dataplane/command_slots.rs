//! The command slots (`SESSION_RX_CMD`, `SESSION_TX_CMD`) mapped into the
//! daemon's memory (the maps are `BPF_F_MMAPABLE`): posting a command or
//! reading a slot's epoch is a few stores or a load, not a syscall. A
//! recovery posts a command to every session at both ends (10,000
//! syscalls each per pass at 10,000 sessions). Pins of an object whose
//! slots are not mappable are written by syscalls instead.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use aya::maps::MapData;
use l2tp_common::session::SessionCommand;

/// `BPF_F_MMAPABLE` of linux/bpf.h.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// One command array, mapped read-write.
pub(super) struct CommandSlots {
    ptr: NonNull<SessionCommand>,
    entries: usize,
    len: usize,
}

// SAFETY: a shared mapping of kernel memory, valid until dropped; every
// access is a volatile load or store of a whole field.
unsafe impl Send for CommandSlots {}
// SAFETY: as above.
unsafe impl Sync for CommandSlots {}

impl CommandSlots {
    /// `None` when the map cannot be mapped (an older object's pins).
    pub(super) fn map(data: &MapData) -> Option<Self> {
        let info = data.info().ok()?;
        if info.value_size() as usize != std::mem::size_of::<SessionCommand>() || info.map_flags() & BPF_F_MMAPABLE == 0
        {
            return None;
        }
        let entries = info.max_entries() as usize;
        let len = (entries * std::mem::size_of::<SessionCommand>()).next_multiple_of(4096).max(4096);
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

    fn slot(&self, idx: u32) -> Option<*mut SessionCommand> {
        let i = idx as usize;
        // SAFETY: inside the mapping (checked).
        (i < self.entries).then(|| unsafe { self.ptr.as_ptr().add(i) })
    }

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

impl Drop for CommandSlots {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
