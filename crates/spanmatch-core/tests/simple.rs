//! Simple matches: planted answers, agreement with a from-scratch reference, verification.

mod common;

use common::*;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{simple_matches, verify, SimpleOptions};
use spanmatch_core::Side;
use std::ops::ControlFlow;

/// A planted block: its neurons on A and on B.
type Block = (Vec<usize>, Vec<usize>);

/// Blocks of dimensions `dims` shared between the nets (each neuron a random combination of its
/// block's basis; `dim + extra` neurons on A and `dim` on B per block), then `unrelated`
/// independent neurons per side. Returns the data and the planted blocks.
fn planted_blocks(
    rng: &mut SplitMix64,
    rows: usize,
    dims: &[usize],
    extra: usize,
    unrelated: usize,
    noise: f64,
) -> (Acts, Acts, Vec<Block>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut blocks = Vec::new();
    let (mut ca, mut cb) = (0, 0);
    for &d in dims {
        let basis = randn(rng, rows, d);
        let na = d + extra;
        let nb = d;
        let mut xa = &basis * randn(rng, d, na);
        let mut yb = &basis * randn(rng, d, nb);
        for j in 0..na {
            for i in 0..rows {
                xa[(i, j)] += noise * rng.normal();
            }
        }
        for j in 0..nb {
            for i in 0..rows {
                yb[(i, j)] += noise * rng.normal();
            }
        }
        blocks.push(((ca..ca + na).collect(), (cb..cb + nb).collect()));
        ca += na;
        cb += nb;
        xs.push(xa);
        ys.push(yb);
    }
    xs.push(randn(rng, rows, unrelated));
    ys.push(randn(rng, rows, unrelated));
    let x = hcat(&xs.iter().collect::<Vec<_>>());
    let y = hcat(&ys.iter().collect::<Vec<_>>());
    (x, y, blocks)
}

fn opts(eps: f64) -> SimpleOptions {
    SimpleOptions {
        eps,
        orders: 0,
        seed: 0,
    }
}

fn run(x: &Acts, y: &Acts, o: SimpleOptions) -> spanmatch_core::simple::SimpleMatches {
    simple_matches(&problem_of(x, y), &o, |_, _| ControlFlow::Continue(())).unwrap()
}

#[test]
fn planted_blocks_are_the_simple_matches_exactly() {
    let mut rng = SplitMix64::new(21);
    let (x, y, mut blocks) = planted_blocks(&mut rng, 300, &[1, 2, 3, 4, 2], 0, 6, 0.0);
    let r = run(&x, &y, opts(0.0));
    assert!(r.exact_case);
    assert!(r.complete);
    let mut got: Vec<(Vec<usize>, Vec<usize>)> = r
        .matches
        .iter()
        .map(|m| (m.a.clone(), m.b.clone()))
        .collect();
    got.sort();
    blocks.sort();
    assert_eq!(got, blocks);
    // Each block is found once per member neuron.
    for m in &r.matches {
        assert_eq!(m.count, m.size());
    }
}

#[test]
fn planted_blocks_with_noise_at_eps_point_one() {
    let mut rng = SplitMix64::new(22);
    let (x, y, mut blocks) = planted_blocks(&mut rng, 400, &[1, 2, 3, 4], 0, 5, 0.003);
    let r = run(&x, &y, opts(0.1));
    assert!(!r.exact_case, "ε > 0 is never the exact case");
    let mut got: Vec<(Vec<usize>, Vec<usize>)> = r
        .matches
        .iter()
        .map(|m| (m.a.clone(), m.b.clone()))
        .collect();
    got.sort();
    blocks.sort();
    assert_eq!(got, blocks);
}

fn reference_v_minimal(x: &Acts, y: &Acts, eps: f64, v: (Side, usize)) -> (Vec<usize>, Vec<usize>) {
    spanmatch_core::reference::v_minimal(x, y, eps, v)
}

