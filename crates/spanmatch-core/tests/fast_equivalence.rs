//! The blocked / batched algorithms equal the pre-optimisation ones: ε-profile thresholds to
//! 1e-12 (`MatchProblem::profile` vs `profile_reference`), simple matches match for match
//! (`simple_matches` vs `reference_simple_matches`), on random planted cases of many sizes.

mod common;

use common::*;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{reference_simple_matches, simple_matches, SimpleOptions};
use spanmatch_core::{MatchProblem, Peeler, Side};
use std::ops::ControlFlow;

fn max_threshold_difference(p: &MatchProblem) -> f64 {
    let (fast, slow) = (p.profile(), p.profile_reference());
    let diff = |a: &[Option<f64>], b: &[Option<f64>]| -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs(),
                (None, None) => 0.0,
                _ => f64::INFINITY,
            })
            .fold(0.0, f64::max)
    };
    assert_eq!(fast.steps().len(), slow.steps().len());
    assert!((fast.max_epsilon() - slow.max_epsilon()).abs() <= 1e-12);
    diff(fast.thresholds_a(), slow.thresholds_a())
        .max(diff(fast.thresholds_b(), slow.thresholds_b()))
}

#[test]
fn profile_thresholds_equal_reference() {
    let mut rng = SplitMix64::new(1201);
    // (blocks, extra, unrelated, dups, noise, relu) for sizes from a few neurons to 256 + 256.
    let cases: &[(usize, usize, usize, usize, f64, bool)] = &[
        (2, 0, 1, 0, 0.0, false),
        (5, 1, 3, 2, 0.01, false),
        (10, 0, 10, 3, 0.05, true),
        (20, 1, 20, 0, 0.02, false),
        (40, 0, 30, 5, 0.01, true),
        (70, 1, 60, 0, 0.03, false),
        (100, 0, 6, 4, 0.02, true),
    ];
    for (c, &(blocks, extra, unrelated, dups, noise, relu_data)) in cases.iter().enumerate() {
        let (x, y) = shared_blocks(
            &mut rng, 600, blocks, extra, unrelated, dups, noise, relu_data,
        );
        let p = problem_of(&x, &y);
        let d = max_threshold_difference(&p);
        assert!(
            d <= 1e-12,
            "case {c} ({}+{} neurons): thresholds differ by {d:e}",
            x.ncols(),
            y.ncols()
        );
    }
}

#[test]
fn profile_is_bitwise_repeatable() {
    // Large enough for the profile's matrix-vector products to be split over threads.
    let mut rng = SplitMix64::new(1204);
    let (x, y) = shared_blocks(&mut rng, 900, 130, 0, 20, 0, 0.01, false);
    let p = problem_of(&x, &y);
    let bits =
        |t: &[Option<f64>]| -> Vec<Option<u64>> { t.iter().map(|v| v.map(f64::to_bits)).collect() };
    let first = p.profile();
    for _ in 0..3 {
        let again = p.profile();
        assert_eq!(bits(first.thresholds_a()), bits(again.thresholds_a()));
        assert_eq!(bits(first.thresholds_b()), bits(again.thresholds_b()));
    }
    // (The downdating pass: 5.2e-12 here, against 8.8e-13 for the span tracker's.)
    assert!(max_threshold_difference(&p) <= 1e-11);
}

#[test]
fn profile_of_realistic_relu_layers_equals_reference() {
    // Full-rank ReLU activations with a shared low-rank part: large batches in every round.
    let mut rng = SplitMix64::new(1202);
    for &n in &[64usize, 256] {
        let rows = 3 * n;
        let shared = randn(&mut rng, rows, n / 4);
        let x = relu(
            &(&shared * randn(&mut rng, n / 4, n) + randn(&mut rng, rows, n) * faer::Scale(0.5)),
        );
        let y = relu(
            &(&shared * randn(&mut rng, n / 4, n) + randn(&mut rng, rows, n) * faer::Scale(0.5)),
        );
        let d = max_threshold_difference(&problem_of(&x, &y));
        assert!(d <= 1e-12, "{n}+{n}: thresholds differ by {d:e}");
    }
}

#[test]
fn batched_max_match_equals_sequential_peeling() {
    let mut rng = SplitMix64::new(1203);
    for c in 0..6 {
        let (x, y) = shared_blocks(&mut rng, 300, 8 + 4 * c, c % 2, 6, c % 3, 0.02, c >= 3);
        let p = problem_of(&x, &y);
        for &eps in &[0.0, 0.1, 0.3, 0.6] {
            let mut fast = Peeler::new(&p, p.live_a(), p.live_b());
            let mut slow = Peeler::new_reference(&p, p.live_a(), p.live_b());
            fast.peel_until(eps);
            slow.peel_until_sequential(eps);
            assert_eq!(fast.neurons(), slow.neurons(), "case {c}, ε = {eps}");
        }
    }
}

