//! The rules on synthetic evidence: each fires, stays quiet, and at its
//! boundary.

use super::*;
use crate::{
    aggregate::{
        listeners::Queue,
        ports::{Dest, Held, TimewaitHold},
        stats::{ResetPeaks, VerdictCounts},
    },
    model::{COUNTERS, Comm, NetnsName, Pids, ResetNames, ResetReason, Service, Sysctls, Verdict},
};

fn pids(list: &[u32]) -> Pids {
    list.iter().copied().collect()
}

fn dest(usage: f64, failed: u64, failing: bool, time_left_s: Option<f64>) -> DestReport {
    let held = (usage * 1000.0) as u64;
    let mut verdicts = VerdictCounts::default();
    verdicts[Verdict::Local.index()] = 900;
    verdicts[Verdict::NoPort.index()] = failed;
    DestReport {
        dest: Dest {
            netns: 7,
            local: "10.0.0.2".parse().unwrap(),
            remote: "10.0.0.1:80".parse().unwrap(),
        },
        owners: vec![(Comm::from_name("nginx"), pids(&[42]))],
        held: Held {
            open: 0,
            timewait: held,
        },
        capacity: Some(1000),
        usage: Some(usage),
        tw_reuse: Some(false),
        connects: 900 + failed,
        rate: 33.0,
        rate_since_start: 33.0,
        closed_locally: Some(1.0),
        lifetime_s: Some(0.002),
        timewait_s: Some(60.0),
        timewait_hold: Some(TimewaitHold::Measured),
        reused_after_s: None,
        hold_s: Some(60.002),
        sustainable: Some(16.7),
        time_left_s,
        failed,
        failing,
        verdicts,
        syn_retried: 0,
        syn_retransmits: 0,
        connect_latency: Default::default(),
        retransmits: 0,
        retransmit_rate: 0.0,
        reset_reasons: Default::default(),
    }
}

fn netns(fin_timeout: u32, counters: &[(&str, u64)]) -> NetnsReport {
    let mut since_start = [0; COUNTERS.len()];
    for (name, v) in counters {
        let i = COUNTERS.iter().position(|(_, c)| c == name).unwrap();
        since_start[i] = *v;
    }
    NetnsReport {
        netns: 7,
        name: Some(NetnsName {
            name: Some("proxy".into()),
            process: None,
            container: None,
        }),
        sysctls: Some(Sysctls {
            port_range: Some((40000, 40999)),
            tw_reuse: Some(2),
            fin_timeout_s: Some(fin_timeout),
            max_tw_buckets: Some(4096),
            somaxconn: Some(128),
            ..Sysctls::default()
        }),
        now: since_start,
        since_start,
        since_last_summary: since_start,
    }
}

/// Evidence with only `ports` and `namespaces`; the rest empty.
fn run(ports: &[DestReport], namespaces: &[NetnsReport]) -> Vec<Finding> {
    run_for(30.0, ports, namespaces)
}

/// `run`, over `elapsed_s` traced.
fn run_for(elapsed_s: f64, ports: &[DestReport], namespaces: &[NetnsReport]) -> Vec<Finding> {
    diagnose(&Evidence {
        elapsed_s,
        ports,
        namespaces,
        binds: &[],
        by_service: &[],
        close_waits: &[],
        server_timewait: &[],
        listeners: &[],
        reset_names: &ResetNames::default(),
        synack_retransmits: &[],
    })
}

fn kinds(findings: &[Finding]) -> Vec<(Kind, Severity)> {
    findings.iter().map(|f| (f.kind, f.severity)).collect()
}

