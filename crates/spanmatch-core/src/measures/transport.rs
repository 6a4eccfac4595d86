//! Exact optimal transport between two uniform distributions (the soft matching of neurons): a
//! primal network simplex on the complete bipartite graph.
//!
//! Problem: maximise `Σ_ij T_ij w_ij` over plans `T ≥ 0` with row sums `1/n1` and column sums
//! `1/n2`. Scaled by `n1·n2` the supplies (`n2` per row node) and demands (`n1` per column node)
//! are integers, so every basic solution is integral and the simplex works with exact integer
//! flows; only the costs are floating point.
//!
//! The method is the textbook network simplex (Ahuja, Magnanti & Orlin, *Network Flows*, ch. 11):
//! a spanning tree of basic arcs rooted at an artificial node joined to every node by an
//! artificial arc of large cost, block pricing over the real arcs, and the strongly feasible
//! leaving-arc rule (the last blocking arc met when the pivot cycle is traversed along the
//! entering arc's orientation from its apex), which rules out cycling on degenerate pivots. The
//! tree is stored as parent pointers with child lists; after a pivot the detached subtree is
//! re-hung and its depths and potentials are refreshed by one traversal.

/// No node / no child.
const NONE: usize = usize::MAX;

/// One entry of a transport plan: `mass` moved from row `a` to column `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlanEntry {
    pub a: usize,
    pub b: usize,
    pub mass: f64,
}

/// An optimal plan and its value `Σ T_ij w_ij`.
#[derive(Debug, Clone)]
pub(crate) struct TransportSolution {
    pub value: f64,
    /// Entries with positive mass, sorted by (a, b).
    pub plan: Vec<PlanEntry>,
}

/// Why the solver gave up (never expected for valid input; reported, not panicked).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TransportError {
    /// A weight is NaN or infinite.
    NonFinite,
    /// The pivot limit was reached (a safeguard against an undetected cycle).
    PivotLimit,
    /// Flow left on an artificial arc (the problem would be infeasible; cannot happen for
    /// uniform marginals).
    Infeasible,
}

/// Solves `max Σ T_ij w_ij` over plans with uniform marginals; `w` is row-major `n1 x n2`.
pub(crate) fn max_uniform_transport(
    w: &[f64],
    n1: usize,
    n2: usize,
) -> Result<TransportSolution, TransportError> {
    debug_assert_eq!(w.len(), n1 * n2);
    if n1 == 0 || n2 == 0 {
        return Ok(TransportSolution {
            value: 0.0,
            plan: Vec::new(),
        });
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(TransportError::NonFinite);
    }
    let mut s = Simplex::new(w, n1, n2);
    s.run()?;
    s.solution(w)
}

struct Simplex<'a> {
    /// Weights (maximised); the arc cost is `-w`.
    w: &'a [f64],
    n1: usize,
    n2: usize,
    root: usize,
    art_cost: f64,
    /// Pricing tolerance: an arc enters only when its reduced cost is below `-tol`.
    tol: f64,
    parent: Vec<usize>,
    /// The basic arc joining a node to its parent (arc ids: real `i*n2 + j`, artificial
    /// `n1*n2 + node`).
    pred: Vec<usize>,
    /// Whether the pred arc is directed from the node to its parent.
    up: Vec<bool>,
    /// Flow on the pred arc (in units of `1/(n1 n2)`).
    flow: Vec<i64>,
    depth: Vec<usize>,
    pi: Vec<f64>,
    first_child: Vec<usize>,
    next_sib: Vec<usize>,
    prev_sib: Vec<usize>,
    /// Next arc to price (block search resumes here).
    next_arc: usize,
    block: usize,
    stack: Vec<usize>,
    path: Vec<usize>,
}

impl<'a> Simplex<'a> {
    fn new(w: &'a [f64], n1: usize, n2: usize) -> Self {
        let nodes = n1 + n2 + 1;
        let root = n1 + n2;
        let max_abs = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let art_cost = (max_abs + 1.0) * nodes as f64;
        let m = n1 * n2;
        let mut s = Self {
            w,
            n1,
            n2,
            root,
            art_cost,
            tol: 64.0 * f64::EPSILON * art_cost,
            parent: vec![root; nodes],
            pred: vec![NONE; nodes],
            up: vec![false; nodes],
            flow: vec![0; nodes],
            depth: vec![1; nodes],
            pi: vec![0.0; nodes],
            first_child: vec![NONE; nodes],
            next_sib: vec![NONE; nodes],
            prev_sib: vec![NONE; nodes],
            next_arc: 0,
            block: ((m as f64).sqrt().ceil() as usize).clamp(10.min(m), m),
            stack: Vec::new(),
            path: Vec::new(),
        };
        s.parent[root] = NONE;
        s.depth[root] = 0;
        for v in 0..root {
            s.pred[v] = m + v;
            if v < n1 {
                // Row node: artificial arc v -> root carries its supply n2.
                s.up[v] = true;
                s.flow[v] = n2 as i64;
                s.pi[v] = -art_cost;
            } else {
                // Column node: artificial arc root -> v carries its demand n1.
                s.up[v] = false;
                s.flow[v] = n1 as i64;
                s.pi[v] = art_cost;
            }
            s.add_child(root, v);
        }
        s
    }

