//! A process in each network namespace, so that the namespace's own counters
//! (`/proc/PID/net/netstat`, which shows the reader's namespace) can be read
//! through it: learnt from the start-up snapshot and from every transition
//! made in a process's system call, filters or not.

use rustc_hash::FxHashMap as HashMap;

/// At most this many namespaces are followed.
pub const MAX_NAMESPACES: usize = 256;

#[derive(Debug, Default)]
pub struct Namespaces {
    /// netns -> a pid in it; 0 once that process is known to have left.
    pids: HashMap<u32, u32>,
}

impl Namespaces {
    /// `pid` ran in `netns`; kept unless a live process is known there already.
    #[inline]
    pub fn note(&mut self, netns: u32, pid: u32) {
        if netns == 0 {
            return;
        }
        let full = self.pids.len() >= MAX_NAMESPACES;
        match self.pids.get_mut(&netns) {
            Some(known) if *known == 0 => *known = pid,
            Some(_) => {}
            None if !full => {
                self.pids.insert(netns, pid);
            }
            None => {}
        }
    }

    /// The process known in `netns` is gone (or left it): the next one seen
    /// there takes its place.
    pub fn forget(&mut self, netns: u32) {
        if let Some(pid) = self.pids.get_mut(&netns) {
            *pid = 0;
        }
    }

    /// A namespace that went away.
    pub fn remove(&mut self, netns: u32) {
        self.pids.remove(&netns);
    }

    /// (netns, pid) of every namespace with a process known in it.
    pub fn with_process(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.pids
            .iter()
            .filter(|(_, pid)| **pid != 0)
            .map(|(netns, pid)| (*netns, *pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_process_per_namespace() {
        let mut ns = Namespaces::default();
        ns.note(7, 100);
        ns.note(7, 200);
        ns.note(0, 300);
        assert_eq!(ns.with_process().collect::<Vec<_>>(), [(7, 100)]);
        ns.forget(7);
        assert_eq!(ns.with_process().count(), 0);
        ns.note(7, 200);
        assert_eq!(ns.with_process().collect::<Vec<_>>(), [(7, 200)]);
    }

    #[test]
    fn bounded() {
        let mut ns = Namespaces::default();
        for netns in 1..=(MAX_NAMESPACES as u32 + 10) {
            ns.note(netns, 1);
        }
        assert_eq!(ns.with_process().count(), MAX_NAMESPACES);
    }
}
