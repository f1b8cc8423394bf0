//! `./x fuzz`: the fuzz targets of `tcptrace/fuzz` (cargo fuzz, libFuzzer
//! with AddressSanitizer), each run from its corpus in the repository. New
//! inputs go to target/fuzz-corpus/, crashes to target/fuzz-artifacts/: the
//! repository's corpora change only when someone copies inputs in.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::setup;

const FUZZ_DIR: &str = "tcptrace/fuzz";

/// The targets, as `tcptrace/fuzz/Cargo.toml` lists them.
fn targets(root: &Path) -> Result<Vec<String>> {
    let manifest = fs::read_to_string(root.join(FUZZ_DIR).join("Cargo.toml"))?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
            names.push(name.trim_matches('"').to_owned());
        }
    }
    Ok(names)
}

/// The fuzzer's flags need a nightly rustc; the pinned stable one takes them
/// with RUSTC_BOOTSTRAP (the machine has no other toolchain). The eBPF
/// object is not needed by the parsers.
fn cargo_fuzz(args: &[&str]) -> std::process::Command {
    let mut cmd = setup::cargo_command();
    cmd.arg("fuzz")
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("AYA_BUILD_SKIP", "1");
    cmd
}

/// Builds every target, then runs `only` (or each) for `secs` seconds.
pub(crate) fn run(root: &Path, only: Option<&str>, secs: u64) -> Result<()> {
    let all = targets(root)?;
    if let Some(name) = only
        && !all.iter().any(|t| t == name)
    {
        bail!("no fuzz target {name}; there are: {}", all.join(", "));
    }
    let status = cargo_fuzz(&["build", "--fuzz-dir", FUZZ_DIR])
        .status()
        .context("running cargo fuzz")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    for target in all.iter().filter(|t| only.is_none_or(|o| o == t.as_str())) {
        let found = root.join("target/fuzz-corpus").join(target);
        let artifacts = root.join("target/fuzz-artifacts").join(target);
        fs::create_dir_all(&found)?;
        fs::create_dir_all(&artifacts)?;
        let seeds = root.join(FUZZ_DIR).join("corpus").join(target);
        let out = cargo_fuzz(&["run", "--fuzz-dir", FUZZ_DIR, target])
            .arg(&found)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .output()
            .context("running cargo fuzz")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "fuzz target {target} failed; the input is in {}:\n{}",
                artifacts.display(),
                stderr
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let runs = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".into(), |n| n.trim().to_owned());
        let cov = stderr
            .lines()
            .rev()
            .find_map(|l| l.split("cov: ").nth(1)?.split_whitespace().next())
            .unwrap_or("?");
        eprintln!("xtask: fuzz {target}: {runs} inputs in {secs} s, coverage {cov}, no crash");
    }
    Ok(())
}
