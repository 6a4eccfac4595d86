//! Streaming extraction: batch-size invariance, names/shapes, npz export.

mod common;

use common::{separable, tiny_cnn};
use spanmatch_train::extract::{extract, CollectSink, NpzWriter, TeeSink};
use spanmatch_train::model::{layer_names, LayerKind, ModelConfig};
use spanmatch_train::net::Net;
use spanmatch_train::ActivationSink;

#[test]
fn streamed_equals_one_batch_and_shapes_match() {
    let data = separable(37, 4, 3, 8, 9);
    let model = tiny_cnn(3, 8, 4, true, 0.3);
    let a = Net::new(&model, 1).unwrap();
    let b = Net::new(&model, 2).unwrap();
    let mut one = CollectSink::default();
    extract(&[&a, &b], &data, 1000, None, &mut one).unwrap();
    let mut streamed = CollectSink::default();
    extract(&[&a, &b], &data, 5, None, &mut streamed).unwrap();
    let names = layer_names(&model).unwrap();
    assert_eq!(names, ["features.2", "features.6", "classifier.1"]);
    let infos = model.layers().unwrap();
    for net in 0..2 {
        for l in &infos {
            let key = (net, l.name.clone());
            let x = &one.data[&key];
            let y = &streamed.data[&key];
            assert_eq!(x.len(), 37 * l.numel(), "{}", l.name);
            assert_eq!(streamed.shapes[&key], l.shape);
            let d = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(d < 1e-5, "{}: streamed differs by {d}", l.name);
            assert!(x.iter().all(|&v| v >= 0.0), "post-ReLU values must be >= 0");
        }
    }
    assert_eq!(infos[0].shape, vec![4, 8, 8]);
    assert_eq!(infos[0].kind, LayerKind::Conv);
    assert_eq!(infos[1].shape, vec![6, 4, 4]);
    assert_eq!(infos[2].shape, vec![12]);
    assert_eq!(infos[2].kind, LayerKind::Fc);
    // Different nets give different activations.
    assert_ne!(
        one.data[&(0, "features.2".into())],
        one.data[&(1, "features.2".into())]
    );
}

#[test]
fn vgg_shapes_at_width_quarter() {
    let model =
        ModelConfig::from_name("vgg11_bn", [3, 32, 32], 10, 0.25, Some(vec![32, 32])).unwrap();
    let net = Net::new(&model, 0).unwrap();
    let data = separable(3, 2, 3, 32, 1);
    let mut s = CollectSink::default();
    extract(&[&net], &data, 2, None, &mut s).unwrap();
    for l in model.layers().unwrap() {
        assert_eq!(s.shapes[&(0, l.name.clone())], l.shape, "{}", l.name);
    }
    assert_eq!(s.shapes[&(0, "features.2".into())], vec![16, 32, 32]);
    assert_eq!(s.shapes[&(0, "classifier.4".into())], vec![32]);
}

#[test]
fn unknown_layer_is_a_clear_error() {
    let model = tiny_cnn(1, 8, 2, false, 0.0);
    let net = Net::new(&model, 0).unwrap();
    let data = separable(4, 2, 1, 8, 1);
    let mut s = CollectSink::default();
    let e = extract(&[&net], &data, 2, Some(&["features.3".to_string()]), &mut s).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("features.3") && e.contains("features.1"), "{e}");
}

#[test]
fn npz_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = separable(11, 2, 1, 8, 2);
    let model = tiny_cnn(1, 8, 2, false, 0.0);
    let net = Net::new(&model, 5).unwrap();
    let layers = model.layers().unwrap();
    let path = dir.path().join("acts.npz");
    let mut w = NpzWriter::create(&path, 0, &layers, data.len()).unwrap();
    let mut mem = CollectSink::default();
    {
        let mut tee = TeeSink(vec![&mut w as &mut dyn ActivationSink, &mut mem]);
        extract(&[&net], &data, 4, None, &mut tee).unwrap();
    }
    drop(w);
    assert!(!dir.path().join("acts.npz.parts").exists());
    let mut npz = npyz::npz::NpzArchive::open(&path).unwrap();
    for l in &layers {
        let arr = npz.by_name(&l.name).unwrap().unwrap();
        let mut want_shape = vec![11u64];
        want_shape.extend(l.shape.iter().map(|&d| d as u64));
        assert_eq!(arr.shape(), &want_shape[..], "{}", l.name);
        let v: Vec<f32> = arr.into_vec().unwrap();
        assert_eq!(v, mem.data[&(0, l.name.clone())], "{}", l.name);
    }
}

#[test]
fn npy_header_is_aligned() {
    for shape in [vec![10000usize, 64, 32, 32], vec![5], vec![3, 512]] {
        let h = spanmatch_train::extract::npy_header(&shape);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(*h.last().unwrap(), b'\n');
    }
}

#[test]
fn extraction_pass_scores_the_nets_like_evaluate() {
    use spanmatch_train::train::{evaluate, train_on, TrainConfig, TrainOptions};
    // A briefly trained net (accuracy well away from chance) and an untrained one, with a batch
    // size that does not divide the data: the single pass must give evaluate's numbers exactly.
    let train = separable(256, 4, 1, 8, 2);
    let data = separable(45, 4, 1, 8, 3);
    let model = tiny_cnn(1, 8, 4, false, 0.0);
    let config = TrainConfig {
        dataset: spanmatch_train::DatasetKind::FashionMnist,
        model_name: "tiny".into(),
        model: model.clone(),
        seed: 4,
        epochs: 3,
        batch_size: 16,
        lr: 0.05,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        train_limit: None,
        test_limit: None,
    };
    let trained = train_on(&config, &train, None, &TrainOptions::default()).unwrap();
    let fresh = Net::new(&model, 9).unwrap();
    let mut sink = CollectSink::default();
    let evals = extract(&[&trained.net, &fresh], &data, 7, None, &mut sink).unwrap();
    assert_eq!(evals.len(), 2);
    let want = [
        evaluate(&trained.net, &data, 7).unwrap(),
        evaluate(&fresh, &data, 7).unwrap(),
    ];
    assert_eq!(evals, want);
    assert!(
        evals[0].accuracy > 0.5,
        "trained net should beat chance: {:?}",
        evals[0]
    );
    // Only some layers selected: the logits (and so the scores) do not change.
    let mut s = CollectSink::default();
    let some = extract(
        &[&trained.net],
        &data,
        7,
        Some(&[model.layers().unwrap()[1].name.clone()]),
        &mut s,
    )
    .unwrap();
    assert_eq!(some[0], want[0]);
}
