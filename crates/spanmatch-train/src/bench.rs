//! Training-throughput benchmark on synthetic data.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::model::ModelConfig;
use crate::net::{Net, SgdStep};
use crate::rng::Rng;

/// Throughput of timed training steps.
#[derive(Clone, Copy, Debug)]
pub struct BenchResult {
    /// Median images per second over the timed steps.
    pub median_images_per_sec: f64,
    /// Slowest step.
    pub min_images_per_sec: f64,
    /// Fastest step.
    pub max_images_per_sec: f64,
}

/// Times `steps` SGD steps (after `warmup` untimed ones) of `model` on random inputs with
/// batch size `batch_size`; returns per-step images/s statistics.
pub fn bench_training(
    model: &ModelConfig,
    batch_size: usize,
    steps: usize,
    warmup: usize,
) -> Result<BenchResult> {
    if steps == 0 || batch_size == 0 {
        bail!("steps and batch size must be positive");
    }
    let mut net = Net::new(model, 0)?;
    let mut rng = Rng::new(1);
    let per: usize = model.input.iter().product();
    let hp = SgdStep {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let mut rates = Vec::with_capacity(steps);
    for s in 0..warmup + steps {
        let x: Vec<f32> = (0..batch_size * per).map(|_| rng.normal() as f32).collect();
        let y: Vec<u8> = (0..batch_size)
            .map(|_| rng.below(model.num_classes) as u8)
            .collect();
        let t = Instant::now();
        net.train_step(x, &y, hp, &mut rng)?;
        if s >= warmup {
            rates.push(batch_size as f64 / t.elapsed().as_secs_f64().max(1e-9));
        }
    }
    rates.sort_by(f64::total_cmp);
    let m = rates.len();
    let median = if m % 2 == 1 {
        rates[m / 2]
    } else {
        0.5 * (rates[m / 2 - 1] + rates[m / 2])
    };
    Ok(BenchResult {
        median_images_per_sec: median,
        min_images_per_sec: rates[0],
        max_images_per_sec: rates[m - 1],
    })
}
