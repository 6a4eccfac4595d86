//! Basis-invariant similarity measures computed from the same statistics as the span match:
//! linear CKA (biased and debiased), CCA (mean ρ, R²), SVCCA, PWCCA and the orthogonal Procrustes
//! distance.
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
//! Every measure is a **similarity in [0, 1]** (1 = same representation up to the measure's
//! invariances) except the Procrustes numbers, which are **distances** (0 = same). See
//! `docs/measures.md` for the exact definitions.

mod cca;
mod cka;
pub mod flatten;
mod procrustes;

pub use cka::{centred_row_norms, CentredRowNorms};
pub use flatten::{FlattenedColumnAccumulator, FlattenedGramAccumulator, FlattenedKernels};

use crate::{CoreError, JointStats};
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

/// A similarity measure that can be requested in [`compute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl Measure {
    /// All measures, in the order of their names in [`Measure::NAMES`].
    pub const ALL: [Measure; 5] = [
        Measure::Cka,
        Measure::Cca,
        Measure::Svcca,
        Measure::Pwcca,
        Measure::Procrustes,
    ];

    /// The names accepted by [`FromStr`], in the order of [`Measure::ALL`].
    pub const NAMES: [&'static str; 5] = ["cka", "cca", "svcca", "pwcca", "procrustes"];

    /// The name of the measure (what [`FromStr`] accepts).
    pub fn name(self) -> &'static str {
        match self {
            Measure::Cka => "cka",
            Measure::Cca => "cca",
            Measure::Svcca => "svcca",
            Measure::Pwcca => "pwcca",
            Measure::Procrustes => "procrustes",
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
#[error("unknown measure '{name}'; valid measures are: cka, cca, svcca, pwcca, procrustes")]
pub struct ParseMeasureError {
    /// The name that was not recognised.
    pub name: String,
}

impl FromStr for Measure {
    type Err = ParseMeasureError;

    /// Parses a measure name (case-insensitive, surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
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
    /// Human-readable remarks: truncations applied, undefined measures and why.
    pub notes: Vec<String>,
}

/// Computes the requested measures (duplicates ignored, order irrelevant) from finished statistics.
///
/// Fails on an empty layer, no rows, non-finite statistics or statistics whose shapes disagree.
/// Degenerate but valid data (dead neurons, constant layers, rank deficiency, fewer rows than
/// features) never fail: the affected fields are finite values or `None`, with a note.
pub fn compute(stats: &JointStats, which: &[Measure]) -> Result<Measures, CoreError> {
    validate(stats)?;
    let want = |m: Measure| which.contains(&m);
    let mut out = Measures::default();
    if which.is_empty() {
        return Ok(out);
    }
    let parts = Parts::new(stats);
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

    if want(Measure::Cka) && defined {
        cka::fill(stats, &parts, &mut out);
    }
    if want(Measure::Cca) {
        // The uncentred R² is defined as long as neither side is all-zero.
        cca::fill_uncentred_r2(stats, &mut out);
    }
    let (c, pw, sv) = (
        want(Measure::Cca),
        want(Measure::Pwcca),
        want(Measure::Svcca),
    );
    if defined && (c || pw || sv) {
        cca::fill_cca_family(&parts, c, pw, sv, &mut out);
    }
    if want(Measure::Procrustes) && defined {
        procrustes::fill(&parts, &mut out);
    }
    drop_non_finite(&mut out);
    Ok(out)
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
}

impl Parts {
    fn new(stats: &JointStats) -> Self {
        let (n1, n2) = (stats.n1, stats.n2);
        let c = stats.centered_gram();
        let block = |r: usize, cc: usize, nr: usize, nc: usize| {
            Mat::from_fn(nr, nc, |i, j| c[(r + i, cc + j)])
        };
        let trace = |r: std::ops::Range<usize>| r.map(|i| stats.gram[(i, i)]).sum::<f64>();
        Self {
            cxx: block(0, 0, n1, n1),
            cyy: block(n1, n1, n2, n2),
            cxy: block(0, n1, n1, n2),
            gram_trace_a: trace(0..n1),
            gram_trace_b: trace(n1..n1 + n2),
            n1,
            n2,
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

    fn constant_a(&self) -> bool {
        is_constant(self.trace_a(), self.gram_trace_a)
    }

    fn constant_b(&self) -> bool {
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
