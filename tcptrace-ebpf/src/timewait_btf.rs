//! The timewait programs of `timewait` as BTF tracepoints (`tp_btf`): the
//! same raw arguments (`include/trace/events/timer.h`, Linux 6.18)
//!
//! ```text
//! timer_start(struct timer_list *timer, unsigned long bucket_expiry)
//! timer_cancel(struct timer_list *timer)
//! timer_expire_entry(struct timer_list *timer, unsigned long baseclk)
//! ```
//!
//! but typed, so that the test every timer of the host pays — is its
//! callback a timewait socket's? — is a plain load of `timer->function`
//! the verifier checks against BTF, not a helper call. What follows for a
//! timewait timer is `timewait`'s own code.
//!
//! The offsets are load-time globals of their own, as in
//! `inet_sock_set_state_btf`: a field of a BTF pointer must be read at an
//! offset the verifier knows.

use aya_ebpf::{Global, macros::btf_tracepoint, programs::BtfTracePointContext};
use tcptrace_common::{KIND_TW_CANCEL, KIND_TW_EXPIRED};

use crate::{fields::at, maps::TIMEWAIT, softirq::in_timer_softirq, timewait};

/// `struct timer_list` -> `function` (0: these programs are not attached).
#[unsafe(no_mangle)]
pub static TIMER_FUNCTION: Global<u32> = Global::new(0);
/// `struct timer_list` -> `expires`.
#[unsafe(no_mangle)]
pub static TIMER_EXPIRES: Global<u32> = Global::new(0);

#[btf_tracepoint(function = "timer_start")]
pub fn timer_start_btf(ctx: BtfTracePointContext) -> i32 {
    let timer: *const u8 = ctx.arg(0);
    let function: u64 = at(timer, TIMER_FUNCTION.load());
    let config = TIMEWAIT.load();
    if function == config.tw_handler {
        timewait::armed(&config, timer as u64, at(timer, TIMER_EXPIRES.load()));
    } else if function == config.reqsk_handler && config.reqsk_handler != 0 {
        timewait::request_armed(&config, timer as u64);
    }
    0
}

#[btf_tracepoint(function = "timer_cancel")]
pub fn timer_cancel_btf(ctx: BtfTracePointContext) -> i32 {
    let timer: *const u8 = ctx.arg(0);
    let config = TIMEWAIT.load();
    // As in `timewait::timer_cancel`: in the timer softirq a timewait
    // timer is only detached to run it, and its expiry says all.
    if at::<u64>(timer, TIMER_FUNCTION.load()) == config.tw_handler && !in_timer_softirq() {
        timewait::ended(&config, timer as u64, KIND_TW_CANCEL);
    }
    0
}

#[btf_tracepoint(function = "timer_expire_entry")]
pub fn timer_expire_entry_btf(ctx: BtfTracePointContext) -> i32 {
    let timer: *const u8 = ctx.arg(0);
    let config = TIMEWAIT.load();
    if at::<u64>(timer, TIMER_FUNCTION.load()) == config.tw_handler {
        timewait::ended(&config, timer as u64, KIND_TW_EXPIRED);
    }
    0
}
