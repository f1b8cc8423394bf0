//! The arithmetic of ephemeral port exhaustion toward one destination, as
//! small pure functions (documented in tcptrace/doc/ports.md).
//!
//! connect() picks a local port from `ip_local_port_range` (less
//! `ip_local_reserved_ports`) that makes the 4-tuple unique: toward one
//! destination (local address, remote address, remote port) each port can be
//! held by one socket at a time, from connect() until its connection ends —
//! and, on the side that closed first, until its timewait socket ends:
//! 60 s, unless `tcp_tw_reuse` lets a new connect() take it over after
//! `tcp_tw_reuse_delay` (1 s).

use std::net::IpAddr;

/// Ports connect() can choose from: the range less the reserved ports in it.
pub fn capacity(range: (u16, u16), reserved: &[(u16, u16)]) -> u32 {
    let (lo, hi) = range;
    if lo > hi {
        return 0;
    }
    let mut taken = 0u32;
    // Reserved ranges may overlap: count each port of the range once.
    let mut spans: Vec<(u16, u16)> = reserved
        .iter()
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .filter(|(a, b)| a <= b)
        .collect();
    spans.sort_unstable();
    let mut next = lo as u32;
    for (a, b) in spans {
        let (a, b) = ((a as u32).max(next), b as u32);
        if a <= b {
            taken += b - a + 1;
            next = b + 1;
        }
    }
    (hi as u32 - lo as u32 + 1) - taken
}

/// Whether a new connect() toward `remote` from `local` may take over a
/// timewait socket of the same 4-tuple (`tcp_twsk_unique`): `tcp_tw_reuse`
/// 1 for every outgoing connection, 2 only where either address is loopback,
/// 0 never; and only with TCP timestamps (PAWS makes it safe).
pub fn tw_reuse_applies(tw_reuse: u8, timestamps: u8, local: IpAddr, remote: IpAddr) -> bool {
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    timestamps != 0
        && match tw_reuse {
            1 => true,
            2 => loopback(local) || loopback(remote),
            _ => false,
        }
}

/// How long a connection toward the destination keeps its port, in seconds:
/// its lifetime, plus, when this host closes first, its timewait socket's.
/// `closed_locally`: the share of connections this host closes first (the
/// others' TIME_WAIT is the peer's and costs this host no port).
pub fn hold_time(lifetime_s: f64, closed_locally: f64, timewait_s: f64) -> f64 {
    lifetime_s + closed_locally.clamp(0.0, 1.0) * timewait_s
}

/// New connections per second the destination sustains for ever: Little's
/// law, ports ÷ time each is held. `None` when nothing is held long enough
/// to measure.
pub fn sustainable_rate(capacity: u32, hold_s: f64) -> Option<f64> {
    (hold_s > 0.0).then(|| capacity as f64 / hold_s)
}

/// Seconds until connect() runs out of ports toward the destination, at the
/// current rates: `None` when it does not (new connections at or below the
/// sustainable rate, or ports released as fast as taken); 0 once full.
/// `growth`: ports held per second more, measured (new connections less
/// ports released) over the recent window.
pub fn time_left(
    capacity: u32,
    held: u64,
    rate: f64,
    sustainable: Option<f64>,
    growth: f64,
) -> Option<f64> {
    if held >= u64::from(capacity) {
        return Some(0.0);
    }
    let draining = sustainable.is_some_and(|s| rate > s) && growth > 0.0;
    draining.then(|| (capacity as f64 - held as f64) / growth)
}

/// Held ports as a share of capacity (0 to 1).
pub fn usage(held: u64, capacity: u32) -> f64 {
    match capacity {
        0 => 1.0,
        c => held as f64 / c as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_sustains_470_connections_a_second() {
        // 32768-60999: 28 232 ports; TIME_WAIT 60 s, no tcp_tw_reuse.
        let c = capacity((32768, 60999), &[]);
        assert_eq!(c, 28_232);
        let hold = hold_time(0.0, 1.0, 60.0);
        let rate = sustainable_rate(c, hold).unwrap();
        assert!((rate - 470.5).abs() < 0.1, "{rate}");
    }

    #[test]
    fn reserved_ports_count_once_and_only_inside_the_range() {
        assert_eq!(capacity((40000, 40999), &[]), 1000);
        assert_eq!(
            capacity((40000, 40999), &[(40000, 40009), (40005, 40019)]),
            980
        );
        assert_eq!(
            capacity((40000, 40999), &[(1, 39999), (41000, 50000)]),
            1000
        );
        assert_eq!(
            capacity((40000, 40999), &[(39990, 40000), (40999, 40999)]),
            998
        );
        assert_eq!(capacity((5, 4), &[]), 0);
    }

    #[test]
    fn tw_reuse_settings() {
        let (lo, peer) = ("127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(tw_reuse_applies(1, 1, other, peer));
        assert!(!tw_reuse_applies(1, 0, other, peer), "needs timestamps");
        assert!(tw_reuse_applies(2, 1, lo, lo));
        assert!(tw_reuse_applies(
            2,
            1,
            other,
            "::ffff:127.0.0.1".parse().unwrap()
        ));
        assert!(!tw_reuse_applies(2, 1, other, peer), "2 is loopback only");
        assert!(!tw_reuse_applies(0, 1, lo, lo));
    }

    #[test]
    fn hold_time_counts_timewait_for_local_closes_only() {
        assert_eq!(hold_time(0.5, 1.0, 60.0), 60.5);
        assert_eq!(hold_time(0.5, 0.0, 60.0), 0.5, "the peer holds TIME_WAIT");
        assert_eq!(hold_time(0.0, 0.5, 60.0), 30.0);
        assert_eq!(sustainable_rate(1000, 0.0), None);
        assert_eq!(sustainable_rate(1000, 1.0), Some(1000.0));
    }

    #[test]
    fn time_left_at_twice_the_sustainable_rate() {
        // 1000 ports held 60 s: 16.7/s sustained. At 33.3/s, nothing is
        // released during the first minute: half full after 15 s, full 15 s
        // later.
        let sustainable = sustainable_rate(1000, 60.0);
        let left = time_left(1000, 500, 33.3, sustainable, 33.3).unwrap();
        assert!((left - 15.0).abs() < 0.1, "{left}");
        assert_eq!(
            time_left(1000, 1000, 33.3, sustainable, 0.0),
            Some(0.0),
            "full"
        );
        // Below the sustainable rate the ports held level off: no deadline,
        // although they grow for the first minute.
        assert_eq!(time_left(1000, 300, 10.0, sustainable, 10.0), None);
        // Above it but released as fast as taken (a burst that passed).
        assert_eq!(time_left(1000, 300, 20.0, sustainable, 0.0), None);
        assert_eq!(usage(250, 1000), 0.25);
        assert_eq!(usage(1, 0), 1.0);
    }
}