#[test]
fn port_exhaustion_levels() {
    let ns = [netns(60, &[])];
    assert!(
        run(&[dest(0.49, 0, false, None)], &ns).is_empty(),
        "below 50 %, not running out"
    );
    let half = run(&[dest(0.5, 0, false, Some(15.0))], &ns);
    assert_eq!(kinds(&half), [(Kind::PortExhaustion, Severity::Warning)]);
    let f = &half[0];
    assert!(
        f.headline.contains(
            "nginx[42] in netns 7 (proxy) is running out of local ports toward 10.0.0.1:80"
        ),
        "{}",
        f.headline
    );
    assert!(
        f.headline
            .contains("50 % held (500 of 1000), exhausted in ~15.0 s"),
        "{}",
        f.headline
    );
    assert!(
        f.explanation.contains("TIME_WAIT 60.0 s"),
        "{}",
        f.explanation
    );
    assert!(
        f.remedy[0].contains("keepalive"),
        "keep-alive first: {:?}",
        f.remedy
    );
    assert!(f.remedy[2].contains("ip_local_port_range in netns 7 (proxy) (now 40000-40999)"));
    assert!(f.remedy[3].contains("tcp_tw_reuse=1"), "{:?}", f.remedy);
    assert_eq!(f.bites_in_s, Some(15.0));
    // Low usage but out of ports within 10 minutes: a warning all the same.
    assert_eq!(
        kinds(&run(&[dest(0.1, 0, false, Some(300.0))], &ns)).len(),
        1
    );
    assert!(run(&[dest(0.1, 0, false, Some(900.0))], &ns).is_empty());
    // Failing: critical, with the failed connects.
    let out = run(&[dest(1.0, 81, true, Some(0.0))], &ns);
    assert_eq!(kinds(&out), [(Kind::PortExhaustion, Severity::Critical)]);
    assert!(
        out[0]
            .headline
            .contains("no free local port (EADDRNOTAVAIL, 81 failed connects)"),
        "{}",
        out[0].headline
    );
    assert!(out[0].numbers.contains(&("failed_connects", json_u64(81))));
}

fn json_u64(n: u64) -> Value {
    serde_json::json!(n)
}

#[test]
fn a_lowered_fin_timeout_is_called_a_myth_next_to_exhaustion() {
    let quiet = run(&[dest(0.6, 0, false, None)], &[netns(60, &[])]);
    assert!(
        !quiet[0]
            .myths
            .iter()
            .any(|m| m.contains("tcp_fin_timeout is"))
    );
    let lowered = run(&[dest(0.6, 0, false, None)], &[netns(15, &[])]);
    assert!(
        lowered[0].myths[0]
            .contains("tcp_fin_timeout is 15 s in this namespace: it does not shorten TIME_WAIT"),
        "{:?}",
        lowered[0].myths
    );
}

#[test]
fn counters_of_a_namespace() {
    assert!(run(&[], &[netns(60, &[])]).is_empty(), "a quiet namespace");
    let out = run(
        &[],
        &[netns(
            60,
            &[
                ("TCPTimeWaitOverflow", 12),
                ("ListenOverflows", 54),
                ("SyncookiesSent", 3),
            ],
        )],
    );
    assert_eq!(
        kinds(&out),
        [
            (Kind::TimewaitOverflow, Severity::Warning),
            (Kind::ListenOverflow, Severity::Warning),
            (Kind::SynQueue, Severity::Warning)
        ]
    );
    assert!(
        out[0]
            .headline
            .contains("12 connections closed without TIME_WAIT: tcp_max_tw_buckets (4096) reached")
    );
    assert!(out[0].myths[0].contains("Lowering tcp_max_tw_buckets is not a fix"));
    assert!(
        out[1]
            .remedy
            .iter()
            .any(|r| r.contains("somaxconn") && r.contains("now 128"))
    );
}

#[test]
fn a_listener_at_its_somaxconn_cap_is_named_and_the_cap_comes_first() {
    let listeners = [Listener {
        netns: 7,
        local: "10.0.0.1:8080".parse().unwrap(),
        owner: Some((5, Comm::from_name("server"))),
        queue: Queue {
            queued: 0,
            limit: 128,
            max_queued: 129,
            full_samples: 1,
        },
    }];
    let namespaces = [netns(60, &[("ListenOverflows", 54)])];
    let out = diagnose(&Evidence {
        elapsed_s: 10.0,
        ports: &[],
        namespaces: &namespaces,
        binds: &[],
        by_service: &[],
        close_waits: &[],
        server_timewait: &[],
        listeners: &listeners,
        reset_names: &ResetNames::default(),
        synack_retransmits: &[],
    });
    assert!(
        out[0]
            .headline
            .contains("10.0.0.1:8080 of server[5] queues 129/128"),
        "{}",
        out[0].headline
    );
    assert!(
        out[0].remedy[0].contains("somaxconn"),
        "the cap first: {:?}",
        out[0].remedy
    );
}

