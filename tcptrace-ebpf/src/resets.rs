//! `tcp:tcp_send_reset` and `tcp:tcp_receive_reset`: resets sent and received
//! on a full socket, so the agent can tell an abort from an orderly close.
//!
//! Formats on Linux 6.18 (only these fields are read; the agent checks them):
//!
//! ```text
//! tcp_send_reset:    field:const void * skaddr; offset:16; size:8;   (NULL: no socket)
//!                    field:int state;           offset:24; size:4;
//! tcp_receive_reset: field:const void * skaddr; offset:8;  size:8;
//! ```
//!
//! Every reset on a full socket is sent; the agent keeps those of sockets it
//! follows (whose transitions passed the filters). Resets are rare next to
//! transitions, and a RST storm is made of connections whose transitions
//! are sent anyway.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext,
};
use tcptrace_common::{KIND_RESET_RECEIVED, KIND_RESET_SENT, TransitionEvent};

use crate::{
    maps::{netns_of, send},
    softirq::task,
};

/// Reads a field at a constant offset (see `inet_sock_set_state::field!`).
#[inline(always)]
fn load<T>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: offsets are the checked ones listed above, inside the record.
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 16);
    let state = load::<i32>(&ctx, 24) as u8;
    if sk != 0 {
        try_reset(sk, state, KIND_RESET_SENT);
    }
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 8);
    if sk != 0 {
        try_reset(sk, 0, KIND_RESET_RECEIVED);
    }
    0
}

#[inline(always)]
fn try_reset(sk: u64, state: u8, kind: u8) {
    let (pid, tid, comm, flags) = task();
    send(TransitionEvent {
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: sk,
        pid,
        tid,
        comm,
        oldstate: state,
        flags,
        kind,
        netns: netns_of(sk),
        ..TransitionEvent::default()
    });
}
