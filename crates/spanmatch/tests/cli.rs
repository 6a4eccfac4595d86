//! End-to-end tests of the `spanmatch` binary.

mod common;

use common::{fail, ok};

use serde_json::Value;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch("spanmatch-cli", name)
}

fn example(dir: &Path) -> (String, String) {
    let d = dir.to_string_lossy().into_owned();
    ok(&["example", "--out", &d]);
    (format!("{d}/net_a.npz"), format!("{d}/net_b.npz"))
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn example_pair_compare_json_shape() {
    let dir = scratch("shape");
    let (a, b) = example(&dir);
    let out = dir.join("r.json");
    let table = ok(&["compare", &a, &b, "--json", &s(&out)]);
    for word in [
        "layer", "conv1", "fc1", "fc2", "mms@0.15", "mms@0.5", "max ε", "16/16", "4096",
    ] {
        assert!(table.contains(word), "table lacks {word}:\n{table}");
    }
    let v = json(&out);
    assert!(v["spanmatch_version"].is_string());
    let layers = v["comparisons"][0]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers"));
    let names: Vec<&str> = layers.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["conv1", "fc1", "fc2"]);
    let conv = &layers[0];
    assert_eq!(conv["neurons_a"], 16);
    assert_eq!(conv["neurons_b"], 16);
    assert_eq!(conv["rows"], 64 * 8 * 8);
    // The dead channel of net A is found and has a null threshold (drop policy).
    let dead_a = conv["dead_a"]
        .as_array()
        .unwrap_or_else(|| panic!("dead_a"));
    assert_eq!(dead_a.len(), 1);
    assert_eq!(conv["dead_b"].as_array().map(Vec::len), Some(0));
    let d = dead_a[0].as_u64().unwrap_or(99) as usize;
    let th_a = conv["thresholds_a"]
        .as_array()
        .unwrap_or_else(|| panic!("thresholds_a"));
    assert_eq!(th_a.len(), 16);
    assert!(th_a[d].is_null());
    assert_eq!(th_a.iter().filter(|t| t.is_null()).count(), 1);
    let max_eps = conv["max_epsilon"].as_f64().unwrap_or(-1.0);
    assert!(max_eps > 0.5 && max_eps <= 1.0, "{max_eps}");
    for layer in layers {
        let matches = layer["matches"]
            .as_array()
            .unwrap_or_else(|| panic!("matches"));
        let eps: Vec<f64> = matches.iter().filter_map(|m| m["eps"].as_f64()).collect();
        assert_eq!(eps, [0.15, 0.2, 0.25, 0.3, 0.5]);
        let (na, nb) = (
            layer["neurons_a"].as_u64().unwrap_or(0),
            layer["neurons_b"].as_u64().unwrap_or(0),
        );
        let mut prev = 0.0;
        for m in matches {
            let (ma, mb) = (
                m["a"].as_array().map(Vec::len).unwrap_or(0),
                m["b"].as_array().map(Vec::len).unwrap_or(0),
            );
            let mms = m["mms"].as_f64().unwrap_or(-1.0);
            assert!((mms - (ma + mb) as f64 / (na + nb) as f64).abs() < 1e-12);
            assert!(mms >= prev, "mms must grow with ε");
            prev = mms;
        }
        // The planted shared features give a non-trivial match.
        assert!(
            prev > 0.3 && prev < 1.0,
            "{} mms@0.5 = {prev}",
            layer["name"]
        );
    }
}

#[test]
fn a_layer_against_itself_matches_fully() {
    let dir = scratch("self");
    let (a, _) = example(&dir);
    let out = dir.join("self.json");
    ok(&[
        "compare",
        &a,
        &a,
        "--layer",
        "fc1",
        "--layer",
        "conv1",
        "--eps",
        "0,0.15,0.5,1",
        "--json",
        &s(&out),
    ]);
    let v = json(&out);
    let layers = v["comparisons"][0]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("layers"));
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["name"], "fc1");
    for layer in layers {
        assert_eq!(
            layer["max_epsilon"].as_f64(),
            Some(0.0),
            "{}",
            layer["name"]
        );
        for m in layer["matches"]
            .as_array()
            .unwrap_or_else(|| panic!("matches"))
        {
            let mms = m["mms"].as_f64().unwrap_or(0.0);
            if layer["name"] == "conv1" {
                // The dead channel is dropped on both sides: 30 of 32 neurons.
                assert!((mms - 30.0 / 32.0).abs() < 1e-12, "{mms}");
            } else {
                assert_eq!(mms, 1.0);
            }
        }
    }
    // With --dead match the dead channel joins: mms 1 everywhere.
    ok(&[
        "compare",
        &a,
        &a,
        "--layer",
        "conv1",
        "--dead",
        "match",
        "--json",
        &s(&out),
    ]);
    let v = json(&out);
    for m in v["comparisons"][0]["layers"][0]["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("matches"))
    {
        assert_eq!(m["mms"].as_f64(), Some(1.0));
    }
    assert_eq!(v["options"]["dead"], "match");
}

