//! Everything `reproduce` reports about one layer pair (the [`LayerResult`] of results.json),
//! computed from its statistics alone.

use crate::results::{
    Bounds, LayerControls, LayerIntervals, LayerResult, NullEps, RotationNullSummary,
    SimpleMatchIndices, SimpleSummary,
};
use anyhow::{Context, Result};
use spanmatch_core::controls::{self, ChunkedStats};
use spanmatch_core::measures::{self, Measure};
use spanmatch_core::simple::{simple_matches, SimpleOptions};
use spanmatch_core::{JointStats, MatchOptions, MatchProblem, Peeler};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::compare::PROFILE_GRID_STEP;

/// What to compute beyond the maximum match.
#[derive(Debug, Clone, Default)]
pub struct AnalysisOptions {
    /// Match options (tolerances, dead policy).
    pub matching: MatchOptions,
    /// Baseline measures.
    pub measures: Vec<Measure>,
    /// Simple matches at this ε, if any.
    pub simple_eps: Option<f64>,
}

/// Analyses one layer pair: ε-profile, mms at every ε, profile curve, dead neurons, each
/// neuron's threshold ε*(v), measures and optionally the simple matches (sizes and indices).
pub fn analyse(
    layer: &str,
    stats: &JointStats,
    eps: &[f64],
    opts: &AnalysisOptions,
) -> Result<LayerResult> {
    analyse_with_progress(layer, stats, eps, opts, &mut |_, _| {})
}

