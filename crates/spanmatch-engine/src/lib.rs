//! The comparison pipeline of **spanmatch**: the one library API that every front calls (the
//! `spanmatch` command line, the Python bindings, `reproduce`).
//!
//! * [`options`]: the one options object of an analysis ([`Options`]), shared by every front;
//! * [`stream`]: one streamed pass over a layer pair of two activation files into f64 Gram
//!   statistics (plus the reference code's sampled protocol in the same pass);
//! * [`analysis`]: the one analysis of a layer pair's statistics ([`analysis::analyse_pair`]):
//!   ε-profile, maximum matches, thresholds, measures, the controls (centred match, rotation
//!   null, bootstrap intervals, untrained baseline), simple matches and the verdict;
//! * [`verdict`]: the one-word verdict per layer and its rule;
//! * [`compare`]: whole comparisons of two activation files ([`compare::compare_files`]);
//! * [`results`]: the one versioned results schema (`compare --json`, Python's `to_dict()`,
//!   reproduce's results.json), its readers (older files converted by [`legacy`]) and writers;
//! * [`tables`]: the text tables of a comparison;
//! * [`multi`]: accumulators for several nets and pairs fed batch by batch (the single pass of
//!   `reproduce`);
//! * [`views`]: which matched neurons to show with the inputs they respond to most;
//! * [`progress`]: how the pipeline reports progress and warnings to its front.
//!
//! The numerics live in `spanmatch-core`, file reading in `spanmatch-io`; this crate knows
//! nothing of command lines, Python or neural networks.

#![warn(missing_docs)]

pub mod analysis;
pub mod compare;
pub mod legacy;
pub mod multi;
pub mod options;
pub mod progress;
pub mod results;
pub mod stream;
pub mod tables;
pub mod verdict;
pub mod views;

pub use analysis::{analyse_pair, BaselineInput, LayerLabel, PairInput};
pub use compare::{compare_files, CompareOptions};
pub use options::{Options, DEFAULT_EPS};
pub use progress::{Collect, Progress, Quiet};
pub use results::{LayerRecord, Results};
pub use verdict::Verdict;
