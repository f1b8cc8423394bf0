//! Maps and load-time globals shared by the programs. Sizes here are defaults;
//! the agent overrides them at load time (`--ring-size`, `--max-sockets`).

use aya_ebpf::{
    Global,
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use tcptrace_common::{SockState, counter};

/// Transitions for the agent (`TransitionEvent` records).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Socket address -> state it is in and since when. Entries are removed when the
/// socket reaches CLOSE; an insert into a full map is counted in
/// `counter::TRACK_FULL`. Not preallocated: memory follows the live socket count.
#[map]
pub static SOCKETS: HashMap<u64, SockState> = HashMap::with_max_entries(131_072, BPF_F_NO_PREALLOC);

/// Per-CPU counters, indexed by `tcptrace_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU "serving a softirq right now" flag (1 or 0), maintained by the
/// `softirq_entry`/`softirq_exit` programs.
#[map]
pub static IN_SOFTIRQ: PerCpuArray<u8> = PerCpuArray::with_max_entries(1, 0);

/// Wake the agent when at least this many bytes are pending in `EVENTS`; below
/// it, records are submitted without a wake-up and the agent's periodic drain
/// picks them up. A wake-up per event would cost the host far more.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(1 << 20);

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
