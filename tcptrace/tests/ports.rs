//! Port exhaustion scenarios: a small reverse proxy, written for these
//! tests, keeps one keep-alive connection toward its client and opens a new
//! upstream connection per request, which it closes first — the reverse
//! proxy of an outage that "looks like nothing". It runs in a namespace with
//! a narrowed `ip_local_port_range`; its upstream is across a veth pair (so
//! `tcp_tw_reuse=2` does not apply and TIME_WAIT holds each port ~60 s).
//! tcptrace traces both namespaces; each scenario checks what it says
//! against what the proxy saw and against `ss`.
//!
//! The scenarios run side by side, each in its own namespaces under its own
//! tracer: the longest takes ~45 s. The binary is its own peer (see
//! `common::net`). Needs root and `ip`.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    panic, thread,
    time::{Duration, Instant, SystemTime},
};

use common::{
    Tracer,
    net::{Net, Peer, SERVER_IP},
    peer::{PORT, monotonic_ns, say},
};
use serde_json::Value;

/// The proxy's ephemeral range: 300 ports.
const RANGE: &str = "40000 40299";
const CAPACITY: u64 = 300;
/// Requests per second: twice what 300 ports held 60 s sustain (5/s).
const RATE: u64 = 10;

// ---------------------------------------------------------------- peers --

/// The upstream: answers "ok" to every 2-byte request, closes after the
/// peer's FIN.
fn serve(addr: SocketAddr) -> ! {
    let listener = TcpListener::bind(addr).unwrap();
    say("ready");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        thread::spawn(move || {
            let mut buf = [0u8; 2];
            while conn.read_exact(&mut buf).is_ok() {
                if conn.write_all(b"ok").is_err() {
                    break;
                }
            }
        });
    }
    std::process::exit(0)
}

/// One request upstream; `Err(true)`: connect() found no local port.
fn request(upstream: &mut TcpStream) -> Result<(), bool> {
    let mut reply = [0u8; 2];
    upstream
        .write_all(b"hi")
        .and_then(|()| upstream.read_exact(&mut reply))
        .map_err(|_| false)
}

/// The proxy, in mode `per-request:SECS` or `keepalive:SECS`: its client (a
/// thread) sends RATE requests a second over one connection for SECS
/// seconds; each is forwarded upstream. At the end it says what it saw:
/// `done ok=N eaddrnotavail=M first_fail_ns=T` (T on CLOCK_MONOTONIC, 0 if
/// none failed).
fn proxy(mode: &str, upstream_addr: SocketAddr) -> ! {
    let (kind, secs) = mode.split_once(':').unwrap();
    let secs: u64 = secs.parse().unwrap();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = front.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut conn = TcpStream::connect(front_addr).unwrap();
        let start = Instant::now();
        let mut reply = [0u8; 2];
        for i in 0..secs * RATE {
            let at = start + Duration::from_millis(i * 1000 / RATE);
            thread::sleep(at.saturating_duration_since(Instant::now()));
            conn.write_all(b"rq").unwrap();
            conn.read_exact(&mut reply).unwrap();
        }
    });
    let (mut conn, _) = front.accept().unwrap();
    say("started");
    let (mut ok, mut no_port, mut first_fail_ns) = (0u64, 0u64, 0u64);
    let mut kept: Option<TcpStream> = None;
    let mut buf = [0u8; 2];
    while conn.read_exact(&mut buf).is_ok() {
        let result = match kind {
            "keepalive" => {
                let upstream =
                    kept.get_or_insert_with(|| TcpStream::connect(upstream_addr).unwrap());
                request(upstream)
            }
            _ => match TcpStream::connect(upstream_addr) {
                // Closed by the proxy first, as soon as the reply is in.
                Ok(mut upstream) => request(&mut upstream),
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Err(true),
                Err(e) => panic!("connect: {e}"),
            },
        };
        match result {
            Ok(()) => ok += 1,
            Err(true) => {
                no_port += 1;
                if first_fail_ns == 0 {
                    first_fail_ns = monotonic_ns();
                }
            }
            Err(false) => panic!("request failed"),
        }
        conn.write_all(if result.is_ok() { b"ok" } else { b"er" })
            .unwrap();
    }
    client.join().unwrap();
    say(&format!(
        "done ok={ok} eaddrnotavail={no_port} first_fail_ns={first_fail_ns}"
    ));
    // Stay in the namespace a moment: tcptrace reads its counters through us.
    thread::sleep(Duration::from_millis(1500));
    std::process::exit(0)
}

