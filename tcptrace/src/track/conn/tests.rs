//! The conn tracker driven by scripted sequences.

use super::*;
use crate::model::fixtures::{Script, task};

use TcpState::*;

const SRV: &str = "10.0.0.1:80";
const CLI: &str = "10.0.0.2:40000";
const ANY: &str = "0.0.0.0:0";

struct Pair {
    tracker: Tracker,
    s: Script,
    client: Task,
    server: Task,
    closed: Vec<Closed>,
}

impl Pair {
    /// Listener, then an established connection, seen from both ends
    /// (both on this host, as over loopback or two namespaces).
    fn established() -> Self {
        let mut p = Pair {
            tracker: Tracker::new(1000),
            s: Script { ts: 0 },
            client: task(100, "client"),
            server: task(200, "server"),
            closed: Vec::new(),
        };
        let (c, sv) = (Some(p.client), Some(p.server));
        p.go(1, SRV, ANY, Close, Listen, sv);
        p.go(2, "10.0.0.2:0", SRV, Close, SynSent, c);
        p.go(3, SRV, CLI, Listen, SynRecv, None);
        p.go(2, CLI, SRV, SynSent, Established, None);
        p.go(3, SRV, CLI, SynRecv, Established, None);
        p
    }

    /// Feeds one state change to the tracker; returns the transition it concluded.
    fn go(
        &mut self,
        sock: u64,
        l: &str,
        r: &str,
        old: TcpState,
        new: TcpState,
        task: Option<Task>,
    ) -> Transition {
        let change = self.s.t(sock, l, r, old, new, task);
        let (t, closed) = self.tracker.on_change(&change);
        self.closed.extend(self.tracker.take_ended_unseen());
        self.closed.extend(closed);
        t
    }

    fn reset(&mut self, sock: u64, direction: ResetDirection, task: Option<Task>) {
        self.reset_for(sock, direction, task, None);
    }

    fn reset_for(
        &mut self,
        sock: u64,
        direction: ResetDirection,
        task: Option<Task>,
        reason: Option<ResetReason>,
    ) {
        self.s.ts += 1_000;
        let r = Reset {
            ts_ns: self.s.ts,
            sock,
            netns: 1,
            direction,
            task,
            ports: (0, 0),
            reason,
        };
        self.closed.extend(self.tracker.on_reset(&r));
    }

    fn verdicts(&mut self) -> Vec<(u64, Verdict, Option<u32>)> {
        self.closed.extend(self.tracker.end_batch(&Losses::NONE));
        self.closed.extend(self.tracker.end_batch(&Losses::NONE));
        let mut v: Vec<_> = self
            .closed
            .iter()
            .map(|c| (c.sock, c.verdict, c.owner.map(|o| o.pid)))
            .collect();
        v.sort();
        v
    }
}

#[test]
fn client_closes_first() {
    let mut p = Pair::established();
    let (c, sv) = (Some(p.client), Some(p.server));
    p.go(2, CLI, SRV, Established, FinWait1, c);
    let t = p.go(3, SRV, CLI, Established, CloseWait, None);
    assert_eq!(
        t.owner.unwrap().pid,
        200,
        "softirq transition shows the listener's owner"
    );
    p.go(3, SRV, CLI, CloseWait, LastAck, sv);
    p.go(2, CLI, SRV, FinWait1, FinWait2, None);
    p.go(2, CLI, SRV, FinWait2, Close, None);
    p.go(3, SRV, CLI, LastAck, Close, None);
    assert_eq!(
        p.verdicts(),
        [
            (2, Verdict::Local, Some(100)),
            (3, Verdict::Peer, Some(200))
        ]
    );
    let client = p.closed.iter().find(|c| c.sock == 2).unwrap();
    assert_eq!(client.role, Role::Active);
    assert_eq!(client.local, CLI.parse().unwrap());
    assert_eq!(
        client.in_state.iter().collect::<Vec<_>>(),
        // Measured from the transitions' timestamps (1 µs apart, the
        // two ends interleaved).
        [
            (SynSent, 2_000),
            (Established, 2_000),
            (FinWait1, 3_000),
            (FinWait2, 1_000)
        ]
    );
    assert!(client.lifetime_ns.unwrap() > 4_000);
    let server = p.closed.iter().find(|c| c.sock == 3).unwrap();
    assert_eq!(server.role, Role::Passive);
}

