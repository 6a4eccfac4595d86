//! Similarity measures computed from the same statistics as the span match: the basis-invariant
//! linear CKA (biased and debiased), CCA (mean ρ, R²), SVCCA, PWCCA, orthogonal Procrustes and
//! the generalized shape metric; linear predictivity (ridge R²); and the neuron-level matching
//! measures: one-to-one and semi-matching of correlations, soft matching (optimal transport)
//! and permutation Procrustes.
//!
//! Everything here is a function of [`JointStats`] (the uncentred joint Gram matrix of `[X | Y]`,
//! the column sums, the row count and the row-norm moments), so it costs one streaming pass over
//! the rows and O((n1 + n2)²) memory, like the match itself. Features are column-centred
//! algebraically (`Gram - s sᵀ / rows`), except for the one explicitly uncentred extra
//! [`Measures::cca_r2_uncentred`].
//!
//! The per-image "flattened" view used by CKA libraries for convolutional layers (features are
//! all `C·H·W` values of an image, rows are images) is in [`flatten`].
//!
//! The similarities lie in [0, 1] (1 = same representation up to the measure's invariances;
//! correlation means in [-1, 1]); the Procrustes, soft-matching and shape numbers are
//! **distances** (0 = same). See `docs/measures.md` for the exact definitions and how each is
//! derived from the statistics.
//!
//! The expensive factorisations are shared: one symmetric eigendecomposition per side and the
//! rotated cross-covariance `B = Vxᵀ Cxy Vy` serve CCA, SVCCA, PWCCA, the uncentred R²,
//! predictivity and the shape metric; singular values come from symmetric eigenproblems of the
//! smaller Gram matrix (see [`linalg`]).

mod cca;
mod cka;
pub mod flatten;
pub mod linalg;
mod neurons;
mod predictivity;
mod procrustes;
mod shape;
mod transport;

pub use cka::{centred_row_norms, CentredRowNorms};
pub use flatten::{FlattenedColumnAccumulator, FlattenedGramAccumulator, FlattenedKernels};

use crate::{dense, CoreError, JointStats};
use faer::Mat;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Relative rank tolerance of the CCA family: an eigenvalue of one side's (centred) covariance
/// matrix at or below `CCA_RANK_TOL` times the largest eigenvalue of that side is treated as zero,
/// and its direction is left out of the canonical analysis.
///
/// Eigenvalues of a covariance are squared singular values of the data, so this keeps directions
/// whose singular value is above `sqrt(1e-10) = 1e-5` times the largest. It is far above the
/// round-off of an f64 Gram matrix (about 1e-16 relative, more when the columns have large means
/// compared with their spread), so duplicate columns, dead neurons and "more features than rows"
/// are truncated cleanly instead of producing spurious canonical correlations. When it removes
/// anything, [`Measures::notes`] says so and [`Measures::cca_rank`] gives the ranks used.
pub const CCA_RANK_TOL: f64 = 1e-10;

/// SVCCA keeps, on each side, the smallest number of leading principal directions whose variances
/// (eigenvalues of the centred covariance) add up to at least this fraction of the total variance
/// (Raghu et al. 2017; Kornblith et al. 2019 use 0.99).
pub const SVCCA_KEEP_VARIANCE: f64 = 0.99;

/// A side counts as constant (no variance: all neurons dead or constant over the rows) when the
/// trace of its centred covariance is at most `CONSTANT_TOL` times the trace of its uncentred Gram
/// matrix. Every measure involving that side is then undefined (`None`, with a note).
///
/// Centring is done as `Gram - s sᵀ / rows`, whose round-off is about `f64::EPSILON` times the
/// uncentred trace; `1e-12` is well above that and well below any real signal.
pub const CONSTANT_TOL: f64 = 1e-12;

/// The debiased (unbiased-HSIC) CKA estimator needs at least this many rows.
pub const DEBIASED_MIN_ROWS: u64 = 4;

/// Default α of the shape metric ([`MeasureOptions::shape_alpha`]): halfway between CCA-like
/// (0, full whitening) and Procrustes-like (1, rotations only).
pub const DEFAULT_SHAPE_ALPHA: f64 = 0.5;

/// Default ridge penalty of the predictivity regression ([`MeasureOptions::ridge_alpha`]): plain
/// least squares.
pub const DEFAULT_RIDGE_ALPHA: f64 = 0.0;

/// Options of the measures that have parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureOptions {
    /// α of the shape metric, in [0, 1]: 0 = CCA-like (full whitening), 1 = Procrustes-like.
    /// Applied to each side's data divided by its RMS singular value (see `docs/measures.md`).
    pub shape_alpha: f64,
    /// Ridge penalty of the predictivity regression, ≥ 0, in units of the mean eigenvalue of the
    /// predicting side's centred Gram matrix (so it does not depend on the row count or scale).
    pub ridge_alpha: f64,
    /// Also return the soft-matching transport plan ([`NeuronMatching::soft_plan`]).
    pub transport_plan: bool,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            shape_alpha: DEFAULT_SHAPE_ALPHA,
            ridge_alpha: DEFAULT_RIDGE_ALPHA,
            transport_plan: false,
        }
    }
}

