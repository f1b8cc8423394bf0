//! tcptrace: TCP state transitions from the kernel's tracepoints, through
//! per-CPU ring buffers, to a live log and summaries.
//!
//! The stages, in the order a record flows through them:
//! - [`host`] reads the running system (privileges, BTF, kallsyms, the
//!   start-up socket snapshot, per-namespace counters); [`features`]
//!   decides once what this kernel allows;
//! - [`kernel`] loads and attaches the eBPF programs, merges the per-CPU
//!   rings in time order and decodes records into [`model`] events;
//! - [`pipeline`] passes each event through the trackers of [`track`]
//!   (connections, timewait sockets), which conclude owners, times in
//!   state, verdicts; it filters once and hands the facts to the sinks:
//!   the aggregates of [`aggregate`] and the live log of [`render`];
//! - [`findings`] says what is wrong, from the aggregates;
//! - [`session`] holds one run's pipeline and sinks, and [`agent`] is the
//!   loop that feeds it; [`endpoint`] serves the metrics, which the loop
//!   renders ([`render::metrics`]) at each scrape. [`cli`] is the command line.
//!
//! `host`, `features`, `kernel`, `endpoint` and `agent` touch the system (and `session`
//! through the readers it is given); the rest is I/O-free and unit tested.

pub mod agent;
pub mod aggregate;
pub mod cli;
pub mod endpoint;
pub mod features;
pub mod findings;
pub mod host;
pub mod kernel;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod report;
pub mod session;
pub mod track;
pub mod words;
