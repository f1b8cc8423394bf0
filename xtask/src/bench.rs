//! `./x bench`: tcptrace's overhead and losses under loopback connection
//! churn, as ratios measured within one run. Configurations are interleaved
//! (A B C ... A B C ...) so that the shared machine's drift hits them alike;
//! each reports medians and spreads.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::churn::ChurnArgs;

#[derive(Clone, Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Repetitions of each configuration (interleaved).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Another tcptrace binary (e.g. the last release) to run the live log,
    /// --json and --summary with too, interleaved with this one's: a change's
    /// cost measured in one run.
    #[arg(long, value_name = "BINARY")]
    pub compare: Option<PathBuf>,
    /// Run only the configurations whose name starts with one of these (the
    /// baseline always, as the ratios need it), and skip the start-up
    /// measurements: a quicker look at one mode.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub churn: ChurnArgs,
}

/// A configuration under test: a name and tcptrace's arguments (None: no tracer).
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    args: Option<&'static [&'static str]>,
    /// Stop the agent (SIGSTOP) while the churn runs, with rings large enough
    /// to hold the whole run: what the kernel side alone costs. The agent
    /// drains everything once resumed, so losses still count.
    paused: bool,
    /// Run the `--compare` binary.
    compared: bool,
    /// Scrape its metrics endpoint every second while the churn runs.
    scraped: bool,
    /// Give it a terminal (a pseudo-terminal, read and thrown away): `top`.
    terminal: bool,
}