#[test]
fn close_wait_leaks_need_age() {
    let pile = |count, oldest_age_s| Pile {
        sockets: ServiceSockets {
            netns: 7,
            comm: Some(Comm::from_name("app")),
            pids: pids(&[9]),
            count,
        },
        oldest_age_s,
        peers: vec![("10.0.0.3:0".parse().unwrap(), count)],
    };
    let with = |piles: &[Pile]| {
        diagnose(&Evidence {
            elapsed_s: 60.0,
            ports: &[],
            namespaces: &[],
            binds: &[],
            by_service: &[],
            close_waits: piles,
            server_timewait: &[],
            listeners: &[],
            reset_names: &ResetNames::default(),
            synack_retransmits: &[],
        })
    };
    assert!(
        with(&[pile(50, 29.0)]).is_empty(),
        "young CLOSE_WAITs are closes in progress"
    );
    let out = with(&[pile(50, 31.0)]);
    assert_eq!(kinds(&out), [(Kind::CloseWaitLeak, Severity::Warning)]);
    assert!(
        out[0].headline.contains(
            "app[9] in netns 7 leaves 50 connections in CLOSE_WAIT (the oldest for 31.0 s)"
        )
    );
    assert!(out[0].myths[0].contains("No kernel setting fixes CLOSE_WAIT"));
    assert_eq!(kinds(&with(&[pile(1000, 31.0)]))[0].1, Severity::Critical);
}

fn verdicts(abort_sent: u64, abort_received: u64, peer: u64) -> VerdictCounts {
    let mut c = VerdictCounts::default();
    c[Verdict::AbortSent.index()] = abort_sent;
    c[Verdict::AbortReceived.index()] = abort_received;
    c[Verdict::Peer.index()] = peer;
    c
}

fn service_row(
    comm: &str,
    processes: &[u32],
    verdicts: VerdictCounts,
) -> (ServiceKey, ServiceCounts) {
    let key = Some(Service {
        netns: 7,
        comm: Comm::from_name(comm),
    });
    let pids = pids(processes);
    (
        key,
        ServiceCounts {
            verdicts,
            pids,
            ..ServiceCounts::default()
        },
    )
}

/// Resets of `verdict` counted (minute, resets) minute by minute.
fn peaks(verdict: Verdict, minutes: &[(u64, u64)]) -> ResetPeaks {
    let mut stats = crate::aggregate::stats::Stats::new();
    let mut closed =
        crate::model::fixtures::closed(crate::model::fixtures::task(5, "redis-server"), verdict);
    for &(minute, n) in minutes {
        for k in 0..n {
            closed.ts_ns = minute * 60_000_000_000 + k;
            stats.record_closed(&closed);
        }
    }
    stats.by_service.into_values().next().unwrap().resets
}

fn aborts_over(elapsed_s: f64, rows: &[(ServiceKey, ServiceCounts)]) -> Vec<Finding> {
    diagnose(&Evidence {
        elapsed_s,
        ports: &[],
        namespaces: &[],
        binds: &[],
        by_service: rows,
        close_waits: &[],
        server_timewait: &[],
        listeners: &[],
        reset_names: &ResetNames::default(),
        synack_retransmits: &[],
    })
}

#[test]
fn aborts_need_numbers_and_a_share() {
    let app = |v| [service_row("app", &[9], v)];
    let with = |v| aborts_over(10.0, &app(v));
    assert!(with(verdicts(19, 0, 0)).is_empty(), "fewer than 20");
    assert!(with(verdicts(50, 0, 1000)).is_empty(), "under 10 %");
    let out = with(verdicts(100, 0, 100));
    assert_eq!(kinds(&out), [(Kind::AbortSent, Severity::Warning)]);
    // One process: the culprit is named by its pid.
    assert!(
        out[0]
            .headline
            .contains("app[9] resets its connections on the connections it accepted (by local listening port below): 100 abort-sent (10.0/s, 50 % of them)"),
        "{}",
        out[0].headline
    );
    assert!(out[0].myths[0].contains("SO_LINGER 0 is not a TIME_WAIT cure"));
}

