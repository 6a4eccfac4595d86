//! Tests of the statistical controls: neuron-basis null (rotation), centred variant, bootstrap
//! over chunks of inputs.

mod common;

use common::*;
use faer::Mat;
use spanmatch_core::controls::{
    centered, chunk_memory_bytes, chunk_of, chunk_range, draw_seed, haar_orthogonal, mms_at,
    mms_at_ordered, rotate_b, rotate_b_by, rotation_null, ChunkedAccumulator, ChunkedStats,
    ControlError, Intervals, MAX_CHUNK_BYTES,
};
use spanmatch_core::measures::{compute, Measure};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{CoreError, JointStats, MatchOptions, MatchProblem, RemovalOrder};

/// Agreement of two computations equal in exact arithmetic (relative to the quantity's scale).
const SAME_TOL: f64 = 1e-10;
/// Orthogonality of the Haar rotation.
const ORTHO_TOL: f64 = 1e-12;
/// Chunked vs one-pass statistics (only the summation order differs).
const MERGE_TOL: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Largest absolute difference divided by the largest absolute value of `b` (at least 1e-300).
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn mat_vec(m: &Mat<f64>) -> Vec<f64> {
    let mut v = Vec::with_capacity(m.nrows() * m.ncols());
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            v.push(m[(i, j)]);
        }
    }
    v
}

/// Asserts that every statistic of `a` agrees with `b` to `tol` (relative, per statistic).
fn assert_stats_close(a: &JointStats, b: &JointStats, tol: f64, label: &str) {
    assert_eq!(
        (a.n1, a.n2, a.rows),
        (b.n1, b.n2, b.rows),
        "{label}: shapes"
    );
    let checks = [
        ("gram", rel_diff(&mat_vec(&a.gram), &mat_vec(&b.gram))),
        ("sums", rel_diff(&a.sums, &b.sums)),
        (
            "weighted_by_a",
            rel_diff(&a.moments.weighted_by_a, &b.moments.weighted_by_a),
        ),
        (
            "weighted_by_b",
            rel_diff(&a.moments.weighted_by_b, &b.moments.weighted_by_b),
        ),
        ("aa", rel_diff(&[a.moments.aa], &[b.moments.aa])),
        ("ab", rel_diff(&[a.moments.ab], &[b.moments.ab])),
        ("bb", rel_diff(&[a.moments.bb], &[b.moments.bb])),
    ];
    for (name, d) in checks {
        assert!(d <= tol, "{label}: {name} differs by {d:e} (relative)");
    }
}

/// Adds `offset + slope · column index` to every entry (columns with different non-zero means).
fn shift(m: &Acts, offset: f64, slope: f64) -> Acts {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| {
        m[(i, j)] + offset + slope * j as f64
    })
}

/// Column-centred copy.
fn centre_columns(m: &Acts) -> Acts {
    let rows = m.nrows() as f64;
    let means: Vec<f64> = (0..m.ncols())
        .map(|j| (0..m.nrows()).map(|i| m[(i, j)]).sum::<f64>() / rows)
        .collect();
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] - means[j])
}

fn stats(x: &Acts, y: &Acts) -> JointStats {
    JointStats::from_matrices(&row_major(x), &row_major(y), x.ncols(), y.ncols()).unwrap()
}

/// Planted pair with one-to-one aligned shared neurons: A = [S | P_A], B = [S Π + noise | P_B].
fn aligned_pair(rng: &mut SplitMix64, rows: usize, shared: usize, own: usize) -> (Acts, Acts) {
    let s = randn(rng, rows, shared);
    let perm: Vec<usize> = (0..shared).rev().collect();
    let noise = randn(rng, rows, shared);
    let sb = Mat::from_fn(rows, shared, |i, j| s[(i, perm[j])] + 0.01 * noise[(i, j)]);
    let (pa, pb) = (randn(rng, rows, own), randn(rng, rows, own));
    (hcat(&[&s, &pa]), hcat(&[&sb, &pb]))
}

const ALL: [Measure; 5] = Measure::BASIS_INVARIANT;

// ---------------------------------------------------------------------------------------------
// Neuron-basis null

