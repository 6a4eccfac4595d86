//! The per-image flattened view: linear CKA between the image x image kernels.
//!
//! CKA libraries compare convolutional layers `[N, C, H, W]` by flattening each image's
//! activations into one feature vector of length `C·H·W`: rows are the N images. The feature-space
//! Gram matrix would then be `(C·H·W)²`, far too large, but linear CKA only needs the two N x N
//! linear kernels `K = X Xᵀ` and `L = Y Yᵀ` (centring the kernels is centring the features).
//!
//! Two ways to build them, with different memory:
//! - [`FlattenedGramAccumulator`] takes blocks of whole images (rows), in any number of calls.
//!   Each new image must be multiplied with every earlier one, so it **keeps all pushed rows**:
//!   memory `8·N·(f1 + f2)` bytes for the rows plus `8·N·(N + 1)` bytes for the two kernels
//!   (packed triangles), where `f1`, `f2` are the flattened widths. Suits moderate `N·f`.
//! - [`FlattenedColumnAccumulator`] takes blocks of features (columns, e.g. one channel's `H·W`
//!   positions) for all N images at once: `K += B Bᵀ`. Memory `16·N²` bytes whatever the widths;
//!   the number of images must be known in advance. Suits `N ≤ 10,000` with any `C·H·W`.
//!
//! Both finish into [`FlattenedKernels`], which computes the biased and debiased linear CKA in
//! O(N²) time and no extra N x N storage.

use super::{cka::debiased_ratio, is_constant, Measures, DEBIASED_MIN_ROWS};
use crate::CoreError;
use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{get_global_parallelism, Accum, Mat, MatRef};

/// Accumulates the image x image linear kernels of two flattened layers from blocks of whole
/// images. Keeps every pushed row (see the [module documentation](self) for memory).
#[derive(Debug, Clone)]
pub struct FlattenedGramAccumulator {
    f1: usize,
    f2: usize,
    images: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    k: Vec<f64>,
    l: Vec<f64>,
}

impl FlattenedGramAccumulator {
    /// An empty accumulator for flattened widths `f1` (net A, e.g. `C·H·W`) and `f2` (net B).
    pub fn new(f1: usize, f2: usize) -> Self {
        Self {
            f1,
            f2,
            images: 0,
            x: Vec::new(),
            y: Vec::new(),
            k: Vec::new(),
            l: Vec::new(),
        }
    }

    /// Images accumulated so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Adds a block of images: `x` holds `b` rows of `f1` values (net A) and `y` the same `b`
    /// images as rows of `f2` values (net B), row-major f64.
    pub fn push_images(&mut self, x: &[f64], y: &[f64]) -> Result<(), CoreError> {
        let rows_a = whole_rows(x.len(), self.f1)?;
        let rows_b = whole_rows(y.len(), self.f2)?;
        if rows_a != rows_b {
            return Err(CoreError::RowMismatch { rows_a, rows_b });
        }
        append_kernel(&mut self.k, &self.x, x, self.f1, self.images, rows_a);
        append_kernel(&mut self.l, &self.y, y, self.f2, self.images, rows_a);
        self.x.extend_from_slice(x);
        self.y.extend_from_slice(y);
        self.images += rows_a;
        Ok(())
    }

    /// Like [`push_images`](Self::push_images), for f32 blocks (converted to f64 first).
    pub fn push_images_f32(&mut self, x: &[f32], y: &[f32]) -> Result<(), CoreError> {
        let to64 = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
        self.push_images(&to64(x), &to64(y))
    }

    /// Appends the images of another accumulator (the result equals pushing them here, up to
    /// floating-point order; CKA does not depend on the order of the images).
    pub fn merge(&mut self, other: &FlattenedGramAccumulator) -> Result<(), CoreError> {
        if (self.f1, self.f2) != (other.f1, other.f2) {
            return Err(CoreError::MergeShape {
                a: (self.f1, self.f2),
                b: (other.f1, other.f2),
            });
        }
        if other.images == 0 {
            return Ok(());
        }
        self.push_images(&other.x, &other.y)
    }

    /// The two kernels accumulated so far.
    pub fn finish(&self) -> FlattenedKernels {
        FlattenedKernels {
            n: self.images,
            k: self.k.clone(),
            l: self.l.clone(),
        }
    }
}

/// Number of rows of `width` values in `len` values.
fn whole_rows(len: usize, width: usize) -> Result<usize, CoreError> {
    if width == 0 || !len.is_multiple_of(width) {
        Err(CoreError::BlockShape {
            got: len,
            expected: width,
        })
    } else {
        Ok(len / width)
    }
}

