//! The metrics endpoint from a test's side: where tcptrace serves it, one
//! HTTP/1.1 exchange, a sample's value.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use super::Tracer;

/// The endpoint's address, from the line tcptrace says it on.
pub(crate) fn endpoint(tracer: &Tracer) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = tracer.stderr_so_far().iter().find_map(|l| {
            let rest = l.split("metrics on http://").nth(1)?;
            rest.split("/metrics").next()?.parse().ok()
        }) {
            return addr;
        }
        assert!(Instant::now() < deadline, "{:?}", tracer.stderr_so_far());
        thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 exchange: (status, head, body).
pub(crate) fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// A sample's value in an exposition.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