#[test]
fn simple_matches_equal_reference_match_for_match() {
    let mut rng = SplitMix64::new(1204);
    // Sizes up to 256 + 256 (the largest only at one ε: the reference is slow).
    type Case = (usize, usize, usize, usize, f64, bool, &'static [f64]);
    let cases: &[Case] = &[
        (3, 0, 2, 0, 0.0, false, &[0.0, 0.3]),
        (6, 1, 3, 2, 0.01, false, &[0.0, 0.1, 0.25, 0.5]),
        (10, 0, 5, 0, 0.02, true, &[0.2, 0.5]),
        (16, 1, 8, 3, 0.03, false, &[0.1, 0.25]),
        (30, 0, 10, 0, 0.01, true, &[0.25]),
        (100, 0, 6, 0, 0.01, false, &[0.25]),
    ];
    for (c, &(blocks, extra, unrelated, dups, noise, relu_data, epss)) in cases.iter().enumerate() {
        let (x, y) = shared_blocks(
            &mut rng, 500, blocks, extra, unrelated, dups, noise, relu_data,
        );
        let p = problem_of(&x, &y);
        for &eps in epss {
            for orders in [0, 1] {
                let o = SimpleOptions {
                    eps,
                    orders: if blocks <= 16 { orders } else { 0 },
                    seed: 7,
                };
                let fast = simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap();
                let slow =
                    reference_simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap();
                assert_eq!(
                    fast,
                    slow,
                    "case {c} ({}+{} neurons), ε = {eps}",
                    x.ncols(),
                    y.ncols()
                );
                if blocks > 16 {
                    break;
                }
            }
        }
    }
}

#[test]
fn v_minimal_equals_sequential_for_every_neuron_and_random_orders() {
    let mut rng = SplitMix64::new(1205);
    for c in 0..4 {
        let (x, y) = shared_blocks(&mut rng, 200, 6 + c, c % 2, 4, c % 2, 0.02, c % 2 == 1);
        let p = problem_of(&x, &y);
        for &eps in &[0.05, 0.3] {
            let mut full = Peeler::new(&p, p.live_a(), p.live_b());
            full.peel_until(eps);
            let mut order: Vec<(Side, usize)> = full.neurons();
            for round in 0..2 {
                if round == 1 {
                    SplitMix64::new(c as u64).shuffle(&mut order);
                }
                for &v in &order {
                    let fast = spanmatch_core::simple::v_minimal(&full, v, eps, &order);
                    let slow = spanmatch_core::simple::reference_v_minimal(&full, v, eps, &order);
                    assert_eq!(fast, slow, "case {c}, ε = {eps}, v = {v:?}");
                }
            }
        }
    }
}

/// A random planted problem of about `n` + `n` neurons: blocks of dimension 1..=4, random extra
/// A neurons per block, unrelated neurons, duplicates, noise and ReLU drawn from `rng`.
fn random_planted(rng: &mut SplitMix64, n: usize) -> MatchProblem {
    let pick = |rng: &mut SplitMix64, k: usize| (rng.next_u64() % k as u64) as usize;
    let extra = pick(rng, 2);
    let blocks = (n * 2 / 5).max(1);
    let unrelated = pick(rng, n / 4 + 1);
    let dups = pick(rng, n / 16 + 1);
    let noise = [0.0, 0.01, 0.03][pick(rng, 3)];
    let relu_data = pick(rng, 2) == 1;
    let rows = (3 * n).max(40);
    let (x, y) = shared_blocks(rng, rows, blocks, extra, unrelated, dups, noise, relu_data);
    problem_of(&x, &y)
}

/// A low-rank shared signal through ReLU, plus noise: large simple matches at ε = 0.5 (many
/// rejections per neuron, the group search splits often).
fn random_relu(rng: &mut SplitMix64, n: usize) -> MatchProblem {
    let rows = 4 * n;
    let dim = (n / 8).max(1);
    let shared = randn(rng, rows, dim);
    let x = relu(&(&shared * randn(rng, dim, n) + randn(rng, rows, n) * faer::Scale(0.3)));
    let y = relu(&(&shared * randn(rng, dim, n) + randn(rng, rows, n) * faer::Scale(0.3)));
    problem_of(&x, &y)
}

fn assert_same(p: &MatchProblem, o: &SimpleOptions, what: &str) {
    let fast = simple_matches(p, o, |_, _| ControlFlow::Continue(())).unwrap();
    let slow = reference_simple_matches(p, o, |_, _| ControlFlow::Continue(())).unwrap();
    assert!(fast.complete && slow.complete);
    assert_eq!(fast, slow, "{what}, ε = {}, orders = {}", o.eps, o.orders);
}

#[test]
fn simple_matches_of_every_size_equal_reference() {
    // Random planted problems from 1 + 1 to about 128 + 128 neurons (every power of two and
    // sizes in between), at random ε, all neurons compared with the sequential reference.
    let mut rng = SplitMix64::new(1206);
    let sizes = [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128];
    for (c, &n) in sizes.iter().enumerate() {
        for rep in 0..if n <= 32 { 3 } else { 1 } {
            let p = random_planted(&mut rng, n);
            let eps = [0.0, 0.05, 0.1, 0.25, 0.5][(rng.next_u64() % 5) as usize];
            let orders = if n <= 48 { 1 } else { 0 };
            let o = SimpleOptions {
                eps,
                orders,
                seed: c as u64,
            };
            assert_same(
                &p,
                &o,
                &format!("size {n} rep {rep} ({}+{})", p.n1(), p.n2()),
            );
        }
    }
}

#[test]
fn simple_matches_with_large_matches_equal_reference() {
    // ReLU layers with a shared low-rank signal at ε = 0.5: matches of 20–40 neurons.
    let mut rng = SplitMix64::new(1207);
    for &n in &[16usize, 32, 64] {
        let p = random_relu(&mut rng, n);
        for orders in [0, 1] {
            let o = SimpleOptions {
                eps: 0.5,
                orders,
                seed: 3,
            };
            assert_same(&p, &o, &format!("relu {n}+{n}"));
        }
    }
}

#[test]
fn group_search_at_256_equals_reference_for_sampled_neurons() {
    // At 256 + 256 the full reference takes tens of seconds: compare the group search's result
    // of a sample of neurons with the reference pipeline (unblocked factorisation, sequential
    // peeling, one trial per candidate) run for those neurons only.
    let mut rng = SplitMix64::new(1208);
    let cases: [(MatchProblem, f64); 3] = [
        (random_planted(&mut rng, 256), 0.25),
        (random_planted(&mut rng, 256), 0.5),
        (random_relu(&mut rng, 128), 0.5),
    ];
    for (c, (p, eps)) in cases.iter().enumerate() {
        let o = SimpleOptions {
            eps: *eps,
            orders: 0,
            seed: 0,
        };
        let fast = simple_matches(p, &o, |_, _| ControlFlow::Continue(())).unwrap();
        let mut full = Peeler::new_reference(p, p.live_a(), p.live_b());
        full.peel_until_sequential(*eps);
        let order = full.neurons();
        assert_eq!(fast.neurons_total, order.len(), "case {c}");
        let mut sample = order.clone();
        SplitMix64::new(c as u64).shuffle(&mut sample);
        sample.truncate(16);
        for v in sample {
            let slow = spanmatch_core::simple::reference_v_minimal(&full, v, *eps, &order);
            let found: Vec<(Vec<usize>, Vec<usize>)> = fast
                .matches
                .iter()
                .filter(|m| m.witnesses.contains(&v))
                .map(|m| (m.a.clone(), m.b.clone()))
                .collect();
            assert_eq!(
                found,
                vec![slow],
                "case {c} ({}+{}), v = {v:?}",
                p.n1(),
                p.n2()
            );
        }
    }
}

#[test]
fn simple_matches_inside_a_one_thread_rayon_pool() {
    // Called from a rayon worker (here the only one), the search runs on that thread instead of
    // waiting for a helper: same result, and interruption still works.
    let mut rng = SplitMix64::new(1209);
    let p = random_planted(&mut rng, 24);
    let o = SimpleOptions {
        eps: 0.25,
        orders: 1,
        seed: 5,
    };
    let outside = simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let inside = pool.install(|| simple_matches(&p, &o, |_, _| ControlFlow::Continue(())).unwrap());
    assert_eq!(inside, outside);
    let partial = pool.install(|| {
        simple_matches(&p, &o, |done, _| {
            if done >= 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap()
    });
    assert!(!partial.complete);
    assert_eq!(partial.neurons_done, 3);
}
