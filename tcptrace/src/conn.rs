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

use crate::event::{Reset, ResetDirection, Task, TcpState, TimeInState, Transition};

/// Time spent in each state, without allocating: a slot per state, listed in
/// the order a connection passes through them (its states never repeat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTimes {
    ns: [u64; 12],
    visited: u16,
}

/// The order states are listed in.
const STATE_ORDER: [TcpState; 12] = [
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::Closing,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::TimeWait,
    TcpState::NewSynRecv,
    TcpState::Listen,
    TcpState::Close,
];

impl StateTimes {
    fn slot(state: TcpState) -> usize {
        STATE_ORDER.iter().position(|s| *s == state).unwrap_or(0)
    }

    pub fn add(&mut self, state: TcpState, ns: u64) {
        let i = Self::slot(state);
        self.ns[i] += ns;
        self.visited |= 1 << i;
    }

    /// (state, total ns) for each state seen, in passing order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        STATE_ORDER
            .iter()
            .enumerate()
            .filter(|(i, _)| self.visited & (1 << i) != 0)
            .map(|(i, s)| (*s, self.ns[i]))
    }
}

/// Who closed a connection first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// This host sent the first FIN (ESTABLISHED -> FIN_WAIT1): this side
    /// holds TIME_WAIT.
    Local,
    /// The peer sent the first FIN (ESTABLISHED -> CLOSE_WAIT).
    Peer,
    /// Both FINs crossed (FIN_WAIT1 -> CLOSING).
    Simultaneous,
    /// This host reset the connection (SO_LINGER 0, close with unread data...).
    AbortSent,
    /// The peer reset the connection.
    AbortReceived,
    /// The connect was answered with a RST.
    Refused,
    /// The connect failed without a RST (timeout, ICMP error, cancelled).
    ConnectFailed,
    /// The kernel gave up on an established connection without FIN or RST
    /// (retransmission or keepalive timeout, ICMP error).
    Timeout,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Self::Local,
        Self::Peer,
        Self::Simultaneous,
        Self::AbortSent,
        Self::AbortReceived,
        Self::Refused,
        Self::ConnectFailed,
        Self::Timeout,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
            Self::Simultaneous => "simultaneous",
            Self::AbortSent => "abort-sent",
            Self::AbortReceived => "abort-received",
            Self::Refused => "refused",
            Self::ConnectFailed => "connect-failed",
            Self::Timeout => "timeout",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// How the connection started, from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This host connected.
    Active,
    /// This host accepted.
    Passive,
    /// First seen mid-life (it predates tcptrace, or events were lost).
    Unknown,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::Unknown => "unknown",
        }
    }
}

/// A connection that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// When it reached CLOSE (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub sock: u64,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    pub owner: Option<Task>,
    pub verdict: Verdict,
    /// From the socket's first transition to CLOSE; `None` if first seen mid-life.
    pub lifetime_ns: Option<u64>,
    /// Measured time in each state it passed through, in order.
    pub in_state: StateTimes,
    /// How its timewait socket ended, if it had one (the record then comes
    /// at that end, and `ts_ns`, `lifetime_ns` and `in_state` include it).
    pub timewait: Option<ClosedTw>,
}

/// The end of a connection's timewait socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedTw {
    /// `None`: still in TIME_WAIT when tcptrace stopped.
    pub reason: Option<crate::event::TwEnd>,
    /// Times its timer was re-armed (a retransmitted FIN extends TIME_WAIT).
    pub rearms: u32,
}

/// A connection still open, for the summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open<'a> {
    pub state: TcpState,
    /// When it entered `state`, if seen.
    pub since_ns: Option<u64>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
    pub owner: Option<&'a Task>,
}

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
    first_close: Option<Verdict>,
    rst_sent: bool,
    in_state: StateTimes,
}

/// A connection that reached CLOSE without FIN or RST evidence yet: an
/// abortive close sets CLOSE *before* sending its RST, so the verdict waits
/// for the RST record until the end of the next drain.
struct Pending {
    conn: Conn,
    sock: u64,
    ts_ns: u64,
    process_ctx: bool,
    batches: u8,
}

/// Listeners on one (netns, port), with their owners.
type Listeners = Vec<(u64, Option<Task>)>;

