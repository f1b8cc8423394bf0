//! Polling the host once a second, off the per-event path: each
//! namespace's name, sysctls, kernel counters and listeners, read through a
//! process in it by the [`Readers`] the session is given.

use std::io;

use super::Session;
use crate::{
    host::{
        netns as names, netstat,
        sockdiag::{self, DiagSocket},
        sysctl,
    },
    kernel::monotonic_ns,
    model::{ListenerSample, NetnsName, Sysctls, Values},
};

/// How the session reads the host: each namespace through a process in it
/// (`pid`, `netns`), and the clock.
#[derive(Clone, Copy)]
pub struct Readers {
    /// The namespace's `netstat` and `snmp` counters.
    pub counters: fn(u32, u32) -> io::Result<Values>,
    pub sysctls: fn(u32, u32) -> io::Result<Sysctls>,
    pub name: fn(u32, u32) -> NetnsName,
    /// Its listening sockets and their accept queues.
    pub listeners: fn(u32, u32) -> io::Result<Vec<ListenerSample>>,
    /// Its connections (full sockets, no listeners).
    pub sockets: fn(u32, u32) -> io::Result<Vec<DiagSocket>>,
    /// The monotonic clock, in ns.
    pub now_ns: fn() -> u64,
}

impl Readers {
    /// The real ones: /proc, and /proc/sys from inside the namespace.
    pub fn host() -> Self {
        Self {
            counters: |pid, netns| {
                let netstat = netstat::read(pid, netns, "netstat")?;
                let snmp = netstat::read(pid, netns, "snmp")?;
                Ok(netstat::values(&[netstat, snmp]))
            },
            sysctls: sysctl::read_in,
            listeners: sockdiag::listeners_in,
            sockets: sockdiag::sockets_in,
            now_ns: monotonic_ns,
            name: |netns, pid| {
                names::name_of(netns, pid, &names::ip_netns_names(&names::IP_NETNS_DIRS))
            },
        }
    }
}

impl<W: io::Write, E: io::Write> Session<W, E> {
    /// Reads every namespace's counters (and, when due, its sysctls and
    /// name); says when connections got no timewait socket because a
    /// namespace's `tcp_max_tw_buckets` was reached.
    pub(super) fn poll_namespaces(&mut self, now_ns: u64) {
        let now_s = now_ns / 1_000_000_000;
        let readers = self.readers;
        let known: Vec<(u32, u32)> = self.pipeline.namespaces().with_process().collect();
        for &(netns, pid) in &known {
            if self.namespaces.unnamed(netns) {
                self.namespaces.set_name(netns, (readers.name)(netns, pid));
            }
            if self.namespaces.sysctls_due(netns, now_s)
                && let Ok(sysctls) = (readers.sysctls)(pid, netns)
            {
                self.namespaces.set_sysctls(netns, sysctls, now_s);
            }
        }
        for &(netns, pid) in &known {
            if let Ok(now) = (readers.listeners)(pid, netns) {
                self.listeners.sample(netns, &now);
            }
        }
        let poll = self
            .namespaces
            .poll(known.into_iter(), readers.counters, now_s);
        // Read through the next process seen there; what it counted so far
        // stays, until it has gone.
        for netns in poll.unreadable {
            self.pipeline.namespaces().forget(netns);
        }
        for netns in poll.gone {
            self.pipeline.namespaces().remove(netns);
        }
        if !self.timewait {
            return;
        }
        for rise in &poll.rises {
            self.warnings.overflows(rise, now_s);
        }
    }
}
