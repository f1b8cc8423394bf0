//! Findings scenarios: one per finding that real traffic can produce in a
//! few seconds (the CLOSE_WAIT leak takes half a minute: it runs alongside
//! the others), each in its own pair of namespaces under its own tracer,
//! each checking the finding's kind, severity, the process and endpoint it
//! names and its numbers against what the scenario did. A healthy host —
//! servers that close first, clients that reuse nothing — says nothing
//! above info. The binary is its own peer (see `common::net`).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    panic, thread,
    time::Duration,
};

use common::{
    Tracer,
    net::{Net, Peer, SERVER_IP},
    peer::{PORT, linger_zero, read_to_eof, say},
};
use serde_json::Value;

// ---------------------------------------------------------------- peers --

/// Servers: `eof-then-close` (the client closes first), `close-first`,
/// `close-unread` (closes before reading the request), `never-close`
/// (keeps every connection after its peer's FIN).
fn server(mode: &str, addr: SocketAddr) -> ! {
    // `never-accept:BACKLOG`: listens with that backlog and accepts nothing.
    if let Some(backlog) = mode.strip_prefix("never-accept:") {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(backlog.parse().unwrap()).unwrap();
        say("ready");
        thread::sleep(Duration::from_secs(60));
        std::process::exit(0)
    }
    let listener = TcpListener::bind(addr).unwrap();
    say("ready");
    let mut kept = Vec::new();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        match mode {
            "close-first" => {
                let _ = conn.write_all(b"bye");
            }
            // Closes with the client's request unread: a RST.
            "close-unread" => thread::sleep(Duration::from_millis(20)),
            "never-close" => {
                read_to_eof(&mut conn);
                kept.push(conn);
            }
            _ => {
                thread::spawn(move || read_to_eof(&mut conn));
            }
        }
    }
    std::process::exit(0)
}

/// Clients, `MODE:N` for N connections: `linger0` (reset by this side),
/// `wait-eof` (the server closes first), `close-first`, `refused`,
/// `request` (sends a request, reads to the end or the reset),
/// `keepalive` (N connections kept open with 1 s keepalives, until told).
fn client(mode: &str, addr: SocketAddr) -> ! {
    let (mode, n) = mode.split_once(':').unwrap();
    let n: u32 = n.parse().unwrap();
    if mode == "keepalive" {
        let probes = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1))
            .with_retries(2);
        let kept: Vec<TcpStream> = (0..n)
            .map(|_| {
                let conn = TcpStream::connect(addr).unwrap();
                socket2::SockRef::from(&conn)
                    .set_tcp_keepalive(&probes)
                    .unwrap();
                conn
            })
            .collect();
        say("connected");
        // Until the probes have given up (told when to look).
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(kept);
        std::process::exit(0)
    }
    // `stream:N`: N connections sending 1000 bytes each every 100 ms for
    // 4 s, then closed.
    if mode == "stream" {
        let mut conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        say("connected");
        for _ in 0..40 {
            for conn in &mut conns {
                conn.write_all(&[b'x'; 1000]).unwrap();
            }
            thread::sleep(Duration::from_millis(100));
        }
        drop(conns);
        say("done");
        thread::sleep(Duration::from_millis(1500));
        std::process::exit(0)
    }
    // `flood:N`: N connects at once, left pending.
    if mode == "flood" {
        let kept: Vec<socket2::Socket> = (0..n)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        thread::sleep(Duration::from_secs(2));
        say("done");
        thread::sleep(Duration::from_secs(3));
        drop(kept);
        std::process::exit(0)
    }
    for _ in 0..n {
        match mode {
            "refused" => {
                let err = TcpStream::connect(addr).unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            _ => {
                let mut conn = TcpStream::connect(addr).unwrap();
                match mode {
                    "linger0" => {
                        conn.write_all(b"hi").unwrap();
                        thread::sleep(Duration::from_millis(5));
                        linger_zero(&conn);
                    }
                    // Nothing sent: data reaching a server that has closed
                    // would be answered with a RST, not TIME_WAIT.
                    "wait-eof" => read_to_eof(&mut conn),
                    "close-first" => conn.write_all(b"hi").unwrap(),
                    "request" => {
                        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                        let mut buf = [0u8; 64];
                        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
                    }
                    other => panic!("client mode {other}"),
                }
            }
        }
    }
    say("done");
    // Stay in the namespace a moment: tcptrace reads its counters through us.
    thread::sleep(Duration::from_millis(1500));
    std::process::exit(0)
}

