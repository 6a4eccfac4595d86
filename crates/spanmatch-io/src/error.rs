//! Errors of the IO layer. Every message names the file and, where there is one, the layer.

use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong while opening or reading an activation file.
#[derive(Debug, Error)]
pub enum IoError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The operating system reported an error.
    #[error("{}: cannot read: {source}", path.display())]
    Os {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a readable `.npy`, `.npz` or `.safetensors` file.
    #[error("{}: not a valid {format} file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The format it was read as (`.npy`, `.npz`, `.safetensors`, or "activation").
        format: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// One layer's header or container entry is unreadable.
    #[error("{}, layer '{layer}': {reason}", path.display())]
    BadLayer {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// No layer of that name in the file.
    #[error("{}: no layer named '{layer}' (the file has: {available})", path.display())]
    NoSuchLayer {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        layer: String,
        /// The layer names of the file, comma-separated.
        available: String,
    },
    /// The element type is not a floating-point type spanmatch reads.
    #[error(
        "{}, layer '{layer}': unsupported dtype {dtype} (supported: float16, bfloat16, float32, float64)",
        path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// The dtype as written in the file (e.g. `<i8`, `I64`).
        dtype: String,
    },
    /// The array has fewer than two dimensions, so images and neurons cannot be told apart.
    #[error(
        "{}, layer '{layer}': array of shape {shape:?} has rank {}; expected [N, C] (fully connected) or [N, C, ...] / [N, ..., C] (convolutional)",
        path.display(),
        shape.len()
    )]
    Rank {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// The shape.
        shape: Vec<u64>,
    },
    /// The layer has no rows or no neurons.
    #[error(
        "{}, layer '{layer}': empty layer (shape {shape:?}: {rows} rows, {neurons} neurons)",
        path.display()
    )]
    EmptyLayer {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// The shape.
        shape: Vec<u64>,
        /// Rows (samples) it would give.
        rows: u64,
        /// Neurons (channels) it would give.
        neurons: u64,
    },
    /// The data section ends before the data the header announces.
    #[error(
        "{}, layer '{layer}': data section truncated: the header announces {expected} bytes of data, {available}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// Bytes announced.
        expected: u64,
        /// What is there instead, in words.
        available: String,
    },
    /// A NaN or infinite activation.
    #[error(
        "{}, layer '{layer}': non-finite value {value} at image {image}, channel {channel}, spatial index {spatial:?} (row {row})",
        path.display()
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// The value (NaN, inf or -inf).
        value: f64,
        /// Image index (first axis).
        image: u64,
        /// Channel (neuron) index.
        channel: usize,
        /// Spatial multi-index (empty for a fully connected layer).
        spatial: Vec<u64>,
        /// Row index (image-major).
        row: u64,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The destination buffer given to [`crate::LayerReader::read_rows`] is too small.
    #[error(
        "{}, layer '{layer}': destination buffer of {len} values cannot hold {rows} rows of stride {stride} at column offset {offset} with {neurons} neurons",
        path.display()
    )]
    Destination {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: String,
        /// Buffer length.
        len: usize,
        /// Rows to write.
        rows: usize,
        /// Row stride.
        stride: usize,
        /// Column offset.
        offset: usize,
        /// Neurons per row.
        neurons: usize,
    },
}

pub(crate) fn os(path: &std::path::Path, source: std::io::Error) -> IoError {
    if source.kind() == std::io::ErrorKind::NotFound {
        IoError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        IoError::Os {
            path: path.to_path_buf(),
            source,
        }
    }
}
