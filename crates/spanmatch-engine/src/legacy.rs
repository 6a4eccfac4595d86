//! Conversion of the unversioned results files written before schema version 3:
//!
//! * `compare --json` and Python's `Result.to_json` (top level `file_a`, `file_b`,
//!   `layers[].name`): one `pair` comparison; the simple matches' `simple_matches` become
//!   `matches`; everything else kept.
//! * `reproduce`'s results.json (top level `config`, `comparisons[].layers[].layer`): the kinds
//!   in lower case, each layer's `mms` list becomes `matches` (indices rebuilt from the
//!   thresholds ε*(v), exact: neuron v is in the maximum match at ε iff ε*(v) ≤ ε), the controls
//!   move to `intervals`, `null` (`p` → `p_value`, `observed` = the pair's mms) and `centered`
//!   (mms only); each trained pair gets the summary of its untrained pair and a verdict.
//!
//! What the old files did not store stays absent (e.g. the null's per-draw values) or empty
//! (index lists of the centred matches); `converted_from` says which format was read.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::analysis::{link_untrained, update_verdict};
use crate::options::{Dead, NullKind, Options};
use crate::results::{
    Comparison, ComparisonKind, Front, LayerRecord, LayerSummary, NetSummary, NeuronViews, Results,
    SimpleMatchRecord, SimpleRecord,
};
use spanmatch_core::measures::Measure;

/// Converts an unversioned results file (see the module docs).
pub fn convert(value: Value) -> Result<Results> {
    let Value::Object(obj) = value else {
        bail!("not a spanmatch results file: expected a JSON object");
    };
    let is_compare = obj.contains_key("file_a")
        && obj
            .get("layers")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().all(|x| x.get("name").is_some()));
    if is_compare {
        return compare(obj).context("converting a compare --json file (no schema_version)");
    }
    if obj.contains_key("comparisons") && obj.contains_key("config") {
        return reproduce(obj).context("converting a reproduce results.json (no schema_version)");
    }
    bail!(
        "not a spanmatch results file: no \"schema_version\", and neither the fields of an older \
         compare --json (file_a, layers) nor of an older reproduce results.json (config, comparisons)"
    )
}

fn f64s(v: Option<&Value>) -> Vec<f64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn dead_of(name: Option<&Value>) -> Dead {
    match name.and_then(Value::as_str) {
        Some("match") => Dead::Match,
        _ => Dead::Drop,
    }
}

/// The tolerance to record: `None` when it is the default.
fn tol_of(sine: Option<f64>) -> Option<f64> {
    sine.filter(|&s| s != spanmatch_core::Tolerances::default().sine)
}

fn header(front: Front, label_a: &str, label_b: &str, options: Options, from: &str) -> Results {
    let mut r = Results::new(front, label_a, label_b, &options);
    r.converted_from = Some(from.to_string());
    r
}

