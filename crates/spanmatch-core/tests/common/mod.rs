//! Test support: data generators and a straightforward reference implementation of the maximum
//! match on the full activation matrices (iterated least-squares projections).
#![allow(dead_code, unused_imports)]

use faer::Mat;
use spanmatch_core::rng::SplitMix64;

/// A dense activation matrix: `rows x cols`, stored as a faer matrix (rows are samples).
pub type Acts = Mat<f64>;

/// Gaussian matrix.
pub fn randn(rng: &mut SplitMix64, rows: usize, cols: usize) -> Acts {
    Mat::from_fn(rows, cols, |_, _| rng.normal())
}

/// Row-major copy (what the accumulator takes).
pub fn row_major(m: &Acts) -> Vec<f64> {
    let mut v = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            v.push(m[(i, j)]);
        }
    }
    v
}

/// Horizontal concatenation.
pub fn hcat(parts: &[&Acts]) -> Acts {
    let rows = parts[0].nrows();
    let cols: usize = parts.iter().map(|p| p.ncols()).sum();
    let mut out = Mat::zeros(rows, cols);
    let mut c0 = 0;
    for p in parts {
        for j in 0..p.ncols() {
            for i in 0..rows {
                out[(i, c0 + j)] = p[(i, j)];
            }
        }
        c0 += p.ncols();
    }
    out
}

/// Elementwise ReLU.
pub fn relu(m: &Acts) -> Acts {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)].max(0.0))
}

/// A layer pair with a planted shared subspace: `shared` neurons on each side are random
/// combinations of a common `dim`-dimensional basis (plus `noise`), the others are independent.
pub fn planted(
    rng: &mut SplitMix64,
    rows: usize,
    dim: usize,
    shared: usize,
    own_a: usize,
    own_b: usize,
    noise: f64,
) -> (Acts, Acts) {
    let basis = randn(rng, rows, dim);
    let mix_a = randn(rng, dim, shared);
    let mix_b = randn(rng, dim, shared);
    let mut sa = &basis * &mix_a;
    let mut sb = &basis * &mix_b;
    for j in 0..shared {
        for i in 0..rows {
            sa[(i, j)] += noise * rng.normal();
            sb[(i, j)] += noise * rng.normal();
        }
    }
    let oa = randn(rng, rows, own_a);
    let ob = randn(rng, rows, own_b);
    (hcat(&[&sa, &oa]), hcat(&[&sb, &ob]))
}

pub use spanmatch_core::reference::live_columns;

/// Reference maximum match of the live neurons (see `spanmatch_core::reference`).
pub fn reference_max_match(x: &Acts, y: &Acts, eps: f64) -> (Vec<usize>, Vec<usize>) {
    spanmatch_core::reference::max_match(x, y, eps)
}

/// The engine's statistics of a layer pair, accumulated in blocks of `block` rows.
pub fn stats_of(x: &Acts, y: &Acts, block: usize) -> spanmatch_core::JointStats {
    let mut acc = spanmatch_core::GramAccumulator::new(x.ncols(), y.ncols());
    let (xr, yr) = (row_major(x), row_major(y));
    let (n1, n2) = (x.ncols(), y.ncols());
    for start in (0..x.nrows()).step_by(block.max(1)) {
        let end = (start + block).min(x.nrows());
        acc.push_pair(&xr[start * n1..end * n1], &yr[start * n2..end * n2])
            .expect("push");
    }
    acc.finish()
}

/// The engine's problem with default options.
pub fn problem_of(x: &Acts, y: &Acts) -> spanmatch_core::MatchProblem {
    spanmatch_core::MatchProblem::new(&stats_of(x, y, 97), Default::default()).expect("problem")
}

/// Random orthogonal `n x n` matrix (Q of a Gaussian matrix's QR).
pub fn random_orthogonal(rng: &mut SplitMix64, n: usize) -> Acts {
    randn(rng, n, n).qr().compute_Q()
}

/// Blocks of shared dimension 1..=4 (`extra` more neurons on A than the dimension), `unrelated`
/// independent neurons per side, `dups` exact duplicates of earlier A neurons, optional ReLU.
#[allow(clippy::too_many_arguments)]
pub fn shared_blocks(
    rng: &mut SplitMix64,
    rows: usize,
    blocks: usize,
    extra: usize,
    unrelated: usize,
    dups: usize,
    noise: f64,
    relu_data: bool,
) -> (Acts, Acts) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for b in 0..blocks {
        let d = 1 + (b * 7 + 3) % 4;
        let basis = randn(rng, rows, d);
        let mut xa = &basis * randn(rng, d, d + extra);
        let mut yb = &basis * randn(rng, d, d);
        for j in 0..xa.ncols() {
            for i in 0..rows {
                xa[(i, j)] += noise * rng.normal();
            }
        }
        for j in 0..yb.ncols() {
            for i in 0..rows {
                yb[(i, j)] += noise * rng.normal();
            }
        }
        xs.push(xa);
        ys.push(yb);
    }
    xs.push(randn(rng, rows, unrelated));
    ys.push(randn(rng, rows, unrelated));
    let mut x = hcat(&xs.iter().collect::<Vec<_>>());
    let y = hcat(&ys.iter().collect::<Vec<_>>());
    if dups > 0 {
        let n = x.ncols();
        let dup = Mat::from_fn(rows, dups, |i, j| x[(i, (j * 5) % n)]);
        x = hcat(&[&x, &dup]);
    }
    if relu_data {
        (relu(&x), relu(&y))
    } else {
        (x, y)
    }
}
