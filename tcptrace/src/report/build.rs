//! Building the report: one pass over the timewait sockets, one over the
//! open connections for each of their tables (ports held, CLOSE_WAIT piles,
//! by state, by namespace and state), the aggregates' own tables, the
//! filter applied once, and the findings over the result.

use std::{net::SocketAddr, time::Duration};

use rustc_hash::FxHashMap as HashMap;

use super::{Counts, Report, Resets, TimewaitReport, Totals};
use crate::{
    aggregate::{
        listeners::Listeners,
        netns::NetnsTable,
        open::{close_wait_piles, open_by_state, sockets_by_netns},
        ports::{Dest, DestReport, Held, HeldCount, Ports},
        stats::Stats,
    },
    findings::{self, Evidence, Listener},
    model::{Comm, ResetNames, Role, ServiceSockets, TcpState},
    pipeline::Pipeline,
};

/// What a report is built from: the session's pipeline and aggregates.
pub struct Sources<'a> {
    pub pipeline: &'a Pipeline,
    pub stats: &'a Stats,
    /// Sampled at each build: the ports held now feed the rates.
    pub ports: &'a mut Ports,
    /// Its "since the last summary" counters restart at a summary.
    pub namespaces: &'a mut NetnsTable,
    pub listeners: &'a Listeners,
    /// Whether timewait sockets are traced.
    pub timewait: bool,
    /// When the sockets found at start-up were known to exist (monotonic
    /// ns): their age in a state is at least the time since.
    pub existing_since_ns: Option<u64>,
    /// Since tracing started.
    pub elapsed: Duration,
    /// When tracing started, in seconds since the epoch.
    pub start_time_s: f64,
    /// Runs of the programs the kernel skipped (BPF recursion).
    pub recursion_misses: u64,
    /// The kernel's names of the reasons for resets.
    pub reset_names: &'a ResetNames,
}

/// What a report is for.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    /// Destinations listed before the rest are pooled as "other".
    pub rows: usize,
    /// A summary: the namespaces' counters "since the last summary" count
    /// from now on.
    pub summary: bool,
}

/// The report at `now_ns` (monotonic).
pub fn build(src: Sources<'_>, now_ns: u64, want: Want) -> Report {
    let Sources {
        pipeline,
        stats,
        ports,
        namespaces,
        listeners,
        timewait,
        existing_since_ns,
        elapsed,
        start_time_s,
        recursion_misses,
        reset_names,
    } = src;
    // Only where binds failed: the timewait sockets by local port.
    let scan = Scan::of(
        pipeline,
        ports,
        namespaces,
        true,
        !stats.bind_failures.is_empty(),
    );
    let rows = destination_rows(ports, &scan.held, namespaces, stats, now_ns, want.rows);
    let binds =
        stats.bind_rows(|netns, port| scan.on_port.get(&(netns, port)).copied().unwrap_or(0));
    let mut netns_rows = namespaces.report(want.summary);
    netns_rows.retain(|n| pipeline.shows_netns(n.netns));
    let listeners: Vec<Listener> = listeners
        .iter()
        .filter(|(netns, _, _)| pipeline.shows_netns(*netns))
        .map(|(netns, local, queue)| Listener {
            netns,
            local,
            owner: pipeline
                .listener_owner(netns, local.port())
                .map(|t| (t.pid, t.comm)),
            queue,
        })
        .collect();
    let counts = Counts::of(stats);
    let mut synack_retransmits = pipeline.synack_retransmits.rows();
    synack_retransmits.retain(|&((netns, _), _)| netns == 0 || pipeline.shows_netns(netns));
    let close_waits = close_wait_piles(pipeline.open(), now_ns, existing_since_ns);
    let found = findings::diagnose(&Evidence {
        elapsed_s: elapsed.as_secs_f64(),
        ports: &rows,
        namespaces: &netns_rows,
        binds: &binds,
        by_service: &counts.by_service,
        close_waits: &close_waits,
        server_timewait: &scan.server,
        listeners: &listeners,
        reset_names,
        synack_retransmits: &synack_retransmits,
    });
    Report {
        at_ns: now_ns,
        totals: totals(pipeline, stats, recursion_misses, elapsed),
        received: pipeline.received,
        start_time_s,
        findings: found,
        counts,
        open: open_by_state(pipeline.open(), now_ns, existing_since_ns),
        sockets: sockets_by_netns(pipeline.open(), now_ns, existing_since_ns),
        timewait: timewait.then(|| {
            TimewaitReport::of(
                stats,
                pipeline.timewait_counts().collect(),
                namespaces.overflows_since_start(),
            )
        }),
        ports: rows,
        destinations_tracked: ports.tracked(),
        folded_connections: ports.folded,
        retransmits_elsewhere: ports.retransmits_elsewhere,
        binds,
        namespaces: netns_rows,
        listeners,
        resets: Resets {
            names: reset_names.clone(),
            sent: stats.resets_sent.most_first(),
            no_socket: pipeline.no_socket_resets.rows(),
        },
        synack_retransmits,
    }
}

