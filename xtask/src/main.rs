//! Developer jobs cargo can't express: preparing a fresh machine (bpf-linker
//! built against the pinned toolchain's libLLVM, tracefs), running the
//! root-only test suite, installing, benchmarking.
//!
//! Run through `./x`, which first installs the pinned toolchain.

mod bench;
mod churn;
mod fuzz;
mod package;
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
    /// Set up, build, and install tcptrace into PREFIX/bin so `sudo tcptrace`
    /// works, with its man page, shell completions, alert rules and example
    /// scrape configuration under PREFIX/share.
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Also install the systemd unit (/etc/systemd/system/tcptrace.service)
        /// running PREFIX/bin/tcptrace as a metrics daemon.
        #[arg(long)]
        service: bool,
    },
    /// Set up, build, and make a Debian package: target/package/*.deb.
    Package {
        /// Then install it into a fresh root and check it (as ./x test does).
        #[arg(long)]
        check: bool,
    },
    /// Set up, then run the whole test suite: formatting, clippy, unit tests,
    /// and the integration tests that load the real programs (needs root).
    Test,
    /// Set up, build, and measure tcptrace's overhead under connection churn
    /// (needs root): a table on stdout, target/bench/results.json.
    Bench(bench::BenchArgs),
    /// Set up, build, and run the daemon (`--quiet --metrics`, scraped every
    /// second) through millions of churned connections: RSS and series
    /// count at each step (needs root).
    Soak(bench::SoakArgs),
    /// Set up, then run the fuzz targets of tcptrace/fuzz (all, or one) for
    /// SECS seconds each, from their corpora.
    Fuzz {
        target: Option<String>,
        #[arg(long = "for", value_name = "SECS", default_value_t = 60)]
        secs: u64,
    },
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
        Job::Install { prefix, service } => {
            setup::run()?;
            build_release()?;
            let layout = package::Layout::under(&prefix);
            package::install(&root.join("target/release/tcptrace"), &layout)?;
            println!(
                "xtask: installed {}, its man page and completions",
                layout.bin.display()
            );
            if service {
                let unit = std::path::Path::new("/etc/systemd/system/tcptrace.service");
                std::fs::write(unit, package::unit(&layout.bin)?)
                    .with_context(|| format!("writing {}", unit.display()))?;
                println!(
                    "xtask: installed {}; start it with: systemctl daemon-reload && systemctl enable --now tcptrace",
                    unit.display()
                );
            }
            Ok(())
        }
        Job::Package { check } => {
            setup::run()?;
            build_release()?;
            let deb = package::build(&root)?;
            println!("xtask: built {}", deb.display());
            match check {
                true => package::check(&root, &deb),
                false => Ok(()),
            }
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
        Job::Fuzz { target, secs } => {
            setup::run()?;
            fuzz::run(&root, target.as_deref(), secs)
        }
        Job::Soak(args) => {
            setup::run()?;
            build_release()?;
            bench::soak(args, &root)
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

/// `cargo clippy` and the unit tests work where bpf-linker is missing, with
/// `AYA_BUILD_SKIP=1`, and the binary built so says at run time, in one
/// line, that it has no programs. Run with `.tools` off PATH, so that a
/// build step that needs bpf-linker would fail here.
fn without_bpf_linker() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let tools = setup::workspace_root()?.join(".tools");
    let path =
        std::env::join_paths(std::env::split_paths(&path).filter(|d| !d.starts_with(&tools)))?;
    let skip = |args: &[&str]| -> Result<()> {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .env("AYA_BUILD_SKIP", "1")
            .env("PATH", &path)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!(
                "AYA_BUILD_SKIP=1 cargo {} failed ({status})",
                args.join(" ")
            );
        }
        Ok(())
    };
    skip(&[
        "clippy",
        "--package",
        "tcptrace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    skip(&["test", "--package", "tcptrace", "--lib"])?;
    skip(&["build", "--package", "tcptrace"])?;
    let out = Command::new("target/debug/tcptrace").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success()
        || !stderr.contains("built without its eBPF programs")
        || stderr.lines().count() != 1
    {
        bail!(
            "a tcptrace built with AYA_BUILD_SKIP=1 must refuse to run in one line; it said: {stderr}"
        );
    }
    eprintln!(
        "xtask: without bpf-linker: clippy and unit tests pass, the binary refuses to run: ok"
    );
    Ok(())
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
    without_bpf_linker()?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets"])?;
    alert_rules()?;
    build_release()?;
    let root = setup::workspace_root()?;
    let deb = package::build(&root)?;
    package::check(&root, &deb)?;
    // Each parser of kernel-provided or file input, briefly.
    fuzz::run(&root, None, FUZZ_SECS)
}

/// How long `./x test` fuzzes each target.
const FUZZ_SECS: u64 = 20;

/// The shipped alert rules: valid (`promtool check rules`), and each one
/// fires and stays quiet when it should (`promtool test rules`).
fn alert_rules() -> Result<()> {
    let status = Command::new("promtool")
        .args(["check", "rules", "tcptrace/dist/alerts.yml"])
        .status()
        .context("running promtool (Debian's prometheus package)")?;
    if !status.success() {
        bail!("promtool check rules failed");
    }
    let mut tests: Vec<PathBuf> = std::fs::read_dir("tcptrace/dist/tests")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    tests.sort();
    let status = Command::new("promtool")
        .args(["test", "rules"])
        .args(&tests)
        .status()?;
    if !status.success() {
        bail!("promtool test rules failed");
    }
    eprintln!("xtask: alert rules: valid, {} unit tests pass", tests.len());
    Ok(())
}
