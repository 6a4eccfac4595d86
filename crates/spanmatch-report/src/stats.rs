//! Aggregation of the raw comparisons into per-layer statistics for figures and tables.

use std::collections::BTreeMap;

use crate::results::{ComparisonKind, LayerRecord, Results};

/// Mean, sample standard deviation, min and max of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator; 0 for a single value).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summary of the finite values in `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Summary {
            n,
            mean,
            std,
            min,
            max,
        })
    }
}

/// Simple-match sizes of one layer, averaged over the pair comparisons that computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleAgg {
    /// ε of the simple matches (of the first comparison; others are assumed equal).
    pub eps: f64,
    /// Number of comparisons aggregated.
    pub n: usize,
    /// Mean number of simple matches.
    pub mean_count: f64,
    /// (size, mean number of simple matches of that size), ascending.
    pub hist: Vec<(usize, f64)>,
    /// Largest simple match over all comparisons.
    pub largest: usize,
}

/// Everything the report shows about one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    /// Layer name.
    pub name: String,
    /// Kind ("conv"/"fc"), or "?" when the layer is missing from `layers`.
    pub kind: String,
    /// Number of neurons.
    pub neurons: usize,
    /// Rows per activation vector.
    pub rows: u64,
    /// Mean number of dead neurons over the nets.
    pub dead: Option<f64>,
    /// mms over the pair comparisons, one per ε.
    pub mms: Vec<Option<Summary>>,
    /// mms of the null comparisons, one per ε.
    pub null: Vec<Option<Summary>>,
    /// mms of the untrained pairs (the same seeds' nets at initialisation), one per ε.
    pub untrained: Vec<Option<Summary>>,
    /// Trained minus untrained mms, one per ε: over the seed pairs present in both (each pair's
    /// difference), else the difference of the two means (then `n` = 1 and `std` = 0).
    pub trained_minus_untrained: Vec<Option<Summary>>,
    /// Linear CKA of the untrained pairs.
    pub cka_untrained: Option<Summary>,
    /// Whether every self-check reached mms 1 at every ε (None: no self-check).
    pub self_ok: Option<bool>,
    /// Linear CKA over the pair comparisons.
    pub cka: Option<Summary>,
    /// Linear CKA of the null comparisons.
    pub cka_null: Option<Summary>,
    /// max ε over the pair comparisons.
    pub max_epsilon: Option<Summary>,
    /// Mean profile over pairs on the grid ε = 0, 0.01, ..., 1 (empty when no profile).
    pub profile: Vec<(f64, f64)>,
    /// Simple-match sizes, when computed.
    pub simple: Option<SimpleAgg>,
    /// Bootstrap interval of mms over test images, one per ε: the envelope over the seed pairs
    /// (smallest lower end, largest upper end), when the results have intervals.
    pub mms_interval: Vec<Option<(f64, f64)>>,
    /// Neuron-basis (rotation) null of the seed pairs, one per ε: summary over pairs of each
    /// pair's mean over rotations.
    pub rotation_null: Vec<Option<Summary>>,
    /// mms of the mean-centred activations over the seed pairs, one per ε.
    pub centered: Vec<Option<Summary>>,
    /// The verdict at the main ε (docs/controls.md): the word when every pair that has one
    /// agrees, `"mixed (..)"` otherwise; `None` when no pair has one.
    pub verdict: Option<String>,
}

/// Per-layer statistics for the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The ε values.
    pub eps: Vec<f64>,
    /// Position of the main ε (that of the controls columns and the verdict) in `eps`.
    pub main: Option<usize>,
    /// Number of pair comparisons.
    pub pairs: usize,
    /// Number of null comparisons.
    pub nulls: usize,
    /// Number of self-checks.
    pub selfs: usize,
    /// Number of untrained-pair comparisons.
    pub untrained: usize,
    /// Layers in network order.
    pub layers: Vec<LayerStats>,
}

