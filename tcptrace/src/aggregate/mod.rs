//! Aggregates: what the summaries report, built from the facts the pipeline
//! hands out ([`stats::Stats`] is a sink) or from what the trackers and the
//! host hold now (open connections by state, overflows per namespace).
//! Bounded and I/O-free.

pub mod distribution;
pub mod exhaustion;
pub mod listeners;
pub mod netns;
pub mod open;
pub mod ports;
pub mod stats;
