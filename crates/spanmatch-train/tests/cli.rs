//! End-to-end through the CLI entry points on generated IDX files.

use std::io::Write;

use clap::{CommandFactory, Parser};
use spanmatch_train::rng::Rng;
use spanmatch_train::{load_checkpoint, run_extract, run_train, ExtractArgs, TrainArgs};

#[derive(Parser)]
struct T {
    #[command(flatten)]
    a: TrainArgs,
}

#[derive(Parser)]
struct E {
    #[command(flatten)]
    a: ExtractArgs,
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_split(dir: &std::path::Path, prefix: &str, n: usize, seed: u64) {
    let mut r = Rng::new(seed);
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
                let on = x / 3 == k;
                img.push(if on { 220 } else { r.below(60) as u8 });
            }
        }
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte.gz")), gz(&img)).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), gz(&lab)).unwrap();
}

#[test]
fn help_texts_are_complete() {
    for cmd in [T::command(), E::command()] {
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "--{} has no help text",
                arg.get_id()
            );
        }
    }
}

#[test]
fn train_then_extract_npz() {
    let data = tempfile::tempdir().unwrap();
    write_split(data.path(), "train", 60, 1);
    write_split(data.path(), "t10k", 20, 2);
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let d = data.path().to_str().unwrap();
    let r = run.to_str().unwrap();
    let t = T::try_parse_from([
        "t",
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
    ])
    .unwrap();
    run_train(&t.a).unwrap();
    let tn = load_checkpoint(&run).unwrap();
    assert_eq!(tn.history.len(), 1);
    assert!(tn.history[0].test_accuracy.is_some());
    // Running again is a no-op (resume finds the run finished).
    run_train(&t.a).unwrap();

    let npz = out.path().join("a.npz");
    let e = E::try_parse_from([
        "e",
        "--checkpoint",
        r,
        "--out",
        npz.to_str().unwrap(),
        "--data-dir",
        d,
        "--batch-size",
        "7",
        "--layers",
        "features.1,classifier.1",
    ])
    .unwrap();
    run_extract(&e.a).unwrap();
    let mut z = npyz::npz::NpzArchive::open(&npz).unwrap();
    let a = z.by_name("features.1").unwrap().unwrap().shape().to_vec();
    assert_eq!(a, [20, 16, 28, 28]);
    let c = z.by_name("classifier.1").unwrap().unwrap().shape().to_vec();
    assert_eq!(c, [20, 8]);
    assert!(z.by_name("features.4").unwrap().is_none());

    // Mismatched counts and unknown layers are reported clearly.
    let bad = E::try_parse_from([
        "e",
        "--checkpoint",
        r,
        "--checkpoint",
        r,
        "--out",
        "x.npz",
        "--data-dir",
        d,
    ])
    .unwrap();
    assert!(format!("{:#}", run_extract(&bad.a).unwrap_err()).contains("one output per checkpoint"));
    let bad = E::try_parse_from([
        "e",
        "--checkpoint",
        r,
        "--out",
        npz.to_str().unwrap(),
        "--data-dir",
        d,
        "--layers",
        "nope",
    ])
    .unwrap();
    assert!(format!("{:#}", run_extract(&bad.a).unwrap_err()).contains("unknown layer"));
}
