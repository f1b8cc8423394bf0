//! Connection tracking in the agent: follows each socket across its
//! transitions and resets, attributes it to its owner, and gives every
//! connection that ends one verdict — who closed first. I/O-free; driven by
//! decoded events, tested with synthetic sequences.
//!
//! Ownership is taken only from transitions that ran in process context (the
//! owner's own system calls); accepted sockets belong to the process that
//! listens on their port. Where the owner is unknown it stays unknown.

use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;

use crate::{
    model::{
        Closed, Existing, Listed, Losses, Open, RecordKind, Reset, ResetDirection, ResetReason,
        Role, StateChange, StateTimes, Task, TcpState, TimeInState, Transition, Verdict,
    },
    track::{owners::Owners, verdict},
};

struct Conn {
    netns: u32,
    local: SocketAddr,
    remote: SocketAddr,
    role: Role,
    listener: bool,
    owner: Option<Task>,
    born_ns: Option<u64>,
    state: TcpState,
    since_ns: Option<u64>,
    /// Evidence of who closed first (see `verdict`).
    first_close: Option<Verdict>,
    rst_sent: bool,
    /// The kernel's reason for the first RST it sent.
    rst_reason: Option<ResetReason>,
    /// Its SYN's retransmits (a connect that stalled).
    syn_retransmits: u32,
    in_state: StateTimes,
    /// A record of it is known to be missing: a transition did not start
    /// from the state the last one left it in.
    missed: bool,
    /// When the kernel last listed it (`end_gone`), 0 if never.
    listed_ns: u64,
}

/// The records whose loss could hide a RST: the verdicts concluded from
/// seeing none wait until the loss counts after them are read.
const RESETS: [RecordKind; 2] = [RecordKind::ResetSent, RecordKind::ResetReceived];

/// A connection that reached CLOSE without FIN or RST evidence yet: an
/// abortive close sets CLOSE *before* sending its RST, so the verdict waits
/// for the RST record until the end of the next drain.
struct Pending {
    conn: Conn,
    sock: u64,
    ts_ns: u64,
    /// The state it left for CLOSE.
    old: TcpState,
    /// When its record before the CLOSE came (0: none): a RST for it, if
    /// any, came after that.
    prev_ns: u64,
    process_ctx: bool,
    batches: u8,
    /// It may be a child the kernel dropped at birth
    /// (`verdict::dropped_at_birth`): no connection, unless a RST for it
    /// comes or may have been lost.
    maybe_dropped: bool,
}

pub struct Tracker {
    conns: HashMap<u64, Conn>,
    owners: Owners,
    pending: Vec<Pending>,
    max_conns: usize,
    /// Sockets not followed because `max_conns` was reached.
    pub untracked: u64,
    /// A connection found ended by the last transition (`on_change`).
    ended_unseen: Option<Closed>,
    /// Child sockets the kernel dropped as it made them
    /// (`verdict::dropped_at_birth`): not connections.
    pub dropped_at_birth: u64,
}

impl Tracker {
    pub fn new(max_conns: usize) -> Self {
        Self {
            conns: HashMap::default(),
            owners: Owners::new(max_conns),
            pending: Vec::new(),
            max_conns,
            untracked: 0,
            ended_unseen: None,
            dropped_at_birth: 0,
        }
    }

    /// Learns the owners of the sockets that existed at start-up: listeners'
    /// (for the sockets they will accept) and connections'.
    pub fn seed(&mut self, existing: impl IntoIterator<Item = Existing>) {
        self.owners.seed(existing);
    }

    /// The owner of what is accepted on (netns, port), if known.
    pub fn listener_owner(&self, netns: u32, port: u16) -> Option<Task> {
        self.owners.of_accepted(netns, port)
    }

