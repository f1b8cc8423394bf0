//! The timewait tracker's table: timewait sockets by 4-tuple and namespace
//! (the kernel never has two for one), in a compact key, split in shards so
//! that it grows without doubling the agent's memory. At the default
//! `tcp_max_tw_buckets` a host can have 131 072 of them per namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustc_hash::FxHashMap as HashMap;

/// A 4-tuple and namespace in 44 bytes (`SocketAddr`s take 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct TwKey {
    netns: u32,
    lport: u16,
    rport: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
    v6: bool,
}

impl TwKey {
    pub(super) fn new(netns: u32, local: SocketAddr, remote: SocketAddr) -> Self {
        let bytes = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        Self {
            netns,
            lport: local.port(),
            rport: remote.port(),
            laddr: bytes(local.ip()),
            raddr: bytes(remote.ip()),
            v6: local.is_ipv6(),
        }
    }

    fn addr(&self, bytes: [u8; 16], port: u16) -> SocketAddr {
        let ip = match self.v6 {
            true => IpAddr::V6(Ipv6Addr::from(bytes)),
            false => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        };
        SocketAddr::new(ip, port)
    }

    pub(super) fn netns(&self) -> u32 {
        self.netns
    }

    pub(super) fn local(&self) -> SocketAddr {
        self.addr(self.laddr, self.lport)
    }

    pub(super) fn remote(&self) -> SocketAddr {
        self.addr(self.raddr, self.rport)
    }
}

/// A map by 4-tuple split in 16 tables, so that each grows on its own: a
/// single table of 131 072 timewait sockets (32 MiB) needs its old and new
/// arrays at once while it doubles (measured: peak RSS 72 instead of 54 MiB);
/// a sixteenth of that is noise. Sizing it up front instead would make it
/// resident in full after a few thousand entries.
pub(super) struct Sharded<V> {
    shards: [HashMap<TwKey, V>; 16],
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| HashMap::default()),
        }
    }
}

impl<V> Sharded<V> {
    fn shard(&self, key: &TwKey) -> usize {
        // The ports vary most between timewait sockets of one host.
        usize::from((key.lport ^ key.rport.rotate_left(8)) & 15)
    }

    pub(super) fn get(&self, key: &TwKey) -> Option<&V> {
        self.shards[self.shard(key)].get(key)
    }

    pub(super) fn get_mut(&mut self, key: &TwKey) -> Option<&mut V> {
        let i = self.shard(key);
        self.shards[i].get_mut(key)
    }

    pub(super) fn contains_key(&self, key: &TwKey) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn insert(&mut self, key: TwKey, value: V) {
        let i = self.shard(&key);
        self.shards[i].insert(key, value);
    }

    pub(super) fn remove(&mut self, key: &TwKey) -> Option<V> {
        let i = self.shard(key);
        self.shards[i].remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&TwKey, &V)> {
        self.shards.iter().flat_map(HashMap::iter)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.shards.iter_mut().flat_map(HashMap::values_mut)
    }

    /// Gives memory back from tables that have emptied out.
    pub(super) fn shrink_if_sparse(&mut self) {
        for shard in &mut self.shards {
            if shard.capacity() > 4 * shard.len() + 64 {
                shard.shrink_to_fit();
            }
        }
    }
}
