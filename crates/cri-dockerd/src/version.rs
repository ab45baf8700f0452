//! Version and build information (`--version`, `--buildinfo`), captured by `build.rs`.

/// Program name, as upstream's `PlatformName`.
pub const PROGRAM: &str = "cri-dockerd";
/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from, or `unknown`.
pub const GIT_COMMIT: &str = env!("CRI_DOCKERD_GIT_COMMIT");
/// Build date, UTC (`SOURCE_DATE_EPOCH` when set), or `unknown`.
pub const BUILD_DATE: &str = env!("CRI_DOCKERD_BUILD_DATE");
/// `rustc --version` of the compiler that built the binary.
pub const RUSTC_VERSION: &str = env!("CRI_DOCKERD_RUSTC_VERSION");

/// `<version> (<commit>)`, as upstream's `FullVersion`.
pub fn full_version() -> String {
    format!("{VERSION} ({GIT_COMMIT})")
}

/// `--version` output: `cri-dockerd <version> (<commit>)`.
pub fn version_line() -> String {
    format!("{PROGRAM} {}", full_version())
}

/// `--buildinfo` output, one `Key: value` per line.
pub fn build_info() -> String {
    format!(
        "Program: {PROGRAM}\nVersion: {}\nGitCommit: {GIT_COMMIT}\nBuilt: {BUILD_DATE}\nRustVersion: {RUSTC_VERSION}\n",
        full_version()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_has_upstream_shape() {
        let line = version_line();
        assert!(line.starts_with("cri-dockerd 0."), "{line}");
        assert!(line.ends_with(&format!("({GIT_COMMIT})")), "{line}");
    }

    #[test]
    fn build_info_has_every_key() {
        let info = build_info();
        let keys: Vec<&str> = info
            .lines()
            .map(|l| l.split_once(": ").map_or("", |(k, _)| k))
            .collect();
        assert_eq!(
            keys,
            ["Program", "Version", "GitCommit", "Built", "RustVersion"]
        );
        assert!(RUSTC_VERSION.starts_with("rustc "), "{RUSTC_VERSION}");
    }
}
