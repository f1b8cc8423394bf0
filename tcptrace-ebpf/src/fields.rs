//! Reading a classic tracepoint's record: each field at the constant offset
//! the agent checked against the running kernel's format file before it
//! loaded the program that reads it. And reading a BTF tracepoint's typed
//! pointers, at offsets from the kernel's BTF.

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};

/// Reads the field at `offset` in `ctx`'s record.
#[inline(always)]
pub fn load<T>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: offsets are the checked ones each program lists, inside the
    // record (see `inet_sock_set_state::field!` for why it is one load).
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}

/// Reads an address of `N` bytes at `offset` (2-byte aligned, as the
/// tcp tracepoints' `saddr`/`daddr` fields are) into the first `N` bytes
/// of an address as `TransitionEvent` encodes it. One 2-byte load per
/// pair of bytes: the verifier refuses a context load wider than its
/// alignment.
#[inline(always)]
pub fn addr<const N: usize>(ctx: &TracePointContext, offset: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < N && i < 16 {
        let pair = load::<u16>(ctx, offset + i).to_ne_bytes();
        out[i] = pair[0];
        out[i + 1] = pair[1];
        i += 2;
    }
    out
}

/// Reads the `T` at `offset` from `base`, a pointer a BTF tracepoint was
/// handed (the verifier turns it into a load that cannot fault). `offset`
/// must be a value the verifier knows: a load-time global of its own.
#[inline(always)]
pub fn at<T>(base: *const u8, offset: u32) -> T {
    // SAFETY: `base` is a pointer the kernel typed by BTF and `offset` a
    // member's offset in that type (both checked by the verifier, which
    // makes the load fault-free).
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}
