//! The inputs each neuron responds to most, tracked during the extraction pass.
//!
//! [`TopInputs`] is an [`ActivationSink`]: for the chosen nets it keeps, for every neuron of
//! every layer it sees, the `k` inputs (image indices) with the largest response. A neuron's
//! response to an image is its activation for fc layers and, for a conv channel, its maximum
//! over the spatial positions of that image. Memory is `k` pairs per neuron; the work is one
//! read of each batch.
//!
//! Order: larger response first; equal responses keep the earlier image (the result does not
//! depend on the batch size).

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::extract::ActivationSink;
use crate::model::LayerInfo;

/// One tracked input of a neuron: its response and the image index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopInput {
    /// The neuron's response (activation, or maximum over positions for a conv channel).
    pub value: f32,
    /// Index of the image in the data passed to [`extract`](crate::extract::extract).
    pub image: usize,
}

#[derive(Debug, Clone)]
struct LayerTops {
    /// Images seen so far (the index of the next image).
    seen: usize,
    /// Per neuron, up to k entries, best first.
    tops: Vec<Vec<TopInput>>,
}

/// Tracks the top-k inputs of every neuron of the chosen nets (see the module docs).
#[derive(Debug, Clone)]
pub struct TopInputs {
    k: usize,
    nets: Vec<usize>,
    layers: HashMap<(usize, String), LayerTops>,
}

/// Inserts `(value, image)` into a best-first list of at most `k`; images arrive in increasing
/// order, so an equal value never displaces an entry.
fn insert(list: &mut Vec<TopInput>, k: usize, value: f32, image: usize) {
    if list.len() == k && list.last().is_some_and(|w| value <= w.value) {
        return;
    }
    let pos = list.partition_point(|t| t.value >= value);
    list.insert(pos, TopInput { value, image });
    list.truncate(k);
}

impl TopInputs {
    /// How the response is measured, in words (for reports).
    pub const RESPONSE: &'static str =
        "conv channels: the maximum over the image's positions; fc neurons: the activation";

    /// Tracks the `k` best inputs of every neuron of the nets `nets` (indices into the slice
    /// given to `extract`). Errors when `k` is 0.
    pub fn new(k: usize, nets: &[usize]) -> Result<Self> {
        if k == 0 {
            bail!("top inputs: k must be at least 1");
        }
        Ok(Self {
            k,
            nets: nets.to_vec(),
            layers: HashMap::new(),
        })
    }

    /// Inputs per neuron kept.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The best inputs of neuron `neuron` of layer `layer` of net `net`, best first; `None` when
    /// that net or layer was not tracked or the neuron is out of range.
    pub fn top(&self, net: usize, layer: &str, neuron: usize) -> Option<&[TopInput]> {
        self.layers
            .get(&(net, layer.to_string()))?
            .tops
            .get(neuron)
            .map(Vec::as_slice)
    }

    /// Images seen for a net's layer (0 when not tracked).
    pub fn images_seen(&self, net: usize, layer: &str) -> usize {
        self.layers
            .get(&(net, layer.to_string()))
            .map_or(0, |l| l.seen)
    }
}

impl ActivationSink for TopInputs {
    fn batch(
        &mut self,
        net: usize,
        layer: &LayerInfo,
        shape: &[usize],
        data: &[f32],
    ) -> Result<()> {
        if !self.nets.contains(&net) {
            return Ok(());
        }
        if shape.len() < 2 {
            bail!(
                "layer {}: batch shape {shape:?} has no channel axis",
                layer.name
            );
        }
        let (b, c) = (shape[0], shape[1]);
        let per_channel: usize = shape[2..].iter().product();
        if per_channel == 0 || data.len() != b * c * per_channel {
            bail!(
                "layer {}: {} values for a batch of shape {shape:?}",
                layer.name,
                data.len()
            );
        }
        let k = self.k;
        let entry = self
            .layers
            .entry((net, layer.name.clone()))
            .or_insert_with(|| LayerTops {
                seen: 0,
                tops: vec![Vec::with_capacity(k + 1); c],
            });
        if entry.tops.len() != c {
            bail!(
                "layer {}: {c} channels in this batch, {} before",
                layer.name,
                entry.tops.len()
            );
        }
        for (i, image) in data.chunks_exact(c * per_channel).enumerate() {
            let index = entry.seen + i;
            for (list, values) in entry.tops.iter_mut().zip(image.chunks_exact(per_channel)) {
                let v = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                insert(list, k, v, index);
            }
        }
        entry.seen += b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LayerKind;

    fn layer(name: &str, shape: &[usize]) -> LayerInfo {
        LayerInfo {
            name: name.into(),
            index: 0,
            kind: if shape.len() == 1 {
                LayerKind::Fc
            } else {
                LayerKind::Conv
            },
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn keeps_the_largest_maximum_over_positions_in_any_batching() {
        // 2 channels x 3 positions, 10 images; channel 0's maximum is image i's value at
        // position i % 3, channel 1 is constant 1 (ties: the earliest images win).
        let l = layer("conv", &[2, 3]);
        let img = |i: usize| -> Vec<f32> {
            let mut v = vec![0.0; 6];
            v[i % 3] = (i * 7 % 10) as f32; // values 0,7,4,1,8,5,2,9,6,3
            v[3..].fill(1.0);
            v
        };
        for batch in [1, 3, 4, 10] {
            let mut t = TopInputs::new(3, &[0]).unwrap();
            let mut start = 0;
            while start < 10 {
                let end = (start + batch).min(10);
                let data: Vec<f32> = (start..end).flat_map(img).collect();
                t.batch(0, &l, &[end - start, 2, 3], &data).unwrap();
                // A net not tracked is ignored.
                t.batch(1, &l, &[end - start, 2, 3], &data).unwrap();
                start = end;
            }
            let top0: Vec<usize> = t
                .top(0, "conv", 0)
                .unwrap()
                .iter()
                .map(|x| x.image)
                .collect();
            assert_eq!(top0, vec![7, 4, 1], "batch {batch}");
            let vals: Vec<f32> = t
                .top(0, "conv", 0)
                .unwrap()
                .iter()
                .map(|x| x.value)
                .collect();
            assert_eq!(vals, vec![9.0, 8.0, 7.0]);
            let top1: Vec<usize> = t
                .top(0, "conv", 1)
                .unwrap()
                .iter()
                .map(|x| x.image)
                .collect();
            assert_eq!(top1, vec![0, 1, 2], "ties keep the earliest images");
            assert_eq!(t.images_seen(0, "conv"), 10);
            assert!(t.top(1, "conv", 0).is_none());
            assert!(t.top(0, "conv", 2).is_none());
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut t = TopInputs::new(2, &[0]).unwrap();
        let l = layer("fc", &[3]);
        assert!(t.batch(0, &l, &[2, 3], &[0.0; 5]).is_err());
        t.batch(0, &l, &[2, 3], &[0.0; 6]).unwrap();
        let err = t.batch(0, &l, &[1, 4], &[0.0; 4]).unwrap_err().to_string();
        assert!(err.contains("4 channels"), "{err}");
        assert!(TopInputs::new(0, &[0]).is_err());
    }
}
