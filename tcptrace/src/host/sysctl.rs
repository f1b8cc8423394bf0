//! The network sysctls behind port exhaustion, TIME_WAIT and listen queues,
//! as one network namespace sees them. `/proc/sys/net` shows the namespace
//! of the task that reads it, so [`read_in`] reads them from a thread that
//! has joined the namespace (`setns`); the parsing is pure and tested on the
//! output of `sysctl(8)` copied from this kernel.

use std::{
    fs,
    io::{self, BufRead},
};

use crate::model::Sysctls;

/// The sysctls tcptrace reads, by their sysctl(8) names.
pub const NAMES: [&str; 11] = [
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.somaxconn",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_rfc1337",
];

impl Sysctls {
    /// Takes one value, by its sysctl(8) name; unknown names are ignored.
    pub fn set(&mut self, name: &str, value: &str) {
        let value = value.trim();
        fn n<T: std::str::FromStr>(value: &str) -> Option<T> {
            value.parse().ok()
        }
        match name {
            "net.ipv4.ip_local_port_range" => self.port_range = parse_range(value),
            "net.ipv4.ip_local_reserved_ports" => self.reserved_ports = parse_reserved(value),
            "net.ipv4.tcp_tw_reuse" => self.tw_reuse = n(value),
            "net.ipv4.tcp_tw_reuse_delay" => self.tw_reuse_delay_ms = n(value),
            "net.ipv4.tcp_timestamps" => self.timestamps = n(value),
            "net.ipv4.tcp_fin_timeout" => self.fin_timeout_s = n(value),
            "net.ipv4.tcp_max_tw_buckets" => self.max_tw_buckets = n(value),
            "net.ipv4.tcp_max_syn_backlog" => self.max_syn_backlog = n(value),
            "net.core.somaxconn" => self.somaxconn = n(value),
            "net.ipv4.tcp_syncookies" => self.syncookies = n(value),
            "net.ipv4.tcp_rfc1337" => self.rfc1337 = n(value),
            _ => {}
        }
    }

    /// Parses `name = value` lines, as `sysctl NAME...` prints them.
    pub fn parse(reader: impl BufRead) -> Self {
        let mut s = Self::default();
        for line in reader.lines().map_while(Result::ok) {
            if let Some((name, value)) = line.split_once('=') {
                s.set(name.trim(), value);
            }
        }
        s
    }
}

/// "32768\t60999" -> (32768, 60999).
pub fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut words = text.split_whitespace();
    let lo = words.next()?.parse().ok()?;
    let hi = words.next()?.parse().ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// "8080,9000-9010" -> [(8080, 8080), (9000, 9010)]; empty when none.
pub fn parse_reserved(text: &str) -> Vec<(u16, u16)> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .filter_map(|part| match part.split_once('-') {
            Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
            None => part.parse().ok().map(|p| (p, p)),
        })
        .filter(|(lo, hi)| lo <= hi)
        .collect()
}

/// The path of a sysctl under /proc/sys.
fn path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Reads the sysctls of network namespace `netns` through process `pid`
/// (which must be in it): a short-lived thread joins the namespace and reads
/// `/proc/sys`, leaving the rest of tcptrace where it is.
pub fn read_in(pid: u32, netns: u32) -> io::Result<Sysctls> {
    super::netns::in_namespace(pid, netns, || {
        let mut s = Sysctls::default();
        for name in NAMES {
            if let Ok(value) = fs::read_to_string(path(name)) {
                s.set(name, &value);
            }
        }
        Ok(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sysctl` output copied from this kernel (Linux 6.18, defaults).
    const FIXTURE: &str = include_str!("fixtures/sysctl");

    #[test]
    fn parses_this_kernels_defaults() {
        let s = Sysctls::parse(FIXTURE.as_bytes());
        assert_eq!(s.port_range, Some((32768, 60999)));
        assert_eq!(s.reserved_ports, []);
        assert_eq!(
            (s.tw_reuse, s.tw_reuse_delay_ms, s.timestamps),
            (Some(2), Some(1000), Some(1))
        );
        assert_eq!(
            (s.fin_timeout_s, s.max_tw_buckets),
            (Some(60), Some(131072))
        );
        assert_eq!((s.max_syn_backlog, s.somaxconn), (Some(2048), Some(4096)));
        assert_eq!((s.syncookies, s.rfc1337), (Some(1), Some(0)));
    }

    #[test]
    fn ranges_and_reserved_ports() {
        assert_eq!(parse_range("40000 40999"), Some((40000, 40999)));
        assert_eq!(parse_range("5 4"), None);
        assert_eq!(parse_range("x"), None);
        assert_eq!(
            parse_reserved("8080,9000-9010\n"),
            [(8080, 8080), (9000, 9010)]
        );
        assert_eq!(parse_reserved(""), []);
        assert_eq!(parse_reserved("10-5,x,7"), [(7, 7)]);
    }

    #[test]
    fn paths() {
        assert_eq!(path("net.core.somaxconn"), "/proc/sys/net/core/somaxconn");
    }
}
