//! Kernel timestamps (CLOCK_MONOTONIC, from `bpf_ktime_get_ns`) to wall-clock
//! time. The calendar part of a timestamp is formatted once per second and
//! cached, so printing a transition costs no date arithmetic.

use std::{fmt::Write as _, io};

use chrono::{DateTime, Local, Utc};
use nix::time::{ClockId, clock_gettime};

/// Which wall clock to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
}

pub struct WallClock {
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, in nanoseconds.
    offset_ns: i64,
    zone: Zone,
    /// Cached "HH:MM:SS" (in `zone`) for `hms_sec`.
    hms_sec: i64,
    hms: String,
    /// Cached RFC 3339 "YYYY-MM-DDTHH:MM:SS" (UTC) for `rfc_sec`.
    rfc_sec: i64,
    rfc: String,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn new(zone: Zone) -> io::Result<Self> {
        let ns = |id| clock_gettime(id).map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec());
        let mono = ns(ClockId::CLOCK_MONOTONIC)?;
        let real = ns(ClockId::CLOCK_REALTIME)?;
        Ok(Self::with_offset(real - mono, zone))
    }

    pub fn with_offset(offset_ns: i64, zone: Zone) -> Self {
        Self {
            offset_ns,
            zone,
            hms_sec: i64::MIN,
            hms: String::new(),
            rfc_sec: i64::MIN,
            rfc: String::new(),
        }
    }

    /// Nanoseconds since the Unix epoch for a monotonic kernel timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> i64 {
        (mono_ns as i64).saturating_add(self.offset_ns)
    }

    /// Appends "HH:MM:SS.uuuuuu" (microseconds) in the configured zone.
    pub fn push_time_of_day(&mut self, out: &mut String, mono_ns: u64) {
        let (sec, nsec) = split(self.unix_ns(mono_ns));
        if sec != self.hms_sec {
            self.hms.clear();
            let utc = DateTime::<Utc>::from_timestamp(sec, 0).unwrap_or_default();
            let _ = match self.zone {
                Zone::Utc => write!(self.hms, "{}", utc.format("%H:%M:%S")),
                Zone::Local => write!(self.hms, "{}", utc.with_timezone(&Local).format("%H:%M:%S")),
            };
            self.hms_sec = sec;
        }
        out.push_str(&self.hms);
        out.push('.');
        push_padded(out, u64::from(nsec / 1000), 6);
    }

    /// Appends an RFC 3339 UTC timestamp with nanoseconds.
    pub fn push_rfc3339(&mut self, out: &mut String, mono_ns: u64) {
        let (sec, nsec) = split(self.unix_ns(mono_ns));
        if sec != self.rfc_sec {
            self.rfc.clear();
            let utc = DateTime::<Utc>::from_timestamp(sec, 0).unwrap_or_default();
            let _ = write!(self.rfc, "{}", utc.format("%Y-%m-%dT%H:%M:%S"));
            self.rfc_sec = sec;
        }
        out.push_str(&self.rfc);
        out.push('.');
        push_padded(out, u64::from(nsec), 9);
        out.push('Z');
    }
}

fn split(unix_ns: i64) -> (i64, u32) {
    (
        unix_ns.div_euclid(1_000_000_000),
        unix_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Appends `value` zero-padded to `width` digits.
pub fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T03:04:05Z minus 1000 s of uptime.
    const OFFSET: i64 = 1_795_316_645_000_000_000 - 1_000_000_000_000;

    #[test]
    fn formats_time_of_day_and_rfc3339() {
        let mut clock = WallClock::with_offset(OFFSET, Zone::Utc);
        let mut s = String::new();
        clock.push_time_of_day(&mut s, 1_000_000_000_000 + 123_456_789);
        assert_eq!(s, "03:04:05.123456");
        s.clear();
        clock.push_rfc3339(&mut s, 1_000_000_000_000 + 7);
        assert_eq!(s, "2026-11-22T03:04:05.000000007Z");
    }

    #[test]
    fn cache_follows_the_second() {
        let mut clock = WallClock::with_offset(OFFSET, Zone::Utc);
        let mut s = String::new();
        clock.push_time_of_day(&mut s, 1_000_000_000_000);
        s.clear();
        clock.push_time_of_day(&mut s, 1_001_999_999_999);
        assert_eq!(s, "03:04:06.999999");
    }

    #[test]
    fn new_reads_the_clocks() {
        let clock = WallClock::new(Zone::Utc).unwrap();
        // The offset is "boot time": in the past, after 2020.
        let boot = clock.unix_ns(0);
        assert!(boot > 1_577_836_800_000_000_000, "{boot}");
    }
}
