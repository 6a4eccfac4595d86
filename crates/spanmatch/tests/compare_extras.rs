//! `spanmatch compare` options beyond the maximum match: `--measures`, `--view flatten`,
//! `--simple`, `--report`, and the controls `--center`, `--null rotate`, `--bootstrap`.

mod common;

use common::{fail, ok};

use serde_json::Value;
use spanmatch_core::measures::{self, FlattenedKernels, Measure};
use spanmatch_core::{GramAccumulator, JointStats};
use spanmatch_io::write::{Encoding, NpzWriter};
use spanmatch_io::{ActivationFile, DType, Layout};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch("spanmatch-compare-extras", name)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(dir: &Path) -> (String, String) {
    let d = s(dir);
    ok(&["example", "--out", &d]);
    (format!("{d}/net_a.npz"), format!("{d}/net_b.npz"))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"))
}

/// Deterministic values in [-1, 1).
fn noise(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn write_npz(path: &Path, layers: &[(&str, &[u64], &[f64])]) {
    let mut w = NpzWriter::create(path).unwrap_or_else(|e| panic!("{e}"));
    for (name, shape, data) in layers {
        w.add(name, shape, data, &Encoding::of(DType::F64), false)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// The joint statistics of one layer of two files, streamed independently of the binary.
fn direct_stats(a: &str, b: &str, layer: &str) -> JointStats {
    let (fa, fb) = (
        ActivationFile::open(a).unwrap_or_else(|e| panic!("{e}")),
        ActivationFile::open(b).unwrap_or_else(|e| panic!("{e}")),
    );
    let mut ra = fa
        .reader(layer, Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rb = fb
        .reader(layer, Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let (n1, n2, rows) = (ra.neurons(), rb.neurons(), ra.rows() as usize);
    let mut buf = vec![0.0; rows * (n1 + n2)];
    assert_eq!(
        ra.read_rows(rows, &mut buf, n1 + n2, 0)
            .unwrap_or_else(|e| panic!("{e}")),
        rows
    );
    assert_eq!(
        rb.read_rows(rows, &mut buf, n1 + n2, n1)
            .unwrap_or_else(|e| panic!("{e}")),
        rows
    );
    let mut acc = GramAccumulator::new(n1, n2);
    acc.push_joint(&buf).unwrap_or_else(|e| panic!("{e}"));
    acc.finish()
}

#[test]
fn measures_equal_the_library_and_are_exact_on_a_self_pair() {
    let dir = scratch("measures");
    let (a, b) = example(&dir);
    let out = dir.join("m.json");
    let table = ok(&[
        "compare",
        &a,
        &b,
        "--measures",
        "match,cka,cca,procrustes",
        "--json",
        &s(&out),
    ]);
    for word in ["CKA", "CCA mean ρ", "Procrustes"] {
        assert!(table.contains(word), "table lacks {word}:\n{table}");
    }
    let v = json(&out);
    assert_eq!(
        v["options"]["measures"],
        serde_json::json!(["cka", "cca", "procrustes"])
    );
    let want = [Measure::Cka, Measure::Cca, Measure::Procrustes];
    for layer in v["comparisons"][0]["layers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = layer["name"].as_str().unwrap_or("?");
        let m = &layer["measures"];
        let direct =
            measures::compute(&direct_stats(&a, &b, name), &want).unwrap_or_else(|e| panic!("{e}"));
        let cka = num(&m["cka_linear"], "cka_linear");
        assert!((0.0..=1.0).contains(&cka), "{name}: {cka}");
        let pairs = [
            ("cka_linear", direct.cka_linear),
            ("cka_linear_debiased", direct.cka_linear_debiased),
            ("cca_mean_rho", direct.cca_mean_rho),
            ("cca_r2", direct.cca_r2),
            ("procrustes", direct.procrustes),
        ];
        for (key, d) in pairs {
            let d = d.unwrap_or_else(|| panic!("{name}: {key} undefined"));
            let got = num(&m[key], key);
            assert!((got - d).abs() <= 1e-9, "{name} {key}: {got} vs {d}");
        }
        // Not requested: absent.
        assert!(m.get("svcca").is_none() && m.get("pwcca").is_none(), "{m}");
    }

    // A layer against itself: CKA 1, mean canonical correlation 1, Procrustes distance 0.
    let out = dir.join("self.json");
    ok(&[
        "compare",
        &a,
        &a,
        "--measures",
        "cka,cca,procrustes",
        "--json",
        &s(&out),
    ]);
    for layer in json(&out)["comparisons"][0]["layers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let m = &layer["measures"];
        let name = &layer["name"];
        assert!(
            (num(&m["cka_linear"], "cka") - 1.0).abs() <= 1e-9,
            "{name}: {m}"
        );
        assert!(
            (num(&m["cca_mean_rho"], "cca") - 1.0).abs() <= 1e-9,
            "{name}: {m}"
        );
        // d = sqrt(2 - 2ν): ν's singular values come from the eigenvalues of the Gram matrix
        // Cxy Cxyᵀ, whose round-off (about 1e-14 relative on an ill-conditioned layer) gives
        // about 2e-7 in d.
        assert!(num(&m["procrustes"], "procrustes") <= 1e-6, "{name}: {m}");
    }

    // --measures match: no measures at all.
    let out = dir.join("match.json");
    let table = ok(&["compare", &a, &b, "--measures", "match", "--json", &s(&out)]);
    assert!(!table.contains("CKA"), "{table}");
    assert!(json(&out)["comparisons"][0]["layers"][0]
        .get("measures")
        .is_none());
}

/// `[N, C, H, W]` images, flattened per image in C order: image i is `x[i * C*H*W ..][.. C*H*W]`.
fn kernel(x: &[f64], n: usize) -> Vec<f64> {
    let f = x.len() / n;
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            k[i * n + j] = (0..f).map(|t| x[i * f + t] * x[j * f + t]).sum();
        }
    }
    k
}

#[test]
fn flattened_view_equals_cka_of_the_image_kernels() {
    let dir = scratch("flatten");
    let n = 12usize;
    let (sa, sb) = ([n as u64, 3, 4, 5], [n as u64, 2, 4, 5]);
    let xa: Vec<f64> = noise(n * 60, 1).iter().map(|v| v.max(0.0)).collect();
    // B: its first channel is A's first channel plus noise, its second is private.
    let nb = noise(n * 40, 2);
    let mut xb = vec![0.0; n * 40];
    for i in 0..n {
        for p in 0..20 {
            xb[i * 40 + p] = xa[i * 60 + p] + 0.3 * nb[i * 40 + p];
            xb[i * 40 + 20 + p] = nb[i * 40 + 20 + p].max(0.0);
        }
    }
    let (pa, pb) = (dir.join("a.npz"), dir.join("b.npz"));
    write_npz(&pa, &[("conv", &sa, &xa)]);
    write_npz(&pb, &[("conv", &sb, &xb)]);
    let kernels = FlattenedKernels::from_full(n, &kernel(&xa, n), &kernel(&xb, n))
        .unwrap_or_else(|e| panic!("{e}"));
    let (want, want_deb) = (
        kernels
            .cka_linear()
            .unwrap_or_else(|| panic!("cka undefined")),
        kernels
            .cka_linear_debiased()
            .unwrap_or_else(|| panic!("debiased cka undefined")),
    );
    // One pass (all images in memory), one pass per image, and 5 images per pass.
    let one = ["--flatten-images", "1", "--block-rows", "7"];
    for extra in [&[][..], &one[..], &["--flatten-images", "5"][..]] {
        let out = dir.join("f.json");
        let mut args = vec![
            "compare".to_string(),
            s(&pa),
            s(&pb),
            "--view".to_string(),
            "flatten".to_string(),
            "--json".to_string(),
            s(&out),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let table = ok(&args);
        assert!(table.contains("CKA flattened"), "{table}");
        let v = json(&out);
        assert_eq!(v["settings"]["view"], "flatten");
        let m = &v["comparisons"][0]["layers"][0]["measures"];
        let got = num(&m["cka_linear_flatten"], "cka_linear_flatten");
        let got_deb = num(&m["cka_linear_debiased_flatten"], "debiased");
        assert!((got - want).abs() <= 1e-9, "{extra:?}: {got} vs {want}");
        assert!(
            (got_deb - want_deb).abs() <= 1e-9,
            "{extra:?}: {got_deb} vs {want_deb}"
        );
        // The channel view is a different number (rows = image positions).
        let chan = num(&m["cka_linear"], "cka_linear");
        assert!((chan - got).abs() > 1e-6, "{chan} {got}");
    }
}

#[test]
fn simple_matches_at_zero_are_the_planted_blocks() {
    let dir = scratch("simple");
    let rows = 200usize;
    let z: Vec<Vec<f64>> = (0..5).map(|k| noise(rows, 10 + k)).collect();
    // A: z1, z3, z2, z4 (private); B: 3·z3, z1 + z2, z5 (private), z1 + 2·z2.
    let cols_a: Vec<Vec<f64>> = vec![z[0].clone(), z[2].clone(), z[1].clone(), z[3].clone()];
    let cols_b: Vec<Vec<f64>> = vec![
        z[2].iter().map(|v| 3.0 * v).collect(),
        z[0].iter().zip(&z[1]).map(|(a, b)| a + b).collect(),
        z[4].clone(),
        z[0].iter().zip(&z[1]).map(|(a, b)| a + 2.0 * b).collect(),
    ];
    let row_major = |cols: &[Vec<f64>]| -> Vec<f64> {
        (0..rows)
            .flat_map(|r| cols.iter().map(move |c| c[r]))
            .collect()
    };
    let (pa, pb) = (dir.join("a.npz"), dir.join("b.npz"));
    let shape = [rows as u64, 4];
    write_npz(&pa, &[("fc", &shape, &row_major(&cols_a))]);
    write_npz(&pb, &[("fc", &shape, &row_major(&cols_b))]);
    let out = dir.join("s.json");
    let table = ok(&[
        "compare",
        &s(&pa),
        &s(&pb),
        "--simple",
        "0.0",
        "--orders",
        "2",
        "--seed",
        "5",
        "--json",
        &s(&out),
    ]);
    assert!(
        table.contains("simple@0") && table.contains("largest"),
        "{table}"
    );
    let v = json(&out);
    let simple = &v["comparisons"][0]["layers"][0]["simple"];
    assert_eq!(simple["eps"].as_f64(), Some(0.0));
    assert_eq!(simple["exact_case"], true);
    assert_eq!(simple["orders"], 3);
    assert_eq!(simple["seed"], 5);
    let mut found: Vec<(Value, Value)> = simple["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            assert!(m["count"].as_u64().unwrap_or(0) >= 1, "{m}");
            (m["a"].clone(), m["b"].clone())
        })
        .collect();
    found.sort_by_key(|(a, b)| format!("{a}{b}"));
    let mut want = vec![
        (serde_json::json!([0, 2]), serde_json::json!([1, 3])),
        (serde_json::json!([1]), serde_json::json!([0])),
    ];
    want.sort_by_key(|(a, b)| format!("{a}{b}"));
    assert_eq!(found, want);
    // Table row: 2 simple matches, the largest of size 4 (in the table that has them).
    let block = table
        .split("\n\n")
        .find(|b| b.contains("simple@0"))
        .unwrap_or_default();
    let row = block
        .lines()
        .rfind(|l| l.starts_with("fc "))
        .unwrap_or_default()
        .to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[cells.len() - 2..], ["2", "4"], "{table}");
}

#[test]
fn report_directory_has_results_and_html() {
    let dir = scratch("report");
    let (a, b) = example(&dir);
    for (extra, svgs) in [(None, 2usize), (Some("0.25"), 3)] {
        let rep = dir.join(format!("rep{svgs}"));
        let mut args = vec!["compare", &a, &b];
        let rs = s(&rep);
        args.extend(["--report", &rs]);
        if let Some(e) = extra {
            args.extend(["--simple", e]);
        }
        let stdout = ok(&args);
        assert!(stdout.contains("report.html"), "{stdout}");
        let results = spanmatch_report::read_results(&rep.join("results.json"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(results.nets.is_empty());
        assert_eq!(results.comparisons.len(), 1);
        let layers = &results.comparisons[0].layers;
        assert_eq!(layers.len(), 3);
        assert_eq!(results.layers[0].kind, "conv");
        assert_eq!(results.layers[1].kind, "fc");
        for l in layers {
            assert_eq!(l.mms().len(), 5);
            assert_eq!(l.profile.len(), 101);
            let cka = l.measure("cka_linear").unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&cka), "{}: {cka}", l.name);
            assert_eq!(l.simple.is_some(), extra.is_some());
        }
        let html = std::fs::read_to_string(rep.join("report.html"))
            .unwrap_or_else(|e| panic!("report.html: {e}"));
        for name in ["conv1", "fc1", "fc2"] {
            assert!(html.contains(name), "report lacks {name}");
        }
        assert_eq!(html.matches("<svg").count(), svgs);
    }
}

#[test]
fn bad_options_are_clear_errors_and_help_explains() {
    let dir = scratch("errors");
    let (a, b) = example(&dir);
    let e = fail(&["compare", &a, &b, "--measures", "cka,foo"]);
    assert!(
        e.contains("unknown measure 'foo'")
            && e.contains("match, all, cka, cca, svcca, pwcca, procrustes, one_to_one"),
        "{e}"
    );
    let e = fail(&["compare", &a, &b, "--simple", "1.5"]);
    assert!(e.contains("--simple") && e.contains("1.5"), "{e}");
    let e = fail(&["compare", &a, &b, "--view", "pixels"]);
    assert!(e.contains("channels") && e.contains("flatten"), "{e}");
    let h = ok(&["compare", "--help"]);
    for word in [
        "--measures",
        "Basis-invariant",
        "kernel alignment",
        "Procrustes",
        "--view",
        "C·H·W",
        "second time",
        "--simple",
        "smallest groups of neurons",
        "--orders",
        "--report",
        "report.html",
    ] {
        assert!(h.contains(word), "help lacks {word}");
    }
}

#[test]
fn controls_center_null_and_bootstrap() {
    let dir = scratch("controls");
    let (a, b) = example(&dir);
    let out = dir.join("controls.json");
    let controls = [
        "--center",
        "--null",
        "rotate",
        "--null-draws",
        "4",
        "--bootstrap",
        "30",
        "--chunks",
        "8",
        "--seed",
        "3",
    ];
    let run = |json_out: &Path| {
        let j = s(json_out);
        let mut args = vec!["compare", a.as_str(), b.as_str()];
        args.extend(controls);
        args.extend(["--json", j.as_str()]);
        ok(&args)
    };
    let table = run(&out);
    assert!(
        table.contains("95% interval") && table.contains("centred"),
        "{table}"
    );
    assert!(table.contains("rotation null"), "{table}");
    let r = json(&out);
    for l in r["comparisons"][0]["layers"].as_array().expect("layers") {
        let name = l["name"].as_str().unwrap_or("?");
        let matches = l["matches"].as_array().expect("matches");
        let iv = l["intervals"]["mms"].as_array().expect("intervals");
        assert_eq!(iv.len(), matches.len(), "{name}");
        for (m, i) in matches.iter().zip(iv) {
            let (mms, lo, hi) = (
                num(&m["mms"], "mms"),
                num(&i["lo"], "lo"),
                num(&i["hi"], "hi"),
            );
            assert!(
                lo <= mms + 1e-12 && mms <= hi + 1e-12,
                "{name}: {mms} not in [{lo}, {hi}]"
            );
        }
        assert_eq!(l["intervals"]["chunks"], 8, "{name}");
        let null = l["null"]["per_eps"].as_array().expect("null");
        assert_eq!(null.len(), matches.len(), "{name}");
        for (m, n) in matches.iter().zip(null) {
            assert_eq!(
                num(&n["observed"], "observed"),
                num(&m["mms"], "mms"),
                "{name}"
            );
            assert_eq!(n["values"].as_array().map(Vec::len), Some(4), "{name}");
        }
        assert_eq!(
            l["centered"]["matches"].as_array().map(Vec::len),
            Some(matches.len()),
            "{name}"
        );
    }
    // The same seed gives the same controls; the plain result is unchanged by them.
    let again = dir.join("again.json");
    run(&again);
    let r2 = json(&again);
    for (x, y) in r["comparisons"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(r2["comparisons"][0]["layers"].as_array().expect("layers"))
    {
        assert_eq!(x["intervals"], y["intervals"]);
        assert_eq!(x["null"], y["null"]);
    }
    let plain = dir.join("plain.json");
    ok(&["compare", &a, &b, "--json", &s(&plain)]);
    let p = json(&plain);
    for (x, y) in r["comparisons"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(p["comparisons"][0]["layers"].as_array().expect("layers"))
    {
        assert_eq!(x["matches"], y["matches"]);
        // Merged chunks equal one pass up to summation order.
        for (tx, ty) in x["thresholds_a"]
            .as_array()
            .expect("thresholds")
            .iter()
            .zip(y["thresholds_a"].as_array().expect("thresholds"))
        {
            match (tx.as_f64(), ty.as_f64()) {
                (Some(u), Some(v)) => assert!((u - v).abs() < 1e-10, "{u} vs {v}"),
                (u, v) => assert_eq!(u, v),
            }
        }
    }
    let e = fail(&["compare", &a, &b, "--bootstrap", "0"]);
    assert!(e.contains("--bootstrap must be at least 1"), "{e}");
    let e = fail(&["compare", &a, &b, "--bootstrap", "5", "--chunks", "100000"]);
    assert!(e.contains("100000 chunks for the bootstrap"), "{e}");
    let e = fail(&["compare", &a, &b, "--null", "shuffle"]);
    assert!(e.contains("shuffle"), "{e}");
}

#[test]
fn baseline_files_give_untrained_and_a_verdict() {
    let dir = scratch("baseline");
    let (a, b) = example(&dir);
    let out = dir.join("b.json");
    // The two nets swapped are a baseline of the same layers and rows: trained = untrained.
    let table = ok(&[
        "compare",
        &a,
        &b,
        "--baseline",
        &b,
        &a,
        "--null",
        "rotate",
        "--null-draws",
        "3",
        "--json",
        &s(&out),
    ]);
    for word in ["untrained", "trained−untr.", "verdict", "given"] {
        assert!(table.contains(word), "{word}:\n{table}");
    }
    let v = json(&out);
    assert_eq!(v["schema_version"], 3);
    assert_eq!(v["settings"]["baseline"][0], b.as_str());
    for l in v["comparisons"][0]["layers"].as_array().expect("layers") {
        let u = &l["untrained"];
        let mms: Vec<f64> = l["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .map(|m| num(&m["mms"], "mms"))
            .collect();
        // Swapping A and B leaves mms unchanged.
        for (x, y) in mms.iter().zip(u["mms"].as_array().expect("mms")) {
            assert!((x - num(y, "untrained")).abs() < 1e-12);
        }
        assert_eq!(l["verdict"], "given", "{}", l["name"]);
    }
    // Without the null: no verdict, and the record says what is missing.
    ok(&["compare", &a, &b, "--baseline", &b, &a, "--json", &s(&out)]);
    let v = json(&out);
    assert_eq!(
        v["comparisons"][0]["layers"][0]["verdict_missing"],
        serde_json::json!(["null"])
    );
    // A baseline file without a layer names the file and the layer.
    let only = dir.join("only_fc1.npz");
    let fa = ActivationFile::open(&a).unwrap_or_else(|e| panic!("{e}"));
    let mut r = fa
        .reader("fc1", Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let (rows, n) = (r.rows() as usize, r.neurons());
    let mut buf = vec![0.0; rows * n];
    r.read_rows(rows, &mut buf, n, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    write_npz(&only, &[("fc1", &[rows as u64, n as u64], &buf)]);
    let e = fail(&["compare", &a, &b, "--baseline", &s(&only), &a]);
    assert!(
        e.contains("layer 'conv1' is not in") && e.contains("only_fc1.npz"),
        "{e}"
    );
}
