//! Listen queues: the accept queue full, the SYN queue flooded.

use super::*;

/// Listen queue overflow (6): SYNs or connections dropped because an
/// accept queue was full; the listeners at their limit named where sampled.
pub(super) fn listen_overflow(ev: &Evidence<'_>, n: &NetnsReport) -> Option<Finding> {
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
pub(super) fn syn_queue(n: &NetnsReport) -> Option<Finding> {
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

/// A listener's SYN-ACKs retransmitted: clients sent a SYN and did not
/// complete the handshake (a SYN flood from spoofed sources, or a lossy
/// path toward the clients), each such connect a second or more late.
pub(super) fn synack_retransmits(ev: &Evidence<'_>) -> Vec<Finding> {
    ev.synack_retransmits
        .iter()
        .filter(|&&((netns, port), n)| netns != 0 && port != 0 && n >= SYNACK_RETRANSMITS_MIN)
        .map(|&((netns, port), n)| Finding {
            kind: Kind::SynAckRetransmits,
            severity: Severity::Warning,
            headline: format!(
                "SYN-ACKs of :{port} in {} retransmitted {n} times ({:.1}/s): clients do not complete \
                 the handshake",
                namespace(ev, netns),
                n as f64 / ev.elapsed_s.max(1.0)
            ),
            explanation: "The listener answered SYNs and got no ACK back, so it sent its SYN-ACK again \
                          after 1 s (then 2 s, 4 s...): SYNs from addresses that do not answer (a SYN \
                          flood, spoofed sources), or the clients' ACKs lost on the way."
                .into(),
            numbers: vec![
                ("netns", json!(netns)),
                ("lport", json!(port)),
                ("synack_retransmits", json!(n)),
            ],
            remedy: vec![
                "A flood: keep net.ipv4.tcp_syncookies on (1), and lower tcp_synack_retries so that \
                 half-open requests leave the SYN queue sooner."
                    .into(),
                "A lossy path: look for drops toward the clients (nstat: TcpExtTCPSynRetrans on their \
                 side, interface errors, a firewall dropping the ACKs)."
                    .into(),
            ],
            myths: Vec::new(),
            bites_in_s: None,
        })
        .collect()
}
