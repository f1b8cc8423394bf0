//! Checks and preparation of the host before anything is loaded: privileges,
//! kernel BTF, tracefs, and the tracepoint's record layout. Each failure is one
//! clear sentence for the user.

use std::{
    fs,
    io::{self, BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use tcptrace_common::{
    INET_SOCK_SET_STATE_FIELDS, TCP_RECEIVE_RESET_FIELDS, TCP_SEND_RESET_FIELDS,
};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
pub const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_LEGACY: &str = "/sys/kernel/debug/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(
        "must run as root (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); try: sudo tcptrace"
    )]
    NotPrivileged,
    #[error("cannot read own capabilities from /proc/self/status: {0}")]
    Capabilities(io::Error),
    #[error("no kernel BTF at {0} (the kernel needs CONFIG_DEBUG_INFO_BTF=y, Linux 5.4 or newer)")]
    NoBtf(PathBuf),
    #[error("tracefs is not mounted and mounting it on {path} failed: {err}")]
    TracefsMount { path: PathBuf, err: nix::Error },
    #[error("tracepoint {0} not found in tracefs (needs Linux 5.5 or newer)")]
    TracepointMissing(String),
    #[error("cannot read the format of tracepoint {tp}: {err}")]
    FormatRead { tp: String, err: io::Error },
    #[error("tracepoint {tp} has an unexpected layout on this kernel: {what}")]
    Layout { tp: String, what: String },
}

/// Whether the effective capability set allows loading and attaching tracing
/// programs. `status` is the text of /proc/self/status.
pub fn privileged(status: &str) -> Result<bool, SystemError> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .ok_or_else(|| SystemError::Capabilities(io::Error::other("no CapEff line")))?;
    let caps = u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| SystemError::Capabilities(io::Error::other(e)))?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    Ok(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)))
}

pub fn check_privileges() -> Result<(), SystemError> {
    let status = fs::read_to_string("/proc/self/status").map_err(SystemError::Capabilities)?;
    if privileged(&status)? {
        Ok(())
    } else {
        Err(SystemError::NotPrivileged)
    }
}

pub fn check_btf(path: &Path) -> Result<(), SystemError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(SystemError::NoBtf(path.to_owned()))
    }
}

/// Where tracefs is, and whether we had to mount it.
#[derive(Debug, PartialEq, Eq)]
pub struct Tracefs {
    pub path: PathBuf,
    pub mounted_by_us: bool,
}

/// A usable tracefs is a directory with entries in it (an empty mount point is
/// what the kernel leaves when tracefs is not mounted).
fn populated(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

/// Finds tracefs, mounting it on /sys/kernel/tracing if it is not mounted
/// (classic tracepoints are attached by the id tracefs publishes).
pub fn ensure_tracefs() -> Result<Tracefs, SystemError> {
    for path in [TRACEFS, TRACEFS_LEGACY] {
        if populated(Path::new(path)) {
            return Ok(Tracefs {
                path: path.into(),
                mounted_by_us: false,
            });
        }
    }
    let path = PathBuf::from(TRACEFS);
    nix::mount::mount(
        Some("tracefs"),
        &path,
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|err| SystemError::TracefsMount {
        path: path.clone(),
        err,
    })?;
    Ok(Tracefs {
        path,
        mounted_by_us: true,
    })
}

/// One `field:` line of a tracepoint format file.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Parses the `field:` lines of a tracepoint `format` file.
pub fn parse_format(text: &str) -> Vec<Field> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().split(';').map(str::trim);
            let decl = parts.next()?.strip_prefix("field:")?;
            // "const void * skaddr" or "__u8 saddr[4]": the name is the last
            // word, without an array suffix.
            let name = decl.rsplit([' ', '*']).next()?;
            let name = name.split('[').next()?.to_owned();
            let mut number = |key: &str| -> Option<usize> {
                parts.next()?.strip_prefix(key)?.trim().parse().ok()
            };
            let offset = number("offset:")?;
            let size = number("size:")?;
            Some(Field { name, offset, size })
        })
        .collect()
}