fn peer(args: &[String]) -> ! {
    let (role, mode, addr) = common::net::become_peer(args);
    match role {
        "server" => server(mode, addr),
        "client" => client(mode, addr),
        other => panic!("role {other}"),
    }
}

// ------------------------------------------------------------ scenarios --

/// A scenario's outcome: tcptrace's last summary, the peers' pids.
struct Run {
    summary: Value,
    client_pid: u32,
    server_pid: u32,
    net: Net,
}

/// Traces a server (if `server_mode`) and a client; `hold`: how long to
/// keep tracing after the client is done.
fn traced(tag: &str, server_mode: Option<&str>, client_mode: &str, hold: Duration) -> Run {
    traced_with(tag, &[], None, server_mode, client_mode, hold)
}

/// `traced` with sysctls set first, (`"server"` or `"client"`, name, value),
/// and an nftables script in the server's namespace.
fn traced_with(
    tag: &str,
    sysctls: &[(&str, &str, &str)],
    server_nft: Option<&str>,
    server_mode: Option<&str>,
    client_mode: &str,
    hold: Duration,
) -> Run {
    let net = Net::new(tag);
    for (side, name, value) in sysctls {
        let ns = if *side == "server" {
            &net.server
        } else {
            &net.client
        };
        net.sysctl(ns, name, value);
    }
    if let Some(script) = server_nft {
        net.nft(&net.server, script);
    }
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--summary", "--netns", &netns]);
    let addr = format!("{SERVER_IP}:{PORT}");
    let server = server_mode.map(|mode| {
        let mut s = Peer::spawn(&net.server, "tt-server", "server", mode, &addr);
        s.expect("ready");
        s
    });
    let mut client = Peer::spawn(&net.client, "tt-client", "client", client_mode, &addr);
    client.expect("done");
    thread::sleep(hold);
    let (client_pid, server_pid) = (client.pid(), server.as_ref().map_or(0, Peer::pid));
    let finished = tracer.stop_lossless();
    drop(server);
    let summaries = finished.records("summary");
    Run {
        summary: summaries.last().expect("an exit summary").clone(),
        client_pid,
        server_pid,
        net,
    }
}

impl Run {
    fn findings(&self) -> Vec<&Value> {
        self.summary["findings"]
            .as_array()
            .unwrap()
            .iter()
            .collect()
    }

