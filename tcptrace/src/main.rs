//! `tcptrace` binary: glue between the command line, the library and the exit code.

use std::{
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use tcptrace::{
    agent::{Agent, Ending, Options},
    bpf::{self, Tracer},
    btf::{self, Btf},
    cli::Cli,
    clock::{WallClock, Zone},
    filter,
    output::{ADDR_WIDTH_V4, ADDR_WIDTH_V6, JsonPrinter, Printer, TextPrinter},
    snapshot, system,
};

fn main() -> ExitCode {
    // Allocations of 1 MiB or more (the growing tables of timewait sockets,
    // connections and histograms) get their own mappings, returned to the
    // system when freed. glibc's default raises that threshold as big blocks
    // are freed and then keeps the old tables of a growing map in the heap:
    // measured here, 16 MiB resident for 30 000 timewait sockets instead of 8.
    // SAFETY: mallopt only changes allocator parameters; called before any
    // thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(if cli.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .format_target(false)
        .format_timestamp(None)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcptrace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let kernel_filter = filter::kernel_filter(cli.ipv4, cli.ipv6, &cli.lport, &cli.rport)?;
    system::check_privileges()?;
    let btf_path = Path::new(system::BTF_PATH);
    system::check_btf(btf_path)?;
    let btf = Btf::from_file(btf_path);
    let offsets = btf
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|btf| btf::kernel_offsets(btf).map_err(|e| e.to_string()))
        .unwrap_or_else(|err| {
            eprintln!(
                "tcptrace: warning: network namespaces unavailable ({err}); netns is shown as 0"
            );
            Default::default()
        });
    let tracefs = system::ensure_tracefs()?;
    if tracefs.mounted_by_us {
        eprintln!(
            "tcptrace: tracefs was not mounted; mounted it on {} (left mounted)",
            tracefs.path.display()
        );
    }
    system::check_tracepoints(&tracefs.path)?;
    let timewait = match (&btf, cli.no_timewait) {
        (_, true) => None,
        (Err(err), false) => {
            eprintln!("tcptrace: warning: TIME_WAIT not tracked: {err}");
            None
        }
        (Ok(btf), false) => match system::timewait_config(btf, &tracefs.path) {
            Ok(config) => {
                if config.reqsk_handler == 0 {
                    eprintln!(
                        "tcptrace: warning: reqsk_timer_handler not in /proc/kallsyms: \
                         reopened timewait sockets are reported as killed"
                    );
                }
                Some(config)
            }
            Err(err) => {
                eprintln!("tcptrace: warning: TIME_WAIT not tracked: {err}");
                None
            }
        },
    };
    drop(btf);

    let zone = if cli.utc { Zone::Utc } else { Zone::Local };
    let clock = WallClock::new(zone).context("reading the clocks")?;
    let printer = match cli.json {
        true => Printer::Json(JsonPrinter::new(clock)),
        false => Printer::Text(TextPrinter::new(
            clock,
            if cli.ipv4 {
                ADDR_WIDTH_V4
            } else {
                ADDR_WIDTH_V6
            },
        )),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the runtime")?;
    let _guard = runtime.enter();
    let ring_bytes = cli.ring_bytes(bpf::possible_cpus()?);
    let (tracer, events) = Tracer::attach(&bpf::Config {
        ring_bytes,
        wakeup_bytes: cli.wakeup_bytes(ring_bytes),
        log_level: if cli.verbose {
            aya_log::Level::Debug as u8
        } else {
            0
        },
        filter: kernel_filter,
        offsets,
        timewait,
        floor: cli.bench_floor,
    })?;

    let out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let options = Options {
        drain_interval: cli.drain_interval(),
        interval: cli.interval.map(std::time::Duration::from_secs),
        summary_only: cli.summary,
        verbose: cli.verbose,
        filter: cli.filter(),
        max_conns: cli.max_sockets as usize,
        timewait: timewait.is_some(),
        hz: system::kernel_hz(),
    };
    let mut agent = Agent::new(tracer, printer, out, options);
    // After attaching, so that no socket falls between the two.
    let mut longest_tw = None;
    let existing = snapshot::take(|tw| {
        longest_tw = longest_tw.max(Some(tw.remaining_ms));
        agent.seed_timewait(tw);
    });
    log::debug!("{} TCP sockets existed at start-up", existing.sockets.len());
    agent.seed(existing);
    if timewait.is_some() {
        let counts: Vec<String> = agent
            .timewait_counts()
            .map(|(netns, c)| match c.fin_wait2 {
                0 => format!("netns {netns}: {}", c.time_wait),
                n => format!("netns {netns}: {} (+{n} orphans in FIN_WAIT2)", c.time_wait),
            })
            .collect();
        if let Some(ms) = longest_tw {
            eprintln!(
                "tcptrace: timewait sockets at start-up: {}; the last ends in {:.1} s",
                counts.join(", "),
                ms as f64 / 1000.0
            );
        }
    }
    // Ready: what happens from here on is traced and attributed.
    eprintln!(
        "tcptrace: tracing TCP state transitions{}; Ctrl-C to stop",
        if timewait.is_some() {
            " and TIME_WAIT"
        } else {
            ""
        }
    );
    let (ending, summary) = runtime.block_on(agent.run(events))?;
    if ending == Ending::Signal {
        let _ = io::stdout().flush();
        eprintln!("tcptrace: {summary}");
    }
    Ok(())
}