#[test]
fn server_closes_first() {
    let mut p = Pair::established();
    let (c, sv) = (Some(p.client), Some(p.server));
    p.go(3, SRV, CLI, Established, FinWait1, sv);
    p.go(2, CLI, SRV, Established, CloseWait, None);
    p.go(2, CLI, SRV, CloseWait, LastAck, c);
    p.go(3, SRV, CLI, FinWait1, FinWait2, None);
    p.go(3, SRV, CLI, FinWait2, Close, None);
    p.go(2, CLI, SRV, LastAck, Close, None);
    assert_eq!(
        p.verdicts(),
        [
            (2, Verdict::Peer, Some(100)),
            (3, Verdict::Local, Some(200))
        ]
    );
}

#[test]
fn simultaneous_close() {
    let mut p = Pair::established();
    let (c, sv) = (Some(p.client), Some(p.server));
    p.go(2, CLI, SRV, Established, FinWait1, c);
    p.go(3, SRV, CLI, Established, FinWait1, sv);
    p.go(2, CLI, SRV, FinWait1, Closing, None);
    p.go(3, SRV, CLI, FinWait1, Closing, None);
    p.go(2, CLI, SRV, Closing, Close, None);
    p.go(3, SRV, CLI, Closing, Close, None);
    assert_eq!(
        p.verdicts(),
        [
            (2, Verdict::Simultaneous, Some(100)),
            (3, Verdict::Simultaneous, Some(200))
        ]
    );
}

#[test]
fn linger_zero_abort_waits_for_the_rst_that_follows_close() {
    let mut p = Pair::established();
    let c = Some(p.client);
    // SO_LINGER 0: CLOSE first (process context), then the RST.
    p.go(2, CLI, SRV, Established, Close, c);
    assert!(p.closed.is_empty(), "verdict must wait for the RST record");
    p.reset(2, ResetDirection::Sent, c);
    p.reset(3, ResetDirection::Received, None);
    p.go(3, SRV, CLI, Established, Close, None);
    assert_eq!(
        p.verdicts(),
        [
            (2, Verdict::AbortSent, Some(100)),
            (3, Verdict::AbortReceived, Some(200))
        ]
    );
}

/// The kernel's reason for the RST reaches the connection's record: that
/// of the first RST sent, whether it came before CLOSE (a reset of an open
/// socket) or after it (SO_LINGER 0); resets received carry none.
#[test]
fn the_reason_of_the_first_rst_sent_is_the_connections() {
    let (linger, state) = (ResetReason(12), ResetReason(14));
    let mut p = Pair::established();
    let c = Some(p.client);
    p.go(2, CLI, SRV, Established, Close, c);
    p.reset_for(2, ResetDirection::Sent, c, Some(linger));
    p.reset_for(2, ResetDirection::Sent, c, Some(state));
    p.reset_for(3, ResetDirection::Received, None, None);
    p.go(3, SRV, CLI, Established, Close, None);
    p.verdicts();
    let reasons: Vec<(u64, Option<ResetReason>)> =
        p.closed.iter().map(|c| (c.sock, c.reset_reason)).collect();
    assert!(reasons.contains(&(2, Some(linger))), "{reasons:?}");
    assert!(reasons.contains(&(3, None)), "{reasons:?}");
    // Before CLOSE: kept on the open connection.
    let mut p = Pair::established();
    p.reset_for(3, ResetDirection::Sent, Some(p.server), Some(state));
    p.go(3, SRV, CLI, Established, Close, None);
    p.verdicts();
    assert_eq!(
        p.closed.iter().find(|c| c.sock == 3).unwrap().reset_reason,
        Some(state)
    );
}

