//! Who owns sockets that tcptrace did not see being created in a system
//! call: the processes listening on each (namespace, port), whose accepted
//! sockets are theirs, and the owners of connections that existed at
//! start-up (from the snapshot), claimed when each is first seen.

use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;

use crate::model::{Existing, Task, TcpState};

/// Listeners on one (netns, port): (socket, owner); socket 0 for one found
/// at start-up (the kernel's address is not exposed there).
type Listeners = Vec<(u64, Option<Task>)>;

pub(super) struct Owners {
    listeners: HashMap<(u32, u16), Listeners>,
    /// Connections that existed at start-up and have not been seen since,
    /// by (netns, local, remote): their state then, and owner if known.
    seeded: HashMap<(u32, SocketAddr, SocketAddr), (TcpState, Option<Task>)>,
    max_seeded: usize,
}

impl Owners {
    pub(super) fn new(max_seeded: usize) -> Self {
        Self {
            listeners: HashMap::default(),
            seeded: HashMap::default(),
            max_seeded,
        }
    }

    /// Learns the sockets that existed at start-up. Listeners seeded this way
    /// have no socket address; the first listener on their port to close
    /// removes them.
    pub(super) fn seed(&mut self, existing: impl IntoIterator<Item = Existing>) {
        for e in existing {
            match e.state {
                TcpState::Listen => self.listening(e.netns, e.local.port(), 0, e.owner),
                state if self.seeded.len() < self.max_seeded => {
                    self.seeded
                        .insert((e.netns, e.local, e.remote), (state, e.owner));
                }
                _ => {}
            }
        }
    }

    /// The owner of a connection found at start-up, claimed once: from its
    /// first transition on, the tracker follows it.
    pub(super) fn claim_existing(
        &mut self,
        netns: u32,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<Task> {
        self.seeded.remove(&(netns, local, remote))?.1
    }

    /// The connections found at start-up that have not changed state since:
    /// (netns, local, remote, state, owner).
    pub(super) fn existing(
        &self,
    ) -> impl Iterator<Item = (u32, SocketAddr, SocketAddr, TcpState, Option<&Task>)> + '_ {
        self.seeded
            .iter()
            .map(|(&(netns, local, remote), (state, owner))| {
                (netns, local, remote, *state, owner.as_ref())
            })
    }

    /// The owner of sockets accepted on (netns, port), if all its listeners agree.
    pub(super) fn of_accepted(&self, netns: u32, port: u16) -> Option<Task> {
        let listeners = self.listeners.get(&(netns, port))?;
        let first = listeners.first()?.1?;
        listeners
            .iter()
            .all(|(_, o)| o.is_some_and(|o| o.pid == first.pid))
            .then_some(first)
    }

    /// A socket started listening on (netns, port).
    pub(super) fn listening(&mut self, netns: u32, port: u16, sock: u64, owner: Option<Task>) {
        self.listeners
            .entry((netns, port))
            .or_default()
            .push((sock, owner));
    }

    /// A listener closed: it, and any found at start-up on its port, no
    /// longer own what that port accepts.
    pub(super) fn closed(&mut self, netns: u32, port: u16, sock: u64) {
        let key = (netns, port);
        if let Some(listeners) = self.listeners.get_mut(&key) {
            listeners.retain(|(s, _)| *s != sock && *s != 0);
            if listeners.is_empty() {
                self.listeners.remove(&key);
            }
        }
    }
}
