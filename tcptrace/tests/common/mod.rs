//! Harness for the integration tests: runs the real `tcptrace` binary (which
//! loads the real eBPF programs on the running kernel) and collects its output.
//! These tests need root. They do not skip without it: CI runs as root, and a
//! skipped tracer test proves nothing.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) mod http;
pub(crate) mod net;
pub(crate) mod peer;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tcptrace");

/// A running `tcptrace`.
pub(crate) struct Tracer {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

fn collect<R: std::io::Read + Send + 'static>(
    stream: R,
    lines: Arc<Mutex<Vec<String>>>,
    ready: Option<mpsc::Sender<()>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains("tracing TCP state transitions")
                && let Some(ready) = &ready
            {
                let _ = ready.send(());
            }
            lines.lock().unwrap().push(line);
        }
    })
}

impl Tracer {
    /// Starts `tcptrace ARGS` and waits until its programs are attached.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with(BIN, args)
    }

    /// Starts `PROGRAM ARGS`, a wrapper that runs tcptrace (`setpriv ...
    /// BIN`), and waits until its programs are attached.
    pub(crate) fn start_with(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), None),
            collect(child.stderr.take().unwrap(), stderr.clone(), Some(ready_tx)),
        ];
        let mut tracer = Self {
            child,
            stdout,
            stderr,
            readers,
        };
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = tracer.child.kill();
            let finished = tracer.finish();
            panic!(
                "tcptrace did not start (this test needs root and a BPF-capable kernel): {}",
                finished.stderr.join("\n")
            );
        }
        tracer
    }

    /// Stops with SIGINT, as Ctrl-C would, after giving the periodic drain
    /// time to pick up the last transitions.
    pub(crate) fn stop(self) -> Finished {
        thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("signal tcptrace");
        self.finish()
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it a signal, and waits for it to end.
    pub(crate) fn signal_and_wait(self, signal: nix::sys::signal::Signal) -> Finished {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal tcptrace");
        self.finish()
    }

    /// Waits for it to end by itself (`diagnose --for`, up to 2 minutes).
    pub(crate) fn wait(self) -> Finished {
        self.finish_within(Duration::from_secs(120))
    }

    fn finish(self) -> Finished {
        self.finish_within(Duration::from_secs(30))
    }

    fn finish_within(mut self, patience: Duration) -> Finished {
        let status = wait_timeout(&mut self.child, patience).expect("tcptrace exits");
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        Finished {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
        }
    }

    /// Stops like `stop`, and fails the test if the tracer lost events: the
    /// assertions that follow would fail less clearly.
    pub(crate) fn stop_lossless(self) -> Finished {
        let finished = self.stop();
        let (_, lost) = finished.summary();
        assert_eq!(
            lost, 0,
            "tcptrace lost {lost} events (was the host too busy?): {:?}",
            finished.stderr
        );
        finished
    }

    pub(crate) fn stdout_so_far(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub(crate) fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

/// A test that failed half way leaves no tracer running behind it.
impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of the BPF programs process `pid` holds (its fdinfo's `prog_id`).
pub(crate) fn prog_ids_of(pid: u32) -> Vec<u32> {
    fdinfo_values(pid, "prog_id:")
}

/// The types of the BPF programs process `pid` holds (`prog_type`:
/// 17 raw tracepoint, 26 tracing, as BTF tracepoints are).
pub(crate) fn prog_types_of(pid: u32) -> Vec<u32> {
    fdinfo_values(pid, "prog_type:")
}

/// The value of `key` in each of process `pid`'s fdinfo files that has it.
fn fdinfo_values(pid: u32, key: &str) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// Whether the kernel still has BPF program `id` (`BPF_PROG_GET_FD_BY_ID`).
pub(crate) fn prog_exists(id: u32) -> bool {
    // union bpf_attr for BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            13, // BPF_PROG_GET_FD_BY_ID
            attr.as_ptr(),
            size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

/// Waits up to 10 s for `done`, polling; fails the test saying `what`.
pub(crate) fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

impl Finished {
    /// The JSON transition records, parsed.
    pub(crate) fn json(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
            })
            .collect()
    }

    /// The JSON records of one `type` ("transition", "closed", "summary").
    pub(crate) fn records(&self, kind: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|r| r["type"] == kind)
            .collect()
    }

    /// The exit summary's numbers: (transitions, lost).
    pub(crate) fn summary(&self) -> (u64, u64) {
        let line = self
            .stderr
            .iter()
            .find(|l| l.contains(" transitions in "))
            .unwrap_or_else(|| panic!("no summary in stderr: {:?}", self.stderr));
        let words: Vec<&str> = line.split_whitespace().collect();
        let transitions = words[1].parse().unwrap();
        let lost_at = words.iter().position(|w| *w == "lost").unwrap();
        let lost = words[lost_at - 1].parse().unwrap();
        (transitions, lost)
    }
}

/// A client/server exchange on one connection where the client closes first,
/// then the server; the listener is closed last. Returns (listener address,
/// client address).
pub(crate) fn client_closes_first(bind: &str, hold: Duration) -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind(bind).unwrap();
    let server = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    let client_addr = client.local_addr().unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    std::io::Write::write_all(&mut client, b"ping").unwrap();
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).unwrap();
    thread::sleep(hold);
    drop(client);
    // Wait for the client's FIN before closing, so the server side passes
    // through CLOSE_WAIT and LAST_ACK.
    assert_eq!(accepted.read(&mut buf).unwrap(), 0);
    drop(accepted);
    drop(listener);
    (server, client_addr)
}

