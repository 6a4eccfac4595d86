//! The span of one side's neurons, tracked under removals, and the sines of the other side's
//! neurons ("probes") to it.
//!
//! All vectors live in the coordinates of an orthonormal basis Q of the initial span, obtained by
//! a pivoted Cholesky (Gram–Schmidt in Gram form) of the members' Gram matrix, so nothing here
//! depends on the number of rows. Members are split into *basis* members (linearly independent,
//! pivot order) and *dependent* members (within sine [`Tolerances::sine`](crate::Tolerances) of the
//! basis span). Each basis member keeps its *dual* vector (orthogonal to the other basis members,
//! inner product 1 with itself). Removing a basis member either swaps in a dependent member that
//! carries its direction (the span does not change) or loses exactly one direction w, the
//! normalised dual; then every probe's squared sine grows by `<p, w>² / ||p||²`. Each removal
//! costs O(rank · (members + probes)).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::Arc;

/// Batches with fewer removed basis members are removed one at a time.
const BLOCK_MIN: usize = 8;

/// Pivots per panel of the blocked pivoted Cholesky.
const PANEL: usize = 48;

/// The effect of removing one member on the probes' sines.
pub(crate) enum Lost {
    /// The span does not change.
    Nothing,
    /// The span becomes {0}: every squared sine becomes 1.
    Everything,
    /// The span loses this unit direction.
    Direction(Vec<f64>),
}

/// Span of a set of members and the sines of a set of probes to it.
#[derive(Debug)]
pub(crate) struct SpanTracker {
    /// Dimension of the coordinate space (rank of the initial span).
    dim: usize,
    /// Member coordinates, one column of `dim` values per member.
    coords: Arc<Vec<f64>>,
    /// Dual vectors of basis members (same layout as `coords`; meaningless for dependents).
    duals: Arc<Vec<f64>>,
    member_norm2: Vec<f64>,
    is_basis: Vec<bool>,
    member_alive: Vec<bool>,
    alive_members: usize,
    /// Probe coordinates of their projections onto the current span.
    probes: Arc<Vec<f64>>,
    probe_norm2: Vec<f64>,
    probe_sin2: Vec<f64>,
    probe_alive: Vec<bool>,
    sine_tol: f64,
    /// Lost directions not yet projected out of `coords`, `duals` and `probes` (orthonormal
    /// columns of `dim` values, orthogonal to the current span). `probe_sin2` is always current;
    /// every other quantity is the stored one minus its pending components, which are only
    /// computed where needed (the dual of a removed member) and dropped at compaction (the new
    /// coordinates are inner products with the current span, orthogonal to them).
    pending: Cols,
    /// Keep lost directions pending instead of projecting them out at each removal.
    lazy: bool,
    /// Inner products of the stored probes with the stored duals and pending directions (the
    /// ε-profile's pass only, see [`enable_cache`](Self::enable_cache)); `None` when not kept
    /// or invalidated.
    cache: Option<DualCache>,
    /// Rebuild `cache` at each compaction.
    use_cache: bool,
    /// Parallelism of the matrix products and factorisations (the simple-match search runs
    /// many trackers at once and makes each one sequential).
    par: Par,
}

/// `c[i * q + p]` = stored probe p · stored dual i; `b[k * q + p]` = stored probe p · pending
/// direction k. With them, the sines after removing basis member i need the q numbers
/// `(c_i - Σ_k β_k b_k) / ‖w‖` (β: the pending components of dual i, ‖w‖ its current norm)
/// instead of q inner products of length `dim`.
#[derive(Debug, Clone)]
struct DualCache {
    q: usize,
    /// Shared between copies (never modified, only rebuilt).
    c: Arc<Vec<f64>>,
    b: Cols,
}

/// Columns of one length (lost directions, or their inner products with the probes), kept in
/// shared chunks of [`CHUNK`] columns: copying a tracker copies pointers, and appending a column
/// copies at most the last chunk (once per copy). A trial on a copy of a search state adds a
/// few directions to the state's hundreds.
#[derive(Debug, Clone, Default)]
struct Cols {
    /// Length of each column.
    len: usize,
    /// Number of columns.
    count: usize,
    chunks: Vec<Arc<Vec<f64>>>,
}

/// Columns per chunk of [`Cols`].
const CHUNK: usize = 16;

impl Cols {
    fn new(len: usize) -> Self {
        Self {
            len,
            count: 0,
            chunks: Vec::new(),
        }
    }

    fn clear(&mut self, len: usize) {
        self.len = len;
        self.count = 0;
        self.chunks.clear();
    }

    fn push(&mut self, col: &[f64]) {
        debug_assert_eq!(col.len(), self.len);
        if self.count.is_multiple_of(CHUNK) {
            self.chunks
                .push(Arc::new(Vec::with_capacity(self.len * CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).extend_from_slice(col);
        }
        self.count += 1;
    }

    /// The chunks as `len x columns` matrices, with the index of their first column.
    fn blocks(&self) -> impl Iterator<Item = (usize, MatRef<'_, f64>)> {
        let len = self.len;
        self.chunks.iter().enumerate().map(move |(k, c)| {
            let cols = c.len().checked_div(len).unwrap_or(0);
            (k * CHUNK, MatRef::from_column_major_slice(c, len, cols))
        })
    }

    /// All columns in one column-major buffer.
    fn to_vec(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.len * self.count);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }

    /// `out = Colsᵀ x` (`count` values).
    fn t_times(&self, x: &[f64], out: &mut [f64], par: Par) {
        for (first, m) in self.blocks() {
            let n = m.ncols();
            matmul(
                MatMut::from_column_major_slice_mut(&mut out[first..first + n], n, 1),
                Accum::Replace,
                m.transpose(),
                MatRef::from_column_major_slice(x, self.len, 1),
                1.0,
                par,
            );
        }
    }

    /// `y -= Cols beta`.
    fn sub_times(&self, beta: &[f64], y: &mut [f64], par: Par) {
        for (first, m) in self.blocks() {
            let n = m.ncols();
            matmul(
                MatMut::from_column_major_slice_mut(y, self.len, 1),
                Accum::Add,
                m,
                MatRef::from_column_major_slice(&beta[first..first + n], n, 1),
                -1.0,
                par,
            );
        }
    }

    /// `x -= Cols (Colsᵀ x)` for the columns of `x` (classical Gram–Schmidt against
    /// orthonormal columns: every product with the original `x`).
    fn project_out(&self, x: &mut Mat<f64>, par: Par) {
        if self.count == 0 || x.ncols() == 0 {
            return;
        }
        let parts: Vec<Mat<f64>> = self
            .blocks()
            .map(|(_, m)| at_b(m, x.as_ref(), par))
            .collect();
        for ((_, m), b) in self.blocks().zip(&parts) {
            matmul(x.as_mut(), Accum::Add, m, b.as_ref(), -1.0, par);
        }
    }
}

impl Clone for SpanTracker {
    fn clone(&self) -> Self {
        let mut c = Self {
            dim: 0,
            coords: Arc::default(),
            duals: Arc::default(),
            member_norm2: Vec::new(),
            is_basis: Vec::new(),
            member_alive: Vec::new(),
            alive_members: 0,
            probes: Arc::default(),
            probe_norm2: Vec::new(),
            probe_sin2: Vec::new(),
            probe_alive: Vec::new(),
            sine_tol: self.sine_tol,
            pending: Cols::default(),
            lazy: self.lazy,
            cache: None,
            use_cache: false,
            par: self.par,
        };
        c.clone_from(self);
        c
    }

