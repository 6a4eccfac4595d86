//! Streamed sufficient statistics of two activation matrices.

use crate::gram_kernel::syrk_lower;
use crate::CoreError;
use faer::Mat;

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

    fn add_first_order(&mut self, block: &[f64], rows: usize) {
        let n = self.n1 + self.n2;
        let m = &mut self.moments;
        for row in block.chunks_exact(n).take(rows) {
            let (xr, yr) = row.split_at(self.n1);
            let a: f64 = xr.iter().map(|v| v * v).sum();
            let b: f64 = yr.iter().map(|v| v * v).sum();
            m.aa += a * a;
            m.ab += a * b;
            m.bb += b * b;
            for (((s, wa), wb), &v) in self
                .sums
                .iter_mut()
                .zip(m.weighted_by_a.iter_mut())
                .zip(m.weighted_by_b.iter_mut())
                .zip(row)
            {
                *s += v;
                *wa += a * v;
                *wb += b * v;
            }
        }
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
        })
    }

    /// The finished statistics (the Gram matrix made symmetric).
    pub fn finish(&self) -> JointStats {
        let n = self.n1 + self.n2;
        let gram = Mat::from_fn(n, n, |i, j| {
            if i >= j {
                self.gram[i + j * n]
            } else {
                self.gram[j + i * n]
            }
        });
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
        let d = self.rows.max(1) as f64;
        Mat::from_fn(n, n, |i, j| {
            self.gram[(i, j)] - self.sums[i] * self.sums[j] / d
        })
    }
}
