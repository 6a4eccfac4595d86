//! The controls of the measures (bootstrap intervals, rotation null, untrained baseline), the
//! one-to-one matching against the span match, the measure options and the tables, on planted
//! data with known answers: a layer and a permuted, rescaled, shifted copy of it.

use spanmatch_core::controls::{rotation_null, ChunkedStats};
use spanmatch_core::measures::{self, Measure, MeasureOptions};
use spanmatch_core::{GramAccumulator, JointStats};
use spanmatch_engine::analysis::{analyse_pair, BaselineInput, LayerLabel, PairInput};
use spanmatch_engine::options::{NullKind, Options};
use spanmatch_engine::results::{parse_results, Comparison, ComparisonKind, Front, Results};
use spanmatch_engine::{tables, LayerRecord, Quiet};

struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Rows of ReLU'd correlated activations (a shared factor gives every neuron a mean and
    /// the neurons different scales).
    fn relu_rows(&mut self, rows: usize, cols: usize) -> Vec<Vec<f64>> {
        let scale: Vec<f64> = (0..cols).map(|j| 0.5 + 0.25 * j as f64).collect();
        (0..rows)
            .map(|_| {
                let common = self.next();
                (0..cols)
                    .map(|j| (scale[j] * (self.next() + 0.5 * common) + 0.3).max(0.0))
                    .collect()
            })
            .collect()
    }
}

const ROWS: usize = 400;
const CHUNKS: usize = 10;
const N: usize = 6;
/// B's neuron j is A's neuron PERM[j].
const PERM: [usize; N] = [3, 0, 5, 1, 4, 2];

/// B = 3 · A[:, PERM] + 1: the same neurons up to order, a global scale and a shift.
fn permuted_copy(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|r| PERM.iter().map(|&p| 3.0 * r[p] + 1.0).collect())
        .collect()
}

