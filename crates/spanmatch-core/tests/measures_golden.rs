//! The neuron-level measures (and orthogonal Procrustes) against golden values computed by the
//! reference implementations (netrep, ReSi's repsim, POT, scikit-learn) on activations of two small
//! CNNs trained on Fashion-MNIST: a dense layer pair, a convolutional pair pooled over positions
//! and a pair of unequal widths (8 and 40). Fixtures and the scripts that made them:
//! `tests/fixtures/golden/`.

#[path = "common/npy.rs"]
mod npy;

use serde_json::Value;
use spanmatch_core::measures::{compute_with, Measure, MeasureOptions, Measures};
use spanmatch_core::JointStats;
use std::path::{Path, PathBuf};

/// Required agreement with the reference implementations.
const GOLDEN_TOL: f64 = 1e-6;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(dir().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stats_of(pair: &Value) -> JointStats {
    let (x, rows, n1) = npy::read_npy(&dir().join(pair["a"].as_str().unwrap()));
    let (y, rows_b, n2) = npy::read_npy(&dir().join(pair["b"].as_str().unwrap()));
    assert_eq!(rows, rows_b);
    JointStats::from_matrices(&x, &y, n1, n2).unwrap()
}

fn measures(st: &JointStats, options: MeasureOptions) -> Measures {
    compute_with(st, &Measure::ALL, &options).unwrap()
}

fn check(name: &str, what: &str, got: Option<f64>, want: &Value, worst: &mut f64) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{name}.{what}: no golden value"));
    let got = got.unwrap_or_else(|| panic!("{name}.{what}: not computed"));
    let d = (got - want).abs();
    *worst = worst.max(d);
    assert!(
        d <= GOLDEN_TOL,
        "{name}.{what}: {got} vs golden {want} ({d:e})"
    );
}

#[test]
fn neuron_measures_match_the_reference_implementations() {
    let g = golden();
    let ridge = g["ridge_alpha"].as_f64().unwrap();
    let mut worst = 0.0f64;
    let pairs = g["pairs"].as_object().unwrap();
    assert_eq!(pairs.len(), 3);
    for (name, p) in pairs {
        let st = stats_of(p);
        let m = measures(&st, MeasureOptions::default());
        for (what, got) in [
            ("one_to_one", m.one_to_one),
            ("semi_match", m.semi_match),
            ("soft_match", m.soft_match),
            ("perm_procrustes", m.perm_procrustes),
            ("perm_procrustes_angular", m.perm_procrustes_angular),
            ("procrustes", m.procrustes),
            ("predictivity_ab", m.predictivity_ab),
            ("predictivity_ba", m.predictivity_ba),
        ] {
            check(name, what, got, &p[what], &mut worst);
        }
        // The soft-matching correlation is 1 − d²/2.
        let (d, c) = (m.soft_match.unwrap(), m.soft_match_correlation.unwrap());
        assert!((c - (1.0 - d * d / 2.0)).abs() < 1e-12);
        // The live neurons and the one-to-one pairs (scipy's assignment; no ties here).
        let nm = m.neurons.as_ref().unwrap();
        let live = [st.n1 - nm.constant_a.len(), st.n2 - nm.constant_b.len()];
        assert_eq!(serde_json::json!(live), p["live"], "{name}: live neurons");
        let pairs: Vec<[usize; 2]> = nm
            .one_to_one
            .as_ref()
            .unwrap()
            .iter()
            .map(|q| [q.a, q.b])
            .collect();
        let mut want: Vec<[usize; 2]> = p["one_to_one_pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                [
                    q[0].as_u64().unwrap() as usize,
                    q[1].as_u64().unwrap() as usize,
                ]
            })
            .collect();
        want.sort_unstable();
        assert_eq!(pairs, want, "{name}: one-to-one pairs");
        // Ridge predictivity.
        let r = measures(
            &st,
            MeasureOptions {
                ridge_alpha: ridge,
                ..MeasureOptions::default()
            },
        );
        check(
            name,
            "ridge A→B",
            r.predictivity_ab,
            &p["predictivity_ab_ridge"],
            &mut worst,
        );
        check(
            name,
            "ridge B→A",
            r.predictivity_ba,
            &p["predictivity_ba_ridge"],
            &mut worst,
        );
        // Shape metric at several α.
        for (alpha, want) in p["shape"].as_object().unwrap() {
            let a: f64 = alpha.parse().unwrap();
            let s = measures(
                &st,
                MeasureOptions {
                    shape_alpha: a,
                    ..MeasureOptions::default()
                },
            );
            check(name, &format!("shape({a})"), s.shape, want, &mut worst);
            assert_eq!(s.shape_alpha, Some(a));
        }
    }
    eprintln!("largest deviation from the golden values: {worst:e}");
}
