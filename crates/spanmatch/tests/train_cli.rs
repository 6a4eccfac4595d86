//! `spanmatch train` and `spanmatch extract` end to end on generated IDX files.

mod common;

use common::{fail, ok, scratch};
use std::io::Write;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// An IDX split where class k lights the vertical band x / 3 == k.
fn write_split(dir: &std::path::Path, prefix: &str, n: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut img = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    let mut lab = vec![0, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let k = i % 10;
        lab.push(k as u8);
        for _y in 0..28 {
            for x in 0..28 {
                img.push(if x / 3 == k { 220 } else { (next() % 60) as u8 });
            }
        }
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte.gz")), gz(&img)).expect("write");
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), gz(&lab)).expect("write");
}

#[test]
fn train_then_extract_npz() {
    let base = scratch("train_cli", "train_then_extract");
    let data = base.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    write_split(&data, "train", 60, 1);
    write_split(&data, "t10k", 20, 2);
    let run = base.join("run");
    let (d, r) = (data.to_str().expect("utf8"), run.to_str().expect("utf8"));
    let train = [
        "train",
        "--data-dir",
        d,
        "--out",
        r,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
        "--model",
        "small-cnn",
        "--hidden",
        "8",
    ];
    ok(&train);
    assert!(run.is_dir());
    // Running again is a no-op (resume finds the run finished).
    ok(&train);

    let npz = base.join("a.npz");
    let n = npz.to_str().expect("utf8");
    ok(&[
        "extract",
        "--checkpoint",
        r,
        "--out",
        n,
        "--data-dir",
        d,
        "--batch-size",
        "7",
        "--layers",
        "features.1,classifier.1",
    ]);
    // The file holds the two layers with the right shapes (read back through compare).
    let json = base.join("self.json");
    ok(&["compare", n, n, "--json", json.to_str().expect("utf8")]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("json");
    let shapes: Vec<(String, serde_json::Value)> = report["comparisons"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or("").to_string(),
                l["shape_a"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            (
                "features.1".to_string(),
                serde_json::json!([20, 16, 28, 28])
            ),
            ("classifier.1".to_string(), serde_json::json!([20, 8])),
        ]
    );

    // Mismatched counts and unknown layers are reported clearly.
    let e = fail(&[
        "extract",
        "--checkpoint",
        r,
        "--checkpoint",
        r,
        "--out",
        "x.npz",
        "--data-dir",
        d,
    ]);
    assert!(e.contains("one output per checkpoint"), "{e}");
    let e = fail(&[
        "extract",
        "--checkpoint",
        r,
        "--out",
        n,
        "--data-dir",
        d,
        "--layers",
        "nope",
    ]);
    assert!(e.contains("unknown layer"), "{e}");
    let e = fail(&["train", "--dataset", "imagenet", "--out", r]);
    assert!(e.contains("imagenet") && e.contains("fashion-mnist"), "{e}");
}