impl MeasureOptions {
    /// Fails with [`CoreError::MeasureOption`] for α outside [0, 1] or a negative (or
    /// non-finite) ridge penalty.
    pub fn validate(&self) -> Result<(), CoreError> {
        if !(0.0..=1.0).contains(&self.shape_alpha) {
            return Err(CoreError::MeasureOption {
                name: "shape_alpha",
                value: self.shape_alpha,
                range: "[0, 1] (0 = CCA-like, 1 = Procrustes-like)",
            });
        }
        if !(self.ridge_alpha >= 0.0 && self.ridge_alpha.is_finite()) {
            return Err(CoreError::MeasureOption {
                name: "ridge_alpha",
                value: self.ridge_alpha,
                range: "[0, ∞) (0 = least squares)",
            });
        }
        Ok(())
    }
}

/// A similarity measure that can be requested in [`compute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Linear CKA, biased and debiased ([`Measures::cka_linear`],
    /// [`Measures::cka_linear_debiased`]).
    Cka,
    /// CCA: canonical correlations, their mean and R²_CCA ([`Measures::cca_rho`],
    /// [`Measures::cca_mean_rho`], [`Measures::cca_r2`], [`Measures::cca_r2_uncentred`]).
    Cca,
    /// SVCCA mean canonical correlation ([`Measures::svcca`]).
    Svcca,
    /// Projection-weighted CCA ([`Measures::pwcca`]).
    Pwcca,
    /// Orthogonal Procrustes distance, Euclidean and angular ([`Measures::procrustes`],
    /// [`Measures::procrustes_angular`]).
    Procrustes,
    /// One-to-one (Hungarian) matching of neuron correlations and the semi-matching
    /// ([`Measures::one_to_one`], [`Measures::semi_match`], [`NeuronMatching`]).
    OneToOne,
    /// Soft-matching distance, optimal transport over neurons ([`Measures::soft_match`]).
    SoftMatch,
    /// Permutation Procrustes distance ([`Measures::perm_procrustes`]).
    PermProcrustes,
    /// Ridge-regression R² in both directions ([`Measures::predictivity_ab`]).
    Predictivity,
    /// Generalized shape metric, angular ([`Measures::shape`]).
    Shape,
}

impl Measure {
    /// All measures, in the order of their names in [`Measure::NAMES`].
    pub const ALL: [Measure; 10] = [
        Measure::Cka,
        Measure::Cca,
        Measure::Svcca,
        Measure::Pwcca,
        Measure::Procrustes,
        Measure::OneToOne,
        Measure::SoftMatch,
        Measure::PermProcrustes,
        Measure::Predictivity,
        Measure::Shape,
    ];

    /// The basis-invariant measures (those unchanged by a rotation of either layer's neurons,
    /// PWCCA aside; see `docs/measures.md`), which existed before the neuron-level ones.
    pub const BASIS_INVARIANT: [Measure; 5] = [
        Measure::Cka,
        Measure::Cca,
        Measure::Svcca,
        Measure::Pwcca,
        Measure::Procrustes,
    ];

    /// The names accepted by [`FromStr`], in the order of [`Measure::ALL`].
    pub const NAMES: [&'static str; 10] = [
        "cka",
        "cca",
        "svcca",
        "pwcca",
        "procrustes",
        "one_to_one",
        "soft_match",
        "perm_procrustes",
        "predictivity",
        "shape",
    ];

