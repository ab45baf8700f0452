//! Build script: records the git commit, the build date (UTC, honouring SOURCE_DATE_EPOCH) and
//! the rustc version for `--version` / `--buildinfo`. Never fails: missing facts are `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=CRI_DOCKERD_GIT_COMMIT");

    let commit = std::env::var("CRI_DOCKERD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    watch_git_head();
    println!("cargo:rustc-env=CRI_DOCKERD_GIT_COMMIT={}", commit.trim());

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        });
    let built = epoch.map_or_else(|| "unknown".to_string(), utc_date);
    println!("cargo:rustc-env=CRI_DOCKERD_BUILD_DATE={built}");

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_version =
        output(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CRI_DOCKERD_RUSTC_VERSION={rustc_version}");
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn git_commit() -> Option<String> {
    output(Command::new("git").args(["rev-parse", "--short=8", "HEAD"]))
}

/// Rebuild when HEAD moves: the worktree's HEAD, the branch ref it names, and packed-refs.
fn watch_git_head() {
    let Some(git_dir) = output(Command::new("git").args(["rev-parse", "--absolute-git-dir"]))
    else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    let common = output(Command::new("git").args(["rev-parse", "--git-common-dir"]))
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
            }
        })
        .unwrap_or_else(|| git_dir.clone());
    let head = git_dir.join("HEAD");
    rerun_if_exists(&head);
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(reference) = text.trim().strip_prefix("ref: ")
    {
        rerun_if_exists(&common.join(reference));
        rerun_if_exists(&git_dir.join(reference));
    }
    rerun_if_exists(&common.join("packed-refs"));
}

fn rerun_if_exists(p: &Path) {
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC).
fn utc_date(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
