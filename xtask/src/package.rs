//! `./x package`: a Debian package the way SREs install tools on a fleet,
//! built with dpkg-deb from what `./x install` installs too: the binary, its
//! man page and shell completions (generated from the CLI's definition by
//! `tcptrace --generate`), the systemd unit and the Prometheus alert rules.
//! `check` installs it into a fresh root and runs it from there.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

const DIST: &str = "tcptrace/dist";

/// Where each generated or shipped file goes, under a prefix (`/usr` in the
/// package, `--prefix` for `./x install`).
pub(crate) struct Layout {
    pub bin: PathBuf,
    pub man8: PathBuf,
    pub bash: PathBuf,
    pub zsh: PathBuf,
    pub fish: PathBuf,
    pub share: PathBuf,
}

impl Layout {
    pub(crate) fn under(prefix: &Path) -> Self {
        let share = prefix.join("share");
        Self {
            bin: prefix.join("bin/tcptrace"),
            man8: share.join("man/man8/tcptrace.8.gz"),
            bash: share.join("bash-completion/completions/tcptrace"),
            zsh: share.join("zsh/vendor-completions/_tcptrace"),
            fish: share.join("fish/vendor_completions.d/tcptrace.fish"),
            share: share.join("tcptrace"),
        }
    }
}

fn output(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // A temporary name, then a rename: a running tcptrace is not disturbed.
    let tmp = path.with_extension("new");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Installs the binary `built`, its man page, completions and the shipped
/// files (alert rules, example scrape configuration, Grafana dashboard)
/// under `layout`.
pub(crate) fn install(built: &Path, layout: &Layout) -> Result<()> {
    write(&layout.bin, &fs::read(built)?)?;
    set_mode(&layout.bin, 0o755)?;
    let mut man = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    man.write_all(&output(built, &["--generate", "man"])?)?;
    write(&layout.man8, &man.finish()?)?;
    write(&layout.bash, &output(built, &["--generate", "bash"])?)?;
    write(&layout.zsh, &output(built, &["--generate", "zsh"])?)?;
    write(&layout.fish, &output(built, &["--generate", "fish"])?)?;
    for file in ["alerts.yml", "prometheus.yml", "grafana-dashboard.json"] {
        write(
            &layout.share.join(file),
            &fs::read(Path::new(DIST).join(file))?,
        )?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The systemd unit, with its binary at `bin`.
pub(crate) fn unit(bin: &Path) -> Result<String> {
    let unit = fs::read_to_string(Path::new(DIST).join("tcptrace.service"))?;
    Ok(unit.replace("/usr/bin/tcptrace", &bin.display().to_string()))
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds target/package/tcptrace_VERSION_ARCH.deb from the release binary.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    let built = root.join("target/release/tcptrace");
    let version = String::from_utf8(output(&built, &["--version"])?)?
        .split_whitespace()
        .nth(1)
        .context("tcptrace --version printed no version")?
        .to_owned();
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let stage = root.join("target/package/root");
    let _ = fs::remove_dir_all(&stage);
    install(&built, &Layout::under(&stage.join("usr")))?;
    // The debug information stays in target/; the package carries the code.
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg(stage.join("usr/bin/tcptrace")))?;
    write(
        &stage.join("lib/systemd/system/tcptrace.service"),
        unit(Path::new("/usr/bin/tcptrace"))?.as_bytes(),
    )?;
    write(
        &stage.join("usr/share/doc/tcptrace/copyright"),
        b"tcptrace\nLicense: MIT OR Apache-2.0\n",
    )?;
    let size_kib: u64 = walk(&stage)?.iter().map(|p| p.1.div_ceil(1024)).sum();
    let control = format!(
        "Package: tcptrace\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: tcptrace developers <tcptrace@example.invalid>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6\n\
         Section: net\n\
         Priority: optional\n\
         Description: trace TCP state transitions live with eBPF\n \
         tcptrace prints every TCP state change on the host, measures how long\n \
         TIME_WAIT really lasts and who closes first, finds port exhaustion,\n \
         CLOSE_WAIT leaks and full listen backlogs, and serves it all as\n \
         Prometheus metrics (tcptrace --quiet --metrics PORT; systemd unit\n \
         tcptrace.service, alert rules in /usr/share/tcptrace).\n"
    );
    write(&stage.join("DEBIAN/control"), control.as_bytes())?;
    // systemd learns of the unit (not started: the metrics address is the
    // operator's choice). Nothing to do in a root that is not running.
    for (script, action) in [("postinst", "configure"), ("postrm", "remove")] {
        let path = stage.join("DEBIAN").join(script);
        write(
            &path,
            format!(
                "#!/bin/sh\nset -e\n\
                 if [ \"$1\" = \"{action}\" ] && [ -z \"$DPKG_ROOT\" ] && [ -d /run/systemd/system ]; then\n    \
                 systemctl daemon-reload >/dev/null || true\nfi\n"
            )
            .as_bytes(),
        )?;
        set_mode(&path, 0o755)?;
    }
    let deb = root.join(format!("target/package/tcptrace_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}

/// Every file under `dir` with its size.
fn walk(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            files.extend(walk(&entry.path())?);
        } else {
            files.push((entry.path(), meta.len()));
        }
    }
    Ok(files)
}

/// Installs `deb` into a fresh root with dpkg, runs the binary from there,
/// and checks what the package holds and says.
pub(crate) fn check(root: &Path, deb: &Path) -> Result<()> {
    let fresh = root.join("target/package/fresh-root");
    let _ = fs::remove_dir_all(&fresh);
    fs::create_dir_all(fresh.join("var/lib/dpkg/info"))?;
    fs::create_dir_all(fresh.join("var/lib/dpkg/updates"))?;
    fs::write(fresh.join("var/lib/dpkg/status"), "")?;
    // The fresh root has no libc6 package: dpkg is told so, and installs.
    run(Command::new("dpkg")
        .arg(format!("--root={}", fresh.display()))
        .args(["--force-depends", "--force-script-chrootless", "-i"])
        .arg(deb))?;
    let status = fs::read_to_string(fresh.join("var/lib/dpkg/status"))?;
    ensure!(
        status.contains("Package: tcptrace\nStatus: install ok installed"),
        "dpkg did not record tcptrace as installed:\n{status}"
    );
    let version = run(Command::new(fresh.join("usr/bin/tcptrace")).arg("--version"))?;
    ensure!(
        version.starts_with("tcptrace "),
        "tcptrace --version: {version}"
    );
    let listed = run(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    for path in [
        "./usr/bin/tcptrace",
        "./usr/share/man/man8/tcptrace.8.gz",
        "./usr/share/bash-completion/completions/tcptrace",
        "./usr/share/zsh/vendor-completions/_tcptrace",
        "./usr/share/fish/vendor_completions.d/tcptrace.fish",
        "./lib/systemd/system/tcptrace.service",
        "./usr/share/tcptrace/alerts.yml",
        "./usr/share/tcptrace/prometheus.yml",
        "./usr/share/tcptrace/grafana-dashboard.json",
    ] {
        ensure!(
            listed.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{listed}"
        );
    }
    ensure!(
        listed.lines().all(|l| l.contains(" root/root ")),
        "files not owned by root:\n{listed}"
    );
    let control = run(Command::new("dpkg-deb").args(["--field"]).arg(deb))?;
    for field in ["Package: tcptrace", "Depends: libc6", "Section: net"] {
        ensure!(control.contains(field), "control lacks {field}:\n{control}");
    }
    let man = run(Command::new("man")
        .args(["--local-file", "--pager=cat"])
        .arg(fresh.join("usr/share/man/man8/tcptrace.8.gz"))
        .env("MANWIDTH", "100"))?;
    ensure!(
        man.contains("--metrics") && man.contains("tcptrace"),
        "the man page does not render: {man}"
    );
    // The unit as packaged, pointed at the binary in the fresh root.
    let packaged = fs::read_to_string(fresh.join("lib/systemd/system/tcptrace.service"))?;
    let checked = fresh.join("tcptrace-check.service");
    fs::write(
        &checked,
        packaged.replace(
            "/usr/bin/tcptrace",
            &fresh.join("usr/bin/tcptrace").display().to_string(),
        ),
    )?;
    // It warns, and exits 0, on what it ignores: any word from it fails.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&checked)
        .output()
        .context("running systemd-analyze")?;
    let said = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    ensure!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify on the unit: {said}"
    );
    eprintln!(
        "xtask: {} installs into a fresh root, runs ({}), holds the man page, completions, unit and rules: ok",
        deb.display(),
        version.trim()
    );
    Ok(())
}
