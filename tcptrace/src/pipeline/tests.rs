//! The pipeline with synthetic records and a sink that writes down what it
//! is handed.

use std::io;

use super::*;
use crate::model::{
    PerKind, Reset, ResetDirection, Task, TwAction, TwEvent,
    fixtures::{Script, task},
};
use tcptrace_common::KernelFilter;

const SRV: &str = "10.0.0.1:80";
const CLI: &str = "10.0.0.2:40000";
const ANY: &str = "0.0.0.0:0";
const TW: u64 = 0xffff_8880_0000_7000;

/// Writes down every fact: "T OLD>NEW pid", "C verdict pid", "R verdict pid".
#[derive(Default)]
struct Recorder(Vec<String>);

fn pid(owner: Option<&Task>) -> String {
    owner.map_or("-".into(), |t| t.pid.to_string())
}

impl Sink for Recorder {
    fn fact(&mut self, fact: Fact<'_>) -> io::Result<()> {
        self.0.push(match fact {
            Fact::Transition(t) => format!(
                "T {}>{} {}",
                t.old.name(),
                t.new.name(),
                pid(t.owner.as_ref())
            ),
            Fact::Closed(c) => format!("C {} {}", c.verdict.name(), pid(c.owner.as_ref())),
            Fact::BindFailed(b) => format!("B {} {}", b.local.port(), pid(b.task.as_ref())),
            Fact::Retransmits(r) => format!("X {} {}", r.remote, r.count),
            Fact::Record(c) => format!(
                "R {} {}{}",
                c.verdict.name(),
                pid(c.owner.as_ref()),
                match c.timewait {
                    Some(tw) => format!(" tw={}", tw.reason.map_or("ongoing", |r| r.name())),
                    None => String::new(),
                }
            ),
        });
        Ok(())
    }
}

struct Run {
    pipeline: Pipeline,
    s: Script,
    sink: Recorder,
}

impl Run {
    fn new(filter: Filter, records: bool) -> Self {
        Self {
            pipeline: Pipeline::new(Settings {
                filter,
                kernel: KernelFilter::default(),
                max_sockets: 1000,
                hz: Some(250),
                records,
            }),
            s: Script { ts: 0 },
            sink: Recorder::default(),
        }
    }

    fn t(&mut self, sock: u64, l: &str, r: &str, old: TcpState, new: TcpState, task: Option<Task>) {
        let t = self.s.t(sock, l, r, old, new, task);
        self.pipeline
            .record(Ok(Event::Change(t)), &mut self.sink)
            .unwrap();
    }

    fn tw(&mut self, action: TwAction) {
        self.s.ts += 1_000;
        let e = TwEvent {
            ts_ns: self.s.ts,
            sock: TW,
            netns: 1,
            local: CLI.parse().unwrap(),
            remote: SRV.parse().unwrap(),
            substate: TcpState::TimeWait,
            action,
        };
        self.pipeline
            .record(Ok(Event::Timewait(e)), &mut self.sink)
            .unwrap();
    }

    /// A listener (pid 200) and a client (pid 100) connected to it.
    fn established(filter: Filter, records: bool) -> Self {
        use TcpState::*;
        let mut run = Self::new(filter, records);
        let (c, s) = (Some(task(100, "client")), Some(task(200, "server")));
        run.t(1, SRV, ANY, Close, Listen, s);
        run.t(2, "10.0.0.2:0", SRV, Close, SynSent, c);
        run.t(3, SRV, CLI, Listen, SynRecv, None);
        run.t(2, CLI, SRV, SynSent, Established, None);
        run.t(3, SRV, CLI, SynRecv, Established, None);
        run.sink.0.clear();
        run
    }

    /// The client closes first; its timewait socket is armed just before
    /// its full socket's CLOSE.
    fn client_closes(&mut self) {
        use TcpState::*;
        let c = Some(task(100, "client"));
        self.t(2, CLI, SRV, Established, FinWait1, c);
        self.t(3, SRV, CLI, Established, CloseWait, None);
        self.t(3, SRV, CLI, CloseWait, LastAck, Some(task(200, "server")));
        self.t(2, CLI, SRV, FinWait1, FinWait2, None);
        self.tw(TwAction::Armed { jiffies: 15_000 });
        self.t(2, CLI, SRV, FinWait2, Close, None);
        self.t(3, SRV, CLI, LastAck, Close, None);
    }
}

