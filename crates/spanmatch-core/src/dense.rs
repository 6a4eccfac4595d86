//! The dense kernels of the measures: symmetric eigenproblems, Gram matrices `M Mᵀ` and matrix
//! products. OpenBLAS with its LAPACK (`dsyevd`, `cblas_dsyrk`, `cblas_dgemm`), loaded at run
//! time like the Gram kernel of the statistics pass, when the library is present and has them;
//! faer otherwise, or under `SPANMATCH_BLAS=faer`.
//!
//! Measured on the 2-core VM at 4096 (`examples/eig_speed.rs`, `examples/blas_speed.rs`, quiet
//! machine, docs/benchmarks.md): full eigendecomposition 5.0 s (`dsyevd`) against 6.1 s (faer),
//! eigenvalues only 2.5 s against 3.3 s, a product 0.87 s against 1.14 s. (An earlier
//! measurement on a loaded machine had them within noise, docs/decisions.md.) The two give the
//! same results up to rounding; each is deterministic on a given machine.

use crate::gram_kernel::{self, Lapack};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};
use std::os::raw::c_int;

/// Which library computes the measures' dense kernels.
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    /// OpenBLAS / LAPACK, loaded at run time.
    Lapack(Lapack),
    /// faer.
    Faer,
}

impl Backend {
    /// The faster one available: LAPACK when loaded, faer otherwise.
    pub fn best() -> Self {
        gram_kernel::lapack().map_or(Backend::Faer, Backend::Lapack)
    }
}

const COL_MAJOR: c_int = 102;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const LOWER: c_int = 122;

