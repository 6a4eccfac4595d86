//! The one hot loop of the statistics pass: `G += Mᵀ M` on the lower triangle.
//!
//! Two precisions: [`syrk_lower`] accumulates float64 products into a float64 Gram matrix (the
//! default, exact to rounding); [`syrk_lower_f32`] computes one block's product in float32
//! (`cblas_ssyrk`, about twice the speed and half the memory traffic), which the caller adds
//! into its float64 statistics (see `GramAccumulator::push_joint_f32`).
//!
//! With the `openblas` feature (default), OpenBLAS `cblas_dsyrk` is loaded at run time from the
//! system library (`libopenblas.so.0`, Debian package `libopenblas0`, pulled in by
//! `libopenblas-dev`): about 1.5x faster than faer's triangular matmul for large Gram products.
//! When the library is missing, or `SPANMATCH_BLAS=faer` is set, faer is used; the results are
//! the same up to floating-point summation order.
//!
//! OpenBLAS chooses its kernels when it is loaded. Older builds (Debian's 0.3.21) do not
//! recognise recent or virtualised Intel CPUs and fall back to SSE3 kernels, 2-3x slower; so
//! unless the user set `OPENBLAS_CORETYPE`, [`init`] sets it from the CPU's features (SkylakeX
//! with AVX-512, Haswell with AVX2 + FMA) before loading the library.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use std::os::raw::c_int;
use std::sync::OnceLock;

/// Which implementation accumulates Gram matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GramBackend {
    /// OpenBLAS `cblas_dsyrk`, loaded from the system library.
    OpenBlas,
    /// faer's lower-triangular matrix product.
    Faer,
}

/// `cblas_dsyrk` (public for the examples that compare libraries).
#[doc(hidden)]
pub type Dsyrk = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f64,
    *const f64,
    c_int,
    f64,
    *mut f64,
    c_int,
);

type Ssyrk = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

/// `cblas_dgemm`.
#[doc(hidden)]
pub type Dgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f64,
    *const f64,
    c_int,
    *const f64,
    c_int,
    f64,
    *mut f64,
    c_int,
);

/// The dense kernels the measures take from the loaded library (see `crate::dense`).
#[derive(Clone, Copy)]
pub(crate) struct DenseKernels {
    pub dsyrk: Dsyrk,
    pub dgemm: Dgemm,
}

struct Blas {
    // Keeps the library mapped for the life of the process.
    _lib: libloading::Library,
    dsyrk: Dsyrk,
    /// `cblas_ssyrk`, when the library has it (every OpenBLAS build does).
    ssyrk: Option<Ssyrk>,
    /// `cblas_dsyrk` and `cblas_dgemm` for the measures, when the library has `cblas_dgemm`
    /// (every CBLAS does).
    dense: Option<DenseKernels>,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();

/// Chooses OpenBLAS kernels for this CPU (unless `OPENBLAS_CORETYPE` is set) and loads the
/// library. Call it early in `main`, before other threads start (it may set an environment
/// variable); later calls return the cached answer. Returns the backend in use.
pub fn init() -> GramBackend {
    if BLAS.get_or_init(load).is_some() {
        GramBackend::OpenBlas
    } else {
        GramBackend::Faer
    }
}

/// The library's dense kernels for the measures, when it is loaded and has them (`None` under
/// `SPANMATCH_BLAS=faer`). The function pointers stay valid for the life of the process.
pub(crate) fn dense_kernels() -> Option<DenseKernels> {
    BLAS.get_or_init(load).as_ref().and_then(|b| b.dense)
}

#[cfg(feature = "openblas")]
fn load() -> Option<Blas> {
    if std::env::var("SPANMATCH_BLAS").is_ok_and(|v| v.eq_ignore_ascii_case("faer")) {
        return None;
    }
    if std::env::var_os("OPENBLAS_CORETYPE").is_none() {
        if let Some(core) = coretype() {
            // Edition 2021: safe; done once, before OpenBLAS is loaded (see `init`).
            std::env::set_var("OPENBLAS_CORETYPE", core);
        }
    }
    for name in ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"] {
        // SAFETY: loading OpenBLAS runs its initialisers, which only read the environment and
        // the CPU and start its thread pool.
        let Ok(lib) = (unsafe { libloading::Library::new(name) }) else {
            continue;
        };
        // SAFETY: `cblas_dsyrk` has this C signature in every CBLAS implementation.
        let sym = unsafe { lib.get::<Dsyrk>(b"cblas_dsyrk\0") };
        if let Ok(f) = sym {
            let dsyrk = *f;
            // SAFETY: `cblas_ssyrk` has this C signature in every CBLAS implementation.
            let ssyrk = unsafe { lib.get::<Ssyrk>(b"cblas_ssyrk\0") }
                .ok()
                .map(|f| *f);
            // SAFETY: `cblas_dgemm` has this C signature in every CBLAS implementation.
            let dense = unsafe { lib.get::<Dgemm>(b"cblas_dgemm\0") }
                .ok()
                .map(|f| DenseKernels { dsyrk, dgemm: *f });
            return Some(Blas {
                _lib: lib,
                dsyrk,
                ssyrk,
                dense,
            });
        }
    }
    None
}

#[cfg(not(feature = "openblas"))]
fn load() -> Option<Blas> {
    None
}

#[cfg(feature = "openblas")]
fn coretype() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Some("SkylakeX");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("Haswell");
        }
    }
    None
}

