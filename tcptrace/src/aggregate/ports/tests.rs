//! The per-destination table fed with synthetic facts.

use super::*;
use crate::model::{
    StateTimes, Transition,
    fixtures::{Script, task},
};

const UP: &str = "10.0.0.1:80";
const SEC: u64 = 1_000_000_000;

fn sysctls(range: (u16, u16), tw_reuse: u8) -> Sysctls {
    Sysctls {
        port_range: Some(range),
        tw_reuse: Some(tw_reuse),
        timestamps: Some(1),
        tw_reuse_delay_ms: Some(1000),
        ..Sysctls::default()
    }
}

fn leave_syn_sent(ports: &mut Ports, at_ns: u64, local: &str) {
    let mut t = Script { ts: 0 }.tr(1, local, UP, TcpState::SynSent, TcpState::Established, None);
    t.ts_ns = at_ns;
    ports.fact(Fact::Transition(&t)).unwrap();
}

fn closed(ports: &mut Ports, at_ns: u64, local: &str, verdict: Verdict, lifetime_ns: u64) {
    let c = Closed {
        ts_ns: at_ns,
        sock: 1,
        netns: 1,
        local: local.parse().unwrap(),
        remote: UP.parse().unwrap(),
        role: Role::Active,
        owner: Some(task(7, "proxy")),
        verdict,
        lifetime_ns: Some(lifetime_ns),
        in_state: StateTimes::default(),
        missed: false,
        reset_reason: None,
        syn_retransmits: 0,
        timewait: None,
    };
    ports.fact(Fact::Closed(&c)).unwrap();
}

fn tw_ended(ports: &mut Ports, local: &str, reason: TwEnd, after_ns: u64) {
    let mut t: Transition =
        Script { ts: 0 }.tr(1, local, UP, TcpState::TimeWait, TcpState::Close, None);
    t.in_old = TimeInState::Measured(after_ns);
    t.timewait = Some(TwNote::Ends {
        reason,
        rearms: 0,
        by: None,
        fin_unseen: false,
    });
    ports.fact(Fact::Transition(&t)).unwrap();
}

fn dest(local: &str) -> Dest {
    Dest {
        netns: 1,
        local: local.parse().unwrap(),
        remote: UP.parse().unwrap(),
    }
}

/// A proxy connecting at `rate` per second for `secs` seconds toward UP from
/// 10.0.0.2, closing each first after 1 ms; the ports held grow by `rate` a
/// second (nothing expires in the first minute).
fn proxy(rate: u64, secs: u64) -> (Ports, HashMap<Dest, Held>) {
    let mut ports = Ports::default();
    let mut held = HashMap::default();
    for s in 0..secs {
        for i in 0..rate {
            let at = s * SEC + i * (SEC / rate);
            leave_syn_sent(&mut ports, at, "10.0.0.2:40000");
            closed(
                &mut ports,
                at + 1_000_000,
                "10.0.0.2:40000",
                Verdict::Local,
                1_000_000,
            );
        }
        held.insert(
            dest("10.0.0.2"),
            Held {
                open: 0,
                timewait: (s + 1) * rate,
            },
        );
        ports.sample((s + 1) * SEC, &held);
    }
    (ports, held)
}

#[test]
fn twice_the_sustainable_rate_runs_out_in_half_the_hold_time() {
    // 1000 ports, TIME_WAIT 60 s: 16.7/s sustained; the proxy makes 33/s.
    let (ports, held) = proxy(33, 15);
    let s = sysctls((40000, 40999), 0);
    let rows = ports.report(&held, |_| Some(&s), Some(60 * SEC), 15 * SEC, 10);
    let r = &rows[0];
    assert_eq!(r.dest, dest("10.0.0.2"));
    assert_eq!(r.owners.len(), 1);
    assert_eq!(r.owners[0].0.as_str(), "proxy");
    assert_eq!(r.owners[0].1.examples(), [7]);
    assert_eq!((r.capacity, r.held.total()), (Some(1000), 495));
    assert!((r.usage.unwrap() - 0.495).abs() < 1e-9);
    assert_eq!(r.tw_reuse, Some(false));
    assert_eq!(r.closed_locally, Some(1.0));
    assert!((r.rate - 33.0).abs() < 0.01, "{}", r.rate);
    // No expiry yet: the armed timer's length.
    assert_eq!(r.timewait_hold, Some(TimewaitHold::Timer));
    assert!((r.hold_s.unwrap() - 60.001).abs() < 1e-6);
    assert!((r.sustainable.unwrap() - 16.67).abs() < 0.01);
    let left = r.time_left_s.unwrap();
    assert!((left - 505.0 / 33.0).abs() < 0.1, "{left}");
    assert_eq!((r.failed, r.failing), (0, false));
}

#[test]
fn measured_expiries_replace_the_timer() {
    let (mut ports, held) = proxy(10, 5);
    tw_ended(&mut ports, "10.0.0.2:40001", TwEnd::Expired, 61_200_000_000);
    let s = sysctls((40000, 40999), 0);
    let r = &ports.report(&held, |_| Some(&s), Some(60 * SEC), 5 * SEC, 10)[0];
    assert_eq!(r.timewait_hold, Some(TimewaitHold::Measured));
    assert!((r.timewait_s.unwrap() - 61.2).abs() < 1e-9);
    // 10/s for 61.2 s is 612 ports: it levels off below 1000.
    assert_eq!(r.time_left_s, None);
}

