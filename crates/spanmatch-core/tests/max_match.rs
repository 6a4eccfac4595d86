//! The engine's maximum match against the reference implementation, and its invariances.

mod common;

use common::*;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{DeadPolicy, MatchOptions, MatchProblem, Peeler};

const EPSILONS: [f64; 6] = [0.0, 1e-6, 0.1, 0.25, 0.5, 0.9];

/// Checks engine == reference, index for index, at every ε, both from the profile and from a
/// direct peel.
fn assert_agrees(x: &Acts, y: &Acts, label: &str) {
    let problem = problem_of(x, y);
    let profile = problem.profile();
    for &eps in &EPSILONS {
        let (ra, rb) = reference_max_match(x, y, eps);
        let m = profile.max_match(eps).unwrap();
        assert_eq!(
            (&m.a, &m.b),
            (&ra, &rb),
            "{label}: profile vs reference at ε = {eps}"
        );
        let (da, db) = problem
            .max_match_within(problem.live_a(), problem.live_b(), eps)
            .unwrap();
        assert_eq!(
            (&da, &db),
            (&ra, &rb),
            "{label}: direct peel vs reference at ε = {eps}"
        );
    }
}

#[test]
fn planted_subspaces_with_noise_agree_with_reference() {
    let mut rng = SplitMix64::new(1);
    for case in 0..12 {
        let dim = 1 + case % 5;
        let noise = [0.0, 0.01, 0.05, 0.2][case % 4];
        let (x, y) = planted(&mut rng, 60, dim, dim + 2, 4 + case % 3, 5, noise);
        assert_agrees(&x, &y, &format!("planted case {case}"));
    }
}

#[test]
fn relu_rectified_data_agrees_with_reference() {
    let mut rng = SplitMix64::new(2);
    for case in 0..10 {
        let (x, y) = planted(
            &mut rng,
            80,
            3 + case % 4,
            6,
            6,
            4,
            0.05 * (case % 3) as f64,
        );
        assert_agrees(&relu(&x), &relu(&y), &format!("relu case {case}"));
    }
}

#[test]
fn duplicated_and_collinear_neurons_agree_with_reference() {
    let mut rng = SplitMix64::new(3);
    for case in 0..8 {
        let (x, y) = planted(&mut rng, 50, 3, 4, 3, 3, 0.01 * (case % 2) as f64);
        // Duplicate a neuron, add a negatively scaled copy and a combination of two neurons.
        let extra_x = faer::Mat::from_fn(50, 3, |i, k| match k {
            0 => x[(i, 0)],
            1 => -2.5 * x[(i, 1)],
            _ => x[(i, 2)] + 0.5 * x[(i, 5)],
        });
        let extra_y = faer::Mat::from_fn(50, 2, |i, k| match k {
            0 => 3.0 * y[(i, 6)],
            _ => y[(i, 0)] - y[(i, 1)],
        });
        assert_agrees(
            &hcat(&[&x, &extra_x]),
            &hcat(&[&y, &extra_y]),
            &format!("collinear case {case}"),
        );
    }
}

#[test]
fn more_neurons_than_rows_agrees_with_reference() {
    let mut rng = SplitMix64::new(4);
    for case in 0..6 {
        let rows = 12 + case;
        let x = randn(&mut rng, rows, 20);
        let y = relu(&randn(&mut rng, rows, 16 + case));
        assert_agrees(&x, &y, &format!("wide case {case}"));
        // Everything spans the whole row space: all live neurons match at ε = 0.
        let m = problem_of(&x, &y).profile().max_match(0.0).unwrap();
        let (la, lb) = live_columns(&x, &y);
        assert_eq!((m.a, m.b), (la, lb), "wide case {case} full match");
    }
}

#[test]
fn dead_neurons_are_dropped_and_counted() {
    let mut rng = SplitMix64::new(5);
    let (mut x, mut y) = planted(&mut rng, 40, 3, 4, 3, 3, 0.0);
    for i in 0..40 {
        x[(i, 2)] = 0.0;
        y[(i, 5)] = 0.0;
    }
    assert_agrees(&x, &y, "dead");
    let problem = problem_of(&x, &y);
    assert_eq!(problem.dead_a(), &[2]);
    assert_eq!(problem.dead_b(), &[5]);
    let profile = problem.profile();
    assert_eq!(profile.thresholds_a()[2], None);
    assert_eq!(profile.thresholds_b()[5], None);
    let m = profile.max_match(0.0).unwrap();
    // Planted: 4 shared neurons per side minus the dead one on A; 14 neurons in all.
    assert_eq!(m.a, vec![0, 1, 3]);
    assert_eq!(m.b, vec![0, 1, 2, 3]);
    assert!((m.mms - 7.0 / 14.0).abs() < 1e-12);

    let literal = MatchProblem::new(
        &stats_of(&x, &y, 7),
        MatchOptions {
            dead: DeadPolicy::Match,
            ..Default::default()
        },
    )
    .unwrap();
    let p2 = literal.profile();
    assert_eq!(p2.thresholds_a()[2], Some(0.0));
    let m2 = p2.max_match(0.0).unwrap();
    assert_eq!(m2.a, vec![0, 1, 2, 3]);
    assert_eq!(m2.b, vec![0, 1, 2, 3, 5]);
    assert!((m2.mms - 9.0 / 14.0).abs() < 1e-12);
}

