//! End to end: `spanmatch reproduce` on a tiny generated Fashion-MNIST-format dataset.

use std::path::Path;
use std::process::Command;

use spanmatch_train::train::{evaluate, initial_net, load_checkpoint, state_digest};

/// Writes an IDX file (big-endian header, u8 payload).
fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Images whose class decides where a bright bar sits, plus deterministic noise.
fn make_split(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 10) as u8;
        labels.push(class);
        for y in 0..28 {
            for x in 0..28 {
                let bar = (x / 3) as u8 == class || (y / 3) as u8 == (class + 3) % 10;
                let noise = (next() % 60) as u8;
                images.push(if bar { 180 + noise } else { noise });
            }
        }
    }
    write_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte")),
        &[n as u32, 28, 28],
        &images,
    );
    write_idx(
        &dir.join(format!("{prefix}-labels-idx1-ubyte")),
        &[n as u32],
        &labels,
    );
}

#[test]
fn tiny_reproduce_run_has_every_layer_pair_and_sane_controls() {
    let tmp = std::env::temp_dir().join(format!("spanmatch-reproduce-{}", std::process::id()));
    let data = tmp.join("data");
    let out = tmp.join("out");
    std::fs::create_dir_all(&data).unwrap();
    make_split(&data, "train", 300, 1);
    make_split(&data, "t10k", 120, 2);
    let status = Command::new(env!("CARGO_BIN_EXE_spanmatch"))
        .args([
            "reproduce",
            "--arch",
            "vgg11_bn",
            "--width",
            "0.0625",
            "--hidden",
            "16,16",
        ])
        .args(["--epochs", "1", "--seeds", "0,1,2", "--simple", "0.5"])
        .args(["--measures", "cka,cca"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run spanmatch");
    assert!(
        status.status.success(),
        "reproduce failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let eps: Vec<f64> = r["eps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(eps, vec![0.15, 0.2, 0.25, 0.3, 0.5]);
    let layers: Vec<String> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    // VGG-11: 8 conv ReLUs and 2 classifier ReLUs.
    assert_eq!(layers.len(), 10, "{layers:?}");
    assert_eq!(r["nets"].as_array().unwrap().len(), 3);
    let comps = r["comparisons"].as_array().unwrap();
    let mut pairs = Vec::new();
    let mut untrained = Vec::new();
    let (mut selfs, mut nulls) = (0, Vec::new());
    for c in comps {
        let ls = c["layers"].as_array().unwrap();
        let names: Vec<&str> = ls.iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names, layers.iter().map(String::as_str).collect::<Vec<_>>());
        for l in ls {
            let mms = mms_of(l);
            assert!(
                mms.windows(2).all(|w| w[0] <= w[1]),
                "mms not monotone in ε: {mms:?}"
            );
            let curve = l["profile"].as_array().unwrap();
            let ys: Vec<f64> = curve.iter().map(|p| p[1].as_f64().unwrap()).collect();
            assert!(ys.windows(2).all(|w| w[0] <= w[1]), "profile not monotone");
            let live = 1.0
                - (l["dead_a"].as_array().unwrap().len() + l["dead_b"].as_array().unwrap().len())
                    as f64
                    / (l["neurons_a"].as_u64().unwrap() + l["neurons_b"].as_u64().unwrap()) as f64;
            // At ε = 1 every live neuron matches; the self-check counts dead neurons as matched.
            let want = if c["kind"] == "self" { 1.0 } else { live };
            let last = *ys.last().unwrap();
            assert!(
                (last - want).abs() < 1e-12,
                "profile at ε = 1: {last}, expected {want}"
            );
            check_per_neuron(c, l, &eps);
        }
        match c["kind"].as_str().unwrap() {
            "self" => {
                selfs += 1;
                for l in ls {
                    for v in mms_of(l) {
                        assert_eq!(v, 1.0, "self-check below 1 in {}", l["name"]);
                    }
                }
            }
            "null" => {
                for l in ls {
                    nulls.push(l["matches"][4]["mms"].as_f64().unwrap());
                }
            }
            "pair" => {
                pairs.push((c["seed_a"].as_u64().unwrap(), c["seed_b"].as_u64().unwrap()));
                // Each trained pair carries its untrained pair's summary and a verdict (the
                // default run has the rotation null), at ε = 0.5.
                let u = comps
                    .iter()
                    .find(|x| {
                        x["kind"] == "untrained"
                            && x["seed_a"] == c["seed_a"]
                            && x["seed_b"] == c["seed_b"]
                    })
                    .expect("the untrained pair of the same seeds");
                for (l, ul) in ls.iter().zip(u["layers"].as_array().unwrap()) {
                    let summary = &l["untrained"];
                    assert_eq!(
                        mms_of(ul),
                        summary["mms"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_f64().unwrap())
                            .collect::<Vec<_>>()
                    );
                    for (i, d) in summary["trained_minus_untrained"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                    {
                        assert!(
                            (d.as_f64().unwrap() - (mms_of(l)[i] - mms_of(ul)[i])).abs() < 1e-15
                        );
                    }
                    assert!(ul["intervals"]["mms"].is_array(), "untrained intervals");
                    let v = l["verdict"].as_str().expect("a verdict");
                    assert!(
                        ["learned", "given", "subspace-only", "none"].contains(&v),
                        "{v}"
                    );
                }
            }
            "untrained" => {
                untrained.push((c["seed_a"].as_u64().unwrap(), c["seed_b"].as_u64().unwrap()))
            }
            k => panic!("unknown comparison kind {k}"),
        }
    }
    pairs.sort();
    assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 2)]);
    // The untrained baseline: the same seed pairs, each net re-created from its seed and
    // verified bitwise (by digest) against the net its training started from.
    untrained.sort();
    assert_eq!(untrained, pairs);
    let how = r["config"]["untrained"].as_str().unwrap();
    assert!(how.contains("3 of 3"), "{how}");
    for seed in 0..3u64 {
        let tn = load_checkpoint(&out.join("checkpoints").join(format!("seed-{seed}"))).unwrap();
        let init = initial_net(&tn.config).unwrap();
        assert_eq!(tn.init_digest, Some(state_digest(&init).unwrap()));
        assert_ne!(state_digest(&tn.net).unwrap(), state_digest(&init).unwrap());
    }
    // One forward pass per net: the accuracies come from the extraction pass and equal what a
    // separate evaluation pass gives, exactly.
    let test = spanmatch_train::data::load(
        spanmatch_train::DatasetKind::FashionMnist,
        spanmatch_train::Split::Test,
        &spanmatch_train::DataOptions {
            data_dir: Some(data.clone()),
            allow_download: false,
        },
    )
    .unwrap();
    for (i, net) in r["nets"].as_array().unwrap().iter().enumerate() {
        let seed = net["seed"].as_u64().unwrap();
        assert_eq!(seed, i as u64);
        let tn = load_checkpoint(&out.join("checkpoints").join(format!("seed-{seed}"))).unwrap();
        let want = evaluate(&tn.net, &test, 200).unwrap().accuracy;
        assert_eq!(net["test_accuracy"].as_f64().unwrap(), want, "seed {seed}");
    }
    assert_eq!(
        r["config"]["untrained_test_accuracy"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(selfs, 3);
    let null_mean = nulls.iter().sum::<f64>() / nulls.len() as f64;
    assert!(
        null_mean < 0.5,
        "null mms at ε = 0.5 should be far below the self-check's 1, got {null_mean}"
    );
    // Baseline measures and simple matches are in the JSON.
    let first = &comps[0]["layers"][0];
    assert!(first["measures"]["cka_linear"].as_f64().is_some());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "one SVG per figure (mms, profiles, simple sizes)"
    );
    for name in &layers {
        assert!(html.contains(name.as_str()));
    }
    assert!(html.contains("trained minus untrained mms"));
    assert!(html.contains("untrained nets (same seeds)"));
    // Simple matches only for the trained pairs; views of the first pair with 8 inputs each.
    for c in comps {
        let has = c["layers"][0].get("simple").is_some();
        assert_eq!(has, c["kind"] == "pair", "{}", c["kind"]);
    }
    let views = &r["neuron_views"];
    assert_eq!(
        (views["seed_a"].as_u64(), views["seed_b"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(views["k"].as_u64(), Some(8));
    assert_eq!(views["layers"].as_array().unwrap().len(), 10);
    let inputs: Vec<u64> = views["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_u64().unwrap())
        .collect();
    let mut shown = 0;
    for lv in views["layers"].as_array().unwrap() {
        for g in lv["groups"].as_array().unwrap() {
            for n in g["a"]
                .as_array()
                .unwrap()
                .iter()
                .chain(g["b"].as_array().unwrap())
            {
                let idx = n["inputs"].as_array().unwrap();
                assert_eq!(idx.len(), 8);
                for i in idx {
                    let i = i.as_u64().unwrap();
                    assert!(i < 120 && inputs.binary_search(&i).is_ok());
                    shown += 1;
                }
            }
        }
    }
    assert!(shown > 0, "some strips are shown");
    assert!(html.contains("What matched neurons respond to"));
    assert_eq!(html.matches("class=\"strip\"").count() * 8, shown);
    // `spanmatch report` re-renders the per-neuron results.json.
    let again = Command::new(env!("CARGO_BIN_EXE_spanmatch"))
        .arg("report")
        .arg(out.join("results.json"))
        .args(["--out"])
        .arg(tmp.join("rerendered"))
        .output()
        .expect("run spanmatch report");
    assert!(
        again.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(tmp.join("rerendered").join("report.html").is_file());

    // --no-untrained (reusing the finished checkpoints): no untrained comparison.
    let status = Command::new(env!("CARGO_BIN_EXE_spanmatch"))
        .args(["reproduce", "--arch", "vgg11_bn", "--width", "0.0625"])
        .args(["--hidden", "16,16", "--epochs", "1", "--seeds", "0,1"])
        .arg("--no-untrained")
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run spanmatch");
    assert!(
        status.status.success(),
        "reproduce --no-untrained failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = r["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "pair").count(), 1);
    assert!(!kinds.contains(&"untrained"), "{kinds:?}");
    // Without the baseline, the verdict says what is missing.
    for l in pair_layers(&r) {
        assert!(l.get("verdict").is_none());
        assert_eq!(l["verdict_missing"], serde_json::json!(["baseline"]));
    }
    assert!(r["config"]["untrained"]
        .as_str()
        .unwrap()
        .contains("skipped"));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Per-neuron results of one layer of one comparison: the thresholds ε*(v) give the maximum
/// match at every ε (mms = #{v : ε*(v) <= ε} / (n1 + n2)), are null exactly for the dropped dead
/// neurons, and top out at max_epsilon; the simple matches list valid indices on both sides,
/// as many as counted, with the sizes of the histogram.
fn check_per_neuron(c: &serde_json::Value, l: &serde_json::Value, eps: &[f64]) {
    let what = format!("{} {}", c["kind"], l["name"]);
    let (n1, n2) = (
        l["neurons_a"].as_u64().unwrap() as usize,
        l["neurons_b"].as_u64().unwrap() as usize,
    );
    let mut all = Vec::new();
    for (side, n) in [("a", n1), ("b", n2)] {
        let t = l[format!("thresholds_{side}")].as_array().unwrap();
        assert_eq!(t.len(), n, "{what}: thresholds_{side}");
        let dead: Vec<u64> = l[format!("dead_{side}")]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        for (i, v) in t.iter().enumerate() {
            if c["kind"] != "self" {
                assert_eq!(
                    v.is_null(),
                    dead.contains(&(i as u64)),
                    "{what}: neuron {i}"
                );
            }
            if let Some(x) = v.as_f64() {
                assert!((0.0..=1.0).contains(&x), "{what}: threshold {x}");
                all.push(x);
            }
        }
    }
    let max = all.iter().copied().fold(0.0, f64::max);
    assert_eq!(max, l["max_epsilon"].as_f64().unwrap(), "{what}: max ε");
    for (i, e) in eps.iter().enumerate() {
        let within = all.iter().filter(|t| **t <= *e).count();
        let m = &l["matches"][i];
        assert_eq!(m["eps"].as_f64(), Some(*e));
        // The match's neurons are those whose threshold is within ε.
        for side in ["a", "b"] {
            let t = l[format!("thresholds_{side}")].as_array().unwrap();
            let want: Vec<u64> = (0..t.len() as u64)
                .filter(|&j| t[j as usize].as_f64().is_some_and(|x| x <= *e))
                .collect();
            let got: Vec<u64> = m[side]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(got, want, "{what}: match {side} at ε = {e}");
        }
        let mms = m["mms"].as_f64().unwrap();
        assert!(
            (mms - within as f64 / (n1 + n2) as f64).abs() < 1e-12,
            "{what}: mms {mms} at ε = {e} from {within} thresholds"
        );
    }
    if let Some(simple) = l.get("simple") {
        let matches = simple["matches"].as_array().map_or(&[][..], |m| &m[..]);
        assert_eq!(
            matches.len() as u64,
            simple["count"].as_u64().unwrap(),
            "{what}: simple matches"
        );
        let mut sizes = std::collections::BTreeMap::new();
        for m in matches {
            let (a, b) = (m["a"].as_array().unwrap(), m["b"].as_array().unwrap());
            assert!(!a.is_empty() && !b.is_empty(), "{what}: empty side");
            assert!(a.iter().all(|i| (i.as_u64().unwrap() as usize) < n1));
            assert!(b.iter().all(|i| (i.as_u64().unwrap() as usize) < n2));
            *sizes.entry(a.len() + b.len()).or_insert(0u64) += 1;
        }
        let hist: std::collections::BTreeMap<usize, u64> = simple["size_histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap()))
            .collect();
        assert_eq!(sizes, hist, "{what}: sizes");
    }
}

/// Runs `spanmatch reproduce` on a two-seed tiny VGG with the given extra arguments.
fn tiny_run(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spanmatch"))
        .args(["reproduce", "--arch", "vgg11_bn", "--width", "0.0625"])
        .args(["--hidden", "16,16", "--epochs", "1", "--seeds", "0,1"])
        .args(["--measures", "cka", "--no-untrained"])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run spanmatch")
}

fn pair_layers(r: &serde_json::Value) -> Vec<serde_json::Value> {
    r["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "pair")
        .flat_map(|c| c["layers"].as_array().unwrap().clone())
        .collect()
}

/// mms at each ε of a layer record.
fn mms_of(l: &serde_json::Value) -> Vec<f64> {
    l["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mms"].as_f64().unwrap())
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn reproduce_controls_intervals_null_and_centred() {
    let tmp = std::env::temp_dir().join(format!("spanmatch-controls-{}", std::process::id()));
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    make_split(&data, "train", 200, 3);
    make_split(&data, "t10k", 60, 4);
    let ok = |out: &Path, extra: &[&str]| {
        let o = tiny_run(&data, out, extra);
        assert!(
            o.status.success(),
            "reproduce {extra:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        read_json(&out.join("results.json"))
    };
    let args = [
        "--chunks",
        "6",
        "--bootstrap",
        "60",
        "--bootstrap-seed",
        "9",
        "--null-draws",
        "3",
        "--center",
    ];
    let r = ok(&tmp.join("a"), &args);
    let layers = pair_layers(&r);
    assert_eq!(layers.len(), 10);
    let ne = r["eps"].as_array().unwrap().len();
    for l in &layers {
        let name = l["name"].as_str().unwrap();
        let iv = &l["intervals"];
        assert_eq!(iv["chunks"], 6, "{name}");
        assert_eq!(iv["resamples"], 60, "{name}");
        assert_eq!(iv["seed"], 9, "{name}");
        assert_eq!(iv["level"], 0.95, "{name}");
        let mms: Vec<serde_json::Value> = mms_of(l).into_iter().map(Into::into).collect();
        let bounds = iv["mms"].as_array().unwrap();
        assert_eq!(bounds.len(), ne);
        // The interval covers the full-data value (and lies in [0, 1]).
        for (b, m) in bounds.iter().zip(mms) {
            let (lo, hi, m) = (
                b["lo"].as_f64().unwrap(),
                b["hi"].as_f64().unwrap(),
                m.as_f64().unwrap(),
            );
            assert!(
                (0.0..=1.0).contains(&lo) && lo <= m + 1e-12 && m <= hi + 1e-12 && hi <= 1.0,
                "{name}: mms {m} outside [{lo}, {hi}]"
            );
        }
        let cka = l["measures"]["cka_linear"].as_f64().unwrap();
        let (lo, hi) = (
            iv["cka_linear"]["lo"].as_f64().unwrap(),
            iv["cka_linear"]["hi"].as_f64().unwrap(),
        );
        assert!(
            lo <= cka + 1e-12 && cka <= hi + 1e-12,
            "{name}: CKA {cka} outside [{lo}, {hi}]"
        );
        // Rotation null: 3 draws, values in [0, 1], min <= mean <= max, p in (0, 1].
        let null = &l["null"];
        assert_eq!(null["draws"], 3, "{name}");
        let per = null["per_eps"].as_array().unwrap();
        assert_eq!(per.len(), ne);
        for e in per {
            let (mn, mean, mx, p) = (
                e["min"].as_f64().unwrap(),
                e["mean"].as_f64().unwrap(),
                e["max"].as_f64().unwrap(),
                e["p_value"].as_f64().unwrap(),
            );
            assert!(0.0 <= mn && mn <= mean + 1e-15 && mean <= mx + 1e-15 && mx <= 1.0);
            assert!((0.25 - 1e-12..=1.0).contains(&p), "{name}: p {p}");
        }
        // Centred mms: one per ε, in [0, 1], non-decreasing in ε.
        let c = mms_of(&l["centered"]);
        assert_eq!(c.len(), ne);
        assert!(c.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(c.windows(2).all(|w| w[0] <= w[1]), "{name}: {c:?}");
    }
    // Only the trained pairs carry the controls.
    for c in r["comparisons"].as_array().unwrap() {
        if c["kind"] != "pair" {
            assert!(c["layers"][0].get("intervals").is_none());
        }
    }
    let html = std::fs::read_to_string(tmp.join("a").join("report.html")).unwrap();
    assert!(html.contains("rotation null"), "table column");
    assert!(html.contains("centred"), "table column");

    // A fixed seed gives identical intervals and nulls (second run reuses the checkpoints).
    let again = ok(&tmp.join("a"), &args);
    for (x, y) in layers.iter().zip(pair_layers(&again)) {
        assert_eq!(x["intervals"], y["intervals"]);
        assert_eq!(x["null"], y["null"]);
        assert_eq!(x["centered"], y["centered"]);
    }

    // One chunk: every resample is the full data, the interval is the point.
    let one = ok(
        &tmp.join("a"),
        &[
            "--chunks",
            "1",
            "--bootstrap",
            "5",
            "--null-draws",
            "0",
            "--no-center",
        ],
    );
    for l in pair_layers(&one) {
        assert!(l.get("null").is_none());
        assert!(l.get("centered").is_none());
        for (b, m) in l["intervals"]["mms"]
            .as_array()
            .unwrap()
            .iter()
            .zip(mms_of(&l))
        {
            assert!((b["lo"].as_f64().unwrap() - m).abs() <= 1e-12 * m.max(1e-300));
            assert!((b["hi"].as_f64().unwrap() - m).abs() <= 1e-12 * m.max(1e-300));
        }
        let cka = l["measures"]["cka_linear"].as_f64().unwrap();
        assert!((l["intervals"]["cka_linear"]["lo"].as_f64().unwrap() - cka).abs() <= 1e-12);
        assert!((l["intervals"]["cka_linear"]["hi"].as_f64().unwrap() - cka).abs() <= 1e-12);
    }

    // Bad input: clear errors.
    for (extra, want) in [
        (&["--chunks", "0"][..], "--chunks must be at least 1"),
        (&["--chunks", "61"][..], "more chunks than test images (60)"),
        (&["--bootstrap", "0"][..], "--bootstrap must be at least 1"),
    ] {
        let o = tiny_run(&data, &tmp.join("bad"), extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{extra:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