#[test]
fn tw_reuse_holds_a_port_for_the_reuse_delay() {
    let (mut ports, held) = proxy(33, 3);
    tw_ended(&mut ports, "10.0.0.2:40001", TwEnd::Reused, 30 * SEC);
    let s = sysctls((40000, 40999), 1);
    let r = &ports.report(&held, |_| Some(&s), Some(60 * SEC), 3 * SEC, 10)[0];
    assert_eq!(
        (r.tw_reuse, r.timewait_hold),
        (Some(true), Some(TimewaitHold::Reusable))
    );
    assert!((r.hold_s.unwrap() - 1.001).abs() < 1e-6);
    assert!(r.sustainable.unwrap() > 990.0);
    assert_eq!(r.time_left_s, None, "33/s is far below ~1000/s");
    assert_eq!(r.reused_after_s, Some(30.0));
}

#[test]
fn failed_connects_belong_to_the_destination_they_were_for() {
    let (mut ports, mut held) = proxy(33, 2);
    // No port: SYN_SENT left with no local address chosen.
    leave_syn_sent(&mut ports, 2 * SEC, "0.0.0.0:0");
    closed(&mut ports, 2 * SEC, "0.0.0.0:0", Verdict::NoPort, 300);
    held.insert(
        dest("10.0.0.2"),
        Held {
            open: 0,
            timewait: 1000,
        },
    );
    let s = sysctls((40000, 40999), 0);
    let rows = ports.report(&held, |_| Some(&s), Some(60 * SEC), 3 * SEC, 10);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.failed, r.failing), (1, true));
    assert_eq!(r.time_left_s, Some(0.0));
    assert_eq!(r.usage, Some(1.0));
    assert_eq!(r.connects, 67);
    assert_eq!(
        r.closed_locally,
        Some(1.0),
        "the failed connect closed nothing"
    );
}

#[test]
fn passive_connections_and_servers_timewait_are_not_destinations() {
    let mut ports = Ports::default();
    let mut c = Closed {
        ts_ns: SEC,
        sock: 1,
        netns: 1,
        local: UP.parse().unwrap(),
        remote: "10.0.0.2:40000".parse().unwrap(),
        role: Role::Passive,
        owner: None,
        verdict: Verdict::Local,
        lifetime_ns: Some(5),
        in_state: StateTimes::default(),
        missed: false,
        reset_reason: None,
        syn_retransmits: 0,
        timewait: None,
    };
    ports.fact(Fact::Closed(&c)).unwrap();
    tw_ended(&mut ports, "10.0.0.2:40000", TwEnd::Expired, 60 * SEC);
    assert!(
        ports
            .report(&HashMap::default(), |_| None, None, 2 * SEC, 10)
            .is_empty()
    );
    c.role = Role::Active;
    ports.fact(Fact::Closed(&c)).unwrap();
    let rows = ports.report(&HashMap::default(), |_| None, None, 2 * SEC, 10);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].capacity, rows[0].usage),
        (None, None),
        "no sysctls known"
    );
}

#[test]
fn bounded_with_the_rest_pooled() {
    let mut ports = Ports::default();
    for i in 0..(MAX_DESTINATIONS as u32 + 3) {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        let mut t = Script { ts: 0 }.tr(
            1,
            "10.9.0.1:40000",
            UP,
            TcpState::SynSent,
            TcpState::Established,
            None,
        );
        t.remote = SocketAddr::new(IpAddr::V4(ip), 80);
        ports.fact(Fact::Transition(&t)).unwrap();
    }
    assert_eq!(ports.folded, 3);
    let rows = ports.report(&HashMap::default(), |_| None, None, SEC, 5);
    assert_eq!(rows.len(), 6, "5 and the rest");
    let other = rows.last().unwrap();
    assert!(other.dest.is_other());
    assert_eq!(other.connects, MAX_DESTINATIONS as u64 + 3 - 5);
}

#[test]
fn ports_held_toward_destinations_not_followed_are_pooled() {
    let mut ports = Ports::default();
    leave_syn_sent(&mut ports, SEC, "10.0.0.2:40000");
    let mut held = ports.held_count();
    held.toward(&dest("10.0.0.2")).open += 1;
    held.toward(&dest("10.0.0.2")).timewait += 2;
    // Not followed (say a connection older than the trace): the pool.
    held.toward(&dest("10.0.0.3")).timewait += 1;
    held.toward(&dest("10.0.0.4")).open += 1;
    let held = held.finish();
    assert_eq!(
        held[&dest("10.0.0.2")],
        Held {
            open: 1,
            timewait: 2
        }
    );
    assert_eq!(
        held[&Dest::OTHER],
        Held {
            open: 1,
            timewait: 1
        }
    );
    assert_eq!(held.len(), 2);
    // Nothing toward the others: no pool.
    assert!(!ports.held_count().finish().contains_key(&Dest::OTHER));
}