/// A server restarted without SO_REUSEADDR while its port has timewait
/// sockets: it closes its one connection first, closes its listener, and
/// binds the port again. Says `rebind Err(AddrInUse)` (or what it got).
fn restart(addr: SocketAddr) -> ! {
    let bind = || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&addr.into()).map(|()| s)
    };
    let listener = bind().unwrap();
    listener.listen(8).unwrap();
    say("ready");
    let (conn, _) = listener.accept().unwrap();
    // Closed first: the timewait socket is this side's, on the server port.
    drop(conn);
    drop(listener);
    thread::sleep(Duration::from_millis(300));
    say(&format!(
        "rebind {:?}",
        bind().map(|_| ()).map_err(|e| e.kind())
    ));
    // Stay in the namespace a moment: tcptrace names it through us.
    thread::sleep(Duration::from_millis(1500));
    std::process::exit(0)
}

/// Connects, waits for the server's FIN, closes.
fn client(addr: SocketAddr) -> ! {
    let mut conn = TcpStream::connect(addr).unwrap();
    let mut buf = [0u8; 16];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    std::process::exit(0)
}

fn peer(args: &[String]) -> ! {
    let (role, mode, addr) = common::net::become_peer(args);
    match role {
        "server" => serve(addr),
        "proxy" => proxy(mode, addr),
        "restart" => restart(addr),
        "client" => client(addr),
        other => panic!("role {other}"),
    }
}

// ------------------------------------------------------------ scenarios --

/// What the proxy said it saw.
#[derive(Debug)]
struct Seen {
    ok: u64,
    no_port: u64,
    first_fail_ns: u64,
}

/// A traced run: tcptrace's JSON records, `ss`'s counts toward the upstream
/// (wall-clock seconds, ports), and the proxy's own account.
struct Run {
    records: Vec<Value>,
    ss: Vec<(f64, u64)>,
    seen: Seen,
    proxy_pid: u32,
    net: Net,
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Ports `ss` shows held toward the upstream in the proxy's namespace.
fn ss_count(net: &Net) -> u64 {
    common::net::ss_count(&net.client, &["dst", &format!("{SERVER_IP}:{PORT}")])
}

fn traced(tag: &str, mode: &str, tw_reuse: &str) -> Run {
    let net = Net::new(tag);
    net.sysctl(&net.client, "net.ipv4.ip_local_port_range", RANGE);
    net.sysctl(&net.client, "net.ipv4.tcp_tw_reuse", tw_reuse);
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns, "--interval", "1"]);
    let upstream = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-upstream", "server", "-", &upstream);
    server.expect("ready");
    let mut proxy = Peer::spawn(&net.client, "tt-proxy", "proxy", mode, &upstream);
    proxy.expect("started");
    // ss at the moments the tracer's per-second summaries are taken, or
    // near them: sampled every 250 ms, matched by time later.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let ss_net = (net.client.clone(), net.server.clone());
    let sampler = thread::spawn(move || {
        let net = Net::borrowed(&ss_net.0, &ss_net.1);
        let mut samples = Vec::new();
        while stop_rx.recv_timeout(Duration::from_millis(250)).is_err() {
            let before = SystemTime::now();
            let n = ss_count(&net);
            let after = SystemTime::now();
            samples.push(((unix_s(before) + unix_s(after)) / 2.0, n));
        }
        samples
    });
    let done = proxy.expect("done");
    let field = |name: &str| -> u64 {
        done.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let seen = Seen {
        ok: field("ok"),
        no_port: field("eaddrnotavail"),
        first_fail_ns: field("first_fail_ns"),
    };
    // The last summary while the proxy is still in its namespace.
    thread::sleep(Duration::from_millis(1200));
    stop_tx.send(()).unwrap();
    let ss = sampler.join().unwrap();
    let proxy_pid = proxy.pid();
    proxy.wait();
    drop(server);
    let finished = tracer.stop_lossless();
    assert!(finished.status.success(), "{:?}", finished.stderr);
    Run {
        records: finished.json(),
        ss,
        seen,
        proxy_pid,
        net,
    }
}

