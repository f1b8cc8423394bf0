//! Every network namespace tcptrace has seen: what it is called, its
//! sysctls, and the kernel's own TCP counters for it (`netstat`/`snmp`)
//! since tracing started and since the last summary. Polled once a second
//! through a process in each namespace, off the per-event path; reading the
//! files is `host`'s job, done by the readers the caller passes in.
//! `TcpExtTCPTimeWaitOverflow` rising is said at once: connections that got
//! no timewait socket because `tcp_max_tw_buckets` was reached.

use std::{collections::BTreeMap, io};

use rustc_hash::FxHashSet as HashSet;

use crate::model::{COUNTERS, NetnsName, Sysctls, Values};

/// Index of `TcpExtTCPTimeWaitOverflow` in `COUNTERS`.
const TW_OVERFLOW: usize = 7;

/// Sysctls are read again after this many seconds.
const SYSCTLS_EVERY_S: u64 = 10;

/// A namespace no process can be found in for this long has gone away (its
/// last process exited, or `ip netns del`): it is dropped.
pub const GONE_AFTER_S: u64 = 10;

#[derive(Debug, Default)]
struct Netns {
    name: Option<NetnsName>,
    sysctls: Option<Sysctls>,
    /// When the sysctls were last read (seconds, monotonic).
    sysctls_at: Option<u64>,
    /// The values before tracing: read at the first poll for a namespace
    /// that existed at start-up, 0 for one created since. `None` until
    /// first read.
    base: Option<Values>,
    last: Values,
    /// The values at the last summary.
    at_summary: Option<Values>,
    /// Since when (seconds) no process in it could be read through.
    unreadable_since: Option<u64>,
}

impl Netns {
    fn since(&self, from: Option<&Values>) -> Values {
        let from = from.copied().or(self.base).unwrap_or(self.last);
        std::array::from_fn(|i| self.last[i].saturating_sub(from[i]))
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
    /// to another namespace): read through the next one seen there.
    pub unreadable: Vec<u32>,
    /// Namespaces dropped: no process seen in them for `GONE_AFTER_S`.
    pub gone: Vec<u32>,
}

/// One namespace, as the summaries show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsReport {
    pub netns: u32,
    pub name: Option<NetnsName>,
    pub sysctls: Option<Sysctls>,
    /// The kernel's values as last read (what node_exporter exports).
    pub now: Values,
    pub since_start: Values,
    pub since_last_summary: Values,
}

#[derive(Default)]
pub struct NetnsTable {
    by_netns: BTreeMap<u32, Netns>,
    at_start: HashSet<u32>,
}

impl NetnsTable {
    /// A namespace that existed at start-up: its counts before tracing are
    /// taken at the first poll. Any other is new, and all of its counts
    /// happened while tracing.
    pub fn existed_at_start(&mut self, netns: u32) {
        self.at_start.insert(netns);
    }

    /// Reads the counters of each namespace through the process given for it
    /// (`read(pid, netns)`), at `now_s` (seconds).
    pub fn poll(
        &mut self,
        namespaces: impl Iterator<Item = (u32, u32)>,
        mut read: impl FnMut(u32, u32) -> io::Result<Values>,
        now_s: u64,
    ) -> Poll {
        let mut poll = Poll::default();
        let mut read_now = HashSet::default();
        for (netns, pid) in namespaces {
            let Ok(values) = read(pid, netns) else {
                poll.unreadable.push(netns);
                continue;
            };
            read_now.insert(netns);
            let new = !self.at_start.contains(&netns);
            let ns = self.by_netns.entry(netns).or_default();
            ns.unreadable_since = None;
            let base = *ns
                .base
                .get_or_insert(if new { [0; COUNTERS.len()] } else { values });
            let previous = ns.last[TW_OVERFLOW].max(base[TW_OVERFLOW]);
            ns.last = values;
            if values[TW_OVERFLOW] > previous {
                poll.rises.push(Rise {
                    netns,
                    new: values[TW_OVERFLOW] - previous,
                    since_start: values[TW_OVERFLOW] - base[TW_OVERFLOW],
                });
            }
        }
        poll.rises.sort_by_key(|r| r.netns);
        for (netns, ns) in &mut self.by_netns {
            if !read_now.contains(netns) {
                let since = *ns.unreadable_since.get_or_insert(now_s);
                if now_s >= since + GONE_AFTER_S {
                    poll.gone.push(*netns);
                }
            }
        }
        for netns in &poll.gone {
            self.by_netns.remove(netns);
        }
        poll
    }

    /// Whether `netns` has no name yet.
    pub fn unnamed(&self, netns: u32) -> bool {
        self.by_netns.get(&netns).is_none_or(|ns| ns.name.is_none())
    }

    pub fn set_name(&mut self, netns: u32, name: NetnsName) {
        self.by_netns.entry(netns).or_default().name = Some(name);
    }

    /// Whether `netns`'s sysctls are due to be read (never, or not lately).
    pub fn sysctls_due(&self, netns: u32, now_s: u64) -> bool {
        self.by_netns
            .get(&netns)
            .and_then(|ns| ns.sysctls_at)
            .is_none_or(|at| now_s >= at + SYSCTLS_EVERY_S)
    }

