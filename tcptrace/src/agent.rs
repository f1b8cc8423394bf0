//! The agent's main loop: drain the ring buffer (when woken, and periodically),
//! print, watch the loss counters, stop on a signal or a closed stdout.

use std::{
    fmt, io,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    bpf::{BpfError, Counters, Tracer},
    clock::monotonic_ns,
    conn::{Closed, Tracker},
    event::{DecodeError, Event, TcpState, Transition},
    filter::Filter,
    output::{Printer, summary::Report},
    rings::Rings,
    stats::{Stats, open_by_state},
    system,
    timewait::{Timewaits, TwOutput},
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

/// Network namespaces whose TIME_WAIT overflows are watched, at most.
const MAX_WATCHED_NETNS: usize = 256;

/// How the run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// SIGINT or SIGTERM: print the summary.
    Signal,
    /// The reader of stdout went away: exit quietly.
    BrokenPipe,
}

/// What the exit summary reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub transitions: u64,
    pub counters: Counters,
    pub recursion_misses: u64,
    pub undecodable: u64,
    /// Connections tcptrace could not follow (--max-sockets reached).
    pub untracked_conns: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transitions in {:.1} s, {} lost (ring buffer full)",
            self.transitions,
            self.elapsed.as_secs_f64(),
            self.counters.lost
        )?;
        if self.recursion_misses > 0 {
            write!(
                f,
                ", {} missed by the kernel (BPF recursion)",
                self.recursion_misses
            )?;
        }
        if self.untracked_conns > 0 {
            write!(
                f,
                ", {} connections not followed (--max-sockets)",
                self.untracked_conns
            )?;
        }
        if self.undecodable > 0 {
            write!(f, ", {} undecodable records", self.undecodable)?;
        }
        Ok(())
    }
}

/// How the agent runs.
pub struct Options {
    /// Periodic drain of the ring buffer.
    pub drain_interval: Duration,
    /// Periodic summaries.
    pub interval: Option<Duration>,
    /// Summaries only, no per-event lines.
    pub summary_only: bool,
    pub verbose: bool,
    pub filter: Filter,
    /// Bound on connections (and on timewait sockets) followed in the agent.
    pub max_conns: usize,
    /// Whether timewait sockets are traced.
    pub timewait: bool,
    /// The kernel's timer frequency, if known.
    pub hz: Option<u32>,
}

/// `TcpExtTCPTimeWaitOverflow` of one network namespace, read through a
/// process inside it.
struct OverflowWatch {
    /// 0 once it has left the namespace.
    pid: u32,
    /// The value before tracing: read at start-up for a namespace that
    /// existed then, 0 for one created since. `None` until first read.
    base: Option<u64>,
    last: u64,
}

impl OverflowWatch {
    /// Overflows since tracing started, as last read.
    fn since_start(&self) -> u64 {
        self.last.saturating_sub(self.base.unwrap_or(self.last))
    }
}

pub struct Agent<W: io::Write> {
    tracer: Tracer,
    printer: Printer,
    out: W,
    options: Options,
    tracker: Tracker,
    timewaits: Timewaits,
    tw_out: Vec<TwOutput>,
    overflows: HashMap<u32, OverflowWatch>,
    namespaces_at_start: HashSet<u32>,
    stats: Stats,
    transitions: u64,
    undecodable: u64,
    reported: Counters,
    warned_untracked: bool,
}

impl<W: io::Write> Agent<W> {
    pub fn new(tracer: Tracer, printer: Printer, out: W, options: Options) -> Self {
        Self {
            tracer,
            printer,
            out,
            tracker: Tracker::new(options.max_conns),
            timewaits: Timewaits::new(options.max_conns, options.hz, !options.summary_only),
            tw_out: Vec::new(),
            overflows: HashMap::default(),
            namespaces_at_start: Default::default(),
            options,
            stats: Stats::new(),
            transitions: 0,
            undecodable: 0,
            reported: Counters::default(),
            warned_untracked: false,
        }
    }

    /// Learns a timewait socket that existed before tracing started.
    pub fn seed_timewait(&mut self, seed: &crate::timewait::TwSeed) {
        if self.options.timewait {
            self.timewaits.seed(seed);
        }
    }

    /// Learns the sockets that existed before tracing started: owners and a
    /// process in each network namespace.
    pub fn seed(&mut self, snapshot: crate::snapshot::Snapshot) {
        self.tracker.seed(snapshot.sockets);
        for (netns, pid) in snapshot.namespaces {
            self.namespaces_at_start.insert(netns);
            self.watch_overflows(netns, pid);
        }
        // Their values before tracing.
        self.report_overflows();
    }

