//! Closing: connections left in CLOSE_WAIT, and resets sent or received.

use super::*;

/// 4. CLOSE_WAIT piling up: an application that does not close.
pub(super) fn close_wait_leaks(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.close_waits
        .iter()
        .filter(|p| p.oldest_age_s >= CLOSE_WAIT_AGE_S)
        .map(|p| {
            let peers: Vec<String> = p.peers.iter().map(|(a, n)| format!("{} ({n})", words::endpoint(a))).collect();
            let s = &p.sockets;
            let who = service(s.comm.as_ref(), &s.pids);
            Finding {
                kind: Kind::CloseWaitLeak,
                severity: if s.count >= CLOSE_WAIT_CRITICAL {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                headline: format!(
                    "{} in {} leaves {} connections in CLOSE_WAIT (the oldest for {}): it does not close after \
                     its peer did",
                    who,
                    namespace(ev, s.netns),
                    s.count,
                    secs(p.oldest_age_s)
                ),
                explanation: format!(
                    "The peers ({}) closed their side; the application never called close(), so each socket \
                     and its file descriptor stays until the process exits.",
                    peers.join(", ")
                ),
                numbers: {
                    let mut numbers = service_numbers(Some(s.netns), s.comm.as_ref(), &s.pids);
                    numbers.extend([
                        ("count", json!(s.count)),
                        ("oldest_age_s", json!(p.oldest_age_s)),
                        ("peers", Value::Array(p.peers.iter().map(|(a, n)| json!({"peer": words::endpoint(a), "count": n})).collect())),
                    ]);
                    numbers
                },
                remedy: vec![format!(
                    "Fix the application: close the socket when a read returns 0 (end of stream). Look for \
                     connection pools that never evict dead connections and leaked descriptors{}.",
                    s.pids.examples().first().map_or_else(String::new, |pid| format!(" (ls /proc/{pid}/fd | wc -l)"))
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

/// Abortive closes (5): a service resetting its connections, or peers
/// resetting them. Judged by service: the share is of all its processes'
/// connections (a master/worker server's master alone may see little else
/// than resets). At a pace below `ABORTS_RATE` it is said as info: that is
/// the pace of load balancers' health checks, which end with a RST by
/// design (haproxy's, for one), not of a fault.
pub(super) fn aborts(ev: &Evidence<'_>) -> Vec<Finding> {
    let mut found = Vec::new();
    for (key, counts) in ev.by_service {
        let counts_of = &counts.verdicts;
        let established: u64 = Verdict::ALL
            .iter()
            .filter(|v| !v.never_connected())
            .map(|v| counts_of[v.index()])
            .sum();
        for (verdict, kind) in [
            (Verdict::AbortSent, Kind::AbortSent),
            (Verdict::AbortReceived, Kind::AbortReceived),
        ] {
            let n = counts_of[verdict.index()];
            if n < ABORTS_MIN || (n as f64) < ABORTS_SHARE * established as f64 {
                continue;
            }
            let share = n as f64 / established.max(1) as f64 * 100.0;
            let rate = n as f64 / ev.elapsed_s.max(1.0);
            // The pace: over the run, or over its worst minute, whichever
            // is faster (a burst in a long run is not averaged away).
            let peak = counts.resets.most_in_a_minute(verdict) as f64 / 60.0;
            let health_checks = rate.max(peak) < ABORTS_RATE;
            let comm = key.map(|s| s.comm);
            let netns = key.map(|s| s.netns);
            let who = service(comm.as_ref(), &counts.pids);
            // Its counterparts: the destinations it connects to, with their
            // resets (the peers of what it accepted are in the tables).
            let counterparts: Vec<String> = ev
                .ports
                .iter()
                .filter(|r| !r.dest.is_other() && r.verdicts[verdict.index()] > 0)
                .filter(|r| {
                    key.is_some_and(|s| {
                        r.dest.netns == s.netns && r.owners.iter().any(|(c, _)| *c == s.comm)
                    })
                })
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
            // The kernel's reasons for the resets it sent, most first.
            let reasons = match kind {
                Kind::AbortSent => counts.reasons.most_first(),
                _ => Vec::new(),
            };
            let because = reasons.first().map_or_else(String::new, |&(reason, r)| {
                let name = ev.reset_names.name(reason);
                let pct = r as f64 / counts.reasons.total().max(1) as f64 * 100.0;
                match meaning(&name) {
                    Some((short, _)) => format!(": {short} ({name}, {pct:.0} %)"),
                    None => format!(": {name} ({pct:.0} %)"),
                }
            });
            let pace = format!(
                "{n} {} ({rate:.1}/s, {share:.0} % of them){because}",
                verdict.name()
            );
            let (headline, explanation, remedy, myths) = match (kind, health_checks) {
                (_, true) => (
                    match kind {
                        Kind::AbortSent => format!("{who} resets its connections{toward} at the pace of health checks: {pace}"),
                        _ => format!("Peers reset the connections of {who}{toward} at the pace of health checks: {pace}"),
                    },
                    format!(
                        "Fewer than {ABORTS_RATE} a second: the pace of a load balancer's health checks, which \
                         connect and then end with a RST by design (haproxy's, for one), rather than of a fault."
                    ),
                    vec![
                        "Nothing to fix if a load balancer or a monitor checks this service; otherwise find \
                         which peers (WHO CLOSES FIRST by remote endpoint and by listening port)."
                            .to_owned(),
                    ],
                    Vec::new(),
                ),
                (Kind::AbortSent, false) => (
                    format!("{who} resets its connections{toward}: {pace}"),
                    match reasons.first().and_then(|&(r, _)| meaning(&ev.reset_names.name(r))) {
                        Some((_, why)) => format!(
                            "A RST instead of a FIN, and the kernel says why: {why}. The peer sees \
                             \"connection reset by peer\" and data in flight can be lost."
                        ),
                        None => "A RST instead of a FIN: SO_LINGER with a 0 timeout, or close() with unread data. \
                                 It trades TIME_WAIT for resets: the peer sees \"connection reset by peer\" and \
                                 data in flight can be lost."
                            .to_owned(),
                    },
                    vec![
                        "Close normally (drop SO_LINGER 0), and read what the peer sent before closing. If \
                         TIME_WAIT was the reason, reuse connections instead."
                            .to_owned(),
                    ],
                    vec!["SO_LINGER 0 is not a TIME_WAIT cure: it hides the symptom and loses data.".to_owned()],
                ),
                _ => (
                    format!("Peers reset the connections of {who}{toward}: {pace}"),
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
            let mut numbers = service_numbers(netns, comm.as_ref(), &counts.pids);
            let reasons: serde_json::Map<String, Value> = reasons
                .iter()
                .map(|&(r, c)| (ev.reset_names.name(r), json!(c)))
                .collect();
            numbers.extend([
                ("count", json!(n)),
                ("rate_per_s", json!(rate)),
                ("share", json!(share / 100.0)),
                ("counterparts", json!(counterparts)),
                ("reasons", Value::Object(reasons)),
            ]);
            found.push(Finding {
                kind,
                severity: match health_checks {
                    true => Severity::Info,
                    false => Severity::Warning,
                },
                headline,
                explanation,
                numbers,
                remedy,
                myths,
                bites_in_s: None,
            });
        }
    }
    found
}

/// What the kernel's reason for a RST means, as the reason is named in
/// `enum sk_rst_reason`: (in a few words, in a sentence). `None` for the
/// reasons a finding need not explain.
fn meaning(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        // What close() with SO_LINGER 0 gives on Linux 6.18: the reset of
        // tcp_disconnect (measured; not TCP_ABORT_ON_LINGER).
        "TCP_STATE" => (
            "an abortive close, SO_LINGER 0",
            "close() with SO_LINGER set to 0 (or a disconnect) aborts the connection in the state it \
             is in (TCP_STATE)",
        ),
        "TCP_ABORT_ON_LINGER" => (
            "FIN_WAIT2 lingering off",
            "the socket's TCP_LINGER2 is negative, so it resets rather than wait in FIN_WAIT2 \
             (TCP_ABORT_ON_LINGER)",
        ),
        "TCP_ABORT_ON_CLOSE" => (
            "closed with unread data",
            "the application closed with data still unread, before reading what the peer sent \
             (TCP_ABORT_ON_CLOSE)",
        ),
        "TCP_ABORT_ON_DATA" => (
            "data after close",
            "data arrived after the application had closed its side (TCP_ABORT_ON_DATA)",
        ),
        "TCP_ABORT_ON_MEMORY" => (
            "out of memory for orphans",
            "the kernel ran out of memory or tcp_max_orphans for closed sockets (TCP_ABORT_ON_MEMORY)",
        ),
        "TCP_KEEPALIVE_TIMEOUT" => (
            "keepalive timeouts",
            "keepalive probes went unanswered: the peer is gone, or its packets are dropped \
             (TCP_KEEPALIVE_TIMEOUT)",
        ),
        "TCP_DISCONNECT_WITH_DATA" => (
            "disconnected with unread data",
            "the application disconnected (connect AF_UNSPEC) with data unread (TCP_DISCONNECT_WITH_DATA)",
        ),
        _ => return None,
    })
}
