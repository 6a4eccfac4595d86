//! Timing of the reduced problem at wide layers (issue 21): ε-profile, maximum match, simple
//! matches and witness queries on structured ReLU data, against the previous implementation.
//!
//! ```text
//! cargo run --release -p spanmatch-core --example wide_timing -- N WHAT [REPS] [old]
//! ```
//! `WHAT` is `profile`, `simple:EPS` or `witness:EPS:K` (K witness neurons of A, spread over the
//! layer). With `old`, the previous implementation runs in the same process, alternated with the
//! new one, and the two answers are compared (thresholds to 1e-10, indices identical).
//!
//! The data ("structured ReLU"): rows = 4N, both nets read a shared latent subspace of rank
//! N/8 through their own random mixing (unit-variance signal), plus independent noise whose
//! standard deviation is drawn per neuron, uniformly between 0.1 and 1.9 times 0.3, then a ReLU. Set `WIDE_RANK_DIV` and `WIDE_NOISE`
//! to change the rank divisor and the noise; `WIDE_KIND=planted` gives planted blocks instead.
//! The Gram matrix is cached in the temporary directory (`spanmatch-wide-*.bin`) so that
//! repeated runs skip the generation.
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{simple_matches, simple_matches_for, SimpleOptions};
use spanmatch_core::MatchProblem;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::time::Instant;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The joint Gram matrix of the structured ReLU layer pair (see the module comment).
fn relu_gram(n: usize, seed: u64) -> Mat<f64> {
    let rows = 4 * n;
    let rank = (n as f64 / env_f64("WIDE_RANK_DIV", 8.0)).max(1.0) as usize;
    let noise = env_f64("WIDE_NOISE", 0.3);
    let mut rng = SplitMix64::new(seed);
    let latent = Mat::from_fn(rows, rank, |_, _| rng.normal());
    let mut z = Mat::<f64>::zeros(rows, 2 * n);
    let scale = 1.0 / (rank as f64).sqrt();
    for side in 0..2 {
        let mix = Mat::from_fn(rank, n, |_, _| scale * rng.normal());
        let mut block = z.as_mut().subcols_mut(side * n, n);
        matmul(
            block.as_mut(),
            Accum::Replace,
            latent.as_ref(),
            mix.as_ref(),
            1.0,
            Par::rayon(0),
        );
        for j in 0..n {
            // Per-neuron noise level, uniform in [0.1, 1.9] times `noise`: the neurons enter
            // the maximum match over a range of ε.
            let sigma = noise * (0.1 + 1.8 * rng.uniform());
            for i in 0..rows {
                let v = block[(i, j)] + sigma * rng.normal();
                block[(i, j)] = v.max(0.0);
            }
        }
    }
    gram_of(&z)
}

/// Planted shared blocks of dimension 1..4 plus 1% noise (rows = 4N).
fn planted_gram(n: usize, seed: u64) -> Mat<f64> {
    let rows = 4 * n;
    let mut rng = SplitMix64::new(seed);
    let mut z = Mat::<f64>::zeros(rows, 2 * n);
    let (mut c, mut d) = (0, 1);
    while c < n {
        let k = d.min(n - c);
        let basis = Mat::from_fn(rows, k, |_, _| rng.normal());
        for side in 0..2 {
            let mix = Mat::from_fn(k, k, |_, _| rng.normal());
            let prod = &basis * &mix;
            for j in 0..k {
                for i in 0..rows {
                    z[(i, side * n + c + j)] = prod[(i, j)] + 0.01 * rng.normal();
                }
            }
        }
        c += k;
        d = d % 4 + 1;
    }
    gram_of(&z)
}

fn gram_of(z: &Mat<f64>) -> Mat<f64> {
    let m = z.ncols();
    let mut g = Mat::<f64>::zeros(m, m);
    matmul(
        g.as_mut(),
        Accum::Replace,
        z.transpose(),
        z.as_ref(),
        1.0,
        Par::rayon(0),
    );
    // Exactly symmetric.
    for j in 0..m {
        for i in 0..j {
            g[(i, j)] = g[(j, i)];
        }
    }
    g
}

