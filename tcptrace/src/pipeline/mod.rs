//! The pipeline: decoded records in, facts out. Each record goes through the
//! trackers (connections, timewait sockets, namespaces), which turn it into
//! facts — a transition with its owner and time in state, a connection
//! closed with its verdict, a connection's complete record; the filters are
//! applied here, once, and what passes goes to the sinks (printers,
//! aggregates) behind [`Sink`]. No I/O of its own; unit-tested with
//! synthetic records and recording sinks.

pub mod filter;

use std::io;

use rustc_hash::FxHashMap as HashMap;
use tcptrace_common::KernelFilter;

use crate::{
    model::{
        Closed, Counted, DecodeError, Event, Existing, Fact, Listed, Losses, Open, PerKind,
        Reading, Retransmits, Sink, TcpState, TwCount, TwSeed, TwSocket,
    },
    pipeline::filter::Filter,
    track::{
        conn::Tracker,
        namespaces::Namespaces,
        timewait::{Timewaits, TwOutput},
    },
};

/// How the pipeline is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub filter: Filter,
    /// The filter the kernel side applies (family, ports): sockets found
    /// at start-up that it hides would never be seen to move.
    pub kernel: KernelFilter,
    /// Bound on connections (and on timewait sockets) followed.
    pub max_sockets: usize,
    /// The kernel's timer frequency, if known.
    pub hz: Option<u32>,
    /// Whether connection records are printed (and so held until their
    /// timewait socket ends): not with `--summary`.
    pub records: bool,
}

pub struct Pipeline {
    conns: Tracker,
    timewaits: Timewaits,
    namespaces: Namespaces,
    filter: Filter,
    kernel: KernelFilter,
    /// The filter accepts everything: skip it.
    accept_all: bool,
    /// Reused between timewait records.
    tw_out: Vec<TwOutput>,
    records: bool,
    /// Records received, by kind.
    pub received: PerKind,
    /// What the kernel side lost, and when.
    losses: Losses,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Resets this host sent for no socket, by local port (a segment to a
    /// port nobody listens on, or to a connection it forgot).
    pub no_socket_resets: Tally<u16>,
    /// SYN-ACKs retransmitted, by listener (namespace, port).
    pub synack_retransmits: Tally<(u32, u16)>,
    /// What the kernel side had counted at the last reading, by key.
    counted: HashMap<Counted, u64>,
}

/// Counts by key, at most `MAX_KEYS` keys; the others under a pool key
/// (`Default`: port 0, namespace 0), and the most first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally<K: std::hash::Hash + Eq>(HashMap<K, u64>);

impl<K: std::hash::Hash + Eq + Copy + Ord + Default> Tally<K> {
    const MAX_KEYS: usize = 1024;

    pub fn add(&mut self, key: K, n: u64) {
        let key = match self.0.len() >= Self::MAX_KEYS && !self.0.contains_key(&key) {
            true => K::default(),
            false => key,
        };
        *self.0.entry(key).or_default() += n;
    }

    /// (key, count), most first.
    pub fn rows(&self) -> Vec<(K, u64)> {
        let mut rows: Vec<(K, u64)> = self.0.iter().map(|(&k, &n)| (k, n)).collect();
        rows.sort_by_key(|&(k, n)| (std::cmp::Reverse(n), k));
        rows
    }
}

impl Pipeline {
    pub fn new(settings: Settings) -> Self {
        Self {
            conns: Tracker::new(settings.max_sockets),
            // Twice as many timewait sockets: a host at its
            // tcp_max_tw_buckets holds as many as connections, plus those
            // whose end is still settling.
            timewaits: Timewaits::new(
                settings.max_sockets.saturating_mul(2),
                settings.hz,
                settings.records,
            ),
            namespaces: Namespaces::default(),
            accept_all: settings.filter.is_empty(),
            filter: settings.filter,
            kernel: settings.kernel,
            tw_out: Vec::new(),
            records: settings.records,
            received: PerKind::default(),
            losses: Losses::default(),
            undecodable: 0,
            no_socket_resets: Tally::default(),
            synack_retransmits: Tally::default(),
            counted: HashMap::default(),
        }
    }

    /// Learns the full sockets that existed before tracing started.
    pub fn seed(&mut self, existing: impl IntoIterator<Item = Existing>) {
        let kernel = self.kernel;
        self.conns.seed(
            existing
                .into_iter()
                .filter(|e| filter::kernel_accepts(&kernel, &e.local, &e.remote)),
        );
    }

    /// Learns a timewait socket that existed before tracing started.
    /// Those the kernel filter hides are left out (their timers' records
    /// would never come); returns whether it is followed.
    pub fn seed_timewait(&mut self, seed: &TwSeed) -> bool {
        filter::kernel_accepts(&self.kernel, &seed.local, &seed.remote) && self.timewaits.seed(seed)
    }

