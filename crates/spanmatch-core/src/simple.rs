//! Simple matches: for each neuron v of the maximum match, a v-minimal match (a match that
//! contains v and no strictly smaller match containing v), de-duplicated.
//!
//! The algorithm is the reference one (docs/algorithm.md, section 5): start from the maximum match S; for each
//! other neuron u of S in turn, if v is still in the maximum match of S minus u, shrink S to
//! that maximum match. Each trial works on a copy of the incremental [`Peeler`] of S (cost
//! proportional to what is left, never to the number of rows; the large arrays are shared until
//! modified) and stops as soon as v, or a candidate already rejected, would be peeled, so a
//! rejected removal costs little and leaves S untouched. All neurons are searched together:
//! neurons that made the same decisions so far share their trials (see `Search`).
//!
//! For ε = 0 with linearly independent vectors on each side, the v-minimal match is the unique
//! v-minimum match and the list of simple matches is complete ([`SimpleMatches::exact_case`]).
//! Otherwise the result depends on the order; [`SimpleOptions::orders`] adds seeded random orders.

use crate::rng::SplitMix64;
use crate::tolerance::check_epsilon;
use crate::{CoreError, DeadPolicy, MatchProblem, Peeler, Side};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

/// Options of a simple-match computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimpleOptions {
    /// ε of the matches, in [0, 1].
    pub eps: f64,
    /// Number of seeded random orders run in addition to the deterministic order.
    pub orders: usize,
    /// Seed of the random orders.
    pub seed: u64,
}

/// A neuron: its side and its index in that side's layer.
pub type Neuron = (Side, usize);

/// One distinct simple match found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimpleMatch {
    /// Neurons of net A, increasing.
    pub a: Vec<usize>,
    /// Neurons of net B, increasing.
    pub b: Vec<usize>,
    /// How many (neuron, order) runs produced this match.
    pub count: usize,
    /// The neurons v for which it was found as the v-minimal match (first order that found it).
    pub witnesses: Vec<Neuron>,
}

impl SimpleMatch {
    /// Total number of neurons in the match.
    pub fn size(&self) -> usize {
        self.a.len() + self.b.len()
    }
}

/// All distinct simple matches found for a layer pair at one ε.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimpleMatches {
    /// ε of the matches.
    pub eps: f64,
    /// Distinct matches, largest first (ties: by their neuron lists).
    pub matches: Vec<SimpleMatch>,
    /// ε = 0 and each side's live vectors are linearly independent (at the sine tolerance): then
    /// each result is the v-minimum match and the list is complete.
    pub exact_case: bool,
    /// Orders run: 1 (deterministic) + the random ones.
    pub orders: usize,
    /// Neurons of the maximum match processed (per order) before the end or an interruption.
    pub neurons_done: usize,
    /// Neurons in the maximum match.
    pub neurons_total: usize,
    /// False when the computation was interrupted; `matches` then holds what was found so far.
    pub complete: bool,
    /// Queried neurons ([`simple_matches_for`]) outside the maximum match at ε: no match
    /// contains them. Empty for the full search.
    pub unmatched: Vec<Neuron>,
}

/// Progress of a simple-match computation, reported at least every 0.2 s while the search runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimpleProgress {
    /// (neuron, order) runs finished.
    pub neurons_done: usize,
    /// (neuron, order) runs in all.
    pub neurons_total: usize,
    /// Estimated share of the whole computation done, in [0, 1], never decreasing: the share
    /// of the searched neurons' positions in their orders already decided (a neuron's search
    /// decides every other neuron of the maximum match in turn). Later positions usually cost
    /// more than earlier ones, so an ETA from it is on the optimistic side.
    pub work: f64,
}

/// Result of re-checking a reported match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Every member is within ε of the other side's span (the match is its own maximum match).
    pub is_match: bool,
    /// For each witness v: removing any other member drops v out of the maximum match of the rest.
    pub minimal_for: Vec<(Neuron, bool)>,
}

impl Verification {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.is_match && self.minimal_for.iter().all(|(_, ok)| *ok)
    }
}

