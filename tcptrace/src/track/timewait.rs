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
    pub fn seed(&mut self, seed: &TwSeed) -> bool {
        let key = TwKey::new(seed.netns, seed.local, seed.remote);
        if self.live.contains_key(&key) || self.seeded.contains_key(&key) {
            return false;
        }
        if self.live.len() + self.seeded.len() >= self.max {
            self.untracked += 1;
            return false;
        }
        self.counts.enter(seed.netns, seed.substate);
        self.seeded.insert(key, seed.substate);
        true
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
mod tests;
