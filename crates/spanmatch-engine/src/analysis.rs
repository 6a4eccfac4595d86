//! The one analysis of a layer pair, shared by every front (`compare`, the Python bindings,
//! `reproduce`): statistics in (the pair's, per chunk of inputs for the bootstrap, and those of
//! the untrained baseline pair), [`Options`] in, one [`LayerRecord`] out.

use crate::fields::{self, Direction};
use crate::options::{NullKind, Options};
use crate::progress::Progress;
use crate::results::{
    Bounds, CenteredRecord, Comparison, ComparisonKind, IntervalsRecord, LayerMeasures,
    LayerRecord, MatchRecord, NullEps, NullMeasure, NullRecord, OneToOneInMatch, SimpleMatchRecord,
    SimpleRecord, UntrainedRecord,
};
use crate::verdict::verdict;
use anyhow::{bail, Context, Result};
use spanmatch_core::controls::{self, ChunkedStats};
use spanmatch_core::measures::{self, Measure, MeasureOptions, Measures};
use spanmatch_core::simple::simple_matches;
use spanmatch_core::{JointStats, MatchProblem, Peeler, Profile, RemovalOrder};
use std::ops::ControlFlow;

/// Step of the ε grid on which the ε-profile curve is sampled (reports and figures).
pub const PROFILE_GRID_STEP: f64 = 0.01;

/// Names and shapes of a layer pair, for its record.
#[derive(Debug, Clone, Default)]
pub struct LayerLabel {
    /// Layer name (net A's).
    pub name: String,
    /// Net B's layer name when it differs.
    pub name_b: Option<String>,
    /// Array shape of A as stored (empty when unknown).
    pub shape_a: Vec<u64>,
    /// Array shape of B.
    pub shape_b: Vec<u64>,
}

impl LayerLabel {
    /// A label with a name only.
    pub fn named(name: &str) -> LayerLabel {
        LayerLabel {
            name: name.to_string(),
            ..LayerLabel::default()
        }
    }
}

/// The statistics of the untrained baseline pair of a layer pair.
#[derive(Debug, Clone)]
pub struct BaselineInput {
    /// Its statistics over all inputs.
    pub stats: JointStats,
    /// Its per-chunk statistics, for the bootstrap.
    pub chunks: Option<ChunkedStats>,
}

/// Everything the analysis of one layer pair reads.
#[derive(Debug, Clone)]
pub struct PairInput {
    /// Names and shapes.
    pub label: LayerLabel,
    /// The pair's statistics over all inputs (for a chunked pair: the merged chunks).
    pub stats: JointStats,
    /// Its per-chunk statistics (consecutive chunks of the inputs), for the bootstrap.
    pub chunks: Option<ChunkedStats>,
    /// The untrained baseline pair, when given.
    pub baseline: Option<BaselineInput>,
}

impl PairInput {
    /// The input of a pair known by its statistics alone.
    pub fn new(label: LayerLabel, stats: JointStats) -> PairInput {
        PairInput {
            label,
            stats,
            chunks: None,
            baseline: None,
        }
    }

    /// The input of a pair known by its per-chunk statistics: their merge is the pair's.
    pub fn chunked(label: LayerLabel, chunks: Vec<JointStats>) -> Result<PairInput> {
        let name = label.name.clone();
        let chunks =
            ChunkedStats::new(chunks).map_err(|e| anyhow::anyhow!("layer '{name}': {e}"))?;
        Ok(PairInput {
            label,
            stats: chunks.merged(),
            chunks: Some(chunks),
            baseline: None,
        })
    }
}

