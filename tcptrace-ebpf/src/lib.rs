//! Empty on purpose: see `[lib]` in Cargo.toml. The programs are in `main.rs`.
#![no_std]