fn is_dead(problem: &MatchProblem, (side, i): Neuron) -> bool {
    match side {
        Side::A => problem.dead_a().binary_search(&i).is_ok(),
        Side::B => problem.dead_b().binary_search(&i).is_ok(),
    }
}

fn split(neurons: &[Neuron]) -> (Vec<usize>, Vec<usize>) {
    let mut a: Vec<usize> = neurons
        .iter()
        .filter(|n| n.0 == Side::A)
        .map(|n| n.1)
        .collect();
    let mut b: Vec<usize> = neurons
        .iter()
        .filter(|n| n.0 == Side::B)
        .map(|n| n.1)
        .collect();
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

/// A v-minimal match: starting from `start` (a peeler holding a match that contains `v`), tries
/// to remove the other neurons in `order` (neurons not present are skipped). Returns the match
/// as (A neurons, B neurons).
///
/// The result is that of the sequential algorithm (for each u in turn: if v stays in the maximum
/// match of S minus u, S := that maximum match), computed by group testing: a run of consecutive
/// candidates U is tried at once, and when v stays in MaxMatch(S \ U) the sequential algorithm
/// would have accepted every member of U and ended at exactly MaxMatch(S \ U). (MaxMatch is
/// monotone, f(T) ⊆ f(T') for T ⊆ T', and idempotent, so each intermediate state of the
/// sequential run contains f(S \ U) and still contains v; the final state is a match inside
/// S \ U containing f(S \ U).) A failed run is halved until its first member is tried alone,
/// which is then rejected exactly as in the sequential algorithm. Runs double after each
/// success, so the number of trials is about (rejections + 1) · log(|S|) instead of |S|.
/// A rejected candidate w stays in every later state and v ∉ MaxMatch(S \ w) still holds there
/// (monotonicity), so a trial also stops as soon as such a candidate would be peeled.
pub fn v_minimal(
    start: &Peeler,
    v: Neuron,
    eps: f64,
    order: &[Neuron],
) -> (Vec<usize>, Vec<usize>) {
    let order: Vec<Neuron> = order
        .iter()
        .copied()
        .filter(|&u| u != v && start.contains(u.0, u.1))
        .collect();
    let result = Mutex::new(None);
    let search = Search {
        eps,
        order: &order,
        cancel: &AtomicBool::new(false),
        advanced: &AtomicU64::new(0),
        emit: &|_: Vec<Neuron>, key: (Vec<usize>, Vec<usize>)| {
            if let Ok(mut r) = result.lock() {
                *r = Some(key);
            }
        },
    };
    search.start(start, vec![v]);
    let found = result.into_inner().ok().flatten();
    // The search always ends at a leaf holding v; the fallback is never taken.
    found.unwrap_or_else(|| (start.members(Side::A), start.members(Side::B)))
}

/// A state that trials start from is compacted below this density (num, den)... (3/4 against
/// 2/3, ReLU layers at ε 0.5: 1024+1024 169–174 s against 185–192 s, 512+512 12.5–12.8 s
/// against 13.2–13.3 s; planted blocks at 512+512 pay 7–12%, docs/benchmarks.md.)
const STATE_COMPACT_AT: (usize, usize) = (3, 4);
/// ...and a trial only below this one: trials do not each redo the same compaction.
const TRIAL_COMPACT_AT: (usize, usize) = (1, 4);
/// Longest run of candidates tried at once. Runs double after each accepted run; on layers
/// where most candidates end up rejected (large minimal matches, as on ReLU layers) a failed
/// run costs a larger cascade and then its halving, so short runs win there. Measured in one
/// session (docs/benchmarks.md, round 3 third session), all simple matches at ε 0.5 on the
/// issue's 1024 + 1024 ReLU data: cap 32: 133.5 s, 16: 122–126 s, 8: 121 s, 4: 115 s,
/// 2: 112 s, 1: 100 s; 512 + 512 ReLU: 16: 8.3 s, 2: 6.7 s, 1: 6.0 s. Planted blocks, where
/// most candidates are accepted, pay for short runs at 512 + 512 (ε 0.25: 2.3 s at 16, 2.4 s
/// at 2, 2.6 s at 1) and not measurably at 1024 + 1024 (28.7 / 30.2 / 29.2 s). 2 keeps most
/// of the gain and the group testing (a run of two, halved on failure).
const MAX_RUN: usize = 2;

/// Callback of [`Search`]: a group of neurons and their common v-minimal match.
type Emit<'a> = dyn Fn(Vec<Neuron>, (Vec<usize>, Vec<usize>)) + Sync + 'a;

/// The sequential algorithm run for a whole group of neurons v at once (docs/algorithm.md,
/// section 5). A node of the search is (S, position in the order, group G, run length): every
/// v in G has made the same decisions on the candidates before the position, so its state is S.
/// A trial computes T = MaxMatch(S \ U) for the next run U once for all of G; the members of G
/// still in T accepted all of U (state T, run doubled), the others either reject U's single
/// member (state S, next position) or retry the first half of U. When both kinds exist the node
/// splits into two independent nodes. Before a trial, candidates of U whose removal alone already
/// pushes a critical neuron past ε are rejected ahead (they would be in every later state) and
/// leave U.
struct Search<'a> {
    eps: f64,
    order: &'a [Neuron],
    cancel: &'a AtomicBool,
    /// Progress: the sum over the searched neurons of their position in the order (each ends
    /// at the order's length).
    advanced: &'a AtomicU64,
    emit: &'a Emit<'a>,
}

