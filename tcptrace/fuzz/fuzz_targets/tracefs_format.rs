//! A tracepoint's `format` file in tracefs, the layout check made on it,
//! and the reset reasons read from its print format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::preflight::{check_layout, parse_format, reset_reasons};

fuzz_target!(|data: &[u8]| {
    let _ = parse_format(data);
    let text = String::from_utf8_lossy(data);
    let _ = check_layout(
        "sock/inet_sock_set_state",
        &text,
        &[("skaddr", 8, 8), ("family", 22, 2)],
    );
    let _ = reset_reasons(&text);
});