/// The kernel's reason names the cause: SO_LINGER 0, or a close with
/// unread data, in its own words.
#[test]
fn aborts_say_the_kernels_reason() {
    let names = ResetNames::new(vec![
        (11, "TCP_ABORT_ON_CLOSE".into()),
        (14, "TCP_STATE".into()),
    ]);
    let mut app = service_row("app", &[9], verdicts(100, 0, 100));
    for _ in 0..63 {
        app.1.reasons.add(ResetReason(11));
    }
    for _ in 0..37 {
        app.1.reasons.add(ResetReason(14));
    }
    let out = diagnose(&Evidence {
        elapsed_s: 10.0,
        ports: &[],
        namespaces: &[],
        binds: &[],
        by_service: &[app],
        close_waits: &[],
        server_timewait: &[],
        listeners: &[],
        reset_names: &names,
        synack_retransmits: &[],
    });
    assert!(
        out[0].headline.ends_with(
            "(10.0/s, 50 % of them): closed with unread data (TCP_ABORT_ON_CLOSE, 63 %)"
        ),
        "{}",
        out[0].headline
    );
    assert!(
        out[0]
            .explanation
            .contains("before reading what the peer sent")
    );
    let reasons = &out[0]
        .numbers
        .iter()
        .find(|(n, _)| *n == "reasons")
        .unwrap()
        .1;
    assert_eq!(reasons["TCP_STATE"], 37);
}

