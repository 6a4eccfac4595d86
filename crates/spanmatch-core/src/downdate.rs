//! The ε-profile's peeling pass for full-rank sides, by downdating each side's inverse Gram
//! matrix (docs/algorithm.md, section 4).
//!
//! For one side with members M (linearly independent) and probes Q (the other side's neurons),
//! the state is `H = G_MM⁻¹` and `C = G_MM⁻¹ G_MQ` (each probe's coefficients on the members).
//! Member i's dual vector d_i (orthogonal to the other members, ⟨d_i, m_i⟩ = 1) has
//! `‖d_i‖² = H_ii` and `⟨p, d_i⟩ = C_ip`, so removing i grows each probe's squared sine by
//! `C_ip² / (H_ii ‖p‖²)`, and the new state is the Schur complement `H − H_{:i} H_{i:} / H_ii`,
//! `C − H_{:i} C_{i:} / H_ii`.
//!
//! Removals are kept *pending* (the set R, with L_R the Cholesky factor of `H_RR` and
//! `B = L_R⁻¹ C_R`): with them, the current dual Gram entries and coefficients are
//! `H − Zᵀ Z` and `C − Zᵀ B` with `Z = L_R⁻¹ H_R:`, and a new removal needs only its own column of
//! Z (a triangular solve of order |R|) and one matrix-vector product with B. Every
//! [`FLUSH_AT`] pending removals the state is brought up to date with two matrix products
//! (a rank-|R| downdate, BLAS-3), and the arrays drop the removed rows and columns when enough
//! of them are gone. The cost is O(n³) with all of it in matrix products except O(n · |R|) per
//! removal, and nothing is ever re-factorised.
//!
//! A side qualifies when each member's sine to the span of the other members of its side is at
//! least [`DOWNDATE_MIN_SINE`] (every member is then a basis member of the span tracker too, and
//! the Gram block is well enough conditioned for the inverse to be
//! accurate); otherwise [`peel_rounds`] returns `None` and the caller uses the span tracker
//! (`peel.rs`), which also handles dependent members.

use crate::{MatchProblem, Side};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::cholesky::llt::inverse::{inverse, inverse_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Mat, MatRef, Par};

/// A side is peeled by downdating only when every member's sine to the span of the other
/// members of its side is at least this value, ten times the sine tolerance: no member is then
/// within the tolerance of the span of others (the span tracker would make every member a basis
/// member too, whatever its pivot order), with a margin for the rounding of the test itself.
/// Below it (dependent or nearly dependent members) the span tracker is used. On planted
/// blocks with members as close as 3e-6 to the others' span the downdated thresholds stay
/// within 1e-8 of the pre-blocking reference's (within 1e-10 from 1e-4 up; the
/// `precision` tests).
pub(crate) const DOWNDATE_MIN_SINE: f64 = 1e-5;

/// Pending removals per side before they are applied to the state with matrix products.
const FLUSH_AT: usize = 96;

/// At a flush, the arrays drop the removed rows and columns when fewer than
/// `COMPACT_AT.0 / COMPACT_AT.1` of the allocated members or probes are still present.
const COMPACT_AT: (usize, usize) = (7, 8);

/// Live neurons (both sides together) from which the two sides flush at the same time, one
/// thread each.
const JOINT_FLUSH_MIN: usize = 1024;

/// Absent slot.
const NONE: usize = usize::MAX;

/// Matrix products of at least this many multiply-adds run on all threads.
const PAR_WORK: usize = 1 << 22;

