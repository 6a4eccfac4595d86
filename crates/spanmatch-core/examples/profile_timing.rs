use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{GramAccumulator, MatchProblem};
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(512);
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
    let stats = acc.finish();
    let p = MatchProblem::new(&stats, Default::default()).unwrap();
    let t = Instant::now();
    let pe = spanmatch_core::Peeler::new(&p, p.live_a(), p.live_b());
    let t1 = t.elapsed().as_secs_f64();
    let steps = pe.peel_all();
    println!(
        "build {:.3} s, peel {:.3} s ({} steps)",
        t1,
        t.elapsed().as_secs_f64() - t1,
        steps.len()
    );
    for _ in 0..3 {
        let t = Instant::now();
        let prof = p.profile();
        println!(
            "n={n}+{n}: profile {:.3} s, max_eps {:.4}, mms(0.5) {:.3}",
            t.elapsed().as_secs_f64(),
            prof.max_epsilon(),
            prof.mms(0.5).unwrap()
        );
    }
}