    /// Tail, head and cost of an arc.
    fn arc(&self, a: usize) -> (usize, usize, f64) {
        let m = self.n1 * self.n2;
        if a < m {
            (a / self.n2, self.n1 + a % self.n2, -self.w[a])
        } else {
            let v = a - m;
            if v < self.n1 {
                (v, self.root, self.art_cost)
            } else {
                (self.root, v, self.art_cost)
            }
        }
    }

    fn add_child(&mut self, p: usize, c: usize) {
        let old = self.first_child[p];
        self.next_sib[c] = old;
        self.prev_sib[c] = NONE;
        if old != NONE {
            self.prev_sib[old] = c;
        }
        self.first_child[p] = c;
        self.parent[c] = p;
    }

    fn remove_child(&mut self, p: usize, c: usize) {
        let (prev, next) = (self.prev_sib[c], self.next_sib[c]);
        if prev == NONE {
            self.first_child[p] = next;
        } else {
            self.next_sib[prev] = next;
        }
        if next != NONE {
            self.prev_sib[next] = prev;
        }
        self.prev_sib[c] = NONE;
        self.next_sib[c] = NONE;
    }

    /// Block pricing: the real arc with the most negative reduced cost in the first block (in
    /// cyclic order from `next_arc`) that has one; `None` when no arc prices out.
    fn find_entering(&mut self) -> Option<(usize, f64)> {
        let (n1, n2) = (self.n1, self.n2);
        let m = n1 * n2;
        let mut best: Option<(usize, f64)> = None;
        let mut scanned = 0;
        let mut a = self.next_arc;
        let mut in_block = 0;
        while scanned < m {
            let (i, j) = (a / n2, a % n2);
            let rc = -self.w[a] + self.pi[i] - self.pi[n1 + j];
            if rc < -self.tol && best.is_none_or(|(_, b)| rc < b) {
                best = Some((a, rc));
            }
            scanned += 1;
            in_block += 1;
            a += 1;
            if a == m {
                a = 0;
            }
            if in_block == self.block {
                if best.is_some() {
                    break;
                }
                in_block = 0;
            }
        }
        self.next_arc = a;
        best
    }

    fn run(&mut self) -> Result<(), TransportError> {
        // Each non-degenerate pivot improves the objective; the strongly feasible rule prevents
        // cycling. The limit only guards against a defect.
        let m = self.n1 * self.n2;
        let limit = 50 * (m + self.root + 10) as u64 + 1_000_000;
        let mut pivots = 0u64;
        while let Some((a, rc)) = self.find_entering() {
            self.pivot(a, rc);
            pivots += 1;
            if pivots > limit {
                return Err(TransportError::PivotLimit);
            }
        }
        Ok(())
    }

    fn pivot(&mut self, a: usize, rc: f64) {
        let (s, t, _) = self.arc(a);
        // Apex: the lowest common ancestor of s and t.
        let (mut u, mut v) = (s, t);
        while u != v {
            if self.depth[u] >= self.depth[v] {
                u = self.parent[u];
            } else {
                v = self.parent[v];
            }
        }
        let apex = u;
        // Blocking arcs. s side: the cycle runs apex -> s (downward), so an arc directed up
        // (x -> parent) is traversed backwards and decreases. t side: the cycle runs t -> apex
        // (upward), so an arc directed down decreases.
        let mut s_best: (i64, usize) = (i64::MAX, NONE);
        let mut x = s;
        while x != apex {
            if self.up[x] && self.flow[x] < s_best.0 {
                s_best = (self.flow[x], x); // strict: keeps the one nearest s
            }
            x = self.parent[x];
        }
        let mut t_best: (i64, usize) = (i64::MAX, NONE);
        let mut x = t;
        while x != apex {
            if !self.up[x] && self.flow[x] <= t_best.0 {
                t_best = (self.flow[x], x); // non-strict: keeps the one nearest the apex
            }
            x = self.parent[x];
        }
        // The last blocking arc along the orientation apex -> s -> t -> apex.
        let (theta, leave, on_t_side) = if t_best.1 != NONE && t_best.0 <= s_best.0 {
            (t_best.0, t_best.1, true)
        } else {
            (s_best.0, s_best.1, false)
        };
        debug_assert!(leave != NONE, "a pivot cycle always has a backward arc");
        if theta > 0 {
            let mut x = s;
            while x != apex {
                if self.up[x] {
                    self.flow[x] -= theta;
                } else {
                    self.flow[x] += theta;
                }
                x = self.parent[x];
            }
            let mut x = t;
            while x != apex {
                if self.up[x] {
                    self.flow[x] += theta;
                } else {
                    self.flow[x] -= theta;
                }
                x = self.parent[x];
            }
        }
        // Re-hang the subtree below the leaving arc from the entering arc's endpoint in it.
        let (w, w_other, delta) = if on_t_side { (t, s, rc) } else { (s, t, -rc) };
        self.path.clear();
        let mut x = w;
        loop {
            self.path.push(x);
            if x == leave {
                break;
            }
            x = self.parent[x];
        }
        let old_parent_of_leave = self.parent[leave];
        self.remove_child(old_parent_of_leave, leave);
        for k in 0..self.path.len() - 1 {
            let (c, p) = (self.path[k], self.path[k + 1]);
            self.remove_child(p, c);
        }
        // Shift the pred arcs down the path: x_{k+1} takes x_k's old arc, reversed.
        let mut carry = (a, w == s, theta);
        for k in 0..self.path.len() {
            let x = self.path[k];
            let old = (self.pred[x], self.up[x], self.flow[x]);
            self.pred[x] = carry.0;
            self.up[x] = carry.1;
            self.flow[x] = carry.2;
            carry = (old.0, !old.1, old.2);
        }
        self.add_child(w_other, w);
        for k in 0..self.path.len() - 1 {
            let (c, p) = (self.path[k + 1], self.path[k]);
            self.add_child(p, c);
        }
        // Depths and potentials of the re-hung subtree.
        self.stack.clear();
        self.stack.push(w);
        while let Some(x) = self.stack.pop() {
            self.depth[x] = self.depth[self.parent[x]] + 1;
            self.pi[x] += delta;
            let mut c = self.first_child[x];
            while c != NONE {
                self.stack.push(c);
                c = self.next_sib[c];
            }
        }
    }