fn par_for(work: usize) -> Par {
    if work >= PAR_WORK {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// `src[rows, cols]` as a new matrix, or only its lower triangle (the rest zero) with `lower`
/// (column by column: each source column is read once).
pub(crate) fn gather(
    src: MatRef<'_, f64>,
    rows: &[usize],
    cols: &[usize],
    lower: bool,
) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(rows.len(), cols.len());
    // Runs of consecutive source rows (removed neurons are sparse): (first output row, first
    // source row, length), each copied as one slice.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        match runs.last_mut() {
            Some((i0, r0, len)) if *r0 + *len == r && *i0 + *len == i => *len += 1,
            _ => runs.push((i, r, 1)),
        }
    }
    // A permuted order (`ordered.rs`) makes runs of about one row: then entry by entry.
    let by_runs = runs.len() * 8 <= rows.len();
    for (c, &j) in cols.iter().enumerate() {
        let first = if lower { c } else { 0 };
        let s = src.col(j);
        let d = out.col_mut(c).try_as_col_major_mut().expect("column-major");
        let d = d.as_slice_mut();
        match s.try_as_col_major() {
            Some(s) if by_runs => {
                let s = s.as_slice();
                for &(i0, r0, len) in &runs {
                    if i0 + len <= first {
                        continue;
                    }
                    let skip = first.saturating_sub(i0);
                    d[i0 + skip..i0 + len].copy_from_slice(&s[r0 + skip..r0 + len]);
                }
            }
            Some(s) => {
                let s = s.as_slice();
                for (d, &r) in d[first..].iter_mut().zip(&rows[first..]) {
                    *d = s[r];
                }
            }
            None => {
                for (i, &r) in rows.iter().enumerate().skip(first) {
                    d[i] = s[r];
                }
            }
        }
    }
    out
}

/// Keeps `a[rows, cols]` in place (both increasing): the matrix shrinks without a new
/// allocation, its column stride unchanged. With `lower`, only the lower triangle of the result
/// is written (the rest is left stale).
fn compact_in_place(a: &mut Mat<f64>, rows: &[usize], cols: &[usize], lower: bool) {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        match runs.last_mut() {
            Some((i0, r0, len)) if *r0 + *len == r && *i0 + *len == i => *len += 1,
            _ => runs.push((i, r, 1)),
        }
    }
    let identity_rows = runs.len() == 1 && runs[0].0 == runs[0].1;
    for (c, &j) in cols.iter().enumerate() {
        let first = if lower { c } else { 0 };
        if j == c {
            if identity_rows {
                continue;
            }
            let col = a.col_mut(c).try_as_col_major_mut().expect("column-major");
            let col = col.as_slice_mut();
            for &(i0, r0, len) in &runs {
                if i0 + len <= first {
                    continue;
                }
                let skip = first.saturating_sub(i0);
                col.copy_within(r0 + skip..r0 + len, i0 + skip);
            }
        } else {
            let (left, right) = a.as_mut().split_at_col_mut(j);
            let dst = left
                .col_mut(c)
                .try_as_col_major_mut()
                .expect("column-major");
            let src = right.col(0).try_as_col_major().expect("column-major");
            let (dst, src) = (dst.as_slice_mut(), src.as_slice());
            for &(i0, r0, len) in &runs {
                if i0 + len <= first {
                    continue;
                }
                let skip = first.saturating_sub(i0);
                dst[i0 + skip..i0 + len].copy_from_slice(&src[r0 + skip..r0 + len]);
            }
        }
    }
    a.truncate(rows.len(), cols.len());
}

/// The transpose of `a`, written into `out` (resized; its allocation is reused when large
/// enough, which saves the page faults of a fresh layer-sized buffer), in tiles of columns for
/// the caches.
fn transpose_into(a: &Mat<f64>, mut out: Mat<f64>) -> Mat<f64> {
    const TILE: usize = 32;
    let (m, n) = a.shape();
    out.truncate(n.min(out.nrows()), m.min(out.ncols()));
    out.resize_with(n, m, |_, _| 0.0);
    for j0 in (0..n).step_by(TILE) {
        let j1 = (j0 + TILE).min(n);
        let src: Vec<&[f64]> = (j0..j1)
            .map(|j| {
                a.col(j)
                    .try_as_col_major()
                    .expect("column-major")
                    .as_slice()
            })
            .collect();
        for i in 0..m {
            let dst = out.col_mut(i).try_as_col_major_mut().expect("column-major");
            for (d, s) in dst.as_slice_mut()[j0..j1].iter_mut().zip(&src) {
                *d = s[i];
            }
        }
    }
    out
}

