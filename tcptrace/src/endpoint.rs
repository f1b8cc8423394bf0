//! The metrics endpoint (`--metrics`): HTTP/1 on the agent's own runtime
//! (hyper). `GET /metrics` (or `HEAD`) asks the agent's loop for the
//! exposition, which renders it from the aggregates there and then; every
//! other path is 404, every other method 405.
//!
//! Under abuse it stays bounded and never blocks the loop: at most
//! `MAX_CONNECTIONS` at once (more are closed at once, and counted), a
//! request's headers must arrive within `HEADER_TIMEOUT` and fit in
//! `MAX_HEADER_BYTES`, and a connection lives at most `CONNECTION_LIFETIME`.
//!
//! Bound to loopback, it answers only requests addressed to a loopback name
//! (`Host: localhost`, `127.0.0.1`, `[::1]`, or none): a web page that a
//! browser on this host runs cannot read it by rebinding its own name to
//! 127.0.0.1 (DNS rebinding), since its requests carry that name.

use std::{
    convert::Infallible,
    io,
    net::{SocketAddr, TcpListener as StdListener},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HOST},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, oneshot},
};

use crate::render::metrics::exposition;

/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// A request's headers must arrive within this (an idle keep-alive
/// connection is closed after it too).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long (once its request in flight is
/// answered).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// A request's headers must fit in this (hyper's smallest buffer).
pub const MAX_HEADER_BYTES: usize = 8192;
/// Scrapes waiting for the loop; more wait their turn in their tasks.
const QUEUED_SCRAPES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot serve metrics: {0}")]
    Listener(io::Error),
}

/// One scrape waiting for its exposition.
pub type Scrape = oneshot::Sender<Bytes>;

/// Binds the endpoint's socket, before anything is attached, so that a port
/// in use is said at once.
pub fn bind(addr: SocketAddr) -> Result<StdListener, EndpointError> {
    let listener =
        StdListener::bind(addr).map_err(|source| EndpointError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(EndpointError::Listener)?;
    Ok(listener)
}

/// What the endpoint counts of itself.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections closed at once because `MAX_CONNECTIONS` were open.
    pub refused: AtomicU64,
}

/// The endpoint as the loop sees it.
pub struct Served {
    /// Scrapes waiting for the loop's answer.
    pub scrapes: mpsc::Receiver<Scrape>,
    pub counters: Arc<Counters>,
}

impl Served {
    /// Connections closed at once because `MAX_CONNECTIONS` were open.
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// Answers `first` and every scrape waiting behind it with one
    /// exposition (`render`, given the refused count); those whose client
    /// has gone cost nothing.
    pub fn answer(&mut self, first: Scrape, render: impl FnOnce(u64) -> Bytes) {
        let mut waiting = vec![first];
        while let Ok(more) = self.scrapes.try_recv() {
            waiting.push(more);
        }
        waiting.retain(|s| !s.is_closed());
        if waiting.is_empty() {
            return;
        }
        let body = render(self.refused());
        for scrape in waiting {
            // The scraper may have gone meanwhile: nothing to do then.
            let _ = scrape.send(body.clone());
        }
    }
}

/// Serves `listener` on the current runtime (which must have I/O and time
/// enabled).
pub fn spawn(listener: StdListener) -> Result<Served, EndpointError> {
    let listener = TcpListener::from_std(listener).map_err(EndpointError::Listener)?;
    let (tx, scrapes) = mpsc::channel(QUEUED_SCRAPES);
    let counters = Arc::new(Counters::default());
    tokio::spawn(accept(listener, tx, Arc::clone(&counters)));
    Ok(Served { scrapes, counters })
}

async fn accept(listener: TcpListener, tx: mpsc::Sender<Scrape>, counters: Arc<Counters>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let loopback = listener
        .local_addr()
        .is_ok_and(|addr| addr.ip().is_loopback());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or a connection reset before it was
            // accepted: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, tx.clone(), loopback));
            let mut builder = http1::Builder::new();
            // A client that shuts its side down once its request is sent
            // (simple scrapers and health checks do) still gets the answer:
            // without half_close, hyper takes that EOF for the end.
            builder
                .half_close(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            // Errors are the client's (malformed, timed out, gone): nothing
            // to say on the host's stderr. At the end of its lifetime, a
            // connection finishes the request in flight, then closes; one
            // that does not within the header timeout is dropped.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
                }
            }
            drop(permit);
        });
    }
}

/// Whether a request's `Host` names this host's loopback: none (HTTP/1.0),
/// `localhost` or a loopback address, with or without a port.
fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        // "[::1]:9977"
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        // "127.0.0.1:9977", "localhost"
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Answers one request.
async fn respond<B>(
    req: Request<B>,
    tx: mpsc::Sender<Scrape>,
    loopback: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if loopback && !loopback_host(req.headers().get(HOST).map(|h| h.to_str().unwrap_or("?"))) {
        return Ok(response(
            StatusCode::MISDIRECTED_REQUEST,
            "this endpoint is on loopback: address it as localhost, 127.0.0.1 or [::1]\n",
        ));
    }
    if req.uri().path() != "/metrics" {
        return Ok(response(StatusCode::NOT_FOUND, "not found: try /metrics\n"));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let (reply, exposition) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return Ok(response(
            StatusCode::SERVICE_UNAVAILABLE,
            "tcptrace is stopping\n",
        ));
    }
    let Ok(body) = exposition.await else {
        return Ok(response(
            StatusCode::SERVICE_UNAVAILABLE,
            "tcptrace is stopping\n",
        ));
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_address_a_loopback_endpoint() {
        for host in [
            None,
            Some("localhost"),
            Some("LOCALHOST:9977"),
            Some("127.0.0.1"),
            Some("127.0.0.1:9977"),
            Some("127.1.2.3:80"),
            Some("[::1]:9977"),
            Some("[::1]"),
        ] {
            assert!(loopback_host(host), "{host:?}");
        }
        for host in [
            Some("evil.example"),
            Some("evil.example:9977"),
            Some("localhost.evil.example"),
            Some("10.0.0.1:9977"),
            Some("[::2]:9977"),
            Some(""),
            Some("?"),
        ] {
            assert!(!loopback_host(host), "{host:?}");
        }
    }
}
