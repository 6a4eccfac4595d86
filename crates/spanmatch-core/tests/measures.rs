//! Tests of the similarity measures (CKA, CCA family, Procrustes, flattened view).

use spanmatch_core::measures::{
    centred_row_norms, compute, FlattenedColumnAccumulator, FlattenedGramAccumulator,
    FlattenedKernels, Measure, Measures,
};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{CoreError, GramAccumulator, JointStats, Side};
use std::path::Path;

#[path = "common/npy.rs"]
mod npy;
use npy::read_npy;

const ALL: [Measure; 5] = Measure::BASIS_INVARIANT;

/// Agreement with the published/numpy numbers of the CKA demo (they are given to 5 digits).
const GOLDEN_TOL: f64 = 1e-4;
/// Agreement with numpy on quantities we recomputed to full precision.
const NUMPY_TOL: f64 = 1e-9;
/// Agreement of two exact-arithmetic-equal computations in f64 (streaming vs one shot, moments vs
/// direct).
const SAME_TOL: f64 = 1e-9;
/// Closed-form values (1 for CKA/CCA, 0 for Procrustes) of transformed copies. The Procrustes
/// distance is `sqrt(2 − 2ν)`, which turns a round-off of 1e-16 in ν into about 1e-8.
const CLOSED_FORM_TOL: f64 = 1e-6;

// ---------------------------------------------------------------------------------------------
// Helpers

fn demo() -> (Vec<f64>, Vec<f64>, usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (x, rows, p1) = read_npy(&dir.join("cka_demo_x.npy"));
    let (y, rows_y, p2) = read_npy(&dir.join("cka_demo_y.npy"));
    assert_eq!(rows, rows_y);
    (x, y, rows, p1.max(p2))
}

/// `rows x cols` standard normal, row-major, plus `offset` on every entry.
fn randn(rng: &mut SplitMix64, rows: usize, cols: usize, offset: f64) -> Vec<f64> {
    (0..rows * cols).map(|_| rng.normal() + offset).collect()
}

/// `x (rows x p) · q (p x m)`, row-major.
fn matmul(x: &[f64], q: &[f64], rows: usize, p: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * m];
    for i in 0..rows {
        for k in 0..p {
            let v = x[i * p + k];
            for j in 0..m {
                out[i * m + j] += v * q[k * m + j];
            }
        }
    }
    out
}

