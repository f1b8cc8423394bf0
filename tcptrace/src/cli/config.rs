//! The one resolved configuration: the raw arguments turned, once, into
//! what the rest of tcptrace needs, with the checks clap cannot make alone.
//! Nothing else reads the arguments.

use std::{net::SocketAddr, time::Duration};

use tcptrace_common::KernelFilter;

use super::{Cli, Command};
use crate::{
    pipeline::filter::{self, Filter, FilterError},
    render::{ADDR_WIDTH_V4, ADDR_WIDTH_V6, metrics::Limits},
};

/// Bad usage clap cannot see: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("--quiet runs a daemon; diagnose reports at its end: use one or the other")]
    QuietDiagnose,
}

/// How the live log and the summaries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// JSON lines instead of columns.
    pub json: bool,
    /// Times in UTC (JSON times always are).
    pub utc: bool,
    /// Width of the address columns of the text log.
    pub addr_width: usize,
}

/// Everything the command line asked for, resolved.
#[derive(Debug)]
pub struct Config {
    pub output: Output,
    /// `-v`: the eBPF side's log and the agent's debug messages.
    pub verbose: bool,
    /// Print every transition and connection (not `--summary`, `--quiet`
    /// or `diagnose`).
    pub live: bool,
    /// Daemon mode: nothing on stdout.
    pub quiet: bool,
    /// Periodic summaries.
    pub interval: Option<Duration>,
    /// `diagnose --for`: how long to trace before the findings.
    pub diagnose: Option<Duration>,
    /// The filters applied by the agent.
    pub filter: Filter,
    /// The filters applied in the kernel (family, ports).
    pub kernel_filter: KernelFilter,
    /// `--ring-size`, if given.
    pub ring_size: Option<u32>,
    /// `--wakeup`, if given.
    pub wakeup: Option<u64>,
    pub drain_interval: Duration,
    pub max_sockets: usize,
    pub no_timewait: bool,
    /// Where to serve the metrics.
    pub metrics: Option<SocketAddr>,
    pub metrics_limits: Limits,
    /// Tests only: features to act as if missing.
    pub pretend_missing: Vec<String>,
    /// Benchmark only: empty programs, nothing printed.
    pub bench_floor: bool,
}

impl Config {
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let kernel_filter = filter::kernel_filter(cli.ipv4, cli.ipv6, &cli.lport, &cli.rport)?;
        let diagnose = cli
            .command
            .map(|Command::Diagnose { secs }| Duration::from_secs(secs));
        if cli.quiet && diagnose.is_some() {
            return Err(ConfigError::QuietDiagnose);
        }
        Ok(Self {
            output: Output {
                json: cli.json,
                utc: cli.utc,
                addr_width: if cli.ipv4 {
                    ADDR_WIDTH_V4
                } else {
                    ADDR_WIDTH_V6
                },
            },
            verbose: cli.verbose,
            live: !(cli.summary || cli.quiet || diagnose.is_some()),
            quiet: cli.quiet,
            interval: cli.interval.map(Duration::from_secs),
            diagnose,
            filter: Filter {
                pids: cli.pid,
                comms: cli.comm,
                laddrs: cli.laddr,
                raddrs: cli.raddr,
                netns: cli.netns,
            },
            kernel_filter,
            ring_size: cli.ring_size,
            wakeup: cli.wakeup,
            drain_interval: Duration::from_millis(cli.drain_interval),
            max_sockets: cli.max_sockets as usize,
            no_timewait: cli.no_timewait,
            metrics: cli.metrics,
            metrics_limits: Limits {
                destinations: cli.metrics_destinations as usize,
                listeners: cli.metrics_listeners as usize,
                namespaces: cli.metrics_namespaces as usize,
            },
            pretend_missing: cli.pretend_missing,
            bench_floor: cli.bench_floor,
        })
    }

    /// Each CPU's ring size on a machine with `cpus` possible CPUs.
    pub fn ring_bytes(&self, cpus: u32) -> u32 {
        self.ring_size.unwrap_or_else(|| {
            // About a third of a second of records per CPU at a million
            // records a second (100 000 connections/s) on two CPUs.
            let share = (32 << 20) / cpus.max(1);
            // Rounded down to a power of two (share > 0).
            (1 << (31 - share.leading_zeros())).clamp(1 << 20, 16 << 20)
        })
    }

    /// A quarter of the ring; with the default rings, 1 MiB: they are
    /// headroom for bursts and stalls, not bigger batches (a scrape, or the
    /// end of a summary interval, drains what is pending first).
    pub fn wakeup_bytes(&self, ring_bytes: u32) -> u64 {
        let quarter = u64::from(ring_bytes) / 4;
        self.wakeup.unwrap_or(match self.ring_size {
            Some(_) => quarter,
            None => quarter.min(1 << 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::resolve(Cli::try_parse_from(args).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config(&["tcptrace"]);
        assert_eq!(c.ring_size, None);
        assert_eq!(c.ring_bytes(1), 16 << 20);
        assert_eq!(c.ring_bytes(2), 16 << 20);
        assert_eq!(c.ring_bytes(3), 8 << 20);
        assert_eq!(c.ring_bytes(8), 4 << 20);
        assert_eq!(c.ring_bytes(32), 1 << 20);
        assert_eq!(c.ring_bytes(256), 1 << 20);
        assert_eq!(c.wakeup_bytes(c.ring_bytes(2)), 1 << 20);
        assert_eq!(c.wakeup_bytes(2 << 20), 512 << 10);
        // Rings asked for: a quarter of them.
        let big = config(&["tcptrace", "--ring-size", "256M"]);
        assert_eq!(big.wakeup_bytes(big.ring_bytes(2)), 64 << 20);
        let set = config(&["tcptrace", "--ring-size", "64K"]);
        assert_eq!(set.ring_bytes(256), 64 << 10);
        assert_eq!(c.drain_interval, Duration::from_millis(20));
        assert!(c.live && !c.quiet && c.diagnose.is_none());
        assert_eq!(c.output.addr_width, ADDR_WIDTH_V6);
    }

    #[test]
    fn modes() {
        let daemon = config(&["tcptrace", "-q", "--metrics", "1"]);
        assert!(!daemon.live && daemon.quiet);
        assert_eq!(daemon.metrics_limits, Limits::DEFAULT);
        let diagnose = config(&["tcptrace", "diagnose", "--for", "5"]);
        assert!(!diagnose.live);
        assert_eq!(diagnose.diagnose, Some(Duration::from_secs(5)));
        assert!(!config(&["tcptrace", "--summary"]).live);
        assert_eq!(config(&["tcptrace", "-4"]).output.addr_width, ADDR_WIDTH_V4);
    }

    #[test]
    fn usage_clap_cannot_check() {
        let err = |args: &[&str]| {
            Config::resolve(Cli::try_parse_from(args).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&["tcptrace", "--quiet", "--metrics", "1", "diagnose"])
                .contains("use one or the other")
        );
        assert!(err(&["tcptrace", "--lport", "1,2,3,4,5,6,7,8,9"]).contains("lport"));
    }
}
