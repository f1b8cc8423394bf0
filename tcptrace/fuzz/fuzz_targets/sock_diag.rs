//! A sock_diag (NETLINK_INET_DIAG) dump of listening sockets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::sockdiag::parse;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = parse(data, &mut out);
});
