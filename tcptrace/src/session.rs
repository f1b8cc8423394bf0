//! One tracing session: the pipeline and its sinks (the aggregate of every
//! summary, and the live log unless `--summary`), the per-namespace
//! counters, and the warnings and summaries the loop asks for. What the
//! agent's loop calls; it knows nothing of file descriptors or timers.

use std::{
    io,
    time::{Duration, Instant},
};

use crate::{
    aggregate::{open::open_by_state, overflows::Overflows, stats::Stats},
    host::{netstat, snapshot::Snapshot},
    kernel::monotonic_ns,
    model::{DecodeError, Event, Sink, TwCount, TwSeed},
    pipeline::Pipeline,
    render::{
        LiveLog, Printer,
        summary::{Report, TimewaitReport},
        totals::Totals,
    },
};

/// Reads a namespace's `TcpExtTCPTimeWaitOverflow` through a process in it
/// (`pid`, `netns`).
pub type OverflowReader = fn(u32, u32) -> io::Result<u64>;

/// Both sinks, borrowed for one call into the pipeline.
fn sinks<'a, W: io::Write>(
    stats: &'a mut Stats,
    printer: &'a mut Printer,
    out: &'a mut W,
    live: bool,
) -> impl Sink + 'a {
    (stats, live.then_some(LiveLog { printer, out }))
}

pub struct Session<W: io::Write, E: io::Write = io::Stderr> {
    pipeline: Pipeline,
    stats: Stats,
    printer: Printer,
    out: W,
    /// Where warnings go (stderr), one line per problem.
    warnings: E,
    /// Print every transition and connection (not `--summary`).
    live: bool,
    /// Whether timewait sockets are traced (and their overflows watched).
    timewait: bool,
    overflows: Overflows,
    read_overflows: OverflowReader,
    lost_reported: u64,
    warned_untracked: bool,
    /// Since `begin`.
    started: Instant,
}

impl<W: io::Write> Session<W> {
    /// A session printing to `out`, warning on stderr, reading the
    /// namespaces' counters from /proc.
    pub fn new(pipeline: Pipeline, printer: Printer, out: W, timewait: bool) -> Self {
        Session::with(
            pipeline,
            printer,
            out,
            io::stderr(),
            timewait,
            netstat::tw_overflows,
        )
    }
}

impl<W: io::Write, E: io::Write> Session<W, E> {
    pub fn with(
        pipeline: Pipeline,
        printer: Printer,
        out: W,
        warnings: E,
        timewait: bool,
        read_overflows: OverflowReader,
    ) -> Self {
        Self {
            live: pipeline.records(),
            pipeline,
            stats: Stats::new(),
            printer,
            out,
            warnings,
            timewait,
            overflows: Overflows::default(),
            read_overflows,
            lost_reported: 0,
            warned_untracked: false,
            started: Instant::now(),
        }
    }

    /// A warning for the user: one line per problem. A warning that cannot
    /// be written (stderr closed) is dropped: there is nowhere to say it.
    fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        let _ = writeln!(self.warnings, "tcptrace: warning: {message}");
    }

    /// Learns a timewait socket that existed before tracing started.
    pub fn seed_timewait(&mut self, seed: &TwSeed) {
        if self.timewait {
            self.pipeline.seed_timewait(seed);
        }
    }

    /// Learns the sockets and namespaces that existed before tracing
    /// started, and reads the namespaces' counters as they were.
    pub fn seed(&mut self, snapshot: Snapshot) {
        self.pipeline.seed(snapshot.sockets);
        for (netns, pid) in snapshot.namespaces {
            self.overflows.existed_at_start(netns);
            self.pipeline.namespaces().note(netns, pid);
        }
        self.poll_overflows();
    }

    /// Live timewait sockets per network namespace.
    pub fn timewait_counts(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.pipeline.timewait_counts()
    }

    /// Tracing starts now: the live log's column header.
    pub fn begin(&mut self) -> io::Result<()> {
        self.started = Instant::now();
        if !self.live {
            return Ok(());
        }
        self.printer.header(&mut self.out)?;
        self.out.flush()
    }

    /// One record from the rings.
    #[inline]
    pub fn record(&mut self, record: Result<Event, DecodeError>) -> io::Result<()> {
        let mut sink = sinks(&mut self.stats, &mut self.printer, &mut self.out, self.live);
        self.pipeline.record(record, &mut sink)
    }

    /// A record too short to copy out of its ring.
    pub fn undecodable(&mut self, err: &DecodeError) {
        self.pipeline.undecodable(err);
    }

    /// After each drain of the rings.
    pub fn end_drain(&mut self) -> io::Result<()> {
        {
            let mut sink = sinks(&mut self.stats, &mut self.printer, &mut self.out, self.live);
            self.pipeline.end_batch(&mut sink)?;
        }
        self.out.flush()
    }

    /// Once a second: says on stderr what was lost or not followed since the
    /// last time. `lost`: the kernel side's count of records lost so far.
    pub fn every_second(&mut self, lost: u64) {
        if lost > self.lost_reported {
            let reported = self.lost_reported;
            self.warn(format_args!(
                "{} transitions lost (ring buffer full, {lost} in total); raise --ring-size",
                lost - reported,
            ));
        }
        self.lost_reported = self.lost_reported.max(lost);
        if self.pipeline.untracked() > 0 && !self.warned_untracked {
            self.warned_untracked = true;
            self.warn(format_args!(
                "already following --max-sockets sockets; \
                 others get unknown durations and no verdict (raise --max-sockets)"
            ));
        }
        self.poll_overflows();
    }

    /// Says on stderr when connections got no timewait socket because a
    /// namespace's `tcp_max_tw_buckets` was reached.
    fn poll_overflows(&mut self) {
        if !self.timewait {
            return;
        }
        let namespaces = self.pipeline.namespaces();
        let poll = self
            .overflows
            .poll(namespaces.with_process(), self.read_overflows);
        // Read through the next process seen there; what it counted so far
        // stays.
        for netns in poll.unreadable {
            namespaces.forget(netns);
        }
        for rise in poll.rises {
            self.warn(format_args!(
                "netns {}: {} connections closed without a timewait socket \
                 (tcp_max_tw_buckets reached, TcpExtTCPTimeWaitOverflow; {} since start)",
                rise.netns, rise.new, rise.since_start
            ));
        }
    }

    /// Prints a summary of everything since start.
    pub fn summary(&mut self) -> io::Result<()> {
        let now = monotonic_ns();
        let report = Report {
            elapsed: self.started.elapsed(),
            transitions: self.pipeline.transitions,
            lost: self.lost_reported,
            stats: &self.stats,
            open: open_by_state(self.pipeline.open(), now),
            timewait: self.timewait.then(|| TimewaitReport {
                live: self.pipeline.timewait_counts().collect(),
                overflows: self.overflows.since_start(),
            }),
        };
        self.printer.summary(&mut self.out, &report, now)?;
        self.out.flush()
    }

    /// At exit, after the last drain: settles and prints what is left, then
    /// the last summary.
    pub fn finish(&mut self) -> io::Result<()> {
        {
            let mut sink = sinks(&mut self.stats, &mut self.printer, &mut self.out, self.live);
            self.pipeline.finish(monotonic_ns(), &mut sink)?;
        }
        self.summary()
    }

    /// The exit line's numbers.
    pub fn totals(&self, lost: u64, recursion_misses: u64) -> Totals {
        Totals {
            transitions: self.pipeline.transitions,
            lost,
            recursion_misses,
            undecodable: self.pipeline.undecodable,
            untracked_conns: self.pipeline.untracked(),
            elapsed: self.elapsed(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests;
