//! Closing: connections left in CLOSE_WAIT, and resets sent or received.

use super::*;

/// 4. CLOSE_WAIT piling up: an application that does not close.
pub(super) fn close_wait_leaks(ev: &Evidence<'_>) -> Vec<Finding> {
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
pub(super) fn aborts(ev: &Evidence<'_>) -> Vec<Finding> {
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
