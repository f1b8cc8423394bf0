//! One tracing session: what the agent's loop calls. It knows nothing of
//! file descriptors or timers, and reads the host only through the
//! [`Readers`] it is given. By job:
//! - here, the wiring and the per-record path: the pipeline and its sinks
//!   (the aggregates, and the live log unless `--summary`), and the views
//!   of the one report (summaries, metrics, `diagnose`'s progress);
//! - [`warnings`]: the error stream and its rate limits;
//! - `doubts`: recovering the connections whose CLOSE a loss hid;
//! - `poll`: the host, once a second (namespaces, counters, listeners).

mod doubts;
mod poll;
pub mod warnings;

use std::{
    io,
    time::{Duration, Instant},
};

use bytes::Bytes;

pub use self::poll::Readers;
use self::{doubts::Doubts, warnings::Warnings};
use crate::{
    aggregate::{
        listeners::Listeners,
        netns::NetnsTable,
        ports::{DestReport, Ports},
        stats::Stats,
    },
    findings::{self, Severity},
    host::snapshot::Snapshot,
    model::{DecodeError, Event, NetnsName, PerKind, Reading, ResetNames, Sink, TwCount, TwSeed},
    pipeline::Pipeline,
    render::{
        LiveLog, Printer,
        metrics::{self, Limits, Scrape},
    },
    report::{self, Report, Sources, Totals, Want},
};

/// Destinations listed in a summary; the rest are pooled as "other".
pub const PORTS_ROWS: usize = 20;
/// Destinations the live view gets before the rest are pooled: more than
/// a 200-column screen shows (with those at 40 % of their ports or failing
/// always among them), few enough that a frame costs what a summary does.
const TOP_ROWS: usize = 50;

/// Scrapes closer together than this share one exposition.
const SCRAPE_REUSE: Duration = Duration::from_millis(100);

/// What the pipeline's facts go to: the aggregates of every summary, and
/// the live log unless `--summary`. Apart from the pipeline, so that both
/// can be borrowed at once.
struct Sinks<W> {
    stats: Stats,
    ports: Ports,
    printer: Printer,
    out: W,
    /// Print every transition and connection (not `--summary`).
    live: bool,
}

impl<W: io::Write> Sinks<W> {
    /// Both sinks, borrowed for one call into the pipeline.
    fn all(&mut self) -> impl Sink + '_ {
        (
            (&mut self.stats, &mut self.ports),
            self.live.then_some(LiveLog {
                printer: &mut self.printer,
                out: &mut self.out,
            }),
        )
    }
}

pub struct Session<W: io::Write, E: io::Write = io::Stderr> {
    pipeline: Pipeline,
    sinks: Sinks<W>,
    /// Where warnings go (stderr), one line per problem.
    warnings: Warnings<E>,
    /// Whether timewait sockets are traced (and their overflows said).
    timewait: bool,
    namespaces: NetnsTable,
    listeners: Listeners,
    readers: Readers,
    /// The worst finding of the last summary.
    worst: Option<Severity>,
    /// Seconds ticked (`progress`).
    ticks: u64,
    /// When tracing started (`begin`), on the readers' clock.
    began_ns: u64,
    /// When the sockets found at start-up were known to exist (monotonic
    /// ns): their age in a state is at least the time since.
    existing_since_ns: Option<u64>,
    /// Caps on the metrics' label values.
    limits: Limits,
    /// The kernel's names of the reasons for resets.
    reset_names: ResetNames,
    /// The last scrape's render time (s) and series count.
    previous_scrape: Option<(f64, usize)>,
    /// The last exposition rendered, and when.
    last_exposition: Option<(Instant, Bytes)>,
    /// When tracing started, in seconds since the epoch.
    start_time_s: f64,
    /// Daemon mode: no summaries on stdout.
    quiet: bool,
    /// `top`: the ports' warnings come with each frame.
    view_only: bool,
    /// Connections whose CLOSE may have been lost.
    doubts: Doubts,
    /// When the last drain read the rings (monotonic ns).
    drained_ns: u64,
}