/// A random `p x p` orthogonal matrix (product of Householder reflections), row-major.
fn random_orthogonal(rng: &mut SplitMix64, p: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..p * p)
        .map(|i| if i / p == i % p { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..p {
        let v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
        let vv: f64 = v.iter().map(|a| a * a).sum();
        let h: Vec<f64> = (0..p * p)
            .map(|i| {
                let (r, c) = (i / p, i % p);
                f64::from(u8::from(r == c)) - 2.0 * v[r] * v[c] / vv
            })
            .collect();
        q = matmul(&q, &h, p, p, p);
    }
    q
}

fn stats(x: &[f64], y: &[f64], p1: usize, p2: usize) -> JointStats {
    JointStats::from_matrices(x, y, p1, p2).unwrap()
}

fn close(got: Option<f64>, want: f64, tol: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what} is None"));
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

/// All numbers of a `Measures`, for finiteness checks and comparisons.
fn numbers(m: &Measures) -> Vec<(String, f64)> {
    let mut v = vec![];
    let mut push = |k: &str, x: Option<f64>| {
        if let Some(x) = x {
            v.push((k.to_string(), x));
        }
    };
    push("cka_linear", m.cka_linear);
    push("cka_linear_debiased", m.cka_linear_debiased);
    push("cca_mean_rho", m.cca_mean_rho);
    push("cca_r2", m.cca_r2);
    push("cca_r2_uncentred", m.cca_r2_uncentred);
    push("svcca", m.svcca);
    push("pwcca", m.pwcca);
    push("procrustes", m.procrustes);
    push("procrustes_angular", m.procrustes_angular);
    for (i, r) in m.cca_rho.iter().flatten().enumerate() {
        v.push((format!("rho{i}"), *r));
    }
    v
}

fn assert_all_finite(m: &Measures) {
    for (k, v) in numbers(m) {
        assert!(v.is_finite(), "{k} = {v} is not finite ({m:?})");
    }
}

fn assert_same(a: &Measures, b: &Measures, tol: f64) {
    let (na, nb) = (numbers(a), numbers(b));
    assert_eq!(
        na.iter().map(|p| &p.0).collect::<Vec<_>>(),
        nb.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for ((k, x), (_, y)) in na.iter().zip(&nb) {
        assert!((x - y).abs() <= tol, "{k}: {x} vs {y}");
    }
    assert_eq!(a.cca_rank, b.cca_rank);
    assert_eq!(a.svcca_dims, b.svcca_dims);
}

/// Kornblith et al.'s reference CKA from full N x N linear kernels (`debiased` = U-centring).
fn direct_kernel_cka(x: &[f64], y: &[f64], n: usize, p1: usize, p2: usize, debiased: bool) -> f64 {
    let kernel = |m: &[f64], p: usize| -> Vec<f64> {
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                k[i * n + j] = (0..p).map(|c| m[i * p + c] * m[j * p + c]).sum();
            }
        }
        k
    };
    let centre = |mut k: Vec<f64>| -> Vec<f64> {
        let nf = n as f64;
        if debiased {
            for i in 0..n {
                k[i * n + i] = 0.0;
            }
            let mut means: Vec<f64> = (0..n)
                .map(|j| (0..n).map(|i| k[i * n + j]).sum::<f64>() / (nf - 2.0))
                .collect();
            let s: f64 = means.iter().sum::<f64>() / (2.0 * (nf - 1.0));
            means.iter_mut().for_each(|m| *m -= s);
            for i in 0..n {
                for j in 0..n {
                    k[i * n + j] -= means[i] + means[j];
                }
            }
            for i in 0..n {
                k[i * n + i] = 0.0;
            }
        } else {
            let mut means: Vec<f64> = (0..n)
                .map(|j| (0..n).map(|i| k[i * n + j]).sum::<f64>() / nf)
                .collect();
            let s: f64 = means.iter().sum::<f64>() / (2.0 * nf);
            means.iter_mut().for_each(|m| *m -= s);
            for i in 0..n {
                for j in 0..n {
                    k[i * n + j] -= means[i] + means[j];
                }
            }
        }
        k
    };
    let (k, l) = (centre(kernel(x, p1)), centre(kernel(y, p2)));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    dot(&k, &l) / (dot(&k, &k).sqrt() * dot(&l, &l).sqrt())
}

// ---------------------------------------------------------------------------------------------
// Golden values

#[test]
fn cka_demo_golden_values() {
    let (x, y, rows, p) = demo();
    assert_eq!((rows, p), (100, 10));
    let m = compute(&stats(&x, &y, p, p), &ALL).unwrap();
    // Published in Kornblith et al.'s CKA demo notebook.
    close(m.cka_linear, 0.55761, GOLDEN_TOL, "cka_linear");
    close(
        m.cka_linear_debiased,
        0.51346,
        GOLDEN_TOL,
        "cka_linear_debiased",
    );
    close(m.cca_r2_uncentred, 0.54312, GOLDEN_TOL, "cca_r2_uncentred");
    close(m.cca_r2, 0.54540, GOLDEN_TOL, "cca_r2");
    // Recomputed with numpy (QR/SVD of the data) to full precision.
    close(m.cka_linear, 0.5576132566117586, NUMPY_TOL, "cka_linear");
    close(
        m.cka_linear_debiased,
        0.513456489505526,
        NUMPY_TOL,
        "debiased",
    );
    close(
        m.cca_r2_uncentred,
        0.5431238559305234,
        NUMPY_TOL,
        "r2 uncentred",
    );
    close(m.cca_r2, 0.5453963321908326, NUMPY_TOL, "cca_r2");
    close(
        m.cca_mean_rho,
        0.7310139587836586,
        NUMPY_TOL,
        "cca_mean_rho",
    );
    let rho = m.cca_rho.as_ref().unwrap();
    assert_eq!(rho.len(), 10);
    close(Some(rho[0]), 0.8851112, 1e-7, "rho[0]");
    close(Some(rho[9]), 0.54236993, 1e-7, "rho[9]");
    assert!(rho.windows(2).all(|w| w[0] >= w[1]), "rho not sorted");
    assert_eq!(m.cca_rank, Some([10, 10]));
    // Isotropic random data: 99% of the variance needs all 10 directions, SVCCA = CCA.
    assert_eq!(m.svcca_dims, Some([10, 10]));
    close(m.svcca, 0.7310139587836586, NUMPY_TOL, "svcca");
    close(m.pwcca, 0.7346677196174034, NUMPY_TOL, "pwcca");
    close(m.procrustes, 0.7262846403362411, 1e-8, "procrustes");
    close(
        m.procrustes_angular,
        0.7432764761208088,
        1e-8,
        "procrustes_angular",
    );
    assert!(m.notes.is_empty(), "{:?}", m.notes);
}

