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
    /// A `--comm` that could never match.
    #[error("{0}")]
    Comm(String),
    #[error("--quiet runs a daemon; diagnose reports at its end: use one or the other")]
    QuietDiagnose,
    #[error("top draws on the terminal; --{0} does not apply to it")]
    TopOutput(&'static str),
    #[error(
        "--wakeup {0}: below a page, tcptrace would be woken for nearly every record, which \
         costs the host more than the tracing; for a lower latency, shorten --drain-interval"
    )]
    WakeupTooSmall(Size),
    #[error(
        "--wakeup {wakeup} is more than each ring holds ({ring}): to read only every \
         --drain-interval, give --wakeup {ring}"
    )]
    WakeupAboveRing { wakeup: Size, ring: Size },
    #[error(
        "--ring-size {ring}: {cpus} CPUs x {ring} = {total} of locked kernel memory, also mapped \
         into tcptrace, is more than a quarter of this host's memory ({mem}); at most {max} here"
    )]
    RingsTooBig {
        ring: Size,
        cpus: u32,
        total: Size,
        mem: Size,
        max: Size,
    },
}

/// A byte count as the options write it: 64K, 16M, 1G, or bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(bytes) = *self;
        match [(30, 'G'), (20, 'M'), (10, 'K')]
            .into_iter()
            .find(|&(shift, _)| bytes >= 1 << shift && bytes % (1 << shift) == 0)
        {
            Some((shift, unit)) => write!(f, "{}{unit}", bytes >> shift),
            None => write!(f, "{bytes}"),
        }
    }
}

/// The kernel rings, sized for this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rings {
    /// Each CPU's ring.
    pub ring_bytes: u32,
    /// Pending bytes in one ring that wake the agent.
    pub wakeup_bytes: u64,
    /// All of them: locked kernel memory, mapped twice into the agent.
    pub total_bytes: u64,
}

/// What the kernel keeps of a command name (TASK_COMM_LEN, less its NUL).
const COMM_MAX: usize = 15;

/// A command name as /proc/PID/comm shows it: a longer one could never match.
fn check_comm(text: &str) -> Result<(), ConfigError> {
    match text.len() {
        0 => Err(ConfigError::Comm(
            "--comm: an empty command name matches nothing".to_owned(),
        )),
        n if n > COMM_MAX => {
            let mut kept = String::new();
            for c in text.chars() {
                if kept.len() + c.len_utf8() > COMM_MAX {
                    break;
                }
                kept.push(c);
            }
            Err(ConfigError::Comm(format!(
                "--comm `{kept}...` ({n} bytes) is longer than the {COMM_MAX} bytes the kernel keeps \
                 of a command name: give it as /proc/PID/comm shows it"
            )))
        }
        _ => Ok(()),
    }
}