/// [`analyse`], reporting the simple-match search as `progress(neurons done, neurons total)`.
pub fn analyse_with_progress(
    layer: &str,
    stats: &JointStats,
    eps: &[f64],
    opts: &AnalysisOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LayerResult> {
    stats
        .check_finite()
        .with_context(|| format!("layer {layer}"))?;
    let problem =
        MatchProblem::new(stats, opts.matching).with_context(|| format!("layer {layer}"))?;
    let profile = problem.profile();
    let mms = eps
        .iter()
        .map(|&e| profile.mms(e))
        .collect::<Result<Vec<_>, _>>()?;
    let steps = (1.0 / PROFILE_GRID_STEP).round() as usize;
    let curve = (0..=steps)
        .map(|k| {
            let e = (k as f64 * PROFILE_GRID_STEP).min(1.0);
            profile.mms(e).map(|m| [e, m])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let measures = if opts.measures.is_empty() {
        None
    } else {
        let m = measures::compute(stats, &opts.measures)
            .with_context(|| format!("layer {layer}: measures"))?;
        Some(serde_json::to_value(m)?)
    };
    let simple = match opts.simple_eps {
        None => None,
        Some(e) => {
            let r = simple_matches(
                &problem,
                &SimpleOptions {
                    eps: e,
                    orders: 0,
                    seed: 0,
                },
                |done, total| {
                    progress(done, total);
                    ControlFlow::Continue(())
                },
            )?;
            let mut hist: BTreeMap<usize, usize> = BTreeMap::new();
            for m in &r.matches {
                *hist.entry(m.size()).or_default() += 1;
            }
            Some(SimpleSummary {
                eps: e,
                count: r.matches.len(),
                largest: r.matches.iter().map(|m| m.size()).max().unwrap_or(0),
                size_histogram: hist.into_iter().collect(),
                matches: r
                    .matches
                    .iter()
                    .map(|m| SimpleMatchIndices {
                        a: m.a.clone(),
                        b: m.b.clone(),
                        sine: match_sine(&problem, &m.a, &m.b),
                    })
                    .collect(),
            })
        }
    };
    Ok(LayerResult {
        layer: layer.to_string(),
        neurons_a: stats.n1,
        neurons_b: stats.n2,
        rows: stats.rows,
        dead_a: problem.dead_a().to_vec(),
        dead_b: problem.dead_b().to_vec(),
        max_epsilon: profile.max_epsilon(),
        thresholds_a: profile.thresholds_a().to_vec(),
        thresholds_b: profile.thresholds_b().to_vec(),
        mms,
        profile: curve,
        measures,
        simple,
        controls: LayerControls::default(),
    })
}

/// The largest sine between a live member of the match (`a`, `b`) and the span of the other
/// net's live members; `None` when a side has no live member.
pub fn match_sine(problem: &MatchProblem, a: &[usize], b: &[usize]) -> Option<f64> {
    let live = |ids: &[usize], dead: &[usize]| -> Vec<usize> {
        ids.iter()
            .copied()
            .filter(|i| dead.binary_search(i).is_err())
            .collect()
    };
    let (la, lb) = (live(a, problem.dead_a()), live(b, problem.dead_b()));
    if la.is_empty() || lb.is_empty() {
        return None;
    }
    Some(Peeler::new(problem, &la, &lb).max_sine())
}

/// Which statistical controls [`analyse_controls`] computes.
#[derive(Debug, Clone, Default)]
pub struct ControlOptions {
    /// Bootstrap over the chunks: `(resamples, seed)`; needs per-chunk statistics.
    pub bootstrap: Option<(usize, u64)>,
    /// Random rotations of the neuron-basis null (0: none).
    pub null_draws: usize,
    /// Seed of the rotations.
    pub null_seed: u64,
    /// Also the mms of the mean-centred activations.
    pub center: bool,
}

fn bounds(i: &controls::Interval) -> Option<Bounds> {
    (i.lo.is_finite() && i.hi.is_finite()).then_some(Bounds { lo: i.lo, hi: i.hi })
}

/// The statistical controls of one layer pair, from its statistics (`stats`, all inputs) and,
/// for the bootstrap, its per-chunk statistics (`chunked`, whose merge is `stats`):
///
/// * bootstrap percentile intervals (95 %) of mms at every ε and, when `opts.measures` has CKA,
///   of linear CKA (a resample where CKA is undefined counts as missing);
/// * the rotation null (`controls::rotation_null`) at every ε;
/// * the mms of the centred activations (`controls::centered`) at every ε.
pub fn analyse_controls(
    layer: &str,
    stats: &JointStats,
    chunked: Option<&ChunkedStats>,
    eps: &[f64],
    opts: &AnalysisOptions,
    c: &ControlOptions,
) -> Result<LayerControls> {
    let mut out = LayerControls::default();
    if let (Some((resamples, seed)), Some(chunks)) = (c.bootstrap, chunked) {
        let with_cka = opts.measures.contains(&Measure::Cka);
        let matching = opts.matching;
        let iv = chunks
            .bootstrap(resamples, seed, |s| {
                let mut v = controls::mms_at(s, eps, matching)?;
                if with_cka {
                    let cka = measures::compute(s, &[Measure::Cka])
                        .ok()
                        .and_then(|m| m.cka_linear)
                        .unwrap_or(f64::NAN);
                    v.push(cka);
                }
                Ok(v)
            })
            .with_context(|| format!("layer {layer}: bootstrap"))?;
        out.intervals = Some(LayerIntervals {
            level: iv.level,
            resamples: iv.resamples,
            chunks: iv.chunks,
            seed: iv.seed,
            mms: iv.outputs[..eps.len()].iter().map(bounds).collect(),
            cka_linear: if with_cka {
                bounds(&iv.outputs[eps.len()])
            } else {
                None
            },
        });
    }
    if c.null_draws > 0 && !eps.is_empty() {
        let null = controls::rotation_null(stats, c.null_draws, c.null_seed, eps, opts.matching)
            .with_context(|| format!("layer {layer}: rotation null"))?;
        out.rotation_null = Some(RotationNullSummary {
            draws: null.draws,
            seed: null.seed,
            per_eps: null
                .per_eps
                .iter()
                .map(|e| NullEps {
                    eps: e.eps,
                    mean: e.mean,
                    min: e.min,
                    max: e.max,
                    p: e.p_value,
                })
                .collect(),
        });
    }
    if c.center {
        out.centered_mms = Some(
            controls::mms_at(&controls::centered(stats), eps, opts.matching)
                .with_context(|| format!("layer {layer}: centred mms"))?,
        );
    }
    Ok(out)
}
