//! Streamed sufficient statistics of two activation matrices.

use crate::gram_kernel::{syrk_lower, syrk_lower_f32};
use crate::CoreError;
use faer::Mat;
use std::ops::Range;

/// Values before the vectors in [`GramAccumulator::to_flat`]: n1, n2, rows, Σa², Σab, Σb².
const FLAT_HEADER: usize = 6;

/// Accumulates, one row block at a time, everything spanmatch needs from two activation matrices
/// X (net A, `n1` neurons) and Y (net B, `n2` neurons) observed on the same inputs.
///
/// Rows are samples (an image, or an image-position pair for a convolutional layer); columns are
/// neurons. Kept, in f64: the joint Gram matrix of `[X | Y]` (lower triangle), the column sums,
/// the row count, and the row-norm moments used by the debiased CKA estimator. Memory is
/// O((n1 + n2)^2) regardless of the number of rows.
#[derive(Debug, Clone)]
pub struct GramAccumulator {
    n1: usize,
    n2: usize,
    gram: Vec<f64>,
    sums: Vec<f64>,
    rows: u64,
    moments: RowNormMoments,
    scratch: Vec<f64>,
    /// One float32 block product (lower triangle), for [`push_joint_f32`](Self::push_joint_f32).
    scratch32: Vec<f32>,
}

/// Moments of the per-row squared norms `a_i = ||x_i||²`, `b_i = ||y_i||²` (rows of X and Y).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowNormMoments {
    /// `Σ_i a_i m_i`, where `m_i = [x_i | y_i]` (length n1 + n2).
    pub weighted_by_a: Vec<f64>,
    /// `Σ_i b_i m_i` (length n1 + n2).
    pub weighted_by_b: Vec<f64>,
    /// `Σ_i a_i²`.
    pub aa: f64,
    /// `Σ_i a_i b_i`.
    pub ab: f64,
    /// `Σ_i b_i²`.
    pub bb: f64,
}

impl GramAccumulator {
    /// An empty accumulator for `n1` neurons of net A and `n2` neurons of net B.
    pub fn new(n1: usize, n2: usize) -> Self {
        let n = n1 + n2;
        Self {
            n1,
            n2,
            gram: vec![0.0; n * n],
            sums: vec![0.0; n],
            rows: 0,
            moments: RowNormMoments {
                weighted_by_a: vec![0.0; n],
                weighted_by_b: vec![0.0; n],
                ..RowNormMoments::default()
            },
            scratch: Vec::new(),
            scratch32: Vec::new(),
        }
    }

    /// Neurons of net A.
    pub fn n1(&self) -> usize {
        self.n1
    }

    /// Neurons of net B.
    pub fn n2(&self) -> usize {
        self.n2
    }

    /// Empties the accumulator (same widths), keeping its memory: filling a fresh one would
    /// fault in new pages for the Gram matrix again (about a second per GB on the machines we
    /// measured), which the bootstrap's chunks would pay once per chunk.
    pub fn clear(&mut self) {
        self.gram.fill(0.0);
        self.sums.fill(0.0);
        self.rows = 0;
        self.moments.weighted_by_a.fill(0.0);
        self.moments.weighted_by_b.fill(0.0);
        (self.moments.aa, self.moments.ab, self.moments.bb) = (0.0, 0.0, 0.0);
    }

    /// Rows accumulated so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds a joint row block: `block` holds whole rows of `n1 + n2` values, row-major, each row
    /// being `[x_i | y_i]`.
    pub fn push_joint(&mut self, block: &[f64]) -> Result<(), CoreError> {
        let n = self.n1 + self.n2;
        if n == 0 || !block.len().is_multiple_of(n) {
            return Err(CoreError::BlockShape {
                got: block.len(),
                expected: n,
            });
        }
        let rows = block.len() / n;
        syrk_lower(&mut self.gram, block, n, rows);
        self.add_first_order(block, rows);
        self.rows += rows as u64;
        Ok(())
    }

