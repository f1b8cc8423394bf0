//! What the peers of the scenario binaries share: the server's port, the
//! socket options they set, how they read and how they tell the harness
//! where they are.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
};

/// The port the scenarios' servers listen on.
pub(crate) const PORT: u16 = 8080;

/// One line to the harness, which reads the peer's stdout.
pub(crate) fn say(what: &str) {
    println!("{what}");
    std::io::stdout().flush().unwrap();
}

pub(crate) fn set_sockopt<T>(fd: i32, level: i32, name: i32, value: &T) {
    // SAFETY: value points to a T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
}

/// `SO_LINGER` with a 0 timeout: close() resets the connection.
pub(crate) fn linger_zero(stream: &TcpStream) {
    set_sockopt(
        stream.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
}

/// Reads until the peer's FIN (or an error).
pub(crate) fn read_to_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// CLOCK_MONOTONIC in ns: the clock of tcptrace's `ts_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