    fn finding(&self, kind: &str) -> &Value {
        self.findings()
            .into_iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding in {:#?}", self.findings()))
    }

    /// Findings at warning level or worse, but for `except`.
    fn warnings_but(&self, except: &[&str]) -> Vec<&Value> {
        self.findings()
            .into_iter()
            .filter(|f| f["severity"] != "info" && !except.contains(&f["kind"].as_str().unwrap()))
            .collect()
    }
}

/// A client that closes with SO_LINGER 0, 30 times: it resets; the server
/// is reset.
fn abort_storm() {
    let run = traced(
        "fab",
        Some("eof-then-close"),
        "linger0:30",
        Duration::from_millis(300),
    );
    let sent = run.finding("abort-sent");
    assert_eq!(
        sent["counterparts"][0],
        format!("{SERVER_IP}:{PORT} (30)"),
        "{sent}"
    );
    assert_eq!(sent["severity"], "warning");
    assert_eq!(
        (sent["pid"].as_u64(), sent["comm"].as_str()),
        (Some(run.client_pid as u64), Some("tt-client"))
    );
    assert_eq!(sent["count"], 30);
    // The kernel's own reason: close() with SO_LINGER 0 resets from
    // tcp_disconnect, TCP_STATE (TCP_ABORT_ON_LINGER is a negative
    // TCP_LINGER2's).
    assert_eq!(sent["reasons"]["TCP_STATE"], 30, "{sent}");
    assert!(
        sent["headline"]
            .as_str()
            .unwrap()
            .ends_with(": an abortive close, SO_LINGER 0 (TCP_STATE, 100 %)"),
        "{sent}"
    );
    assert!(
        sent["myths"][0]
            .as_str()
            .unwrap()
            .contains("SO_LINGER 0 is not a TIME_WAIT cure")
    );
    let received = run.finding("abort-received");
    assert_eq!(
        (received["comm"].as_str(), received["count"].as_u64()),
        (Some("tt-server"), Some(30))
    );
    assert_eq!(received["pid"], run.server_pid);
    assert!(
        run.warnings_but(&["abort-sent", "abort-received"])
            .is_empty(),
        "{:#?}",
        run.findings()
    );
}

/// A server that closes before reading the requests, 25 times: the kernel
/// resets each, TCP_ABORT_ON_CLOSE, and the finding says so.
fn close_with_unread_data() {
    let run = traced(
        "fcu",
        Some("close-unread"),
        "request:25",
        Duration::from_millis(300),
    );
    let sent = run.finding("abort-sent");
    assert_eq!(sent["comm"], "tt-server", "{sent}");
    assert_eq!(sent["reasons"]["TCP_ABORT_ON_CLOSE"], 25, "{sent}");
    assert!(
        sent["headline"]
            .as_str()
            .unwrap()
            .ends_with(": closed with unread data (TCP_ABORT_ON_CLOSE, 100 %)"),
        "{sent}"
    );
}

/// 20 connections with 1 s keepalives, then every packet from the client
/// dropped (nftables): the probes go unanswered and the kernel resets
/// each, TCP_KEEPALIVE_TIMEOUT, in its closed record and in the finding.
fn keepalive_gives_up() {
    let net = Net::new("fka");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns]);
    let addr = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-server", "server", "eof-then-close", &addr);
    server.expect("ready");
    let mut client = Peer::spawn(&net.client, "tt-client", "client", "keepalive:20", &addr);
    client.expect("connected");
    net.nft(
        &net.server,
        "table inet tt {\n chain in {\n type filter hook input priority 0;\n tcp dport 8080 drop\n }\n}\n",
    );
    // Idle 1 s, two probes 1 s apart, then the reset: 3 s; 6 to be sure.
    thread::sleep(Duration::from_secs(6));
    client.tell("exit");
    let finished = tracer.stop_lossless();
    let closed: Vec<Value> = finished
        .records("closed")
        .into_iter()
        .filter(|c| c["comm"] == "tt-client")
        .collect();
    assert_eq!(closed.len(), 20, "{closed:#?}");
    for c in &closed {
        assert_eq!(c["reset_reason"], "TCP_KEEPALIVE_TIMEOUT", "{c}");
    }
    let summary = finished.records("summary").pop().unwrap();
    let sent = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "abort-sent")
        .unwrap_or_else(|| panic!("{:#?}", summary["findings"]));
    assert!(
        sent["headline"]
            .as_str()
            .unwrap()
            .contains("keepalive timeouts (TCP_KEEPALIVE_TIMEOUT, 100 %)"),
        "{sent}"
    );
    drop(server);
}

