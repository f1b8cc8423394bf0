//! The kernel's BTF (`/sys/kernel/btf/vmlinux`), as the loader reads it for
//! the offsets it needs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::btf::{Btf, kernel_offsets, timewait_offsets};

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data) {
        let _ = kernel_offsets(&btf);
        let _ = timewait_offsets(&btf);
    }
});
