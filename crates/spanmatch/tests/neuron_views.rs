//! "What matched neurons respond to": a planted neuron that only one class activates must show
//! only that class in its strip, for both nets, through the pieces `reproduce` uses (top inputs
//! tracked in the extraction pass, the engine's choice of groups, the PNG thumbnails).

use spanmatch_core::GramAccumulator;
use spanmatch_engine::analysis::{analyse_pair, LayerLabel, PairInput};
use spanmatch_engine::results::{Comparison, ComparisonKind, ViewKind};
use spanmatch_engine::views::{neuron_views, InputInfo, TopItem, ViewOptions};
use spanmatch_engine::Options;
use spanmatch_report::neurons::{decode_png_base64, encode_png_base64};
use spanmatch_train::data::{Dataset, DatasetKind};
use spanmatch_train::extract::{extract, CollectSink, TeeSink};
use spanmatch_train::model::ModelConfig;
use spanmatch_train::net::Net;
use spanmatch_train::topk::TopInputs;

const N: usize = 240;
const PLANTED_CLASS: u8 = 2;

/// 28x28 images of 3 classes, labels i % 3. Every image has faint noise; class 2 alone has a
/// bright 4x4 patch in the top-left corner.
fn dataset() -> Dataset {
    let mut state = 12345u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut images = vec![0u8; N * 784];
    let mut labels = Vec::with_capacity(N);
    for i in 0..N {
        let label = (i % 3) as u8;
        labels.push(label);
        let img = &mut images[i * 784..(i + 1) * 784];
        for p in img.iter_mut() {
            *p = (next() % 60) as u8;
        }
        if label == PLANTED_CLASS {
            for r in 0..4 {
                for c in 0..4 {
                    img[r * 28 + c] = 200 + (next() % 56) as u8;
                }
            }
        }
    }
    Dataset::from_parts(DatasetKind::FashionMnist, images, labels, [1, 28, 28], 3).unwrap()
}

/// An MLP (784 -> 6 -> 3) of seed `seed` whose hidden neuron `planted` reads only the patch.
fn planted_net(seed: u64, planted: usize) -> Net {
    let cfg = ModelConfig::from_name("mlp", [1, 28, 28], 3, 1.0, Some(vec![6])).unwrap();
    let mut net = Net::new(&cfg, seed).unwrap();
    let mut state = net.state(false).unwrap();
    for (name, shape, values) in state.iter_mut() {
        if name == "classifier.0.weight" {
            assert_eq!(shape, &vec![6, 784]);
            let row = &mut values[planted * 784..(planted + 1) * 784];
            row.fill(0.0);
            for r in 0..4 {
                for c in 0..4 {
                    row[r * 28 + c] = 1.0;
                }
            }
        }
        if name == "classifier.0.bias" {
            values[planted] = 0.0;
        }
    }
    net.load_state(|name| {
        Ok(state
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, v)| (s.clone(), v.clone())))
    })
    .unwrap();
    net
}

#[test]
fn a_planted_class_neuron_shows_only_its_class_in_both_nets() {
    let data = dataset();
    let (a, b) = (planted_net(1, 2), planted_net(2, 4));
    let mut tops = TopInputs::new(8, &[0, 1]).unwrap();
    let mut acts = CollectSink::default();
    extract(
        &[&a, &b],
        &data,
        50,
        None,
        &mut TeeSink(vec![&mut acts, &mut tops]),
    )
    .unwrap();

    // The statistics and the analysis with simple matches, as reproduce does.
    let layer = "classifier.1";
    let (xa, xb) = (
        &acts.data[&(0, layer.into())],
        &acts.data[&(1, layer.into())],
    );
    let mut acc = GramAccumulator::new(6, 6);
    acc.push_pair_f32(xa, xb).unwrap();
    let opts = Options {
        eps: vec![0.3],
        simple: Some(0.3),
        ..Options::default()
    };
    let result = analyse_pair(
        PairInput::new(LayerLabel::named(layer), acc.finish()),
        &opts,
        &mut spanmatch_engine::Quiet,
    )
    .unwrap();
    let pair = Comparison {
        seed_a: Some(1),
        seed_b: Some(2),
        ..Comparison::new(ComparisonKind::Pair, vec![result])
    };
    let info = InputInfo {
        image_shape: data.shape,
        class_names: vec!["zero".into(), "one".into(), "patch".into()],
        response: TopInputs::RESPONSE.into(),
    };
    let views = neuron_views(
        &pair,
        0.3,
        tops.k(),
        &ViewOptions::default(),
        info,
        |net_a, l, n| {
            tops.top(usize::from(!net_a), l, n)
                .unwrap()
                .iter()
                .map(|t| TopItem {
                    value: f64::from(t.value),
                    input: t.image,
                    position: None,
                })
                .collect()
        },
        |i| {
            Ok((
                usize::from(data.labels[i]),
                encode_png_base64(&data.images[i * 784..(i + 1) * 784], data.shape)?,
            ))
        },
    )
    .unwrap();

    // The planted neurons (A #2, B #4) match one to one (identical activation vectors).
    let groups = &views.layers[0].groups;
    let g = groups
        .iter()
        .find(|g| g.a.iter().any(|n| n.neuron == 2) && g.b.iter().any(|n| n.neuron == 4))
        .expect("the planted neurons are shown as a match");
    assert!(matches!(g.kind, ViewKind::OneToOne | ViewKind::Simple));
    assert!(g.sine.unwrap() < 1e-6, "sine {:?}", g.sine);
    let labels = |inputs: &[usize]| -> Vec<u8> { inputs.iter().map(|&i| data.labels[i]).collect() };
    for n in
        g.a.iter()
            .filter(|n| n.neuron == 2)
            .chain(g.b.iter().filter(|n| n.neuron == 4))
    {
        assert_eq!(n.inputs.len(), 8);
        assert_eq!(
            labels(&n.inputs),
            vec![PLANTED_CLASS; 8],
            "neuron {}",
            n.neuron
        );
        assert!(n.values.windows(2).all(|w| w[0] >= w[1]), "best first");
        // Each thumbnail is exactly that test image.
        for &i in &n.inputs {
            let input = views.inputs.iter().find(|x| x.index == i).unwrap();
            assert_eq!(input.label, Some(usize::from(PLANTED_CLASS)));
            let (pixels, shape) = decode_png_base64(&input.png).unwrap();
            assert_eq!(shape, [1, 28, 28]);
            assert_eq!(pixels, data.images[i * 784..(i + 1) * 784]);
        }
    }
    // The strongest responses are the brightest patches: checked against a direct computation.
    let patch = |i: usize| -> u32 {
        (0..16)
            .map(|p| u32::from(data.images[i * 784 + (p / 4) * 28 + p % 4]))
            .sum()
    };
    let best = g.a.iter().find(|n| n.neuron == 2).unwrap().inputs[0];
    assert!((0..N).all(|i| patch(i) <= patch(best)));
    // Every input in the views is stored once, in increasing order.
    assert!(views.inputs.windows(2).all(|w| w[0].index < w[1].index));
    // The unmatched contrast group, when present, holds neurons outside the match at ε.
    for g in groups.iter().filter(|g| g.kind == ViewKind::Unmatched) {
        for n in g.a.iter().chain(&g.b) {
            assert!(n.threshold.unwrap() > 0.3);
        }
    }
}
