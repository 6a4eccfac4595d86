//! The CCA family (CCA, SVCCA, PWCCA) from covariance blocks.

use super::{Measures, Parts, CCA_RANK_TOL, SVCCA_KEEP_VARIANCE};
use crate::JointStats;
use faer::{Mat, Side};

/// The eigendecomposition of one side's covariance, largest eigenvalue first, with its numerical
/// rank (see [`CCA_RANK_TOL`]).
struct Eigen {
    values: Vec<f64>,
    vectors: Mat<f64>,
    rank: usize,
}

/// Eigendecomposition of the symmetric `c`; `None` if the eigensolver fails.
fn eigen(c: &Mat<f64>) -> Option<Eigen> {
    let p = c.nrows();
    let evd = c.self_adjoint_eigen(Side::Lower).ok()?;
    // Eigenvalues come in nondecreasing order; store them from the largest.
    let asc: Vec<f64> = evd.S().column_vector().iter().copied().collect();
    let u = evd.U();
    let values: Vec<f64> = asc.iter().rev().copied().collect();
    let vectors = Mat::from_fn(p, p, |r, j| u[(r, p - 1 - j)]);
    let lmax = values.first().copied().unwrap_or(0.0).max(0.0);
    let rank = values
        .iter()
        .take_while(|&&v| v > CCA_RANK_TOL * lmax && v > 0.0)
        .count();
    Some(Eigen {
        values,
        vectors,
        rank,
    })
}

/// A whitening transform of one side, restricted to its numerically nonzero (and, for SVCCA,
/// leading) principal directions: with `C = V Λ Vᵀ`, `w = V_k Λ_k^{-1/2}` (p x k) and
/// `root = Λ_k^{1/2} V_kᵀ = wᵀ C` (k x p).
struct Whitening {
    w: Mat<f64>,
    root: Mat<f64>,
}

impl Whitening {
    /// Whitens with the leading directions of `e` above the rank tolerance; with `keep_variance`,
    /// only the smallest number of leading directions whose eigenvalues reach that fraction of
    /// the total.
    fn new(e: &Eigen, keep_variance: Option<f64>) -> Self {
        let kept = match keep_variance {
            None => e.rank,
            Some(frac) => {
                let total: f64 = e.values.iter().map(|v| v.max(0.0)).sum();
                let mut cum = 0.0;
                let mut k = 0;
                for v in &e.values {
                    if cum >= frac * total {
                        break;
                    }
                    cum += v.max(0.0);
                    k += 1;
                }
                k.min(e.rank)
            }
        };
        let p = e.vectors.nrows();
        let (v, s) = (&e.vectors, &e.values);
        Self {
            w: Mat::from_fn(p, kept, |r, j| v[(r, j)] / s[j].sqrt()),
            root: Mat::from_fn(kept, p, |j, r| s[j].sqrt() * v[(r, j)]),
        }
    }

    fn kept(&self) -> usize {
        self.w.ncols()
    }
}

/// A canonical correlation analysis: `wxᵀ Cxy wy = U diag(ρ) Vᵀ` (U, V only when asked for).
struct CcaFit {
    rho: Vec<f64>,
    uv: Option<(Mat<f64>, Mat<f64>)>,
}

const SOLVER_FAILED: &str = "the eigen/singular value solver did not converge";