/// One side: members (this side's neurons) and probes (the other side's), by local index
/// (position in the live lists the pass started with).
struct SideState {
    /// Lower triangle of the members' inverse Gram matrix (allocated x allocated), current up
    /// to the pending removals.
    h: Mat<f64>,
    /// `ct[(p, i)]`: coefficient of member i in probe p's projection on the span (probes x
    /// members), current up to the pending removals.
    ct: Mat<f64>,
    /// Local member -> allocated slot (NONE once dropped).
    member_slot: Vec<usize>,
    /// Allocated member slot -> local member.
    slot_member: Vec<usize>,
    /// Local probe -> allocated probe slot (NONE once dropped).
    probe_slot: Vec<usize>,
    /// Allocated probe slot -> local probe.
    slot_probe: Vec<usize>,
    member_alive: Vec<bool>,
    probe_alive: Vec<bool>,
    alive_members: usize,
    alive_probes: usize,
    /// Squared norms and squared sines of the probes, by allocated slot.
    probe_norm2: Vec<f64>,
    sin2: Vec<f64>,
    /// Pending removed members (allocated slots), in order.
    pend: Vec<usize>,
    /// Lower Cholesky factor of `H[pend, pend]` (leading pend.len() x pend.len() block).
    lp: Mat<f64>,
    /// `bt[(p, r)] = (L_R⁻¹ C[pend, p])_r`: probes x pending.
    bt: Mat<f64>,
}

/// Numerical failure of the downdating pass (a Schur complement that is not positive
/// definite): the caller falls back to the span tracker.
#[derive(Debug)]
pub(crate) struct Failed;

