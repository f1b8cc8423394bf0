//! The rules, one function each, over the `Evidence` of one summary. The
//! thresholds are here, named, and listed in `THRESHOLDS` (tcptrace/doc/findings.md).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    aggregate::{
        netns::NetnsReport,
        ports::{DestReport, TimewaitHold},
        stats::ProcessKey,
    },
    findings::{Evidence, Finding, Kind, Severity},
    model::{COUNTERS, Verdict},
    words,
};

/// Port usage toward a destination that is worth a warning.
const USAGE_WARNING: f64 = 0.5;
/// A destination that runs out within this many seconds is worth a warning
/// whatever its usage now.
const RUNS_OUT_WARNING_S: f64 = 600.0;
/// Timewait sockets on a server's side worth a word (info only).
const SERVER_TIMEWAIT_INFO: u64 = 100;
/// A CLOSE_WAIT this old is not a connection being closed: it is a leak.
const CLOSE_WAIT_AGE_S: f64 = 30.0;
/// This many connections leaked in CLOSE_WAIT is critical (file descriptors
/// and memory run out).
const CLOSE_WAIT_CRITICAL: u64 = 1000;
/// Resets worth a warning: at least this many, and this share of the
/// process's connections.
const ABORTS_MIN: u64 = 20;
const ABORTS_SHARE: f64 = 0.1;
/// Connects refused or failing toward a destination worth a warning.
const FAILED_CONNECTS_MIN: u64 = 5;
const FAILED_CONNECTS_SHARE: f64 = 0.2;

/// The thresholds, for the documentation: (what, value).
pub const THRESHOLDS: [(&str, &str); 9] = [
    ("port usage toward a destination (warning)", "50 %"),
    ("ports run out within (warning)", "600 s"),
    ("connects failing for lack of a port (critical)", "any"),
    ("timewait sockets on a server's side (info)", "100"),
    (
        "age of the oldest CLOSE_WAIT (warning; 1000 connections: critical)",
        "30 s",
    ),
    (
        "resets sent or received by a process (warning)",
        "20 and 10 % of its connections",
    ),
    (
        "connects refused or failing toward a destination (warning)",
        "5 and 20 % of its connects",
    ),
    (
        "TcpExtTCPTimeWaitOverflow, ListenOverflows, SYN cookies or SYN drops (warning)",
        "any since start",
    ),
    ("failed binds, EADDRINUSE (warning)", "any"),
];

pub fn all(ev: &Evidence<'_>) -> Vec<Finding> {
    let mut found = Vec::new();
    found.extend(ev.ports.iter().filter_map(|r| port_exhaustion(ev, r)));
    found.extend(ev.ports.iter().filter_map(|r| upstream_failures(ev, r)));
    found.extend(server_timewait(ev));
    found.extend(ev.namespaces.iter().filter_map(timewait_overflow));
    found.extend(close_wait_leaks(ev));
    found.extend(aborts(ev));
    found.extend(ev.namespaces.iter().filter_map(|n| listen_overflow(ev, n)));
    found.extend(ev.namespaces.iter().filter_map(syn_queue));
    found.extend(binds_in_use(ev));
    found
}

fn process(key: &ProcessKey) -> String {
    words::process(key, "an unknown process")
}

fn owners(r: &DestReport) -> String {
    words::owners(&r.owners, ", ", "an unknown process")
}

fn namespace(ev: &Evidence<'_>, netns: u32) -> String {
    match ev
        .namespaces
        .iter()
        .find(|n| n.netns == netns)
        .and_then(|n| n.name.as_ref()?.label())
    {
        Some(name) => format!("netns {netns} ({name})"),
        None => format!("netns {netns}"),
    }
}

fn netns_report<'a>(ev: &Evidence<'a>, netns: u32) -> Option<&'a NetnsReport> {
    ev.namespaces.iter().find(|n| n.netns == netns)
}

fn secs(s: f64) -> String {
    match s {
        s if s >= 100.0 => format!("{s:.0} s"),
        s if s >= 1.0 => format!("{s:.1} s"),
        s => format!("{:.1} ms", s * 1000.0),
    }
}

