//! `/proc/net/netstat` and `snmp`, and the counters kept from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::netstat::{parse, values};

fuzz_target!(|data: &[u8]| {
    let _ = values(&[parse(data)]);
});
