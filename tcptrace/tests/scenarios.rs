//! Scenario tests: a client and a server, each its own process with its own
//! command name, in two network namespaces joined by a veth pair; tcptrace
//! traces them and each scenario asserts, for both ends, the state sequence,
//! the verdict and the process attribution.
//!
//! The binary is its own peer: `scenarios peer NETNS NAME ROLE MODE ADDR`
//! joins NETNS, renames itself NAME and plays ROLE. Needs root, `ip` and `nft`
//! (installed by `./x setup`). Namespaces are removed on the way out.

mod common;

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    panic, thread,
    time::{Duration, Instant},
};

use common::{
    Tracer,
    net::{CLIENT_IP, Net, Peer, SERVER_IP},
    peer::{PORT, linger_zero, monotonic_ns, read_to_eof, say, set_sockopt},
};
use serde_json::Value;

// ---------------------------------------------------------------- peers --

/// Runs a peer; never returns.
fn peer(args: &[String]) -> ! {
    let (role, mode, addr) = common::net::become_peer(args);
    let (mode, linger) = match mode.strip_suffix("+linger") {
        Some(mode) => (mode.to_owned(), true),
        None => (mode.to_owned(), false),
    };
    match role {
        "server" => {
            let listener = TcpListener::bind(addr).unwrap();
            say("ready");
            let (mut conn, from) = listener.accept().unwrap();
            match mode.as_str() {
                // Two connections, each closed after the client's FIN.
                "eof-then-close-twice" => {
                    read_to_eof(&mut conn);
                    drop(conn);
                    let (mut second, _) = listener.accept().unwrap();
                    read_to_eof(&mut second);
                    std::process::exit(0)
                }
                // Close the first connection first (a timewait socket here),
                // then serve the client's second one on the same 4-tuple.
                "close-first-then-eof" => {
                    drop(conn);
                    let (mut second, _) = listener.accept().unwrap();
                    read_to_eof(&mut second);
                    std::process::exit(0)
                }
                // After the client's FIN, wait for "go" before closing.
                "close-on-go" => {
                    read_to_eof(&mut conn);
                    say("eof");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).unwrap();
                }
                // After an orderly close, connect from the listening port to
                // the client's port: the SYN meets the client's timewait
                // socket, which answers with an ACK; this socket's kernel
                // resets that, in window.
                "connect-back" => {
                    read_to_eof(&mut conn);
                    drop(conn);
                    drop(listener);
                    thread::sleep(Duration::from_millis(300));
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    socket.set_reuse_address(true).unwrap();
                    socket.bind(&addr.into()).unwrap();
                    let result = socket.connect_timeout(&from.into(), Duration::from_secs(10));
                    say(&format!("{:?}", result.map_err(|e| e.kind())));
                    std::process::exit(0)
                }
                // Wait for the client's FIN, then close.
                "eof-then-close" => read_to_eof(&mut conn),
                // Close first, then let the client finish.
                "close-first" => conn.write_all(b"bye").unwrap(),
                // Close with the client's data unread: the kernel resets.
                "abort-unread" => thread::sleep(Duration::from_millis(300)),
                // Never close after the client's FIN: CLOSE_WAIT stays.
                "never-close" => {
                    read_to_eof(&mut conn);
                    say("eof");
                    thread::sleep(Duration::from_secs(600));
                }
                // Close at a deadline shared with the client.
                "close-at" => {
                    say("connected");
                    close_at_deadline();
                }
                other => panic!("server mode {other}"),
            }
            drop(conn);
            drop(listener);
        }
        "client" => match mode.as_str() {
            // The connect is expected to fail; print how.
            "expect-failure" => {
                let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(30));
                say(&format!("{:?}", stream.map(|_| ()).map_err(|e| e.kind())));
            }
            "syn-once" => {
                // One SYN retransmission: the connect times out after ~3 s.
                let socket = socket_with_syncnt(addr, 1);
                say(&format!("{:?}", socket.map_err(|e| e.kind())));
            }
            _ => {
                let mut conn = TcpStream::connect(addr).unwrap();
                match mode.as_str() {
                    "close-first" => conn.write_all(b"hi").unwrap(),
                    "wait-eof" => read_to_eof(&mut conn),
                    "linger0" => {
                        conn.write_all(b"hi").unwrap();
                        thread::sleep(Duration::from_millis(100));
                        linger_zero(&conn);
                    }
                    "send-then-wait-eof" => {
                        conn.write_all(b"unread data").unwrap();
                        read_to_eof(&mut conn);
                    }
                    "close-at" => {
                        say("connected");
                        close_at_deadline();
                    }
                    // Close first, keeping the socket until the server's FIN:
                    // the full socket goes FIN_WAIT2 -> TIME_WAIT.
                    "shutdown-wait-eof" => shutdown_wait_eof(&mut conn),
                    // The same twice from one port (the namespace has a
                    // one-port ephemeral range), after the first timewait
                    // socket is old enough for tcp_tw_reuse.
                    "twice" => {
                        shutdown_wait_eof(&mut conn);
                        say(&format!("port {}", conn.local_addr().unwrap().port()));
                        drop(conn);
                        thread::sleep(Duration::from_millis(2100));
                        let mut second = TcpStream::connect(addr).unwrap();
                        say(&format!("port {}", second.local_addr().unwrap().port()));
                        shutdown_wait_eof(&mut second);
                        std::process::exit(0)
                    }
                    // Let the server close first, then connect again from the
                    // same port: the SYN meets the server's timewait socket.
                    "reconnect" => {
                        let local = conn.local_addr().unwrap();
                        read_to_eof(&mut conn);
                        drop(conn);
                        thread::sleep(Duration::from_millis(300));
                        let socket = socket2::Socket::new(
                            socket2::Domain::IPV4,
                            socket2::Type::STREAM,
                            None,
                        )
                        .unwrap();
                        socket.set_reuse_address(true).unwrap();
                        socket.bind(&local.into()).unwrap();
                        socket.connect(&addr.into()).unwrap();
                        let mut second: TcpStream = socket.into();
                        shutdown_wait_eof(&mut second);
                        std::process::exit(0)
                    }
                    other => panic!("client mode {other}"),
                }
                drop(conn);
            }
        },
        other => panic!("role {other}"),
    }
    if linger {
        // Stay in the namespace a while: tcptrace reads its counters through us.
        thread::sleep(Duration::from_millis(2500));
    }
    std::process::exit(0)
}

