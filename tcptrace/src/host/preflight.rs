//! Checks and preparation of the host before anything is loaded: privileges,
//! kernel BTF, tracefs, and the record layouts of the classic tracepoints the
//! programs read at fixed offsets. Each failure is one clear sentence for the
//! user.

use std::{
    fs,
    io::{self, BufRead},
    path::{Path, PathBuf},
};

use tcptrace_common::{
    INET_SOCK_SET_STATE_FIELDS, SYS_ENTER_BIND_FIELDS, SYS_EXIT_BIND_FIELDS,
    TCP_RECEIVE_RESET_FIELDS, TCP_RETRANSMIT_SKB_FIELDS, TCP_RETRANSMIT_SYNACK_FIELDS,
    TCP_SEND_RESET_FIELDS, TCP_SEND_RESET_REASON,
};

use crate::model::ResetNames;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
pub const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_LEGACY: &str = "/sys/kernel/debug/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
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
    #[error(
        "tracefs at {path} cannot be read ({err}) and mounting it again there failed ({mount}): \
         tcptrace needs to read it (CAP_DAC_READ_SEARCH, or tracefs mounted with a mode root may read)"
    )]
    TracefsUnreadable {
        path: PathBuf,
        err: io::Error,
        mount: nix::Error,
    },
    #[error("tracepoint {0} not found in tracefs (needs Linux 5.5 or newer)")]
    TracepointMissing(String),
    #[error("cannot read the format of tracepoint {tp}: {err}")]
    FormatRead { tp: String, err: io::Error },
    #[error("tracepoint {tp} has an unexpected layout on this kernel: {what}")]
    Layout { tp: String, what: String },
}

/// Whether the effective capability set allows loading and attaching tracing
/// programs. `status` is the text of /proc/self/status.
pub fn privileged(status: &str) -> Result<bool, PreflightError> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .ok_or_else(|| PreflightError::Capabilities(io::Error::other("no CapEff line")))?;
    let caps = u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| PreflightError::Capabilities(io::Error::other(e)))?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    Ok(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)))
}

pub fn check_privileges() -> Result<(), PreflightError> {
    let status = fs::read_to_string("/proc/self/status").map_err(PreflightError::Capabilities)?;
    if privileged(&status)? {
        Ok(())
    } else {
        Err(PreflightError::NotPrivileged)
    }
}

pub fn check_btf(path: &Path) -> Result<(), PreflightError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(PreflightError::NoBtf(path.to_owned()))
    }
}

/// Where tracefs is, and whether we had to mount it.
#[derive(Debug, PartialEq, Eq)]
pub struct Tracefs {
    pub path: PathBuf,
    pub mounted: Mounted,
}

/// Whether tcptrace mounted tracefs, and over what.
#[derive(Debug, PartialEq, Eq)]
pub enum Mounted {
    /// It was there, readable.
    No,
    /// Nothing was mounted there.
    WasMissing,
    /// Over a mount this process could not read (mode 0700 without
    /// CAP_DAC_READ_SEARCH, or another file system).
    OverUnreadable,
}

/// What is at a tracefs mount point.
#[derive(Debug)]
enum MountPoint {
    /// A directory with entries in it: tracefs.
    Populated,
    /// Nothing, or an empty directory (what the kernel leaves when tracefs
    /// is not mounted).
    Empty,
    /// Something this process may not read: if mounting tracefs over it
    /// fails too, that is the cause to say.
    Unreadable(io::Error),
}

fn mount_point(listing: io::Result<fs::ReadDir>) -> MountPoint {
    match listing {
        Ok(mut entries) => match entries.next() {
            Some(_) => MountPoint::Populated,
            None => MountPoint::Empty,
        },
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => MountPoint::Unreadable(err),
        Err(_) => MountPoint::Empty,
    }
}