    fn solution(&self, w: &[f64]) -> Result<TransportSolution, TransportError> {
        let m = self.n1 * self.n2;
        let scale = (self.n1 as f64) * (self.n2 as f64);
        let mut plan = Vec::new();
        for v in 0..self.root {
            let a = self.pred[v];
            if self.flow[v] == 0 {
                continue;
            }
            if a >= m {
                return Err(TransportError::Infeasible);
            }
            plan.push(PlanEntry {
                a: a / self.n2,
                b: a % self.n2,
                mass: self.flow[v] as f64 / scale,
            });
        }
        plan.sort_by_key(|e| (e.a, e.b));
        // Σ flow·w in integer units first, then scaled: the value does not depend on the order
        // in which the tree lists the arcs.
        let value = plan
            .iter()
            .map(|e| e.mass * scale * w[e.a * self.n2 + e.b])
            .sum::<f64>()
            / scale;
        Ok(TransportSolution { value, plan })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// The same problem as an assignment problem: row i copied n2/g times, column j n1/g times.
    fn by_replication(w: &[f64], n1: usize, n2: usize) -> f64 {
        let g = gcd(n1, n2);
        let (r1, r2) = (n2 / g, n1 / g);
        let size = n1 * r1;
        assert_eq!(size, n2 * r2);
        let big: Vec<f64> = (0..size * size)
            .map(|k| w[(k / size / r1) * n2 + (k % size) / r2])
            .collect();
        let (rows, cols) = lsap::solve(size, size, &big, true).unwrap();
        rows.iter()
            .zip(&cols)
            .map(|(&r, &c)| big[r * size + c])
            .sum::<f64>()
            / size as f64
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    #[test]
    fn equals_the_replicated_assignment_problem() {
        let mut rnd = lcg(3);
        for (n1, n2) in [
            (1, 1),
            (1, 5),
            (4, 1),
            (3, 3),
            (4, 6),
            (6, 4),
            (5, 7),
            (8, 12),
            (9, 6),
        ] {
            for _ in 0..5 {
                let w: Vec<f64> = (0..n1 * n2).map(|_| rnd()).collect();
                let sol = max_uniform_transport(&w, n1, n2).unwrap();
                let want = by_replication(&w, n1, n2);
                assert!(
                    (sol.value - want).abs() < 1e-12,
                    "{n1}x{n2}: {} vs {want}",
                    sol.value
                );
                // Marginals are exact.
                let mut rows = vec![0.0; n1];
                let mut cols = vec![0.0; n2];
                for e in &sol.plan {
                    assert!(e.mass > 0.0);
                    rows[e.a] += e.mass;
                    cols[e.b] += e.mass;
                }
                rows.iter()
                    .for_each(|r| assert!((r - 1.0 / n1 as f64).abs() < 1e-15));
                cols.iter()
                    .for_each(|c| assert!((c - 1.0 / n2 as f64).abs() < 1e-15));
                assert!(sol.plan.len() < n1 + n2, "a basic plan");
            }
        }
    }

    #[test]
    fn degenerate_weights_terminate() {
        // All-equal and integer-valued weights make most pivots degenerate.
        for (n1, n2) in [(7, 7), (6, 9), (12, 5)] {
            let w = vec![0.5; n1 * n2];
            let sol = max_uniform_transport(&w, n1, n2).unwrap();
            assert!((sol.value - 0.5).abs() < 1e-15);
            let w: Vec<f64> = (0..n1 * n2).map(|k| ((k * 7) % 3) as f64).collect();
            let sol = max_uniform_transport(&w, n1, n2).unwrap();
            assert!((sol.value - by_replication(&w, n1, n2)).abs() < 1e-12);
        }
        assert_eq!(
            max_uniform_transport(&[f64::NAN], 1, 1).unwrap_err(),
            TransportError::NonFinite
        );
    }
}
