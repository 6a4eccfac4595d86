//! Incremental peeling: remove the neuron farthest from the other side's span, one at a time.

use crate::span::{Lost, SpanTracker};
use crate::MatchProblem;
use serde::{Deserialize, Serialize};

/// Below this many allocated neurons (both sides) the peeler never compacts its arrays.
const COMPACT_MIN: usize = 64;

/// Above this many multiply-adds a batch removal updates the two sides in parallel.
const PARALLEL_WORK: usize = 1 << 18;

/// Absent entry of a neuron -> position map.
const NONE: usize = usize::MAX;

/// The map neuron index -> position in `ids` (the first position if an index repeats).
fn position_map(ids: &[usize]) -> Vec<usize> {
    let len = ids.iter().max().map_or(0, |&m| m + 1);
    let mut map = vec![NONE; len];
    for (l, &i) in ids.iter().enumerate().rev() {
        map[i] = l;
    }
    map
}

/// Which network a neuron belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    /// Net A (the first file / the X matrix).
    A,
    /// Net B (the second file / the Y matrix).
    B,
}

/// The incremental engine: a set of neurons of A and of B, each neuron's current sine to the
/// other side's span, and removals in O((n1 + n2) · rank) each.
///
/// Indices given to and returned by a `Peeler` are neuron indices of the layer (into A or B).
#[derive(Debug)]
pub struct Peeler {
    ids_a: Vec<usize>,
    ids_b: Vec<usize>,
    /// Neuron index -> position in `ids_a` (`NONE` when absent): O(1) membership tests.
    local_a: Vec<usize>,
    /// Neuron index -> position in `ids_b`.
    local_b: Vec<usize>,
    /// Span of A's members; its probes are B's members.
    span_a: SpanTracker,
    /// Span of B's members; its probes are A's members.
    span_b: SpanTracker,
    eps_floor: f64,
    /// Removals compact the arrays when fewer than `compact_at.0 / compact_at.1` of the
    /// allocated neurons are present.
    compact_at: (usize, usize),
}

impl Clone for Peeler {
    fn clone(&self) -> Self {
        Self {
            ids_a: self.ids_a.clone(),
            ids_b: self.ids_b.clone(),
            local_a: self.local_a.clone(),
            local_b: self.local_b.clone(),
            span_a: self.span_a.clone(),
            span_b: self.span_b.clone(),
            eps_floor: self.eps_floor,
            compact_at: self.compact_at,
        }
    }

    /// Reuses this peeler's allocations.
    fn clone_from(&mut self, src: &Self) {
        self.ids_a.clone_from(&src.ids_a);
        self.ids_b.clone_from(&src.ids_b);
        self.local_a.clone_from(&src.local_a);
        self.local_b.clone_from(&src.local_b);
        self.span_a.clone_from(&src.span_a);
        self.span_b.clone_from(&src.span_b);
        self.eps_floor = src.eps_floor;
        self.compact_at = src.compact_at;
    }
}

impl Peeler {
    /// A peeler over the given neurons (indices into A and B; they must be live and distinct).
    pub fn new(problem: &MatchProblem, members_a: &[usize], members_b: &[usize]) -> Self {
        Self::build(problem, members_a, members_b, false)
    }

    /// Like [`new`](Self::new) with the pre-blocking factorisation (one dot product per entry).
    /// Kept as the reference of the equivalence tests; not part of the supported API.
    #[doc(hidden)]
    pub fn new_reference(problem: &MatchProblem, members_a: &[usize], members_b: &[usize]) -> Self {
        Self::build(problem, members_a, members_b, true)
    }

