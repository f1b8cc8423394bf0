//! The rules of the timewait tracker, as small pure functions: whether a
//! full socket's CLOSE is the start of a given timewait socket, whether a
//! cancel followed by an arming is a re-arm, and why a timewait socket whose
//! timer was cancelled with nothing after it ended.

use crate::model::{RecordKind, Task, TwEnd};

/// A full socket's CLOSE joins the timewait socket armed for its 4-tuple at
/// most this long before (the kernel arms it just before that CLOSE).
pub(super) const JOIN_WINDOW_NS: u64 = 1_000_000_000;

/// A cancel in a task's system call is a reuse when the same thread started a
/// connect() at most this long before.
pub(super) const REUSE_WINDOW_NS: u64 = 10_000_000;

/// A re-arm is a cancel and an arming of the same timer in one kernel call
/// (microseconds apart) while serving a packet, in a softirq. An arming at
/// the same address after a cancel in a system call, or later than this, is
/// a new timewait socket in the memory of one that ended.
pub(super) const REARM_WINDOW_NS: u64 = 1_000_000;

/// Whether a full socket closing at `close_ns` is the connection of a
/// timewait socket armed at `armed_ns` (0: armed before tracing) for its
/// 4-tuple.
pub(super) const fn joins(armed_ns: u64, close_ns: u64) -> bool {
    armed_ns != 0 && close_ns >= armed_ns && close_ns - armed_ns <= JOIN_WINDOW_NS
}

/// A cancel of a timewait socket's timer, as the tracker keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cancel {
    pub ts_ns: u64,
    /// In whose system call, if any.
    pub task: Option<Task>,
    /// Its network namespace was being dismantled.
    pub net_dying: bool,
}

/// Whether arming the timer of the timewait socket at the address followed
/// (`same_socket`) at `armed_ns` re-arms it, given the cancel before it, if
/// any; otherwise the one followed has ended and this is a new one.
pub(super) fn is_rearm(same_socket: bool, cancel: Option<&Cancel>, armed_ns: u64) -> bool {
    same_socket
        && cancel.is_none_or(|c| {
            c.task.is_none() && !c.net_dying && armed_ns.saturating_sub(c.ts_ns) <= REARM_WINDOW_NS
        })
}

/// The records whose loss could make a cancel look alone: its expiry, a
/// re-arm, the SYN that reopened it, the connect() that reused it.
pub(super) const CANCEL_FOLLOWERS: [RecordKind; 4] = [
    RecordKind::TimewaitExpired,
    RecordKind::TimewaitArmed,
    RecordKind::TimewaitRequest,
    RecordKind::Transition,
];

/// Whether a timewait socket armed (or moved to its substate) at
/// `since_ns`, whose timer of `timer_ns` was re-armed `rearms` times, is
/// past any time its timer could have run out at `now_ns`: each arming
/// lasts at most its length plus the timer wheel's slack (an eighth, at
/// these lengths), and this allows twice that, plus 10 s. Unknown timer
/// length: never.
pub(super) fn overdue(since_ns: u64, timer_ns: Option<u64>, rearms: u32, now_ns: u64) -> bool {
    let Some(timer_ns) = timer_ns else {
        return false;
    };
    let longest = timer_ns
        .saturating_mul(2)
        .saturating_mul(u64::from(rearms) + 1)
        .saturating_add(10_000_000_000);
    now_ns > since_ns.saturating_add(longest)
}

