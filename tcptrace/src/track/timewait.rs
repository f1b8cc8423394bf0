//! TIME_WAIT in the agent: follows each timewait socket through the records
//! of its timer, joins it to the connection it came from, and tells why it
//! ended. I/O-free; driven by decoded events, tested with synthetic sequences.
//!
//! The kernel side reports three things per timewait timer (see the eBPF
//! `timewait.rs`): armed, cancelled, expired, each with the socket's address
//! and 4-tuple. Their sequences mean:
//! - armed, 4-tuple not followed yet: a new timewait socket;
//! - cancelled then armed (same socket, same softirq, microseconds apart): a
//!   re-arm (or an orphan's FIN_WAIT2 -> TIME_WAIT);
//! - cancelled then expired: the timer ran out;
//! - cancelled alone: ended early, for a reason `tw_end::early_end` tells
//!   from what came with the cancel, or a request socket for the same
//!   4-tuple right after it (reopened).
//!
//! A cancel alone is only known to be alone once the next records are in, so
//! it is settled at the end of the drain after the one it arrived in, or when
//! a new timewait socket takes its 4-tuple.

use crate::{
    model::{
        Closed, ClosedTw, Losses, RecordKind, Role, Task, TcpState, TimeInState, Transition,
        TwAction, TwCount, TwEnd, TwEvent, TwNote, TwSeed, TwSocket,
    },
    track::{
        tw_counts::LiveCounts,
        tw_end::{self, Cancel},
        tw_table::{Sharded, TwKey},
    },
};

/// A cancel not settled yet.
struct PendingCancel {
    cancel: Cancel,
    substate: TcpState,
    batches: u8,
}

struct Tw {
    /// The kernel's address of the timewait socket; 0 for one found at
    /// start-up and not seen by the kernel side yet.
    addr: u64,
    substate: TcpState,
    /// When it entered `substate`; 0 if that predates tcptrace. (Plain
    /// integers, not `Option`s: a host can have hundreds of thousands.)
    since_ns: u64,
    /// Length of the latest arming of its timer.
    jiffies: u32,
    rearms: u32,
    /// Joined to its full socket's CLOSE (or predating tcptrace: nothing to join).
    joined: bool,
    /// In `Timewaits::pending`.
    queued: bool,
    /// Kept after a cancel that an arming lost may have followed: its
    /// re-arms and substate since are not known, so neither is its time.
    unsure: bool,
    owner: Option<Task>,
    /// Its connection's role, once joined to it.
    role: Option<Role>,
    /// The connection's record, completed when this timewait socket ends.
    closed: Option<Box<Closed>>,
    cancel: Option<Box<PendingCancel>>,
}

impl Tw {
    /// The connection's record with this timewait socket's time up to
    /// `at_ns` and how it ended (`None`: it had not yet). `known`: `at_ns`
    /// is known to be its end (or the time it was still there); if not
    /// (records of its end may have been lost), its time in its state and
    /// its lifetime are unknown, and the record says it missed records.
    fn complete(&mut self, at_ns: u64, reason: Option<TwEnd>, known: bool) -> Option<Closed> {
        let mut c = *self.closed.take()?;
        if !known {
            c.missed = true;
            c.lifetime_ns = None;
        } else if let TimeInState::Measured(ns) = measured(self.since_ns, at_ns) {
            // From its timer's arming, as on its end's line: a few µs
            // before the full socket's CLOSE, which ends the state before.
            c.in_state.add(self.substate, ns);
        }
        c.lifetime_ns = c.lifetime_ns.map(|l| l + at_ns.saturating_sub(c.ts_ns));
        c.ts_ns = at_ns;
        c.timewait = Some(ClosedTw {
            reason,
            rearms: self.rearms,
        });
        Some(c)
    }
}

/// How a timewait socket ended, as far as known.
struct End {
    ts_ns: u64,
    reason: TwEnd,
    /// In whose system call.
    by: Option<Task>,
    /// Its time in its last substate.
    in_old: TimeInState,
    fin_unseen: bool,
    /// `ts_ns` is its end (not merely when it was found gone).
    known: bool,
}

/// What the agent prints and counts after a timewait event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwOutput {
    /// A transition of a timewait socket (`timewait` is set).
    Transition(Transition),
    /// A connection whose timewait socket ended: its record is complete.
    Closed(Closed),
}

/// At most this many connection records are held until their timewait
/// socket ends (~250 bytes each); past it, records are printed when the full
/// socket closes, without their TIME_WAIT.
pub const MAX_HELD: usize = 65_536;

