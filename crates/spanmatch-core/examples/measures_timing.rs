//! Timing of the similarity measures from the statistics of one layer pair.
//!
//! `cargo run --release -p spanmatch-core --example measures_timing -- [N ...] [--alone]`
//!
//! For each N (default 512 1024 2048 4096) it accumulates the statistics of structured ReLU data
//! (rows = 4N: a shared subspace of dimension N/2 mixed into both layers, plus per-neuron noise,
//! through a ReLU), then prints the wall-clock time of every stage of one call computing all
//! measures (the shared eigendecompositions, the rotation B = Vxᵀ Cxy Vy, each measure's own
//! work) and the total. With `--alone`, also each measure computed by itself (which repeats the
//! shared factorisations each time). With `--branches R`, the independent branches one after the
//! other (the default) and side by side on the rayon pool, alternated R times each, medians and
//! ratio. Compare with `python/benchmarks/bench_measures.py`, which
//! times numpy/scipy doing the same factorisations.
use faer::Mat;
use spanmatch_core::measures::{compute_timed, compute_timed_branches, Measure, MeasureOptions};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{GramAccumulator, JointStats};
use std::time::Instant;

/// Statistics of two N-neuron ReLU layers sharing an N/2-dimensional subspace (rows = 4N), in
/// blocks of 2048 rows.
fn relu_pair(n: usize) -> JointStats {
    let rows = 4 * n;
    let dim = (n / 2).max(1);
    let mut rng = SplitMix64::new(7);
    let mix_a = Mat::from_fn(dim, n, |_, _| rng.normal());
    let mix_b = Mat::from_fn(dim, n, |_, _| rng.normal());
    let mut acc = GramAccumulator::new(n, n);
    let mut done = 0;
    while done < rows {
        let b = 2048.min(rows - done);
        let basis = Mat::from_fn(b, dim, |_, _| rng.normal());
        let (xa, xb) = (&basis * &mix_a, &basis * &mix_b);
        let scale = (dim as f64).sqrt();
        let mut joint = Vec::with_capacity(b * 2 * n);
        for r in 0..b {
            for m in [&xa, &xb] {
                for j in 0..n {
                    joint.push((m[(r, j)] + scale * rng.normal()).max(0.0));
                }
            }
        }
        acc.push_joint(&joint).unwrap();
        done += b;
    }
    acc.finish()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let alone = args.iter().any(|a| a == "--alone");
    let branches: Option<usize> = args
        .iter()
        .position(|a| a == "--branches")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok());
    let mut sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            branches.is_none()
                || args
                    .get(i.wrapping_sub(1))
                    .is_none_or(|p| p != "--branches")
        })
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![512, 1024, 2048, 4096];
    }
    println!("backend: {:?}", spanmatch_core::gram_kernel::init());
    let options = MeasureOptions::default();
    for n in sizes {
        let t = Instant::now();
        let stats = relu_pair(n);
        println!(
            "\n{n}+{n} neurons, {} rows: statistics pass {:.2} s",
            stats.rows,
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let (m, laps) = compute_timed(&stats, &Measure::ALL, &options).unwrap();
        let total = t.elapsed().as_secs_f64();
        for (stage, s) in &laps {
            println!("  {stage:16} {s:8.3} s");
        }
        println!("  {:16} {total:8.3} s", "all measures");
        println!(
            "  (cca mean ρ {:.4}, one-to-one {:.4}, soft match {:.4}, shape {:.4})",
            m.cca_mean_rho.unwrap_or(f64::NAN),
            m.one_to_one.unwrap_or(f64::NAN),
            m.soft_match.unwrap_or(f64::NAN),
            m.shape.unwrap_or(f64::NAN)
        );
        if let Some(reps) = branches {
            let (mut seq, mut par) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                for (side_by_side, v) in [(false, &mut seq), (true, &mut par)] {
                    let t = Instant::now();
                    compute_timed_branches(&stats, &Measure::ALL, &options, side_by_side).unwrap();
                    v.push(t.elapsed().as_secs_f64());
                }
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (a, b) = (median(&mut seq), median(&mut par));
            println!(
                "  branches one after the other {a:.3} s, side by side {b:.3} s (medians of {reps}), \
                 ratio side-by-side / sequential {:.2}",
                b / a
            );
        }
        if alone {
            for measure in Measure::ALL {
                let t = Instant::now();
                compute_timed(&stats, &[measure], &options).unwrap();
                println!(
                    "  alone: {:16} {:8.3} s",
                    measure.name(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
}
