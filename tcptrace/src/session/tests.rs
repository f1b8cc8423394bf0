//! A session with in-memory output and warnings, synthetic records and a
//! fake reader of the namespaces' counters: what reaches stdout and stderr.

use std::{
    io,
    sync::atomic::{AtomicU64, Ordering},
};

use super::*;
use crate::kernel::monotonic_ns;
use crate::{
    host::snapshot::Snapshot,
    model::{
        COUNTERS, NetnsName, PerKind, RecordKind, Sysctls, TcpState,
        fixtures::{Script, task},
    },
    pipeline::{Settings, filter::Filter},
    render::{
        JsonPrinter,
        clock::{WallClock, Zone},
    },
};
use tcptrace_common::KernelFilter;

const SRV: &str = "10.0.0.1:80";
const CLI: &str = "10.0.0.2:40000";

/// What the fake /proc says netns 7's overflow counter is.
static OVERFLOWS: AtomicU64 = AtomicU64::new(100);

/// Index of TCPTimeWaitOverflow in the counters kept.
fn overflow_index() -> usize {
    COUNTERS
        .iter()
        .position(|(_, name)| *name == "TCPTimeWaitOverflow")
        .unwrap()
}

fn fake() -> Readers {
    Readers {
        counters: |_pid, netns| match netns {
            7 => {
                let mut values = [0; COUNTERS.len()];
                values[overflow_index()] = OVERFLOWS.load(Ordering::Relaxed);
                Ok(values)
            }
            // The scripts' namespace: readable, nothing counted.
            1 => Ok([0; COUNTERS.len()]),
            _ => Err(io::Error::other("no such process")),
        },
        sysctls: |_pid, _netns| {
            Ok(Sysctls {
                port_range: Some((40000, 40999)),
                ..Sysctls::default()
            })
        },
        listeners: |_pid, _netns| Ok(Vec::new()),
        // The kernel lists no connection.
        sockets: |_pid, _netns| Ok(Vec::new()),
        name: |_netns, pid| NetnsName {
            name: Some("proxy".into()),
            process: Some((pid, "proxy".into())),
            container: None,
        },
        now_ns: monotonic_ns,
    }
}

fn session(summary_only: bool) -> Session<Vec<u8>, Vec<u8>> {
    let pipeline = Pipeline::new(Settings {
        filter: Filter::default(),
        kernel: KernelFilter::default(),
        max_sockets: 1,
        hz: Some(250),
        records: !summary_only,
    });
    let printer = Printer::Json(JsonPrinter::new(WallClock::with_offset(0, Zone::Utc)));
    Session::with(pipeline, printer, Vec::new(), Vec::new(), true, fake())
}

fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A client's connection that fails to connect: two transitions, one record.
fn failed_connect(s: &mut Session<Vec<u8>, Vec<u8>>) {
    let mut script = Script { ts: 0 };
    let c = Some(task(100, "client"));
    for (old, new, local) in [
        (TcpState::Close, TcpState::SynSent, "10.0.0.2:0"),
        (TcpState::SynSent, TcpState::Close, CLI),
    ] {
        let t = script.t(2, local, SRV, old, new, c);
        s.record(Ok(Event::Change(t))).unwrap();
    }
    // Failed without a RST: settled once the loss counts after it are read.
    s.end_drain(PerKind::default(), monotonic_ns()).unwrap();
    s.end_drain(PerKind::default(), monotonic_ns()).unwrap();
}

/// A second with the kernel side's transition losses at `lost` in all.
fn second(s: &mut Session<Vec<u8>, Vec<u8>>, lost: u64) {
    s.end_drain(
        PerKind::of(&[(RecordKind::Transition, lost)]),
        monotonic_ns(),
    )
    .unwrap();
    s.every_second().unwrap();
}

