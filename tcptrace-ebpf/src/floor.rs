//! Empty programs on the hooks tcptrace uses: the benchmark's floor. Attached
//! instead of the real ones by `tcptrace --bench-floor`, they measure what the
//! kernel charges for running any BPF program there, so the benchmark can
//! tell that cost from tcptrace's own.

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn floor_inet_sock_set_state(_ctx: TracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn floor_inet_sock_set_state_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn floor_tcp_send_reset(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn floor_tcp_receive_reset(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn floor_tcp_retransmit_skb(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn floor_tcp_retransmit_synack(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn floor_sys_enter_bind(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_bind")]
pub fn floor_sys_exit_bind(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn floor_softirq_entry(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn floor_softirq_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "timer_start")]
pub fn floor_timer_start(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "timer_cancel")]
pub fn floor_timer_cancel(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "timer_expire_entry")]
pub fn floor_timer_expire_entry(_ctx: RawTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "timer_start")]
pub fn floor_timer_start_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "timer_cancel")]
pub fn floor_timer_cancel_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "timer_expire_entry")]
pub fn floor_timer_expire_entry_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}
