//! The live log on the real kernel: loopback connections over IPv4 and IPv6,
//! JSON parsed back, the text columns, a closed stdout, and lost events.

mod common;

use std::{
    io::BufReader,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const HOLD: Duration = Duration::from_millis(50);

/// Asserts the exact transitions of both ends of one client-closes-first
/// connection, and of the listener, as PLATFORM.md records them.
fn assert_loopback_connection(bind: &str, family: &str) {
    let tracer = Tracer::start(&["--json"]);
    let (server, client) = client_closes_first(bind, HOLD);
    let finished = tracer.stop_lossless();
    assert!(finished.status.success(), "{:?}", finished.stderr);
    let records = since_start(finished.records("transition"));
    let ours = touching(&records, &server);
    let sockets = by_socket(&ours);
    assert_eq!(
        sockets.len(),
        3,
        "listener, client and accepted socket: {ours:#?}"
    );

    let find = |first: &str| {
        sockets
            .iter()
            .find(|(_, recs)| sequence(&recs[..1]) == [first])
            .map(|(_, recs)| recs.clone())
            .unwrap_or_else(|| panic!("no socket starting with {first}: {ours:#?}"))
    };
    let listener = find("CLOSE->LISTEN");
    let client_sock = find("CLOSE->SYN_SENT");
    let accepted = find("LISTEN->SYN_RECV");
    assert_eq!(sequence(&listener), ["CLOSE->LISTEN", "LISTEN->CLOSE"]);
    assert_eq!(
        sequence(&client_sock[..client_sock.len() - 1]),
        [
            "CLOSE->SYN_SENT",
            "SYN_SENT->ESTABLISHED",
            "ESTABLISHED->FIN_WAIT1",
            "FIN_WAIT1->FIN_WAIT2",
        ]
    );
    // The kernel hands the connection to a timewait socket: its full
    // socket's CLOSE is shown as the connection sees it. In TIME_WAIT if the
    // server's FIN came before close() orphaned the client's socket, else in
    // FIN_WAIT2 (an orphan waiting for that FIN).
    let last = sequence(&client_sock[client_sock.len() - 1..]);
    assert!(
        ["FIN_WAIT2->TIME_WAIT", "FIN_WAIT2->FIN_WAIT2"].contains(&last[0].as_str()),
        "{last:?}"
    );
    assert_eq!(
        client_sock.last().unwrap()["timewait"]["event"],
        "begins",
        "{client_sock:#?}"
    );
    assert_eq!(
        sequence(&accepted),
        [
            "LISTEN->SYN_RECV",
            "SYN_RECV->ESTABLISHED",
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE"
        ]
    );

    // The interleaving of the two ends, in the order the kernel produced them.
    let order: Vec<String> = sequence(&ours);
    let pos = |t: &str| {
        order
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t} missing from {order:?}"))
    };
    assert!(pos("CLOSE->LISTEN") < pos("CLOSE->SYN_SENT"));
    assert!(pos("CLOSE->SYN_SENT") < pos("LISTEN->SYN_RECV"));
    assert!(pos("ESTABLISHED->FIN_WAIT1") < pos("ESTABLISHED->CLOSE_WAIT"));
    assert!(pos("CLOSE_WAIT->LAST_ACK") < pos("LAST_ACK->CLOSE"));
    assert!(pos("LAST_ACK->CLOSE") < pos("LISTEN->CLOSE"));

    // Addresses and ports, from each end's point of view.
    for r in &ours {
        assert_eq!(r["family"], family);
    }
    let established = client_sock[1];
    assert_eq!(established["laddr"], client.ip().to_string());
    assert_eq!(established["lport"], client.port());
    assert_eq!(established["rport"], server.port());
    assert_eq!(accepted[1]["lport"], server.port());
    assert_eq!(accepted[1]["rport"], client.port());
    assert_eq!(
        listener[0]["raddr"],
        if family == "ipv4" { "0.0.0.0" } else { "::" }
    );

    // Time in state: the first transition of each socket has none, the others
    // are measured; the client held the connection ESTABLISHED for HOLD.
    for recs in [&listener, &client_sock, &accepted] {
        assert_eq!(recs[0]["dur"], "new");
        assert_eq!(recs[0]["dur_ns"], Value::Null);
        for r in &recs[1..] {
            assert_eq!(r["dur"], "measured", "{r}");
            assert!(r["dur_ns"].as_u64().is_some(), "{r}");
        }
    }
    let established_ns = client_sock[2]["dur_ns"].as_u64().unwrap();
    assert!(
        established_ns >= HOLD.as_nanos() as u64,
        "ESTABLISHED lasted {established_ns} ns"
    );
    assert!(
        established_ns < 10_000_000_000,
        "ESTABLISHED lasted {established_ns} ns"
    );

    // Context: syscall-driven transitions run in process context, the
    // accepted socket's birth and the FIN handled on receive in softirq.
    for r in [
        listener[0],
        listener[1],
        client_sock[0],
        client_sock[2],
        accepted[3],
    ] {
        assert_eq!(r["ctx"], "process", "{r}");
    }
    for r in [accepted[0], accepted[2]] {
        assert_eq!(r["ctx"], "softirq", "{r}");
    }
    // Ownership: this process owns all three sockets (the accepted one through
    // its listener), softirq transitions included.
    let me = std::process::id();
    for r in &ours {
        assert_eq!(r["pid"], me, "{r}");
        assert!(r["comm"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
        assert!(r["netns"].as_u64().is_some_and(|n| n > 0), "{r}");
    }
    // One verdict per connection end: the client closed first.
    let closed = finished.records("closed");
    let verdict = |local: u16, remote: u16| {
        let found: Vec<&Value> = closed
            .iter()
            .filter(|c| c["lport"] == local && c["rport"] == remote)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one closed record for {local}->{remote}: {closed:#?}"
        );
        found[0]["verdict"].as_str().unwrap().to_owned()
    };
    assert_eq!(verdict(client.port(), server.port()), "local");
    assert_eq!(verdict(server.port(), client.port()), "peer");
    // Stable JSON fields.
    let t = client_sock[1];
    assert_eq!(t["type"], "transition");
    assert!(t["time"].as_str().unwrap().ends_with('Z'));
    assert!(t["sock"].as_str().unwrap().starts_with("0x"));
    assert!(t["ts_ns"].as_u64().unwrap() > 0);
    let (seen, lost) = finished.summary();
    assert_eq!(lost, 0);
    assert!(seen >= 12, "summary counted {seen}");
}

#[test]
fn loopback_ipv4_connection() {
    assert_loopback_connection("127.0.0.1:0", "ipv4");
}

#[test]
fn loopback_ipv6_connection() {
    assert_loopback_connection("[::1]:0", "ipv6");
}

#[test]
fn v4_mapped_connection_is_ipv6_with_mapped_addresses() {
    // A dual-stack listener on :: accepting an IPv4 client: the accepted
    // socket is AF_INET6 with ::ffff:127.0.0.1 addresses.
    let tracer = Tracer::start(&["--json"]);
    let listener = TcpListener::bind("[::]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    drop(client);
    drop(accepted);
    drop(listener);
    let finished = tracer.stop_lossless();
    let records = since_start(finished.records("transition"));
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let server_side = touching(&records, &mapped);
    assert!(
        !server_side.is_empty(),
        "no v4-mapped records for port {port}"
    );
    assert_eq!(sequence(&server_side[..1]), ["LISTEN->SYN_RECV"]);
    for r in server_side {
        assert_eq!(r["family"], "ipv6");
        assert_eq!(r["raddr"], "::ffff:127.0.0.1");
    }
}

#[test]
fn text_log_has_aligned_columns() {
    let tracer = Tracer::start(&[]);
    let (server, _client) = client_closes_first("127.0.0.1:0", Duration::ZERO);
    let finished = tracer.stop_lossless();
    let header = &finished.stdout[0];
    assert!(header.starts_with("TIME "), "{header}");
    let port = format!("127.0.0.1:{}", server.port());
    let lines: Vec<&String> = finished
        .stdout
        .iter()
        .filter(|l| l.contains(&port) && l.contains(" -> "))
        .collect();
    assert_eq!(lines.len(), 12, "{lines:#?}");
    let col = |name: &str| header.find(name).unwrap();
    for line in &lines {
        // Columns end with MS; a timewait socket's line adds a note after it.
        let fixed = match line.find("  timewait socket") {
            Some(note) => &line[..note],
            None => line.as_str(),
        };
        assert_eq!(fixed.len(), header.len(), "{line}");
        assert_eq!(&line[col("OLD") + 13..col("OLD") + 15], "->", "{line}");
        assert!(line[col("TIME")..].chars().nth(2) == Some(':'), "{line}");
    }
    let listen = lines
        .iter()
        .find(|l| l.contains("CLOSE        -> LISTEN"))
        .unwrap();
    assert_eq!(
        listen[col("PID")..].split_whitespace().next().unwrap(),
        std::process::id().to_string()
    );
    assert!(
        listen.trim_end().ends_with(" -"),
        "new socket shows '-': {listen}"
    );
    let syn_recv = lines
        .iter()
        .find(|l| l.contains("LISTEN       -> SYN_RECV"))
        .unwrap();
    assert_eq!(
        syn_recv[col("PID")..].split_whitespace().next().unwrap(),
        std::process::id().to_string(),
        "an accepted socket belongs to its listener's process: {syn_recv}"
    );
    let closed: Vec<&String> = finished
        .stdout
        .iter()
        .filter(|l| l.contains(&port) && l.contains("closed       :: "))
        .collect();
    assert_eq!(closed.len(), 2, "{closed:#?}");
    assert!(
        closed.iter().any(|l| l.contains(":: local "))
            && closed.iter().any(|l| l.contains(":: peer "))
    );
    assert!(
        finished
            .stdout
            .iter()
            .any(|l| l.starts_with("--- summary after")),
        "exit summary"
    );
    let finished_line = lines
        .iter()
        .find(|l| l.contains("LAST_ACK     -> CLOSE"))
        .unwrap();
    let ms: f64 = finished_line
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..10_000.0).contains(&ms), "{finished_line}");
}

#[test]
fn closed_stdout_ends_quietly() {
    let mut child = Command::new(BIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Like `tcptrace | head -3`: read three lines, then close the pipe.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = Arc::new(AtomicBool::new(false));
    let generating = done.clone();
    let generator = thread::spawn(move || {
        while Instant::now() < deadline && !generating.load(Ordering::Relaxed) {
            let _ = client_closes_first("127.0.0.1:0", Duration::ZERO);
            thread::sleep(Duration::from_millis(20));
        }
    });
    let lines = read_lines(&mut stdout, 3);
    assert_eq!(lines.len(), 3);
    drop(stdout);
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    done.store(true, Ordering::Relaxed);
    let status = status.expect("tcptrace exits after its reader left");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(" transitions in "),
        "no summary on a closed pipe: {stderr}"
    );
    generator.join().unwrap();
}

#[test]
fn full_ring_buffer_counts_lost_events() {
    // A one-page ring holds about 39 records; with wake-ups off and a slow
    // drain, a burst of connections must overflow it.
    let tracer = Tracer::start(&[
        "--json",
        "--ring-size",
        "4K",
        // As large as the ring: never woken early.
        "--wakeup",
        "4K",
        "--drain-interval",
        "3000",
    ]);
    const CONNECTIONS: usize = 100;
    let mut ports = Vec::new();
    for _ in 0..CONNECTIONS {
        ports.push(client_closes_first("127.0.0.1:0", Duration::ZERO).0);
    }
    // The losses are read after a drain (every 3 s here), and said by the
    // once-a-second check after it: wait for that, while it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let live_warning = loop {
        let warned = tracer
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("warning:") && l.contains("lost"));
        if warned || Instant::now() > deadline {
            break warned;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let finished = tracer.stop();
    let (seen, lost) = finished.summary();
    assert!(lost > 0, "nothing lost: {:?}", finished.stderr);
    assert!(live_warning, "no live loss warning: {:?}", finished.stderr);
    // Every transition is either received or counted as lost: our 12 per
    // connection, plus whatever else the host did meanwhile.
    let transitions = finished.records("transition");
    let ours: usize = ports.iter().map(|p| touching(&transitions, p).len()).sum();
    assert!(
        ours < 12 * CONNECTIONS,
        "all {ours} received despite the loss"
    );
    assert!(
        seen + lost >= (12 * CONNECTIONS) as u64,
        "seen {seen} + lost {lost} < {}",
        12 * CONNECTIONS
    );
    // The summary counts the kernel's transitions: the printed ones, less the
    // ends and substate changes of timewait sockets (which come from timer
    // records; a `begins` is the full socket's CLOSE, relabelled).
    let from_kernel = transitions
        .iter()
        .filter(|r| r["timewait"].is_null() || r["timewait"]["event"] == "begins")
        .count();
    assert_eq!(seen as usize, from_kernel);
}

#[test]
fn filters_select_connections() {
    // Kernel-side port and family filters and agent-side pid and CIDR filters,
    // each in its own tracer, over the same traffic.
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    drop((a, b));
    let by_lport = Tracer::start(&["--json", "--lport", &pa.to_string()]);
    let by_rport_v4 = Tracer::start(&["--json", "--rport", &pb.to_string(), "-4"]);
    let by_v6 = Tracer::start(&["--json", "-6", "--raddr", "::1/128"]);
    let by_other_pid = Tracer::start(&["--json", "-p", "1"]);
    let by_my_pid = Tracer::start(&[
        "--json",
        "-p",
        &std::process::id().to_string(),
        "--laddr",
        "127.0.0.0/8",
    ]);

    let (server_a, client_a) = client_closes_first(&format!("127.0.0.1:{pa}"), Duration::ZERO);
    let (server_b, _) = client_closes_first(&format!("127.0.0.1:{pb}"), Duration::ZERO);
    let (server_6, _) = client_closes_first("[::1]:0", Duration::ZERO);

    let records = |t: Tracer| since_start(t.stop_lossless().records("transition"));
    let lport = records(by_lport);
    assert!(!lport.is_empty());
    assert!(lport.iter().all(|r| r["lport"] == pa), "{lport:#?}");
    // The listener and the accepted socket; not the client (its local port differs).
    assert_eq!(touching(&lport, &server_a).len(), 7);
    assert!(touching(&lport, &client_a).iter().all(|r| r["lport"] == pa));

    let rport = records(by_rport_v4);
    assert!(
        rport
            .iter()
            .all(|r| r["rport"] == pb && r["family"] == "ipv4"),
        "{rport:#?}"
    );
    assert_eq!(
        touching(&rport, &server_b).len(),
        5,
        "the client end of the connection to b"
    );

    let v6 = records(by_v6);
    assert!(
        v6.iter()
            .all(|r| r["family"] == "ipv6" && r["raddr"] == "::1"),
        "{v6:#?}"
    );
    assert!(!touching(&v6, &server_6).is_empty());

    let other = records(by_other_pid);
    assert!(
        touching(&other, &server_a).is_empty() && touching(&other, &server_b).is_empty(),
        "{other:#?}"
    );

    let mine = records(by_my_pid);
    assert_eq!(touching(&mine, &server_a).len(), 12);
    assert!(
        touching(&mine, &server_6).is_empty(),
        "--laddr 127.0.0.0/8 excludes ::1"
    );
}

#[test]
fn summary_mode_prints_periodic_summaries_only() {
    let tracer = Tracer::start(&["--json", "--summary", "--interval", "1"]);
    let (server, _client) = client_closes_first("127.0.0.1:0", Duration::from_millis(20));
    thread::sleep(Duration::from_millis(2300));
    let finished = tracer.stop_lossless();
    let records = finished.json();
    assert!(
        records.iter().all(|r| r["type"] == "summary"),
        "only summaries: {:?}",
        finished.stdout
    );
    assert!(
        records.len() >= 3,
        "two periodic summaries and the exit one: {}",
        records.len()
    );
    let last = records.last().unwrap();
    // Cumulative: our connection's client end closed first, the server's end did not.
    assert!(last["verdicts"]["local"].as_u64().unwrap() >= 1);
    assert!(last["verdicts"]["peer"].as_u64().unwrap() >= 1);
    let ports: Vec<&Value> = last["by_listen_port"].as_array().unwrap().iter().collect();
    let ours = ports
        .iter()
        .find(|p| p["lport"] == server.port())
        .expect("our listening port");
    assert_eq!(ours["verdicts"]["peer"], 1);
    let remotes = last["by_remote"].as_array().unwrap();
    assert!(
        remotes
            .iter()
            .any(|r| r["rport"] == server.port() && r["verdicts"]["local"] == 1)
    );
    let established = last["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "ESTABLISHED")
        .unwrap();
    assert!(established["count"].as_u64().unwrap() >= 2);
    assert!(established["max_ns"].as_u64().unwrap() >= 20_000_000);
}

#[test]
fn sockets_that_predate_tcptrace_have_owners() {
    // A listener and a connection made before tcptrace starts.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let old_client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let old_client_port = old_client.local_addr().unwrap().port();
    let (mut old_server, _) = listener.accept().unwrap();

    let tracer = Tracer::start(&["--json"]);
    // A new connection accepted by the old listener: its birth runs in
    // softirq, so only the start-up snapshot can name its owner.
    let new_client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let new_client_port = new_client.local_addr().unwrap().port();
    let (mut new_server, _) = listener.accept().unwrap();
    drop(new_client);
    let mut buf = [0u8; 8];
    assert_eq!(std::io::Read::read(&mut new_server, &mut buf).unwrap(), 0);
    drop(new_server);
    // The old connection closes, client first: the server end's FIN arrives
    // in softirq, again attributable only through the snapshot.
    drop(old_client);
    assert_eq!(std::io::Read::read(&mut old_server, &mut buf).unwrap(), 0);
    drop(old_server);
    drop(listener);
    let finished = tracer.stop_lossless();
    let transitions = finished.records("transition");
    let closed = finished.records("closed");
    let me = std::process::id();

    let at_server = |remote_port: u16| {
        transitions
            .iter()
            .filter(move |r| r["lport"] == port && r["rport"] == remote_port)
            .collect::<Vec<_>>()
    };
    let born = at_server(new_client_port);
    assert_eq!(sequence(&born[..1]), ["LISTEN->SYN_RECV"]);
    assert_eq!(
        (born[0]["ctx"].as_str(), born[0]["pid"].as_u64()),
        (Some("softirq"), Some(me as u64))
    );
    let old = at_server(old_client_port);
    assert_eq!(sequence(&old[..1]), ["ESTABLISHED->CLOSE_WAIT"]);
    assert_eq!(
        (old[0]["ctx"].as_str(), old[0]["pid"].as_u64()),
        (Some("softirq"), Some(me as u64))
    );
    assert_eq!(old[0]["dur"], "unknown", "the connection predates tcptrace");

    let verdict = |lport: u16, rport: u16| {
        let c = closed
            .iter()
            .find(|c| c["lport"] == lport && c["rport"] == rport)
            .expect("closed record");
        (
            c["verdict"].as_str().unwrap().to_owned(),
            c["role"].as_str().unwrap().to_owned(),
            c["pid"].as_u64(),
        )
    };
    assert_eq!(
        verdict(port, old_client_port),
        ("peer".into(), "unknown".into(), Some(me as u64))
    );
    assert_eq!(
        verdict(old_client_port, port),
        ("local".into(), "unknown".into(), Some(me as u64))
    );
    assert_eq!(
        verdict(port, new_client_port),
        ("peer".into(), "passive".into(), Some(me as u64))
    );
    // The old listener's close is not a connection's end.
    assert!(
        closed
            .iter()
            .all(|c| !(c["lport"] == port && c["rport"] == 0)),
        "{closed:#?}"
    );
}

#[test]
fn no_timewait_leaves_the_timers_alone() {
    let tracer = Tracer::start(&["--json", "--no-timewait"]);
    let stderr = tracer.stderr_so_far().join("\n");
    assert!(!stderr.contains("TIME_WAIT"), "{stderr}");
    let (server, client) = client_closes_first("127.0.0.1:0", Duration::ZERO);
    let finished = tracer.stop_lossless();
    let transitions = finished.records("transition");
    let ours = touching(&transitions, &client);
    assert!(ours.iter().all(|r| r["timewait"].is_null()), "{ours:#?}");
    // What the kernel reports, as other tracers show it.
    let client_end: Vec<&Value> = ours
        .iter()
        .copied()
        .filter(|r| r["lport"] == client.port())
        .collect();
    assert_eq!(
        sequence(&client_end[client_end.len() - 1..]),
        ["FIN_WAIT2->CLOSE"]
    );
    // The connection's record comes when the full socket closes.
    let closed = finished.records("closed");
    assert!(
        closed.iter().any(|c| c["lport"] == client.port()
            && c["rport"] == server.port()
            && c["timewait"].is_null()),
        "{closed:#?}"
    );
    let summary = finished.records("summary").pop().unwrap();
    assert!(summary["timewait"].is_null(), "{summary}");
}

#[test]
fn timewait_killed_by_ss_names_it() {
    let tracer = Tracer::start(&["--json"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    let client_addr = client.local_addr().unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    // The client closes first and keeps its socket until the server's FIN:
    // its end goes to TIME_WAIT.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(std::io::Read::read(&mut accepted, &mut buf).unwrap(), 0);
    drop(accepted);
    assert_eq!(std::io::Read::read(&mut client, &mut buf).unwrap(), 0);
    drop(client);
    // This connection's timewait socket only: the host may have others
    // on the same port.
    let ss = Command::new("ss")
        .args([
            "-K",
            "-tn",
            "state",
            "time-wait",
            "src",
            &client_addr.to_string(),
            "dst",
            &server.to_string(),
        ])
        .output()
        .expect("ss (iproute2)");
    assert!(ss.status.success(), "{ss:?}");
    thread::sleep(Duration::from_millis(200));
    let finished = tracer.stop_lossless();
    let transitions = since_start(finished.records("transition"));
    let ends: Vec<&Value> = touching(&transitions, &client_addr)
        .into_iter()
        .filter(|r| r["timewait"]["event"] == "ends")
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    let tw = &ends[0]["timewait"];
    assert_eq!(tw["reason"], "killed", "{tw}");
    assert_eq!(tw["by_comm"], "ss", "{tw}");
    assert_eq!(ends[0]["ctx"], "process");
}

/// How many socket lives went through each sequence of transitions, to show
/// what an unexpected life was.
fn lives(sockets: &[(String, Vec<&Value>)]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (_, recs) in sockets {
        let chain = sequence(recs).join(" ");
        match counts.iter_mut().find(|(c, _)| *c == chain) {
            Some((_, n)) => *n += 1,
            None => counts.push((chain, 1)),
        }
    }
    counts
        .iter()
        .map(|(chain, n)| format!("{n} x {chain}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

#[test]
fn records_of_two_cpus_are_merged_in_time_order() {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs two CPUs (one ring buffer each)");
        return;
    }
    // Server closes first, client and server pinned to different CPUs: the
    // client socket's CLOSE_WAIT comes from the server's FIN, handled in
    // softirq on the server's CPU, its LAST_ACK from its own close() on the
    // other; every socket's records are split across the two CPUs' rings.
    let tracer = Tracer::start(&["--json"]);
    const CONNECTIONS: usize = 200;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let serving = thread::spawn(move || {
        pin_to(1);
        for _ in 0..CONNECTIONS {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4];
            std::io::Read::read_exact(&mut s, &mut buf).unwrap();
        }
    });
    pin_to(0);
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(server).unwrap();
        std::io::Write::write_all(&mut c, b"ping").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut c, &mut buf).unwrap(), 0);
    }
    serving.join().unwrap();
    let finished = tracer.stop_lossless();
    let records = finished.records("transition");
    let ours = touching(&records, &server);
    // The kernel reuses a freed socket's address: one life per opening.
    let opens = |r: &Value| r["old"] == "CLOSE" || (r["old"] == "LISTEN" && r["new"] == "SYN_RECV");
    let mut sockets: Vec<(String, Vec<&Value>)> = Vec::new();
    for (sock, recs) in by_socket(&ours) {
        for r in recs {
            match sockets.iter_mut().rev().find(|(s, _)| *s == sock) {
                Some((_, life)) if !opens(r) => life.push(r),
                _ => sockets.push((sock.clone(), vec![r])),
            }
        }
    }
    // Sockets first seen mid-life are not this test's: the timewait socket
    // of an earlier connection between the same ports (the server's port
    // was free to bind, not free of TIME_WAIT) that expired meanwhile or
    // that one of ours reopened.
    sockets.retain(|(_, recs)| opens(recs[0]));
    // Listener, and a client and an accepted socket per connection.
    assert_eq!(sockets.len(), 1 + 2 * CONNECTIONS, "{}", lives(&sockets));
    for (sock, recs) in &sockets {
        // Each transition leaves the state the previous one entered, in
        // timestamp order, and its time there is measured.
        for pair in recs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(a["new"], b["old"], "{sock}: {recs:#?}");
            assert!(
                a["ts_ns"].as_u64() <= b["ts_ns"].as_u64(),
                "{sock}: {recs:#?}"
            );
            assert_eq!(b["dur"], "measured", "{sock}: {recs:#?}");
            assert_eq!(
                b["dur_ns"].as_u64(),
                Some(b["ts_ns"].as_u64().unwrap() - a["ts_ns"].as_u64().unwrap()),
                "{sock}: {recs:#?}"
            );
        }
    }
    let ctx = |r: &&Value| r["ctx"].as_str().unwrap_or("").to_owned();
    let clients: Vec<_> = sockets
        .iter()
        .filter(|(_, recs)| recs[0]["old"] == "CLOSE" && recs[0]["new"] == "SYN_SENT")
        .collect();
    assert_eq!(clients.len(), CONNECTIONS);
    // The server's FIN reaches a client socket in softirq on the server's
    // CPU, so that record goes to the other ring, unless the client held the
    // socket's lock then and processed it itself, on its own CPU.
    let split = clients
        .iter()
        .filter(|(_, recs)| recs.get(2).map(ctx).as_deref() == Some("softirq"))
        .count();
    assert!(
        split >= CONNECTIONS / 2,
        "only {split} connections had records in both rings"
    );
    for (sock, recs) in clients {
        let seq = sequence(recs);
        assert_eq!(
            seq[..4],
            [
                "CLOSE->SYN_SENT",
                "SYN_SENT->ESTABLISHED",
                "ESTABLISHED->CLOSE_WAIT",
                "CLOSE_WAIT->LAST_ACK"
            ],
            "{sock}: {recs:#?}"
        );
        assert_eq!(ctx(&recs[3]), "process", "{sock}");
    }
}

#[test]
fn sockets_beyond_max_sockets_are_counted_and_warned() {
    let tracer = Tracer::start(&["--json", "--max-sockets", "2"]);
    let (server, _) = client_closes_first("127.0.0.1:0", Duration::ZERO);
    // The once-a-second check warns live.
    thread::sleep(Duration::from_millis(1500));
    let finished = tracer.stop();
    assert!(
        finished
            .stderr
            .iter()
            .any(|l| l.contains("warning: already following --max-sockets sockets")),
        "{:?}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .last()
            .is_some_and(|l| l.contains("connections not followed (--max-sockets)")),
        "{:?}",
        finished.stderr
    );
    // The listener and the client are followed; the accepted socket is not,
    // so its later transitions have unknown durations.
    let records = finished.records("transition");
    let ours = touching(&records, &server);
    let accepted: Vec<&&Value> = ours
        .iter()
        .filter(|r| r["lport"] == server.port() && r["rport"] != 0)
        .collect();
    assert!(accepted.len() >= 2, "{ours:#?}");
    assert!(
        accepted[1..].iter().all(|r| r["dur"] == "unknown"),
        "{accepted:#?}"
    );
}

#[test]
fn killed_hard_it_leaves_nothing_attached_and_starts_again() {
    let tracer = Tracer::start(&["--json"]);
    let ids = prog_ids_of(tracer.pid());
    assert!(ids.len() >= 8, "its programs: {ids:?}");
    let finished = tracer.signal_and_wait(Signal::SIGKILL);
    assert!(!finished.status.success());
    // The kernel frees a program once its last reference (fd, link,
    // perf event) is gone: at once, bar an RCU grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.iter().any(|id| prog_exists(*id)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = ids.iter().filter(|id| prog_exists(**id)).collect();
    assert!(left.is_empty(), "programs left after kill -9: {left:?}");
    // A second start right after works and sees traffic.
    let again = Tracer::start(&["--json"]);
    let (server, _) = client_closes_first("127.0.0.1:0", Duration::ZERO);
    let finished = again.stop_lossless();
    let records = since_start(finished.records("transition"));
    assert_eq!(touching(&records, &server).len(), 12);
}

#[test]
fn two_instances_each_see_every_transition() {
    let (a, b) = (Tracer::start(&["--json"]), Tracer::start(&["--json"]));
    let servers: Vec<SocketAddr> = (0..5)
        .map(|_| client_closes_first("127.0.0.1:0", Duration::ZERO).0)
        .collect();
    for finished in [a.stop_lossless(), b.stop_lossless()] {
        let records = since_start(finished.records("transition"));
        for server in &servers {
            assert_eq!(touching(&records, server).len(), 12, "{server}");
        }
    }
}

/// The transitions and the timewait sockets come through BTF tracepoints
/// where the kernel's BTF allows, else through the classic and raw ones:
/// the same records either way (IPv4, IPv6, an abort, a refused connect, a
/// timewait socket armed and killed), field by field but the time.
#[test]
fn the_btf_and_classic_tracepoints_send_the_same_records() {
    let btf = Tracer::start(&["--json"]);
    let classic = Tracer::start(&["--json", "--pretend-missing", "tp_btf"]);
    // Each through the programs it says: a BTF program the kernel refused
    // would be replaced by its twin without a word.
    const TRACING: u32 = 26;
    let btf_programs = |t: &Tracer| {
        prog_types_of(t.pid())
            .into_iter()
            .filter(|&kind| kind == TRACING)
            .count()
    };
    assert_eq!(
        btf_programs(&btf),
        4,
        "the transitions and 3 timer programs"
    );
    assert_eq!(btf_programs(&classic), 0);
    let mut servers: Vec<SocketAddr> = ["127.0.0.1:0", "[::1]:0"]
        .iter()
        .map(|bind| client_closes_first(bind, Duration::ZERO).0)
        .collect();
    // The IPv4 client's timewait socket ends early: a cancel, not an expiry.
    let ss = Command::new("ss")
        .args(["-K", "-tn", "state", "time-wait", "dst"])
        .arg(servers[0].to_string())
        .output()
        .expect("ss (iproute2)");
    assert!(ss.status.success(), "{ss:?}");
    // An abort, and a connect to a port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let aborted = listener.local_addr().unwrap();
    let client = TcpStream::connect(aborted).unwrap();
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    drop(listener);
    servers.push(aborted);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(TcpStream::connect(closed).is_err());
    servers.push(closed);
    thread::sleep(Duration::from_millis(100));
    let (btf, classic) = (btf.stop_lossless(), classic.stop_lossless());
    let fields = |r: &Value| -> Value {
        let mut r = r.clone();
        let map = r.as_object_mut().unwrap();
        for time in ["time", "ts_ns", "dur", "dur_ns"] {
            map.remove(time);
        }
        // Timer lengths are read against the clock each program reads.
        if let Some(tw) = map.get_mut("timewait").and_then(Value::as_object_mut) {
            tw.remove("timer_ns");
        }
        r
    };
    let (btf, classic) = (btf.records("transition"), classic.records("transition"));
    for server in &servers {
        let ours = |records: &[Value]| -> Vec<Value> {
            touching(records, server).into_iter().map(fields).collect()
        };
        let (a, b) = (ours(&btf), ours(&classic));
        assert!(a.len() >= 2, "{server}: {a:#?}");
        assert_eq!(a, b, "{server}");
    }
    let timewait = |event: &str| {
        touching(&btf, &servers[0])
            .iter()
            .filter(|r| r["timewait"]["event"] == event)
            .count()
    };
    assert_eq!((timewait("begins"), timewait("ends")), (1, 1), "{btf:#?}");
}

/// A closed terminal (SIGHUP) and Ctrl-\\ (SIGQUIT) end tracing as Ctrl-C
/// does, with the summary, nothing lost on the way out.
#[test]
fn sighup_and_sigquit_end_cleanly_with_the_summary() {
    for signal in [Signal::SIGHUP, Signal::SIGQUIT] {
        let tracer = Tracer::start(&["--json"]);
        let (server, _) = client_closes_first("127.0.0.1:0", Duration::ZERO);
        thread::sleep(Duration::from_millis(100));
        let finished = tracer.signal_and_wait(signal);
        assert!(finished.status.success(), "{signal}: {:?}", finished.stderr);
        assert!(
            finished
                .stderr
                .iter()
                .any(|l| l.contains(" transitions in ")),
            "{signal}: {:?}",
            finished.stderr
        );
        assert_eq!(finished.records("summary").len(), 1, "{signal}");
        let records = since_start(finished.records("transition"));
        assert_eq!(
            touching(&records, &server).len(),
            12,
            "{signal}: nothing lost on the way out"
        );
    }
}

/// SIGUSR1: a summary now, in every mode (the daemon's too), and tracing
/// goes on.
#[test]
fn sigusr1_prints_a_summary_now_and_tracing_goes_on() {
    let summaries = |tracer: &Tracer| {
        tracer
            .stdout_so_far()
            .iter()
            .filter(|l| l.contains(r#""type":"summary""#))
            .count()
    };
    let usr1 = |tracer: &Tracer| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(tracer.pid() as i32),
            Signal::SIGUSR1,
        )
        .expect("signal tcptrace");
    };
    // The JSON summaries, then a connection after them: still traced.
    let tracer = Tracer::start(&["--json", "--summary"]);
    usr1(&tracer);
    wait_for(|| summaries(&tracer) == 1, "a summary after SIGUSR1");
    usr1(&tracer);
    wait_for(|| summaries(&tracer) == 2, "another");
    client_closes_first("127.0.0.1:0", Duration::ZERO);
    let finished = tracer.stop_lossless();
    let summary = finished.records("summary");
    assert_eq!(summary.len(), 3, "two asked for and the final one");
    assert!(
        summary[2]["transitions"].as_u64().unwrap() >= 10,
        "the connection after them was traced: {}",
        summary[2]
    );
    // The daemon prints nothing on stdout, except what is asked for.
    let daemon = Tracer::start(&["--quiet", "--metrics", "127.0.0.1:0"]);
    thread::sleep(Duration::from_millis(300));
    assert!(daemon.stdout_so_far().is_empty());
    usr1(&daemon);
    wait_for(
        || !daemon.stdout_so_far().is_empty(),
        "a summary from the daemon",
    );
    let finished = daemon.stop();
    assert!(finished.status.success(), "{:?}", finished.stderr);
}

#[test]
fn diagnose_ends_early_on_ctrl_c_with_its_report() {
    let tracer = Tracer::start(&["diagnose", "--for", "600", "--json"]);
    let started = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    let finished = tracer.stop();
    assert!(started.elapsed() < Duration::from_secs(30));
    // Whatever the host's other traffic gave: 0, 3 or 4, never a failure.
    assert!(
        matches!(finished.status.code(), Some(0 | 3 | 4)),
        "{:?}: {:?}",
        finished.status,
        finished.stderr
    );
    let summaries = finished.records("summary");
    assert_eq!(summaries.len(), 1, "the report");
    assert!(summaries[0]["findings"].is_array());
    assert!(finished.records("transition").is_empty(), "quietly");
}

/// With an optional feature unavailable, tcptrace says which and why, once,
/// and the rest works.
#[test]
fn a_missing_kernel_feature_is_one_line_and_the_rest_works() {
    let cases = [
        (
            "tw_timer_handler",
            "tcptrace: warning: TIME_WAIT not tracked: tw_timer_handler is not in /proc/kallsyms",
        ),
        (
            "timer_cancel",
            "tcptrace: warning: TIME_WAIT not tracked: tracepoint timer:timer_cancel not found in tracefs",
        ),
        (
            "reqsk_timer_handler",
            "tcptrace: warning: reqsk_timer_handler not in /proc/kallsyms: reopened timewait sockets are reported as killed",
        ),
        (
            "sys_exit_bind",
            "tcptrace: warning: failed binds (EADDRINUSE) not counted: tracepoint syscalls:sys_exit_bind not found in tracefs (needs Linux 5.5 or newer)",
        ),
        (
            "net.ns.inum",
            "tcptrace: warning: network namespaces unavailable (BTF struct net.ns has no member inum); netns is shown as 0",
        ),
        (
            "tcp_retransmit_skb",
            "tcptrace: warning: retransmits (SYN, SYN-ACK and data) not counted: tracepoint tcp:tcp_retransmit_skb not found in tracefs (needs Linux 5.5 or newer)",
        ),
        (
            "reason",
            "tcptrace: warning: the kernel's reasons for resets are off (field reason is missing (pretended)); verdicts as usual",
        ),
    ];
    for (name, says) in cases {
        let tracer = Tracer::start(&["--json", "--pretend-missing", name]);
        let (server, _) = client_closes_first("127.0.0.1:0", Duration::ZERO);
        let finished = tracer.stop_lossless();
        assert!(finished.status.success(), "{name}: {:?}", finished.stderr);
        let said: Vec<&String> = finished
            .stderr
            .iter()
            .filter(|l| l.contains("warning:"))
            .collect();
        assert_eq!(said, [says], "{name}: {:?}", finished.stderr);
        let records = since_start(finished.records("transition"));
        let ours = touching(&records, &server);
        assert_eq!(ours.len(), 12, "{name}: the transitions are all there");
        if name == "net.ns.inum" {
            assert!(ours.iter().all(|r| r["netns"] == 0), "{name}");
        }
    }
}

/// Runs tcptrace with `stdout`, which cannot be written: it must end with
/// one clear line naming the error, exit 1, no panic.
fn an_output_failure_is_one_line(stdout: std::fs::File, error: &str) {
    let mut child = Command::new(BIN)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("tcptrace exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("tcptrace: writing output failed: {error}"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A full disk under the output file.
#[test]
fn a_full_disk_is_one_line_and_a_failure() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    an_output_failure_is_one_line(full, "No space left on device (os error 28)");
}

/// stdout open read-only (`exec 7<file; tcptrace >&7`): every write fails
/// with EBADF, which std's own stdout takes for success. It must be said,
/// as a full disk is, not lost.
#[test]
fn an_unwritable_stdout_is_one_line_and_a_failure() {
    let read_only = std::fs::File::open("/dev/null").unwrap();
    an_output_failure_is_one_line(read_only, "Bad file descriptor (os error 9)");
}

/// A daemon whose stderr cannot be written (a full disk, a journal pipe
/// gone) goes on: its lines are dropped, it does not die of them.
#[test]
fn an_unwritable_stderr_does_not_stop_tracing() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["--summary", "--json"])
        .stdout(Stdio::piped())
        .stderr(full)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "tcptrace ended with its stderr full"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("tcptrace exits");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(status.success(), "{status:?}");
    let summary: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["type"], "summary");
}
