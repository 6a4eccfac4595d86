//! What one bootstrap resample costs at VGG widths (issue 18 item 7): the weighted sum of the
//! chunks' statistics, the mms at five ε (one profile) and CKA, then 100 resamples (each peeled
//! in the full data's removal order, as the engine does, and without an order).
//!
//! `cargo run --release -p spanmatch-core --example boot_timing -- [N] [profile|ordered|null]`
//! (N neurons per net, default 256; 16 chunks of 4N rows of ReLU data sharing an
//! N/2-dimensional latent). `profile`/`ordered`: 1000 profiles of the full data only, without and
//! with its order; `null`: one rotation-null draw peeled without an order and with the unrotated
//! pair's.
use spanmatch_core::controls::ChunkedStats;
use spanmatch_core::measures::{compute_with, Measure, MeasureOptions};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{controls, JointStats, MatchOptions, RemovalOrder};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(256, |s| s.parse().unwrap());
    let k = 16;
    let mut rng = SplitMix64::new(1);
    let rows = 4 * n;
    let chunks: Vec<JointStats> = (0..k)
        .map(|_| {
            let lat: Vec<f64> = (0..rows * (n / 2)).map(|_| rng.normal()).collect();
            let mut x = vec![0.0; rows * n];
            let mut y = vec![0.0; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let l = lat[r * (n / 2) + j % (n / 2)];
                    x[r * n + j] = (l + 0.5 * rng.normal()).max(0.0);
                    y[r * n + j] = (l + 0.5 * rng.normal()).max(0.0);
                }
            }
            JointStats::from_matrices(&x, &y, n, n).unwrap()
        })
        .collect();
    let cs = ChunkedStats::new(chunks).unwrap();
    let eps = [0.1, 0.2, 0.3, 0.4, 0.5];
    let mo = MeasureOptions::default();
    let merged = cs.merged();
    let reps = 50;
    let order = RemovalOrder::from_profile(
        &spanmatch_core::MatchProblem::new(&merged, MatchOptions::default())
            .unwrap()
            .profile(),
    );
    if std::env::args().nth(2).as_deref() == Some("null") {
        // A rotation-null draw peeled with and without the unrotated pair's order of A.
        let r = controls::rotate_b(&merged, 7);
        let a_only = RemovalOrder {
            a: order.a.clone(),
            b: Vec::new(),
        };
        for (name, o) in [
            ("none", None),
            ("observed", Some(&order)),
            ("A only", Some(&a_only)),
        ] {
            let t = Instant::now();
            for _ in 0..200 {
                std::hint::black_box(match o {
                    Some(o) => controls::mms_at_ordered(&r, &eps, MatchOptions::default(), o),
                    None => controls::mms_at(&r, &eps, MatchOptions::default()),
                })
                .unwrap();
            }
            println!(
                "null draw, order {name}: {:.3} ms",
                t.elapsed().as_secs_f64() * 5.0
            );
        }
        return;
    }
    if let Some(mode @ ("profile" | "ordered")) = std::env::args().nth(2).as_deref() {
        // Only the profiles (for a profiler): 1000 of them, of the full data and of one
        // resample of the chunks (the full data's order for both).
        let drawn: Vec<JointStats> = (0..k)
            .map(|_| cs.chunks()[(rng.uniform() * k as f64) as usize % k].clone())
            .collect();
        let resample = ChunkedStats::new(drawn).unwrap().merged();
        {
            // Rotations per deletion of side A with the full data's order on the resample.
            let rp = spanmatch_core::MatchProblem::new(&resample, MatchOptions::default())
                .unwrap()
                .profile();
            let ro = RemovalOrder::from_profile(&rp);
            let n = order.a.len();
            let mut pos = vec![0usize; n];
            for (r, &v) in order.a.iter().enumerate() {
                pos[v] = n - 1 - r;
            }
            let mut alive = vec![true; n];
            let mut rot = 0usize;
            for &v in &ro.a {
                let p = pos[v];
                rot += (p + 1..n).filter(|&q| alive[q]).count();
                alive[p] = false;
            }
            println!(
                "side A: {n} deletions, {rot} rotations ({:.1} per deletion)",
                rot as f64 / n as f64
            );
        }
        for (what, stats) in [("full data", &merged), ("a resample", &resample)] {
            let t = Instant::now();
            for _ in 0..1000 {
                std::hint::black_box(if mode == "ordered" {
                    controls::mms_at_ordered(stats, &eps, MatchOptions::default(), &order).unwrap()
                } else {
                    controls::mms_at(stats, &eps, MatchOptions::default()).unwrap()
                });
            }
            println!("{mode}, {what}: {:.3} ms", t.elapsed().as_secs_f64());
        }
        return;
    }
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(cs.merged());
    }
    let sum = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(controls::mms_at(&merged, &eps, MatchOptions::default()).unwrap());
    }
    let prof = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(compute_with(&merged, &[Measure::Cka], &mo).unwrap());
    }
    let cka = t.elapsed().as_secs_f64() / reps as f64;
    // The bootstrap as the engine runs it (each resample peeled in the full data's order)
    // and with the unordered profile.
    let boot_with = |ordered: bool| {
        let t = Instant::now();
        let iv = cs
            .bootstrap(100, 1, |s| {
                let mut v = if ordered {
                    controls::mms_at_ordered(s, &eps, MatchOptions::default(), &order)?
                } else {
                    controls::mms_at(s, &eps, MatchOptions::default())?
                };
                let m = compute_with(s, &[Measure::Cka], &mo)?;
                v.push(m.cka_linear.unwrap_or(f64::NAN));
                Ok(v)
            })
            .unwrap();
        (t.elapsed().as_secs_f64(), iv)
    };
    let (boot_plain, plain) = boot_with(false);
    let (boot, iv) = boot_with(true);
    assert_eq!(iv.outputs.len(), plain.outputs.len());
    println!("bootstrap 100, unordered profiles: {boot_plain:.3} s");
    let t = Instant::now();
    cs.bootstrap(100, 1, |s| Ok(vec![s.gram[(0, 0)]])).unwrap();
    let sums_only = t.elapsed().as_secs_f64();
    println!("bootstrap 100 of the sums alone: {sums_only:.3} s");
    println!(
        "n={n}+{n}: sum of {k} chunks {:.2} ms, mms_at {:.2} ms, cka {:.2} ms; bootstrap 100 (ordered): {:.3} s ({} outputs)",
        sum * 1e3,
        prof * 1e3,
        cka * 1e3,
        boot,
        iv.outputs.len()
    );
}