fn shutdown_wait_eof(conn: &mut TcpStream) {
    conn.write_all(b"hi").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    read_to_eof(conn);
}

/// A blocking connect with TCP_SYNCNT set (std has no knob for it).
fn socket_with_syncnt(addr: SocketAddr, syncnt: i32) -> std::io::Result<()> {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    set_sockopt(fd, libc::IPPROTO_TCP, libc::TCP_SYNCNT, &syncnt);
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sin is a valid sockaddr_in of the size passed.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    result
}

// ------------------------------------------------------------ assertions --

/// What tcptrace reported about one network namespace.
struct Side<'a> {
    transitions: Vec<&'a Value>,
    closed: Vec<&'a Value>,
}

fn side<'a>(transitions: &'a [Value], closed: &'a [Value], ino: u64) -> Side<'a> {
    Side {
        transitions: transitions.iter().filter(|r| r["netns"] == ino).collect(),
        closed: closed.iter().filter(|r| r["netns"] == ino).collect(),
    }
}

impl Side<'_> {
    /// The transitions, in order, that `connection` picks out. (Not grouped
    /// by socket address: the kernel reuses those.)
    fn sequence(&self, connection: impl Fn(&Value) -> bool) -> Vec<String> {
        let picked: Vec<&Value> = self
            .transitions
            .iter()
            .copied()
            .filter(|r| connection(r))
            .collect();
        common::sequence(&picked)
    }

    /// The closed records of the sockets that `connection` picks out.
    fn verdicts(&self, connection: impl Fn(&Value) -> bool) -> Vec<String> {
        self.closed
            .iter()
            .filter(|r| connection(r))
            .map(|r| r["verdict"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every transition and closed record of this side names `pid`/`comm`.
    fn owned_by(&self, pid: u32, comm: &str) {
        assert!(!self.transitions.is_empty(), "no transitions");
        for r in self.transitions.iter().chain(&self.closed) {
            assert_eq!(r["pid"], pid, "wrong owner: {r}");
            assert_eq!(r["comm"], comm, "wrong owner: {r}");
        }
    }

    fn verdict(&self) -> String {
        assert_eq!(
            self.closed.len(),
            1,
            "one closed record: {:#?}",
            self.closed
        );
        self.closed[0]["verdict"].as_str().unwrap().to_owned()
    }
}

fn client_conn(r: &Value) -> bool {
    r["raddr"] == SERVER_IP && r["rport"] == PORT
}

fn server_conn(r: &Value) -> bool {
    r["laddr"] == SERVER_IP && r["lport"] == PORT && r["raddr"] == CLIENT_IP
}

const CLIENT_OPEN: [&str; 2] = ["CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED"];
const SERVER_OPEN: [&str; 2] = ["LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED"];

fn seq(open: &[&str], rest: &[&str]) -> Vec<String> {
    open.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// Traces one client/server exchange and returns tcptrace's JSON records.
struct Run {
    transitions: Vec<Value>,
    closed: Vec<Value>,
    summary: Value,
    stderr: Vec<String>,
    client_pid: u32,
    server_pid: u32,
}

fn trace(
    net: &Net,
    server_mode: Option<&str>,
    client_mode: &str,
    client_to: &str,
    script: impl FnOnce(&mut Option<Peer>, &mut Peer),
) -> Run {
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns]);
    let mut server = server_mode.map(|mode| {
        let mut s = Peer::spawn(
            &net.server,
            "tt-server",
            "server",
            mode,
            &format!("{SERVER_IP}:{PORT}"),
        );
        s.expect("ready");
        s
    });
    let mut client = Peer::spawn(&net.client, "tt-client", "client", client_mode, client_to);
    script(&mut server, &mut client);
    let (client_pid, server_pid) = (client.pid(), server.as_ref().map_or(0, Peer::pid));
    // Let the last transitions and their verdicts reach the agent.
    thread::sleep(Duration::from_millis(300));
    let finished = tracer.stop_lossless();
    assert!(finished.status.success(), "{:?}", finished.stderr);
    let summaries = finished.records("summary");
    Run {
        transitions: finished.records("transition"),
        closed: finished.records("closed"),
        summary: summaries.last().cloned().expect("an exit summary"),
        stderr: finished.stderr,
        client_pid,
        server_pid,
    }
}

/// Traces a client and a server that each run their mode to the end.
fn trace_to_end(net: &Net, server_mode: &str, client_mode: &str) -> Run {
    trace(
        net,
        Some(server_mode),
        client_mode,
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            client.wait();
            server.as_mut().unwrap().wait();
        },
    )
}