#[test]
fn haar_rotation_is_orthogonal_and_seeded() {
    for &n in &[1usize, 2, 17, 80] {
        let r = haar_orthogonal(n, 42);
        let rtr = r.transpose() * &r;
        let mut worst = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                worst = worst.max((rtr[(i, j)] - want).abs());
            }
        }
        assert!(worst <= ORTHO_TOL, "n = {n}: RᵀR − I = {worst:e}");
        assert_eq!(mat_vec(&r), mat_vec(&haar_orthogonal(n, 42)), "same seed");
    }
    assert_ne!(
        mat_vec(&haar_orthogonal(5, 1)),
        mat_vec(&haar_orthogonal(5, 2)),
        "different seeds must give different rotations"
    );
}

#[test]
fn haar_rotation_is_uniform_in_distribution() {
    // For Haar R, each entry has mean 0 and variance 1/n, and det R is ±1 with probability 1/2
    // each. Without the sign fix, R₁₁ would be biased (QR conventions make R's diagonal signed).
    let n = 4;
    let draws = 4000;
    let (mut sum, mut sum2, mut positive_det) = (0.0, 0.0, 0usize);
    for s in 0..draws {
        let r = haar_orthogonal(n, s as u64);
        sum += r[(0, 0)];
        sum2 += r[(0, 0)] * r[(0, 0)];
        if r.determinant() > 0.0 {
            positive_det += 1;
        }
    }
    let mean = sum / draws as f64;
    let var = sum2 / draws as f64;
    // Standard error of the mean: sqrt(1/n / draws) ≈ 0.0079; 5 of them.
    assert!(mean.abs() < 0.04, "mean of R₁₁ = {mean}");
    assert!((var - 0.25).abs() < 0.03, "variance of R₁₁ = {var}");
    let frac = positive_det as f64 / draws as f64;
    assert!((frac - 0.5).abs() < 0.04, "fraction of det > 0 = {frac}");
}

#[test]
fn rotated_statistics_equal_statistics_of_rotated_data() {
    let mut rng = SplitMix64::new(11);
    let (x, y) = planted(&mut rng, 300, 4, 5, 3, 4, 0.1);
    // Non-zero, unequal column means so that sums and weighted moments are exercised.
    let (x, y) = (shift(&x, 1.5, 0.3), shift(&relu(&y), 0.5, -0.1));
    let st = stats(&x, &y);
    for seed in [0u64, 7, 123_456_789] {
        let r = haar_orthogonal(y.ncols(), seed);
        let explicit = stats(&x, &(&y * &r));
        assert_stats_close(&rotate_b(&st, seed), &explicit, SAME_TOL, "rotate_b");
        assert_stats_close(
            &rotate_b_by(&st, r.as_ref()),
            &explicit,
            SAME_TOL,
            "rotate_b_by",
        );
    }
}

#[test]
fn row_space_rotation_changes_nothing() {
    let mut rng = SplitMix64::new(12);
    let (x, y) = planted(&mut rng, 120, 3, 5, 3, 3, 0.05);
    let q = random_orthogonal(&mut rng, 120);
    let (qx, qy) = (&q * &x, &q * &y);
    let (s1, s2) = (stats(&x, &y), stats(&qx, &qy));
    let d = rel_diff(&mat_vec(&s2.gram), &mat_vec(&s1.gram));
    assert!(
        d <= SAME_TOL,
        "Gram changed by {d:e} under a rotation of the rows"
    );
    let eps = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.9];
    let m1 = mms_at(&s1, &eps, MatchOptions::default()).unwrap();
    let m2 = mms_at(&s2, &eps, MatchOptions::default()).unwrap();
    assert_eq!(m1, m2);
    // The planted shared part (5 + 5 of 16 neurons) matches at small ε.
    assert!(m1[3] >= 10.0 / 16.0, "{m1:?}");
}