    /// Adds a float32 row block with its Gram product computed in float32 (`ssyrk`: about twice
    /// the speed of float64) and then added to the float64 statistics. Each row of `block` is
    /// `[x_i | y_i | 1 | a_i | b_i]`: the joint row, then 1 and the squared norms
    /// `a_i = ||x_i||²`, `b_i = ||y_i||²` (`n1 + n2 + 3` values; see
    /// [`augment_f32`](Self::augment_f32)), so that the same product also gives the column sums
    /// (`Σ m_i`) and the row-norm moments (`Σ a_i m_i`, `Σ a_i²`, ...).
    ///
    /// Accuracy: across blocks the sums are float64; within a block the Gram matrix, the column
    /// sums and `Σ a_i m_i`, `Σ b_i m_i` sum `rows` float32 terms, so their relative error is of
    /// the order of `√rows · 6e-8` typically (`rows · 6e-8` at worst); the squared norms are
    /// float32, their products `Σ a_i²`, `Σ a_i b_i`, `Σ b_i²` float64.
    pub fn push_joint_f32(&mut self, block: &[f32]) -> Result<(), CoreError> {
        let n = self.n1 + self.n2;
        let w = n + 3;
        if n == 0 || !block.len().is_multiple_of(w) {
            return Err(CoreError::BlockShape {
                got: block.len(),
                expected: w,
            });
        }
        let rows = block.len() / w;
        if rows == 0 {
            return Ok(());
        }
        let mut g = std::mem::take(&mut self.scratch32);
        g.resize(w * w, 0.0);
        syrk_lower_f32(&mut g, block, w, rows);
        let at = |i: usize, j: usize| f64::from(g[i + j * w]);
        for j in 0..n {
            let col = &g[j * w + j..j * w + n];
            for (d, &v) in self.gram[j * n + j..(j + 1) * n].iter_mut().zip(col) {
                *d += f64::from(v);
            }
            self.sums[j] += at(n, j);
            self.moments.weighted_by_a[j] += at(n + 1, j);
            self.moments.weighted_by_b[j] += at(n + 2, j);
        }
        // Σa², Σab, Σb² in float64 from the float32 norms (the debiased CKA subtracts them
        // from terms of nearly the same size).
        let m = &mut self.moments;
        for row in block.chunks_exact(w) {
            let (a, b) = (f64::from(row[n + 1]), f64::from(row[n + 2]));
            m.aa += a * a;
            m.ab += a * b;
            m.bb += b * b;
        }
        self.scratch32 = g;
        self.rows += rows as u64;
        Ok(())
    }

    /// Fills the last three values of each row of an augmented float32 block (rows of
    /// `n1 + n2 + 3` values whose first `n1 + n2` are the joint row): 1, `||x_i||²` and
    /// `||y_i||²` in float32. Returns false when a squared norm is not finite (a NaN or
    /// infinite value in the row, or values whose squares overflow float32).
    pub fn augment_f32(block: &mut [f32], n1: usize, n2: usize) -> bool {
        augment_rows(block, n1, n2)
    }

    /// Adds a row block given as separate blocks of X (`rows x n1`) and Y (`rows x n2`), both
    /// row-major f64.
    pub fn push_pair(&mut self, x: &[f64], y: &[f64]) -> Result<(), CoreError> {
        self.push_pair_with(x, y, |v| v)
    }

    /// Like [`push_pair`](Self::push_pair), for f32 blocks (converted to f64 before any product).
    pub fn push_pair_f32(&mut self, x: &[f32], y: &[f32]) -> Result<(), CoreError> {
        self.push_pair_with(x, y, f64::from)
    }

    fn push_pair_with<T: Copy>(
        &mut self,
        x: &[T],
        y: &[T],
        to_f64: impl Fn(T) -> f64,
    ) -> Result<(), CoreError> {
        let (n1, n2) = (self.n1, self.n2);
        let rows_of = |len: usize, width: usize| -> Result<usize, CoreError> {
            if width == 0 || !len.is_multiple_of(width) {
                Err(CoreError::BlockShape {
                    got: len,
                    expected: width,
                })
            } else {
                Ok(len / width)
            }
        };
        let (rows_a, rows_b) = (rows_of(x.len(), n1)?, rows_of(y.len(), n2)?);
        if rows_a != rows_b {
            return Err(CoreError::RowMismatch { rows_a, rows_b });
        }
        let mut joint = std::mem::take(&mut self.scratch);
        joint.clear();
        joint.reserve(rows_a * (n1 + n2));
        for (xr, yr) in x.chunks_exact(n1).zip(y.chunks_exact(n2)) {
            joint.extend(xr.iter().map(|&v| to_f64(v)));
            joint.extend(yr.iter().map(|&v| to_f64(v)));
        }
        let result = self.push_joint(&joint);
        self.scratch = joint;
        result
    }