impl Search<'_> {
    /// Records that `neurons` neurons moved `positions` places forward in the order.
    fn advance(&self, neurons: usize, positions: usize) {
        self.advanced
            .fetch_add((neurons * positions) as u64, Ordering::Relaxed);
    }

    /// Runs the search from `root` for the neurons of `group`. The parallelism is over the
    /// nodes of the search: the peelers' own products run sequentially.
    fn start(&self, root: &Peeler, group: Vec<Neuron>) {
        let mut s = root.clone();
        s.set_par(faer::Par::Seq);
        // Single removals read the probes' cached inner products with the duals instead of
        // the probe array (512+512 ReLU at ε 0.5: 20 CPU-seconds against 28; one witness at
        // 2048+2048: 13 s against 17 s).
        s.enable_cache();
        self.run(s, 0, group, Vec::new(), 1);
    }

    fn run(
        &self,
        mut s: Peeler,
        mut pos: usize,
        group: Vec<Neuron>,
        mut critical: Vec<Neuron>,
        mut run: usize,
    ) {
        let n = self.order.len();
        let mut trial: Option<Peeler> = None;
        // Screening results stay valid while neither the state nor the critical set changes:
        // `epoch` counts those changes and `screened[p]` is the epoch at which candidate p was
        // last screened and found not doomed.
        let mut epoch: u64 = 0;
        let mut screened = vec![u64::MAX; n];
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            if pos >= n {
                let key = (s.members(Side::A), s.members(Side::B));
                (self.emit)(group, key);
                return;
            }
            let end = (pos + run).min(n);
            s.compact_below(STATE_COMPACT_AT.0, STATE_COMPACT_AT.1);
            // Candidates of the run whose removal alone already pushes a critical neuron (or the
            // only member of the group) past ε are rejected whenever they are reached: removals
            // only grow sines, so the same holds in every later state. They become critical
            // now, without a trial, and the trial removes the others.
            let screen = !critical.is_empty() || group.len() == 1;
            let mut watch: Vec<Neuron> = critical.clone();
            if group.len() == 1 {
                watch.push(group[0]);
            }
            let mut removable: Vec<Neuron> = Vec::with_capacity(end - pos);
            // The candidates of the run, each with whether it needs screening.
            let mut todo: Vec<(usize, Neuron, bool)> = Vec::with_capacity(end - pos);
            for (p, &u) in self.order.iter().enumerate().take(end).skip(pos) {
                // (The only member of the group is never removed: it is its own candidate.)
                if !s.contains(u.0, u.1)
                    || critical.contains(&u)
                    || (group.len() == 1 && group[0] == u)
                {
                    continue;
                }
                todo.push((p, u, screen && screened[p] != epoch));
            }
            let fresh: Vec<Neuron> = todo.iter().filter(|t| t.2).map(|t| t.1).collect();
            let mut doomed = s.removals_doom(&fresh, self.eps, &watch).into_iter();
            let first_new = watch.len();
            for (p, u, check) in todo {
                if !check {
                    removable.push(u);
                    continue;
                }
                // Doomed by the watch list as it was, or by a candidate doomed just before.
                if doomed.next().unwrap_or(false)
                    || (watch.len() > first_new
                        && s.removal_dooms(u, self.eps, &watch[first_new..]))
                {
                    critical.push(u);
                    watch.push(u);
                    epoch += 1;
                } else {
                    screened[p] = epoch;
                    removable.push(u);
                }
            }
            if removable.is_empty() {
                self.advance(group.len(), end - pos);
                pos = end;
                run = if screen { run.max(2) } else { run * 2 }.min(MAX_RUN);
                continue;
            }
            let chunk = &removable[..];
            let mut t = match trial.take() {
                Some(mut t) => {
                    t.clone_from(&s);
                    t
                }
                None => s.clone(),
            };
            t.set_compact_at(TRIAL_COMPACT_AT.0, TRIAL_COMPACT_AT.1);
            t.remove_all(chunk);
            let (kept, lost): (Vec<Neuron>, Vec<Neuron>) =
                if t.peel_until_keeping_any(self.eps, &group, &critical) {
                    group.iter().partition(|g| t.contains(g.0, g.1))
                } else {
                    (Vec::new(), Vec::new())
                };
            // Members that did not survive: a single candidate is rejected (or, for the
            // candidate itself, skipped), which decides the whole run; a longer run is halved
            // (its first half of candidates is tried next).
            let (fail_pos, fail_run) = if chunk.len() == 1 {
                (end, 1)
            } else {
                let last = chunk[chunk.len() / 2 - 1];
                let at = (pos..end)
                    .find(|&p| self.order[p] == last)
                    .map_or(end, |p| p + 1);
                (pos, at - pos)
            };
            if lost.is_empty() && !kept.is_empty() {
                self.advance(group.len(), end - pos);
                epoch += 1;
                trial = Some(std::mem::replace(&mut s, t));
                pos = end;
                run = (run * 2).min(MAX_RUN);
            } else if kept.is_empty() {
                trial = Some(t);
                if chunk.len() == 1 {
                    critical.push(chunk[0]);
                    epoch += 1;
                }
                self.advance(group.len(), fail_pos - pos);
                pos = fail_pos;
                run = fail_run;
            } else {
                drop(trial);
                self.advance(kept.len(), end - pos);
                self.advance(lost.len(), fail_pos - pos);
                let kept_first = kept.len() <= lost.len();
                let mut lost_critical = critical.clone();
                if chunk.len() == 1 {
                    lost_critical.push(chunk[0]);
                }
                // The smaller group runs first on this thread: the other one waits with its
                // peeler, and nesting depth (hence peelers held) stays logarithmic.
                let accept = || self.run(t, end, kept, critical, (run * 2).min(MAX_RUN));
                let reject = || self.run(s, fail_pos, lost, lost_critical, fail_run);
                if kept_first {
                    rayon::join(accept, reject);
                } else {
                    rayon::join(reject, accept);
                }
                return;
            }
        }
    }
}

