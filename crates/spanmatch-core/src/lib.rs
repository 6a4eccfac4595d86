//! Numerical core of **spanmatch**.
//!
//! spanmatch answers the question of Wang et al. (NeurIPS 2018, arXiv 1810.11750): *to what
//! extent do two neural networks learn the same representation?* Two groups of neurons, X' of
//! net A and Y' of net B, form an ε-approximate match when every activation vector of each group
//! is ε-close to the span of the other group (the sine of its angle to that span is at most ε).
//!
//! This crate knows nothing about files or neural networks. Its pipeline is:
//!
//! 1. [`GramAccumulator`]: fed row blocks of the two activation matrices (rows are samples,
//!    columns are neurons), it keeps the joint Gram matrix of `[X | Y]` in f64 plus a few
//!    first/second-order moments. Memory is O((n1 + n2)^2) whatever the number of rows, and
//!    accumulators of disjoint row blocks [merge](GramAccumulator::merge) exactly.
//! 2. [`JointStats`]: the finished statistics, the only input of everything below.
//! 3. [`MatchProblem`]: the reduced problem (live and dead neurons, tolerances).
//! 4. [`Profile`]: the ε-profile, computed in one peeling pass: for every neuron v the threshold
//!    ε*(v) such that v belongs to the maximum match at ε iff ε ≥ ε*(v). From it,
//!    [`Profile::max_match`] gives the [`MaxMatch`] (indices on both sides and the maximum match
//!    similarity) for any ε without further work.
//! 5. [`Peeler`]: the incremental engine behind the profile, usable on any subset of neurons
//!    (simple matches and verification build on it).

pub mod controls;
mod dense;
mod downdate;
mod error;
pub mod gram_kernel;
pub mod measures;
mod ordered;
mod peel;
mod problem;
mod profile;
pub mod reference;
pub mod rng;
pub mod simple;
mod span;
mod stats;
pub mod tolerance;

pub use error::CoreError;
pub use ordered::RemovalOrder;
pub use peel::{Peeler, Side};
pub use problem::{DeadPolicy, MatchOptions, MatchProblem};
pub use profile::{MaxMatch, PeelStep, Profile};
pub use stats::{GramAccumulator, JointStats, RowNormMoments};
pub use tolerance::Tolerances;
