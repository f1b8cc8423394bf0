//! Preparing a machine: everything a fresh one lacks, installed idempotently
//! from crates.io (rustup's server is used by `./x` for the toolchain).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// bpf-linker release known to work with aya 0.16 and LLVM 21-23.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub(crate) fn workspace_root() -> Result<PathBuf> {
    let manifest = env::var("CARGO_MANIFEST_DIR").context("run through ./x or cargo xtask")?;
    Ok(Path::new(&manifest)
        .parent()
        .context("xtask has no parent directory")?
        .to_owned())
}

/// `cargo`, with the project's tools first on PATH.
pub(crate) fn cargo_command() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if let Ok(root) = workspace_root() {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![root.join(".tools/bin")];
        dirs.extend(env::split_paths(&path));
        if let Ok(joined) = env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    cmd
}

pub(crate) fn run() -> Result<()> {
    let root = workspace_root()?;
    bpf_linker(&root)?;
    cargo_fuzz(&root)?;
    tracefs();
    debian_packages()?;
    if !Path::new("/sys/kernel/btf/vmlinux").is_file() {
        eprintln!("xtask: warning: no /sys/kernel/btf/vmlinux; tcptrace needs a kernel with BTF");
    }
    Ok(())
}

fn rustc_info(key: &str) -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("rustc -vV has no `{key}` line"))
}

/// Builds bpf-linker into .tools/ against the active toolchain's own libLLVM
/// (Debian's LLVM is too old, and a default `cargo install bpf-linker` wants
/// an LLVM installation). Skipped when the stamp says it is already built for
/// this exact toolchain.
fn bpf_linker(root: &Path) -> Result<()> {
    let tools = root.join(".tools");
    let release = rustc_info("release:")?;
    let llvm = rustc_info("LLVM version:")?;
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!("bpf-linker {BPF_LINKER_VERSION} rustc {release} llvm {llvm}\n");
    let binary = tools.join("bin/bpf-linker");
    let works = || {
        Command::new(&binary)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) && works() {
        return Ok(());
    }

    let major = llvm.split('.').next().context("LLVM version")?.to_owned();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    let lib = fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}/lib", sysroot.display()))?;
    let llvm_lib = tools.join("llvm/lib");
    fs::create_dir_all(&llvm_lib)?;
    // libLLVM.so is the name the linker looks for at build time; the SONAME
    // link is what the built binary loads at run time (its rpath points here).
    for name in ["libLLVM.so", lib.as_str()] {
        let link = llvm_lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(sysroot.join("lib").join(&lib), &link)?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against Rust {release}'s LLVM {llvm} (about a minute)"
    );
    let status = cargo_command()
        .env("LLVM_PREFIX", tools.join("llvm"))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{major}"), "--force", "--root"])
        .arg(&tools)
        .status()?;
    if !status.success() || !works() {
        bail!("building bpf-linker failed ({status})");
    }
    fs::write(&stamp_path, stamp)?;
    Ok(())
}

/// cargo-fuzz release the fuzz targets are run with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz into .tools/ from crates.io, unless that version is
/// there already.
fn cargo_fuzz(root: &Path) -> Result<()> {
    let tools = root.join(".tools");
    let binary = tools.join("bin/cargo-fuzz");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("xtask: building cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
    let status = cargo_command()
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--force",
            "--root",
        ])
        .arg(&tools)
        .status()?;
    if !status.success() {
        bail!("building cargo-fuzz from crates.io failed ({status}): is crates.io reachable?");
    }
    Ok(())
}

/// Debian packages the tests need: `nft` (nftables) drops chosen packets
/// inside the test namespaces; `prometheus` (with `promtool`) scrapes the
/// metrics endpoint and checks the exposition and the alert rules; `dpkg-deb`
/// builds the package; nginx, haproxy, redis, PostgreSQL (with pgbench) and
/// Debian's python3 are the real servers and clients the findings are
/// checked against (tests/servers.rs); `tmux` is the real terminal `tcptrace
/// top` is driven in (tests/ports.rs). `ip` (iproute2) ships with the
/// machine.
fn debian_packages() -> Result<()> {
    let mut missing: Vec<&str> = [
        ("nft", "nftables"),
        ("ip", "iproute2"),
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
        ("dpkg-deb", "dpkg"),
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("redis-server", "redis-server"),
        ("pgbench", "postgresql"),
        ("initdb", "postgresql"),
        ("python3", "python3"),
        ("tmux", "tmux"),
    ]
    .into_iter()
    .filter(|(bin, _)| {
        // PostgreSQL's server programs are in a directory of its version.
        let versions = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|v| v.path().join("bin"));
        !["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .map(PathBuf::from)
            .chain(versions)
            .any(|d| d.join(bin).exists())
    })
    .map(|(_, package)| package)
    .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "xtask: warning: {} missing (needed by the scenario tests); install as root",
            missing.join(", ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing {} from Debian", missing.join(", "));
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!(
                "apt-get {} failed ({status}): is Debian's archive reachable?",
                args.join(" ")
            );
        }
        Ok(())
    };
    // A fresh cloud machine holds the dpkg lock for minutes after boot
    // (unattended upgrades): wait for it rather than fail.
    apt(&["-o", "DPkg::Lock::Timeout=600", "update", "-qq"])?;
    let mut install = vec![
        "-o",
        "DPkg::Lock::Timeout=600",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
    ];
    install.extend(&missing);
    apt(&install)?;
    // Debian starts the server it installs where systemd runs: the tests
    // start their own, on their own ports.
    if Path::new("/run/systemd/system").is_dir() {
        for (package, unit) in [
            ("prometheus", "prometheus"),
            ("nginx-light", "nginx"),
            ("haproxy", "haproxy"),
            ("redis-server", "redis-server"),
            ("postgresql", "postgresql"),
        ] {
            if missing.contains(&package) {
                let _ = Command::new("systemctl")
                    .args(["disable", "--now", unit])
                    .status();
            }
        }
    }
    Ok(())
}

/// Mounts tracefs if it is not mounted (classic tracepoints are attached by
/// the ids it publishes). tcptrace does the same at start-up; doing it here
/// too means tests and benchmarks find it in place.
fn tracefs() {
    let populated = |p: &str| fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
    if populated("/sys/kernel/tracing") || populated("/sys/kernel/debug/tracing") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("xtask: tracefs is not mounted (tcptrace will mount it when run as root)");
        return;
    }
    match nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => eprintln!("xtask: mounted tracefs on /sys/kernel/tracing"),
        Err(err) => eprintln!("xtask: warning: mounting tracefs failed: {err}"),
    }
}