/// The smallest `--wakeup`: a page.
const WAKEUP_MIN: u64 = 4096;

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
    /// `top`: the live view on the terminal, drawn every `interval`.
    pub top: bool,
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
        let diagnose = match cli.command {
            Some(Command::Diagnose { secs }) => Some(Duration::from_secs(secs)),
            _ => None,
        };
        let top = cli.command == Some(Command::Top);
        cli.comm.iter().try_for_each(|c| check_comm(c))?;
        if cli.quiet && diagnose.is_some() {
            return Err(ConfigError::QuietDiagnose);
        }
        if top {
            let refused = [
                ("json", cli.json),
                ("summary", cli.summary),
                ("quiet", cli.quiet),
                ("metrics", cli.metrics.is_some()),
                // Its log would be written over the screen.
                ("verbose", cli.verbose),
            ];
            if let Some((option, _)) = refused.into_iter().find(|(_, given)| *given) {
                return Err(ConfigError::TopOutput(option));
            }
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
            live: !(cli.summary || cli.quiet || diagnose.is_some() || top),
            quiet: cli.quiet,
            interval: match (cli.interval, top) {
                (Some(secs), _) => Some(Duration::from_secs(secs)),
                (None, true) => Some(Duration::from_secs(1)),
                (None, false) => None,
            },
            diagnose,
            top,
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

    /// The rings on a host with `cpus` possible CPUs and `mem_bytes` of
    /// memory (MemTotal): the rings asked for, or the default, within what
    /// the host can give.
    pub fn rings(&self, cpus: u32, mem_bytes: u64) -> Result<Rings, ConfigError> {
        let ring_bytes = self.ring_bytes(cpus);
        let ring = Size(u64::from(ring_bytes));
        let total = Size(ring.0 * u64::from(cpus));
        // The default is small enough for any host (32M, or 1M a CPU).
        if self.ring_size.is_some() && total.0 > mem_bytes / 4 {
            let max = (mem_bytes / 4 / u64::from(cpus.max(1))).max(1);
            return Err(ConfigError::RingsTooBig {
                ring,
                cpus,
                total,
                mem: Size(mem_bytes),
                // Rounded down to a power of two, as --ring-size takes.
                max: Size(1 << (63 - max.leading_zeros())),
            });
        }
        let wakeup_bytes = self.wakeup_bytes(ring_bytes);
        match self.wakeup {
            Some(w) if w < WAKEUP_MIN => Err(ConfigError::WakeupTooSmall(Size(w))),
            Some(w) if w > ring.0 => Err(ConfigError::WakeupAboveRing {
                wakeup: Size(w),
                ring,
            }),
            _ => Ok(Rings {
                ring_bytes,
                wakeup_bytes,
                total_bytes: total.0,
            }),
        }
    }

    /// Each CPU's ring size on a machine with `cpus` possible CPUs.
    fn ring_bytes(&self, cpus: u32) -> u32 {
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
    fn wakeup_bytes(&self, ring_bytes: u32) -> u64 {
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
        // The default rings fit the smallest host.
        assert!(c.rings(2, 256 << 20).is_ok());
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
    fn rings_within_the_host() {
        const GIB: u64 = 1 << 30;
        let rings = |args: &[&str], cpus, mem| {
            let mut all = vec!["tcptrace"];
            all.extend(args);
            config(&all).rings(cpus, mem)
        };
        assert_eq!(
            rings(&[], 2, 24 * GIB).unwrap(),
            Rings {
                ring_bytes: 16 << 20,
                wakeup_bytes: 1 << 20,
                total_bytes: 32 << 20
            }
        );
        // A quarter of the memory, and no more.
        assert!(rings(&["--ring-size", "1G"], 2, 8 * GIB).is_ok());
        let err = rings(&["--ring-size", "1G"], 2, 8 * GIB - 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 CPUs x 1G = 2G") && err.contains("at most 512M here"),
            "{err}"
        );
        // Wake-ups between a page and the ring.
        assert!(rings(&["--ring-size", "4K", "--wakeup", "4K"], 2, GIB).is_ok());
        let above = rings(&["--ring-size", "4K", "--wakeup", "1G"], 2, GIB)
            .unwrap_err()
            .to_string();
        assert!(above.contains("give --wakeup 4K"), "{above}");
        for small in ["0", "4095"] {
            let err = rings(&["--wakeup", small], 2, GIB).unwrap_err().to_string();
            assert!(err.contains("shorten --drain-interval"), "{err}");
        }
        assert_eq!(Size(3 << 20).to_string(), "3M");
        assert_eq!(Size(4097).to_string(), "4097");
    }

    #[test]
    fn top_draws_every_second_and_prints_nothing_else() {
        let top = config(&["tcptrace", "top"]);
        assert!(top.top && !top.live && top.diagnose.is_none());
        assert_eq!(top.interval, Some(Duration::from_secs(1)));
        assert_eq!(
            config(&["tcptrace", "top", "--interval", "5"]).interval,
            Some(Duration::from_secs(5))
        );
        for option in ["--json", "--summary"] {
            let err = Config::resolve(Cli::try_parse_from(["tcptrace", "top", option]).unwrap())
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("top draws on the terminal; {option} does not apply to it")
            );
        }
    }

    #[test]
    fn command_names() {
        assert!(check_comm("nginx").is_ok());
        assert!(check_comm("abcdefghijklmno").is_ok());
        let long = check_comm("postgres-exporter").unwrap_err().to_string();
        assert!(
            long.starts_with("--comm `postgres-export...` (17 bytes)"),
            "{long}"
        );
        // A hostile length is not echoed whole.
        assert!(
            check_comm(&"x".repeat(100_000))
                .unwrap_err()
                .to_string()
                .len()
                < 200
        );
        assert!(check_comm("").is_err());
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