#[test]
fn abort_without_rst_record_is_still_an_abort_in_process_context() {
    let mut p = Pair::established();
    let c = Some(p.client);
    p.go(2, CLI, SRV, Established, Close, c);
    assert!(
        p.tracker.end_batch(&Losses::NONE).is_empty(),
        "one drain is not enough to settle"
    );
    assert_eq!(
        p.tracker.end_batch(&Losses::NONE)[0].verdict,
        Verdict::AbortSent
    );
}

#[test]
fn softirq_close_without_fin_or_rst_is_a_timeout() {
    let mut p = Pair::established();
    p.go(2, CLI, SRV, Established, Close, None);
    assert_eq!(
        p.tracker.settle_all(&Losses::NONE)[0].verdict,
        Verdict::Timeout
    );
}

#[test]
fn refused_and_connect_failed() {
    let mut p = Pair::established();
    let c = Some(p.client);
    p.go(5, "10.0.0.2:0", "10.0.0.1:81", Close, SynSent, c);
    p.reset(5, ResetDirection::Received, None);
    p.go(5, "10.0.0.2:40001", "10.0.0.1:81", SynSent, Close, None);
    p.go(6, "10.0.0.2:0", "10.0.0.9:81", Close, SynSent, c);
    p.go(6, "10.0.0.2:40002", "10.0.0.9:81", SynSent, Close, None);
    // No free local port: CLOSE in the connect() itself, port still 0.
    p.go(7, "10.0.0.2:0", "10.0.0.9:81", Close, SynSent, c);
    p.go(7, "10.0.0.2:0", "10.0.0.9:81", SynSent, Close, c);
    assert_eq!(
        p.verdicts(),
        [
            (5, Verdict::Refused, Some(100)),
            (6, Verdict::ConnectFailed, Some(100)),
            (7, Verdict::NoPort, Some(100))
        ]
    );
}

#[test]
fn socket_first_seen_mid_life() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    // A connection that predates tcptrace, seen first leaving CLOSE_WAIT.
    let t = s.t(9, SRV, CLI, CloseWait, LastAck, Some(task(300, "app")));
    let (t, closed) = tracker.on_change(&t);
    assert!(closed.is_none());
    assert_eq!(t.in_old, TimeInState::Unknown, "CLOSE_WAIT began unseen");
    let t = s.t(9, SRV, CLI, LastAck, Close, None);
    let (_, closed) = tracker.on_change(&t);
    let closed = closed.unwrap();
    assert_eq!(
        (closed.verdict, closed.role, closed.lifetime_ns),
        (Verdict::Peer, Role::Unknown, None)
    );
    assert_eq!(
        closed.in_state.iter().collect::<Vec<_>>(),
        [(LastAck, 1_000)]
    );
    assert_eq!(closed.owner.unwrap().pid, 300);
}

#[test]
fn unknown_owner_stays_unknown() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    // Accepted on a port whose listener predates tcptrace.
    let t = s.t(7, SRV, CLI, Listen, SynRecv, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner, None);
}

#[test]
fn reuseport_listeners_of_different_processes_leave_accepted_owner_unknown() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.on_change(&s.t(1, SRV, ANY, Close, Listen, Some(task(1, "a"))));
    tracker.on_change(&s.t(2, SRV, ANY, Close, Listen, Some(task(2, "b"))));
    let t = s.t(3, SRV, CLI, Listen, SynRecv, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner, None);
    // Once the owner makes a system call on it, it is known.
    let t = s.t(3, SRV, CLI, SynRecv, Established, None);
    tracker.on_change(&t);
    let t = s.t(3, SRV, CLI, Established, FinWait1, Some(task(2, "b")));
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner.unwrap().pid, 2);
}

#[test]
fn same_tuple_in_two_namespaces_is_two_listeners() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.on_change(&s.t(1, SRV, ANY, Close, Listen, Some(task(1, "a"))));
    let mut other = s.t(2, SRV, ANY, Close, Listen, Some(task(2, "b")));
    other.netns = 2;
    tracker.on_change(&other);
    let mut t = s.t(3, SRV, CLI, Listen, SynRecv, None);
    t.netns = 2;
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner.unwrap().pid, 2);
}