impl<W: io::Write> Session<W> {
    /// A session printing to `out`, warning on stderr, reading the host.
    pub fn new(pipeline: Pipeline, printer: Printer, out: W, timewait: bool) -> Self {
        Session::with(
            pipeline,
            printer,
            out,
            io::stderr(),
            timewait,
            Readers::host(),
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
        readers: Readers,
    ) -> Self {
        Self {
            sinks: Sinks {
                stats: Stats::new(),
                ports: Ports::default(),
                printer,
                out,
                live: pipeline.records(),
            },
            pipeline,
            warnings: Warnings::new(warnings),
            timewait,
            namespaces: NetnsTable::default(),
            listeners: Listeners::default(),
            readers,
            worst: None,
            ticks: 0,
            began_ns: (readers.now_ns)(),
            existing_since_ns: None,
            limits: Limits::DEFAULT,
            reset_names: ResetNames::default(),
            previous_scrape: None,
            last_exposition: None,
            start_time_s: 0.0,
            quiet: false,
            view_only: false,
            doubts: Doubts::default(),
            drained_ns: 0,
        }
    }

    /// Caps the metrics' label values.
    pub fn limit_metrics(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Names the reasons of the resets sent as the running kernel does.
    pub fn name_resets(&mut self, names: ResetNames) {
        self.reset_names = names;
    }

    /// Daemon mode: nothing on stdout (no live log, no summaries); problems
    /// are still said on stderr, one line each, and the metrics served.
    pub fn quiet(&mut self) {
        self.quiet = true;
        self.sinks.live = false;
        self.warnings.quiet();
    }

    /// Learns a timewait socket that existed before tracing started.
    /// Returns whether it is followed (TIME_WAIT traced, the socket shown
    /// by the kernel filter, room in the table).
    pub fn seed_timewait(&mut self, seed: &TwSeed) -> bool {
        self.timewait && self.pipeline.seed_timewait(seed)
    }

    /// Learns the sockets and namespaces that existed before tracing
    /// started, and reads the namespaces' counters as they were.
    pub fn seed(&mut self, snapshot: Snapshot) {
        // After the snapshot was taken: a lower bound of their ages.
        self.existing_since_ns = Some((self.readers.now_ns)());
        self.pipeline.seed(snapshot.sockets);
        for (netns, pid) in snapshot.namespaces {
            self.namespaces.existed_at_start(netns);
            self.pipeline.namespaces().note(netns, pid);
        }
        self.poll_namespaces((self.readers.now_ns)());
    }

    /// Live timewait sockets per network namespace.
    pub fn timewait_counts(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.pipeline.timewait_counts()
    }

    /// Tracing starts now: the live log's column header.
    pub fn begin(&mut self) -> io::Result<()> {
        self.began_ns = (self.readers.now_ns)();
        self.start_time_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if !self.sinks.live {
            return Ok(());
        }
        self.sinks.printer.header(&mut self.sinks.out)?;
        self.sinks.out.flush()
    }

    /// One record from the rings.
    #[inline]
    pub fn record(&mut self, record: Result<Event, DecodeError>) -> io::Result<()> {
        let mut sink = self.sinks.all();
        self.pipeline.record(record, &mut sink)
    }

    /// A record too short to copy out of its ring.
    pub fn undecodable(&mut self, err: &DecodeError) {
        self.pipeline.undecodable(err);
    }

    /// After each drain of the rings, with the kernel side's loss counts
    /// read after it, from `read_ns` on.
    pub fn end_drain(&mut self, lost: PerKind, read_ns: u64) -> io::Result<()> {
        let now_ns = (self.readers.now_ns)();
        self.drained_ns = read_ns;
        {
            let mut sink = self.sinks.all();
            self.pipeline.end_batch(lost, read_ns, now_ns, &mut sink)?;
        }
        self.sinks.out.flush()
    }

    /// What the kernel side counted itself, as just read (see
    /// `Pipeline::counted`).
    pub fn counted(&mut self, reading: Reading) -> io::Result<()> {
        let now_ns = (self.readers.now_ns)();
        let mut sink = self.sinks.all();
        self.pipeline.counted(reading, now_ns, &mut sink)
    }

    /// Once a second: says on stderr what was lost or not followed since the
    /// last time, reads the namespaces' counters, and warns when a
    /// destination's ports run low.
    pub fn every_second(&mut self) -> io::Result<()> {
        let now = (self.readers.now_ns)();
        self.warnings
            .losses(self.pipeline.lost(), now / 1_000_000_000);
        self.warnings.untracked(
            self.pipeline.untracked(),
            self.pipeline.untracked_timewaits(),
        );
        self.poll_namespaces(now);
        self.clear_doubts(now)?;
        match self.view_only {
            // Said with each frame.
            true => Ok(()),
            false => self.ports_alerts(now),
        }
    }

    /// The worst finding of the last summary.
    pub fn worst(&self) -> Option<Severity> {
        self.worst
    }

    /// The report now: everything the aggregates know, as every view
    /// renders it.
    fn report(&mut self, want: Want, recursion_misses: u64) -> Report {
        let now_ns = (self.readers.now_ns)();
        let elapsed = self.elapsed_at(now_ns);
        report::build(
            Sources {
                pipeline: &self.pipeline,
                stats: &self.sinks.stats,
                ports: &mut self.sinks.ports,
                namespaces: &mut self.namespaces,
                listeners: &self.listeners,
                timewait: self.timewait,
                existing_since_ns: self.existing_since_ns,
                elapsed,
                start_time_s: self.start_time_s,
                recursion_misses,
                reset_names: &self.reset_names,
            },
            now_ns,
            want,
        )
    }

    /// Warns once per crossing when a destination's ports run low.
    fn ports_alerts(&mut self, now_ns: u64) -> io::Result<()> {
        let rows = report::destinations(
            &self.pipeline,
            &self.sinks.stats,
            &mut self.sinks.ports,
            &self.namespaces,
            now_ns,
            PORTS_ROWS,
        );
        self.alerts_of(&rows, now_ns)
    }

    /// The warnings of `rows`, the destinations now.
    fn alerts_of(&mut self, rows: &[DestReport], now_ns: u64) -> io::Result<()> {
        let alerts: Vec<_> = self
            .sinks
            .ports
            .alerts(rows)
            .into_iter()
            .map(|(level, r)| (level, r.clone()))
            .collect();
        for (level, r) in alerts {
            let name = self
                .namespaces
                .name(r.dest.netns)
                .and_then(NetnsName::label);
            let line = crate::render::ports::alert_line(level, &r, name.as_deref());
            self.warnings.warn(format_args!("{line}"));
            if !self.quiet {
                self.sinks.printer.ports_alert(
                    &mut self.sinks.out,
                    level,
                    &r,
                    name.as_deref(),
                    now_ns,
                )?;
            }
        }
        self.sinks.out.flush()
    }

    /// Answers one scrape of the metrics endpoint: `recursion_misses`, the
    /// kernel's count now; `refused`, the endpoint's connections refused so
    /// far. Scrapes less than `SCRAPE_REUSE` apart get the same exposition:
    /// however many scrapers there are, rendering takes the loop at most
    /// ten times a second.
    pub fn scrape(&mut self, recursion_misses: u64, refused: u64) -> Bytes {
        if let Some((at, body)) = &self.last_exposition
            && at.elapsed() < SCRAPE_REUSE
        {
            return body.clone();
        }
        let started = Instant::now();
        let (text, series) = self.metrics(recursion_misses, refused);
        self.previous_scrape = Some((started.elapsed().as_secs_f64(), series));
        let body = Bytes::from(text);
        self.last_exposition = Some((started, body.clone()));
        body
    }

    /// The metrics exposition now, and its series count: the report,
    /// rendered for Prometheus.
    pub fn metrics(&mut self, recursion_misses: u64, refused: u64) -> (String, usize) {
        let limits = self.limits;
        // Capped by the exposition, not by the summary's row count.
        let want = Want {
            rows: limits.destinations,
            summary: false,
        };
        let report = self.report(want, recursion_misses);
        metrics::render(&Scrape {
            report: &report,
            limits,
            previous: self.previous_scrape,
            refused_connections: refused,
        })
    }

    /// The live view (`top`) from now on: nothing printed, and the ports'
    /// warnings taken from the view's reports (one pass over the timewait
    /// sockets a frame, not two).
    pub fn view_only(&mut self) {
        self.quiet();
        self.view_only = true;
    }

    /// The report for the live view (`top`): as a summary's, with as many
    /// destinations as a screen can show, and no summary's side effects
    /// but the ports' warnings.
    pub fn view(&mut self, recursion_misses: u64) -> io::Result<Report> {
        let want = Want {
            rows: TOP_ROWS,
            summary: false,
        };
        let report = self.report(want, recursion_misses);
        self.alerts_of(&report.ports, report.at_ns)?;
        Ok(report)
    }

    /// Prints a summary of everything since start (not in daemon mode).
    pub fn summary(&mut self, recursion_misses: u64) -> io::Result<()> {
        match self.quiet {
            true => Ok(()),
            false => self.summary_asked(recursion_misses),
        }
    }

    /// Prints a summary of everything since start, in any mode: SIGUSR1
    /// asks for one.
    pub fn summary_asked(&mut self, recursion_misses: u64) -> io::Result<()> {
        let want = Want {
            rows: PORTS_ROWS,
            summary: true,
        };
        let report = self.report(want, recursion_misses);
        self.worst = findings::worst(&report.findings);
        self.sinks.printer.summary(&mut self.sinks.out, &report)?;
        self.sinks.out.flush()
    }

    /// `diagnose`: one line on stderr every 5 s while it traces, with what
    /// is found so far.
    pub fn progress(&mut self, until: Duration, recursion_misses: u64) {
        self.ticks += 1;
        if !self.ticks.is_multiple_of(5) {
            return;
        }
        // The schedule, in whole seconds ("5 of 60 s"); the findings' rates
        // are over the report's own elapsed time.
        let elapsed = Duration::from_secs(self.ticks);
        let want = Want {
            rows: PORTS_ROWS,
            summary: false,
        };
        let report = self.report(want, recursion_misses);
        let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
        self.warnings.line(format_args!(
            "diagnosing: {} of {} s, {} transitions; so far {} critical, {} warning, {} info",
            elapsed.as_secs(),
            until.as_secs(),
            report.totals.transitions,
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info)
        ));
    }

    /// At exit, after the last drain: settles and prints what is left, then
    /// the last summary.
    pub fn finish(&mut self, recursion_misses: u64) -> io::Result<()> {
        {
            let mut sink = self.sinks.all();
            self.pipeline.finish((self.readers.now_ns)(), &mut sink)?;
        }
        self.summary(recursion_misses)
    }

    /// The exit line's numbers.
    pub fn totals(&self, recursion_misses: u64) -> Totals {
        report::totals(
            &self.pipeline,
            &self.sinks.stats,
            recursion_misses,
            self.elapsed(),
        )
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed_at((self.readers.now_ns)())
    }

    /// Time traced at `now_ns`, on the readers' clock.
    fn elapsed_at(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(now_ns.saturating_sub(self.began_ns))
    }

    /// Where the output goes, to finish it at exit.
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.sinks.out
    }
}

#[cfg(test)]
mod tests;
