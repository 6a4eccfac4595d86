//! A synthetic but realistically shaped results object, for tests and for looking at the report.

use serde_json::json;

use crate::results::{
    Bounds, CenteredRecord, Comparison, ComparisonKind, Front, IntervalsRecord, LayerMeasures,
    LayerRecord, LayerSummary, MatchRecord, NetSummary, NullEps, NullRecord, Results, SimpleRecord,
};
use spanmatch_core::measures::Measures;
use spanmatch_engine::analysis::link_untrained;
use spanmatch_engine::options::{NullKind, Options};

/// Deterministic pseudo-random numbers in [0, 1) from a key (splitmix64).
fn noise(key: u64) -> f64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn key(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, p| {
        (h ^ p).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fraction of neurons matched at ε for a logistic profile centred at `c`, pinned to 0 at ε = 0
/// and reaching 1 at ε = min(c + 0.4, 1).
fn logistic_profile(eps: f64, c: f64) -> f64 {
    let w = 0.1;
    let f = |e: f64| 1.0 / (1.0 + (-(e - c) / w).exp());
    // Everything is matched a little after the centre (at ε = 1 at the latest).
    let (f0, f1) = (f(0.0), f((c + 0.4).min(1.0)));
    ((f(eps) - f0) / (f1 - f0)).clamp(0.0, 1.0)
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// A VGG-like run on CIFAR-10 (8 compared layers, seeds 0, 1, 2: three pairs, one self-check and
/// one shuffled-row null, five ε values), shaped like the paper's finding: high mms at the input
/// and output ends, low in the middle. Synthetic: not a measurement.
pub fn example_results() -> Results {
    let eps = vec![0.15, 0.2, 0.25, 0.3, 0.5];
    let seeds = [0u64, 1, 2];
    // (name, kind, neurons, spatial positions per image, similarity level q in [0, 1])
    let spec: [(&str, &str, usize, u64, f64); 8] = [
        ("conv1", "conv", 64, 32 * 32, 0.92),
        ("conv2", "conv", 128, 16 * 16, 0.62),
        ("conv3", "conv", 256, 8 * 8, 0.38),
        ("conv4", "conv", 256, 8 * 8, 0.22),
        ("conv5", "conv", 512, 4 * 4, 0.14),
        ("conv6", "conv", 512, 2 * 2, 0.2),
        ("fc1", "fc", 512, 1, 0.42),
        ("fc2", "fc", 512, 1, 0.74),
    ];
    let images = 10_000u64;
    let layers: Vec<LayerSummary> = spec
        .iter()
        .enumerate()
        .map(|(i, (name, kind, n, pos, _))| LayerSummary {
            name: name.to_string(),
            index: i,
            kind: kind.to_string(),
            neurons: *n,
            rows: images * pos,
        })
        .collect();

    let dead = |seed: u64, li: usize, n: usize| -> Vec<usize> {
        // A few dead units, more in the classifier.
        let rate = if spec[li].1 == "fc" { 0.03 } else { 0.004 };
        (0..n)
            .filter(|j| noise(key(&[7, seed, li as u64, *j as u64])) < rate)
            .collect()
    };

    let grid: Vec<f64> = (0..=100).map(|k| k as f64 / 100.0).collect();
    let layer_result = |li: usize, sa: u64, sb: u64, kind: ComparisonKind| -> LayerRecord {
        let (name, lkind, n, _, q) = spec[li];
        let k = key(&[sa, sb, li as u64, kind as u64]);
        let (centre, cka, cka_d) = match kind {
            ComparisonKind::Pair => {
                let c = 0.14 + 0.66 * (1.0 - q) + 0.04 * (noise(k) - 0.5);
                let cka = 0.5 + 0.47 * q + 0.03 * (noise(k ^ 1) - 0.5);
                (c, cka, cka - 0.04 - 0.03 * noise(k ^ 2))
            }
            ComparisonKind::Null => {
                let c = if lkind == "fc" { 0.8 } else { 0.9 } + 0.02 * noise(k);
                let cka = 0.02 + 0.03 * noise(k ^ 1);
                (c, cka, cka * 0.1)
            }
            ComparisonKind::Untrained => {
                // Random nets: close to the trained pairs at the input, further below deeper in.
                let c = 0.2 + 0.75 * (1.0 - q) + 0.04 * (noise(k) - 0.5);
                let cka = 0.45 + 0.4 * q + 0.03 * (noise(k ^ 1) - 0.5);
                (c, cka, cka - 0.05 - 0.03 * noise(k ^ 2))
            }
            ComparisonKind::SelfCheck => (0.0, 1.0, 1.0),
        };
        let frac = |e: f64| match kind {
            ComparisonKind::SelfCheck => 1.0,
            _ => logistic_profile(e, centre),
        };
        let profile: Vec<[f64; 2]> = grid.iter().map(|e| [*e, round4(frac(*e))]).collect();
        let mms: Vec<f64> = eps.iter().map(|e| round4(frac(*e))).collect();
        // The first ε of the profile at which every neuron is matched.
        let max_epsilon = match kind {
            ComparisonKind::SelfCheck => 0.0,
            _ => profile.iter().find(|p| p[1] >= 1.0).map_or(1.0, |p| p[0]),
        };
        let simple = (kind == ComparisonKind::Pair).then(|| {
            // Mostly 1+1 matches; larger ones rarer, more of them near the ends of the net.
            let total = (n as f64 * logistic_profile(0.25, centre) * 0.4).round() as usize + 1;
            let r = 0.25 + 0.3 * q;
            let mut size_histogram = Vec::new();
            let mut left = total;
            let mut size = 2;
            while left > 0 && size <= 24 {
                let c = ((left as f64) * (1.0 - r)).ceil() as usize;
                let c = c.min(left).max(1);
                size_histogram.push((size, c));
                left -= c;
                size += 1 + usize::from(noise(key(&[k, size as u64])) < 0.3);
            }
            let count = size_histogram.iter().map(|(_, c)| c).sum();
            let largest = size_histogram.last().map_or(0, |(s, _)| *s);
            SimpleRecord {
                eps: 0.25,
                exact_case: false,
                complete: true,
                orders: 1,
                seed: 0,
                count,
                size_histogram,
                largest,
                matches: Vec::new(),
            }
        });
        let (dead_a, dead_b) = (dead(sa, li, n), dead(sb, li, n));
        // Per-neuron thresholds ε*(v), spread below the full-match ε (dead neurons: none).
        let thresholds = |seed: u64, dead: &[usize]| -> Vec<Option<f64>> {
            (0..n)
                .map(|j| {
                    (!dead.contains(&j))
                        .then(|| round4(max_epsilon * noise(key(&[17, seed, li as u64, j as u64]))))
                })
                .collect()
        };
        // Controls of the trained pairs: bootstrap intervals around mms, a rotation null well
        // below it and a centred match a little below it.
        let pair = kind == ComparisonKind::Pair;
        let intervals = pair.then(|| IntervalsRecord {
            level: 0.95,
            resamples: 200,
            chunks: 20,
            seed: 0,
            mms: mms
                .iter()
                .map(|&m| {
                    Some(Bounds {
                        lo: round4((m - 0.03).max(0.0)),
                        hi: round4((m + 0.02).min(1.0)),
                    })
                })
                .collect(),
            cka_linear: Some(Bounds {
                lo: round4((cka - 0.02).max(0.0)),
                hi: round4((cka + 0.01).min(1.0)),
            }),
        });
        let null = pair.then(|| NullRecord {
            draws: 5,
            seed: 0,
            per_eps: eps
                .iter()
                .zip(&mms)
                .map(|(&e, &m)| NullEps {
                    eps: e,
                    observed: m,
                    mean: round4(0.3 * m),
                    min: round4(0.25 * m),
                    max: round4(0.35 * m),
                    p_value: round4(1.0 / 6.0),
                    values: Vec::new(),
                })
                .collect(),
        });
        let centered = (pair || kind == ComparisonKind::Untrained).then(|| CenteredRecord {
            thresholds_a: Vec::new(),
            thresholds_b: Vec::new(),
            max_epsilon: None,
            matches: eps
                .iter()
                .zip(&mms)
                .map(|(&e, &m)| MatchRecord {
                    eps: e,
                    a: Vec::new(),
                    b: Vec::new(),
                    mms: round4(0.9 * m),
                })
                .collect(),
        });
        LayerRecord {
            name: name.to_string(),
            name_b: None,
            neurons_a: n,
            neurons_b: n,
            rows: layers[li].rows,
            shape_a: Vec::new(),
            shape_b: Vec::new(),
            thresholds_a: thresholds(sa, &dead_a),
            thresholds_b: thresholds(sb ^ 0x5A, &dead_b),
            dead_a,
            dead_b,
            max_epsilon,
            matches: eps
                .iter()
                .zip(&mms)
                .map(|(&e, &m)| MatchRecord {
                    eps: e,
                    a: Vec::new(),
                    b: Vec::new(),
                    mms: m,
                })
                .collect(),
            profile,
            measures: Some(LayerMeasures {
                channels: Measures {
                    cka_linear: Some(round4(cka)),
                    cka_linear_debiased: Some(round4(cka_d)),
                    ..Measures::default()
                },
                ..LayerMeasures::default()
            }),
            simple,
            centered,
            null,
            intervals,
            sampled: None,
            untrained: None,
            verdict: None,
            verdict_missing: Vec::new(),
            top_inputs: None,
            extra: Default::default(),
        }
    };

    let comparison = |kind: ComparisonKind, a: u64, b: u64| Comparison {
        seed_a: Some(a),
        seed_b: Some(b),
        ..Comparison::new(
            kind,
            (0..spec.len())
                .map(|li| layer_result(li, a, b, kind))
                .collect(),
        )
    };

    let mut comparisons = Vec::new();
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            comparisons.push(comparison(ComparisonKind::Pair, *a, *b));
        }
    }
    comparisons.push(comparison(ComparisonKind::SelfCheck, 0, 0));
    comparisons.push(comparison(ComparisonKind::Null, 0, 0));
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            comparisons.push(comparison(ComparisonKind::Untrained, *a, *b));
        }
    }

    let nets = seeds
        .iter()
        .map(|s| NetSummary {
            seed: *s,
            test_accuracy: round4(0.918 + 0.01 * noise(key(&[11, *s]))),
            epochs: 160,
            train_seconds: (1840.0 + 120.0 * noise(key(&[13, *s]))).round(),
        })
        .collect();

    let options = Options {
        eps: eps.clone(),
        null: Some(NullKind::Rotate),
        null_draws: 5,
        bootstrap: Some(200),
        simple: Some(0.25),
        curve: true,
        ..Options::default()
    };
    link_untrained(&mut comparisons, &options);
    let mut r = Results::new(Front::Reproduce, "net A", "net B", &options);
    r.spanmatch_version = "0.1.0".to_string();
    r.created = "2026-01-01T00:00:00Z (synthetic example, not a measurement)".to_string();
    r.provenance.seeds.nets = seeds.to_vec();
    r.config = Some(json!({
        "dataset": "cifar10",
        "arch": "vgg11",
        "batch_norm": false,
        "width": 1.0,
        "epochs": 160,
        "seeds": seeds,
        "batch_size": 128,
        "lr": 0.1,
        "lr_milestones": [80, 120],
        "weight_decay": 5e-4,
        "dead_policy": "drop (reference)",
        "note": "synthetic example data",
    }));
    r.nets = nets;
    r.layers = layers;
    r.comparisons = comparisons;
    r.timings = Some(json!({
        "train_s": 5612.0,
        "extract_s": 84.2,
        "match_s": 311.7,
        "total_s": 6007.9,
    }));
    r.peak_memory_mb = Some(3712.5);
    r
}
