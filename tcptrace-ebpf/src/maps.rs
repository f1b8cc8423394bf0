//! Maps and load-time globals shared by the programs. Sizes here are defaults;
//! the agent overrides them at load time (the number of CPUs, `--ring-size`).

use aya_ebpf::{
    Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{ArrayOfMaps, RingBuf},
    helpers::{
        bpf_get_current_task, bpf_get_smp_processor_id, bpf_probe_read_kernel, bpf_ringbuf_query,
    },
    macros::{btf_map, map},
    maps::{LruPerCpuHashMap, PerCpuArray},
};
use aya_log_ebpf::warn;
use tcptrace_common::{
    CounterKey, KernelFilter, KernelOffsets, LOST_KINDS, LostRecords, MAX_COUNTED, MAX_CPUS,
    TimewaitConfig, TransitionEvent,
};

/// Records for the agent (`TransitionEvent`s), one ring buffer per CPU: the
/// agent creates the rings (`--ring-size` each), puts them in this array
/// indexed by CPU number and merges them back into time order. A single ring
/// shared by all CPUs serializes every record on its spinlock and producer
/// position; measured here under churn on 2 CPUs (perf), the shared ring took
/// 3.2-3.5% of all CPU time, per-CPU rings 1.7-1.9%. The inner definition
/// is only the template the kernel checks the rings against (its size is not
/// compared).
#[btf_map]
pub static EVENTS: ArrayOfMaps<Ring, MAX_CPUS> = ArrayOfMaps::new();

/// The inner map template of `EVENTS`.
pub type Ring = RingBuf<TransitionEvent, { 1 << 20 }>;

/// Records lost because this CPU's ring was full, by kind (one entry).
#[map]
pub static LOST: PerCpuArray<LostRecords> = PerCpuArray::with_max_entries(1, 0);

/// What is counted here rather than sent (see `CounterKey`): per CPU, so
/// that a count is a plain increment of this CPU's value; the agent sums
/// the CPUs. LRU: when full, the key counted least recently makes room
/// (the agent reads the map every second).
#[map]
pub static COUNTS: LruPerCpuHashMap<CounterKey, u64> =
    LruPerCpuHashMap::with_max_entries(MAX_COUNTED, 0);

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

/// Whether `tcp:tcp_send_reset` has its `reason` field where
/// `TCP_SEND_RESET_REASON` says (the agent checks the format): 1 to read it.
#[unsafe(no_mangle)]
pub static RESET_REASONS: Global<u8> = Global::new(0);

/// Whether `tcp:tcp_retransmit_skb` has its `err` field where
/// `TCP_RETRANSMIT_SKB_ERR` says (the agent checks the format): 1 to skip
/// the attempts that failed.
#[unsafe(no_mangle)]
pub static RETRANSMIT_ERR: Global<u8> = Global::new(0);

/// Structure offsets from the running kernel's BTF (0: unavailable).
#[unsafe(no_mangle)]
pub static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    sock_net: 0,
    net_inum: 0,
    task_nsproxy: 0,
    nsproxy_net: 0,
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
    inum_of(net_of(sk))
}

/// The inode number of a `struct net`, 0 if unknown.
#[inline(always)]
fn inum_of(net: Option<u64>) -> u32 {
    let inum = OFFSETS.load().net_inum;
    match net {
        Some(net) if inum != 0 => {
            // SAFETY: as in `net_of`.
            unsafe { bpf_probe_read_kernel((net + u64::from(inum)) as *const u32) }.unwrap_or(0)
        }
        _ => 0,
    }
}

/// The inode number of the current task's network namespace, 0 if unknown:
/// `current->nsproxy->net_ns->ns.inum`.
#[inline(always)]
pub fn current_netns() -> u32 {
    let o = OFFSETS.load();
    if o.task_nsproxy == 0 || o.nsproxy_net == 0 {
        return 0;
    }
    // SAFETY: a helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: bpf_probe_read_kernel checks the addresses; offsets from BTF.
    let net = unsafe { bpf_probe_read_kernel((task + u64::from(o.task_nsproxy)) as *const u64) }
        .ok()
        .filter(|p| *p != 0)
        .and_then(|nsproxy| {
            // SAFETY: as above.
            unsafe { bpf_probe_read_kernel((nsproxy + u64::from(o.nsproxy_net)) as *const u64) }
                .ok()
        })
        .filter(|net| *net != 0);
    inum_of(net)
}

/// Sends one record to this CPU's ring, or counts it lost when that is full
/// (or missing, which the agent never allows).
#[inline(always)]
pub fn send(event: TransitionEvent) {
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(ring) = EVENTS.get(cpu) else {
        lost(cpu, event.kind);
        return;
    };
    let Some(mut entry) = ring.reserve(0) else {
        lost(cpu, event.kind);
        return;
    };
    entry.write(event);
    entry.submit(wakeup_flag(ring));
}

/// Counts one more of `key` in `COUNTS`; a count that finds no room is
/// counted lost, as a record of its kind would be.
#[inline(always)]
pub fn count(key: &CounterKey) {
    match COUNTS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of the entry, valid while the program
        // runs; only a program interrupting this one on the same CPU could
        // touch it (see `lost`).
        Some(n) => unsafe { *n += 1 },
        None => {
            // A new key: this CPU's value 1, the others' 0. Two CPUs adding
            // it at once each set their own value, so both are counted.
            if COUNTS.insert(key, &1, 0).is_err() {
                // SAFETY: no preconditions.
                lost(unsafe { bpf_get_smp_processor_id() }, key.kind);
            }
        }
    }
}

/// Counts a lost record by its kind; the first of each kind on each CPU is
/// logged (`-v`), off the per-event path.
#[inline(never)]
fn lost(cpu: u32, kind: u8) {
    let Some(counts) = LOST.get_ptr_mut(0) else {
        return;
    };
    // Masked, so the verifier sees the index in bounds.
    let index = usize::from(kind) & (LOST_KINDS - 1);
    // SAFETY: this CPU's slot, a valid u64 of the map's value while the
    // program runs. Not atomic (the BPF target has no atomic read-modify-
    // write in `core`): a timer's program interrupting this
    // one between its load and store, on the same CPU and also losing a
    // record, would lose one count.
    let before = unsafe {
        let slot = &mut (*counts).by_kind[index];
        let before = *slot;
        *slot = before + 1;
        before
    };
    if before == 0 {
        // aya-log 0.3 ignores its context argument; these helpers have none.
        warn!(
            &(),
            "CPU {}: ring buffer full, records of kind {} lost (raise --ring-size)", cpu, kind
        );
    }
}

/// Wake the agent only when enough is pending; its periodic drain takes the rest.
#[inline(always)]
fn wakeup_flag(ring: &Ring) -> u64 {
    // The inner map's address is the map pointer the helper expects.
    let map = core::ptr::from_ref(ring).cast_mut().cast();
    // SAFETY: `map` is a ring buffer map returned by the outer map's lookup.
    let pending = unsafe { bpf_ringbuf_query(map, u64::from(BPF_RB_AVAIL_DATA)) };
    let wake = if pending >= WAKEUP_BYTES.load() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    wake as u64
}