    /// The name of the measure (what [`FromStr`] accepts).
    pub fn name(self) -> &'static str {
        match self {
            Measure::Cka => "cka",
            Measure::Cca => "cca",
            Measure::Svcca => "svcca",
            Measure::Pwcca => "pwcca",
            Measure::Procrustes => "procrustes",
            Measure::OneToOne => "one_to_one",
            Measure::SoftMatch => "soft_match",
            Measure::PermProcrustes => "perm_procrustes",
            Measure::Predictivity => "predictivity",
            Measure::Shape => "shape",
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown measure name given to [`Measure::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown measure '{name}'; valid measures are: cka, cca, svcca, pwcca, procrustes, \
     one_to_one, soft_match, perm_procrustes, predictivity, shape"
)]
pub struct ParseMeasureError {
    /// The name that was not recognised.
    pub name: String,
}

impl FromStr for Measure {
    type Err = ParseMeasureError;

    /// Parses a measure name (case-insensitive, surrounding whitespace ignored; `match_1to1` is
    /// accepted for `one_to_one`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        if key == "match_1to1" {
            return Ok(Measure::OneToOne);
        }
        Measure::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| ParseMeasureError {
                name: s.to_string(),
            })
    }
}

/// The measures of one layer pair. A field is `None` when it was not requested or is undefined
/// for the data (then [`notes`](Self::notes) says why); `None` fields are left out of the JSON.
/// No field is ever NaN or infinite.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Measures {
    /// Linear CKA with centred features (Kornblith et al. 2019), the biased HSIC estimator:
    /// `‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)`. Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear: Option<f64>,
    /// Linear CKA from the unbiased HSIC estimator (Song et al. 2012; U-centering), as the
    /// `debiased=True` option of Kornblith et al.'s code. Near 0 for independent data at any
    /// sample size; an estimate, so it can fall slightly below 0 (or above 1) on small samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear_debiased: Option<f64>,
    /// Mean canonical correlation `Σ ρ_i / r` over the `r = min(rank X̃, rank Ỹ)` canonical
    /// correlations of the centred data. Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_mean_rho: Option<f64>,
    /// `R²_CCA = ‖Q_Yᵀ Q_X‖²_F / r = Σ ρ_i² / r` (Kornblith et al. 2019), Q orthonormal bases of
    /// the centred columns. Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_r2: Option<f64>,
    /// `R²_CCA` of the *uncentred* data (what the CKA demo notebook computes). Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_r2_uncentred: Option<f64>,
    /// The canonical correlations of the centred data, in decreasing order, each in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_rho: Option<Vec<f64>>,
    /// Numerical ranks `[rank X̃, rank Ỹ]` of the centred data used by the CCA (see
    /// [`CCA_RANK_TOL`]); equal to the widths unless truncation was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_rank: Option<[usize; 2]>,
    /// SVCCA: mean canonical correlation after keeping, on each side, the leading principal
    /// directions that explain [`SVCCA_KEEP_VARIANCE`] of the variance. Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svcca: Option<f64>,
    /// Principal directions kept by SVCCA on each side, `[k_A, k_B]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svcca_dims: Option<[usize; 2]>,
    /// PWCCA (Morcos et al. 2018): the canonical correlations averaged with weights
    /// `α_i ∝ Σ_j |⟨h_i, x̃_j⟩|` (h_i the canonical variates, x̃_j the centred neurons) of the side
    /// with fewer neurons (A on a tie). Similarity in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pwcca: Option<f64>,
    /// Orthogonal Procrustes distance `d = min_Q ‖X̂Q − Ŷ‖_F = sqrt(2 − 2‖X̂ᵀŶ‖_*)` of the centred,
    /// Frobenius-normalised data (Q with orthonormal columns, the narrower side zero-padded).
    /// Distance in [0, √2]; 0 = equal up to rotation and scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procrustes: Option<f64>,
    /// Angular Procrustes distance `arccos ‖X̂ᵀŶ‖_*` in radians (Williams et al. 2021). Distance in
    /// [0, π/2].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procrustes_angular: Option<f64>,
    /// One-to-one matching (Li et al. 2016): the mean correlation of the `min(n1', n2')` neuron
    /// pairs of the assignment that maximises the total correlation (n' the neurons with
    /// variance). In [-1, 1]. Pairs in [`NeuronMatching::one_to_one`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_to_one: Option<f64>,
    /// Semi-matching: the mean, over the neurons of each layer, of the correlation with their
    /// best partner in the other layer, averaged over the two directions (ReSi's "soft
    /// correlation match"). In [-1, 1]. Partners in [`NeuronMatching::best_in_b`] / `best_in_a`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semi_match: Option<f64>,
    /// Soft-matching distance (Khosla & Williams 2023): `sqrt(min_T Σ T_ij ‖x̂_i − ŷ_j‖²)` over
    /// transport plans with uniform marginals between the standardised neurons (centred, unit
    /// norm), `= sqrt(2 − 2 soft_match_correlation)`. Distance in [0, 2]; a metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_match: Option<f64>,
    /// The transported correlation `max_T Σ T_ij ρ_ij` of the soft matching, in [-1, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_match_correlation: Option<f64>,
    /// Permutation Procrustes distance (Williams et al. 2021): `min_P ‖X̂ P − Ŷ‖_F` over
    /// permutations (partial, the narrower layer zero-padded) of the centred,
    /// Frobenius-normalised data, `= sqrt(2 − 2ν_P)`. Distance in [0, 2].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perm_procrustes: Option<f64>,
    /// Angular permutation Procrustes distance `arccos ν_P` in radians (netrep's
    /// `PermutationMetric`), in [0, π].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perm_procrustes_angular: Option<f64>,
    /// Linear predictivity A → B: R² of the ridge regression of B's neurons on A's (centred,
    /// pooled over B's neurons), on the rows of the statistics (training data). In [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictivity_ab: Option<f64>,
    /// Linear predictivity B → A. In [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictivity_ba: Option<f64>,
    /// The ridge penalty used by the predictivity ([`MeasureOptions::ridge_alpha`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictivity_alpha: Option<f64>,
    /// Generalized shape metric (Williams et al. 2021; netrep's `LinearMetric(alpha)`, angular
    /// score) in radians, in [0, π/2]. α = 1 equals `procrustes_angular`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<f64>,
    /// The α used by [`shape`](Self::shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape_alpha: Option<f64>,
    /// Neuron-level results of the matching measures (pairs, partners, permutation, plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neurons: Option<NeuronMatching>,
    /// Human-readable remarks: truncations applied, undefined measures and why.
    pub notes: Vec<String>,
}

/// Two neurons, one of each layer, and their correlation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NeuronPair {
    /// Neuron index in layer A.
    pub a: usize,
    /// Neuron index in layer B.
    pub b: usize,
    /// Correlation of their activations over the rows, in [-1, 1].
    pub correlation: f64,
}