#[test]
fn the_live_log_gets_transitions_and_records_the_summary_counts_them() {
    let mut s = session(false);
    s.begin().unwrap();
    failed_connect(&mut s);
    s.finish(0).unwrap();
    let out = lines(&s.sinks.out);
    let kinds: Vec<_> = out.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["transition", "transition", "closed", "summary"]);
    assert_eq!(out[2]["verdict"], "connect-failed");
    assert_eq!(out[3]["transitions"], 2);
    assert_eq!(out[3]["verdicts"]["connect-failed"], 1);
}

#[test]
fn summary_only_prints_no_per_event_line() {
    let mut s = session(true);
    s.begin().unwrap();
    failed_connect(&mut s);
    s.summary(0).unwrap();
    let out = lines(&s.sinks.out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "summary");
    assert_eq!(
        out[0]["verdicts"]["connect-failed"], 1,
        "counted all the same"
    );
}

#[test]
fn warnings_say_what_was_lost_or_not_followed_once() {
    let mut s = session(false);
    s.begin().unwrap();
    second(&mut s, 0);
    assert!(s.warnings.written().is_empty());
    second(&mut s, 5);
    second(&mut s, 5);
    second(&mut s, 8);
    // A second socket while the one allowed is followed.
    let mut script = Script { ts: 0 };
    for sock in [1, 2] {
        let t = script.t(
            sock,
            "10.0.0.2:0",
            SRV,
            TcpState::Close,
            TcpState::SynSent,
            None,
        );
        s.record(Ok(Event::Change(t))).unwrap();
    }
    second(&mut s, 8);
    second(&mut s, 8);
    assert_eq!(
        String::from_utf8(s.warnings.written().clone()).unwrap(),
        "tcptrace: warning: 5 records lost (ring buffer full: 5 transition; 5 in total); \
         their connections' verdicts and durations are unknown where they would have told; raise --ring-size\n\
         tcptrace: warning: 3 records lost (ring buffer full: 3 transition; 8 in total); \
         their connections' verdicts and durations are unknown where they would have told; raise --ring-size\n\
         tcptrace: warning: already following --max-sockets sockets; others get unknown \
         durations and no verdict (raise --max-sockets)\n"
    );
    assert_eq!(s.totals(0).untracked_conns, 1);
}

#[test]
fn timewait_overflows_count_from_start_up() {
    let mut s = session(true);
    OVERFLOWS.store(100, Ordering::Relaxed);
    s.seed(Snapshot {
        sockets: Vec::new(),
        namespaces: vec![(7, 1), (8, 2)],
    });
    s.begin().unwrap();
    OVERFLOWS.store(130, Ordering::Relaxed);
    second(&mut s, 0);
    assert_eq!(
        String::from_utf8(s.warnings.written().clone()).unwrap(),
        "tcptrace: warning: netns 7: 30 connections closed without a timewait socket \
         (tcp_max_tw_buckets reached, TcpExtTCPTimeWaitOverflow; 30 since start)\n"
    );
    s.summary(0).unwrap();
    let out = lines(&s.sinks.out);
    assert_eq!(out[0]["timewait"]["overflows"][0]["count"], 30);
    // The namespaces section, with their names and sysctls.
    let namespaces = out[0]["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1, "netns 8 could not be read");
    assert_eq!(namespaces[0]["name"], "proxy");
    assert_eq!(namespaces[0]["sysctls"]["ip_local_port_range"][1], 40999);
    assert_eq!(
        namespaces[0]["since_start"]["TcpExtTCPTimeWaitOverflow"],
        30
    );
}

/// A daemon says a repeating problem once, then at most once a minute (a
/// journal reads it, not a person at a terminal); it prints no summary.
#[test]
fn quiet_says_repeating_warnings_once_a_minute_and_prints_nothing() {
    let mut s = session(true);
    s.quiet();
    s.begin().unwrap();
    second(&mut s, 5);
    second(&mut s, 8);
    second(&mut s, 9);
    assert_eq!(
        String::from_utf8(s.warnings.written().clone()).unwrap(),
        "tcptrace: warning: 5 records lost (ring buffer full: 5 transition; 5 in total); \
         their connections' verdicts and durations are unknown where they would have told; raise --ring-size\n"
    );
    s.summary(0).unwrap();
    s.finish(0).unwrap();
    assert!(
        s.sinks.out.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&s.sinks.out)
    );
}

