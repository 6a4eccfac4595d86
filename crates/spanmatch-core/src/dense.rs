//! The dense kernels of the measures: Gram matrices `M Mᵀ` and matrix products from OpenBLAS
//! (`cblas_dsyrk`, `cblas_dgemm`), loaded at run time like the Gram kernel of the statistics
//! pass, when the library is present (faer otherwise, or under `SPANMATCH_BLAS=faer`); symmetric
//! eigenproblems from faer (see [`sym_eigen`] for why not LAPACK).
//!
//! Measured on the 2-core VM (`examples/blas_speed.rs`, docs/benchmarks.md): a product at 4096
//! takes 0.87 s with OpenBLAS against 1.14 s with faer on both cores of a quiet machine, and
//! they stay close beside a busy process (at 2048: 0.21 s against 0.18 s). The two give the
//! same results up to rounding; each is deterministic on a given machine.

use crate::gram_kernel::{self, DenseKernels};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};
use std::os::raw::c_int;

/// Which library computes the measures' products and Gram matrices.
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    /// OpenBLAS, loaded at run time.
    OpenBlas(DenseKernels),
    /// faer.
    Faer,
}

impl Backend {
    /// The faster one available: OpenBLAS when loaded, faer otherwise.
    pub fn best() -> Self {
        gram_kernel::dense_kernels().map_or(Backend::Faer, Backend::OpenBlas)
    }
}

const COL_MAJOR: c_int = 102;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const LOWER: c_int = 122;

/// A matrix as BLAS reads it: in place when one of its strides is 1 (column-major, or a
/// transposed column-major matrix), otherwise a column-major copy.
enum Operand<'a> {
    View(MatRef<'a, f64>),
    Copy(Mat<f64>),
}

impl<'a> Operand<'a> {
    fn new(m: MatRef<'a, f64>) -> Self {
        let (r, c) = (m.nrows(), m.ncols());
        let col_major = m.row_stride() == 1 && m.col_stride() >= r.max(1) as isize;
        let row_major = m.col_stride() == 1 && m.row_stride() >= c.max(1) as isize;
        if col_major || row_major {
            Operand::View(m)
        } else {
            Operand::Copy(m.to_owned())
        }
    }

    /// (pointer, transposed, leading dimension) of the column-major matrix BLAS reads.
    fn raw(&self) -> (*const f64, bool, c_int) {
        match self {
            Operand::View(m) if m.row_stride() == 1 => (m.as_ptr(), false, m.col_stride() as c_int),
            Operand::View(m) => (m.as_ptr(), true, m.row_stride() as c_int),
            Operand::Copy(m) => (m.as_ptr(), false, m.col_stride() as c_int),
        }
    }
}

/// The lower triangle of `m mᵀ` (`m` is r x c); the strict upper triangle is zero.
pub(crate) fn gram_lower(m: MatRef<'_, f64>, backend: Backend) -> Mat<f64> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut g = Mat::<f64>::zeros(r, r);
    if r == 0 || c == 0 {
        return g;
    }
    match backend {
        Backend::OpenBlas(l) => {
            let m = Operand::new(m);
            let (ptr, trans, ld) = m.raw();
            let ldg = g.col_stride() as c_int;
            // SAFETY: `ptr` addresses an r x c matrix (c x r when `trans`) with leading dimension
            // `ld`, alive for the call; `g` is r x r with leading dimension `ldg`; dsyrk writes
            // only g's lower triangle. Sizes are those of matrices in memory, so fit in c_int.
            unsafe {
                (l.dsyrk)(
                    COL_MAJOR,
                    LOWER,
                    if trans { TRANS } else { NO_TRANS },
                    r as c_int,
                    c as c_int,
                    1.0,
                    ptr,
                    ld,
                    0.0,
                    g.as_ptr_mut(),
                    ldg,
                );
            }
        }
        Backend::Faer => tri_matmul(
            g.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            m,
            BlockStructure::Rectangular,
            m.transpose(),
            BlockStructure::Rectangular,
            1.0,
            Par::rayon(0),
        ),
    }
    g
}

/// The product `a b`.
pub(crate) fn product(a: MatRef<'_, f64>, b: MatRef<'_, f64>, backend: Backend) -> Mat<f64> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    debug_assert_eq!(k, b.nrows());
    let mut c = Mat::<f64>::zeros(m, n);
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    match backend {
        Backend::OpenBlas(l) => {
            let (a, b) = (Operand::new(a), Operand::new(b));
            let ((pa, ta, lda), (pb, tb, ldb)) = (a.raw(), b.raw());
            let ldc = c.col_stride() as c_int;
            // SAFETY: as in `gram_lower`: each operand is a column-major matrix (transposed when
            // flagged) with its leading dimension, alive for the call; c is m x n.
            unsafe {
                (l.dgemm)(
                    COL_MAJOR,
                    if ta { TRANS } else { NO_TRANS },
                    if tb { TRANS } else { NO_TRANS },
                    m as c_int,
                    n as c_int,
                    k as c_int,
                    1.0,
                    pa,
                    lda,
                    pb,
                    ldb,
                    0.0,
                    c.as_ptr_mut(),
                    ldc,
                );
            }
        }
        Backend::Faer => {
            faer::linalg::matmul::matmul(c.as_mut(), Accum::Replace, a, b, 1.0, Par::rayon(0))
        }
    }
    c
}