/// The sequential algorithm, one trial per candidate on a copy of the peeler (the
/// implementation before group testing). Reference of the equivalence tests; not part of the
/// supported API.
#[doc(hidden)]
pub fn reference_v_minimal(
    start: &Peeler,
    v: Neuron,
    eps: f64,
    order: &[Neuron],
) -> (Vec<usize>, Vec<usize>) {
    let mut s = start.clone();
    let mut trial = start.clone();
    for &u in order {
        if u == v || !s.contains(u.0, u.1) {
            continue;
        }
        trial.clone_from(&s);
        trial.remove(u.0, u.1);
        if trial.peel_until_keeping_sequential(eps, v) {
            std::mem::swap(&mut s, &mut trial);
        }
    }
    (s.members(Side::A), s.members(Side::B))
}

/// The simple matches of a layer pair at ε: a v-minimal match for every neuron v of the maximum
/// match, in the deterministic order (A's neurons by index, then B's) and in `orders` seeded
/// random orders, de-duplicated. `progress(done, total)` is called after each neuron; returning
/// `ControlFlow::Break` stops early with the matches found so far (`complete = false`).
pub fn simple_matches(
    problem: &MatchProblem,
    options: &SimpleOptions,
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    simple_matches_with(
        problem,
        options,
        |p: SimpleProgress| progress(p.neurons_done, p.neurons_total),
        false,
        None,
    )
}

