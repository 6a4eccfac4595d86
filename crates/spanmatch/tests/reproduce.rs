//! End to end: `spanmatch reproduce` on a tiny generated Fashion-MNIST-format dataset.

use std::path::Path;
use std::process::Command;

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
    let (mut selfs, mut nulls) = (0, Vec::new());
    for c in comps {
        let ls = c["layers"].as_array().unwrap();
        let names: Vec<&str> = ls.iter().map(|l| l["layer"].as_str().unwrap()).collect();
        assert_eq!(names, layers.iter().map(String::as_str).collect::<Vec<_>>());
        for l in ls {
            let mms: Vec<f64> = l["mms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
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
            let want = if c["kind"] == "SelfCheck" { 1.0 } else { live };
            let last = *ys.last().unwrap();
            assert!(
                (last - want).abs() < 1e-12,
                "profile at ε = 1: {last}, expected {want}"
            );
        }
        match c["kind"].as_str().unwrap() {
            "SelfCheck" => {
                selfs += 1;
                for l in ls {
                    for v in l["mms"].as_array().unwrap() {
                        assert_eq!(
                            v.as_f64().unwrap(),
                            1.0,
                            "self-check below 1 in {}",
                            l["layer"]
                        );
                    }
                }
            }
            "Null" => {
                for l in ls {
                    nulls.push(l["mms"][4].as_f64().unwrap());
                }
            }
            "Pair" => pairs.push((c["seed_a"].as_u64().unwrap(), c["seed_b"].as_u64().unwrap())),
            k => panic!("unknown comparison kind {k}"),
        }
    }
    pairs.sort();
    assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 2)]);
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
    let _ = std::fs::remove_dir_all(&tmp);
}
