//! Seeded training: determinism, learning, checkpoints and resume.

mod common;

use common::{separable, tiny_cnn, with_aug};
use spanmatch_train::model::{Arch, ModelConfig};
use spanmatch_train::net::{Net, SgdStep};
use spanmatch_train::rng::Rng;
use spanmatch_train::train::{evaluate, load_checkpoint, train_on, TrainConfig, TrainOptions};
use spanmatch_train::DatasetKind;

fn config(model: ModelConfig, seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset: DatasetKind::FashionMnist,
        model_name: "tiny".into(),
        model,
        seed,
        epochs,
        batch_size: 16,
        lr: 0.05,
        lr_milestones: vec![2],
        lr_gamma: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        train_limit: None,
        test_limit: None,
    }
}

fn weights(net: &Net) -> Vec<(String, Vec<f32>)> {
    net.state(true)
        .unwrap()
        .into_iter()
        .map(|(n, _, d)| (n, d))
        .collect()
}

#[test]
fn same_seed_same_weights_different_seed_different() {
    // BN + dropout + augmentation: every random path is exercised.
    let data = with_aug(separable(64, 4, 3, 8, 1));
    let model = tiny_cnn(3, 8, 4, true, 0.5);
    let opts = TrainOptions::default();
    let a = train_on(&config(model.clone(), 7, 2), &data, None, &opts).unwrap();
    let b = train_on(&config(model.clone(), 7, 2), &data, None, &opts).unwrap();
    let c = train_on(&config(model, 8, 2), &data, None, &opts).unwrap();
    let (wa, wb, wc) = (weights(&a.net), weights(&b.net), weights(&c.net));
    assert_eq!(wa.len(), wb.len());
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= 1e-6, "{n}: max diff {d}");
    }
    let differs = wa
        .iter()
        .zip(&wc)
        .any(|((_, x), (_, y))| x.iter().zip(y).any(|(p, q)| (p - q).abs() > 1e-4));
    assert!(differs, "different seeds gave the same weights");
    // Initialisation alone is seeded too.
    let m = tiny_cnn(1, 8, 2, false, 0.0);
    assert_eq!(
        weights(&Net::new(&m, 3).unwrap()),
        weights(&Net::new(&m, 3).unwrap())
    );
    assert_ne!(
        weights(&Net::new(&m, 3).unwrap()),
        weights(&Net::new(&m, 4).unwrap())
    );
}

#[test]
fn vgg_training_is_bitwise_reproducible() {
    // Larger convs/matmuls go through the multi-threaded GEMM paths.
    let data = with_aug(separable(96, 4, 3, 32, 11));
    let model = ModelConfig::from_name("vgg11_bn", [3, 32, 32], 4, 0.25, Some(vec![64])).unwrap();
    let mut cfg = config(model, 1, 1);
    cfg.batch_size = 32;
    let a = train_on(&cfg, &data, None, &TrainOptions::default()).unwrap();
    let b = train_on(&cfg, &data, None, &TrainOptions::default()).unwrap();
    assert_eq!(weights(&a.net), weights(&b.net));
}

#[test]
fn init_statistics() {
    let m = tiny_cnn(3, 8, 4, true, 0.0);
    let net = Net::new(&m, 0).unwrap();
    for (name, shape, d) in net.state(false).unwrap() {
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| v as f64).sum::<f64>() / n;
        let sd = (d.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        if name == "features.0.weight" {
            let want = (2.0 / (shape[1] * 9) as f64).sqrt();
            assert!(
                (sd - want).abs() < 0.25 * want,
                "{name}: sd {sd} want {want}"
            );
        } else if name.starts_with("classifier") && name.ends_with("weight") {
            assert!((sd - 0.01).abs() < 0.003, "{name}: sd {sd}");
        } else if name.ends_with("bias") || name.ends_with("running_mean") {
            assert!(d.iter().all(|&v| v == 0.0), "{name}");
        } else if name.ends_with("running_var") || name == "features.1.weight" {
            assert!(d.iter().all(|&v| v == 1.0), "{name}");
        }
    }
}

#[test]
fn tiny_net_learns_separable_data() {
    let train = separable(256, 4, 1, 8, 2);
    let test = separable(128, 4, 1, 8, 3);
    let model = tiny_cnn(1, 8, 4, false, 0.0);
    let mut cfg = config(model.clone(), 0, 3);
    cfg.lr_milestones = vec![];
    let tn = train_on(&cfg, &train, Some(&test), &TrainOptions::default()).unwrap();
    let acc = evaluate(&tn.net, &test, 50).unwrap().accuracy;
    assert!(acc > 0.6, "accuracy {acc} not above chance (0.25)");
    assert_eq!(tn.history.len(), 3);
    assert_eq!(tn.history[2].test_accuracy, Some(acc));
    // An MLP and a plain net (BN, global pooling, strided convs) also learn.
    let mlp = ModelConfig {
        arch: Arch::Mlp {
            hidden: vec![32],
            dropout: 0.0,
        },
        input: [1, 8, 8],
        num_classes: 4,
    };
    let tn = train_on(&config(mlp, 0, 3), &train, None, &TrainOptions::default()).unwrap();
    assert!(evaluate(&tn.net, &test, 64).unwrap().accuracy > 0.6);
}

