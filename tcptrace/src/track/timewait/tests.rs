//! The timewait tracker driven by scripted sequences.

use super::*;
use std::net::SocketAddr;

use crate::model::{Role, StateTimes, TwAction::*, Verdict, fixtures::task};

const TW: u64 = 0xffff_8880_0000_7000;
const LOCAL: &str = "10.0.0.2:40000";
const REMOTE: &str = "10.0.0.1:80";
const SEC: u64 = 1_000_000_000;
const NONE_LOST: Losses = Losses::NONE;

fn ev(ts_ns: u64, substate: TcpState, action: TwAction) -> TwEvent {
    TwEvent {
        ts_ns,
        sock: TW,
        netns: 1,
        local: LOCAL.parse().unwrap(),
        remote: REMOTE.parse().unwrap(),
        substate,
        action,
    }
}

fn armed(ts_ns: u64, substate: TcpState) -> TwEvent {
    ev(ts_ns, substate, Armed { jiffies: 15_000 })
}

fn cancelled(ts_ns: u64, task: Option<Task>, net_dying: bool) -> TwEvent {
    ev(ts_ns, TcpState::TimeWait, Cancelled { task, net_dying })
}

/// The full socket's FIN_WAIT2 -> CLOSE, as the kernel reports it.
fn full_close(ts_ns: u64) -> Transition {
    Transition {
        ts_ns,
        sock: 0xffff_8880_0000_1000,
        netns: 1,
        local: LOCAL.parse().unwrap(),
        remote: REMOTE.parse().unwrap(),
        old: TcpState::FinWait2,
        new: TcpState::Close,
        in_old: TimeInState::Measured(1_000),
        task: None,
        owner: Some(task(7, "curl")),
        timewait: None,
    }
}

fn record() -> Closed {
    let mut in_state = StateTimes::default();
    in_state.add(TcpState::Established, 5 * SEC);
    Closed {
        // Its full socket's CLOSE, 10 µs after the timer was armed.
        ts_ns: SEC + 10_000,
        sock: 0xffff_8880_0000_1000,
        netns: 1,
        local: LOCAL.parse().unwrap(),
        remote: REMOTE.parse().unwrap(),
        role: Role::Active,
        owner: Some(task(7, "curl")),
        verdict: Verdict::Local,
        lifetime_ns: Some(5 * SEC),
        in_state,
        missed: false,
        reset_reason: None,
        syn_retransmits: 0,
        timewait: None,
    }
}

/// A timewait socket armed at 1 s and joined to its connection.
fn joined() -> Timewaits {
    let mut tws = Timewaits::new(100, Some(250), true);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::TimeWait), &NONE_LOST, &mut out);
    let mut t = full_close(SEC + 10_000);
    let mut closed = Some(record());
    assert!(tws.join(&mut t, &mut closed).is_some());
    assert!(closed.is_none(), "the record is kept until TIME_WAIT ends");
    assert_eq!((t.old, t.new), (TcpState::FinWait2, TcpState::TimeWait));
    assert_eq!(
        t.timewait,
        Some(TwNote::Begins {
            timer_ns: Some(60 * SEC)
        })
    );
    assert!(out.is_empty());
    tws
}

fn ended(out: &[TwOutput]) -> (&Transition, Option<&Closed>) {
    let TwOutput::Transition(t) = &out[0] else {
        panic!("{out:?}")
    };
    let closed = out.get(1).map(|o| match o {
        TwOutput::Closed(c) => c,
        other => panic!("{other:?}"),
    });
    (t, closed)
}

