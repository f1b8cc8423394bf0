//! The agent's loop, and only the loop: wait on the rings' wake-ups, the
//! periodic drain, the once-a-second checks, the summary interval, the
//! scrapes of the metrics endpoint, the eBPF log, the signals and the live
//! view's keys, and hand each to the session (or the view).

use std::{io, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    endpoint::Served,
    kernel::{
        loader::{BpfError, Tracer},
        rings::Rings,
    },
    render::top::term::Top,
    session::Session,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot watch the ring buffer: {0}")]
    Poll(io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("writing output failed: {0}")]
    Output(io::Error),
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// How the run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT, or the end of `diagnose --for`: print the
    /// summary.
    Signal,
    /// The reader of stdout went away: exit quietly.
    BrokenPipe,
}

/// The signals tcptrace answers, installed as early as the runtime allows:
/// one that arrives while the programs attach (big rings take seconds) is
/// answered when the loop starts, rather than killing tcptrace.
pub struct Signals {
    int: Signal,
    term: Signal,
    /// A closed terminal or ssh session: end cleanly too, with the summary.
    hup: Signal,
    /// Ctrl-\ in a terminal: the user wants out, the summary is not lost.
    quit: Signal,
    /// A summary now, in any mode (the daemon's too), and tracing goes on.
    usr1: Signal,
}

impl Signals {
    /// Must be called inside a tokio runtime with I/O enabled.
    pub fn install() -> Result<Self, AgentError> {
        let on = |kind| signal(kind).map_err(AgentError::Signals);
        Ok(Self {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
            quit: on(SignalKind::quit())?,
            usr1: on(SignalKind::user_defined1())?,
        })
    }
}

/// How often the loop does what.
pub struct Timing {
    /// Periodic drain of the rings.
    pub drain_interval: Duration,
    /// Periodic summaries.
    pub interval: Option<Duration>,
    /// Forward the eBPF side's log (`-v`).
    pub verbose: bool,
    /// `diagnose`: stop after this long, saying how it goes meanwhile.
    pub until: Option<Duration>,
}

/// Where the loop's reports go.
pub struct Outputs {
    /// The metrics endpoint's scrapes.
    pub endpoint: Option<Served>,
    /// `top`: the view, drawn every interval instead of a summary.
    pub top: Option<Top>,
}

/// Runs until a signal or a closed stdout. Must be called inside a tokio
/// runtime with I/O and time enabled.
pub async fn run<W: io::Write, E: io::Write>(
    tracer: &mut Tracer,
    rings: Vec<RingBuf<MapData>>,
    session: &mut Session<W, E>,
    timing: &Timing,
    outputs: Outputs,
    signals: Signals,
) -> Result<Ending, AgentError> {
    let Outputs {
        mut endpoint,
        mut top,
    } = outputs;
    let mut rings = Rings::new(rings).map_err(AgentError::Poll)?;
    let mut logger = match timing.verbose {
        true => tracer.logger().and_then(|l| {
            // SAFETY: the logger owns its ring buffer's fd, which stays open
            // and unchanged until the AsyncFd (and with it the logger) is
            // dropped.
            unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }.ok()
        }),
        false => None,
    };
    let Signals {
        int: mut sigint,
        term: mut sigterm,
        hup: mut sighup,
        quit: mut sigquit,
        usr1: mut sigusr1,
    } = signals;
    let mut drain_tick = interval(timing.drain_interval);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut counters_tick = interval(Duration::from_secs(1));
    counters_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut summary_tick = timing.interval.map(|every| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    });

    let deadline = timing.until.map(|d| tokio::time::Instant::now() + d);
    if let Err(err) = session.begin() {
        return output_failed(err);
    }
    // The view's first frame at once, not an interval later.
    if let Some(t) = top.as_mut()
        && let Err(err) = session
            .view(tracer.recursion_misses())
            .and_then(|r| t.report(r))
    {
        return output_failed(err);
    }
    loop {
        let result = tokio::select! {
            woken = rings.woken() => {
                woken.map_err(AgentError::Poll)?;
                drain(&mut rings, tracer, session, false)?
            }
            _ = drain_tick.tick() => drain(&mut rings, tracer, session, false)?,
            _ = counters_tick.tick() => {
                let result = counted(tracer, session)?.and_then(|()| session.every_second());
                if let Some(until) = timing.until {
                    session.progress(until, tracer.recursion_misses());
                }
                result
            }
            _ = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = async {
                match summary_tick.as_mut() {
                    Some(tick) => tick.tick().await,
                    None => std::future::pending().await,
                }
            } => summary(&mut rings, tracer, session, top.as_mut(), false)?,
            input = async {
                match top.as_mut() {
                    Some(t) => t.input().await,
                    None => std::future::pending().await,
                }
            } => match top.as_mut().map(|t| t.handle(input)) {
                Some(Ok(true)) => break,
                Some(Err(err)) => Err(err),
                _ => Ok(()),
            },
            Some(guard) = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                let mut guard = guard;
                guard.get_inner_mut().flush();
                guard.clear_ready();
                Ok(())
            }
            Some(scrape) = async {
                match endpoint.as_mut() {
                    Some(e) => e.scrapes.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // What the rings hold is counted first.
                let result = drain(&mut rings, tracer, session, false)?
                    .and(counted(tracer, session)?);
                let misses = tracer.recursion_misses();
                if let Some(e) = endpoint.as_mut() {
                    e.answer(scrape, |refused| session.scrape(misses, refused));
                }
                result
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = sigquit.recv() => break,
            _ = sigusr1.recv() => summary(&mut rings, tracer, session, top.as_mut(), true)?,
        };
        if let Err(err) = result {
            return output_failed(err);
        }
    }
    // The terminal back as it was, before anything else is said.
    drop(top);
    // Whatever arrived before the signal is still printed and counted, and
    // the final summary has fresh loss counters.
    match drain(&mut rings, tracer, session, true)?
        .and(counted(tracer, session)?)
        .and_then(|()| session.every_second())
        .and_then(|()| session.finish(tracer.recursion_misses()))
    {
        Ok(()) => Ok(Ending::Signal),
        Err(err) => output_failed(err),
    }
}