/// Per-chunk statistics of `[A | B]`, chunk c holding rows `c·ROWS/CHUNKS ..`.
fn chunk_stats(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<JointStats> {
    let per = a.len() / CHUNKS;
    (0..CHUNKS)
        .map(|c| {
            let mut acc = GramAccumulator::new(a[0].len(), b[0].len());
            let block: Vec<f64> = (c * per..(c + 1) * per)
                .flat_map(|i| a[i].iter().chain(&b[i]).copied())
                .collect();
            acc.push_joint(&block).unwrap();
            acc.finish()
        })
        .collect()
}

fn controls_options() -> Options {
    Options {
        eps: vec![0.25, 0.5],
        measures: Measure::ALL.to_vec(),
        transport_plan: true,
        null: Some(NullKind::Rotate),
        null_draws: 8,
        null_seed: Some(5),
        bootstrap: Some(40),
        chunks: CHUNKS,
        seed: 11,
        ..Options::default()
    }
}

/// The planted pair (with its untrained baseline: independent layers) analysed with `options`.
fn planted(options: &Options) -> (LayerRecord, Vec<JointStats>) {
    let mut g = Normal(0x2545_F491_4F6C_DD1D);
    let a = g.relu_rows(ROWS, N);
    let b = permuted_copy(&a);
    let (a0, b0) = (g.relu_rows(ROWS, N), g.relu_rows(ROWS, N));
    let chunks = chunk_stats(&a, &b);
    let base = ChunkedStats::new(chunk_stats(&a0, &b0)).unwrap();
    let mut input = PairInput::chunked(LayerLabel::named("fc"), chunks.clone()).unwrap();
    input.baseline = Some(BaselineInput {
        stats: base.merged(),
        chunks: Some(base),
    });
    (analyse_pair(input, options, &mut Quiet).unwrap(), chunks)
}

fn close(x: f64, want: f64, tol: f64, what: &str) {
    assert!((x - want).abs() <= tol, "{what}: {x} vs {want}");
}

#[test]
fn a_permuted_copy_matches_one_to_one_and_its_controls_say_so() {
    let options = controls_options();
    let (r, chunks) = planted(&options);
    let m = &r.measures.as_ref().unwrap().channels;
    close(m.one_to_one.unwrap(), 1.0, 1e-12, "one_to_one");
    close(m.semi_match.unwrap(), 1.0, 1e-12, "semi_match");
    close(m.soft_match.unwrap(), 0.0, 1e-6, "soft_match");
    close(m.perm_procrustes.unwrap(), 0.0, 1e-6, "perm_procrustes");
    close(m.cka_linear.unwrap(), 1.0, 1e-12, "cka");
    let neurons = m.neurons.as_ref().unwrap();
    let pairs: Vec<(usize, usize)> = neurons
        .one_to_one
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.a, p.b))
        .collect();
    let mut want: Vec<(usize, usize)> = PERM.iter().enumerate().map(|(j, &p)| (p, j)).collect();
    want.sort_unstable();
    assert_eq!(pairs, want);
    assert!(
        neurons.soft_plan.is_some(),
        "transport_plan asks for the plan"
    );

    // The span match at the main ε holds every neuron, each with its partner.
    let o = r.one_to_one_in_match.as_ref().unwrap();
    assert_eq!(
        (o.eps, o.match_neurons, o.partner_inside),
        (0.5, 2 * N, 2 * N)
    );
    close(o.mean_correlation, 1.0, 1e-12, "mean correlation");

    // Rotation null: only the measures that depend on the neuron basis, from the rotations of
    // the mms null (the same numbers as the core's null).
    let null = r.null.as_ref().unwrap();
    let keys: Vec<&str> = null.measures.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "one_to_one",
            "perm_procrustes",
            "perm_procrustes_angular",
            "semi_match",
            "soft_match",
            "soft_match_correlation"
        ]
    );
    let merged = ChunkedStats::new(chunks.clone()).unwrap().merged();
    let core = rotation_null(&merged, 8, 5, &options.eps, options.matching().unwrap()).unwrap();
    for (e, c) in null.per_eps.iter().zip(&core.per_eps) {
        assert_eq!(
            (e.observed, &e.values, e.max),
            (c.observed, &c.values, c.max)
        );
    }
    let p_min = 1.0 / 9.0;
    for (name, similar) in [
        ("one_to_one", true),
        ("semi_match", true),
        ("soft_match", false),
        ("soft_match_correlation", true),
        ("perm_procrustes", false),
        ("perm_procrustes_angular", false),
    ] {
        let n = &null.measures[name];
        assert_eq!(n.values.len(), 8, "{name}");
        // Every rotation is less alike than the copy: the smallest p-value.
        assert_eq!(n.p_value, p_min, "{name}: {n:?}");
        if similar {
            assert!(n.max < n.observed - 1e-3, "{name}: {n:?}");
        } else {
            assert!(n.min > n.observed + 1e-3, "{name}: {n:?}");
        }
    }
    // PWCCA weights A's neurons on a tie (n1 = n2): a rotation of B leaves it unchanged, so it
    // has no null here (the narrower-B case is in `pwcca_gets_a_null_when_b_is_its_weighted_side`).
    // Draw k of the null is the core's rotation k: its one-to-one value equals a direct
    // computation on that rotation.
    let rotated = spanmatch_core::controls::rotate_b(&merged, core.draw_seeds[3]);
    let direct = measures::compute(&rotated, &[Measure::OneToOne]).unwrap();
    assert_eq!(null.measures["one_to_one"].values[3], direct.one_to_one);

    // Intervals: every number of every measure; the copy is perfect on every resample.
    let iv = r.intervals.as_ref().unwrap();
    for name in ["one_to_one", "semi_match", "cka_linear", "cca_mean_rho"] {
        let b = iv.measure(name).unwrap();
        close(b.lo, 1.0, 1e-10, name);
        close(b.hi, 1.0, 1e-10, name);
    }
    assert!(iv.measure("soft_match").unwrap().hi < 1e-6);
    assert!(iv.measure("shape").is_some() && iv.measure("predictivity_ab").is_some());
    assert_eq!(iv.measures.len(), 18);

    // Untrained baseline: independent layers; trained − untrained of every number.
    let u = r.untrained.as_ref().unwrap();
    let um = &u.measures.as_ref().unwrap().channels;
    assert!(um.neurons.is_none(), "the summary keeps numbers only");
    assert!(um.one_to_one.unwrap() < 0.5, "{um:?}");
    assert_eq!(
        u.trained_minus_untrained_measures["one_to_one"],
        m.one_to_one.unwrap() - um.one_to_one.unwrap()
    );
    assert_eq!(
        u.trained_minus_untrained_measures["soft_match"],
        m.soft_match.unwrap() - um.soft_match.unwrap()
    );
    assert!(u.trained_minus_untrained_measures["soft_match"] < -0.5);
    assert_eq!(u.trained_minus_untrained_measures.len(), 18);
    let ui = u.intervals.as_ref().unwrap();
    assert!(ui.measure("one_to_one").unwrap().hi < 0.6);
}

