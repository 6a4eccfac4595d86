//! The ε-profile's peeling pass when the order of the removals is roughly known in advance
//! (docs/algorithm.md, section 4): each side's members are factorised in the reverse of that
//! order, so that a removal is mostly the deletion of the *last* column of a triangular factor,
//! which costs one row of probe coordinates and nothing else.
//!
//! For one side with members M and probes Q, the members (in the chosen order) are
//! `M = Q_M R` (R upper triangular, `Rᵀ R = G_MM`), and the probes' coordinates on the
//! orthonormal basis are `P = Q_Mᵀ Q = R⁻ᵀ G_MQ`; a probe's squared sine is
//! `1 − |P_{:p}|² / |p|²`. Deleting member c from R leaves a triangular factor after Givens
//! rotations of the rows of R that follow it (as MATLAB's `qrdelete` does for a QR
//! factorisation); the same rotations applied to P keep its rows the coordinates on the new
//! basis, and the last row, no longer in the span, is each probe's lost coordinate. When c is the last remaining column
//! there is nothing to rotate. The rotations are orthogonal (a removal never loses precision);
//! their cost is O((members after c) · (members + probes)).
//!
//! The bootstrap's resamples peel in nearly the order of the full data, and this engine peels
//! them with about a quarter of the multiply-adds of the downdating engine (`downdate.rs`):
//! Cholesky factor, its inverse and one triangular product per side, n³/6 + n³/6 + n²q/2,
//! against 3n³ + flushes (at 256 + 256 ReLU neurons 2.8 ms against 5.2 ms per profile). Same qualification as there ([`DOWNDATE_MIN_SINE`]); a side that
//! does not qualify makes [`peel_rounds`] return `None`.

use crate::downdate::{gather, run_rounds, Failed, RoundSide, DOWNDATE_MIN_SINE};
use crate::{MatchProblem, Profile, Side};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, Mat, MatRef, Par};

/// An expected removal order of a layer pair's neurons: for each net, neuron indices in the
/// order a peeling pass is expected to remove them (first removed first). Any order gives the
/// same profile; a close one makes [`MatchProblem::profile_ordered`] cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalOrder {
    /// Neurons of A, first removed first.
    pub a: Vec<usize>,
    /// Neurons of B, first removed first.
    pub b: Vec<usize>,
}

impl RemovalOrder {
    /// The removal order of a computed profile (its peeling steps).
    pub fn from_profile(profile: &Profile) -> Self {
        let mut order = Self::default();
        for s in profile.steps() {
            match s.side {
                Side::A => order.a.push(s.neuron),
                Side::B => order.b.push(s.neuron),
            }
        }
        order
    }
}

/// Local members (positions in `live`) sorted so that the member expected to be removed last
/// comes first; members absent from `expected` (expected to go first) come last, by position.
fn factor_order(live: &[usize], expected: &[usize]) -> Vec<usize> {
    let len = live.iter().copied().max().map_or(0, |m| m + 1);
    let mut rank = vec![0usize; len];
    for (r, &v) in expected.iter().enumerate() {
        if v < len {
            // Later removals get higher keys (the first occurrence of a repeated index wins).
            if rank[v] == 0 {
                rank[v] = r + 1;
            }
        }
    }
    let mut local: Vec<usize> = (0..live.len()).collect();
    local.sort_by_key(|&l| (std::cmp::Reverse(rank[live[l]]), l));
    local
}

/// Two distinct columns of a column-major matrix as mutable slices, `u < v`.
fn two_cols(m: &mut Mat<f64>, u: usize, v: usize) -> (&mut [f64], &mut [f64]) {
    debug_assert!(u < v);
    let (left, right) = m.as_mut().split_at_col_mut(v);
    let a = left
        .col_mut(u)
        .try_as_col_major_mut()
        .expect("column-major");
    let b = right
        .col_mut(0)
        .try_as_col_major_mut()
        .expect("column-major");
    (a.as_slice_mut(), b.as_slice_mut())
}