impl Run {
    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind).collect()
    }

    /// The upstream's row in a summary.
    fn upstream<'a>(&self, summary: &'a Value) -> Option<&'a Value> {
        summary["ports"].as_array()?.iter().find(|p| {
            p["netns"] == self.net.client_ino && p["raddr"] == SERVER_IP && p["rport"] == PORT
        })
    }

    fn last_upstream(&self) -> Value {
        let summaries = self.of_type("summary");
        let last = summaries.last().expect("an exit summary");
        self.upstream(last)
            .unwrap_or_else(|| panic!("no upstream in {}", last["ports"]))
            .clone()
    }
}

fn rfc3339_s(text: &str) -> f64 {
    let t = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// At twice the sustainable rate the proxy runs out of ports in ~30 s:
/// tcptrace names it, counts with ss, warns at 50 % and 80 % before the
/// first failure, predicts it within 20 %, and counts every EADDRNOTAVAIL.
fn exhaustion() {
    let run = traced("pex", "per-request:38", "0");
    let seen = &run.seen;
    assert!(seen.no_port > 0, "the proxy never ran out: {seen:?}");
    let up = run.last_upstream();
    assert_eq!(up["capacity"], CAPACITY);
    assert_eq!(up["tw_reuse"], false);
    assert_eq!(
        up["failed_connects"], seen.no_port,
        "tcptrace's count of EADDRNOTAVAIL: {up}"
    );
    assert_eq!(up["verdicts"]["no-port"], seen.no_port);
    assert_eq!(
        up["verdicts"]["local"], seen.ok,
        "the proxy closed each first"
    );
    assert_eq!(up["closed_locally"], 1.0);
    assert!(
        up["owners"][0]["comm"] == "tt-proxy" && up["owners"][0]["pid"] == run.proxy_pid,
        "{up}"
    );
    let sustainable = up["sustainable_per_s"].as_f64().unwrap();
    assert!(
        (sustainable - 5.0).abs() < 0.3,
        "300 ports held ~60 s: {up}"
    );

    // Usage against ss at the same moments.
    let mut compared = 0;
    for summary in run.of_type("summary") {
        let Some(row) = run.upstream(summary) else {
            continue;
        };
        let at = rfc3339_s(summary["time"].as_str().unwrap());
        let Some(&(_, ss)) = run.ss.iter().find(|(t, _)| (t - at).abs() < 0.15) else {
            continue;
        };
        let held = row["held"].as_u64().unwrap();
        let slack = (ss / 10).max(3);
        assert!(
            held.abs_diff(ss) <= slack,
            "tcptrace {held} vs ss {ss} at {at}"
        );
        compared += 1;
    }
    assert!(
        compared >= 5,
        "only {compared} summaries had an ss sample beside them"
    );

    // The warnings come before the first failure, and the time left said
    // at 50 % comes true within 20 %.
    let alerts = run.of_type("ports_alert");
    let at = |level: &str| -> &Value {
        alerts
            .iter()
            .find(|a| a["level"] == level && a["netns"] == run.net.client_ino)
            .unwrap_or_else(|| panic!("no {level} alert in {alerts:?}"))
    };
    let (half, high, failing) = (at("usage-50"), at("usage-80"), at("connects-failing"));
    for alert in [half, high] {
        assert!(
            alert["ts_ns"].as_u64().unwrap() < seen.first_fail_ns,
            "{alert} after the first failure"
        );
    }
    assert!(failing["ts_ns"].as_u64().unwrap() >= seen.first_fail_ns);
    let predicted = half["time_left_ns"].as_u64().unwrap() as f64;
    let actual = (seen.first_fail_ns - half["ts_ns"].as_u64().unwrap()) as f64;
    assert!(
        (predicted - actual).abs() <= 0.2 * actual,
        "predicted {:.1} s left at 50 %, ran out after {:.1} s",
        predicted / 1e9,
        actual / 1e9
    );
    // The finding: critical, naming the proxy, the destination and the
    // numbers; keep-alive first among the remedies.
    let summaries = run.of_type("summary");
    let findings = summaries.last().unwrap()["findings"].as_array().unwrap();
    let f = &findings[0];
    assert_eq!(
        (f["kind"].as_str(), f["severity"].as_str()),
        (Some("port-exhaustion"), Some("critical")),
        "{f}"
    );
    assert_eq!(
        (f["pid"].as_u64(), f["comm"].as_str()),
        (Some(run.proxy_pid as u64), Some("tt-proxy"))
    );
    assert_eq!(
        (f["raddr"].as_str(), f["rport"].as_u64()),
        (Some(SERVER_IP), Some(u64::from(PORT)))
    );
    assert_eq!(f["failed_connects"], seen.no_port);
    assert_eq!(f["capacity"], CAPACITY);
    assert!(
        f["remedy"][0].as_str().unwrap().contains("keep-alive"),
        "{f}"
    );
    // Once per crossing.
    assert_eq!(
        alerts.iter().filter(|a| a["level"] == "usage-50").count(),
        1
    );
    println!(
        "exhaustion: {} requests, {} EADDRNOTAVAIL (tcptrace: {}); {compared} summaries within ss's count; \
         at 50 % predicted {:.1} s left, ran out after {:.1} s; sustainable {sustainable:.2}/s",
        seen.ok + seen.no_port,
        seen.no_port,
        up["failed_connects"],
        predicted / 1e9,
        actual / 1e9
    );
}

/// With tcp_tw_reuse=1 (and timestamps) a port in TIME_WAIT is taken over
/// after a second: the same rate never runs out.
fn exhaustion_avoided_by_tw_reuse() {
    let run = traced("prx", "per-request:40", "1");
    assert_eq!(run.seen.no_port, 0, "{:?}", run.seen);
    let up = run.last_upstream();
    assert_eq!(up["tw_reuse"], true, "{up}");
    assert_eq!(up["failed_connects"], 0);
    let hold_s = up["hold_ns"].as_f64().unwrap() / 1e9;
    assert!((1.0..1.5).contains(&hold_s), "held {hold_s} s: {up}");
    assert!(up["sustainable_per_s"].as_f64().unwrap() > 200.0, "{up}");
    assert!(up["time_left_ns"].is_null(), "{up}");
    // The range went round once: timewait sockets were taken over.
    let summaries = run.of_type("summary");
    let reused = summaries.last().unwrap()["timewait"]["ended"]["reused"]
        .as_u64()
        .unwrap();
    assert!(reused > 0, "no timewait socket reused");
    assert!(
        up["reused_after_ns"].as_u64().unwrap() >= 1_000_000_000,
        "{up}"
    );
    // Ports it can take over are not ports it lacks: no alert, no warning,
    // although the timewait sockets fill most of the range.
    assert!(
        run.of_type("ports_alert").is_empty(),
        "false alarm: {:?}",
        run.of_type("ports_alert")
    );
    assert!(
        warnings(&run).is_empty(),
        "false alarm: {:?}",
        warnings(&run)
    );
    assert!(up["usage"].as_f64().unwrap() < 0.5, "{up}");
    println!(
        "tw_reuse=1: {} requests, 0 failed; held {hold_s:.2} s, sustainable {:.0}/s, \
         {reused} timewait sockets reused after {:.1} s on average",
        run.seen.ok,
        up["sustainable_per_s"].as_f64().unwrap(),
        up["reused_after_ns"].as_f64().unwrap() / 1e9
    );
}

/// With keep-alive toward the upstream one port serves every request.
fn keepalive_upstream() {
    let run = traced("pka", "keepalive:5", "0");
    assert_eq!((run.seen.no_port, run.seen.ok), (0, 5 * RATE));
    let up = run.last_upstream();
    assert!(up["held"].as_u64().unwrap() <= 1, "{up}");
    assert!(up["usage"].as_f64().unwrap() < 0.01, "{up}");
    assert!(
        warnings(&run).is_empty(),
        "a healthy proxy, no warning: {:?}",
        warnings(&run)
    );
    assert!(
        run.of_type("ports_alert").is_empty(),
        "false alarm: {:?}",
        run.of_type("ports_alert")
    );
}

/// A server that cannot bind its port again: the failed bind is counted,
/// with the process, the port and the timewait sockets holding it.
fn failed_bind() {
    let net = Net::new("pbd");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tracer = Tracer::start(&["--json", "--netns", &netns]);
    let addr = format!("{SERVER_IP}:8081");
    let mut server = Peer::spawn(&net.server, "tt-restart", "restart", "-", &addr);
    server.expect("ready");
    let mut client = Peer::spawn(&net.client, "tt-client", "client", "-", &addr);
    client.wait();
    assert_eq!(server.expect("rebind"), "rebind Err(AddrInUse)");
    let server_pid = server.pid();
    server.wait();
    let finished = tracer.stop_lossless();
    let records = finished.json();
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "bind_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let b = failed[0];
    assert_eq!(
        (b["pid"].as_u64(), b["comm"].as_str()),
        (Some(server_pid as u64), Some("tt-restart"))
    );
    assert_eq!(
        (b["laddr"].as_str(), b["lport"].as_u64()),
        (Some(SERVER_IP), Some(8081))
    );
    assert_eq!(b["netns"], net.server_ino);
    let summary = records.iter().rfind(|r| r["type"] == "summary").unwrap();
    let row = &summary["bind_failures"][0];
    assert_eq!(
        (row["count"].as_u64(), row["comm"].as_str()),
        (Some(1), Some("tt-restart")),
        "{row}"
    );
    assert_eq!(
        row["timewait_on_port"], 1,
        "the server's own timewait socket: {row}"
    );
    let f = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "bind-in-use")
        .expect("a bind-in-use finding");
    assert_eq!(
        (f["severity"].as_str(), f["comm"].as_str()),
        (Some("warning"), Some("tt-restart"))
    );
    assert!(f["remedy"][0].as_str().unwrap().contains("SO_REUSEADDR"));
}