/// After transition records were lost, a connection the kernel no longer
/// lists is ended (its CLOSE was lost): listed, then, once a drain has
/// taken every record from before that, listed again and ended.
#[test]
fn after_losses_connections_the_kernel_no_longer_lists_are_ended() {
    let mut s = session(false);
    s.begin().unwrap();
    let mut script = Script { ts: 0 };
    let c = Some(task(100, "client"));
    for (old, new, local) in [
        (TcpState::Close, TcpState::SynSent, "10.0.0.2:0"),
        (TcpState::SynSent, TcpState::Established, CLI),
    ] {
        let t = script.t(2, local, SRV, old, new, c);
        s.record(Ok(Event::Change(t))).unwrap();
    }
    second(&mut s, 0);
    assert!(
        lines(&s.sinks.out).iter().all(|r| r["type"] != "closed"),
        "nothing lost yet"
    );
    second(&mut s, 3);
    assert!(
        lines(&s.sinks.out).iter().all(|r| r["type"] != "closed"),
        "listed only"
    );
    second(&mut s, 3);
    assert!(
        lines(&s.sinks.out).iter().all(|r| r["type"] != "closed"),
        "no drain yet well after the listing"
    );
    std::thread::sleep(Duration::from_millis(150));
    second(&mut s, 3);
    let closed: Vec<_> = lines(&s.sinks.out)
        .into_iter()
        .filter(|r| r["type"] == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["verdict"], "unknown");
    assert_eq!(closed[0]["missed_records"], true);
}

/// The test's own clock, for the one test that moves it.
static CLOCK_NS: AtomicU64 = AtomicU64::new(0);

/// The summary and the metrics render one report: the same CLOSE_WAIT
/// socket, found at start-up, has one count and one age in both.
#[test]
fn summary_and_metrics_agree_to_the_socket() {
    let mut readers = fake();
    readers.now_ns = || CLOCK_NS.load(Ordering::Relaxed);
    let pipeline = Pipeline::new(Settings {
        filter: Filter::default(),
        kernel: KernelFilter::default(),
        max_sockets: 16,
        hz: Some(250),
        records: false,
    });
    let printer = Printer::Json(JsonPrinter::new(WallClock::with_offset(0, Zone::Utc)));
    let mut s = Session::with(pipeline, printer, Vec::new(), Vec::new(), true, readers);
    CLOCK_NS.store(10_000_000_000, Ordering::Relaxed);
    s.seed(Snapshot {
        sockets: vec![crate::model::Existing {
            netns: 7,
            local: SRV.parse().unwrap(),
            remote: CLI.parse().unwrap(),
            state: TcpState::CloseWait,
            owner: Some(task(5, "app")),
        }],
        namespaces: vec![(7, 1)],
    });
    s.begin().unwrap();
    CLOCK_NS.store(70_000_000_000, Ordering::Relaxed);
    s.summary(0).unwrap();
    let (metrics, _) = s.metrics(0, 0);
    let summary = &lines(&s.sinks.out)[0];
    let open = summary["open"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["state"], "CLOSE_WAIT");
    assert_eq!(open[0]["count"], 1);
    assert_eq!(open[0]["oldest"]["age_ns"], 60_000_000_000u64);
    let has = |line: &str| metrics.lines().any(|l| l == line);
    assert!(
        has(r#"tcptrace_sockets{netns="7",netns_name="proxy",state="close_wait"} 1"#),
        "{metrics}"
    );
    assert!(
        has(
            r#"tcptrace_oldest_socket_age_seconds{netns="7",netns_name="proxy",state="close_wait"} 60"#
        ),
        "{metrics}"
    );
}