#[test]
fn tiny_blocks_give_the_same_numbers() {
    let dir = scratch("blocks");
    let (a, b) = example(&dir);
    let (j1, j2) = (dir.join("default.json"), dir.join("tiny.json"));
    ok(&["compare", &a, &b, "--json", &s(&j1)]);
    ok(&["compare", &a, &b, "--block-rows", "7", "--json", &s(&j2)]);
    let (v1, v2) = (json(&j1), json(&j2));
    for (l1, l2) in v1["comparisons"][0]["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(
            v2["comparisons"][0]["layers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
    {
        assert_eq!(l1["matches"], l2["matches"]);
        assert_eq!(l1["dead_a"], l2["dead_a"]);
        let t = |l: &Value, k: &str| -> Vec<f64> {
            l[k].as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_f64().unwrap_or(-1.0))
                .collect()
        };
        for k in ["thresholds_a", "thresholds_b"] {
            for (x, y) in t(l1, k).iter().zip(t(l2, k)) {
                assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{k}: {x} vs {y}");
            }
        }
        let (m1, m2) = (
            l1["max_epsilon"].as_f64().unwrap_or(0.0),
            l2["max_epsilon"].as_f64().unwrap_or(1.0),
        );
        assert!((m1 - m2).abs() < 1e-9);
    }
}

#[test]
fn sampled_mode_reports_mean_and_std() {
    let dir = scratch("sampled");
    let (a, b) = example(&dir);
    let out = dir.join("s.json");
    let args = [
        "compare",
        &a,
        &b,
        "--layer",
        "conv1",
        "--layer",
        "fc2",
        "--sample-columns",
        "1000",
        "--repeats",
        "4",
        "--seed",
        "3",
        "--json",
        &s(&out),
    ];
    ok(&args);
    let v = json(&out);
    let conv = &v["comparisons"][0]["layers"][0];
    let sm = &conv["sampled"];
    assert_eq!(
        (
            sm["columns"].as_u64(),
            sm["repeats"].as_u64(),
            sm["seed"].as_u64()
        ),
        (Some(1000), Some(4), Some(3))
    );
    let mean: Vec<f64> = sm["mms_mean"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let std: Vec<f64> = sm["mms_std"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!((mean.len(), std.len()), (5, 5));
    assert!(mean.iter().all(|m| (0.0..=1.0).contains(m)));
    assert!(std.iter().all(|s| *s >= 0.0 && *s < 0.5));
    // fc2 has 512 rows <= 1000: every repeat uses all rows, so the mean is the exact value.
    let fc2 = &v["comparisons"][0]["layers"][1];
    for (i, m) in fc2["matches"].as_array().into_iter().flatten().enumerate() {
        assert_eq!(fc2["sampled"]["mms_mean"][i].as_f64(), m["mms"].as_f64());
        assert_eq!(fc2["sampled"]["mms_std"][i].as_f64(), Some(0.0));
    }
    // Deterministic in the seed.
    let out2 = dir.join("s2.json");
    let mut args2 = args;
    let o2 = s(&out2);
    args2[14] = &o2;
    ok(&args2);
    assert_eq!(
        json(&out2)["comparisons"][0]["layers"][0]["sampled"],
        conv["sampled"]
    );
}

#[test]
fn clear_errors() {
    let dir = scratch("errors");
    let (a, b) = example(&dir);
    let e = fail(&["compare", &a, &b, "--eps", "0.2,1.5"]);
    assert!(e.contains("ε = 1.5 is outside [0, 1]"), "{e}");
    let e = fail(&["compare", &a, &b, "--eps=-0.1"]);
    assert!(e.contains("outside [0, 1]"), "{e}");
    let e = fail(&["compare", &a, &b, "--layer", "fc9"]);
    assert!(e.contains("layer 'fc9' is in neither"), "{e}");
    let e = fail(&["compare", &a, &format!("{}/missing.npz", dir.display())]);
    assert!(e.contains("missing.npz: file not found"), "{e}");
    let e = fail(&["compare", &a, &b, "--tol", "0.5"]);
    assert!(e.contains("--tol") && e.contains("0.5"), "{e}");

    // A layer present in only one file, and differing row counts.
    let only = dir.join("only.npz");
    let mut w = spanmatch_io::write::NpzWriter::create(&only).unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<f64> = (0..300).map(|i| ((i * 37) % 11) as f64).collect();
    w.add("fc1", &[100, 3], &data, &Default::default(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    w.add("extra", &[10, 30], &data, &Default::default(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    let e = fail(&["compare", &s(&only), &b, "--layer", "extra"]);
    assert!(
        e.contains("layer 'extra' is in") && e.contains("only.npz") && e.contains("but not in"),
        "{e}"
    );
    let e = fail(&["compare", &s(&only), &b]);
    assert!(e.contains("only in") && e.contains("'extra'"), "{e}");
    assert!(
        e.contains("fc1") && e.contains("100 rows") && e.contains("512 rows"),
        "{e}"
    );
}

#[test]
fn help_explains_the_question_and_options() {
    let h = ok(&["compare", "--help"]);
    for word in [
        "same representation",
        "ε-close",
        "sine",
        "--dead",
        "denominator",
        "--layout",
        "--sample-columns",
        "--block-rows",
        "--tol",
        "--json",
    ] {
        assert!(h.contains(word), "help lacks {word}");
    }
}

/// Deterministic ReLU-like data: `rows x cols`, C order.
fn relu_data(rows: usize, cols: usize, salt: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|i| {
            let v = ((i * 7919 + salt * 104_729) % 1009) as f64 / 1009.0 - 0.3;
            v.max(0.0)
        })
        .collect()
}

#[test]
fn formats_and_single_npy_pairs_give_the_same_result() {
    use spanmatch_io::write::{write_npy, write_safetensors, Encoding, NpzWriter};
    use spanmatch_io::DType;
    let dir = scratch("formats");
    let shape = [40u64, 6, 3, 2];
    let (xa, xb) = (relu_data(40 * 36, 1, 1), relu_data(40 * 36, 1, 2));
    // B shares A's first three channels.
    let mut xb = xb;
    for i in 0..40 {
        for ch in 0..3 {
            for p in 0..6 {
                xb[(i * 6 + ch) * 6 + p] = xa[(i * 6 + ch) * 6 + p];
            }
        }
    }
    let enc = Encoding::of(DType::F64);
    let (na, nb) = (dir.join("a.npz"), dir.join("b.npz"));
    for (path, x) in [(&na, &xa), (&nb, &xb)] {
        let mut w = NpzWriter::create(path).unwrap_or_else(|e| panic!("{e}"));
        w.add("conv", &shape, x, &enc, true)
            .unwrap_or_else(|e| panic!("{e}"));
        w.finish().unwrap_or_else(|e| panic!("{e}"));
    }
    let (sa, sb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    write_safetensors(&sa, &[("conv", &shape, &xa, DType::F64)]).unwrap_or_else(|e| panic!("{e}"));
    write_safetensors(&sb, &[("conv", &shape, &xb, DType::F64)]).unwrap_or_else(|e| panic!("{e}"));
    let (pa, pb) = (dir.join("net_a_conv.npy"), dir.join("net_b_conv.npy"));
    let fortran = Encoding {
        order: spanmatch_io::StorageOrder::Fortran,
        ..enc.clone()
    };
    write_npy(&pa, &shape, &xa, &enc).unwrap_or_else(|e| panic!("{e}"));
    write_npy(&pb, &shape, &xb, &fortran).unwrap_or_else(|e| panic!("{e}"));

    let mut results = Vec::new();
    for (a, b, tag) in [(&na, &nb, "npz"), (&sa, &sb, "st"), (&pa, &pb, "npy")] {
        let out = dir.join(format!("{tag}.json"));
        let table = ok(&[
            "compare",
            &s(a),
            &s(b),
            "--eps",
            "0,0.3",
            "--json",
            &s(&out),
        ]);
        let v = json(&out);
        if tag == "npy" {
            assert!(table.contains("net_a_conv ~ net_b_conv"), "{table}");
            assert_eq!(v["comparisons"][0]["layers"][0]["name_b"], "net_b_conv");
        }
        let layer = &v["comparisons"][0]["layers"][0];
        assert_eq!(layer["rows"], 240);
        // The three shared channels match exactly on both sides.
        let m0 = &layer["matches"][0];
        assert_eq!(m0["a"], serde_json::json!([0, 1, 2]), "{tag}");
        assert_eq!(m0["b"], serde_json::json!([0, 1, 2]), "{tag}");
        assert_eq!(m0["mms"].as_f64(), Some(0.5));
        results.push(layer["matches"].clone());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}
