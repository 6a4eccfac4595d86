//! Everything `reproduce` reports about one layer pair (the [`LayerResult`] of results.json),
//! computed from its statistics alone.

use crate::results::{LayerResult, SimpleMatchIndices, SimpleSummary};
use anyhow::{Context, Result};
use spanmatch_core::measures::{self, Measure};
use spanmatch_core::simple::{simple_matches, SimpleOptions};
use spanmatch_core::{JointStats, MatchOptions, MatchProblem};
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
                |_, _| ControlFlow::Continue(()),
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
    })
}
