//! Helpers shared by the end-to-end tests: scratch directories and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty directory `CARGO_TARGET_TMPDIR/<suite>/<name>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(suite)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Runs `spanmatch` with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spanmatch"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running spanmatch: {e}"))
}

/// Runs `spanmatch`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "spanmatch {args:?} failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `spanmatch`, asserts failure, returns stderr.
pub fn fail(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "spanmatch {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
