//! The factorisations shared by the measures: one symmetric eigendecomposition per side, and
//! singular values (and, for PWCCA, singular vectors) computed from the symmetric eigenproblem of
//! the smaller Gram matrix `M Mᵀ` or `Mᵀ M` instead of a general SVD.
//!
//! The kernels come from `crate::dense`: products and Gram matrices from OpenBLAS when loaded
//! (faer otherwise), eigenproblems from faer.

use super::CCA_RANK_TOL;
pub(crate) use crate::dense::Backend;
use crate::dense::{gram_lower, sym_eigen, sym_eigenvalues};
use faer::{Mat, MatRef};

/// Eigenvalues of a Gram matrix `M Mᵀ` at or below `GRAM_NOISE · n · λ_max` (n its order) are set
/// to zero before square roots are taken: they are below the resolution of the squared problem
/// (its eigenvalues carry an absolute error of about `n · f64::EPSILON · λ_max`), so singular
/// values below `sqrt(GRAM_NOISE · n) · σ_max` (7e-7 σ_max at n = 4096, 1e-7 σ_max at n = 100)
/// count as zero instead of contributing round-off of that size.
pub const GRAM_NOISE: f64 = f64::EPSILON;

/// The eigendecomposition of one side's covariance, largest eigenvalue first, with its numerical
/// rank (see [`CCA_RANK_TOL`]).
pub(crate) struct Eigen {
    pub values: Vec<f64>,
    pub vectors: Mat<f64>,
    pub rank: usize,
}

impl Eigen {
    /// Mean eigenvalue (trace / order), clamped at 0.
    pub fn mean_value(&self) -> f64 {
        if self.values.is_empty() {
            return 0.0;
        }
        (self.values.iter().map(|v| v.max(0.0)).sum::<f64>() / self.values.len() as f64).max(0.0)
    }
}

/// Eigendecomposition of the symmetric `c` (lower triangle read); `None` if the solver fails.
pub(crate) fn eigen(c: MatRef<'_, f64>) -> Option<Eigen> {
    let (values, vectors) = sym_eigen(c)?;
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

/// Square roots of Gram eigenvalues (descending), with the [`GRAM_NOISE`] floor.
fn roots(desc: impl Iterator<Item = f64>, order: usize) -> Vec<f64> {
    let vals: Vec<f64> = desc.collect();
    let lmax = vals.first().copied().unwrap_or(0.0).max(0.0);
    let floor = GRAM_NOISE * order.max(1) as f64 * lmax;
    vals.into_iter()
        .map(|v| if v > floor { v.sqrt() } else { 0.0 })
        .collect()
}

/// The `min(r, c)` singular values of `m`, in decreasing order, from the eigenvalues of the
/// smaller Gram matrix (see [`GRAM_NOISE`]). `None` if the eigensolver fails.
pub(crate) fn singular_values(m: MatRef<'_, f64>, backend: Backend) -> Option<Vec<f64>> {
    let k = m.nrows().min(m.ncols());
    if k == 0 {
        return Some(Vec::new());
    }
    let g = if m.nrows() <= m.ncols() {
        gram_lower(m, backend)
    } else {
        gram_lower(m.transpose(), backend)
    };
    let desc = sym_eigenvalues(g.as_ref())?;
    Some(roots(desc.into_iter(), k))
}

/// The `min(r, c)` largest singular values of `m` (decreasing) and the matching left singular
/// vectors (columns of an `r x min(r, c)` matrix), from the eigendecomposition of `m mᵀ`.
pub(crate) fn left_singular(m: MatRef<'_, f64>, backend: Backend) -> Option<(Vec<f64>, Mat<f64>)> {
    let (r, c) = (m.nrows(), m.ncols());
    let k = r.min(c);
    if k == 0 {
        return Some((Vec::new(), Mat::zeros(r, 0)));
    }
    let g = gram_lower(m, backend);
    let (desc, mut u) = sym_eigen(g.as_ref())?;
    let sigma = roots(desc.into_iter().take(k), r);
    if k < r {
        u = u.get(.., ..k).to_owned();
    }
    Some((sigma, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_match_the_svd() {
        let mut state = 5u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for ((r, c), (name, be)) in [(7, 7), (5, 9), (9, 4), (1, 3)]
            .into_iter()
            .flat_map(|size| {
                crate::dense::all_backends()
                    .into_iter()
                    .map(move |b| (size, b))
            })
        {
            let m = Mat::from_fn(r, c, |_, _| rnd());
            let want = m.singular_values().unwrap();
            let got = singular_values(m.as_ref(), be).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{name} {r}x{c}: {g} vs {w}");
            }
            let (s, u) = left_singular(m.as_ref(), be).unwrap();
            assert_eq!(u.ncols(), r.min(c));
            for (g, w) in s.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{name}");
            }
            // m mᵀ u = σ² u
            let mmt = &m * m.transpose();
            for j in 0..s.len() {
                let lhs = &mmt * u.col(j);
                for i in 0..r {
                    assert!((lhs[i] - s[j] * s[j] * u[(i, j)]).abs() < 1e-12, "{name}");
                }
            }
        }
        // A rank-1 matrix: the zero singular values come out as exact zeros.
        let m = Mat::from_fn(6, 6, |i, j| (i + 1) as f64 * (j as f64 - 2.5));
        for (name, be) in crate::dense::all_backends() {
            let s = singular_values(m.as_ref(), be).unwrap();
            assert!(s[0] > 1.0);
            assert!(s[1..].iter().all(|&v| v == 0.0), "{name}: {s:?}");
        }
    }
}
