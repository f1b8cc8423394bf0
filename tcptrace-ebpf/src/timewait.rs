//! `timer:timer_start`, `timer:timer_cancel` and `timer:timer_expire_entry`,
//! filtered down to the timers of timewait sockets: the only way to see
//! TIME_WAIT with tracepoints. `tcp_time_wait()` hands a closing connection to
//! a separate `struct inet_timewait_sock` whose life `inet_sock_set_state`
//! never reports; its `tw_timer` runs `tw_timer_handler`.
//!
//! Raw tracepoints: these fire for every timer on the host (several per TCP
//! connection), and a classic tracepoint builds its whole record before the
//! program runs — measured here, that alone cost the connection churn about
//! a tenth of its throughput with empty programs. Where the kernel's BTF is
//! at hand their twins in `timewait_btf` run instead (each timer's test a
//! plain load, not a helper call), and share the code below. The raw arguments
//! (`include/trace/events/timer.h`, Linux 6.18):
//!
//! ```text
//! timer_start(struct timer_list *timer, unsigned long bucket_expiry)
//! timer_cancel(struct timer_list *timer)
//! timer_expire_entry(struct timer_list *timer, unsigned long baseclk)
//! ```
//!
//! so the programs read `timer->function` and `timer->expires` themselves,
//! at offsets from BTF, and `jiffies` with `bpf_jiffies64()`.
//!
//! What the kernel does, and what each record therefore means:
//! - arming (`inet_twsk_hashdance_schedule`, just before the full socket's
//!   CLOSE) is a `timer_start`; a re-arm (`inet_twsk_reschedule`, e.g. on a
//!   retransmitted FIN) is a `timer_cancel` then a `timer_start`;
//! - expiry is a `timer_cancel` (the wheel detaches the timer, in the timer
//!   softirq: not reported) then a `timer_expire_entry`;
//! - an early end (`inet_twsk_deschedule_put`: reuse by connect(), a SYN
//!   reopening the 4-tuple, a RST, the namespace going away) is a
//!   `timer_cancel` alone.
//!
//! The callback addresses (from /proc/kallsyms) and every structure offset
//! (from BTF) are load-time globals set by the agent. For every other timer
//! the programs return after one read and one comparison.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tcptrace_common::{
    AF_INET, AF_INET6, FLAG_NET_DYING, KIND_TW_ARMED, KIND_TW_CANCEL, KIND_TW_EXPIRED,
    KIND_TW_REQUEST, TimewaitConfig, TransitionEvent,
};

use crate::{
    maps::{FILTER, REOPEN_WATCH, TIMEWAIT, net_of, netns_of, send},
    softirq::{in_timer_softirq, task},
};

/// How soon after a timewait socket ended in a softirq the request socket of
/// the SYN that ended it must appear (they are one call chain; this only
/// bounds a stale mark).
const REOPEN_WINDOW_NS: u64 = 1_000_000;

/// Reads a kernel value at `base + offset`.
#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

#[raw_tracepoint(tracepoint = "timer_start")]
pub fn timer_start(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    let config = TIMEWAIT.load();
    let Some(function) = read::<u64>(timer, config.timer_function) else {
        return 0;
    };
    if function == config.tw_handler {
        armed(
            &config,
            timer,
            read(timer, config.timer_expires).unwrap_or(0),
        );
    } else if function == config.reqsk_handler && config.reqsk_handler != 0 {
        request_armed(&config, timer);
    }
    0
}

#[raw_tracepoint(tracepoint = "timer_cancel")]
pub fn timer_cancel(ctx: RawTracePointContext) -> i32 {
    // In the timer softirq a timewait timer is only ever detached to run it:
    // its `timer_expire_entry` follows and says all. Skipping the cancel
    // halves the records of a burst of expiries (tens of thousands of
    // timewait sockets can share one timer-wheel bucket).
    if in_timer_softirq() {
        return 0;
    }
    if_timewait(ctx.arg(0), KIND_TW_CANCEL);
    0
}

#[raw_tracepoint(tracepoint = "timer_expire_entry")]
pub fn timer_expire_entry(ctx: RawTracePointContext) -> i32 {
    if_timewait(ctx.arg(0), KIND_TW_EXPIRED);
    0
}

/// Reports `kind` if `timer` is a timewait socket's.
#[inline(always)]
fn if_timewait(timer: u64, kind: u8) {
    let config = TIMEWAIT.load();
    if read::<u64>(timer, config.timer_function) == Some(config.tw_handler) {
        ended(&config, timer, kind);
    }
}

