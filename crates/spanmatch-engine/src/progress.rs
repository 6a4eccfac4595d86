//! How the pipeline talks back to its front while it works: progress, early stop, warnings.
//!
//! The engine never draws a progress bar or prints: the CLI implements [`Progress`] with
//! indicatif bars on stderr, the Python bindings with Python warnings, and [`Quiet`] ignores
//! everything.

/// Receives the pipeline's progress reports. Every method has a do-nothing default.
pub trait Progress {
    /// A new stage starts: `label` (a layer name) with `total` units of work (bytes of the files
    /// for a statistics pass).
    fn start(&mut self, _label: &str, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn inc(&mut self, _n: u64) {}
    /// The current stage is over.
    fn finish(&mut self) {}
    /// Simple matches: `done` of `total` neurons processed. Return `false` to stop early (the
    /// partial result is kept and marked incomplete).
    fn simple(&mut self, _done: usize, _total: usize) -> bool {
        true
    }
    /// A warning for the user (a skipped array, a whole-file decompression, ...).
    fn warn(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// A [`Progress`] that shows nothing and never stops; warnings still go to stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {}

/// A [`Progress`] that keeps the warnings (for fronts that show them their own way).
#[derive(Debug, Default, Clone)]
pub struct Collect {
    /// Warnings received, in order.
    pub warnings: Vec<String>,
}

impl Progress for Collect {
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}
