//! A report with every section filled in, for the views' tests.

use std::time::Duration;

use super::{Counts, Report, Resets, TimewaitReport, Totals};
use crate::{
    aggregate::{
        netns::NetnsReport,
        open::open_by_state,
        ports::DestReport,
        stats::{BindRow, Stats, VerdictCounts},
    },
    model::{
        Comm, Open, PerKind, ResetNames, ResetReason, Role, TcpState, TimeInState, TwCount, TwEnd,
        TwNote, Verdict,
        fixtures::{Script, closed, task},
    },
};

pub(crate) fn report_stats() -> Stats {
    let mut stats = Stats::new();
    let mut s = Script { ts: 0 };
    let mut t = s.tr(
        1,
        "10.0.0.1:40000",
        "10.0.0.2:80",
        TcpState::SynSent,
        TcpState::Established,
        None,
    );
    t.in_old = TimeInState::Measured(250_000);
    stats.record_transition(&t);
    // A TIME_WAIT of 61.2 s that expired, its timer re-armed twice, and
    // one killed.
    let mut tw = s.tr(
        2,
        "10.0.0.1:40001",
        "10.0.0.2:80",
        TcpState::FinWait2,
        TcpState::TimeWait,
        None,
    );
    tw.timewait = Some(TwNote::Begins {
        timer_ns: Some(60_000_000_000),
    });
    stats.record_timewait(&tw);
    tw.old = TcpState::TimeWait;
    tw.new = TcpState::Close;
    tw.in_old = TimeInState::Measured(61_200_000_000);
    tw.timewait = Some(TwNote::Ends {
        reason: TwEnd::Expired,
        rearms: 2,
        by: None,
        fin_unseen: false,
    });
    stats.record_transition(&tw);
    stats.record_timewait(&tw);
    tw.in_old = TimeInState::Measured(1_000);
    tw.timewait = Some(TwNote::Ends {
        reason: TwEnd::Killed,
        rearms: 0,
        by: None,
        fin_unseen: false,
    });
    stats.record_timewait(&tw);
    stats.record_closed(&closed(task(42, "curl"), Verdict::Local));
    stats
}

/// A destination running out of ports, and its namespace.
pub(crate) fn ports_and_namespaces() -> (Vec<DestReport>, Vec<NetnsReport>) {
    use crate::{
        aggregate::ports::{ConnectLatency, Dest, Held, TimewaitHold},
        model::{COUNTERS, NetnsName, Sysctls},
    };
    let mut verdicts = VerdictCounts::default();
    verdicts[Verdict::Local.index()] = 990;
    verdicts[Verdict::NoPort.index()] = 3;
    let dest = DestReport {
        dest: Dest {
            netns: 7,
            local: "10.0.0.2".parse().unwrap(),
            remote: "10.0.0.1:80".parse().unwrap(),
        },
        owners: vec![(Comm::from_name("proxy"), [42].into_iter().collect())],
        held: Held {
            open: 2,
            timewait: 998,
        },
        capacity: Some(1000),
        usage: Some(1.0),
        tw_reuse: Some(false),
        connects: 993,
        rate: 33.3,
        rate_since_start: 33.1,
        closed_locally: Some(1.0),
        lifetime_s: Some(0.002),
        timewait_s: Some(60.0),
        timewait_hold: Some(TimewaitHold::Timer),
        reused_after_s: None,
        hold_s: Some(60.002),
        sustainable: Some(16.67),
        time_left_s: Some(0.0),
        failed: 3,
        failing: true,
        verdicts,
        syn_retried: 4,
        syn_retransmits: 5,
        connect_latency: ConnectLatency {
            counts: [980, 5, 0, 0, 4, 1, 0, 0],
            sum_s: 7.2,
        },
        retransmits: 40,
        retransmit_rate: 2.5,
        reset_reasons: [12, 12].into_iter().map(ResetReason).collect(),
    };
    let mut since_start = [0; COUNTERS.len()];
    since_start[0] = 993;
    let netns = NetnsReport {
        netns: 7,
        name: Some(NetnsName {
            name: Some("proxy".into()),
            process: Some((42, "proxy".into())),
            container: None,
        }),
        sysctls: Some(Sysctls {
            port_range: Some((40000, 40999)),
            tw_reuse: Some(2),
            timestamps: Some(1),
            fin_timeout_s: Some(60),
            ..Sysctls::default()
        }),
        now: since_start,
        since_start,
        since_last_summary: since_start,
    };
    (vec![dest], vec![netns])
}

/// A server that could not bind its port while timewait sockets held it.
pub(crate) fn binds() -> Vec<BindRow> {
    vec![BindRow {
        netns: 7,
        process: Some((43, Comm::from_name("server"))),
        local: "0.0.0.0:8081".parse().unwrap(),
        count: 2,
        timewait_on_port: 5,
    }]
}

/// A report with every section filled in.
pub(crate) fn full_report(
    stats: &Stats,
    ports: &[DestReport],
    binds: &[BindRow],
    namespaces: &[NetnsReport],
) -> Report {
    let owner = task(7, "app");
    let open = [Open {
        state: TcpState::CloseWait,
        since_ns: Some(1_000_000_000),
        local: "10.0.0.1:8080".parse().unwrap(),
        remote: "10.0.0.3:5555".parse().unwrap(),
        netns: 1,
        owner: Some(&owner),
        role: Role::Passive,
    }];
    Report {
        at_ns: 4_500_000_000,
        totals: Totals {
            transitions: 9,
            elapsed: Duration::from_secs(3),
            ..Totals::default()
        },
        received: PerKind::default(),
        start_time_s: 0.0,
        findings: Vec::new(),
        counts: Counts::of(stats),
        open: open_by_state(open.into_iter(), 4_500_000_000, None),
        sockets: Vec::new(),
        timewait: Some(TimewaitReport::of(
            stats,
            vec![(
                7,
                TwCount {
                    time_wait: 3,
                    fin_wait2: 1,
                },
            )],
            vec![(7, 12)],
        )),
        ports: ports.to_vec(),
        destinations_tracked: ports.len(),
        folded_connections: 0,
        retransmits_elsewhere: 3,
        binds: binds.to_vec(),
        namespaces: namespaces.to_vec(),
        listeners: Vec::new(),
        resets: Resets {
            names: ResetNames::new(vec![(12, "TCP_ABORT_ON_LINGER".into())]),
            sent: vec![(ResetReason(12), 3)],
            no_socket: vec![(8080, 5)],
        },
        synack_retransmits: vec![((7, 8080), 12)],
    }
}
