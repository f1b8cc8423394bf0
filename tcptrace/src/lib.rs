//! tcptrace: TCP state transitions from the `sock:inet_sock_set_state`
//! tracepoint, through a BPF ring buffer, to a live log.
//!
//! The pieces, in the order data flows: [`system`] prepares the host, [`bpf`]
//! loads and attaches the programs, [`agent`] drains the ring buffer, [`event`]
//! decodes records, [`output`] prints them. Only `bpf`, `system` and `agent`
//! touch the kernel; the rest is I/O-free and unit tested.

pub mod agent;
pub mod bpf;
pub mod cli;
pub mod clock;
pub mod event;
pub mod output;
pub mod system;
