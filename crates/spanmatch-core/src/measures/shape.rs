//! The generalized shape metric of Williams et al. (2021) (netrep's `LinearMetric(alpha)` with the
//! angular score), from the shared factors.

use super::linalg::{singular_values, Backend};
use super::{Factors, Measures};

/// The partial-whitening weights `d_i = α + (1 − α) λ̃_i^{-1/2}` of one side (λ̃ the eigenvalues
/// divided by their mean; the whitening part only on the numerical column space), and
/// `Σ d_i² λ̃_i`, the squared norm of the transformed data.
fn weights(values: &[f64], rank: usize, alpha: f64) -> (Vec<f64>, f64) {
    let mean = values.iter().map(|v| v.max(0.0)).sum::<f64>() / values.len() as f64;
    let mut norm2 = 0.0;
    let d: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let l = (v / mean).max(0.0);
            let d = if i < rank {
                alpha + (1.0 - alpha) / l.sqrt()
            } else {
                alpha
            };
            norm2 += d * d * l;
            d
        })
        .collect();
    (d, norm2)
}

/// Fills `shape` (angular distance in [0, π/2]) and `shape_alpha`. `rho` (the canonical
/// correlations) and `procrustes_nu` are reused at α = 0 and α = 1 when already computed.
pub(super) fn fill(
    f: &Factors,
    alpha: f64,
    rho: Option<&[f64]>,
    procrustes_nu: Option<f64>,
    backend: Backend,
    out: &mut Measures,
) {
    let cos = if alpha == 1.0 && procrustes_nu.is_some() {
        procrustes_nu
    } else if alpha == 0.0 && rho.is_some() {
        rho.map(|r| r.iter().sum::<f64>() / ((f.ex.rank * f.ey.rank) as f64).sqrt())
    } else {
        let (dx, nx) = weights(&f.ex.values, f.ex.rank, alpha);
        let (dy, ny) = weights(&f.ey.values, f.ey.rank, alpha);
        let mx = f.ex.mean_value();
        let my = f.ey.mean_value();
        let scale = 1.0 / (mx.sqrt() * my.sqrt());
        let s = faer::Mat::from_fn(f.b.nrows(), f.b.ncols(), |i, j| {
            f.b[(i, j)] * scale * dx[i] * dy[j]
        });
        singular_values(s.as_ref(), backend)
            .map(|sv| sv.iter().sum::<f64>() / (nx.sqrt() * ny.sqrt()))
    };
    match cos {
        Some(c) if c.is_finite() => {
            out.shape = Some(c.clamp(0.0, 1.0).acos());
            out.shape_alpha = Some(alpha);
        }
        Some(_) => out
            .notes
            .push("shape: undefined, not finite (overflow in the statistics)".to_string()),
        None => out
            .notes
            .push("shape: undefined, the eigenvalue solver did not converge".to_string()),
    }
}