// ------------------------------------------------------------- scenarios --

/// A client and a server that each run one mode to completion: asserts each
/// end's transitions after the handshake, both verdicts, and both owners.
fn exchange(
    tag: &str,
    server_mode: &str,
    client_mode: &str,
    client_end: &[&str],
    server_end: &[&str],
    verdicts: (&str, &str),
) -> Run {
    let net = Net::new(tag);
    let run = trace(
        &net,
        Some(server_mode),
        client_mode,
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            client.wait();
            server.as_mut().unwrap().wait();
        },
    );
    let client = side(&run.transitions, &run.closed, net.client_ino);
    let server = side(&run.transitions, &run.closed, net.server_ino);
    assert_sequence(client.sequence(client_conn), seq(&CLIENT_OPEN, client_end));
    assert_sequence(server.sequence(server_conn), seq(&SERVER_OPEN, server_end));
    assert_eq!(
        (client.verdict(), server.verdict()),
        (verdicts.0.to_owned(), verdicts.1.to_owned())
    );
    client.owned_by(run.client_pid, "tt-client");
    server.owned_by(run.server_pid, "tt-server");
    run
}

/// `HANDOVER` in an expected sequence: the closing end's hand-over to its
/// timewait socket, in TIME_WAIT if the peer's FIN came before close()
/// orphaned the socket, else in FIN_WAIT2 (an orphan waiting for that FIN).
/// Which one is a race between the two ends.
const HANDOVER: &str = "FIN_WAIT2->(timewait)";

fn assert_sequence(actual: Vec<String>, expected: Vec<String>) {
    let matches = actual.len() == expected.len()
        && actual.iter().zip(&expected).all(|(a, e)| {
            a == e
                || (e == HANDOVER && (a == "FIN_WAIT2->TIME_WAIT" || a == "FIN_WAIT2->FIN_WAIT2"))
        });
    assert!(matches, "got {actual:?}, expected {expected:?}");
}

fn client_closes_first() {
    let run = exchange(
        "ccf",
        "eof-then-close",
        "close-first",
        &["ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", HANDOVER],
        &[
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE",
        ],
        ("local", "peer"),
    );
    let role = |verdict: &str| {
        run.closed.iter().find(|c| c["verdict"] == verdict).unwrap()["role"].clone()
    };
    assert_eq!(
        (role("local"), role("peer")),
        ("active".into(), "passive".into())
    );
}

fn server_closes_first() {
    exchange(
        "scf",
        "close-first",
        "wait-eof",
        &[
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE",
        ],
        &["ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2", HANDOVER],
        ("peer", "local"),
    );
}

