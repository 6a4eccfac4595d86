use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{simple_matches, SimpleOptions};
use spanmatch_core::{GramAccumulator, MatchProblem};
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(128);
    let rows = 4 * n;
    let mut rng = SplitMix64::new(3);
    let mut x = vec![0.0; rows * n];
    let mut y = vec![0.0; rows * n];
    let mut c = 0;
    let mut d = 1;
    while c < n {
        let k = d.min(n - c);
        let basis: Vec<f64> = (0..rows * k).map(|_| rng.normal()).collect();
        for (m, out) in [(&mut x), (&mut y)].into_iter().enumerate() {
            let _ = m;
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
    let p = MatchProblem::new(&acc.finish(), Default::default()).unwrap();
    let t = Instant::now();
    let r = simple_matches(
        &p,
        &SimpleOptions {
            eps: 0.25,
            orders: 0,
            seed: 0,
        },
        |_, _| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    println!(
        "n={n}+{n}: {} simple matches over {} neurons in {:.2} s",
        r.matches.len(),
        r.neurons_total,
        t.elapsed().as_secs_f64()
    );
}
