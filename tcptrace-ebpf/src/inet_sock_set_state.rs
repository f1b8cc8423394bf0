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
use aya_log_ebpf::warn;
use tcptrace_common::{
    AF_INET, FLAG_DUR_UNKNOWN, FLAG_NEW_SOCKET, IPPROTO_TCP, InetSockSetStateArgs, KIND_TRANSITION,
    SockState, TransitionEvent, counter, tcp_state,
};

use crate::{
    maps::{FILTER, SOCKETS, count, netns_of, send},
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
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let skaddr = field!(ctx, u64, skaddr);
    // States are 1..=12; the agent rejects anything else when decoding.
    let oldstate = field!(ctx, i32, oldstate) as u8;
    let newstate = field!(ctx, i32, newstate) as u8;
    let (dur_ns, flags, netns) = track(ctx, skaddr, oldstate, newstate, ts_ns);
    let (pid, tid, comm, ctx_flag) = task();

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
        dur_ns,
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
        flags: flags | ctx_flag,
        kind: KIND_TRANSITION,
        _pad: 0,
        netns,
    });
}

/// Updates the per-socket state map and returns (time spent in `oldstate`,
/// flags, network namespace).
#[inline(always)]
fn track(
    ctx: &TracePointContext,
    sk: u64,
    oldstate: u8,
    newstate: u8,
    now: u64,
) -> (u64, u16, u32) {
    let fresh = oldstate == tcp_state::CLOSE
        || (oldstate == tcp_state::LISTEN && newstate == tcp_state::SYN_RECV);
    let existing = SOCKETS.get_ptr_mut(&sk);
    // SAFETY (all derefs below): pointer into a map value; a socket's
    // transitions are serialized by the socket lock, so nobody else writes
    // this entry concurrently.
    let netns = match existing {
        Some(state) if !fresh && unsafe { (*state).netns } != 0 => unsafe { (*state).netns },
        _ => netns_of(sk),
    };
    let (dur, flags) = match existing {
        _ if fresh => (0, FLAG_NEW_SOCKET),
        Some(state) if unsafe { (*state).state } == oldstate => {
            (now.saturating_sub(unsafe { (*state).since_ns }), 0)
        }
        _ => (0, FLAG_DUR_UNKNOWN),
    };

    if newstate == tcp_state::CLOSE {
        if existing.is_some() {
            let _ = SOCKETS.remove(&sk);
        }
    } else if let Some(state) = existing {
        // SAFETY: as above.
        unsafe {
            (*state).since_ns = now;
            (*state).state = newstate;
            (*state).netns = netns;
        }
    } else {
        let value = SockState {
            since_ns: now,
            state: newstate,
            _pad: [0; 3],
            netns,
        };
        if SOCKETS.insert(&sk, &value, 0).is_err() && count(counter::TRACK_FULL) == 1 {
            // Off the hot path: only the first failure on each CPU is logged.
            warn!(
                ctx,
                "socket tracking map full: new sockets get unknown durations"
            );
        }
    }
    (dur, flags, netns)
}
