//! `tcptrace` binary: glue between the command line, the library and the
//! exit code — parse, decide what this kernel allows, attach, run the loop.

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use tcptrace::{
    agent::{self, AgentError, Ending, Outputs, Timing},
    cli::{self, Cli, Config, Rings},
    endpoint, features,
    findings::Severity,
    host::{meminfo, netns, privileges, snapshot},
    kernel::loader::{self, Tracer},
    pipeline::{Pipeline, Settings},
    render::{
        JsonPrinter, Printer, TextPrinter,
        clock::{WallClock, Zone},
        output::{Output, Sizes, Stdout},
        top::term::{self, Status, Top},
    },
    session::{Readers, Session},
};

/// A line on stderr, "tcptrace: " first. One that cannot be written (stderr
/// closed, a full disk, a journal pipe gone) is dropped: there is nowhere to
/// say it, and tcptrace must not die of it (`eprintln!` panics).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), "tcptrace: {}", format_args!($($arg)*));
    }};
}

fn main() -> ExitCode {
    // Allocations of 1 MiB or more (the growing tables of timewait sockets,
    // connections and histograms) get their own mappings, returned to the
    // system when freed. glibc's default raises that threshold as big blocks
    // are freed and then keeps the old tables of a growing map in the heap:
    // measured here, 16 MiB resident for 30 000 timewait sockets instead of 8.
    // SAFETY: mallopt only changes allocator parameters; called before any
    // thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    if let Some(what) = cli.generate {
        let mut out = Stdout::open();
        return match cli::generate(what, &mut out).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                say!("writing it failed: {err}");
                ExitCode::FAILURE
            }
        };
    }
    // Options clap cannot check alone: also bad usage, exit 2.
    let config = match Config::resolve(cli) {
        Ok(config) => config,
        Err(err) => {
            say!("{err}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::new()
        .filter_level(if config.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .format_target(false)
        .format_timestamp(None)
        .init();
    let rings = match host_rings(&config) {
        Ok(Ok(rings)) => rings,
        Ok(Err(usage)) => {
            say!("{usage}");
            return ExitCode::from(2);
        }
        Err(err) => {
            say!("{err:#}");
            return ExitCode::FAILURE;
        }
    };
    // `top` without a terminal to draw on: bad usage, before anything else.
    if config.top
        && let Err(err) = term::check_terminal()
    {
        say!("{err}");
        return ExitCode::from(2);
    }
    // Bound before anything is attached: a port in use is bad usage too.
    let listener = match config.metrics.map(endpoint::bind).transpose() {
        Ok(listener) => listener,
        Err(err) => {
            say!("{err}");
            return ExitCode::from(2);
        }
    };
    match run(&config, rings, listener) {
        Ok(code) => code,
        Err(err) => {
            say!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` as clap prints them; any other error in one
/// line (clap's first, without its "error: "), exit status 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad usage");
    // "...were not provided:" names them on the next line: one line still.
    let line = match first.ends_with(':') {
        true => format!("{first} {}", lines.next().unwrap_or_default()),
        false => first.to_owned(),
    };
    say!("{}", line.trim_start_matches("error: "));
    ExitCode::from(2)
}

/// The rings this host's CPUs and memory allow for what was asked; a size
/// the host cannot give is bad usage (the inner error).
fn host_rings(config: &Config) -> anyhow::Result<Result<Rings, cli::ConfigError>> {
    let cpus = loader::possible_cpus()?;
    let mem = meminfo::read_mem_total().context("reading the host's memory")?;
    Ok(config.rings(cpus, mem))
}

/// Runs tcptrace; the exit status on success (`diagnose` says with it
/// whether anything is wrong).
fn run(
    config: &Config,
    rings: Rings,
    listener: Option<std::net::TcpListener>,
) -> anyhow::Result<ExitCode> {
    let kernel_filter = config.kernel_filter;
    // Before any thread exists: the flag is per thread, and inherited.
    privileges::no_new_privs()?;
    loader::check_object()?;
    let features = features::probe(
        config.no_timewait,
        features::Missing(&config.pretend_missing),
        |notice| say!("{notice}"),
    )?;
    let timewait = features.timewait.is_some();

    let output = config.output;
    let zone = if output.utc { Zone::Utc } else { Zone::Local };
    let clock = WallClock::new(zone).context("reading the clocks")?;
    let names = features.reset_names.clone();
    let printer = match output.json {
        true => Printer::Json(JsonPrinter::new(clock).with_reset_names(names)),
        false => Printer::Text(TextPrinter::new(clock, output.addr_width).with_reset_names(names)),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the runtime")?;
    let _guard = runtime.enter();
    let signals = agent::Signals::install()?;
    // Big rings asked for: what they cost, before it is paid.
    if rings.total_bytes > 256 << 20 {
        say!(
            "rings: {} of locked kernel memory in all, mapped twice into tcptrace (its RSS \
             grows by about {}); allocating it takes a while",
            cli::Size(rings.total_bytes),
            cli::Size(2 * rings.total_bytes)
        );
    }
    let (mut tracer, ring_maps) = Tracer::attach(&loader::Config {
        ring_bytes: rings.ring_bytes,
        wakeup_bytes: rings.wakeup_bytes,
        log_level: if config.verbose {
            aya_log::Level::Debug as u8
        } else {
            0
        },
        filter: kernel_filter,
        offsets: features.offsets,
        timewait: features.timewait,
        binds: features.binds,
        reset_reasons: !features.reset_names.is_empty(),
        retransmits: features.retransmits,
        retransmit_err: features.retransmit_err,
        sock_btf: features.sock_btf,
        timer_btf: features.timer_btf,
        floor: config.bench_floor,
    })?;

    let pipeline = Pipeline::new(Settings {
        filter: config.filter.clone(),
        kernel: kernel_filter,
        max_sockets: config.max_sockets,
        hz: features.hz,
        records: config.live,
    });
    // The writer thread writes to what it is given, and needs no privilege.
    let out = Output::spawn(Sizes::for_stdout(), || {
        privileges::keep_only(&[]).map_err(io::Error::other)?;
        Ok(Stdout::open())
    })
    .context("starting the output thread")?;
    // With `top`, the screen covers stderr: the warnings go to its bottom line.
    let status = config.top.then(Status::default);
    let warnings: Box<dyn io::Write> = match &status {
        Some(status) => Box::new(status.clone()),
        None => Box::new(io::stderr()),
    };
    let mut session = Session::with(pipeline, printer, out, warnings, timewait, Readers::host());
    session.limit_metrics(config.metrics_limits);
    session.name_resets(features.reset_names.clone());
    if config.top {
        session.view_only();
    } else if config.quiet {
        session.quiet();
    }
    // After attaching, so that no socket falls between the two.
    let mut longest_tw = None;
    let existing = snapshot::take(|tw| {
        if session.seed_timewait(tw) {
            longest_tw = longest_tw.max(Some(tw.remaining_ms));
        }
    });
    log::debug!(
        "{} TCP sockets existed at start-up (before the kernel filter)",
        existing.sockets.len()
    );
    // A namespace's inode is known only once it exists: one that none has
    // is a typo, and would trace nothing.
    let ip_names = netns::ip_netns_names(&netns::IP_NETNS_DIRS);
    let unknown = config.filter.unknown_netns(|n| {
        existing.namespaces.iter().any(|&(ns, _)| ns == n) || ip_names.contains_key(&n)
    });
    // (Unless /proc could not be walked at all: then nothing is known.)
    if let (Some(first), false) = (unknown.first(), existing.namespaces.is_empty()) {
        say!(
            "--netns {first}: no network namespace has that inode (lsns -t net lists them, \
             ls -L -i /run/netns/NAME gives one's)"
        );
        return Ok(ExitCode::from(2));
    }
    session.seed(existing);
    // Attached, mapped and seeded: from here on, only what the loop needs
    // (the main thread is the only one with privileges left, and the
    // namespace readers it starts inherit its set).
    privileges::keep_only_needed()?;
    if let (true, Some(ms)) = (timewait, longest_tw) {
        let counts: Vec<String> = session
            .timewait_counts()
            .map(|(netns, c)| match c.fin_wait2 {
                0 => format!("netns {netns}: {}", c.time_wait),
                n => format!("netns {netns}: {} (+{n} orphans in FIN_WAIT2)", c.time_wait),
            })
            .collect();
        say!(
            "timewait sockets at start-up: {}; the last ends in {:.1} s",
            counts.join(", "),
            ms as f64 / 1000.0
        );
    }
    // Ready: what happens from here on is traced and attributed.
    say!(
        "tracing TCP state transitions{}; Ctrl-C to stop",
        if timewait { " and TIME_WAIT" } else { "" }
    );
    if let Some(until) = config.diagnose {
        say!(
            "diagnosing for {} s, quietly: the findings come at the end (Ctrl-C for them now)",
            until.as_secs()
        );
    }
    let served = match listener {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .context("reading the metrics address")?;
            let served = endpoint::spawn(listener)?;
            say!(
                "metrics on http://{addr}/metrics{}",
                if addr.ip().is_loopback() {
                    ""
                } else {
                    " (not loopback: reachable from other hosts, as asked)"
                }
            );
            Some(served)
        }
        None => None,
    };
    let timing = Timing {
        drain_interval: config.drain_interval,
        interval: config.interval,
        verbose: config.verbose,
        until: config.diagnose,
    };
    let top = status.clone().map(Top::start).transpose()?;
    let ending = runtime.block_on(agent::run(
        &mut tracer,
        ring_maps,
        &mut session,
        &timing,
        Outputs {
            endpoint: served,
            top,
        },
        signals,
    ))?;
    // What the screen covered, now that it is gone.
    if let Some(status) = &status {
        let _ = io::stderr().write_all(status.take().as_bytes());
    }
    // What the output thread still holds is written before the exit line.
    let ending = match session.out_mut().finish() {
        Ok(()) => ending,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ending::BrokenPipe,
        Err(err) => return Err(AgentError::Output(err).into()),
    };
    if ending == Ending::Signal {
        let totals = session.totals(tracer.recursion_misses());
        say!("{totals}");
    }
    Ok(match (config.diagnose, session.worst()) {
        (Some(_), Some(Severity::Critical)) => ExitCode::from(cli::EXIT_CRITICAL),
        (Some(_), Some(Severity::Warning)) => ExitCode::from(cli::EXIT_WARNING),
        _ => ExitCode::SUCCESS,
    })
}
