//! `compactor plugin new NAME`: a new policy crate, copied from `plugins/template` (compiled
//! into the binary, so it is the template the tests build and check).

use std::path::{Path, PathBuf};

const TEMPLATE_LIB: &str = include_str!("../../../plugins/template/src/lib.rs");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// What was made, for the user's next steps.
#[derive(Debug)]
pub struct NewPlugin {
    pub dir: PathBuf,
    /// The component `cargo build --release --target wasm32-wasip2` will write, relative to
    /// `dir`.
    pub wasm: PathBuf,
}

/// Writes the crate `name` into `dir` (which must not exist, or be empty), depending on the
/// SDK at `sdk`.
pub fn create(name: &str, dir: &Path, sdk: &Path) -> Result<NewPlugin, String> {
    check_name(name)?;
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        ));
    }
    let sdk = std::fs::canonicalize(sdk)
        .ok()
        .filter(|p| is_sdk(p))
        .ok_or_else(|| {
            format!(
                "{} is not compactor's plugin SDK (plugins/sdk in a clone of compactor)",
                sdk.display()
            )
        })?;
    let camel: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let lib = TEMPLATE_LIB
        .replace("TemplatePolicy", &format!("{camel}Policy"))
        .replace("\"template\"", &format!("{name:?}"));
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
# cdylib: the wasm32-wasip2 component; rlib: native unit tests of the logic.
crate-type = ["cdylib", "rlib"]

[dependencies]
compactor-plugin-sdk = {{ path = {sdk:?} }}

# A crate of its own, not part of a workspace it may sit in.
[workspace]

# Plugins run under a fuel limit and are copied around: small and fast.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#,
        sdk = sdk.display().to_string()
    );
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("Cargo.toml", &manifest)?;
    write("rust-toolchain.toml", TOOLCHAIN)?;
    write("src/lib.rs", &lib)?;
    write(".gitignore", "/target\n")?;
    Ok(NewPlugin {
        dir: dir.to_path_buf(),
        wasm: Path::new("target/wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_"))),
    })
}

/// The SDK next to the running binary's source tree or the current directory: the first
/// `plugins/sdk` found walking up from either.
pub fn find_sdk() -> Option<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    starts
        .into_iter()
        .flatten()
        .flat_map(|start| {
            start
                .ancestors()
                .map(|a| a.join("plugins/sdk"))
                .collect::<Vec<_>>()
        })
        .find(|p| is_sdk(p))
}

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|t| t.contains("name = \"compactor-plugin-sdk\""))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name {name:?}: use lowercase letters, digits and single dashes, starting \
             with a letter (e.g. quiet-hours)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["quiet-hours", "p2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["Quiet", "2p", "a--b", "a-", "a_b", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_crate_is_the_template_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = find_sdk().expect("the repository's SDK");
        let made = create("night-owl", &dir.path().join("p"), &sdk).unwrap();
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct NightOwlPolicy"));
        assert!(lib.contains("const NAME: &'static str = \"night-owl\";"));
        assert!(!lib.contains("Template"));
        assert!(made.wasm.ends_with("night_owl.wasm"));
        // Not over a non-empty directory.
        assert!(
            create("x", &made.dir, &sdk)
                .unwrap_err()
                .contains("not empty")
        );
    }
}
