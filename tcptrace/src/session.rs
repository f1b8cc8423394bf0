//! One tracing session: the pipeline and its sinks (the aggregates of every
//! summary, and the live log unless `--summary`), the namespaces' names,
//! sysctls and counters, and the warnings and summaries the loop asks for.
//! What the agent's loop calls; it knows nothing of file descriptors or
//! timers, and reads the host only through the [`Readers`] it is given.

use std::{
    io,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rustc_hash::FxHashMap as HashMap;

use crate::{
    aggregate::{listeners::Listeners, netns::NetnsTable, ports::Ports, stats::Stats},
    findings::{self, Severity},
    host::{
        netns as names,
        netstat,
        snapshot::Snapshot,
        sockdiag::{self, DiagSocket},
        sysctl,
    },
    kernel::monotonic_ns,
    model::{
        DecodeError, Event, ListenerSample, Listed, NetnsName, Sysctls, Values, PerKind, RecordKind, Sink, TwCount, TwSeed,
    },
    pipeline::Pipeline,
    render::{
        LiveLog, Printer,
        metrics::{self, Limits, Scrape},
    },
    report::{self, Report, Sources, Totals, Want},
};

/// Destinations listed in a summary; the rest are pooled as "other".
pub const PORTS_ROWS: usize = 20;

/// In daemon mode, a repeating warning is said at most this often.
const QUIET_REPEAT_S: u64 = 60;

/// After losses, how often (at most) the kernel's connections are listed to
/// end those whose CLOSE was lost (`clear_doubts`).
const DOUBTS_EVERY_S: u64 = 10;

/// A drain that read the rings this long after a moment has taken every
/// record stamped before it (the rings' merge margin is 10 ms).
const MERGED_AFTER_NS: u64 = 100_000_000;

/// Scrapes closer together than this share one exposition.
const SCRAPE_REUSE: Duration = Duration::from_millis(100);

/// How the session reads the host: each through a process in the namespace
/// (`pid`, `netns`).
#[derive(Clone, Copy)]
pub struct Readers {
    /// The namespace's `netstat` and `snmp` counters.
    pub counters: fn(u32, u32) -> io::Result<Values>,
    pub sysctls: fn(u32, u32) -> io::Result<Sysctls>,
    pub name: fn(u32, u32) -> NetnsName,
    /// Its listening sockets and their accept queues.
    pub listeners: fn(u32, u32) -> io::Result<Vec<ListenerSample>>,
    /// Its connections (full sockets, no listeners).
    pub sockets: fn(u32, u32) -> io::Result<Vec<DiagSocket>>,
}

impl Readers {
    /// The real ones: /proc, and /proc/sys from inside the namespace.
    pub fn host() -> Self {
        Self {
            counters: |pid, netns| {
                let netstat = netstat::read(pid, netns, "netstat")?;
                let snmp = netstat::read(pid, netns, "snmp")?;
                Ok(netstat::values(&[netstat, snmp]))
            },
            sysctls: sysctl::read_in,
            listeners: sockdiag::listeners_in,
            sockets: sockdiag::sockets_in,
            name: |netns, pid| {
                names::name_of(
                    netns,
                    pid,
                    &names::ip_netns_names(&["/run/netns", "/var/run/netns"]),
                )
            },
        }
    }
}

/// Both sinks, borrowed for one call into the pipeline.
fn sinks<'a, W: io::Write>(
    stats: &'a mut Stats,
    ports: &'a mut Ports,
    printer: &'a mut Printer,
    out: &'a mut W,
    live: bool,
) -> impl Sink + 'a {
    ((stats, ports), live.then_some(LiveLog { printer, out }))
}