    fn build(
        problem: &MatchProblem,
        members_a: &[usize],
        members_b: &[usize],
        reference: bool,
    ) -> Self {
        let tol = problem.tol().sine;
        let make = if reference {
            SpanTracker::new_reference
                as fn(
                    usize,
                    Vec<f64>,
                    &dyn Fn(usize, usize) -> f64,
                    &dyn Fn(usize, usize) -> f64,
                    f64,
                ) -> SpanTracker
        } else {
            SpanTracker::new
        };
        let (ia, ib) = (members_a.to_vec(), members_b.to_vec());
        let na: Vec<f64> = ia
            .iter()
            .map(|&i| problem.dot(Side::A, i, Side::A, i))
            .collect();
        let nb: Vec<f64> = ib
            .iter()
            .map(|&j| problem.dot(Side::B, j, Side::B, j))
            .collect();
        // The two sides' factorisations are independent: build them in parallel.
        let (span_a, span_b) = rayon::join(
            || {
                make(
                    ia.len(),
                    nb,
                    &|i, j| problem.dot(Side::A, ia[i], Side::A, ia[j]),
                    &|i, p| problem.dot(Side::A, ia[i], Side::B, ib[p]),
                    tol,
                )
            },
            || {
                make(
                    ib.len(),
                    na,
                    &|i, j| problem.dot(Side::B, ib[i], Side::B, ib[j]),
                    &|i, p| problem.dot(Side::B, ib[i], Side::A, ia[p]),
                    tol,
                )
            },
        );
        let (local_a, local_b) = (position_map(&ia), position_map(&ib));
        Self {
            ids_a: ia,
            ids_b: ib,
            local_a,
            local_b,
            span_a,
            span_b,
            eps_floor: tol,
            compact_at: (3, 4),
        }
    }

    /// The neurons still present on `side`, in increasing index order.
    pub fn members(&self, side: Side) -> Vec<usize> {
        let mut v: Vec<usize> = match side {
            Side::A => (0..self.ids_a.len())
                .filter(|&i| self.span_a.member_alive(i))
                .map(|i| self.ids_a[i])
                .collect(),
            Side::B => (0..self.ids_b.len())
                .filter(|&i| self.span_b.member_alive(i))
                .map(|i| self.ids_b[i])
                .collect(),
        };
        v.sort_unstable();
        v
    }

    /// The present neurons in the deterministic order of the reference algorithm: A's by index,
    /// then B's by index.
    pub fn neurons(&self) -> Vec<(Side, usize)> {
        self.members(Side::A)
            .into_iter()
            .map(|i| (Side::A, i))
            .chain(self.members(Side::B).into_iter().map(|j| (Side::B, j)))
            .collect()
    }

    /// Number of neurons still present on both sides together.
    pub fn len(&self) -> usize {
        self.local_alive(Side::A).count() + self.local_alive(Side::B).count()
    }

