//! `tcptrace` binary: glue between the command line, the library and the exit code.

use std::{
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use tcptrace::{
    agent::{Agent, Ending},
    bpf::{self, Tracer},
    cli::Cli,
    clock::{WallClock, Zone},
    output::{JsonPrinter, Printer, TextPrinter},
    system,
};

fn main() -> ExitCode {
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
    system::check_privileges()?;
    system::check_btf(Path::new(system::BTF_PATH))?;
    let tracefs = system::ensure_tracefs()?;
    if tracefs.mounted_by_us {
        eprintln!(
            "tcptrace: tracefs was not mounted; mounted it on {} (left mounted)",
            tracefs.path.display()
        );
    }
    system::check_tracepoint(&tracefs.path)?;

    let zone = if cli.utc { Zone::Utc } else { Zone::Local };
    let clock = WallClock::new(zone).context("reading the clocks")?;
    let printer = match cli.json {
        true => Printer::Json(JsonPrinter::new(clock)),
        false => Printer::Text(TextPrinter::new(clock, tcptrace::output::ADDR_WIDTH_V6)),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the runtime")?;
    let _guard = runtime.enter();
    let (tracer, events) = Tracer::attach(&bpf::Config {
        ring_bytes: cli.ring_size,
        wakeup_bytes: cli.wakeup_bytes(),
        max_sockets: cli.max_sockets,
        log_level: if cli.verbose {
            aya_log::Level::Debug as u8
        } else {
            0
        },
    })?;
    eprintln!("tcptrace: tracing TCP state transitions; Ctrl-C to stop");

    let out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut agent = Agent::new(tracer, printer, out, cli.drain_interval(), cli.verbose);
    let (ending, summary) = runtime.block_on(agent.run(events))?;
    if ending == Ending::Signal {
        let _ = io::stdout().flush();
        eprintln!("tcptrace: {summary}");
    }
    Ok(())
}