#[test]
fn planted_exact_match_is_found_exactly() {
    let mut rng = SplitMix64::new(6);
    for dim in 1..=5 {
        let (x, y) = planted(&mut rng, 200, dim, dim + 1, 7, 9, 0.0);
        let m = problem_of(&x, &y).profile().max_match(0.0).unwrap();
        let expect: Vec<usize> = (0..dim + 1).collect();
        assert_eq!(m.a, expect, "dim {dim}");
        assert_eq!(m.b, expect, "dim {dim}");
        assert!((m.mms - 2.0 * (dim + 1) as f64 / (2 * dim + 2 + 16) as f64).abs() < 1e-12);
    }
}

fn thresholds(x: &Acts, y: &Acts) -> (Vec<f64>, Vec<f64>) {
    let p = problem_of(x, y).profile();
    let f = |t: &[Option<f64>]| t.iter().map(|v| v.unwrap_or(-1.0)).collect::<Vec<_>>();
    (f(p.thresholds_a()), f(p.thresholds_b()))
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, label: &str) {
    assert_eq!(a.len(), b.len(), "{label}: lengths");
    for (i, (u, v)) in a.iter().zip(b).enumerate() {
        assert!((u - v).abs() <= tol, "{label}: entry {i}: {u} vs {v}");
    }
}

#[test]
fn permuting_neurons_permutes_the_answer() {
    let mut rng = SplitMix64::new(7);
    let (x, y) = planted(&mut rng, 90, 4, 6, 5, 4, 0.1);
    let (x, y) = (relu(&x), relu(&y));
    let mut pa: Vec<usize> = (0..x.ncols()).collect();
    let mut pb: Vec<usize> = (0..y.ncols()).collect();
    rng.shuffle(&mut pa);
    rng.shuffle(&mut pb);
    let xp = faer::Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, pa[j])]);
    let yp = faer::Mat::from_fn(y.nrows(), y.ncols(), |i, j| y[(i, pb[j])]);
    let (ta, tb) = thresholds(&x, &y);
    let (tpa, tpb) = thresholds(&xp, &yp);
    let back_a: Vec<f64> = (0..pa.len()).map(|j| ta[pa[j]]).collect();
    let back_b: Vec<f64> = (0..pb.len()).map(|j| tb[pb[j]]).collect();
    assert_close(&tpa, &back_a, 1e-9, "permuted A");
    assert_close(&tpb, &back_b, 1e-9, "permuted B");
}

#[test]
fn rescaling_neurons_changes_nothing() {
    let mut rng = SplitMix64::new(8);
    let (x, y) = planted(&mut rng, 70, 3, 5, 4, 4, 0.05);
    let scale = |rng: &mut SplitMix64| {
        let mag = 10f64.powf(4.0 * rng.uniform() - 2.0);
        if rng.uniform() < 0.5 {
            -mag
        } else {
            mag
        }
    };
    let sa: Vec<f64> = (0..x.ncols()).map(|_| scale(&mut rng)).collect();
    let sb: Vec<f64> = (0..y.ncols()).map(|_| scale(&mut rng)).collect();
    let xs = faer::Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] * sa[j]);
    let ys = faer::Mat::from_fn(y.nrows(), y.ncols(), |i, j| y[(i, j)] * sb[j]);
    let (ta, tb) = thresholds(&x, &y);
    let (tsa, tsb) = thresholds(&xs, &ys);
    assert_close(&ta, &tsa, 1e-8, "rescaled A");
    assert_close(&tb, &tsb, 1e-8, "rescaled B");
}