#[test]
fn svcca_truncates_to_99_percent_of_variance() {
    let (x, y, rows, p) = demo();
    let sx = [10.0, 10.0, 10.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01];
    let sy = [5.0, 5.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1];
    let scale = |m: &[f64], s: &[f64]| -> Vec<f64> {
        m.iter().enumerate().map(|(i, v)| v * s[i % p]).collect()
    };
    let (xs, ys) = (scale(&x, &sx), scale(&y, &sy));
    assert_eq!(xs.len(), rows * p);
    let m = compute(&stats(&xs, &ys, p, p), &[Measure::Svcca]).unwrap();
    assert_eq!(m.svcca_dims, Some([3, 6]));
    close(m.svcca, 0.7205378263305819, NUMPY_TOL, "svcca");
    assert!(m.cka_linear.is_none() && m.cca_r2.is_none() && m.procrustes.is_none());
}

#[test]
fn pwcca_weights_the_narrower_side() {
    // X: 10 neurons, Y: its first 6 columns of the demo Y, so the weights come from side B.
    let (x, y, rows, p) = demo();
    let y6: Vec<f64> = (0..rows)
        .flat_map(|i| y[i * p..i * p + 6].to_vec())
        .collect();
    let m = compute(&stats(&x, &y6, p, 6), &[Measure::Cca, Measure::Pwcca]).unwrap();
    close(m.pwcca, 0.7458153898252241, NUMPY_TOL, "pwcca");
    close(m.cca_mean_rho, 0.74059432954834, NUMPY_TOL, "mean rho");
    assert_eq!(m.cca_rho.as_ref().unwrap().len(), 6);
}

// ---------------------------------------------------------------------------------------------
// Closed forms

#[test]
fn orthogonal_transform_and_rescaling_give_identity_values() {
    let mut rng = SplitMix64::new(7);
    let (n, p) = (200, 8);
    let x = randn(&mut rng, n, p, 2.0);
    let q = random_orthogonal(&mut rng, p);
    let rotated = matmul(&x, &q, n, p, p);
    // Isotropic rescaling plus a constant shift (removed by centring).
    let rescaled: Vec<f64> = x.iter().map(|v| -3.5 * v + 11.0).collect();
    for (what, y) in [("rotation", rotated), ("rescaling", rescaled)] {
        let m = compute(&stats(&x, &y, p, p), &ALL).unwrap();
        for (k, v) in [
            ("cka", m.cka_linear),
            ("cka_debiased", m.cka_linear_debiased),
            ("cca_mean_rho", m.cca_mean_rho),
            ("cca_r2", m.cca_r2),
            ("svcca", m.svcca),
            ("pwcca", m.pwcca),
        ] {
            close(v, 1.0, CLOSED_FORM_TOL, &format!("{what}: {k}"));
        }
        for r in m.cca_rho.as_ref().unwrap() {
            close(Some(*r), 1.0, CLOSED_FORM_TOL, &format!("{what}: rho"));
        }
        close(
            m.procrustes,
            0.0,
            CLOSED_FORM_TOL,
            &format!("{what}: procrustes"),
        );
        close(
            m.procrustes_angular,
            0.0,
            CLOSED_FORM_TOL,
            &format!("{what}: angular"),
        );
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }
    // A rotation (not a rescaling) of the uncentred data also keeps the uncentred R² at 1.
    let y = matmul(&x, &q, n, p, p);
    let m = compute(&stats(&x, &y, p, p), &[Measure::Cca]).unwrap();
    close(m.cca_r2_uncentred, 1.0, CLOSED_FORM_TOL, "uncentred r2");
}

