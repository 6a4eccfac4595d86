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
//! shown neuron's top inputs, given by the front that tracked them during its pass.

use crate::results::{
    Comparison, LayerRecord, LayerViews, NeuronTop, NeuronViews, ViewGroup, ViewInput, ViewKind,
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

/// The views of one layer: [`select_groups`] with each shown neuron's top inputs from `top`
/// (`top(is_net_a, neuron)` gives `(response, input index)` pairs, best first).
pub fn layer_views(
    result: &LayerRecord,
    opts: &ViewOptions,
    salt: u64,
    mut top: impl FnMut(bool, usize) -> Vec<(f64, usize)>,
) -> LayerViews {
    let mut neuron = |net_a: bool, n: usize| {
        let t = top(net_a, n);
        let thresholds = if net_a {
            &result.thresholds_a
        } else {
            &result.thresholds_b
        };
        NeuronTop {
            neuron: n,
            threshold: thresholds.get(n).copied().flatten(),
            inputs: t.iter().map(|x| x.1).collect(),
            values: t.iter().map(|x| x.0).collect(),
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
    mut top: impl FnMut(bool, &str, usize) -> Vec<(f64, usize)>,
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
            Ok(ViewInput { index, label, png })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(NeuronViews {
        seed_a: pair.seed_a.unwrap_or(0),
        seed_b: pair.seed_b.unwrap_or(0),
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
            verdict: None,
            verdict_missing: vec![],
            top_inputs: None,
            extra: Default::default(),
        }
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
        let v = layer_views(&r, &opts, 0, |a, n| vec![(1.0, n + usize::from(a) * 100)]);
        assert_eq!(v.groups[0].a[0].inputs, vec![100]);
        assert_eq!(v.groups[0].a[1].threshold, Some(0.2));
        assert_eq!(
            referenced_inputs(&[v]),
            vec![0, 1, 2, 3, 5, 100, 101, 102, 103, 106]
        );
    }
}