/// [`simple_matches`] with a finer progress report ([`SimpleProgress`]: neurons and an
/// estimate of the share of the work done, for an ETA), for all neurons or, with `asked`,
/// for the given ones as [`simple_matches_for`] (whose checks apply).
pub fn simple_matches_progress(
    problem: &MatchProblem,
    options: &SimpleOptions,
    asked: Option<(&[usize], &[usize])>,
    progress: impl FnMut(SimpleProgress) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    match asked {
        None => simple_matches_with(problem, options, progress, false, None),
        Some((a, b)) => {
            let asked = asked_neurons(problem, a, b)?;
            simple_matches_with(problem, options, progress, false, Some(&asked))
        }
    }
}

/// The simple matches found for the given neurons only (indices into A and B): for each of them
/// in the maximum match at ε, its v-minimal match in the same orders as [`simple_matches`],
/// de-duplicated. The result is the full search's restricted to these neurons (the matches
/// they are witnesses of, with their counts and witnesses among them); each neuron's search is
/// that neuron's part of the full search, so the cost grows with the number of neurons asked
/// for, not with the layer. Queried neurons outside the maximum match are listed in
/// [`SimpleMatches::unmatched`] (no match contains them). `neurons_total` counts the queried
/// neurons in the maximum match (per order, as for the full search).
///
/// Errors: an index out of range ([`CoreError::NeuronIndex`]), or a dead neuron under
/// [`DeadPolicy::Drop`] ([`CoreError::DeadNeuron`]).
pub fn simple_matches_for(
    problem: &MatchProblem,
    options: &SimpleOptions,
    neurons_a: &[usize],
    neurons_b: &[usize],
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    let asked = asked_neurons(problem, neurons_a, neurons_b)?;
    simple_matches_with(
        problem,
        options,
        |p: SimpleProgress| progress(p.neurons_done, p.neurons_total),
        false,
        Some(&asked),
    )
}

/// The neurons asked about, checked (in range; live under the drop policy), without repeats.
fn asked_neurons(
    problem: &MatchProblem,
    neurons_a: &[usize],
    neurons_b: &[usize],
) -> Result<Vec<Neuron>, CoreError> {
    let mut asked: Vec<Neuron> = Vec::with_capacity(neurons_a.len() + neurons_b.len());
    for (side, ids, len) in [
        (Side::A, neurons_a, problem.n1()),
        (Side::B, neurons_b, problem.n2()),
    ] {
        let name = if side == Side::A { 'A' } else { 'B' };
        for &i in ids {
            if i >= len {
                return Err(CoreError::NeuronIndex {
                    side: name,
                    index: i,
                    len,
                });
            }
            if problem.options().dead == DeadPolicy::Drop && is_dead(problem, (side, i)) {
                return Err(CoreError::DeadNeuron {
                    side: name,
                    index: i,
                });
            }
            if !asked.contains(&(side, i)) {
                asked.push((side, i));
            }
        }
    }
    Ok(asked)
}

/// [`simple_matches`] computed the pre-optimisation way (unblocked factorisation, sequential
/// peeling, one trial per candidate). Reference of the equivalence tests; not part of the
/// supported API.
#[doc(hidden)]
pub fn reference_simple_matches(
    problem: &MatchProblem,
    options: &SimpleOptions,
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    simple_matches_with(
        problem,
        options,
        |p: SimpleProgress| progress(p.neurons_done, p.neurons_total),
        true,
        None,
    )
}

