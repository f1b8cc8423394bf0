//! Filters. Family and ports are applied in the kernel (load-time globals, so
//! filtered-out traffic costs next to nothing); process, addresses and network
//! namespace here, once the connection's owner is known.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tcptrace_common::{AF_INET, AF_INET6, KernelFilter, MAX_PORT_FILTER};

use crate::model::Task;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("at most {MAX_PORT_FILTER} ports per --{0}")]
    TooManyPorts(&'static str),
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub laddrs: Vec<IpNet>,
    pub raddrs: Vec<IpNet>,
    pub netns: Vec<u32>,
}

fn matches(nets: &[IpNet], ip: IpAddr) -> bool {
    if nets.is_empty() {
        return true;
    }
    // A v4-mapped IPv6 address is the IPv4 host it maps.
    let v4 = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    nets.iter()
        .any(|net| net.contains(&ip) || v4.is_some_and(|v4| net.contains(&v4)))
}

impl Filter {
    /// The `--netns` inodes that none of the namespaces `present` has: a
    /// namespace's inode is only known once it exists, so these are typos.
    pub fn unknown_netns(&self, present: impl Fn(u32) -> bool) -> Vec<u32> {
        self.netns
            .iter()
            .copied()
            .filter(|&n| !present(n))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.comms.is_empty()
            && self.laddrs.is_empty()
            && self.raddrs.is_empty()
            && self.netns.is_empty()
    }

    /// Whether what happens in network namespace `netns` is shown.
    pub fn accepts_netns(&self, netns: u32) -> bool {
        self.netns.is_empty() || self.netns.contains(&netns)
    }

    /// Whether a socket with this owner, endpoints and namespace is shown.
    pub fn accepts(
        &self,
        owner: Option<&Task>,
        local: &SocketAddr,
        remote: &SocketAddr,
        netns: u32,
    ) -> bool {
        (self.pids.is_empty() || owner.is_some_and(|o| self.pids.contains(&o.pid)))
            && (self.comms.is_empty()
                || owner.is_some_and(|o| self.comms.iter().any(|c| *c == o.comm.as_str())))
            && self.accepts_place(local, remote, netns)
    }

    /// The address and namespace filters alone, for what has no owner to
    /// match (retransmits counted per destination).
    pub fn accepts_place(&self, local: &SocketAddr, remote: &SocketAddr, netns: u32) -> bool {
        matches(&self.laddrs, local.ip())
            && matches(&self.raddrs, remote.ip())
            && self.accepts_netns(netns)
    }
}

/// The kernel-side part of the filters.
/// Whether the kernel-side filter lets a socket's records through (for the
/// sockets found at start-up, which the kernel never filtered).
pub fn kernel_accepts(f: &KernelFilter, local: &SocketAddr, remote: &SocketAddr) -> bool {
    let family = match local {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    };
    f.accepts(family, local.port(), remote.port())
}

pub fn kernel_filter(
    ipv4: bool,
    ipv6: bool,
    lports: &[u16],
    rports: &[u16],
) -> Result<KernelFilter, FilterError> {
    let mut f = KernelFilter {
        family: match (ipv4, ipv6) {
            (true, false) => AF_INET,
            (false, true) => AF_INET6,
            _ => 0,
        },
        ..KernelFilter::default()
    };
    for (ports, list, count, name) in [
        (lports, &mut f.lports, &mut f.lport_count, "lport"),
        (rports, &mut f.rports, &mut f.rport_count, "rport"),
    ] {
        if ports.len() > MAX_PORT_FILTER {
            return Err(FilterError::TooManyPorts(name));
        }
        list[..ports.len()].copy_from_slice(ports);
        *count = ports.len() as u16;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::task;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn namespaces_asked_for_that_do_not_exist() {
        let filter = Filter {
            netns: vec![4_026_531_840, 7, 4_026_532_001],
            ..Filter::default()
        };
        let present = |n| n >= 4_026_531_840;
        assert_eq!(filter.unknown_netns(present), vec![7]);
        assert!(Filter::default().unknown_netns(|_| false).is_empty());
    }

    #[test]
    fn sockets_found_at_start_up_pass_the_kernel_filter_or_not() {
        let (v4, v6) = (addr("10.0.0.1:80"), addr("[::ffff:10.0.0.1]:80"));
        let peer = addr("10.0.0.2:5000");
        let all = kernel_filter(false, false, &[], &[]).unwrap();
        assert!(kernel_accepts(&all, &v4, &peer));
        let only_v6 = kernel_filter(false, true, &[], &[]).unwrap();
        assert!(!kernel_accepts(&only_v6, &v4, &peer));
        assert!(kernel_accepts(&only_v6, &v6, &peer), "v4-mapped is IPv6");
        let lport = kernel_filter(false, false, &[443, 80], &[]).unwrap();
        assert!(kernel_accepts(&lport, &v4, &peer));
        assert!(!kernel_accepts(&lport, &peer, &v4));
        let rport = kernel_filter(false, false, &[], &[5000]).unwrap();
        assert!(kernel_accepts(&rport, &v4, &peer));
        assert!(!kernel_accepts(&rport, &peer, &v4));
    }

    #[test]
    fn agent_filters() {
        let nginx = task(10, "nginx");
        let (l, r) = (addr("10.0.0.1:80"), addr("192.0.2.7:5000"));
        assert!(Filter::default().accepts(None, &l, &r, 1));
        let f = Filter {
            pids: vec![10],
            ..Filter::default()
        };
        assert!(f.accepts(Some(&nginx), &l, &r, 1));
        assert!(
            !f.accepts(None, &l, &r, 1),
            "unknown owner does not match a pid"
        );
        let f = Filter {
            comms: vec!["nginx".into()],
            ..Filter::default()
        };
        assert!(f.accepts(Some(&nginx), &l, &r, 1));
        assert!(!f.accepts(Some(&task(11, "curl")), &l, &r, 1));
        let f = Filter {
            raddrs: vec!["192.0.2.0/24".parse().unwrap()],
            ..Filter::default()
        };
        assert!(f.accepts(None, &l, &r, 1));
        assert!(
            f.accepts(None, &l, &addr("[::ffff:192.0.2.9]:1"), 1),
            "v4-mapped"
        );
        assert!(!f.accepts(None, &l, &addr("198.51.100.1:1"), 1));
        let f = Filter {
            laddrs: vec!["10.0.0.1/32".parse().unwrap()],
            netns: vec![7],
            ..Filter::default()
        };
        assert!(!f.accepts(None, &l, &r, 1));
        assert!(f.accepts(None, &l, &r, 7));
    }

    #[test]
    fn kernel_side() {
        let f = kernel_filter(true, false, &[80, 443], &[]).unwrap();
        assert_eq!((f.family, f.lport_count, f.rport_count), (AF_INET, 2, 0));
        assert!(f.accepts(AF_INET, 443, 1));
        assert!(!f.accepts(AF_INET6, 443, 1));
        assert_eq!(kernel_filter(false, false, &[], &[]).unwrap().family, 0);
        assert_eq!(
            kernel_filter(false, false, &[1; 9], &[]),
            Err(FilterError::TooManyPorts("lport"))
        );
    }
}
