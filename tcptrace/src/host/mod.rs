//! Everything that reads the running system. Each reader is a pure parser
//! (over `impl BufRead`, or bytes for BTF) tested on fixtures copied from a
//! real kernel, plus a thin function that opens the real file; the tests that
//! need the live host are in the root-only suite (`tests/host.rs`).

pub mod btf;
pub mod kallsyms;
pub mod kconfig;
pub mod meminfo;
pub mod netns;
pub mod netstat;
pub mod preflight;
pub mod privileges;
pub mod snapshot;
pub mod sockdiag;
pub mod sysctl;