#[test]
fn basis_invariant_measures_ignore_the_neuron_rotation() {
    let mut rng = SplitMix64::new(13);
    let (x, y) = planted(&mut rng, 400, 5, 6, 4, 5, 0.2);
    let st = stats(&shift(&relu(&x), 0.2, 0.0), &relu(&y));
    let before = compute(&st, &ALL).unwrap();
    for seed in 0..3u64 {
        let after = compute(&rotate_b(&st, seed), &ALL).unwrap();
        let pairs = [
            ("cka_linear", before.cka_linear, after.cka_linear),
            (
                "cka_linear_debiased",
                before.cka_linear_debiased,
                after.cka_linear_debiased,
            ),
            ("cca_mean_rho", before.cca_mean_rho, after.cca_mean_rho),
            ("cca_r2", before.cca_r2, after.cca_r2),
            ("procrustes", before.procrustes, after.procrustes),
            (
                "procrustes_angular",
                before.procrustes_angular,
                after.procrustes_angular,
            ),
        ];
        for (name, b, a) in pairs {
            let (b, a) = (b.expect(name), a.expect(name));
            assert!(
                (a - b).abs() <= SAME_TOL,
                "{name}: {b} before, {a} after (seed {seed})"
            );
        }
        // Sanity: the measures are informative here (not trivially 0 or 1).
        assert!(before.cka_linear.unwrap() > 0.2 && before.cka_linear.unwrap() < 0.95);
    }
}

#[test]
fn rotation_destroys_a_one_to_one_match() {
    let mut rng = SplitMix64::new(14);
    let (x, y) = aligned_pair(&mut rng, 1500, 8, 8);
    let st = stats(&x, &y);
    let eps = [0.25, 0.5];
    let opts = MatchOptions::default();
    let null = rotation_null(&st, 10, 99, &eps, opts).unwrap();

    // Independent layers of the same widths: the level of "no shared representation".
    let (ix, iy) = (randn(&mut rng, 1500, 16), randn(&mut rng, 1500, 16));
    let independent = mms_at(&stats(&ix, &iy), &eps, opts).unwrap();

    let at = &null.per_eps[0];
    assert_eq!(at.eps, 0.25);
    // The 8 + 8 aligned shared neurons match (noise sine about 0.01): mms = 16 / 32.
    assert!(at.observed >= 0.5 - 1e-12, "observed mms {}", at.observed);
    assert!(
        at.max <= independent[0] + 0.05,
        "rotated mms up to {} vs independent {}",
        at.max,
        independent[0]
    );
    assert!(at.min >= 0.0 && at.min <= at.mean && at.mean <= at.max);
    assert_eq!(at.values.len(), 10);
    assert!((at.mean - at.values.iter().sum::<f64>() / 10.0).abs() < 1e-15);
    assert_eq!(
        at.p_value,
        1.0 / 11.0,
        "no rotation reaches the observed match"
    );
    // The observed value is mms_at of the original statistics.
    assert_eq!(at.observed, mms_at(&st, &[0.25], opts).unwrap()[0]);
    // Draw k is rotate_b with the listed seed.
    assert_eq!(null.draw_seeds[3], draw_seed(99, 3));
    let again = mms_at(&rotate_b(&st, null.draw_seeds[3]), &eps, opts).unwrap();
    assert_eq!(again[0], at.values[3]);
    assert_eq!(again[1], null.per_eps[1].values[3]);
}

