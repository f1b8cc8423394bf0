//! Per namespace: its listeners' accept queues, the kernel's counters, its sysctls, failed binds.

use super::*;

/// Help of the sysctl series that are the sysctl itself.
pub(super) const SYSCTL_HELP: &str = "The namespace's sysctl of the same name.";

/// The sysctls exported, as (metric name, help, value).
pub(super) fn sysctl_values(s: &Sysctls) -> [(&'static str, &'static str, Option<f64>); 10] {
    let reserved: u64 = s
        .reserved_ports
        .iter()
        .map(|(lo, hi)| u64::from(hi.saturating_sub(*lo)) + 1)
        .sum();
    let n = |v: Option<u64>| v.map(|v| v as f64);
    [
        (
            "tcptrace_sysctl_net_ipv4_ip_local_port_range_low",
            "The low end of the namespace's net.ipv4.ip_local_port_range.",
            n(s.port_range.map(|r| r.0.into())),
        ),
        (
            "tcptrace_sysctl_net_ipv4_ip_local_port_range_high",
            "The high end of the namespace's net.ipv4.ip_local_port_range (inclusive).",
            n(s.port_range.map(|r| r.1.into())),
        ),
        (
            "tcptrace_sysctl_net_ipv4_ip_local_reserved_ports",
            "How many ports the namespace's net.ipv4.ip_local_reserved_ports reserves.",
            n(s.port_range.map(|_| reserved)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_tw_reuse",
            SYSCTL_HELP,
            n(s.tw_reuse.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_tw_reuse_delay_seconds",
            "The namespace's net.ipv4.tcp_tw_reuse_delay, in seconds.",
            s.tw_reuse_delay_ms.map(|ms| f64::from(ms) / 1000.0),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_fin_timeout_seconds",
            SYSCTL_HELP,
            n(s.fin_timeout_s.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_max_tw_buckets",
            SYSCTL_HELP,
            n(s.max_tw_buckets),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_max_syn_backlog",
            SYSCTL_HELP,
            n(s.max_syn_backlog.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_core_somaxconn",
            SYSCTL_HELP,
            n(s.somaxconn.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_syncookies",
            SYSCTL_HELP,
            n(s.syncookies.map(u64::from)),
        ),
    ]
}

/// Per listener, fullest first; returns how many were left out.
pub(super) fn listeners(
    e: &mut Exposition,
    s: &Scrape<'_>,
    namespaces: &BTreeMap<u32, String>,
) -> usize {
    let mut rows: Vec<&Listener> = s.report.listeners.iter().collect();
    rows.sort_by_key(|l| {
        (
            std::cmp::Reverse((l.queue.max_queued, l.queue.queued)),
            l.netns,
            l.local,
        )
    });
    let folded = rows.len().saturating_sub(s.limits.listeners);
    rows.truncate(s.limits.listeners);
    let labels: Vec<[String; 3]> = rows
        .iter()
        .map(|l| {
            [
                l.netns.to_string(),
                namespaces.get(&l.netns).cloned().unwrap_or_default(),
                l.local.to_string(),
            ]
        })
        .collect();
    type Get = fn(&Queue) -> u64;
    let families: [(&str, Type, &'static str, Get); 4] = [
        (
            "tcptrace_listener_accept_queue",
            Type::Gauge,
            "Connections waiting in a listener's accept queue at the last sample (once a second).",
            |q| q.queued.into(),
        ),
        (
            "tcptrace_listener_accept_queue_limit",
            Type::Gauge,
            "A listener's accept queue limit: the listen() backlog capped by net.core.somaxconn.",
            |q| q.limit.into(),
        ),
        (
            "tcptrace_listener_accept_queue_max",
            Type::Gauge,
            "The most connections seen waiting in a listener's accept queue at one sample since start.",
            |q| q.max_queued.into(),
        ),
        (
            "tcptrace_listener_full_samples_total",
            Type::Counter,
            "Samples that found a listener's accept queue over its limit (the kernel drops SYNs or ACKs then).",
            |q| q.full_samples.into(),
        ),
    ];
    for (name, kind, help, get) in families {
        e.family(name, kind, help);
        for (listener, l) in rows.iter().zip(&labels) {
            e.sample(
                &[("netns", &l[0]), ("netns_name", &l[1]), ("listener", &l[2])],
                get(&listener.queue),
            );
        }
    }
    folded
}

pub(super) fn netns_counters(e: &mut Exposition, rows: &[&NetnsReport]) {
    for (i, (group, name)) in COUNTERS.iter().enumerate() {
        let metric = format!("tcptrace_netstat_{group}_{name}");
        e.family(
            &metric,
            Type::Untyped,
            "The kernel's counter of the same name in the namespace's /proc/net/netstat or snmp, as node_exporter exports it.",
        );
        for n in rows {
            let (ns, label) = (n.netns.to_string(), netns_name(n.name.as_ref()));
            e.sample(&[("netns", &ns), ("netns_name", &label)], n.now[i]);
        }
    }
    // Each namespace's values once; a family with no value anywhere leaves
    // no header (the exposition writes it with its first sample).
    let with_sysctls: Vec<(&NetnsReport, _)> = rows
        .iter()
        .filter_map(|n| Some((*n, sysctl_values(n.sysctls.as_ref()?))))
        .collect();
    for (i, (name, help, _)) in sysctl_values(&Sysctls::default()).into_iter().enumerate() {
        e.family(name, Type::Gauge, help);
        for (n, values) in &with_sysctls {
            if let Some(v) = values[i].2 {
                let (ns, label) = (n.netns.to_string(), netns_name(n.name.as_ref()));
                e.sample(&[("netns", &ns), ("netns_name", &label)], v);
            }
        }
    }
}

pub(super) fn binds(
    e: &mut Exposition,
    s: &Scrape<'_>,
    ns_label: &dyn Fn(u32) -> (String, String),
) {
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    // Not summed into netns="other": that sum would go down as namespaces
    // come and go.
    for b in &s.report.binds {
        let (ns, name) = ns_label(b.netns);
        if ns != "other" {
            *by.entry((ns, name)).or_default() += b.count;
        }
    }
    e.family(
        "tcptrace_bind_failures_total",
        Type::Counter,
        "bind()s that failed because the address was in use (EADDRINUSE), by namespace.",
    );
    for ((ns, name), n) in &by {
        e.sample(&[("netns", ns), ("netns_name", name)], *n);
    }
}
