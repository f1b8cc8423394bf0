//! Ports: a destination running out of ephemeral ports, and one that refuses or never answers.

use super::*;

/// 1. Port exhaustion toward a destination.
pub(super) fn port_exhaustion(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
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
    // The first service's: its one process, where it is one.
    let (pid, comm) = r.owners.first().map_or((None, None), |(c, pids)| {
        (pids.single(), Some(c.as_str().into_owned()))
    });
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
pub(super) fn upstream_failures(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
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

/// Connects that stall: their SYN was retransmitted (1 s, then 2 s more,
/// and so on), so connect() takes 1 s, 3 s, 7 s... The far side's listen
/// queue is full, or a firewall or a full conntrack table drops SYNs.
pub(super) fn syn_retransmits(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
    if r.dest.is_other()
        || r.syn_retried < SYN_RETRIED_MIN
        || (r.syn_retried as f64) < SYN_RETRIED_SHARE * r.connects as f64
    {
        return None;
    }
    let remote = words::endpoint(&r.dest.remote);
    let share = r.syn_retried as f64 / r.connects.max(1) as f64 * 100.0;
    let per = r.syn_retransmits as f64 / r.syn_retried as f64;
    let slow = r.connect_latency.slower_than(SLOW_CONNECT);
    Some(Finding {
        kind: Kind::SynRetransmits,
        severity: Severity::Warning,
        headline: format!(
            "connects from {} in {} to {remote} stall: {} of {} ({share:.0} %) retransmitted their SYN \
             ({per:.1} times each, 1 s the first)",
            owners(r),
            namespace(ev, r.dest.netns),
            r.syn_retried,
            r.connects,
        ),
        explanation: format!(
            "A SYN went unanswered and the kernel sent it again after 1 s (then 2 s, 4 s...): \
             each such connect took a second or more ({slow} of the {} connects measured took over \
             {} s). The far side drops SYNs: its listen queue is full, or a firewall or a full \
             conntrack table drops them on the way.",
            r.connect_latency.total(),
            CONNECT_BOUNDS_S[SLOW_CONNECT],
        ),
        numbers: vec![
            ("netns", json!(r.dest.netns)),
            ("raddr", json!(r.dest.remote.ip().to_string())),
            ("rport", json!(r.dest.remote.port())),
            ("connects", json!(r.connects)),
            ("syn_retried", json!(r.syn_retried)),
            ("syn_retransmits", json!(r.syn_retransmits)),
            ("slow_connects", json!(slow)),
        ],
        remedy: vec![
            format!(
                "On {}: look for ListenOverflows and ListenDrops (nstat -az) and the listener's queue \
                 (ss -ltn: Recv-Q against Send-Q); raise its backlog and net.core.somaxconn, or accept faster.",
                r.dest.remote.ip()
            ),
            "On the way: a firewall dropping SYNs, or a full conntrack table (nf_conntrack_count against \
             nf_conntrack_max; \"table full, dropping packet\" in the kernel log)."
                .into(),
        ],
        myths: vec![
            "Raising the client's connect timeout hides the stall; it does not remove it.".into(),
        ],
        bites_in_s: None,
    })
}

/// Segments toward one destination retransmitted far more than toward the
/// others: packets are lost on the way to it, or it does not acknowledge
/// in time. Loss shared by every destination (a host's own link) is not
/// this finding's: only a destination that stands out.
pub(super) fn retransmits(ev: &Evidence<'_>, r: &DestReport) -> Option<Finding> {
    let pace = r.retransmits as f64 / ev.elapsed_s.max(1.0);
    if r.dest.is_other()
        || r.retransmits < RETRANSMITS_MIN
        || (pace < RETRANSMITS_RATE && r.retransmit_rate < RETRANSMITS_RATE)
    {
        return None;
    }
    let per_connect = |retransmits: u64, connects: u64| retransmits as f64 / connects.max(1) as f64;
    let (rest, rest_connects) = ev
        .ports
        .iter()
        .filter(|o| o.dest != r.dest)
        .fold((0, 0), |(n, c), o| (n + o.retransmits, c + o.connects));
    let mine = per_connect(r.retransmits, r.connects);
    let others = per_connect(rest, rest_connects);
    if mine < RETRANSMITS_PER_CONNECTION || mine < RETRANSMITS_STANDOUT * others {
        return None;
    }
    let remote = words::endpoint(&r.dest.remote);
    Some(Finding {
        kind: Kind::Retransmits,
        severity: Severity::Warning,
        headline: format!(
            "packets toward {remote} are lost: {} segments from {} in {} retransmitted ({mine:.1} per \
             connection, {:.1} a second lately; other destinations {others:.2} per connection)",
            r.retransmits,
            owners(r),
            namespace(ev, r.dest.netns),
            r.retransmit_rate,
        ),
        explanation: "The kernel sent data (or a FIN) again because the peer did not acknowledge it in \
                      time: the segment or its acknowledgement was lost. Each loss stalls the connection \
                      for at least a retransmission timeout (200 ms or more) and halves its sending rate; \
                      requests toward this destination are slow while the others are not."
            .into(),
        numbers: vec![
            ("netns", json!(r.dest.netns)),
            ("raddr", json!(r.dest.remote.ip().to_string())),
            ("rport", json!(r.dest.remote.port())),
            ("retransmits", json!(r.retransmits)),
            ("retransmits_per_s", json!(r.retransmit_rate)),
            ("connects", json!(r.connects)),
            ("others_per_connection", json!(others)),
        ],
        remedy: vec![
            format!(
                "The path to {}: drops and errors on the interfaces on the way (ip -s link, ethtool -S), \
                 a congested or policed link, a firewall dropping some packets.",
                r.dest.remote.ip()
            ),
            "Large segments lost while small ones pass: an MTU black hole (ICMP \"fragmentation needed\" \
             filtered); check the path MTU, or enable net.ipv4.tcp_mtu_probing=1."
                .into(),
            format!(
                "On {}: a peer too busy to read drops on its side (nstat -az TcpExtTCPRcvQDrop, \
                 TcpExtTCPBacklogDrop).",
                r.dest.remote.ip()
            ),
        ],
        myths: vec![
            "Raising timeouts or retries in the client hides the loss; it does not remove it.".into(),
        ],
        bites_in_s: None,
    })
}
