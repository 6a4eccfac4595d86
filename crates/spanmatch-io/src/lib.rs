//! Activation files for **spanmatch**: `.npy`, `.npz` and `.safetensors` readers that stream a
//! layer's activations in row blocks, converted to f64, without ever loading a large file whole.
//!
//! This crate knows nothing about matching. A layer is an array whose first axis runs over the
//! input images and one other axis over the neurons (channels); see [`Layout`] for how shapes map
//! to rows (samples) and columns (neurons):
//!
//! * `[N, C]`: fully connected, N rows, C neurons;
//! * `[N, C, H, W]` (or any `[N, C, S1, ..., Sk]`, e.g. `[N, C, L]`): convolutional, channels
//!   first; every (image, position) pair is a row, so there are `N * H * W` rows;
//! * `[N, H, W, C]` with [`Layout::Nhwc`]: channels last.
//!
//! Element types: float16, bfloat16 (safetensors), float32, float64, little- or big-endian (npy).
//! Storage orders: C and Fortran. npz entries may be stored or deflated.
//!
//! ```no_run
//! use spanmatch_io::{ActivationFile, Layout};
//! # fn main() -> Result<(), spanmatch_io::IoError> {
//! let file = ActivationFile::open("net_a.npz")?;
//! let mut reader = file.reader(&file.layers()[0].name, Layout::Nchw)?;
//! let c = reader.neurons();
//! let mut block = vec![0.0; 4096 * c];
//! while reader.read_rows(4096, &mut block, c, 0)? > 0 {
//!     // use the rows
//! }
//! # Ok(()) }
//! ```

mod dtype;
mod error;
mod file;
mod layout;
mod reader;
pub mod write;

pub use dtype::DType;
pub use error::IoError;
pub use file::{ActivationFile, Format, LayerInfo};
pub use layout::{Layout, StorageOrder};
pub use reader::LayerReader;