    /// Processes one record; what it concludes goes to `sink`.
    pub fn record(
        &mut self,
        record: Result<Event, DecodeError>,
        sink: &mut impl Sink,
    ) -> io::Result<()> {
        if let Ok(event) = &record {
            self.received.add(event.kind());
        }
        match record {
            Ok(Event::Change(change)) => {
                let (mut t, mut closed) = self.conns.on_change(&change);
                // One whose end was lost, found ended by this transition.
                if let Some(c) = self.conns.take_ended_unseen() {
                    self.closed(sink, &c)?;
                }
                if let Some(task) = t.task {
                    if t.old == TcpState::Close && t.new == TcpState::SynSent {
                        self.timewaits.note_connect(&t);
                    }
                    self.namespaces.note(t.netns, task.pid);
                }
                // The connection lives on in a timewait socket: its verdict
                // is final now, its record comes when that ends.
                if let Some(c) = self.timewaits.join(&mut t, &mut closed) {
                    emit(&self.filter, self.accept_all, sink, Fact::Closed(c))?;
                }
                self.emit(sink, Fact::Transition(&t))?;
                if let Some(c) = closed {
                    self.closed(sink, &c)?;
                }
                Ok(())
            }
            Ok(Event::Timewait(e)) => {
                self.timewaits.on_event(&e, &self.losses, &mut self.tw_out);
                self.timewait_output(sink)
            }
            Ok(Event::BindFailed(b)) => {
                if let Some(task) = b.task {
                    self.namespaces.note(b.netns, task.pid);
                }
                self.emit(sink, Fact::BindFailed(&b))
            }
            Ok(Event::SynRetransmit { sock, .. }) => {
                self.conns.on_syn_retransmit(sock);
                Ok(())
            }
            Ok(Event::Reset(r)) => match self.conns.on_reset(&r) {
                Some(c) => self.closed(sink, &c),
                None => Ok(()),
            },
            Err(err) => {
                self.undecodable(&err);
                Ok(())
            }
        }
    }

    /// What the kernel side counted itself, as read at `now_ns` (each
    /// key's count since it entered the map): what grew since the last
    /// reading is counted. A key missing from the reading was evicted; one
    /// that came back counts from 0 again.
    pub fn counted(
        &mut self,
        reading: Reading,
        now_ns: u64,
        sink: &mut impl Sink,
    ) -> io::Result<()> {
        let mut last = std::mem::take(&mut self.counted);
        let mut result = Ok(());
        for (key, total) in reading {
            let key = match key {
                Ok(key) => key,
                Err(err) => {
                    self.undecodable(&err);
                    continue;
                }
            };
            // A key listed twice (the map's walk restarts when the key it
            // stood on was evicted meanwhile) counts once.
            if self.counted.contains_key(&key) {
                continue;
            }
            let before = last.remove(&key).unwrap_or(0);
            self.counted.insert(key, total);
            let grew = match total >= before {
                true => total - before,
                // Evicted and counted again since: all of it is new.
                false => total,
            };
            if grew == 0 {
                continue;
            }
            self.received.add_n(key.kind(), grew);
            match key {
                Counted::NoSocketReset { port } => self.no_socket_resets.add(port, grew),
                Counted::SynAckRetransmit { netns, port } => {
                    self.synack_retransmits.add((netns, port), grew);
                }
                Counted::Retransmit {
                    netns,
                    local,
                    remote,
                } => {
                    let r = Retransmits {
                        ts_ns: now_ns,
                        netns,
                        local: std::net::SocketAddr::new(local, 0),
                        remote,
                        count: grew,
                    };
                    result = result.and_then(|()| self.emit(sink, Fact::Retransmits(&r)));
                }
            }
        }
        result
    }

    /// A record that could not even be copied out of its ring.
    pub fn undecodable(&mut self, err: &DecodeError) {
        if self.undecodable == 0 {
            log::warn!("skipping an undecodable record: {err}");
        }
        self.undecodable += 1;
    }

    /// Call after each drain of the rings, with the kernel side's loss
    /// counts read after it, from `read_ns` to `now_ns`: settles what
    /// waited for the records that follow it, unknown where those may have
    /// been lost.
    pub fn end_batch(
        &mut self,
        lost: PerKind,
        read_ns: u64,
        now_ns: u64,
        sink: &mut impl Sink,
    ) -> io::Result<()> {
        self.losses.update_read(lost, read_ns, now_ns);
        for c in self.conns.end_batch(&self.losses) {
            self.closed(sink, &c)?;
        }
        self.timewaits
            .end_batch(now_ns, &self.losses, &mut self.tw_out);
        self.timewait_output(sink)
    }

    /// The namespaces with connections in doubt at `before_ns` (their
    /// CLOSE may have been among the records lost).
    pub fn in_doubt(&self, before_ns: u64) -> Vec<u32> {
        self.conns.in_doubt(&self.losses, before_ns)
    }

