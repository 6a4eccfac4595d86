#![allow(dead_code)]
use spanmatch_train::data::{Augmentation, Dataset, DatasetKind};
use spanmatch_train::model::{Arch, ModelConfig};
use spanmatch_train::rng::Rng;

/// A separable dataset: class k has a bright blob in region k (of `classes` vertical bands),
/// plus noise. Images `[c, s, s]`.
pub fn separable(n: usize, classes: usize, c: usize, s: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::with_capacity(n * c * s * s);
    let mut labels = Vec::with_capacity(n);
    let band = s / classes;
    for i in 0..n {
        let k = i % classes;
        labels.push(k as u8);
        for _ in 0..c {
            for _y in 0..s {
                for x in 0..s {
                    let base = if x / band == k { 200.0 } else { 40.0 };
                    let v = base + 30.0 * rng.normal();
                    images.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
    Dataset::from_parts(
        DatasetKind::FashionMnist,
        images,
        labels,
        [c, s, s],
        classes,
    )
    .unwrap()
}

/// Small CNN with BN and dropout on `[c, s, s]`.
pub fn tiny_cnn(c: usize, s: usize, classes: usize, bn: bool, dropout: f64) -> ModelConfig {
    ModelConfig {
        arch: Arch::Cnn {
            features: vec![Some(4), None, Some(6)],
            batch_norm: bn,
            hidden: vec![12],
            dropout,
        },
        input: [c, s, s],
        num_classes: classes,
    }
}

pub fn with_aug(mut d: Dataset) -> Dataset {
    d.augmentation = Augmentation {
        crop_padding: 1,
        horizontal_flip: true,
    };
    d
}