    fn add_first_order<T: Copy + Into<f64>>(&mut self, block: &[T], rows: usize) {
        let (n1, n) = (self.n1, self.n1 + self.n2);
        let block = &block[..rows * n];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                unsafe { first_order_avx2(&mut self.sums, &mut self.moments, block, n1, n) };
                return;
            }
        }
        first_order(&mut self.sums, &mut self.moments, block, n1, n);
    }

    /// Adds the statistics of another accumulator fed with a disjoint set of rows. The result is
    /// the same as one accumulator fed with both sets (up to floating-point summation order).
    pub fn merge(&mut self, other: &GramAccumulator) -> Result<(), CoreError> {
        if (self.n1, self.n2) != (other.n1, other.n2) {
            return Err(CoreError::MergeShape {
                a: (self.n1, self.n2),
                b: (other.n1, other.n2),
            });
        }
        let add = |dst: &mut [f64], src: &[f64]| dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        add(&mut self.gram, &other.gram);
        add(&mut self.sums, &other.sums);
        add(
            &mut self.moments.weighted_by_a,
            &other.moments.weighted_by_a,
        );
        add(
            &mut self.moments.weighted_by_b,
            &other.moments.weighted_by_b,
        );
        self.moments.aa += other.moments.aa;
        self.moments.ab += other.moments.ab;
        self.moments.bb += other.moments.bb;
        self.rows += other.rows;
        Ok(())
    }

    /// Number of values of [`to_flat`](Self::to_flat) for `n1 + n2 = n` neurons.
    pub fn flat_len(n1: usize, n2: usize) -> usize {
        let n = n1 + n2;
        FLAT_HEADER + 3 * n + n * n
    }

    /// The whole state as one flat f64 vector, exactly: `[n1, n2, rows, Σa², Σab, Σb², sums (n),
    /// Σ a·m (n), Σ b·m (n), Gram (n·n, column-major, lower triangle meaningful)]`. This is what
    /// pickling, Dask chunks and a distributed `all_reduce` carry: statistics of disjoint rows
    /// add up element-wise past the two widths (see [`from_flat`](Self::from_flat)).
    pub fn to_flat(&self) -> Vec<f64> {
        let m = &self.moments;
        let mut v = Vec::with_capacity(Self::flat_len(self.n1, self.n2));
        v.extend([
            self.n1 as f64,
            self.n2 as f64,
            self.rows as f64,
            m.aa,
            m.ab,
            m.bb,
        ]);
        v.extend_from_slice(&self.sums);
        v.extend_from_slice(&m.weighted_by_a);
        v.extend_from_slice(&m.weighted_by_b);
        v.extend_from_slice(&self.gram);
        v
    }

    /// Rebuilds an accumulator from [`to_flat`](Self::to_flat); bit-exact round trip. Fails when
    /// the length does not fit the widths it announces or a count is not a whole number.
    pub fn from_flat(v: &[f64]) -> Result<Self, CoreError> {
        let bad = |reason: String| CoreError::FlatState { reason };
        if v.len() < FLAT_HEADER {
            return Err(bad(format!("{} values, fewer than the header", v.len())));
        }
        let count = |x: f64, what: &str| -> Result<usize, CoreError> {
            if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
                Ok(x as usize)
            } else {
                Err(bad(format!("{what} = {x} is not a count")))
            }
        };
        let (n1, n2) = (count(v[0], "n1")?, count(v[1], "n2")?);
        let rows = count(v[2], "rows")? as u64;
        if v.len() != Self::flat_len(n1, n2) {
            return Err(bad(format!(
                "{} values, but {n1} + {n2} neurons need {}",
                v.len(),
                Self::flat_len(n1, n2)
            )));
        }
        let n = n1 + n2;
        let part = |k: usize| &v[FLAT_HEADER + k * n..FLAT_HEADER + (k + 1) * n];
        Ok(Self {
            n1,
            n2,
            gram: v[FLAT_HEADER + 3 * n..].to_vec(),
            sums: part(0).to_vec(),
            rows,
            moments: RowNormMoments {
                weighted_by_a: part(1).to_vec(),
                weighted_by_b: part(2).to_vec(),
                aa: v[3],
                ab: v[4],
                bb: v[5],
            },
            scratch: Vec::new(),
            scratch32: Vec::new(),
        })
    }

    /// An accumulator from statistics computed elsewhere (on a GPU, in another process): `gram`
    /// is the full symmetric `(n1 + n2)²` Gram matrix of `[X | Y]` (row- or column-major, it is
    /// symmetric), `sums` the column sums, and `moments` the row-norm moments.
    pub fn from_parts(
        n1: usize,
        n2: usize,
        rows: u64,
        gram: &[f64],
        sums: &[f64],
        moments: RowNormMoments,
    ) -> Result<Self, CoreError> {
        let n = n1 + n2;
        let check = |what: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(CoreError::FlatState {
                    reason: format!("{what} has {got} values, expected {want}"),
                })
            }
        };
        check("gram", gram.len(), n * n)?;
        check("sums", sums.len(), n)?;
        check("weighted_by_a", moments.weighted_by_a.len(), n)?;
        check("weighted_by_b", moments.weighted_by_b.len(), n)?;
        Ok(Self {
            n1,
            n2,
            gram: gram.to_vec(),
            sums: sums.to_vec(),
            rows,
            moments,
            scratch: Vec::new(),
            scratch32: Vec::new(),
        })
    }

    /// The finished statistics (the Gram matrix made symmetric).
    pub fn finish(&self) -> JointStats {
        let n = self.n1 + self.n2;
        let gram = symmetric_from_lower(&self.gram, n);
        JointStats {
            n1: self.n1,
            n2: self.n2,
            rows: self.rows,
            gram,
            sums: self.sums.clone(),
            moments: self.moments.clone(),
        }
    }
}

