//! Errors of the numerical core.

use thiserror::Error;

/// What can go wrong in the numerical core. Messages say which quantity is at fault.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A row block does not have the shape the accumulator was created for.
    #[error(
        "row block has {got} values, which is not a whole number of rows of {expected} neurons"
    )]
    BlockShape {
        /// Number of values received.
        got: usize,
        /// Neurons per row expected.
        expected: usize,
    },
    /// The two blocks of a pair have different row counts.
    #[error("net A's block has {rows_a} rows but net B's block has {rows_b}")]
    RowMismatch {
        /// Rows of A's block.
        rows_a: usize,
        /// Rows of B's block.
        rows_b: usize,
    },
    /// Two accumulators with different neuron counts cannot merge.
    #[error("cannot merge statistics of {a:?} neurons with statistics of {b:?} neurons")]
    MergeShape {
        /// (n1, n2) of the receiver.
        a: (usize, usize),
        /// (n1, n2) of the argument.
        b: (usize, usize),
    },
    /// A flat state vector (pickle, all_reduce) that does not describe an accumulator.
    #[error("invalid statistics state: {reason}")]
    FlatState {
        /// What is wrong.
        reason: String,
    },
    /// ε must lie in [0, 1].
    #[error("ε = {0} is outside [0, 1] (ε is the sine of an angle)")]
    EpsilonRange(f64),
    /// A layer without neurons.
    #[error("layer has no neurons on side {0}")]
    EmptyLayer(char),
    /// No rows were accumulated.
    #[error("no rows were accumulated")]
    NoRows,
    /// The accumulated statistics contain NaN or infinity.
    #[error(
        "the accumulated statistics are not finite (NaN or Inf in the activations, or overflow)"
    )]
    NonFinite,
    /// A tolerance outside its documented range.
    #[error("tolerance {name} = {value} is outside {range}")]
    Tolerance {
        /// Name of the tolerance.
        name: &'static str,
        /// Value given.
        value: f64,
        /// Allowed range, in words.
        range: &'static str,
    },
    /// An option of the measures outside its documented range.
    #[error("measure option {name} = {value} is outside {range}")]
    MeasureOption {
        /// Name of the option.
        name: &'static str,
        /// Value given.
        value: f64,
        /// Allowed range, in words.
        range: &'static str,
    },
    /// A neuron index outside the layer.
    #[error("neuron index {index} is out of range for side {side} with {len} neurons")]
    NeuronIndex {
        /// 'A' or 'B'.
        side: char,
        /// The index.
        index: usize,
        /// Neurons on that side.
        len: usize,
    },
}