#[test]
fn measure_intervals_are_the_bootstrap_of_each_number() {
    // Every interval equals a bootstrap of that number alone with the same seed: the resample
    // values land in the right field (a shifted field would give another measure's interval).
    let mut g = Normal(99);
    let a = g.relu_rows(ROWS, N);
    let b: Vec<Vec<f64>> = g
        .relu_rows(ROWS, N)
        .iter()
        .zip(&a)
        .map(|(n, x)| n.iter().zip(x).map(|(u, v)| 0.5 * u + v).collect())
        .collect();
    let chunks = chunk_stats(&a, &b);
    let options = Options {
        measures: vec![Measure::Shape, Measure::Cka, Measure::OneToOne],
        shape_alpha: 0.25,
        bootstrap: Some(30),
        chunks: CHUNKS,
        seed: 4,
        ..Options::default()
    };
    let r = analyse_pair(
        PairInput::chunked(LayerLabel::named("l"), chunks.clone()).unwrap(),
        &options,
        &mut Quiet,
    )
    .unwrap();
    let iv = r.intervals.unwrap();
    let c = ChunkedStats::new(chunks).unwrap();
    let mopts = MeasureOptions {
        shape_alpha: 0.25,
        ..MeasureOptions::default()
    };
    for (name, measure) in [
        ("cka_linear", Measure::Cka),
        ("cka_linear_debiased", Measure::Cka),
        ("shape", Measure::Shape),
        ("one_to_one", Measure::OneToOne),
        ("semi_match", Measure::OneToOne),
    ] {
        let direct = c
            .bootstrap(30, 4, |s| {
                let m = measures::compute_with(s, &[measure], &mopts)?;
                Ok(vec![spanmatch_engine::fields::value(&m, name).unwrap()])
            })
            .unwrap();
        let b = iv.measure(name).unwrap();
        assert_eq!(
            (b.lo, b.hi),
            (direct.outputs[0].lo, direct.outputs[0].hi),
            "{name}"
        );
        assert!(b.lo < b.hi, "{name}: a real interval");
    }
    assert_eq!(iv.measures.len(), 5);
    // Without measures, intervals of mms only.
    let plain = Options {
        measures: vec![],
        ..options
    };
    let r = analyse_pair(
        PairInput::chunked(LayerLabel::named("l"), chunk_stats(&a, &b)).unwrap(),
        &plain,
        &mut Quiet,
    )
    .unwrap();
    assert!(r.intervals.unwrap().measures.is_empty());
}

#[test]
fn measure_options_reach_the_measures() {
    let mut g = Normal(5);
    let a = g.relu_rows(ROWS, N);
    let b: Vec<Vec<f64>> = g
        .relu_rows(ROWS, N)
        .iter()
        .zip(&a)
        .map(|(n, x)| n.iter().zip(x).map(|(u, v)| u + v).collect())
        .collect();
    let run = |o: Options| {
        let s = ChunkedStats::new(chunk_stats(&a, &b)).unwrap().merged();
        analyse_pair(PairInput::new(LayerLabel::named("l"), s), &o, &mut Quiet)
            .unwrap()
            .measures
            .unwrap()
            .channels
    };
    let base = Options {
        measures: vec![Measure::Shape, Measure::Procrustes, Measure::Predictivity],
        ..Options::default()
    };
    let one = run(Options {
        shape_alpha: 1.0,
        ..base.clone()
    });
    // α = 1 is the angular Procrustes distance.
    close(
        one.shape.unwrap(),
        one.procrustes_angular.unwrap(),
        1e-10,
        "α = 1",
    );
    assert_eq!(one.shape_alpha, Some(1.0));
    let zero = run(Options {
        shape_alpha: 0.0,
        ..base.clone()
    });
    assert!((zero.shape.unwrap() - one.shape.unwrap()).abs() > 1e-3);
    let ridge = run(Options {
        ridge_alpha: 10.0,
        ..base.clone()
    });
    let plain = run(base.clone());
    assert_eq!(ridge.predictivity_alpha, Some(10.0));
    assert!(ridge.predictivity_ab.unwrap() < plain.predictivity_ab.unwrap() - 1e-3);
    // The plan only when asked for.
    let with = |plan: bool| {
        run(Options {
            measures: vec![Measure::SoftMatch],
            transport_plan: plan,
            ..Options::default()
        })
        .neurons
        .unwrap()
        .soft_plan
        .is_some()
    };
    assert!(with(true) && !with(false));
}