fn counter(n: &NetnsReport, name: &str) -> u64 {
    COUNTERS
        .iter()
        .position(|(_, c)| *c == name)
        .map_or(0, |i| n.since_start[i])
}

/// The myth worth saying when a namespace's `tcp_fin_timeout` was lowered in
/// the hope of shortening TIME_WAIT.
fn fin_timeout_myth(
    n: Option<&NetnsReport>,
    tw_s: Option<f64>,
    hold: Option<TimewaitHold>,
) -> Option<String> {
    let fin = n?.sysctls.as_ref()?.fin_timeout_s?;
    (fin != 60).then(|| {
        let how = match hold {
            Some(TimewaitHold::Measured | TimewaitHold::MeasuredElsewhere) => "measured here",
            _ => "the timer here",
        };
        let measured = tw_s.map_or_else(String::new, |s| format!(" ({how}: {})", secs(s)));
        format!(
            "net.ipv4.tcp_fin_timeout is {fin} s in this namespace: it does not shorten TIME_WAIT. It is \
             the timeout of orphaned sockets in FIN_WAIT2; TIME_WAIT is fixed at 60 s{measured}."
        )
    })
}

/// 1. Port exhaustion toward a destination.
fn port_exhaustion(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
    if r.dest.is_other() {
        return None;
    }
    let usage = r.usage?;
    let capacity = r.capacity?;
    let soon = r
        .time_left_s
        .is_some_and(|s| s > 0.0 && s < RUNS_OUT_WARNING_S);
    let severity = if r.failing || (r.failed > 0 && usage >= 0.99) {
        Severity::Critical
    } else if usage >= USAGE_WARNING || soon {
        Severity::Warning
    } else {
        return None;
    };
    let ns = namespace(ev, r.dest.netns);
    let remote = words::endpoint(&r.dest.remote);
    let who = owners(r);
    let headline = match severity {
        Severity::Critical => format!(
            "{who} in {ns} cannot connect to {remote}: no free local port (EADDRNOTAVAIL, {} failed connects); \
             {} of {capacity} ports held, {} in TIME_WAIT",
            r.failed,
            r.held.total(),
            r.held.timewait
        ),
        _ => {
            let mut h = format!(
                "{who} in {ns} is running out of local ports toward {remote}: {:.0} % held ({} of {capacity})",
                usage * 100.0,
                r.held.total()
            );
            if let Some(left) = r.time_left_s.filter(|s| *s > 0.0) {
                let _ = write!(h, ", exhausted in ~{}", secs(left));
            }
            h
        }
    };
    let why = match (r.timewait_hold, r.timewait_s) {
        (Some(TimewaitHold::Reusable), Some(s)) => {
            format!(
                "a port is reused {} after its connection (tcp_tw_reuse)",
                secs(s)
            )
        }
        (Some(_), Some(s)) => format!(
            "each port stays in TIME_WAIT {} after its connection",
            secs(s)
        ),
        _ => "each port stays held after its connection".into(),
    };
    let closes = r.closed_locally.map_or_else(String::new, |s| {
        format!("; it closes {:.0} % of them first", s * 100.0)
    });
    let explanation = format!(
        "It opens {:.1} new connections/s toward {remote}{closes}, and {why}: {capacity} ports sustain {} \
         connections/s (ports ÷ {} held). Every (local address, remote address, remote port) has its own range.",
        r.rate,
        r.sustainable
            .map_or_else(|| "?".into(), |s| format!("{s:.1}")),
        r.hold_s.map_or_else(|| "?".into(), secs)
    );
    let sysctls = netns_report(ev, r.dest.netns).and_then(|n| n.sysctls.as_ref());
    let range = sysctls
        .and_then(|s| s.port_range)
        .map_or_else(|| "?".into(), |(lo, hi)| format!("{lo}-{hi}"));
    let mut remedy = vec![
        format!(
            "Reuse connections toward {remote}: keep-alive or a connection pool (nginx: `keepalive 32;` in the \
             upstream block, with `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";`)."
        ),
        "Spread the connections over more source addresses or destinations: each pair has its own ports.".into(),
        format!(
            "Widen net.ipv4.ip_local_port_range in {ns} (now {range}): the sustainable rate grows with it."
        ),
    ];
    if r.tw_reuse == Some(false) {
        remedy.push(format!(
            "net.ipv4.tcp_tw_reuse=1 in {ns} (now {}): connect() may then take a TIME_WAIT 4-tuple over \
             after tcp_tw_reuse_delay (1 s). Outgoing connections only; needs TCP timestamps.",
            sysctls.and_then(|s| s.tw_reuse).map_or_else(|| "?".into(), |v| v.to_string())
        ));
    }
    let mut myths: Vec<String> = fin_timeout_myth(
        netns_report(ev, r.dest.netns),
        r.timewait_s,
        r.timewait_hold,
    )
    .into_iter()
    .collect();
    myths.push(
        "tcp_tw_recycle is gone (removed in Linux 4.12: it broke clients behind NAT); SO_LINGER 0 is no \
         TIME_WAIT cure (it resets connections and can lose data)."
            .into(),
    );
    let (pid, comm) = r
        .owners
        .first()
        .map_or((None, None), |(p, c)| (Some(*p), Some(c.clone())));
    Some(Finding {
        kind: Kind::PortExhaustion,
        severity,
        headline,
        explanation,
        numbers: vec![
            ("netns", json!(r.dest.netns)),
            ("pid", json!(pid)),
            ("comm", json!(comm)),
            ("laddr", json!(r.dest.local.to_string())),
            ("raddr", json!(r.dest.remote.ip().to_string())),
            ("rport", json!(r.dest.remote.port())),
            ("held", json!(r.held.total())),
            ("timewait", json!(r.held.timewait)),
            ("capacity", json!(capacity)),
            ("usage", json!(usage)),
            ("rate_per_s", json!(r.rate)),
            ("sustainable_per_s", json!(r.sustainable)),
            ("hold_s", json!(r.hold_s)),
            ("timewait_s", json!(r.timewait_s)),
            ("tw_reuse", json!(r.tw_reuse)),
            ("closed_locally", json!(r.closed_locally)),
            ("time_left_s", json!(r.time_left_s)),
            ("failed_connects", json!(r.failed)),
        ],
        remedy,
        myths,
        bites_in_s: r.time_left_s,
    })
}

/// 8. An upstream that refuses, or never answers.
fn upstream_failures(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
    if r.dest.is_other() {
        return None;
    }
    let (refused, failed) = (
        r.verdicts[Verdict::Refused.index()],
        r.verdicts[Verdict::ConnectFailed.index()],
    );
    let tried = r.connects.max(refused + failed);
    let (kind, n, what, remedy) = if refused >= FAILED_CONNECTS_MIN
        && refused as f64 >= FAILED_CONNECTS_SHARE * tried as f64
    {
        (
            Kind::UpstreamRefuses,
            refused,
            "refuses connections (RST to the SYN)",
            format!(
                "Is anything listening on {} at {}? (down, restarting, the wrong port, or a full accept queue \
                 with tcp_abort_on_overflow)",
                r.dest.remote.port(),
                r.dest.remote.ip()
            ),
        )
    } else if failed >= FAILED_CONNECTS_MIN && failed as f64 >= FAILED_CONNECTS_SHARE * tried as f64
    {
        (
            Kind::UpstreamUnreachable,
            failed,
            "does not answer (SYNs time out, or ICMP errors)",
            format!(
                "Check the route and firewalls toward {}: SYNs go unanswered (ss -tn state syn-sent shows them waiting).",
                r.dest.remote.ip()
            ),
        )
    } else {
        return None;
    };
    let remote = words::endpoint(&r.dest.remote);
    Some(Finding {
        kind,
        severity: Severity::Warning,
        headline: format!(
            "{remote} {what}: {n} of {tried} connects from {} in {} failed",
            owners(r),
            namespace(ev, r.dest.netns)
        ),
        explanation: format!(
            "{:.1} failed connects/s over the run.",
            n as f64 / ev.elapsed_s.max(1.0)
        ),
        numbers: vec![
            ("netns", json!(r.dest.netns)),
            ("raddr", json!(r.dest.remote.ip().to_string())),
            ("rport", json!(r.dest.remote.port())),
            ("failed", json!(n)),
            ("connects", json!(tried)),
        ],
        remedy: vec![remedy],
        myths: Vec::new(),
        bites_in_s: None,
    })
}

/// 2. TIME_WAIT on the accepting side: harmless for ports.
fn server_timewait(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.server_timewait
        .iter()
        .filter(|(_, _, n)| *n >= SERVER_TIMEWAIT_INFO)
        .map(|(netns, owner, n)| Finding {
            kind: Kind::ServerTimewait,
            severity: Severity::Info,
            headline: format!(
                "{n} TIME_WAIT sockets on the accepting side in {}: {} closes its connections first",
                namespace(ev, *netns),
                process(owner)
            ),
            explanation: "They do not use ephemeral ports: each holds the server's own port toward one client \
                          address and port. They cost ~200 bytes of kernel memory each, and only matter if \
                          tcp_max_tw_buckets overflows. Nothing is wrong."
                .into(),
            numbers: vec![
                ("netns", json!(netns)),
                ("pid", json!(owner.map(|o| o.0))),
                ("comm", json!(owner.map(|o| o.1.as_str().into_owned()))),
                ("timewait", json!(n)),
            ],
            remedy: vec![
                "Nothing to fix. To move TIME_WAIT to the clients, let them close first (HTTP: a client \
                 keep-alive timeout shorter than the server's)."
                    .into(),
            ],
            myths: vec![
                "tcp_tw_reuse does not apply here (outgoing connections only), and tcp_fin_timeout does not \
                 shorten TIME_WAIT."
                    .into(),
            ],
            bites_in_s: None,
        })
        .collect()
}

/// 3. TIME_WAIT overflow: connections skipped TIME_WAIT.
fn timewait_overflow(n: &NetnsReport) -> Option<Finding> {
    let overflows = counter(n, "TCPTimeWaitOverflow");
    if overflows == 0 {
        return None;
    }
    let max = n.sysctls.as_ref().and_then(|s| s.max_tw_buckets);
    let name = n
        .name
        .as_ref()
        .and_then(|n| n.label())
        .map_or_else(String::new, |l| format!(" ({l})"));
    Some(Finding {
        kind: Kind::TimewaitOverflow,
        severity: Severity::Warning,
        headline: format!(
            "netns {}{name}: {overflows} connections closed without TIME_WAIT: tcp_max_tw_buckets ({}) reached",
            n.netns,
            max.map_or_else(|| "?".into(), |m| m.to_string())
        ),
        explanation: "The kernel skipped TIME_WAIT for them: a delayed segment of an old connection can now be \
                      taken for one of a new connection on the same 4-tuple."
            .into(),
        numbers: vec![
            ("netns", json!(n.netns)),
            ("overflows", json!(overflows)),
            ("max_tw_buckets", json!(max)),
        ],
        remedy: vec![
            "Find who opens so many short connections (PORTS, WHO CLOSES FIRST) and reuse connections.".into(),
            "Raising tcp_max_tw_buckets is the safe setting: a timewait socket costs ~200 bytes.".into(),
        ],
        myths: vec!["Lowering tcp_max_tw_buckets is not a fix: the kernel only skips TIME_WAIT sooner.".into()],
        bites_in_s: None,
    })
}

/// 4. CLOSE_WAIT piling up: an application that does not close.
fn close_wait_leaks(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.close_waits
        .iter()
        .filter(|p| p.oldest_age_s >= CLOSE_WAIT_AGE_S)
        .map(|p| {
            let peers: Vec<String> = p.peers.iter().map(|(a, n)| format!("{} ({n})", words::endpoint(a))).collect();
            let pid = p.owner.map(|o| o.0);
            Finding {
                kind: Kind::CloseWaitLeak,
                severity: if p.count >= CLOSE_WAIT_CRITICAL {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                headline: format!(
                    "{} in {} leaves {} connections in CLOSE_WAIT (the oldest for {}): it does not close after \
                     its peer did",
                    process(&p.owner),
                    namespace(ev, p.netns),
                    p.count,
                    secs(p.oldest_age_s)
                ),
                explanation: format!(
                    "The peers ({}) closed their side; the application never called close(), so each socket \
                     and its file descriptor stays until the process exits.",
                    peers.join(", ")
                ),
                numbers: vec![
                    ("netns", json!(p.netns)),
                    ("pid", json!(pid)),
                    ("comm", json!(p.owner.map(|o| o.1.as_str().into_owned()))),
                    ("count", json!(p.count)),
                    ("oldest_age_s", json!(p.oldest_age_s)),
                    ("peers", Value::Array(p.peers.iter().map(|(a, n)| json!({"peer": words::endpoint(a), "count": n})).collect())),
                ],
                remedy: vec![format!(
                    "Fix the application: close the socket when a read returns 0 (end of stream). Look for \
                     connection pools that never evict dead connections and leaked descriptors{}.",
                    pid.map_or_else(String::new, |pid| format!(" (ls /proc/{pid}/fd | wc -l)"))
                )],
                myths: vec![
                    "No kernel setting fixes CLOSE_WAIT: tcp_keepalive_*, tcp_fin_timeout and tcp_tw_reuse do not \
                     apply to it."
                        .into(),
                ],
                bites_in_s: None,
            }
        })
        .collect()
}

/// Abortive closes (5): a process resetting its connections, or peers
/// resetting them.
fn aborts(ev: &Evidence<'_>) -> Vec<Finding> {
    let mut found = Vec::new();
    for (owner, counts) in ev.by_process {
        let established: u64 = Verdict::ALL
            .iter()
            .filter(|v| !v.never_connected())
            .map(|v| counts[v.index()])
            .sum();
        for (verdict, kind) in [
            (Verdict::AbortSent, Kind::AbortSent),
            (Verdict::AbortReceived, Kind::AbortReceived),
        ] {
            let n = counts[verdict.index()];
            if n < ABORTS_MIN || (n as f64) < ABORTS_SHARE * established as f64 {
                continue;
            }
            let share = n as f64 / established.max(1) as f64 * 100.0;
            let rate = n as f64 / ev.elapsed_s.max(1.0);
            // Its counterparts: the destinations it connects to, with their
            // resets (the peers of what it accepted are in the tables).
            let counterparts: Vec<String> = ev
                .ports
                .iter()
                .filter(|r| !r.dest.is_other() && r.verdicts[verdict.index()] > 0)
                .filter(|r| owner.is_some_and(|(pid, _)| r.owners.iter().any(|(p, _)| *p == pid)))
                .take(3)
                .map(|r| {
                    format!(
                        "{} ({})",
                        words::endpoint(&r.dest.remote),
                        r.verdicts[verdict.index()]
                    )
                })
                .collect();
            let toward = match counterparts.is_empty() {
                true => {
                    " on the connections it accepted (by local listening port below)".to_owned()
                }
                false => format!(" toward {}", counterparts.join(", ")),
            };
            let (headline, explanation, remedy, myths) = match kind {
                Kind::AbortSent => (
                    format!("{} resets its connections{toward}: {n} abort-sent ({rate:.1}/s, {share:.0} % of them)", process(owner)),
                    "A RST instead of a FIN: SO_LINGER with a 0 timeout, or close() with unread data. It trades \
                     TIME_WAIT for resets: the peer sees \"connection reset by peer\" and data in flight can be lost."
                        .to_owned(),
                    vec![
                        "Close normally (drop SO_LINGER 0), and read what the peer sent before closing. If \
                         TIME_WAIT was the reason, reuse connections instead."
                            .to_owned(),
                    ],
                    vec!["SO_LINGER 0 is not a TIME_WAIT cure: it hides the symptom and loses data.".to_owned()],
                ),
                _ => (
                    format!("Peers reset the connections of {}{toward}: {n} abort-received ({rate:.1}/s, {share:.0} % of them)", process(owner)),
                    "The other side aborts: its SO_LINGER 0 or a crash, a load balancer's or a NAT's idle \
                     timeout, a firewall."
                        .to_owned(),
                    vec![
                        "Find which peers (WHO CLOSES FIRST by remote endpoint and by listening port) and why; keep \
                         idle connections shorter than the middleboxes' timeouts."
                            .to_owned(),
                    ],
                    Vec::new(),
                ),
            };
            found.push(Finding {
                kind,
                severity: Severity::Warning,
                headline,
                explanation,
                numbers: vec![
                    ("pid", json!(owner.map(|o| o.0))),
                    ("comm", json!(owner.map(|o| o.1.as_str().into_owned()))),
                    ("count", json!(n)),
                    ("rate_per_s", json!(rate)),
                    ("share", json!(share / 100.0)),
                    ("counterparts", json!(counterparts)),
                ],
                remedy,
                myths,
                bites_in_s: None,
            });
        }
    }
    found
}

/// Listen queue overflow (6): SYNs or connections dropped because an
/// accept queue was full; the listeners at their limit named where sampled.
fn listen_overflow(ev: &Evidence<'_>, n: &NetnsReport) -> Option<Finding> {
    let (overflows, drops) = (counter(n, "ListenOverflows"), counter(n, "ListenDrops"));
    if overflows == 0 && drops == 0 {
        return None;
    }
    let somaxconn = n.sysctls.as_ref().and_then(|s| s.somaxconn);
    let full: Vec<&crate::findings::Listener> = ev
        .listeners
        .iter()
        .filter(|l| l.netns == n.netns && l.queue.limit > 0 && l.queue.max_queued > l.queue.limit)
        .collect();
    let mut headline = format!(
        "{}: {overflows} connections dropped because an accept queue was full (ListenOverflows; {drops} ListenDrops)",
        namespace(ev, n.netns)
    );
    for l in &full {
        let _ = write!(
            headline,
            "; {} of {} queues {}/{}",
            words::endpoint(&l.local),
            process(&l.owner),
            l.queue.max_queued,
            l.queue.limit
        );
    }
    let capped = full
        .iter()
        .any(|l| somaxconn.is_some_and(|s| l.queue.limit == s));
    let mut remedy = vec![
        "Accept faster: more workers or accept threads; an event loop must not block between accept() calls.".into(),
        format!(
            "Raise the backlog: listen(fd, N) and net.core.somaxconn, which caps it per namespace (now {}; in a \
             container: docker run --sysctl net.core.somaxconn=4096).",
            somaxconn.map_or_else(|| "?".into(), |s| s.to_string())
        ),
    ];
    if capped {
        remedy.swap(0, 1);
    }
    Some(Finding {
        kind: Kind::ListenOverflow,
        severity: Severity::Warning,
        headline,
        explanation: format!(
            "A client's SYN or final ACK is dropped when the listener's accept queue is full: the client \
             retransmits (its connect takes 1 s, 3 s, 7 s...) or times out.{}",
            if capped { " The queue's limit is net.core.somaxconn: listen() asked for more." } else { "" }
        ),
        numbers: vec![
            ("netns", json!(n.netns)),
            ("listen_overflows", json!(overflows)),
            ("listen_drops", json!(drops)),
            ("somaxconn", json!(somaxconn)),
            (
                "listeners",
                Value::Array(
                    full.iter()
                        .map(|l| json!({"laddr": words::endpoint(&l.local), "queued": l.queue.max_queued, "limit": l.queue.limit,
                            "pid": l.owner.map(|o| o.0), "comm": l.owner.map(|o| o.1.as_str().into_owned())}))
                        .collect(),
                ),
            ),
        ],
        remedy,
        myths: Vec::new(),
        bites_in_s: None,
    })
}

/// 7. SYN flood, or a SYN queue too small.
fn syn_queue(n: &NetnsReport) -> Option<Finding> {
    // tcp_syncookies=2 sends a cookie for every SYN: nothing is full.
    if n.sysctls.as_ref().and_then(|s| s.syncookies) == Some(2) {
        return None;
    }
    let cookies = counter(n, "SyncookiesSent");
    let drops = counter(n, "TCPReqQFullDrop");
    let full = counter(n, "TCPReqQFullDoCookies");
    if cookies + drops + full == 0 {
        return None;
    }
    let s = n.sysctls.as_ref();
    Some(Finding {
        kind: Kind::SynQueue,
        severity: Severity::Warning,
        headline: format!(
            "netns {}: SYN queue full: {cookies} SYN cookies sent, {drops} SYNs dropped",
            n.netns
        ),
        explanation: "More half-open connections (SYN_RECV) than tcp_max_syn_backlog allows: a SYN flood, or \
                      clients whose final ACK does not arrive."
            .into(),
        numbers: vec![
            ("netns", json!(n.netns)),
            ("syncookies_sent", json!(cookies)),
            ("syn_dropped", json!(drops)),
            ("syn_queue_full_cookies", json!(full)),
            ("max_syn_backlog", json!(s.and_then(|s| s.max_syn_backlog))),
            ("syncookies", json!(s.and_then(|s| s.syncookies))),
        ],
        remedy: vec![
            "A flood: keep tcp_syncookies=1 (the server keeps answering) and filter it upstream.".into(),
            "Real load, or final ACKs lost: raise tcp_max_syn_backlog and the listen() backlog; look for packet \
             loss toward the clients."
                .into(),
        ],
        myths: Vec::new(),
        bites_in_s: None,
    })
}

/// A bind() that failed with EADDRINUSE: a server that cannot bind its port
/// again (timewait sockets on it: a warning), bind-time ephemeral exhaustion
/// (port 0), or another socket on the port (said once, as information: a
/// "find a free port" loop or a dual-stack retry does this too).
fn binds_in_use(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.binds
        .iter()
        .map(|b| {
            let who = process(&b.process);
            let ns = namespace(ev, b.netns);
            let addr = words::endpoint(&b.local);
            let (severity, headline, explanation, remedy, myths) = if b.local.port() == 0 {
                (
                    Severity::Warning,
                    format!("{who} in {ns} cannot bind {addr}: no free ephemeral port (EADDRINUSE, {} times)", b.count),
                    "bind() to port 0 picks from ip_local_port_range a port no other socket holds for any \
                     destination: binding before connect() spends the range much faster than connect() alone."
                        .to_owned(),
                    vec![
                        "Set IP_BIND_ADDRESS_NO_PORT before bind() when binding a source address for a connect(): \
                         the port is then chosen per destination at connect()."
                            .to_owned(),
                        "Reuse connections, or widen ip_local_port_range.".to_owned(),
                    ],
                    Vec::new(),
                )
            } else if b.timewait_on_port > 0 {
                (
                    Severity::Warning,
                    format!(
                        "{who} in {ns} cannot bind {addr} (EADDRINUSE, {} times): {} timewait sockets hold port {}",
                        b.count,
                        b.timewait_on_port,
                        b.local.port()
                    ),
                    "A restarted server whose previous connections left TIME_WAIT on its port cannot bind it \
                     again without SO_REUSEADDR."
                        .to_owned(),
                    vec!["Set SO_REUSEADDR on the listening socket before bind(), as every server should.".to_owned()],
                    vec![
                        "SO_REUSEADDR lets a server bind its port despite TIME_WAIT; it frees no ephemeral ports for \
                         outgoing connections."
                            .to_owned(),
                    ],
                )
            } else {
                (
                    Severity::Info,
                    format!("{who} in {ns} could not bind {addr} (EADDRINUSE, {} times): another socket holds it", b.count),
                    "Another socket (a listener, or a UDP socket on the same port) holds the address; SO_REUSEADDR \
                     does not help there."
                        .to_owned(),
                    vec![format!("Find the holder: ss -lntup 'sport = :{}' in that namespace.", b.local.port())],
                    Vec::new(),
                )
            };
            Finding {
                kind: Kind::BindInUse,
                severity,
                headline,
                explanation,
                numbers: vec![
                    ("netns", json!(b.netns)),
                    ("pid", json!(b.process.map(|p| p.0))),
                    ("comm", json!(b.process.map(|p| p.1.as_str().into_owned()))),
                    ("laddr", json!(b.local.ip().to_string())),
                    ("lport", json!(b.local.port())),
                    ("count", json!(b.count)),
                    ("timewait_on_port", json!(b.timewait_on_port)),
                ],
                remedy,
                myths,
                bites_in_s: None,
            }
        })
        .collect()
}