pub struct Tracker {
    conns: HashMap<u64, Conn>,
    listeners: HashMap<(u32, u16), Listeners>,
    /// Owners of connections that existed at start-up, by (netns, local,
    /// remote), taken when the connection is first seen.
    seeded: HashMap<(u32, SocketAddr, SocketAddr), Task>,
    pending: Vec<Pending>,
    max_conns: usize,
    /// Sockets not followed because `max_conns` was reached.
    pub untracked: u64,
}

impl Tracker {
    pub fn new(max_conns: usize) -> Self {
        Self {
            conns: HashMap::default(),
            listeners: HashMap::default(),
            seeded: HashMap::default(),
            pending: Vec::new(),
            max_conns,
            untracked: 0,
        }
    }

    /// Learns the sockets that existed at start-up: listeners' owners (for the
    /// sockets they will accept) and connections' owners. Listeners seeded
    /// this way have no socket address (the kernel's is not exposed); the
    /// first listener on their port to close removes them.
    pub fn seed(&mut self, existing: impl IntoIterator<Item = crate::snapshot::Existing>) {
        for e in existing {
            match (e.state, e.owner) {
                (TcpState::Listen, owner) => {
                    self.listeners
                        .entry((e.netns, e.local.port()))
                        .or_default()
                        .push((0, owner));
                }
                (_, Some(owner)) if self.seeded.len() < self.max_conns => {
                    self.seeded.insert((e.netns, e.local, e.remote), owner);
                }
                _ => {}
            }
        }
    }

    /// The owner of sockets accepted on (netns, port), if all its listeners agree.
    fn listener_owner(&self, netns: u32, port: u16) -> Option<Task> {
        let listeners = self.listeners.get(&(netns, port))?;
        let first = listeners.first()?.1?;
        listeners
            .iter()
            .all(|(_, o)| o.is_some_and(|o| o.pid == first.pid))
            .then_some(first)
    }