    /// Whether no neuron is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn local_alive(&self, side: Side) -> impl Iterator<Item = usize> + '_ {
        let (n, tracker) = match side {
            Side::A => (self.ids_a.len(), &self.span_a),
            Side::B => (self.ids_b.len(), &self.span_b),
        };
        (0..n).filter(move |&i| tracker.member_alive(i))
    }

    /// Current sine of a present neuron to the other side's current span, or `None` if the
    /// neuron is not present.
    pub fn sine(&self, side: Side, neuron: usize) -> Option<f64> {
        let local = self.local_index(side, neuron)?;
        Some(self.local_sine(side, local))
    }

    fn local_index(&self, side: Side, neuron: usize) -> Option<usize> {
        let (map, tracker) = match side {
            Side::A => (&self.local_a, &self.span_a),
            Side::B => (&self.local_b, &self.span_b),
        };
        let l = *map.get(neuron)?;
        (l != NONE && tracker.member_alive(l)).then_some(l)
    }

    fn local_sine(&self, side: Side, local: usize) -> f64 {
        match side {
            Side::A => self.span_b.sin2(local).sqrt(),
            Side::B => self.span_a.sin2(local).sqrt(),
        }
    }

    /// The present neuron with the largest sine (ties: side A first, then the lower position in
    /// the member list), with that sine.
    pub fn farthest(&self) -> Option<(Side, usize, f64)> {
        let mut best: Option<(Side, usize, f64)> = None;
        for side in [Side::A, Side::B] {
            for l in self.local_alive(side) {
                let s = self.local_sine(side, l);
                if best.is_none_or(|(_, _, b)| s > b) {
                    best = Some((side, l, s));
                }
            }
        }
        best.map(|(side, l, s)| (side, self.id(side, l), s))
    }

    fn id(&self, side: Side, local: usize) -> usize {
        match side {
            Side::A => self.ids_a[local],
            Side::B => self.ids_b[local],
        }
    }

    /// Removes a present neuron; the other side's sines are updated. Returns false if the neuron
    /// was not present.
    pub fn remove(&mut self, side: Side, neuron: usize) -> bool {
        let Some(l) = self.local_index(side, neuron) else {
            return false;
        };
        self.remove_local(side, l);
        true
    }

    fn remove_local(&mut self, side: Side, l: usize) {
        match side {
            Side::A => {
                self.span_a.remove_member(l);
                self.span_b.remove_probe(l);
            }
            Side::B => {
                self.span_b.remove_member(l);
                self.span_a.remove_probe(l);
            }
        }
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        let (num, den) = self.compact_at;
        self.compact_below(num, den);
    }

    /// Keeps each side's inner products of the probes with the duals (rebuilt at each
    /// compaction): single removals then read O(probes · pending directions) numbers instead
    /// of the probe array. For peelers many trials start from (the simple-match search).
    pub(crate) fn enable_cache(&mut self) {
        self.span_a.enable_cache();
        self.span_b.enable_cache();
    }

    /// Sets the parallelism of the trackers' products and factorisations (default: faer's
    /// rayon parallelism). The simple-match search, parallel over its nodes, makes them
    /// sequential.
    pub(crate) fn set_par(&mut self, par: faer::Par) {
        self.span_a.set_par(par);
        self.span_b.set_par(par);
    }

    /// Sets the density below which removals compact the arrays (default 3/4).
    pub(crate) fn set_compact_at(&mut self, num: usize, den: usize) {
        self.compact_at = (num, den);
    }

    /// Compacts when fewer than `num / den` of the allocated neurons are present (and enough
    /// are allocated). A state that many trials start from is compacted at a higher density
    /// than a trial, so that the trials do not each compact the same arrays again.
    pub(crate) fn compact_below(&mut self, num: usize, den: usize) {
        let present = self.span_a.alive_members() + self.span_b.alive_members();
        let allocated = self.span_a.allocated();
        if allocated >= COMPACT_MIN && present * den < allocated * num {
            self.compact();
        }
    }

    /// Drops removed neurons from the internal arrays and shrinks the coordinate space to the
    /// current spans, so that later steps and clones cost in proportion to what is left.
    fn compact(&mut self) {
        let keep_a: Vec<usize> = self.local_alive(Side::A).collect();
        let keep_b: Vec<usize> = self.local_alive(Side::B).collect();
        let work = self.span_a.allocated() * self.span_a.dim().max(1);
        let (span_a, span_b) = (&mut self.span_a, &mut self.span_b);
        let (ka, kb) = (&keep_a, &keep_b);
        // The two sides are independent (a QR and matrix products each).
        if work > PARALLEL_WORK {
            rayon::join(|| span_a.compact(ka, kb), || span_b.compact(kb, ka));
        } else {
            span_a.compact(ka, kb);
            span_b.compact(kb, ka);
        }
        self.ids_a = keep_a.iter().map(|&l| self.ids_a[l]).collect();
        self.ids_b = keep_b.iter().map(|&l| self.ids_b[l]).collect();
        self.local_a = position_map(&self.ids_a);
        self.local_b = position_map(&self.ids_b);
    }

    /// Dimension of the span of the present neurons of `side` (numerical rank at the sine
    /// tolerance).
    pub fn rank(&self, side: Side) -> usize {
        match side {
            Side::A => self.span_a.rank(),
            Side::B => self.span_b.rank(),
        }
    }

    /// Removes every neuron whose sine exceeds `max(eps, sine tolerance)`, in rounds, until none
    /// does. What remains is the maximum match at `eps` of the neurons the peeler started with
    /// (a neuron farther than ε from a span containing the maximum match is not in it, and what
    /// is left at the end is a match).
    pub fn peel_until(&mut self, eps: f64) {
        let limit = eps.max(self.eps_floor);
        loop {
            let (ra, rb) = self.above(limit, false);
            if ra.is_empty() && rb.is_empty() {
                break;
            }
            self.remove_batch(&ra, &rb);
        }
    }

    /// Like [`peel_until`](Self::peel_until), but stops and returns `false` as soon as `keep`
    /// would be removed; returns `true` when `keep` is in the maximum match at `eps` of what the
    /// peeler held (which it then holds).
    pub fn peel_until_keeping(&mut self, eps: f64, keep: (Side, usize)) -> bool {
        self.peel_until_keeping_any(eps, &[keep], &[])
    }

    /// Like [`peel_until_keeping`](Self::peel_until_keeping) for a group: stops and returns
    /// `false` as soon as every member of `keep`, or any member of `critical`, is absent or
    /// would be removed; otherwise peels to the maximum match at `eps` and returns `true` (some
    /// member of `keep` and every member of `critical` are in it).
    pub(crate) fn peel_until_keeping_any(
        &mut self,
        eps: f64,
        keep: &[(Side, usize)],
        critical: &[(Side, usize)],
    ) -> bool {
        let limit = eps.max(self.eps_floor);
        loop {
            // Local indices change when the peeler compacts: look the neurons up each round.
            let stays = |&(side, n): &(Side, usize)| {
                self.local_index(side, n)
                    .is_some_and(|l| self.local_sine(side, l) <= limit)
            };
            if !critical.iter().all(stays) || !keep.iter().any(stays) {
                return false;
            }
            let (ra, rb) = self.above(limit, false);
            if ra.is_empty() && rb.is_empty() {
                return true;
            }
            self.remove_batch(&ra, &rb);
        }
    }

    /// Whether removing the present neuron `u` alone would put a present member of `watch` above
    /// `max(eps, sine tolerance)`, without changing the peeler. The lost direction is computed
    /// exactly as the removal computes it, and the watched sines from it as the removal updates
    /// them up to the rounding of one inner product (the removal takes all of them from one
    /// matrix-vector product): when it returns true, `remove_all(&[u])` followed by
    /// [`peel_until_keeping_any`](Self::peel_until_keeping_any) with `watch` as its critical
    /// neurons returns false at its first check, except for a sine equal to the limit to the
    /// last bits.
    pub(crate) fn removal_dooms(
        &self,
        u: (Side, usize),
        eps: f64,
        watch: &[(Side, usize)],
    ) -> bool {
        // (One candidate: its lost direction is computed exactly as the removal computes it.)
        self.removals_doom(&[u], eps, watch)[0]
    }

    /// For each candidate `u` (a present neuron), whether removing it alone would put a present
    /// member of `watch` above `max(eps, sine tolerance)`: [`removal_dooms`](Self::removal_dooms)
    /// for a run of candidates, with the lost directions of each side's candidates computed
    /// together. Entry t answers for `cands[t]`.
    pub(crate) fn removals_doom(
        &self,
        cands: &[(Side, usize)],
        eps: f64,
        watch: &[(Side, usize)],
    ) -> Vec<bool> {
        let limit = eps.max(self.eps_floor);
        let mut out = vec![false; cands.len()];
        for side in [Side::A, Side::B] {
            let (span, other) = match side {
                Side::A => (&self.span_a, Side::B),
                Side::B => (&self.span_b, Side::A),
            };
            let watched: Vec<usize> = watch
                .iter()
                .filter(|w| w.0 == other)
                .filter_map(|&(s, n)| self.local_index(s, n))
                .collect();
            if watched.is_empty() {
                continue;
            }
            let (slots, locals): (Vec<usize>, Vec<usize>) = cands
                .iter()
                .enumerate()
                .filter(|(_, c)| c.0 == side)
                .filter_map(|(t, &(s, n))| self.local_index(s, n).map(|l| (t, l)))
                .unzip();
            for (t, lost) in slots.into_iter().zip(span.lost_on_removals(&locals)) {
                out[t] = watched.iter().any(|&p| {
                    let s2 = match &lost {
                        Lost::Nothing => return false,
                        Lost::Everything => 1.0,
                        Lost::Direction(w) => span.sin2_without(p, w),
                    };
                    s2.sqrt() > limit
                });
            }
        }
        out
    }

    /// The sequential version of [`peel_until`](Self::peel_until) (one neuron, the farthest, at
    /// a time). Reference of the equivalence tests; not part of the supported API.
    #[doc(hidden)]
    pub fn peel_until_sequential(&mut self, eps: f64) {
        let limit = eps.max(self.eps_floor);
        while let Some((side, neuron, s)) = self.farthest() {
            if s <= limit {
                break;
            }
            self.remove(side, neuron);
        }
    }

    /// The sequential version of [`peel_until_keeping`](Self::peel_until_keeping). Reference of
    /// the equivalence tests; not part of the supported API.
    #[doc(hidden)]
    pub fn peel_until_keeping_sequential(&mut self, eps: f64, keep: (Side, usize)) -> bool {
        let limit = eps.max(self.eps_floor);
        while let Some((side, neuron, s)) = self.farthest() {
            if s <= limit {
                break;
            }
            if (side, neuron) == keep {
                return false;
            }
            self.remove(side, neuron);
        }
        self.contains(keep.0, keep.1)
    }

    /// Local indices of the present neurons whose sine exceeds `limit` (or equals it, with
    /// `inclusive`), per side.
    fn above(&self, limit: f64, inclusive: bool) -> (Vec<usize>, Vec<usize>) {
        let pick = |side: Side| -> Vec<usize> {
            self.local_alive(side)
                .filter(|&l| {
                    let s = self.local_sine(side, l);
                    s > limit || (inclusive && s == limit)
                })
                .collect()
        };
        (pick(Side::A), pick(Side::B))
    }

    /// Removes the given present neurons (local indices per side) at once: each side's span
    /// loses them in one blocked update.
    fn remove_batch(&mut self, ra: &[usize], rb: &[usize]) {
        let work = (ra.len() + rb.len()) * self.span_a.allocated() * self.span_a.dim().max(1);
        let (span_a, span_b) = (&mut self.span_a, &mut self.span_b);
        let mut side_a = move || {
            for &l in rb {
                span_a.remove_probe(l);
            }
            span_a.remove_members(ra);
        };
        let mut side_b = move || {
            for &l in ra {
                span_b.remove_probe(l);
            }
            span_b.remove_members(rb);
        };
        if work > PARALLEL_WORK {
            rayon::join(side_a, side_b);
        } else {
            side_a();
            side_b();
        }
        self.maybe_compact();
    }

    /// The ε-profile's peeling pass, in rounds. With `level` the smallest largest-sine seen so
    /// far, every neuron whose sine is at least `level` has threshold `level` and is removed in
    /// one batch; when none is, the farthest neuron sets a new (lower) level. Returns the
    /// removals in order with each neuron's sine at the start of its round.
    pub(crate) fn peel_rounds(mut self) -> Vec<(Side, usize, f64)> {
        let mut steps = Vec::with_capacity(self.span_a.probe_count() + self.span_b.probe_count());
        // Many rounds remove one or two neurons: keep the probes' inner products with the duals
        // (one matrix product per side now and at each compaction) so that those removals read
        // O(probes · pending) numbers instead of the whole probe array.
        let (span_a, span_b) = (&mut self.span_a, &mut self.span_b);
        rayon::join(|| span_a.enable_cache(), || span_b.enable_cache());
        self.set_compact_at(1, 2);
        let mut level = f64::INFINITY;
        loop {
            let (mut ra, mut rb) = self.above(level, true);
            if ra.is_empty() && rb.is_empty() {
                let Some((_, _, s)) = self.farthest() else {
                    break;
                };
                level = s;
                (ra, rb) = self.above(level, true);
            }
            for &l in &ra {
                steps.push((Side::A, self.ids_a[l], self.local_sine(Side::A, l)));
            }
            for &l in &rb {
                steps.push((Side::B, self.ids_b[l], self.local_sine(Side::B, l)));
            }
            self.remove_batch(&ra, &rb);
        }
        steps
    }

    /// Removes the present neurons among `neurons` at once (absent ones are ignored), with one
    /// blocked update per side. Does not peel.
    #[doc(hidden)]
    pub fn remove_all(&mut self, neurons: &[(Side, usize)]) {
        let mut ra = Vec::new();
        let mut rb = Vec::new();
        for &(side, n) in neurons {
            if let Some(l) = self.local_index(side, n) {
                match side {
                    Side::A => ra.push(l),
                    Side::B => rb.push(l),
                }
            }
        }
        if !ra.is_empty() || !rb.is_empty() {
            self.remove_batch(&ra, &rb);
        }
    }

    /// Whether a neuron is present.
    pub fn contains(&self, side: Side, neuron: usize) -> bool {
        self.local_index(side, neuron).is_some()
    }

    /// The largest sine of a present neuron (0 when empty).
    pub fn max_sine(&self) -> f64 {
        self.farthest().map_or(0.0, |(_, _, s)| s)
    }

    /// Peels every neuron, farthest first, and returns the removal sequence.
    pub fn peel_all(mut self) -> Vec<(Side, usize, f64)> {
        let mut steps = Vec::with_capacity(self.span_a.probe_count() + self.span_b.probe_count());
        while let Some((side, neuron, s)) = self.farthest() {
            steps.push((side, neuron, s));
            self.remove(side, neuron);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::GramAccumulator;

    /// ReLU of a shared low-rank signal plus noise (n + n neurons, 4n rows).
    fn relu_problem(n: usize, seed: u64) -> MatchProblem {
        let rows = 4 * n;
        let dim = (n / 4).max(1);
        let mut rng = SplitMix64::new(seed);
        let basis: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
        let side = |rng: &mut SplitMix64| -> Vec<f64> {
            let mix: Vec<f64> = (0..dim * n).map(|_| rng.normal()).collect();
            (0..rows * n)
                .map(|e| {
                    let (r, j) = (e / n, e % n);
                    let v: f64 = (0..dim).map(|k| basis[r * dim + k] * mix[k * n + j]).sum();
                    (v + 0.3 * rng.normal()).max(0.0)
                })
                .collect()
        };
        let (x, y) = (side(&mut rng), side(&mut rng));
        let mut acc = GramAccumulator::new(n, n);
        acc.push_pair(&x, &y).unwrap();
        MatchProblem::new(&acc.finish(), Default::default()).unwrap()
    }

    #[test]
    fn batched_doom_screen_equals_one_candidate_at_a_time() {
        let p = relu_problem(48, 7);
        let mut peeler = Peeler::new(&p, p.live_a(), p.live_b());
        // Pending directions: remove a few neurons of each side without peeling.
        peeler.remove_all(&[(Side::A, 3), (Side::A, 10), (Side::B, 5), (Side::B, 40)]);
        assert!(peeler.span_a.pending_directions() == 2 && peeler.span_b.pending_directions() == 2);
        let present = peeler.neurons();
        let watch: Vec<(Side, usize)> = present.iter().copied().step_by(5).collect();
        let mut seen_true = 0;
        for eps in [0.3, 0.5, 0.7] {
            let batch = peeler.removals_doom(&present, eps, &watch);
            for (u, b) in present.iter().zip(&batch) {
                assert_eq!(
                    *b,
                    peeler.removal_dooms(*u, eps, &watch),
                    "{u:?} at eps {eps}"
                );
                seen_true += usize::from(*b);
            }
        }
        // Both answers occur, so the comparison means something.
        assert!(
            seen_true > 0 && seen_true < 3 * present.len(),
            "{seen_true}"
        );
    }
}