#[test]
fn plain_net_steps_reduce_loss() {
    let model = ModelConfig::from_name("plain20", [3, 8, 8], 4, 0.25, None).unwrap();
    let data = separable(32, 4, 3, 8, 4);
    let mut net = Net::new(&model, 0).unwrap();
    let idx: Vec<usize> = (0..32).collect();
    let mut x = Vec::new();
    data.batch(&idx, None, &mut x);
    let hp = SgdStep {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut rng = Rng::new(0);
    let first = net
        .train_step(x.clone(), &data.labels, hp, &mut rng)
        .unwrap()
        .loss;
    let mut last = first;
    for _ in 0..15 {
        last = net
            .train_step(x.clone(), &data.labels, hp, &mut rng)
            .unwrap()
            .loss;
    }
    assert!(last < first, "loss {first} -> {last}");
}

#[test]
fn checkpoint_round_trip_and_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = with_aug(separable(48, 4, 1, 8, 5));
    let model = tiny_cnn(1, 8, 4, true, 0.0);
    let full = train_on(
        &config(model.clone(), 3, 3),
        &data,
        None,
        &TrainOptions::default(),
    )
    .unwrap();
    let opts = TrainOptions {
        out_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    // "Interrupted" after 2 epochs, then resumed to 3.
    let part = train_on(&config(model.clone(), 3, 2), &data, None, &opts).unwrap();
    let loaded = load_checkpoint(dir.path()).unwrap();
    assert_eq!(weights(&loaded.net), weights(&part.net));
    assert_eq!(loaded.history.len(), part.history.len());
    for (a, b) in loaded.history.iter().zip(&part.history) {
        assert_eq!((a.epoch, a.test_accuracy), (b.epoch, b.test_accuracy));
        assert!((a.train_loss - b.train_loss).abs() < 1e-9);
    }
    assert_eq!(loaded.config, part.config);
    let resumed = train_on(&config(model.clone(), 3, 3), &data, None, &opts).unwrap();
    assert_eq!(resumed.history.len(), 3);
    for ((n, x), (_, y)) in weights(&full.net).iter().zip(&weights(&resumed.net)) {
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= 1e-6, "{n}: resumed differs by {d}");
    }
    // The file form of the path works too; a different run in the same dir is refused.
    load_checkpoint(&dir.path().join("checkpoint.safetensors")).unwrap();
    let e = train_on(&config(model, 4, 3), &data, None, &opts)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("different run"), "{e:#}");
    // Eval of the loaded net equals eval of the trained one.
    let a = evaluate(&loaded.net, &data, 7).unwrap();
    let b = evaluate(&part.net, &data, 48).unwrap();
    assert!((a.accuracy - b.accuracy).abs() < 1e-12 && (a.loss - b.loss).abs() < 1e-4);
}

#[test]
fn presets() {
    let r = TrainConfig::reference("vgg16", 0).unwrap();
    assert_eq!((r.lr, r.epochs, r.batch_size), (0.05, 160, 128));
    assert_eq!(r.lr_milestones, vec![80, 120]);
    assert!((r.lr_at(79) - 0.05).abs() < 1e-12);
    assert!((r.lr_at(80) - 0.005).abs() < 1e-12);
    assert!((r.lr_at(159) - 0.0005).abs() < 1e-12);
    let r = TrainConfig::reference("plain20", 0).unwrap();
    assert_eq!(r.lr, 0.1);
    assert_eq!(r.weight_decay, 5e-4);
    let f = TrainConfig::fast_default(0).unwrap();
    assert_eq!(f.dataset, DatasetKind::FashionMnist);
}

fn bits(net: &Net) -> Vec<(String, Vec<u32>)> {
    net.state(false)
        .unwrap()
        .into_iter()
        .map(|(n, _, d)| (n, d.into_iter().map(f32::to_bits).collect()))
        .collect()
}

#[test]
fn initial_net_recreates_the_start_of_training_bitwise() {
    use spanmatch_train::train::{initial_net, state_digest};
    let dir = tempfile::tempdir().unwrap();
    let data = with_aug(separable(48, 4, 1, 8, 6));
    let model = tiny_cnn(1, 8, 4, true, 0.2);
    let opts = TrainOptions {
        out_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let trained = train_on(&config(model.clone(), 11, 2), &data, None, &opts).unwrap();
    let init = initial_net(&trained.config).unwrap();
    // Training recorded the digest of the net it started from: the re-created one has it.
    assert_eq!(trained.init_digest, Some(state_digest(&init).unwrap()));
    // Zero epochs of training return the initial net itself: bitwise equal.
    let zero = train_on(
        &config(model.clone(), 11, 0),
        &data,
        None,
        &TrainOptions::default(),
    )
    .unwrap();
    assert_eq!(bits(&zero.net), bits(&init));
    assert_eq!(zero.init_digest, trained.init_digest);
    // Training moved every weight tensor away from it; another seed starts elsewhere.
    assert_ne!(bits(&trained.net), bits(&init));
    assert_ne!(
        state_digest(&trained.net).unwrap(),
        state_digest(&init).unwrap()
    );
    let other = initial_net(&config(model.clone(), 12, 2)).unwrap();
    assert_ne!(state_digest(&other).unwrap(), state_digest(&init).unwrap());
    // The digest travels in the checkpoint and survives a resume.
    let loaded = load_checkpoint(dir.path()).unwrap();
    assert_eq!(loaded.init_digest, trained.init_digest);
    let resumed = train_on(&config(model, 11, 3), &data, None, &opts).unwrap();
    assert_eq!(resumed.init_digest, trained.init_digest);
}