#[test]
fn orthogonal_transform_of_rows_changes_nothing() {
    let mut rng = SplitMix64::new(9);
    let (x, y) = planted(&mut rng, 64, 4, 6, 6, 3, 0.1);
    let q = random_orthogonal(&mut rng, 64);
    let (qx, qy) = (&q * &x, &q * &y);
    let (ta, tb) = thresholds(&x, &y);
    let (tqa, tqb) = thresholds(&qx, &qy);
    assert_close(&ta, &tqa, 1e-8, "rotated A");
    assert_close(&tb, &tqb, 1e-8, "rotated B");
}

#[test]
fn a_layer_matches_itself_fully_at_every_epsilon() {
    let mut rng = SplitMix64::new(10);
    let x = relu(&randn(&mut rng, 100, 24));
    let profile = problem_of(&x, &x).profile();
    assert_eq!(profile.max_epsilon(), 0.0);
    for eps in [0.0, 1e-9, 0.3, 1.0] {
        assert_eq!(profile.mms(eps).unwrap(), 1.0, "ε = {eps}");
    }
}

#[test]
fn independent_random_layers_do_not_match() {
    let mut rng = SplitMix64::new(11);
    let x = randn(&mut rng, 4000, 16);
    let y = randn(&mut rng, 4000, 16);
    let profile = problem_of(&x, &y).profile();
    let m = profile.max_match(0.1).unwrap();
    assert!(m.a.is_empty() && m.b.is_empty(), "{m:?}");
    // With 16 random directions in 4000 dimensions every sine is close to 1.
    assert!(profile.max_epsilon() > 0.95);
}

#[test]
fn thresholds_are_the_epsilons_where_membership_starts() {
    let mut rng = SplitMix64::new(12);
    let (x, y) = planted(&mut rng, 60, 3, 5, 5, 5, 0.15);
    let problem = problem_of(&x, &y);
    let profile = problem.profile();
    let mut ts: Vec<f64> = profile
        .thresholds_a()
        .iter()
        .chain(profile.thresholds_b())
        .flatten()
        .copied()
        .collect();
    ts.sort_by(f64::total_cmp);
    for &t in &ts {
        // Exactly at t the two implementations may round the deciding sine differently; just
        // below and just above they must agree.
        for eps in [(t - 1e-7).max(0.0), (t + 1e-7).min(1.0)] {
            let (ra, rb) = reference_max_match(&x, &y, eps);
            let m = profile.max_match(eps).unwrap();
            assert_eq!((m.a, m.b), (ra, rb), "ε = {eps} around threshold {t}");
        }
    }
}

#[test]
fn mms_is_monotone_in_epsilon() {
    let mut rng = SplitMix64::new(13);
    let (x, y) = planted(&mut rng, 60, 4, 6, 6, 6, 0.3);
    let profile = problem_of(&relu(&x), &relu(&y)).profile();
    let mut last = -1.0;
    for k in 0..=100 {
        let v = profile.mms(k as f64 / 100.0).unwrap();
        assert!(v >= last);
        last = v;
    }
    assert_eq!(last, 1.0);
}

#[test]
fn merging_split_accumulators_equals_one_pass() {
    let mut rng = SplitMix64::new(14);
    let (x, y) = planted(&mut rng, 301, 3, 5, 4, 6, 0.1);
    let one = stats_of(&x, &y, 301);
    let (xr, yr) = (row_major(&x), row_major(&y));
    let (n1, n2) = (x.ncols(), y.ncols());
    let mut parts = Vec::new();
    for (s, e) in [(0, 17), (17, 150), (150, 151), (151, 301)] {
        let mut acc = spanmatch_core::GramAccumulator::new(n1, n2);
        acc.push_pair(&xr[s * n1..e * n1], &yr[s * n2..e * n2])
            .unwrap();
        parts.push(acc);
    }
    let mut merged = parts.pop().unwrap();
    for p in &parts {
        merged.merge(p).unwrap();
    }
    let merged = merged.finish();
    assert_eq!(merged.rows, 301);
    let n = n1 + n2;
    for i in 0..n {
        assert!((merged.sums[i] - one.sums[i]).abs() < 1e-9);
        for j in 0..n {
            let (a, b) = (merged.gram[(i, j)], one.gram[(i, j)]);
            assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "gram ({i},{j})");
        }
    }
    let t1 = MatchProblem::new(&one, Default::default())
        .unwrap()
        .profile();
    let t2 = MatchProblem::new(&merged, Default::default())
        .unwrap()
        .profile();
    for (a, b) in t1.thresholds_a().iter().zip(t2.thresholds_a()) {
        assert!((a.unwrap() - b.unwrap()).abs() < 1e-9);
    }
}