const CONFIGS: [Config; 9] = [
    Config {
        name: "baseline (no tracer)",
        args: None,
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "floor (empty programs)",
        args: Some(&["--bench-floor"]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "live log to a file (TIME_WAIT on)",
        args: Some(&[]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "--json to a file",
        args: Some(&["--json"]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "--summary --no-timewait",
        args: Some(&["--summary", "--no-timewait"]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "--summary",
        args: Some(&["--summary"]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "--summary --metrics, scraped 1/s",
        args: Some(&["--summary", "--metrics", "127.0.0.1:0"]),
        paused: false,
        compared: false,
        scraped: true,
        terminal: false,
    },
    Config {
        name: "top, drawn every second",
        args: Some(&["top"]),
        paused: false,
        compared: false,
        scraped: false,
        terminal: true,
    },
    Config {
        name: "kernel side only (agent stopped)",
        args: Some(&["--summary"]),
        paused: true,
        compared: false,
        scraped: false,
        terminal: false,
    },
];

impl Config {
    /// Whether `--only name` picks it.
    fn named(&self, name: &str) -> bool {
        self.name.starts_with(name)
    }
}

/// With `--compare`: the same as these, run with the other binary.
const COMPARED: [Config; 3] = [
    Config {
        name: "  live log, --compare",
        args: Some(&[]),
        paused: false,
        compared: true,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "  --json, --compare",
        args: Some(&["--json"]),
        paused: false,
        compared: true,
        scraped: false,
        terminal: false,
    },
    Config {
        name: "  --summary, --compare",
        args: Some(&["--summary"]),
        paused: false,
        compared: true,
        scraped: false,
        terminal: false,
    },
];

/// The configurations of a run, in the order they are interleaved: each
/// compared one right after its counterpart. `only`: as `--only`.
fn configs(compare: bool, only: &[String]) -> Vec<Config> {
    let mut all = Vec::new();
    for (i, config) in CONFIGS.into_iter().enumerate() {
        if i > 0 && !only.is_empty() && !only.iter().any(|o| config.named(o)) {
            continue;
        }
        all.push(config);
        if compare
            && let Some(twin) = COMPARED
                .iter()
                .find(|c| c.args == config.args && !config.paused)
        {
            all.push(*twin);
        }
    }
    all
}

/// Bytes one connection of the churn puts in the rings, with room to spare:
/// 12 records (5 transitions a side, a timewait socket armed and expired),
/// each 96 bytes and an 8-byte ring header, counted as 112.
const RING_BYTES_PER_CONN: u64 = 12 * 112;

/// A per-CPU ring size (for `--ring-size`) that holds a whole run of
/// `connections` even if one CPU produced all of it.
fn paused_ring_size(connections: u64) -> String {
    let bytes = (connections * RING_BYTES_PER_CONN).next_power_of_two();
    (bytes.clamp(1 << 20, 1 << 30)).to_string()
}

/// One measured run.
#[derive(Clone, Debug, Default)]
struct Sample {
    conns_per_s: f64,
    /// Churn CPU (its own process) per connection, µs.
    churn_cpu_us_per_conn: f64,
    caused: u64,
    received: u64,
    lost: u64,
    /// Agent CPU per received event, ns.
    agent_ns_per_event: f64,
    /// Agent CPU per connection of the churn, µs.
    agent_us_per_conn: f64,
    /// The same, of its main thread only (the loop that drains the rings):
    /// what bounds the rate it keeps up with.
    loop_ns_per_event: f64,
    agent_peak_rss_kib: u64,
    kernel_map_kib: u64,
}

/// CPU time of a process (all its threads), in seconds.
fn process_cpu(pid: u32) -> Result<f64> {
    let mut total = 0.0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended since the listing is simply not counted.
        if let Ok(cpu) = cpu_of(&task?.path().join("schedstat")) {
            total += cpu;
        }
    }
    Ok(total)
}

/// CPU time of a process's main thread, in seconds.
fn main_thread_cpu(pid: u32) -> Result<f64> {
    cpu_of(Path::new(&format!("/proc/{pid}/task/{pid}/schedstat")))
}

/// The time on a CPU from a thread's `schedstat` (nanoseconds, first
/// field), in seconds: `stat`'s utime and stime count whole clock ticks
/// (10 ms), 20 ns an event over a run of 500 000 records.
fn cpu_of(path: &Path) -> Result<f64> {
    let stat = fs::read_to_string(path)?;
    let ns: f64 = stat
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?;
    Ok(ns / 1e9)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Memory the kernel charges for the BPF maps a process holds ("memlock" in
/// each map fd's fdinfo).
fn map_memory_kib(pid: u32) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        / 1024
}

struct RunningTracer {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

/// A bench that fails part-way leaves no tracer running: one that was
/// not stopped is killed.
impl Drop for RunningTracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes the last run's output at `out` (hundreds of MB for --json) and
/// writes everything back first: its writeback would otherwise run during
/// the next run, and make whichever run comes next in a repetition pay for
/// the one before. Before a run is timed, not inside it.
fn fresh_output(out: &Path) {
    let _ = fs::remove_file(out);
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

fn start_tracer(binary: &Path, args: &[&str], out: &Path, terminal: bool) -> Result<RunningTracer> {
    let mut command = Command::new(binary);
    command.args(args).stderr(Stdio::piped());
    match terminal {
        // A 160x45 pseudo-terminal for stdin and stdout; what is drawn on
        // it is read and thrown away.
        true => {
            let size = nix::pty::Winsize {
                ws_row: 45,
                ws_col: 160,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let pty = nix::pty::openpty(Some(&size), None)?;
            command
                .stdin(fs::File::from(pty.slave.try_clone()?))
                .stdout(fs::File::from(pty.slave));
            let mut screen = fs::File::from(pty.master);
            thread::spawn(move || std::io::copy(&mut screen, &mut std::io::sink()));
        }
        false => {
            command.stdout(fs::File::create(out)?);
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().context("stderr")?;
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let tracer = RunningTracer { child, stderr: rx };
    loop {
        let line = tracer
            .stderr
            .recv_timeout(Duration::from_secs(30))
            .context("tcptrace did not start")?;
        if line.contains("tracing TCP state transitions") {
            return Ok(tracer);
        }
    }
}

/// The metrics endpoint's address, from the line tcptrace says it on.
fn metrics_addr(tracer: &RunningTracer) -> Result<std::net::SocketAddr> {
    loop {
        let line = tracer
            .stderr
            .recv_timeout(Duration::from_secs(10))
            .context("tcptrace did not say its metrics address")?;
        if let Some(rest) = line.split("metrics on http://").nth(1) {
            return rest
                .split("/metrics")
                .next()
                .unwrap_or_default()
                .parse()
                .context("a metrics address");
        }
    }
}

/// Scrapes `/metrics` once a second, as Prometheus would, until stopped.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<Result<u64>>,
}

/// One scrape of `/metrics`: the exposition.
fn scrape(addr: std::net::SocketAddr) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let answer = String::from_utf8(answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!("scrape failed: {answer}"),
    }
}

/// A sample's value in an exposition, summed over the series whose name and
/// labels start with `series` and contain `with`.
fn sum_of(text: &str, series: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series) && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Scraper {
    fn start(addr: std::net::SocketAddr) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut scrapes = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                scrape(addr)?;
                scrapes += 1;
                thread::sleep(Duration::from_secs(1));
            }
            Ok(scrapes)
        });
        Self { stop, thread }
    }

    /// Stops it; how many scrapes it made.
    fn stop(self) -> Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the scraper panicked"))?
    }
}

/// Stops the tracer with SIGINT; returns (received, lost) transitions from
/// its exit line (`N transitions in T s, M lost (ring buffer full: K
/// transition, ...)`: the transitions among the records lost).
fn stop_tracer(tracer: RunningTracer) -> Result<(u64, u64)> {
    stop_tracer_with_all(tracer).map(|(received, lost, _)| (received, lost))
}

/// As `stop_tracer`, with the records of every kind lost too (`M`).
fn stop_tracer_with_all(mut tracer: RunningTracer) -> Result<(u64, u64, u64)> {
    send_signal(tracer.child.id(), Signal::SIGINT)?;
    let status = tracer.child.wait()?;
    if !status.success() {
        bail!("tcptrace exited with {status}");
    }
    let summary = tracer
        .stderr
        .try_iter()
        .find(|l| l.contains(" transitions in "))
        .context("no summary from tcptrace")?;
    let words: Vec<&str> = summary.split_whitespace().collect();
    let received = words[1].parse()?;
    // Only kinds with losses are listed.
    let lost = summary
        .split([':', ',', ')'])
        .find_map(|part| part.trim().strip_suffix(" transition"))
        .map_or(Ok(0), str::parse)?;
    // "N transitions in T s, L lost ...": L counts every kind.
    let all = words
        .iter()
        .position(|w| *w == "lost")
        .and_then(|at| words.get(at.checked_sub(1)?)?.parse().ok())
        .context("no lost count in tcptrace's exit line")?;
    Ok((received, lost, all))
}

fn send_signal(pid: u32, signal: Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
    Ok(())
}

/// Runs the churn generator as its own process (so its CPU is its own).
fn churn(args: &ChurnArgs) -> Result<Value> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "churn",
        "--connections",
        &args.connections.to_string(),
        "--threads",
        &args.threads.to_string(),
    ]);
    if args.server_first {
        cmd.arg("--server-first");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("churn failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn run_once(config: &Config, binary: &Path, out_dir: &Path, args: &BenchArgs) -> Result<Sample> {
    let tracer = match config.args {
        Some(tracer_args) => {
            let mut tracer_args = tracer_args.to_vec();
            let ring_size = config
                .paused
                .then(|| paused_ring_size(args.churn.connections));
            if let Some(size) = &ring_size {
                tracer_args.extend(["--ring-size", size]);
            }
            let out = out_dir.join(format!(
                "{}.out",
                config
                    .name
                    .split_whitespace()
                    .next()
                    .unwrap_or("run")
                    .trim_start_matches('-')
            ));
            fresh_output(&out);
            Some(start_tracer(binary, &tracer_args, &out, config.terminal)?)
        }
        None => None,
    };
    let pid = tracer.as_ref().map(|t| t.child.id());
    let scraper = match (&tracer, config.scraped) {
        (Some(t), true) => Some(Scraper::start(metrics_addr(t)?)),
        _ => None,
    };
    let cpu_before = pid.map(process_cpu).transpose()?.unwrap_or(0.0);
    let loop_before = pid.map(main_thread_cpu).transpose()?.unwrap_or(0.0);
    let paused = pid.filter(|_| config.paused);
    if let Some(pid) = paused {
        send_signal(pid, Signal::SIGSTOP)?;
    }
    let report = churn(&args.churn);
    if let Some(pid) = paused {
        send_signal(pid, Signal::SIGCONT)?;
    }
    let report = report?;
    if let Some(scraper) = scraper {
        let scrapes = scraper.stop()?;
        if scrapes == 0 {
            bail!("no scrape of the metrics endpoint answered");
        }
    }
    // Let the periodic drain pick up the tail before reading the counters
    // (a resumed agent has the whole run to read).
    thread::sleep(Duration::from_millis(if config.paused {
        2000
    } else {
        200
    }));
    let cpu = pid.map(process_cpu).transpose()?.unwrap_or(0.0) - cpu_before;
    let loop_cpu = pid.map(main_thread_cpu).transpose()?.unwrap_or(0.0) - loop_before;
    let rss = pid.map_or(0, |p| status_kib(p, "VmHWM:"));
    let maps = pid.map_or(0, map_memory_kib);
    let (received, lost) = match tracer {
        Some(t) => stop_tracer(t)?,
        None => (0, 0),
    };
    let connections = report["connections"].as_u64().unwrap_or(0) as f64;
    let seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
    Ok(Sample {
        conns_per_s: connections / seconds,
        churn_cpu_us_per_conn: report["cpu_seconds"].as_f64().unwrap_or(0.0) * 1e6 / connections,
        caused: report["transitions"].as_u64().unwrap_or(0),
        received,
        lost,
        agent_us_per_conn: cpu * 1e6 / connections,
        agent_ns_per_event: if received > 0 {
            cpu * 1e9 / received as f64
        } else {
            0.0
        },
        loop_ns_per_event: if received > 0 {
            loop_cpu * 1e9 / received as f64
        } else {
            0.0
        },
        agent_peak_rss_kib: rss,
        kernel_map_kib: maps,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// Timewait sockets on the host now (`/proc/net/sockstat`, IPv4 and IPv6).
fn timewait_on_host() -> u64 {
    ["/proc/net/sockstat", "/proc/net/sockstat6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.starts_with("TCP:") || l.starts_with("TCP6:"))
                .filter_map(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let at = words.iter().position(|w| *w == "tw")?;
                    words.get(at + 1)?.parse::<u64>().ok()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

/// tcptrace started a second into a churn, as during an incident: how long
/// from exec to "tracing" (the rings fill unread meanwhile: the start-up
/// snapshot reads every socket the host has), and the records of every
/// kind lost over the run.
struct MidChurn {
    timewait: u64,
    seconds: f64,
    lost: u64,
}

fn start_in_churn(binary: &Path, out_dir: &Path, args: &ChurnArgs) -> Result<MidChurn> {
    let out = out_dir.join("midchurn.out");
    fresh_output(&out);
    let timewait = timewait_on_host();
    let churn_args = *args;
    let churn = thread::spawn(move || churn(&churn_args));
    thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let tracer = start_tracer(binary, &[], &out, false);
    let seconds = started.elapsed().as_secs_f64();
    let report = churn
        .join()
        .map_err(|_| anyhow::anyhow!("the churn thread panicked"));
    let (tracer, report) = (tracer?, report?);
    thread::sleep(Duration::from_millis(200));
    let (_, _, lost) = stop_tracer_with_all(tracer)?;
    report?;
    Ok(MidChurn {
        timewait,
        seconds,
        lost,
    })
}

/// How long tcptrace takes from exec to "tracing" (attached, start-up
/// snapshot taken) with the timewait sockets the host has now.
fn startup(binary: &Path, out_dir: &Path) -> Result<(u64, f64)> {
    let timewait = timewait_on_host();
    let started = std::time::Instant::now();
    let tracer = start_tracer(binary, &["--summary"], &out_dir.join("startup.out"), false)?;
    let seconds = started.elapsed().as_secs_f64();
    stop_tracer(tracer)?;
    Ok((timewait, seconds))
}

pub(crate) fn run(args: BenchArgs, root: &Path) -> Result<()> {
    let binary = root.join("target/release/tcptrace");
    if let Some(other) = &args.compare
        && !other.is_file()
    {
        bail!("--compare {}: no such file", other.display());
    }
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    if let Some(unknown) = args
        .only
        .iter()
        .find(|o| !CONFIGS.iter().any(|c| c.named(o)))
    {
        bail!(
            "--only {unknown}: no configuration's name starts with it (names: {})",
            CONFIGS.map(|c| format!("{:?}", c.name)).join(" ")
        );
    }
    let configs = configs(args.compare.is_some(), &args.only);
    let startups_too = args.only.is_empty();
    // Start-up on a quiet host first; again after the churn, with the
    // timewait sockets it left.
    let mut startups = Vec::new();
    if startups_too {
        startups.push(startup(&binary, &out_dir)?);
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    // This binary's runs, then the --compare binary's.
    let mut mid_churn: [Vec<MidChurn>; 2] = Default::default();
    for rep in 0..args.repeat {
        for (i, config) in configs.iter().enumerate() {
            let binary = match (config.compared, &args.compare) {
                (true, Some(other)) => other,
                _ => &binary,
            };
            let s = run_once(config, binary, &out_dir, &args)
                .with_context(|| format!("{} (repetition {})", config.name, rep + 1))?;
            eprintln!(
                "xtask: bench {}/{} {:<24} {:>8.0} conn/s",
                rep + 1,
                args.repeat,
                config.name,
                s.conns_per_s
            );
            samples[i].push(s);
        }
        if !startups_too {
            continue;
        }
        // The --compare binary too, right before or after (in turn): a
        // change to start-up measured in one run.
        let mut both: Vec<(bool, &PathBuf)> = std::iter::once((false, &binary))
            .chain(args.compare.as_ref().map(|other| (true, other)))
            .collect();
        if rep % 2 == 1 {
            both.reverse();
        }
        for (compared, binary) in both {
            let mid = start_in_churn(binary, &out_dir, &args.churn)
                .with_context(|| format!("started during the churn (repetition {})", rep + 1))?;
            eprintln!(
                "xtask: bench {}/{} started during the churn{}: {:.2} s to tracing, {} lost",
                rep + 1,
                args.repeat,
                if compared { ", --compare" } else { "" },
                mid.seconds,
                mid.lost
            );
            mid_churn[usize::from(compared)].push(mid);
        }
    }
    if startups_too {
        startups.push(startup(&binary, &out_dir)?);
    }
    // Each run is compared with the baseline run of the same repetition, a
    // few seconds apart: the machine's speed drifts more between repetitions
    // than within one.
    let base_cpu = median(samples[0].iter().map(|s| s.churn_cpu_us_per_conn).collect());
    let mut rows = Vec::new();
    println!(
        "\n{:<24} {:>8} {:>15} {:>22} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "configuration",
        "conn/s",
        "ratio (min-max)",
        "added CPU µs/conn",
        "churn CPU",
        "caused",
        "received",
        "lost",
        "agent",
        "its loop",
        "agent RSS",
        "maps"
    );
    println!(
        "{:<24} {:>8} {:>15} {:>22} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "",
        "median",
        "to baseline",
        "total = kernel + agent",
        "µs/conn",
        "",
        "",
        "",
        "ns/event",
        "ns/event",
        "peak KiB",
        "KiB"
    );
    for (config, runs) in configs.iter().zip(&samples) {
        let ratios: Vec<f64> = runs
            .iter()
            .zip(&samples[0])
            .map(|(s, base)| s.conns_per_s / base.conns_per_s)
            .collect();
        let (lo, hi) = spread(&ratios);
        let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f).collect());
        // What the tracer adds to each connection: the churn's own CPU
        // (the programs run in its system calls and softirqs) over the
        // baseline of the same repetition, and the agent's.
        let kernel: Vec<f64> = runs
            .iter()
            .zip(&samples[0])
            .map(|(s, base)| s.churn_cpu_us_per_conn - base.churn_cpu_us_per_conn)
            .collect();
        let total: Vec<f64> = kernel
            .iter()
            .zip(runs)
            .map(|(k, s)| k + s.agent_us_per_conn)
            .collect();
        let (kernel, agent, total) = (median(kernel), m(|s| s.agent_us_per_conn), median(total));
        let row = json!({
            "configuration": config.name.trim(),
            "binary": if config.compared { args.compare.as_ref().map(|p| p.display().to_string()) } else { None },
            "tracer_args": config.args,
            "conns_per_s_median": m(|s| s.conns_per_s),
            "ratio_median": median(ratios.clone()),
            "ratio_min": lo,
            "ratio_max": hi,
            "churn_cpu_us_per_conn_median": m(|s| s.churn_cpu_us_per_conn),
            "added_us_per_conn_median": total,
            "added_kernel_us_per_conn_median": kernel,
            "added_agent_us_per_conn_median": agent,
            "churn_cpu_ratio": m(|s| s.churn_cpu_us_per_conn) / base_cpu,
            "caused_per_run": runs.first().map_or(0, |s| s.caused),
            "received_median": m(|s| s.received as f64),
            "lost_total": runs.iter().map(|s| s.lost).sum::<u64>(),
            "unaccounted_total": runs.iter().map(|s| (s.caused as i64) - (s.received + s.lost) as i64).sum::<i64>(),
            "agent_ns_per_event_median": m(|s| s.agent_ns_per_event),
            "loop_ns_per_event_median": m(|s| s.loop_ns_per_event),
            "agent_peak_rss_kib_max": runs.iter().map(|s| s.agent_peak_rss_kib).max(),
            "kernel_map_kib": runs.iter().map(|s| s.kernel_map_kib).max(),
        });
        println!(
            "{:<24} {:>8.0} {:>5.2} ({:.2}-{:.2}) {:>22} {:>10.2} {:>10} {:>10.0} {:>10} {:>9.0} {:>9.0} {:>10} {:>9}",
            config.name,
            m(|s| s.conns_per_s),
            median(ratios.clone()),
            lo,
            hi,
            format!("{total:.1} = {kernel:.1} + {agent:.1}"),
            m(|s| s.churn_cpu_us_per_conn),
            runs.first().map_or(0, |s| s.caused),
            m(|s| s.received as f64),
            runs.iter().map(|s| s.lost).sum::<u64>(),
            m(|s| s.agent_ns_per_event),
            m(|s| s.loop_ns_per_event),
            runs.iter().map(|s| s.agent_peak_rss_kib).max().unwrap_or(0),
            runs.iter().map(|s| s.kernel_map_kib).max().unwrap_or(0),
        );
        rows.push(row);
    }
    println!(
        "\n{} connections per run, {} client threads, {} closes first, {} repetitions interleaved; lost is summed over runs;\n\
         caused - received - lost is other TCP traffic on the host during the runs (0 on a quiet host).",
        args.churn.connections,
        args.churn.threads,
        if args.churn.server_first {
            "the server"
        } else {
            "the client"
        },
        args.repeat
    );
    for (timewait, seconds) in &startups {
        println!(
            "start-up (exec to tracing): {seconds:.2} s with {timewait} timewait sockets on the host{}",
            if *seconds > 1.0 {
                "  (over a second)"
            } else {
                ""
            }
        );
    }
    for (runs, which) in mid_churn.iter().zip(["", ", --compare"]) {
        if runs.is_empty() {
            continue;
        }
        let secs: Vec<f64> = runs.iter().map(|m| m.seconds).collect();
        let (lo, hi) = spread(&secs);
        println!(
            "start-up during the churn (live log, started 1 s in{which}): {:.2} s median ({lo:.2}-{hi:.2}) with {}-{} timewait sockets on the host; {} records lost over {} runs",
            median(secs.clone()),
            runs.iter().map(|m| m.timewait).min().unwrap_or(0),
            runs.iter().map(|m| m.timewait).max().unwrap_or(0),
            runs.iter().map(|m| m.lost).sum::<u64>(),
            runs.len()
        );
    }
    let machine = json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    let result = json!({"machine": machine, "connections": args.churn.connections, "threads": args.churn.threads,
        "server_first": args.churn.server_first, "repeat": args.repeat, "only": args.only, "results": rows,
        "startup": startups.iter().map(|(tw, s)| json!({"timewait_on_host": tw, "seconds": s})).collect::<Vec<_>>(),
        "startup_during_churn": mid_churn.iter().zip([false, true]).flat_map(|(runs, compared)| runs.iter().map(move |m| json!({"compared": compared, "timewait_on_host": m.timewait, "seconds": m.seconds, "lost_records": m.lost}))).collect::<Vec<_>>()});
    let path: PathBuf = out_dir.join("results.json");
    fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    println!("results: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_the_baseline_and_the_named() {
        let names = |only: &[&str], compare| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            configs(compare, &only).iter().map(|c| c.name).collect()
        };
        assert_eq!(names(&[], false).len(), CONFIGS.len());
        assert_eq!(
            names(&["top", "--summary"], false),
            [
                "baseline (no tracer)",
                "--summary --no-timewait",
                "--summary",
                "--summary --metrics, scraped 1/s",
                "top, drawn every second"
            ]
        );
        assert_eq!(
            names(&["top"], true),
            ["baseline (no tracer)", "top, drawn every second"]
        );
        assert_eq!(
            names(&["--json"], true),
            [
                "baseline (no tracer)",
                "--json to a file",
                "  --json, --compare"
            ]
        );
    }

    #[test]
    fn paused_rings_hold_a_whole_run() {
        // 50 000 connections need 67.2 MB: the next power of two.
        assert_eq!(paused_ring_size(50_000), (128u64 << 20).to_string());
        assert_eq!(paused_ring_size(1), (1u64 << 20).to_string());
        assert_eq!(paused_ring_size(10_000_000), (1u64 << 30).to_string());
    }
}

#[derive(Clone, Copy, Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Connections to churn through, in all.
    #[arg(long, default_value_t = 10_000_000)]
    pub connections: u64,
    /// Measure after every this many.
    #[arg(long, default_value_t = 2_500_000)]
    pub every: u64,
    /// Client threads of the churn.
    #[arg(long, default_value_t = 4)]
    pub threads: u64,
}

/// `./x soak`: the daemon (`--quiet --metrics`) through millions of churned
/// connections while scraped every second; its RSS and the series count at
/// each step should stay flat. A table on stdout, target/bench/soak.json.
pub(crate) fn soak(args: SoakArgs, root: &Path) -> Result<()> {
    let binary = root.join("target/release/tcptrace");
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    let tracer = start_tracer(
        &binary,
        &["--quiet", "--metrics", "127.0.0.1:0"],
        &out_dir.join("soak.out"),
        false,
    )?;
    let addr = metrics_addr(&tracer)?;
    let pid = tracer.child.id();
    let scraper = Scraper::start(addr);
    let chunk = args.every.min(250_000);
    let (mut done, mut rows) = (0u64, Vec::new());
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>8} {:>12} {:>10} {:>10}",
        "connections", "conn/s", "RSS KiB", "peak KiB", "series", "time_wait", "lost", "scrape ms"
    );
    let started = std::time::Instant::now();
    while done < args.connections {
        let n = chunk.min(args.connections - done);
        churn(&ChurnArgs {
            connections: n,
            threads: args.threads,
            server_first: false,
        })?;
        done += n;
        if done % args.every == 0 || done == args.connections {
            let text = scrape(addr)?;
            let series = text.lines().filter(|l| !l.starts_with('#')).count();
            let row = json!({
                "connections": done,
                "conns_per_s": done as f64 / started.elapsed().as_secs_f64(),
                "rss_kib": status_kib(pid, "VmRSS:"),
                "peak_rss_kib": status_kib(pid, "VmHWM:"),
                "series": series,
                "time_wait": sum_of(&text, "tcptrace_sockets{", "state=\"time_wait\"") as u64,
                "lost": sum_of(&text, "tcptrace_events_lost_total{", "ring_full") as u64,
                "scrape_ms": sum_of(&text, "tcptrace_scrape_duration_seconds", "") * 1e3,
            });
            println!(
                "{:>12} {:>10.0} {:>10} {:>10} {:>8} {:>12} {:>10} {:>10.1}",
                done,
                row["conns_per_s"].as_f64().unwrap_or(0.0),
                row["rss_kib"],
                row["peak_rss_kib"],
                series,
                row["time_wait"],
                row["lost"],
                row["scrape_ms"].as_f64().unwrap_or(0.0)
            );
            rows.push(row);
        }
    }
    let scrapes = scraper.stop()?;
    let (received, lost) = stop_tracer(tracer)?;
    println!("{scrapes} scrapes, {received} transitions received, {lost} lost");
    let path = out_dir.join("soak.json");
    fs::write(
        &path,
        serde_json::to_string_pretty(&json!({
            "connections": args.connections, "threads": args.threads, "scrapes": scrapes,
            "received": received, "lost": lost, "steps": rows,
        }))?,
    )?;
    println!("results: {}", path.display());
    Ok(())
}
