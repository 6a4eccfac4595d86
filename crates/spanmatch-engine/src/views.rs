//! Which neurons to show with their top inputs ("what matched neurons respond to").
//!
//! For one layer pair whose simple matches were computed at ε, [`select_groups`] picks:
//! * the `largest` largest simple matches (by size |X′| + |Y′|, in the order of the list);
//! * the `one_to_one` simple matches of one neuron per net with the smallest sines, not already
//!   picked;
//! * for contrast, one neuron of each net outside the maximum match at ε (threshold ε*(v) > ε),
//!   drawn with a seeded generator.
//!
//! Within a group at most `per_side` neurons of a net are shown: those with the smallest
//! thresholds ε*(v) (the most firmly matched), ties by index. [`layer_views`] then attaches each
//! shown neuron's top inputs, given by the front that tracked them during its pass:
//! `reproduce` passes its own tracker ([`neuron_views`]); any other results file carries them in
//! its layer records' `top_inputs` ([`views_from_records`]), and the caller fills in the inputs
//! themselves (images or token contexts), which only it can read.
//!
//! [`shared_inputs`] is the one count of "inputs in both nets' strips" that the report and the
//! Python figure state.

use std::collections::BTreeSet;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::results::{
    Comparison, LayerRecord, LayerViews, NeuronTop, NeuronViews, TopInputsSide, ViewGroup,
    ViewInput, ViewKind,
};
use spanmatch_core::rng::SplitMix64;

/// How many groups and neurons to show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewOptions {
    /// Largest simple matches shown per layer.
    pub largest: usize,
    /// One-to-one simple matches (smallest sines) shown per layer.
    pub one_to_one: usize,
    /// Neurons shown per net and group.
    pub per_side: usize,
    /// Seed of the draw of the unmatched neurons.
    pub seed: u64,
}

impl Default for ViewOptions {
    fn default() -> Self {
        Self {
            largest: 5,
            one_to_one: 5,
            per_side: 4,
            seed: 0,
        }
    }
}

/// A group chosen by [`select_groups`], before the top inputs are attached.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupChoice {
    /// Why it is shown.
    pub kind: ViewKind,
    /// Net A's neurons shown.
    pub a: Vec<usize>,
    /// Net B's neurons shown.
    pub b: Vec<usize>,
    /// Size of the whole group in net A.
    pub size_a: usize,
    /// Size of the whole group in net B.
    pub size_b: usize,
    /// The match's sine, when known.
    pub sine: Option<f64>,
}

fn threshold(t: &[Option<f64>], i: usize) -> f64 {
    t.get(i).copied().flatten().unwrap_or(f64::INFINITY)
}

/// The `n` neurons of `ids` with the smallest thresholds, ties by index, in increasing index.
fn firmest(ids: &[usize], thresholds: &[Option<f64>], n: usize) -> Vec<usize> {
    let mut v = ids.to_vec();
    v.sort_by(|&x, &y| {
        threshold(thresholds, x)
            .total_cmp(&threshold(thresholds, y))
            .then(x.cmp(&y))
    });
    v.truncate(n);
    v.sort_unstable();
    v
}

/// A live neuron with threshold above ε, drawn at random; `None` when there is none.
fn unmatched(thresholds: &[Option<f64>], eps: f64, rng: &mut SplitMix64) -> Option<usize> {
    let pool: Vec<usize> = thresholds
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_some_and(|t| t > eps))
        .map(|(i, _)| i)
        .collect();
    if pool.is_empty() {
        None
    } else {
        Some(pool[(rng.next_u64() % pool.len() as u64) as usize])
    }
}