/// Appends to the packed lower triangle `k` (row-major, `m` rows so far) the `b` rows of the new
/// block `block` (`b x f`) against the `m` stored rows `stored` (`m x f`) and itself.
fn append_kernel(k: &mut Vec<f64>, stored: &[f64], block: &[f64], f: usize, m: usize, b: usize) {
    if b == 0 {
        return;
    }
    let new = MatRef::from_row_major_slice(block, b, f);
    let old = MatRef::from_row_major_slice(stored, m, f);
    let cross = new * old.transpose();
    let inner = new * new.transpose();
    k.reserve(b * m + b * (b + 1) / 2);
    for i in 0..b {
        k.extend((0..m).map(|j| cross[(i, j)]));
        k.extend((0..=i).map(|j| inner[(i, j)]));
    }
}

/// Accumulates the image x image linear kernels of two flattened layers from blocks of feature
/// columns covering all images (memory O(N²), independent of the widths).
#[derive(Debug, Clone)]
pub struct FlattenedColumnAccumulator {
    images: usize,
    k: Mat<f64>,
    l: Mat<f64>,
}

impl FlattenedColumnAccumulator {
    /// An empty accumulator for `images` images.
    pub fn new(images: usize) -> Self {
        Self {
            images,
            k: Mat::zeros(images, images),
            l: Mat::zeros(images, images),
        }
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Adds feature columns of net A: `x` holds `images` rows (one per image, in a fixed image
    /// order) of `c ≥ 1` values, row-major; `c` may differ between calls. Each feature must be
    /// pushed exactly once.
    pub fn push_a(&mut self, x: &[f64]) -> Result<(), CoreError> {
        add_columns(&mut self.k, x, self.images)
    }

    /// Adds feature columns of net B, as [`push_a`](Self::push_a).
    pub fn push_b(&mut self, y: &[f64]) -> Result<(), CoreError> {
        add_columns(&mut self.l, y, self.images)
    }

    /// Adds the kernels of another accumulator fed with other features of the same images.
    pub fn merge(&mut self, other: &FlattenedColumnAccumulator) -> Result<(), CoreError> {
        if self.images != other.images {
            return Err(CoreError::RowMismatch {
                rows_a: self.images,
                rows_b: other.images,
            });
        }
        self.k += &other.k;
        self.l += &other.l;
        Ok(())
    }

    /// The two kernels accumulated so far.
    pub fn finish(&self) -> FlattenedKernels {
        FlattenedKernels {
            n: self.images,
            k: pack_lower(self.k.as_ref()),
            l: pack_lower(self.l.as_ref()),
        }
    }
}

fn add_columns(k: &mut Mat<f64>, block: &[f64], images: usize) -> Result<(), CoreError> {
    if images == 0 || block.is_empty() || !block.len().is_multiple_of(images) {
        return Err(CoreError::BlockShape {
            got: block.len(),
            expected: images,
        });
    }
    let c = block.len() / images;
    let b = MatRef::from_row_major_slice(block, images, c);
    matmul(
        k.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        b,
        BlockStructure::Rectangular,
        b.transpose(),
        BlockStructure::Rectangular,
        1.0,
        get_global_parallelism(),
    );
    Ok(())
}

/// The lower triangle of a square matrix, packed row by row.
fn pack_lower(m: MatRef<'_, f64>) -> Vec<f64> {
    let n = m.nrows();
    let mut out = Vec::with_capacity(n * (n + 1) / 2);
    for i in 0..n {
        out.extend((0..=i).map(|j| m[(i, j)]));
    }
    out
}

/// The two image x image linear kernels `K = X Xᵀ`, `L = Y Yᵀ` of a flattened layer pair (lower
/// triangles, packed), and the CKA computed from them.
#[derive(Debug, Clone, PartialEq)]
pub struct FlattenedKernels {
    n: usize,
    k: Vec<f64>,
    l: Vec<f64>,
}

/// Row sums, diagonal and total of a symmetric packed kernel.
struct KernelSums {
    row: Vec<f64>,
    diag: Vec<f64>,
    total: f64,
    trace: f64,
}

fn kernel_sums(k: &[f64], n: usize) -> KernelSums {
    let mut row = vec![0.0; n];
    let mut diag = vec![0.0; n];
    let mut p = 0;
    for i in 0..n {
        for j in 0..i {
            row[i] += k[p];
            row[j] += k[p];
            p += 1;
        }
        row[i] += k[p];
        diag[i] = k[p];
        p += 1;
    }
    KernelSums {
        total: row.iter().sum(),
        trace: diag.iter().sum(),
        row,
        diag,
    }
}

impl FlattenedKernels {
    /// Kernels given as full symmetric `n x n` matrices, row-major (only the lower triangle is
    /// read).
    pub fn from_full(n: usize, k: &[f64], l: &[f64]) -> Result<Self, CoreError> {
        for m in [k, l] {
            if m.len() != n * n {
                return Err(CoreError::BlockShape {
                    got: m.len(),
                    expected: n,
                });
            }
        }
        let pack = |m: &[f64]| pack_lower(MatRef::from_row_major_slice(m, n, n));
        Ok(Self {
            n,
            k: pack(k),
            l: pack(l),
        })
    }

    /// Number of images N.
    pub fn images(&self) -> usize {
        self.n
    }

    /// Whether either kernel has no variance (see [`super::CONSTANT_TOL`]); CKA is then undefined.
    fn constant(&self, sk: &KernelSums, sl: &KernelSums) -> bool {
        let n = self.n.max(1) as f64;
        is_constant(sk.trace - sk.total / n, sk.trace)
            || is_constant(sl.trace - sl.total / n, sl.trace)
    }

    /// Biased linear CKA `⟨HKH, HLH⟩ / (‖HKH‖_F ‖HLH‖_F)` (H the centring matrix), equal to the
    /// feature-space [`Measures::cka_linear`] of the flattened features. `None` when either layer
    /// has no variance.
    pub fn cka_linear(&self) -> Option<f64> {
        let (sk, sl) = (kernel_sums(&self.k, self.n), kernel_sums(&self.l, self.n));
        if self.constant(&sk, &sl) {
            return None;
        }
        let n = self.n as f64;
        let centre = |s: &KernelSums| {
            let g = s.total / (n * n);
            let r: Vec<f64> = s.row.iter().map(|v| v / n).collect();
            move |i: usize, j: usize, v: f64| v - r[i] - r[j] + g
        };
        let (ck, cl) = (centre(&sk), centre(&sl));
        let (mut kl, mut kk, mut ll) = (0.0, 0.0, 0.0);
        let mut p = 0;
        for i in 0..self.n {
            for j in 0..=i {
                let w = if i == j { 1.0 } else { 2.0 };
                let a = ck(i, j, self.k[p]);
                let b = cl(i, j, self.l[p]);
                kl += w * a * b;
                kk += w * a * a;
                ll += w * b * b;
                p += 1;
            }
        }
        let v = kl / (kk.sqrt() * ll.sqrt());
        v.is_finite().then(|| v.clamp(0.0, 1.0))
    }

    /// Debiased linear CKA: the same ratio with the U-centred kernels (unbiased HSIC, Song et al.
    /// 2012), equal to the feature-space [`Measures::cka_linear_debiased`] of the flattened
    /// features. `None` with fewer than [`DEBIASED_MIN_ROWS`] images, when either layer has no
    /// variance, or when a self term is not positive.
    pub fn cka_linear_debiased(&self) -> Option<f64> {
        if (self.n as u64) < DEBIASED_MIN_ROWS {
            return None;
        }
        let (sk, sl) = (kernel_sums(&self.k, self.n), kernel_sums(&self.l, self.n));
        if self.constant(&sk, &sl) {
            return None;
        }
        let n = self.n as f64;
        // U-centring of K with zeroed diagonal: K̃_ij = K_ij − (r̊_i + r̊_j)/(n−2) + T̊/((n−1)(n−2)),
        // r̊ the off-diagonal row sums, T̊ their total; K̃_ii = 0.
        let ucentre = |s: &KernelSums| {
            let r: Vec<f64> = s
                .row
                .iter()
                .zip(&s.diag)
                .map(|(r, d)| (r - d) / (n - 2.0))
                .collect();
            let g = (s.total - s.trace) / ((n - 1.0) * (n - 2.0));
            move |i: usize, j: usize, v: f64| v - r[i] - r[j] + g
        };
        let (uk, ul) = (ucentre(&sk), ucentre(&sl));
        let (mut kl, mut kk, mut ll) = (0.0, 0.0, 0.0);
        let mut p = 0;
        for i in 0..self.n {
            for j in 0..i {
                let a = uk(i, j, self.k[p]);
                let b = ul(i, j, self.l[p]);
                kl += a * b;
                kk += a * a;
                ll += b * b;
                p += 1;
            }
            p += 1; // diagonal
        }
        debiased_ratio(kl, kk, ll)
    }

    /// [`Measures`] with the two CKA fields filled (the other measures need the feature-space
    /// statistics and are not available in this view), and notes when they are undefined.
    pub fn measures(&self) -> Measures {
        let mut out = Measures {
            cka_linear: self.cka_linear(),
            cka_linear_debiased: self.cka_linear_debiased(),
            ..Measures::default()
        };
        if out.cka_linear.is_none() {
            out.notes.push(
                "cka_linear: undefined, a layer has no variance over the images (or no images)"
                    .to_string(),
            );
        }
        if out.cka_linear_debiased.is_none() {
            out.notes.push(format!(
                "cka_linear_debiased: undefined ({} images; needs at least {DEBIASED_MIN_ROWS}, \
                 variance in both layers and positive self terms)",
                self.n
            ));
        }
        out
    }
}
