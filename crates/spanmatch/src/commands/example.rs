//! `spanmatch example --out DIR`: a small deterministic pair of activation files to try
//! `spanmatch compare` on.

use anyhow::{Context, Result};
use clap::Args;
use spanmatch_core::rng::SplitMix64;
use spanmatch_io::write::{Encoding, NpzWriter};
use std::path::{Path, PathBuf};

/// Arguments of `spanmatch example`.
#[derive(Debug, Args)]
#[command(
    about = "Write a small example pair DIR/net_a.npz, DIR/net_b.npz with planted shared features",
    long_about = "Write a small, deterministic example pair DIR/net_a.npz and DIR/net_b.npz (float32, \
stored npz) to try `spanmatch compare` on. Layers: conv1 [64, 16, 8, 8] (4096 rows), fc1 [512, 32] and \
fc2 [512, 10]. Each layer is built from ReLU features shared by both nets (copied with positive scales, \
in different neuron orders), near copies with growing amounts of private noise (they join the match at \
growing ε), private features of each net (never matched) and, in net A's conv1, one dead neuron."
)]
pub struct ExampleArgs {
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
}

/// How one layer of one net is built from the shared features.
struct Recipe {
    shared: usize,
    near: usize,
    private: usize,
    dead: usize,
}

/// Neuron values of one row: shared copies, near copies, private features, dead neurons,
/// then a fixed permutation of the neurons.
fn row_values(
    recipe: &Recipe,
    features: &[f64],
    scales: &[f64],
    perm: &[usize],
    rng: &mut SplitMix64,
    out: &mut Vec<f64>,
) {
    let mut v = Vec::with_capacity(perm.len());
    for k in 0..recipe.shared {
        v.push(scales[k] * features[k % features.len()]);
    }
    for j in 0..recipe.near {
        // Noise level grows with j, so near copies join the match at growing ε.
        let noise = 0.08 + 0.12 * j as f64;
        v.push(features[j % features.len()] + noise * rng.normal().max(0.0));
    }
    for _ in 0..recipe.private {
        v.push(rng.normal().max(0.0));
    }
    v.extend(std::iter::repeat_n(0.0, recipe.dead));
    out.extend(perm.iter().map(|&p| v[p]));
}

fn permutation(n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    p
}

/// Generates one layer for both nets: `rows` rows; values in row order (rows x neurons).
fn layer_pair(
    rows: usize,
    a: &Recipe,
    b: &Recipe,
    n_features: usize,
    rng: &mut SplitMix64,
) -> (Vec<f64>, Vec<f64>) {
    let na = a.shared + a.near + a.private + a.dead;
    let nb = b.shared + b.near + b.private + b.dead;
    let (pa, pb) = (permutation(na, rng), permutation(nb, rng));
    let sa: Vec<f64> = (0..a.shared).map(|_| 0.5 + rng.uniform()).collect();
    let sb: Vec<f64> = (0..b.shared).map(|_| 0.5 + rng.uniform()).collect();
    let (mut xa, mut xb) = (Vec::with_capacity(rows * na), Vec::with_capacity(rows * nb));
    let mut features = vec![0.0; n_features];
    for _ in 0..rows {
        features.iter_mut().for_each(|f| *f = rng.normal().max(0.0));
        row_values(a, &features, &sa, &pa, rng, &mut xa);
        row_values(b, &features, &sb, &pb, rng, &mut xb);
    }
    (xa, xb)
}

/// Rows (image-major, positions row-major) x channels to the NCHW array order.
fn rows_to_nchw(rows: &[f64], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows.len()];
    for img in 0..n {
        for p in 0..hw {
            for ch in 0..c {
                out[(img * c + ch) * hw + p] = rows[(img * hw + p) * c + ch];
            }
        }
    }
    out
}

/// Writes the example pair into `dir` and returns the two paths.
pub fn write_example(dir: &Path, seed: u64) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = SplitMix64::new(seed);
    let (pa, pb) = (dir.join("net_a.npz"), dir.join("net_b.npz"));
    let mut wa = NpzWriter::create(&pa)?;
    let mut wb = NpzWriter::create(&pb)?;
    let enc = Encoding::default();

    // conv1: [64, 16, 8, 8]; A has a dead channel.
    let (n, hw) = (64usize, 64usize);
    let conv_a = Recipe {
        shared: 6,
        near: 4,
        private: 5,
        dead: 1,
    };
    let conv_b = Recipe {
        shared: 6,
        near: 4,
        private: 6,
        dead: 0,
    };
    let (xa, xb) = layer_pair(n * hw, &conv_a, &conv_b, 6, &mut rng);
    let shape = [n as u64, 16, 8, 8];
    wa.add("conv1", &shape, &rows_to_nchw(&xa, n, 16, hw), &enc, false)?;
    wb.add("conv1", &shape, &rows_to_nchw(&xb, n, 16, hw), &enc, false)?;

    // fc1: [512, 32], an intermediate layer with few shared features.
    let fc1_a = Recipe {
        shared: 8,
        near: 6,
        private: 18,
        dead: 0,
    };
    let fc1_b = Recipe {
        shared: 8,
        near: 6,
        private: 18,
        dead: 0,
    };
    let (xa, xb) = layer_pair(512, &fc1_a, &fc1_b, 8, &mut rng);
    wa.add("fc1", &[512, 32], &xa, &enc, false)?;
    wb.add("fc1", &[512, 32], &xb, &enc, false)?;

    // fc2: [512, 10], an output-like layer, mostly shared.
    let fc2 = Recipe {
        shared: 6,
        near: 3,
        private: 1,
        dead: 0,
    };
    let (xa, xb) = layer_pair(512, &fc2, &fc2, 6, &mut rng);
    wa.add("fc2", &[512, 10], &xa, &enc, false)?;
    wb.add("fc2", &[512, 10], &xb, &enc, false)?;

    wa.finish()?;
    wb.finish()?;
    Ok((pa, pb))
}

/// Runs `spanmatch example`.
pub fn run(args: &ExampleArgs) -> Result<()> {
    let (a, b) = write_example(&args.out, args.seed)?;
    println!("wrote {} and {}", a.display(), b.display());
    println!("next: spanmatch compare {} {}", a.display(), b.display());
    Ok(())
}