/// One entry of the soft-matching transport plan: `mass` moved between neuron `a` of A and
/// neuron `b` of B (the masses sum to 1; each live neuron of A carries `1/n1'` in all, each of B
/// `1/n2'`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransportEntry {
    /// Neuron index in layer A.
    pub a: usize,
    /// Neuron index in layer B.
    pub b: usize,
    /// Mass of the plan on this pair.
    pub mass: f64,
}

/// The neuron-level output of the matching measures. Indices are neuron indices of the layers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NeuronMatching {
    /// Neurons of A without variance (dead or constant), left out of the correlation-based
    /// measures (one-to-one, semi-matching, soft matching).
    pub constant_a: Vec<usize>,
    /// Neurons of B without variance, left out likewise.
    pub constant_b: Vec<usize>,
    /// The one-to-one assignment, sorted by `a`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_to_one: Option<Vec<NeuronPair>>,
    /// For each live neuron of A (in order), its most correlated neuron of B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_in_b: Option<Vec<NeuronPair>>,
    /// For each live neuron of B (in order), its most correlated neuron of A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_in_a: Option<Vec<NeuronPair>>,
    /// The permutation of permutation Procrustes: `[a, b]` pairs sorted by `a`
    /// (`min(n1, n2)` of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permutation: Option<Vec<[usize; 2]>>,
    /// The soft-matching transport plan (only with [`MeasureOptions::transport_plan`]): a basic
    /// optimal plan, at most `n1' + n2' − 1` entries, sorted by (a, b).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_plan: Option<Vec<TransportEntry>>,
}

/// Computes the requested measures (duplicates ignored, order irrelevant) from finished statistics,
/// with the default [`MeasureOptions`].
///
/// Fails on an empty layer, no rows, non-finite statistics or statistics whose shapes disagree.
/// Degenerate but valid data (dead neurons, constant layers, rank deficiency, fewer rows than
/// features) never fail: the affected fields are finite values or `None`, with a note.
pub fn compute(stats: &JointStats, which: &[Measure]) -> Result<Measures, CoreError> {
    compute_with(stats, which, &MeasureOptions::default())
}

/// The factorisations shared by the CCA family, predictivity and the shape metric (both sides
/// with variance): `Cxx = Vx Λx Vxᵀ`, `Cyy = Vy Λy Vyᵀ` and `B = Vxᵀ Cxy Vy`.
pub(crate) struct Factors {
    pub ex: linalg::Eigen,
    pub ey: linalg::Eigen,
    pub b: Mat<f64>,
}

/// [`compute`] with explicit options (validated first: α outside [0, 1] is an error).
pub fn compute_with(
    stats: &JointStats,
    which: &[Measure],
    options: &MeasureOptions,
) -> Result<Measures, CoreError> {
    compute_timed(stats, which, options).map(|(m, _)| m)
}