fn reason(t: &Transition) -> TwEnd {
    match t.timewait {
        Some(TwNote::Ends { reason, .. }) => reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn natural_expiry_completes_the_connection() {
    let mut tws = joined();
    assert_eq!(tws.counts().collect::<Vec<_>>()[0].1.time_wait, 1);
    let mut out = Vec::new();
    tws.on_event(&cancelled(62 * SEC, None, false), &NONE_LOST, &mut out);
    tws.on_event(
        &ev(62 * SEC + 500, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let (t, closed) = ended(&out);
    assert_eq!(
        (t.old, t.new, reason(t)),
        (TcpState::TimeWait, TcpState::Close, TwEnd::Expired)
    );
    assert_eq!(t.in_old, TimeInState::Measured(61 * SEC + 500));
    assert_eq!(t.owner.unwrap().pid, 7);
    let c = closed.unwrap();
    assert_eq!(
        c.timewait,
        Some(ClosedTw {
            reason: Some(TwEnd::Expired),
            rearms: 0
        })
    );
    // TIME_WAIT from the arming, as on its end's line; the lifetime
    // from the connection's start to that end.
    assert_eq!(c.lifetime_ns, Some(5 * SEC + 61 * SEC - 9_500));
    assert_eq!(
        c.in_state.iter().collect::<Vec<_>>(),
        vec![
            (TcpState::Established, 5 * SEC),
            (TcpState::TimeWait, 61 * SEC + 500)
        ]
    );
    assert_eq!(tws.counts().count(), 0);
    // Nothing left to settle.
    out.clear();
    tws.settle_all(&NONE_LOST, &mut out);
    tws.flush_at_exit(70 * SEC, &NONE_LOST, &mut out);
    assert!(out.is_empty());
}

#[test]
fn records_still_in_time_wait_at_exit() {
    let mut tws = joined();
    let mut out = Vec::new();
    tws.flush_at_exit(3 * SEC, &NONE_LOST, &mut out);
    let [TwOutput::Closed(c)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        c.timewait,
        Some(ClosedTw {
            reason: None,
            rearms: 0
        })
    );
    assert_eq!(c.ts_ns, 3 * SEC);
    assert!(
        c.in_state
            .iter()
            .any(|(s, ns)| s == TcpState::TimeWait && ns == 2 * SEC)
    );
}

#[test]
fn rearms_are_counted() {
    let mut tws = joined();
    let mut out = Vec::new();
    for i in 2..5 {
        tws.on_event(&cancelled(i * SEC, None, false), &NONE_LOST, &mut out);
        tws.on_event(
            &armed(i * SEC + 1, TcpState::TimeWait),
            &NONE_LOST,
            &mut out,
        );
        tws.end_batch(0, &NONE_LOST, &mut out);
        tws.end_batch(0, &NONE_LOST, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    tws.on_event(&cancelled(70 * SEC, None, false), &NONE_LOST, &mut out);
    tws.on_event(
        &ev(70 * SEC, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let (t, c) = ended(&out);
    assert!(
        matches!(t.timewait, Some(TwNote::Ends { rearms: 3, .. })),
        "{t:?}"
    );
    assert_eq!(c.unwrap().timewait.unwrap().rearms, 3);
}

#[test]
fn early_ends_wait_one_drain_then_get_their_reason() {
    // Killed: a cancel in softirq that nothing follows.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    tws.end_batch(0, &NONE_LOST, &mut out);
    assert!(out.is_empty(), "settled one drain later, not at once");
    tws.end_batch(0, &NONE_LOST, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Killed);
    assert_eq!(ended(&out).0.in_old, TimeInState::Measured(2 * SEC));

    // Reused: the cancel runs in the connect() of the same thread.
    let (mut tws, mut out) = cancelled_by_connect();
    tws.end_batch(0, &NONE_LOST, &mut out);
    tws.end_batch(0, &NONE_LOST, &mut out);
    let (t, _) = ended(&out);
    assert_eq!(reason(t), TwEnd::Reused);
    assert!(matches!(t.timewait, Some(TwNote::Ends { by: Some(b), .. }) if b.pid == 9));

    // A process-context cancel with no connect before it (ss -K): killed.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(
        &cancelled(3 * SEC, Some(task(5, "ss")), false),
        &NONE_LOST,
        &mut out,
    );
    tws.settle_all(&NONE_LOST, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Killed);

    // Purged: its namespace was dying.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, true), &NONE_LOST, &mut out);
    tws.settle_all(&NONE_LOST, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Purged);

    // Reopened: a request socket for the same 4-tuple right after.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    let mut req = ev(3 * SEC + 10, TcpState::SynRecv, Request);
    req.sock = 0xffff_8880_0000_9000;
    tws.on_event(&req, &NONE_LOST, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Reopened);
    assert_eq!(ended(&out).0.ts_ns, 3 * SEC, "ends at the cancel");
    // A request for another 4-tuple is not it.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    req.remote = "10.0.0.1:81".parse().unwrap();
    tws.on_event(&req, &NONE_LOST, &mut out);
    tws.settle_all(&NONE_LOST, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Killed);
}

/// A cancel alone when an arming may have been lost: perhaps a re-arm,
/// so still there; its expiry, when it comes, ends it for real, its
/// time unknown.
#[test]
fn a_cancel_alone_when_an_arming_may_be_lost_keeps_the_socket() {
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    let mut losses = Losses::default();
    let lost = crate::model::PerKind::of(&[(RecordKind::TimewaitArmed, 1)]);
    losses.update(lost, 3 * SEC + 1_000);
    tws.end_batch(3 * SEC + 2_000, &losses, &mut out);
    tws.end_batch(3 * SEC + 3_000, &losses, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(tws.counts().count(), 1);
    tws.on_event(
        &ev(61 * SEC, TcpState::TimeWait, Expired),
        &losses,
        &mut out,
    );
    let (t, closed) = ended(&out);
    assert_eq!(reason(t), TwEnd::Expired);
    // Its re-arms and substates since the cancel are not known: nor is
    // its time.
    assert_eq!(t.in_old, TimeInState::Unknown);
    assert!(closed.unwrap().missed);
}

/// A new timewait socket for the 4-tuple of one whose cancel was lost:
/// the old one ended unseen, its record out, marked.
#[test]
fn a_new_socket_for_the_4_tuple_of_one_whose_end_was_lost() {
    let mut tws = joined();
    let mut out = Vec::new();
    let mut next = armed(10 * SEC, TcpState::TimeWait);
    next.sock = 0xffff_8880_0000_8000;
    tws.on_event(&next, &NONE_LOST, &mut out);
    let (t, closed) = ended(&out);
    assert_eq!(
        (reason(t), t.in_old),
        (TwEnd::Unknown, TimeInState::Unknown)
    );
    assert!(closed.unwrap().missed);
    assert_eq!(
        tws.counts().collect::<Vec<_>>()[0].1.time_wait,
        1,
        "the new one"
    );
}

/// Cancels lost at 2 s, counted at `at`.
fn ends_lost(at: u64) -> Losses {
    let mut losses = Losses::default();
    let lost = crate::model::PerKind::of(&[(RecordKind::TimewaitCancelled, 3)]);
    losses.update(lost, at);
    losses.update(lost, u64::MAX / 2);
    losses
}

/// One whose end records may have been lost is ended once it is long
/// past its timer, for an unknown reason, with no TIME_WAIT time; not
/// before, and not without losses.
#[test]
fn overdue_after_losses_ends_unknown() {
    let mut tws = joined();
    let mut out = Vec::new();
    tws.end_batch(200 * SEC, &NONE_LOST, &mut out);
    assert!(out.is_empty(), "nothing lost: it is there");
    let lost = ends_lost(2 * SEC);
    tws.end_batch(100 * SEC, &lost, &mut out);
    assert!(out.is_empty(), "not overdue yet");
    tws.end_batch(200 * SEC, &lost, &mut out);
    let (t, closed) = ended(&out);
    assert_eq!(reason(t), TwEnd::Unknown);
    assert_eq!(t.in_old, TimeInState::Unknown);
    let closed = closed.unwrap();
    assert!(closed.missed);
    assert_eq!(closed.lifetime_ns, None);
    assert!(closed.in_state.iter().all(|(s, _)| s != TcpState::TimeWait));
    assert_eq!(tws.counts().count(), 0, "no longer counted");
}

#[test]
fn at_exit_one_whose_end_may_have_been_lost_is_not_measured() {
    let mut tws = joined();
    let mut out = Vec::new();
    tws.flush_at_exit(30 * SEC, &ends_lost(2 * SEC), &mut out);
    let TwOutput::Closed(c) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(c.missed);
    assert!(c.in_state.iter().all(|(s, _)| s != TcpState::TimeWait));
    // Losses before it was armed say nothing of its end.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.flush_at_exit(30 * SEC, &ends_lost(SEC / 2), &mut out);
    let TwOutput::Closed(c) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(!c.missed);
    assert!(c.in_state.iter().any(|(s, _)| s == TcpState::TimeWait));
}

/// A cancel that nothing followed, when its expiry (or a re-arm, or
/// the SYN that reopened it) may have been lost: ended, reason unknown.
#[test]
fn a_cancel_alone_after_losses_ends_for_an_unknown_reason() {
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    let mut losses = Losses::default();
    losses.update(
        crate::model::PerKind::of(&[(RecordKind::TimewaitExpired, 1)]),
        3 * SEC + 1_000,
    );
    tws.end_batch(0, &losses, &mut out);
    tws.end_batch(0, &losses, &mut out);
    let (t, closed) = ended(&out);
    assert_eq!(reason(t), TwEnd::Unknown);
    assert_eq!(t.in_old, TimeInState::Measured(2 * SEC), "its end is known");
    assert_eq!(
        closed.unwrap().timewait.unwrap().reason,
        Some(TwEnd::Unknown)
    );
    // Losses of other kinds, or before it, do not hide its reason.
    let mut tws = joined();
    let mut out = Vec::new();
    tws.on_event(&cancelled(3 * SEC, None, false), &NONE_LOST, &mut out);
    let mut losses = Losses::default();
    losses.update(
        crate::model::PerKind::of(&[(RecordKind::BindFailed, 1)]),
        4 * SEC,
    );
    losses.update(
        crate::model::PerKind::of(&[
            (RecordKind::BindFailed, 1),
            (RecordKind::TimewaitExpired, 1),
        ]),
        SEC,
    );
    tws.settle_all(&losses, &mut out);
    assert_eq!(reason(ended(&out).0), TwEnd::Killed);
}

/// A joined timewait socket cancelled at 3 s by a thread that had just
/// started a connect().
fn cancelled_by_connect() -> (Timewaits, Vec<TwOutput>) {
    let client = task(9, "client");
    let mut tws = joined();
    let mut out = Vec::new();
    let mut connect = full_close(3 * SEC - 1_000);
    (connect.old, connect.new, connect.task) = (TcpState::Close, TcpState::SynSent, Some(client));
    tws.note_connect(&connect);
    tws.on_event(
        &cancelled(3 * SEC, Some(client), false),
        &NONE_LOST,
        &mut out,
    );
    (tws, out)
}

#[test]
fn a_new_timewait_socket_at_the_address_of_an_ended_one() {
    // Reuse frees the timewait socket; the next connection's timewait
    // socket may get the same memory before the cancel was settled.
    let (mut tws, mut out) = cancelled_by_connect();
    // Within a millisecond: a connect() never re-arms, so not a re-arm.
    tws.on_event(
        &armed(3 * SEC + 500_000, TcpState::TimeWait),
        &NONE_LOST,
        &mut out,
    );
    let (t, c) = ended(&out);
    assert_eq!(reason(t), TwEnd::Reused);
    assert!(matches!(t.timewait, Some(TwNote::Ends { rearms: 0, .. })));
    assert_eq!(c.unwrap().timewait.unwrap().reason, Some(TwEnd::Reused));
    // The new one joins its own connection.
    let mut t = full_close(3 * SEC + 510_000);
    assert!(tws.join(&mut t, &mut Some(record())).is_some());
    assert_eq!(tws.counts().next().unwrap().1.time_wait, 1);
    out.clear();
    tws.end_batch(0, &NONE_LOST, &mut out);
    tws.end_batch(0, &NONE_LOST, &mut out);
    assert!(out.is_empty(), "the old cancel is settled already: {out:?}");
}

#[test]
fn a_new_timewait_socket_for_the_4_tuple_of_a_reused_one() {
    let (mut tws, mut out) = cancelled_by_connect();
    // The second connection closes within the same drain.
    let mut next = armed(3 * SEC + 900_000, TcpState::TimeWait);
    next.sock = TW + 64;
    tws.on_event(&next, &NONE_LOST, &mut out);
    let (t, _) = ended(&out);
    assert_eq!((t.sock, reason(t)), (TW, TwEnd::Reused));
    assert_eq!(tws.counts().next().unwrap().1.time_wait, 1);
    let mut t = full_close(3 * SEC + 1_000_000);
    assert!(tws.join(&mut t, &mut Some(record())).is_some());
}

#[test]
fn orphans_in_fin_wait2() {
    let mut tws = Timewaits::new(100, Some(100), true);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::FinWait2), &NONE_LOST, &mut out);
    let mut t = full_close(SEC);
    t.old = TcpState::FinWait1;
    tws.join(&mut t, &mut None);
    assert_eq!((t.old, t.new), (TcpState::FinWait1, TcpState::FinWait2));
    assert_eq!(
        tws.counts().next().unwrap().1,
        TwCount {
            time_wait: 0,
            fin_wait2: 1
        }
    );
    // The peer's FIN, seen as a re-arm with a new substate.
    tws.on_event(&cancelled(5 * SEC, None, false), &NONE_LOST, &mut out);
    tws.on_event(&armed(5 * SEC, TcpState::TimeWait), &NONE_LOST, &mut out);
    let TwOutput::Transition(t) = &out[0] else {
        panic!()
    };
    assert_eq!((t.old, t.new), (TcpState::FinWait2, TcpState::TimeWait));
    assert_eq!(t.in_old, TimeInState::Measured(4 * SEC));
    assert_eq!(
        t.timewait,
        Some(TwNote::Changes {
            timer_ns: Some(150 * SEC)
        })
    );
    assert_eq!(
        tws.counts().next().unwrap().1,
        TwCount {
            time_wait: 1,
            fin_wait2: 0
        }
    );
    tws.on_event(
        &ev(66 * SEC, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let TwOutput::Transition(t) = &out[1] else {
        panic!()
    };
    assert!(matches!(
        t.timewait,
        Some(TwNote::Ends {
            rearms: 0,
            fin_unseen: false,
            ..
        })
    ));
    assert_eq!(t.in_old, TimeInState::Measured(61 * SEC));

    // The FIN within one timer-wheel bucket: no re-arm seen, the end
    // record tells.
    let mut tws = Timewaits::new(100, None, true);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::FinWait2), &NONE_LOST, &mut out);
    tws.on_event(
        &ev(62 * SEC, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let (t, _) = ended(&out);
    assert_eq!(t.old, TcpState::TimeWait);
    assert!(matches!(
        t.timewait,
        Some(TwNote::Ends {
            fin_unseen: true,
            ..
        })
    ));
    assert_eq!(tws.counts().count(), 0);
}

#[test]
fn sockets_from_the_snapshot() {
    let mut tws = Timewaits::new(100, None, true);
    let tuple = |port: u16| {
        (
            1,
            SocketAddr::new("10.0.0.2".parse().unwrap(), port),
            REMOTE.parse::<SocketAddr>().unwrap(),
        )
    };
    for port in [40000, 40001] {
        let (netns, local, remote) = tuple(port);
        tws.seed(&TwSeed {
            netns,
            local,
            remote,
            substate: TcpState::TimeWait,
            remaining_ms: 30_000,
        });
    }
    assert_eq!(
        tws.counts().next().unwrap(),
        (
            1,
            TwCount {
                time_wait: 2,
                fin_wait2: 0
            }
        )
    );
    let mut out = Vec::new();
    // 40000 expires: found by its 4-tuple, duration unknown.
    tws.on_event(&cancelled(2 * SEC, None, false), &NONE_LOST, &mut out);
    tws.on_event(
        &ev(2 * SEC, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let (t, closed) = ended(&out);
    assert_eq!(
        (reason(t), t.in_old, closed),
        (TwEnd::Expired, TimeInState::Unknown, None)
    );
    assert_eq!(tws.counts().next().unwrap().1.time_wait, 1);
    // A new timewait socket for 40001 means the old one is gone.
    let mut e = armed(3 * SEC, TcpState::TimeWait);
    e.local = tuple(40001).1;
    e.sock = TW + 1;
    tws.on_event(&e, &NONE_LOST, &mut out);
    assert_eq!(tws.counts().next().unwrap().1.time_wait, 1);
    // Records of unknown sockets are ignored.
    let mut stray = cancelled(4 * SEC, None, false);
    stray.sock = TW + 2;
    stray.local = "10.9.9.9:1".parse().unwrap();
    out.clear();
    tws.on_event(&stray, &NONE_LOST, &mut out);
    tws.settle_all(&NONE_LOST, &mut out);
    assert!(out.is_empty());
}

#[test]
fn join_needs_a_fresh_unjoined_timewait_socket() {
    let mut tws = Timewaits::new(100, None, true);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::TimeWait), &NONE_LOST, &mut out);
    // Another namespace, or too late: not its connection.
    let mut t = full_close(SEC);
    t.netns = 2;
    assert!(tws.join(&mut t, &mut None).is_none());
    assert_eq!(t.new, TcpState::Close);
    let mut t = full_close(3 * SEC);
    assert!(tws.join(&mut t, &mut None).is_none());
    // A LAST_ACK -> CLOSE never has a timewait socket.
    let mut t = full_close(SEC);
    t.old = TcpState::LastAck;
    assert!(tws.join(&mut t, &mut None).is_none());
    let mut t = full_close(SEC);
    tws.join(&mut t, &mut Some(record()));
    assert_eq!(t.new, TcpState::TimeWait);
    let mut again = full_close(SEC);
    assert!(tws.join(&mut again, &mut Some(record())).is_none());
}

#[test]
fn records_are_not_held_when_not_printed() {
    let mut tws = Timewaits::new(100, None, false);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::TimeWait), &NONE_LOST, &mut out);
    let mut t = full_close(SEC + 10);
    let mut closed = Some(record());
    assert!(tws.join(&mut t, &mut closed).is_none());
    assert!(closed.is_some(), "left to the caller");
    assert_eq!(t.new, TcpState::TimeWait, "still relabelled");
    tws.on_event(
        &ev(62 * SEC, TcpState::TimeWait, Expired),
        &NONE_LOST,
        &mut out,
    );
    let (t, c) = ended(&out);
    assert_eq!((reason(t), c), (TwEnd::Expired, None));
    assert_eq!(t.owner.unwrap().pid, 7);
}

#[test]
fn bounded() {
    let mut tws = Timewaits::new(1, None, true);
    let mut out = Vec::new();
    tws.on_event(&armed(SEC, TcpState::TimeWait), &NONE_LOST, &mut out);
    let mut other = armed(SEC, TcpState::TimeWait);
    other.sock = TW + 1;
    other.local = "10.0.0.2:40001".parse().unwrap();
    tws.on_event(&other, &NONE_LOST, &mut out);
    assert_eq!(tws.untracked, 1);
    assert_eq!(tws.counts().next().unwrap().1.time_wait, 1);
}