/// A column-major view of `m` for BLAS: (pointer, transposed, leading dimension), or `None`
/// when neither stride is 1 (the caller copies).
fn blas_view(m: MatRef<'_, f64>) -> Option<(*const f64, bool, c_int)> {
    let (r, c) = (m.nrows(), m.ncols());
    if m.row_stride() == 1 && m.col_stride() >= r.max(1) as isize {
        Some((m.as_ptr(), false, m.col_stride() as c_int))
    } else if m.col_stride() == 1 && m.row_stride() >= c.max(1) as isize {
        Some((m.as_ptr(), true, m.row_stride() as c_int))
    } else {
        None
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
        Backend::Lapack(l) => {
            let owned;
            let (ptr, trans, ld) = match blas_view(m) {
                Some(v) => v,
                None => {
                    owned = m.to_owned();
                    (owned.as_ptr(), false, owned.col_stride() as c_int)
                }
            };
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
        Backend::Lapack(l) => {
            let (oa, ob);
            let (pa, ta, lda) = match blas_view(a) {
                Some(v) => v,
                None => {
                    oa = a.to_owned();
                    (oa.as_ptr(), false, oa.col_stride() as c_int)
                }
            };
            let (pb, tb, ldb) = match blas_view(b) {
                Some(v) => v,
                None => {
                    ob = b.to_owned();
                    (ob.as_ptr(), false, ob.col_stride() as c_int)
                }
            };
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

/// Eigenvalues of the symmetric `c` (lower triangle read), in decreasing order, and with
/// `vectors` the matching unit eigenvectors as columns. `None` if the solver fails.
pub(crate) fn sym_eigen(
    c: MatRef<'_, f64>,
    vectors: bool,
    backend: Backend,
) -> Option<(Vec<f64>, Option<Mat<f64>>)> {
    let p = c.nrows();
    if p == 0 {
        return Some((Vec::new(), vectors.then(|| Mat::zeros(0, 0))));
    }
    match backend {
        Backend::Lapack(l) => lapack_eigen(l, c, vectors),
        Backend::Faer => {
            if vectors {
                let evd = c.self_adjoint_eigen(Side::Lower).ok()?;
                let s = evd.S().column_vector();
                let u = evd.U();
                let values: Vec<f64> = (0..p).map(|j| s[p - 1 - j]).collect();
                Some((values, Some(Mat::from_fn(p, p, |r, j| u[(r, p - 1 - j)]))))
            } else {
                let mut v = c.self_adjoint_eigenvalues(Side::Lower).ok()?;
                v.reverse();
                Some((v, None))
            }
        }
    }
}

fn lapack_eigen(
    l: Lapack,
    c: MatRef<'_, f64>,
    vectors: bool,
) -> Option<(Vec<f64>, Option<Mat<f64>>)> {
    let p = c.nrows();
    let n = c_int::try_from(p).ok()?;
    let mut a = c.to_owned();
    let lda = a.col_stride() as c_int;
    let mut w = vec![0.0; p];
    let jobz: &[u8; 1] = if vectors { b"V" } else { b"N" };
    let uplo = b"L";
    let mut info: c_int = 0;
    let query: c_int = -1;
    let mut work_size = [0.0f64];
    let mut iwork_size: [c_int; 1] = [0];
    // SAFETY: a workspace query (lwork = liwork = -1) writes the optimal sizes to the two
    // one-element arrays and reads only the scalars.
    unsafe {
        (l.dsyevd)(
            jobz.as_ptr().cast(),
            uplo.as_ptr().cast(),
            &n,
            a.as_ptr_mut(),
            &lda,
            w.as_mut_ptr(),
            work_size.as_mut_ptr(),
            &query,
            iwork_size.as_mut_ptr(),
            &query,
            &mut info,
        );
    }
    if info != 0 {
        return None;
    }
    let lwork = c_int::try_from(work_size[0].ceil() as i64).ok()?.max(1);
    let liwork = iwork_size[0].max(1);
    let mut work = vec![0.0f64; lwork as usize];
    let mut iwork: Vec<c_int> = vec![0; liwork as usize];
    // SAFETY: `a` is p x p with leading dimension `lda`, `w` holds p values, and the workspaces
    // have the sizes the query asked for; dsyevd writes only these.
    unsafe {
        (l.dsyevd)(
            jobz.as_ptr().cast(),
            uplo.as_ptr().cast(),
            &n,
            a.as_ptr_mut(),
            &lda,
            w.as_mut_ptr(),
            work.as_mut_ptr(),
            &lwork,
            iwork.as_mut_ptr(),
            &liwork,
            &mut info,
        );
    }
    if info != 0 || w.iter().any(|v| !v.is_finite()) {
        return None;
    }
    w.reverse();
    if !vectors {
        return Some((w, None));
    }
    // Decreasing order: reverse the columns in place.
    for j in 0..p / 2 {
        let (left, right) = a.as_mut().split_at_col_mut(p - 1 - j);
        let mut x = left.col_mut(j);
        let mut y = right.col_mut(0);
        for r in 0..p {
            std::mem::swap(&mut x[r], &mut y[r]);
        }
    }
    Some((w, Some(a)))
}

/// Every backend available in this process (faer, and LAPACK when loaded), named, for tests.
#[cfg(test)]
pub(crate) fn all_backends() -> Vec<(&'static str, Backend)> {
    let mut v = vec![("faer", Backend::Faer)];
    if let Some(l) = gram_kernel::lapack() {
        v.push(("lapack", Backend::Lapack(l)));
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
        let c = gram_lower(m.transpose(), Backend::Faer);
        let full = Mat::from_fn(31, 31, |i, j| c[(i.max(j), i.min(j))]);
        let mut all = Vec::new();
        for (name, be) in all_backends() {
            let (values, vectors) = sym_eigen(c.as_ref(), true, be).unwrap();
            let u = vectors.unwrap();
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "{name}: order");
            let recon = &u
                * Mat::from_fn(31, 31, |i, j| if i == j { values[i] } else { 0.0 })
                * u.transpose();
            let err = (&recon - &full).norm_max();
            assert!(err < 1e-10 * values[0], "{name}: reconstruction {err}");
            let (only, none) = sym_eigen(c.as_ref(), false, be).unwrap();
            assert!(none.is_none());
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
