//! `inet_sock_set_state` as a BTF tracepoint (`tp_btf`), the cheaper twin of
//! the classic one in `inet_sock_set_state`: the kernel hands the program
//! its raw arguments (`include/trace/events/sock.h`, Linux 6.18)
//!
//! ```text
//! inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)
//! ```
//!
//! instead of building the classic record first, and the program reads the
//! socket itself, with plain loads the verifier checks against the
//! kernel's BTF (no helper call per field). It reads what the classic
//! record holds, from the same places (`TP_STORE_ADDRS`): the local port
//! and IPv4 address from `inet_sock` (`inet_sport`, `inet_saddr`: at the
//! CLOSE transition `inet_num` is already 0), the rest from `sock_common`.
//! `bpf_skc_to_tcp_sock` gives the `tcp_sock` those are in, and is NULL
//! for anything but a full TCP socket (MPTCP's own sockets included), as
//! the classic program's protocol check.
//!
//! The offsets are the agent's, from BTF, one load-time global each: the
//! verifier takes a value read from the frozen read-only globals as a
//! constant, and a field of a BTF pointer must be read at a constant
//! offset. The record sent is the classic program's, byte for byte.

use aya_ebpf::{
    Global,
    helpers::{bpf_ktime_get_ns, bpf_skc_to_tcp_sock},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tcptrace_common::{AF_INET, KIND_TRANSITION, TransitionEvent};

use crate::{
    fields::at,
    maps::{FILTER, send},
    softirq::task,
};

/// `struct tcp_sock` -> `inet_conn.icsk_inet.sk.__sk_common.skc_family`, and
/// so on: offsets from the start of the `tcp_sock` (0: this program is not
/// attached).
#[unsafe(no_mangle)]
pub static SK_FAMILY: Global<u32> = Global::new(0);
/// `... .__sk_common.skc_dport` (network order).
#[unsafe(no_mangle)]
pub static SK_DPORT: Global<u32> = Global::new(0);
/// `... .__sk_common.skc_daddr`.
#[unsafe(no_mangle)]
pub static SK_DADDR: Global<u32> = Global::new(0);
/// `... .__sk_common.skc_v6_daddr`.
#[unsafe(no_mangle)]
pub static SK_V6_DADDR: Global<u32> = Global::new(0);
/// `... .__sk_common.skc_v6_rcv_saddr`.
#[unsafe(no_mangle)]
pub static SK_V6_SADDR: Global<u32> = Global::new(0);
/// `... .__sk_common.skc_net.net` (a `struct net *`).
#[unsafe(no_mangle)]
pub static SK_NET: Global<u32> = Global::new(0);
/// `struct tcp_sock` -> `inet_conn.icsk_inet.inet_sport` (network order).
#[unsafe(no_mangle)]
pub static INET_SPORT: Global<u32> = Global::new(0);
/// `struct tcp_sock` -> `inet_conn.icsk_inet.inet_saddr`.
#[unsafe(no_mangle)]
pub static INET_SADDR: Global<u32> = Global::new(0);
/// `struct net` -> `ns.inum`.
#[unsafe(no_mangle)]
pub static NET_INUM: Global<u32> = Global::new(0);

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    try_inet_sock_set_state(&ctx);
    0
}

/// Reads a 16-byte address at `offset` from `base` as two 8-byte loads.
#[inline(always)]
fn addr16(base: *const u8, offset: u32) -> [u8; 16] {
    let (lo, hi): (u64, u64) = (at(base, offset), at(base, offset + 8));
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_ne_bytes());
    out[8..].copy_from_slice(&hi.to_ne_bytes());
    out
}

#[inline(always)]
fn try_inet_sock_set_state(ctx: &BtfTracePointContext) {
    let sk: *mut core::ffi::c_void = ctx.arg(0);
    // SAFETY: a helper that checks its argument; NULL unless `sk` is a
    // full TCP socket.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk) } as *const u8;
    if tp.is_null() {
        return;
    }
    let family: u16 = at(tp, SK_FAMILY.load());
    let sport = u16::from_be(at(tp, INET_SPORT.load()));
    let dport = u16::from_be(at(tp, SK_DPORT.load()));
    if !FILTER.load().accepts(family, sport, dport) {
        return;
    }
    // SAFETY: a helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    // States are 1..=12; the agent rejects anything else when decoding.
    let oldstate = ctx.arg::<u64>(1) as u8;
    let newstate = ctx.arg::<u64>(2) as u8;
    let (pid, tid, comm, flags) = task();
    let (saddr, daddr) = if family == AF_INET {
        let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
        saddr[..4].copy_from_slice(&at::<u32>(tp, INET_SADDR.load()).to_ne_bytes());
        daddr[..4].copy_from_slice(&at::<u32>(tp, SK_DADDR.load()).to_ne_bytes());
        (saddr, daddr)
    } else {
        (
            addr16(tp, SK_V6_SADDR.load()),
            addr16(tp, SK_V6_DADDR.load()),
        )
    };
    let net: *const u8 = at(tp, SK_NET.load());
    let netns: u32 = match net.is_null() {
        true => 0,
        false => at(net, NET_INUM.load()),
    };
    send(TransitionEvent {
        ts_ns,
        skaddr: sk as u64,
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
        netns,
    });
}
