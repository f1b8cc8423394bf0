//! The kernel side as the agent sees it: loading and attaching the eBPF
//! programs ([`loader`]), the per-CPU rings merged back into time order
//! ([`rings`]), and the records decoded into typed events ([`decode`]).

pub mod decode;
pub mod loader;
pub mod rings;

use nix::time::{ClockId, clock_gettime};

/// CLOCK_MONOTONIC now, in the time base of the records' timestamps
/// (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
