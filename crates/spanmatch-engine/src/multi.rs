//! Feeding the activations of several nets, batch by batch, into one Gram accumulator per
//! (comparison, layer): the single pass of `spanmatch reproduce`. Knows nothing of the nets:
//! the training front forwards each batch of each layer of each net to [`PairAccumulators::batch`].

use anyhow::{bail, Context, Result};
use spanmatch_core::controls::{chunk_memory_bytes, chunk_of, ChunkedAccumulator, ChunkedStats};
use spanmatch_core::{GramAccumulator, JointStats};

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

/// The accumulated statistics of one (pair, layer): one accumulator, or one per chunk of inputs.
#[derive(Debug, Clone)]
pub enum PairAccumulator {
    /// All inputs in one accumulator.
    Single(GramAccumulator),
    /// One accumulator per chunk of inputs (images assigned with `controls::chunk_of`).
    Chunked(ChunkedAccumulator),
}

impl PairAccumulator {
    /// The statistics of all inputs (for a chunked accumulator the merged chunks) and, when
    /// chunked, the per-chunk statistics.
    pub fn finish(self) -> (JointStats, Option<ChunkedStats>) {
        match self {
            PairAccumulator::Single(a) => (a.finish(), None),
            PairAccumulator::Chunked(c) => {
                let chunks = c.finish();
                (chunks.merged(), Some(chunks))
            }
        }
    }
}

/// How the inputs of the chunked pairs are split.
#[derive(Debug, Clone, Copy)]
struct Chunking {
    chunks: usize,
    total: u64,
    cap: u64,
}

