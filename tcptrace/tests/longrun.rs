//! The long run: a million connections through the daemon (`--quiet
//! --metrics`, scraped as Prometheus would), made by 200 short-lived
//! processes, each toward five destinations of its own (a new server port
//! each), so that pids, owners, listeners and destinations churn as well as
//! sockets. The agent's memory must stop growing once the host's TIME_WAIT
//! is at its steady state (RSS every 250 k, until a million connections and
//! two steps after TIME_WAIT turned over), and the
//! kernel maps must be what they were when loaded: the same maps, the same
//! sizes, the same memory (`memlock` in their fdinfo: fixed at creation for
//! the arrays and rings tcptrace has, what it holds for a hash map, were one
//! added).
//!
//! Each worker is this test binary again, running the ignored test
//! `churn_worker` with its part in the environment.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::Instant,
};

use common::{
    Tracer,
    http::{endpoint, get, sample},
};

/// At least this many workers: a million connections.
const MIN_WORKERS: u64 = 200;
/// The host's TIME_WAIT has turned over this long after start-up.
const TURNOVER_S: f64 = 65.0;
const PER_WORKER: u64 = 5000;
const DESTINATIONS_PER_WORKER: u64 = 5;
const WORKER_ENV: &str = "TCPTRACE_LONGRUN_WORKER";

#[test]
fn a_million_connections_from_churning_processes_leave_memory_flat_and_maps_as_loaded() {
    let tracer = Tracer::start(&["--quiet", "--metrics", "127.0.0.1:0"]);
    let addr = endpoint(&tracer);
    let pid = tracer.pid();
    let maps_loaded = bpf_maps(pid);
    assert!(!maps_loaded.is_empty(), "no BPF maps in fdinfo of {pid}");

    let started = Instant::now();
    // (connections, seconds since start, RSS KiB) every 250 k.
    let mut rss: Vec<(u64, f64, u64)> = Vec::new();
    let turned_over = |r: &&(u64, f64, u64)| r.1 >= TURNOVER_S;
    let mut worker = 0;
    while worker < MIN_WORKERS || rss.iter().filter(turned_over).count() < 2 {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["churn_worker", "--exact", "--ignored", "--nocapture", "-q"])
            .env(WORKER_ENV, worker.to_string())
            .stdout(Stdio::null())
            .status()
            .expect("spawn a churn worker");
        assert!(status.success(), "worker {worker}: {status}");
        worker += 1;
        let done = worker * PER_WORKER;
        if done.is_multiple_of(250_000) {
            // Scraped at each step, as a fleet's Prometheus would.
            let (code, _, body) = get(addr, "/metrics");
            assert_eq!(code, 200);
            let time_wait: f64 = body
                .lines()
                .filter(|l| {
                    l.starts_with("tcptrace_sockets{") && l.contains(r#"state="time_wait""#)
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            let at = started.elapsed().as_secs_f64();
            rss.push((done, at, rss_kib(pid)));
            eprintln!(
                "{done} connections in {at:.0} s: RSS {} KiB, {time_wait} timewait sockets",
                rss_kib(pid)
            );
        }
    }
    assert_eq!(bpf_maps(pid), maps_loaded, "kernel maps changed");

    let (code, _, body) = get(addr, "/metrics");
    assert_eq!(code, 200);
    let received = sample(
        &body,
        r#"tcptrace_records_received_total{kind="transition"}"#,
    )
    .expect("records received") as u64;
    let lost = sample(
        &body,
        r#"tcptrace_events_lost_total{reason="ring_full",kind="transition"}"#,
    )
    .expect("transitions lost");
    let finished = tracer.stop();
    assert!(finished.status.success(), "{:?}", finished.stderr);
    // 10 transitions a connection, all accounted for (received or lost).
    let caused = 10 * worker * PER_WORKER;
    assert!(
        received + lost as u64 >= caused,
        "received {received} + lost {lost} < caused {caused}"
    );
    eprintln!("received {received} transitions, lost {lost}; RSS by step: {rss:?}");

    // Once the host's TIME_WAIT has turned over since start-up (every
    // timewait socket found then has ended, and as many new ones are
    // followed: one timer's length, plus slack), every table is at its
    // steady state: what the agent holds no longer grows with the
    // connections, the pids or the destinations.
    let settled: Vec<_> = rss.iter().filter(turned_over).collect();
    let (first, last) = (settled[0], settled[settled.len() - 1]);
    let growth = last.2.saturating_sub(first.2);
    assert!(
        growth < 2 * 1024,
        "RSS grew {growth} KiB from {} to {} connections: {rss:?}",
        first.0,
        last.0
    );
}

/// One churn worker: `PER_WORKER` connections over its destinations, the
/// client closing first (the host then holds TIME_WAIT), from a fresh source
/// address each time.
#[test]
#[ignore = "run by the long-run test, as a process of its own"]
fn churn_worker() {
    let Ok(worker) = std::env::var(WORKER_ENV) else {
        return;
    };
    let worker: u64 = worker.parse().unwrap();
    for d in 0..DESTINATIONS_PER_WORKER {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let n = PER_WORKER / DESTINATIONS_PER_WORKER;
        let accepter = thread::spawn(move || {
            for _ in 0..n {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4];
                conn.read_exact(&mut buf).unwrap();
                conn.write_all(b"pong").unwrap();
                // Wait for the client's FIN.
                while conn.read(&mut buf).unwrap_or(0) > 0 {}
            }
        });
        let base = (worker * DESTINATIONS_PER_WORKER + d) * n;
        for i in 0..n {
            client(server, base + i);
        }
        accepter.join().unwrap();
    }
}

fn client(server: SocketAddr, n: u64) {
    // 127.<n>: a fresh 4-tuple every time, so that TIME_WAIT never blocks a
    // connect.
    let source = Ipv4Addr::new(
        127,
        10 + (n / 62_500 % 200) as u8,
        (n / 250 % 250) as u8,
        (n % 250 + 2) as u8,
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The BPF maps a process holds, as their fdinfo says: (type, key size,
/// value size, max entries, memlock), sorted.
fn bpf_maps(pid: u32) -> Vec<(u32, u32, u32, u32, u64)> {
    let mut maps = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let is_map = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf-map");
        if !is_map {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        )) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {info}"))
        };
        maps.push((
            field("map_type:") as u32,
            field("key_size:") as u32,
            field("value_size:") as u32,
            field("max_entries:") as u32,
            field("memlock:"),
        ));
    }
    maps.sort_unstable();
    maps
}
