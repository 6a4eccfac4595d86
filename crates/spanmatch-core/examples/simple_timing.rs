//! Timing of all simple matches (`simple::simple_matches`) against the sequential reference.
//!
//! `cargo run --release -p spanmatch-core --example simple_timing -- N [planted|relu] [EPS] [REPS] [old]`
//! prints the median of REPS runs (default 1) for N+N neurons; with `old`, also the reference
//! computation's time, the ratio, and whether the two results are identical.
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{reference_simple_matches, simple_matches, SimpleOptions};
use spanmatch_core::{GramAccumulator, MatchProblem};
use std::ops::ControlFlow;
use std::time::Instant;

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

/// ReLU of a shared low-rank signal (rank n/8) plus noise: realistic, with a large maximum match
/// at ε = 0.5.
fn relu_layer(n: usize) -> MatchProblem {
    let rows = 4 * n;
    let mut rng = SplitMix64::new(5);
    let dim = (n / 8).max(1);
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
            *v = (*v + 0.3 * rng.normal()).max(0.0);
        }
        out
    };
    let x = mix(&mut rng);
    let y = mix(&mut rng);
    let mut acc = GramAccumulator::new(n, n);
    acc.push_pair(&x, &y).unwrap();
    MatchProblem::new(&acc.finish(), Default::default()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(128, |s| s.parse().unwrap());
    let kind = args.get(2).map_or("planted", |s| s.as_str());
    let eps: f64 = args.get(3).map_or(0.25, |s| s.parse().unwrap());
    let reps: usize = args.get(4).map_or(1, |s| s.parse().unwrap());
    let old = args.get(5).is_some_and(|s| s == "old");
    let p = match kind {
        "relu" => relu_layer(n),
        _ => planted_layer(n),
    };
    let o = SimpleOptions {
        eps,
        orders: 0,
        seed: 0,
    };
    let mut times = Vec::new();
    let mut r = None;
    for _ in 0..reps {
        let t = Instant::now();
        r = Some(simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let new = times[times.len() / 2];
    let r = r.unwrap();
    println!(
        "n={n}+{n} {kind} eps={eps}: {} simple matches over {} neurons (largest {}), median {new:.3} s over {reps}",
        r.matches.len(),
        r.neurons_total,
        r.matches.iter().map(|m| m.size()).max().unwrap_or(0)
    );
    if old {
        let t = Instant::now();
        let q = reference_simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap();
        let oldt = t.elapsed().as_secs_f64();
        println!(
            "  reference {oldt:.3} s, old/new {:.1}x, identical: {}",
            oldt / new,
            q == r
        );
    }
}