/// The ε-profile curve (fraction of neurons matched) on the [`PROFILE_GRID_STEP`] grid.
pub fn profile_curve(profile: &Profile) -> Result<Vec<[f64; 2]>> {
    let steps = (1.0 / PROFILE_GRID_STEP).round() as usize;
    (0..=steps)
        .map(|k| {
            let e = (k as f64 * PROFILE_GRID_STEP).min(1.0);
            Ok([e, profile.mms(e)?])
        })
        .collect()
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

fn bounds(i: &controls::Interval) -> Option<Bounds> {
    (i.lo.is_finite() && i.hi.is_finite()).then_some(Bounds { lo: i.lo, hi: i.hi })
}

/// The options of the measures inside the controls (bootstrap resamples, rotations): those of
/// the analysis without the transport plan, which only the full data's record keeps.
fn control_measure_options(options: &Options) -> MeasureOptions {
    MeasureOptions {
        transport_plan: false,
        ..options.measure_options()
    }
}

/// Bootstrap intervals over the chunks: mms at every ε and every number of the requested
/// measures (a resample where a number is undefined counts as missing for it). Each resample's
/// profile factorises the neurons in the reverse of `order`, the full data's removal order
/// (the same profile, about half the time per resample: `MatchProblem::profile_ordered`).
fn intervals(
    chunks: &ChunkedStats,
    resamples: usize,
    options: &Options,
    order: &RemovalOrder,
) -> Result<IntervalsRecord> {
    let wanted = fields::fields_for(&options.measures);
    let measure_options = control_measure_options(options);
    let matching = options.matching()?;
    let eps = &options.eps;
    let iv = chunks
        .bootstrap(resamples, options.bootstrap_seed(), |s| {
            let mut v = controls::mms_at_ordered(s, eps, matching, order)?;
            if !wanted.is_empty() {
                let m = measures::compute_with(s, &options.measures, &measure_options).ok();
                v.extend(wanted.iter().map(|f| {
                    m.as_ref()
                        .and_then(|m| fields::value(m, f.name))
                        .unwrap_or(f64::NAN)
                }));
            }
            Ok(v)
        })
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    Ok(IntervalsRecord {
        level: iv.level,
        resamples: iv.resamples,
        chunks: iv.chunks,
        seed: iv.seed,
        mms: iv.outputs[..eps.len()].iter().map(bounds).collect(),
        measures: wanted
            .iter()
            .zip(&iv.outputs[eps.len()..])
            .filter_map(|(f, i)| Some((f.name.to_string(), bounds(i)?)))
            .collect(),
    })
}

/// The summary of one number over the rotations: `observed` against the draws' `values`
/// (`None` where undefined), with the p-value counting the draws at least as similar as the
/// observed value (≥ for a similarity, ≤ for a distance). `None` when the observed value or
/// every draw is undefined.
fn null_measure(
    observed: Option<f64>,
    values: Vec<Option<f64>>,
    direction: Direction,
) -> Option<NullMeasure> {
    let observed = observed?;
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    if defined.is_empty() {
        return None;
    }
    let n = defined.len();
    let as_similar = defined
        .iter()
        .filter(|&&v| match direction {
            Direction::Similarity => v >= observed,
            Direction::Distance => v <= observed,
        })
        .count();
    Some(NullMeasure {
        observed,
        mean: defined.iter().sum::<f64>() / n as f64,
        min: defined.iter().copied().fold(f64::INFINITY, f64::min),
        max: defined.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        p_value: (1 + as_similar) as f64 / (1 + n) as f64,
        values,
    })
}

/// The rotation null (docs/controls.md): net B's layer in `null_draws` Haar-random neuron
/// bases; per draw the mms at every ε and every requested measure number that changes with B's
/// basis ([`fields::depends_on_b_basis`]), all from the same rotated statistics.
/// `observed` holds the unrotated pair's measures.
fn rotation_null(
    joint: &JointStats,
    options: &Options,
    observed: Option<&Measures>,
) -> Result<NullRecord> {
    let matching = options.matching()?;
    let eps = &options.eps;
    let seed = options.null_seed();
    let draws = options.null_draws;
    let which: Vec<Measure> = options
        .measures
        .iter()
        .copied()
        .filter(|m| fields::depends_on_b_basis(*m, joint.n1, joint.n2))
        .collect();
    let wanted = fields::fields_for(&which);
    let measure_options = control_measure_options(options);
    let observed_mms = controls::mms_at(joint, eps, matching)?;
    let per_draw = controls::rotation_draws(joint, draws, seed, |r| {
        let mms = controls::mms_at(r, eps, matching)?;
        let values: Vec<Option<f64>> = if which.is_empty() {
            Vec::new()
        } else {
            let m = measures::compute_with(r, &which, &measure_options)?;
            wanted.iter().map(|f| fields::value(&m, f.name)).collect()
        };
        Ok((mms, values))
    })
    .map_err(|e| anyhow::anyhow!("rotation null: {e}"))?;
    let per_eps = eps
        .iter()
        .enumerate()
        .map(|(e, &epsilon)| {
            let values: Vec<f64> = per_draw.iter().map(|d| d.0[e]).collect();
            let obs = observed_mms[e];
            let exceed = values.iter().filter(|&&v| v >= obs).count();
            NullEps {
                eps: epsilon,
                observed: obs,
                mean: values.iter().sum::<f64>() / draws as f64,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                p_value: (1 + exceed) as f64 / (1 + draws) as f64,
                values,
            }
        })
        .collect();
    let measures = wanted
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let values = per_draw.iter().map(|d| d.1[i]).collect();
            let obs = observed.and_then(|m| fields::value(m, f.name));
            Some((f.name.to_string(), null_measure(obs, values, f.direction)?))
        })
        .collect();
    Ok(NullRecord {
        draws,
        seed,
        per_eps,
        measures,
    })
}