/// Eigenvalues of the symmetric `c` (lower triangle read), in decreasing order, with the
/// matching unit eigenvectors as columns. `None` if the solver fails.
///
/// Always faer's solver: LAPACK's `dsyevd` through OpenBLAS was faster on a quiet machine (5.0 s
/// against 6.1 s at 4096) but collapses when other processes keep the cores busy (at 1024: 1.0 s
/// against faer's 0.2 s beside one busy process, 26 s against 0.3 s beside two), because the
/// tridiagonal reduction synchronises OpenBLAS's threads thousands of times; the products above
/// are large single calls and hold up (docs/decisions.md). The same holds for
/// [`sym_eigenvalues`].
pub(crate) fn sym_eigen(c: MatRef<'_, f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    let p = c.nrows();
    if p == 0 {
        return Some((Vec::new(), Mat::zeros(0, 0)));
    }
    let evd = c.self_adjoint_eigen(Side::Lower).ok()?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let values: Vec<f64> = (0..p).map(|j| s[p - 1 - j]).collect();
    Some((values, Mat::from_fn(p, p, |r, j| u[(r, p - 1 - j)])))
}

/// Eigenvalues of the symmetric `c` (lower triangle read), in decreasing order (faer, see
/// [`sym_eigen`]). `None` if the solver fails.
pub(crate) fn sym_eigenvalues(c: MatRef<'_, f64>) -> Option<Vec<f64>> {
    if c.nrows() == 0 {
        return Some(Vec::new());
    }
    let mut v = c.self_adjoint_eigenvalues(Side::Lower).ok()?;
    v.reverse();
    Some(v)
}

/// Every backend available in this process (faer, and OpenBLAS when loaded), named, for tests.
#[cfg(test)]
pub(crate) fn all_backends() -> Vec<(&'static str, Backend)> {
    let mut v = vec![("faer", Backend::Faer)];
    if let Some(l) = gram_kernel::dense_kernels() {
        v.push(("openblas", Backend::OpenBlas(l)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random(r: usize, c: usize, seed: u64) -> Mat<f64> {
        let mut rng = SplitMix64::new(seed);
        Mat::from_fn(r, c, |_, _| rng.normal())
    }

    #[test]
    fn products_and_grams_equal_the_naive_ones_for_every_layout() {
        let a = random(23, 17, 1);
        let b = random(17, 11, 2);
        let at = a.transpose().to_owned();
        for (name, be) in all_backends() {
            // Plain, transposed views, and sub-views with a leading dimension above the rows.
            let views = [
                (product(a.as_ref(), b.as_ref(), be), "plain"),
                (product(at.transpose(), b.as_ref(), be), "transposed a"),
                (
                    product(a.as_ref(), b.transpose().to_owned().transpose(), be),
                    "transposed b",
                ),
            ];
            for (c, what) in views {
                for i in 0..23 {
                    for j in 0..11 {
                        let want: f64 = (0..17).map(|k| a[(i, k)] * b[(k, j)]).sum();
                        assert!((c[(i, j)] - want).abs() < 1e-12, "{name} {what} ({i},{j})");
                    }
                }
            }
            let sub = a.get(3..20, 2..15);
            for (m, what) in [(sub, "sub-view"), (sub.transpose(), "transposed sub-view")] {
                let g = gram_lower(m, be);
                for i in 0..m.nrows() {
                    for j in 0..m.nrows() {
                        let want: f64 = if j <= i {
                            (0..m.ncols()).map(|k| m[(i, k)] * m[(j, k)]).sum()
                        } else {
                            0.0
                        };
                        assert!((g[(i, j)] - want).abs() < 1e-12, "{name} {what} ({i},{j})");
                    }
                }
            }
        }
    }

    #[test]
    fn eigen_reconstructs_the_matrix_in_decreasing_order() {
        let m = random(40, 31, 3);
        let full = {
            let c = gram_lower(m.transpose(), Backend::Faer);
            Mat::from_fn(31, 31, |i, j| c[(i.max(j), i.min(j))])
        };
        // The Gram matrix from each backend, decomposed.
        let mut all = Vec::new();
        for (name, be) in all_backends() {
            let c = gram_lower(m.transpose(), be);
            let (values, u) = sym_eigen(c.as_ref()).unwrap();
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "{name}: order");
            let recon = &u
                * Mat::from_fn(31, 31, |i, j| if i == j { values[i] } else { 0.0 })
                * u.transpose();
            let err = (&recon - &full).norm_max();
            assert!(err < 1e-10 * values[0], "{name}: reconstruction {err}");
            let only = sym_eigenvalues(c.as_ref()).unwrap();
            for (x, y) in only.iter().zip(&values) {
                assert!((x - y).abs() < 1e-10 * values[0], "{name}: values only");
            }
            all.push(values);
        }
        // The backends agree to rounding.
        for v in &all[1..] {
            for (x, y) in v.iter().zip(&all[0]) {
                assert!((x - y).abs() < 1e-10 * all[0][0]);
            }
        }
    }
}
