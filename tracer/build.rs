//! Builds the kernel programs (tracer-ebpf) for the bpf target and leaves the object
//! in OUT_DIR, where `src/bpf/mod.rs` embeds it with `include_bytes_aligned!`.
//!
//! The nested build uses the pinned nightly (it needs `-Z build-std=core`) and
//! bpf-linker; `cargo xtask setup` installs both.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The toolchain the eBPF crate is built with (see ../shared notes in the README).
const EBPF_TOOLCHAIN: &str = "nightly-2026-05-19";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tracer/ lives in the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ebpf_dir = root.join("tracer-ebpf");
    for p in ["src", "Cargo.toml", "abi/src", "abi/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=TRACER_EBPF_OBJECT");

    let dest = out_dir.join("tracer-ebpf.o");
    // A prebuilt object may be supplied (e.g. by a packager).
    if let Ok(obj) = env::var("TRACER_EBPF_OBJECT") {
        std::fs::copy(&obj, &dest).unwrap_or_else(|e| panic!("copying TRACER_EBPF_OBJECT {obj}: {e}"));
        return;
    }

    let target_dir = root.join("target").join("ebpf");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let rustflags =
        [format!("--cfg=bpf_target_arch=\"{arch}\""), "-Cdebuginfo=2".into(), "-Clink-arg=--btf".into()].join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&root)
        .args(["run", EBPF_TOOLCHAIN, "cargo", "build", "-p", "tracer-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir);
    // Keep the outer (stable) cargo's settings out of the nested build.
    for (k, _) in env::vars() {
        if k == "RUSTC"
            || k == "RUSTC_WRAPPER"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "RUSTUP_TOOLCHAIN"
            || k == "CARGO"
            || k == "RUSTFLAGS"
            || k == "CARGO_TARGET_DIR"
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MAKEFLAGS")
            || k == "CARGO_MANIFEST_DIR"
            || k == "CARGO_MANIFEST_PATH"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k == "DEBUG"
            || k == "OPT_LEVEL"
            || k == "PROFILE"
            || k == "TARGET"
            || k == "HOST"
            || k == "OUT_DIR"
            || k == "NUM_JOBS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("running rustup to build the eBPF programs failed ({e}); run `cargo xtask setup` first")
    });
    if !status.success() {
        panic!(
            "building tracer-ebpf failed ({status}); `cargo xtask setup` installs the {EBPF_TOOLCHAIN} toolchain and bpf-linker it needs"
        );
    }
    let obj = target_dir.join("bpfel-unknown-none").join("release").join("tracer-ebpf");
    copy(&obj, &dest);
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