/// Every SYN toward the server dropped (nftables) for half a second while
/// 12 clients connect at once: each SYN is sent again 1 s later, gets
/// through, and each connect took a second. The finding names the
/// destination, and SYN_SENT's time shows the second.
fn syns_dropped() {
    let net = Net::new("fsd");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--summary", "--netns", &netns]);
    let addr = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-server", "server", "eof-then-close", &addr);
    server.expect("ready");
    net.nft(
        &net.server,
        "table inet tt {\n chain in {\n type filter hook input priority 0;\n \
         tcp dport 8080 tcp flags & (syn | ack) == syn drop\n }\n}\n",
    );
    let mut client = Peer::spawn(&net.client, "tt-client", "client", "flood:12", &addr);
    thread::sleep(Duration::from_millis(500));
    net.nft(&net.server, "delete table inet tt\n");
    client.expect("done");
    // The client closes its connections 3 s after "done": their records.
    thread::sleep(Duration::from_secs(4));
    let finished = tracer.stop_lossless();
    let summary = finished.records("summary").pop().unwrap();
    let stalled = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "syn-retransmits")
        .unwrap_or_else(|| panic!("{:#?}", summary["findings"]));
    assert_eq!(stalled["severity"], "warning", "{stalled}");
    assert_eq!(
        (
            stalled["connects"].as_u64(),
            stalled["syn_retried"].as_u64()
        ),
        (Some(12), Some(12)),
        "{stalled}"
    );
    assert_eq!(stalled["syn_retransmits"], 12, "{stalled}");
    let headline = stalled["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("connects from tt-client[")
            && headline.contains(&format!("to {SERVER_IP}:{PORT} stall: 12 of 12 (100 %)")),
        "{headline}"
    );
    let syn_sent = summary["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "SYN_SENT")
        .unwrap();
    assert!(
        syn_sent["p50_ns"].as_u64().unwrap() >= 900_000_000,
        "{syn_sent}"
    );
    // Per destination, each connect in the bucket of one retransmit (0.5
    // to 1.5 s), named in the finding.
    let dest = summary["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["raddr"] == SERVER_IP && d["rport"] == PORT)
        .unwrap();
    assert_eq!(dest["connect_seconds"]["bounds"][4], 1.5, "{dest}");
    assert_eq!(dest["connect_seconds"]["counts"][4], 12, "{dest}");
    assert_eq!(stalled["slow_connects"], 12, "{stalled}");
    drop(server);
}

/// Data toward the server dropped for 1.5 s while 12 connections send:
/// each retransmits (200 ms, then 400, 800...), counted in the kernel per
/// destination, and the destination stands out.
fn data_lost() {
    let net = Net::new("fdl");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--summary", "--netns", &netns]);
    let addr = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-server", "server", "eof-then-close", &addr);
    server.expect("ready");
    let mut client = Peer::spawn(&net.client, "tt-client", "client", "stream:12", &addr);
    client.expect("connected");
    thread::sleep(Duration::from_millis(300));
    // Segments with data (longer than a bare ACK) toward the server.
    net.nft(
        &net.server,
        "table inet tt {\n chain in {\n type filter hook input priority 0;\n \
         tcp dport 8080 meta length > 200 drop\n }\n}\n",
    );
    thread::sleep(Duration::from_millis(1500));
    net.nft(&net.server, "delete table inet tt\n");
    client.expect("done");
    thread::sleep(Duration::from_millis(1500));
    let finished = tracer.stop_lossless();
    drop(server);
    let summary = finished.records("summary").pop().unwrap();
    let dest = summary["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["raddr"] == SERVER_IP && d["rport"] == PORT)
        .unwrap_or_else(|| panic!("{:#?}", summary["ports"]));
    let n = dest["retransmits"].as_u64().unwrap();
    // At least one each, at 200 ms, 600 ms and 1.4 s after the first loss.
    eprintln!("{n} retransmits toward the server");
    assert!(n >= 24, "{dest}");
    assert_eq!(dest["connects"], 12, "{dest}");
    let lost = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "retransmits")
        .unwrap_or_else(|| panic!("{:#?}", summary["findings"]));
    assert_eq!(lost["severity"], "warning", "{lost}");
    assert_eq!(lost["retransmits"], n, "{lost}");
    let headline = lost["headline"].as_str().unwrap();
    assert!(
        headline.starts_with(&format!(
            "packets toward {SERVER_IP}:{PORT} are lost: {n} segments from tt-client["
        )),
        "{headline}"
    );
    // The connections' own connects were quick: no SYN was lost.
    let counts = &dest["connect_seconds"]["counts"];
    assert_eq!(
        counts.as_array().unwrap()[..4]
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        12,
        "{counts}"
    );
}

/// The clients' final ACKs dropped toward a server that accepts: its
/// SYN-ACKs are sent again (1 s, then 3 s), and the finding names its port.
fn synacks_unanswered() {
    let nft = "table inet tt {\n chain in {\n type filter hook input priority 0;\n tcp dport 8080 tcp flags & (syn | ack) == ack drop\n }\n}\n";
    let run = traced_with(
        "fsa",
        &[],
        Some(nft),
        Some("eof-then-close"),
        "flood:10",
        Duration::from_millis(1500),
    );
    let f = run.finding("synack-retransmits");
    assert_eq!(f["severity"], "warning", "{f}");
    assert_eq!(
        (f["netns"].as_u64(), f["lport"].as_u64()),
        (Some(run.net.server_ino), Some(u64::from(PORT))),
        "{f}"
    );
    assert!(f["synack_retransmits"].as_u64().unwrap() >= 10, "{f}");
}

/// Six connects to a port nobody listens on: the upstream refuses, and
/// its host's RSTs for no socket are counted on that port.
fn refused_upstream() {
    let run = traced("frf", None, "refused:6", Duration::from_millis(300));
    // Host-wide (a segment with no socket has no namespace known): at
    // least ours.
    let on_port = run.summary["resets_no_socket"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lport"] == PORT)
        .map_or(0, |r| r["count"].as_u64().unwrap());
    assert!(on_port >= 6, "{}", run.summary["resets_no_socket"]);
    let f = run.finding("upstream-refuses");
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        (f["raddr"].as_str(), f["rport"].as_u64()),
        (Some(SERVER_IP), Some(u64::from(PORT)))
    );
    assert_eq!(
        (f["failed"].as_u64(), f["connects"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(f["netns"], run.net.client_ino);
    assert!(f["headline"].as_str().unwrap().contains("tt-client"), "{f}");
}

/// A busy, healthy pair: 150 connections the server closes first. Its
/// TIME_WAIT is on its own port and harmless: info only, said so.
fn healthy_server_closes_first() {
    let run = traced(
        "fhs",
        Some("close-first"),
        "wait-eof:150",
        Duration::from_millis(300),
    );
    assert!(
        run.warnings_but(&[]).is_empty(),
        "false alarm: {:#?}",
        run.findings()
    );
    let f = run.finding("server-timewait");
    assert_eq!(f["severity"], "info");
    assert_eq!(
        (f["comm"].as_str(), f["timewait"].as_u64()),
        (Some("tt-server"), Some(150))
    );
    assert_eq!(f["netns"], run.net.server_ino);
    assert!(
        f["explanation"]
            .as_str()
            .unwrap()
            .contains("do not use ephemeral ports")
    );
}

/// A server that never closes after its peers' FINs: its CLOSE_WAIT ages
/// past 30 s.
fn close_wait_leak() {
    let run = traced(
        "fcw",
        Some("never-close"),
        "close-first:5",
        Duration::from_secs(32),
    );
    let f = run.finding("close-wait-leak");
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        (f["pid"].as_u64(), f["comm"].as_str()),
        (Some(run.server_pid as u64), Some("tt-server"))
    );
    assert_eq!(f["count"], 5);
    let age = f["oldest_age_s"].as_f64().unwrap();
    assert!((30.0..40.0).contains(&age), "oldest {age} s");
    assert_eq!(f["peers"][0]["count"], 5, "{f}");
    assert!(
        f["myths"][0]
            .as_str()
            .unwrap()
            .contains("No kernel setting fixes CLOSE_WAIT")
    );
}

/// A server that never accepts, whose backlog somaxconn caps at 4: twenty
/// clients overflow its accept queue; the listener is named, at its cap.
fn listen_overflow() {
    let run = traced_with(
        "flo",
        &[("server", "net.core.somaxconn", "4")],
        None,
        Some("never-accept:1024"),
        "flood:20",
        Duration::from_millis(2500),
    );
    let f = run.finding("listen-overflow");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["netns"], run.net.server_ino);
    assert!(f["listen_overflows"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["somaxconn"], 4);
    let listener = &f["listeners"][0];
    assert_eq!(listener["laddr"], format!("{SERVER_IP}:{PORT}"), "{f}");
    assert_eq!(listener["limit"], 4, "listen(1024) capped by somaxconn");
    assert!(listener["queued"].as_u64().unwrap() > 4, "{f}");
    assert_eq!(
        (listener["comm"].as_str(), listener["pid"].as_u64()),
        (Some("tt-server"), Some(run.server_pid as u64))
    );
    assert!(
        f["remedy"][0].as_str().unwrap().contains("somaxconn"),
        "the cap first: {f}"
    );
}

/// The clients' final ACKs dropped: half-open connections fill the SYN
/// queue (backlog 4) and the kernel answers with SYN cookies.
fn syn_queue() {
    let nft = "table inet tt {\n chain in {\n type filter hook input priority 0;\n tcp dport 8080 tcp flags & (syn | ack) == ack drop\n }\n}\n";
    let run = traced_with(
        "fsq",
        &[],
        Some(nft),
        Some("never-accept:4"),
        "flood:20",
        Duration::from_millis(1500),
    );
    let f = run.finding("syn-queue");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["netns"], run.net.server_ino);
    assert!(f["syncookies_sent"].as_u64().unwrap() > 0, "{f}");
}

fn main() {
    common::scenario_main(
        peer,
        &[
            ("close_wait_leak", close_wait_leak),
            ("abort_storm", abort_storm),
            ("refused_upstream", refused_upstream),
            ("close_with_unread_data", close_with_unread_data),
            ("keepalive_gives_up", keepalive_gives_up),
            ("syns_dropped", syns_dropped),
            ("data_lost", data_lost),
            ("synacks_unanswered", synacks_unanswered),
            ("healthy_server_closes_first", healthy_server_closes_first),
            ("listen_overflow", listen_overflow),
            ("syn_queue", syn_queue),
        ],
    )
}