#[test]
fn gram_matches_direct_products() {
    let mut rng = SplitMix64::new(15);
    let x = randn(&mut rng, 33, 5);
    let y = randn(&mut rng, 33, 4);
    let stats = stats_of(&x, &y, 8);
    let m = hcat(&[&x, &y]);
    let g = m.transpose() * &m;
    for i in 0..9 {
        for j in 0..9 {
            assert!((stats.gram[(i, j)] - g[(i, j)]).abs() < 1e-10);
        }
        let s: f64 = (0..33).map(|r| m[(r, i)]).sum();
        assert!((stats.sums[i] - s).abs() < 1e-10);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut acc = spanmatch_core::GramAccumulator::new(3, 2);
    assert!(acc.push_joint(&[1.0; 7]).is_err());
    assert!(acc.push_pair(&[1.0; 6], &[1.0; 6]).is_err());
    let other = spanmatch_core::GramAccumulator::new(2, 2);
    assert!(acc.merge(&other).is_err());
    let mut rng = SplitMix64::new(16);
    let x = randn(&mut rng, 10, 3);
    let profile = problem_of(&x, &x).profile();
    assert!(profile.max_match(-0.1).is_err());
    assert!(profile.max_match(1.5).is_err());
    assert!(profile.max_match(f64::NAN).is_err());
    let nan = faer::Mat::from_fn(10, 3, |i, j| {
        if i == 3 && j == 1 {
            f64::NAN
        } else {
            x[(i, j)]
        }
    });
    let stats = stats_of(&nan, &x, 4);
    assert!(stats.check_finite().is_err());
    assert!(MatchProblem::new(&stats, Default::default()).is_err());
    let empty = spanmatch_core::GramAccumulator::new(0, 3).finish();
    assert!(MatchProblem::new(&empty, Default::default()).is_err());
}

#[test]
fn peeler_on_a_subset_equals_reference_on_that_subset() {
    let mut rng = SplitMix64::new(17);
    let (x, y) = planted(&mut rng, 70, 3, 5, 5, 5, 0.05);
    let problem = problem_of(&x, &y);
    let sa = vec![0, 2, 3, 6, 8];
    let sb = vec![1, 2, 4, 5, 9];
    let xs = faer::Mat::from_fn(70, sa.len(), |i, k| x[(i, sa[k])]);
    let ys = faer::Mat::from_fn(70, sb.len(), |i, k| y[(i, sb[k])]);
    for &eps in &EPSILONS {
        let (ra, rb) = reference_max_match(&xs, &ys, eps);
        let mut p = Peeler::new(&problem, &sa, &sb);
        p.peel_until(eps);
        let ga: Vec<usize> = ra.iter().map(|&k| sa[k]).collect();
        let gb: Vec<usize> = rb.iter().map(|&k| sb[k]).collect();
        assert_eq!(p.members(spanmatch_core::Side::A), ga, "ε = {eps}");
        assert_eq!(p.members(spanmatch_core::Side::B), gb, "ε = {eps}");
    }
}

#[test]
fn larger_layers_agree_with_reference() {
    // Large enough for the peeler to compact its arrays several times along the way.
    let mut rng = SplitMix64::new(18);
    for case in 0..3 {
        let (x, y) = planted(&mut rng, 160, 12, 30, 25, 20 + 5 * case, 0.02 * case as f64);
        assert_agrees(&relu(&x), &relu(&y), &format!("large case {case}"));
    }
    let x = randn(&mut rng, 60, 50);
    let y = randn(&mut rng, 60, 45);
    assert_agrees(&x, &y, "large wide case");
}

#[test]
fn self_pair_statistics_equal_a_direct_pass() {
    let mut rng = SplitMix64::new(19);
    let (x, y) = planted(&mut rng, 50, 3, 4, 2, 3, 0.1);
    let pair = stats_of(&x, &y, 9);
    for (side, m) in [(spanmatch_core::Side::A, &x), (spanmatch_core::Side::B, &y)] {
        let derived = pair.self_pair(side);
        let direct = stats_of(m, m, 9);
        let n = 2 * m.ncols();
        for i in 0..n {
            assert!((derived.sums[i] - direct.sums[i]).abs() < 1e-9);
            assert!(
                (derived.moments.weighted_by_a[i] - direct.moments.weighted_by_a[i]).abs() < 1e-8
            );
            for j in 0..n {
                assert!((derived.gram[(i, j)] - direct.gram[(i, j)]).abs() < 1e-9);
            }
        }
        assert!((derived.moments.ab - direct.moments.ab).abs() < 1e-7 * direct.moments.ab);
        let profile = MatchProblem::new(&derived, Default::default())
            .unwrap()
            .profile();
        assert_eq!(profile.mms(0.0).unwrap(), 1.0);
    }
}
