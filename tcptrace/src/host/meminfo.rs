//! The host's memory, from /proc/meminfo: what sizes the rings may take.

use std::{
    fs,
    io::{self, BufRead},
};

/// `MemTotal`, in bytes, from the text of /proc/meminfo.
pub fn mem_total(reader: impl BufRead) -> Option<u64> {
    reader.lines().map_while(Result::ok).find_map(|line| {
        let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok()?.checked_mul(1024)
    })
}

/// This host's `MemTotal`, in bytes.
pub fn read_mem_total() -> io::Result<u64> {
    let file = io::BufReader::new(fs::File::open("/proc/meminfo")?);
    mem_total(file).ok_or_else(|| io::Error::other("no MemTotal line in /proc/meminfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let fixture = include_str!("fixtures/meminfo");
        assert_eq!(mem_total(fixture.as_bytes()), Some(24_683_784 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n".as_bytes()), None);
        assert_eq!(mem_total("MemTotal: lots kB\n".as_bytes()), None);
    }
}
