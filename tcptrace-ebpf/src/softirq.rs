//! `irq:softirq_entry` / `irq:softirq_exit` as raw tracepoints
//! (`TP_PROTO(unsigned int vec_nr)`).
//!
//! They maintain a per-CPU "in softirq" flag so that `inet_sock_set_state` can
//! tell a transition made by the socket's owner (a syscall: connect, listen,
//! close...) from one made while serving a softirq (packet receive, TCP
//! timers), where the current task is just whoever was interrupted — on
//! loopback often the peer process. Softirqs do not nest on one CPU, so a flag
//! (not a depth counter) is enough, and it heals itself at the next softirq if
//! an exit was ever missed. The flag holds the softirq's number plus one, so
//! the timewait programs can tell the timer softirq (natural expiry) apart. Raw tracepoints are used because they are the
//! cheapest hook: these fire for every softirq on the host.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tcptrace_common::FLAG_PROCESS_CTX;

use crate::maps::IN_SOFTIRQ;

/// `TIMER_SOFTIRQ` in `include/linux/interrupt.h` (stable since 2.6).
const TIMER_SOFTIRQ: u8 = 1;

#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn softirq_entry(ctx: RawTracePointContext) -> i32 {
    // softirq_entry has one argument, the vector number.
    let vec: u64 = ctx.arg(0);
    set_flag(vec.min(254) as u8 + 1);
    0
}

#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn softirq_exit(_ctx: RawTracePointContext) -> i32 {
    set_flag(0);
    0
}

#[inline(always)]
fn set_flag(value: u8) {
    if let Some(ptr) = IN_SOFTIRQ.get_ptr_mut(0) {
        // SAFETY: per-CPU slot written only by programs running on this CPU.
        unsafe { *ptr = value };
    }
}

/// Whether this CPU is serving a softirq right now.
#[inline(always)]
fn in_softirq() -> bool {
    IN_SOFTIRQ.get(0).is_some_and(|flag| *flag != 0)
}

/// Whether this CPU is running expired timers (the timer softirq).
#[inline(always)]
pub fn in_timer_softirq() -> bool {
    IN_SOFTIRQ
        .get(0)
        .is_some_and(|flag| *flag == TIMER_SOFTIRQ + 1)
}

/// (pid, tid, comm, FLAG_PROCESS_CTX) of the current task when this runs in
/// process context; zeros when serving a softirq, where the current task is
/// not the socket's owner.
#[inline(always)]
pub fn task() -> (u32, u32, [u8; 16], u16) {
    if in_softirq() {
        return (0, 0, [0; 16], 0);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let comm = bpf_get_current_comm().unwrap_or_default();
    (
        (pid_tgid >> 32) as u32,
        pid_tgid as u32,
        comm,
        FLAG_PROCESS_CTX,
    )
}
