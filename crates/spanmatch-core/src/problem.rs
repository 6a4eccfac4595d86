//! The reduced match problem: which neurons are live, which are dead, and their Gram matrix.

use crate::tolerance::check_epsilon;
use crate::{CoreError, JointStats, Peeler, Profile, RemovalOrder, Tolerances};
use faer::Mat;

/// What to do with dead neurons (zero activation vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadPolicy {
    /// Exclude them from matching but count them in the denominator of mms (the reference code's
    /// behaviour, so numbers compare with published ones). Their thresholds are `None`.
    #[default]
    Drop,
    /// The literal definition: a zero vector is ε-close to any span, so dead neurons belong to
    /// every maximum match (threshold 0).
    Match,
}

/// Options of a match computation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MatchOptions {
    /// Numerical tolerances.
    pub tol: Tolerances,
    /// Dead-neuron policy.
    pub dead: DeadPolicy,
}

/// A layer pair reduced to what matching needs: the Gram matrix of `[X | Y]`, the dead neurons of
/// each side and the options. Its cost is independent of the number of rows.
#[derive(Debug, Clone)]
pub struct MatchProblem {
    n1: usize,
    n2: usize,
    gram: Mat<f64>,
    dead_a: Vec<usize>,
    dead_b: Vec<usize>,
    live_a: Vec<usize>,
    live_b: Vec<usize>,
    options: MatchOptions,
}

impl MatchProblem {
    /// Builds the problem from finished statistics. Fails on empty layers, non-finite statistics
    /// or invalid tolerances.
    pub fn new(stats: &JointStats, options: MatchOptions) -> Result<Self, CoreError> {
        Self::from_gram(stats.gram.clone(), stats.n1, stats.n2, options)
    }

    /// Like [`new`](Self::new), taking the statistics by value so that the Gram matrix is moved,
    /// not copied (one copy of the `(n1 + n2)²` matrix less at the peak of memory).
    pub fn from_stats(stats: JointStats, options: MatchOptions) -> Result<Self, CoreError> {
        Self::from_gram(stats.gram, stats.n1, stats.n2, options)
    }

    /// Builds the problem from a symmetric `(n1 + n2)²` Gram matrix of `[X | Y]`.
    pub fn from_gram(
        gram: Mat<f64>,
        n1: usize,
        n2: usize,
        options: MatchOptions,
    ) -> Result<Self, CoreError> {
        options.tol.validate()?;
        if n1 == 0 {
            return Err(CoreError::EmptyLayer('A'));
        }
        if n2 == 0 {
            return Err(CoreError::EmptyLayer('B'));
        }
        assert_eq!(gram.nrows(), n1 + n2, "Gram matrix size must be n1 + n2");
        assert_eq!(gram.ncols(), n1 + n2, "Gram matrix size must be n1 + n2");
        if !gram.col_iter().all(|c| c.iter().all(|v| v.is_finite())) {
            return Err(CoreError::NonFinite);
        }
        let norms: Vec<f64> = (0..n1 + n2).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
        let max_norm = norms.iter().cloned().fold(0.0, f64::max);
        let cut = options.tol.dead_norm * max_norm;
        let is_dead = |i: usize| norms[i] <= cut;
        let (dead_a, live_a): (Vec<usize>, Vec<usize>) = (0..n1).partition(|&i| is_dead(i));
        let (dead_b, live_b): (Vec<usize>, Vec<usize>) = (0..n2).partition(|&j| is_dead(n1 + j));
        Ok(Self {
            n1,
            n2,
            gram,
            dead_a,
            dead_b,
            live_a,
            live_b,
            options,
        })
    }