/// `(x, y) ← (c x + s y, c y − s x)` elementwise (AVX2 where the CPU has it: the same
/// arithmetic, no fused multiply-adds, so the same bits either way).
fn rotate(x: &mut [f64], y: &mut [f64], c: f64, s: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { rotate_avx2(x, y, c, s) };
        }
    }
    rotate_body(x, y, c, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rotate_avx2(x: &mut [f64], y: &mut [f64], c: f64, s: f64) {
    rotate_body(x, y, c, s)
}

#[inline(always)]
fn rotate_body(x: &mut [f64], y: &mut [f64], c: f64, s: f64) {
    for (a, b) in x.iter_mut().zip(y.iter_mut()) {
        let (p, q) = (*a, *b);
        *a = c * p + s * q;
        *b = c * q - s * p;
    }
}

/// One side: members factorised in a fixed order, probes' coordinates on the basis.
struct OrderedSide {
    /// `L = Rᵀ` (members x directions by allocated position): column r holds row r of R
    /// (direction r), row c member c's coefficients. Entries of removed members are stale.
    l: Mat<f64>,
    /// `Pᵀ` (probes x directions): each probe's coordinates on the directions.
    pt: Mat<f64>,
    /// Local member -> position in the factor.
    member_pos: Vec<usize>,
    /// Present members' positions, increasing.
    cols: Vec<usize>,
    /// Directions still in the span, increasing; `cols[i]` has nonzeros in `rows[..=i]`.
    rows: Vec<usize>,
    /// Local probe -> row of `pt` (`NONE` once dropped).
    probe_slot: Vec<usize>,
    /// By row of `pt`: present, squared norm, squared sine.
    probe_alive: Vec<bool>,
    alive_probes: usize,
    probe_norm2: Vec<f64>,
    sin2: Vec<f64>,
}

/// Absent slot.
const NONE: usize = usize::MAX;

/// The probes' rows are compacted when fewer than half are present (and at least this many
/// rows are allocated): the rotations then stop carrying removed probes.
const COMPACT_PROBES_MIN: usize = 32;

impl OrderedSide {
    /// The state for members `mem` and probes `prb` (indices into the joint Gram matrix),
    /// members factorised in the order `order` (local members, kept longest first), or `None`
    /// when the members do not qualify.
    fn new(gram: MatRef<'_, f64>, mem: &[usize], prb: &[usize], order: &[usize]) -> Option<Self> {
        let (m, q) = (mem.len(), prb.len());
        if m == 0 {
            return None;
        }
        let ordered: Vec<usize> = order.iter().map(|&l| mem[l]).collect();
        let mut l = gather(gram, &ordered, &ordered, true);
        let par = Par::Seq;
        let req = cholesky_in_place_scratch::<f64>(m, par, Default::default());
        cholesky_in_place(
            l.as_mut(),
            Default::default(),
            par,
            MemStack::new(&mut MemBuffer::new(req)),
            Default::default(),
        )
        .ok()?;
        // L⁻¹: the qualification test (H = L⁻ᵀ L⁻¹, H_jj = |column j of L⁻¹|², member j's sine
        // to the span of the others 1 / sqrt(G_jj H_jj)) and the probes' coordinates.
        let mut linv = Mat::<f64>::zeros(m, m);
        invert_lower_triangular(linv.as_mut(), l.as_ref(), par);
        let min_sin2 = (0..m)
            .map(|j| {
                let h: f64 = linv.col(j).iter().skip(j).map(|v| v * v).sum();
                1.0 / (gram[(ordered[j], ordered[j])] * h)
            })
            .fold(f64::INFINITY, f64::min);
        // (False for NaN too.)
        let qualifies = min_sin2 >= DOWNDATE_MIN_SINE * DOWNDATE_MIN_SINE;
        if !qualifies {
            return None;
        }
        // Pᵀ = G_QM L⁻ᵀ.
        let gqm = gather(gram, prb, &ordered, false);
        let mut pt = Mat::<f64>::zeros(q, m);
        tri_matmul(
            pt.as_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            gqm.as_ref(),
            BlockStructure::Rectangular,
            linv.transpose(),
            BlockStructure::TriangularUpper,
            1.0,
            par,
        );
        let mut proj = vec![0.0; q];
        for j in 0..m {
            for (a, v) in proj.iter_mut().zip(pt.col(j).iter()) {
                *a += v * v;
            }
        }
        let probe_norm2: Vec<f64> = prb.iter().map(|&c| gram[(c, c)]).collect();
        let sin2 = proj
            .iter()
            .zip(&probe_norm2)
            .map(|(&p, &n2)| {
                if n2 > 0.0 {
                    (1.0 - p / n2).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        let mut member_pos = vec![0; m];
        for (pos, &local) in order.iter().enumerate() {
            member_pos[local] = pos;
        }
        Some(Self {
            l,
            pt,
            member_pos,
            cols: (0..m).collect(),
            rows: (0..m).collect(),
            probe_slot: (0..q).collect(),
            probe_alive: vec![true; q],
            alive_probes: q,
            probe_norm2,
            sin2,
        })
    }

    /// Drops the removed probes' rows of `pt` and their entries.
    fn compact_probes(&mut self) {
        let keep: Vec<usize> = (0..self.pt.nrows())
            .filter(|&r| self.probe_alive[r])
            .collect();
        let mut new_of = vec![NONE; self.pt.nrows()];
        for (new, &old) in keep.iter().enumerate() {
            new_of[old] = new;
        }
        for slot in self.probe_slot.iter_mut() {
            if *slot != NONE {
                *slot = new_of[*slot];
            }
        }
        let all: Vec<usize> = (0..self.pt.ncols()).collect();
        self.pt = gather(self.pt.as_ref(), &keep, &all, false);
        self.probe_norm2 = keep.iter().map(|&r| self.probe_norm2[r]).collect();
        self.sin2 = keep.iter().map(|&r| self.sin2[r]).collect();
        self.probe_alive = vec![true; keep.len()];
    }

    /// Deletes the member at factor position `c` (present).
    fn delete(&mut self, c: usize) {
        let s = self.cols.binary_search(&c).expect("present member");
        let k = self.cols.len();
        // Rows after the deleted column: restore the triangle with one rotation per column.
        let end = self.cols[k - 1] + 1;
        for j in s + 1..k {
            let (col, u, v) = (self.cols[j], self.rows[j - 1], self.rows[j]);
            let (lu, lv) = two_cols(&mut self.l, u, v);
            let (x, y) = (lu[col], lv[col]);
            // (Entries of a Cholesky factor of activation Gram matrices: no overflow.)
            let r = (x * x + y * y).sqrt();
            let (cs, sn) = (x / r, y / r);
            rotate(&mut lu[col..end], &mut lv[col..end], cs, sn);
            lv[col] = 0.0;
            let (pu, pv) = two_cols(&mut self.pt, u, v);
            rotate(pu, pv, cs, sn);
        }
        // The last direction has left the span: its coordinates are lost.
        let lost = self.rows[k - 1];
        // (Every row, present or not: a removed probe's sine is never read again, and live
        // probes have positive norms.)
        let pl = self.pt.col(lost).try_as_col_major().expect("column-major");
        for ((s2, &n2), &v) in self
            .sin2
            .iter_mut()
            .zip(&self.probe_norm2)
            .zip(pl.as_slice())
        {
            *s2 = (*s2 + v * v / n2).min(1.0);
        }
        self.cols.remove(s);
        self.rows.pop();
        if self.cols.is_empty() {
            // The span is {0}: every probe is orthogonal to it.
            self.sin2.iter_mut().for_each(|s| *s = 1.0);
        }
    }
}

impl RoundSide for OrderedSide {
    fn sin2(&self, p: usize) -> f64 {
        self.sin2[self.probe_slot[p]]
    }

    fn remove(&mut self, members: &[usize], probes: &[usize]) -> Result<(), Failed> {
        for &p in probes {
            let slot = self.probe_slot[p];
            if slot != NONE && self.probe_alive[slot] {
                self.probe_alive[slot] = false;
                self.alive_probes -= 1;
            }
        }
        let rows = self.pt.nrows();
        if rows >= COMPACT_PROBES_MIN && 2 * self.alive_probes < rows {
            self.compact_probes();
        }
        // The last positions first: each deletion rotates only the members after it.
        let mut pos: Vec<usize> = members.iter().map(|&i| self.member_pos[i]).collect();
        pos.sort_unstable_by(|a, b| b.cmp(a));
        for c in pos {
            self.delete(c);
        }
        Ok(())
    }
}

/// The ε-profile's peeling pass (the rounds of [`crate::downdate::peel_rounds`]) with each
/// side's members factorised in the reverse of `order` (neurons not in it count as removed
/// first), or `None` when a side does not qualify.
pub(crate) fn peel_rounds(
    problem: &MatchProblem,
    order: &RemovalOrder,
) -> Option<Vec<(Side, usize, f64)>> {
    let (la, lb) = (problem.live_a(), problem.live_b());
    if la.is_empty() || lb.is_empty() {
        return None;
    }
    let n1 = problem.n1();
    let ja: Vec<usize> = la.to_vec();
    let jb: Vec<usize> = lb.iter().map(|&j| n1 + j).collect();
    let (oa, ob) = (factor_order(la, &order.a), factor_order(lb, &order.b));
    let gram = problem.gram().as_ref();
    let (sa, sb) = rayon::join(
        || OrderedSide::new(gram, &ja, &jb, &oa),
        || OrderedSide::new(gram, &jb, &ja, &ob),
    );
    run_rounds(problem, sa?, sb?)
}