    pub fn set_sysctls(&mut self, netns: u32, sysctls: Sysctls, now_s: u64) {
        let ns = self.by_netns.entry(netns).or_default();
        ns.sysctls = Some(sysctls);
        ns.sysctls_at = Some(now_s);
    }

    pub fn sysctls(&self, netns: u32) -> Option<&Sysctls> {
        self.by_netns.get(&netns)?.sysctls.as_ref()
    }

    pub fn name(&self, netns: u32) -> Option<&NetnsName> {
        self.by_netns.get(&netns)?.name.as_ref()
    }

    /// (netns, overflows since start) where there were any, in inode order.
    pub fn overflows_since_start(&self) -> Vec<(u32, u64)> {
        self.by_netns
            .iter()
            .map(|(netns, ns)| (*netns, ns.since(None)[TW_OVERFLOW]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Every namespace read at least once, in inode order; `summary`: this
    /// is a summary, so the next one counts from now.
    pub fn report(&mut self, summary: bool) -> Vec<NetnsReport> {
        let mut rows = Vec::new();
        for (netns, ns) in &mut self.by_netns {
            if ns.base.is_none() {
                continue;
            }
            rows.push(NetnsReport {
                netns: *netns,
                name: ns.name.clone(),
                sysctls: ns.sysctls.clone(),
                now: ns.last,
                since_start: ns.since(None),
                since_last_summary: ns.since(ns.at_summary.as_ref()),
            });
            if summary {
                ns.at_summary = Some(ns.last);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overflows(n: u64) -> Values {
        let mut v = [0; COUNTERS.len()];
        v[TW_OVERFLOW] = n;
        v[0] = n * 2;
        v
    }

    #[test]
    fn counts_from_start_up_or_from_zero() {
        let mut t = NetnsTable::default();
        t.existed_at_start(1);
        // Namespace 1 had 100 before tracing; namespace 2 is new and has 5.
        let values = |a: u64, b: u64| {
            move |_pid: u32, netns: u32| Ok(overflows(if netns == 1 { a } else { b }))
        };
        let first = t.poll([(1, 10), (2, 20)].into_iter(), values(100, 5), 0);
        assert_eq!(
            first.rises,
            [Rise {
                netns: 2,
                new: 5,
                since_start: 5
            }]
        );
        let next = t.poll([(1, 10), (2, 20)].into_iter(), values(130, 5), 1);
        assert_eq!(
            next.rises,
            [Rise {
                netns: 1,
                new: 30,
                since_start: 30
            }]
        );
        assert_eq!(t.overflows_since_start(), [(1, 30), (2, 5)]);
    }

    #[test]
    fn summaries_count_since_the_last_one() {
        let mut t = NetnsTable::default();
        t.existed_at_start(1);
        t.poll([(1, 10)].into_iter(), |_, _| Ok(overflows(100)), 0);
        t.poll([(1, 10)].into_iter(), |_, _| Ok(overflows(110)), 1);
        let first = t.report(true);
        assert_eq!(first[0].since_start[TW_OVERFLOW], 10);
        assert_eq!(first[0].since_last_summary[TW_OVERFLOW], 10);
        assert_eq!(first[0].since_start[0], 20, "ActiveOpens");
        t.poll([(1, 10)].into_iter(), |_, _| Ok(overflows(113)), 2);
        let second = t.report(true);
        assert_eq!(second[0].since_start[TW_OVERFLOW], 13);
        assert_eq!(second[0].since_last_summary[TW_OVERFLOW], 3);
    }

    #[test]
    fn unreadable_namespaces_are_reported_and_keep_their_count() {
        let mut t = NetnsTable::default();
        t.poll([(3, 1)].into_iter(), |_, _| Ok(overflows(4)), 0);
        let poll = t.poll(
            [(3, 1)].into_iter(),
            |_, _| Err(io::Error::other("gone")),
            1,
        );
        assert_eq!(poll.unreadable, [3]);
        assert_eq!(t.overflows_since_start(), [(3, 4)]);
        // No process found there for a while: it has gone, and is dropped.
        let poll = t.poll(
            std::iter::empty(),
            |_, _| Ok(overflows(0)),
            1 + GONE_AFTER_S - 1,
        );
        assert!(poll.gone.is_empty());
        let poll = t.poll(
            std::iter::empty(),
            |_, _| Ok(overflows(0)),
            1 + GONE_AFTER_S,
        );
        assert_eq!(poll.gone, [3]);
        assert!(t.report(false).is_empty());
    }

    #[test]
    fn sysctls_and_names() {
        let mut t = NetnsTable::default();
        assert!(t.sysctls_due(3, 100) && t.unnamed(3));
        t.set_sysctls(3, Sysctls::default(), 100);
        assert!(!t.sysctls_due(3, 105));
        assert!(t.sysctls_due(3, 110));
        t.set_name(3, NetnsName::default());
        assert!(!t.unnamed(3));
        assert!(t.sysctls(3).is_some() && t.name(3).is_some());
        assert!(t.report(false).is_empty(), "never read");
    }
}