/// The false alarm of a real nginx: its master's connections were all
/// reset (those that never reached a worker), its workers' were not. As
/// one service the share is under 1 %: nothing said.
#[test]
fn aborts_are_judged_by_service_not_by_process() {
    let nginx = [service_row("nginx", &[100, 101, 102], {
        let mut v = verdicts(0, 345, 20_000);
        v[Verdict::Local.index()] = 20_000;
        v
    })];
    assert!(aborts_over(8.0, &nginx).is_empty());
    // A service of several processes that does reset: named with them, no
    // single pid.
    let storm = [service_row(
        "nginx",
        &[100, 101, 102],
        verdicts(0, 400, 100),
    )];
    let out = aborts_over(8.0, &storm);
    assert_eq!(kinds(&out), [(Kind::AbortReceived, Severity::Warning)]);
    assert!(
        out[0]
            .headline
            .starts_with("Peers reset the connections of nginx (3 processes: 100, 101, 102)"),
        "{}",
        out[0].headline
    );
    let number = |name: &str| {
        out[0]
            .numbers
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(number("pid"), Value::Null);
    assert_eq!(number("processes"), 3);
}

/// Health checks connect and reset, slowly: said as info below 1 a second,
/// a warning from it.
#[test]
fn aborts_at_the_pace_of_health_checks_are_information() {
    // haproxy's checks every 2 s for a minute: 30 resets, all connections.
    let checks = [service_row("redis-server", &[5], verdicts(0, 30, 0))];
    let out = aborts_over(60.0, &checks);
    assert_eq!(kinds(&out), [(Kind::AbortReceived, Severity::Info)]);
    assert!(
        out[0].headline.contains("at the pace of health checks"),
        "{}",
        out[0].headline
    );
    assert_eq!(worst(&out), Some(Severity::Info));
    // The checker's side: its own resets, likewise.
    let checker = [service_row("haproxy", &[6], verdicts(30, 0, 0))];
    assert_eq!(
        kinds(&aborts_over(60.0, &checker)),
        [(Kind::AbortSent, Severity::Info)]
    );
    // At 1 a second: a warning.
    let faster = [service_row("redis-server", &[5], verdicts(0, 60, 0))];
    assert_eq!(
        kinds(&aborts_over(60.0, &faster)),
        [(Kind::AbortReceived, Severity::Warning)]
    );
    // A burst in an hour's run: 100 resets within a minute is not the pace
    // of health checks, though it is 0.03 a second over the hour.
    let mut burst = service_row("redis-server", &[5], verdicts(0, 100, 0));
    burst.1.resets = peaks(Verdict::AbortReceived, &[(0, 100)]);
    assert_eq!(
        kinds(&aborts_over(3600.0, &[burst])),
        [(Kind::AbortReceived, Severity::Warning)]
    );
    // Health checks over the hour: 50 a minute at most, info.
    let mut steady = service_row("redis-server", &[5], verdicts(0, 3000, 0));
    steady.1.resets = peaks(
        Verdict::AbortReceived,
        &(0..60).map(|m| (m, 50)).collect::<Vec<_>>(),
    );
    assert_eq!(
        kinds(&aborts_over(3600.0, &[steady])),
        [(Kind::AbortReceived, Severity::Info)]
    );
}

/// Connects that stalled on a retransmitted SYN: 5 and 10 % of the
/// connects, at the boundary.
#[test]
fn stalled_connects_need_numbers_and_a_share() {
    let ns = [netns(60, &[])];
    let stalled = |retried, connects| {
        let mut r = dest(0.0, 0, false, None);
        r.connects = connects;
        r.syn_retried = retried;
        r.syn_retransmits = retried * 2;
        run(&[r], &ns)
    };
    assert!(stalled(4, 10).is_empty(), "fewer than 5");
    assert!(stalled(5, 51).is_empty(), "under 10 %");
    let out = stalled(5, 50);
    assert_eq!(kinds(&out), [(Kind::SynRetransmits, Severity::Warning)]);
    assert!(
        out[0].headline.starts_with(
            "connects from nginx[42] in netns 7 (proxy) to 10.0.0.1:80 stall: 5 of 50 (10 %) retransmitted their SYN (2.0 times each"
        ),
        "{}",
        out[0].headline
    );
    assert!(out[0].remedy[1].contains("conntrack"));
}

/// Retransmits toward a destination: 20, at 0.2 a second (30 s traced:
/// 6), half a retransmit per connection, and three times the other
/// destinations' per connection.
#[test]
fn retransmits_toward_a_destination_that_stands_out() {
    let ns = [netns(60, &[])];
    let toward = |host: u8, retransmits, connects| {
        let mut r = dest(0.0, 0, false, None);
        r.dest.remote = format!("10.0.0.{host}:80").parse().unwrap();
        r.retransmits = retransmits;
        r.connects = connects;
        r
    };
    assert!(run(&[toward(1, 19, 10)], &ns).is_empty(), "fewer than 20");
    // A busy healthy path: pgbench -C toward PostgreSQL, 20 in 571.
    assert!(
        run(&[toward(1, 20, 571)], &ns).is_empty(),
        "rare per connection"
    );
    let out = run(&[toward(1, 60, 100)], &ns);
    assert_eq!(kinds(&out), [(Kind::Retransmits, Severity::Warning)]);
    assert!(
        out[0].headline.starts_with(
            "packets toward 10.0.0.1:80 are lost: 60 segments from nginx[42] in netns 7 (proxy) retransmitted (0.6 per connection"
        ),
        "{}",
        out[0].headline
    );
    assert!(out[0].remedy[1].contains("MTU"));
    // Loss everywhere alike (the host's own link) is not one destination's.
    assert!(run(&[toward(1, 60, 100), toward(2, 50, 100)], &ns).is_empty());
    let out = run(&[toward(1, 60, 100), toward(2, 10, 100)], &ns);
    assert_eq!(kinds(&out), [(Kind::Retransmits, Severity::Warning)]);
    // A long run at a slow pace says nothing, unless the last seconds are fast.
    let slow = |rate| {
        let mut r = toward(1, 60, 100);
        r.retransmit_rate = rate;
        run_for(3600.0, &[r], &ns)
    };
    assert!(slow(0.0).is_empty());
    assert_eq!(kinds(&slow(0.5)), [(Kind::Retransmits, Severity::Warning)]);
}

/// A listener's SYN-ACKs retransmitted: 10 is a warning, the pool of
/// listeners beyond those counted says nothing.
#[test]
fn synack_retransmits_need_ten() {
    let with = |rows: &[((u32, u16), u64)]| {
        diagnose(&Evidence {
            elapsed_s: 10.0,
            ports: &[],
            namespaces: &[],
            binds: &[],
            by_service: &[],
            close_waits: &[],
            server_timewait: &[],
            listeners: &[],
            reset_names: &ResetNames::default(),
            synack_retransmits: rows,
        })
    };
    assert!(with(&[((7, 443), 9)]).is_empty());
    assert!(
        with(&[((0, 0), 500)]).is_empty(),
        "the pool names no listener"
    );
    let out = with(&[((7, 443), 10)]);
    assert_eq!(kinds(&out), [(Kind::SynAckRetransmits, Severity::Warning)]);
    assert!(
        out[0]
            .headline
            .starts_with("SYN-ACKs of :443 in netns 7 retransmitted 10 times (1.0/s)"),
        "{}",
        out[0].headline
    );
}

#[test]
fn refused_and_unreachable_upstreams() {
    let ns = [netns(60, &[])];
    let mut refused = dest(0.0, 0, false, None);
    refused.verdicts = VerdictCounts::default();
    refused.verdicts[Verdict::Refused.index()] = 10;
    refused.connects = 10;
    let out = run(&[refused.clone()], &ns);
    assert_eq!(kinds(&out), [(Kind::UpstreamRefuses, Severity::Warning)]);
    assert!(
        out[0]
            .headline
            .starts_with("10.0.0.1:80 refuses connections"),
        "{}",
        out[0].headline
    );
    refused.verdicts[Verdict::Refused.index()] = 4;
    assert!(run(&[refused.clone()], &ns).is_empty(), "fewer than 5");
    refused.verdicts[Verdict::ConnectFailed.index()] = 6;
    assert_eq!(
        kinds(&run(&[refused], &ns)),
        [(Kind::UpstreamUnreachable, Severity::Warning)]
    );
}

#[test]
fn timewait_on_the_accepting_side_is_information() {
    let with = |count| {
        diagnose(&Evidence {
            elapsed_s: 10.0,
            ports: &[],
            namespaces: &[],
            binds: &[],
            by_service: &[],
            close_waits: &[],
            server_timewait: &[ServiceSockets {
                netns: 7,
                comm: Some(Comm::from_name("server")),
                pids: pids(&[5]),
                count,
            }],
            listeners: &[],
            reset_names: &ResetNames::default(),
            synack_retransmits: &[],
        })
    };
    assert!(with(99).is_empty());
    let out = with(5000);
    assert_eq!(kinds(&out), [(Kind::ServerTimewait, Severity::Info)]);
    assert!(out[0].explanation.contains("do not use ephemeral ports"));
    assert_eq!(worst(&out), Some(Severity::Info));
}

#[test]
fn failed_binds_and_the_ranking() {
    let binds = [BindRow {
        netns: 7,
        process: Some((5, Comm::from_name("server"))),
        local: "0.0.0.0:8081".parse().unwrap(),
        count: 1,
        timewait_on_port: 3,
    }];
    let ports = [
        dest(1.0, 5, true, Some(0.0)),
        dest(0.6, 0, false, Some(40.0)),
    ];
    let out = diagnose(&Evidence {
        elapsed_s: 10.0,
        ports: &ports,
        namespaces: &[],
        binds: &binds,
        by_service: &[],
        close_waits: &[],
        server_timewait: &[],
        listeners: &[],
        reset_names: &ResetNames::default(),
        synack_retransmits: &[],
    });
    assert_eq!(
        kinds(&out),
        [
            (Kind::PortExhaustion, Severity::Critical),
            (Kind::PortExhaustion, Severity::Warning),
            (Kind::BindInUse, Severity::Warning),
        ],
        "worst first, then the soonest to bite"
    );
    assert!(out[2].headline.contains("server[5] in netns 7 cannot bind *:8081 (EADDRINUSE, 1 times): 3 timewait sockets hold port 8081"), "{}", out[2].headline);
    assert_eq!(worst(&out), Some(Severity::Critical));
    assert_eq!(worst(&[]), None);
}

/// The findings document lists every threshold as the code has it.
#[test]
fn the_document_lists_the_thresholds_of_the_code() {
    let doc = include_str!("../../doc/findings.md");
    for (what, value) in THRESHOLDS {
        let row = format!("| {what} | {value} |");
        assert!(doc.contains(&row), "doc/findings.md lacks {row}");
    }
}