    /// Ends the connections of `netns` in doubt that neither of two
    /// listings of the kernel's (the first at `listed_ns`) shows.
    pub fn end_gone(
        &mut self,
        netns: u32,
        listings: [&Listed; 2],
        listed_ns: u64,
        sink: &mut impl Sink,
    ) -> io::Result<()> {
        for c in self
            .conns
            .end_gone(netns, listings, listed_ns, &self.losses)
        {
            self.closed(sink, &c)?;
        }
        Ok(())
    }

    /// Transition records received.
    pub fn transitions(&self) -> u64 {
        self.received.get(crate::model::RecordKind::Transition)
    }

    /// Records the kernel side lost so far, by kind.
    pub fn lost(&self) -> PerKind {
        self.losses.counts()
    }

    /// At exit, after the last drain: settles everything, and hands out the
    /// records of connections still in a timewait socket as they stand
    /// (`now_ns`).
    pub fn finish(&mut self, now_ns: u64, sink: &mut impl Sink) -> io::Result<()> {
        for c in self.conns.settle_all(&self.losses) {
            self.closed(sink, &c)?;
        }
        self.timewaits.settle_all(&self.losses, &mut self.tw_out);
        self.timewaits
            .flush_at_exit(now_ns, &self.losses, &mut self.tw_out);
        self.timewait_output(sink)
    }

    /// Open connections that pass the filters.
    pub fn open(&self) -> impl Iterator<Item = Open<'_>> {
        self.conns.open().filter(|o| {
            self.accept_all || self.filter.accepts(o.owner, &o.local, &o.remote, o.netns)
        })
    }

    /// Timewait sockets that pass the filters (those found at start-up and
    /// not seen since only without filters: they have no owner to match).
    pub fn timewait_sockets(&self) -> impl Iterator<Item = TwSocket<'_>> {
        let seeded = self.accept_all.then(|| self.timewaits.seeded());
        self.timewaits
            .sockets()
            .filter(|s| {
                self.accept_all || self.filter.accepts(s.owner, &s.local, &s.remote, s.netns)
            })
            .chain(seeded.into_iter().flatten())
    }

    /// Live timewait sockets per network namespace.
    pub fn timewait_counts(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.timewaits.counts()
    }

    /// A process in each network namespace seen.
    pub fn namespaces(&mut self) -> &mut Namespaces {
        &mut self.namespaces
    }

    /// The owner of the listener(s) on (netns, port), if known.
    pub fn listener_owner(&self, netns: u32, port: u16) -> Option<crate::model::Task> {
        self.conns.listener_owner(netns, port)
    }

    /// Whether the filters show namespace `netns` (`--netns`).
    pub fn shows_netns(&self, netns: u32) -> bool {
        self.filter.accepts_netns(netns)
    }

    /// Whether connection records are printed (not with `--summary`).
    pub fn records(&self) -> bool {
        self.records
    }

    /// Connections not followed because `max_sockets` was reached.
    pub fn untracked(&self) -> u64 {
        self.conns.untracked
    }

    /// Timewait sockets not followed because twice `max_sockets` were: their
    /// TIME_WAIT is not measured.
    pub fn untracked_timewaits(&self) -> u64 {
        self.timewaits.untracked
    }

    /// A connection that closed with its record complete.
    fn closed(&self, sink: &mut impl Sink, c: &Closed) -> io::Result<()> {
        self.emit(sink, Fact::Closed(c))?;
        self.emit(sink, Fact::Record(c))
    }

    fn timewait_output(&mut self, sink: &mut impl Sink) -> io::Result<()> {
        let mut items = std::mem::take(&mut self.tw_out);
        let mut result = Ok(());
        for item in items.drain(..) {
            result = result.and_then(|()| match &item {
                TwOutput::Transition(t) => self.emit(sink, Fact::Transition(t)),
                // Its verdict counted when its full socket closed.
                TwOutput::Closed(c) => self.emit(sink, Fact::Record(c)),
            });
        }
        self.tw_out = items;
        result
    }

    fn emit(&self, sink: &mut impl Sink, fact: Fact<'_>) -> io::Result<()> {
        emit(&self.filter, self.accept_all, sink, fact)
    }
}

/// The one place the filters apply.
#[inline]
fn emit(filter: &Filter, accept_all: bool, sink: &mut impl Sink, fact: Fact<'_>) -> io::Result<()> {
    let accepted = accept_all || {
        let (owner, local, remote, netns) = fact.socket();
        match fact {
            // Counted per destination, with no owner: the destinations the
            // owner filters keep are those their connects made.
            Fact::Retransmits(_) => filter.accepts_place(local, remote, netns),
            _ => filter.accepts(owner, local, remote, netns),
        }
    };
    match accepted {
        true => sink.fact(fact),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests;
