//! Version and build information (`--version`, `--buildinfo`).

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `--version` output.
pub fn version_line() -> String {
    format!("cri-dockerd {VERSION}")
}