    /// Follows one state change; concludes the transition it is (its owner
    /// as known, its time in the old state), and the connection if this
    /// change ended it with a verdict.
    /// When it shows a new socket at the address of one whose end was never
    /// seen (its CLOSE was lost), that one is ended too, marked as missing
    /// records: `take_ended_unseen` hands it out.
    pub fn on_change(&mut self, t: &StateChange) -> (Transition, Option<Closed>) {
        use TcpState::*;
        let fresh = t.opens_socket();
        // A socket at the address of one followed, but not that one: a new
        // one (or one with other endpoints, whose opening records were
        // lost). The one followed ended unseen.
        // One lookup: Some(true) replaced, Some(false) the one followed.
        let replaced = self.conns.get(&t.sock).map(|c| fresh || !same_life(c, t));
        let mut reborn = false;
        if replaced == Some(true)
            && let Some(old) = self.conns.remove(&t.sock)
        {
            reborn = !fresh;
            if !old.listener {
                self.ended_unseen = Some(never_ended(t.sock, old));
            }
        }
        if replaced != Some(false) {
            if self.conns.len() >= self.max_conns {
                self.untracked += 1;
                // One found at start-up has moved: it is no longer in its
                // state then, even if it cannot be followed.
                let seeded = self.owners.claim_existing(t.netns, t.local, t.remote);
                return (t.concluded(t.unmeasured_in_old(), t.task.or(seeded)), None);
            }
            let (role, owner, born_ns) = match (t.old, t.new) {
                (Close, _) => (Role::Active, t.task, Some(t.ts_ns)),
                (Listen, SynRecv) => (
                    Role::Passive,
                    t.task
                        .or_else(|| self.owners.of_accepted(t.netns, t.local.port())),
                    Some(t.ts_ns),
                ),
                _ => {
                    let seeded = self.owners.claim_existing(t.netns, t.local, t.remote);
                    (Role::Unknown, t.task.or(seeded), None)
                }
            };
            let conn = Conn {
                netns: t.netns,
                local: t.local,
                remote: t.remote,
                role,
                // A listener first seen closing predates tcptrace.
                listener: t.new == Listen || t.old == Listen && t.new == Close,
                owner,
                born_ns,
                state: t.old,
                since_ns: None,
                first_close: None,
                rst_sent: false,
                rst_reason: None,
                syn_retransmits: 0,
                in_state: StateTimes::default(),
                missed: reborn,
                listed_ns: 0,
            };
            self.conns.insert(t.sock, conn);
        }
        let Some(conn) = self.conns.get_mut(&t.sock) else {
            return (t.concluded(t.unmeasured_in_old(), t.task), None);
        };
        // A transition from another state than the last one left it in:
        // the records between were lost.
        let gap = !fresh && conn.state != t.old;
        conn.missed |= gap;
        // Time in the old state, if its start was seen (not for a socket
        // first seen mid-life, nor after a lost record).
        let in_old = match conn.since_ns {
            Some(since) if !gap && !fresh => TimeInState::Measured(t.ts_ns.saturating_sub(since)),
            _ => t.unmeasured_in_old(),
        };
        let prev_ns = conn.since_ns.or(conn.born_ns).unwrap_or(0);
        if t.task.is_some() {
            conn.owner = t.task;
        }
        let concluded = t.concluded(in_old, conn.owner);
        // Addresses can be incomplete early (no source port before connect).
        conn.local = t.local;
        conn.remote = t.remote;
        if let TimeInState::Measured(ns) = in_old {
            conn.in_state.add(t.old, ns);
        }
        conn.first_close = verdict::after_transition(conn.first_close, t.old, t.new, gap);
        conn.state = t.new;
        conn.since_ns = Some(t.ts_ns);
        if t.new == Listen {
            conn.listener = true;
            self.owners
                .listening(t.netns, t.local.port(), t.sock, conn.owner);
        }
        if t.new != Close {
            return (concluded, None);
        }

        let Some(conn) = self.conns.remove(&t.sock) else {
            return (concluded, None);
        };
        if conn.listener {
            self.owners.closed(conn.netns, conn.local.port(), t.sock);
            return (concluded, None);
        }
        let maybe_dropped = verdict::dropped_at_birth(
            conn.role == Role::Passive,
            t.old,
            in_old.ns(),
            conn.first_close,
            t.task.is_some(),
        );
        let how = verdict::Ending {
            old: t.old,
            has_port: t.local.port() != 0,
            process_ctx: t.task.is_some(),
        };
        let closed = match verdict::at_close(how, conn.first_close) {
            Some(verdict) => Some(close(t.sock, t.ts_ns, conn, verdict)),
            None => {
                self.pending.push(Pending {
                    conn,
                    sock: t.sock,
                    ts_ns: t.ts_ns,
                    old: t.old,
                    prev_ns,
                    process_ctx: t.task.is_some(),
                    batches: 0,
                    maybe_dropped,
                });
                None
            }
        };
        (concluded, closed)
    }