#[test]
fn independent_gaussians_debiased_near_zero_biased_not() {
    // Small n, p = 10: the biased estimator has a large positive bias, the debiased one none.
    let mut rng = SplitMix64::new(2024);
    let (n, p, trials) = (30, 10, 40);
    let (mut biased, mut debiased) = (0.0, 0.0);
    for _ in 0..trials {
        let x = randn(&mut rng, n, p, 0.5);
        let y = randn(&mut rng, n, p, -1.0);
        let m = compute(&stats(&x, &y, p, p), &[Measure::Cka]).unwrap();
        biased += m.cka_linear.unwrap() / trials as f64;
        debiased += m.cka_linear_debiased.unwrap() / trials as f64;
    }
    // Here the biased mean is about 0.26 and the debiased mean about 0.01.
    assert!(biased > 0.2, "mean biased CKA {biased}");
    assert!(debiased.abs() < 0.03, "mean debiased CKA {debiased}");
}

// ---------------------------------------------------------------------------------------------
// Streaming and the moment algebra

#[test]
fn streaming_equals_one_shot() {
    let mut rng = SplitMix64::new(99);
    let (n, p1, p2) = (97, 6, 9);
    let x = randn(&mut rng, n, p1, 1.5);
    let mut y = randn(&mut rng, n, p2, -0.5);
    // Correlate the layers so that all measures are away from their trivial values.
    for i in 0..n {
        for j in 0..p1.min(p2) {
            y[i * p2 + j] += 0.8 * x[i * p1 + j];
        }
    }
    let one = compute(&stats(&x, &y, p1, p2), &ALL).unwrap();
    assert_all_finite(&one);

    // push_pair in uneven blocks.
    let mut acc = GramAccumulator::new(p1, p2);
    let mut start = 0;
    for b in [1, 13, 40, 2, 41] {
        acc.push_pair(
            &x[start * p1..(start + b) * p1],
            &y[start * p2..(start + b) * p2],
        )
        .unwrap();
        start += b;
    }
    assert_eq!(start, n);
    assert_same(&one, &compute(&acc.finish(), &ALL).unwrap(), SAME_TOL);

    // push_joint in blocks of 10.
    let joint: Vec<f64> = (0..n)
        .flat_map(|i| {
            let mut r = x[i * p1..(i + 1) * p1].to_vec();
            r.extend_from_slice(&y[i * p2..(i + 1) * p2]);
            r
        })
        .collect();
    let mut acc = GramAccumulator::new(p1, p2);
    for block in joint.chunks(10 * (p1 + p2)) {
        acc.push_joint(block).unwrap();
    }
    assert_same(&one, &compute(&acc.finish(), &ALL).unwrap(), SAME_TOL);

    // Three accumulators merged.
    let mut parts: Vec<GramAccumulator> = (0..3).map(|_| GramAccumulator::new(p1, p2)).collect();
    for i in 0..n {
        parts[i % 3]
            .push_pair(&x[i * p1..(i + 1) * p1], &y[i * p2..(i + 1) * p2])
            .unwrap();
    }
    let (first, rest) = parts.split_at_mut(1);
    for other in rest.iter() {
        first[0].merge(other).unwrap();
    }
    assert_same(&one, &compute(&first[0].finish(), &ALL).unwrap(), SAME_TOL);
}

#[test]
fn centred_row_norms_match_direct_computation() {
    let mut rng = SplitMix64::new(5);
    let (n, p1, p2) = (50, 4, 7);
    // Means of several standard deviations, different per column.
    let x: Vec<f64> = (0..n * p1)
        .map(|i| rng.normal() + (i % p1) as f64)
        .collect();
    let y: Vec<f64> = (0..n * p2)
        .map(|i| 2.0 * rng.normal() - (i % p2) as f64 * 0.7)
        .collect();
    let centred_norms = |m: &[f64], p: usize| -> Vec<f64> {
        let mean: Vec<f64> = (0..p)
            .map(|c| (0..n).map(|i| m[i * p + c]).sum::<f64>() / n as f64)
            .collect();
        (0..n)
            .map(|i| (0..p).map(|c| (m[i * p + c] - mean[c]).powi(2)).sum())
            .collect()
    };
    let (a, b) = (centred_norms(&x, p1), centred_norms(&y, p2));
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(s, t)| s * t).sum::<f64>();
    let got = centred_row_norms(&stats(&x, &y, p1, p2));
    for (k, g, w) in [
        ("aa", got.aa, dot(&a, &a)),
        ("ab", got.ab, dot(&a, &b)),
        ("bb", got.bb, dot(&b, &b)),
    ] {
        assert!((g - w).abs() <= 1e-10 * w.abs(), "{k}: {g} vs {w}");
    }
}