/// Transitions of one socket, as "OLD->NEW" strings, in order.
pub(crate) fn sequence(records: &[&Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{}->{}",
                r["old"].as_str().unwrap(),
                r["new"].as_str().unwrap()
            )
        })
        .collect()
}

/// Drops the records of sockets older than the tracer, whose time in state
/// is unknown: the timewait socket of an earlier connection between the same
/// ports (earlier tests, a benchmark) can end while a test runs, expired or
/// taken over by a new connect.
pub(crate) fn since_start(records: Vec<Value>) -> Vec<Value> {
    records
        .into_iter()
        .filter(|r| r["dur"] != "unknown")
        .collect()
}

/// Records whose local or remote endpoint is `addr`.
pub(crate) fn touching<'a>(records: &'a [Value], addr: &SocketAddr) -> Vec<&'a Value> {
    let ip = addr.ip().to_string();
    records
        .iter()
        .filter(|r| {
            (r["laddr"] == ip.as_str() && r["lport"] == addr.port())
                || (r["raddr"] == ip.as_str() && r["rport"] == addr.port())
        })
        .collect()
}

/// Groups records by socket address, keeping each socket's order.
pub(crate) fn by_socket<'a>(records: &[&'a Value]) -> Vec<(String, Vec<&'a Value>)> {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for r in records {
        let sock = r["sock"].as_str().unwrap().to_owned();
        match groups.iter_mut().find(|(s, _)| *s == sock) {
            Some((_, v)) => v.push(r),
            None => groups.push((sock, vec![r])),
        }
    }
    groups
}

/// Reads whatever a child wrote to stdout so far, line by line, until `n` lines.
pub(crate) fn read_lines(stdout: &mut BufReader<ChildStdout>, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line);
    }
    lines
}

/// The `main` of a scenario binary: the binary is its own peer (`BIN peer
/// ...` runs one, see [`net::Peer`]), else it runs its scenarios side by side.
pub(crate) fn scenario_main(peer: fn(&[String]) -> !, scenarios: &[(&'static str, fn())]) -> ! {
    run_peer_if_asked(peer);
    run_side_by_side(scenarios)
}

/// Runs `peer` (never returning) when this process was started as one.
pub(crate) fn run_peer_if_asked(peer: fn(&[String]) -> !) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("peer") {
        peer(&args[2..]);
    }
}

/// The harness of the scenario binaries that run side by side: each
/// scenario (those whose name contains the first argument, if any) in its own
/// thread, then the closing lines cargo reads. Exits 101 if one failed.
pub(crate) fn run_side_by_side(scenarios: &[(&'static str, fn())]) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let filter: Option<&String> = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let started = Instant::now();
    println!("\nrunning {} tests", scenarios.len());
    let running: Vec<_> = scenarios
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
        .map(|&(name, scenario)| {
            (
                name,
                thread::spawn(move || std::panic::catch_unwind(scenario).is_ok()),
            )
        })
        .collect();
    let filtered = scenarios.len() - running.len();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, handle) in running {
        if handle.join().unwrap_or(false) {
            println!("test {name} ... ok");
            passed += 1;
        } else {
            println!("test {name} ... FAILED");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 101 })
}