    /// The connection whose end the last transition found unseen, if any.
    pub fn take_ended_unseen(&mut self) -> Option<Closed> {
        self.ended_unseen.take()
    }

    /// Counts a retransmit of a connecting socket's SYN (one not followed,
    /// or no longer connecting, is not counted).
    pub fn on_syn_retransmit(&mut self, sock: u64) {
        if let Some(conn) = self.conns.get_mut(&sock)
            && conn.state == TcpState::SynSent
        {
            conn.syn_retransmits += 1;
        }
    }

    /// Follows a reset. Returns a connection whose verdict it completed.
    pub fn on_reset(&mut self, r: &Reset) -> Option<Closed> {
        let verdict = verdict::of_reset(r.direction);
        // One with other ports is another socket's, at an address this one
        // had (its CLOSE and the other's opening lost): not its evidence.
        if let Some(conn) = self.conns.get_mut(&r.sock)
            && same_ports(r.ports, conn)
        {
            conn.first_close.get_or_insert(verdict);
            if r.direction == ResetDirection::Sent {
                conn.rst_sent = true;
                conn.rst_reason = conn.rst_reason.or(r.reason);
            }
            return None;
        }
        // A socket's memory is reused at once: a reset at the address of
        // one closed a moment ago can be a new socket's.
        let at = self
            .pending
            .iter()
            .position(|p| p.sock == r.sock && same_ports(r.ports, &p.conn))?;
        let mut pending = self.pending.swap_remove(at);
        if r.direction == ResetDirection::Sent {
            pending.conn.rst_reason = pending.conn.rst_reason.or(r.reason);
        }
        let verdict = match pending.old {
            TcpState::SynSent => verdict::of_failed_connect(Some(verdict)),
            _ => verdict,
        };
        Some(close(pending.sock, pending.ts_ns, pending.conn, verdict))
    }

    /// Call after each drain of the ring buffer, with what the kernel side
    /// lost so far: settles connections that closed without FIN or RST at
    /// least one full drain ago (the loss counts read since cover the RST
    /// records around their CLOSE).
    pub fn end_batch(&mut self, losses: &Losses) -> Vec<Closed> {
        for p in &mut self.pending {
            p.batches += 1;
        }
        self.settle(losses, |p| p.batches >= 2)
    }

    /// Settles everything pending (at exit, after the last drain).
    pub fn settle_all(&mut self, losses: &Losses) -> Vec<Closed> {
        self.settle(losses, |_| true)
    }

    fn settle(&mut self, losses: &Losses, ready: impl Fn(&Pending) -> bool) -> Vec<Closed> {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| ready(p));
        self.pending = waiting;
        let mut closed = Vec::with_capacity(done.len());
        for p in done {
            let unseen = verdict::Unseen {
                rst_sent: p.conn.rst_sent,
                process_ctx: p.process_ctx,
                resets_maybe_lost: losses.any_since(&RESETS, p.prev_ns),
            };
            // No RST came, and none can have been lost: a twin child.
            if p.maybe_dropped && !unseen.resets_maybe_lost {
                self.dropped_at_birth += 1;
                continue;
            }
            let verdict = verdict::unresolved(p.old, unseen);
            closed.push(close(p.sock, p.ts_ns, p.conn, verdict));
        }
        closed
    }

    /// The namespaces with connections in doubt at `before_ns`: their last
    /// record came at or before it, and transition records may have been
    /// lost since, their CLOSE among them.
    pub fn in_doubt(&self, losses: &Losses, before_ns: u64) -> Vec<u32> {
        let mut netns: Vec<u32> = self
            .conns
            .values()
            .filter(|c| doubtful(c, losses, before_ns))
            .map(|c| c.netns)
            .collect();
        netns.sort_unstable();
        netns.dedup();
        netns
    }

    /// Ends the connections of `netns` in doubt at `listed_ns` that neither
    /// of two listings of the kernel's connections, the first taken then,
    /// shows (local and remote endpoints): they were gone, and the records
    /// of their end lost (those would have arrived by now). Ended like
    /// those found ended unseen. Those listed are confirmed as of then.
    pub fn end_gone(
        &mut self,
        netns: u32,
        listings: [&Listed; 2],
        listed_ns: u64,
        losses: &Losses,
    ) -> Vec<Closed> {
        let mut gone = Vec::new();
        for (sock, c) in &mut self.conns {
            if c.netns != netns || !doubtful(c, losses, listed_ns) {
                continue;
            }
            match listings.iter().any(|l| l.contains(&(c.local, c.remote))) {
                true => c.listed_ns = listed_ns,
                false => gone.push(*sock),
            }
        }
        gone.into_iter()
            .filter_map(|sock| Some(never_ended(sock, self.conns.remove(&sock)?)))
            .collect()
    }

    /// Connections currently open (listeners excluded), those found at
    /// start-up and not seen since included.
    pub fn open(&self) -> impl Iterator<Item = Open<'_>> {
        let followed = self.conns.values().filter(|c| !c.listener).map(|c| Open {
            state: c.state,
            since_ns: c.since_ns,
            local: c.local,
            remote: c.remote,
            netns: c.netns,
            owner: c.owner.as_ref(),
            role: c.role,
        });
        // Those found at start-up and quiet since: in their state then, for
        // an unknown time (a CLOSE_WAIT leak older than tcptrace is one).
        let existing = self
            .owners
            .existing()
            .map(|(netns, local, remote, state, owner)| Open {
                state,
                since_ns: None,
                local,
                remote,
                netns,
                owner,
                role: Role::Unknown,
            });
        followed.chain(existing)
    }
}