fn simple_matches_with(
    problem: &MatchProblem,
    options: &SimpleOptions,
    mut progress: impl FnMut(SimpleProgress) -> ControlFlow<()>,
    reference: bool,
    asked: Option<&[Neuron]>,
) -> Result<SimpleMatches, CoreError> {
    let eps = options.eps;
    check_epsilon(eps)?;
    let mut full = if reference {
        Peeler::new_reference(problem, problem.live_a(), problem.live_b())
    } else {
        Peeler::new(problem, problem.live_a(), problem.live_b())
    };
    let exact_case = eps <= problem.tol().sine
        && full.rank(Side::A) == problem.live_a().len()
        && full.rank(Side::B) == problem.live_b().len()
        && (problem.options().dead == DeadPolicy::Drop
            || (problem.dead_a().is_empty() && problem.dead_b().is_empty()));
    if reference {
        full.peel_until_sequential(eps);
    } else {
        full.peel_until(eps);
    }
    let live: Vec<Neuron> = full.neurons();
    let dead: Vec<Neuron> = if problem.options().dead == DeadPolicy::Match {
        problem
            .dead_a()
            .iter()
            .map(|&i| (Side::A, i))
            .chain(problem.dead_b().iter().map(|&j| (Side::B, j)))
            .collect()
    } else {
        Vec::new()
    };
    let all_members: Vec<Neuron> = live.iter().chain(&dead).copied().collect();
    // A targeted query searches only the asked neurons of the maximum match (in the full
    // search's member order, so that the merge below is the same).
    let (members, unmatched): (Vec<Neuron>, Vec<Neuron>) = match asked {
        None => (all_members, Vec::new()),
        Some(asked) => {
            let want: HashSet<Neuron> = asked.iter().copied().collect();
            let have: HashSet<Neuron> = all_members.iter().copied().collect();
            (
                all_members
                    .into_iter()
                    .filter(|v| want.contains(v))
                    .collect(),
                asked
                    .iter()
                    .copied()
                    .filter(|v| !have.contains(v))
                    .collect(),
            )
        }
    };

    let mut orders: Vec<Vec<Neuron>> = vec![live.clone()];
    for k in 0..options.orders {
        let mut rng =
            SplitMix64::new(options.seed ^ (k as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        let mut o = live.clone();
        rng.shuffle(&mut o);
        orders.push(o);
    }

    let total = members.len() * orders.len();
    let mut found: Vec<SimpleMatch> = Vec::new();
    let mut index: HashMap<(Vec<usize>, Vec<usize>), usize> = HashMap::new();
    let mut done = 0;
    let mut complete = true;
    'outer: for order in &orders {
        let mut keys: Vec<Option<Key>> = vec![None; members.len()];
        let base = done;
        let n_orders = orders.len() as f64;
        let mut report = |d: usize, share: f64| {
            progress(SimpleProgress {
                neurons_done: base + d,
                neurons_total: total,
                work: ((base / members.len().max(1)) as f64 + share.clamp(0.0, 1.0)) / n_orders,
            })
            .is_break()
        };
        let run = Run {
            problem,
            full: &full,
            eps,
            order,
            members: &members,
        };
        let stopped = if reference {
            run.reference(&mut keys, &mut report)
        } else {
            run.fast(&mut keys, &mut report)
        };
        // Merged in neuron order: the output does not depend on the number of threads.
        for (&v, key) in members.iter().zip(keys) {
            let Some(key) = key else { continue };
            done += 1;
            match index.get(&key) {
                Some(&k) => {
                    found[k].count += 1;
                    if !found[k].witnesses.contains(&v) {
                        found[k].witnesses.push(v);
                    }
                }
                None => {
                    index.insert(key.clone(), found.len());
                    found.push(SimpleMatch {
                        a: key.0,
                        b: key.1,
                        count: 1,
                        witnesses: vec![v],
                    });
                }
            }
        }
        if stopped {
            complete = false;
            break 'outer;
        }
    }
    found.sort_by(|x, y| {
        y.size()
            .cmp(&x.size())
            .then_with(|| x.a.cmp(&y.a))
            .then_with(|| x.b.cmp(&y.b))
    });
    Ok(SimpleMatches {
        eps,
        matches: found,
        exact_case,
        orders: orders.len(),
        neurons_done: done,
        neurons_total: members.len(),
        complete,
        unmatched,
    })
}

/// A match as (A neurons, B neurons), both increasing.
type Key = (Vec<usize>, Vec<usize>);

/// One order's computation of [`simple_matches`].
struct Run<'a> {
    problem: &'a MatchProblem,
    full: &'a Peeler,
    eps: f64,
    order: &'a [Neuron],
    members: &'a [Neuron],
}