/// The groups to show for one layer pair (see the module docs); empty when its simple matches
/// were not computed. `salt` varies the draw of the unmatched neurons between layers.
pub fn select_groups(result: &LayerRecord, opts: &ViewOptions, salt: u64) -> Vec<GroupChoice> {
    let Some(simple) = &result.simple else {
        return Vec::new();
    };
    let (ta, tb) = (&result.thresholds_a, &result.thresholds_b);
    let mut out = Vec::new();
    let mut taken = vec![false; simple.matches.len()];
    for (i, m) in simple.matches.iter().enumerate().take(opts.largest) {
        taken[i] = true;
        out.push(GroupChoice {
            kind: ViewKind::Simple,
            a: firmest(&m.a, ta, opts.per_side),
            b: firmest(&m.b, tb, opts.per_side),
            size_a: m.a.len(),
            size_b: m.b.len(),
            sine: m.sine,
        });
    }
    // One-to-one matches, smallest sine first (older results without sines: the larger of the
    // two thresholds, which equals the sine for a one-to-one match).
    let mut ones: Vec<(f64, usize)> = simple
        .matches
        .iter()
        .enumerate()
        .filter(|(i, m)| !taken[*i] && m.a.len() == 1 && m.b.len() == 1)
        .map(|(i, m)| {
            let s = m
                .sine
                .unwrap_or_else(|| threshold(ta, m.a[0]).max(threshold(tb, m.b[0])));
            (s, i)
        })
        .collect();
    ones.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    for &(s, i) in ones.iter().take(opts.one_to_one) {
        let m = &simple.matches[i];
        out.push(GroupChoice {
            kind: ViewKind::OneToOne,
            a: m.a.clone(),
            b: m.b.clone(),
            size_a: 1,
            size_b: 1,
            sine: Some(s),
        });
    }
    let mut rng = SplitMix64::new(opts.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let ua = unmatched(ta, simple.eps, &mut rng);
    let ub = unmatched(tb, simple.eps, &mut rng);
    if ua.is_some() || ub.is_some() {
        out.push(GroupChoice {
            kind: ViewKind::Unmatched,
            a: ua.into_iter().collect(),
            b: ub.into_iter().collect(),
            size_a: usize::from(ua.is_some()),
            size_b: usize::from(ub.is_some()),
            sine: None,
        });
    }
    out
}

/// One of a neuron's top inputs: its response, the input's index and, for tokens, the position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopItem {
    /// The neuron's response to the input.
    pub value: f64,
    /// The input's index in data order.
    pub input: usize,
    /// The position (token) of the response, when tracked.
    pub position: Option<usize>,
}

/// The views of one layer: [`select_groups`] with each shown neuron's top inputs from `top`
/// (`top(is_net_a, neuron)`, best first).
pub fn layer_views(
    result: &LayerRecord,
    opts: &ViewOptions,
    salt: u64,
    mut top: impl FnMut(bool, usize) -> Vec<TopItem>,
) -> LayerViews {
    let mut neuron = |net_a: bool, n: usize| {
        let t = top(net_a, n);
        let thresholds = if net_a {
            &result.thresholds_a
        } else {
            &result.thresholds_b
        };
        let positions: Vec<usize> = t.iter().filter_map(|x| x.position).collect();
        NeuronTop {
            neuron: n,
            threshold: thresholds.get(n).copied().flatten(),
            inputs: t.iter().map(|x| x.input).collect(),
            values: t.iter().map(|x| x.value).collect(),
            // All or none: a neuron's strip is of tokens or of images.
            positions: if positions.len() == t.len() {
                positions
            } else {
                Vec::new()
            },
        }
    };
    let groups = select_groups(result, opts, salt)
        .into_iter()
        .map(|g| ViewGroup {
            kind: g.kind,
            size_a: g.size_a,
            size_b: g.size_b,
            sine: g.sine,
            a: g.a.iter().map(|&n| neuron(true, n)).collect(),
            b: g.b.iter().map(|&n| neuron(false, n)).collect(),
        })
        .collect();
    LayerViews {
        layer: result.name.clone(),
        groups,
    }
}

/// What [`neuron_views`] needs to know of the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct InputInfo {
    /// Shape of an input image `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Class names, by label.
    pub class_names: Vec<String>,
    /// How a neuron's response to an input is measured.
    pub response: String,
}