/// The one-to-one matching against the maximum match at the main ε (see
/// [`OneToOneInMatch`]), when the one-to-one pairs were computed.
pub fn one_to_one_in_match(
    matches: &[MatchRecord],
    measures: Option<&LayerMeasures>,
    options: &Options,
) -> Option<OneToOneInMatch> {
    let m = matches.get(options.main_index()?)?;
    let channels = &measures?.channels;
    let mean_correlation = channels.one_to_one?;
    let pairs = channels.neurons.as_ref()?.one_to_one.as_ref()?;
    let both = pairs
        .iter()
        .filter(|p| m.a.binary_search(&p.a).is_ok() && m.b.binary_search(&p.b).is_ok())
        .count();
    Some(OneToOneInMatch {
        eps: m.eps,
        match_neurons: m.a.len() + m.b.len(),
        partner_inside: 2 * both,
        mean_correlation,
    })
}

/// Analyses one layer pair: ε-profile, maximum match at each ε, thresholds, dead neurons,
/// measures, and what the options ask for: the centred match, the rotation null, bootstrap
/// intervals (needs `input.chunks`), simple matches (with their sines), the profile curve, and
/// with `input.baseline` the untrained pair's summary; then the verdict. The statistics are
/// consumed (the problem takes the Gram matrix over, so only one copy is alive).
pub fn analyse_pair(
    input: PairInput,
    options: &Options,
    progress: &mut dyn Progress,
) -> Result<LayerRecord> {
    let PairInput {
        label,
        stats,
        chunks,
        baseline,
    } = input;
    let name = label.name.clone();
    let record = analyse_stats(label, stats, chunks.as_ref(), options, progress)
        .with_context(|| format!("layer '{name}'"))?;
    let mut record = record;
    if let Some(b) = baseline {
        if (b.stats.n1, b.stats.n2, b.stats.rows)
            != (record.neurons_a, record.neurons_b, record.rows)
        {
            bail!(
                "layer '{name}': the untrained baseline pair has {} + {} neurons over {} rows, the \
                 trained pair {} + {} over {}; the baseline must be the same layers on the same inputs",
                b.stats.n1,
                b.stats.n2,
                b.stats.rows,
                record.neurons_a,
                record.neurons_b,
                record.rows
            );
        }
        let base = analyse_stats(
            LayerLabel::named(&name),
            b.stats,
            b.chunks.as_ref(),
            &options.for_baseline(),
            progress,
        )
        .with_context(|| format!("layer '{name}': untrained baseline"))?;
        attach_untrained(&mut record, &base);
    }
    update_verdict(&mut record, options);
    Ok(record)
}