#[test]
fn agrees_with_reference_result_for_result() {
    let mut rng = SplitMix64::new(23);
    let mut proper = 0;
    for case in 0..6 {
        let eps = [0.0, 0.2, 0.5][case % 3];
        let (x, y, _) = planted_blocks(
            &mut rng,
            40,
            &[1, 2, 2, 3],
            case % 2,
            3,
            0.05 * (case % 3) as f64,
        );
        let (x, y) = if case >= 3 {
            (relu(&x), relu(&y))
        } else {
            (x, y)
        };
        let problem = problem_of(&x, &y);
        let mut full = spanmatch_core::Peeler::new(&problem, problem.live_a(), problem.live_b());
        full.peel_until(eps);
        let order: Vec<(Side, usize)> = full.neurons();
        for &v in &order {
            let engine = spanmatch_core::simple::v_minimal(&full, v, eps, &order);
            let reference = reference_v_minimal(&x, &y, eps, v);
            assert_eq!(engine, reference, "case {case}, ε = {eps}, v = {v:?}");
            let size = engine.0.len() + engine.1.len();
            if size > 0 && size < order.len() {
                proper += 1;
            }
        }
    }
    assert!(
        proper > 10,
        "the cases must exercise proper sub-matches, got {proper}"
    );
}

#[test]
fn rank_deficient_results_pass_verification() {
    let mut rng = SplitMix64::new(24);
    // Blocks with more neurons on A than their dimension: v-minimal matches are not unique.
    let (x, y, _) = planted_blocks(&mut rng, 120, &[2, 3, 1], 2, 3, 0.0);
    for eps in [0.0, 0.3] {
        let problem = problem_of(&x, &y);
        let o = SimpleOptions {
            eps,
            orders: 3,
            seed: 7,
        };
        let r = simple_matches(&problem, &o, |_, _| ControlFlow::Continue(())).unwrap();
        assert!(!r.exact_case);
        assert_eq!(r.orders, 4);
        assert!(!r.matches.is_empty());
        for m in &r.matches {
            let v = verify(&problem, eps, m).unwrap();
            assert!(v.passed(), "ε = {eps}: {m:?} failed {v:?}");
        }
        let total: usize = r.matches.iter().map(|m| m.count).sum();
        assert_eq!(total, r.neurons_total * 4);
    }
}

#[test]
fn verification_rejects_non_matches_and_non_minimal_matches() {
    let mut rng = SplitMix64::new(25);
    let (x, y, blocks) = planted_blocks(&mut rng, 200, &[2, 2], 0, 2, 0.0);
    let problem = problem_of(&x, &y);
    let union = spanmatch_core::simple::SimpleMatch {
        a: [blocks[0].0.clone(), blocks[1].0.clone()].concat(),
        b: [blocks[0].1.clone(), blocks[1].1.clone()].concat(),
        count: 1,
        witnesses: vec![(Side::A, blocks[0].0[0])],
    };
    let v = verify(&problem, 0.0, &union).unwrap();
    assert!(v.is_match);
    assert!(!v.passed(), "a union of two blocks is not v-minimal");
    let broken = spanmatch_core::simple::SimpleMatch {
        a: blocks[0].0.clone(),
        b: vec![blocks[0].1[0]],
        count: 1,
        witnesses: vec![(Side::A, blocks[0].0[0])],
    };
    assert!(!verify(&problem, 0.0, &broken).unwrap().is_match);
}

#[test]
fn interruption_returns_partial_results() {
    let mut rng = SplitMix64::new(26);
    let (x, y, _) = planted_blocks(&mut rng, 150, &[1, 2, 3], 0, 2, 0.0);
    let problem = problem_of(&x, &y);
    let r = simple_matches(&problem, &opts(0.0), |done, _| {
        if done >= 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert!(!r.complete);
    assert_eq!(r.neurons_done, 3);
    assert!(!r.matches.is_empty());
}