/// The views of one trained pair: [`layer_views`] for every layer of `pair` (simple matches at
/// ε computed), each shown neuron's top inputs from `top(is_net_a, layer, neuron)` (`k` at most,
/// best first), and every referenced input once from `input(index)` = (label, base64 PNG).
pub fn neuron_views(
    pair: &Comparison,
    eps: f64,
    k: usize,
    opts: &ViewOptions,
    info: InputInfo,
    mut top: impl FnMut(bool, &str, usize) -> Vec<TopItem>,
    mut input: impl FnMut(usize) -> anyhow::Result<(usize, String)>,
) -> anyhow::Result<NeuronViews> {
    let layers: Vec<LayerViews> = pair
        .layers
        .iter()
        .enumerate()
        .map(|(i, r)| layer_views(r, opts, i as u64, |a, n| top(a, &r.name, n)))
        .collect();
    let inputs = referenced_inputs(&layers)
        .into_iter()
        .map(|index| {
            let (label, png) = input(index)?;
            Ok(ViewInput {
                index,
                label: Some(label),
                png,
                position: None,
                context: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(NeuronViews {
        seed_a: pair.seed_a,
        seed_b: pair.seed_b,
        eps,
        k,
        per_side: opts.per_side,
        response: info.response,
        image_shape: info.image_shape,
        class_names: info.class_names,
        layers,
        inputs,
    })
}

/// The top inputs of one neuron from a record's `top_inputs` side: the valid entries (index ≥ 0,
/// a value), best first.
fn side_top(side: &TopInputsSide, neuron: usize) -> Vec<TopItem> {
    let Some(indices) = side.indices.get(neuron) else {
        return Vec::new();
    };
    let values = side.values.get(neuron);
    let positions = side.positions.as_ref().and_then(|p| p.get(neuron));
    indices
        .iter()
        .enumerate()
        .filter_map(|(j, &i)| {
            let value = values.and_then(|v| v.get(j).copied().flatten())?;
            let input = usize::try_from(i).ok()?;
            let position = positions
                .and_then(|p| p.get(j).copied())
                .and_then(|p| usize::try_from(p).ok());
            Some(TopItem {
                value,
                input,
                position,
            })
        })
        .collect()
}

/// The views of a results file's pair from its layer records' `top_inputs` (any front): for
/// every record with both `top_inputs` and simple matches, [`layer_views`]; the inputs are listed
/// once each (by index, and position for tokens) with no image or text yet: the caller, who can
/// read the inputs, fills in `png` or `context` (and `label`), then `image_shape` and
/// `class_names`.
///
/// Errors when no record has `top_inputs` (naming how to get them) or none has simple matches.
pub fn views_from_records(pair: &Comparison, opts: &ViewOptions) -> anyhow::Result<NeuronViews> {
    let with_top: Vec<(usize, &LayerRecord)> = pair
        .layers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.top_inputs.is_some())
        .collect();
    if with_top.is_empty() {
        bail!(
            "no layer of these results has top inputs: compute them in the comparison \
             (spanmatch.torch.compare(..., top_inputs=8), spanmatch.compare(..., top_inputs=8) on \
             arrays, or spanmatch reproduce)"
        );
    }
    let Some(eps) = with_top
        .iter()
        .find_map(|(_, r)| r.simple.as_ref().map(|s| s.eps))
    else {
        bail!(
            "no layer with top inputs has simple matches, which choose the neurons shown: compute \
             them too (simple=0.5)"
        );
    };
    let mut k = 0;
    let mut response = String::new();
    let layers: Vec<LayerViews> = with_top
        .iter()
        .filter(|(_, r)| r.simple.is_some())
        .filter_map(|&(i, r)| r.top_inputs.as_ref().map(|top| (i, r, top)))
        .map(|(i, r, top)| {
            k = k.max(top.k);
            if response.is_empty() {
                response = top.response.clone();
            }
            layer_views(r, opts, i as u64, |a, n| {
                side_top(if a { &top.a } else { &top.b }, n)
            })
        })
        .collect();
    let inputs = referenced_keys(&layers)
        .into_iter()
        .map(|(index, position)| ViewInput {
            index,
            label: None,
            png: String::new(),
            position,
            context: None,
        })
        .collect();
    Ok(NeuronViews {
        seed_a: pair.seed_a,
        seed_b: pair.seed_b,
        eps,
        k,
        per_side: opts.per_side,
        response,
        image_shape: [0, 0, 0],
        class_names: Vec::new(),
        layers,
        inputs,
    })
}

/// How many distinct inputs a group's strips show for net A, for net B, and for both: a quick
/// check of whether matched neurons respond to the same things. An input is an image, or a token
/// at its position in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedInputs {
    /// Distinct inputs in net A's strips.
    pub a: usize,
    /// Distinct inputs in net B's strips.
    pub b: usize,
    /// Inputs in both.
    pub both: usize,
}

/// [`SharedInputs`] of one group.
pub fn shared_inputs(g: &ViewGroup) -> SharedInputs {
    let side = |v: &[NeuronTop]| -> BTreeSet<(usize, Option<usize>)> {
        v.iter().flat_map(|n| n.keys()).collect()
    };
    let (sa, sb) = (side(&g.a), side(&g.b));
    SharedInputs {
        a: sa.len(),
        b: sb.len(),
        both: sa.intersection(&sb).count(),
    }
}

/// Every `(index, position)` referenced by the views, increasing, once.
pub fn referenced_keys(layers: &[LayerViews]) -> Vec<(usize, Option<usize>)> {
    let set: BTreeSet<(usize, Option<usize>)> = layers
        .iter()
        .flat_map(|l| &l.groups)
        .flat_map(|g| g.a.iter().chain(&g.b))
        .flat_map(|n| n.keys())
        .collect();
    set.into_iter().collect()
}

/// Every input index referenced by the views, increasing, once.
pub fn referenced_inputs(layers: &[LayerViews]) -> Vec<usize> {
    let mut v: Vec<usize> = layers
        .iter()
        .flat_map(|l| &l.groups)
        .flat_map(|g| g.a.iter().chain(&g.b))
        .flat_map(|n| n.inputs.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{SimpleMatchRecord, SimpleRecord};

    fn layer(
        matches: Vec<(Vec<usize>, Vec<usize>, f64)>,
        ta: Vec<f64>,
        tb: Vec<f64>,
    ) -> LayerRecord {
        LayerRecord {
            name: "l".into(),
            name_b: None,
            neurons_a: ta.len(),
            neurons_b: tb.len(),
            rows: 100,
            shape_a: vec![],
            shape_b: vec![],
            dead_a: vec![],
            dead_b: vec![],
            max_epsilon: 1.0,
            thresholds_a: ta.into_iter().map(Some).collect(),
            thresholds_b: tb.into_iter().map(Some).collect(),
            matches: vec![],
            profile: vec![],
            measures: None,
            simple: Some(SimpleRecord::new(
                0.5,
                false,
                true,
                1,
                0,
                matches
                    .into_iter()
                    .map(|(a, b, s)| SimpleMatchRecord {
                        a,
                        b,
                        count: 1,
                        sine: Some(s),
                    })
                    .collect(),
            )),
            centered: None,
            null: None,
            intervals: None,
            sampled: None,
            untrained: None,
            one_to_one_in_match: None,
            verdict: None,
            verdict_missing: vec![],
            top_inputs: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn views_from_records_read_top_inputs_and_count_shared_inputs() {
        use crate::results::{ComparisonKind, TopInputsRecord};
        let mut r = layer(
            vec![(vec![0], vec![1], 0.1), (vec![1], vec![0], 0.2)],
            vec![0.1, 0.2, 0.9],
            vec![0.2, 0.1],
        );
        let side = |rows: Vec<Vec<i64>>, pos: Option<Vec<Vec<i64>>>| TopInputsSide {
            values: rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|&i| (i >= 0).then_some(10.0 - i as f64))
                        .collect()
                })
                .collect(),
            indices: rows,
            positions: pos,
            positions_shape: None,
        };
        // A's neuron 0 saw inputs 4, 7; B's neuron 1 saw 7, 5 and one slot empty (-1).
        r.top_inputs = Some(TopInputsRecord {
            k: 3,
            a: side(vec![vec![4, 7, 9], vec![1, 2, 3], vec![0, 5, 6]], None),
            b: side(vec![vec![2, 1, 8], vec![7, 5, -1]], None),
            response: "max over positions".into(),
        });
        let mut plain = r.clone();
        plain.name = "no_top".into();
        plain.top_inputs = None;
        let pair = Comparison::new(ComparisonKind::Pair, vec![plain.clone(), r]);
        let opts = ViewOptions {
            largest: 1,
            one_to_one: 1,
            per_side: 4,
            seed: 3,
        };
        let v = views_from_records(&pair, &opts).unwrap();
        assert_eq!(v.layers.len(), 1, "only the record with top inputs");
        assert_eq!(
            (v.k, v.eps, v.response.as_str()),
            (3, 0.5, "max over positions")
        );
        assert_eq!((v.seed_a, v.seed_b), (None, None));
        let g = &v.layers[0].groups;
        assert_eq!(g[0].a[0].inputs, vec![4, 7, 9]);
        assert_eq!(g[0].b[0].inputs, vec![7, 5]); // the empty slot is left out
        assert_eq!(g[0].b[0].values, vec![3.0, 5.0]);
        assert_eq!(
            shared_inputs(&g[0]),
            SharedInputs {
                a: 3,
                b: 2,
                both: 1
            }
        );
        // Every input shown, once, without content yet.
        let keys: Vec<(usize, Option<usize>)> = v.inputs.iter().map(|i| i.key()).collect();
        assert_eq!(keys, referenced_keys(&v.layers));
        assert!(v
            .inputs
            .iter()
            .all(|i| i.png.is_empty() && i.label.is_none()));
        // Token positions make the same input at two positions two inputs.
        let mut t = pair.layers[1].clone();
        let top = t.top_inputs.as_mut().unwrap();
        top.a.positions = Some(vec![vec![0, 1, 2], vec![0, 0, 0], vec![0, 0, 0]]);
        top.b.positions = Some(vec![vec![0, 0, 0], vec![1, 3, -1]]);
        let v = views_from_records(&Comparison::new(ComparisonKind::Pair, vec![t]), &opts).unwrap();
        let g = &v.layers[0].groups[0];
        assert_eq!(g.a[0].positions, vec![0, 1, 2]);
        assert_eq!(g.b[0].positions, vec![1, 3]);
        // (7, 1) is in both strips; (4, 0) and (9, 2) only in A's, (5, 3) only in B's.
        assert_eq!(shared_inputs(g).both, 1);
        // No top inputs, or no simple matches: errors that say how to get them.
        let none = Comparison::new(ComparisonKind::Pair, vec![plain.clone()]);
        let e = views_from_records(&none, &opts).unwrap_err().to_string();
        assert!(e.contains("top_inputs=8"), "{e}");
        let mut no_simple = pair.layers[1].clone();
        no_simple.simple = None;
        let e = views_from_records(
            &Comparison::new(ComparisonKind::Pair, vec![no_simple]),
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("simple=0.5"), "{e}");
    }

    #[test]
    fn picks_largest_then_closest_one_to_one_then_unmatched() {
        // A: 0..6 matched except 6 (threshold 0.9); B: 0..6 matched except 5 (0.8).
        let ta = vec![0.1, 0.2, 0.3, 0.05, 0.4, 0.45, 0.9];
        let tb = vec![0.1, 0.2, 0.3, 0.4, 0.05, 0.8];
        let r = layer(
            vec![
                (vec![0, 1, 2, 4, 5], vec![0, 1], 0.45),
                (vec![3], vec![4], 0.3),
                (vec![3], vec![3], 0.1),
                (vec![0], vec![2], 0.2),
            ],
            ta,
            tb,
        );
        let opts = ViewOptions {
            largest: 1,
            one_to_one: 2,
            per_side: 3,
            seed: 7,
        };
        let g = select_groups(&r, &opts, 0);
        assert_eq!(g.len(), 4);
        assert_eq!(g[0].kind, ViewKind::Simple);
        assert_eq!((g[0].a.clone(), g[0].size_a), (vec![0, 1, 2], 5));
        assert_eq!(g[1].kind, ViewKind::OneToOne);
        assert_eq!((g[1].a.clone(), g[1].b.clone()), (vec![3], vec![3]));
        assert_eq!((g[2].a.clone(), g[2].b.clone()), (vec![0], vec![2]));
        assert_eq!(g[3].kind, ViewKind::Unmatched);
        assert_eq!((g[3].a.clone(), g[3].b.clone()), (vec![6], vec![5]));
        let v = layer_views(&r, &opts, 0, |a, n| {
            vec![TopItem {
                value: 1.0,
                input: n + usize::from(a) * 100,
                position: None,
            }]
        });
        assert_eq!(v.groups[0].a[0].inputs, vec![100]);
        assert_eq!(v.groups[0].a[1].threshold, Some(0.2));
        assert_eq!(
            referenced_inputs(&[v]),
            vec![0, 1, 2, 3, 5, 100, 101, 102, 103, 106]
        );
    }
}
