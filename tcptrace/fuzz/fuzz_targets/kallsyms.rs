//! `/proc/kallsyms`, searched for the timer symbols.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::kallsyms::find_symbols;

fuzz_target!(|data: &[u8]| {
    let _ = find_symbols(data, ["tw_timer_handler", "reqsk_timer_handler"]);
});
