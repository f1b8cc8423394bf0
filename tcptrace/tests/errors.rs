//! Bad input and missing privileges: one clear line, a non-zero exit, no panic.

mod common;

use std::process::Command;

use common::BIN;

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run tcptrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn not_root_is_one_clear_line() {
    // setpriv (util-linux) drops to nobody with no capabilities.
    let (code, stderr) = run(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        BIN,
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "tcptrace: must run as root (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); try: sudo tcptrace\n"
    );
}

#[test]
fn invalid_option_values_are_rejected() {
    let (code, stderr) = run(Command::new(BIN).args(["--ring-size", "3M"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("must be a power of two between 4K and 1G"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every option with an invalid value: one line, naming the option, exit 2.
#[test]
fn every_bad_value_is_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--lport", "0"], "--lport"),
        (&["--lport", "http"], "--lport"),
        (
            &["--lport", "1,2,3,4,5,6,7,8,9"],
            "at most 8 ports per --lport",
        ),
        (&["--rport", "70000"], "--rport"),
        (&["--laddr", "10.0.0/8"], "is not an address or network"),
        (&["--raddr", "nowhere"], "is not an address or network"),
        (&["--pid", "x"], "--pid"),
        (&["--netns", "lo"], "--netns"),
        (&["--ring-size", "3M"], "must be a power of two"),
        (&["--ring-size", "2G"], "must be a power of two"),
        (&["--wakeup", "5Q"], "is not a size"),
        (&["--wakeup", "0"], "shorten --drain-interval"),
        (
            &["--ring-size", "4K", "--wakeup", "1G"],
            "more than each ring holds",
        ),
        (
            &["--comm", &"x".repeat(100_000)],
            "15 bytes the kernel keeps",
        ),
        (&["--comm", "nginx,"], "empty command name"),
        // Needs the host's namespaces: checked once attached.
        (&["--netns", "7"], "no network namespace has that inode"),
        (&["--drain-interval", "0"], "--drain-interval"),
        (&["--max-sockets", "0"], "--max-sockets"),
        (&["--interval", "0"], "--interval"),
        // Durations the runtime could not add to an instant (a panic).
        (&["--interval", "18446744073709551615"], "--interval"),
        (&["--interval", "9223372036854775807"], "--interval"),
        (
            &["diagnose", "--interval", "18446744073709551615"],
            "--interval",
        ),
        (&["--interval", "86401"], "--interval"),
        (&["-4", "-6"], "cannot be used with"),
        (&["diagnose", "--for", "0"], "--for"),
        (&["diagnose", "--for", "soon"], "--for"),
        (&["--metrics", "x"], "is not [ADDR:]PORT"),
        (&["--metrics", "70000"], "is not [ADDR:]PORT"),
        (&["--metrics", "localhost:9977"], "is not [ADDR:]PORT"),
        (
            &["--metrics", "192.0.2.1:9977"],
            "cannot serve metrics on 192.0.2.1:9977",
        ),
        (&["--metrics", "224.0.0.1:9977"], "multicast or broadcast"),
        (
            &["--metrics", "255.255.255.255:9977"],
            "multicast or broadcast",
        ),
        (&["--metrics", "[ff02::1]:9977"], "multicast or broadcast"),
        (&["--quiet"], "--metrics"),
        (
            &["--quiet", "--metrics", "0", "--json"],
            "cannot be used with",
        ),
        (
            &["--quiet", "--metrics", "0", "diagnose"],
            "--quiet runs a daemon",
        ),
        (&["--metrics-destinations", "0"], "--metrics-destinations"),
        (&["--metrics-listeners", "many"], "--metrics-listeners"),
        (&["--metrics-namespaces", "5000"], "--metrics-namespaces"),
        (&["--generate", "tcsh"], "--generate"),
        // The test's stdout is a pipe, not a terminal.
        (
            &["top"],
            "stdout is not one; for text, use --summary --interval 1",
        ),
        (&["top", "--json"], "--json does not apply to it"),
        (&["top", "--metrics", "0"], "--metrics does not apply to it"),
        (&["top", "-v"], "--verbose does not apply to it"),
        (&["--no-such-option"], "--no-such-option"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, says) in cases {
        let (code, stderr) = run(Command::new(BIN).args(*args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("tcptrace: "), "{args:?}: {stderr}");
        // A line to read, whatever was given (a 100 000-byte --comm).
        assert!(stderr.len() < 400, "{args:?}: {} bytes", stderr.len());
        assert!(
            stderr.contains(says),
            "{args:?} should say {says:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Bad usage with an unwritable stderr: still exit 2, and no panic (its
/// exit status would be 101).
#[test]
fn bad_usage_with_stderr_full_is_still_exit_2() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = Command::new(BIN)
        .args(["--pid", "x"])
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

/// tracefs mounted with a mode root may not read without
/// CAP_DAC_READ_SEARCH, and no CAP_SYS_ADMIN to mount it again: the error
/// says both, not that tracefs is not mounted. (In a mount namespace of
/// its own, over a tmpfs owned by nobody.)
/// Runs tcptrace ARGS without the capabilities `drop`, in a mount
/// namespace of its own where tracefs is a tmpfs of mode 0700 owned by
/// nobody: (exit status, stderr).
fn with_unreadable_tracefs(drop: &str, args: &str) -> (i32, String) {
    let script = format!(
        "mount -t tmpfs -o mode=0700,uid=65534 none /sys/kernel/tracing && \
         touch /sys/kernel/tracing/events && \
         exec setpriv --inh-caps={drop} --bounding-set={drop} {BIN} {args}"
    );
    run(Command::new("unshare").args(["-m", "sh", "-c", &script]))
}

#[test]
fn an_unreadable_tracefs_is_named_as_such() {
    let (code, stderr) = with_unreadable_tracefs("-dac_read_search,-dac_override,-sys_admin", "");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "tcptrace: tracefs at /sys/kernel/tracing cannot be read (Permission denied"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("mounting it again there failed (EPERM"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The same unreadable tracefs with CAP_SYS_ADMIN: mounted again over it,
/// and said so as such (it was mounted, not missing).
#[test]
fn tracefs_mounted_again_over_an_unreadable_one_is_said_as_such() {
    let (code, stderr) =
        with_unreadable_tracefs("-dac_read_search,-dac_override", "diagnose --for 1");
    assert!(matches!(code, 0 | 3 | 4), "{stderr}");
    assert!(
        stderr.contains(
            "tracefs could not be read; mounted it again on /sys/kernel/tracing over what was there"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("not mounted"), "{stderr}");
}

/// Out of file descriptors: the error names the limit, not tracefs.
#[test]
fn too_few_file_descriptors_is_named_as_such() {
    let (code, stderr) = run(Command::new("sh").args(["-c", &format!("ulimit -n 32; exec {BIN}")]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("out of file descriptors (ulimit -n is 32)"),
        "{stderr}"
    );
    assert!(!stderr.contains("tracefs"), "{stderr}");
}

#[test]
fn help_reads_like_a_man_page() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "COLUMNS",
        "EXAMPLES",
        "--json",
        "--ring-size",
        "sudo tcptrace",
        "Ctrl-C",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}
