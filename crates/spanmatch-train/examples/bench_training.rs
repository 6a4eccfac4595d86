//! Training throughput of the default Fashion-MNIST net and of VGG-11 at width 1/4 on
//! 32x32x3, on synthetic data (median over timed steps).
//!
//! `CARGO_TARGET_DIR=target-train cargo run --release -p spanmatch-train --example bench_training -- [steps]`

use spanmatch_train::{bench_training, ModelConfig};

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);
    let cases = [
        ("small-cnn", [1, 28, 28], 1.0),
        ("vgg11", [3, 32, 32], 0.25),
        ("vgg11_bn", [3, 32, 32], 0.25),
    ];
    for (name, input, width) in cases {
        let cfg = ModelConfig::from_name(name, input, 10, width, None)?;
        let r = bench_training(&cfg, 128, steps, 2)?;
        println!(
            "{name:<10} input {input:?} width {width}: median {:.0} img/s (min {:.0}, max {:.0}; {steps} steps of 128)",
            r.median_images_per_sec, r.min_images_per_sec, r.max_images_per_sec
        );
    }
    Ok(())
}