#[test]
fn cka_from_moments_equals_direct_kernel_computation() {
    let mut rng = SplitMix64::new(31);
    for (n, p1, p2, offset) in [(40, 5, 8, 0.0), (25, 12, 3, 3.0), (60, 2, 2, -1.0)] {
        let x = randn(&mut rng, n, p1, offset);
        let mut y = randn(&mut rng, n, p2, 1.0);
        for i in 0..n {
            y[i * p2] += x[i * p1];
        }
        let m = compute(&stats(&x, &y, p1, p2), &[Measure::Cka]).unwrap();
        let biased = direct_kernel_cka(&x, &y, n, p1, p2, false);
        let debiased = direct_kernel_cka(&x, &y, n, p1, p2, true);
        close(m.cka_linear, biased, SAME_TOL, "biased vs direct");
        close(
            m.cka_linear_debiased,
            debiased,
            SAME_TOL,
            "debiased vs direct",
        );
        assert!(debiased < biased, "{debiased} >= {biased}");
    }
}

// ---------------------------------------------------------------------------------------------
// Flattened view

#[test]
fn flattened_view_equals_direct_computation() {
    let mut rng = SplitMix64::new(11);
    // Images of net A: 3 channels x 4 x 4; net B: 2 channels x 3 x 3.
    let (n, c1, hw1, c2, hw2) = (37, 3, 16, 2, 9);
    let (f1, f2) = (c1 * hw1, c2 * hw2);
    let x: Vec<f64> = randn(&mut rng, n, f1, 0.0)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let mut y: Vec<f64> = randn(&mut rng, n, f2, 0.3);
    for i in 0..n {
        for j in 0..f2 {
            y[i * f2 + j] += x[i * f1 + j];
        }
    }
    let biased = direct_kernel_cka(&x, &y, n, f1, f2, false);
    let debiased = direct_kernel_cka(&x, &y, n, f1, f2, true);
    assert!(biased > 0.3 && debiased > 0.1, "{biased} {debiased}");

    // Image blocks, then a merge of a second accumulator.
    let mut acc = FlattenedGramAccumulator::new(f1, f2);
    let mut other = FlattenedGramAccumulator::new(f1, f2);
    let split = 25;
    for (s, e) in [(0, 1), (1, 9), (9, split)] {
        acc.push_images(&x[s * f1..e * f1], &y[s * f2..e * f2])
            .unwrap();
    }
    other
        .push_images(&x[split * f1..], &y[split * f2..])
        .unwrap();
    acc.merge(&other).unwrap();
    assert_eq!(acc.images(), n);
    let k_rows = acc.finish();

    // Column blocks: one channel at a time (rows = images, columns = that channel's positions).
    let mut cols = FlattenedColumnAccumulator::new(n);
    let channel = |m: &[f64], f: usize, hw: usize, c: usize| -> Vec<f64> {
        (0..n)
            .flat_map(|i| m[i * f + c * hw..i * f + (c + 1) * hw].to_vec())
            .collect()
    };
    for c in 0..c1 {
        cols.push_a(&channel(&x, f1, hw1, c)).unwrap();
    }
    for c in 0..c2 {
        cols.push_b(&channel(&y, f2, hw2, c)).unwrap();
    }
    let k_cols = cols.finish();

    // Feature-space statistics of the flattened features (small here, so affordable).
    let feature = compute(&stats(&x, &y, f1, f2), &[Measure::Cka]).unwrap();

    for (what, k) in [("image blocks", &k_rows), ("column blocks", &k_cols)] {
        assert_eq!(k.images(), n);
        let m = k.measures();
        close(m.cka_linear, biased, SAME_TOL, what);
        close(m.cka_linear_debiased, debiased, SAME_TOL, what);
        close(feature.cka_linear, biased, SAME_TOL, "feature space");
        close(
            feature.cka_linear_debiased,
            debiased,
            SAME_TOL,
            "feature space",
        );
        assert!(m.notes.is_empty());
    }

    // From full kernels.
    let full = |m: &[f64], f: usize| -> Vec<f64> {
        (0..n * n)
            .map(|t| {
                let (i, j) = (t / n, t % n);
                (0..f).map(|c| m[i * f + c] * m[j * f + c]).sum()
            })
            .collect()
    };
    let k_full = FlattenedKernels::from_full(n, &full(&x, f1), &full(&y, f2)).unwrap();
    close(k_full.cka_linear(), biased, SAME_TOL, "from_full");
    close(
        k_full.cka_linear_debiased(),
        debiased,
        SAME_TOL,
        "from_full",
    );
}