fn simultaneous_close() {
    // The FINs cross only if each arrives while the other side's own FIN is
    // unacknowledged: both peers close at one CLOCK_MONOTONIC deadline,
    // busy-waiting for it on the two CPUs. That crosses often but not every
    // time on a veth pair, so up to 40 connections run under one tracer; each
    // must get verdicts consistent with what the kernel reported, and at least
    // one must cross on both ends.
    const ATTEMPTS: u16 = 40;
    let net = Net::new("sim");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns]);
    let mut pids = Vec::new();
    for attempt in 0..ATTEMPTS {
        let addr = format!("{SERVER_IP}:{}", 9000 + attempt);
        let mut server = Peer::spawn(&net.server, "tt-server", "server", "close-at", &addr);
        server.expect("ready");
        let mut client = Peer::spawn(&net.client, "tt-client", "client", "close-at", &addr);
        client.expect("connected");
        server.expect("connected");
        let deadline = monotonic_ns() + 50_000_000;
        client.tell(&format!("go {deadline}"));
        server.tell(&format!("go {deadline}"));
        client.wait();
        server.wait();
        pids.push((client.pid(), server.pid()));
    }
    thread::sleep(Duration::from_millis(300));
    let finished = tracer.stop_lossless();
    let (transitions, closed) = (finished.records("transition"), finished.records("closed"));
    let client = side(&transitions, &closed, net.client_ino);
    let server = side(&transitions, &closed, net.server_ino);
    let crossing = seq(
        &["ESTABLISHED->FIN_WAIT1"],
        &["FIN_WAIT1->CLOSING", "CLOSING->TIME_WAIT"],
    );
    let mut crossed = 0;
    for (attempt, (client_pid, server_pid)) in (0..ATTEMPTS).zip(pids) {
        let port = 9000 + attempt;
        let to_server = |r: &Value| r["rport"] == port && r["raddr"] == SERVER_IP;
        let at_server = |r: &Value| r["lport"] == port && r["raddr"] == CLIENT_IP;
        let (cs, ss) = (client.sequence(to_server), server.sequence(at_server));
        let (cv, sv) = (client.verdicts(to_server), server.verdicts(at_server));
        assert_eq!(
            (cv.len(), sv.len()),
            (1, 1),
            "one verdict per end: {cv:?} {sv:?}"
        );
        // Each verdict follows from what the kernel reported for that end.
        for (s, v) in [(&cs, &cv[0]), (&ss, &sv[0])] {
            let has = |t: &str| s.iter().any(|x| x == t);
            let expected = if has("FIN_WAIT1->CLOSING") {
                "simultaneous"
            } else if has("ESTABLISHED->FIN_WAIT1") {
                "local"
            } else if has("ESTABLISHED->CLOSE_WAIT") {
                "peer"
            } else {
                panic!("no FIN in {s:?}")
            };
            assert_eq!(v, expected, "{s:?}");
        }
        assert!(
            !(cv[0] == "peer" && sv[0] == "peer"),
            "both ends cannot have received the first FIN"
        );
        for r in client.transitions.iter().filter(|r| to_server(r)) {
            assert_eq!(
                (
                    r["pid"].as_u64().unwrap() as u32,
                    r["comm"].as_str().unwrap()
                ),
                (client_pid, "tt-client")
            );
        }
        for r in server.transitions.iter().filter(|r| at_server(r)) {
            assert_eq!(
                (
                    r["pid"].as_u64().unwrap() as u32,
                    r["comm"].as_str().unwrap()
                ),
                (server_pid, "tt-server")
            );
        }
        if cs.ends_with(&crossing) && ss.ends_with(&crossing) {
            crossed += 1;
        }
    }
    eprintln!("    (FINs crossed on both ends in {crossed} of {ATTEMPTS} connections)");
    assert!(crossed > 0, "the FINs never crossed on both ends");
}

/// Waits for "go DEADLINE" on stdin, then spins until CLOCK_MONOTONIC reaches it.
fn close_at_deadline() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let deadline: u64 = line.trim().strip_prefix("go ").unwrap().parse().unwrap();
    while monotonic_ns() < deadline {
        std::hint::spin_loop();
    }
}

fn linger_zero_abort() {
    exchange(
        "lz",
        "eof-then-close",
        "linger0",
        &["ESTABLISHED->CLOSE"],
        &["ESTABLISHED->CLOSE"],
        ("abort-sent", "abort-received"),
    );
}

fn abort_received() {
    // The server closes with the client's data unread: its kernel resets.
    exchange(
        "ar",
        "abort-unread",
        "send-then-wait-eof",
        &["ESTABLISHED->CLOSE"],
        &["ESTABLISHED->CLOSE"],
        ("abort-received", "abort-sent"),
    );
}

/// The client's side of a connect that never completed: two transitions, the
/// verdict given, owned by the client.
fn failed_connect<'a>(run: &'a Run, net: &Net, verdict: &str) -> Side<'a> {
    let client = side(&run.transitions, &run.closed, net.client_ino);
    assert_eq!(
        client.sequence(client_conn),
        ["CLOSE->SYN_SENT", "SYN_SENT->CLOSE"]
    );
    assert_eq!(client.verdict(), verdict);
    client.owned_by(run.client_pid, "tt-client");
    client
}

fn connection_refused() {
    let net = Net::new("ref");
    let run = trace(
        &net,
        None,
        "expect-failure",
        &format!("{SERVER_IP}:{PORT}"),
        |_, client| {
            assert_eq!(client.expect("Err"), "Err(ConnectionRefused)");
            client.wait();
        },
    );
    failed_connect(&run, &net, "refused");
    assert!(
        side(&run.transitions, &run.closed, net.server_ino)
            .transitions
            .is_empty()
    );
}