/// Findings at warning level or worse in the last summary of a run.
fn warnings(run: &Run) -> Vec<Value> {
    let summaries = run.of_type("summary");
    summaries.last().unwrap()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .cloned()
        .collect()
}

/// `tcptrace diagnose` says with its exit status whether anything is wrong:
/// 4 when connects fail for lack of ports, 0 where nothing happens.
fn diagnose_exit_status() {
    let net = Net::new("pdg");
    net.sysctl(&net.client, "net.ipv4.ip_local_port_range", "40000 40019");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let quiet = Tracer::start(&[
        "diagnose",
        "--for",
        "3",
        "--json",
        "--netns",
        &format!("{}", net.server_ino),
    ]);
    let tracer = Tracer::start(&["diagnose", "--for", "7", "--json", "--netns", &netns]);
    let upstream = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-upstream", "server", "-", &upstream);
    server.expect("ready");
    // 20 ports, 10 connections a second for 4 s.
    let mut proxy = Peer::spawn(&net.client, "tt-proxy", "proxy", "per-request:4", &upstream);
    proxy.expect("started");
    let done = proxy.expect("done");
    assert!(!done.contains("eaddrnotavail=0"), "{done}");
    let finished = tracer.wait();
    assert_eq!(finished.status.code(), Some(4), "{:?}", finished.stderr);
    assert!(
        finished
            .stderr
            .iter()
            .any(|l| l.starts_with("tcptrace: diagnosing: 5 of 7 s")),
        "progress: {:?}",
        finished.stderr
    );
    let summaries = finished.records("summary");
    assert_eq!(summaries.len(), 1, "one report");
    assert_eq!(summaries[0]["findings"][0]["kind"], "port-exhaustion");
    assert_eq!(finished.records("transition").len(), 0, "quietly");
    let quiet = quiet.wait();
    assert_eq!(quiet.status.code(), Some(0), "{:?}", quiet.stderr);
}

