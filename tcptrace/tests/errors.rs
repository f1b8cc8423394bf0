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