fn connect_timeout() {
    let net = Net::new("cto");
    net.nft(&net.server, "table inet tt {\n chain in {\n type filter hook input priority 0;\n tcp dport 8080 drop\n }\n}\n");
    let run = trace(
        &net,
        Some("eof-then-close"),
        "syn-once",
        &format!("{SERVER_IP}:{PORT}"),
        |_, client| {
            let started = Instant::now();
            assert_eq!(client.expect("Err"), "Err(TimedOut)");
            assert!(
                started.elapsed() >= Duration::from_secs(2),
                "timed out too early"
            );
            client.wait();
        },
    );
    let client = failed_connect(&run, &net, "connect-failed");
    let syn_sent_ns = client
        .transitions
        .iter()
        .find(|r| r["old"] == "SYN_SENT")
        .unwrap()["dur_ns"]
        .as_u64()
        .unwrap();
    assert!(
        syn_sent_ns >= 2_000_000_000,
        "SYN_SENT lasted {syn_sent_ns} ns"
    );
    // The server never saw the SYN.
    let server = side(&run.transitions, &run.closed, net.server_ino);
    assert!(
        server.transitions.iter().all(|r| r["new"] == "LISTEN"),
        "{:#?}",
        server.transitions
    );
}

fn server_never_closes() {
    let net = Net::new("nc");
    let mut server_pid = 0;
    let run = trace(
        &net,
        Some("never-close"),
        "close-first",
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            client.wait();
            let server = server.as_mut().unwrap();
            server.expect("eof");
            server_pid = server.pid();
            thread::sleep(Duration::from_millis(500));
        },
    );
    let client = side(&run.transitions, &run.closed, net.client_ino);
    let server = side(&run.transitions, &run.closed, net.server_ino);
    assert_eq!(
        server.sequence(server_conn),
        seq(&SERVER_OPEN, &["ESTABLISHED->CLOSE_WAIT"])
    );
    // The client's socket, orphaned in FIN_WAIT2, is handed at once to a
    // timewait socket with the FIN_WAIT2 substate (the full socket's CLOSE),
    // not to TIME_WAIT.
    assert_eq!(
        client.sequence(client_conn),
        seq(
            &CLIENT_OPEN,
            &[
                "ESTABLISHED->FIN_WAIT1",
                "FIN_WAIT1->FIN_WAIT2",
                "FIN_WAIT2->FIN_WAIT2"
            ]
        )
    );
    let handed = client.transitions.last().unwrap();
    assert_eq!(handed["timewait"]["event"], "begins", "{handed}");
    let now = &run.summary["timewait"]["now"];
    assert!(
        now.as_array()
            .unwrap()
            .iter()
            .any(|n| n["netns"] == net.client_ino && n["fin_wait2"] == 1 && n["time_wait"] == 0),
        "{now}"
    );
    assert_eq!(client.verdict(), "local");
    assert!(server.closed.is_empty(), "the server's end has not ended");
    server.owned_by(server_pid, "tt-server");
    client.owned_by(run.client_pid, "tt-client");
    // The summary shows the connection stuck in CLOSE_WAIT, with its age and owner.
    let open = run.summary["open"].as_array().unwrap();
    let close_wait = open
        .iter()
        .find(|o| o["state"] == "CLOSE_WAIT")
        .expect("CLOSE_WAIT in the summary");
    assert_eq!(close_wait["count"], 1);
    let oldest = &close_wait["oldest"];
    assert!(
        oldest["age_ns"].as_u64().unwrap() >= 500_000_000,
        "{oldest}"
    );
    assert_eq!(
        (
            oldest["pid"].as_u64().unwrap() as u32,
            oldest["comm"].as_str().unwrap()
        ),
        (server_pid, "tt-server")
    );
    assert_eq!(oldest["lport"], PORT);
}

// ------------------------------------------------------------- TIME_WAIT --

/// The transitions of timewait sockets: `event` "begins", "changes" or "ends".
fn tw<'a>(side: &Side<'a>, event: &str, connection: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
    side.transitions
        .iter()
        .copied()
        .filter(|r| r["timewait"]["event"] == event && connection(r))
        .collect()
}

fn only(records: Vec<&Value>) -> &Value {
    assert_eq!(records.len(), 1, "{records:#?}");
    records[0]
}