/// Wall-clock seconds of the stages of one [`compute_timed`] call, in order (for benchmarks).
pub type StageTimes = Vec<(&'static str, f64)>;

struct Stopwatch {
    last: std::time::Instant,
    laps: StageTimes,
}

impl Stopwatch {
    fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((stage, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// [`compute_with`], also returning how long each stage took (for benchmarks): `centring`, `cka`,
/// `eigh` (both sides), `rotate` (B = Vxᵀ Cxy Vy), `predictivity`, `cca/pwcca` (with the
/// uncentred R²), `svcca`, `procrustes`, `shape`, `correlations`, `one_to_one`, `soft_match`,
/// `perm_procrustes` (only the stages that ran), then `all (wall)`, the wall time from the end of
/// `cka` on.
pub fn compute_timed(
    stats: &JointStats,
    which: &[Measure],
    options: &MeasureOptions,
) -> Result<(Measures, StageTimes), CoreError> {
    compute_impl(
        stats,
        which,
        options,
        BRANCHES_SIDE_BY_SIDE,
        linalg::Backend::best(),
    )
}

/// Whether the independent branches of the computation run side by side on the rayon pool (each
/// factorisation is multi-threaded either way). See docs/decisions.md for the measurement.
const BRANCHES_SIDE_BY_SIDE: bool = false;

/// Whether the two assignment problems (one-to-one on the correlations, permutation Procrustes
/// on the cross-covariance) run side by side even when the branches do not: each is
/// single-threaded, so two threads solve both in about the time of the slower. (4096 + 4096
/// ReLU layers, `measures_timing`: 3.2 s of matchings one after the other, 1.9 s side by side.)
const ASSIGNMENTS_SIDE_BY_SIDE: bool = true;

/// [`compute_timed`] with the branches explicitly side by side or one after the other: for the
/// benchmark that chose [`BRANCHES_SIDE_BY_SIDE`] (the numbers are the same either way).
#[doc(hidden)]
pub fn compute_timed_branches(
    stats: &JointStats,
    which: &[Measure],
    options: &MeasureOptions,
    side_by_side: bool,
) -> Result<(Measures, StageTimes), CoreError> {
    compute_impl(stats, which, options, side_by_side, linalg::Backend::best())
}

/// `rayon::join` when `concurrent`, else `a` then `b`.
fn join2<A: Send, B: Send>(
    concurrent: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if concurrent {
        rayon::join(a, b)
    } else {
        let ra = a();
        (ra, b())
    }
}

fn compute_impl(
    stats: &JointStats,
    which: &[Measure],
    options: &MeasureOptions,
    concurrent: bool,
    backend: linalg::Backend,
) -> Result<(Measures, StageTimes), CoreError> {
    validate(stats)?;
    options.validate()?;
    let want = |m: Measure| which.contains(&m);
    let mut out = Measures::default();
    let mut clock = Stopwatch {
        last: std::time::Instant::now(),
        laps: Vec::new(),
    };
    if which.is_empty() {
        return Ok((out, clock.laps));
    }
    let parts = Parts::new(stats, backend);
    clock.lap("centring");
    let const_a = parts.constant_a();
    let const_b = parts.constant_b();
    if const_a || const_b {
        let sides: Vec<&str> = [(const_a, "A"), (const_b, "B")]
            .iter()
            .filter(|(c, _)| *c)
            .map(|(_, s)| *s)
            .collect();
        out.notes.push(format!(
            "layer {} has no variance (all neurons dead or constant): the measures of centred data \
             are undefined",
            sides.join(" and ")
        ));
    }
    let defined = !(const_a || const_b);
    let (cca, pwcca, svcca) = (
        want(Measure::Cca),
        want(Measure::Pwcca),
        want(Measure::Svcca),
    );
    let (shape, pred) = (want(Measure::Shape), want(Measure::Predictivity));

    if want(Measure::Cka) && defined {
        cka::fill(stats, &parts, &mut out);
        clock.lap("cka");
    }

    // Three independent branches run side by side (rayon): the eigendecompositions and what
    // is built on them; the orthogonal Procrustes nuclear norm; the neuron matchings. Each writes
    // its own partial result, merged below in a fixed order (deterministic notes).
    let need_eig = cca || pwcca || svcca || shape || pred;
    let procrustes_wanted = want(Measure::Procrustes) && defined;
    let (one, soft, perm) = (
        want(Measure::OneToOne),
        want(Measure::SoftMatch),
        want(Measure::PermProcrustes),
    );
    let matching = defined && (one || soft || perm);
    let c = concurrent;
    let (eig_part, (proc_part, match_part)) = join2(
        c,
        || {
            need_eig.then(|| {
                eigen_branch(
                    stats,
                    &parts,
                    (const_a, const_b),
                    (cca, pwcca, svcca, pred),
                    options,
                    c,
                )
            })
        },
        || {
            join2(
                c,
                || {
                    procrustes_wanted.then(|| {
                        let mut part = Partial::default();
                        let nu = part.time("procrustes", |o| procrustes::nuclear_ratio(&parts, o));
                        (part, nu)
                    })
                },
                || matching.then(|| matching_branch(stats, &parts, (one, soft, perm), options, c)),
            )
        },
    );
    let mut rho = None;
    let mut factors = None;
    if let Some((part, r, f)) = eig_part {
        clock.absorb(&mut out, part);
        rho = r;
        factors = f;
    }
    let mut nu = None;
    if let Some((part, n)) = proc_part {
        clock.absorb(&mut out, part);
        if let Some(n) = n {
            procrustes::fill(n, &mut out);
        }
        nu = n;
    }
    if let (Some(f), true) = (&factors, shape) {
        let t = std::time::Instant::now();
        shape::fill(
            f,
            options.shape_alpha,
            rho.as_deref(),
            nu,
            parts.backend,
            &mut out,
        );
        clock.laps.push(("shape", t.elapsed().as_secs_f64()));
    }
    if let Some(part) = match_part {
        clock.absorb(&mut out, part);
    }
    clock.lap("all (wall)");
    drop_non_finite(&mut out);
    Ok((out, clock.laps))
}

/// The result of one branch of [`compute_timed`]: the fields it filled, its notes and the
/// seconds of its stages.
#[derive(Default)]
struct Partial {
    out: Measures,
    times: StageTimes,
}

impl Partial {
    /// Runs `f`, recording its duration under `stage`.
    fn time<T>(&mut self, stage: &'static str, f: impl FnOnce(&mut Measures) -> T) -> T {
        let t = std::time::Instant::now();
        let v = f(&mut self.out);
        self.times.push((stage, t.elapsed().as_secs_f64()));
        v
    }
}

/// The eigendecompositions and everything built on them: CCA, PWCCA, SVCCA, the uncentred R²,
/// predictivity, and the factors the shape metric needs. Returns the canonical correlations
/// and the factors (when both sides have variance).
fn eigen_branch(
    stats: &JointStats,
    parts: &Parts,
    (const_a, const_b): (bool, bool),
    (cca, pwcca, svcca, pred): (bool, bool, bool, bool),
    options: &MeasureOptions,
    concurrent: bool,
) -> (Partial, Option<Vec<f64>>, Option<Factors>) {
    let mut part = Partial::default();
    let (ex, ey) = part.time("eigh", |_| {
        join2(
            concurrent,
            || (!const_a).then(|| linalg::eigen(parts.cxx.as_ref())),
            || (!const_b).then(|| linalg::eigen(parts.cyy.as_ref())),
        )
    });
    let failed = matches!(ex, Some(None)) || matches!(ey, Some(None));
    if failed {
        part.out.notes.push(
            "cca/svcca/pwcca/predictivity/shape: undefined, the eigenvalue solver did not converge"
                .to_string(),
        );
        return (part, None, None);
    }
    let (ex, ey) = (ex.flatten(), ey.flatten());
    let (ex, ey) = match (ex, ey) {
        (Some(ex), Some(ey)) => (ex, ey),
        (ex, ey) => {
            if cca {
                // A side without variance: only the uncentred R² is defined.
                let m = Mat::zeros(
                    ex.as_ref().map_or(0, |e| e.rank),
                    ey.as_ref().map_or(0, |e| e.rank),
                );
                cca::fill_uncentred_r2(stats, ex.as_ref(), ey.as_ref(), &m, &mut part.out);
            }
            return (part, None, None);
        }
    };
    // B = Vxᵀ Cxy Vy.
    let b = part.time("rotate", |_| {
        let be = parts.backend;
        let cy = dense::product(parts.cxy.as_ref(), ey.vectors.as_ref(), be);
        dense::product(ex.vectors.transpose(), cy.as_ref(), be)
    });
    let f = Factors { ex, ey, b };
    if pred {
        part.time("predictivity", |o| {
            predictivity::fill(parts, &f, options.ridge_alpha, o)
        });
    }
    let mut rho = None;
    if (cca || pwcca || svcca) && cca::check_ranks(parts, &f, (cca, pwcca, svcca), &mut part.out) {
        let m = cca::cca_matrix(&f);
        let mut sv = Partial::default();
        let (r, ()) = join2(
            concurrent,
            || {
                (cca || pwcca).then(|| {
                    part.time("cca/pwcca", |o| {
                        let r = cca::fill_cca_pwcca(parts, &f, &m, (cca, pwcca), o);
                        if cca {
                            cca::fill_uncentred_r2(stats, Some(&f.ex), Some(&f.ey), &m, o);
                        }
                        r
                    })
                })
            },
            || {
                if svcca {
                    sv.time("svcca", |o| cca::fill_svcca(&f, &m, parts.backend, o));
                }
            },
        );
        rho = r.flatten();
        part.merge(sv);
    }
    (part, rho, Some(f))
}

/// One-to-one, semi-matching, soft matching and permutation Procrustes.
fn matching_branch(
    stats: &JointStats,
    parts: &Parts,
    (one, soft, perm): (bool, bool, bool),
    options: &MeasureOptions,
    concurrent: bool,
) -> Partial {
    let mut part = Partial::default();
    let mut nm = NeuronMatching::default();
    let mut perm_part = Partial::default();
    let mut perm_nm = NeuronMatching::default();
    join2(
        concurrent || ASSIGNMENTS_SIDE_BY_SIDE,
        || {
            if !(one || soft) {
                return;
            }
            let corr = part.time("correlations", |_| neurons::Correlations::new(stats, parts));
            let dead = |l: &[usize], n: usize| -> Vec<usize> {
                (0..n).filter(|i| l.binary_search(i).is_err()).collect()
            };
            nm.constant_a = dead(&corr.live_a, parts.n1);
            nm.constant_b = dead(&corr.live_b, parts.n2);
            let assigned = if one {
                part.time("one_to_one", |o| {
                    neurons::fill_one_to_one(&corr, parts, &mut nm, o)
                })
            } else {
                None
            };
            if soft {
                part.time("soft_match", |o| {
                    neurons::fill_soft_match(
                        &corr,
                        parts,
                        assigned.as_deref(),
                        options.transport_plan,
                        &mut nm,
                        o,
                    )
                });
            }
        },
        || {
            if perm {
                perm_part.time("perm_procrustes", |o| {
                    neurons::fill_perm_procrustes(parts, &mut perm_nm, o)
                });
            }
        },
    );
    nm.permutation = perm_nm.permutation;
    part.merge(perm_part);
    part.out.neurons = Some(nm);
    part
}

impl Partial {
    /// Moves `other`'s fields, notes and times into `self` (fields of `other` win).
    fn merge(&mut self, other: Partial) {
        absorb_fields(&mut self.out, other.out);
        self.times.extend(other.times);
    }
}

impl Stopwatch {
    /// Merges a branch into the output, with its stage times.
    fn absorb(&mut self, out: &mut Measures, part: Partial) {
        absorb_fields(out, part.out);
        self.laps.extend(part.times);
    }
}

/// Copies the fields set in `part` into `out` and appends its notes.
fn absorb_fields(out: &mut Measures, part: Measures) {
    macro_rules! take {
        ($($f:ident),*) => { $( if part.$f.is_some() { out.$f = part.$f; } )* };
    }
    take!(
        cka_linear,
        cka_linear_debiased,
        cca_mean_rho,
        cca_r2,
        cca_r2_uncentred,
        cca_rho,
        cca_rank,
        svcca,
        svcca_dims,
        pwcca,
        procrustes,
        procrustes_angular,
        one_to_one,
        semi_match,
        soft_match,
        soft_match_correlation,
        perm_procrustes,
        perm_procrustes_angular,
        predictivity_ab,
        predictivity_ba,
        predictivity_alpha,
        shape,
        shape_alpha,
        neurons
    );
    out.notes.extend(part.notes);
}

/// Replaces any non-finite number (only possible through overflow of extreme activations) by
/// `None`, with a note, so that the output never holds NaN or infinity.
fn drop_non_finite(out: &mut Measures) {
    let mut bad = Vec::new();
    let mut check = |name: &'static str, v: &mut Option<f64>| {
        if v.is_some_and(|x| !x.is_finite()) {
            *v = None;
            bad.push(name);
        }
    };
    check("cka_linear", &mut out.cka_linear);
    check("cka_linear_debiased", &mut out.cka_linear_debiased);
    check("cca_mean_rho", &mut out.cca_mean_rho);
    check("cca_r2", &mut out.cca_r2);
    check("cca_r2_uncentred", &mut out.cca_r2_uncentred);
    check("svcca", &mut out.svcca);
    check("pwcca", &mut out.pwcca);
    check("procrustes", &mut out.procrustes);
    check("procrustes_angular", &mut out.procrustes_angular);
    check("one_to_one", &mut out.one_to_one);
    check("semi_match", &mut out.semi_match);
    check("soft_match", &mut out.soft_match);
    check("soft_match_correlation", &mut out.soft_match_correlation);
    check("perm_procrustes", &mut out.perm_procrustes);
    check("perm_procrustes_angular", &mut out.perm_procrustes_angular);
    check("predictivity_ab", &mut out.predictivity_ab);
    check("predictivity_ba", &mut out.predictivity_ba);
    check("shape", &mut out.shape);
    if out
        .cca_rho
        .as_ref()
        .is_some_and(|r| r.iter().any(|x| !x.is_finite()))
    {
        out.cca_rho = None;
        bad.push("cca_rho");
    }
    for name in bad {
        out.notes.push(format!(
            "{name}: undefined, not finite (overflow in the statistics)"
        ));
    }
}

fn validate(stats: &JointStats) -> Result<(), CoreError> {
    if stats.n1 == 0 {
        return Err(CoreError::EmptyLayer('A'));
    }
    if stats.n2 == 0 {
        return Err(CoreError::EmptyLayer('B'));
    }
    let n = stats.n1 + stats.n2;
    let m = &stats.moments;
    let shapes_ok = stats.gram.nrows() == n
        && stats.gram.ncols() == n
        && stats.sums.len() == n
        && m.weighted_by_a.len() == n
        && m.weighted_by_b.len() == n;
    if !shapes_ok {
        // Only reachable with hand-built statistics.
        return Err(CoreError::BlockShape {
            got: stats.gram.nrows(),
            expected: n,
        });
    }
    if stats.rows == 0 {
        return Err(CoreError::NoRows);
    }
    stats.check_finite()
}

/// The centred covariance blocks and the uncentred traces shared by the measures.
pub(crate) struct Parts {
    /// `X̃ᵀX̃` (n1 x n1).
    pub cxx: Mat<f64>,
    /// `ỸᵀỸ` (n2 x n2).
    pub cyy: Mat<f64>,
    /// `X̃ᵀỸ` (n1 x n2).
    pub cxy: Mat<f64>,
    /// Trace of the uncentred `XᵀX`.
    pub gram_trace_a: f64,
    /// Trace of the uncentred `YᵀY`.
    pub gram_trace_b: f64,
    /// Number of neurons of A and of B.
    pub n1: usize,
    pub n2: usize,
    /// The library of the dense kernels (eigenproblems, Gram matrices, products).
    pub backend: linalg::Backend,
}

impl Parts {
    fn new(stats: &JointStats, backend: linalg::Backend) -> Self {
        let (n1, n2) = (stats.n1, stats.n2);
        let (a, b) = (0..n1, n1..n1 + n2);
        let trace = |r: std::ops::Range<usize>| r.map(|i| stats.gram[(i, i)]).sum::<f64>();
        Self {
            cxx: stats.centered_block(a.clone(), a.clone()),
            cyy: stats.centered_block(b.clone(), b.clone()),
            cxy: stats.centered_block(a, b),
            gram_trace_a: trace(0..n1),
            gram_trace_b: trace(n1..n1 + n2),
            n1,
            n2,
            backend,
        }
    }

    /// Trace of `X̃ᵀX̃` (the total variance of A times the row count), clamped at 0.
    pub fn trace_a(&self) -> f64 {
        trace(&self.cxx)
    }

    /// Trace of `ỸᵀỸ`, clamped at 0.
    pub fn trace_b(&self) -> f64 {
        trace(&self.cyy)
    }

    pub(crate) fn constant_a(&self) -> bool {
        is_constant(self.trace_a(), self.gram_trace_a)
    }

    pub(crate) fn constant_b(&self) -> bool {
        is_constant(self.trace_b(), self.gram_trace_b)
    }
}

fn trace(m: &Mat<f64>) -> f64 {
    (0..m.nrows()).map(|i| m[(i, i)]).sum::<f64>().max(0.0)
}

/// Whether a side with centred trace `centred` and uncentred trace `uncentred` has no variance
/// (see [`CONSTANT_TOL`]).
pub(crate) fn is_constant(centred: f64, uncentred: f64) -> bool {
    let has_variance = centred > CONSTANT_TOL * uncentred.max(0.0);
    !has_variance // also true when either trace is NaN
}

/// Squared Frobenius norm of `scale · m`.
pub(crate) fn frob2_scaled(m: &Mat<f64>, scale: f64) -> f64 {
    m.col_iter()
        .map(|c| c.iter().map(|v| (v * scale) * (v * scale)).sum::<f64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Every number of `m`, by its JSON path (lists flattened), for comparisons.
    fn numbers(m: &Measures) -> Vec<(String, f64)> {
        fn walk(path: String, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
            match v {
                serde_json::Value::Number(n) => out.push((path, n.as_f64().unwrap_or(f64::NAN))),
                serde_json::Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .for_each(|(i, x)| walk(format!("{path}[{i}]"), x, out)),
                serde_json::Value::Object(o) => o
                    .iter()
                    .for_each(|(k, x)| walk(format!("{path}.{k}"), x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(
            String::new(),
            &serde_json::to_value(m).expect("json"),
            &mut out,
        );
        out
    }

    #[test]
    fn openblas_and_faer_give_the_same_measures() {
        // ReLU layers sharing a subspace; B has a repeated neuron (rank deficiency) and a dead one.
        let (rows, n1, n2, dim) = (400, 37, 29, 12);
        let mut rng = SplitMix64::new(11);
        let lat: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
        let mix = |rng: &mut SplitMix64, n: usize| -> Vec<f64> {
            (0..dim * n).map(|_| rng.normal()).collect()
        };
        let (ma, mb) = (mix(&mut rng, n1), mix(&mut rng, n2));
        let layer = |rng: &mut SplitMix64, m: &[f64], n: usize| -> Vec<f64> {
            let mut out = vec![0.0; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let s: f64 = (0..dim).map(|k| lat[r * dim + k] * m[k * n + j]).sum();
                    out[r * n + j] = (s + 0.3 * rng.normal()).max(0.0);
                }
            }
            out
        };
        let x = layer(&mut rng, &ma, n1);
        let mut y = layer(&mut rng, &mb, n2);
        for r in 0..rows {
            y[r * n2 + 5] = y[r * n2 + 4];
            y[r * n2 + 7] = 0.0;
        }
        let stats = JointStats::from_matrices(&x, &y, n1, n2).expect("stats");
        let options = MeasureOptions::default();
        let mut results = Vec::new();
        for (name, backend) in crate::dense::all_backends() {
            let (m, _) =
                compute_impl(&stats, &Measure::ALL, &options, false, backend).expect("measures");
            results.push((name, numbers(&m), m));
        }
        let (_, reference, first) = &results[0];
        assert!(reference.len() > 20, "{reference:?}");
        assert!(first.cca_mean_rho.is_some() && first.shape.is_some() && first.pwcca.is_some());
        for (name, nums, m) in &results[1..] {
            assert_eq!(m.notes, first.notes, "{name}");
            assert_eq!(nums.len(), reference.len(), "{name}");
            for ((path, a), (_, b)) in nums.iter().zip(reference) {
                assert!(
                    (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                    "{name} {path}: {a} vs {b}"
                );
            }
        }
    }
}
