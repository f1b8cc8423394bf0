//! `/proc/net/netstat` and `snmp`, and the counters kept from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::{aggregate::netns::values, host::netstat::parse};

fuzz_target!(|data: &[u8]| {
    let _ = values(&[parse(data)]);
});