/// Adds `Mᵀ M` to the lower triangle of the column-major `n x n` matrix `gram`, where `block` holds
/// `rows` rows of `n` values each, row-major.
pub(crate) fn syrk_lower(gram: &mut [f64], block: &[f64], n: usize, rows: usize) {
    debug_assert_eq!(gram.len(), n * n);
    debug_assert_eq!(block.len(), n * rows);
    if n == 0 || rows == 0 {
        return;
    }
    match BLAS.get_or_init(load) {
        Some(blas) => openblas_syrk(blas, gram, block, n),
        None => faer_syrk(gram, block, n, rows),
    }
}

/// Writes `Mᵀ M`, computed in float32, to the lower triangle of the column-major `n x n` matrix
/// `gram` (overwriting it; the upper triangle is left as it was), where `block` holds `rows` rows
/// of `n` values each, row-major.
pub(crate) fn syrk_lower_f32(gram: &mut [f32], block: &[f32], n: usize, rows: usize) {
    debug_assert_eq!(gram.len(), n * n);
    debug_assert_eq!(block.len(), n * rows);
    if n == 0 {
        return;
    }
    if rows == 0 {
        for j in 0..n {
            gram[j * n + j..(j + 1) * n].fill(0.0);
        }
        return;
    }
    match BLAS.get_or_init(load).as_ref().and_then(|b| b.ssyrk) {
        Some(ssyrk) => openblas_ssyrk(ssyrk, gram, block, n),
        None => faer_syrk_f32(gram, block, n, rows),
    }
}

fn openblas_ssyrk(ssyrk: Ssyrk, gram: &mut [f32], block: &[f32], n: usize) {
    const CBLAS_COL_MAJOR: c_int = 102;
    const CBLAS_NO_TRANS: c_int = 111;
    const CBLAS_LOWER: c_int = 122;
    let max_rows = (c_int::MAX as usize / n.max(1)).max(1);
    for (i, chunk) in block.chunks(max_rows * n).enumerate() {
        let k = chunk.len() / n;
        let beta = if i == 0 { 0.0 } else { 1.0 };
        // SAFETY: as in `openblas_syrk`, with f32 values; beta = 0 on the first chunk makes
        // ssyrk overwrite the lower triangle of `gram` without reading it.
        unsafe {
            ssyrk(
                CBLAS_COL_MAJOR,
                CBLAS_LOWER,
                CBLAS_NO_TRANS,
                n as c_int,
                k as c_int,
                1.0,
                chunk.as_ptr(),
                n as c_int,
                beta,
                gram.as_mut_ptr(),
                n as c_int,
            );
        }
    }
}

fn faer_syrk_f32(gram: &mut [f32], block: &[f32], n: usize, rows: usize) {
    let a = MatRef::from_column_major_slice(block, n, rows);
    let dst = MatMut::from_column_major_slice_mut(gram, n, n);
    matmul(
        dst,
        BlockStructure::TriangularLower,
        Accum::Replace,
        a,
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        1.0f32,
        Par::rayon(0),
    );
}

fn openblas_syrk(blas: &Blas, gram: &mut [f64], block: &[f64], n: usize) {
    const CBLAS_COL_MAJOR: c_int = 102;
    const CBLAS_NO_TRANS: c_int = 111;
    const CBLAS_LOWER: c_int = 122;
    // Row-major rows x n is column-major n x rows: C += A Aᵀ with A = that n x rows matrix.
    // Split very tall blocks so that the dimensions fit in a C int.
    let max_rows = (c_int::MAX as usize / n.max(1)).max(1);
    for chunk in block.chunks(max_rows * n) {
        let k = chunk.len() / n;
        // SAFETY: `chunk` holds n*k f64 values laid out column-major with leading dimension n;
        // `gram` holds n*n values with leading dimension n; dsyrk reads only `chunk` and writes
        // only the lower triangle of `gram`. Sizes fit in c_int by construction.
        unsafe {
            (blas.dsyrk)(
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

fn faer_syrk(gram: &mut [f64], block: &[f64], n: usize, rows: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_equal_the_naive_product() {
        let (n, rows) = (37, 101);
        let mut state = 7u64;
        let block: Vec<f64> = (0..n * rows)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect();
        let mut naive = vec![0.0; n * n];
        for r in 0..rows {
            for j in 0..n {
                for i in j..n {
                    naive[i + j * n] += block[r * n + i] * block[r * n + j];
                }
            }
        }
        let mut via_default = vec![0.0; n * n];
        syrk_lower(&mut via_default, &block, n, rows);
        let mut via_faer = vec![0.0; n * n];
        faer_syrk(&mut via_faer, &block, n, rows);
        for j in 0..n {
            for i in j..n {
                let k = i + j * n;
                assert!(
                    (via_default[k] - naive[k]).abs() < 1e-12,
                    "default backend ({i},{j})"
                );
                assert!((via_faer[k] - naive[k]).abs() < 1e-12, "faer ({i},{j})");
            }
        }
        // float32 products: both backends, within float32 rounding of the f64 product.
        let block32: Vec<f32> = block.iter().map(|&v| v as f32).collect();
        let mut via32 = vec![f32::NAN; n * n];
        syrk_lower_f32(&mut via32, &block32, n, rows);
        let mut via32_faer = vec![f32::NAN; n * n];
        faer_syrk_f32(&mut via32_faer, &block32, n, rows);
        for j in 0..n {
            for i in j..n {
                let k = i + j * n;
                let scale = naive[i + i * n].sqrt() * naive[j + j * n].sqrt();
                for (what, v) in [("ssyrk", via32[k]), ("faer f32", via32_faer[k])] {
                    assert!(
                        (f64::from(v) - naive[k]).abs() <= 1e-5 * scale,
                        "{what} ({i},{j}): {v} vs {}",
                        naive[k]
                    );
                }
            }
        }
        // Whatever the backend, init() reports one consistently.
        assert_eq!(init(), init());
    }
}