#[test]
fn levels_rise_at_the_thresholds_and_fall_with_hysteresis() {
    use Level::*;
    assert_eq!(level(Some(0.49), false, Fine), Fine);
    assert_eq!(level(Some(0.50), false, Fine), Half);
    assert_eq!(level(Some(0.85), false, Fine), High);
    assert_eq!(level(Some(0.45), false, Half), Half, "not 10 points below");
    assert_eq!(level(Some(0.39), false, Half), Fine);
    assert_eq!(level(Some(0.75), false, High), High);
    assert_eq!(level(Some(0.69), false, High), Half);
    assert_eq!(level(Some(0.2), true, Half), Failing);
    assert_eq!(
        level(Some(1.0), false, Failing),
        High,
        "no failure for a window"
    );
    assert_eq!(level(None, false, Fine), Fine);
}

#[test]
fn one_alert_per_crossing() {
    let (mut ports, mut held) = proxy(33, 16);
    let s = sysctls((40000, 40999), 0);
    let report = |ports: &Ports, held: &HashMap<Dest, Held>| {
        ports.report(held, |_| Some(&s), Some(60 * SEC), 16 * SEC, 10)
    };
    let rows = report(&ports, &held);
    let alerts: Vec<_> = ports.alerts(&rows).into_iter().map(|(l, _)| l).collect();
    assert_eq!(alerts, [Level::Half]);
    assert!(ports.alerts(&report(&ports, &held)).is_empty(), "said once");
    held.insert(
        dest("10.0.0.2"),
        Held {
            open: 3,
            timewait: 850,
        },
    );
    let rows = report(&ports, &held);
    assert_eq!(ports.alerts(&rows)[0].0, Level::High);
    closed(&mut ports, 16 * SEC, "0.0.0.0:0", Verdict::NoPort, 300);
    let rows = report(&ports, &held);
    assert_eq!(ports.alerts(&rows)[0].0, Level::Failing);
}

/// Connects land in the bucket of their time to connect (a SYN
/// retransmitted once: ~1 s); retransmits count toward the destination of
/// this host's connects, the others elsewhere; resets sent, by reason.
#[test]
fn connect_latency_retransmits_and_reset_reasons_per_destination() {
    let mut ports = Ports::default();
    for (i, ms) in [0.2, 0.3, 1003.0, 3010.0, 20_000.0].into_iter().enumerate() {
        let mut t = Script { ts: 0 }.tr(
            1,
            "10.0.0.2:40000",
            UP,
            TcpState::SynSent,
            TcpState::Established,
            None,
        );
        t.ts_ns = (i as u64 + 1) * SEC;
        t.in_old = TimeInState::Measured((ms * 1e6) as u64);
        ports.fact(Fact::Transition(&t)).unwrap();
    }
    let retransmits = |remote: &str, count: u64, ts_ns: u64| Retransmits {
        ts_ns,
        netns: 1,
        local: "10.0.0.2:0".parse().unwrap(),
        remote: remote.parse().unwrap(),
        count,
    };
    for r in [
        retransmits(UP, 30, 5 * SEC),
        retransmits(UP, 10, 6 * SEC),
        retransmits("10.0.0.9:51000", 7, 6 * SEC),
    ] {
        ports.fact(Fact::Retransmits(&r)).unwrap();
    }
    let mut c = Closed {
        ts_ns: 6 * SEC,
        sock: 1,
        netns: 1,
        local: "10.0.0.2:40000".parse().unwrap(),
        remote: UP.parse().unwrap(),
        role: Role::Active,
        owner: Some(task(7, "proxy")),
        verdict: Verdict::AbortSent,
        lifetime_ns: Some(1),
        in_state: StateTimes::default(),
        missed: false,
        reset_reason: Some(crate::model::ResetReason(11)),
        syn_retransmits: 0,
        timewait: None,
    };
    ports.fact(Fact::Closed(&c)).unwrap();
    c.verdict = Verdict::Local;
    c.reset_reason = None;
    ports.fact(Fact::Closed(&c)).unwrap();

    let rows = ports.report(&HashMap::default(), |_| None, None, 7 * SEC, 10);
    let r = &rows[0];
    assert_eq!(r.connect_latency.counts, [2, 0, 0, 0, 1, 1, 0, 1]);
    assert!((r.connect_latency.sum_s - 24.0135).abs() < 1e-3);
    assert_eq!(r.connect_latency.cumulative(), [2, 2, 2, 2, 3, 4, 4]);
    assert_eq!(r.connect_latency.slower_than(SLOW_CONNECT), 3);
    assert_eq!(r.retransmits, 40);
    // 40 over the 6 seconds since the first connect.
    assert!(
        (r.retransmit_rate - 40.0 / 6.0).abs() < 1e-9,
        "{}",
        r.retransmit_rate
    );
    assert_eq!(ports.retransmits_elsewhere, 7);
    assert_eq!(
        r.reset_reasons.most_first(),
        [(crate::model::ResetReason(11), 1)]
    );
}
