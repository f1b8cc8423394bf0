//! tcptrace's eBPF programs. One module per hook; each documents the kernel
//! record it reads. Entry points are thin and call a `try_*` returning `Result`.
//!
//! Built for the BPF target by `tcptrace/build.rs` (aya-build). On the host this
//! crate compiles to an empty binary so `cargo test --workspace` works.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    unreachable_pub,
    reason = "the programs and maps are the object's interface, found by their symbols: `pub` says so"
)]

mod binds;
mod fields;
mod floor;
mod inet_sock_set_state;
mod inet_sock_set_state_btf;
mod maps;
mod resets;
mod retransmits;
mod softirq;
mod timewait;
mod timewait_btf;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
#[used]
static LICENSE: [u8; 4] = *b"GPL\0";
