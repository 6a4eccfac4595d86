//! Timing of the ε-profile (`MatchProblem::profile`) against the pre-blocking reference.
//!
//! `cargo run --release -p spanmatch-core --example profile_timing -- N [relu|planted] [REPS] [old]`
//! prints the median of REPS runs (default 5) for N+N neurons; with `old`, also the reference
//! computation's median, the ratio and the largest threshold difference.
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{GramAccumulator, MatchProblem};
use std::time::Instant;

/// ReLU activations of rank about n/2 plus noise (rows = 4n).
fn relu_layer(n: usize) -> MatchProblem {
    let rows = 4 * n;
    let mut rng = SplitMix64::new(1);
    let dim = n / 2;
    let basis: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
    let mix = |rng: &mut SplitMix64| -> Vec<f64> {
        let m: Vec<f64> = (0..dim * n).map(|_| rng.normal()).collect();
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for k in 0..dim {
                let b = basis[r * dim + k];
                for j in 0..n {
                    out[r * n + j] += b * m[k * n + j];
                }
            }
        }
        for v in out.iter_mut() {
            *v = (*v + 3.0 * rng.normal()).max(0.0);
        }
        out
    };
    let x = mix(&mut rng);
    let y = mix(&mut rng);
    let mut acc = GramAccumulator::new(n, n);
    acc.push_pair(&x, &y).unwrap();
    MatchProblem::new(&acc.finish(), Default::default()).unwrap()
}

/// Planted shared blocks of dimension 1..4 plus 1% noise (rows = 4n).
fn planted_layer(n: usize) -> MatchProblem {
    let rows = 4 * n;
    let mut rng = SplitMix64::new(3);
    let mut x = vec![0.0; rows * n];
    let mut y = vec![0.0; rows * n];
    let (mut c, mut d) = (0, 1);
    while c < n {
        let k = d.min(n - c);
        let basis: Vec<f64> = (0..rows * k).map(|_| rng.normal()).collect();
        for out in [&mut x, &mut y] {
            let mix: Vec<f64> = (0..k * k).map(|_| rng.normal()).collect();
            for r in 0..rows {
                for j in 0..k {
                    let mut v = 0.0;
                    for t in 0..k {
                        v += basis[r * k + t] * mix[t * k + j];
                    }
                    out[r * n + c + j] = v + 0.01 * rng.normal();
                }
            }
        }
        c += k;
        d = d % 4 + 1;
    }
    let mut acc = GramAccumulator::new(n, n);
    acc.push_pair(&x, &y).unwrap();
    MatchProblem::new(&acc.finish(), Default::default()).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(512, |s| s.parse().unwrap());
    let kind = args.get(2).map_or("relu", |s| s.as_str());
    let reps: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
    let old = args.get(4).is_some_and(|s| s == "old");
    let p = match kind {
        "planted" => planted_layer(n),
        _ => relu_layer(n),
    };
    let mut times = Vec::new();
    let mut prof = None;
    for _ in 0..reps {
        let t = Instant::now();
        prof = Some(p.profile());
        times.push(t.elapsed().as_secs_f64());
    }
    let prof = prof.unwrap();
    let new = median(times);
    println!(
        "n={n}+{n} {kind}: profile median {new:.4} s over {reps}, max_eps {:.4}, mms(0.5) {:.3}",
        prof.max_epsilon(),
        prof.mms(0.5).unwrap()
    );
    if old {
        let mut times = Vec::new();
        let mut r = None;
        for _ in 0..reps {
            let t = Instant::now();
            r = Some(p.profile_reference());
            times.push(t.elapsed().as_secs_f64());
        }
        let r = r.unwrap();
        let oldt = median(times);
        let diff = |a: &[Option<f64>], b: &[Option<f64>]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs(),
                    (None, None) => 0.0,
                    _ => f64::INFINITY,
                })
                .fold(0.0, f64::max)
        };
        let d = diff(prof.thresholds_a(), r.thresholds_a())
            .max(diff(prof.thresholds_b(), r.thresholds_b()));
        println!(
            "  reference median {oldt:.4} s, old/new {:.1}x, max threshold difference {d:.2e}",
            oldt / new
        );
    }
}
