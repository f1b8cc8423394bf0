//! TIME_WAIT: on the accepting side (harmless for ports), and connections that skipped it.

use super::*;

/// 2. TIME_WAIT on the accepting side: harmless for ports.
pub(super) fn server_timewait(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.server_timewait
        .iter()
        .filter(|r| r.count >= SERVER_TIMEWAIT_INFO)
        .map(|r| Finding {
            kind: Kind::ServerTimewait,
            severity: Severity::Info,
            headline: format!(
                "{} TIME_WAIT sockets on the accepting side in {}: {} closes its connections first",
                r.count,
                namespace(ev, r.netns),
                service(r.comm.as_ref(), &r.pids)
            ),
            explanation: "They do not use ephemeral ports: each holds the server's own port toward one client \
                          address and port. They cost ~200 bytes of kernel memory each, and only matter if \
                          tcp_max_tw_buckets overflows. Nothing is wrong."
                .into(),
            numbers: {
                let mut numbers = service_numbers(Some(r.netns), r.comm.as_ref(), &r.pids);
                numbers.push(("timewait", json!(r.count)));
                numbers
            },
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
pub(super) fn timewait_overflow(n: &NetnsReport) -> Option<Finding> {
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