#[test]
fn a_connection_and_its_timewait_socket_become_facts_in_order() {
    let mut run = Run::established(Filter::default(), true);
    run.client_closes();
    run.tw(TwAction::Cancelled {
        task: None,
        net_dying: false,
    });
    run.tw(TwAction::Expired);
    assert_eq!(
        run.sink.0,
        [
            "T ESTABLISHED>FIN_WAIT1 100",
            "T ESTABLISHED>CLOSE_WAIT 200",
            "T CLOSE_WAIT>LAST_ACK 200",
            "T FIN_WAIT1>FIN_WAIT2 100",
            // The verdict counts when the full socket closes...
            "C local 100",
            "T FIN_WAIT2>TIME_WAIT 100",
            "T LAST_ACK>CLOSE 200",
            "C peer 200",
            "R peer 200",
            // ...the record when its timewait socket ends.
            "T TIME_WAIT>CLOSE 100",
            "R local 100 tw=expired",
        ]
    );
    assert_eq!(run.pipeline.transitions(), 11);
    assert_eq!(run.pipeline.timewait_counts().count(), 0);
}

#[test]
fn without_printed_records_nothing_waits_for_timewait() {
    let mut run = Run::established(Filter::default(), false);
    run.client_closes();
    let at = run
        .sink
        .0
        .iter()
        .position(|f| f == "T FIN_WAIT2>TIME_WAIT 100")
        .unwrap();
    assert_eq!(run.sink.0[at + 1..at + 3], ["C local 100", "R local 100"]);
    assert_eq!(
        run.pipeline.timewait_counts().next().unwrap().1.time_wait,
        1
    );
}

#[test]
fn records_still_in_timewait_come_out_at_exit() {
    let mut run = Run::established(Filter::default(), true);
    run.client_closes();
    run.sink.0.clear();
    run.pipeline
        .finish(run.s.ts + 5_000, &mut run.sink)
        .unwrap();
    assert_eq!(run.sink.0, ["R local 100 tw=ongoing"]);
}

#[test]
fn the_filter_applies_to_every_fact_and_to_open_connections() {
    let filter = Filter {
        pids: vec![200],
        ..Filter::default()
    };
    let mut run = Run::established(filter, true);
    assert_eq!(run.pipeline.open().count(), 1, "the server's side only");
    run.client_closes();
    assert!(
        run.sink.0.iter().all(|f| f.ends_with(" 200")),
        "{:?}",
        run.sink.0
    );
    assert_eq!(run.sink.0.len(), 5);
}

#[test]
fn an_abortive_close_waits_for_its_rst() {
    use TcpState::*;
    let mut run = Run::established(Filter::default(), true);
    let c = Some(task(100, "client"));
    run.t(2, CLI, SRV, Established, Close, c);
    assert_eq!(run.sink.0, ["T ESTABLISHED>CLOSE 100"]);
    let rst = Reset {
        ts_ns: run.s.ts + 1,
        sock: 2,
        netns: 1,
        direction: ResetDirection::Sent,
        task: c,
        ports: (0, 0),
        reason: None,
    };
    run.pipeline
        .record(Ok(Event::Reset(rst)), &mut run.sink)
        .unwrap();
    assert_eq!(run.sink.0[1..], ["C abort-sent 100", "R abort-sent 100"]);
}

#[test]
fn a_close_without_evidence_is_settled_after_a_full_drain() {
    use TcpState::*;
    let mut run = Run::established(Filter::default(), true);
    run.t(3, SRV, CLI, Established, Close, None);
    run.pipeline
        .end_batch(
            PerKind::default(),
            u64::MAX / 2,
            u64::MAX / 2,
            &mut run.sink,
        )
        .unwrap();
    assert_eq!(run.sink.0.len(), 1, "one drain is not enough");
    run.pipeline
        .end_batch(
            PerKind::default(),
            u64::MAX / 2,
            u64::MAX / 2,
            &mut run.sink,
        )
        .unwrap();
    assert_eq!(run.sink.0[1..], ["C timeout 200", "R timeout 200"]);
}

#[test]
fn failed_binds_are_facts_and_name_their_namespace() {
    let mut run = Run::new(Filter::default(), true);
    let b = crate::model::BindFailure {
        ts_ns: 5,
        netns: 3,
        local: "0.0.0.0:8080".parse().unwrap(),
        task: Some(task(42, "server")),
    };
    run.pipeline
        .record(Ok(Event::BindFailed(b)), &mut run.sink)
        .unwrap();
    assert_eq!(run.sink.0, ["B 8080 42"]);
    assert_eq!(
        run.pipeline.namespaces().with_process().collect::<Vec<_>>(),
        [(3, 42)]
    );
    // Filtered like any socket: by owner here.
    let mut other = Run::new(
        Filter {
            pids: vec![7],
            ..Filter::default()
        },
        true,
    );
    other
        .pipeline
        .record(Ok(Event::BindFailed(b)), &mut other.sink)
        .unwrap();
    assert!(other.sink.0.is_empty());
}

