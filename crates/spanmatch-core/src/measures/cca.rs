//! The CCA family (CCA, SVCCA, PWCCA, and the uncentred R²_CCA) from the shared factors.
//!
//! With `Cxx = Vx Λx Vxᵀ`, `Cyy = Vy Λy Vyᵀ` and `B = Vxᵀ Cxy Vy` (all in [`Factors`]), the
//! canonical correlations are the singular values of `M = Λx_k^{-1/2} B_kl Λy_l^{-1/2}` (the
//! leading `k x l` block of B, k and l the numerical ranks); SVCCA's matrix is the leading block
//! of M; PWCCA's canonical variates come from the eigenvectors of `M Mᵀ` (or `Mᵀ M`).

use super::linalg::{left_singular, singular_values, Backend, Eigen};
use super::{Factors, Measures, Parts, CCA_RANK_TOL, SVCCA_KEEP_VARIANCE};
use crate::JointStats;
use faer::Mat;

const SOLVER_FAILED: &str = "the eigen/singular value solver did not converge";

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn mean_sq(v: &[f64]) -> f64 {
    v.iter().map(|r| r * r).sum::<f64>() / v.len() as f64
}

/// Notes for rank truncation (`what` names the measure).
pub(super) fn rank_notes(what: &str, ranks: [(usize, usize); 2], out: &mut Measures) {
    for (side, (rank, width)) in ['A', 'B'].into_iter().zip(ranks) {
        if rank < width {
            out.notes.push(format!(
                "{what}: layer {side} has numerical rank {rank} of {width} (covariance eigenvalues \
                 at or below CCA_RANK_TOL = {CCA_RANK_TOL:e} times the largest were dropped)"
            ));
        }
    }
}

/// SVCCA's number of kept leading directions: the smallest k whose eigenvalues reach
/// [`SVCCA_KEEP_VARIANCE`] of the total, never beyond the numerical rank.
fn svcca_keep(e: &Eigen) -> usize {
    let total: f64 = e.values.iter().map(|v| v.max(0.0)).sum();
    let mut cum = 0.0;
    let mut k = 0;
    for v in &e.values {
        if cum >= SVCCA_KEEP_VARIANCE * total {
            break;
        }
        cum += v.max(0.0);
        k += 1;
    }
    k.min(e.rank)
}

/// The CCA matrix `M = Λx_k^{-1/2} B_kl Λy_l^{-1/2}` (k x l, the numerical ranks).
pub(super) fn cca_matrix(f: &Factors) -> Mat<f64> {
    let (kx, ky) = (f.ex.rank, f.ey.rank);
    let sx: Vec<f64> = f.ex.values[..kx].iter().map(|v| 1.0 / v.sqrt()).collect();
    let sy: Vec<f64> = f.ey.values[..ky].iter().map(|v| 1.0 / v.sqrt()).collect();
    Mat::from_fn(kx, ky, |i, j| f.b[(i, j)] * sx[i] * sy[j])
}

/// Notes the rank truncation of the CCA family (`cca`, `pwcca`, `svcca`: which are requested);
/// false (with a note) when a side has numerical rank 0 and nothing can be computed.
pub(super) fn check_ranks(
    parts: &Parts,
    f: &Factors,
    (cca, pwcca, svcca): (bool, bool, bool),
    out: &mut Measures,
) -> bool {
    let (kx, ky) = (f.ex.rank, f.ey.rank);
    let what: Vec<&str> = [(cca, "cca"), (pwcca, "pwcca"), (svcca, "svcca")]
        .into_iter()
        .filter_map(|(w, name)| w.then_some(name))
        .collect();
    rank_notes(&what.join("/"), [(kx, parts.n1), (ky, parts.n2)], out);
    if kx == 0 || ky == 0 {
        out.notes.push(format!(
            "{}: undefined, a layer has numerical rank 0",
            what.join("/")
        ));
        return false;
    }
    true
}

fn clamp(s: &mut [f64]) {
    s.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
}

