//! The measures that existed before the shared factorisations (CKA, CCA family, Procrustes) give
//! the values recorded by the pre-refactor implementation (general SVDs, separate
//! eigendecompositions of the uncentred Gram blocks), to 1e-10.

#[path = "common/regression_cases.rs"]
mod cases;
#[path = "common/npy.rs"]
mod npy;

use serde_json::Value;
use spanmatch_core::measures::{compute, Measure};
use spanmatch_core::JointStats;
use std::path::Path;

const TOL: f64 = 1e-10;

#[test]
fn basis_invariant_measures_equal_the_pre_refactor_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join("measures_before_refactor.json")).unwrap();
    let before: Value = serde_json::from_str(&text).unwrap();
    let (x, _, n1) = npy::read_npy(&dir.join("cka_demo_x.npy"));
    let (y, _, n2) = npy::read_npy(&dir.join("cka_demo_y.npy"));
    let mut all = vec![("cka_demo", x, y, n1, n2)];
    for c in cases::cases() {
        all.push((c.name, c.x, c.y, c.n1, c.n2));
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, x, y, n1, n2) in all {
        let st = JointStats::from_matrices(&x, &y, n1, n2).unwrap();
        let now = serde_json::to_value(compute(&st, &Measure::BASIS_INVARIANT).unwrap()).unwrap();
        let then = &before[name];
        let obj = then.as_object().unwrap_or_else(|| panic!("{name} missing"));
        // Canonical correlations tied at 1 (fewer rows than n1 + n2) leave the canonical
        // variates of the tied group undetermined up to a rotation, and PWCCA's weights (sums of
        // absolute projections) depend on that choice: there PWCCA is only checked to be a
        // weighted mean of the correlations.
        let rho: Vec<f64> = now["cca_rho"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect())
            .unwrap_or_default();
        let tied = rho.iter().filter(|&&r| r > 1.0 - 1e-9).count() > 1;
        for (key, want) in obj {
            if key == "notes" {
                continue;
            }
            if key == "pwcca" && tied {
                let p = now[key].as_f64().unwrap();
                let lo = rho.iter().copied().fold(1.0, f64::min);
                assert!(
                    p >= lo - TOL && p <= 1.0 + TOL,
                    "{name}: pwcca {p} outside [{lo}, 1]"
                );
                continue;
            }
            let got = &now[key];
            let (w, g): (Vec<f64>, Vec<f64>) = match want {
                Value::Array(a) => (
                    a.iter().map(|v| v.as_f64().unwrap()).collect(),
                    got.as_array()
                        .unwrap_or_else(|| panic!("{name}.{key}: missing now"))
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect(),
                ),
                v => (
                    vec![v.as_f64().unwrap()],
                    vec![got
                        .as_f64()
                        .unwrap_or_else(|| panic!("{name}.{key}: missing now"))],
                ),
            };
            assert_eq!(w.len(), g.len(), "{name}.{key}");
            for (a, b) in w.iter().zip(&g) {
                if (a - b).abs() > TOL {
                    failures.push(format!("{name}.{key}: before {a}, now {b}"));
                }
                checked += 1;
            }
        }
        // Nothing that was defined before is undefined now, and vice versa.
        for key in now.as_object().unwrap().keys() {
            assert!(obj.contains_key(key), "{name}.{key}: new field");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked > 100, "{checked}");
}
