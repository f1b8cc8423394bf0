//! The kernel's network counters, `/proc/PID/net/netstat` and `.../snmp`:
//! groups of a line of names followed by a line of values ("TcpExt: A B ..."
//! then "TcpExt: 1 2 ..."). They show the reader's network namespace, so a
//! namespace's counters are read through a process inside it.

use std::{
    fs,
    io::{self, BufRead, BufReader},
    os::unix::fs::MetadataExt as _,
};

use crate::model::{COUNTERS, Values};

/// Counters of one file: (group, name, value), in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    values: Vec<(String, String, u64)>,
}

impl Counters {
    /// A counter, e.g. `get("TcpExt", "TCPTimeWaitOverflow")`.
    pub fn get(&self, group: &str, name: &str) -> Option<u64> {
        self.values
            .iter()
            .find(|(g, n, _)| g == group && n == name)
            .map(|(_, _, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Parses the header-line/value-line format. A value that is not a number
/// (or a header without its value line) is skipped; so is a negative value
/// (`Tcp: MaxConn -1`).
pub fn parse(reader: impl BufRead) -> Counters {
    let mut values = Vec::new();
    let mut lines = reader.lines().map_while(Result::ok);
    while let (Some(names), Some(numbers)) = (lines.next(), lines.next()) {
        let (Some((group, names)), Some((group2, numbers))) =
            (names.split_once(':'), numbers.split_once(':'))
        else {
            continue;
        };
        if group != group2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(numbers.split_whitespace()) {
            if let Ok(value) = value.parse() {
                values.push((group.to_owned(), name.to_owned(), value));
            }
        }
    }
    Counters { values }
}

/// The counters of `/proc/PID/net/FILE` for process `pid`, which must still
/// be in network namespace `netns`.
pub fn read(pid: u32, netns: u32, file: &str) -> io::Result<Counters> {
    let ns = fs::metadata(format!("/proc/{pid}/ns/net"))?;
    if ns.ino() as u32 != netns {
        return Err(io::Error::other("process left the namespace"));
    }
    let file = fs::File::open(format!("/proc/{pid}/net/{file}"))?;
    Ok(parse(BufReader::new(file)))
}

/// `TcpExtTCPTimeWaitOverflow` of network namespace `netns`, read through
/// process `pid`: connections that closed without a timewait socket because
/// `tcp_max_tw_buckets` was reached.
pub fn tw_overflows(pid: u32, netns: u32) -> io::Result<u64> {
    read(pid, netns, "netstat")?
        .get("TcpExt", "TCPTimeWaitOverflow")
        .ok_or_else(|| io::Error::other("no TcpExt TCPTimeWaitOverflow"))
}

/// The kept counters out of a namespace's `netstat` and `snmp` (0 where the
/// kernel has no such counter).
pub fn values(counters: &[Counters]) -> Values {
    COUNTERS.map(|(group, name)| {
        counters
            .iter()
            .find_map(|c| c.get(group, name))
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this kernel (Linux 6.18): /proc/net/netstat and /proc/net/snmp.
    const NETSTAT: &str = include_str!("fixtures/netstat");
    const SNMP: &str = include_str!("fixtures/snmp");

    #[test]
    fn parses_netstat() {
        let c = parse(NETSTAT.as_bytes());
        assert!(c.len() > 100, "{}", c.len());
        for name in [
            "TW",
            "TWRecycled",
            "TWKilled",
            "TCPTimeWaitOverflow",
            "ListenOverflows",
            "ListenDrops",
            "TCPReqQFullDoCookies",
            "TCPReqQFullDrop",
            "SyncookiesSent",
            "TCPAbortOnData",
            "TCPAbortOnClose",
            "TCPAbortOnLinger",
        ] {
            assert!(c.get("TcpExt", name).is_some(), "TcpExt {name}");
        }
        assert!(c.get("IpExt", "InOctets").is_some());
        assert_eq!(c.get("TcpExt", "Nope"), None);
        assert_eq!(c.get("IpExt", "TW"), None, "groups are apart");
    }

    #[test]
    fn parses_snmp() {
        let c = parse(SNMP.as_bytes());
        for name in ["ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets"] {
            assert!(c.get("Tcp", name).is_some(), "Tcp {name}");
        }
        // "Tcp: ... MaxConn -1": not a counter.
        assert_eq!(c.get("Tcp", "MaxConn"), None);
        assert!(c.get("Udp", "InDatagrams").is_some());
    }

    #[test]
    fn tolerates_broken_text() {
        let text = "TcpExt: A B\nTcpExt: 1 x\nIpExt: C\nOther: 3\nLone: D\n";
        let c = parse(text.as_bytes());
        assert_eq!(c.get("TcpExt", "A"), Some(1));
        assert_eq!(c.get("TcpExt", "B"), None);
        assert_eq!(c.get("IpExt", "C"), None, "value line of another group");
        assert!(parse("".as_bytes()).is_empty());
    }

    #[test]
    fn values_from_both_files() {
        let netstat = parse("TcpExt: TW TCPTimeWaitOverflow\nTcpExt: 4 7\n".as_bytes());
        let snmp = parse("Tcp: ActiveOpens PassiveOpens\nTcp: 9 8\n".as_bytes());
        let v = values(&[netstat, snmp]);
        assert_eq!((v[0], v[1], v[4], v[7], v[15]), (9, 8, 4, 7, 0));
        assert_eq!(COUNTERS[7], ("TcpExt", "TCPTimeWaitOverflow"));
    }
}