/// Columns per task (and rows per tile) of [`symmetric_from_lower`].
const MIRROR_TILE: usize = 64;

/// A raw pointer that may cross threads (each task writes its own columns).
#[derive(Clone, Copy)]
struct ColumnsPtr(*mut f64);
// SAFETY: the tasks of `symmetric_from_lower` write disjoint columns through it.
unsafe impl Send for ColumnsPtr {}
unsafe impl Sync for ColumnsPtr {}

impl ColumnsPtr {
    /// The element `offset` places past the start.
    ///
    /// # Safety
    /// `offset` must lie inside the allocation.
    unsafe fn at(&self, offset: usize) -> *mut f64 {
        // SAFETY: by the caller.
        unsafe { self.0.add(offset) }
    }
}

/// The full symmetric `n x n` matrix from the lower triangle of `lower` (column-major, entry
/// (i, j) at `i + j n`, i ≥ j). Columns in blocks of [`MIRROR_TILE`] on all threads, the upper
/// part copied in square tiles (each tile reads columns of the lower triangle contiguously). The
/// output is written straight into fresh memory: its page faults are taken in parallel and
/// nothing is zeroed first (at 8192 x 8192 the previous element-wise copy took about a second).
fn symmetric_from_lower(lower: &[f64], n: usize) -> Mat<f64> {
    use rayon::prelude::*;
    assert_eq!(lower.len(), n * n);
    let mut out = Mat::<f64>::with_capacity(n, n);
    // SAFETY: the capacity is at least n x n; every entry is written below (once, by the task
    // owning its column) before the matrix is returned or read.
    unsafe { out.set_dims(n, n) };
    if n == 0 {
        return out;
    }
    let stride = out.col_stride() as usize;
    let base = ColumnsPtr(out.as_ptr_mut());
    (0..n.div_ceil(MIRROR_TILE))
        .into_par_iter()
        .for_each(|block| {
            let (j0, j1) = (block * MIRROR_TILE, ((block + 1) * MIRROR_TILE).min(n));
            for j in j0..j1 {
                // SAFETY: column j (stride ≥ n) lies in the allocation and belongs to this task.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        lower.as_ptr().add(j * n + j),
                        base.at(j * stride + j),
                        n - j,
                    );
                }
            }
            for i0 in (0..j1).step_by(MIRROR_TILE) {
                for i in i0..(i0 + MIRROR_TILE).min(j1) {
                    let row = &lower[i * n..(i + 1) * n];
                    for (j, &v) in row.iter().enumerate().take(j1).skip(j0.max(i + 1)) {
                        // SAFETY: entry (i, j), i < j, of a column of this task.
                        unsafe { base.at(j * stride + i).write(v) };
                    }
                }
            }
        });
    out
}