    /// Follows one transition; sets `t.owner` to the socket's owner as known.
    /// Returns the connection if this transition ended it with a verdict.
    pub fn on_transition(&mut self, t: &mut Transition) -> Option<Closed> {
        use TcpState::*;
        let fresh = Transition::opens(t.old, t.new);
        if fresh || !self.conns.contains_key(&t.sock) {
            if self.conns.len() >= self.max_conns && !self.conns.contains_key(&t.sock) {
                self.untracked += 1;
                t.owner = t.task;
                return None;
            }
            let (role, owner, born_ns) = match (t.old, t.new) {
                (Close, _) => (Role::Active, t.task, Some(t.ts_ns)),
                (Listen, SynRecv) => (
                    Role::Passive,
                    t.task
                        .or_else(|| self.listener_owner(t.netns, t.local.port())),
                    Some(t.ts_ns),
                ),
                _ => {
                    let seeded = self.seeded.remove(&(t.netns, t.local, t.remote));
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
                in_state: StateTimes::default(),
            };
            self.conns.insert(t.sock, conn);
        }
        let conn = self.conns.get_mut(&t.sock)?;
        // Time in the old state, if its start was seen (not for a socket
        // first seen mid-life, nor after a lost record).
        if !fresh
            && conn.state == t.old
            && let Some(since) = conn.since_ns
        {
            t.in_old = TimeInState::Measured(t.ts_ns.saturating_sub(since));
        }
        if t.task.is_some() {
            conn.owner = t.task;
        }
        t.owner = conn.owner;
        // Addresses can be incomplete early (no source port before connect).
        conn.local = t.local;
        conn.remote = t.remote;
        if let TimeInState::Measured(ns) = t.in_old {
            conn.in_state.add(t.old, ns);
        }
        // Being in a closing state tells who closed first, even when the
        // transition into it was not seen (socket first seen mid-life, or a
        // lost record).
        let implied = match t.old {
            FinWait1 | FinWait2 => Some(Verdict::Local),
            CloseWait | LastAck => Some(Verdict::Peer),
            Closing => Some(Verdict::Simultaneous),
            _ => None,
        };
        if conn.first_close.is_none() {
            conn.first_close = implied;
        }
        match (t.old, t.new) {
            (Established | SynRecv, FinWait1) => {
                conn.first_close.get_or_insert(Verdict::Local);
            }
            (Established | SynRecv, CloseWait) => {
                conn.first_close.get_or_insert(Verdict::Peer);
            }
            (FinWait1, Closing) if matches!(conn.first_close, None | Some(Verdict::Local)) => {
                conn.first_close = Some(Verdict::Simultaneous);
            }
            _ => {}
        }
        conn.state = t.new;
        conn.since_ns = Some(t.ts_ns);
        if t.new == Listen {
            conn.listener = true;
            self.listeners
                .entry((t.netns, t.local.port()))
                .or_default()
                .push((t.sock, conn.owner));
        }
        if t.new != Close {
            return None;
        }

        let conn = self.conns.remove(&t.sock)?;
        if conn.listener {
            let key = (conn.netns, conn.local.port());
            if let Some(listeners) = self.listeners.get_mut(&key) {
                listeners.retain(|(sock, _)| *sock != t.sock && *sock != 0);
                if listeners.is_empty() {
                    self.listeners.remove(&key);
                }
            }
            return None;
        }
        let verdict = match (t.old, conn.first_close) {
            (SynSent, Some(Verdict::AbortReceived)) => Some(Verdict::Refused),
            (SynSent, _) => Some(Verdict::ConnectFailed),
            (_, Some(v)) => Some(v),
            (_, None) => None,
        };
        match verdict {
            Some(verdict) => Some(close(t.sock, t.ts_ns, conn, verdict)),
            None => {
                self.pending.push(Pending {
                    conn,
                    sock: t.sock,
                    ts_ns: t.ts_ns,
                    process_ctx: t.task.is_some(),
                    batches: 0,
                });
                None
            }
        }
    }

    /// Follows a reset. Returns a connection whose verdict it completed.
    pub fn on_reset(&mut self, r: &Reset) -> Option<Closed> {
        let verdict = match r.direction {
            ResetDirection::Sent => Verdict::AbortSent,
            ResetDirection::Received => Verdict::AbortReceived,
        };
        if let Some(conn) = self.conns.get_mut(&r.sock) {
            conn.first_close.get_or_insert(verdict);
            conn.rst_sent |= r.direction == ResetDirection::Sent;
            return None;
        }
        let at = self.pending.iter().position(|p| p.sock == r.sock)?;
        let pending = self.pending.swap_remove(at);
        Some(close(pending.sock, pending.ts_ns, pending.conn, verdict))
    }

    /// Call after each drain of the ring buffer: settles connections that
    /// closed without FIN or RST at least one full drain ago.
    pub fn end_batch(&mut self) -> Vec<Closed> {
        for p in &mut self.pending {
            p.batches += 1;
        }
        self.settle(|p| p.batches >= 2)
    }

    /// Settles everything pending (at exit).
    pub fn settle_all(&mut self) -> Vec<Closed> {
        self.settle(|_| true)
    }

    fn settle(&mut self, ready: impl Fn(&Pending) -> bool) -> Vec<Closed> {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| ready(p));
        self.pending = waiting;
        done.into_iter()
            .map(|p| {
                // A close in the owner's system call without FIN is an abort
                // (the RST follows); in softirq the kernel gave up on its own.
                let verdict = if p.conn.rst_sent || p.process_ctx {
                    Verdict::AbortSent
                } else {
                    Verdict::Timeout
                };
                close(p.sock, p.ts_ns, p.conn, verdict)
            })
            .collect()
    }

