//! Reading a classic tracepoint's record: each field at the constant offset
//! the agent checked against the running kernel's format file before it
//! loaded the program that reads it.

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};

/// Reads the field at `offset` in `ctx`'s record.
#[inline(always)]
pub fn load<T>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: offsets are the checked ones each program lists, inside the
    // record (see `inet_sock_set_state::field!` for why it is one load).
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}