/// Fields a program reads from a tracepoint record: (name, offset, size).
pub type Fields = [(&'static str, usize, usize)];

/// The tracepoints tcptrace reads with fixed layouts, and the fields it reads.
pub const TRACEPOINTS: [(&str, &str, &Fields); 3] = [
    ("sock", "inet_sock_set_state", &INET_SOCK_SET_STATE_FIELDS),
    ("tcp", "tcp_send_reset", &TCP_SEND_RESET_FIELDS),
    ("tcp", "tcp_receive_reset", &TCP_RECEIVE_RESET_FIELDS),
];

/// Checks that a tracepoint's record (its `format` file's text) has `fields`
/// where the eBPF programs read them.
pub fn check_layout(
    tp: &str,
    format: &str,
    fields: &[(&str, usize, usize)],
) -> Result<(), SystemError> {
    let parsed = parse_format(format);
    for &(name, offset, size) in fields {
        let layout = |what| SystemError::Layout {
            tp: tp.to_owned(),
            what,
        };
        let field = parsed
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| layout(format!("field {name} is missing")))?;
        if (field.offset, field.size) != (offset, size) {
            return Err(layout(format!(
                "field {name} is at offset {} size {}, expected offset {offset} size {size}",
                field.offset, field.size
            )));
        }
    }
    Ok(())
}

/// Reads and checks the format files of every tracepoint in `TRACEPOINTS`.
pub fn check_tracepoints(tracefs: &Path) -> Result<(), SystemError> {
    for (category, name, fields) in TRACEPOINTS {
        let tp = format!("{category}:{name}");
        let path = tracefs.join(format!("events/{category}/{name}/format"));
        let format = fs::read_to_string(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => SystemError::TracepointMissing(tp.clone()),
            _ => SystemError::FormatRead {
                tp: tp.clone(),
                err,
            },
        })?;
        check_layout(&tp, &format, fields)?;
    }
    Ok(())
}