fn augment_rows(block: &mut [f32], n1: usize, n2: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { augment_rows_avx2(block, n1, n2) };
        }
    }
    augment_rows_body(block, n1, n2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn augment_rows_avx2(block: &mut [f32], n1: usize, n2: usize) -> bool {
    augment_rows_body(block, n1, n2)
}

#[inline(always)]
fn augment_rows_body(block: &mut [f32], n1: usize, n2: usize) -> bool {
    let n = n1 + n2;
    let mut ok = true;
    for row in block.chunks_exact_mut(n + 3) {
        let a = sum_sq_f32(&row[..n1]);
        let b = sum_sq_f32(&row[n1..n]);
        ok &= a.is_finite() & b.is_finite();
        row[n] = 1.0;
        row[n + 1] = a;
        row[n + 2] = b;
    }
    ok
}

/// `Σ x²` in f32 over 16 interleaved partial sums (vectorises; fixed order).
#[inline(always)]
fn sum_sq_f32(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| v * v).sum();
    let mut half = [0.0f32; 8];
    for k in 0..8 {
        half[k] = acc[k] + acc[k + 8];
    }
    ((half[0] + half[4]) + (half[1] + half[5])) + ((half[2] + half[6]) + (half[3] + half[7])) + tail
}

/// [`first_order`] compiled for AVX2 (4 f64 lanes instead of SSE2's 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn first_order_avx2<T: Copy + Into<f64>>(
    sums: &mut [f64],
    m: &mut RowNormMoments,
    block: &[T],
    n1: usize,
    n: usize,
) {
    first_order(sums, m, block, n1, n);
}

/// Adds the column sums and row-norm moments of whole rows of `n` values (`n1` of net A).
#[inline(always)]
fn first_order<T: Copy + Into<f64>>(
    sums: &mut [f64],
    m: &mut RowNormMoments,
    block: &[T],
    n1: usize,
    n: usize,
) {
    let RowNormMoments {
        weighted_by_a,
        weighted_by_b,
        aa,
        ab,
        bb,
    } = m;
    let (sums, wa, wb) = (
        &mut sums[..n],
        &mut weighted_by_a[..n],
        &mut weighted_by_b[..n],
    );
    for row in block.chunks_exact(n) {
        let row = &row[..n];
        let a = sum_sq(&row[..n1]);
        let b = sum_sq(&row[n1..]);
        *aa += a * a;
        *ab += a * b;
        *bb += b * b;
        for (((s, x), y), &v) in sums
            .iter_mut()
            .zip(wa.iter_mut())
            .zip(wb.iter_mut())
            .zip(row)
        {
            let v: f64 = v.into();
            *s += v;
            *x += a * v;
            *y += b * v;
        }
    }
}

/// `Σ x²` in f64, over 8 interleaved partial sums (so that it vectorises; fixed order).
#[inline(always)]
fn sum_sq<T: Copy + Into<f64>>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v: f64 = v.into();
            *a += v * v;
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| v.into() * v.into())
        .sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Finished statistics of a layer pair: the input of every computation of the core.