/// The layer names in network order: those of `results.layers` sorted by index, then any
/// layer that only appears in comparisons, in order of first appearance.
pub fn layer_order(results: &Results) -> Vec<String> {
    let mut listed: Vec<(usize, usize, &str)> = results
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.index, i, l.name.as_str()))
        .collect();
    listed.sort();
    let mut names: Vec<String> = Vec::new();
    for (_, _, n) in listed {
        if !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    }
    for c in &results.comparisons {
        for l in &c.layers {
            if !names.iter().any(|m| m == &l.name) {
                names.push(l.name.clone());
            }
        }
    }
    names
}

/// A layer record with the seeds of its comparison.
type Seeded<'a> = (Option<u64>, Option<u64>, &'a LayerRecord);

fn of_kind<'a>(
    results: &'a Results,
    kind: ComparisonKind,
    layer: &'a str,
) -> impl Iterator<Item = Seeded<'a>> + 'a {
    results
        .comparisons
        .iter()
        .filter(move |c| c.kind == kind)
        .flat_map(move |c| {
            c.layers
                .iter()
                .filter(move |l| l.name == layer)
                .map(move |l| (c.seed_a, c.seed_b, l))
        })
}

/// Linear interpolation of a profile at ε (profile sorted by ε; clamped at the ends).
pub fn profile_at(profile: &[[f64; 2]], eps: f64) -> Option<f64> {
    let p: Vec<[f64; 2]> = profile
        .iter()
        .copied()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .collect();
    let first = p.first()?;
    if eps <= first[0] {
        return Some(first[1]);
    }
    for w in p.windows(2) {
        let (a, b) = (w[0], w[1]);
        if eps <= b[0] {
            let span = b[0] - a[0];
            let t = if span > 0.0 { (eps - a[0]) / span } else { 1.0 };
            return Some(a[1] + t * (b[1] - a[1]));
        }
    }
    p.last().map(|l| l[1])
}