#[test]
fn tables_show_the_one_to_one_columns_and_the_measure_controls() {
    let mut options = controls_options();
    options.measures = vec![Measure::Cka, Measure::OneToOne, Measure::SoftMatch];
    let (r, _) = planted(&options);
    let mut results = Results::new(Front::Python, "a", "b", &options);
    results.comparisons = vec![Comparison::new(ComparisonKind::Pair, vec![r])];
    // The schema round-trips every new field exactly (intervals' measures are flattened).
    let text = serde_json::to_string(&results).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let layer = &v["comparisons"][0]["layers"][0];
    assert!(
        layer["intervals"]["one_to_one"]["lo"].is_number(),
        "{layer}"
    );
    assert!(layer["null"]["measures"]["soft_match"]["p_value"].is_number());
    assert!(layer["untrained"]["trained_minus_untrained_measures"]["cka_linear"].is_number());
    assert_eq!(layer["one_to_one_in_match"]["partner_inside"], 12);
    assert_eq!(parse_results(&text).unwrap(), results);

    let t = tables::table(&results);
    assert!(t.contains("1:1 in match@0.5") && t.contains("12/12"), "{t}");
    let m = tables::measures_table(&results);
    assert!(
        m.contains("semi-match") && m.contains("soft match dist."),
        "{m}"
    );
    assert!(
        !m.contains("1:1 corr."),
        "one_to_one is in the match table: {m}"
    );
    let c = tables::measure_controls_table(&results);
    let row = |label: &str| {
        c.lines()
            .find(|l| l.starts_with("fc") && l.contains(label))
            .unwrap_or_else(|| panic!("no row {label}: {c}"))
            .to_string()
    };
    // CKA is rotation-invariant: no null; the copy's 1:1 correlation is 1 with p = 1/9.
    let cka: Vec<String> = row(" CKA ").split_whitespace().map(String::from).collect();
    assert_eq!(cka[cka.len() - 2..], ["—", "—"], "{c}");
    let one = row("1:1 corr.");
    assert!(
        one.contains("1.000") && one.contains("[1.000, 1.000]") && one.ends_with("0.111"),
        "{one}"
    );
    assert!(c.contains("rotation null mean/max"), "{c}");
    assert!(tables::tables(&results).contains(&c));
}

#[test]
fn pwcca_gets_a_null_when_b_is_its_weighted_side() {
    let mut g = Normal(17);
    let a = g.relu_rows(ROWS, N);
    // B: 4 mixtures of A's neurons plus noise (narrower than A: PWCCA weights B's neurons).
    let b: Vec<Vec<f64>> = a
        .iter()
        .map(|r| {
            (0..4)
                .map(|j| r[j] + 0.5 * r[j + 1] + 0.3 * g.next())
                .collect()
        })
        .collect();
    let run = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        let s = ChunkedStats::new(chunk_stats(a, b)).unwrap().merged();
        let o = Options {
            measures: vec![Measure::Pwcca, Measure::Cca],
            null: Some(NullKind::Rotate),
            null_draws: 6,
            ..Options::default()
        };
        analyse_pair(PairInput::new(LayerLabel::named("l"), s), &o, &mut Quiet).unwrap()
    };
    let r = run(&a, &b);
    let null = &r.null.as_ref().unwrap().measures;
    assert_eq!(null.keys().collect::<Vec<_>>(), ["pwcca"]);
    let n = &null["pwcca"];
    let spread = n.max - n.min;
    assert!(
        spread > 1e-4,
        "rotations of the weighted side move PWCCA: {n:?}"
    );
    // Swapped (B wider): A is weighted, a rotation of B leaves PWCCA as it is: no null.
    assert!(run(&b, &a).null.unwrap().measures.is_empty());
    let s = ChunkedStats::new(chunk_stats(&b, &a)).unwrap().merged();
    let pw = |s: &JointStats| {
        measures::compute(s, &[Measure::Pwcca])
            .unwrap()
            .pwcca
            .unwrap()
    };
    for seed in 0..3 {
        let rotated = spanmatch_core::controls::rotate_b(&s, seed);
        close(pw(&rotated), pw(&s), 1e-9, "PWCCA weighting A, B rotated");
    }
}
