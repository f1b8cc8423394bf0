//! The command line as clap defines it: options, their parsers and their
//! one-line help. What they mean together is [`super::Config`]'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;
use ipnet::IpNet;

use super::help::{ABOUT, EXAMPLES, LONG_ABOUT};
use crate::render::metrics::Limits;

/// What to do instead of the live log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Trace quietly for a while, then say what is wrong: the findings
    /// (port exhaustion, CLOSE_WAIT leaks, resets, full queues...), worst
    /// first, with the numbers and the remedies, then the tables behind
    /// them. Ctrl-C ends it early with the report. Exit status: 0 nothing
    /// at warning level, 3 a warning, 4 a critical finding (1: tcptrace
    /// failed, 2: bad usage).
    Diagnose {
        /// How long to trace, in seconds.
        #[arg(long = "for", value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        secs: u64,
    },
    /// The outage on one screen, live: findings worst first, destinations
    /// by port usage, services by who closes first, listeners' queues,
    /// drawn again every --interval seconds (1 by default). Keys: s sort,
    /// / filter, p pause, ? help, q quit. Needs a terminal.
    Top,
}

#[derive(Debug, Parser)]
#[command(name = "tcptrace", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Print JSON lines instead of columns: one object per transition, per
    /// closed connection and per summary (fields in tcptrace/doc/json.md).
    #[arg(global = true, long)]
    pub json: bool,

    /// Print TIME in UTC instead of local time (JSON times are always UTC).
    #[arg(global = true, long)]
    pub utc: bool,

    /// Show eBPF-side diagnostics and the agent's own debug messages on stderr.
    #[arg(global = true, short, long)]
    pub verbose: bool,

    /// Print only summaries (on exit and every --interval), no per-transition lines.
    #[arg(global = true, long)]
    pub summary: bool,

    /// Print a summary every SECS seconds (cumulative since start; at most
    /// a day).
    #[arg(global = true, short, long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub interval: Option<u64>,

    /// Only sockets owned by these processes.
    #[arg(
        global = true,
        short,
        long,
        value_name = "PID,...",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub pid: Vec<u32>,

    /// Only sockets owned by processes with these command names (exact, as in
    /// /proc/PID/comm: at most 15 characters).
    #[arg(
        global = true,
        short,
        long,
        value_name = "COMM,...",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub comm: Vec<String>,

    /// Only these local ports (in the kernel; at most 8). A connecting socket's
    /// first transition has no local port yet and is not shown.
    #[arg(global = true, long, value_name = "PORT,...", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..), help_heading = "Filters")]
    pub lport: Vec<u16>,

    /// Only these remote ports (in the kernel; at most 8).
    #[arg(global = true, long, value_name = "PORT,...", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..), help_heading = "Filters")]
    pub rport: Vec<u16>,

    /// Only these local addresses or networks (10.0.0.1, 10.0.0.0/8, ::1).
    #[arg(global = true, long, value_name = "ADDR[/LEN],...", value_delimiter = ',', value_parser = parse_net, help_heading = "Filters")]
    pub laddr: Vec<IpNet>,

    /// Only these remote addresses or networks.
    #[arg(global = true, long, value_name = "ADDR[/LEN],...", value_delimiter = ',', value_parser = parse_net, help_heading = "Filters")]
    pub raddr: Vec<IpNet>,

    /// Only IPv4 sockets (in the kernel).
    #[arg(
        global = true,
        short = '4',
        long = "ipv4",
        conflicts_with = "ipv6",
        help_heading = "Filters"
    )]
    pub ipv4: bool,

    /// Only IPv6 sockets, including v4-mapped ones (in the kernel).
    #[arg(global = true, short = '6', long = "ipv6", help_heading = "Filters")]
    pub ipv6: bool,

    /// Only sockets in these network namespaces (inode numbers, as in
    /// `ls -L -i /proc/PID/ns/net` or `lsns -t net`).
    #[arg(
        global = true,
        long,
        value_name = "INODE,...",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub netns: Vec<u32>,

    /// Size of each CPU's kernel ring buffer that carries transitions to
    /// tcptrace (a power of two: 64K, 4M, 16M...) [default: 32M shared out
    /// among the CPUs, from 1M to 16M each]. Raise it if records are lost.
    /// All of them together may take at most a quarter of the host's memory.
    #[arg(global = true, long, value_name = "SIZE", value_parser = parse_ring_size, help_heading = "Tuning")]
    pub ring_size: Option<u32>,

    /// Wake tcptrace as soon as this much data is pending in one CPU's ring
    /// buffer [default: a quarter of --ring-size; 1M with the default rings],
    /// from 4K to --ring-size. Below it, tcptrace reads every
    /// --drain-interval: one wake-up per transition would cost the host more
    /// than the tracing itself.
    #[arg(global = true, long, value_name = "SIZE", value_parser = parse_size, help_heading = "Tuning")]
    pub wakeup: Option<u64>,

    /// How often to read the ring buffer when it is not full enough to wake
    /// tcptrace, in milliseconds.
    #[arg(global = true, long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000), help_heading = "Tuning")]
    pub drain_interval: u64,

    /// How many connections tcptrace follows at once (for time in state and
    /// verdicts), and twice as many timewait sockets. Those beyond show '?'
    /// and are counted in the summary.
    #[arg(global = true, long, value_name = "N", default_value_t = 131_072, value_parser = clap::value_parser!(u32).range(1..=16_777_216), help_heading = "Tuning")]
    pub max_sockets: u32,

    /// Do not follow timewait sockets: no TIME_WAIT lines, and no hooks on
    /// the kernel's timers (which fire for every timer on the host).
    #[arg(global = true, long, help_heading = "Tuning")]
    pub no_timewait: bool,

    /// Serve Prometheus metrics on http://[ADDR:]PORT/metrics, rendered at
    /// each scrape from what the summaries report (a bare PORT: on
    /// 127.0.0.1 only). Combines with any mode.
    #[arg(global = true, long, value_name = "[ADDR:]PORT", value_parser = parse_metrics_addr, help_heading = "Metrics")]
    pub metrics: Option<SocketAddr>,

    /// Run as a daemon: nothing on stdout (no live log, no summaries), one
    /// line on stderr per problem, metrics served. Needs --metrics.
    #[arg(global = true, short, long, requires = "metrics", conflicts_with_all = ["interval", "json", "summary"], help_heading = "Metrics")]
    pub quiet: bool,

    /// Destinations with series of their own (the most used first: port
    /// usage, then ports held); the rest are summed in destination="other"
    /// (gauges only).
    #[arg(global = true, long, value_name = "N", default_value_t = Limits::DEFAULT.destinations as u32, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Metrics")]
    pub metrics_destinations: u32,

    /// Listeners with series of their own (the fullest accept queues first);
    /// the rest are left out, and counted.
    #[arg(global = true, long, value_name = "N", default_value_t = Limits::DEFAULT.listeners as u32, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Metrics")]
    pub metrics_listeners: u32,

    /// Network namespaces with series of their own (in inode order); the
    /// rest are summed in netns="other" where a sum means something, and
    /// counted.
    #[arg(global = true, long, value_name = "N", default_value_t = Limits::DEFAULT.namespaces as u32, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Metrics")]
    pub metrics_namespaces: u32,

    /// Print the man page (roff) or a shell's completion script on stdout,
    /// and exit.
    #[arg(long, value_name = "WHAT", value_enum)]
    pub generate: Option<Generate>,

    /// Tests only: act as if the kernel lacked these symbols, tracepoints or
    /// BTF members, to see how tcptrace degrades.
    #[arg(
        global = true,
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        hide = true
    )]
    pub pretend_missing: Vec<String>,

    /// Benchmark only: attach empty programs to the same hooks and print nothing.
    #[arg(global = true, long, hide = true)]
    pub bench_floor: bool,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page, section 8.
    Man,
    Bash,
    Zsh,
    Fish,
}

