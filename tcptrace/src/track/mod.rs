//! Trackers: state machines that follow sockets across the kernel's records
//! and conclude what no single record says — the owner, the time in each
//! state, who closed first, a timewait socket's life and why it ended. Each
//! tracker stands alone (none imports another); the rules they apply are
//! small pure functions beside them (`verdict`, `tw_end`).

pub mod conn;
pub mod namespaces;
mod owners;
pub mod timewait;
pub mod tw_counts;
mod tw_end;
mod tw_table;
mod verdict;
