//! Linear CKA (biased and debiased) with centred features, from the joint statistics.

use super::{frob2_scaled, Measures, Parts, DEBIASED_MIN_ROWS};
use crate::JointStats;
use std::ops::Range;

/// Fourth-order row moments of the column-centred data: with `x̃_i = x_i − x̄` and `ỹ_i = y_i − ȳ`
/// the centred rows of X and Y, `aa = Σ_i ‖x̃_i‖⁴`, `ab = Σ_i ‖x̃_i‖² ‖ỹ_i‖²`, `bb = Σ_i ‖ỹ_i‖⁴`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CentredRowNorms {
    /// `Σ_i ‖x̃_i‖⁴`.
    pub aa: f64,
    /// `Σ_i ‖x̃_i‖² ‖ỹ_i‖²`.
    pub ab: f64,
    /// `Σ_i ‖ỹ_i‖⁴`.
    pub bb: f64,
}

/// The centred fourth-order row moments, derived exactly from the uncentred moments, the column
/// sums and the Gram matrix of `stats` (no second pass over the rows). Zero when there are no rows.
///
/// Cancellation grows with the ratio of the column means to the column spread: the relative error
/// is about `f64::EPSILON · (1 + ‖mean‖² / mean squared deviation)²`.
pub fn centred_row_norms(stats: &JointStats) -> CentredRowNorms {
    if stats.rows == 0 {
        return CentredRowNorms::default();
    }
    let (n1, n2) = (stats.n1, stats.n2);
    let a = 0..n1;
    let b = n1..n1 + n2;
    let m = &stats.moments;
    let (wa, wb) = (&m.weighted_by_a[..], &m.weighted_by_b[..]);
    CentredRowNorms {
        aa: centred_product(stats, a.clone(), a.clone(), m.aa, wa, wa),
        ab: centred_product(stats, a.clone(), b.clone(), m.ab, wa, wb),
        bb: centred_product(stats, b.clone(), b, m.bb, wb, wb),
    }
}

/// `Σ_i ‖p̃_i‖² ‖q̃_i‖²` for the column blocks `p`, `q` of `[X | Y]`, given `cd = Σ_i c_i d_i`
/// (`c_i = ‖p_i‖²`, `d_i = ‖q_i‖²`), `w_p = Σ_i c_i m_i` and `w_q = Σ_i d_i m_i`.
///
/// With `μ` the column means, `α = ‖μ_p‖²`, `β = ‖μ_q‖²` and `‖p̃_i‖² = c_i − 2μ_pᵀp_i + α`:
/// `Σ (c_i − 2μ_pᵀp_i + α)(d_i − 2μ_qᵀq_i + β)
///  = cd − 2μ_qᵀ w_p[q] − 2μ_pᵀ w_q[p] + β tr G_pp + α tr G_qq + 4 μ_pᵀ G_pq μ_q − 3Nαβ`,
/// using `Σ_i p_i = N μ_p`.
fn centred_product(
    stats: &JointStats,
    p: Range<usize>,
    q: Range<usize>,
    cd: f64,
    w_p: &[f64],
    w_q: &[f64],
) -> f64 {
    let n = stats.rows as f64;
    let mu = |i: usize| stats.sums[i] / n;
    let g = &stats.gram;
    let alpha: f64 = p.clone().map(|i| mu(i) * mu(i)).sum();
    let beta: f64 = q.clone().map(|i| mu(i) * mu(i)).sum();
    let tr_p: f64 = p.clone().map(|i| g[(i, i)]).sum();
    let tr_q: f64 = q.clone().map(|i| g[(i, i)]).sum();
    let mq_wp: f64 = q.clone().map(|i| mu(i) * w_p[i]).sum();
    let mp_wq: f64 = p.clone().map(|i| mu(i) * w_q[i]).sum();
    // Σ_i Σ_j μ_i g_ij μ_j, column by column (the Gram matrix is column-major).
    let mu_p: Vec<f64> = p.clone().map(mu).collect();
    let quad: f64 = q
        .clone()
        .map(|j| {
            let col = &g
                .col(j)
                .try_as_col_major()
                .expect("column-major")
                .as_slice()[p.clone()];
            let dot: f64 = col.iter().zip(&mu_p).map(|(x, m)| x * m).sum();
            dot * mu(j)
        })
        .sum();
    cd - 2.0 * mq_wp - 2.0 * mp_wq + beta * tr_p + alpha * tr_q + 4.0 * quad
        - 3.0 * n * alpha * beta
}

/// The bracket of the unbiased HSIC estimator (Song et al. 2012) for linear kernels of centred
/// features, `n(n−3)·HSIC₁`:
/// `‖X̃ᵀỸ‖²_F − n/(n−2) Σ_i ‖x̃_i‖²‖ỹ_i‖² + ‖X̃‖²_F ‖Ỹ‖²_F / ((n−1)(n−2))`.
pub(crate) fn unbiased_hsic(n: f64, cross_f2: f64, row_products: f64, tr_x: f64, tr_y: f64) -> f64 {
    cross_f2 - n / (n - 2.0) * row_products + tr_x * tr_y / ((n - 1.0) * (n - 2.0))
}

/// Fills `cka_linear` and `cka_linear_debiased` (both sides known to have variance).
///
/// Every term is divided by `tr(X̃ᵀX̃)` or `tr(ỸᵀỸ)` (CKA is scale-invariant) so that no
/// intermediate overflows for large activations.
pub(super) fn fill(stats: &JointStats, parts: &Parts, out: &mut Measures) {
    let (tx, ty) = (parts.trace_a(), parts.trace_b());
    let hxy = frob2_scaled(&parts.cxy, 1.0 / (tx.sqrt() * ty.sqrt()));
    let hxx = frob2_scaled(&parts.cxx, 1.0 / tx);
    let hyy = frob2_scaled(&parts.cyy, 1.0 / ty);
    let biased = hxy / (hxx.sqrt() * hyy.sqrt());
    if biased.is_finite() {
        out.cka_linear = Some(biased.clamp(0.0, 1.0));
    }

    if stats.rows < DEBIASED_MIN_ROWS {
        out.notes.push(format!(
            "cka_linear_debiased: undefined with {} rows (needs at least {DEBIASED_MIN_ROWS})",
            stats.rows
        ));
        return;
    }
    let n = stats.rows as f64;
    let r = centred_row_norms(stats);
    let uxy = unbiased_hsic(n, hxy, r.ab / tx / ty, 1.0, 1.0);
    let uxx = unbiased_hsic(n, hxx, r.aa / tx / tx, 1.0, 1.0);
    let uyy = unbiased_hsic(n, hyy, r.bb / ty / ty, 1.0, 1.0);
    match debiased_ratio(uxy, uxx, uyy) {
        Some(v) => out.cka_linear_debiased = Some(v),
        None => out.notes.push(
            "cka_linear_debiased: undefined, the unbiased HSIC estimate of a layer with itself is \
             not positive (too few rows for this layer)"
                .to_string(),
        ),
    }
}

/// `uxy / sqrt(uxx · uyy)` when both self terms are positive and the result is finite.
pub(crate) fn debiased_ratio(uxy: f64, uxx: f64, uyy: f64) -> Option<f64> {
    if uxx > 0.0 && uyy > 0.0 {
        let v = uxy / (uxx.sqrt() * uyy.sqrt());
        v.is_finite().then_some(v)
    } else {
        None
    }
}
