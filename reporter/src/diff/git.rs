//! The change of a git range, as `git diff` prints it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git diff` could not produce the change.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("failed to run git in {dir} (hint: install git; scripts/setup.sh does)")]
    Spawn {
        /// Where it was run.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// git ran and failed.
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// Where it was run.
        dir: PathBuf,
        /// What git said.
        stderr: String,
    },
}

fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The change from `base` (a commit, or a range `A..B`) to the work tree
/// (or to `B`) of the repository at `dir`, as a unified diff, and the
/// repository's top directory (what the diff's paths are relative to).
pub fn diff(dir: &Path, base: &str) -> Result<(String, PathBuf), GitError> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?.trim());
    let text = git(
        &top,
        &[
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--find-renames",
            base,
            "--",
        ],
    )?;
    Ok((text, top))
}