/// An address ("10.0.0.1": one host) or a network ("10.0.0.0/8").
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{text}` is not an address or network (examples: 10.0.0.1, 10.0.0.0/8, ::1)")
        })
}

/// The metrics endpoint's address: `PORT` (on loopback), `ADDR:PORT` or
/// `[ADDR6]:PORT`.
fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!(
            "`{text}` is not [ADDR:]PORT (examples: 9977, 127.0.0.1:9977, [::1]:9977, 0.0.0.0:9977)"
        )
    };
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let addr = text.parse::<SocketAddr>().map_err(|_| bad())?;
    // Linux lets a TCP socket bind them, and then nobody can connect.
    let group = match addr.ip() {
        IpAddr::V4(ip) => ip.is_multicast() || ip.is_broadcast(),
        IpAddr::V6(ip) => ip.is_multicast(),
    };
    match group {
        true => Err(format!(
            "`{text}` is a multicast or broadcast address: serve on one of this host's addresses, \
             127.0.0.1 or 0.0.0.0"
        )),
        false => Ok(addr),
    }
}

/// Parses a byte size: a number with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 4096, 64K, 4M)"))?;
    value
        .checked_shl(shift)
        .filter(|v| v >> shift == value)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A ring buffer size: a power of two between one page and 1 GiB.
fn parse_ring_size(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    let page = 4096;
    if !size.is_power_of_two() || !(page..=1 << 30).contains(&size) {
        return Err(format!("`{text}` must be a power of two between 4K and 1G"));
    }
    Ok(size as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("x4M").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4K"), Ok(4096));
        assert_eq!(parse_ring_size("16M"), Ok(16 << 20));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("2K").is_err());
        assert!(parse_ring_size("2G").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn filters() {
        let cli = Cli::try_parse_from([
            "tcptrace",
            "-p",
            "1,2",
            "-c",
            "nginx",
            "--lport",
            "80,443",
            "--raddr",
            "10.0.0.0/8,::1",
            "-4",
        ])
        .unwrap();
        assert_eq!(cli.pid, [1, 2]);
        assert_eq!(cli.lport, [80, 443]);
        assert_eq!(cli.raddr[1], "::1/128".parse::<IpNet>().unwrap());
        assert!(cli.ipv4);
        let err = |args: &[&str]| Cli::try_parse_from(args).unwrap_err().to_string();
        assert!(err(&["tcptrace", "--raddr", "10.0.0/8"]).contains("is not an address or network"));
        assert!(err(&["tcptrace", "--lport", "0"]).contains("invalid value"));
        assert!(err(&["tcptrace", "--lport", "http"]).contains("invalid value"));
        assert!(err(&["tcptrace", "-4", "-6"]).contains("cannot be used with"));
        assert!(err(&["tcptrace", "-p", "x"]).contains("invalid value"));
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            parse_metrics_addr("9977"),
            Ok("127.0.0.1:9977".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_addr("0.0.0.0:80"),
            Ok("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9977"),
            Ok("[::1]:9977".parse().unwrap())
        );
        for bad in [
            "",
            "x",
            "70000",
            "localhost:9977",
            "::1:9977",
            "1.2.3.4",
            ":9977",
        ] {
            assert!(parse_metrics_addr(bad).is_err(), "{bad}");
        }
        // Linux lets TCP bind them; nobody could connect.
        for group in [
            "224.0.0.1:9977",
            "239.1.2.3:1",
            "255.255.255.255:9977",
            "[ff02::1]:9977",
        ] {
            let err = parse_metrics_addr(group).unwrap_err();
            assert!(err.contains("multicast or broadcast"), "{group}: {err}");
        }
        let err = |args: &[&str]| Cli::try_parse_from(args).unwrap_err().to_string();
        assert!(err(&["tcptrace", "--quiet"]).contains("--metrics"));
        assert!(
            err(&["tcptrace", "--quiet", "--metrics", "1", "-i", "5"]).contains("cannot be used")
        );
    }
}