/// Finds tracefs, mounting it on /sys/kernel/tracing if it is not mounted
/// (classic tracepoints are attached by the id tracefs publishes).
pub fn ensure_tracefs() -> Result<Tracefs, PreflightError> {
    let mut unreadable = None;
    for path in [TRACEFS, TRACEFS_LEGACY] {
        match mount_point(fs::read_dir(path)) {
            MountPoint::Populated => {
                return Ok(Tracefs {
                    path: path.into(),
                    mounted: Mounted::No,
                });
            }
            MountPoint::Unreadable(err) => {
                unreadable.get_or_insert((PathBuf::from(path), err));
            }
            MountPoint::Empty => {}
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
    .map_err(|mount| match unreadable.take() {
        // Not "not mounted": there, but unreadable.
        Some((path, err)) => PreflightError::TracefsUnreadable { path, err, mount },
        None => PreflightError::TracefsMount {
            path: path.clone(),
            err: mount,
        },
    })?;
    Ok(Tracefs {
        path,
        // Over what was there only if it was there (the legacy path, under
        // a debugfs of mode 0700, may be the unreadable one).
        mounted: match unreadable {
            Some((over, _)) if over == Path::new(TRACEFS) => Mounted::OverUnreadable,
            _ => Mounted::WasMissing,
        },
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
pub fn parse_format(reader: impl BufRead) -> Vec<Field> {
    reader
        .lines()
        .map_while(Result::ok)
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

/// The tracepoints that see SYNs and SYN-ACKs retransmitted, and the
/// fields read (optional: without them they are not counted).
pub const RETRANSMIT_TRACEPOINTS: [(&str, &str, &Fields); 2] = [
    ("tcp", "tcp_retransmit_skb", &TCP_RETRANSMIT_SKB_FIELDS),
    (
        "tcp",
        "tcp_retransmit_synack",
        &TCP_RETRANSMIT_SYNACK_FIELDS,
    ),
];

/// The syscall tracepoints that see failed binds, and the fields read
/// (optional: without them failed binds are not counted).
pub const BIND_TRACEPOINTS: [(&str, &str, &Fields); 2] = [
    ("syscalls", "sys_enter_bind", &SYS_ENTER_BIND_FIELDS),
    ("syscalls", "sys_exit_bind", &SYS_EXIT_BIND_FIELDS),
];

/// Checks that a tracepoint's record (its `format` file's text) has `fields`
/// where the eBPF programs read them.
pub fn check_layout(
    tp: &str,
    format: &str,
    fields: &[(&str, usize, usize)],
) -> Result<(), PreflightError> {
    let parsed = parse_format(format.as_bytes());
    for &(name, offset, size) in fields {
        let layout = |what| PreflightError::Layout {
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

/// The kernel's reasons for resets, from `tcp:tcp_send_reset`'s format:
/// the `reason` field where the program reads it, and the names its print
/// format gives the values (`__print_symbolic(REC->reason, { 0,
/// "NOT_SPECIFIED" }, ...)`). The error says why there are none.
pub fn reset_reasons(format: &str) -> Result<ResetNames, String> {
    let (name, offset, size) = TCP_SEND_RESET_REASON;
    check_layout("tcp:tcp_send_reset", format, &[(name, offset, size)])
        .map_err(|err| err.to_string())?;
    let marker = "__print_symbolic(REC->reason,";
    let start = format.find(marker).ok_or("the format names no reasons")? + marker.len();
    let mut names = Vec::new();
    let mut rest = &format[start..];
    // `{ VALUE, "NAME" }` pairs, up to the closing parenthesis.
    while let Some(open) = rest.find(['{', ')']) {
        if rest.as_bytes()[open] == b')' {
            break;
        }
        let close = rest[open..]
            .find('}')
            .ok_or("an unclosed { in the format")?
            + open;
        let (value, label) = rest[open + 1..close]
            .split_once(',')
            .ok_or("a reason without a name")?;
        let value: u32 = value
            .trim()
            .parse()
            .map_err(|_| "a reason that is not a number")?;
        names.push((value, label.trim().trim_matches('"').into()));
        rest = &rest[close + 1..];
    }
    match names.is_empty() {
        true => Err("the format names no reasons".into()),
        false => Ok(ResetNames::new(names)),
    }
}

/// Reads and checks the format files of every tracepoint in `TRACEPOINTS`.
pub fn check_tracepoints(tracefs: &Path) -> Result<(), PreflightError> {
    check_formats(tracefs, &TRACEPOINTS)
}

/// Reads and checks the format files of `tracepoints`.
pub fn check_formats(
    tracefs: &Path,
    tracepoints: &[(&str, &str, &Fields)],
) -> Result<(), PreflightError> {
    for &(category, name, fields) in tracepoints {
        let tp = format!("{category}:{name}");
        let path = tracefs.join(format!("events/{category}/{name}/format"));
        let format = fs::read_to_string(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => PreflightError::TracepointMissing(tp.clone()),
            _ => PreflightError::FormatRead {
                tp: tp.clone(),
                err,
            },
        })?;
        check_layout(&tp, &format, fields)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResetReason;

    /// Copied from this kernel's tracefs (Linux 6.18).
    const FORMAT_6_18: &str = include_str!("fixtures/inet_sock_set_state.format");
    const SEND_RESET_6_18: &str = include_str!("fixtures/tcp_send_reset.format");
    const RECEIVE_RESET_6_18: &str = include_str!("fixtures/tcp_receive_reset.format");

    #[test]
    fn parses_format_fields() {
        let fields = parse_format(FORMAT_6_18.as_bytes());
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
    fn accepts_the_6_18_layouts() {
        for ((category, name, fields), format) in
            TRACEPOINTS
                .iter()
                .zip([FORMAT_6_18, SEND_RESET_6_18, RECEIVE_RESET_6_18])
        {
            assert!(
                format.starts_with(&format!("name: {name}\n")),
                "{category}:{name}"
            );
            check_layout(&format!("{category}:{name}"), format, fields).unwrap();
        }
    }

    #[test]
    fn reset_reasons_are_named_by_the_kernel() {
        let names = reset_reasons(SEND_RESET_6_18).unwrap();
        assert_eq!(names.name(ResetReason(0)), "NOT_SPECIFIED");
        assert_eq!(names.name(ResetReason(1)), "NO_SOCKET");
        assert_eq!(names.name(ResetReason(12)), "TCP_ABORT_ON_LINGER");
        assert_eq!(names.name(ResetReason(15)), "TCP_KEEPALIVE_TIMEOUT");
        assert_eq!(names.name(ResetReason(25)), "MAX");
        // A kernel without the field (before 6.10), or that names none.
        let older = SEND_RESET_6_18.replace("reason;\toffset:28", "why;\toffset:28");
        assert!(
            reset_reasons(&older)
                .unwrap_err()
                .contains("field reason is missing")
        );
        let unnamed = SEND_RESET_6_18.replace("__print_symbolic(REC->reason", "REC->reason, (");
        assert_eq!(
            reset_reasons(&unnamed).unwrap_err(),
            "the format names no reasons"
        );
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

    #[test]
    fn an_unreadable_mount_point_is_not_taken_for_an_empty_one() {
        let dir = std::env::temp_dir().join(format!("tcptrace-mp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(mount_point(fs::read_dir(&dir)), MountPoint::Empty));
        fs::write(dir.join("events"), "").unwrap();
        assert!(matches!(
            mount_point(fs::read_dir(&dir)),
            MountPoint::Populated
        ));
        fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(mount_point(fs::read_dir(&dir)), MountPoint::Empty));
        let denied = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(mount_point(denied), MountPoint::Unreadable(_)));
    }
}
