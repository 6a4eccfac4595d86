//! Simple matches: for each neuron v of the maximum match, a v-minimal match (a match that
//! contains v and no strictly smaller match containing v), de-duplicated.
//!
//! The algorithm is the reference one (docs/algorithm.md, section 5): start from the maximum match S; for each
//! other neuron u of S in turn, if v is still in the maximum match of S minus u, shrink S to
//! that maximum match. Each trial works on a copy of the incremental [`Peeler`] of S (cost
//! proportional to what is left, never to the number of rows) and stops as soon as v would be
//! peeled, so a rejected removal costs little and leaves S untouched.
//!
//! For ε = 0 with linearly independent vectors on each side, the v-minimal match is the unique
//! v-minimum match and the list of simple matches is complete ([`SimpleMatches::exact_case`]).
//! Otherwise the result depends on the order; [`SimpleOptions::orders`] adds seeded random orders.

use crate::rng::SplitMix64;
use crate::tolerance::check_epsilon;
use crate::{CoreError, DeadPolicy, MatchProblem, Peeler, Side};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::ops::ControlFlow;

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
    let mut s = start.clone();
    let mut trial = start.clone();
    let (mut pos, mut run) = (0, 1);
    while pos < order.len() {
        let end = (pos + run).min(order.len());
        let chunk = &order[pos..end];
        if !chunk.iter().any(|u| s.contains(u.0, u.1)) {
            pos = end;
            run *= 2;
            continue;
        }
        trial.clone_from(&s);
        trial.remove_all(chunk);
        if trial.peel_until_keeping(eps, v) {
            std::mem::swap(&mut s, &mut trial);
            pos = end;
            run *= 2;
        } else if end - pos == 1 {
            // u = order[pos] is rejected: S stays.
            pos += 1;
            run = 1;
        } else {
            run = (end - pos) / 2;
        }
    }
    (s.members(Side::A), s.members(Side::B))
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
    progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    simple_matches_with(problem, options, progress, false)
}

/// [`simple_matches`] computed the pre-optimisation way (unblocked factorisation, sequential
/// peeling, one trial per candidate). Reference of the equivalence tests; not part of the
/// supported API.
#[doc(hidden)]
pub fn reference_simple_matches(
    problem: &MatchProblem,
    options: &SimpleOptions,
    progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<SimpleMatches, CoreError> {
    simple_matches_with(problem, options, progress, true)
}

fn simple_matches_with(
    problem: &MatchProblem,
    options: &SimpleOptions,
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
    reference: bool,
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
    let members: Vec<Neuron> = live.iter().chain(&dead).copied().collect();

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
    // Neurons are processed in parallel in small batches; results are merged in neuron order, so
    // the output does not depend on the number of threads, and an interruption loses at most
    // one batch.
    let batch = 4 * rayon::current_num_threads().max(1);
    'outer: for order in &orders {
        for chunk in members.chunks(batch) {
            let results: Vec<(Vec<usize>, Vec<usize>)> = chunk
                .par_iter()
                .map(|&v| {
                    if is_dead(problem, v) {
                        split(&[v])
                    } else if reference {
                        reference_v_minimal(&full, v, eps, order)
                    } else {
                        v_minimal(&full, v, eps, order)
                    }
                })
                .collect();
            for (&v, key) in chunk.iter().zip(results) {
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
                done += 1;
                if progress(done, total).is_break() {
                    complete = false;
                    break 'outer;
                }
            }
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
    })
}

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
