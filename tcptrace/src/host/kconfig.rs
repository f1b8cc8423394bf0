//! The kernel's build configuration (`/proc/config.gz`, or
//! `/boot/config-RELEASE`): tcptrace reads `CONFIG_HZ`, the timer frequency
//! that turns a timewait timer's jiffies into seconds.

use std::{
    fs,
    io::{BufRead, BufReader},
};

/// `CONFIG_HZ` from kernel configuration text.
pub fn config_hz(reader: impl BufRead) -> Option<u32> {
    reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
        .next()
}

/// The running kernel's timer frequency (jiffies per second), if its
/// configuration can be read.
pub fn kernel_hz() -> Option<u32> {
    if let Ok(file) = fs::File::open("/proc/config.gz")
        && let Some(hz) = config_hz(BufReader::new(flate2::read::GzDecoder::new(file)))
    {
        return Some(hz);
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let file = fs::File::open(format!("/boot/config-{}", release.trim())).ok()?;
    config_hz(BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this kernel's /proc/config.gz (Linux 6.18, HZ=250).
    const FIXTURE: &str = include_str!("fixtures/config");

    #[test]
    fn reads_hz() {
        assert_eq!(config_hz(FIXTURE.as_bytes()), Some(250));
        assert_eq!(
            config_hz("CONFIG_X=1\n# CONFIG_HZ_100 is not set\n".as_bytes()),
            None
        );
    }

    #[test]
    fn reads_compressed_config() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(FIXTURE.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let reader = BufReader::new(flate2::read::GzDecoder::new(&bytes[..]));
        assert_eq!(config_hz(reader), Some(250));
    }
}
