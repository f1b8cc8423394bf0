//! tcptrace: TCP state transitions from the `sock:inet_sock_set_state`
//! tracepoint, through a BPF ring buffer, to a live log.
//!
//! The pieces, in the order data flows: [`system`] prepares the host, [`btf`]
//! reads kernel structure offsets, [`bpf`] loads and attaches the programs,
//! [`agent`] drains the per-CPU ring buffers ([`rings`] merges them), [`event`] decodes records, [`conn`]
//! follows connections and gives verdicts, [`timewait`] follows their
//! timewait sockets, [`filter`] selects, [`stats`]
//! aggregates, [`output`] prints. Only `bpf`, `btf`, `system`, `agent` and
//! `rings` touch the kernel; the rest is I/O-free and unit tested.

pub mod agent;
pub mod bpf;
pub mod btf;
pub mod cli;
pub mod clock;
pub mod conn;
pub mod event;
pub mod filter;
pub mod output;
pub mod rings;
pub mod snapshot;
pub mod stats;
pub mod system;
pub mod timewait;