/// Why TIME_WAIT cannot be tracked on this kernel.
#[derive(Debug, thiserror::Error)]
pub enum TimewaitError {
    #[error("{0}")]
    Btf(#[from] crate::btf::BtfError),
    #[error("cannot read /proc/kallsyms: {0}")]
    Kallsyms(io::Error),
    #[error("tw_timer_handler is not in /proc/kallsyms")]
    NoHandler,
    #[error("tracepoint timer:{0} not found in tracefs")]
    Tracepoint(&'static str),
}

/// What the timewait programs need on this kernel: the timer callbacks'
/// addresses, the offsets from BTF, and the timer tracepoints. Without `reqsk_timer_handler`, reopened timewait sockets are
/// reported as killed.
pub fn timewait_config(
    btf: &crate::btf::Btf,
    tracefs: &Path,
) -> Result<tcptrace_common::TimewaitConfig, TimewaitError> {
    let mut config = crate::btf::timewait_offsets(btf)?;
    let [tw, reqsk] =
        kallsyms(["tw_timer_handler", "reqsk_timer_handler"]).map_err(TimewaitError::Kallsyms)?;
    config.tw_handler = tw.ok_or(TimewaitError::NoHandler)?;
    config.reqsk_handler = reqsk.unwrap_or(0);
    // Attached as raw tracepoints (arguments, not a record: no layout to
    // check), so only their presence is.
    for name in crate::bpf::TIMEWAIT_PROGRAMS {
        if !tracefs.join("events/timer").join(name).is_dir() {
            return Err(TimewaitError::Tracepoint(name));
        }
    }
    Ok(config)
}

/// Finds `names` in the text of /proc/kallsyms ("address type name
/// [module]"): the exact name, or the name with a compiler suffix
/// (`.isra.0`, `.llvm.123`). `None` where absent or hidden (address 0).
pub fn find_symbols<const N: usize>(
    lines: impl Iterator<Item = String>,
    names: [&str; N],
) -> [Option<u64>; N] {
    let mut found = [None; N];
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(addr), Some(_), Some(symbol)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        for (slot, name) in found.iter_mut().zip(names) {
            let matches = symbol
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
            if slot.is_none() && matches {
                *slot = u64::from_str_radix(addr, 16).ok().filter(|a| *a != 0);
            }
        }
    }
    found
}

/// Addresses of kernel functions, from /proc/kallsyms.
pub fn kallsyms<const N: usize>(names: [&str; N]) -> io::Result<[Option<u64>; N]> {
    let file = fs::File::open("/proc/kallsyms")?;
    Ok(find_symbols(
        BufReader::new(file).lines().map_while(Result::ok),
        names,
    ))
}

/// `CONFIG_HZ` from kernel configuration text.
pub fn config_hz(lines: impl Iterator<Item = String>) -> Option<u32> {
    lines
        .filter_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
        .next()
}

/// The kernel's timer frequency (jiffies per second), from /proc/config.gz
/// or /boot/config-RELEASE.
pub fn kernel_hz() -> Option<u32> {
    if let Ok(file) = fs::File::open("/proc/config.gz") {
        let text = BufReader::new(flate2::read::GzDecoder::new(file));
        if let Some(hz) = config_hz(text.lines().map_while(Result::ok)) {
            return Some(hz);
        }
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let path = format!("/boot/config-{}", release.trim());
    let file = fs::File::open(path).ok()?;
    config_hz(BufReader::new(file).lines().map_while(Result::ok))
}

/// A counter from the text of /proc/net/netstat, where each group is a line
/// of names followed by a line of values ("TcpExt: A B ..." / "TcpExt: 1 2 ...").
pub fn netstat_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// `TcpExtTCPTimeWaitOverflow` of network namespace `netns`, read through
/// process `pid` (which must still be in it): connections that closed without
/// a timewait socket because `tcp_max_tw_buckets` was reached.
pub fn tw_overflows(pid: u32, netns: u32) -> io::Result<u64> {
    let ns = fs::metadata(format!("/proc/{pid}/ns/net"))?;
    if ns.ino() as u32 != netns {
        return Err(io::Error::other("process left the namespace"));
    }
    let text = fs::read_to_string(format!("/proc/{pid}/net/netstat"))?;
    netstat_counter(&text, "TcpExt", "TCPTimeWaitOverflow")
        .ok_or_else(|| io::Error::other("no TcpExt TCPTimeWaitOverflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s ...\"
";

    #[test]
    fn parses_format_fields() {
        let fields = parse_format(FORMAT_6_18);
        assert_eq!(fields.len(), 15);
        assert_eq!(
            fields[4],
            Field {
                name: "skaddr".into(),
                offset: 8,
                size: 8
            }
        );
        assert_eq!(
            fields[14],
            Field {
                name: "daddr_v6".into(),
                offset: 56,
                size: 16
            }
        );
    }

    #[test]
    fn accepts_the_6_18_layout() {
        check_layout(
            "sock:inet_sock_set_state",
            FORMAT_6_18,
            &INET_SOCK_SET_STATE_FIELDS,
        )
        .unwrap();
    }

    #[test]
    fn rejects_a_moved_or_missing_field() {
        let moved = FORMAT_6_18.replace("offset:30;\tsize:2", "offset:32;\tsize:2");
        let check = |format: &str| {
            check_layout(
                "sock:inet_sock_set_state",
                format,
                &INET_SOCK_SET_STATE_FIELDS,
            )
        };
        let err = check(&moved).unwrap_err().to_string();
        assert_eq!(
            err,
            "tracepoint sock:inet_sock_set_state has an unexpected layout on this kernel: \
             field protocol is at offset 32 size 2, expected offset 30 size 2"
        );
        let missing = FORMAT_6_18.replace("protocol", "proto");
        assert!(
            check(&missing)
                .unwrap_err()
                .to_string()
                .contains("field protocol is missing")
        );
    }

    #[test]
    fn finds_kernel_symbols() {
        let text = "ffffffff82003430 t tw_timer_handler\n\
                    ffffffff82005970 t reqsk_timer_handler.isra.0\n\
                    ffffffff82005980 t reqsk_timer_handler_other\n\
                    0000000000000000 t hidden\n\
                    ffffffffc0001000 t tw_timer_handler_x\t[somemod]\n";
        let lines = || text.lines().map(str::to_owned);
        assert_eq!(
            find_symbols(lines(), ["tw_timer_handler", "reqsk_timer_handler"]),
            [Some(0xffffffff82003430), Some(0xffffffff82005970)]
        );
        assert_eq!(find_symbols(lines(), ["hidden", "nope"]), [None, None]);
        // The running kernel (root can read the addresses).
        let [tw] = kallsyms(["tw_timer_handler"]).unwrap();
        assert!(tw.is_some(), "tw_timer_handler not in /proc/kallsyms");
    }

    #[test]
    fn reads_hz_and_netstat() {
        let config = "# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n";
        assert_eq!(config_hz(config.lines().map(str::to_owned)), Some(250));
        assert_eq!(config_hz("CONFIG_X=1".lines().map(str::to_owned)), None);
        assert!(matches!(kernel_hz(), Some(100 | 250 | 300 | 1000)));
        let netstat = "TcpExt: SyncookiesSent TCPTimeWaitOverflow TW\nTcpExt: 0 17 5\n\
                       IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(
            netstat_counter(netstat, "TcpExt", "TCPTimeWaitOverflow"),
            Some(17)
        );
        assert_eq!(netstat_counter(netstat, "TcpExt", "Nope"), None);
        let own_ns = fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        assert!(tw_overflows(std::process::id(), own_ns).is_ok());
        assert!(tw_overflows(std::process::id(), own_ns.wrapping_add(1)).is_err());
    }

    #[test]
    fn capability_sets() {
        let status = |caps: &str| format!("Name:\ttcptrace\nCapInh:\t0\nCapEff:\t{caps}\n");
        assert!(privileged(&status("000001ffffffffff")).unwrap()); // root
        assert!(!privileged(&status("0000000000000000")).unwrap()); // nobody
        assert!(privileged(&status("000000c000000000")).unwrap()); // CAP_BPF + CAP_PERFMON
        assert!(!privileged(&status("0000008000000000")).unwrap()); // CAP_BPF only
        assert!(privileged(&status("0000000000200000")).unwrap()); // CAP_SYS_ADMIN
        assert!(privileged("Name: x\n").is_err());
    }

    #[test]
    fn missing_btf_and_tracepoint_are_clear_errors() {
        let err = check_btf(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no kernel BTF at /nonexistent/vmlinux (the kernel needs CONFIG_DEBUG_INFO_BTF=y, Linux 5.4 or newer)"
        );
        let err = check_tracepoints(Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracepoint sock:inet_sock_set_state not found in tracefs (needs Linux 5.5 or newer)"
        );
    }
}