/// [`analyse_pair`] without the baseline and the verdict.
fn analyse_stats(
    label: LayerLabel,
    joint: JointStats,
    chunks: Option<&ChunkedStats>,
    options: &Options,
    progress: &mut dyn Progress,
) -> Result<LayerRecord> {
    joint.check_finite()?;
    let matching = options.matching()?;
    let measures = if options.measures.is_empty() {
        None
    } else {
        Some(LayerMeasures {
            channels: measures::compute_with(&joint, &options.measures, &options.measure_options())
                .context("measures")?,
            ..LayerMeasures::default()
        })
    };
    let (n1, n2, rows) = (joint.n1, joint.n2, joint.rows);
    let null = match options.null {
        None => None,
        Some(NullKind::Rotate) => Some(rotation_null(
            &joint,
            options,
            measures.as_ref().map(|m| &m.channels),
        )?),
    };
    let centered = if options.center {
        let p = MatchProblem::from_stats(controls::centered(&joint), matching)
            .context("centred")?
            .profile();
        Some(CenteredRecord {
            thresholds_a: p.thresholds_a().to_vec(),
            thresholds_b: p.thresholds_b().to_vec(),
            max_epsilon: Some(p.max_epsilon()),
            matches: options
                .eps
                .iter()
                .map(|&e| p.max_match(e).map(MatchRecord::from))
                .collect::<Result<Vec<_>, _>>()?,
        })
    } else {
        None
    };
    let problem = MatchProblem::from_stats(joint, matching)?;
    let profile = problem.profile();
    let intervals = match (options.bootstrap, chunks) {
        (Some(resamples), Some(c)) => Some(intervals(
            c,
            resamples,
            options,
            &RemovalOrder::from_profile(&profile),
        )?),
        (Some(_), None) => bail!("bootstrap: needs the statistics of chunks of the inputs"),
        (None, _) => None,
    };
    let curve = if options.curve {
        profile_curve(&profile)?
    } else {
        Vec::new()
    };
    let simple = match options.simple_options() {
        None => None,
        Some(s) => {
            let r = simple_matches(&problem, &s, |done, total| {
                if progress.simple(done, total) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })
            .context("simple matches")?;
            if !r.complete {
                progress.warn(&format!(
                    "layer '{}': simple matches interrupted, partial result",
                    label.name
                ));
            }
            let matches = r
                .matches
                .into_iter()
                .map(|m| {
                    let sine = match_sine(&problem, &m.a, &m.b);
                    SimpleMatchRecord {
                        a: m.a,
                        b: m.b,
                        count: m.count,
                        sine,
                    }
                })
                .collect();
            Some(SimpleRecord::new(
                s.eps,
                r.exact_case,
                r.complete,
                r.orders,
                s.seed,
                matches,
            ))
        }
    };
    let matches = options
        .eps
        .iter()
        .map(|&e| profile.max_match(e).map(MatchRecord::from))
        .collect::<Result<Vec<_>, _>>()?;
    let one_to_one_in_match = one_to_one_in_match(&matches, measures.as_ref(), options);
    Ok(LayerRecord {
        name: label.name,
        name_b: label.name_b,
        neurons_a: n1,
        neurons_b: n2,
        rows,
        shape_a: label.shape_a,
        shape_b: label.shape_b,
        dead_a: problem.dead_a().to_vec(),
        dead_b: problem.dead_b().to_vec(),
        thresholds_a: profile.thresholds_a().to_vec(),
        thresholds_b: profile.thresholds_b().to_vec(),
        max_epsilon: profile.max_epsilon(),
        matches,
        profile: curve,
        measures,
        simple,
        centered,
        null,
        intervals,
        sampled: None,
        untrained: None,
        one_to_one_in_match,
        verdict: None,
        verdict_missing: Vec::new(),
        top_inputs: None,
        extra: Default::default(),
    })
}