#[test]
fn missing_events_and_socket_reuse() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.on_change(&s.t(1, CLI, SRV, Close, SynSent, Some(task(1, "a"))));
    // The CLOSE of the first life was lost; the address is reused.
    let t = s.t(1, CLI, SRV, Close, SynSent, Some(task(2, "b")));
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner.unwrap().pid, 2);
    // Out of order: FIN_WAIT2 reported without FIN_WAIT1 (lost record).
    let t = s.t(1, CLI, SRV, SynSent, Established, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.in_old, TimeInState::Measured(1_000));
    let t = s.t(1, CLI, SRV, FinWait2, Close, None);
    let (t, closed) = tracker.on_change(&t);
    assert_eq!(t.in_old, TimeInState::Unknown, "FIN_WAIT2 began unseen");
    // Leaving FIN_WAIT2 means this side sent the first FIN.
    let closed = closed.unwrap();
    assert_eq!(closed.verdict, Verdict::Local);
    assert_eq!(
        closed.in_state.iter().collect::<Vec<_>>(),
        [(SynSent, 1_000)]
    );
    assert!(tracker.settle_all(&Losses::NONE).is_empty());
    assert_eq!(tracker.open().count(), 0);
}

#[test]
fn start_up_snapshot_gives_owners() {
    let mut tracker = Tracker::new(10);
    let nginx = task(80, "nginx");
    let app = task(90, "app");
    tracker.seed([
        Existing {
            netns: 1,
            local: SRV.parse().unwrap(),
            remote: ANY.parse().unwrap(),
            state: Listen,
            owner: Some(nginx),
        },
        Existing {
            netns: 1,
            local: SRV.parse().unwrap(),
            remote: CLI.parse().unwrap(),
            state: Established,
            owner: Some(app),
        },
    ]);
    let mut s = Script { ts: 0 };
    // A new connection accepted by the listener that predates tcptrace.
    let t = s.t(5, SRV, "10.0.0.9:1234", Listen, SynRecv, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner.unwrap().pid, 80);
    // The connection that predates tcptrace, first seen now.
    let t = s.t(6, SRV, CLI, Established, CloseWait, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner.unwrap().pid, 90);
    // Another namespace's connection with the same tuple is not it.
    let mut t = s.t(7, SRV, CLI, Established, CloseWait, None);
    t.netns = 2;
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner, None);
}

#[test]
fn listener_predating_tcptrace_closes_without_a_verdict() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.seed([Existing {
        netns: 1,
        local: SRV.parse().unwrap(),
        remote: ANY.parse().unwrap(),
        state: Listen,
        owner: Some(task(80, "nginx")),
    }]);
    let t = s.t(1, SRV, ANY, Listen, Close, Some(task(80, "nginx")));
    assert_eq!(tracker.on_change(&t).1, None);
    assert!(
        tracker.settle_all(&Losses::NONE).is_empty(),
        "a listener is not a connection"
    );
    let t = s.t(5, SRV, CLI, Listen, SynRecv, None);
    let (t, _) = tracker.on_change(&t);
    assert_eq!(t.owner, None, "the closed listener no longer owns the port");
}

/// A CLOSE_WAIT that predates tcptrace is open, of unknown age, until
/// its first transition; then it is followed, and counted once.
#[test]
fn sockets_found_at_start_up_are_open_until_they_move() {
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.seed([Existing {
        netns: 1,
        local: SRV.parse().unwrap(),
        remote: CLI.parse().unwrap(),
        state: CloseWait,
        owner: None,
    }]);
    let open: Vec<_> = tracker.open().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].state, open[0].since_ns, open[0].role),
        (CloseWait, None, Role::Unknown)
    );
    tracker.on_change(&s.t(9, SRV, CLI, CloseWait, LastAck, None));
    let open: Vec<_> = tracker.open().collect();
    assert_eq!(open.len(), 1, "followed now, not twice");
    assert_eq!(open[0].state, LastAck);
}

/// Losses of RST records, counted at `at_ns`, and nothing more by a
/// read long after.
fn resets_lost(at_ns: u64) -> Losses {
    let mut losses = Losses::default();
    let lost = crate::model::PerKind::of(&[(RecordKind::ResetReceived, 1)]);
    losses.update(lost, at_ns);
    losses.update(lost, u64::MAX / 2);
    losses
}

