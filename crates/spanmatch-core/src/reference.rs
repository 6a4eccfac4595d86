//! A straightforward reference implementation of the maximum match and of v-minimal matches on
//! the full activation matrices, for tests and benchmarks.
//!
//! It follows the definitions literally: repeat, drop every neuron whose sine to the
//! other side's span exceeds ε, until nothing changes; each sine is a least-squares projection of
//! the full activation vector onto an orthonormal basis of the span (thin SVD of the normalised
//! columns, singular values below [`REFERENCE_RANK_TOL`] of the largest dropped). Its cost grows
//! with the number of rows and with every round and every ε; it shares no code with the engine.

use crate::tolerance::{DEAD_NORM_TOL, SINE_TOL};
use crate::Side;
use faer::Mat;

/// Relative singular-value cutoff of the reference's span bases (columns normalised first).
pub const REFERENCE_RANK_TOL: f64 = 1e-8;

fn col_norm(m: &Mat<f64>, j: usize) -> f64 {
    m.col(j).norm_l2()
}

/// Orthonormal basis of the span of the given columns of `m` (rows are samples).
pub fn span_basis(m: &Mat<f64>, cols: &[usize]) -> Mat<f64> {
    let rows = m.nrows();
    if cols.is_empty() {
        return Mat::zeros(rows, 0);
    }
    let sub = Mat::from_fn(rows, cols.len(), |i, k| {
        m[(i, cols[k])] / col_norm(m, cols[k])
    });
    let Ok(svd) = sub.thin_svd() else {
        // Fall back to a QR basis if the SVD does not converge (never seen on test data).
        return sub.qr().compute_thin_Q();
    };
    let s = svd.S().column_vector();
    let smax = (0..s.nrows()).map(|i| s[i]).fold(0.0, f64::max);
    let keep: Vec<usize> = (0..s.nrows())
        .filter(|&i| s[i] > REFERENCE_RANK_TOL * smax)
        .collect();
    let u = svd.U();
    Mat::from_fn(rows, keep.len(), |i, k| u[(i, keep[k])])
}

/// Sine of the angle between column `j` of `m` and the span of the orthonormal `basis`.
pub fn sine_to(m: &Mat<f64>, j: usize, basis: &Mat<f64>) -> f64 {
    let x = m.col(j);
    let coef = basis.transpose() * x;
    let proj = basis * &coef;
    let r2: f64 = (0..m.nrows()).map(|i| (x[i] - proj[i]).powi(2)).sum();
    r2.sqrt() / x.norm_l2()
}

/// Live columns of a layer pair: norm above [`DEAD_NORM_TOL`] times the largest norm of both.
pub fn live_columns(x: &Mat<f64>, y: &Mat<f64>) -> (Vec<usize>, Vec<usize>) {
    let nx: Vec<f64> = (0..x.ncols()).map(|j| col_norm(x, j)).collect();
    let ny: Vec<f64> = (0..y.ncols()).map(|j| col_norm(y, j)).collect();
    let max = nx.iter().chain(&ny).cloned().fold(0.0, f64::max);
    let cut = DEAD_NORM_TOL * max;
    (
        (0..x.ncols()).filter(|&j| nx[j] > cut).collect(),
        (0..y.ncols()).filter(|&j| ny[j] > cut).collect(),
    )
}

/// Maximum match at `eps` among the given columns of `x` (net A) and `y` (net B): iterate
/// least-squares projections, dropping neurons whose sine exceeds `max(eps, SINE_TOL)`.
pub fn max_match_within(
    x: &Mat<f64>,
    y: &Mat<f64>,
    mut a: Vec<usize>,
    mut b: Vec<usize>,
    eps: f64,
) -> (Vec<usize>, Vec<usize>) {
    let limit = eps.max(SINE_TOL);
    loop {
        let by = span_basis(y, &b);
        let a2: Vec<usize> = a
            .iter()
            .copied()
            .filter(|&j| sine_to(x, j, &by) <= limit)
            .collect();
        let bx = span_basis(x, &a2);
        let b2: Vec<usize> = b
            .iter()
            .copied()
            .filter(|&j| sine_to(y, j, &bx) <= limit)
            .collect();
        if a2.len() == a.len() && b2.len() == b.len() {
            return (a2, b2);
        }
        a = a2;
        b = b2;
    }
}

/// Maximum match at `eps` of the live neurons of the two layers (dead neurons dropped).
pub fn max_match(x: &Mat<f64>, y: &Mat<f64>, eps: f64) -> (Vec<usize>, Vec<usize>) {
    let (a, b) = live_columns(x, y);
    max_match_within(x, y, a, b, eps)
}

/// The v-minimal match of the reference algorithm in the deterministic order (the maximum
/// match's A neurons by index, then its B neurons), recomputing the maximum match from scratch
/// at every step.
pub fn v_minimal(
    x: &Mat<f64>,
    y: &Mat<f64>,
    eps: f64,
    v: (Side, usize),
) -> (Vec<usize>, Vec<usize>) {
    let (mut sa, mut sb) = max_match(x, y, eps);
    let order: Vec<(Side, usize)> = sa
        .iter()
        .map(|&i| (Side::A, i))
        .chain(sb.iter().map(|&j| (Side::B, j)))
        .collect();
    for u in order {
        if u == v {
            continue;
        }
        let (ta, tb): (Vec<usize>, Vec<usize>) = match u.0 {
            Side::A if sa.contains(&u.1) => (
                sa.iter().copied().filter(|&i| i != u.1).collect(),
                sb.clone(),
            ),
            Side::B if sb.contains(&u.1) => (
                sa.clone(),
                sb.iter().copied().filter(|&j| j != u.1).collect(),
            ),
            _ => continue,
        };
        let (na, nb) = max_match_within(x, y, ta, tb, eps);
        let keeps = match v.0 {
            Side::A => na.contains(&v.1),
            Side::B => nb.contains(&v.1),
        };
        if keeps {
            sa = na;
            sb = nb;
        }
    }
    (sa, sb)
}
