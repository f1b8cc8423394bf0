use super::*;
use crate::{
    aggregate::{
        open::SocketsRow,
        ports::{Dest, Held},
    },
    findings::Finding,
    model::{PerKind, RecordKind},
    report::{
        Totals,
        fixtures::{binds, full_report, ports_and_namespaces, report_stats},
    },
};

fn listener(netns: u32, addr: &str, queued: u32) -> Listener {
    Listener {
        netns,
        local: addr.parse().unwrap(),
        owner: None,
        queue: Queue {
            queued,
            limit: 128,
            max_queued: queued + 1,
            full_samples: 2,
        },
    }
}

const CLOSE_WAIT: SocketsRow = SocketsRow {
    netns: 7,
    state: TcpState::CloseWait,
    count: 2,
    oldest_ns: Some(700_000_000_000),
};

fn scrape_text(limits: Limits, ports: &[DestReport], sockets: &[SocketsRow]) -> (String, usize) {
    let stats = report_stats();
    let (_, namespaces) = ports_and_namespaces();
    let mut report = full_report(&stats, ports, &binds(), &namespaces);
    report.findings = vec![Finding {
        kind: Kind::PortExhaustion,
        severity: Severity::Critical,
        headline: String::new(),
        explanation: String::new(),
        numbers: Vec::new(),
        remedy: Vec::new(),
        myths: Vec::new(),
        bites_in_s: None,
    }];
    report.totals = Totals {
        lost: PerKind::of(&[(RecordKind::Transition, 5)]),
        recursion_misses: 1,
        undecodable: 2,
        untracked_conns: 3,
        untracked_timewaits: 4,
        ..Totals::default()
    };
    report.sockets = sockets.to_vec();
    report.listeners = vec![listener(7, "0.0.0.0:8080", 4), listener(7, "[::]:443", 9)];
    report.folded_connections = 11;
    report.start_time_s = 1_800_000_000.5;
    render(&Scrape {
        report: &report,
        limits,
        previous: Some((0.002, 321)),
        refused_connections: 4,
    })
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

#[test]
fn every_section_from_the_aggregates() {
    let (ports, _) = ports_and_namespaces();
    let (text, series) = scrape_text(Limits::DEFAULT, &ports, &[CLOSE_WAIT]);
    assert_eq!(series, text.lines().filter(|l| !l.starts_with('#')).count());
    has(&text, "tcptrace_start_time_seconds 1800000000.5");
    has(
        &text,
        r#"tcptrace_transitions_total{old_state="syn_sent",new_state="established"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_connections_closed_total{verdict="local",role="active"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_connections_closed_total{verdict="no-port",role="passive"} 0"#,
    );
    // 250 µs: in the (128, 256] µs bucket.
    has(
        &text,
        r#"tcptrace_state_duration_seconds_bucket{state="syn_sent",le="0.000128"} 0"#,
    );
    has(
        &text,
        r#"tcptrace_state_duration_seconds_bucket{state="syn_sent",le="0.000256"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_state_duration_seconds_sum{state="syn_sent"} 0.00025"#,
    );
    // TIME_WAIT of 61.2 s that expired; one killed after 1 µs.
    has(
        &text,
        r#"tcptrace_timewait_duration_seconds_bucket{reason="expired",le="61"} 0"#,
    );
    has(
        &text,
        r#"tcptrace_timewait_duration_seconds_bucket{reason="expired",le="62"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_timewait_duration_seconds_count{reason="expired"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_timewait_duration_seconds_bucket{reason="killed",le="0.001"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_timewait_ended_total{reason="expired"} 1"#,
    );
    has(&text, "tcptrace_timewait_timer_seconds 60");
    has(
        &text,
        r#"tcptrace_sockets{netns="7",netns_name="proxy",state="time_wait"} 3"#,
    );
    has(
        &text,
        r#"tcptrace_sockets{netns="7",netns_name="proxy",state="fin_wait2"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_sockets{netns="7",netns_name="proxy",state="close_wait"} 2"#,
    );
    has(
        &text,
        r#"tcptrace_oldest_socket_age_seconds{netns="7",netns_name="proxy",state="close_wait"} 700"#,
    );
    let dest = r#"netns="7",netns_name="proxy",local_addr="10.0.0.2",destination="10.0.0.1:80""#;
    has(
        &text,
        &format!("tcptrace_destination_ports_held{{{dest}}} 1000"),
    );
    has(
        &text,
        &format!("tcptrace_destination_ports_capacity{{{dest}}} 1000"),
    );
    has(
        &text,
        &format!("tcptrace_destination_port_usage_ratio{{{dest}}} 1"),
    );
    has(
        &text,
        &format!("tcptrace_destination_exhausted_in_seconds{{{dest}}} 0"),
    );
    has(
        &text,
        &format!("tcptrace_destination_connects_total{{{dest}}} 993"),
    );
    has(
        &text,
        &format!("tcptrace_destination_connects_failed_no_port_total{{{dest}}} 3"),
    );
    has(
        &text,
        &format!(r#"tcptrace_destination_connections_closed_total{{{dest},verdict="local"}} 990"#),
    );
    has(
        &text,
        r#"tcptrace_listener_accept_queue{netns="7",netns_name="proxy",listener="[::]:443"} 9"#,
    );
    has(
        &text,
        r#"tcptrace_listener_accept_queue_limit{netns="7",netns_name="proxy",listener="0.0.0.0:8080"} 128"#,
    );
    has(
        &text,
        r#"tcptrace_netstat_Tcp_ActiveOpens{netns="7",netns_name="proxy"} 993"#,
    );
    has(
        &text,
        r#"tcptrace_sysctl_net_ipv4_ip_local_port_range_low{netns="7",netns_name="proxy"} 40000"#,
    );
    has(
        &text,
        r#"tcptrace_sysctl_net_ipv4_tcp_tw_reuse{netns="7",netns_name="proxy"} 2"#,
    );
    has(
        &text,
        r#"tcptrace_bind_failures_total{netns="7",netns_name="proxy"} 2"#,
    );
    has(
        &text,
        r#"tcptrace_findings{kind="port-exhaustion",severity="critical"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_findings{kind="close-wait-leak",severity="warning"} 0"#,
    );
    has(
        &text,
        r#"tcptrace_events_lost_total{reason="ring_full",kind="transition"} 5"#,
    );
    has(
        &text,
        r#"tcptrace_events_lost_total{reason="ring_full",kind="reset_received"} 0"#,
    );
    has(
        &text,
        r#"tcptrace_events_lost_total{reason="bpf_recursion"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_events_lost_total{reason="undecodable"} 2"#,
    );
    has(
        &text,
        r#"tcptrace_sockets_not_followed_total{kind="connection"} 3"#,
    );
    has(
        &text,
        r#"tcptrace_sockets_not_followed_total{kind="timewait"} 4"#,
    );
    has(&text, "tcptrace_destinations_folded_connections_total 11");
    has(&text, "tcptrace_metrics_connections_refused_total 4");
    has(&text, "tcptrace_scrape_series 321");
    // Never a pid or a process as a label.
    assert!(!text.contains("pid="), "{text}");
    assert!(!text.contains("proxy["), "{text}");
    insta::assert_snapshot!(text);
}

/// Every sample belongs to the family declared before it, declared once.
#[test]
fn families_are_declared_once_before_their_samples() {
    let (ports, _) = ports_and_namespaces();
    let (text, _) = scrape_text(Limits::DEFAULT, &ports, &[CLOSE_WAIT]);
    let mut declared = std::collections::HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(declared.insert(name.clone()), "{name} declared twice");
            current = name;
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|b| *b == current)
                .unwrap_or(name);
            assert_eq!(base, current, "{line}");
        }
    }
}