#[test]
fn no_rst_seen_is_no_evidence_when_rst_records_may_have_been_lost() {
    let mut p = Pair::established();
    // A softirq close of an established connection: a timeout, or a RST
    // received whose record was lost.
    p.go(3, SRV, CLI, Established, Close, None);
    // A connect that failed, or was refused by a RST whose record was lost.
    p.go(
        5,
        "10.0.0.2:0",
        "10.0.0.1:81",
        Close,
        SynSent,
        Some(p.client),
    );
    p.go(5, "10.0.0.2:40001", "10.0.0.1:81", SynSent, Close, None);
    let after = p.s.ts;
    let lost = resets_lost(after + 1);
    assert!(p.tracker.end_batch(&lost).is_empty());
    let settled = p.tracker.end_batch(&lost);
    let verdicts: Vec<_> = settled.iter().map(|c| (c.sock, c.verdict)).collect();
    assert_eq!(verdicts, [(3, Verdict::Unknown), (5, Verdict::Unknown)]);
    // Losses before their last records did not hide anything of theirs.
    let mut p = Pair::established();
    p.go(3, SRV, CLI, Established, Close, None);
    let before = resets_lost(1);
    assert_eq!(p.tracker.settle_all(&before)[0].verdict, Verdict::Timeout);
}

#[test]
fn a_gap_in_the_states_is_marked_and_never_measured() {
    let mut p = Pair::established();
    let c = Some(p.client);
    // ESTABLISHED -> FIN_WAIT1 lost; a RST received; FIN_WAIT1 -> CLOSE.
    p.reset(2, ResetDirection::Received, None);
    let t = p.go(2, CLI, SRV, FinWait1, Close, c);
    assert_eq!(t.in_old, TimeInState::Unknown, "FIN_WAIT1's start was lost");
    let closed = &p.closed[0];
    assert!(closed.missed);
    assert_eq!(
        closed.verdict,
        Verdict::Local,
        "it was in FIN_WAIT1: it sent the first FIN"
    );
    assert_eq!(
        closed.in_state.iter().collect::<Vec<_>>(),
        [(SynSent, 2_000)],
        "ESTABLISHED's end was not seen either"
    );
    // The other end saw everything.
    p.go(3, SRV, CLI, Established, Close, None);
    assert!(!p.tracker.settle_all(&Losses::NONE)[0].missed);
}

#[test]
fn a_socket_whose_close_was_lost_ends_when_its_address_is_reused() {
    let mut p = Pair::established();
    let c = Some(p.client);
    p.go(2, CLI, SRV, Established, FinWait1, c);
    // FIN_WAIT1 -> FIN_WAIT2 -> CLOSE lost; the address is a new socket.
    p.go(2, "10.0.0.2:0", SRV, Close, SynSent, c);
    let old = &p.closed[0];
    assert_eq!((old.sock, old.verdict), (2, Verdict::Local));
    assert!(old.missed);
    assert_eq!(old.lifetime_ns, None, "its end is not known");
    // One with no evidence yet is unknown.
    p.go(3, SRV, CLI, Listen, SynRecv, None);
    assert_eq!(p.closed[1].verdict, Verdict::Unknown);
    assert_eq!(
        p.tracker.open().filter(|o| o.state == Established).count(),
        0
    );
}

#[test]
fn an_unseen_end_is_handed_out_even_when_the_next_socket_closes_at_once() {
    let mut p = Pair::established();
    p.go(3, SRV, CLI, Established, FinWait1, Some(p.server));
    // All of the next connection's records lost but its CLOSE.
    p.go(3, SRV, "10.0.0.3:50000", LastAck, Close, None);
    let socks: Vec<_> = p
        .closed
        .iter()
        .map(|c| (c.remote.port(), c.verdict))
        .collect();
    assert_eq!(socks, [(40000, Verdict::Local), (50000, Verdict::Peer)]);
}