/// The Gram matrix of the requested data, from the cache when present.
fn cached_gram(n: usize, kind: &str) -> Mat<f64> {
    let tag = format!(
        "{kind}-{n}-{}-{}",
        env_f64("WIDE_RANK_DIV", 8.0),
        env_f64("WIDE_NOISE", 0.3)
    );
    let path = std::env::temp_dir().join(format!("spanmatch-wide2-{tag}.bin"));
    let m = 2 * n;
    if let Ok(mut f) = std::fs::File::open(&path) {
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_ok() && bytes.len() == m * m * 8 {
            return Mat::from_fn(m, m, |i, j| {
                let o = (j * m + i) * 8;
                f64::from_le_bytes(bytes[o..o + 8].try_into().unwrap())
            });
        }
    }
    let t = Instant::now();
    let g = match kind {
        "planted" => planted_gram(n, 3),
        _ => relu_gram(n, 21),
    };
    eprintln!("generated {tag} in {:.1} s", t.elapsed().as_secs_f64());
    let mut bytes = Vec::with_capacity(m * m * 8);
    for j in 0..m {
        for i in 0..m {
            bytes.extend_from_slice(&g[(i, j)].to_le_bytes());
        }
    }
    if let Ok(mut f) = std::fs::File::create(&path) {
        let _ = f.write_all(&bytes);
    }
    g
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max_diff(a: &[Option<f64>], b: &[Option<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs(),
            (None, None) => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(1024, |s| s.parse().unwrap());
    let what = args.get(2).map_or("profile", |s| s.as_str()).to_string();
    let reps: usize = args.get(3).map_or(3, |s| s.parse().unwrap());
    let old = args.get(4).is_some_and(|s| s == "old");
    let kind = std::env::var("WIDE_KIND").unwrap_or_else(|_| "relu".into());
    let p = MatchProblem::from_gram(cached_gram(n, &kind), n, n, Default::default()).unwrap();
    let parts: Vec<&str> = what.split(':').collect();
    match parts[0] {
        "profile" => {
            let (mut tn, mut to) = (Vec::new(), Vec::new());
            let mut last = None;
            for _ in 0..reps {
                let t = Instant::now();
                let prof = p.profile();
                tn.push(t.elapsed().as_secs_f64());
                if old {
                    let t = Instant::now();
                    let r = p.profile_previous();
                    to.push(t.elapsed().as_secs_f64());
                    last = Some((prof, r));
                } else {
                    last = Some((prof.clone(), prof));
                }
            }
            let (prof, r) = last.unwrap();
            let new = median(tn);
            println!(
                "n={n}+{n} {kind}: profile median {new:.3} s over {reps}; max_eps {:.4}, mms(0.25) {:.3}, mms(0.5) {:.3}",
                prof.max_epsilon(),
                prof.mms(0.25).unwrap(),
                prof.mms(0.5).unwrap()
            );
            let t = Instant::now();
            let mut sizes = 0;
            for k in 0..=100 {
                sizes += prof.max_match(k as f64 / 100.0).unwrap().a.len();
            }
            println!(
                "  101 maximum matches from the profile: {:.4} s ({sizes} A-neurons in all)",
                t.elapsed().as_secs_f64()
            );
            if old {
                let oldt = median(to);
                let d = max_diff(prof.thresholds_a(), r.thresholds_a())
                    .max(max_diff(prof.thresholds_b(), r.thresholds_b()));
                let same = (0..=100).all(|k| {
                    let e = k as f64 / 100.0;
                    prof.max_match(e).unwrap() == r.max_match(e).unwrap()
                });
                println!(
                    "  previous median {oldt:.3} s, previous/new {:.2}x, max threshold difference {d:.2e}, maximum matches at 0, 0.01, ..., 1 identical: {same}",
                    oldt / new
                );
            }
        }
        "simple" => {
            let eps: f64 = parts.get(1).map_or(0.5, |s| s.parse().unwrap());
            let cap: f64 = env_f64("WIDE_CAP", f64::INFINITY);
            let o = SimpleOptions {
                eps,
                orders: 0,
                seed: 0,
            };
            let t = Instant::now();
            let r = simple_matches(&p, &o, |done, total| {
                let el = t.elapsed().as_secs_f64();
                if done % 256 == 0 || done == total {
                    eprintln!("  {done}/{total} at {el:.1} s");
                }
                if el > cap {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            let el = t.elapsed().as_secs_f64();
            println!(
                "n={n}+{n} {kind} eps={eps}: {} simple matches over {}/{} neurons (largest {}), {el:.2} s, complete {}",
                r.matches.len(),
                r.neurons_done,
                r.neurons_total,
                r.matches.iter().map(|m| m.size()).max().unwrap_or(0),
                r.complete
            );
        }
        "witness" => {
            let eps: f64 = parts.get(1).map_or(0.5, |s| s.parse().unwrap());
            let k: usize = parts.get(2).map_or(1, |s| s.parse().unwrap());
            let o = SimpleOptions {
                eps,
                orders: 0,
                seed: 0,
            };
            let t = Instant::now();
            let mm = p.profile().max_match(eps).unwrap();
            println!("  profile {:.2} s", t.elapsed().as_secs_f64());
            if std::env::var("WIDE_SETUP").is_ok() {
                let t = Instant::now();
                let mut full = spanmatch_core::Peeler::new(&p, p.live_a(), p.live_b());
                println!(
                    "  peeler of the live neurons {:.2} s",
                    t.elapsed().as_secs_f64()
                );
                let t = Instant::now();
                full.peel_until(eps);
                println!(
                    "  peeled to the maximum match {:.2} s",
                    t.elapsed().as_secs_f64()
                );
                let t = Instant::now();
                let _m = spanmatch_core::Peeler::new(&p, &mm.a, &mm.b);
                println!(
                    "  peeler of the maximum match {:.2} s",
                    t.elapsed().as_secs_f64()
                );
            }
            let wa: Vec<usize> = if mm.a.is_empty() {
                Vec::new()
            } else {
                (0..k).map(|t| mm.a[t * mm.a.len() / k]).collect()
            };
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..reps {
                let t = Instant::now();
                let r =
                    simple_matches_for(&p, &o, &wa, &[], |_, _| ControlFlow::Continue(())).unwrap();
                times.push(t.elapsed().as_secs_f64());
                last = Some(r);
            }
            let r = last.unwrap();
            println!(
                "n={n}+{n} {kind} eps={eps}: witnesses A{wa:?} -> {} matches, sizes {:?}; median {:.3} s over {reps}",
                r.matches.len(),
                r.matches.iter().map(|m| m.size()).collect::<Vec<_>>(),
                median(times)
            );
        }
        other => panic!("unknown WHAT {other}"),
    }
}
