//! Linear predictivity: the R² of a ridge regression from one layer to the other, on the rows the
//! statistics were accumulated over (training data: there is no held-out set).

use super::{Factors, Measures, Parts};

/// `R²(X → Y) = 1 − ‖Ỹ − X̃β‖²_F / ‖Ỹ‖²_F` with `β = (Cxx + a I)⁺ Cxy` restricted to the
/// numerical column space of X̃ (the `k` leading eigenvectors of `Cxx`):
///
/// `R² = Σ_{i<k} ‖b_i‖² (λ_i + 2a) / (λ_i + a)² / tr Cyy`, `b_i = v_iᵀ Cxy` (row i of
/// `B = Vxᵀ Cxy Vy`, whose row norms are those of `Vxᵀ Cxy`), `a = alpha · mean(λ)`.
fn r2(values: &[f64], rank: usize, norms2: &[f64], alpha: f64, target_trace: f64) -> Option<f64> {
    let mean = values.iter().map(|v| v.max(0.0)).sum::<f64>() / values.len().max(1) as f64;
    let a = alpha * mean;
    let explained: f64 = (0..rank)
        .map(|i| {
            let l = values[i];
            norms2[i] * (l + 2.0 * a) / ((l + a) * (l + a))
        })
        .sum();
    let v = explained / target_trace;
    v.is_finite().then(|| v.clamp(0.0, 1.0))
}

/// Fills `predictivity_ab` (A predicts B) and `predictivity_ba` (both sides known to have
/// variance).
pub(super) fn fill(parts: &Parts, f: &Factors, alpha: f64, out: &mut Measures) {
    let (n1, n2) = (parts.n1, parts.n2);
    let rows2: Vec<f64> = (0..n1)
        .map(|i| (0..n2).map(|j| f.b[(i, j)] * f.b[(i, j)]).sum())
        .collect();
    let cols2: Vec<f64> = (0..n2)
        .map(|j| f.b.col(j).iter().map(|v| v * v).sum())
        .collect();
    out.predictivity_ab = r2(&f.ex.values, f.ex.rank, &rows2, alpha, parts.trace_b());
    out.predictivity_ba = r2(&f.ey.values, f.ey.rank, &cols2, alpha, parts.trace_a());
    out.predictivity_alpha = Some(alpha);
    if out.predictivity_ab.is_none() || out.predictivity_ba.is_none() {
        out.notes
            .push("predictivity: undefined, not finite (overflow in the statistics)".to_string());
    }
}