    /// Neurons of net A (dead included).
    pub fn n1(&self) -> usize {
        self.n1
    }
    /// Neurons of net B (dead included).
    pub fn n2(&self) -> usize {
        self.n2
    }
    /// Dead neurons of net A (indices into A).
    pub fn dead_a(&self) -> &[usize] {
        &self.dead_a
    }
    /// Dead neurons of net B (indices into B).
    pub fn dead_b(&self) -> &[usize] {
        &self.dead_b
    }
    /// Live neurons of net A.
    pub fn live_a(&self) -> &[usize] {
        &self.live_a
    }
    /// Live neurons of net B.
    pub fn live_b(&self) -> &[usize] {
        &self.live_b
    }
    /// The options in force.
    pub fn options(&self) -> &MatchOptions {
        &self.options
    }
    /// Tolerances in force.
    pub fn tol(&self) -> &Tolerances {
        &self.options.tol
    }
    /// The joint Gram matrix (A's neurons first, then B's).
    pub fn gram(&self) -> &Mat<f64> {
        &self.gram
    }

    /// Inner product of neuron `i` of side `si` with neuron `j` of side `sj`.
    pub(crate) fn dot(&self, si: crate::Side, i: usize, sj: crate::Side, j: usize) -> f64 {
        self.gram[(self.joint(si, i), self.joint(sj, j))]
    }

    fn joint(&self, side: crate::Side, i: usize) -> usize {
        match side {
            crate::Side::A => i,
            crate::Side::B => self.n1 + i,
        }
    }

    /// The ε-profile of the live neurons (one peeling pass).
    pub fn profile(&self) -> Profile {
        Profile::compute(self)
    }

    /// The ε-profile, computed with each side's neurons factorised in the reverse of an
    /// expected removal order (e.g. [`RemovalOrder::from_profile`] of the full data for a
    /// bootstrap resample). The same profile as [`profile`](Self::profile) up to rounding
    /// (thresholds within 1e-10 in the tests) whatever the order; a close order makes it about
    /// twice as fast, a poor one slower (docs/algorithm.md, section 4).
    pub fn profile_ordered(&self, order: &RemovalOrder) -> Profile {
        Profile::compute_ordered(self, order)
    }

    /// The ε-profile computed on the span tracker, as before the downdating pass (the
    /// reference of the equivalence tests and benchmarks at wide layers; not part of the
    /// supported API).
    #[doc(hidden)]
    pub fn profile_previous(&self) -> Profile {
        Profile::compute_previous(self)
    }

    /// The ε-profile computed the pre-blocking way (unblocked factorisation, one removal per
    /// step). Reference of the equivalence tests; not part of the supported API.
    #[doc(hidden)]
    pub fn profile_reference(&self) -> Profile {
        Profile::compute_reference(self)
    }

    /// The maximum match at `eps` among the given live neurons (indices into A and B). Dead
    /// neurons in the subsets are handled by the dead policy.
    pub fn max_match_within(
        &self,
        subset_a: &[usize],
        subset_b: &[usize],
        eps: f64,
    ) -> Result<(Vec<usize>, Vec<usize>), CoreError> {
        check_epsilon(eps)?;
        for &i in subset_a {
            if i >= self.n1 {
                return Err(CoreError::NeuronIndex {
                    side: 'A',
                    index: i,
                    len: self.n1,
                });
            }
        }
        for &j in subset_b {
            if j >= self.n2 {
                return Err(CoreError::NeuronIndex {
                    side: 'B',
                    index: j,
                    len: self.n2,
                });
            }
        }
        let live = |s: &[usize], dead: &[usize]| -> (Vec<usize>, Vec<usize>) {
            s.iter().partition(|i| dead.binary_search(i).is_err())
        };
        let (la, da) = live(subset_a, &self.dead_a);
        let (lb, db) = live(subset_b, &self.dead_b);
        let mut peeler = Peeler::new(self, &la, &lb);
        peeler.peel_until(eps);
        let (mut a, mut b) = (
            peeler.members(crate::Side::A),
            peeler.members(crate::Side::B),
        );
        if self.options.dead == DeadPolicy::Match {
            a.extend(da);
            b.extend(db);
            a.sort_unstable();
            b.sort_unstable();
        }
        Ok((a, b))
    }
}