#[test]
fn a_new_connection_at_the_address_of_one_followed_is_not_that_one() {
    let mut p = Pair::established();
    let sv = Some(p.server);
    // The server closes first: evidence "local"...
    p.go(3, SRV, CLI, Established, FinWait1, sv);
    // ...its last records are lost, and the socket's memory goes to a
    // connection from another client whose opening records are lost too.
    let other = "10.0.0.3:50000";
    let t = p.go(3, SRV, other, Established, CloseWait, None);
    assert_eq!(t.in_old, TimeInState::Unknown);
    let first = &p.closed[0];
    assert_eq!(
        (first.remote, first.verdict),
        (CLI.parse().unwrap(), Verdict::Local)
    );
    assert!(first.missed);
    p.go(3, SRV, other, CloseWait, LastAck, sv);
    p.go(3, SRV, other, LastAck, Close, None);
    let second = &p.closed[1];
    assert_eq!(second.remote, other.parse().unwrap());
    assert_eq!(
        second.verdict,
        Verdict::Peer,
        "its own evidence, not the other's"
    );
    assert_eq!((second.role, second.missed), (Role::Unknown, true));
    // A port or an address learnt on the way is the same connection.
    let mut tracker = Tracker::new(10);
    let mut s = Script { ts: 0 };
    tracker.on_change(&s.t(9, "0.0.0.0:0", SRV, Close, SynSent, None));
    tracker.on_change(&s.t(9, CLI, SRV, SynSent, Established, None));
    let open: Vec<_> = tracker.open().collect();
    assert_eq!((open.len(), open[0].role), (1, Role::Active));
}

#[test]
fn connections_in_doubt_that_the_kernel_no_longer_lists_are_ended() {
    let mut p = Pair::established();
    p.go(3, SRV, CLI, Established, CloseWait, None);
    let after = p.s.ts;
    // Nothing lost: nothing in doubt.
    assert!(p.tracker.in_doubt(&Losses::NONE, after).is_empty());
    let mut losses = Losses::default();
    let lost = crate::model::PerKind::of(&[(RecordKind::Transition, 5)]);
    losses.update(lost, after + 1_000);
    assert_eq!(p.tracker.in_doubt(&losses, after + 2_000), [1]);
    assert!(
        p.tracker.in_doubt(&losses, 0).is_empty(),
        "none whose last record came after the dump"
    );
    // The kernel lists the server's end (in CLOSE_WAIT), not the client's.
    let listed: Listed = [(SRV.parse().unwrap(), CLI.parse().unwrap())]
        .into_iter()
        .collect();
    let gone = p
        .tracker
        .end_gone(1, [&listed, &Listed::default()], after + 2_000, &losses);
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].sock, gone[0].verdict), (2, Verdict::Unknown));
    assert!(gone[0].missed);
    let open: Vec<_> = p.tracker.open().map(|o| o.state).collect();
    assert_eq!(open, [CloseWait], "the one listed stays");
    let none = Listed::default();
    assert!(
        p.tracker
            .end_gone(2, [&none, &none], after + 2_000, &losses)
            .is_empty()
    );
    // The one listed is confirmed: no longer in doubt for that loss,
    // once the counters are read after the listing.
    losses.update(lost, after + 3_000);
    assert!(p.tracker.in_doubt(&losses, after + 2_000).is_empty());
    // A later loss puts it in doubt again; a connect()ing socket (no
    // local port in its record yet) is never taken for gone.
    p.go(
        5,
        "10.0.0.2:0",
        "10.0.0.9:81",
        Close,
        SynSent,
        Some(p.client),
    );
    let now = after + 5_000;
    let mut later = losses.clone();
    later.update(
        crate::model::PerKind::of(&[(RecordKind::Transition, 9)]),
        now,
    );
    assert_eq!(p.tracker.in_doubt(&later, now), [1]);
    let gone = p.tracker.end_gone(1, [&none, &none], now, &later);
    assert_eq!(gone.iter().map(|c| c.sock).collect::<Vec<_>>(), [3]);
    assert_eq!(
        p.tracker.open().map(|o| o.state).collect::<Vec<_>>(),
        [SynSent]
    );
}

