//! `tcp:tcp_send_reset` and `tcp:tcp_receive_reset`: resets sent and received
//! on a full socket, so the agent can tell an abort from an orderly close.
//!
//! Formats on Linux 6.18 (only these fields are read; the agent checks them):
//!
//! ```text
//! tcp_send_reset:    field:const void * skaddr; offset:16; size:8;   (NULL: no socket)
//!                    field:int state;           offset:24; size:4;
//!                    field:enum sk_rst_reason reason; offset:28; size:4; (6.10+)
//!                    field:__u8 saddr[28];      offset:32; size:28;  (sockaddr_in6)
//!                    field:__u8 daddr[28];      offset:60; size:28;
//! tcp_receive_reset: field:const void * skaddr; offset:8;  size:8;
//!                    field:__u16 sport;         offset:16; size:2;   (host order)
//!                    field:__u16 dport;         offset:18; size:2;
//!                    field:__u16 family;        offset:20; size:2;
//! ```
//!
//! Resets on full sockets that pass the port and family filters are sent
//! (the same filters as their transitions, so what a filtered run counts
//! and loses is its own), with the socket's ports, so that the agent can
//! tell a reset of the socket it follows at that address from one of a
//! socket that took the address over unseen; the agent keeps those of
//! sockets it follows. Resets sent for no socket (a SYN to a closed port)
//! are counted here per local port (the port of the segment they answer,
//! reversed by the tracepoint: `saddr` is this host's side), not sent: a
//! SYN flood toward a closed port would fill the rings with them. With
//! `RESET_REASONS`, the kernel's reason for each reset sent goes with it.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use tcptrace_common::{
    COUNTED_NO_SOCKET_RESET, CounterKey, FLAG_RESET_REASON, KIND_RESET_RECEIVED, KIND_RESET_SENT,
    TransitionEvent,
};

use crate::{
    fields::load,
    maps::{FILTER, RESET_REASONS, count, netns_of, send},
    softirq::task,
};

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 16);
    // Local in `saddr`, remote in `daddr`: a full socket's own addresses,
    // or the segment's, reversed.
    let family: u16 = load(&ctx, 32);
    let lport = u16::from_be(load(&ctx, 34));
    let rport = u16::from_be(load(&ctx, 62));
    if !FILTER.load().accepts(family, lport, rport) {
        return 0;
    }
    if sk == 0 {
        count(&CounterKey {
            kind: COUNTED_NO_SOCKET_RESET,
            family,
            port: lport,
            ..CounterKey::default()
        });
        return 0;
    }
    let reason = match RESET_REASONS.load() {
        0 => None,
        _ => Some(load::<u32>(&ctx, 28) as u8),
    };
    try_reset(
        sk,
        load::<i32>(&ctx, 24) as u8,
        KIND_RESET_SENT,
        (lport, rport),
        reason,
    );
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 8);
    if sk == 0 {
        return 0;
    }
    let (sport, dport, family) = (load(&ctx, 16), load(&ctx, 18), load(&ctx, 20));
    if FILTER.load().accepts(family, sport, dport) {
        try_reset(sk, 0, KIND_RESET_RECEIVED, (sport, dport), None);
    }
    0
}

/// `ports`: the socket's local and remote port, in host order.
#[inline(always)]
fn try_reset(sk: u64, state: u8, kind: u8, (sport, dport): (u16, u16), reason: Option<u8>) {
    let (pid, tid, comm, mut flags) = task();
    if reason.is_some() {
        flags |= FLAG_RESET_REASON;
    }
    send(TransitionEvent {
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: sk,
        pid,
        tid,
        comm,
        oldstate: state,
        newstate: reason.unwrap_or(0),
        sport,
        dport,
        flags,
        kind,
        netns: netns_of(sk),
        ..TransitionEvent::default()
    });
}