    /// Reuses this tracker's allocations (trial removals clone a tracker many times).
    fn clone_from(&mut self, src: &Self) {
        self.dim = src.dim;
        // The three large arrays are shared until one copy modifies them (copy on write): a
        // trial that only loses directions never touches them (they stay pending).
        self.coords = Arc::clone(&src.coords);
        self.duals = Arc::clone(&src.duals);
        self.member_norm2.clone_from(&src.member_norm2);
        self.is_basis.clone_from(&src.is_basis);
        self.member_alive.clone_from(&src.member_alive);
        self.alive_members = src.alive_members;
        self.probes = Arc::clone(&src.probes);
        self.probe_norm2.clone_from(&src.probe_norm2);
        self.probe_sin2.clone_from(&src.probe_sin2);
        self.probe_alive.clone_from(&src.probe_alive);
        self.sine_tol = src.sine_tol;
        self.pending.clone_from(&src.pending);
        self.lazy = src.lazy;
        self.cache.clone_from(&src.cache);
        self.use_cache = src.use_cache;
        self.par = src.par;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four accumulators let the compiler vectorise without reassociating a single sum.
    let mut acc = [0.0f64; 4];
    let (ac, ar) = a.split_at(a.len() / 4 * 4);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(4).zip(bc.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Cholesky–QR stops (and the Householder QR takes over) when a pivot of the Gram matrix of
/// the columns falls below this fraction of the column's squared norm: the columns are then
/// too close to dependent (condition number above about 1e5) for two passes to reach working
/// precision.
const CHOLQR_MIN_PIVOT: f64 = 1e-10;

/// One Cholesky–QR pass: `m` ← `m` R⁻¹ with RᵀR = mᵀm. Returns false (m unusable) when a
/// pivot is below [`CHOLQR_MIN_PIVOT`] times its diagonal entry.
fn cholqr_pass(m: &mut Mat<f64>) -> bool {
    let k = m.ncols();
    let mut g = Mat::<f64>::zeros(k, k);
    matmul(
        g.as_mut(),
        Accum::Replace,
        m.transpose(),
        m.as_ref(),
        1.0,
        Par::Seq,
    );
    // Lower Cholesky factor L of g, in place (g = L Lᵀ).
    for j in 0..k {
        let diag = g[(j, j)];
        let mut d = diag;
        for t in 0..j {
            d -= g[(j, t)] * g[(j, t)];
        }
        // (Also false for NaN.)
        let usable = d > CHOLQR_MIN_PIVOT * diag && d.is_finite();
        if !usable {
            return false;
        }
        let l = d.sqrt();
        g[(j, j)] = l;
        for i in j + 1..k {
            let mut v = g[(i, j)];
            for t in 0..j {
                v -= g[(i, t)] * g[(j, t)];
            }
            g[(i, j)] = v / l;
        }
    }
    // mᵀ ← L⁻¹ mᵀ, i.e. m ← m L⁻ᵀ.
    solve_lower_triangular_in_place(g.as_ref(), m.as_mut().transpose_mut(), Par::Seq);
    true
}

/// An orthonormal basis of the span of the columns of `m` (dim x k, k small): Cholesky–QR
/// applied twice (orthogonal to working precision for columns that are not nearly dependent,
/// and much cheaper than a Householder QR on these tall, thin shapes). Nearly dependent columns
/// fall back to the Householder thin Q.
fn orthonormal_basis(m: Mat<f64>, par: Par) -> Mat<f64> {
    let mut w = m.clone();
    if cholqr_pass(&mut w) && cholqr_pass(&mut w) {
        return w;
    }
    thin_qr(m, par).0
}

/// `aᵀ b` with the given parallelism.
fn at_b(a: MatRef<'_, f64>, b: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let mut out = Mat::zeros(a.ncols(), b.ncols());
    matmul(out.as_mut(), Accum::Replace, a.transpose(), b, 1.0, par);
    out
}

/// A Householder QR factorisation A = QR of an m x n matrix (m ≥ n), Q kept as its reflectors.
struct HouseholderQr {
    /// The factored matrix: R on and above the diagonal, the reflectors below.
    factors: Mat<f64>,
    /// The block reflectors' triangular factors.
    coeff: Mat<f64>,
    par: Par,
}

impl HouseholderQr {
    fn new(mut a: Mat<f64>, par: Par) -> Self {
        use faer::linalg::qr::no_pivoting::factor::{
            qr_in_place, qr_in_place_scratch, recommended_block_size,
        };
        let (m, n) = a.shape();
        let block = recommended_block_size::<f64>(m, n);
        let mut coeff = Mat::<f64>::zeros(block, m.min(n));
        let scratch = qr_in_place_scratch::<f64>(m, n, block, par, Default::default());
        qr_in_place(
            a.as_mut(),
            coeff.as_mut(),
            par,
            MemStack::new(&mut MemBuffer::new(scratch)),
            Default::default(),
        );
        Self {
            factors: a,
            coeff,
            par,
        }
    }

    /// R (n x n, upper triangular).
    fn r(&self) -> Mat<f64> {
        let n = self.factors.ncols();
        Mat::from_fn(n, n, |i, j| if i <= j { self.factors[(i, j)] } else { 0.0 })
    }

    /// The reflectors.
    fn reflectors(&self) -> MatRef<'_, f64> {
        let n = self.factors.nrows().min(self.factors.ncols());
        self.factors.as_ref().subcols(0, n)
    }

    /// The thin Q (m x n).
    fn thin_q(&self) -> Mat<f64> {
        use faer::linalg::householder::{
            apply_block_householder_sequence_on_the_left_in_place_scratch as scratch,
            apply_block_householder_sequence_on_the_left_in_place_with_conj as apply,
        };
        let (m, n) = self.factors.shape();
        let mut q = Mat::<f64>::identity(m, n);
        let req = scratch::<f64>(m, self.coeff.nrows(), n);
        let stack = &mut MemBuffer::new(req);
        let (h, c) = (self.reflectors(), self.coeff.as_ref());
        apply(
            h,
            c,
            faer::Conj::No,
            q.as_mut(),
            self.par,
            MemStack::new(stack),
        );
        q
    }

    /// Qᵀ x for the columns x of `x` (m rows), in place: the first n rows are the coordinates
    /// of their projections on the span of A's columns in the basis of the thin Q. Applying the
    /// reflectors costs about as much as one product with the thin Q, without forming it.
    fn apply_qt(&self, x: &mut Mat<f64>) {
        use faer::linalg::householder::{
            apply_block_householder_sequence_transpose_on_the_left_in_place_scratch as scratch,
            apply_block_householder_sequence_transpose_on_the_left_in_place_with_conj as apply,
        };
        let req = scratch::<f64>(self.factors.nrows(), self.coeff.nrows(), x.ncols());
        let stack = &mut MemBuffer::new(req);
        let (h, c) = (self.reflectors(), self.coeff.as_ref());
        apply(
            h,
            c,
            faer::Conj::No,
            x.as_mut(),
            self.par,
            MemStack::new(stack),
        );
    }
}

/// Householder QR of `a` (m x n, m ≥ n): the thin Q (m x n) and R (n x n, upper triangular),
/// with the given parallelism.
fn thin_qr(a: Mat<f64>, par: Par) -> (Mat<f64>, Mat<f64>) {
    let qr = HouseholderQr::new(a, par);
    (qr.thin_q(), qr.r())
}

/// Matrix-vector products of the ε-profile's single removals with at least this many
/// multiply-adds are split over the rayon threads (a single removal changes one side only, so
/// otherwise one core would wait).
const PAR_GEMV: usize = 1 << 14;

fn par_for(work: usize) -> Par {
    if work >= PAR_GEMV {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

impl SpanTracker {
    /// Builds the tracker from Gram entries: `g_mm(i, j)` between members, `g_mp(i, p)` between
    /// member i and probe p, `probe_norm2[p] = ||p||²`. Members and probes must be nonzero.
    ///
    /// Blocked: the pivoted Cholesky updates the trailing Gram block once per panel of pivots
    /// (matrix products), and the duals and probe coordinates are triangular solves.
    pub(crate) fn new(
        members: usize,
        probe_norm2: Vec<f64>,
        g_mm: &dyn Fn(usize, usize) -> f64,
        g_mp: &dyn Fn(usize, usize) -> f64,
        sine_tol: f64,
    ) -> Self {
        let m = members;
        let q = probe_norm2.len();
        let member_norm2: Vec<f64> = (0..m).map(|i| g_mm(i, i)).collect();
        let tol2 = sine_tol * sine_tol;

        // Pivoted Cholesky with relative-residual pivoting: scale invariant, stops at the rank.
        // Column t of `l` holds every member's coordinate on basis vector t; `a` is the Gram
        // matrix minus the contributions of the panels already finished.
        let mut a = Mat::from_fn(m, m, g_mm);
        let mut l = Mat::<f64>::zeros(m, m);
        let mut resid = member_norm2.clone();
        let mut pivots: Vec<usize> = Vec::new();
        let mut chosen = vec![false; m];
        let mut col = vec![0.0; m];
        let mut finished = false;
        while !finished {
            let k0 = pivots.len();
            while pivots.len() < (k0 + PANEL).min(m) {
                let mut best = None;
                let mut best_rel = tol2;
                for j in 0..m {
                    if chosen[j] || member_norm2[j] <= 0.0 {
                        continue;
                    }
                    let rel = resid[j] / member_norm2[j];
                    if rel > best_rel {
                        best_rel = rel;
                        best = Some(j);
                    }
                }
                let Some(p) = best else {
                    finished = true;
                    break;
                };
                let k = pivots.len();
                let diag = resid[p].sqrt();
                col.copy_from_slice(a.col(p).try_as_col_major().unwrap().as_slice());
                for s in k0..k {
                    let lps = l[(p, s)];
                    if lps != 0.0 {
                        axpy(
                            -lps,
                            l.col(s).try_as_col_major().unwrap().as_slice(),
                            &mut col,
                        );
                    }
                }
                let lk = l.col_mut(k).try_as_col_major_mut().unwrap().as_slice_mut();
                for j in 0..m {
                    if chosen[j] || j == p {
                        continue;
                    }
                    let v = col[j] / diag;
                    lk[j] = v;
                    resid[j] -= v * v;
                }
                lk[p] = diag;
                chosen[p] = true;
                resid[p] = 0.0;
                pivots.push(p);
            }
            if pivots.len() == m {
                finished = true;
            }
            let k = pivots.len();
            if !finished && k > k0 {
                let panel = l.as_ref().subcols(k0, k - k0);
                matmul(
                    a.as_mut(),
                    Accum::Add,
                    panel,
                    panel.transpose(),
                    -1.0,
                    Par::Seq,
                );
            }
        }
        drop(a);
        let dim = pivots.len();

        // Member coordinates, column-major (coordinates after a member's own pivot are zero).
        let mut coords = vec![0.0; dim * m];
        for j in 0..m {
            for t in 0..dim {
                coords[j * dim + t] = l[(j, t)];
            }
        }
        // lp[u][s]: coordinate s of pivot u (lower triangular).
        let lp = Mat::from_fn(
            dim,
            dim,
            |u, s| if s <= u { l[(pivots[u], s)] } else { 0.0 },
        );
        drop(l);

        // Duals of the basis members: column t of lp^{-1} is the dual of pivot t.
        let mut dual_mat = Mat::<f64>::identity(dim, dim);
        solve_lower_triangular_in_place(lp.as_ref(), dual_mat.as_mut(), Par::Seq);
        let mut duals = vec![0.0; dim * m];
        for (t, &pt) in pivots.iter().enumerate() {
            for u in 0..dim {
                duals[pt * dim + u] = dual_mat[(u, t)];
            }
        }
        drop(dual_mat);

        // Probe coordinates: lp x = (inner products of the pivots with the probe).
        let mut pm = Mat::from_fn(dim, q, |u, p| g_mp(pivots[u], p));
        solve_lower_triangular_in_place(lp.as_ref(), pm.as_mut(), Par::Seq);
        let mut probes = vec![0.0; dim * q];
        let mut probe_sin2 = vec![1.0; q];
        for p in 0..q {
            let c = &mut probes[p * dim..p * dim + dim];
            for (u, cu) in c.iter_mut().enumerate() {
                *cu = pm[(u, p)];
            }
            let n2 = probe_norm2[p];
            probe_sin2[p] = if n2 > 0.0 {
                (1.0 - dot(c, c) / n2).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }

        let mut is_basis = vec![false; m];
        for &p in &pivots {
            is_basis[p] = true;
        }
        let mut tracker = Self {
            dim,
            coords: Arc::new(coords),
            duals: Arc::new(duals),
            member_norm2,
            is_basis,
            member_alive: vec![true; m],
            alive_members: m,
            probes: Arc::new(probes),
            probe_norm2,
            probe_sin2,
            probe_alive: vec![true; q],
            sine_tol,
            pending: Cols::new(dim),
            lazy: true,
            cache: None,
            use_cache: false,
            par: Par::rayon(0),
        };
        if dim == 0 {
            tracker.probe_sin2.iter_mut().for_each(|s| *s = 1.0);
        }
        tracker
    }

    /// The pre-blocking construction (one dot product per entry), kept as the reference of the
    /// equivalence tests.
    pub(crate) fn new_reference(
        members: usize,
        probe_norm2: Vec<f64>,
        g_mm: &dyn Fn(usize, usize) -> f64,
        g_mp: &dyn Fn(usize, usize) -> f64,
        sine_tol: f64,
    ) -> Self {
        let m = members;
        let q = probe_norm2.len();
        let member_norm2: Vec<f64> = (0..m).map(|i| g_mm(i, i)).collect();
        let tol2 = sine_tol * sine_tol;

        // Pivoted Cholesky with relative-residual pivoting: scale invariant, stops at the rank.
        // partial[j] holds the coordinates of member j on the basis vectors chosen so far.
        let mut resid = member_norm2.clone();
        let mut pivots: Vec<usize> = Vec::new();
        let mut partial: Vec<Vec<f64>> = vec![Vec::new(); m];
        let mut chosen = vec![false; m];
        loop {
            let mut best = None;
            let mut best_rel = tol2;
            for j in 0..m {
                if chosen[j] || member_norm2[j] <= 0.0 {
                    continue;
                }
                let rel = resid[j] / member_norm2[j];
                if rel > best_rel {
                    best_rel = rel;
                    best = Some(j);
                }
            }
            let Some(p) = best else { break };
            let diag = resid[p].sqrt();
            let pcol = std::mem::take(&mut partial[p]);
            for j in 0..m {
                if chosen[j] || j == p {
                    continue;
                }
                let v = (g_mm(j, p) - dot(&partial[j], &pcol)) / diag;
                partial[j].push(v);
                resid[j] -= v * v;
            }
            partial[p] = pcol;
            partial[p].push(diag);
            chosen[p] = true;
            resid[p] = 0.0;
            pivots.push(p);
        }
        let dim = pivots.len();

        // Member coordinates, column-major (coordinates after a member's own pivot are zero).
        let mut coords = vec![0.0; dim * m];
        for (j, col) in partial.iter().enumerate() {
            coords[j * dim..j * dim + col.len()].copy_from_slice(col);
        }
        drop(partial);

        // Duals of the basis members: D = L^{-T} with L[s][t] = coords of pivot t, coordinate s.
        let mut duals = vec![0.0; dim * m];
        for (t, &pt) in pivots.iter().enumerate() {
            let mut d = vec![0.0; dim];
            for u in t..dim {
                let pu = pivots[u];
                let cu = &coords[pu * dim..pu * dim + dim];
                let mut v = if u == t { 1.0 } else { 0.0 };
                v -= dot(&cu[t..u], &d[t..u]);
                d[u] = v / cu[u];
            }
            duals[pt * dim..pt * dim + dim].copy_from_slice(&d);
        }

        // Probe coordinates by forward substitution against the pivots' coordinates.
        let mut probes = vec![0.0; dim * q];
        let mut probe_sin2 = vec![1.0; q];
        for p in 0..q {
            let col = &mut probes[p * dim..p * dim + dim];
            for (u, &pu) in pivots.iter().enumerate() {
                let cu = &coords[pu * dim..pu * dim + dim];
                let v = g_mp(pu, p) - dot(&cu[..u], &col[..u]);
                col[u] = v / cu[u];
            }
            let n2 = probe_norm2[p];
            probe_sin2[p] = if n2 > 0.0 {
                (1.0 - dot(col, col) / n2).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }

        let mut is_basis = vec![false; m];
        for &p in &pivots {
            is_basis[p] = true;
        }
        let mut tracker = Self {
            dim,
            coords: Arc::new(coords),
            duals: Arc::new(duals),
            member_norm2,
            is_basis,
            member_alive: vec![true; m],
            alive_members: m,
            probes: Arc::new(probes),
            probe_norm2,
            probe_sin2,
            probe_alive: vec![true; q],
            sine_tol,
            pending: Cols::new(dim),
            lazy: true,
            cache: None,
            use_cache: false,
            par: Par::rayon(0),
        };
        if dim == 0 {
            tracker.probe_sin2.iter_mut().for_each(|s| *s = 1.0);
        }
        tracker.lazy = false;
        tracker
    }

    /// Member `i`'s current dual (its stored dual with the pending directions, orthonormal,
    /// projected out) and its components on those directions: two matrix-vector products
    /// (classical Gram–Schmidt).
    fn current_dual(&self, i: usize) -> (Vec<f64>, Vec<f64>) {
        let dim = self.dim;
        let mut w = self.duals[i * dim..i * dim + dim].to_vec();
        let kp = self.pending.count;
        let mut betas = vec![0.0; kp];
        if kp == 0 {
            return (w, betas);
        }
        let par = self.vector_par(dim * kp);
        self.pending.t_times(&w, &mut betas, par);
        self.pending.sub_times(&betas, &mut w, par);
        (w, betas)
    }

    /// Parallelism of a matrix-vector product with `work` multiply-adds: [`par_for`], or
    /// sequential where the tracker's products are.
    fn vector_par(&self, work: usize) -> Par {
        if matches!(self.par, Par::Seq) {
            Par::Seq
        } else {
            par_for(work)
        }
    }

    /// Sets the parallelism of the products and factorisations.
    pub(crate) fn set_par(&mut self, par: Par) {
        self.par = par;
    }

    /// Number of lost directions not yet projected out (tests).
    #[cfg(test)]
    pub(crate) fn pending_directions(&self) -> usize {
        self.pending.count
    }

    /// Current squared sine of probe `p` to the span.
    pub(crate) fn sin2(&self, p: usize) -> f64 {
        self.probe_sin2[p]
    }

    /// Dimension of the coordinate space.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Number of probes.
    pub(crate) fn probe_count(&self) -> usize {
        self.probe_alive.len()
    }

    /// Stops tracking probe `p`.
    pub(crate) fn remove_probe(&mut self, p: usize) {
        self.probe_alive[p] = false;
    }

    /// Whether member `i` is still in the span set.
    pub(crate) fn member_alive(&self, i: usize) -> bool {
        self.member_alive[i]
    }

    /// Number of live members.
    pub(crate) fn alive_members(&self) -> usize {
        self.alive_members
    }

    /// Dimension of the current span (number of basis members still present).
    pub(crate) fn rank(&self) -> usize {
        (0..self.is_basis.len())
            .filter(|&i| self.member_alive[i] && self.is_basis[i])
            .count()
    }

    /// Allocated members and probes (present or not).
    pub(crate) fn allocated(&self) -> usize {
        self.member_alive.len() + self.probe_alive.len()
    }

    /// Keeps only the given members and probes (in that order, all present) and re-expresses
    /// every vector in an orthonormal basis of the current span, whose dimension is the number
    /// of basis members left. Sines are unchanged; later removals cost less.
    pub(crate) fn compact(&mut self, keep_members: &[usize], keep_probes: &[usize]) {
        // The pending directions are orthogonal to the current span, so projecting the stored
        // arrays on an orthonormal basis of that span removes them.
        self.pending.clear(0);
        let old = self.dim;
        let basis: Vec<usize> = keep_members
            .iter()
            .copied()
            .filter(|&i| self.is_basis[i])
            .collect();
        let k = basis.len();
        // Orthonormal basis Q of the current span: Householder QR of the basis members'
        // coordinates, C_b = Q R. In that basis the basis members' coordinates are the columns of
        // R (Qᵀ C_b = R) and their duals, biorthogonal to them inside the span, the columns of
        // R⁻ᵀ: only the probes and the dependent members need products with Q, applied as its
        // reflectors (on 512+512 ReLU the search ran 9% faster than with the thin Q formed).
        let qr = (k > 0).then(|| {
            let cb = Mat::from_fn(old, k, |r, c| self.coords[basis[c] * old + r]);
            HouseholderQr::new(cb, self.par)
        });
        let r = qr
            .as_ref()
            .map_or_else(|| Mat::zeros(0, 0), HouseholderQr::r);
        // Qᵀ x for the given columns, keeping the first k rows, packed column by column.
        let project = |src: &[f64], ids: &[usize]| -> Vec<f64> {
            let mut out = vec![0.0; k * ids.len()];
            if let (Some(qr), false) = (&qr, ids.is_empty()) {
                let mut x = Mat::from_fn(old, ids.len(), |r, c| src[ids[c] * old + r]);
                qr.apply_qt(&mut x);
                for (c, col) in out.chunks_exact_mut(k).enumerate() {
                    col.copy_from_slice(&x.col(c).try_as_col_major().unwrap().as_slice()[..k]);
                }
            }
            out
        };
        let mut rank_of = vec![usize::MAX; self.member_alive.len()];
        for (t, &i) in basis.iter().enumerate() {
            rank_of[i] = t;
        }
        let deps: Vec<usize> = keep_members
            .iter()
            .copied()
            .filter(|&i| !self.is_basis[i])
            .collect();
        let dep_coords = project(&self.coords, &deps);
        let mut inv_t = Mat::<f64>::identity(k, k);
        solve_lower_triangular_in_place(r.transpose(), inv_t.as_mut(), self.par);
        let m = keep_members.len();
        let mut coords = vec![0.0; k * m];
        let mut duals = vec![0.0; k * m];
        let mut d = 0;
        for (c, &i) in keep_members.iter().enumerate() {
            let (cc, dc) = (&mut coords[c * k..c * k + k], &mut duals[c * k..c * k + k]);
            if let Some(&t) = rank_of.get(i).filter(|&&t| t != usize::MAX) {
                for (row, v) in cc.iter_mut().enumerate().take(t + 1) {
                    *v = r[(row, t)];
                }
                for (row, v) in dc.iter_mut().enumerate() {
                    *v = inv_t[(row, t)];
                }
            } else {
                cc.copy_from_slice(&dep_coords[d * k..d * k + k]);
                d += 1;
            }
        }
        self.probes = Arc::new(project(&self.probes, keep_probes));
        self.coords = Arc::new(coords);
        self.duals = Arc::new(duals);
        self.dim = k;
        self.pending.clear(k);
        let pick_f = |v: &[f64], ids: &[usize]| ids.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let pick_b = |v: &[bool], ids: &[usize]| ids.iter().map(|&i| v[i]).collect::<Vec<bool>>();
        self.member_norm2 = pick_f(&self.member_norm2, keep_members);
        self.is_basis = pick_b(&self.is_basis, keep_members);
        self.member_alive = vec![true; keep_members.len()];
        self.alive_members = keep_members.len();
        self.probe_norm2 = pick_f(&self.probe_norm2, keep_probes);
        self.probe_sin2 = pick_f(&self.probe_sin2, keep_probes);
        self.probe_alive = vec![true; keep_probes.len()];
        self.cache = None;
        if self.use_cache {
            self.build_cache();
        }
    }

    /// Keeps [`DualCache`] from now on (rebuilt at each compaction): single removals then cost
    /// O(probes · pending directions) instead of O(probes · dim). Copies of the tracker share
    /// it (the inner products with the duals are shared, those with the pending directions
    /// are kept in shared chunks like the directions themselves).
    pub(crate) fn enable_cache(&mut self) {
        self.use_cache = true;
        self.build_cache();
    }

    fn build_cache(&mut self) {
        let (dim, m, q) = (self.dim, self.member_alive.len(), self.probe_alive.len());
        let kp = self.pending.count;
        let probes = MatRef::from_column_major_slice(&self.probes, dim, q);
        let mut c = vec![0.0; q * m];
        let mut b = Cols::new(q);
        if dim > 0 && q > 0 {
            if m > 0 {
                matmul(
                    MatMut::from_column_major_slice_mut(&mut c, q, m),
                    Accum::Replace,
                    probes.transpose(),
                    MatRef::from_column_major_slice(&self.duals, dim, m),
                    1.0,
                    Par::Seq,
                );
            }
            if kp > 0 {
                for (_, w) in self.pending.blocks() {
                    let pb = at_b(probes, w, Par::Seq);
                    for col in pb.col_iter() {
                        b.push(col.try_as_col_major().expect("column-major").as_slice());
                    }
                }
            }
        }
        self.cache = Some(DualCache {
            q,
            c: Arc::new(c),
            b,
        });
    }

    /// What removing the alive member `i` alone would do to the probes' sines, computed exactly
    /// as [`remove_member`](Self::remove_member) computes it, without changing anything.
    pub(crate) fn lost_on_removal(&self, i: usize) -> Lost {
        if let Some(lost) = self.trivial_loss(i) {
            return lost;
        }
        self.loss_along(i, self.current_dual(i).0)
    }

    /// The cases of [`lost_on_removal`](Self::lost_on_removal) that need no direction: `None`
    /// when member `i` is a basis member whose removal loses its current dual's direction
    /// (unless a dependent member carries it).
    fn trivial_loss(&self, i: usize) -> Option<Lost> {
        if !self.member_alive[i] {
            Some(Lost::Nothing)
        } else if self.alive_members == 1 {
            Some(Lost::Everything)
        } else if !self.is_basis[i] {
            Some(Lost::Nothing)
        } else {
            None
        }
    }

    /// The effect of removing basis member `i`, given its current dual `w` (pending directions
    /// projected out, not normalised): the unit direction lost, or nothing when `w` vanishes or
    /// a dependent member carries it (as [`remove_member`](Self::remove_member) decides).
    fn loss_along(&self, i: usize, mut w: Vec<f64>) -> Lost {
        let dim = self.dim;
        let wn = dot(&w, &w).sqrt();
        if wn == 0.0 || !wn.is_finite() {
            return Lost::Nothing;
        }
        w.iter_mut().for_each(|v| *v /= wn);
        for d in 0..self.member_alive.len() {
            if d == i || !self.member_alive[d] || self.is_basis[d] {
                continue;
            }
            let c = &self.coords[d * dim..d * dim + dim];
            let rel = dot(c, &w).abs() / self.member_norm2[d].sqrt();
            if rel > self.sine_tol {
                return Lost::Nothing;
            }
        }
        Lost::Direction(w)
    }

    /// The current duals of the given members (their stored duals minus their components on
    /// the pending directions, which are orthonormal), one column each: two matrix products.
    fn current_duals(&self, ids: &[usize]) -> Mat<f64> {
        let dim = self.dim;
        let mut dk = Mat::from_fn(dim, ids.len(), |r, c| self.duals[ids[c] * dim + r]);
        self.pending.project_out(&mut dk, self.par);
        dk
    }

    /// [`lost_on_removal`](Self::lost_on_removal) for several members at once: the pending
    /// directions are projected out of all their duals with two matrix products instead of two
    /// matrix-vector products each (the same directions up to rounding). Entry t is the effect
    /// of removing `ids[t]` alone.
    pub(crate) fn lost_on_removals(&self, ids: &[usize]) -> Vec<Lost> {
        let dim = self.dim;
        let kp = self.pending.count;
        if ids.len() < 2 || kp == 0 || dim == 0 {
            return ids.iter().map(|&i| self.lost_on_removal(i)).collect();
        }
        let basis: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| self.trivial_loss(i).is_none())
            .collect();
        let dk = self.current_duals(&basis);
        let mut col = 0;
        ids.iter()
            .map(|&i| {
                self.trivial_loss(i).unwrap_or_else(|| {
                    let w: Vec<f64> = (0..dim).map(|r| dk[(r, col)]).collect();
                    col += 1;
                    self.loss_along(i, w)
                })
            })
            .collect()
    }

    /// Squared sine of alive probe `p` after the span loses the unit direction `w` (as
    /// [`remove_member`](Self::remove_member) updates it, up to the rounding of the inner
    /// product, which the removal takes from a matrix-vector product).
    pub(crate) fn sin2_without(&self, p: usize, w: &[f64]) -> f64 {
        let dim = self.dim;
        let beta = dot(&self.probes[p * dim..p * dim + dim], w);
        if beta != 0.0 {
            (self.probe_sin2[p] + beta * beta / self.probe_norm2[p]).min(1.0)
        } else {
            self.probe_sin2[p]
        }
    }

    /// Removes member `i` from the span set and updates the probes' sines.
    pub(crate) fn remove_member(&mut self, i: usize) {
        if !self.member_alive[i] {
            return;
        }
        self.member_alive[i] = false;
        self.alive_members -= 1;
        if self.alive_members == 0 {
            self.probe_sin2.iter_mut().for_each(|s| *s = 1.0);
            return;
        }
        if !self.is_basis[i] {
            return;
        }
        self.is_basis[i] = false;
        let dim = self.dim;
        let kp = self.pending.count;
        let (mut w, betas) = self.current_dual(i);
        let wn = dot(&w, &w).sqrt();
        if wn == 0.0 || !wn.is_finite() {
            return;
        }
        w.iter_mut().for_each(|v| *v /= wn);

        // A dependent member that carries the direction w keeps the span unchanged. (Its stored
        // coordinates may still hold pending directions, all orthogonal to w.)
        let mut best: Option<(usize, f64)> = None;
        for d in 0..self.member_alive.len() {
            if !self.member_alive[d] || self.is_basis[d] {
                continue;
            }
            let c = &self.coords[d * dim..d * dim + dim];
            let rel = dot(c, &w).abs() / self.member_norm2[d].sqrt();
            if rel > self.sine_tol && best.is_none_or(|(_, r)| rel > r) {
                best = Some((d, rel));
            }
        }
        if let Some((d, _)) = best {
            self.flush();
            self.swap_in(i, d);
            return;
        }

        if let (true, Some(cache)) = (self.lazy, self.cache.as_mut()) {
            // The same update from the cached inner products: probe · w =
            // (probe · dual_i - Σ_k β_k probe · pending_k) / ‖w‖.
            let q = cache.q;
            let mut y = cache.c[i * q..i * q + q].to_vec();
            if kp > 0 {
                cache.b.sub_times(&betas, &mut y, par_for(q * kp));
            }
            for (p, yp) in y.iter_mut().enumerate() {
                *yp /= wn;
                if !self.probe_alive[p] {
                    continue;
                }
                let beta = *yp;
                if beta != 0.0 {
                    let s = self.probe_sin2[p] + beta * beta / self.probe_norm2[p];
                    self.probe_sin2[p] = s.min(1.0);
                }
            }
            cache.b.push(&y);
            self.pending.push(&w);
            return;
        }

        if self.lazy {
            // The span loses w: update the sines now (w is orthogonal to the pending directions,
            // so the stored probe coordinates give the same inner products), the arrays later.
            // The inner products are one matrix-vector product.
            let q = self.probe_alive.len();
            let mut y = vec![0.0; q];
            if q > 0 && dim > 0 {
                matmul(
                    MatMut::from_column_major_slice_mut(&mut y, q, 1),
                    Accum::Replace,
                    MatRef::from_column_major_slice(&self.probes, dim, q).transpose(),
                    MatRef::from_column_major_slice(&w, dim, 1),
                    1.0,
                    self.vector_par(dim * q),
                );
            }
            for (p, &beta) in y.iter().enumerate() {
                if !self.probe_alive[p] {
                    continue;
                }
                if beta != 0.0 {
                    let s = self.probe_sin2[p] + beta * beta / self.probe_norm2[p];
                    self.probe_sin2[p] = s.min(1.0);
                }
            }
            self.pending.push(&w);
            return;
        }
        self.flush();
        self.cache = None;

        // The span loses direction w.
        let probes = Arc::make_mut(&mut self.probes);
        for p in 0..self.probe_alive.len() {
            if !self.probe_alive[p] {
                continue;
            }
            let col = &mut probes[p * dim..p * dim + dim];
            let beta = dot(col, &w);
            if beta != 0.0 {
                axpy(-beta, &w, col);
                let s = self.probe_sin2[p] + beta * beta / self.probe_norm2[p];
                self.probe_sin2[p] = s.min(1.0);
            }
        }
        let (duals, coords) = (
            Arc::make_mut(&mut self.duals),
            Arc::make_mut(&mut self.coords),
        );
        for j in 0..self.member_alive.len() {
            if !self.member_alive[j] {
                continue;
            }
            if self.is_basis[j] {
                let dj = &mut duals[j * dim..j * dim + dim];
                let beta = dot(dj, &w);
                axpy(-beta, &w, dj);
            } else {
                let cj = &mut coords[j * dim..j * dim + dim];
                let beta = dot(cj, &w);
                axpy(-beta, &w, cj);
            }
        }
    }

    /// Whether a present dependent member outside `removed` has a component above the sine
    /// tolerance on the span of the orthonormal columns of `w`.
    fn carries(&self, w: &Mat<f64>, removed: &std::collections::HashSet<usize>) -> bool {
        let (dim, k) = (self.dim, w.ncols());
        let deps: Vec<usize> = (0..self.member_alive.len())
            .filter(|&d| self.member_alive[d] && !self.is_basis[d] && !removed.contains(&d))
            .collect();
        if deps.is_empty() {
            return false;
        }
        let cd = Mat::from_fn(dim, deps.len(), |r, c| self.coords[deps[c] * dim + r]);
        let x = at_b(w.as_ref(), cd.as_ref(), self.par);
        (0..deps.len()).any(|c| {
            let n2: f64 = (0..k).map(|r| x[(r, c)] * x[(r, c)]).sum();
            n2.sqrt() / self.member_norm2[deps[c]].sqrt() > self.sine_tol
        })
    }

    /// Removes several members at once. When no remaining dependent member carries one of the
    /// lost directions (sine tolerance, as in [`remove_member`](Self::remove_member)), the lost
    /// subspace is the span of the removed basis members' duals and every update is one pair of
    /// matrix products; otherwise the members are removed one at a time.
    pub(crate) fn remove_members(&mut self, ids: &[usize]) {
        let ids: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| self.member_alive[i])
            .collect();
        if self.alive_members == ids.len() {
            // Nothing left: every probe is orthogonal to the (empty) span.
            for &i in &ids {
                self.member_alive[i] = false;
                self.is_basis[i] = false;
            }
            self.alive_members = 0;
            self.pending.clear(self.dim);
            self.cache = None;
            self.probe_sin2.iter_mut().for_each(|s| *s = 1.0);
            return;
        }
        let basis_out: Vec<usize> = ids.iter().copied().filter(|&i| self.is_basis[i]).collect();
        if basis_out.len() < BLOCK_MIN || !self.lazy {
            for &i in &ids {
                self.remove_member(i);
            }
            return;
        }
        let dim = self.dim;
        let k = basis_out.len();
        let removed: std::collections::HashSet<usize> = ids.iter().copied().collect();
        let rem_basis: Vec<usize> = (0..self.member_alive.len())
            .filter(|&j| self.member_alive[j] && self.is_basis[j] && !removed.contains(&j))
            .collect();
        if !rem_basis.is_empty() && rem_basis.len() < k {
            self.flush();
            if self.remove_members_reexpress(&ids, &rem_basis) {
                return;
            }
            for &i in &ids {
                self.remove_member(i);
            }
            return;
        }
        // Orthonormal basis W of the lost directions: thin QR of the removed members' current
        // duals (stored duals minus their pending components; W is orthogonal to the pending
        // directions).
        let w = orthonormal_basis(self.current_duals(&basis_out), self.par);
        if self.carries(&w, &removed) {
            for &i in &ids {
                self.remove_member(i);
            }
            return;
        }
        for &i in &ids {
            self.member_alive[i] = false;
            self.is_basis[i] = false;
        }
        self.alive_members -= ids.len();

        // Sines: each probe's squared sine grows by its squared component on W (the stored
        // coordinates give the current components, W being orthogonal to the pending part).
        let q = self.probe_alive.len();
        if q > 0 && dim > 0 {
            let b = at_b(
                w.as_ref(),
                MatRef::from_column_major_slice(&self.probes, dim, q),
                self.par,
            );
            for p in 0..q {
                if !self.probe_alive[p] {
                    continue;
                }
                let bc = b.col(p).try_as_col_major().unwrap().as_slice();
                let lost = dot(bc, bc);
                if lost != 0.0 {
                    let s = self.probe_sin2[p] + lost / self.probe_norm2[p];
                    self.probe_sin2[p] = s.min(1.0);
                }
            }
            if let Some(cache) = self.cache.as_mut() {
                for r in 0..k {
                    let row: Vec<f64> = (0..q).map(|p| b[(r, p)]).collect();
                    cache.b.push(&row);
                }
            }
        } else {
            self.cache = None;
        }
        for c in 0..k {
            self.pending
                .push(w.col(c).try_as_col_major().unwrap().as_slice());
        }
    }

    /// Block removal when few basis members remain: re-expresses everything in an orthonormal
    /// basis Q of the remaining basis members (the new span); each probe's squared sine grows by
    /// its squared residual off Q. Returns false (nothing changed) when a remaining dependent
    /// member has a residual above the sine tolerance (it would carry a lost direction).
    fn remove_members_reexpress(&mut self, ids: &[usize], rem_basis: &[usize]) -> bool {
        let dim = self.dim;
        let r = rem_basis.len();
        let q_mat = thin_qr(
            Mat::from_fn(dim, r, |row, c| self.coords[rem_basis[c] * dim + row]),
            self.par,
        )
        .0;
        // Coordinates on Q and squared residual norms of a set of columns.
        let split = |buf: &[f64], cols: usize| -> (Mat<f64>, Vec<f64>) {
            let x = MatRef::from_column_major_slice(buf, dim, cols);
            let b = at_b(q_mat.as_ref(), x, self.par);
            let mut res = x.to_owned();
            matmul(
                res.as_mut(),
                Accum::Add,
                q_mat.as_ref(),
                b.as_ref(),
                -1.0,
                Par::Seq,
            );
            let n2 = (0..cols)
                .map(|c| {
                    let rc = res.col(c).try_as_col_major().unwrap().as_slice();
                    dot(rc, rc)
                })
                .collect();
            (b, n2)
        };
        let m = self.member_alive.len();
        let removed: std::collections::HashSet<usize> = ids.iter().copied().collect();
        let (new_coords, res_coords) = split(&self.coords, m);
        let carries = (0..m).any(|d| {
            self.member_alive[d]
                && !self.is_basis[d]
                && !removed.contains(&d)
                && res_coords[d].sqrt() / self.member_norm2[d].sqrt() > self.sine_tol
        });
        if carries {
            return false;
        }
        for &i in ids {
            self.member_alive[i] = false;
            self.is_basis[i] = false;
        }
        self.alive_members -= ids.len();
        let q = self.probe_alive.len();
        let (new_probes, lost) = split(&self.probes, q);
        for (p, &lp) in lost.iter().enumerate() {
            if self.probe_alive[p] && lp != 0.0 {
                let s = self.probe_sin2[p] + lp / self.probe_norm2[p];
                self.probe_sin2[p] = s.min(1.0);
            }
        }
        let new_duals = at_b(
            q_mat.as_ref(),
            MatRef::from_column_major_slice(&self.duals, dim, m),
            self.par,
        );
        let flat = |x: &Mat<f64>| -> Vec<f64> {
            let mut v = Vec::with_capacity(x.nrows() * x.ncols());
            for c in 0..x.ncols() {
                v.extend_from_slice(x.col(c).try_as_col_major().unwrap().as_slice());
            }
            v
        };
        self.cache = None;
        self.coords = Arc::new(flat(&new_coords));
        self.duals = Arc::new(flat(&new_duals));
        self.probes = Arc::new(flat(&new_probes));
        self.dim = r;
        self.pending.clear(r);
        true
    }

    /// Projects the pending lost directions out of the stored arrays (two matrix products per
    /// array).
    fn flush(&mut self) {
        if self.pending.count == 0 {
            return;
        }
        self.cache = None;
        let dim = self.dim;
        let k = self.pending.count;
        let pending = self.pending.to_vec();
        let w = MatRef::from_column_major_slice(&pending, dim, k);
        let project = |buf: &mut [f64], cols: usize| {
            if cols == 0 {
                return;
            }
            let mut b = Mat::<f64>::zeros(k, cols);
            matmul(
                b.as_mut(),
                Accum::Replace,
                w.transpose(),
                MatRef::from_column_major_slice(buf, dim, cols),
                1.0,
                Par::Seq,
            );
            matmul(
                MatMut::from_column_major_slice_mut(buf, dim, cols),
                Accum::Add,
                w,
                b.as_ref(),
                -1.0,
                Par::Seq,
            );
        };
        let m = self.member_alive.len();
        project(
            Arc::<Vec<f64>>::make_mut(&mut self.probes),
            self.probe_alive.len(),
        );
        project(Arc::<Vec<f64>>::make_mut(&mut self.duals), m);
        if (0..m).any(|j| self.member_alive[j] && !self.is_basis[j]) {
            project(Arc::<Vec<f64>>::make_mut(&mut self.coords), m);
        }
        self.pending.clear(dim);
    }

    /// Replaces basis member `out` (already marked removed) by dependent member `inn`.
    fn swap_in(&mut self, out: usize, inn: usize) {
        self.cache = None;
        let dim = self.dim;
        let d_out = self.duals[out * dim..out * dim + dim].to_vec();
        let c_in = self.coords[inn * dim..inn * dim + dim].to_vec();
        let coef = dot(&c_in, &d_out);
        let d_in: Vec<f64> = d_out.iter().map(|v| v / coef).collect();
        let duals = Arc::make_mut(&mut self.duals);
        for j in 0..self.member_alive.len() {
            if j == inn || !self.member_alive[j] || !self.is_basis[j] {
                continue;
            }
            let dj = &mut duals[j * dim..j * dim + dim];
            let beta = dot(dj, &c_in);
            axpy(-beta, &d_in, dj);
        }
        duals[inn * dim..inn * dim + dim].copy_from_slice(&d_in);
        self.is_basis[inn] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Largest |QᵀQ − I| entry and largest residual of the columns of `m` off span(Q).
    fn check(m: &Mat<f64>, q: &Mat<f64>) -> (f64, f64) {
        let k = q.ncols();
        let g = q.transpose() * q;
        let mut orth: f64 = 0.0;
        for i in 0..k {
            for j in 0..k {
                let target = if i == j { 1.0 } else { 0.0 };
                orth = orth.max((g[(i, j)] - target).abs());
            }
        }
        let proj = q * (q.transpose() * m);
        let mut res: f64 = 0.0;
        for c in 0..m.ncols() {
            let n: f64 = (0..m.nrows()).map(|r| m[(r, c)] * m[(r, c)]).sum();
            let d: f64 = (0..m.nrows())
                .map(|r| (m[(r, c)] - proj[(r, c)]).powi(2))
                .sum();
            res = res.max((d / n).sqrt());
        }
        (orth, res)
    }

    #[test]
    fn cholesky_qr_twice_is_orthonormal_and_spans_the_columns() {
        let mut rng = SplitMix64::new(11);
        // Columns of very different lengths and a moderate condition number (about 1e3).
        let (dim, k) = (300, 24);
        let m = Mat::from_fn(dim, k, |r, c| {
            let scale = 10f64.powi((c % 4) as i32);
            scale * (rng.normal() + if r < 3 { 50.0 } else { 0.0 })
        });
        let mut w = m.clone();
        assert!(
            cholqr_pass(&mut w) && cholqr_pass(&mut w),
            "took the fallback"
        );
        let q = orthonormal_basis(m.clone(), Par::Seq);
        assert_eq!((q.nrows(), q.ncols()), (dim, k));
        let (orth, res) = check(&m, &q);
        assert!(orth < 1e-14, "orthogonality {orth}");
        assert!(res < 1e-13, "residual {res}");
    }

    #[test]
    fn nearly_dependent_columns_fall_back_to_householder() {
        let mut rng = SplitMix64::new(12);
        let (dim, k) = (80, 6);
        let mut m = Mat::from_fn(dim, k, |_, _| rng.normal());
        // Column 5 = column 0 + 1e-9 noise: Cholesky–QR's pivot is about 1e-18 of its diagonal.
        for r in 0..dim {
            m[(r, 5)] = m[(r, 0)] + 1e-9 * rng.normal();
        }
        let mut w = m.clone();
        assert!(!(cholqr_pass(&mut w) && cholqr_pass(&mut w)));
        let q = orthonormal_basis(m.clone(), Par::Seq);
        let (orth, res) = check(&m, &q);
        assert!(orth < 1e-13, "orthogonality {orth}");
        assert!(res < 1e-12, "residual {res}");
    }

    /// A tracker over `m` random members and `q` random probes in R^rows (a few members
    /// dependent on others).
    fn random_tracker(m: usize, q: usize, rows: usize, seed: u64) -> SpanTracker {
        let mut rng = SplitMix64::new(seed);
        let mut members: Vec<Vec<f64>> = (0..m)
            .map(|_| (0..rows).map(|_| rng.normal()).collect())
            .collect();
        for j in (5..m).step_by(7) {
            let (a, b) = (members[j - 5].clone(), members[j - 3].clone());
            members[j] = a.iter().zip(&b).map(|(x, y)| 0.5 * x - 2.0 * y).collect();
        }
        let probes: Vec<Vec<f64>> = (0..q)
            .map(|_| (0..rows).map(|_| rng.normal()).collect())
            .collect();
        let d = |a: &[f64], b: &[f64]| dot(a, b);
        SpanTracker::new(
            m,
            probes.iter().map(|p| d(p, p)).collect(),
            &|i, j| d(&members[i], &members[j]),
            &|i, p| d(&members[i], &probes[p]),
            1e-6,
        )
    }

    #[test]
    fn compaction_keeps_sines_and_gives_biorthogonal_duals() {
        let mut t = random_tracker(60, 50, 90, 21);
        // Lost directions left pending, then a compaction of what remains.
        t.remove_members(&[1, 4, 9, 16, 25, 36, 49, 2, 3, 7, 8, 11]);
        for i in [13, 17, 19] {
            t.remove_member(i);
        }
        for p in [0, 5, 10] {
            t.remove_probe(p);
        }
        let mut plain = t.clone();
        let keep_m: Vec<usize> = (0..60).filter(|&i| t.member_alive(i)).collect();
        let keep_p: Vec<usize> = (0..50).filter(|&p| t.probe_alive[p]).collect();
        let before: Vec<f64> = keep_p.iter().map(|&p| t.sin2(p)).collect();
        t.compact(&keep_m, &keep_p);
        assert_eq!(
            t.dim(),
            t.rank(),
            "the coordinate space is the current span"
        );
        for (c, &b) in before.iter().enumerate() {
            assert_eq!(t.sin2(c), b, "compaction leaves the sines as they are");
        }
        // Duals biorthogonal to the basis members' coordinates.
        let dim = t.dim();
        let basis: Vec<usize> = (0..keep_m.len()).filter(|&c| t.is_basis[c]).collect();
        let mut worst: f64 = 0.0;
        for &i in &basis {
            for &j in &basis {
                let g = dot(
                    &t.coords[i * dim..i * dim + dim],
                    &t.duals[j * dim..j * dim + dim],
                );
                worst = worst.max((g - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        assert!(worst < 1e-10, "biorthogonality {worst}");
        // Later removals give the same sines with and without the compaction.
        let gone = [20, 21, 22, 30, 31, 33, 34, 37, 38, 40];
        plain.remove_members(&gone);
        let local: Vec<usize> = gone
            .iter()
            .map(|g| keep_m.iter().position(|k| k == g).unwrap())
            .collect();
        t.remove_members(&local);
        let mut diff: f64 = 0.0;
        for (c, &p) in keep_p.iter().enumerate() {
            diff = diff.max((t.sin2(c) - plain.sin2(p)).abs());
        }
        assert!(diff < 1e-12, "sines differ by {diff}");
        let moved = keep_p
            .iter()
            .zip(&before)
            .map(|(&p, &b)| plain.sin2(p) - b)
            .fold(0.0, f64::max);
        assert!(moved > 1e-3, "the removals moved the sines by {moved} only");
    }
}
