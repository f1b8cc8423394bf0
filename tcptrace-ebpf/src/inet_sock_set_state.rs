//! `sock:inet_sock_set_state`, a classic tracepoint fired by
//! `inet_sk_set_state()` / `inet_sk_state_store()` on every state change of an
//! inet socket (TCP, SCTP, MPTCP). Record format on Linux 6.18
//! (`/sys/kernel/tracing/events/sock/inet_sock_set_state/format`):
//!
//! ```text
//! field:const void * skaddr;   offset:8;  size:8;
//! field:int oldstate;          offset:16; size:4;
//! field:int newstate;          offset:20; size:4;
//! field:__u16 sport;           offset:24; size:2;   (host order)
//! field:__u16 dport;           offset:26; size:2;
//! field:__u16 family;          offset:28; size:2;
//! field:__u16 protocol;        offset:30; size:2;
//! field:__u8 saddr[4];         offset:32; size:4;
//! field:__u8 daddr[4];         offset:36; size:4;
//! field:__u8 saddr_v6[16];     offset:40; size:16;
//! field:__u8 daddr_v6[16];     offset:56; size:16;
//! ```
//!
//! The layout is `tcptrace_common::InetSockSetStateArgs`; the agent checks it
//! against the running kernel's format file before it loads this program.
//!
//! Only `IPPROTO_TCP` is traced. MPTCP (262) transitions are those of the
//! MPTCP-level socket; its subflows are plain TCP sockets and are traced as such.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext,
};
use tcptrace_common::{
    AF_INET, IPPROTO_TCP, InetSockSetStateArgs, KIND_TRANSITION, TransitionEvent,
};

use crate::{
    maps::{FILTER, netns_of, send},
    softirq::task,
};

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    try_inet_sock_set_state(&ctx);
    0
}

/// Loads a field of the record. Context loads must be one instruction at a
/// constant offset from the unmodified context pointer (the verifier refuses
/// anything else), so fields are read as whole integers, never byte by byte.
macro_rules! field {
    ($ctx:expr, $ty:ty, $($field:tt)+) => {{
        const OFFSET: usize = core::mem::offset_of!(InetSockSetStateArgs, $($field)+);
        // SAFETY: the agent verified the record layout against the kernel's
        // format file; OFFSET is inside the record and aligned for $ty.
        unsafe { core::ptr::read_volatile(($ctx.as_ptr() as *const u8).add(OFFSET).cast::<$ty>()) }
    }};
}

/// Reads a 16-byte address at the offset of `$field` as two aligned u64 loads.
macro_rules! addr16 {
    ($ctx:expr, $field:ident) => {{
        const OFFSET: usize = core::mem::offset_of!(InetSockSetStateArgs, $field);
        let base = $ctx.as_ptr() as *const u8;
        // SAFETY: as in `field!`; both halves are 8-byte aligned (offsets 40, 56).
        let (lo, hi) = unsafe {
            (
                core::ptr::read_volatile(base.add(OFFSET).cast::<u64>()),
                core::ptr::read_volatile(base.add(OFFSET + 8).cast::<u64>()),
            )
        };
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&lo.to_ne_bytes());
        out[8..].copy_from_slice(&hi.to_ne_bytes());
        out
    }};
}

#[inline(always)]
fn try_inet_sock_set_state(ctx: &TracePointContext) {
    if field!(ctx, u16, protocol) != IPPROTO_TCP {
        return;
    }
    let family = field!(ctx, u16, family);
    let sport = field!(ctx, u16, sport);
    let dport = field!(ctx, u16, dport);
    if !FILTER.load().accepts(family, sport, dport) {
        return;
    }
    // SAFETY: a helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let skaddr = field!(ctx, u64, skaddr);
    // States are 1..=12; the agent rejects anything else when decoding.
    let oldstate = field!(ctx, i32, oldstate) as u8;
    let newstate = field!(ctx, i32, newstate) as u8;
    let (pid, tid, comm, flags) = task();

    let (saddr, daddr) = if family == AF_INET {
        let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
        saddr[..4].copy_from_slice(&field!(ctx, u32, saddr).to_ne_bytes());
        daddr[..4].copy_from_slice(&field!(ctx, u32, daddr).to_ne_bytes());
        (saddr, daddr)
    } else {
        (addr16!(ctx, saddr_v6), addr16!(ctx, daddr_v6))
    };

    send(TransitionEvent {
        ts_ns,
        skaddr,
        dur_ns: 0,
        saddr,
        daddr,
        pid,
        tid,
        comm,
        sport,
        dport,
        family,
        oldstate,
        newstate,
        flags,
        kind: KIND_TRANSITION,
        _pad: 0,
        netns: netns_of(skaddr),
    });
}