/// The exit line's numbers (a report's `totals`).
pub fn totals(
    pipeline: &Pipeline,
    stats: &Stats,
    recursion_misses: u64,
    elapsed: Duration,
) -> Totals {
    Totals {
        transitions: pipeline.transitions(),
        timewait_transitions: stats.tw_transitions,
        lost: pipeline.lost(),
        recursion_misses,
        undecodable: pipeline.undecodable,
        untracked_conns: pipeline.untracked(),
        untracked_timewaits: pipeline.untracked_timewaits(),
        elapsed,
    }
}

/// The destinations' state now, most used first (what the once-a-second
/// warnings look at, as the report would show it).
pub fn destinations(
    pipeline: &Pipeline,
    stats: &Stats,
    ports: &mut Ports,
    namespaces: &NetnsTable,
    now_ns: u64,
    rows: usize,
) -> Vec<DestReport> {
    let held = Scan::of(pipeline, ports, namespaces, false, false).held;
    destination_rows(ports, &held, namespaces, stats, now_ns, rows)
}

fn destination_rows(
    ports: &mut Ports,
    held: &HashMap<Dest, Held>,
    namespaces: &NetnsTable,
    stats: &Stats,
    now_ns: u64,
    rows: usize,
) -> Vec<DestReport> {
    ports.sample(now_ns, held);
    ports.report(
        held,
        |netns| namespaces.sysctls(netns),
        stats.tw_timer_ns,
        now_ns,
        rows,
    )
}

/// What one pass over the timewait sockets tells.
struct Scan {
    /// Ports held toward each destination: the connections this host
    /// opened, from SYN_SENT to CLOSE, and their timewait sockets.
    held: HashMap<Dest, Held>,
    /// Timewait sockets of connections this host accepted, by service,
    /// most first.
    server: Vec<ServiceSockets>,
    /// Timewait sockets by (namespace, local port), where binds failed.
    on_port: HashMap<(u32, u16), u64>,
}

impl Scan {
    /// Timewait sockets found at start-up, whose role is not known, count
    /// as this host's where their local port is in the namespace's
    /// ephemeral range (as a connect() would have chosen it), and as a
    /// server's elsewhere, where that range is known. `servers`, `by_port`:
    /// whether to count those too, or the ports held alone.
    fn of(
        pipeline: &Pipeline,
        ports: &Ports,
        namespaces: &NetnsTable,
        servers: bool,
        by_port: bool,
    ) -> Self {
        let mut held = Self::held_open(pipeline, ports);
        let mut on_port: HashMap<(u32, u16), u64> = HashMap::default();
        let mut server: HashMap<(u32, Option<Comm>), ServiceSockets> = HashMap::default();
        for tw in pipeline.timewait_sockets() {
            match role(tw.role, namespaces, tw.netns, tw.local.port()) {
                Some(Role::Active) => {
                    held.toward(&dest(tw.netns, tw.local, tw.remote)).timewait += 1
                }
                Some(Role::Passive) if servers => {
                    let key = ServiceSockets::key(tw.netns, tw.owner);
                    server
                        .entry(key)
                        .or_insert_with(|| ServiceSockets::new(key))
                        .add(tw.owner);
                }
                _ => {}
            }
            if by_port {
                *on_port.entry((tw.netns, tw.local.port())).or_default() += 1;
            }
        }
        let mut server: Vec<ServiceSockets> = server.into_values().collect();
        server.sort_by_key(|r| (std::cmp::Reverse(r.count), r.netns, r.comm));
        Self {
            held: held.finish(),
            server,
            on_port,
        }
    }

    /// The ports held by open connections this host opened.
    fn held_open(pipeline: &Pipeline, ports: &Ports) -> HeldCount {
        let mut held = ports.held_count();
        for o in pipeline.open() {
            if o.role == Role::Active && o.state != TcpState::Listen && o.local.port() != 0 {
                held.toward(&dest(o.netns, o.local, o.remote)).open += 1;
            }
        }
        held
    }
}

/// A timewait socket's role: as traced, or for one found at start-up, from
/// its local port (`None` where the namespace's range is not known).
fn role(traced: Option<Role>, namespaces: &NetnsTable, netns: u32, port: u16) -> Option<Role> {
    if traced.is_some() {
        return traced;
    }
    let range = namespaces.sysctls(netns)?.port_range;
    Some(
        match range.is_some_and(|(lo, hi)| (lo..=hi).contains(&port)) {
            true => Role::Active,
            false => Role::Passive,
        },
    )
}

/// The destination of a socket this host opened.
fn dest(netns: u32, local: SocketAddr, remote: SocketAddr) -> Dest {
    Dest {
        netns,
        local: local.ip(),
        remote,
    }
}