/// Aggregates `results` per layer.
pub fn compute(results: &Results) -> Stats {
    let count = |k| results.comparisons.iter().filter(|c| c.kind == k).count();
    let mut layers = Vec::new();
    for name in layer_order(results) {
        let summary = results.layers.iter().find(|l| l.name == name);
        let pairs: Vec<_> = of_kind(results, ComparisonKind::Pair, &name).collect();
        let nulls: Vec<_> = of_kind(results, ComparisonKind::Null, &name).collect();
        let selfs: Vec<_> = of_kind(results, ComparisonKind::SelfCheck, &name).collect();
        let untrained: Vec<_> = of_kind(results, ComparisonKind::Untrained, &name).collect();
        let any = pairs
            .first()
            .or(selfs.first())
            .or(nulls.first())
            .map(|p| p.2);

        let per_eps = |set: &[Seeded]| -> Vec<Option<Summary>> {
            (0..results.eps.len())
                .map(|i| {
                    let v: Vec<f64> = set.iter().filter_map(|(_, _, l)| l.mms_at(i)).collect();
                    Summary::of(&v)
                })
                .collect()
        };
        // The untrained baseline: the summaries the pairs carry, else (older files) the
        // untrained comparisons.
        let carried: Vec<_> = pairs
            .iter()
            .filter_map(|p| p.2.untrained.as_ref())
            .collect();

        let mms = per_eps(&pairs);
        let untrained_mms: Vec<Option<Summary>> = if carried.is_empty() {
            per_eps(&untrained)
        } else {
            (0..results.eps.len())
                .map(|i| {
                    Summary::of(
                        &carried
                            .iter()
                            .filter_map(|u| u.mms.get(i).copied())
                            .collect::<Vec<_>>(),
                    )
                })
                .collect()
        };
        let trained_minus_untrained: Vec<Option<Summary>> = (0..results.eps.len())
            .map(|i| {
                if !carried.is_empty() {
                    return Summary::of(
                        &carried
                            .iter()
                            .filter_map(|u| u.trained_minus_untrained.get(i).copied())
                            .collect::<Vec<_>>(),
                    );
                }
                // Paired by seeds when the same pair was compared trained and untrained.
                let diffs: Vec<f64> = pairs
                    .iter()
                    .filter_map(|(a, b, l)| {
                        let u = untrained
                            .iter()
                            .find(|(ua, ub, _)| (ua, ub) == (a, b) || (ua, ub) == (b, a))?;
                        Some(l.mms_at(i)? - u.2.mms_at(i)?)
                    })
                    .collect();
                if !diffs.is_empty() {
                    return Summary::of(&diffs);
                }
                match (
                    mms.get(i).copied().flatten(),
                    untrained_mms.get(i).copied().flatten(),
                ) {
                    (Some(t), Some(u)) => Summary::of(&[t.mean - u.mean]),
                    _ => None,
                }
            })
            .collect();

        // Dead neurons per net (seed), from any comparison that involves it.
        let mut dead: BTreeMap<u64, usize> = BTreeMap::new();
        for (a, b, l) in pairs.iter().chain(selfs.iter()).chain(nulls.iter()) {
            dead.entry(a.unwrap_or(0)).or_insert(l.dead_a.len());
            dead.entry(b.unwrap_or(1)).or_insert(l.dead_b.len());
        }
        let dead =
            (!dead.is_empty()).then(|| dead.values().sum::<usize>() as f64 / dead.len() as f64);

        let self_ok = (!selfs.is_empty()).then(|| {
            selfs.iter().all(|(_, _, l)| {
                l.matches.len() == results.eps.len()
                    && l.matches.iter().all(|m| (m.mms - 1.0).abs() <= 1e-6)
            })
        });

        let measure = |set: &[Seeded], key: &str| {
            let v: Vec<f64> = set.iter().filter_map(|(_, _, l)| l.measure(key)).collect();
            Summary::of(&v)
        };

        let profile = {
            let with: Vec<&LayerRecord> = pairs
                .iter()
                .map(|p| p.2)
                .filter(|l| !l.profile.is_empty())
                .collect();
            if with.is_empty() {
                Vec::new()
            } else {
                (0..=100)
                    .map(|k| {
                        let e = k as f64 / 100.0;
                        let v: Vec<f64> = with
                            .iter()
                            .filter_map(|l| profile_at(&l.profile, e))
                            .collect();
                        (e, Summary::of(&v).map_or(f64::NAN, |s| s.mean))
                    })
                    .collect()
            }
        };

        let simple = {
            let with: Vec<_> = pairs.iter().filter_map(|p| p.2.simple.as_ref()).collect();
            with.first().map(|first| {
                let n = with.len();
                let mut hist: BTreeMap<usize, usize> = BTreeMap::new();
                for s in &with {
                    for (size, c) in &s.size_histogram {
                        *hist.entry(*size).or_default() += c;
                    }
                }
                SimpleAgg {
                    eps: first.eps,
                    n,
                    mean_count: with.iter().map(|s| s.count).sum::<usize>() as f64 / n as f64,
                    hist: hist
                        .into_iter()
                        .map(|(s, c)| (s, c as f64 / n as f64))
                        .collect(),
                    largest: with.iter().map(|s| s.largest).max().unwrap_or(0),
                }
            })
        };

        let ne = results.eps.len();
        let mms_interval = (0..ne)
            .map(|i| {
                let b: Vec<(f64, f64)> = pairs
                    .iter()
                    .filter_map(|p| {
                        let b = (*p.2.intervals.as_ref()?.mms.get(i)?)?;
                        Some((b.lo, b.hi))
                    })
                    .collect();
                (!b.is_empty()).then(|| {
                    (
                        b.iter().map(|x| x.0).fold(f64::INFINITY, f64::min),
                        b.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max),
                    )
                })
            })
            .collect();
        let rotation_null = (0..ne)
            .map(|i| {
                let v: Vec<f64> = pairs
                    .iter()
                    .filter_map(|p| Some(p.2.null.as_ref()?.per_eps.get(i)?.mean))
                    .collect();
                Summary::of(&v)
            })
            .collect();
        let centered = (0..ne)
            .map(|i| {
                let v: Vec<f64> = pairs
                    .iter()
                    .filter_map(|p| Some(p.2.centered.as_ref()?.matches.get(i)?.mms))
                    .collect();
                Summary::of(&v)
            })
            .collect();
        let words: Vec<&str> = pairs
            .iter()
            .filter_map(|p| p.2.verdict.map(|v| v.word()))
            .collect();
        let verdict = words.first().map(|first| {
            if words.iter().all(|w| w == first) {
                first.to_string()
            } else {
                let mut w = words.clone();
                w.sort_unstable();
                w.dedup();
                format!("mixed ({})", w.join(", "))
            }
        });
        let cka_untrained = if carried.is_empty() {
            measure(&untrained, "cka_linear")
        } else {
            Summary::of(
                &carried
                    .iter()
                    .filter_map(|u| u.measures.as_ref()?.get("cka_linear"))
                    .collect::<Vec<_>>(),
            )
        };
        layers.push(LayerStats {
            verdict,
            mms_interval,
            rotation_null,
            centered,
            kind: summary.map_or_else(|| "?".to_string(), |s| s.kind.clone()),
            neurons: summary
                .map(|s| s.neurons)
                .or(any.map(|l| l.neurons_a))
                .unwrap_or(0),
            rows: summary.map(|s| s.rows).or(any.map(|l| l.rows)).unwrap_or(0),
            dead,
            mms,
            null: per_eps(&nulls),
            untrained: untrained_mms,
            trained_minus_untrained,
            cka_untrained,
            self_ok,
            cka: measure(&pairs, "cka_linear"),
            cka_null: measure(&nulls, "cka_linear"),
            max_epsilon: Summary::of(&pairs.iter().map(|p| p.2.max_epsilon).collect::<Vec<_>>()),
            profile,
            simple,
            name,
        });
    }
    Stats {
        eps: results.eps.clone(),
        main: results.options.main_index(),
        pairs: count(ComparisonKind::Pair),
        nulls: count(ComparisonKind::Null),
        selfs: count(ComparisonKind::SelfCheck),
        untrained: count(ComparisonKind::Untrained),
        layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_sample_std_and_skips_nan() {
        let s = Summary::of(&[1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 2.0).abs() < 1e-12);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 3.0));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn profile_interpolates_and_clamps() {
        let p = [[0.0, 0.0], [0.5, 0.2], [1.0, 1.0]];
        assert!((profile_at(&p, 0.25).unwrap() - 0.1).abs() < 1e-12);
        assert!((profile_at(&p, 0.75).unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(profile_at(&p, 2.0), Some(1.0));
        assert_eq!(profile_at(&p, -1.0), Some(0.0));
        assert_eq!(profile_at(&[], 0.5), None);
    }

    #[test]
    fn example_aggregates() {
        let r = crate::example_results();
        let s = compute(&r);
        assert_eq!(s.pairs, 3);
        assert_eq!(s.untrained, 3);
        assert_eq!(s.layers.len(), r.layers.len());
        for l in &s.layers {
            assert_eq!(l.self_ok, Some(true));
            let m = l.mms[0].unwrap();
            assert_eq!(m.n, 3);
            assert!(m.min <= m.mean && m.mean <= m.max);
            // mms grows with ε.
            let means: Vec<f64> = l.mms.iter().map(|m| m.unwrap().mean).collect();
            assert!(means.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{means:?}");
            // the null lies below the pairs
            assert!(l.null.last().unwrap().unwrap().mean < l.mms.last().unwrap().unwrap().mean);
            // trained minus untrained: paired over the 3 seed pairs, equal to the difference
            // of the means.
            for i in 0..s.eps.len() {
                let d = l.trained_minus_untrained[i].unwrap();
                assert_eq!(d.n, 3);
                let want = l.mms[i].unwrap().mean - l.untrained[i].unwrap().mean;
                assert!((d.mean - want).abs() < 1e-12, "{} vs {want}", d.mean);
            }
        }
    }
}