#[test]
fn bounded() {
    let mut tracker = Tracker::new(1);
    let mut s = Script { ts: 0 };
    tracker.on_change(&s.t(1, CLI, SRV, Close, SynSent, None));
    tracker.on_change(&s.t(2, CLI, SRV, Close, SynSent, None));
    assert_eq!(tracker.untracked, 1);
    assert_eq!(tracker.open().count(), 1);
}

#[test]
fn open_connections_report_their_state_and_age() {
    let mut p = Pair::established();
    p.go(3, SRV, CLI, Established, CloseWait, None);
    let open: Vec<_> = p.tracker.open().filter(|o| o.state == CloseWait).collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].owner.unwrap().pid, 200);
    assert!(open[0].since_ns.is_some());
}

/// Two CPUs completed the same handshake: the kernel made a second
/// child for the 4-tuple and closed it at once. Not a connection: no
/// record, no verdict (the reference tracer gave it `timeout`). A child
/// that sits in SYN_RECV for seconds, then closes, is one.
#[test]
fn a_child_the_kernel_dropped_at_birth_is_no_connection() {
    let mut p = Pair::established();
    p.go(4, SRV, CLI, Listen, SynRecv, None);
    p.go(4, SRV, CLI, SynRecv, Close, None);
    assert!(p.tracker.settle_all(&Losses::NONE).is_empty());
    assert!(p.closed.is_empty(), "{:?}", p.closed);
    assert_eq!(p.tracker.dropped_at_birth, 1);
    let other = "10.0.0.2:40001";
    p.go(5, SRV, other, Listen, SynRecv, None);
    p.s.ts += 3_000_000_000;
    p.go(5, SRV, other, SynRecv, Close, None);
    let settled = p.tracker.settle_all(&Losses::NONE);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].verdict, Verdict::Timeout);
    assert_eq!(p.tracker.dropped_at_birth, 1);
    // A child closed at once, then reset (its listener went away while
    // it waited to be queued: tcp_disconnect sets CLOSE, then sends the
    // RST): a connection, aborted.
    p.go(6, SRV, "10.0.0.2:40002", Listen, SynRecv, None);
    p.go(6, SRV, "10.0.0.2:40002", SynRecv, Close, None);
    p.reset(6, ResetDirection::Sent, None);
    assert_eq!(p.closed.pop().map(|c| c.verdict), Some(Verdict::AbortSent));
    // And one whose RST may have been lost is unknown, not dropped.
    p.go(7, SRV, "10.0.0.2:40003", Listen, SynRecv, None);
    p.go(7, SRV, "10.0.0.2:40003", SynRecv, Close, None);
    let settled = p.tracker.settle_all(&resets_lost(p.s.ts + 1));
    assert_eq!(
        settled.iter().map(|c| c.verdict).collect::<Vec<_>>(),
        [Verdict::Unknown]
    );
    assert_eq!(p.tracker.dropped_at_birth, 1);
}

/// The server's socket closed on a RST received whose record was lost;
/// a moment later its memory is a new socket, aborted by its server,
/// whose other records were lost too. That RST is not the first one's:
/// the first is unknown, not abort-sent (the overload test caught it).
#[test]
fn a_reset_of_the_next_socket_at_an_address_is_not_this_ones() {
    let mut p = Pair::established();
    p.go(3, SRV, CLI, Established, Close, None);
    let other_client = 40_001;
    let r = Reset {
        ts_ns: p.s.ts + 1_000,
        sock: 3,
        netns: 1,
        direction: ResetDirection::Sent,
        task: Some(p.server),
        ports: (80, other_client),
        reason: None,
    };
    assert!(p.tracker.on_reset(&r).is_none(), "taken for this one's");
    let lost = Losses::NONE;
    let settled = p.tracker.settle_all(&lost);
    assert_eq!(settled.len(), 1);
    assert_ne!(settled[0].verdict, Verdict::AbortSent);
    // Its own RST, with its ports, is.
    p.go(2, CLI, SRV, Established, Close, Some(p.client));
    let own = Reset {
        sock: 2,
        ports: (40_000, 80),
        task: Some(p.client),
        ..r
    };
    assert_eq!(
        p.tracker.on_reset(&own).unwrap().verdict,
        Verdict::AbortSent
    );
}