/// CCA between two whitened sides. `Err` carries the reason it is undefined.
fn fit(wx: &Whitening, wy: &Whitening, cxy: &Mat<f64>, vectors: bool) -> Result<CcaFit, String> {
    if wx.kept() == 0 || wy.kept() == 0 {
        return Err("a layer has numerical rank 0".to_string());
    }
    let m = wx.w.transpose() * cxy * &wy.w;
    let clamp = |s: &mut Vec<f64>| s.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    if vectors {
        let svd = m.thin_svd().map_err(|_| SOLVER_FAILED.to_string())?;
        let mut rho: Vec<f64> = svd.S().column_vector().iter().copied().collect();
        clamp(&mut rho);
        Ok(CcaFit {
            rho,
            uv: Some((svd.U().to_owned(), svd.V().to_owned())),
        })
    } else {
        let mut rho = m.singular_values().map_err(|_| SOLVER_FAILED.to_string())?;
        clamp(&mut rho);
        Ok(CcaFit { rho, uv: None })
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn mean_sq(v: &[f64]) -> f64 {
    v.iter().map(|r| r * r).sum::<f64>() / v.len() as f64
}

/// Notes for rank truncation (`what` names the measure).
fn rank_notes(what: &str, ranks: [(usize, usize); 2], out: &mut Measures) {
    for (side, (rank, width)) in ['A', 'B'].into_iter().zip(ranks) {
        if rank < width {
            out.notes.push(format!(
                "{what}: layer {side} has numerical rank {rank} of {width} (covariance eigenvalues \
                 at or below CCA_RANK_TOL = {CCA_RANK_TOL:e} times the largest were dropped)"
            ));
        }
    }
}

/// Fills `cca_r2_uncentred` (R²_CCA of the uncentred data).
pub(super) fn fill_uncentred_r2(stats: &JointStats, out: &mut Measures) {
    let (n1, n2) = (stats.n1, stats.n2);
    let g = &stats.gram;
    let block =
        |r: usize, c: usize, nr: usize, nc: usize| Mat::from_fn(nr, nc, |i, j| g[(r + i, c + j)]);
    let (gxx, gyy, gxy) = (
        block(0, 0, n1, n1),
        block(n1, n1, n2, n2),
        block(0, n1, n1, n2),
    );
    let (Some(ex), Some(ey)) = (eigen(&gxx), eigen(&gyy)) else {
        out.notes
            .push(format!("cca_r2_uncentred: undefined, {SOLVER_FAILED}"));
        return;
    };
    let (wx, wy) = (Whitening::new(&ex, None), Whitening::new(&ey, None));
    match fit(&wx, &wy, &gxy, false) {
        Ok(f) => {
            out.cca_r2_uncentred = Some(mean_sq(&f.rho));
            rank_notes("cca_r2_uncentred", [(ex.rank, n1), (ey.rank, n2)], out);
        }
        Err(why) => out
            .notes
            .push(format!("cca_r2_uncentred: undefined, {why}")),
    }
}

/// Fills the centred CCA fields (`cca`), `pwcca` and/or `svcca` (both sides known to have
/// variance), sharing one eigendecomposition per side.
pub(super) fn fill_cca_family(
    parts: &Parts,
    cca: bool,
    pwcca: bool,
    svcca: bool,
    out: &mut Measures,
) {
    let (Some(ex), Some(ey)) = (eigen(&parts.cxx), eigen(&parts.cyy)) else {
        out.notes
            .push(format!("cca/svcca/pwcca: undefined, {SOLVER_FAILED}"));
        return;
    };
    let what: Vec<&str> = [(cca, "cca"), (pwcca, "pwcca"), (svcca, "svcca")]
        .into_iter()
        .filter_map(|(w, name)| w.then_some(name))
        .collect();
    rank_notes(
        &what.join("/"),
        [(ex.rank, parts.n1), (ey.rank, parts.n2)],
        out,
    );
    if cca || pwcca {
        let (wx, wy) = (Whitening::new(&ex, None), Whitening::new(&ey, None));
        match fit(&wx, &wy, &parts.cxy, pwcca) {
            Ok(f) => {
                if cca {
                    out.cca_mean_rho = Some(mean(&f.rho));
                    out.cca_r2 = Some(mean_sq(&f.rho));
                    out.cca_rank = Some([ex.rank, ey.rank]);
                }
                if let Some((u, v)) = &f.uv {
                    // ⟨h_i, x̃_j⟩ = (u_iᵀ wᵀ C)_j = (u_iᵀ root)_j for the canonical variate
                    // h_i = X̃ w u_i; likewise on side B with v_i.
                    let proj = if parts.n1 <= parts.n2 {
                        u.transpose() * &wx.root
                    } else {
                        v.transpose() * &wy.root
                    };
                    fill_pwcca(&proj, &f.rho, out);
                }
                if cca {
                    out.cca_rho = Some(f.rho);
                }
            }
            Err(why) => out.notes.push(format!("cca/pwcca: undefined, {why}")),
        }
    }
    if svcca {
        let keep = Some(SVCCA_KEEP_VARIANCE);
        let (wx, wy) = (Whitening::new(&ex, keep), Whitening::new(&ey, keep));
        match fit(&wx, &wy, &parts.cxy, false) {
            Ok(f) => {
                out.svcca = Some(mean(&f.rho));
                out.svcca_dims = Some([wx.kept(), wy.kept()]);
            }
            Err(why) => out.notes.push(format!("svcca: undefined, {why}")),
        }
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
