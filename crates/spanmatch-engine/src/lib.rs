//! The comparison pipeline of **spanmatch**: the one library API that every front calls (the
//! `spanmatch` command line, the Python bindings, `reproduce`).
//!
//! * [`options`]: the one options object of an analysis ([`Options`]), shared by every front;
//! * [`stream`]: one streamed pass over a layer pair of two activation files into f64 Gram
//!   statistics (plus the reference code's sampled protocol in the same pass);
//! * [`compare`]: whole comparisons of two files ([`compare::compare_files`]) and the analysis
//!   of one layer pair's statistics ([`compare::analyse_layer`]): ε-profile, maximum matches,
//!   thresholds, measures, simple matches;
//! * [`report`]: the result records with the JSON schema of `spanmatch compare --json` (and of
//!   Python's `Result.to_dict()`), and the text tables;
//! * [`multi`]: accumulators for several nets and pairs fed batch by batch (the single pass of
//!   `reproduce`);
//! * [`analysis`] and [`results`]: the per-layer records of `reproduce`'s results.json, which
//!   the HTML report renders;
//! * [`views`]: which matched neurons to show with the inputs they respond to most;
//! * [`progress`]: how the pipeline reports progress and warnings to its front.
//!
//! The numerics live in `spanmatch-core`, file reading in `spanmatch-io`; this crate knows
//! nothing of command lines, Python or neural networks.

#![warn(missing_docs)]

pub mod analysis;
pub mod compare;
pub mod multi;
pub mod options;
pub mod progress;
pub mod report;
pub mod results;
pub mod stream;
pub mod views;

pub use compare::{
    analyse_layer, compare_files, AnalysedLayer, CompareOptions, Comparison, LayerLabel,
};
pub use options::{Options, DEFAULT_EPS};
pub use progress::{Collect, Progress, Quiet};
pub use report::{LayerReport, Report};