/// Waits until tcptrace has printed a line containing `needle`.
fn wait_for_output(tracer: &Tracer, needle: &str, timeout: Duration) {
    let started = Instant::now();
    while !tracer.stdout_so_far().iter().any(|l| l.contains(needle)) {
        assert!(
            started.elapsed() < timeout,
            "no {needle:?} after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one connection to completion where the client closes first and
/// keeps its socket until the server's FIN: the client's end goes to
/// TIME_WAIT. Returns the client's pid.
fn client_closes_into_time_wait(net: &Net) -> u32 {
    let mut server = Peer::spawn(
        &net.server,
        "tt-server",
        "server",
        "eof-then-close",
        &format!("{SERVER_IP}:{PORT}"),
    );
    server.expect("ready");
    let mut client = Peer::spawn(
        &net.client,
        "tt-client",
        "client",
        "shutdown-wait-eof",
        &format!("{SERVER_IP}:{PORT}"),
    );
    client.wait();
    server.wait();
    client.pid()
}

/// A client-side TIME_WAIT that runs out: measured against its timer's
/// length, within the timer wheel's slack. Takes about a minute, so it runs
/// alongside the other scenarios.
fn timewait_expires() {
    let net = Net::new("twx");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns]);
    let client_pid = client_closes_into_time_wait(&net);
    wait_for_output(&tracer, r#""reason":"expired""#, Duration::from_secs(90));
    thread::sleep(Duration::from_millis(300));
    let finished = tracer.stop_lossless();
    let (transitions, closed) = (finished.records("transition"), finished.records("closed"));
    let client = side(&transitions, &closed, net.client_ino);
    assert_eq!(
        client.sequence(client_conn),
        seq(
            &CLIENT_OPEN,
            &[
                "ESTABLISHED->FIN_WAIT1",
                "FIN_WAIT1->FIN_WAIT2",
                "FIN_WAIT2->TIME_WAIT",
                "TIME_WAIT->CLOSE"
            ]
        )
    );
    client.owned_by(client_pid, "tt-client");
    let timer_ns = only(tw(&client, "begins", client_conn))["timewait"]["timer_ns"]
        .as_u64()
        .expect("the timer's length (the kernel's HZ is known here)");
    assert_eq!(timer_ns, 60_000_000_000, "Linux's TIME_WAIT is 60 s");
    let end = only(tw(&client, "ends", client_conn));
    assert_eq!(end["timewait"]["reason"], "expired");
    assert_eq!(end["timewait"]["rearms"], 0);
    let lasted = end["dur_ns"].as_u64().unwrap();
    // The timer wheel fires a 60 s timer late by up to its level's
    // granularity (an eighth of the timeout at most).
    assert!(
        lasted >= timer_ns && lasted <= timer_ns + timer_ns / 8,
        "TIME_WAIT lasted {lasted} ns for a {timer_ns} ns timer"
    );
    eprintln!("    (TIME_WAIT lasted {:.3} s)", lasted as f64 / 1e9);
    // The connection's record comes now, TIME_WAIT included.
    let record = &client.closed;
    assert_eq!(record.len(), 1, "{record:#?}");
    assert_eq!(record[0]["verdict"], "local");
    assert_eq!(record[0]["timewait"]["reason"], "expired");
    let states = record[0]["states"].as_array().unwrap();
    let in_tw = states.iter().find(|s| s["state"] == "TIME_WAIT").unwrap();
    assert_eq!(in_tw["ns"].as_u64().unwrap(), lasted);
    let summary = finished.records("summary").pop().unwrap();
    let t = &summary["timewait"];
    assert_eq!(t["timer_ns"], timer_ns);
    assert_eq!(t["ended"]["expired"], 1);
    assert_eq!(t["expired"]["count"], 1);
    assert_eq!(t["expired"]["max_ns"], lasted);
    // The server's end, which closed second, has no timewait socket.
    let server = side(&transitions, &closed, net.server_ino);
    assert!(server.transitions.iter().all(|r| r["timewait"].is_null()));
}

/// tcp_tw_reuse: a second connect() from the only ephemeral port takes the
/// first connection's 4-tuple over from its timewait socket.
fn timewait_reused() {
    let net = Net::new("twr");
    net.sysctl(&net.client, "net.ipv4.ip_local_port_range", "40000 40000");
    net.sysctl(&net.client, "net.ipv4.tcp_tw_reuse", "1");
    let run = trace(
        &net,
        Some("eof-then-close-twice"),
        "twice",
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            assert_eq!(client.expect("port"), "port 40000");
            assert_eq!(client.expect("port"), "port 40000");
            client.wait();
            server.as_mut().unwrap().wait();
        },
    );
    let client = side(&run.transitions, &run.closed, net.client_ino);
    assert_eq!(tw(&client, "begins", client_conn).len(), 2);
    let end = only(tw(&client, "ends", client_conn));
    assert_eq!(end["timewait"]["reason"], "reused", "{end}");
    // Ended in the second connect(), which names its process.
    assert_eq!(end["timewait"]["by_pid"], run.client_pid);
    assert_eq!(end["timewait"]["by_comm"], "tt-client");
    assert_eq!(
        (end["old"].as_str(), end["new"].as_str()),
        (Some("TIME_WAIT"), Some("CLOSE"))
    );
    assert!(end["dur_ns"].as_u64().unwrap() >= 2_000_000_000, "{end}");
    // Both connections' records: the first with its reused timewait socket,
    // the second still in TIME_WAIT when tcptrace stopped.
    let reasons: Vec<&Value> = client
        .closed
        .iter()
        .map(|c| &c["timewait"]["reason"])
        .collect();
    assert_eq!(
        reasons,
        [&Value::from("reused"), &Value::Null],
        "{:#?}",
        client.closed
    );
    assert_eq!(run.summary["timewait"]["ended"]["reused"], 1);
}

/// A new SYN for the 4-tuple of a server-side timewait socket, accepted by
/// the listener.
fn timewait_reopened() {
    let net = Net::new("two");
    let run = trace_to_end(&net, "close-first-then-eof", "reconnect");
    let server = side(&run.transitions, &run.closed, net.server_ino);
    let end = only(tw(&server, "ends", server_conn));
    assert_eq!(end["timewait"]["reason"], "reopened", "{end}");
    // The same 4-tuple is accepted again right after.
    let order = server.sequence(server_conn);
    let at = order
        .iter()
        .position(|t| {
            t.ends_with("->CLOSE") && t.starts_with("TIME_WAIT") || t == "FIN_WAIT2->CLOSE"
        })
        .unwrap();
    assert_eq!(
        order[at + 1..at + 3],
        SERVER_OPEN.map(String::from),
        "{order:?}"
    );
    assert_eq!(run.summary["timewait"]["ended"]["reopened"], 1);
}

/// An in-window RST kills a client-side timewait socket (tcp_rfc1337=0):
/// the server connects back from its port, the timewait socket answers the
/// SYN with an ACK, and the server's kernel resets it.
fn timewait_killed() {
    let net = Net::new("twk");
    net.sysctl(&net.client, "net.ipv4.tcp_rfc1337", "0");
    let run = trace(
        &net,
        Some("connect-back"),
        "shutdown-wait-eof",
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            client.wait();
            let server = server.as_mut().unwrap();
            server.expect("");
            server.wait();
        },
    );
    let client = side(&run.transitions, &run.closed, net.client_ino);
    assert_eq!(only(tw(&client, "begins", client_conn))["new"], "TIME_WAIT");
    let end = only(tw(&client, "ends", client_conn));
    assert_eq!(end["timewait"]["reason"], "killed", "{end}");
    assert!(
        end["timewait"]["by_pid"].is_null(),
        "ended in a softirq: {end}"
    );
    assert_eq!(client.closed[0]["timewait"]["reason"], "killed");
}