pub struct Session<W: io::Write, E: io::Write = io::Stderr> {
    pipeline: Pipeline,
    stats: Stats,
    ports: Ports,
    printer: Printer,
    out: W,
    /// Where warnings go (stderr), one line per problem.
    warnings: E,
    /// Print every transition and connection (not `--summary`).
    live: bool,
    /// Whether timewait sockets are traced (and their overflows said).
    timewait: bool,
    namespaces: NetnsTable,
    listeners: Listeners,
    readers: Readers,
    /// The kernel side's losses as last said.
    lost_reported: PerKind,
    warned_untracked: bool,
    warned_untracked_tw: bool,
    /// When each repeating warning was last said (`repeat_due`).
    repeated_at: HashMap<Option<u32>, Option<u64>>,
    /// Overflows counted but not said yet, by namespace.
    overflows_unsaid: HashMap<u32, u64>,
    /// The worst finding of the last summary.
    worst: Option<Severity>,
    /// Seconds ticked (`progress`).
    ticks: u64,
    /// Since `begin`.
    started: Instant,
    /// When the sockets found at start-up were known to exist (monotonic
    /// ns): their age in a state is at least the time since.
    existing_since_ns: Option<u64>,
    /// Caps on the metrics' label values.
    limits: Limits,
    /// The last scrape's render time (s) and series count.
    previous_scrape: Option<(f64, usize)>,
    /// The last exposition rendered, and when.
    last_exposition: Option<(Instant, Bytes)>,
    /// When tracing started, in seconds since the epoch.
    start_time_s: f64,
    /// Daemon mode: no summaries on stdout.
    quiet: bool,
    /// The kernel's connections in the namespaces with some in doubt, as
    /// listed at the time given, to act on at the next second.
    listed: Option<(u64, Vec<(u32, Listed)>)>,
    /// When connections in doubt were last looked for (s).
    doubts_checked_s: Option<u64>,
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
            live: pipeline.records(),
            pipeline,
            stats: Stats::new(),
            ports: Ports::default(),
            printer,
            out,
            warnings,
            timewait,
            namespaces: NetnsTable::default(),
            listeners: Listeners::default(),
            readers,
            lost_reported: PerKind::default(),
            warned_untracked: false,
            warned_untracked_tw: false,
            repeated_at: HashMap::default(),
            overflows_unsaid: HashMap::default(),
            worst: None,
            ticks: 0,
            started: Instant::now(),
            existing_since_ns: None,
            limits: Limits::DEFAULT,
            previous_scrape: None,
            last_exposition: None,
            start_time_s: 0.0,
            quiet: false,
            listed: None,
            doubts_checked_s: None,
            drained_ns: 0,
        }
    }

    /// Caps the metrics' label values.
    pub fn limit_metrics(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Daemon mode: nothing on stdout (no live log, no summaries); problems
    /// are still said on stderr, one line each, and the metrics served.
    pub fn quiet(&mut self) {
        self.quiet = true;
        self.live = false;
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
        // After the snapshot was taken: a lower bound of their ages.
        self.existing_since_ns = Some(monotonic_ns());
        self.pipeline.seed(snapshot.sockets);
        for (netns, pid) in snapshot.namespaces {
            self.namespaces.existed_at_start(netns);
            self.pipeline.namespaces().note(netns, pid);
        }
        self.poll_namespaces(monotonic_ns());
    }

    /// Live timewait sockets per network namespace.
    pub fn timewait_counts(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.pipeline.timewait_counts()
    }

    /// Tracing starts now: the live log's column header.
    pub fn begin(&mut self) -> io::Result<()> {
        self.started = Instant::now();
        self.start_time_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if !self.live {
            return Ok(());
        }
        self.printer.header(&mut self.out)?;
        self.out.flush()
    }

    /// One record from the rings.
    #[inline]
    pub fn record(&mut self, record: Result<Event, DecodeError>) -> io::Result<()> {
        let mut sink = sinks(
            &mut self.stats,
            &mut self.ports,
            &mut self.printer,
            &mut self.out,
            self.live,
        );
        self.pipeline.record(record, &mut sink)
    }

    /// A record too short to copy out of its ring.
    pub fn undecodable(&mut self, err: &DecodeError) {
        self.pipeline.undecodable(err);
    }

    /// After each drain of the rings, with the kernel side's loss counts
    /// read after it, from `read_ns` on.
    pub fn end_drain(&mut self, lost: PerKind, read_ns: u64) -> io::Result<()> {
        let now_ns = monotonic_ns();
        self.drained_ns = read_ns;
        {
            let mut sink = sinks(
                &mut self.stats,
                &mut self.ports,
                &mut self.printer,
                &mut self.out,
                self.live,
            );
            self.pipeline.end_batch(lost, read_ns, now_ns, &mut sink)?;
        }
        self.out.flush()
    }

    /// Once a second: says on stderr what was lost or not followed since the
    /// last time, reads the namespaces' counters, and warns when a
    /// destination's ports run low.
    pub fn every_second(&mut self) -> io::Result<()> {
        let now_s = monotonic_ns() / 1_000_000_000;
        let lost = self.pipeline.lost();
        if lost.total() > self.lost_reported.total() && self.repeat_due(None, now_s) {
            let reported = self.lost_reported;
            let kinds: Vec<String> = lost
                .iter()
                .zip(reported.iter())
                .filter(|((_, now), (_, before))| now > before)
                .map(|((kind, now), (_, before))| format!("{} {}", now - before, kind.name()))
                .collect();
            self.warn(format_args!(
                "{} records lost (ring buffer full: {}; {} in total); \
                 their connections' verdicts and durations are unknown where they would have told; raise --ring-size",
                lost.total() - reported.total(),
                kinds.join(", "),
                lost.total(),
            ));
            self.lost_reported = lost;
        }
        if self.pipeline.untracked() > 0 && !self.warned_untracked {
            self.warned_untracked = true;
            self.warn(format_args!(
                "already following --max-sockets sockets; \
                 others get unknown durations and no verdict (raise --max-sockets)"
            ));
        }
        if self.pipeline.untracked_timewaits() > 0 && !self.warned_untracked_tw {
            self.warned_untracked_tw = true;
            self.warn(format_args!(
                "already following twice --max-sockets timewait sockets; \
                 others' TIME_WAIT is not measured (raise --max-sockets)"
            ));
        }
        let now = monotonic_ns();
        self.poll_namespaces(now);
        self.clear_doubts(now)?;
        self.ports_alerts(now)
    }

    /// After transition records were lost, connections whose CLOSE may have
    /// been among them could stay open forever: at most every
    /// `DOUBTS_EVERY_S`, the kernel's connections are listed in the
    /// namespaces that have some in doubt; at a later second, once a drain
    /// has taken every record from before that listing, they are listed
    /// again, and those neither listing shows are ended (a dump is not a
    /// snapshot: a socket moved within the kernel's tables while it runs can
    /// be skipped once), verdict unknown where nothing told.
    fn clear_doubts(&mut self, now_ns: u64) -> io::Result<()> {
        if let Some((listed_ns, _)) = &self.listed {
            if self.drained_ns < listed_ns + MERGED_AFTER_NS {
                return Ok(());
            }
            let Some((listed_ns, lists)) = self.listed.take() else {
                return Ok(());
            };
            let again = self.list_connections(lists.iter().map(|(netns, _)| *netns).collect());
            {
                let mut sink = sinks(
                    &mut self.stats,
                    &mut self.ports,
                    &mut self.printer,
                    &mut self.out,
                    self.live,
                );
                for (netns, first) in &lists {
                    // Not listed again (the namespace could not be entered):
                    // nothing is concluded.
                    let Some((_, second)) = again.iter().find(|(n, _)| n == netns) else {
                        continue;
                    };
                    self.pipeline
                        .end_gone(*netns, [first, second], listed_ns, &mut sink)?;
                }
            }
            return self.out.flush();
        }
        let now_s = now_ns / 1_000_000_000;
        let due = self
            .doubts_checked_s
            .is_none_or(|at| now_s >= at + DOUBTS_EVERY_S);
        if self.pipeline.lost().get(RecordKind::Transition) == 0 || !due {
            return Ok(());
        }
        self.doubts_checked_s = Some(now_s);
        let doubtful = self.pipeline.in_doubt(now_ns);
        if !doubtful.is_empty() {
            let lists = self.list_connections(doubtful);
            self.listed = Some((now_ns, lists));
        }
        Ok(())
    }

    /// The kernel's connections in each of `namespaces` that it can enter
    /// (through a process of theirs); those it cannot are left out.
    fn list_connections(&mut self, namespaces: Vec<u32>) -> Vec<(u32, Listed)> {
        let pids: HashMap<u32, u32> = self.pipeline.namespaces().with_process().collect();
        let sockets = self.readers.sockets;
        namespaces
            .into_iter()
            .filter_map(|netns| {
                let listed = sockets(*pids.get(&netns)?, netns).ok()?;
                Some((netns, listed.iter().map(|s| (s.local, s.remote)).collect()))
            })
            .collect()
    }

    /// Whether a warning that repeats (losses: `None`; a namespace's
    /// overflows) may be said now: always, but in daemon mode at most once a
    /// minute each, the counts in between added up (a journal, not a
    /// terminal, reads them).
    fn repeat_due(&mut self, what: Option<u32>, now_s: u64) -> bool {
        if !self.quiet {
            return true;
        }
        let last = self.repeated_at.entry(what).or_insert(None);
        if last.is_some_and(|at| now_s < at + QUIET_REPEAT_S) {
            return false;
        }
        *last = Some(now_s);
        true
    }

    /// Reads every namespace's counters (and, when due, its sysctls and
    /// name); says when connections got no timewait socket because a
    /// namespace's `tcp_max_tw_buckets` was reached.
    fn poll_namespaces(&mut self, now_ns: u64) {
        let now_s = now_ns / 1_000_000_000;
        let readers = self.readers;
        let known: Vec<(u32, u32)> = self.pipeline.namespaces().with_process().collect();
        for &(netns, pid) in &known {
            if self.namespaces.unnamed(netns) {
                self.namespaces.set_name(netns, (readers.name)(netns, pid));
            }
            if self.namespaces.sysctls_due(netns, now_s)
                && let Ok(sysctls) = (readers.sysctls)(pid, netns)
            {
                self.namespaces.set_sysctls(netns, sysctls, now_s);
            }
        }
        for &(netns, pid) in &known {
            if let Ok(now) = (readers.listeners)(pid, netns) {
                self.listeners.sample(netns, &now);
            }
        }
        let poll = self
            .namespaces
            .poll(known.into_iter(), readers.counters, now_s);
        // Read through the next process seen there; what it counted so far
        // stays, until it has gone.
        for netns in poll.unreadable {
            self.pipeline.namespaces().forget(netns);
        }
        for netns in poll.gone {
            self.pipeline.namespaces().remove(netns);
        }
        if !self.timewait {
            return;
        }
        for rise in poll.rises {
            let unsaid = self.overflows_unsaid.entry(rise.netns).or_default();
            *unsaid += rise.new;
            if !self.repeat_due(Some(rise.netns), now_s) {
                continue;
            }
            let new = self
                .overflows_unsaid
                .remove(&rise.netns)
                .unwrap_or(rise.new);
            self.warn(format_args!(
                "netns {}: {} connections closed without a timewait socket \
                 (tcp_max_tw_buckets reached, TcpExtTCPTimeWaitOverflow; {} since start)",
                rise.netns, new, rise.since_start
            ));
        }
    }

    /// The worst finding of the last summary.
    pub fn worst(&self) -> Option<Severity> {
        self.worst
    }

    /// The report now: everything the aggregates know, as every view
    /// renders it.
    fn report(&mut self, want: Want, recursion_misses: u64) -> Report {
        report::build(
            Sources {
                pipeline: &self.pipeline,
                stats: &self.stats,
                ports: &mut self.ports,
                namespaces: &mut self.namespaces,
                listeners: &self.listeners,
                timewait: self.timewait,
                existing_since_ns: self.existing_since_ns,
                elapsed: self.started.elapsed(),
                start_time_s: self.start_time_s,
                recursion_misses,
            },
            monotonic_ns(),
            want,
        )
    }

    /// Warns once per crossing when a destination's ports run low.
    fn ports_alerts(&mut self, now_ns: u64) -> io::Result<()> {
        let rows = report::destinations(
            &self.pipeline,
            &self.stats,
            &mut self.ports,
            &self.namespaces,
            now_ns,
            PORTS_ROWS,
        );
        let alerts: Vec<_> = self
            .ports
            .alerts(&rows)
            .into_iter()
            .map(|(level, r)| (level, r.clone()))
            .collect();
        for (level, r) in alerts {
            let name = self
                .namespaces
                .name(r.dest.netns)
                .and_then(NetnsName::label);
            let line = crate::render::ports::alert_line(level, &r, name.as_deref());
            self.warn(format_args!("{line}"));
            if !self.quiet {
                self.printer
                    .ports_alert(&mut self.out, level, &r, name.as_deref(), now_ns)?;
            }
        }
        self.out.flush()
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

    /// Prints a summary of everything since start (not in daemon mode).
    pub fn summary(&mut self, recursion_misses: u64) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        let want = Want {
            rows: PORTS_ROWS,
            summary: true,
        };
        let report = self.report(want, recursion_misses);
        self.worst = findings::worst(&report.findings);
        self.printer
            .summary(&mut self.out, &report, monotonic_ns())?;
        self.out.flush()
    }

    /// `diagnose`: one line on stderr every 5 s while it traces, with what
    /// is found so far.
    pub fn progress(&mut self, until: Duration, recursion_misses: u64) {
        self.ticks += 1;
        if !self.ticks.is_multiple_of(5) {
            return;
        }
        let elapsed = Duration::from_secs(self.ticks);
        let want = Want {
            rows: PORTS_ROWS,
            summary: false,
        };
        let report = self.report(want, recursion_misses);
        let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
        let _ = writeln!(
            self.warnings,
            "tcptrace: diagnosing: {} of {} s, {} transitions; so far {} critical, {} warning, {} info",
            elapsed.as_secs(),
            until.as_secs(),
            report.totals.transitions,
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info)
        );
    }

    /// At exit, after the last drain: settles and prints what is left, then
    /// the last summary.
    pub fn finish(&mut self, recursion_misses: u64) -> io::Result<()> {
        {
            let mut sink = sinks(
                &mut self.stats,
                &mut self.ports,
                &mut self.printer,
                &mut self.out,
                self.live,
            );
            self.pipeline.finish(monotonic_ns(), &mut sink)?;
        }
        self.summary(recursion_misses)
    }

    /// The exit line's numbers.
    pub fn totals(&self, recursion_misses: u64) -> Totals {
        report::totals(&self.pipeline, recursion_misses, self.elapsed())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the output goes, to finish it at exit.
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
mod tests;
