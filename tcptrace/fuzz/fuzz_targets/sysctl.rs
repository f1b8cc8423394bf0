//! A namespace's sysctls as `sysctl NAME...` prints them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::{
    host::sysctl::{parse_range, parse_reserved},
    model::Sysctls,
};

fuzz_target!(|data: &[u8]| {
    let _ = Sysctls::parse(data);
    let text = String::from_utf8_lossy(data);
    let _ = parse_range(&text);
    let _ = parse_reserved(&text);
});
