//! Streaming extraction of post-ReLU activations.
//!
//! [`extract`] runs one or several trained nets over the same images in the same order and hands
//! every selected layer's activations, batch by batch, to an [`ActivationSink`]; nothing larger
//! than one batch of one layer is materialised. [`NpzWriter`] is a sink that writes one
//! float32 array per layer (key = layer name) into an `.npz`, incrementally: each layer is
//! streamed into its own `.npy` part file (header with the final shape first), and the parts are
//! copied into the zip archive at the end, so peak memory stays at one batch.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::Dataset;
use crate::model::LayerInfo;
use crate::net::Net;
use crate::train::{EvalAccumulator, EvalResult};

/// Receives activations batch by batch.
pub trait ActivationSink {
    /// One batch of one layer of net `net` (index into the slice given to [`extract`]).
    /// `shape` is `[b, c, h, w]` for conv layers and `[b, c]` for fc layers; `data` is
    /// row-major f32 of that shape. Batches arrive in image order; within a batch, all layers
    /// of net 0 (in forward order), then net 1, ...
    fn batch(&mut self, net: usize, layer: &LayerInfo, shape: &[usize], data: &[f32])
        -> Result<()>;

    /// Called once after the last batch.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Resolves a layer selection (`None` = all ReLU layers) against a net, with a clear error for
/// unknown names.
pub fn select_layers(net: &Net, layers: Option<&[String]>) -> Result<Vec<LayerInfo>> {
    let all = net.layers();
    match layers {
        None => Ok(all.to_vec()),
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter().find(|l| &l.name == n).cloned().with_context(|| {
                    format!(
                        "unknown layer {n:?}; the model's ReLU layers are: {}",
                        all.iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect(),
    }
}

/// Runs `nets` over `data` (in order, no augmentation) in batches of `batch_size`, passing the
/// selected layers' activations (`None` = all ReLU layers) to `sink`, then calls
/// `sink.finish()`.
///
/// The same forward pass also scores the logits against `data`'s labels: the result holds each
/// net's accuracy and mean cross-entropy on `data` (in the order of `nets`), equal to what
/// [`evaluate`](crate::train::evaluate) gives with the same batch size, so no second pass over
/// the data is needed for them.
pub fn extract(
    nets: &[&Net],
    data: &Dataset,
    batch_size: usize,
    layers: Option<&[String]>,
    sink: &mut dyn ActivationSink,
) -> Result<Vec<EvalResult>> {
    if nets.is_empty() {
        bail!("no network to extract from");
    }
    let mut wants = Vec::with_capacity(nets.len());
    for (i, net) in nets.iter().enumerate() {
        if net.config().input != data.shape {
            bail!(
                "net {i} expects {:?} images, the data has {:?}",
                net.config().input,
                data.shape
            );
        }
        let sel = select_layers(net, layers).with_context(|| format!("net {i}"))?;
        let want: Vec<bool> = net
            .layers()
            .iter()
            .map(|l| sel.iter().any(|s| s.name == l.name))
            .collect();
        wants.push(want);
    }
    let mut evals = vec![EvalAccumulator::default(); nets.len()];
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for chunk in idx.chunks(batch_size.max(1)) {
        data.batch(chunk, None, &mut x);
        labels.clear();
        labels.extend(chunk.iter().map(|&i| data.labels[i]));
        for (ni, net) in nets.iter().enumerate() {
            let logits =
                net.forward_eval(x.clone(), chunk.len(), &wants[ni], &mut |l, shape, d| {
                    sink.batch(ni, l, shape, d)
                        .with_context(|| format!("net {ni}, layer {}", l.name))
                })?;
            evals[ni].add(&logits, &labels, net.config().num_classes);
        }
    }
    sink.finish()?;
    Ok(evals.iter().map(EvalAccumulator::finish).collect())
}

/// A sink that keeps everything in memory (`(net, layer name)` -> row-major values, images
/// concatenated). Meant for tests and small data.
#[derive(Default, Debug)]
pub struct CollectSink {
    /// Collected values.
    pub data: HashMap<(usize, String), Vec<f32>>,
    /// Per-image shape of each layer.
    pub shapes: HashMap<(usize, String), Vec<usize>>,
}

impl ActivationSink for CollectSink {
    fn batch(
        &mut self,
        net: usize,
        layer: &LayerInfo,
        shape: &[usize],
        data: &[f32],
    ) -> Result<()> {
        let key = (net, layer.name.clone());
        self.shapes.insert(key.clone(), shape[1..].to_vec());
        self.data.entry(key).or_default().extend_from_slice(data);
        Ok(())
    }
}

/// Fans batches out to several sinks.
pub struct TeeSink<'a>(pub Vec<&'a mut dyn ActivationSink>);

impl ActivationSink for TeeSink<'_> {
    fn batch(
        &mut self,
        net: usize,
        layer: &LayerInfo,
        shape: &[usize],
        data: &[f32],
    ) -> Result<()> {
        for s in &mut self.0 {
            s.batch(net, layer, shape, data)?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        for s in &mut self.0 {
            s.finish()?;
        }
        Ok(())
    }
}

/// `.npy` (version 1.0) header for a little-endian float32 C-order array.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}").into_bytes();
    let total = 10 + dict.len() + 1;
    dict.extend(std::iter::repeat_n(b' ', (64 - total % 64) % 64));
    dict.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(&dict);
    out
}

struct Part {
    layer: LayerInfo,
    path: PathBuf,
    w: Option<BufWriter<File>>,
    expected: usize,
    written: usize,
}

/// Writes the activations of one net into an `.npz` (one `float32` array `[n, c, h, w]` or
/// `[n, c]` per layer, key = layer name), streaming (see module docs).
pub struct NpzWriter {
    path: PathBuf,
    parts_dir: PathBuf,
    net: usize,
    parts: Vec<Part>,
    finished: bool,
}

impl NpzWriter {
    /// Prepares `path` for `n_images` images of the given layers of net index `net`.
    pub fn create(path: &Path, net: usize, layers: &[LayerInfo], n_images: usize) -> Result<Self> {
        let parts_dir = PathBuf::from(format!("{}.parts", path.display()));
        std::fs::create_dir_all(&parts_dir)
            .with_context(|| format!("{}: cannot create", parts_dir.display()))?;
        let mut parts = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            let p = parts_dir.join(format!("{i}.npy"));
            let f = File::create(&p).with_context(|| format!("{}: cannot create", p.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let mut shape = vec![n_images];
            shape.extend_from_slice(&l.shape);
            w.write_all(&npy_header(&shape))
                .with_context(|| format!("{}: cannot write", p.display()))?;
            parts.push(Part {
                layer: l.clone(),
                path: p,
                w: Some(w),
                expected: n_images * l.numel(),
                written: 0,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            parts_dir,
            net,
            parts,
            finished: false,
        })
    }

    fn assemble(&mut self) -> Result<()> {
        let tmp = PathBuf::from(format!("{}.tmp", self.path.display()));
        let f = File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let mut zip = zip::ZipWriter::new(BufWriter::new(f));
        for part in &mut self.parts {
            if let Some(mut w) = part.w.take() {
                w.flush()
                    .with_context(|| format!("{}: cannot write", part.path.display()))?;
            }
            if part.written != part.expected {
                bail!(
                    "{}: layer {} received {} values, expected {}",
                    self.path.display(),
                    part.layer.name,
                    part.written,
                    part.expected
                );
            }
            let size = std::fs::metadata(&part.path)
                .with_context(|| format!("{}: cannot stat", part.path.display()))?
                .len();
            let opts = zip::write::FileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(size >= u32::MAX as u64);
            zip.start_file(format!("{}.npy", part.layer.name), opts)
                .with_context(|| format!("{}: cannot add {}", tmp.display(), part.layer.name))?;
            let mut r = File::open(&part.path)
                .with_context(|| format!("{}: cannot open", part.path.display()))?;
            std::io::copy(&mut r, &mut zip)
                .with_context(|| format!("{}: cannot write {}", tmp.display(), part.layer.name))?;
            std::fs::remove_file(&part.path).ok();
        }
        let mut inner = zip
            .finish()
            .with_context(|| format!("{}: cannot finish zip", tmp.display()))?;
        inner
            .flush()
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        drop(inner);
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("{}: cannot rename", self.path.display()))?;
        std::fs::remove_dir_all(&self.parts_dir).ok();
        Ok(())
    }
}

impl ActivationSink for NpzWriter {
    fn batch(
        &mut self,
        net: usize,
        layer: &LayerInfo,
        shape: &[usize],
        data: &[f32],
    ) -> Result<()> {
        if net != self.net {
            return Ok(());
        }
        let Some(part) = self.parts.iter_mut().find(|p| p.layer.name == layer.name) else {
            return Ok(());
        };
        if shape.len() != part.layer.shape.len() + 1 || shape[1..] != part.layer.shape[..] {
            bail!(
                "layer {}: batch shape {shape:?} does not match per-image shape {:?}",
                layer.name,
                part.layer.shape
            );
        }
        if part.written + data.len() > part.expected {
            bail!(
                "layer {}: more values than the {} announced",
                layer.name,
                part.expected
            );
        }
        let w = part
            .w
            .as_mut()
            .with_context(|| format!("{}: already finished", self.path.display()))?;
        let mut buf = Vec::with_capacity(data.len() * 4);
        for v in data {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&buf)
            .with_context(|| format!("{}: cannot write", part.path.display()))?;
        part.written += data.len();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.assemble()
    }
}

impl Drop for NpzWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned (error path): remove partial files.
            for p in &mut self.parts {
                p.w.take();
            }
            std::fs::remove_dir_all(&self.parts_dir).ok();
        }
    }
}