impl Run<'_> {
    /// The reference: one sequential v-minimal search per neuron, in parallel batches. Fills
    /// `keys` (by member position) and calls `stop(done)` after each neuron; returns whether it
    /// asked to stop.
    fn reference(
        &self,
        keys: &mut [Option<Key>],
        stop: &mut dyn FnMut(usize, f64) -> bool,
    ) -> bool {
        let batch = 4 * rayon::current_num_threads().max(1);
        let mut done = 0;
        for (c, chunk) in self.members.chunks(batch).enumerate() {
            let results: Vec<Key> = chunk
                .par_iter()
                .map(|&v| {
                    if is_dead(self.problem, v) {
                        split(&[v])
                    } else {
                        reference_v_minimal(self.full, v, self.eps, self.order)
                    }
                })
                .collect();
            for (i, key) in results.into_iter().enumerate() {
                keys[c * batch + i] = Some(key);
                done += 1;
                if stop(done, done as f64 / self.members.len() as f64) {
                    return true;
                }
            }
        }
        false
    }

    /// All live neurons searched together ([`Search`], root group = every live member). The
    /// search runs on a helper thread (and the rayon pool); this thread records the results as
    /// they come and calls `stop(done, share)` (at least every [`PROGRESS_EVERY`], so that a
    /// request to stop is seen promptly), which can cancel the search. `done` counts the
    /// finished neurons, `share` estimates the share of this order's work done (see
    /// [`SimpleProgress::work`]).
    fn fast(&self, keys: &mut [Option<Key>], stop: &mut dyn FnMut(usize, f64) -> bool) -> bool {
        let slot: HashMap<Neuron, usize> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i))
            .collect();
        let mut done = 0;
        let mut group = Vec::new();
        for (i, &v) in self.members.iter().enumerate() {
            if is_dead(self.problem, v) {
                keys[i] = Some(split(&[v]));
                done += 1;
                if stop(done, done as f64 / self.members.len() as f64) {
                    return true;
                }
            } else {
                group.push(v);
            }
        }
        if group.is_empty() {
            return false;
        }
        let cancel = AtomicBool::new(false);
        let advanced = AtomicU64::new(0);
        let mut reporter = Reporter {
            advanced: &advanced,
            whole: (group.len() as f64) * (self.order.len().max(1) as f64),
            before: done,
            searched: group.len(),
            reported: 0.0,
        };
        let mut record = |g: Vec<Neuron>,
                          key: Key,
                          done: &mut usize,
                          reporter: &mut Reporter<'_>,
                          stop: &mut dyn FnMut(usize, f64) -> bool|
         -> bool {
            for v in g {
                if let Some(&i) = slot.get(&v) {
                    keys[i] = Some(key.clone());
                }
                *done += 1;
                if reporter.report(*done, stop) {
                    return true;
                }
            }
            false
        };
        if rayon::current_thread_index().is_some() {
            // Called from a rayon worker: blocking it on a channel could starve the pool, so
            // the search runs here and the results are reported at the end.
            let results = Mutex::new(Vec::new());
            let emit = |g: Vec<Neuron>, key: Key| {
                if let Ok(mut r) = results.lock() {
                    r.push((g, key));
                }
            };
            let search = Search {
                eps: self.eps,
                order: self.order,
                cancel: &cancel,
                advanced: &advanced,
                emit: &emit,
            };
            search.start(self.full, group);
            let results = results.into_inner().unwrap_or_default();
            for (g, key) in results {
                if record(g, key, &mut done, &mut reporter, stop) {
                    return true;
                }
            }
            return false;
        }
        let mut stopped = false;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(Vec<Neuron>, Key)>();
            let (cancel, advanced) = (&cancel, &advanced);
            scope.spawn(move || {
                let tx = Mutex::new(tx);
                let emit = |g: Vec<Neuron>, key: Key| {
                    if let Ok(tx) = tx.lock() {
                        // The receiver only hangs up after a cancellation.
                        let _ = tx.send((g, key));
                    }
                };
                let search = Search {
                    eps: self.eps,
                    order: self.order,
                    cancel,
                    advanced,
                    emit: &emit,
                };
                search.start(self.full, group);
            });
            loop {
                let halt = match rx.recv_timeout(PROGRESS_EVERY) {
                    Ok((g, key)) => record(g, key, &mut done, &mut reporter, stop),
                    Err(mpsc::RecvTimeoutError::Timeout) => reporter.report(done, stop),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                if halt {
                    stopped = true;
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
            }
        });
        stopped
    }
}