#[derive(Debug, Clone)]
pub struct JointStats {
    /// Neurons of net A (the first `n1` rows/columns of `gram`).
    pub n1: usize,
    /// Neurons of net B (the last `n2` rows/columns of `gram`).
    pub n2: usize,
    /// Number of rows (samples) accumulated.
    pub rows: u64,
    /// The symmetric `(n1 + n2) x (n1 + n2)` Gram matrix of `[X | Y]` (uncentred).
    pub gram: Mat<f64>,
    /// Column sums of `[X | Y]`.
    pub sums: Vec<f64>,
    /// Row-norm moments (for the debiased CKA estimator).
    pub moments: RowNormMoments,
}

impl JointStats {
    /// Builds the statistics of two whole matrices at once (`x`: `rows x n1`, `y`: `rows x n2`,
    /// row-major). Convenient for small data and tests.
    pub fn from_matrices(x: &[f64], y: &[f64], n1: usize, n2: usize) -> Result<Self, CoreError> {
        let mut acc = GramAccumulator::new(n1, n2);
        acc.push_pair(x, y)?;
        Ok(acc.finish())
    }

    /// Fails with [`CoreError::NonFinite`] if any statistic is NaN or infinite.
    pub fn check_finite(&self) -> Result<(), CoreError> {
        let m = &self.moments;
        let finite = self
            .gram
            .col_iter()
            .all(|c| c.iter().all(|v| v.is_finite()))
            && self.sums.iter().all(|v| v.is_finite())
            && m.weighted_by_a.iter().all(|v| v.is_finite())
            && m.weighted_by_b.iter().all(|v| v.is_finite())
            && m.aa.is_finite()
            && m.ab.is_finite()
            && m.bb.is_finite();
        if finite {
            Ok(())
        } else {
            Err(CoreError::NonFinite)
        }
    }

    /// The statistics of one side against itself (`[X | X]` for side A), derived without another
    /// pass: the self-comparison control, which must match fully at every ε.
    pub fn self_pair(&self, side: crate::Side) -> JointStats {
        let (off, n) = match side {
            crate::Side::A => (0, self.n1),
            crate::Side::B => (self.n1, self.n2),
        };
        let idx = |i: usize| off + i % n;
        let m = &self.moments;
        let (w, sq) = match side {
            crate::Side::A => (&m.weighted_by_a, m.aa),
            crate::Side::B => (&m.weighted_by_b, m.bb),
        };
        let w2: Vec<f64> = (0..2 * n).map(|i| w[idx(i)]).collect();
        JointStats {
            n1: n,
            n2: n,
            rows: self.rows,
            gram: Mat::from_fn(2 * n, 2 * n, |i, j| self.gram[(idx(i), idx(j))]),
            sums: (0..2 * n).map(|i| self.sums[idx(i)]).collect(),
            moments: RowNormMoments {
                weighted_by_a: w2.clone(),
                weighted_by_b: w2,
                aa: sq,
                ab: sq,
                bb: sq,
            },
        }
    }

    /// The Gram matrix of the column-centred data, `Gram - s sᵀ / rows`.
    pub fn centered_gram(&self) -> Mat<f64> {
        let n = self.n1 + self.n2;
        self.centered_block(0..n, 0..n)
    }