#[test]
fn rotation_null_is_deterministic_and_thread_independent() {
    let mut rng = SplitMix64::new(15);
    let (x, y) = planted(&mut rng, 200, 4, 6, 3, 3, 0.05);
    let st = stats(&x, &y);
    let eps = [0.1, 0.3, 0.6, 0.9];
    let opts = MatchOptions::default();
    let a = rotation_null(&st, 6, 5, &eps, opts).unwrap();
    let b = rotation_null(&st, 6, 5, &eps, opts).unwrap();
    let bits = |n: &spanmatch_core::controls::RotationNull| -> Vec<u64> {
        n.per_eps
            .iter()
            .flat_map(|e| {
                e.values
                    .iter()
                    .chain([e.mean, e.min, e.max, e.p_value].iter())
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| rotation_null(&st, 6, 5, &eps, opts).unwrap());
    assert_eq!(bits(&a), bits(&single), "one thread vs many");
    let c = rotation_null(&st, 6, 6, &eps, opts).unwrap();
    assert_ne!(a.draw_seeds, c.draw_seeds);
    assert_ne!(
        bits(&a),
        bits(&c),
        "different seeds should give different null values"
    );
    // Rotated statistics themselves: same seed bitwise equal, different seeds different.
    let g = |s: u64| mat_vec(&rotate_b(&st, s).gram);
    assert_eq!(
        g(3).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        g(3).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_ne!(g(3), g(4));
}

#[test]
fn rotation_with_a_dead_neuron_does_not_crash() {
    let mut rng = SplitMix64::new(16);
    let (x, y) = planted(&mut rng, 150, 3, 4, 2, 3, 0.05);
    let mut y = relu(&y);
    for i in 0..y.nrows() {
        y[(i, 2)] = 0.0;
    }
    let st = stats(&relu(&x), &y);
    let opts = MatchOptions::default();
    assert_eq!(MatchProblem::new(&st, opts).unwrap().dead_b(), &[2]);
    let rotated = rotate_b(&st, 8);
    // The zero column is mixed into the others: no dead neuron left, the rank is unchanged.
    let p = MatchProblem::new(&rotated, opts).unwrap();
    assert!(
        p.dead_b().is_empty(),
        "dead after rotation: {:?}",
        p.dead_b()
    );
    let null = rotation_null(&st, 4, 1, &[0.2, 0.5, 1.0], opts).unwrap();
    for e in &null.per_eps {
        for &v in &e.values {
            assert!((0.0..=1.0).contains(&v), "mms {v}");
        }
    }
    // At ε = 1 every live neuron matches: after rotation all 7 of B are live.
    assert_eq!(null.per_eps[2].values, vec![1.0; 4]);
    assert_eq!(null.per_eps[2].observed, 12.0 / 13.0);
}

#[test]
fn rotation_null_errors() {
    let mut rng = SplitMix64::new(17);
    let st = stats(&randn(&mut rng, 30, 3), &randn(&mut rng, 30, 2));
    let opts = MatchOptions::default();
    assert_eq!(
        rotation_null(&st, 0, 1, &[0.5], opts).unwrap_err(),
        ControlError::NoDraws
    );
    assert_eq!(
        rotation_null(&st, 2, 1, &[], opts).unwrap_err(),
        ControlError::NoEpsilons
    );
    assert_eq!(
        rotation_null(&st, 2, 1, &[1.5], opts).unwrap_err(),
        ControlError::Core(CoreError::EpsilonRange(1.5))
    );
}

// ---------------------------------------------------------------------------------------------
// Centring

#[test]
fn centered_statistics_equal_statistics_of_centred_data() {
    let mut rng = SplitMix64::new(21);
    let (x, y) = planted(&mut rng, 250, 3, 4, 3, 2, 0.3);
    let (x, y) = (shift(&relu(&x), 2.0, 0.5), shift(&relu(&y), -1.0, 0.25));
    let st = stats(&x, &y);
    let c = centered(&st);
    let explicit = stats(&centre_columns(&x), &centre_columns(&y));
    let d = rel_diff(&mat_vec(&c.gram), &mat_vec(&explicit.gram));
    assert!(d <= SAME_TOL, "centred Gram differs by {d:e}");
    assert!(c.sums.iter().all(|&s| s == 0.0));
    // The explicitly centred sums are round-off only.
    let scale = mat_vec(&explicit.gram)
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(explicit
        .sums
        .iter()
        .all(|s| s.abs() <= 1e-10 * scale.sqrt()));
    // Moments: derived exactly (cancellation grows with mean²/variance, here about 10).
    for (name, a, b) in [
        (
            "weighted_by_a",
            &c.moments.weighted_by_a,
            &explicit.moments.weighted_by_a,
        ),
        (
            "weighted_by_b",
            &c.moments.weighted_by_b,
            &explicit.moments.weighted_by_b,
        ),
    ] {
        let d = rel_diff(a, b);
        assert!(d <= 1e-9, "{name} differs by {d:e}");
    }
    for (name, a, b) in [
        ("aa", c.moments.aa, explicit.moments.aa),
        ("ab", c.moments.ab, explicit.moments.ab),
        ("bb", c.moments.bb, explicit.moments.bb),
    ] {
        assert!((a - b).abs() <= 1e-9 * b.abs(), "{name}: {a} vs {b}");
    }
    // Match thresholds of the centred statistics agree with those of the centred data.
    let opts = MatchOptions::default();
    let p1 = MatchProblem::new(&c, opts).unwrap().profile();
    let p2 = MatchProblem::new(&explicit, opts).unwrap().profile();
    for (t1, t2) in p1
        .thresholds_a()
        .iter()
        .chain(p1.thresholds_b())
        .zip(p2.thresholds_a().iter().chain(p2.thresholds_b()))
    {
        let (t1, t2) = (t1.expect("live"), t2.expect("live"));
        assert!((t1 - t2).abs() <= SAME_TOL, "threshold {t1} vs {t2}");
    }
    // And they are not those of the uncentred data (the control does something here).
    let p0 = MatchProblem::new(&st, opts).unwrap().profile();
    assert!((p0.max_epsilon() - p1.max_epsilon()).abs() > 1e-3);
}

#[test]
fn centring_leaves_the_centred_measures_unchanged() {
    let mut rng = SplitMix64::new(22);
    let (x, y) = planted(&mut rng, 300, 4, 5, 3, 3, 0.2);
    let st = stats(&shift(&relu(&x), 1.0, 0.2), &shift(&relu(&y), 0.5, 0.0));
    let (before, after) = (
        compute(&st, &ALL).unwrap(),
        compute(&centered(&st), &ALL).unwrap(),
    );
    let pairs = [
        ("cka_linear", before.cka_linear, after.cka_linear),
        (
            "cka_linear_debiased",
            before.cka_linear_debiased,
            after.cka_linear_debiased,
        ),
        ("cca_mean_rho", before.cca_mean_rho, after.cca_mean_rho),
        ("svcca", before.svcca, after.svcca),
        ("pwcca", before.pwcca, after.pwcca),
        ("procrustes", before.procrustes, after.procrustes),
    ];
    for (name, b, a) in pairs {
        let (b, a) = (b.expect(name), a.expect(name));
        assert!(
            (a - b).abs() <= SAME_TOL,
            "{name}: {b} uncentred, {a} centred"
        );
    }
    // Centring twice changes nothing more.
    let twice = centered(&centered(&st));
    let d = rel_diff(&mat_vec(&twice.gram), &mat_vec(&centered(&st).gram));
    assert!(d <= 1e-14, "{d:e}");
}

#[test]
fn a_shared_constant_offset_matches_uncentred_but_not_centred() {
    // Every neuron of both nets is 10 + independent unit noise: the uncentred vectors all point
    // along the constant vector (sine to the other span about 0.1), the centred ones are
    // independent (sine about 1).
    let mut rng = SplitMix64::new(23);
    let rows = 2000;
    let x = shift(&randn(&mut rng, rows, 8), 10.0, 0.0);
    let y = shift(&randn(&mut rng, rows, 8), 10.0, 0.0);
    let st = stats(&x, &y);
    let opts = MatchOptions::default();
    let eps = [0.15, 0.5];
    assert_eq!(mms_at(&st, &eps, opts).unwrap(), vec![1.0, 1.0]);
    assert_eq!(mms_at(&centered(&st), &eps, opts).unwrap(), vec![0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------------
// Chunks and bootstrap

/// Statistics of `x`, `y` split into `chunks` contiguous chunks of rows with `chunk_range`,
/// each pushed in blocks of 37 rows.
fn chunked(x: &Acts, y: &Acts, chunks: usize) -> ChunkedStats {
    let (n1, n2) = (x.ncols(), y.ncols());
    let (xr, yr) = (row_major(x), row_major(y));
    let total = x.nrows() as u64;
    let mut acc = ChunkedAccumulator::new(n1, n2, chunks).unwrap();
    for c in 0..chunks {
        let range = chunk_range(c, total, chunks);
        let (start, end) = (range.start as usize, range.end as usize);
        for b in (start..end).step_by(37) {
            let e = (b + 37).min(end);
            assert_eq!(chunk_of(b as u64, total, chunks), c);
            acc.push_pair(c, &xr[b * n1..e * n1], &yr[b * n2..e * n2])
                .unwrap();
        }
    }
    acc.finish()
}

fn mms_and_cka(eps: &'static [f64]) -> impl Fn(&JointStats) -> Result<Vec<f64>, CoreError> + Sync {
    move |s: &JointStats| {
        let mut v = mms_at(s, eps, MatchOptions::default())?;
        let m = compute(s, &[Measure::Cka])?;
        v.push(m.cka_linear.unwrap_or(f64::NAN));
        v.push(m.cka_linear_debiased.unwrap_or(f64::NAN));
        Ok(v)
    }
}

#[test]
fn merged_chunks_equal_one_pass() {
    let mut rng = SplitMix64::new(31);
    let (x, y) = planted(&mut rng, 1000, 4, 6, 5, 3, 0.1);
    let (x, y) = (shift(&relu(&x), 0.5, 0.1), relu(&y));
    let one = stats_of(&x, &y, 1000);
    for chunks in [1usize, 3, 7, 16] {
        let cs = chunked(&x, &y, chunks);
        assert_eq!(cs.len(), chunks);
        let rows: u64 = cs.chunks().iter().map(|c| c.rows).sum();
        assert_eq!(rows, 1000);
        assert_stats_close(&cs.merged(), &one, MERGE_TOL, &format!("{chunks} chunks"));
    }
    // The same through ChunkedStats::push_joint (one joint block per chunk).
    let (n1, n2) = (x.ncols(), y.ncols());
    let joint = row_major(&hcat(&[&x, &y]));
    let mut cs = ChunkedStats::zeros(n1, n2, 4).unwrap();
    for c in 0..4 {
        let r = chunk_range(c, 1000, 4);
        let (s, e) = (r.start as usize * (n1 + n2), r.end as usize * (n1 + n2));
        cs.push_joint(c, &joint[s..e]).unwrap();
    }
    assert_stats_close(&cs.merged(), &one, MERGE_TOL, "push_joint");
    assert!(matches!(
        cs.push_joint(4, &joint[..n1 + n2]),
        Err(ControlError::ChunkIndex {
            index: 4,
            chunks: 4
        })
    ));
}

#[test]
fn one_chunk_gives_a_point_interval() {
    let mut rng = SplitMix64::new(32);
    let (x, y) = planted(&mut rng, 300, 3, 4, 3, 3, 0.1);
    let cs = chunked(&x, &y, 1);
    let f = mms_and_cka(&[0.2, 0.5]);
    let iv = cs.bootstrap(20, 1, &f).unwrap();
    let full = f(&cs.merged()).unwrap();
    assert_eq!(iv.outputs.len(), 4);
    for (o, &v) in iv.outputs.iter().zip(&full) {
        assert_eq!(o.point.to_bits(), v.to_bits());
        assert_eq!(o.lo.to_bits(), v.to_bits());
        assert_eq!(o.hi.to_bits(), v.to_bits());
        assert!(o.std_error <= 1e-12 * v.abs().max(1.0), "{}", o.std_error);
        assert_eq!(o.finite, 20);
    }
    // And the full value is that of the one-pass statistics.
    let one = f(&stats_of(&x, &y, 300)).unwrap();
    for (a, b) in full.iter().zip(&one) {
        assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
    }
}

#[test]
fn intervals_cover_the_full_value_and_are_seeded() {
    let mut rng = SplitMix64::new(33);
    let (x, y) = planted(&mut rng, 2000, 4, 6, 4, 4, 0.1);
    let (x, y) = (relu(&x), relu(&y));
    let cs = chunked(&x, &y, 20);
    let f = mms_and_cka(&[0.25, 0.5]);
    let iv: Intervals = cs.bootstrap(200, 7, &f).unwrap();
    assert_eq!(
        (iv.resamples, iv.chunks, iv.level, iv.seed),
        (200, 20, 0.95, 7)
    );
    for (k, o) in iv.outputs.iter().enumerate() {
        assert!(
            o.lo <= o.point && o.point <= o.hi,
            "output {k}: {} not in [{}, {}]",
            o.point,
            o.lo,
            o.hi
        );
        assert_eq!(o.finite, 200);
    }
    // CKA varies over resamples: a proper interval, not a point, and not absurdly wide.
    let cka = &iv.outputs[2];
    assert!(cka.hi - cka.lo > 1e-4 && cka.hi - cka.lo < 0.3, "{cka:?}");
    assert!(cka.std_error > 0.0);
    // Same seed, same intervals bit for bit; also on one thread.
    let again = cs.bootstrap(200, 7, &f).unwrap();
    assert_eq!(iv, again);
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| cs.bootstrap(200, 7, &f).unwrap());
    let bits = |i: &Intervals| -> Vec<u64> {
        i.outputs
            .iter()
            .flat_map(|o| [o.lo, o.hi, o.mean, o.std_error].map(f64::to_bits))
            .collect()
    };
    assert_eq!(bits(&iv), bits(&single));
    // Another seed gives other CKA endpoints.
    let other = cs.bootstrap(200, 8, &f).unwrap();
    assert_ne!((other.outputs[2].lo, other.outputs[2].hi), (cka.lo, cka.hi));
}

#[test]
fn resamples_peeled_in_the_full_datas_order_give_the_same_intervals() {
    // The engine peels each resample with the full data's removal order
    // (`mms_at_ordered`): on ReLU layers with many distinct thresholds, every resample's mms at
    // a fine grid of ε is that of the plain profile, so the intervals are the same.
    let mut rng = SplitMix64::new(36);
    let (x, y) = planted(&mut rng, 2400, 24, 60, 20, 20, 0.3);
    let (x, y) = (relu(&x), relu(&y));
    let cs = chunked(&x, &y, 12);
    let eps: Vec<f64> = (1..20).map(|k| k as f64 / 20.0).collect();
    let full = MatchProblem::new(&cs.merged(), MatchOptions::default())
        .unwrap()
        .profile();
    let order = RemovalOrder::from_profile(&full);
    assert_eq!(order.a.len() + order.b.len(), full.steps().len());
    let plain = cs
        .bootstrap(40, 3, |s| mms_at(s, &eps, MatchOptions::default()))
        .unwrap();
    let ordered = cs
        .bootstrap(40, 3, |s| {
            mms_at_ordered(s, &eps, MatchOptions::default(), &order)
        })
        .unwrap();
    assert_eq!(plain, ordered);
    // The resamples do differ: some interval is not a point.
    assert!(plain.outputs.iter().any(|o| o.hi > o.lo), "{plain:?}");
}

#[test]
fn bootstrap_intervals_cover_the_truth_in_most_replications() {
    // Frequentist check: over independent data sets of a planted pair, the 90 % interval for
    // linear CKA covers the CKA of a much larger sample (a proxy for the population value) in
    // most replications. Loose bounds: the percentile bootstrap over 10 chunks is approximate.
    let mut rng = SplitMix64::new(34);
    let gen = |rng: &mut SplitMix64, rows: usize| {
        let s = randn(rng, rows, 3);
        let x = hcat(&[&s, &randn(rng, rows, 3)]);
        let noise = randn(rng, rows, 3);
        let sy = Mat::from_fn(rows, 3, |i, j| s[(i, j)] + noise[(i, j)]);
        let y = hcat(&[&sy, &randn(rng, rows, 2)]);
        (x, y)
    };
    let (bx, by) = gen(&mut rng, 100_000);
    let truth = compute(&stats(&bx, &by), &[Measure::Cka])
        .unwrap()
        .cka_linear
        .unwrap();
    let cka = |s: &JointStats| -> Result<Vec<f64>, CoreError> {
        Ok(vec![compute(s, &[Measure::Cka])?.cka_linear.unwrap()])
    };
    let reps = 40;
    let mut covered = 0;
    for r in 0..reps {
        let (x, y) = gen(&mut rng, 400);
        let iv = chunked(&x, &y, 10)
            .bootstrap_with_level(200, r, 0.9, cka)
            .unwrap();
        let o = &iv.outputs[0];
        if o.lo <= truth && truth <= o.hi {
            covered += 1;
        }
    }
    assert!(
        covered >= reps * 6 / 10,
        "covered {covered} of {reps} (truth {truth})"
    );
}

#[test]
fn chunk_errors() {
    let mut rng = SplitMix64::new(35);
    let a = stats(&randn(&mut rng, 20, 3), &randn(&mut rng, 20, 2));
    let b = stats(&randn(&mut rng, 20, 2), &randn(&mut rng, 20, 3));
    assert_eq!(
        ChunkedStats::new(vec![]).unwrap_err(),
        ControlError::NoChunks
    );
    assert_eq!(
        ChunkedAccumulator::new(3, 2, 0).unwrap_err(),
        ControlError::NoChunks
    );
    assert_eq!(
        ChunkedStats::new(vec![a.clone(), b]).unwrap_err(),
        ControlError::ChunkShape {
            index: 1,
            expected: (3, 2),
            got: (2, 3)
        }
    );
    let cs = ChunkedStats::new(vec![a.clone(), a.clone()]).unwrap();
    let f = |s: &JointStats| -> Result<Vec<f64>, CoreError> { Ok(vec![s.rows as f64]) };
    assert_eq!(
        cs.bootstrap(0, 1, f).unwrap_err(),
        ControlError::NoResamples
    );
    assert_eq!(
        cs.bootstrap_with_level(5, 1, 1.0, f).unwrap_err(),
        ControlError::Level(1.0)
    );
    // Errors of the statistic come through.
    let bad = |_: &JointStats| -> Result<Vec<f64>, CoreError> { Err(CoreError::NoRows) };
    assert_eq!(
        cs.bootstrap(3, 1, bad).unwrap_err(),
        ControlError::Core(CoreError::NoRows)
    );
    // A statistic whose length changes with the data (chunks of 20 and 30 rows: resamples of
    // 40 or 60 rows differ from the full data's 50).
    let c = stats(&randn(&mut rng, 30, 3), &randn(&mut rng, 30, 2));
    let uneven = ChunkedStats::new(vec![a.clone(), c]).unwrap();
    let varying = |s: &JointStats| -> Result<Vec<f64>, CoreError> {
        Ok(vec![0.0; 1 + (s.rows != 50) as usize])
    };
    assert!(matches!(
        uneven.bootstrap(50, 1, varying).unwrap_err(),
        ControlError::OutputLength {
            expected: 1,
            got: 2,
            ..
        }
    ));
    // Resampled row counts: each resample draws 2 chunks of 20 rows.
    let iv = cs.bootstrap(10, 1, f).unwrap();
    assert_eq!(
        (iv.outputs[0].lo, iv.outputs[0].hi, iv.outputs[0].point),
        (40.0, 40.0, 40.0)
    );
}

#[test]
fn memory_cap() {
    assert_eq!(chunk_memory_bytes(3, 5, 4), 4 * 64 * 8);
    assert_eq!(MAX_CHUNK_BYTES, 2 * 1024 * 1024 * 1024);
    // 1024 neurons: 8 MiB per chunk, so 256 chunks are exactly 2 GiB (allowed), 257 are not.
    assert_eq!(chunk_memory_bytes(512, 512, 256), MAX_CHUNK_BYTES);
    assert!(matches!(
        ChunkedAccumulator::new(512, 512, 257).unwrap_err(),
        ControlError::ChunkMemory {
            chunks: 257,
            neurons: 1024,
            ..
        }
    ));
    assert!(matches!(
        ChunkedAccumulator::with_cap(3, 2, 10, 1000).unwrap_err(),
        ControlError::ChunkMemory {
            bytes: 2000,
            cap: 1000,
            ..
        }
    ));
    let st = JointStats::from_matrices(&[1.0, 2.0], &[3.0], 2, 1).unwrap();
    assert!(matches!(
        ChunkedStats::with_cap(vec![st.clone(), st], 100).unwrap_err(),
        ControlError::ChunkMemory { bytes: 144, .. }
    ));
    assert_eq!(chunk_memory_bytes(usize::MAX, 1, usize::MAX), u64::MAX);
}