/// Why a timewait socket whose timer was cancelled, with nothing after,
/// ended. `connects`: the last connect()s, (thread, when). `maybe_lost`:
/// records that would have followed the cancel (`CANCEL_FOLLOWERS`, from
/// `REUSE_WINDOW_NS` before it) may have been lost, so "killed", which is
/// concluded from their absence, is unknown.
pub(super) fn early_end(connects: &[(u32, u64)], cancel: &Cancel, maybe_lost: bool) -> TwEnd {
    let connected_just_before = |tid: u32| {
        connects
            .iter()
            .any(|&(t, at)| t == tid && at <= cancel.ts_ns && cancel.ts_ns - at <= REUSE_WINDOW_NS)
    };
    if cancel.net_dying {
        TwEnd::Purged
    } else if cancel.task.is_some_and(|t| connected_just_before(t.tid)) {
        TwEnd::Reused
    } else if maybe_lost {
        TwEnd::Unknown
    } else {
        TwEnd::Killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::task;

    const MS: u64 = 1_000_000;

    fn cancel(ts_ns: u64, task: Option<Task>, net_dying: bool) -> Cancel {
        Cancel {
            ts_ns,
            task,
            net_dying,
        }
    }

    #[test]
    fn join_window() {
        assert!(joins(1_000, 1_000));
        assert!(joins(1_000, 1_000 + JOIN_WINDOW_NS));
        assert!(!joins(1_000, 2_000 + JOIN_WINDOW_NS), "too late");
        assert!(!joins(1_000, 999), "armed after the close");
        assert!(!joins(0, 5), "armed before tracing");
    }

    #[test]
    fn rearms() {
        assert!(is_rearm(true, None, 5));
        assert!(is_rearm(
            true,
            Some(&cancel(10 * MS, None, false)),
            10 * MS + 100
        ));
        assert!(!is_rearm(false, None, 5), "another socket");
        assert!(
            !is_rearm(true, Some(&cancel(10 * MS, None, false)), 12 * MS),
            "too late for one kernel call"
        );
        assert!(
            !is_rearm(
                true,
                Some(&cancel(10 * MS, Some(task(1, "c")), false)),
                10 * MS
            ),
            "a system call never re-arms"
        );
        assert!(!is_rearm(true, Some(&cancel(10 * MS, None, true)), 10 * MS));
    }

    #[test]
    fn early_ends() {
        let c = task(9, "client");
        let connects = [(9, 100 * MS), (4, 0)];
        assert_eq!(
            early_end(&connects, &cancel(101 * MS, Some(c), false), false),
            TwEnd::Reused
        );
        assert_eq!(
            early_end(&connects, &cancel(111 * MS, Some(c), false), false),
            TwEnd::Killed,
            "connect too long before"
        );
        assert_eq!(
            early_end(&connects, &cancel(99 * MS, Some(c), false), false),
            TwEnd::Killed,
            "connect after the cancel"
        );
        assert_eq!(
            early_end(&connects, &cancel(101 * MS, None, false), false),
            TwEnd::Killed
        );
        assert_eq!(
            early_end(&connects, &cancel(101 * MS, Some(c), true), false),
            TwEnd::Purged
        );
    }

    #[test]
    fn overdue_only_well_past_every_arming() {
        let minute = Some(60 * 1000 * MS);
        assert!(
            !overdue(1, minute, 0, 120 * 1000 * MS),
            "within twice the timer"
        );
        assert!(overdue(1, minute, 0, 131 * 1000 * MS));
        assert!(!overdue(1, minute, 1, 200 * 1000 * MS), "re-armed once");
        assert!(overdue(1, minute, 1, 251 * 1000 * MS));
        assert!(!overdue(1, None, 0, u64::MAX), "timer length unknown");
    }

    #[test]
    fn a_cancel_alone_after_lost_records_ended_for_an_unknown_reason() {
        let c = task(9, "client");
        let connects = [(9, 100 * MS)];
        assert_eq!(
            early_end(&connects, &cancel(500 * MS, None, false), true),
            TwEnd::Unknown
        );
        // What the cancel itself says stays known.
        assert_eq!(
            early_end(&connects, &cancel(101 * MS, Some(c), false), true),
            TwEnd::Reused
        );
        assert_eq!(
            early_end(&connects, &cancel(500 * MS, None, true), true),
            TwEnd::Purged
        );
    }
}