    /// The block `rows x cols` of [`centered_gram`](Self::centered_gram), equal to it entry for
    /// entry, without building the whole matrix.
    pub fn centered_block(&self, rows: Range<usize>, cols: Range<usize>) -> Mat<f64> {
        let d = self.rows.max(1) as f64;
        let sums = &self.sums[rows.clone()];
        let mut out = Mat::<f64>::zeros(rows.len(), cols.len());
        for (k, j) in cols.enumerate() {
            let g = &self
                .gram
                .col(j)
                .try_as_col_major()
                .expect("column-major")
                .as_slice()[rows.clone()];
            let dst = out
                .col_mut(k)
                .try_as_col_major_mut()
                .expect("column-major")
                .as_slice_mut();
            let sj = self.sums[j];
            for ((o, &gij), &si) in dst.iter_mut().zip(g).zip(sums) {
                *o = gij - si * sj / d;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_accumulator_equals_a_fresh_one() {
        let (n1, n2) = (3, 2);
        let block = |seed: u64| -> Vec<f64> {
            let mut rng = crate::rng::SplitMix64::new(seed);
            (0..7 * (n1 + n2)).map(|_| rng.normal()).collect()
        };
        let mut reused = GramAccumulator::new(n1, n2);
        reused.push_joint(&block(1)).unwrap();
        reused.clear();
        reused.push_joint(&block(2)).unwrap();
        let mut fresh = GramAccumulator::new(n1, n2);
        fresh.push_joint(&block(2)).unwrap();
        assert_eq!(reused.to_flat(), fresh.to_flat());
        assert_eq!(reused.rows(), 7);
    }

    #[test]
    fn symmetric_from_lower_mirrors_every_entry() {
        // Sizes around the tile (64): empty, one, a partial tile, exactly one, several.
        for n in [0usize, 1, 5, 63, 64, 65, 130, 200] {
            // Lower triangle with distinct values, garbage above the diagonal.
            let lower: Vec<f64> = (0..n * n)
                .map(|k| {
                    let (i, j) = (k % n, k / n);
                    if i >= j {
                        (i * 1000 + j) as f64
                    } else {
                        -1.0
                    }
                })
                .collect();
            let m = symmetric_from_lower(&lower, n);
            assert_eq!((m.nrows(), m.ncols()), (n, n));
            for j in 0..n {
                for i in 0..n {
                    let (r, c) = if i >= j { (i, j) } else { (j, i) };
                    assert_eq!(m[(i, j)], (r * 1000 + c) as f64, "n {n} ({i}, {j})");
                }
            }
        }
    }

    fn rows(n: usize, count: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n * count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.3
            })
            .collect()
    }

    #[test]
    fn float32_blocks_agree_with_float64_to_float32_rounding() {
        let (n1, n2) = (13, 9);
        let n = n1 + n2;
        let mut exact = GramAccumulator::new(n1, n2);
        let mut fast = GramAccumulator::new(n1, n2);
        for (seed, count) in [(1, 300), (2, 7), (3, 1000)] {
            let block = rows(n, count, seed);
            // The f32 values themselves, in f64: only the products' rounding differs.
            let as32: Vec<f32> = block.iter().map(|&v| v as f32).collect();
            let back: Vec<f64> = as32.iter().map(|&v| f64::from(v)).collect();
            exact.push_joint(&back).unwrap();
            let mut aug = Vec::with_capacity(count * (n + 3));
            for r in as32.chunks_exact(n) {
                aug.extend_from_slice(r);
                aug.extend([f32::NAN; 3]);
            }
            assert!(GramAccumulator::augment_f32(&mut aug, n1, n2));
            fast.push_joint_f32(&aug).unwrap();
        }
        let (e, f) = (exact.finish(), fast.finish());
        assert_eq!(e.rows, f.rows);
        for i in 0..n {
            for j in 0..n {
                let scale = (e.gram[(i, i)] * e.gram[(j, j)]).sqrt();
                let d = (e.gram[(i, j)] - f.gram[(i, j)]).abs();
                assert!(d <= 1e-5 * scale, "gram ({i},{j}): {d} of {scale}");
            }
        }
        let close = |x: f64, y: f64, scale: f64| (x - y).abs() <= 1e-5 * scale.abs().max(1e-300);
        let m = (&e.moments, &f.moments);
        let (sa, sb) = (m.0.aa.sqrt(), m.0.bb.sqrt());
        for j in 0..n {
            let col = e.gram[(j, j)].sqrt();
            assert!(close(e.sums[j], f.sums[j], col * (e.rows as f64).sqrt()));
            assert!(close(m.0.weighted_by_a[j], m.1.weighted_by_a[j], sa * col));
            assert!(close(m.0.weighted_by_b[j], m.1.weighted_by_b[j], sb * col));
        }
        assert!(close(m.0.aa, m.1.aa, m.0.aa));
        assert!(close(m.0.ab, m.1.ab, sa * sb));
        assert!(close(m.0.bb, m.1.bb, m.0.bb));
        assert!(fast.push_joint_f32(&[1.0; 5]).is_err());
        let mut bad = vec![1.0f32; 2 * (n + 3)];
        bad[n + 3 + 4] = f32::INFINITY;
        assert!(!GramAccumulator::augment_f32(&mut bad, n1, n2));
    }
}
