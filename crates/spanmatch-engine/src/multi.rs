//! Feeding the activations of several nets, batch by batch, into one Gram accumulator per
//! (comparison, layer): the single pass of `spanmatch reproduce`. Knows nothing of the nets:
//! the training front forwards each batch of each layer of each net to [`PairAccumulators::batch`].

use anyhow::{bail, Context, Result};
use spanmatch_core::GramAccumulator;

/// Which two nets a comparison puts side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSpec {
    /// Net on side A (index into the nets given to the extraction).
    pub a: usize,
    /// Net on side B.
    pub b: usize,
    /// Pair image i of A with image (i + 1) mod batch of B: the same images in another order,
    /// a null comparison that tells what chance alone gives at this many rows and neurons.
    pub shuffle_b: bool,
}

/// One batch of one layer of one net: its shape and values.
type Pending = (Vec<usize>, Vec<f32>);

/// Accumulates the joint statistics of every requested pair of nets
/// for every layer, holding at most one batch of activations.
pub struct PairAccumulators {
    pairs: Vec<PairSpec>,
    nets: usize,
    layers: Vec<String>,
    /// accumulators[pair][layer], created on the first batch (when widths are known).
    accumulators: Vec<Vec<Option<GramAccumulator>>>,
    /// pending[net][layer]: this batch's activations, until the last net has sent them.
    pending: Vec<Vec<Option<Pending>>>,
    joint: Vec<f64>,
    rows_seen: Vec<u64>,
    batches_done: u64,
}

impl PairAccumulators {
    /// A sink for `nets` nets with the given layers (in forward order) and pairs.
    pub fn new(nets: usize, layers: Vec<String>, pairs: Vec<PairSpec>) -> Self {
        let nl = layers.len();
        Self {
            accumulators: vec![vec![None; nl]; pairs.len()],
            pending: vec![vec![None; nl]; nets],
            pairs,
            nets,
            layers,
            joint: Vec::new(),
            rows_seen: vec![0; nl],
            batches_done: 0,
        }
    }

    /// Inputs (images) fully accumulated so far: advanced when the last net's last layer of a
    /// batch has been accumulated.
    pub fn inputs_done(&self) -> u64 {
        self.batches_done
    }

    /// The accumulators, `[pair][layer]` (None for a layer that received no batch).
    pub fn into_accumulators(self) -> Vec<Vec<Option<GramAccumulator>>> {
        self.accumulators
    }

    fn layer_index(&self, layer: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l == layer)
            .with_context(|| format!("activations for unexpected layer {layer}"))
    }

    fn process_layer(&mut self, li: usize) -> Result<()> {
        for (pi, spec) in self.pairs.iter().enumerate() {
            let (Some((sa, xa)), Some((sb, xb))) =
                (&self.pending[spec.a][li], &self.pending[spec.b][li])
            else {
                bail!(
                    "layer {}: a net sent no activations for this batch",
                    self.layers[li]
                );
            };
            if sa[0] != sb[0] || sa[2..] != sb[2..] {
                bail!(
                    "layer {}: nets {} and {} give shapes {:?} and {:?} for the same batch",
                    self.layers[li],
                    spec.a,
                    spec.b,
                    sa,
                    sb
                );
            }
            let (b, c1, c2) = (sa[0], sa[1], sb[1]);
            let positions: usize = sa[2..].iter().product();
            let n = c1 + c2;
            self.joint.clear();
            self.joint.resize(b * positions * n, 0.0);
            for img in 0..b {
                let img_b = if spec.shuffle_b && b > 1 {
                    (img + 1) % b
                } else {
                    img
                };
                for p in 0..positions {
                    let row = &mut self.joint[(img * positions + p) * n..][..n];
                    for c in 0..c1 {
                        row[c] = f64::from(xa[(img * c1 + c) * positions + p]);
                    }
                    for c in 0..c2 {
                        row[c1 + c] = f64::from(xb[(img_b * c2 + c) * positions + p]);
                    }
                }
            }
            let acc = self.accumulators[pi][li].get_or_insert_with(|| GramAccumulator::new(c1, c2));
            acc.push_joint(&self.joint)
                .with_context(|| format!("layer {}", self.layers[li]))?;
            if pi == 0 {
                self.rows_seen[li] += (b * positions) as u64;
            }
        }
        for net in self.pending.iter_mut() {
            net[li] = None;
        }
        Ok(())
    }
}

impl PairAccumulators {
    /// One batch of one layer of one net: `shape` = `[batch, channels, spatial...]` and the
    /// values in that (C) order. The pairs of a layer are accumulated when the last net has sent
    /// its batch of that layer.
    pub fn batch(&mut self, net: usize, layer: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        if net >= self.nets {
            bail!(
                "activations from net {net}, but only {} nets were announced",
                self.nets
            );
        }
        if shape.len() < 2 {
            bail!(
                "layer {}: activation shape {shape:?} has no channel axis",
                layer
            );
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!(
                "net {net}, layer {}: non-finite activation {} at flat position {i} of a batch of shape {shape:?}",
                layer,
                data[i]
            );
        }
        let li = self.layer_index(layer)?;
        self.pending[net][li] = Some((shape.to_vec(), data.to_vec()));
        if net + 1 == self.nets {
            self.process_layer(li)?;
            if li + 1 == self.layers.len() {
                self.batches_done += shape[0] as u64;
            }
        }
        Ok(())
    }
}