#[test]
fn caps_fold_and_count() {
    let (ports, _) = ports_and_namespaces();
    let mut more = ports.clone();
    for i in 0..3u16 {
        let mut r = ports[0].clone();
        r.dest = Dest {
            remote: std::net::SocketAddr::from(([10, 0, 0, 9], 8000 + i)),
            ..r.dest
        };
        r.held = Held {
            open: 1,
            timewait: 9,
        };
        r.connects = 10;
        more.push(r);
    }
    let sockets = [
        CLOSE_WAIT,
        SocketsRow {
            netns: 9,
            state: TcpState::CloseWait,
            count: 5,
            oldest_ns: Some(1_000_000_000),
        },
    ];
    let limits = Limits {
        destinations: 2,
        listeners: 1,
        namespaces: 1,
    };
    let (text, _) = scrape_text(limits, &more, &sockets);
    // Two destinations of their own, the other two summed.
    let other = r#"netns="",netns_name="",local_addr="",destination="other""#;
    has(
        &text,
        &format!("tcptrace_destination_ports_held{{{other}}} 20"),
    );
    // No counters for "other": their sum would go down as rows move.
    assert!(!text.contains(&format!("tcptrace_destination_connects_total{{{other}}}")));
    assert!(!text.contains(&format!("tcptrace_destination_ports_capacity{{{other}}}")));
    assert_eq!(text.matches("tcptrace_destination_ports_held{").count(), 3);
    // Namespace 9 is beyond the cap: its sockets are in "other".
    has(
        &text,
        r#"tcptrace_sockets{netns="other",netns_name="",state="close_wait"} 5"#,
    );
    assert_eq!(text.matches("tcptrace_listener_accept_queue{").count(), 1);
    has(
        &text,
        r#"tcptrace_metrics_label_values_folded{label="destinations"} 2"#,
    );
    has(
        &text,
        r#"tcptrace_metrics_label_values_folded{label="listeners"} 1"#,
    );
    has(
        &text,
        r#"tcptrace_metrics_label_values_folded{label="namespaces"} 1"#,
    );
}
