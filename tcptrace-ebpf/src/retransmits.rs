//! `tcp:tcp_retransmit_skb`: a connecting socket's SYN retransmitted is
//! sent as a record (a connect that stalls a second or more: the far
//! side's listen queue is full, a firewall or a full conntrack table drops
//! it, which no state transition shows); any other retransmit (data, FIN)
//! is counted here per destination. And `tcp:tcp_retransmit_synack`: a
//! listener's SYN-ACK sent again, the client not completing the handshake,
//! counted here per listener. What is counted is never sent: a lossy path
//! or a SYN flood would fill the rings with it.
//!
//! Formats on Linux 6.18 (only these fields are read; the agent checks them):
//!
//! ```text
//! tcp_retransmit_skb:    field:const void * skaddr; offset:16; size:8;
//!                        field:int state;           offset:24; size:4;
//!                        field:__u16 sport;         offset:28; size:2;   (host order)
//!                        field:__u16 dport;         offset:30; size:2;
//!                        field:__u16 family;        offset:32; size:2;
//!                        field:__u8 saddr[4];       offset:34; size:4;
//!                        field:__u8 daddr[4];       offset:38; size:4;
//!                        field:__u8 saddr_v6[16];   offset:42; size:16;
//!                        field:__u8 daddr_v6[16];   offset:58; size:16;
//!                        field:int err;             offset:76; size:4;   (6.17+)
//! tcp_retransmit_synack: field:const void * skaddr; offset:8;  size:8;   (the listener)
//!                        field:__u16 sport;         offset:24; size:2;   (host order)
//!                        field:__u16 dport;         offset:26; size:2;
//!                        field:__u16 family;        offset:28; size:2;
//! ```
//!
//! Since 6.17 `tcp_retransmit_skb` fires for attempts that failed too
//! (`err`: the previous copy still queued, a zero window, no memory): with
//! `RETRANSMIT_ERR` those are skipped, as no segment was sent again.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use tcptrace_common::{
    AF_INET, CounterKey, KIND_RETRANSMIT, KIND_SYN_RETRANSMIT, KIND_SYNACK_RETRANSMIT,
    TransitionEvent, tcp_state,
};

use crate::{
    fields::{addr, load},
    maps::{FILTER, RETRANSMIT_ERR, count, netns_of, send},
    softirq::task,
};

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 16);
    let (sport, dport, family): (u16, u16, u16) = (load(&ctx, 28), load(&ctx, 30), load(&ctx, 32));
    if sk == 0 || !FILTER.load().accepts(family, sport, dport) {
        return 0;
    }
    if RETRANSMIT_ERR.load() != 0 && load::<i32>(&ctx, 76) != 0 {
        return 0;
    }
    if load::<i32>(&ctx, 24) == i32::from(tcp_state::SYN_SENT) {
        try_syn_retransmit(sk, (sport, dport, family));
        return 0;
    }
    let (saddr, daddr) = match family {
        AF_INET => (addr::<4>(&ctx, 34), addr::<4>(&ctx, 38)),
        _ => (addr::<16>(&ctx, 42), addr::<16>(&ctx, 58)),
    };
    count(&CounterKey {
        kind: KIND_RETRANSMIT,
        family,
        port: dport,
        netns: netns_of(sk),
        saddr,
        daddr,
        ..CounterKey::default()
    });
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let sk: u64 = load(&ctx, 8);
    let (sport, dport, family): (u16, u16, u16) = (load(&ctx, 24), load(&ctx, 26), load(&ctx, 28));
    if sk == 0 || !FILTER.load().accepts(family, sport, dport) {
        return 0;
    }
    count(&CounterKey {
        kind: KIND_SYNACK_RETRANSMIT,
        family,
        port: sport,
        netns: netns_of(sk),
        ..CounterKey::default()
    });
    0
}

/// Sends the SYN retransmit of connecting socket `sk` (local and remote
/// port, family).
#[inline(always)]
fn try_syn_retransmit(sk: u64, (sport, dport, family): (u16, u16, u16)) {
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
        oldstate: tcp_state::SYN_SENT,
        flags,
        kind: KIND_SYN_RETRANSMIT,
        netns: netns_of(sk),
        ..TransitionEvent::default()
    });
}