/// Fills the centred CCA fields (`cca`) and/or `pwcca` (both sides of positive rank). Returns
/// the canonical correlations (for the uncentred R² and the shape metric at α = 0).
pub(super) fn fill_cca_pwcca(
    parts: &Parts,
    f: &Factors,
    m: &Mat<f64>,
    (cca, pwcca): (bool, bool),
    out: &mut Measures,
) -> Option<Vec<f64>> {
    // PWCCA weighs the canonical variates of the side with fewer neurons (A on a tie).
    let side_a = parts.n1 <= parts.n2;
    let fit = if pwcca {
        let fitted = if side_a {
            left_singular(m.as_ref(), parts.backend)
        } else {
            left_singular(m.transpose(), parts.backend)
        };
        fitted.map(|(rho, u)| (rho, Some(u)))
    } else {
        singular_values(m.as_ref(), parts.backend).map(|rho| (rho, None))
    };
    let Some((mut rho, u)) = fit else {
        out.notes
            .push(format!("cca/pwcca: undefined, {SOLVER_FAILED}"));
        return None;
    };
    clamp(&mut rho);
    if let Some(u) = u {
        // ⟨h_i, z̃_j⟩ = (u_iᵀ Λ_k^{1/2} V_kᵀ)_j for the canonical variate h_i = Z̃ V_k Λ_k^{-1/2} u_i
        // of side Z.
        let e = if side_a { &f.ex } else { &f.ey };
        let k = e.rank;
        let scaled = Mat::from_fn(u.ncols(), k, |i, r| u[(r, i)] * e.values[r].sqrt());
        let proj = crate::dense::product(
            scaled.as_ref(),
            e.vectors.get(.., ..k).transpose(),
            parts.backend,
        );
        fill_pwcca(&proj, &rho, out);
    }
    if cca {
        out.cca_mean_rho = Some(mean(&rho));
        out.cca_r2 = Some(mean_sq(&rho));
        out.cca_rank = Some([f.ex.rank, f.ey.rank]);
        out.cca_rho = Some(rho.clone());
    }
    Some(rho)
}

/// Fills `svcca` and `svcca_dims` (both sides of positive rank): the canonical correlations of
/// the leading principal directions, i.e. of the leading block of M.
pub(super) fn fill_svcca(f: &Factors, m: &Mat<f64>, backend: Backend, out: &mut Measures) {
    let (k, l) = (svcca_keep(&f.ex), svcca_keep(&f.ey));
    match singular_values(m.get(..k, ..l), backend) {
        Some(mut rho) if !rho.is_empty() => {
            clamp(&mut rho);
            out.svcca = Some(mean(&rho));
            out.svcca_dims = Some([k, l]);
        }
        Some(_) => out
            .notes
            .push("svcca: undefined, no principal direction kept".to_string()),
        None => out.notes.push(format!("svcca: undefined, {SOLVER_FAILED}")),
    }
}

/// PWCCA from the projections `proj[i][j] = ⟨h_i, z_j⟩` of the canonical variates on the neurons.
fn fill_pwcca(proj: &Mat<f64>, rho: &[f64], out: &mut Measures) {
    let alpha: Vec<f64> = (0..proj.nrows())
        .map(|i| proj.row(i).iter().map(|v| v.abs()).sum())
        .collect();
    let total: f64 = alpha.iter().sum();
    let value = alpha.iter().zip(rho).map(|(a, r)| a * r).sum::<f64>() / total;
    if total > 0.0 && value.is_finite() {
        out.pwcca = Some(value.clamp(0.0, 1.0));
    } else {
        out.notes
            .push("pwcca: undefined, all projection weights are zero".to_string());
    }
}

/// One side of the uncentred analysis: the column space of the uncentred data X = X̃ + 1 μᵀ lies
/// in span(Q̃, e) (Q̃ an orthonormal basis of the centred columns, e = 1/√d); in those
/// coordinates X = [Q̃ e] T with T = [Λ^{1/2} V_kᵀ; √d μᵀ]. Its column space is all of the k + 1
/// coordinates unless the mean lies in the centred column space (then it is the complement of
/// the unit vector `null`).
struct UncentredSide {
    rank: usize,
    /// Unit vector (length k + 1) orthogonal to the column space, when the rank is k.
    null: Option<Vec<f64>>,
}

