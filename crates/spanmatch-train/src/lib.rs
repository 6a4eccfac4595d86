//! Datasets, models, seeded training and streamed activation extraction for spanmatch.
//!
//! * [`data`]: MNIST / Fashion-MNIST (IDX) and CIFAR-10 (binary) loaders, search order,
//!   download + SHA-256 verification, normalisation and seeded augmentation.
//! * [`model`]: framework-free architecture descriptions (VGG, plain nets, MLP) and the names
//!   of their ReLU layers.
//! * [`net`]: the framework binding (burn 0.22, Flex CPU backend); the only module using burn.
//! * [`train`](mod@train): seeded SGD training with checkpoints/resume and evaluation.
//! * [`extract`](mod@extract): streaming post-ReLU activations of one or several nets to an
//!   [`ActivationSink`], including an incremental `.npz` writer.
//! * [`topk`]: the inputs each neuron responds to most, tracked in the same pass.

#![warn(missing_docs)]

pub mod bench;
pub mod data;
pub mod extract;
pub mod model;
pub mod net;
pub mod rng;
pub mod topk;
pub mod train;

pub use bench::{bench_training, BenchResult};
pub use data::{DataOptions, Dataset, DatasetKind, Split};
pub use extract::{extract, ActivationSink, CollectSink, NpzWriter};
pub use model::{layer_names, LayerInfo, ModelConfig};
pub use topk::{TopInput, TopInputs};
pub use train::{
    evaluate, load_checkpoint, train, train_on, TrainConfig, TrainOptions, TrainedNet,
};
