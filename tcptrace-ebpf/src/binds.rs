//! `syscalls:sys_enter_bind` and `syscalls:sys_exit_bind`: a bind() that
//! failed with `EADDRINUSE` — a server restarting onto a port that its
//! timewait sockets still hold (no `SO_REUSEADDR`). Classic tracepoints:
//! bind() is rare, and no other hook sees its result on this kernel (no
//! kprobes, fentry refused). Formats on Linux 6.18 (checked by the agent):
//!
//! ```text
//! sys_enter_bind: field:int fd;                offset:16; size:8;
//!                 field:struct sockaddr * umyaddr; offset:24; size:8;
//!                 field:int addrlen;           offset:32; size:8;
//! sys_exit_bind:  field:long ret;              offset:16; size:8;
//! ```
//!
//! The entry notes where the address asked for is (its user pointer) in a
//! slot of an array chosen by thread id; the exit, if the call failed with
//! `EADDRINUSE` and the slot is still that thread's, reads the address
//! there (the caller's memory, still the same at the syscall's exit) and
//! reports it. Reading it only on failure keeps the entry to a load and a
//! store: the bench's churn binds every client socket, and copying the
//! address at every entry cost it ~0.3 µs per connection. (An LRU hash map
//! by thread cost ~2 µs. Two threads whose ids share their low bits,
//! binding at the same instant, can miss a failure, or in the rarest race
//! read an address through the other's pointer: a wrong address, or none
//! where it does not read.) Any socket type: the arguments do not say TCP
//! from UDP without following the file descriptor.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};
use tcptrace_common::{AF_INET, AF_INET6, EADDRINUSE, KIND_BIND_FAILED, TransitionEvent};

use crate::{
    fields::load,
    maps::{FILTER, current_netns, send},
    softirq::task,
};

/// Where the address a thread's bind() in progress asked for is.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BindArgs {
    /// The `struct sockaddr *` in the caller's memory.
    sockaddr: u64,
    /// The thread, 0 once its exit was seen.
    tid: u32,
    _pad: u32,
}

/// Slots of the bind() calls in progress.
const SLOTS: u32 = 1024;

/// bind() calls in progress, by thread id modulo `SLOTS`.
#[map]
static BINDS: Array<BindArgs> = Array::with_max_entries(SLOTS, 0);

/// Reads user memory at `addr`.
#[inline(always)]
fn user<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user checks the address; a bad one is an error.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx);
    0
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let slot = BINDS.get_ptr_mut(tid % SLOTS)?;
    // SAFETY: the array's slot, valid for the program's run; a concurrent
    // writer of the same slot is caught by the tid check at the exit.
    unsafe {
        *slot = BindArgs {
            sockaddr: load(ctx, 24),
            tid,
            _pad: 0,
        };
    }
    Some(())
}

/// The address at `sockaddr` in the caller's memory: (family, address,
/// port in host order).
#[inline(always)]
fn address(sockaddr: u64) -> Option<(u16, [u8; 16], u16)> {
    let family: u16 = user(sockaddr)?;
    let mut addr = [0u8; 16];
    match family {
        AF_INET => addr[..4].copy_from_slice(&user::<[u8; 4]>(sockaddr + 4)?),
        AF_INET6 => addr = user(sockaddr + 8)?,
        _ => return None,
    }
    Some((family, addr, u16::from_be(user(sockaddr + 2)?)))
}

#[tracepoint(category = "syscalls", name = "sys_exit_bind")]
pub fn sys_exit_bind(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let slot = BINDS.get_ptr_mut(tid % SLOTS)?;
    // SAFETY: as in `try_enter`.
    let args = unsafe { *slot };
    if args.tid != tid {
        return None;
    }
    // SAFETY: as in `try_enter`.
    unsafe { (*slot).tid = 0 };
    let ret: i64 = load(ctx, 16);
    if ret != -EADDRINUSE {
        return None;
    }
    let (family, addr, port) = address(args.sockaddr)?;
    if !FILTER.load().accepts(family, port, 0) {
        return None;
    }
    let (pid, tid, comm, flags) = task();
    send(TransitionEvent {
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        dur_ns: EADDRINUSE as u64,
        saddr: addr,
        pid,
        tid,
        comm,
        sport: port,
        family,
        flags,
        kind: KIND_BIND_FAILED,
        netns: current_netns(),
        ..TransitionEvent::default()
    });
    Some(())
}
