//! `tcp:tcp_retransmit_skb`, for the SYNs of connecting sockets only: a
//! connect whose SYN is retransmitted stalls a second or more (the far
//! side's listen queue is full, a firewall or a full conntrack table drops
//! it), which no state transition shows. And `tcp:tcp_retransmit_synack`:
//! a listener's SYN-ACK sent again, the client not completing the
//! handshake.
//!
//! Formats on Linux 6.18 (only these fields are read; the agent checks them):
//!
//! ```text
//! tcp_retransmit_skb:    field:const void * skaddr; offset:16; size:8;
//!                        field:int state;           offset:24; size:4;
//!                        field:__u16 sport;         offset:28; size:2;   (host order)
//!                        field:__u16 dport;         offset:30; size:2;
//!                        field:__u16 family;        offset:32; size:2;
//! tcp_retransmit_synack: field:const void * skaddr; offset:8;  size:8;   (the listener)
//!                        field:__u16 sport;         offset:24; size:2;   (host order)
//!                        field:__u16 dport;         offset:26; size:2;
//!                        field:__u16 family;        offset:28; size:2;
//! ```
//!
//! Retransmits in any other state (data) are not sent: the agent knows the
//! socket's endpoints from its transitions, and a lossy path would flood
//! the rings with them.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use tcptrace_common::{KIND_SYN_RETRANSMIT, KIND_SYNACK_RETRANSMIT, TransitionEvent, tcp_state};

use crate::{
    fields::load,
    maps::{FILTER, netns_of, send},
    softirq::task,
};

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    if load::<i32>(&ctx, 24) != i32::from(tcp_state::SYN_SENT) {
        return 0;
    }
    let sk: u64 = load(&ctx, 16);
    let (sport, dport, family) = (load(&ctx, 28), load(&ctx, 30), load(&ctx, 32));
    try_retransmit(
        sk,
        (sport, dport, family),
        tcp_state::SYN_SENT,
        KIND_SYN_RETRANSMIT,
    );
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 8);
    let (sport, dport, family) = (load(&ctx, 24), load(&ctx, 26), load(&ctx, 28));
    try_retransmit(
        sk,
        (sport, dport, family),
        tcp_state::LISTEN,
        KIND_SYNACK_RETRANSMIT,
    );
    0
}

/// Sends a retransmit of socket `sk` (local and remote port, family) in
/// `state`, if the filters accept it.
#[inline(always)]
fn try_retransmit(sk: u64, (sport, dport, family): (u16, u16, u16), state: u8, kind: u8) {
    if sk == 0 || !FILTER.load().accepts(family, sport, dport) {
        return;
    }
    let (pid, tid, comm, flags) = task();
    send(TransitionEvent {
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: sk,
        pid,
        tid,
        comm,
        sport,
        dport,
        family,
        oldstate: state,
        flags,
        kind,
        netns: netns_of(sk),
        ..TransitionEvent::default()
    });
}
