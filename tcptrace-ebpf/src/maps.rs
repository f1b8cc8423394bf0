//! Maps and load-time globals shared by the programs. Sizes here are defaults;
//! the agent overrides them at load time (`--ring-size`, `--max-sockets`).

use aya_ebpf::{
    Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use tcptrace_common::{
    KernelFilter, KernelOffsets, SockState, TimewaitConfig, TransitionEvent, counter,
};

/// Transitions for the agent (`TransitionEvent` records).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Socket address -> state it is in and since when. Entries are removed when the
/// socket reaches CLOSE; an insert into a full map is counted in
/// `counter::TRACK_FULL`. Preallocated: measured here, allocating on insert
/// and freeing through RCU on delete cost ~10% more per transition.
#[map]
pub static SOCKETS: HashMap<u64, SockState> = HashMap::with_max_entries(131_072, 0);

/// Per-CPU counters, indexed by `tcptrace_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU "serving a softirq right now" flag (1 or 0), maintained by the
/// `softirq_entry`/`softirq_exit` programs.
#[map]
pub static IN_SOFTIRQ: PerCpuArray<u8> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU time (`bpf_ktime_get_ns`) at which a timewait socket was last ended
/// while serving a softirq, 0 once consumed; see `timewait::try_reopened`.
#[map]
pub static REOPEN_WATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Wake the agent when at least this many bytes are pending in `EVENTS`; below
/// it, records are submitted without a wake-up and the agent's periodic drain
/// picks them up. A wake-up per event would cost the host far more.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(1 << 20);

/// Which sockets to trace (`--lport`, `--rport`, `-4`, `-6`); the default
/// accepts all.
#[unsafe(no_mangle)]
pub static FILTER: Global<KernelFilter> = Global::new(KernelFilter {
    family: 0,
    lport_count: 0,
    rport_count: 0,
    _pad: 0,
    lports: [0; tcptrace_common::MAX_PORT_FILTER],
    rports: [0; tcptrace_common::MAX_PORT_FILTER],
});

/// Structure offsets from the running kernel's BTF (0: unavailable).
#[unsafe(no_mangle)]
pub static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    sock_net: 0,
    net_inum: 0,
});

/// What the timewait programs need (zeros: they are not attached).
#[unsafe(no_mangle)]
pub static TIMEWAIT: Global<TimewaitConfig> = Global::new(TimewaitConfig {
    tw_handler: 0,
    reqsk_handler: 0,
    tw_timer: 0,
    tw_substate: 0,
    rsk_timer: 0,
    timer_function: 0,
    timer_expires: 0,
    _pad: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_family: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    net_refcount: 0,
});

/// The `struct net` of a socket (full, timewait or request: they share
/// `struct sock_common`), if known.
#[inline(always)]
pub fn net_of(sk: u64) -> Option<u64> {
    let offset = OFFSETS.load().sock_net;
    if offset == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; the offset comes from BTF.
    unsafe { bpf_probe_read_kernel((sk + u64::from(offset)) as *const u64) }
        .ok()
        .filter(|net| *net != 0)
}

/// The inode number of a socket's network namespace, 0 if unknown.
#[inline(always)]
pub fn netns_of(sk: u64) -> u32 {
    let inum = OFFSETS.load().net_inum;
    match net_of(sk) {
        // SAFETY: as in `net_of`.
        Some(net) if inum != 0 => {
            unsafe { bpf_probe_read_kernel((net + u64::from(inum)) as *const u32) }.unwrap_or(0)
        }
        _ => 0,
    }
}

/// Adds one to a per-CPU counter and returns its new value (0 if unavailable).
#[inline(always)]
pub fn count(index: u32) -> u64 {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU's programs touch it, and programs
        // on one CPU do not nest.
        unsafe {
            *ptr += 1;
            return *ptr;
        }
    }
    0
}

/// Sends one record to the agent, or counts it lost when the ring is full.
#[inline(always)]
pub fn send(event: TransitionEvent) {
    let Some(mut entry) = EVENTS.reserve::<TransitionEvent>(0) else {
        count(counter::LOST);
        return;
    };
    entry.write(event);
    entry.submit(wakeup_flag());
}

/// Wake the agent only when enough is pending; its periodic drain takes the rest.
#[inline(always)]
fn wakeup_flag() -> u64 {
    let wake = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES.load() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    wake as u64
}
