//! A sock_diag (NETLINK_INET_DIAG) dump, read as listeners, as
//! connections, and as every socket (the start-up snapshot).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::host::sockdiag::{parse, parse_all, parse_sockets};

fuzz_target!(|data: &[u8]| {
    let mut listeners = Vec::new();
    let _ = parse(data, &mut listeners);
    let mut sockets = Vec::new();
    let _ = parse_sockets(data, &mut sockets);
    let mut all = 0usize;
    let _ = parse_all(data, |_| all += 1);
});
