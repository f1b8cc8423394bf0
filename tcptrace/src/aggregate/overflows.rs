//! `TcpExtTCPTimeWaitOverflow` per network namespace since tracing started:
//! connections that got no timewait socket because `tcp_max_tw_buckets` was
//! reached. Polled (once a second, off the per-event path) through a process
//! in each namespace; the reading itself is `host::netstat`'s.

use std::io;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

struct Watch {
    /// The value before tracing: read at the first poll for a namespace that
    /// existed at start-up, 0 for one created since. `None` until first read.
    base: Option<u64>,
    last: u64,
}

impl Watch {
    /// Overflows since tracing started, as last read.
    fn since_start(&self) -> u64 {
        self.last.saturating_sub(self.base.unwrap_or(self.last))
    }
}

/// Overflows that happened in one namespace since the previous poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rise {
    pub netns: u32,
    pub new: u64,
    pub since_start: u64,
}

/// What one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub rises: Vec<Rise>,
    /// Namespaces whose process could not be read through (gone, or moved
    /// to another namespace).
    pub unreadable: Vec<u32>,
}

#[derive(Default)]
pub struct Overflows {
    watches: HashMap<u32, Watch>,
    at_start: HashSet<u32>,
}

impl Overflows {
    /// A namespace that existed at start-up: its count before tracing is
    /// taken at the first poll. Any other is new, and all of its overflows
    /// happened while tracing.
    pub fn existed_at_start(&mut self, netns: u32) {
        self.at_start.insert(netns);
    }

    /// Reads the counter of each namespace through the process given for it
    /// (`read(pid, netns)`).
    pub fn poll(
        &mut self,
        namespaces: impl Iterator<Item = (u32, u32)>,
        mut read: impl FnMut(u32, u32) -> io::Result<u64>,
    ) -> Poll {
        let mut poll = Poll::default();
        for (netns, pid) in namespaces {
            let Ok(value) = read(pid, netns) else {
                poll.unreadable.push(netns);
                continue;
            };
            let base = (!self.at_start.contains(&netns)).then_some(0);
            let w = self.watches.entry(netns).or_insert(Watch { base, last: 0 });
            let previous = w.last.max(*w.base.get_or_insert(value));
            w.last = value;
            if value > previous {
                poll.rises.push(Rise {
                    netns,
                    new: value - previous,
                    since_start: w.since_start(),
                });
            }
        }
        poll.rises.sort_by_key(|r| r.netns);
        poll
    }

    /// (netns, overflows since start) where there were any, in inode order.
    pub fn since_start(&self) -> Vec<(u32, u64)> {
        let mut all: Vec<(u32, u64)> = self
            .watches
            .iter()
            .map(|(netns, w)| (*netns, w.since_start()))
            .filter(|(_, n)| *n > 0)
            .collect();
        all.sort_unstable();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_start_up_or_from_zero() {
        let mut o = Overflows::default();
        o.existed_at_start(1);
        // Namespace 1 had 100 before tracing; namespace 2 is new and has 5.
        let values =
            |a: u64, b: u64| move |_pid: u32, netns: u32| Ok(if netns == 1 { a } else { b });
        let first = o.poll([(1, 10), (2, 20)].into_iter(), values(100, 5));
        assert_eq!(
            first.rises,
            [Rise {
                netns: 2,
                new: 5,
                since_start: 5
            }]
        );
        let next = o.poll([(1, 10), (2, 20)].into_iter(), values(130, 5));
        assert_eq!(
            next.rises,
            [Rise {
                netns: 1,
                new: 30,
                since_start: 30
            }]
        );
        assert_eq!(o.since_start(), [(1, 30), (2, 5)]);
    }

    #[test]
    fn unreadable_namespaces_are_reported_and_keep_their_count() {
        let mut o = Overflows::default();
        o.poll([(3, 1)].into_iter(), |_, _| Ok(4));
        let poll = o.poll([(3, 1)].into_iter(), |_, _| Err(io::Error::other("gone")));
        assert_eq!(poll.unreadable, [3]);
        assert_eq!(o.since_start(), [(3, 4)]);
    }
}
