//! Listening sockets and how full their accept queues got, sampled once a
//! second through sock_diag (`host::sockdiag`): where the namespace's
//! `ListenOverflows` rise, the listeners at their limit are the ones
//! dropping connections. Bounded: at most `MAX_LISTENERS`.

use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;

use crate::model::ListenerSample;

pub const MAX_LISTENERS: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// At the last sample.
    pub queued: u32,
    pub limit: u32,
    /// The most seen waiting at one sample since start.
    pub max_queued: u32,
    /// Samples that found the queue full.
    pub full_samples: u32,
}

#[derive(Default)]
pub struct Listeners {
    by: HashMap<(u32, SocketAddr), Queue>,
}

impl Listeners {
    /// One sample of namespace `netns`'s listeners; those gone since the
    /// last sample of that namespace are dropped.
    pub fn sample(&mut self, netns: u32, now: &[ListenerSample]) {
        self.by
            .retain(|(ns, addr), _| *ns != netns || now.iter().any(|l| l.local == *addr));
        for l in now {
            let key = (netns, l.local);
            if !self.by.contains_key(&key) && self.by.len() >= MAX_LISTENERS {
                continue;
            }
            let q = self.by.entry(key).or_default();
            q.queued = l.queued;
            q.limit = l.limit;
            q.max_queued = q.max_queued.max(l.queued);
            // Full: the kernel drops once more than `limit` wait.
            if l.limit > 0 && l.queued > l.limit {
                q.full_samples += 1;
            }
        }
    }

    /// Every listener: (netns, address, queue).
    pub fn iter(&self) -> impl Iterator<Item = (u32, SocketAddr, Queue)> + '_ {
        self.by.iter().map(|((netns, addr), q)| (*netns, *addr, *q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, queued: u32, limit: u32) -> ListenerSample {
        ListenerSample {
            local: addr.parse().unwrap(),
            queued,
            limit,
            inode: 1,
        }
    }

    #[test]
    fn samples_keep_the_worst_and_drop_what_is_gone() {
        let mut t = Listeners::default();
        t.sample(1, &[l("0.0.0.0:80", 2, 4), l("0.0.0.0:81", 0, 4)]);
        t.sample(1, &[l("0.0.0.0:80", 5, 4)]);
        t.sample(2, &[l("0.0.0.0:80", 0, 128)]);
        t.sample(1, &[l("0.0.0.0:80", 1, 4)]);
        let mut all: Vec<_> = t.iter().collect();
        all.sort_by_key(|(ns, addr, _)| (*ns, *addr));
        assert_eq!(all.len(), 2, "81 closed");
        let q = all[0].2;
        assert_eq!((q.queued, q.max_queued, q.full_samples), (1, 5, 1));
        assert_eq!(all[1].0, 2);
    }
}