/// Accumulates the joint statistics of every requested pair of nets
/// for every layer, holding at most one batch of activations.
pub struct PairAccumulators {
    pairs: Vec<PairSpec>,
    nets: usize,
    layers: Vec<String>,
    /// accumulators[pair][layer], created on the first batch (when widths are known).
    accumulators: Vec<Vec<Option<PairAccumulator>>>,
    /// Which pairs keep per-chunk statistics.
    chunked: Vec<bool>,
    chunking: Option<Chunking>,
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
            chunked: vec![false; pairs.len()],
            chunking: None,
            pending: vec![vec![None; nl]; nets],
            pairs,
            nets,
            layers,
            joint: Vec::new(),
            rows_seen: vec![0; nl],
            batches_done: 0,
        }
    }

    /// Keeps the statistics of the pairs with `chunked[pair]` true per chunk of inputs: the
    /// `total` inputs (images) are split into `chunks` contiguous chunks
    /// ([`chunk_of`]; all rows of an image go to its chunk), each with its own accumulator. The
    /// batches must then arrive in input order, starting at input 0. Memory per (pair, layer):
    /// `chunks · (n1 + n2)² · 8` bytes, capped at `cap` bytes (an error names the layer).
    pub fn with_chunks(
        mut self,
        chunked: Vec<bool>,
        chunks: usize,
        total: u64,
        cap: u64,
    ) -> Result<Self> {
        if chunked.len() != self.pairs.len() {
            bail!(
                "{} chunk flags for {} pairs",
                chunked.len(),
                self.pairs.len()
            );
        }
        if chunks == 0 {
            bail!("--chunks must be at least 1");
        }
        if total < chunks as u64 {
            bail!("{chunks} chunks of inputs, but only {total} inputs: use at most {total} chunks");
        }
        self.chunked = chunked;
        self.chunking = Some(Chunking { chunks, total, cap });
        Ok(self)
    }

    /// Inputs (images) fully accumulated so far: advanced when the last net's last layer of a
    /// batch has been accumulated.
    pub fn inputs_done(&self) -> u64 {
        self.batches_done
    }

    /// The accumulators, `[pair][layer]` (None for a layer that received no batch).
    pub fn into_accumulators(self) -> Vec<Vec<Option<PairAccumulator>>> {
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
            let layer = &self.layers[li];
            let chunking = self.chunking.filter(|_| self.chunked[pi]);
            let slot = &mut self.accumulators[pi][li];
            if slot.is_none() {
                *slot = Some(match chunking {
                    None => PairAccumulator::Single(GramAccumulator::new(c1, c2)),
                    Some(ch) => {
                        let bytes = chunk_memory_bytes(c1, c2, ch.chunks);
                        PairAccumulator::Chunked(
                            ChunkedAccumulator::with_cap(c1, c2, ch.chunks, ch.cap).with_context(
                                || {
                                    format!(
                                        "layer {layer}: {} chunks x ({c1} + {c2})² x 8 bytes = {:.1} MiB of per-chunk statistics, above the cap of {:.0} MiB; use fewer chunks (--chunks)",
                                        ch.chunks,
                                        bytes as f64 / (1u64 << 20) as f64,
                                        ch.cap as f64 / (1u64 << 20) as f64
                                    )
                                },
                            )?,
                        )
                    }
                });
            }
            match slot.as_mut() {
                Some(PairAccumulator::Single(acc)) => acc
                    .push_joint(&self.joint)
                    .with_context(|| format!("layer {layer}"))?,
                Some(PairAccumulator::Chunked(acc)) => {
                    let Some(ch) = chunking else {
                        unreachable!("chunked accumulator without chunking")
                    };
                    // Runs of consecutive images of the same chunk, pushed as one block each.
                    let start = self.batches_done;
                    if start + b as u64 > ch.total {
                        bail!(
                            "layer {layer}: inputs {start}..{} beyond the {} announced",
                            start + b as u64,
                            ch.total
                        );
                    }
                    let mut img = 0;
                    while img < b {
                        let c = chunk_of(start + img as u64, ch.total, ch.chunks);
                        let mut end = img + 1;
                        while end < b && chunk_of(start + end as u64, ch.total, ch.chunks) == c {
                            end += 1;
                        }
                        acc.push_joint(c, &self.joint[img * positions * n..end * positions * n])
                            .with_context(|| format!("layer {layer}"))?;
                        img = end;
                    }
                }
                None => unreachable!("accumulator just created"),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use spanmatch_core::controls::{chunk_range, MAX_CHUNK_BYTES};

    /// Feeds `total` images of two conv-shaped "nets" (3 and 2 channels, 2x2 positions) in
    /// batches of `batch` to two identical pairs, the first chunked, the second not.
    fn feed(total: usize, batch: usize, chunks: usize) -> Vec<Vec<Option<PairAccumulator>>> {
        let spec = PairSpec {
            a: 0,
            b: 1,
            shuffle_b: false,
        };
        let mut acc = PairAccumulators::new(2, vec!["l".into()], vec![spec, spec])
            .with_chunks(vec![true, false], chunks, total as u64, MAX_CHUNK_BYTES)
            .unwrap();
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.3
        };
        let mut start = 0;
        while start < total {
            let b = batch.min(total - start);
            for (net, c) in [(0, 3), (1, 2)] {
                let data: Vec<f32> = (0..b * c * 4).map(|_| next()).collect();
                acc.batch(net, "l", &[b, c, 2, 2], &data).unwrap();
            }
            start += b;
        }
        assert_eq!(acc.inputs_done(), total as u64);
        acc.into_accumulators()
    }

    #[test]
    fn chunked_statistics_merge_to_the_one_pass_statistics() {
        let (total, chunks) = (30, 4);
        let mut accs = feed(total, 7, chunks);
        let (one, none) = accs[1][0].take().unwrap().finish();
        assert!(none.is_none());
        let (merged, per_chunk) = accs[0][0].take().unwrap().finish();
        let per_chunk = per_chunk.unwrap();
        assert_eq!(per_chunk.len(), chunks);
        // Every image's rows (4 positions) in its contiguous chunk.
        for (c, s) in per_chunk.chunks().iter().enumerate() {
            let r = chunk_range(c, total as u64, chunks);
            assert_eq!(s.rows, (r.end - r.start) * 4, "chunk {c}");
        }
        assert_eq!(merged.rows, one.rows);
        assert_eq!(merged.rows, total as u64 * 4);
        let scale = (0..5)
            .map(|i| one.gram[(i, i)].abs())
            .fold(0.0f64, f64::max);
        for i in 0..5 {
            for j in 0..5 {
                let (a, b) = (merged.gram[(i, j)], one.gram[(i, j)]);
                assert!(
                    (a - b).abs() <= 1e-12 * scale,
                    "gram ({i}, {j}): {a} vs {b}"
                );
            }
            assert!((merged.sums[i] - one.sums[i]).abs() <= 1e-12 * one.sums[i].abs().max(1.0));
            for (x, y) in [
                (&merged.moments.weighted_by_a, &one.moments.weighted_by_a),
                (&merged.moments.weighted_by_b, &one.moments.weighted_by_b),
            ] {
                assert!((x[i] - y[i]).abs() <= 1e-12 * y[i].abs().max(1.0));
            }
        }
        for (x, y) in [
            (merged.moments.aa, one.moments.aa),
            (merged.moments.ab, one.moments.ab),
            (merged.moments.bb, one.moments.bb),
        ] {
            assert!((x - y).abs() <= 1e-12 * y.abs());
        }
    }

    #[test]
    fn chunking_errors_are_clear() {
        let spec = PairSpec {
            a: 0,
            b: 1,
            shuffle_b: false,
        };
        let new = || PairAccumulators::new(2, vec!["l".into()], vec![spec]);
        let e = new()
            .with_chunks(vec![true], 0, 10, MAX_CHUNK_BYTES)
            .err()
            .unwrap();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = new()
            .with_chunks(vec![true], 11, 10, MAX_CHUNK_BYTES)
            .err()
            .unwrap();
        assert!(e.to_string().contains("only 10 inputs"), "{e}");
        // A cap below chunks x (n1 + n2)^2 x 8 = 2 x 25 x 8 = 400 bytes.
        let mut acc = new().with_chunks(vec![true], 2, 10, 399).unwrap();
        acc.batch(0, "l", &[2, 3], &[0.0; 6]).unwrap();
        let e = acc.batch(1, "l", &[2, 2], &[0.0; 4]).err().unwrap();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("layer l") && msg.contains("fewer chunks"),
            "{msg}"
        );
    }
}