/// A terminal, tmux's: `tcptrace top` is typed into a shell there, and the
/// screen read back.
struct Tmux {
    session: String,
}

impl Tmux {
    fn new(session: &str) -> Self {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", session])
            .output();
        common::net::run(
            "tmux",
            &[
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "160",
                "-y",
                "45",
                "bash --norc",
            ],
        );
        Tmux {
            session: session.into(),
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend(keys);
        common::net::run("tmux", &args);
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn shows(&self, what: impl Fn(&str) -> bool, waiting_for: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if what(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {waiting_for}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn flag(&self, format: &str) -> String {
        let out = std::process::Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.session, format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

/// `tcptrace top` in a real terminal while a proxy runs out of ports: the
/// exhausted destination on top with its bar full and its finding in red
/// at the head; `s` sorts by another column, `/` filters it away, `q`
/// gives the terminal back as it was.
fn top_in_a_terminal() {
    let net = Net::new("ptp");
    net.sysctl(&net.client, "net.ipv4.ip_local_port_range", "40000 40019");
    let netns = format!("{},{}", net.client_ino, net.server_ino);
    let tmux = Tmux::new("tcptrace-top-test");
    tmux.keys(&[
        &format!(
            "clear; echo before-top; {} top --netns {netns}",
            common::BIN
        ),
        "Enter",
    ]);
    tmux.shows(
        |s| s.contains("tcptrace top") && s.contains("DESTINATIONS by ports"),
        "the view",
    );
    assert_eq!(tmux.flag("#{alternate_on}"), "1");
    let upstream = format!("{SERVER_IP}:{PORT}");
    let mut server = Peer::spawn(&net.server, "tt-upstream", "server", "-", &upstream);
    server.expect("ready");
    // 20 ports, 10 connections a second for 4 s: connects fail.
    let mut proxy = Peer::spawn(&net.client, "tt-proxy", "proxy", "per-request:4", &upstream);
    proxy.expect("started");
    let done = proxy.expect("done");
    assert!(!done.contains("eaddrnotavail=0"), "{done}");
    let row = format!("{SERVER_IP}:{PORT} tt-proxy[");
    let screen = tmux.shows(
        |s| {
            s.contains("CRIT")
                && s.lines()
                    .any(|l| l.starts_with(&row) && l.contains("[##########]"))
        },
        "the exhausted destination, its bar full, and its finding",
    );
    let lines: Vec<&str> = screen.lines().collect();
    let crit = lines.iter().position(|l| l.starts_with("CRIT")).unwrap();
    assert!(
        lines[crit].contains("tt-proxy") && lines[crit].contains(&format!("{SERVER_IP}:{PORT}")),
        "{screen}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("DESTINATION"))
        .unwrap();
    assert!(
        lines[header + 1].starts_with(&row),
        "the exhausted destination first:\n{screen}"
    );
    proxy.wait();
    tmux.keys(&["s"]);
    tmux.shows(|s| s.contains("DESTINATIONS by new/s"), "the sort by new/s");
    tmux.keys(&["/", "tt-upstream", "Enter"]);
    let filtered = tmux.shows(|s| s.contains("filter \"tt-upstream\""), "the filter");
    assert!(!filtered.contains(&row), "filtered away:\n{filtered}");
    assert!(
        filtered.contains("tt-upstream["),
        "its service stays:\n{filtered}"
    );
    tmux.keys(&["q"]);
    let after = tmux.shows(
        |s| !s.contains("DESTINATIONS") && s.trim_end().ends_with('#'),
        "the shell's prompt back",
    );
    assert!(
        after.contains("before-top"),
        "what was there is there:\n{after}"
    );
    assert_eq!(
        tmux.flag("#{alternate_on}"),
        "0",
        "off the alternate screen"
    );
    assert_eq!(tmux.flag("#{cursor_flag}"), "1", "the cursor shown");
    // SIGTERM (a service manager, kill) gives the terminal back too.
    tmux.keys(&[
        &format!(
            "clear; echo before-term; {} top --netns {netns}",
            common::BIN
        ),
        "Enter",
    ]);
    tmux.shows(|s| s.contains("DESTINATIONS by ports"), "the view again");
    common::net::run("pkill", &["-TERM", "-f", &format!("top --netns {netns}")]);
    let after = tmux.shows(
        |s| !s.contains("DESTINATIONS") && s.trim_end().ends_with('#'),
        "the shell's prompt back after SIGTERM",
    );
    assert!(after.contains("before-term"), "{after}");
    assert_eq!(
        tmux.flag("#{alternate_on}"),
        "0",
        "SIGTERM: off the alternate screen"
    );
    drop(server);
}

fn main() {
    common::scenario_main(
        peer,
        &[
            ("exhaustion", exhaustion),
            (
                "exhaustion_avoided_by_tw_reuse",
                exhaustion_avoided_by_tw_reuse,
            ),
            ("keepalive_upstream", keepalive_upstream),
            ("failed_bind", failed_bind),
            ("diagnose_exit_status", diagnose_exit_status),
            ("top_in_a_terminal", top_in_a_terminal),
        ],
    )
}