#[test]
fn undecodable_records_are_counted_not_passed_on() {
    let mut run = Run::new(Filter::default(), true);
    run.pipeline
        .record(Err(DecodeError::Kind(99)), &mut run.sink)
        .unwrap();
    run.pipeline.undecodable(&DecodeError::Short(3, 96));
    assert_eq!(run.pipeline.undecodable, 2);
    assert!(run.sink.0.is_empty());
}

/// What the kernel side counts itself arrives as totals per key: what grew
/// since the last reading is counted, a key evicted and counted again
/// from 0 counts all it has, and retransmits pass the filters as facts.
#[test]
fn kernel_counts_are_counted_by_what_grew() {
    let filter = Filter {
        raddrs: vec!["10.0.0.1/32".parse().unwrap()],
        ..Filter::default()
    };
    let mut run = Run::new(filter, true);
    let retransmits = |host: u8| Counted::Retransmit {
        netns: 1,
        local: "10.0.0.2".parse().unwrap(),
        remote: format!("10.0.0.{host}:80").parse().unwrap(),
    };
    let reset = Counted::NoSocketReset { port: 9 };
    let synack = Counted::SynAckRetransmit { netns: 1, port: 80 };
    let read = |run: &mut Run, reading: &[(Counted, u64)]| {
        let reading = reading.iter().map(|&(k, n)| (Ok(k), n)).collect();
        run.pipeline.counted(reading, 5, &mut run.sink).unwrap();
    };
    read(
        &mut run,
        &[(reset, 3), (retransmits(1), 4), (retransmits(9), 2)],
    );
    read(&mut run, &[(reset, 5), (retransmits(1), 4), (synack, 1)]);
    // Evicted, then counted again from 0; an undecodable key is counted.
    // A key listed twice in one reading counts once.
    read(
        &mut run,
        &[(reset, 2), (retransmits(1), 7), (retransmits(1), 7)],
    );
    run.pipeline
        .counted(vec![(Err(DecodeError::Kind(99)), 1)], 5, &mut run.sink)
        .unwrap();
    assert_eq!(run.pipeline.no_socket_resets.rows(), [(9, 7)]);
    assert_eq!(run.pipeline.synack_retransmits.rows(), [((1, 80), 1)]);
    assert_eq!(run.sink.0, ["X 10.0.0.1:80 4", "X 10.0.0.1:80 3"]);
    assert_eq!(run.pipeline.undecodable, 1);
}

#[test]
fn namespaces_are_learnt_from_filtered_out_transitions_too() {
    use TcpState::*;
    let filter = Filter {
        netns: vec![9],
        ..Filter::default()
    };
    let mut run = Run::new(filter, true);
    run.t(5, "10.0.0.2:0", SRV, Close, SynSent, Some(task(77, "curl")));
    assert!(run.sink.0.is_empty());
    assert_eq!(
        run.pipeline.namespaces().with_process().collect::<Vec<_>>(),
        [(1, 77)]
    );
}

/// Sockets found at start-up that the kernel filter hides are not
/// learnt: their records would never come, and they would show for ever.
#[test]
fn the_kernel_filter_applies_to_sockets_found_at_start_up() {
    let mut pipeline = Pipeline::new(Settings {
        filter: Filter::default(),
        kernel: filter::kernel_filter(false, false, &[80], &[]).unwrap(),
        max_sockets: 100,
        hz: Some(250),
        records: false,
    });
    let existing = |local: &str| Existing {
        netns: 1,
        local: local.parse().unwrap(),
        remote: "10.0.0.2:5000".parse().unwrap(),
        state: TcpState::CloseWait,
        owner: None,
    };
    pipeline.seed([existing("10.0.0.1:80"), existing("10.0.0.1:81")]);
    let tw = |local: &str| TwSeed {
        netns: 1,
        local: local.parse().unwrap(),
        remote: "10.0.0.2:5001".parse().unwrap(),
        substate: TcpState::TimeWait,
        remaining_ms: 30_000,
    };
    assert!(pipeline.seed_timewait(&tw("10.0.0.1:80")));
    assert!(!pipeline.seed_timewait(&tw("10.0.0.1:81")));
    let open: Vec<u16> = pipeline.open().map(|o| o.local.port()).collect();
    assert_eq!(open, [80]);
    let ports: Vec<u16> = pipeline
        .timewait_sockets()
        .map(|t| t.local.port())
        .collect();
    assert_eq!(ports, [80]);
}