/// A timewait socket's timer, `timer`, was armed to expire at `expires`
/// (jiffies).
#[inline(always)]
pub fn armed(config: &TimewaitConfig, timer: u64, expires: u64) {
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_jiffies64() };
    let _ = try_emit(
        config,
        timer - u64::from(config.tw_timer),
        KIND_TW_ARMED,
        expires.wrapping_sub(now),
    );
}

/// A timewait socket's timer, `timer`, was cancelled or ran out (`kind`).
#[inline(always)]
pub fn ended(config: &TimewaitConfig, timer: u64, kind: u8) {
    let _ = try_emit(config, timer - u64::from(config.tw_timer), kind, 0);
}

/// A request socket's SYN-ACK timer, `timer`, was armed.
#[inline(always)]
pub fn request_armed(config: &TimewaitConfig, timer: u64) {
    let _ = try_reopened(config, timer - u64::from(config.rsk_timer));
}

/// The endpoints of a socket, from its `struct sock_common`.
struct Endpoints {
    family: u16,
    lport: u16,
    rport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

#[inline(always)]
fn endpoints(c: &TimewaitConfig, sk: u64) -> Option<Endpoints> {
    let family: u16 = read(sk, c.skc_family)?;
    let mut e = Endpoints {
        family,
        lport: read(sk, c.skc_num)?,
        rport: u16::from_be(read(sk, c.skc_dport)?),
        saddr: [0; 16],
        daddr: [0; 16],
    };
    match family {
        AF_INET => {
            e.saddr[..4].copy_from_slice(&read::<[u8; 4]>(sk, c.skc_rcv_saddr)?);
            e.daddr[..4].copy_from_slice(&read::<[u8; 4]>(sk, c.skc_daddr)?);
        }
        AF_INET6 => {
            e.saddr = read(sk, c.skc_v6_rcv_saddr)?;
            e.daddr = read(sk, c.skc_v6_daddr)?;
        }
        _ => return None,
    }
    Some(e)
}

/// Sends one record about the timewait socket `tw`.
#[inline(always)]
fn try_emit(c: &TimewaitConfig, tw: u64, kind: u8, jiffies: u64) -> Option<()> {
    let e = endpoints(c, tw)?;
    if !FILTER.load().accepts(e.family, e.lport, e.rport) {
        return None;
    }
    // SAFETY: a helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let substate: u8 = read(tw, c.tw_substate)?;
    let (pid, tid, comm, ctx_flag) = task();
    let mut flags = ctx_flag;
    if kind == KIND_TW_CANCEL {
        if c.net_refcount != 0
            && let Some(net) = net_of(tw)
            && read::<u32>(net, c.net_refcount) == Some(0)
        {
            flags |= FLAG_NET_DYING;
        }
        // Ended while serving a softirq: perhaps by a SYN that a listener
        // takes over; `try_reopened` looks for its request socket.
        if ctx_flag == 0
            && let Some(watch) = REOPEN_WATCH.get_ptr_mut(0)
        {
            // SAFETY: per-CPU slot, only this CPU's programs touch it.
            unsafe { *watch = ts_ns };
        }
    }
    send(TransitionEvent {
        ts_ns,
        skaddr: tw,
        dur_ns: jiffies,
        saddr: e.saddr,
        daddr: e.daddr,
        pid,
        tid,
        comm,
        sport: e.lport,
        dport: e.rport,
        family: e.family,
        oldstate: substate,
        newstate: 0,
        flags,
        kind,
        _pad: 0,
        netns: netns_of(tw),
    });
    Some(())
}

/// A request socket's SYN-ACK timer was armed: if this CPU ended a timewait
/// socket in a softirq just before, report the request so the agent can match
/// its 4-tuple (a SYN that reopened the timewait socket's connection).
#[inline(always)]
fn try_reopened(c: &TimewaitConfig, req: u64) -> Option<()> {
    let watch = REOPEN_WATCH.get_ptr_mut(0)?;
    // SAFETY: a helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, only this CPU's programs touch it.
    let since = unsafe { *watch };
    if since == 0 || ts_ns.saturating_sub(since) > REOPEN_WINDOW_NS {
        return None;
    }
    // SAFETY: as above.
    unsafe { *watch = 0 };
    let e = endpoints(c, req)?;
    send(TransitionEvent {
        ts_ns,
        skaddr: req,
        saddr: e.saddr,
        daddr: e.daddr,
        sport: e.lport,
        dport: e.rport,
        family: e.family,
        kind: KIND_TW_REQUEST,
        netns: netns_of(req),
        ..TransitionEvent::default()
    });
    Some(())
}