/// Puts the summary of the untrained pair's record `base` (the same layer, analysed with the
/// same ε values) into `record`: its mms, max ε, measures (their numbers, without the
/// neuron-level output), centred mms, intervals, and the trained minus untrained mms at every ε
/// and value of every measure number defined for both.
pub fn attach_untrained(record: &mut LayerRecord, base: &LayerRecord) {
    let mms = base.mms();
    let measures = base.measures.clone().map(|mut m| {
        m.channels.neurons = None;
        m
    });
    let trained_minus_untrained_measures = match (&record.measures, &measures) {
        (Some(t), Some(u)) => fields::FIELDS
            .iter()
            .filter_map(|f| {
                let d = fields::value(&t.channels, f.name)? - fields::value(&u.channels, f.name)?;
                Some((f.name.to_string(), d))
            })
            .collect(),
        _ => Default::default(),
    };
    record.untrained = Some(UntrainedRecord {
        trained_minus_untrained: record
            .matches
            .iter()
            .zip(&mms)
            .map(|(m, u)| m.mms - u)
            .collect(),
        mms,
        max_epsilon: base.max_epsilon,
        measures,
        centered_mms: base
            .centered
            .as_ref()
            .map(|c| c.matches.iter().map(|m| m.mms).collect()),
        intervals: base.intervals.clone(),
        trained_minus_untrained_measures,
    });
}

/// Sets the record's verdict at the main ε of `options` (docs/controls.md), or, when the
/// untrained pair or the rotation null is missing, no verdict and the list of what is missing.
pub fn update_verdict(record: &mut LayerRecord, options: &Options) {
    record.verdict = None;
    record.verdict_missing.clear();
    let Some(main) = options.main_eps() else {
        return;
    };
    let Some(i) = record.matches.iter().position(|m| m.eps == main) else {
        return;
    };
    let m = record.matches[i].mms;
    let (lo, hi) = record
        .intervals
        .as_ref()
        .and_then(|iv| iv.mms.get(i).copied().flatten())
        .map_or((m, m), |b| (b.lo, b.hi));
    let u = record
        .untrained
        .as_ref()
        .and_then(|u| u.mms.get(i).copied());
    let r = record
        .null
        .as_ref()
        .and_then(|n| n.per_eps.get(i))
        .map(|n| n.max);
    if u.is_none() {
        record.verdict_missing.push("baseline".to_string());
    }
    if r.is_none() {
        record.verdict_missing.push("null".to_string());
    }
    if let (Some(u), Some(r)) = (u, r) {
        record.verdict = Some(verdict(m, lo, hi, u, r));
    }
}

/// Gives every layer of every trained pair the summary of the untrained pair of the same seeds
/// (same layer), and its verdict.
pub fn link_untrained(comparisons: &mut [Comparison], options: &Options) {
    let untrained: Vec<Comparison> = comparisons
        .iter()
        .filter(|c| c.kind == ComparisonKind::Untrained)
        .cloned()
        .collect();
    for c in comparisons
        .iter_mut()
        .filter(|c| c.kind == ComparisonKind::Pair)
    {
        let base = untrained.iter().find(|u| {
            (u.seed_a, u.seed_b) == (c.seed_a, c.seed_b)
                || (u.seed_a, u.seed_b) == (c.seed_b, c.seed_a)
        });
        for l in &mut c.layers {
            if let Some(b) = base.and_then(|u| u.layers.iter().find(|x| x.name == l.name)) {
                attach_untrained(l, b);
            }
            update_verdict(l, options);
        }
    }
}