    /// Connections currently open (listeners excluded).
    pub fn open(&self) -> impl Iterator<Item = Open<'_>> {
        self.conns.values().filter(|c| !c.listener).map(|c| Open {
            state: c.state,
            since_ns: c.since_ns,
            local: c.local,
            remote: c.remote,
            netns: c.netns,
            owner: c.owner.as_ref(),
        })
    }
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
        timewait: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::Comm;

    pub(crate) fn task(pid: u32, name: &str) -> Task {
        let mut comm = [0u8; 16];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        Task {
            pid,
            tid: pid,
            comm: Comm::new(comm),
        }
    }

    /// Builds transitions of one socket pair the way the kernel reports them.
    pub(crate) struct Script {
        pub ts: u64,
    }

    impl Script {
        pub(crate) fn t(
            &mut self,
            sock: u64,
            local: &str,
            remote: &str,
            old: TcpState,
            new: TcpState,
            task: Option<Task>,
        ) -> Transition {
            self.ts += 1_000;
            Transition {
                ts_ns: self.ts,
                sock,
                netns: 1,
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
                old,
                new,
                // As decoded: the tracker measures the rest.
                in_old: if Transition::opens(old, new) {
                    TimeInState::NewSocket
                } else {
                    TimeInState::Unknown
                },
                task,
                owner: task,
                timewait: None,
            }
        }
    }

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

        /// Feeds one transition to the tracker; returns it as the tracker left it.
        fn go(
            &mut self,
            sock: u64,
            l: &str,
            r: &str,
            old: TcpState,
            new: TcpState,
            task: Option<Task>,
        ) -> Transition {
            let mut t = self.s.t(sock, l, r, old, new, task);
            self.closed.extend(self.tracker.on_transition(&mut t));
            t
        }

        fn reset(&mut self, sock: u64, direction: ResetDirection, task: Option<Task>) {
            self.s.ts += 1_000;
            let r = Reset {
                ts_ns: self.s.ts,
                sock,
                netns: 1,
                direction,
                task,
            };
            self.closed.extend(self.tracker.on_reset(&r));
        }

        fn verdicts(&mut self) -> Vec<(u64, Verdict, Option<u32>)> {
            self.closed.extend(self.tracker.end_batch());
            self.closed.extend(self.tracker.end_batch());
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

    #[test]
    fn abort_without_rst_record_is_still_an_abort_in_process_context() {
        let mut p = Pair::established();
        let c = Some(p.client);
        p.go(2, CLI, SRV, Established, Close, c);
        assert!(
            p.tracker.end_batch().is_empty(),
            "one drain is not enough to settle"
        );
        assert_eq!(p.tracker.end_batch()[0].verdict, Verdict::AbortSent);
    }

    #[test]
    fn softirq_close_without_fin_or_rst_is_a_timeout() {
        let mut p = Pair::established();
        p.go(2, CLI, SRV, Established, Close, None);
        assert_eq!(p.tracker.settle_all()[0].verdict, Verdict::Timeout);
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
        assert_eq!(
            p.verdicts(),
            [
                (5, Verdict::Refused, Some(100)),
                (6, Verdict::ConnectFailed, Some(100))
            ]
        );
    }

    #[test]
    fn socket_first_seen_mid_life() {
        let mut tracker = Tracker::new(10);
        let mut s = Script { ts: 0 };
        // A connection that predates tcptrace, seen first leaving CLOSE_WAIT.
        let mut t = s.t(9, SRV, CLI, CloseWait, LastAck, Some(task(300, "app")));
        assert!(tracker.on_transition(&mut t).is_none());
        assert_eq!(t.in_old, TimeInState::Unknown, "CLOSE_WAIT began unseen");
        let mut t = s.t(9, SRV, CLI, LastAck, Close, None);
        let closed = tracker.on_transition(&mut t).unwrap();
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
        let mut t = s.t(7, SRV, CLI, Listen, SynRecv, None);
        tracker.on_transition(&mut t);
        assert_eq!(t.owner, None);
    }

    #[test]
    fn reuseport_listeners_of_different_processes_leave_accepted_owner_unknown() {
        let mut tracker = Tracker::new(10);
        let mut s = Script { ts: 0 };
        tracker.on_transition(&mut s.t(1, SRV, ANY, Close, Listen, Some(task(1, "a"))));
        tracker.on_transition(&mut s.t(2, SRV, ANY, Close, Listen, Some(task(2, "b"))));
        let mut t = s.t(3, SRV, CLI, Listen, SynRecv, None);
        tracker.on_transition(&mut t);
        assert_eq!(t.owner, None);
        // Once the owner makes a system call on it, it is known.
        let mut t = s.t(3, SRV, CLI, SynRecv, Established, None);
        tracker.on_transition(&mut t);
        let mut t = s.t(3, SRV, CLI, Established, FinWait1, Some(task(2, "b")));
        tracker.on_transition(&mut t);
        assert_eq!(t.owner.unwrap().pid, 2);
    }

    #[test]
    fn same_tuple_in_two_namespaces_is_two_listeners() {
        let mut tracker = Tracker::new(10);
        let mut s = Script { ts: 0 };
        tracker.on_transition(&mut s.t(1, SRV, ANY, Close, Listen, Some(task(1, "a"))));
        let mut other = s.t(2, SRV, ANY, Close, Listen, Some(task(2, "b")));
        other.netns = 2;
        tracker.on_transition(&mut other);
        let mut t = s.t(3, SRV, CLI, Listen, SynRecv, None);
        t.netns = 2;
        tracker.on_transition(&mut t);
        assert_eq!(t.owner.unwrap().pid, 2);
    }

    #[test]
    fn missing_events_and_socket_reuse() {
        let mut tracker = Tracker::new(10);
        let mut s = Script { ts: 0 };
        tracker.on_transition(&mut s.t(1, CLI, SRV, Close, SynSent, Some(task(1, "a"))));
        // The CLOSE of the first life was lost; the address is reused.
        let mut t = s.t(1, CLI, SRV, Close, SynSent, Some(task(2, "b")));
        tracker.on_transition(&mut t);
        assert_eq!(t.owner.unwrap().pid, 2);
        // Out of order: FIN_WAIT2 reported without FIN_WAIT1 (lost record).
        let mut t = s.t(1, CLI, SRV, SynSent, Established, None);
        tracker.on_transition(&mut t);
        assert_eq!(t.in_old, TimeInState::Measured(1_000));
        let mut t = s.t(1, CLI, SRV, FinWait2, Close, None);
        let closed = tracker.on_transition(&mut t);
        assert_eq!(t.in_old, TimeInState::Unknown, "FIN_WAIT2 began unseen");
        // Leaving FIN_WAIT2 means this side sent the first FIN.
        let closed = closed.unwrap();
        assert_eq!(closed.verdict, Verdict::Local);
        assert_eq!(
            closed.in_state.iter().collect::<Vec<_>>(),
            [(SynSent, 1_000)]
        );
        assert!(tracker.settle_all().is_empty());
        assert_eq!(tracker.open().count(), 0);
    }

    #[test]
    fn start_up_snapshot_gives_owners() {
        use crate::snapshot::Existing;
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
        let mut t = s.t(5, SRV, "10.0.0.9:1234", Listen, SynRecv, None);
        tracker.on_transition(&mut t);
        assert_eq!(t.owner.unwrap().pid, 80);
        // The connection that predates tcptrace, first seen now.
        let mut t = s.t(6, SRV, CLI, Established, CloseWait, None);
        t.in_old = TimeInState::Unknown;
        tracker.on_transition(&mut t);
        assert_eq!(t.owner.unwrap().pid, 90);
        // Another namespace's connection with the same tuple is not it.
        let mut t = s.t(7, SRV, CLI, Established, CloseWait, None);
        t.netns = 2;
        tracker.on_transition(&mut t);
        assert_eq!(t.owner, None);
    }

    #[test]
    fn listener_predating_tcptrace_closes_without_a_verdict() {
        let mut tracker = Tracker::new(10);
        let mut s = Script { ts: 0 };
        tracker.seed([crate::snapshot::Existing {
            netns: 1,
            local: SRV.parse().unwrap(),
            remote: ANY.parse().unwrap(),
            state: Listen,
            owner: Some(task(80, "nginx")),
        }]);
        let mut t = s.t(1, SRV, ANY, Listen, Close, Some(task(80, "nginx")));
        t.in_old = TimeInState::Unknown;
        assert_eq!(tracker.on_transition(&mut t), None);
        assert!(
            tracker.settle_all().is_empty(),
            "a listener is not a connection"
        );
        let mut t = s.t(5, SRV, CLI, Listen, SynRecv, None);
        tracker.on_transition(&mut t);
        assert_eq!(t.owner, None, "the closed listener no longer owns the port");
    }

    #[test]
    fn bounded() {
        let mut tracker = Tracker::new(1);
        let mut s = Script { ts: 0 };
        tracker.on_transition(&mut s.t(1, CLI, SRV, Close, SynSent, None));
        tracker.on_transition(&mut s.t(2, CLI, SRV, Close, SynSent, None));
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
}
