//! Builds the policy plugins (wasm32-wasip2 components) with their own target directory, so the
//! default policy can be embedded in the binary with no manual step.

use std::path::PathBuf;
use std::process::Command;

const PLUGINS: &[(&str, &str)] = &[
    ("compactor-policy-default", "COMPACTOR_DEFAULT_PLUGIN_WASM"),
    ("compactor-policy-hostile", "COMPACTOR_HOSTILE_PLUGIN_WASM"),
    (
        "compactor-policy-size-tiered",
        "COMPACTOR_SIZE_TIERED_PLUGIN_WASM",
    ),
    (
        "compactor-policy-daily-rollup",
        "COMPACTOR_DAILY_ROLLUP_PLUGIN_WASM",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    for dir in ["plugins", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    // target/<profile>/build/<pkg>/out -> target/plugins; shared by debug and release builds.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("plugins"))
        .unwrap_or_else(|| out_dir.join("plugins"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the wasm plugins failed. If the error says the wasm32-wasip2 target is \
             missing, run `rustup toolchain install` in the repository (scripts/test and \
             scripts/demo do it for you)."
        );
    }
    for (package, env) in PLUGINS {
        let wasm = target_dir
            .join("wasm32-wasip2/plugin")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        println!("cargo:rustc-env={env}={}", wasm.display());
    }
}