pub struct Timewaits {
    live: Sharded<Tw>,
    /// Timewait sockets found at start-up and not seen by the kernel side
    /// yet: their substate only (48 bytes each, not 128).
    seeded: Sharded<TcpState>,
    /// Whether connection records are held until TIME_WAIT ends (not with
    /// `--summary`, which prints none), and how many are.
    hold: bool,
    held: usize,
    counts: LiveCounts,
    /// Timewait sockets with a cancel still to settle.
    pending: Vec<TwKey>,
    /// The last connect()s: (thread, when), a ring.
    connects: [(u32, u64); 16],
    next_connect: usize,
    hz: Option<u32>,
    max: usize,
    /// Timewait sockets not followed because `max` was reached.
    pub untracked: u64,
    /// When those whose end records may have been lost were last looked for.
    swept_ns: u64,
}

/// The records whose loss can leave a timewait socket followed that is
/// gone: its end (cancel, expiry), or an arming, whose loss keeps one whose
/// cancel nothing followed (a re-arm, perhaps).
const ENDS: [RecordKind; 3] = [
    RecordKind::TimewaitCancelled,
    RecordKind::TimewaitExpired,
    RecordKind::TimewaitArmed,
];

/// How often, at most, timewait sockets whose end records may have been
/// lost are looked for (a pass over all of them), once losses happened.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

impl Timewaits {
    /// `hz`: the kernel's timer frequency, to show timer lengths in seconds;
    /// `hold`: keep connection records until their TIME_WAIT ends.
    pub fn new(max: usize, hz: Option<u32>, hold: bool) -> Self {
        Self {
            live: Sharded::default(),
            seeded: Sharded::default(),
            hold,
            held: 0,
            counts: LiveCounts::default(),
            pending: Vec::new(),
            connects: [(0, 0); 16],
            next_connect: 0,
            hz,
            max,
            untracked: 0,
            swept_ns: 0,
        }
    }

    /// Learns a timewait socket that existed at start-up.
    pub fn seed(&mut self, seed: &TwSeed) {
        let key = TwKey::new(seed.netns, seed.local, seed.remote);
        if self.live.contains_key(&key) || self.seeded.contains_key(&key) {
            return;
        }
        if self.live.len() + self.seeded.len() >= self.max {
            self.untracked += 1;
            return;
        }
        self.counts.enter(seed.netns, seed.substate);
        self.seeded.insert(key, seed.substate);
    }

    /// Moves a timewait socket found at start-up, now seen by the kernel
    /// side, to the followed ones.
    fn adopt(&mut self, key: TwKey) {
        let Some(substate) = self.seeded.remove(&key) else {
            return;
        };
        self.live.insert(
            key,
            Tw {
                addr: 0,
                substate,
                since_ns: 0,
                jiffies: 0,
                rearms: 0,
                joined: true,
                queued: false,
                unsure: false,
                owner: None,
                role: None,
                closed: None,
                cancel: None,
            },
        );
    }

