//! The one hot loop of the statistics pass: `G += Mᵀ M` on the lower triangle.
//!
//! With the `openblas` feature (default) this calls OpenBLAS `dsyrk` (Debian package
//! `libopenblas-dev`), measured here about 1.5x faster than faer's triangular matmul for large
//! Gram products; without it, faer is used.

/// Adds `Mᵀ M` to the lower triangle of the column-major `n x n` matrix `gram`, where `block` holds
/// `rows` rows of `n` values each, row-major.
pub(crate) fn syrk_lower(gram: &mut [f64], block: &[f64], n: usize, rows: usize) {
    debug_assert_eq!(gram.len(), n * n);
    debug_assert_eq!(block.len(), n * rows);
    if n == 0 || rows == 0 {
        return;
    }
    imp::syrk_lower(gram, block, n, rows);
}

#[cfg(feature = "openblas")]
mod imp {
    use std::os::raw::c_int;

    const CBLAS_COL_MAJOR: c_int = 102;
    const CBLAS_NO_TRANS: c_int = 111;
    const CBLAS_LOWER: c_int = 122;

    #[link(name = "openblas")]
    extern "C" {
        fn cblas_dsyrk(
            order: c_int,
            uplo: c_int,
            trans: c_int,
            n: c_int,
            k: c_int,
            alpha: f64,
            a: *const f64,
            lda: c_int,
            beta: f64,
            c: *mut f64,
            ldc: c_int,
        );
    }

    pub(super) fn syrk_lower(gram: &mut [f64], block: &[f64], n: usize, _rows: usize) {
        // Row-major rows x n is column-major n x rows: C += A Aᵀ with A = that n x rows matrix.
        // Split very tall blocks so that the dimensions fit in a C int.
        let max_rows = (c_int::MAX as usize / n.max(1)).max(1);
        for chunk in block.chunks(max_rows * n) {
            let k = chunk.len() / n;
            // SAFETY: `chunk` holds n*k f64 values laid out column-major with leading dimension n;
            // `gram` holds n*n values with leading dimension n; OpenBLAS reads only `chunk` and
            // writes only the lower triangle of `gram`. Sizes fit in c_int by construction.
            unsafe {
                cblas_dsyrk(
                    CBLAS_COL_MAJOR,
                    CBLAS_LOWER,
                    CBLAS_NO_TRANS,
                    n as c_int,
                    k as c_int,
                    1.0,
                    chunk.as_ptr(),
                    n as c_int,
                    1.0,
                    gram.as_mut_ptr(),
                    n as c_int,
                );
            }
        }
    }
}

#[cfg(not(feature = "openblas"))]
mod imp {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    use faer::{Accum, MatMut, MatRef, Par};

    pub(super) fn syrk_lower(gram: &mut [f64], block: &[f64], n: usize, rows: usize) {
        let a = MatRef::from_column_major_slice(block, n, rows);
        let dst = MatMut::from_column_major_slice_mut(gram, n, n);
        matmul(
            dst,
            BlockStructure::TriangularLower,
            Accum::Add,
            a,
            BlockStructure::Rectangular,
            a.transpose(),
            BlockStructure::Rectangular,
            1.0,
            Par::rayon(0),
        );
    }
}
