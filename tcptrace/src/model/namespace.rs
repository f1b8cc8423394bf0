//! What tcptrace knows of a network namespace, as plain values: its name,
//! its sysctls, the kernel counters it keeps, its listeners' queues. `host`
//! reads them and the aggregates keep them; neither imports the other.

use std::net::SocketAddr;

/// What a namespace is known as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetnsName {
    /// `ip netns` name, or "host".
    pub name: Option<String>,
    /// A process in it: (pid, comm).
    pub process: Option<(u32, String)>,
    /// That process's container, from its cgroup path.
    pub container: Option<String>,
}

impl NetnsName {
    /// One short label: the name; else the container; else the process.
    pub fn label(&self) -> Option<String> {
        if let Some(name) = &self.name {
            return Some(name.clone());
        }
        match (&self.container, &self.process) {
            (Some(container), _) => Some(container.clone()),
            (None, Some((pid, comm))) => Some(format!("{comm}[{pid}]")),
            (None, None) => None,
        }
    }
}

/// One namespace's values; `None` where the kernel has no such sysctl
/// (`tcp_tw_reuse_delay` is new in Linux 6.13) or it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sysctls {
    /// `ip_local_port_range`, inclusive.
    pub port_range: Option<(u16, u16)>,
    /// `ip_local_reserved_ports`, inclusive ranges.
    pub reserved_ports: Vec<(u16, u16)>,
    pub tw_reuse: Option<u8>,
    pub tw_reuse_delay_ms: Option<u32>,
    pub timestamps: Option<u8>,
    pub fin_timeout_s: Option<u32>,
    pub max_tw_buckets: Option<u64>,
    pub max_syn_backlog: Option<u32>,
    pub somaxconn: Option<u32>,
    pub syncookies: Option<u8>,
    pub rfc1337: Option<u8>,
}

/// The counters kept, as (group, name) in `/proc/net/{snmp,netstat}`.
pub const COUNTERS: [(&str, &str); 16] = [
    ("Tcp", "ActiveOpens"),
    ("Tcp", "PassiveOpens"),
    ("Tcp", "AttemptFails"),
    ("Tcp", "EstabResets"),
    ("TcpExt", "TW"),
    ("TcpExt", "TWRecycled"),
    ("TcpExt", "TWKilled"),
    ("TcpExt", "TCPTimeWaitOverflow"),
    ("TcpExt", "ListenOverflows"),
    ("TcpExt", "ListenDrops"),
    ("TcpExt", "TCPReqQFullDoCookies"),
    ("TcpExt", "TCPReqQFullDrop"),
    ("TcpExt", "SyncookiesSent"),
    ("TcpExt", "TCPAbortOnData"),
    ("TcpExt", "TCPAbortOnClose"),
    ("TcpExt", "TCPAbortOnLinger"),
];

/// The values of [`COUNTERS`], in their order.
pub type Values = [u64; COUNTERS.len()];

/// A listening socket and its accept queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSample {
    pub local: SocketAddr,
    /// Connections waiting to be accepted.
    pub queued: u32,
    /// The queue's limit.
    pub limit: u32,
    pub inode: u32,
}
