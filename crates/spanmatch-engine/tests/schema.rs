//! The one results schema: files written before version 3 (committed fixtures, written by the
//! code of that time) convert with their numbers intact, version 3 round-trips exactly, other
//! versions fail naming the version; and the verdict comes out as each of its four words on
//! planted statistics.

use std::path::{Path, PathBuf};

use serde_json::Value;
use spanmatch_core::GramAccumulator;
use spanmatch_engine::analysis::{analyse_pair, BaselineInput, LayerLabel, PairInput};
use spanmatch_engine::options::{NullKind, Options};
use spanmatch_engine::results::{
    parse_results, read_results, write_results, ComparisonKind, Front, Results,
};
use spanmatch_engine::tables;
use spanmatch_engine::verdict::{verdict, Verdict};
use spanmatch_engine::Quiet;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn raw(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Write, read back, and compare: exact for every number.
fn round_trips(r: &Results) {
    let text = serde_json::to_string(r).unwrap();
    assert_eq!(&parse_results(&text).unwrap(), r);
    let dir = std::env::temp_dir().join(format!("spanmatch-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("r.json");
    write_results(r, &p).unwrap();
    assert_eq!(&read_results(&p).unwrap(), r);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn legacy_compare_json_converts_with_every_number() {
    let old = raw("legacy_compare.json");
    let r = read_results(&fixture("legacy_compare.json")).unwrap();
    assert_eq!(r.schema_version, 3);
    assert_eq!(r.front, Front::CliCompare);
    assert!(r
        .converted_from
        .as_deref()
        .unwrap()
        .contains("compare --json"));
    assert_eq!(
        (r.label_a.as_str(), r.label_b.as_str()),
        ("ex/net_a.npz", "ex/net_b.npz")
    );
    // The options are those of the command that wrote it.
    let o = &r.options;
    assert_eq!(o.eps, vec![0.15, 0.2, 0.25, 0.3, 0.5]);
    assert_eq!(o.null, Some(NullKind::Rotate));
    assert_eq!((o.null_draws, o.null_seed), (3, Some(2)));
    assert_eq!(
        (o.bootstrap, o.chunks, o.bootstrap_seed),
        (Some(10), 4, Some(2))
    );
    assert_eq!(
        (o.simple, o.orders, o.simple_seed),
        (Some(0.25), 0, Some(2))
    );
    assert!(o.center);
    assert_eq!(o.measure_list(), vec!["match", "cka", "cca"]);
    let records = &r.primary().unwrap().layers;
    let old_layers = old["layers"].as_array().unwrap();
    assert_eq!(records.len(), old_layers.len());
    for (rec, l) in records.iter().zip(old_layers) {
        assert_eq!(rec.name, l["name"].as_str().unwrap());
        assert_eq!(rec.max_epsilon, f(&l["max_epsilon"]));
        assert_eq!(serde_json::to_value(&rec.matches).unwrap(), l["matches"]);
        assert_eq!(
            serde_json::to_value(&rec.thresholds_a).unwrap(),
            l["thresholds_a"]
        );
        assert_eq!(
            serde_json::to_value(&rec.intervals).unwrap(),
            l["intervals"]
        );
        assert_eq!(serde_json::to_value(&rec.centered).unwrap(), l["centered"]);
        let mut null = l["null"].clone();
        null.as_object_mut().unwrap().remove("draw_seeds");
        assert_eq!(serde_json::to_value(&rec.null).unwrap(), null);
        assert_eq!(
            rec.measure("cka_linear").unwrap(),
            f(&l["measures"]["cka_linear"])
        );
        assert_eq!(
            rec.measure("cca_mean_rho").unwrap(),
            f(&l["measures"]["cca_mean_rho"])
        );
        let s = rec.simple.as_ref().unwrap();
        let old_s = &l["simple"];
        assert_eq!(s.eps, f(&old_s["eps"]));
        assert_eq!(s.exact_case, old_s["exact_case"].as_bool().unwrap());
        let old_m = old_s["simple_matches"].as_array().unwrap();
        assert_eq!(s.count, old_m.len());
        for (m, om) in s.matches.iter().zip(old_m) {
            assert_eq!(serde_json::to_value(&m.a).unwrap(), om["a"]);
            assert_eq!(serde_json::to_value(&m.b).unwrap(), om["b"]);
            assert_eq!(m.count as u64, om["count"].as_u64().unwrap());
        }
        // No baseline in the old file: no verdict, and the record says why.
        assert!(rec.verdict.is_none());
        assert_eq!(rec.verdict_missing, vec!["baseline"]);
    }
    assert_eq!(r.layers.len(), 3);
    assert_eq!(r.layers[0].kind, "conv");
    round_trips(&r);
}

#[test]
fn legacy_python_files_convert_and_keep_the_cross_block() {
    let r = read_results(&fixture("legacy_python.json")).unwrap();
    let old = raw("legacy_python.json");
    let recs = &r.primary().unwrap().layers;
    assert_eq!(recs.len(), 2);
    for (rec, l) in recs.iter().zip(old["layers"].as_array().unwrap()) {
        assert_eq!(serde_json::to_value(&rec.matches).unwrap(), l["matches"]);
        assert_eq!(
            serde_json::to_value(&rec.intervals).unwrap(),
            l["intervals"]
        );
    }
    round_trips(&r);
    let r = read_results(&fixture("legacy_torch_cross.json")).unwrap();
    let old = raw("legacy_torch_cross.json");
    assert_eq!(r.cross.as_ref().unwrap(), &old["cross"]);
    assert_eq!(r.label_a, old["file_a"].as_str().unwrap());
    round_trips(&r);
}

#[test]
fn legacy_reproduce_results_convert_with_indices_untrained_and_verdicts() {
    let old = raw("legacy_reproduce.json");
    let r = read_results(&fixture("legacy_reproduce.json")).unwrap();
    assert_eq!(r.front, Front::Reproduce);
    assert_eq!(r.options.null_draws, 2);
    assert_eq!((r.options.bootstrap, r.options.chunks), (Some(10), 4));
    assert!(r.options.center);
    assert_eq!(r.nets.len(), 2);
    assert_eq!(r.provenance.seeds.nets, vec![0, 1]);
    assert!(r.neuron_views.is_some());
    let kinds: Vec<&str> = r.comparisons.iter().map(|c| c.kind.name()).collect();
    assert_eq!(kinds, vec!["self", "self", "pair", "untrained", "null"]);
    let eps = &r.eps;
    let main = r.options.main_index().unwrap();
    assert_eq!(eps[main], 0.5);
    for (c, oc) in r
        .comparisons
        .iter()
        .zip(old["comparisons"].as_array().unwrap())
    {
        assert_eq!(c.seed_a, oc["seed_a"].as_u64());
        for (rec, l) in c.layers.iter().zip(oc["layers"].as_array().unwrap()) {
            assert_eq!(rec.name, l["layer"].as_str().unwrap());
            let old_mms: Vec<f64> = l["mms"].as_array().unwrap().iter().map(f).collect();
            assert_eq!(rec.mms(), old_mms);
            assert_eq!(rec.profile.len(), 101);
            // The indices rebuilt from the thresholds give the stored mms exactly.
            for m in &rec.matches {
                let n = (rec.neurons_a + rec.neurons_b) as f64;
                assert_eq!((m.a.len() + m.b.len()) as f64 / n, m.mms, "{}", rec.name);
            }
            if c.kind != ComparisonKind::Pair {
                continue;
            }
            let iv = rec.intervals.as_ref().unwrap();
            assert_eq!(serde_json::to_value(iv).unwrap(), l["intervals"]);
            let null = rec.null.as_ref().unwrap();
            for (p, op) in null
                .per_eps
                .iter()
                .zip(l["rotation_null"]["per_eps"].as_array().unwrap())
            {
                assert_eq!(
                    (p.mean, p.min, p.max, p.p_value),
                    (f(&op["mean"]), f(&op["min"]), f(&op["max"]), f(&op["p"]))
                );
            }
            let centred: Vec<f64> = rec
                .centered
                .as_ref()
                .unwrap()
                .matches
                .iter()
                .map(|m| m.mms)
                .collect();
            let old_c: Vec<f64> = l["centered_mms"]
                .as_array()
                .unwrap()
                .iter()
                .map(f)
                .collect();
            assert_eq!(centred, old_c);
            // The untrained pair of the same seeds, attached, and the verdict from the rule.
            let u = rec.untrained.as_ref().unwrap();
            let ul = r
                .comparisons
                .iter()
                .find(|x| x.kind == ComparisonKind::Untrained)
                .unwrap()
                .layers
                .iter()
                .find(|x| x.name == rec.name)
                .unwrap();
            assert_eq!(u.mms, ul.mms());
            let m = rec.matches[main].mms;
            let b = iv.mms[main].unwrap();
            let want = verdict(m, b.lo, b.hi, u.mms[main], null.per_eps[main].max);
            assert_eq!(rec.verdict, Some(want), "{}", rec.name);
        }
    }
    round_trips(&r);
    // The tables of a reproduce file show its first trained pair, with the verdict column.
    let t = tables::tables(&r);
    assert!(t.contains("verdict") && t.contains("untrained"), "{t}");
}

#[test]
fn other_versions_and_other_files_fail_naming_what_was_found() {
    let mut v =
        serde_json::to_value(read_results(&fixture("legacy_compare.json")).unwrap()).unwrap();
    v["schema_version"] = 4.into();
    let e = parse_results(&v.to_string()).unwrap_err();
    let m = format!("{e:#}");
    assert!(
        m.contains("schema_version 4 is not supported") && m.contains("schema_version 3"),
        "{m}"
    );
    v["schema_version"] = "three".into();
    assert!(format!("{:#}", parse_results(&v.to_string()).unwrap_err()).contains("\"three\""));
    let e = parse_results(r#"{"layers": [], "eps": []}"#).unwrap_err();
    assert!(format!("{e:#}").contains("no \"schema_version\""), "{e:#}");
}

// ---------------------------------------------------------------------------------------------
// The verdict on planted statistics

/// Deterministic standard normal values (xorshift + Box-Muller).
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

    fn matrix(&mut self, rows: usize, cols: usize) -> Vec<Vec<f64>> {
        (0..rows)
            .map(|_| (0..cols).map(|_| self.next()).collect())
            .collect()
    }
}

const ROWS: usize = 600;

/// Row-major `[A | B]` statistics of two layers given as rows.
fn stats(a: &[Vec<f64>], b: &[Vec<f64>]) -> spanmatch_core::JointStats {
    let (n1, n2) = (a[0].len(), b[0].len());
    let mut acc = GramAccumulator::new(n1, n2);
    let block: Vec<f64> = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().chain(y).copied())
        .collect();
    acc.push_joint(&block).unwrap();
    acc.finish()
}

/// `x · m` for rows x and a square matrix m.
fn mix(x: &[Vec<f64>], m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|r| {
            (0..m[0].len())
                .map(|j| r.iter().zip(m).map(|(v, row)| v * row[j]).sum())
                .collect()
        })
        .collect()
}

fn hstack(x: &[Vec<f64>], y: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .zip(y)
        .map(|(a, b)| a.iter().chain(b).copied().collect())
        .collect()
}

/// A pair of layers sharing `k` neurons one to one (B's copies reversed, with a little noise)
/// plus `p` private neurons each, B's three times as large: a rotation of B then puts about 90%
/// of every neuron's energy outside A's span.
fn one_to_one(g: &mut Normal, k: usize, p: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let z = g.matrix(ROWS, k);
    let zb: Vec<Vec<f64>> = z
        .iter()
        .map(|r| r.iter().rev().map(|v| v + 0.01 * g.next()).collect())
        .collect();
    let private_b: Vec<Vec<f64>> = g
        .matrix(ROWS, p)
        .into_iter()
        .map(|r| r.into_iter().map(|v| 3.0 * v).collect())
        .collect();
    (hstack(&z, &g.matrix(ROWS, p)), hstack(&zb, &private_b))
}

fn verdict_of(
    trained: (Vec<Vec<f64>>, Vec<Vec<f64>>),
    untrained: (Vec<Vec<f64>>, Vec<Vec<f64>>),
    options: &Options,
) -> (Option<Verdict>, f64, f64, f64) {
    let input = PairInput {
        label: LayerLabel::named("l"),
        stats: stats(&trained.0, &trained.1),
        chunks: None,
        baseline: Some(BaselineInput {
            stats: stats(&untrained.0, &untrained.1),
            chunks: None,
        }),
    };
    let r = analyse_pair(input, options, &mut Quiet).unwrap();
    let k = options.main_index().unwrap();
    (
        r.verdict,
        r.matches[k].mms,
        r.untrained.as_ref().unwrap().mms[k],
        r.null.as_ref().unwrap().per_eps[k].max,
    )
}

#[test]
fn the_verdict_is_each_word_on_its_planted_case() {
    let options = Options {
        eps: vec![0.25, 0.5],
        null: Some(NullKind::Rotate),
        null_draws: 8,
        seed: 3,
        ..Options::default()
    };
    let mut g = Normal(0x9E37_79B9_7F4A_7C15);
    let independent = |g: &mut Normal, n: usize| (g.matrix(ROWS, n), g.matrix(ROWS, n));

    // learned: a shared one-to-one neuron code, untrained nets independent; a rotation of B
    // mixes its private neurons into every neuron, so the null stays far below.
    let (v, m, u, r) = verdict_of(one_to_one(&mut g, 6, 6), independent(&mut g, 12), &options);
    assert_eq!(v, Some(Verdict::Learned), "m {m} u {u} r {r}");
    assert!((m - 0.5).abs() < 1e-12 && u < 0.05 && r < m);

    // given: the untrained nets already share the same code (a shared input statistic).
    let (v, m, u, _) = verdict_of(one_to_one(&mut g, 6, 6), one_to_one(&mut g, 6, 6), &options);
    assert_eq!(v, Some(Verdict::Given), "m {m} u {u}");

    // subspace-only: both layers span the same subspace in unrelated bases; any rotation of B
    // spans it too.
    let z = g.matrix(ROWS, 8);
    let (wa, wb) = (g.matrix(8, 8), g.matrix(8, 8));
    let (v, m, u, r) = verdict_of(
        (mix(&z, &wa), mix(&z, &wb)),
        independent(&mut g, 8),
        &options,
    );
    assert_eq!(v, Some(Verdict::SubspaceOnly), "m {m} u {u} r {r}");
    assert!((m - 1.0).abs() < 1e-12 && (r - 1.0).abs() < 1e-12);

    // none: independent trained layers.
    let (v, m, _, _) = verdict_of(independent(&mut g, 8), independent(&mut g, 8), &options);
    assert_eq!(v, Some(Verdict::None), "m {m}");
    assert!(m < 0.05);
}

#[test]
fn the_verdict_says_which_control_is_missing() {
    let mut g = Normal(7);
    let (a, b) = one_to_one(&mut g, 4, 4);
    let plain = Options {
        eps: vec![0.5],
        ..Options::default()
    };
    let r = analyse_pair(
        PairInput::new(LayerLabel::named("l"), stats(&a, &b)),
        &plain,
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(
        (r.verdict, r.verdict_missing.clone()),
        (None, vec!["baseline".to_string(), "null".to_string()])
    );
    let with_null = Options {
        null: Some(NullKind::Rotate),
        null_draws: 2,
        ..plain.clone()
    };
    let r = analyse_pair(
        PairInput::new(LayerLabel::named("l"), stats(&a, &b)),
        &with_null,
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(r.verdict_missing, vec!["baseline"]);
    // A baseline of other neurons is an error that says so.
    let (a0, b0) = (g.matrix(ROWS, 8), g.matrix(ROWS, 9));
    let e = analyse_pair(
        PairInput {
            baseline: Some(BaselineInput {
                stats: stats(&a0, &b0),
                chunks: None,
            }),
            ..PairInput::new(LayerLabel::named("l"), stats(&a, &b))
        },
        &with_null,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("untrained baseline pair has 8 + 9 neurons"),
        "{e:#}"
    );
    // The controls table shows only what was computed.
    let mut res = Results::new(Front::Python, "a", "b", &with_null);
    res.comparisons = vec![spanmatch_engine::results::Comparison::new(
        ComparisonKind::Pair,
        vec![r],
    )];
    let t = tables::controls_table(&res);
    assert!(t.contains("centred") && t.contains("rotation null"), "{t}");
    assert!(!t.contains("untrained") || t.contains("needs both"), "{t}");
    assert!(!t.contains("95% interval"), "{t}");
}
