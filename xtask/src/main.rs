//! Developer jobs cargo can't express: preparing a fresh machine (bpf-linker
//! built against the pinned toolchain's libLLVM, tracefs), running the
//! root-only test suite, installing, benchmarking.
//!
//! Run through `./x`, which first installs the pinned toolchain.

mod bench;
mod churn;
mod setup;

use std::{os::unix::process::CommandExt as _, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "tcptrace developer jobs (run through ./x)")]
struct Args {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Install what a fresh machine lacks: bpf-linker, tracefs mount. Idempotent.
    Setup,
    /// Set up, then build tcptrace (release).
    Build,
    /// Set up, build, and run tcptrace (as root) with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and install tcptrace into PREFIX/bin so `sudo tcptrace` works.
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Set up, then run the whole test suite: formatting, clippy, unit tests,
    /// and the integration tests that load the real programs (needs root).
    Test,
    /// Set up, build, and measure tcptrace's overhead under connection churn
    /// (needs root): a table on stdout, target/bench/results.json.
    Bench(bench::BenchArgs),
    /// The benchmark's load alone: loopback connection churn; prints a JSON report.
    Churn(churn::ChurnArgs),
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let root = setup::workspace_root()?;
    std::env::set_current_dir(&root)?;
    match args.job {
        Job::Setup => setup::run(),
        Job::Build => {
            setup::run()?;
            build_release()
        }
        Job::Run { args } => {
            setup::run()?;
            build_release()?;
            let binary = root.join("target/release/tcptrace");
            Err(Command::new(&binary).args(args).exec())
                .with_context(|| format!("running {}", binary.display()))
        }
        Job::Install { prefix } => {
            setup::run()?;
            build_release()?;
            let dest = prefix.join("bin/tcptrace");
            std::fs::create_dir_all(prefix.join("bin"))?;
            // Copy to a temporary name and rename, so a running tcptrace is not disturbed.
            let tmp = dest.with_extension("new");
            std::fs::copy(root.join("target/release/tcptrace"), &tmp)
                .with_context(|| format!("copying to {}", tmp.display()))?;
            std::fs::rename(&tmp, &dest)?;
            println!("xtask: installed {}", dest.display());
            Ok(())
        }
        Job::Test => {
            setup::run()?;
            test()
        }
        Job::Bench(args) => {
            setup::run()?;
            build_release()?;
            bench::run(args, &root)
        }
        Job::Churn(args) => {
            let report = churn::run(args)?;
            println!("{}", report.to_json());
            Ok(())
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = setup::cargo_command()
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn build_release() -> Result<()> {
    cargo(&["build", "--release", "--package", "tcptrace"])
}

fn test() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        // The integration tests load BPF programs: without root they fail,
        // loudly, which is right for CI; say why up front.
        eprintln!(
            "xtask: warning: not root; the integration tests will fail (run ./x test as root)"
        );
    }
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets"])
}