impl SideState {
    /// The state for members `mem` and probes `prb` (indices into the joint Gram matrix), or
    /// `None` when the members do not qualify (see [`DOWNDATE_MIN_SINE`]).
    fn new(gram: MatRef<'_, f64>, mem: &[usize], prb: &[usize], par: Par) -> Option<Self> {
        let (m, q) = (mem.len(), prb.len());
        if m == 0 {
            return None;
        }
        let mut l = gather(gram, mem, mem, true);
        let stack_req = cholesky_in_place_scratch::<f64>(m, par, Default::default());
        cholesky_in_place(
            l.as_mut(),
            Default::default(),
            par,
            MemStack::new(&mut MemBuffer::new(stack_req)),
            Default::default(),
        )
        .ok()?;
        // Inverse Gram matrix (lower triangle) and the qualification test: the sine of member
        // j to the span of the others is 1 / sqrt(G_jj H_jj).
        let mut h = Mat::<f64>::zeros(m, m);
        inverse(
            h.as_mut(),
            l.as_ref(),
            par,
            MemStack::new(&mut MemBuffer::new(inverse_scratch::<f64>(m, par))),
        );
        let min_sin2 = (0..m)
            .map(|j| 1.0 / (gram[(mem[j], mem[j])] * h[(j, j)]))
            .fold(f64::INFINITY, f64::min);
        // (False for NaN too.)
        let qualifies = min_sin2 >= DOWNDATE_MIN_SINE * DOWNDATE_MIN_SINE;
        if !qualifies {
            return None;
        }
        // Probe coordinates P = L⁻¹ G_MQ (the squared sines, as the span tracker computes
        // them), then C = L⁻ᵀ P.
        let mut p = gather(gram, mem, prb, false);
        solve_lower_triangular_in_place(l.as_ref(), p.as_mut(), par);
        let probe_norm2: Vec<f64> = prb.iter().map(|&c| gram[(c, c)]).collect();
        let sin2: Vec<f64> = (0..q)
            .map(|c| {
                let col = p.col(c);
                let proj: f64 = col.iter().map(|v| v * v).sum();
                let n2 = probe_norm2[c];
                if n2 > 0.0 {
                    (1.0 - proj / n2).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        solve_upper_triangular_in_place(l.transpose(), p.as_mut(), par);
        // (Into the factor's buffer, no longer needed.)
        let ct = transpose_into(&p, l);
        drop(p);
        Some(Self {
            h,
            ct,
            member_slot: (0..m).collect(),
            slot_member: (0..m).collect(),
            probe_slot: (0..q).collect(),
            slot_probe: (0..q).collect(),
            member_alive: vec![true; m],
            probe_alive: vec![true; q],
            alive_members: m,
            alive_probes: q,
            probe_norm2,
            sin2,
            pend: Vec::new(),
            lp: Mat::zeros(0, 0),
            bt: Mat::zeros(q, 0),
        })
    }

    /// Entry (i, j) of the stored inverse Gram matrix (lower triangle kept).
    fn hij(&self, i: usize, j: usize) -> f64 {
        if i >= j {
            self.h[(i, j)]
        } else {
            self.h[(j, i)]
        }
    }

    /// `H[pend, cols]` (k x cols.len()), read column by column: row r of the symmetric H is
    /// the stored column `pend[r]` below its diagonal and the stored row `pend[r]` left of it.
    fn pending_rows(&self, cols: &[usize]) -> Mat<f64> {
        let k = self.pend.len();
        let mut out = Mat::<f64>::zeros(k, cols.len());
        let stored: Vec<&[f64]> = self
            .pend
            .iter()
            .map(|&p| {
                self.h
                    .col(p)
                    .try_as_col_major()
                    .expect("column-major")
                    .as_slice()
            })
            .collect();
        for (c, &j) in cols.iter().enumerate() {
            let hj = self.h.col(j).try_as_col_major().expect("column-major");
            let hj = hj.as_slice();
            let dst = out.col_mut(c).try_as_col_major_mut().expect("column-major");
            for ((d, &p), sp) in dst.as_slice_mut().iter_mut().zip(&self.pend).zip(&stored) {
                *d = if p >= j { hj[p] } else { sp[j] };
            }
        }
        out
    }

    /// Current squared sine of local probe `p` (present).
    fn sin2(&self, p: usize) -> f64 {
        self.sin2[self.probe_slot[p]]
    }

    /// Removes local members and local probes (present ones).
    fn remove(&mut self, members: &[usize], probes: &[usize]) -> Result<(), Failed> {
        for &p in probes {
            let s = self.probe_slot[p];
            if self.probe_alive[s] {
                self.probe_alive[s] = false;
                self.alive_probes -= 1;
            }
        }
        let rb: Vec<usize> = members
            .iter()
            .map(|&i| self.member_slot[i])
            .filter(|&s| s != NONE && self.member_alive[s])
            .collect();
        if rb.is_empty() {
            return Ok(());
        }
        if rb.len() == self.alive_members {
            // The span becomes {0}: every probe is orthogonal to it.
            for &s in &rb {
                self.member_alive[s] = false;
            }
            self.alive_members = 0;
            self.pend.clear();
            self.sin2.iter_mut().for_each(|s| *s = 1.0);
            return Ok(());
        }
        // (`peel_rounds` flushes before a removal would take the pending set past FLUSH_AT.)
        debug_assert!(!self.must_flush(rb.len()), "flush before removing");
        let (k, b) = (self.pend.len(), rb.len());
        let q = self.ct.nrows();
        // Z_b = L_R⁻¹ H[R, rb]: the removed members' components on the pending directions.
        let mut zb = Mat::from_fn(k, b, |r, c| self.hij(self.pend[r], rb[c]));
        if k > 0 {
            solve_lower_triangular_in_place(
                self.lp.as_ref().submatrix(0, 0, k, k),
                zb.as_mut(),
                Par::Seq,
            );
        }
        // S = H[rb, rb] - Z_bᵀ Z_b: the current duals' Gram matrix; its Cholesky factor L_b.
        let mut s = Mat::from_fn(b, b, |i, j| self.hij(rb[i], rb[j]));
        if k > 0 {
            matmul(
                s.as_mut(),
                Accum::Add,
                zb.transpose(),
                zb.as_ref(),
                -1.0,
                Par::Seq,
            );
        }
        let req = cholesky_in_place_scratch::<f64>(b, Par::Seq, Default::default());
        cholesky_in_place(
            s.as_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut MemBuffer::new(req)),
            Default::default(),
        )
        .map_err(|_| Failed)?;
        // Yᵀ = C[rb, :]ᵀ - B_Rᵀ Z_b, then the new rows of B: L_b⁻¹ Y.
        let mut yt = Mat::from_fn(q, b, |p, c| self.ct[(p, rb[c])]);
        let par = par_for(q * (k + b) * b);
        if k > 0 {
            matmul(
                yt.as_mut(),
                Accum::Add,
                self.bt.as_ref().subcols(0, k),
                zb.as_ref(),
                -1.0,
                par,
            );
        }
        solve_lower_triangular_in_place(s.as_ref(), yt.as_mut().transpose_mut(), par);
        for p in 0..q {
            if !self.probe_alive[p] {
                continue;
            }
            let mut lost = 0.0;
            for c in 0..b {
                let v = yt[(p, c)];
                lost += v * v;
            }
            if lost != 0.0 {
                self.sin2[p] = (self.sin2[p] + lost / self.probe_norm2[p]).min(1.0);
            }
        }
        // Append to the pending set: L_R grows by [Z_bᵀ L_b], B by the new rows (in place;
        // the arrays are reallocated only when a batch outgrows them).
        let kn = k + b;
        if kn > self.lp.nrows() {
            let cap = kn.max(FLUSH_AT);
            let mut lp = Mat::<f64>::zeros(cap, cap);
            lp.as_mut()
                .submatrix_mut(0, 0, k, k)
                .copy_from(self.lp.as_ref().submatrix(0, 0, k, k));
            self.lp = lp;
            let mut bt = Mat::<f64>::zeros(q, cap);
            bt.as_mut()
                .subcols_mut(0, k)
                .copy_from(self.bt.as_ref().subcols(0, k));
            self.bt = bt;
        }
        for r in 0..b {
            for j in 0..k {
                self.lp[(k + r, j)] = zb[(j, r)];
            }
            for j in 0..=r {
                self.lp[(k + r, k + j)] = s[(r, j)];
            }
        }
        self.bt.as_mut().subcols_mut(k, b).copy_from(yt.as_ref());
        for &s in &rb {
            self.member_alive[s] = false;
            self.pend.push(s);
        }
        self.alive_members -= b;
        Ok(())
    }

    /// Whether removing `b` more members would take the pending set past [`FLUSH_AT`].
    fn must_flush(&self, b: usize) -> bool {
        !self.pend.is_empty() && self.pend.len() + b > FLUSH_AT
    }

    /// Applies the pending removals to H and C (two matrix products), dropping removed rows
    /// and columns when few enough are left.
    /// With `seq`, on the calling thread only (the caller runs the other side's flush on the
    /// other thread).
    fn flush(&mut self, seq: bool) -> Result<(), Failed> {
        let par_for = |work: usize| if seq { Par::Seq } else { par_for(work) };
        let k = self.pend.len();
        if k == 0 {
            return Ok(());
        }
        let (ma, qa) = (self.h.nrows(), self.ct.nrows());
        let compact = self.alive_members * COMPACT_AT.1 < ma * COMPACT_AT.0
            || self.alive_probes * COMPACT_AT.1 < qa * COMPACT_AT.0;
        let (keep_m, keep_p): (Vec<usize>, Vec<usize>) = if compact {
            (
                (0..ma).filter(|&s| self.member_alive[s]).collect(),
                (0..qa).filter(|&s| self.probe_alive[s]).collect(),
            )
        } else {
            ((0..ma).collect(), (0..qa).collect())
        };
        let (m, q) = (keep_m.len(), keep_p.len());
        // Z = L_R⁻¹ H[R, kept members].
        let mut z = self.pending_rows(&keep_m);
        let lr = self.lp.as_ref().submatrix(0, 0, k, k);
        solve_lower_triangular_in_place(lr, z.as_mut(), par_for(k * k * m));
        // H ← H - Zᵀ Z (lower triangle), C ← C - B_Rᵀ Z.
        let mut h = std::mem::replace(&mut self.h, Mat::zeros(0, 0));
        if compact {
            compact_in_place(&mut h, &keep_m, &keep_m, true);
        }
        tri_matmul(
            h.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            z.transpose(),
            BlockStructure::Rectangular,
            z.as_ref(),
            BlockStructure::Rectangular,
            -1.0,
            par_for(m * m * k / 2),
        );
        let mut ct = std::mem::replace(&mut self.ct, Mat::zeros(0, 0));
        if compact {
            compact_in_place(&mut ct, &keep_p, &keep_m, false);
            let all: Vec<usize> = (0..self.bt.ncols()).collect();
            compact_in_place(&mut self.bt, &keep_p, &all, false);
        }
        let btk = self.bt.as_ref().subcols(0, k);
        matmul(
            ct.as_mut(),
            Accum::Add,
            btk,
            z.as_ref(),
            -1.0,
            par_for(m * q * k),
        );
        self.h = h;
        self.ct = ct;
        self.pend.clear();
        if compact {
            let remap = |keep: &[usize], slot_of: &mut Vec<usize>, of_slot: &mut Vec<usize>| {
                for s in slot_of.iter_mut() {
                    *s = NONE;
                }
                let new_of: Vec<usize> = keep.iter().map(|&s| of_slot[s]).collect();
                for (new, &local) in new_of.iter().enumerate() {
                    slot_of[local] = new;
                }
                *of_slot = new_of;
            };
            remap(&keep_m, &mut self.member_slot, &mut self.slot_member);
            remap(&keep_p, &mut self.probe_slot, &mut self.slot_probe);
            self.member_alive = vec![true; m];
            self.probe_alive = vec![true; q];
            self.probe_norm2 = keep_p.iter().map(|&s| self.probe_norm2[s]).collect();
            self.sin2 = keep_p.iter().map(|&s| self.sin2[s]).collect();
        }
        Ok(())
    }
}

/// One side of a peeling pass in rounds (members of one net, probes of the other), by local
/// index (position in the live lists the pass started with): the engines of [`run_rounds`].
pub(crate) trait RoundSide: Send {
    /// Current squared sine of local probe `p` (present) to the span of the present members.
    fn sin2(&self, p: usize) -> f64;
    /// Removes local members and local probes (present ones).
    fn remove(&mut self, members: &[usize], probes: &[usize]) -> Result<(), Failed>;
    /// Whether removing `b` more members needs a [`flush`](Self::flush) first.
    fn must_flush(&self, _b: usize) -> bool {
        false
    }
    /// Brings deferred work up to date (with `seq`, on the calling thread only).
    fn flush(&mut self, _seq: bool) -> Result<(), Failed> {
        Ok(())
    }
}

impl RoundSide for SideState {
    fn sin2(&self, p: usize) -> f64 {
        SideState::sin2(self, p)
    }
    fn remove(&mut self, members: &[usize], probes: &[usize]) -> Result<(), Failed> {
        SideState::remove(self, members, probes)
    }
    fn must_flush(&self, b: usize) -> bool {
        SideState::must_flush(self, b)
    }
    fn flush(&mut self, seq: bool) -> Result<(), Failed> {
        SideState::flush(self, seq)
    }
}

/// The ε-profile's peeling pass (the rounds of `Peeler::peel_rounds`, same removals and
/// sines) on the live neurons, or `None` when a side does not qualify for downdating or the
/// downdating fails numerically. Returns the removals in order with each neuron's sine at the
/// start of its round.
pub(crate) fn peel_rounds(problem: &MatchProblem) -> Option<Vec<(Side, usize, f64)>> {
    let (la, lb) = (problem.live_a(), problem.live_b());
    if la.is_empty() || lb.is_empty() {
        return None;
    }
    let n1 = problem.n1();
    let ja: Vec<usize> = la.to_vec();
    let jb: Vec<usize> = lb.iter().map(|&j| n1 + j).collect();
    let gram = problem.gram().as_ref();
    // Side A: members A, probes B (B's sines); side B: members B, probes A (A's sines).
    let (sa, sb) = rayon::join(
        || SideState::new(gram, &ja, &jb, Par::Seq),
        || SideState::new(gram, &jb, &ja, Par::Seq),
    );
    run_rounds(problem, sa?, sb?)
}

/// The rounds of the peeling pass over two sides' engines (side A: members A, probes B): each
/// round removes either the farthest neuron (a new, lower level) or every neuron whose sine is
/// at least the current level. `None` when an engine fails numerically.
pub(crate) fn run_rounds<S: RoundSide>(
    problem: &MatchProblem,
    mut sa: S,
    mut sb: S,
) -> Option<Vec<(Side, usize, f64)>> {
    let (la, lb) = (problem.live_a(), problem.live_b());
    let (na, nb) = (la.len(), lb.len());
    let mut alive_a = vec![true; na];
    let mut alive_b = vec![true; nb];
    let mut steps = Vec::with_capacity(na + nb);
    let mut level = f64::INFINITY;
    loop {
        let sine_a = |l: usize| sb.sin2(l).sqrt();
        let sine_b = |l: usize| sa.sin2(l).sqrt();
        let above = |level: f64| -> (Vec<usize>, Vec<usize>) {
            (
                (0..na)
                    .filter(|&l| alive_a[l] && sine_a(l) >= level)
                    .collect(),
                (0..nb)
                    .filter(|&l| alive_b[l] && sine_b(l) >= level)
                    .collect(),
            )
        };
        // The farthest present neuron; when none is at the current level any more, it sets a
        // new, lower one (the same rounds as scanning for the level first).
        let mut best: Option<f64> = None;
        for s in (0..na)
            .filter(|&l| alive_a[l])
            .map(sine_a)
            .chain((0..nb).filter(|&l| alive_b[l]).map(sine_b))
        {
            if best.is_none_or(|b| s > b) {
                best = Some(s);
            }
        }
        let Some(best) = best else {
            break;
        };
        if best < level {
            level = best;
        }
        let (ra, rb) = above(level);
        for &l in &ra {
            steps.push((Side::A, la[l], sine_a(l)));
            alive_a[l] = false;
        }
        for &l in &rb {
            steps.push((Side::B, lb[l], sine_b(l)));
            alive_b[l] = false;
        }
        // Both sides flush together, one per thread, when either must: a flush is two matrix
        // products, and one side's products alone on both threads run at a lower rate (at
        // 4096 + 4096 the pass took 2.3 s with separate flushes, 2.0 s with joint ones).
        if sa.must_flush(ra.len()) || sb.must_flush(rb.len()) {
            let (ea, eb) = if na + nb >= JOINT_FLUSH_MIN {
                rayon::join(|| sa.flush(true), || sb.flush(true))
            } else {
                (sa.flush(false), sb.flush(false))
            };
            if ea.is_err() || eb.is_err() {
                return None;
            }
        }
        let big = (ra.len() + rb.len()) * (na + nb) >= 1 << 14;
        let (ea, eb) = if big {
            rayon::join(|| sa.remove(&ra, &rb), || sb.remove(&rb, &ra))
        } else {
            (sa.remove(&ra, &rb), sb.remove(&rb, &ra))
        };
        if ea.is_err() || eb.is_err() {
            return None;
        }
    }
    Some(steps)
}
