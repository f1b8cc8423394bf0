//! Builds `tcptrace-ebpf` for the BPF target and leaves the object in OUT_DIR,
//! where `src/bpf.rs` embeds it with `include_bytes_aligned!`.

use std::env;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
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