    /// Live timewait sockets per network namespace (those with none left out).
    pub fn counts(&self) -> impl Iterator<Item = (u32, TwCount)> + '_ {
        self.counts.iter()
    }

    /// Every timewait socket followed now (not those found at start-up and
    /// not seen since: they have no owner or role to show).
    pub fn sockets(&self) -> impl Iterator<Item = TwSocket<'_>> {
        self.live.iter().map(|(key, tw)| TwSocket {
            netns: key.netns(),
            local: key.local(),
            remote: key.remote(),
            substate: tw.substate,
            owner: tw.owner.as_ref(),
            role: tw.role,
        })
    }

    /// Timewait sockets found at start-up and not seen since.
    pub fn seeded(&self) -> impl Iterator<Item = TwSocket<'_>> {
        self.seeded.iter().map(|(key, substate)| TwSocket {
            netns: key.netns(),
            local: key.local(),
            remote: key.remote(),
            substate: *substate,
            owner: None,
            role: None,
        })
    }

    /// Remembers a connect() (a CLOSE -> SYN_SENT in process context), which
    /// may take over a timewait socket's 4-tuple an instant later.
    pub fn note_connect(&mut self, t: &Transition) {
        if let Some(task) = t.task {
            self.connects[self.next_connect] = (task.tid, t.ts_ns);
            self.next_connect = (self.next_connect + 1) % self.connects.len();
        }
    }

    /// A full socket reached CLOSE. If the kernel has just handed its
    /// connection to a timewait socket, relabels `t` as the connection sees
    /// it (`FIN_WAIT2 -> TIME_WAIT`...) and keeps `closed` (the connection's
    /// record) until the timewait socket ends; returns the record kept.
    pub fn join(&mut self, t: &mut Transition, closed: &mut Option<Closed>) -> Option<&Closed> {
        use TcpState::*;
        if t.new != Close || !matches!(t.old, FinWait1 | FinWait2 | Closing) {
            return None;
        }
        let hz = self.hz;
        let tw = self.live.get_mut(&TwKey::new(t.netns, t.local, t.remote))?;
        // Not joined yet, so still in the substate it was armed in: `since_ns`
        // is when it was armed.
        if tw.joined || !tw_end::joins(tw.since_ns, t.ts_ns) {
            return None;
        }
        tw.joined = true;
        tw.owner = t.owner;
        tw.role = closed.as_ref().map(|c| c.role);
        if self.hold && self.held < MAX_HELD && closed.is_some() {
            tw.closed = closed.take().map(Box::new);
            self.held += 1;
        }
        t.new = tw.substate;
        t.timewait = Some(TwNote::Begins {
            timer_ns: jiffies_to_ns(hz, tw.jiffies.into()),
        });
        tw.closed.as_deref()
    }

    /// Follows one timewait record.
    /// `losses`: what the kernel side lost, as counted after the last drain.
    pub fn on_event(&mut self, e: &TwEvent, losses: &Losses, out: &mut Vec<TwOutput>) {
        let key = TwKey::new(e.netns, e.local, e.remote);
        match e.action {
            TwAction::Armed { jiffies } => self.armed(e, key, jiffies, losses, out),
            TwAction::Cancelled { task, net_dying } => {
                self.adopt(key);
                let Some(tw) = self.live.get_mut(&key) else {
                    return;
                };
                // One found at start-up is now known by its address.
                tw.addr = e.sock;
                tw.cancel = Some(Box::new(PendingCancel {
                    cancel: Cancel {
                        ts_ns: e.ts_ns,
                        task,
                        net_dying,
                    },
                    substate: e.substate,
                    batches: 0,
                }));
                if !tw.queued {
                    tw.queued = true;
                    self.pending.push(key);
                }
            }
            TwAction::Expired => {
                self.adopt(key);
                if self.live.contains_key(&key) {
                    self.end(key, TwEnd::Expired, e.ts_ns, e.substate, None, out);
                }
            }
            TwAction::Request => {
                let cancelled = self
                    .live
                    .get(&key)
                    .and_then(|tw| tw.cancel.as_ref())
                    .map(|c| (c.cancel.ts_ns, c.substate));
                if let Some((at, substate)) = cancelled {
                    self.end(key, TwEnd::Reopened, at, substate, None, out);
                }
            }
        }
    }

    fn armed(
        &mut self,
        e: &TwEvent,
        key: TwKey,
        jiffies: u64,
        losses: &Losses,
        out: &mut Vec<TwOutput>,
    ) {
        let timer_ns = jiffies_to_ns(self.hz, jiffies);
        // One found at start-up for this 4-tuple has ended unseen.
        if let Some(substate) = self.seeded.remove(&key) {
            self.counts.leave(key.netns(), substate);
        }
        if let Some(tw) = self.live.get(&key)
            && !tw_end::is_rearm(
                tw.addr == e.sock,
                tw.cancel.as_ref().map(|c| &c.cancel),
                e.ts_ns,
            )
        {
            // The kernel never has two timewait sockets for one 4-tuple:
            // the one followed has ended. Its cancel may still wait to be
            // settled (a reuse, where the 4-tuple's next connection was
            // quick to close): settle it now. One found at start-up, or
            // one whose end was missed, is just gone.
            match tw.cancel.as_deref() {
                Some(c) => {
                    let (cancel, substate) = (c.cancel, c.substate);
                    let reason = early_end(&self.connects, &cancel, losses);
                    self.end(key, reason, cancel.ts_ns, substate, cancel.task, out);
                }
                // One found at start-up, or one whose end was missed (its
                // records lost): gone, when and why unknown.
                None => self.end_unseen(key, e.ts_ns, out),
            }
        }
        if let Some(tw) = self.live.get_mut(&key) {
            tw.cancel = None;
            tw.jiffies = jiffies as u32;
            if tw.substate == e.substate {
                tw.rearms += 1;
                return;
            }
            // An orphan's timewait socket got the peer's FIN.
            let in_old = measured(tw.since_ns, e.ts_ns);
            if let (Some(c), TimeInState::Measured(ns)) = (tw.closed.as_mut(), in_old) {
                c.in_state.add(tw.substate, ns);
            }
            self.counts.leave(key.netns(), tw.substate);
            self.counts.enter(key.netns(), e.substate);
            out.push(TwOutput::Transition(Transition {
                ts_ns: e.ts_ns,
                sock: e.sock,
                netns: key.netns(),
                local: key.local(),
                remote: key.remote(),
                old: tw.substate,
                new: e.substate,
                in_old,
                task: None,
                owner: tw.owner,
                timewait: Some(TwNote::Changes { timer_ns }),
            }));
            tw.substate = e.substate;
            tw.since_ns = e.ts_ns;
            return;
        }
        if self.live.len() >= self.max {
            self.untracked += 1;
            return;
        }
        self.counts.enter(key.netns(), e.substate);
        self.live.insert(
            key,
            Tw {
                addr: e.sock,
                substate: e.substate,
                since_ns: e.ts_ns,
                jiffies: jiffies as u32,
                rearms: 0,
                joined: false,
                queued: false,
                unsure: false,
                owner: None,
                role: None,
                closed: None,
                cancel: None,
            },
        );
    }

    /// Ends the timewait socket of `key`, in `substate` as its last record
    /// says.
    fn end(
        &mut self,
        key: TwKey,
        reason: TwEnd,
        ts_ns: u64,
        substate: TcpState,
        by: Option<Task>,
        out: &mut Vec<TwOutput>,
    ) {
        let Some(mut tw) = self.live.remove(&key) else {
            return;
        };
        // An orphan that got the peer's FIN while its timer was re-armed
        // within the same timer-wheel bucket: the kernel skips the timer
        // tracepoints then, so the change is only seen now. Its time is
        // counted from the last moment seen, at most a bucket (~2 s) early.
        let fin_unseen = tw.substate != substate;
        self.counts.leave(key.netns(), tw.substate);
        tw.substate = substate;
        let end = End {
            ts_ns,
            reason,
            by,
            in_old: match tw.unsure {
                true => TimeInState::Unknown,
                false => measured(tw.since_ns, ts_ns),
            },
            fin_unseen,
            known: !tw.unsure,
        };
        self.push_end(key, tw, end, out);
    }

    /// A timewait socket's end, removed from `live` and uncounted: the
    /// transition that ends it, and its connection's record if held.
    fn push_end(&mut self, key: TwKey, mut tw: Tw, end: End, out: &mut Vec<TwOutput>) {
        out.push(TwOutput::Transition(Transition {
            ts_ns: end.ts_ns,
            sock: tw.addr,
            netns: key.netns(),
            local: key.local(),
            remote: key.remote(),
            old: tw.substate,
            new: TcpState::Close,
            in_old: end.in_old,
            task: end.by,
            owner: tw.owner,
            timewait: Some(TwNote::Ends {
                reason: end.reason,
                rearms: tw.rearms,
                by: end.by,
                fin_unseen: end.fin_unseen,
            }),
        }));
        if let Some(c) = tw.complete(end.ts_ns, Some(end.reason), end.known) {
            self.held -= 1;
            out.push(TwOutput::Closed(c));
        }
    }

    /// Call after each drain of the ring buffer (at `now_ns`): settles the
    /// cancels that nothing followed for a full drain (early ends), and,
    /// once records were lost, ends those long past their timer whose end
    /// records may have been among them.
    pub fn end_batch(&mut self, now_ns: u64, losses: &Losses, out: &mut Vec<TwOutput>) {
        self.settle(losses, out, 2);
        if losses.counts().total() > 0 && now_ns >= self.swept_ns + SWEEP_EVERY_NS {
            self.swept_ns = now_ns;
            self.end_overdue(now_ns, losses, out);
        }
        // Those found at start-up all end within a minute or two: give
        // their table's memory back as it empties.
        self.seeded.shrink_if_sparse();
    }

    /// Settles every cancel still open (at exit).
    pub fn settle_all(&mut self, losses: &Losses, out: &mut Vec<TwOutput>) {
        self.settle(losses, out, 0);
    }

    /// Ends the timewait sockets past any time their timer could have run
    /// (`tw_end::overdue`) whose end records may have been lost: ended, at
    /// an unknown time, for an unknown reason.
    fn end_overdue(&mut self, now_ns: u64, losses: &Losses, out: &mut Vec<TwOutput>) {
        let hz = self.hz;
        let overdue: Vec<TwKey> = self
            .live
            .iter()
            .filter(|(_, tw)| {
                let timer_ns = jiffies_to_ns(hz, tw.jiffies.into());
                tw.since_ns != 0
                    && tw.cancel.is_none()
                    && tw_end::overdue(tw.since_ns, timer_ns, tw.rearms, now_ns)
                    && losses.any_since(&ENDS, tw.since_ns)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in overdue {
            self.end_unseen(key, now_ns, out);
        }
    }

    /// Ends the timewait socket of `key`, found gone at `now_ns` without
    /// its end seen: when and why it ended are unknown.
    fn end_unseen(&mut self, key: TwKey, now_ns: u64, out: &mut Vec<TwOutput>) {
        let Some(tw) = self.live.remove(&key) else {
            return;
        };
        self.counts.leave(key.netns(), tw.substate);
        if tw.since_ns == 0 && tw.closed.is_none() {
            // Found at start-up and never seen since: nothing to say.
            return;
        }
        let end = End {
            ts_ns: now_ns,
            reason: TwEnd::Unknown,
            by: None,
            in_old: TimeInState::Unknown,
            fin_unseen: false,
            known: false,
        };
        self.push_end(key, tw, end, out);
    }

    /// At exit: the records of connections still in a timewait socket, as
    /// they stand now (`now_ns`), oldest first, marked as not ended — or,
    /// where their end records may have been lost, as missing records.
    pub fn flush_at_exit(&mut self, now_ns: u64, losses: &Losses, out: &mut Vec<TwOutput>) {
        let mut held: Vec<Closed> = self
            .live
            .values_mut()
            .filter_map(|tw| {
                let known = !losses.any_since(&ENDS, tw.since_ns);
                tw.complete(now_ns, None, known)
            })
            .collect();
        self.held -= held.len();
        held.sort_by_key(|c| c.lifetime_ns.map(std::cmp::Reverse));
        out.extend(held.into_iter().map(TwOutput::Closed));
    }

    fn settle(&mut self, losses: &Losses, out: &mut Vec<TwOutput>, after_batches: u8) {
        let pending = std::mem::take(&mut self.pending);
        for key in pending {
            let Some(tw) = self.live.get_mut(&key) else {
                continue;
            };
            let Some(cancelled) = tw.cancel.as_deref_mut() else {
                tw.queued = false;
                continue;
            };
            cancelled.batches += 1;
            if cancelled.batches < after_batches {
                self.pending.push(key);
                continue;
            }
            let (cancel, substate) = (cancelled.cancel, cancelled.substate);
            let reason = early_end(&self.connects, &cancel, losses);
            if reason == TwEnd::Unknown
                && losses.any_since(&[RecordKind::TimewaitArmed], cancel.ts_ns)
            {
                // Perhaps re-armed, the arming lost: still there as far as
                // is known (the overdue sweep ends it if it is not).
                tw.cancel = None;
                tw.queued = false;
                tw.unsure = true;
                continue;
            }
            self.end(key, reason, cancel.ts_ns, substate, cancel.task, out);
        }
    }
}

/// Why a timewait socket whose cancel nothing followed ended, unknown if
/// what would have followed may have been lost.
fn early_end(connects: &[(u32, u64)], cancel: &Cancel, losses: &Losses) -> TwEnd {
    let since = cancel.ts_ns.saturating_sub(tw_end::REUSE_WINDOW_NS);
    let maybe_lost = losses.any_since(&tw_end::CANCEL_FOLLOWERS, since);
    tw_end::early_end(connects, cancel, maybe_lost)
}

/// Time since `since_ns` (0: not seen).
fn measured(since_ns: u64, now_ns: u64) -> TimeInState {
    match since_ns {
        0 => TimeInState::Unknown,
        since => TimeInState::Measured(now_ns.saturating_sub(since)),
    }
}

fn jiffies_to_ns(hz: Option<u32>, jiffies: u64) -> Option<u64> {
    hz.map(|hz| jiffies.saturating_mul(1_000_000_000) / u64::from(hz.max(1)))
}

#[cfg(test)]
mod tests {
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
        (connect.old, connect.new, connect.task) =
            (TcpState::Close, TcpState::SynSent, Some(client));
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
}
