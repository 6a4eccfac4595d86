//! The ε-profile: for every neuron, the smallest ε at which it belongs to the maximum match.

use crate::tolerance::check_epsilon;
use crate::{CoreError, DeadPolicy, MatchProblem, Peeler, Side};
use serde::Serialize;

/// One step of the peeling pass: the neuron removed and its sine.
///
/// The pass removes neurons in rounds: a round removes either the farthest neuron (which sets a
/// new, lower level) or every neuron whose sine is at least the current level (they all have that
/// level as threshold). Within a round, A's neurons come first, then B's, by position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PeelStep {
    /// Side of the removed neuron.
    pub side: Side,
    /// Index of the neuron in its layer.
    pub neuron: usize,
    /// Its sine to the other side's span at the start of the round that removed it (at least its
    /// threshold; the largest of all when the round set a new level).
    pub sine: f64,
}

/// The ε-profile of a layer pair.
///
/// Neuron v belongs to the maximum match at ε iff `ε ≥ threshold(v)`. Thresholds come from one
/// peeling pass: the neuron removed at step t has threshold `min_{s ≤ t} δ_s`, where `δ_s` is the
/// sine recorded at step s. Thresholds at or below the sine tolerance are reported as 0.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    n1: usize,
    n2: usize,
    thresholds_a: Vec<Option<f64>>,
    thresholds_b: Vec<Option<f64>>,
    max_epsilon: f64,
    steps: Vec<PeelStep>,
}

/// The maximum match at one ε.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxMatch {
    /// The ε it was computed for.
    pub eps: f64,
    /// Neurons of A in the match, increasing.
    pub a: Vec<usize>,
    /// Neurons of B in the match, increasing.
    pub b: Vec<usize>,
    /// Maximum match similarity (|X*| + |Y*|) / (|X| + |Y|), dead neurons in the denominator.
    pub mms: f64,
}

impl Profile {
    /// The peeling pass by downdating the inverse Gram matrices when both sides qualify
    /// (`downdate.rs`), with the span tracker otherwise.
    pub(crate) fn compute(problem: &MatchProblem) -> Self {
        match crate::downdate::peel_rounds(problem) {
            Some(steps) => Self::from_removals(problem, steps),
            None => Self::compute_previous(problem),
        }
    }

    /// The peeling pass with the members factorised in the reverse of an expected removal
    /// order (`ordered.rs`), falling back to [`compute`](Self::compute) when a side does not
    /// qualify.
    pub(crate) fn compute_ordered(problem: &MatchProblem, order: &crate::RemovalOrder) -> Self {
        match crate::ordered::peel_rounds(problem, order) {
            Some(steps) => Self::from_removals(problem, steps),
            None => Self::compute(problem),
        }
    }

    /// The peeling pass on the span tracker (the implementation before downdating, and the
    /// path for sides with nearly dependent members).
    pub(crate) fn compute_previous(problem: &MatchProblem) -> Self {
        let peeler = Peeler::new(problem, problem.live_a(), problem.live_b());
        Self::from_removals(problem, peeler.peel_rounds())
    }

    /// The pre-blocking computation (unblocked factorisation, one removal per step): the
    /// reference of the equivalence tests.
    pub(crate) fn compute_reference(problem: &MatchProblem) -> Self {
        let peeler = Peeler::new_reference(problem, problem.live_a(), problem.live_b());
        Self::from_removals(problem, peeler.peel_all())
    }

    fn from_removals(problem: &MatchProblem, raw: Vec<(Side, usize, f64)>) -> Self {
        let tol = problem.tol().sine;
        let dead_value = match problem.options().dead {
            DeadPolicy::Drop => None,
            DeadPolicy::Match => Some(0.0),
        };
        let mut thresholds_a = vec![dead_value; problem.n1()];
        let mut thresholds_b = vec![dead_value; problem.n2()];
        let mut running = f64::INFINITY;
        let mut max_epsilon: f64 = 0.0;
        let mut steps = Vec::with_capacity(raw.len());
        for (side, neuron, sine) in raw {
            running = running.min(sine);
            let t = if running <= tol { 0.0 } else { running };
            max_epsilon = max_epsilon.max(t);
            match side {
                Side::A => thresholds_a[neuron] = Some(t),
                Side::B => thresholds_b[neuron] = Some(t),
            }
            steps.push(PeelStep { side, neuron, sine });
        }
        Self {
            n1: problem.n1(),
            n2: problem.n2(),
            thresholds_a,
            thresholds_b,
            max_epsilon,
            steps,
        }
    }

    /// Threshold ε*(v) of each neuron of A (`None` for dead neurons under [`DeadPolicy::Drop`]).
    pub fn thresholds_a(&self) -> &[Option<f64>] {
        &self.thresholds_a
    }

    /// Threshold ε*(v) of each neuron of B.
    pub fn thresholds_b(&self) -> &[Option<f64>] {
        &self.thresholds_b
    }

    /// The smallest ε at which all live neurons of both layers match (the largest threshold).
    pub fn max_epsilon(&self) -> f64 {
        self.max_epsilon
    }

    /// The peeling sequence (removal order and sines; see [`PeelStep`]).
    pub fn steps(&self) -> &[PeelStep] {
        &self.steps
    }

    /// The maximum match at `eps` (in [0, 1]).
    pub fn max_match(&self, eps: f64) -> Result<MaxMatch, CoreError> {
        check_epsilon(eps)?;
        let pick = |t: &[Option<f64>]| -> Vec<usize> {
            t.iter()
                .enumerate()
                .filter(|(_, th)| th.is_some_and(|th| th <= eps))
                .map(|(i, _)| i)
                .collect()
        };
        let (a, b) = (pick(&self.thresholds_a), pick(&self.thresholds_b));
        let mms = (a.len() + b.len()) as f64 / (self.n1 + self.n2) as f64;
        Ok(MaxMatch { eps, a, b, mms })
    }

    /// Fraction of all neurons (dead included) in the maximum match at `eps`: the ε-profile curve.
    pub fn mms(&self, eps: f64) -> Result<f64, CoreError> {
        Ok(self.max_match(eps)?.mms)
    }
}