/// A re-armed timer: the client's last ACK is dropped, so the server
/// retransmits its FIN and each one re-arms TIME_WAIT; then the client's
/// namespace is deleted, which purges the timewait socket.
fn timewait_rearmed_then_purged() {
    let net = Net::new("twp");
    let run = trace(
        &net,
        Some("close-on-go"),
        "shutdown-wait-eof",
        &format!("{SERVER_IP}:{PORT}"),
        |server, client| {
            let server = server.as_mut().unwrap();
            server.expect("eof");
            net.nft(&net.client, "table inet tt {\n chain out {\n type filter hook output priority 0;\n tcp dport 8080 drop\n }\n}\n");
            server.tell("go");
            client.wait();
            // FIN retransmissions at about 0.2, 0.6, 1.4, 3.0 and 6.2 s: those
            // past the first timer-wheel bucket (~2 s) re-arm visibly.
            thread::sleep(Duration::from_secs(7));
            net.remove_client();
            thread::sleep(Duration::from_secs(2));
        },
    );
    let client = side(&run.transitions, &run.closed, net.client_ino);
    let end = only(tw(&client, "ends", client_conn));
    assert_eq!(end["timewait"]["reason"], "purged", "{end}");
    let rearms = end["timewait"]["rearms"].as_u64().unwrap();
    assert!(rearms >= 1, "{end}");
    eprintln!("    (timer re-armed {rearms} times)");
    assert_eq!(client.closed[0]["timewait"]["reason"], "purged");
    assert_eq!(client.closed[0]["timewait"]["rearms"], rearms);
    assert_eq!(run.summary["timewait"]["ended"]["purged"], 1);
    assert_eq!(run.summary["timewait"]["rearms"], rearms);
}