    /// Live timewait sockets per network namespace.
    pub fn timewait_counts(&self) -> impl Iterator<Item = (u32, crate::timewait::TwCount)> + '_ {
        self.timewaits.counts()
    }

    /// Starts watching a namespace's `TcpExtTCPTimeWaitOverflow` through
    /// `pid` (read once a second, off the per-event path). A namespace that
    /// had no process at start-up is new: all its overflows happened while
    /// tracing, including any before it was first seen here.
    fn watch_overflows(&mut self, netns: u32, pid: u32) {
        if !self.options.timewait {
            return;
        }
        if let Some(w) = self.overflows.get_mut(&netns) {
            // Watched before, through a process that has gone.
            w.pid = pid;
            return;
        }
        if self.overflows.len() >= MAX_WATCHED_NETNS {
            return;
        }
        let base = (!self.namespaces_at_start.contains(&netns)).then_some(0);
        self.overflows
            .insert(netns, OverflowWatch { pid, base, last: 0 });
    }

    /// Runs until a signal or a closed stdout. Must be called inside a tokio
    /// runtime with I/O and time enabled.
    pub async fn run(
        &mut self,
        events: Vec<RingBuf<MapData>>,
    ) -> Result<(Ending, Summary), AgentError> {
        let started = Instant::now();
        let mut events = Rings::new(events).map_err(AgentError::Poll)?;
        let mut logger = match self.options.verbose {
            // SAFETY: as above, for the aya-log ring buffer.
            true => self.tracer.logger().and_then(|l| {
                unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }.ok()
            }),
            false => None,
        };
        let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut drain_tick = interval(self.options.drain_interval);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut counters_tick = interval(Duration::from_secs(1));
        counters_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut summary_tick = self.options.interval.map(|every| {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        });

        if !self.options.summary_only
            && let Err(err) = self
                .printer
                .header(&mut self.out)
                .and_then(|()| self.out.flush())
        {
            return self.output_failed(err, started);
        }
        let ending = loop {
            let result = tokio::select! {
                woken = events.woken() => {
                    woken.map_err(AgentError::Poll)?;
                    self.drain(&mut events, false)
                }
                _ = drain_tick.tick() => self.drain(&mut events, false),
                _ = counters_tick.tick() => {
                    self.report_losses()?;
                    Ok(())
                }
                _ = async {
                    match summary_tick.as_mut() {
                        Some(tick) => tick.tick().await,
                        None => std::future::pending().await,
                    }
                } => self.drain(&mut events, false).and_then(|()| self.print_summary(started)),
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
                _ = sigint.recv() => break Ending::Signal,
                _ = sigterm.recv() => break Ending::Signal,
            };
            if let Err(err) = result {
                return self.output_failed(err, started);
            }
        };
        // Whatever arrived before the signal is still printed and counted,
        // and the final summary has fresh loss counters.
        self.report_losses()?;
        let last = self.drain(&mut events, true).and_then(|()| {
            for c in self.tracker.settle_all() {
                self.closed(c)?;
            }
            self.timewaits.settle_all(&mut self.tw_out);
            self.timewaits
                .flush_at_exit(monotonic_ns(), &mut self.tw_out);
            self.timewait_output()?;
            self.print_summary(started)
        });
        if let Err(err) = last {
            return self.output_failed(err, started);
        }
        Ok((ending, self.summary(started)?))
    }

    fn output_failed(
        &self,
        err: io::Error,
        started: Instant,
    ) -> Result<(Ending, Summary), AgentError> {
        match err.kind() {
            io::ErrorKind::BrokenPipe => Ok((Ending::BrokenPipe, self.summary(started)?)),
            _ => Err(AgentError::Output(err)),
        }
    }

    /// Processes the pending records (all of them when `all`, at exit; else
    /// those older than the merge margin), then flushes once.
    fn drain(&mut self, rings: &mut Rings, all: bool) -> io::Result<()> {
        let cutoff = rings.read(all, |err| self.undecodable(&err));
        while let Some(event) = rings.next(cutoff) {
            match event {
                Ok(Event::Transition(mut t)) => {
                    self.transitions += 1;
                    let mut closed = self.tracker.on_transition(&mut t);
                    if let Some(task) = t.task {
                        if t.old == TcpState::Close && t.new == TcpState::SynSent {
                            self.timewaits.note_connect(&t);
                        }
                        if t.netns != 0 && self.overflows.get(&t.netns).is_none_or(|w| w.pid == 0) {
                            self.watch_overflows(t.netns, task.pid);
                        }
                    }
                    // The connection lives on in a timewait socket: its
                    // verdict counts now, its record comes when that ends.
                    if let Some(c) = self.timewaits.join(&mut t, &mut closed) {
                        count_closed(&mut self.stats, &self.options.filter, c);
                    }
                    self.transition(&t)?;
                    if let Some(c) = closed {
                        self.closed(c)?;
                    }
                }
                Ok(Event::Timewait(e)) => {
                    self.timewaits.on_event(&e, &mut self.tw_out);
                    self.timewait_output()?;
                }
                Ok(Event::Reset(r)) => {
                    if let Some(c) = self.tracker.on_reset(&r) {
                        self.closed(c)?;
                    }
                }
                Err(err) => self.undecodable(&err),
            }
        }
        rings.end_drain();
        for c in self.tracker.end_batch() {
            self.closed(c)?;
        }
        self.timewaits.end_batch(&mut self.tw_out);
        self.timewait_output()?;
        self.out.flush()
    }

    fn undecodable(&mut self, err: &DecodeError) {
        if self.undecodable == 0 {
            log::warn!("skipping an undecodable record: {err}");
        }
        self.undecodable += 1;
    }

    /// Counts and prints a transition that passes the filters.
    fn transition(&mut self, t: &Transition) -> io::Result<()> {
        if !self
            .options
            .filter
            .accepts(t.owner.as_ref(), &t.local, &t.remote, t.netns)
        {
            return Ok(());
        }
        self.stats.record_transition(t);
        if t.timewait.is_some() {
            self.stats.record_timewait(t);
        }
        if self.options.summary_only {
            return Ok(());
        }
        self.printer.transition(&mut self.out, t)
    }

    /// Prints and counts what the timewait tracker produced.
    fn timewait_output(&mut self) -> io::Result<()> {
        let mut items = std::mem::take(&mut self.tw_out);
        let mut result = Ok(());
        for item in items.drain(..) {
            result = result.and_then(|()| match item {
                TwOutput::Transition(t) => self.transition(&t),
                // Counted when its full socket closed.
                TwOutput::Closed(c) => self.print_closed(&c),
            });
        }
        self.tw_out = items;
        result
    }

    fn print_closed(&mut self, c: &Closed) -> io::Result<()> {
        if self.options.summary_only
            || !self
                .options
                .filter
                .accepts(c.owner.as_ref(), &c.local, &c.remote, c.netns)
        {
            return Ok(());
        }
        self.printer.closed(&mut self.out, c)
    }

    fn closed(&mut self, c: Closed) -> io::Result<()> {
        count_closed(&mut self.stats, &self.options.filter, &c);
        self.print_closed(&c)
    }

    fn print_summary(&mut self, started: Instant) -> io::Result<()> {
        let now = monotonic_ns();
        let filter = &self.options.filter;
        let open = self
            .tracker
            .open()
            .filter(|o| filter.accepts(o.owner, &o.local, &o.remote, o.netns));
        let report = Report {
            elapsed: started.elapsed(),
            transitions: self.transitions,
            lost: self.reported.lost,
            stats: &self.stats,
            open: open_by_state(open, now),
            timewait: self
                .options
                .timewait
                .then(|| crate::output::summary::TimewaitReport {
                    live: self.timewaits.counts().collect(),
                    overflows: self
                        .overflows
                        .iter()
                        .map(|(netns, w)| (*netns, w.since_start()))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                }),
        };
        self.printer.summary(&mut self.out, &report, now)?;
        self.out.flush()
    }

    /// Says on stderr when the kernel side had to drop transitions.
    fn report_losses(&mut self) -> Result<(), AgentError> {
        let now = self.tracer.counters()?;
        if now.lost > self.reported.lost {
            eprintln!(
                "tcptrace: warning: {} transitions lost (ring buffer full, {} in total); raise --ring-size",
                now.lost - self.reported.lost,
                now.lost
            );
        }
        if self.tracker.untracked > 0 && !self.warned_untracked {
            self.warned_untracked = true;
            eprintln!(
                "tcptrace: warning: already following --max-sockets sockets; \
                 others get unknown durations and no verdict (raise --max-sockets)"
            );
        }
        self.reported = now;
        self.report_overflows();
        Ok(())
    }

    /// Says on stderr when connections got no timewait socket because the
    /// namespace's `tcp_max_tw_buckets` was reached.
    fn report_overflows(&mut self) {
        for (netns, w) in &mut self.overflows {
            // A namespace whose process is gone is watched again through the
            // next one seen in it; what it counted so far stays.
            if w.pid == 0 {
                continue;
            }
            let Ok(value) = system::tw_overflows(w.pid, *netns) else {
                w.pid = 0;
                continue;
            };
            let previous = w.last.max(*w.base.get_or_insert(value));
            w.last = value;
            if value > previous {
                eprintln!(
                    "tcptrace: warning: netns {netns}: {} connections closed without a timewait socket \
                     (tcp_max_tw_buckets reached, TcpExtTCPTimeWaitOverflow; {} since start)",
                    value - previous,
                    w.since_start()
                );
            }
        }
    }

    fn summary(&self, started: Instant) -> Result<Summary, AgentError> {
        Ok(Summary {
            transitions: self.transitions,
            counters: self.tracer.counters()?,
            recursion_misses: self.tracer.recursion_misses(),
            undecodable: self.undecodable,
            untracked_conns: self.tracker.untracked,
            elapsed: started.elapsed(),
        })
    }
}

/// Counts a connection's verdict, if it passes the filters.
fn count_closed(stats: &mut Stats, filter: &Filter, c: &Closed) {
    if filter.accepts(c.owner.as_ref(), &c.local, &c.remote, c.netns) {
        stats.record_closed(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let mut s = Summary {
            transitions: 1234,
            counters: Counters { lost: 5 },
            elapsed: Duration::from_millis(12_345),
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full)"
        );
        s.recursion_misses = 2;
        s.untracked_conns = 7;
        s.undecodable = 1;
        assert_eq!(
            s.to_string(),
            "1234 transitions in 12.3 s, 5 lost (ring buffer full), 2 missed by the kernel (BPF recursion), \
             7 connections not followed (--max-sockets), 1 undecodable records"
        );
    }
}