/// A closed stdout ends tcptrace quietly; any other write error is one.
fn output_failed(err: io::Error) -> Result<Ending, AgentError> {
    match err.kind() {
        io::ErrorKind::BrokenPipe => Ok(Ending::BrokenPipe),
        _ => Err(AgentError::Output(err)),
    }
}

/// Hands the session the pending records (all of them when `all`, at exit;
/// else those older than the merge margin), then the kernel side's loss
/// counts as they stand after them, and lets it flush once. The outer
/// error is the kernel side's, the inner one the output's.
fn drain<W: io::Write, E: io::Write>(
    rings: &mut Rings,
    tracer: &Tracer,
    session: &mut Session<W, E>,
    all: bool,
) -> Result<io::Result<()>, BpfError> {
    let cutoff = rings.read(all, |err| session.undecodable(&err));
    while let Some(record) = rings.next(cutoff) {
        if let Err(err) = session.record(record) {
            return Ok(Err(err));
        }
    }
    rings.end_drain();
    let read_ns = crate::kernel::monotonic_ns();
    Ok(session.end_drain(tracer.lost()?, read_ns))
}

/// A summary (`asked`: by SIGUSR1, in every mode), or with `top` a frame:
/// the screen is the summary, a text one would land on it. What the rings
/// hold and the kernel counted goes in first.
fn summary<W: io::Write, E: io::Write>(
    rings: &mut Rings,
    tracer: &Tracer,
    session: &mut Session<W, E>,
    top: Option<&mut Top>,
    asked: bool,
) -> Result<io::Result<()>, BpfError> {
    let result = drain(rings, tracer, session, false)?.and(counted(tracer, session)?);
    let misses = tracer.recursion_misses();
    Ok(match (top, asked) {
        (Some(t), _) => result
            .and_then(|()| session.view(misses))
            .and_then(|r| t.report(r)),
        (None, false) => result.and_then(|()| session.summary(misses)),
        (None, true) => result.and_then(|()| session.summary_asked(misses)),
    })
}

/// Hands the session what the kernel side counted itself, read now. The
/// outer error is the kernel side's, the inner one the output's.
fn counted<W: io::Write, E: io::Write>(
    tracer: &Tracer,
    session: &mut Session<W, E>,
) -> Result<io::Result<()>, BpfError> {
    Ok(session.counted(tracer.counted()?))
}