/// Timewait sockets that exist before tcptrace starts are counted at once
/// and end correctly.
fn timewait_before_start() {
    let net = Net::new("tws");
    client_closes_into_time_wait(&net);
    // A process in the client's namespace, so that tcptrace can read it.
    let mut holder = Peer::spawn(
        &net.client,
        "tt-holder",
        "server",
        "eof-then-close",
        &format!("{CLIENT_IP}:9999"),
    );
    holder.expect("ready");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns, "-i", "1"]);
    let stderr = tracer.stderr_so_far().join("\n");
    assert!(
        stderr.contains(&format!("netns {}: 1", net.client_ino)),
        "{stderr}"
    );
    wait_for_output(&tracer, r#""type":"summary""#, Duration::from_secs(5));
    drop(holder);
    net.remove_client();
    thread::sleep(Duration::from_secs(2));
    let finished = tracer.stop_lossless();
    let summaries = finished.records("summary");
    let count_in = |s: &Value| {
        s["timewait"]["now"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["netns"] == net.client_ino)
            .map_or(0, |n| n["time_wait"].as_u64().unwrap())
    };
    assert_eq!(count_in(&summaries[0]), 1, "{}", summaries[0]);
    assert_eq!(count_in(summaries.last().unwrap()), 0);
    let transitions = finished.records("transition");
    let client = side(&transitions, &[], net.client_ino);
    let end = only(tw(&client, "ends", client_conn));
    assert_eq!(end["timewait"]["reason"], "purged");
    assert_eq!(
        (end["old"].as_str(), end["dur"].as_str()),
        (Some("TIME_WAIT"), Some("unknown"))
    );
}

/// With tcp_max_tw_buckets reached, connections get no timewait socket:
/// tcptrace says so, live and in the summary.
fn timewait_overflow() {
    let net = Net::new("twf");
    net.sysctl(&net.client, "net.ipv4.tcp_max_tw_buckets", "0");
    let run = trace_to_end(&net, "eof-then-close", "shutdown-wait-eof+linger");
    let client = side(&run.transitions, &run.closed, net.client_ino);
    assert_eq!(
        client.sequence(client_conn),
        seq(
            &CLIENT_OPEN,
            &[
                "ESTABLISHED->FIN_WAIT1",
                "FIN_WAIT1->FIN_WAIT2",
                "FIN_WAIT2->CLOSE"
            ]
        )
    );
    let overflows = &run.summary["timewait"]["overflows"];
    assert!(
        overflows
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["netns"] == net.client_ino && o["count"] == 1),
        "{overflows}"
    );
    assert!(
        run.stderr.iter().any(|l| l.contains(&format!(
            "netns {}: 1 connections closed without a timewait socket",
            net.client_ino
        ))),
        "{:#?}",
        run.stderr
    );
    // Said as a finding, with the myth next to it.
    let finding = finding(&run.summary, "timewait-overflow");
    assert_eq!(finding["severity"], "warning");
    assert_eq!(
        (finding["netns"].as_u64(), finding["overflows"].as_u64()),
        (Some(net.client_ino), Some(1))
    );
    assert!(
        finding["myths"][0]
            .as_str()
            .unwrap()
            .contains("Lowering tcp_max_tw_buckets is not a fix")
    );
}

/// The finding of `kind` in a JSON summary.
fn finding<'a>(summary: &'a Value, kind: &str) -> &'a Value {
    summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} finding in {}", summary["findings"]))
}

// ---------------------------------------------------------------- harness --

fn main() {
    common::run_peer_if_asked(peer);
    let args: Vec<String> = std::env::args().collect();
    let filter: Option<&String> = args.iter().skip(1).find(|a| !a.starts_with('-'));
    // The natural expiry takes a minute: it runs alongside the others, in
    // its own namespaces under its own tracer.
    let expiry = (filter.is_none_or(|f| "timewait_expires".contains(f.as_str())))
        .then(|| thread::spawn(|| panic::catch_unwind(timewait_expires).is_ok()));
    let scenarios: [(&str, fn()); 14] = [
        ("client_closes_first", client_closes_first),
        ("server_closes_first", server_closes_first),
        ("simultaneous_close", simultaneous_close),
        ("linger_zero_abort", linger_zero_abort),
        ("abort_received", abort_received),
        ("connection_refused", connection_refused),
        ("connect_timeout", connect_timeout),
        ("server_never_closes", server_never_closes),
        ("timewait_reused", timewait_reused),
        ("timewait_reopened", timewait_reopened),
        ("timewait_killed", timewait_killed),
        ("timewait_rearmed_then_purged", timewait_rearmed_then_purged),
        ("timewait_before_start", timewait_before_start),
        ("timewait_overflow", timewait_overflow),
    ];
    let started = Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, Vec::new(), 0);
    println!("\nrunning {} tests", scenarios.len() + 1);
    for (name, scenario) in scenarios {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        match panic::catch_unwind(scenario) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    if let Some(expiry) = expiry {
        let name = "timewait_expires";
        if expiry.join().unwrap_or(false) {
            println!("test {name} ... ok");
            passed += 1;
        } else {
            println!("test {name} ... FAILED");
            failed.push(name);
        }
    } else {
        filtered += 1;
    }
    let result = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {result}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