fn uncentred_side(e: Option<&Eigen>, sums: &[f64], rows: f64) -> UncentredSide {
    let mu: Vec<f64> = sums.iter().map(|s| s / rows).collect();
    let mu2: f64 = mu.iter().map(|m| m * m).sum();
    let (k, lmax) = e.map_or((0, 0.0), |e| (e.rank, e.values[0].max(0.0)));
    // c = V_kᵀ μ and μ_⊥ = μ − V_k c.
    let c: Vec<f64> = (0..k)
        .map(|j| {
            let v = e.map(|e| e.vectors.col(j));
            v.map_or(0.0, |v| v.iter().zip(&mu).map(|(a, b)| a * b).sum())
        })
        .collect();
    let mut perp = mu.clone();
    if let Some(e) = e {
        for (j, cj) in c.iter().enumerate() {
            for (p, v) in perp.iter_mut().zip(e.vectors.col(j).iter()) {
                *p -= cj * v;
            }
        }
    }
    let perp2: f64 = perp.iter().map(|p| p * p).sum();
    if rows * perp2 > CCA_RANK_TOL * (lmax + rows * mu2) {
        return UncentredSide {
            rank: k + 1,
            null: None,
        };
    }
    if k == 0 {
        return UncentredSide {
            rank: 0,
            null: None,
        };
    }
    let e = e.expect("k > 0 implies an eigendecomposition");
    let mut z: Vec<f64> = (0..k)
        .map(|j| -rows.sqrt() * c[j] / e.values[j].sqrt())
        .collect();
    z.push(1.0);
    let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
    z.iter_mut().for_each(|v| *v /= norm);
    UncentredSide {
        rank: k,
        null: Some(z),
    }
}

/// Fills `cca_r2_uncentred`, `R²_CCA = tr(P_X P_Y) / min(rank X, rank Y)` of the uncentred data,
/// from the centred eigendecompositions (`None` for a side without variance) and the CCA matrix
/// `m` (k x l; empty when a side has no variance).
///
/// In the coordinates `[Q̃_X e]`, `[Q̃_Y e]` the cross-Gram is `D = diag(M, 1)` (the centred bases
/// are orthogonal to e), and `P_X = I − p pᵀ`, `P_Y = I − q qᵀ` (p, q the unit null vectors of
/// [`UncentredSide`], or zero), so `tr(P_X P_Y) = ‖M‖²_F + 1 − ‖Dᵀp‖² − ‖Dq‖² + (pᵀDq)²`.
pub(super) fn fill_uncentred_r2(
    stats: &JointStats,
    ex: Option<&Eigen>,
    ey: Option<&Eigen>,
    m: &Mat<f64>,
    out: &mut Measures,
) {
    let rows = stats.rows as f64;
    let (n1, n2) = (stats.n1, stats.n2);
    let sx = uncentred_side(ex, &stats.sums[..n1], rows);
    let sy = uncentred_side(ey, &stats.sums[n1..n1 + n2], rows);
    let r = sx.rank.min(sy.rank);
    if r == 0 {
        out.notes
            .push("cca_r2_uncentred: undefined, a layer has numerical rank 0".to_string());
        return;
    }
    let (k, l) = (m.nrows(), m.ncols());
    let frob2: f64 = (0..l)
        .map(|j| m.col(j).iter().map(|v| v * v).sum::<f64>())
        .sum();
    let mut tr = frob2 + 1.0;
    // Dᵀp = [Mᵀp₁; p₀], Dq = [M q₁; q₀], pᵀDq = p₁ᵀ M q₁ + p₀ q₀.
    let mt_p = sx
        .null
        .as_ref()
        .map(|p| (0..l).map(|j| (0..k).map(|i| m[(i, j)] * p[i]).sum::<f64>()));
    let m_q = sy
        .null
        .as_ref()
        .map(|q| (0..k).map(|i| (0..l).map(|j| m[(i, j)] * q[j]).sum::<f64>()));
    if let (Some(p), Some(mtp)) = (&sx.null, mt_p) {
        let mtp: Vec<f64> = mtp.collect();
        tr -= mtp.iter().map(|v| v * v).sum::<f64>() + p[k] * p[k];
        if let Some(q) = &sy.null {
            let pdq = mtp.iter().zip(q).map(|(a, b)| a * b).sum::<f64>() + p[k] * q[l];
            tr += pdq * pdq;
        }
    }
    if let (Some(q), Some(mq)) = (&sy.null, m_q) {
        tr -= mq.map(|v| v * v).sum::<f64>() + q[l] * q[l];
    }
    let value = tr / r as f64;
    if value.is_finite() {
        out.cca_r2_uncentred = Some(value.clamp(0.0, 1.0));
    }
    let ranks = [(sx.rank, n1), (sy.rank, n2)];
    for (side, (rank, width)) in ['A', 'B'].into_iter().zip(ranks) {
        if rank < width {
            out.notes.push(format!(
                "cca_r2_uncentred: layer {side} has numerical rank {rank} of {width} (uncentred)"
            ));
        }
    }
}
