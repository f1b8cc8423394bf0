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
//! A reset is reported only for a socket tcptrace follows (it is in `SOCKETS`,
//! so it passed the filters) or, for a sent reset, one that has just moved to
//! CLOSE: an abortive close (`SO_LINGER` 0, unread data) sets CLOSE *before*
//! sending the RST, and the CLOSE removed the socket from `SOCKETS`.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext,
};
use tcptrace_common::{KIND_RESET_RECEIVED, KIND_RESET_SENT, TransitionEvent, tcp_state};

use crate::{
    maps::{SOCKETS, netns_of, send},
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
    try_reset(sk, 0, KIND_RESET_RECEIVED);
    0
}

#[inline(always)]
fn try_reset(sk: u64, state: u8, kind: u8) {
    // SAFETY: read-only look at a map value.
    let tracked = unsafe { SOCKETS.get(&sk) };
    let state = match tracked {
        Some(s) => s.state,
        None if kind == KIND_RESET_SENT && state == tcp_state::CLOSE => state,
        None => return,
    };
    let (pid, tid, comm, ctx_flag) = task();
    send(TransitionEvent {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: sk,
        pid,
        tid,
        comm,
        oldstate: state,
        flags: ctx_flag,
        kind,
        netns: tracked.map_or_else(|| netns_of(sk), |s| s.netns),
        ..TransitionEvent::default()
    });
}
