//! Builds `tcptrace-ebpf` for the BPF target and leaves the object in OUT_DIR,
//! where `src/kernel/loader.rs` embeds it with `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` (aya-build's switch) nothing is built and an empty
//! object is left instead: the crate then builds, checks and unit-tests on a
//! machine without bpf-linker, and the binary says at run time that it has no
//! programs.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(out_dir.join("tcptrace-ebpf"), []).context("writing the empty eBPF object")?;
        return Ok(());
    }
    // The toolchain rustup is running us with (pinned in rust-toolchain.toml);
    // the eBPF build must use the same one, since bpf-linker is built against
    // its libLLVM.
    let toolchain = env::var("RUSTUP_TOOLCHAIN")
        .context("RUSTUP_TOOLCHAIN is not set: build through rustup's cargo (see README)")?;
    // Stable toolchain + rust-src: `-Z build-std=core` needs RUSTC_BOOTSTRAP=1,
    // for the inner eBPF build only.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    let workspace = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root_dir = format!("{workspace}/../tcptrace-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "tcptrace-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .map_err(|err| anyhow!("building the eBPF programs failed (run `./x setup` first?): {err:#}"))
}
