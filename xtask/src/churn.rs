//! Connection churn on loopback, the benchmark's load: client threads connect
//! to a local server, exchange four bytes each way and close; the side that
//! closes first is selectable. Client sockets bind to source addresses spread
//! over 127.0.0.0/8 (each thread its own), so TIME_WAIT on the closing side
//! does not exhaust the ephemeral ports.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Instant,
};

use anyhow::{Context as _, Result};
use socket2::{Domain, Socket, Type};

#[derive(Clone, Copy, Debug, clap::Args)]
pub(crate) struct ChurnArgs {
    /// Connections to make, in all.
    #[arg(long, default_value_t = 50_000)]
    pub connections: u64,
    /// Client threads (as many server threads accept).
    #[arg(long, default_value_t = 4)]
    pub threads: u64,
    /// Let the server close first (default: the client does).
    #[arg(long)]
    pub server_first: bool,
}

/// What one churn run did.
#[derive(Debug)]
pub(crate) struct ChurnReport {
    pub connections: u64,
    pub seconds: f64,
    /// State transitions the run caused: 5 per end of each connection, plus
    /// the listener's CLOSE->LISTEN and LISTEN->CLOSE.
    pub transitions: u64,
    /// CPU seconds this process spent (user + system).
    pub cpu_seconds: f64,
}

impl ChurnReport {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connections": self.connections,
            "seconds": self.seconds,
            "transitions": self.transitions,
            "cpu_seconds": self.cpu_seconds,
        })
    }
}

pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain integers, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given, which outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn exchange_client(stream: &mut TcpStream, server_first: bool) -> std::io::Result<()> {
    let mut buf = [0u8; 4];
    stream.write_all(b"ping")?;
    stream.read_exact(&mut buf)?;
    if server_first {
        // Wait for the server's FIN before closing.
        while stream.read(&mut buf)? > 0 {}
    }
    Ok(())
}

fn exchange_server(stream: &mut TcpStream, server_first: bool) -> std::io::Result<()> {
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf)?;
    stream.write_all(b"pong")?;
    if !server_first {
        // Wait for the client's FIN before closing.
        while stream.read(&mut buf)? > 0 {}
    }
    Ok(())
}

pub(crate) fn run(args: ChurnArgs) -> Result<ChurnReport> {
    let cpu_before = cpu_seconds();
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the churn server")?;
    let server: SocketAddr = listener.local_addr()?;
    let remaining = Arc::new(AtomicU64::new(args.connections));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let servers: Vec<_> = (0..args.threads)
        .map(|_| {
            let listener = listener.try_clone()?;
            let accepted = accepted.clone();
            let total = args.connections;
            Ok(thread::spawn(move || {
                while accepted.fetch_add(1, Ordering::Relaxed) < total {
                    if let Ok((mut stream, _)) = listener.accept() {
                        let _ = exchange_server(&mut stream, args.server_first);
                    }
                }
            }))
        })
        .collect::<Result<_>>()?;
    let clients: Vec<_> = (0..args.threads)
        .map(|t| {
            let remaining = remaining.clone();
            thread::spawn(move || -> Result<()> {
                let mut n = 0u32;
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_ok()
                {
                    // 127.<thread>.<n / 250>.<n % 250 + 2>: a fresh source address
                    // every connection keeps every 4-tuple fresh too.
                    let source = Ipv4Addr::new(
                        127,
                        10 + t as u8,
                        (n / 250 % 250) as u8,
                        (n % 250 + 2) as u8,
                    );
                    n = n.wrapping_add(1);
                    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                    socket.bind(&SocketAddr::from((source, 0)).into())?;
                    socket.connect(&server.into())?;
                    let mut stream: TcpStream = socket.into();
                    exchange_client(&mut stream, args.server_first)?;
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    // Each server thread accepts only after claiming one of the `connections`
    // slots, so none is left waiting in accept() once the clients are done.
    let seconds = started.elapsed().as_secs_f64();
    for s in servers {
        let _ = s.join();
    }
    drop(listener);
    Ok(ChurnReport {
        connections: args.connections,
        seconds,
        transitions: 10 * args.connections + 2,
        cpu_seconds: cpu_seconds() - cpu_before,
    })
}
