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

use faer::Mat;

/// Span of a set of members and the sines of a set of probes to it.
#[derive(Debug)]
pub(crate) struct SpanTracker {
    /// Dimension of the coordinate space (rank of the initial span).
    dim: usize,
    /// Member coordinates, one column of `dim` values per member.
    coords: Vec<f64>,
    /// Dual vectors of basis members (same layout as `coords`; meaningless for dependents).
    duals: Vec<f64>,
    member_norm2: Vec<f64>,
    is_basis: Vec<bool>,
    member_alive: Vec<bool>,
    alive_members: usize,
    /// Probe coordinates of their projections onto the current span.
    probes: Vec<f64>,
    probe_norm2: Vec<f64>,
    probe_sin2: Vec<f64>,
    probe_alive: Vec<bool>,
    sine_tol: f64,
}

impl Clone for SpanTracker {
    fn clone(&self) -> Self {
        let mut c = Self {
            dim: 0,
            coords: Vec::new(),
            duals: Vec::new(),
            member_norm2: Vec::new(),
            is_basis: Vec::new(),
            member_alive: Vec::new(),
            alive_members: 0,
            probes: Vec::new(),
            probe_norm2: Vec::new(),
            probe_sin2: Vec::new(),
            probe_alive: Vec::new(),
            sine_tol: self.sine_tol,
        };
        c.clone_from(self);
        c
    }

    /// Reuses this tracker's allocations (trial removals clone a tracker many times).
    fn clone_from(&mut self, src: &Self) {
        self.dim = src.dim;
        self.coords.clone_from(&src.coords);
        self.duals.clone_from(&src.duals);
        self.member_norm2.clone_from(&src.member_norm2);
        self.is_basis.clone_from(&src.is_basis);
        self.member_alive.clone_from(&src.member_alive);
        self.alive_members = src.alive_members;
        self.probes.clone_from(&src.probes);
        self.probe_norm2.clone_from(&src.probe_norm2);
        self.probe_sin2.clone_from(&src.probe_sin2);
        self.probe_alive.clone_from(&src.probe_alive);
        self.sine_tol = src.sine_tol;
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

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

impl SpanTracker {
    /// Builds the tracker from Gram entries: `g_mm(i, j)` between members, `g_mp(i, p)` between
    /// member i and probe p, `probe_norm2[p] = ||p||²`. Members and probes must be nonzero.
    pub(crate) fn new(
        members: usize,
        probe_norm2: Vec<f64>,
        g_mm: impl Fn(usize, usize) -> f64,
        g_mp: impl Fn(usize, usize) -> f64,
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
            coords,
            duals,
            member_norm2,
            is_basis,
            member_alive: vec![true; m],
            alive_members: m,
            probes,
            probe_norm2,
            probe_sin2,
            probe_alive: vec![true; q],
            sine_tol,
        };
        if dim == 0 {
            tracker.probe_sin2.iter_mut().for_each(|s| *s = 1.0);
        }
        tracker
    }

    /// Current squared sine of probe `p` to the span.
    pub(crate) fn sin2(&self, p: usize) -> f64 {
        self.probe_sin2[p]
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
        let old = self.dim;
        let basis: Vec<usize> = keep_members
            .iter()
            .copied()
            .filter(|&i| self.is_basis[i])
            .collect();
        let k = basis.len();
        // Orthonormal basis of the current span: Householder QR of the basis members' coordinates.
        let q = if k > 0 {
            let cb = Mat::from_fn(old, k, |r, c| self.coords[basis[c] * old + r]);
            cb.qr().compute_thin_Q()
        } else {
            Mat::zeros(old, 0)
        };
        let project = |src: &[f64], ids: &[usize]| -> Vec<f64> {
            let mut out = vec![0.0; k * ids.len()];
            if k == 0 || ids.is_empty() {
                return out;
            }
            let x = Mat::from_fn(old, ids.len(), |r, c| src[ids[c] * old + r]);
            let y = q.transpose() * &x;
            for c in 0..ids.len() {
                for r in 0..k {
                    out[c * k + r] = y[(r, c)];
                }
            }
            out
        };
        self.coords = project(&self.coords, keep_members);
        self.duals = project(&self.duals, keep_members);
        self.probes = project(&self.probes, keep_probes);
        self.dim = k;
        let pick_f = |v: &[f64], ids: &[usize]| ids.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let pick_b = |v: &[bool], ids: &[usize]| ids.iter().map(|&i| v[i]).collect::<Vec<bool>>();
        self.member_norm2 = pick_f(&self.member_norm2, keep_members);
        self.is_basis = pick_b(&self.is_basis, keep_members);
        self.member_alive = vec![true; keep_members.len()];
        self.alive_members = keep_members.len();
        self.probe_norm2 = pick_f(&self.probe_norm2, keep_probes);
        self.probe_sin2 = pick_f(&self.probe_sin2, keep_probes);
        self.probe_alive = vec![true; keep_probes.len()];
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
        let mut w = self.duals[i * dim..i * dim + dim].to_vec();
        let wn = dot(&w, &w).sqrt();
        if wn == 0.0 || !wn.is_finite() {
            return;
        }
        w.iter_mut().for_each(|v| *v /= wn);

        // A dependent member that carries the direction w keeps the span unchanged.
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
            self.swap_in(i, d);
            return;
        }

        // The span loses direction w.
        for p in 0..self.probe_alive.len() {
            if !self.probe_alive[p] {
                continue;
            }
            let col = &mut self.probes[p * dim..p * dim + dim];
            let beta = dot(col, &w);
            if beta != 0.0 {
                axpy(-beta, &w, col);
                let s = self.probe_sin2[p] + beta * beta / self.probe_norm2[p];
                self.probe_sin2[p] = s.min(1.0);
            }
        }
        for j in 0..self.member_alive.len() {
            if !self.member_alive[j] {
                continue;
            }
            if self.is_basis[j] {
                let dj = &mut self.duals[j * dim..j * dim + dim];
                let beta = dot(dj, &w);
                axpy(-beta, &w, dj);
            } else {
                let cj = &mut self.coords[j * dim..j * dim + dim];
                let beta = dot(cj, &w);
                axpy(-beta, &w, cj);
            }
        }
    }

    /// Replaces basis member `out` (already marked removed) by dependent member `inn`.
    fn swap_in(&mut self, out: usize, inn: usize) {
        let dim = self.dim;
        let d_out = self.duals[out * dim..out * dim + dim].to_vec();
        let c_in = self.coords[inn * dim..inn * dim + dim].to_vec();
        let coef = dot(&c_in, &d_out);
        let d_in: Vec<f64> = d_out.iter().map(|v| v / coef).collect();
        for j in 0..self.member_alive.len() {
            if j == inn || !self.member_alive[j] || !self.is_basis[j] {
                continue;
            }
            let dj = &mut self.duals[j * dim..j * dim + dim];
            let beta = dot(dj, &c_in);
            axpy(-beta, &d_in, dj);
        }
        self.duals[inn * dim..inn * dim + dim].copy_from_slice(&d_in);
        self.is_basis[inn] = true;
    }
}