/// A connection (not a listener) whose last record came at or before
/// `before_ns`, and after which (or after the kernel last listed it)
/// transition records may have been lost. Only one whose endpoints are
/// complete: a connect()ing socket has no local port yet in its record.
fn doubtful(c: &Conn, losses: &Losses, before_ns: u64) -> bool {
    let complete = c.local.port() != 0 && c.remote.port() != 0 && !c.local.ip().is_unspecified();
    !c.listener
        && complete
        && c.since_ns.is_some_and(|since| {
            since <= before_ns
                && losses.any_since(&[RecordKind::Transition], since.max(c.listed_ns))
        })
}

/// Whether a transition of the socket at `conn`'s address is one of the
/// connection followed there: the same endpoints, where both are known (a
/// port is 0 before bind or connect, an address unspecified before connect).
fn same_life(conn: &Conn, t: &StateChange) -> bool {
    same_end(conn.local, t.local) && same_end(conn.remote, t.remote)
}

/// Whether a reset with `ports` (local, remote) can be `conn`'s: the same
/// ports where both are known.
fn same_ports((local, remote): (u16, u16), conn: &Conn) -> bool {
    let agree = |a: u16, b: u16| a == 0 || b == 0 || a == b;
    agree(local, conn.local.port()) && agree(remote, conn.remote.port())
}

fn same_end(known: SocketAddr, now: SocketAddr) -> bool {
    known.port() == 0
        || now.port() == 0
        || known.port() == now.port()
            && (known.ip().is_unspecified() || now.ip().is_unspecified() || known.ip() == now.ip())
}

/// The record of a connection whose end was never seen: its CLOSE was
/// lost, and its address now belongs to a new socket. Who closed first is
/// what its evidence says, if any; its end and lifetime are unknown.
fn never_ended(sock: u64, conn: Conn) -> Closed {
    let verdict = conn.first_close.unwrap_or(Verdict::Unknown);
    let ts_ns = conn.since_ns.unwrap_or(0);
    let mut closed = close(
        sock,
        ts_ns,
        Conn {
            missed: true,
            ..conn
        },
        verdict,
    );
    closed.lifetime_ns = None;
    closed
}

fn close(sock: u64, ts_ns: u64, conn: Conn, verdict: Verdict) -> Closed {
    Closed {
        ts_ns,
        sock,
        netns: conn.netns,
        local: conn.local,
        remote: conn.remote,
        role: conn.role,
        owner: conn.owner,
        verdict,
        lifetime_ns: conn.born_ns.map(|born| ts_ns.saturating_sub(born)),
        in_state: conn.in_state,
        missed: conn.missed,
        reset_reason: conn.rst_reason,
        syn_retransmits: conn.syn_retransmits,
        timewait: None,
    }
}

#[cfg(test)]
mod tests;
