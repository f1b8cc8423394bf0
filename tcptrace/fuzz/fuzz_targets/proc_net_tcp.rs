//! `/proc/net/tcp` and `tcp6`, as the start-up snapshot reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::snapshot::read_table;

fuzz_target!(|data: &[u8]| {
    let owners = Default::default();
    let mut found = Vec::new();
    let mut timewaits = 0u64;
    read_table(data, 1, &owners, &mut |_| timewaits += 1, &mut found);
});