/// The progress reports of one order's search (see `Run::fast`).
struct Reporter<'a> {
    advanced: &'a AtomicU64,
    /// Positions of all searched neurons together.
    whole: f64,
    /// Neurons finished before the search (dead ones).
    before: usize,
    /// Neurons searched.
    searched: usize,
    /// The last share reported.
    reported: f64,
}

impl Reporter<'_> {
    /// Reports `finished` neurons done and the share of the order's work done; returns whether
    /// to stop.
    fn report(&mut self, finished: usize, stop: &mut dyn FnMut(usize, f64) -> bool) -> bool {
        let all = (self.before + self.searched) as f64;
        let positions = self.advanced.load(Ordering::Relaxed) as f64 / self.whole;
        let share = (self.before as f64 + positions * self.searched as f64) / all;
        // Never decreasing, and 1 only when every neuron has finished.
        let done_share = finished as f64 / all;
        let cap = if finished as f64 >= all {
            1.0
        } else {
            1.0 - 0.5 / all
        };
        self.reported = self.reported.max(share.max(done_share).min(cap));
        stop(finished, self.reported)
    }
}

/// Longest wait between two progress reports of the simple-match search.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Re-checks a match at ε: that it is an ε-match, and that it is v-minimal for each witness.
pub fn verify(
    problem: &MatchProblem,
    eps: f64,
    m: &SimpleMatch,
) -> Result<Verification, CoreError> {
    check_epsilon(eps)?;
    let limit = eps.max(problem.tol().sine);
    let live = |ids: &[usize], side: Side| -> Vec<usize> {
        ids.iter()
            .copied()
            .filter(|&i| !is_dead(problem, (side, i)))
            .collect()
    };
    let (la, lb) = (live(&m.a, Side::A), live(&m.b, Side::B));
    let has_dead = la.len() != m.a.len() || lb.len() != m.b.len();
    let peeler = Peeler::new(problem, &la, &lb);
    let is_match =
        peeler.max_sine() <= limit && !(has_dead && problem.options().dead == DeadPolicy::Drop);
    let mut minimal_for = Vec::new();
    for &v in &m.witnesses {
        let ok = if is_dead(problem, v) {
            m.size() == 1
        } else {
            let others =
                m.a.iter()
                    .map(|&i| (Side::A, i))
                    .chain(m.b.iter().map(|&j| (Side::B, j)))
                    .filter(|&u| u != v);
            let mut ok = true;
            let mut trial = peeler.clone();
            for u in others {
                if is_dead(problem, u) {
                    // A dead member can always be dropped without affecting v.
                    ok = false;
                    break;
                }
                trial.clone_from(&peeler);
                trial.remove(u.0, u.1);
                if trial.peel_until_keeping(eps, v) {
                    ok = false;
                    break;
                }
            }
            ok
        };
        minimal_for.push((v, ok));
    }
    Ok(Verification {
        is_match,
        minimal_for,
    })
}