#[test]
fn flattened_degenerate_inputs() {
    // A dead layer, and too few images for the debiased estimator.
    let mut acc = FlattenedGramAccumulator::new(3, 2);
    acc.push_images(&[0.0; 9], &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0])
        .unwrap();
    let m = acc.finish().measures();
    assert!(m.cka_linear.is_none() && m.cka_linear_debiased.is_none());
    assert_eq!(m.notes.len(), 2);
    let mut acc = FlattenedGramAccumulator::new(1, 1);
    acc.push_images(&[1.0, 2.0, 4.0], &[1.0, 3.0, 2.0]).unwrap();
    let m = acc.finish().measures();
    assert!(m.cka_linear.unwrap().is_finite());
    assert!(m.cka_linear_debiased.is_none());
    // No images at all.
    assert!(FlattenedGramAccumulator::new(2, 2)
        .finish()
        .cka_linear()
        .is_none());
    // Shape errors.
    let mut acc = FlattenedGramAccumulator::new(3, 2);
    assert!(matches!(
        acc.push_images(&[0.0; 4], &[0.0; 2]),
        Err(CoreError::BlockShape { .. })
    ));
    assert!(matches!(
        acc.push_images(&[0.0; 6], &[0.0; 2]),
        Err(CoreError::RowMismatch { .. })
    ));
    let mut cols = FlattenedColumnAccumulator::new(4);
    assert!(cols.push_a(&[0.0; 6]).is_err());
    assert!(cols.merge(&FlattenedColumnAccumulator::new(5)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Degenerate inputs

#[test]
fn rank_deficient_inputs_give_finite_numbers() {
    let mut rng = SplitMix64::new(3);
    let n = 50;
    // X: 6 columns, column 4 duplicating column 1 and column 5 dead (all zero): rank 4.
    let base = randn(&mut rng, n, 4, 1.0);
    let x: Vec<f64> = (0..n)
        .flat_map(|i| {
            let r = &base[i * 4..(i + 1) * 4];
            vec![r[0], r[1], r[2], r[3], r[1], 0.0]
        })
        .collect();
    let y = randn(&mut rng, n, 5, 0.0);
    let m = compute(&stats(&x, &y, 6, 5), &ALL).unwrap();
    assert_all_finite(&m);
    assert_eq!(m.cca_rank, Some([4, 5]));
    assert_eq!(m.cca_rho.as_ref().unwrap().len(), 4);
    assert!(
        m.notes.iter().any(|s| s.contains("rank 4 of 6")),
        "{:?}",
        m.notes
    );
    for (k, v) in numbers(&m) {
        if k != "cka_linear_debiased" && !k.starts_with("procrustes") {
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
    }

    // The duplicate column and the dead neuron change no CCA number compared with the 4 columns.
    let reduced = compute(&stats(&base, &y, 4, 5), &[Measure::Cca, Measure::Svcca]).unwrap();
    close(
        m.cca_mean_rho,
        reduced.cca_mean_rho.unwrap(),
        1e-8,
        "mean rho",
    );
    close(m.cca_r2, reduced.cca_r2.unwrap(), 1e-8, "r2");

    // More features than rows: 8 rows, 12 and 10 neurons. The centred data spans the same
    // 7-dimensional space on both sides, so every canonical correlation is 1.
    let x = randn(&mut rng, 8, 12, 0.0);
    let y = randn(&mut rng, 8, 10, 2.0);
    let m = compute(&stats(&x, &y, 12, 10), &ALL).unwrap();
    assert_all_finite(&m);
    assert_eq!(m.cca_rank, Some([7, 7]));
    close(m.cca_mean_rho, 1.0, CLOSED_FORM_TOL, "wide mean rho");
    assert!(m.cka_linear.unwrap() > 0.0 && m.cka_linear.unwrap() < 1.0);
    assert!(m.notes.iter().any(|s| s.contains("rank 7 of 12")));
}

#[test]
fn dead_layers_and_tiny_samples_are_undefined_not_nan() {
    let mut rng = SplitMix64::new(8);
    let n = 20;
    let x = vec![0.0; n * 3];
    let y = randn(&mut rng, n, 4, 0.0);
    let m = compute(&stats(&x, &y, 3, 4), &ALL).unwrap();
    assert_all_finite(&m);
    assert!(numbers(&m).is_empty(), "{m:?}");
    assert!(m
        .notes
        .iter()
        .any(|s| s.contains("layer A has no variance")));

    // A constant (but nonzero) layer: centred measures undefined, the uncentred R² defined.
    let x = vec![2.0; n * 3];
    let m = compute(&stats(&x, &y, 3, 4), &ALL).unwrap();
    assert!(m.cka_linear.is_none() && m.cca_r2.is_none() && m.procrustes.is_none());
    assert!(m.cca_r2_uncentred.unwrap().is_finite());

    // Three rows: biased CKA defined, debiased not.
    let x = randn(&mut rng, 3, 2, 0.0);
    let y = randn(&mut rng, 3, 2, 0.0);
    let m = compute(&stats(&x, &y, 2, 2), &ALL).unwrap();
    assert_all_finite(&m);
    assert!(m.cka_linear.is_some() && m.cka_linear_debiased.is_none());

    // One row: nothing is defined, nothing fails.
    let m = compute(&stats(&[1.0, 2.0], &[3.0], 2, 1), &ALL).unwrap();
    assert_all_finite(&m);
    assert!(m.cka_linear.is_none());
}

#[test]
fn errors_and_names() {
    let empty = GramAccumulator::new(2, 3).finish();
    assert_eq!(compute(&empty, &ALL).unwrap_err(), CoreError::NoRows);
    let nothing = compute(&stats(&[1.0, 2.0], &[3.0, 1.0], 1, 1), &[]).unwrap();
    assert_eq!(nothing, Measures::default());

    for (s, m) in [
        ("cka", Measure::Cka),
        ("CCA", Measure::Cca),
        (" svcca ", Measure::Svcca),
        ("pwcca", Measure::Pwcca),
        ("Procrustes", Measure::Procrustes),
    ] {
        assert_eq!(s.parse::<Measure>().unwrap(), m);
        assert_eq!(m.to_string().parse::<Measure>().unwrap(), m);
    }
    let err = "match".parse::<Measure>().unwrap_err().to_string();
    assert!(
        err.contains("'match'") && err.contains("cka, cca, svcca, pwcca, procrustes"),
        "{err}"
    );
}

#[test]
fn extreme_scales_give_the_same_numbers() {
    // Activations of 1e75 (squared row norms near 1e302) and of 1e-60: every measure is scale
    // invariant, so the numbers must not change (and must not overflow or underflow to NaN).
    let mut rng = SplitMix64::new(12);
    let (n, p) = (50, 10);
    let x = randn(&mut rng, n, p, 0.3);
    let mut y = randn(&mut rng, n, p, 0.0);
    for i in 0..n * p {
        y[i] += 0.5 * x[i];
    }
    let base = compute(&stats(&x, &y, p, p), &ALL).unwrap();
    for scale in [1e75, 1e-60] {
        let xs: Vec<f64> = x.iter().map(|v| v * scale).collect();
        let ys: Vec<f64> = y.iter().map(|v| v * scale).collect();
        let m = compute(&stats(&xs, &ys, p, p), &ALL).unwrap();
        assert_same(&base, &m, 1e-8);
    }
}

#[test]
fn self_pair_statistics_give_identity_values() {
    let (x, y, _, p) = demo();
    let s = stats(&x, &y, p, p);
    for side in [Side::A, Side::B] {
        let m = compute(&s.self_pair(side), &ALL).unwrap();
        for (k, v) in numbers(&m) {
            let want = if k.starts_with("procrustes") {
                0.0
            } else {
                1.0
            };
            close(
                Some(v),
                want,
                CLOSED_FORM_TOL,
                &format!("self pair {side:?}: {k}"),
            );
        }
        assert_eq!(m.svcca_dims, Some([10, 10]));
    }
}
