//! Services: what users think in. All the processes of one program within
//! one network namespace — a master and its workers, a pool, a process per
//! connection, threads — are one service; their pids are examples.

use rustc_hash::FxHashSet as HashSet;

use super::{Comm, Task};

/// A program within its network namespace (and so its container): its
/// command name, as the kernel keeps it for the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    pub netns: u32,
    pub comm: Comm,
}

impl Service {
    /// The service of a socket's owner in namespace `netns`.
    pub fn of(netns: u32, owner: &Task) -> Self {
        Self {
            netns,
            comm: owner.comm,
        }
    }
}

/// A service's processes: the first few as examples, and how many distinct
/// ones were seen, counted up to [`Pids::COUNTED`] (a server forking a
/// process per connection has as many as connections).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pids {
    examples: Vec<u32>,
    seen: HashSet<u32>,
    capped: bool,
}

impl Pids {
    /// Examples kept.
    pub const EXAMPLES: usize = 4;
    /// Distinct pids counted before the count says "at least" (a set of
    /// them costs about 600 bytes).
    pub const COUNTED: usize = 64;

    pub fn add(&mut self, pid: u32) {
        // The examples first: most services are a few processes.
        if self.capped || self.examples.contains(&pid) || self.seen.contains(&pid) {
            return;
        }
        if self.seen.len() == Self::COUNTED {
            self.capped = true;
            return;
        }
        self.seen.insert(pid);
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(pid);
        }
    }

    /// The first pids seen, in the order seen.
    pub fn examples(&self) -> &[u32] {
        &self.examples
    }

    /// Distinct pids seen: exact, or at least this when [`Pids::capped`].
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// More than [`Pids::COUNTED`] were seen.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// The one process, where the service had exactly one: the culprit a
    /// finding may name.
    pub fn single(&self) -> Option<u32> {
        match (self.count(), self.capped) {
            (1, false) => self.examples.first().copied(),
            _ => None,
        }
    }
}

/// Sockets of one service in a namespace (or of owners unknown there): how
/// many, and the processes holding them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSockets {
    pub netns: u32,
    /// The service's program; `None`: owners unknown.
    pub comm: Option<Comm>,
    pub pids: Pids,
    pub count: u64,
}

impl ServiceSockets {
    /// What sockets of `owner` in `netns` are grouped under.
    pub fn key(netns: u32, owner: Option<&Task>) -> (u32, Option<Comm>) {
        (netns, owner.map(|o| o.comm))
    }

    /// None yet, of the service `key`.
    pub fn new((netns, comm): (u32, Option<Comm>)) -> Self {
        Self {
            netns,
            comm,
            pids: Pids::default(),
            count: 0,
        }
    }

    /// Counts one more, held by `owner`.
    pub fn add(&mut self, owner: Option<&Task>) {
        self.count += 1;
        if let Some(owner) = owner {
            self.pids.add(owner.pid);
        }
    }
}

impl FromIterator<u32> for Pids {
    fn from_iter<I: IntoIterator<Item = u32>>(pids: I) -> Self {
        let mut all = Self::default();
        for pid in pids {
            all.add(pid);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_and_workers_are_one_service() {
        let task = |pid, comm| Task {
            pid,
            tid: pid,
            comm: Comm::from_name(comm),
        };
        let master = Service::of(7, &task(100, "nginx"));
        assert_eq!(master, Service::of(7, &task(101, "nginx")));
        assert_ne!(
            master,
            Service::of(8, &task(100, "nginx")),
            "another namespace"
        );
        assert_ne!(master, Service::of(7, &task(100, "haproxy")));
    }

    #[test]
    fn pids_keep_examples_and_a_bounded_count() {
        let mut pids = Pids::default();
        assert_eq!(pids.single(), None);
        pids.add(10);
        pids.add(10);
        assert_eq!((pids.count(), pids.single()), (1, Some(10)));
        for pid in 11..20 {
            pids.add(pid);
        }
        assert_eq!(pids.examples(), [10, 11, 12, 13]);
        assert_eq!(
            (pids.count(), pids.capped(), pids.single()),
            (10, false, None)
        );
        // A process per connection: counted up to the bound, then "at least".
        for pid in 1000..2000 {
            pids.add(pid);
        }
        assert_eq!((pids.count(), pids.capped()), (Pids::COUNTED, true));
        assert_eq!(pids.examples(), [10, 11, 12, 13]);
    }
}