/// The measures of an old reproduce run, from the fields of its first layer's measures.
fn measures_of(obj: &Map<String, Value>) -> Vec<Measure> {
    let Some(m) = obj
        .get("comparisons")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("layers"))
        .and_then(|l| l.get(0))
        .and_then(|l| l.get("measures"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    [
        ("cka_linear", Measure::Cka),
        ("cca_mean_rho", Measure::Cca),
        ("svcca", Measure::Svcca),
        ("pwcca", Measure::Pwcca),
        ("procrustes", Measure::Procrustes),
    ]
    .into_iter()
    .filter(|(k, _)| m.contains_key(*k))
    .map(|(_, v)| v)
    .collect()
}

/// A simple-match block of an old compare --json (`simple_matches`) or reproduce file
/// (`matches`, with `count`, `size_histogram`, `largest`).
fn simple(v: &Value) -> Result<SimpleRecord> {
    let list = v
        .get("simple_matches")
        .or_else(|| v.get("matches"))
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let matches: Vec<SimpleMatchRecord> = serde_json::from_value(list).context("simple matches")?;
    let mut s = SimpleRecord::new(
        v.get("eps").and_then(Value::as_f64).unwrap_or(f64::NAN),
        v.get("exact_case")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        v.get("complete").and_then(Value::as_bool).unwrap_or(true),
        v.get("orders").and_then(Value::as_u64).unwrap_or(1) as usize,
        v.get("seed").and_then(Value::as_u64).unwrap_or(0),
        matches,
    );
    // Files that kept only the summary (before the indices were stored).
    if s.matches.is_empty() {
        if let Some(c) = v.get("count").and_then(Value::as_u64) {
            s.count = c as usize;
        }
        if let Some(l) = v.get("largest").and_then(Value::as_u64) {
            s.largest = l as usize;
        }
        if let Some(h) = v.get("size_histogram") {
            s.size_histogram = serde_json::from_value(h.clone()).unwrap_or_default();
        }
    }
    if !s.eps.is_finite() {
        bail!("simple matches without their ε");
    }
    Ok(s)
}

fn compare(mut obj: Map<String, Value>) -> Result<Results> {
    let eps = f64s(obj.get("eps"));
    let layers: Vec<Value> = match obj.remove("layers") {
        Some(Value::Array(l)) => l,
        _ => Vec::new(),
    };
    let first_with = |key: &str| layers.iter().find_map(|l| l.get(key).cloned());
    let mut options = Options {
        eps: eps.clone(),
        dead: dead_of(obj.get("dead_policy")),
        tol: tol_of(
            obj.get("tolerances")
                .and_then(|t| t.get("sine"))
                .and_then(Value::as_f64),
        ),
        measures: crate::options::parse_measures(
            &obj.get("measures")
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default(),
            "measures",
        )?,
        center: first_with("centered").is_some(),
        ..Options::default()
    };
    if let Some(n) = first_with("null") {
        options.null = Some(NullKind::Rotate);
        options.null_draws = n.get("draws").and_then(Value::as_u64).unwrap_or(0) as usize;
        options.null_seed = n.get("seed").and_then(Value::as_u64);
    }
    if let Some(iv) = first_with("intervals") {
        options.bootstrap = iv
            .get("resamples")
            .and_then(Value::as_u64)
            .map(|r| r as usize);
        options.chunks = iv.get("chunks").and_then(Value::as_u64).unwrap_or(20) as usize;
        options.bootstrap_seed = iv.get("seed").and_then(Value::as_u64);
    }
    if let Some(s) = first_with("simple") {
        options.simple = s.get("eps").and_then(Value::as_f64);
        options.orders = (s.get("orders").and_then(Value::as_u64).unwrap_or(1) as usize).max(1) - 1;
        options.simple_seed = s.get("seed").and_then(Value::as_u64);
    }
    let label_a = text(obj.get("file_a")).unwrap_or_else(|| "a".into());
    let label_b = text(obj.get("file_b")).unwrap_or_else(|| "b".into());
    let mut r = header(
        Front::CliCompare,
        &label_a,
        &label_b,
        options,
        "compare --json / Python to_json without schema_version",
    );
    r.spanmatch_version = text(obj.get("spanmatch_version")).unwrap_or_default();
    r.created = "unknown (converted)".to_string();
    r.settings = json!({
        "file_a": obj.get("file_a"),
        "file_b": obj.get("file_b"),
        "layout": obj.get("layout"),
        "view": obj.get("view"),
    });
    let mut records = Vec::new();
    for mut l in layers {
        let name = text(l.get("name")).unwrap_or_default();
        let simple_block = l.as_object_mut().and_then(|m| m.remove("simple"));
        if let Some(null) = l.get_mut("null").and_then(Value::as_object_mut) {
            null.remove("draw_seeds");
        }
        let mut rec: LayerRecord =
            serde_json::from_value(l).with_context(|| format!("layer '{name}'"))?;
        if let Some(s) = simple_block {
            rec.simple = Some(simple(&s).with_context(|| format!("layer '{name}'"))?);
        }
        update_verdict(&mut rec, &r.options);
        records.push(rec);
    }
    r.comparisons = vec![Comparison::new(ComparisonKind::Pair, records)];
    r.cross = obj.remove("cross");
    r.fill_layer_summaries();
    Ok(r)
}

/// Converts one layer of an old reproduce results.json.
fn reproduce_layer(l: &Value, eps: &[f64]) -> Result<LayerRecord> {
    let name = text(l.get("layer")).context("a layer without its name")?;
    let num = |k: &str| l.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thresholds = |k: &str| -> Vec<Option<f64>> {
        l.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (ta, tb) = (thresholds("thresholds_a"), thresholds("thresholds_b"));
    let (n1, n2) = (num("neurons_a") as usize, num("neurons_b") as usize);
    let mms = f64s(l.get("mms"));
    let exact = ta.len() == n1 && tb.len() == n2;
    let pick = |t: &[Option<f64>], e: f64| -> Vec<usize> {
        t.iter()
            .enumerate()
            .filter(|(_, th)| th.is_some_and(|th| th <= e))
            .map(|(i, _)| i)
            .collect()
    };
    let matches: Vec<Value> = eps
        .iter()
        .zip(&mms)
        .map(|(&e, &m)| {
            let (a, b) = if exact {
                (pick(&ta, e), pick(&tb, e))
            } else {
                (Vec::new(), Vec::new())
            };
            json!({"eps": e, "a": a, "b": b, "mms": m})
        })
        .collect();
    let mut rec = json!({
        "name": name,
        "neurons_a": n1,
        "neurons_b": n2,
        "rows": num("rows"),
        "dead_a": l.get("dead_a"),
        "dead_b": l.get("dead_b"),
        "thresholds_a": ta,
        "thresholds_b": tb,
        "max_epsilon": l.get("max_epsilon"),
        "matches": matches,
        "profile": l.get("profile").cloned().unwrap_or(json!([])),
    });
    if let Some(m) = l.get("measures").filter(|m| !m.is_null()) {
        rec["measures"] = m.clone();
    }
    if let Some(iv) = l.get("intervals") {
        rec["intervals"] = iv.clone();
    }
    if let Some(n) = l.get("rotation_null") {
        let per: Vec<Value> = n
            .get("per_eps")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        json!({
                            "eps": p.get("eps"),
                            "observed": mms.get(i),
                            "mean": p.get("mean"),
                            "min": p.get("min"),
                            "max": p.get("max"),
                            "p_value": p.get("p"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        rec["null"] = json!({"draws": n.get("draws"), "seed": n.get("seed"), "per_eps": per});
    }
    if let Some(c) = l.get("centered_mms") {
        let c = f64s(Some(c));
        rec["centered"] = json!({
            "matches": eps.iter().zip(&c).map(|(&e, &m)| json!({"eps": e, "a": [], "b": [], "mms": m})).collect::<Vec<_>>()
        });
    }
    let mut record: LayerRecord =
        serde_json::from_value(rec).with_context(|| format!("layer '{name}'"))?;
    if let Some(s) = l.get("simple") {
        record.simple = Some(simple(s).with_context(|| format!("layer '{name}'"))?);
    }
    Ok(record)
}

fn reproduce(mut obj: Map<String, Value>) -> Result<Results> {
    let eps = f64s(obj.get("eps"));
    let config = obj.remove("config").unwrap_or(Value::Null);
    let cfg = |k: &str| config.get(k);
    let mut options = Options {
        eps: eps.clone(),
        dead: dead_of(cfg("dead_policy")),
        tol: tol_of(cfg("sine_tolerance").and_then(Value::as_f64)),
        measures: measures_of(&obj),
        center: cfg("center").and_then(Value::as_bool).unwrap_or(false),
        seed: cfg("bootstrap_seed").and_then(Value::as_u64).unwrap_or(0),
        simple: cfg("simple_eps").and_then(Value::as_f64),
        top_inputs: cfg("top_inputs").and_then(Value::as_u64).unwrap_or(0) as usize,
        curve: true,
        ..Options::default()
    };
    if let Some(d) = cfg("null_draws").and_then(Value::as_u64).filter(|&d| d > 0) {
        options.null = Some(NullKind::Rotate);
        options.null_draws = d as usize;
    }
    if let Some(r) = cfg("bootstrap_resamples").and_then(Value::as_u64) {
        options.bootstrap = Some(r as usize);
        options.chunks = cfg("chunks").and_then(Value::as_u64).unwrap_or(20) as usize;
    }
    let mut r = header(
        Front::Reproduce,
        "net A",
        "net B",
        options,
        "reproduce results.json without schema_version",
    );
    r.spanmatch_version = text(obj.get("spanmatch_version")).unwrap_or_default();
    r.created = text(obj.get("created")).unwrap_or_default();
    let mut comparisons = Vec::new();
    for c in obj
        .get("comparisons")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let kind = match c.get("kind").and_then(Value::as_str) {
            Some("Pair") => ComparisonKind::Pair,
            Some("SelfCheck") => ComparisonKind::SelfCheck,
            Some("Null") => ComparisonKind::Null,
            Some("Untrained" | "untrained") => ComparisonKind::Untrained,
            other => bail!("comparison of unknown kind {other:?}"),
        };
        let layers = c
            .get("layers")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .map(|l| reproduce_layer(l, &eps))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        comparisons.push(Comparison {
            kind,
            label_a: None,
            label_b: None,
            seed_a: c.get("seed_a").and_then(Value::as_u64),
            seed_b: c.get("seed_b").and_then(Value::as_u64),
            layers,
        });
    }
    link_untrained(&mut comparisons, &r.options);
    r.comparisons = comparisons;
    r.layers =
        serde_json::from_value::<Vec<LayerSummary>>(obj.remove("layers").unwrap_or(json!([])))
            .context("layers")?;
    r.nets = serde_json::from_value::<Vec<NetSummary>>(obj.remove("nets").unwrap_or(json!([])))
        .context("nets")?;
    r.provenance.seeds.nets = r.nets.iter().map(|n| n.seed).collect();
    r.timings = obj.remove("timings");
    r.peak_memory_mb = obj.get("peak_memory_mb").and_then(Value::as_f64);
    r.neuron_views = match obj.remove("neuron_views") {
        Some(v) if !v.is_null() => {
            Some(serde_json::from_value::<NeuronViews>(v).context("neuron_views")?)
        }
        _ => None,
    };
    r.config = Some(config);
    Ok(r)
}
