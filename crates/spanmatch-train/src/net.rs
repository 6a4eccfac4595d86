//! The only module that touches the deep-learning framework (burn 0.22 with the Flex CPU
//! backend + autodiff). Everything else sees plain `f32` slices, so the framework can be swapped
//! by rewriting this file.
//!
//! Parameters live as plain (non-autodiff) tensors; a training step lifts them onto the autodiff
//! graph, runs forward + backward and applies SGD with momentum and weight decay (PyTorch
//! semantics: `v = mu * v + (g + wd * w)`, `w -= lr * v`) outside the graph. All randomness
//! (initialisation, dropout) comes from [`crate::rng::Rng`], never from the backend.

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::{batch_norm, batch_norm_train, conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::{LayerInfo, ModelConfig, Op, OpKind, ParamRole, ParamSpec};
use crate::rng::Rng;

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

#[derive(Clone)]
enum Pt {
    D1(Tensor<1>),
    D2(Tensor<2>),
    D4(Tensor<4>),
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("tensor data conversion failed: {e:?}"))
}

impl Pt {
    fn from_vec(v: Vec<f32>, shape: &[usize], dev: &Device) -> Result<Self> {
        Ok(match shape.len() {
            1 => Pt::D1(Tensor::from_data(TensorData::new(v, [shape[0]]), dev)),
            2 => Pt::D2(Tensor::from_data(
                TensorData::new(v, [shape[0], shape[1]]),
                dev,
            )),
            4 => Pt::D4(Tensor::from_data(
                TensorData::new(v, [shape[0], shape[1], shape[2], shape[3]]),
                dev,
            )),
            r => bail!("unsupported parameter rank {r}"),
        })
    }
    fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Pt::D1(t) => to_vec(t.clone()),
            Pt::D2(t) => to_vec(t.clone()),
            Pt::D4(t) => to_vec(t.clone()),
        }
    }
    fn tracked(&self) -> Self {
        match self {
            Pt::D1(t) => Pt::D1(t.clone().autodiff().require_grad()),
            Pt::D2(t) => Pt::D2(t.clone().autodiff().require_grad()),
            Pt::D4(t) => Pt::D4(t.clone().autodiff().require_grad()),
        }
    }
    fn grad(&self, g: &burn::tensor::Gradients) -> Option<Self> {
        match self {
            Pt::D1(t) => t.grad(g).map(Pt::D1),
            Pt::D2(t) => t.grad(g).map(Pt::D2),
            Pt::D4(t) => t.grad(g).map(Pt::D4),
        }
    }
    fn zeros_like(&self) -> Self {
        match self {
            Pt::D1(t) => Pt::D1(t.zeros_like()),
            Pt::D2(t) => Pt::D2(t.zeros_like()),
            Pt::D4(t) => Pt::D4(t.zeros_like()),
        }
    }
    /// `v = mu v + g + wd w; w -= lr v`.
    fn sgd(w: &mut Pt, v: &mut Pt, g: Pt, lr: f64, mu: f64, wd: f64) -> Result<()> {
        macro_rules! upd {
            ($w:expr, $v:expr, $g:expr) => {{
                let d = $g.add($w.clone().mul_scalar(wd));
                let nv = $v.clone().mul_scalar(mu).add(d);
                *$w = $w.clone().sub(nv.clone().mul_scalar(lr));
                *$v = nv;
            }};
        }
        match (w, v, g) {
            (Pt::D1(w), Pt::D1(v), Pt::D1(g)) => upd!(w, v, g),
            (Pt::D2(w), Pt::D2(v), Pt::D2(g)) => upd!(w, v, g),
            (Pt::D4(w), Pt::D4(v), Pt::D4(g)) => upd!(w, v, g),
            _ => bail!("internal error: parameter/gradient rank mismatch"),
        }
        Ok(())
    }
    fn d1(&self) -> Result<Tensor<1>> {
        match self {
            Pt::D1(t) => Ok(t.clone()),
            _ => bail!("internal error: expected a rank-1 parameter"),
        }
    }
    fn d2(&self) -> Result<Tensor<2>> {
        match self {
            Pt::D2(t) => Ok(t.clone()),
            _ => bail!("internal error: expected a rank-2 parameter"),
        }
    }
    fn d4(&self) -> Result<Tensor<4>> {
        match self {
            Pt::D4(t) => Ok(t.clone()),
            _ => bail!("internal error: expected a rank-4 parameter"),
        }
    }
}

enum Act {
    A4(Tensor<4>),
    A2(Tensor<2>),
}

/// Hyper-parameters of one SGD step.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// Momentum (0.9 in the reference).
    pub momentum: f64,
    /// Weight decay (L2, added to the gradient).
    pub weight_decay: f64,
}

/// Result of a training step.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Mean cross-entropy of the batch.
    pub loss: f32,
    /// Correctly classified images in the batch.
    pub correct: usize,
}

/// A network instance: configuration, parameters, BN buffers and momentum buffers.
pub struct Net {
    config: ModelConfig,
    ops: Vec<Op>,
    specs: Vec<ParamSpec>,
    /// First parameter index of each op.
    op_start: Vec<usize>,
    values: Vec<Pt>,
    velocity: Vec<Option<Pt>>,
    layers: Vec<LayerInfo>,
    device: Device,
}

/// Receives `(layer, batch shape, row-major values)` of a ReLU layer.
pub type LayerCallback<'a> = dyn FnMut(&LayerInfo, &[usize], &[f32]) -> Result<()> + 'a;

/// Flat named tensors as exchanged with checkpoints: `(name, shape, data)`.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

impl Net {
    /// Creates a freshly initialised network; the seed fixes every initial value.
    pub fn new(config: &ModelConfig, seed: u64) -> Result<Self> {
        let ops = config.ops()?;
        let specs = config.param_specs()?;
        let device = Device::flex();
        let mut rng = Rng::derive(seed, 0x1417, 0);
        let mut values = Vec::with_capacity(specs.len());
        for s in &specs {
            let n: usize = s.shape.iter().product();
            let v: Vec<f32> = match s.role {
                ParamRole::ConvWeight => {
                    let fan_in: usize = s.shape[1..].iter().product();
                    let std = (2.0 / fan_in as f64).sqrt();
                    (0..n).map(|_| (rng.normal() * std) as f32).collect()
                }
                ParamRole::LinearWeight => (0..n).map(|_| (rng.normal() * 0.01) as f32).collect(),
                ParamRole::Bias | ParamRole::BnBias | ParamRole::RunningMean => vec![0.0; n],
                ParamRole::BnWeight | ParamRole::RunningVar => vec![1.0; n],
            };
            values.push(Pt::from_vec(v, &s.shape, &device)?);
        }
        let mut op_start = Vec::with_capacity(ops.len());
        let mut k = 0;
        for op in &ops {
            op_start.push(k);
            k += op.params().len();
        }
        Ok(Self {
            config: config.clone(),
            layers: config.layers()?,
            ops,
            velocity: vec![None; specs.len()],
            specs,
            op_start,
            values,
            device,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The named ReLU layers.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Parameters and BN buffers (torchvision names), then momentum buffers as
    /// `momentum.<name>` (only once a training step has created them).
    pub fn state(&self, with_momentum: bool) -> Result<NamedTensors> {
        let mut out = Vec::new();
        for (s, v) in self.specs.iter().zip(&self.values) {
            out.push((s.name.clone(), s.shape.clone(), v.to_vec()?));
        }
        if with_momentum {
            for (s, v) in self.specs.iter().zip(&self.velocity) {
                if let Some(v) = v {
                    out.push((format!("momentum.{}", s.name), s.shape.clone(), v.to_vec()?));
                }
            }
        }
        Ok(out)
    }

    /// Loads parameters (all required) and momentum buffers (optional) by name.
    pub fn load_state(
        &mut self,
        mut get: impl FnMut(&str) -> Result<Option<(Vec<usize>, Vec<f32>)>>,
    ) -> Result<()> {
        for i in 0..self.specs.len() {
            let s = &self.specs[i];
            let (shape, data) =
                get(&s.name)?.with_context(|| format!("missing tensor {:?}", s.name))?;
            if shape != s.shape {
                bail!(
                    "tensor {:?}: shape {:?} does not match the model ({:?})",
                    s.name,
                    shape,
                    s.shape
                );
            }
            self.values[i] = Pt::from_vec(data, &s.shape, &self.device)?;
            let mname = format!("momentum.{}", s.name);
            self.velocity[i] = match get(&mname)? {
                Some((shape, data)) => {
                    if shape != s.shape {
                        bail!(
                            "tensor {mname:?}: shape {shape:?} does not match {:?}",
                            s.shape
                        );
                    }
                    Some(Pt::from_vec(data, &s.shape, &self.device)?)
                }
                None => None,
            };
        }
        Ok(())
    }

    fn input(&self, x: Vec<f32>, b: usize) -> Result<Tensor<4>> {
        let [c, h, w] = self.config.input;
        if x.len() != b * c * h * w {
            bail!(
                "input has {} values, expected {b} x {:?}",
                x.len(),
                self.config.input
            );
        }
        Ok(Tensor::from_data(
            TensorData::new(x, [b, c, h, w]),
            &self.device,
        ))
    }

    /// Forward pass. `train`: batch statistics + dropout (with `rng`), running stats are
    /// returned as updates. `on_relu(layer_index, tensor)` sees every ReLU output.
    #[allow(clippy::type_complexity)]
    fn forward(
        &self,
        params: &[Pt],
        x: Tensor<4>,
        train: bool,
        mut rng: Option<&mut Rng>,
        on_relu: &mut dyn FnMut(usize, &Act) -> Result<()>,
    ) -> Result<(Tensor<2>, Vec<(usize, Tensor<1>, Tensor<1>)>)> {
        let mut a = Act::A4(x);
        let mut bn_updates = Vec::new();
        let mut relu_i = 0;
        for (oi, op) in self.ops.iter().enumerate() {
            let p = &params[self.op_start[oi]..];
            a = match (&op.kind, a) {
                (
                    OpKind::Conv {
                        stride, pad, bias, ..
                    },
                    Act::A4(x),
                ) => {
                    let b = if *bias { Some(p[1].d1()?) } else { None };
                    let opts = ConvOptions::new([*stride; 2], [*pad; 2], [1, 1], 1);
                    Act::A4(conv2d(x, p[0].d4()?, b, opts))
                }
                (OpKind::BatchNorm { .. }, Act::A4(x)) => {
                    if train {
                        let [bs, _, h, w] = x.dims();
                        let o = batch_norm_train(x, p[0].d1()?, p[1].d1()?, BN_EPS);
                        let n = (bs * h * w) as f64;
                        let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
                        let rm = p[2]
                            .d1()?
                            .mul_scalar(1.0 - BN_MOMENTUM)
                            .add(o.mean.inner().mul_scalar(BN_MOMENTUM));
                        let rv = p[3]
                            .d1()?
                            .mul_scalar(1.0 - BN_MOMENTUM)
                            .add(o.variance.inner().mul_scalar(BN_MOMENTUM * unbias));
                        bn_updates.push((self.op_start[oi] + 2, rm, rv));
                        Act::A4(o.output)
                    } else {
                        Act::A4(batch_norm(
                            x,
                            p[0].d1()?,
                            p[1].d1()?,
                            p[2].d1()?,
                            p[3].d1()?,
                            BN_EPS,
                        ))
                    }
                }
                (OpKind::Relu, a) => {
                    let r = match a {
                        Act::A4(x) => Act::A4(relu(x)),
                        Act::A2(x) => Act::A2(relu(x)),
                    };
                    on_relu(relu_i, &r)?;
                    relu_i += 1;
                    r
                }
                (OpKind::MaxPool, Act::A4(x)) => {
                    Act::A4(max_pool2d(x, MaxPoolOptions::new([2, 2])))
                }
                (OpKind::GlobalAvgPool, Act::A4(x)) => {
                    let [b, c, _, _] = x.dims();
                    Act::A2(x.mean_dims(&[2, 3]).reshape([b, c]))
                }
                (OpKind::Flatten, Act::A4(x)) => Act::A2(x.flatten(1, 3)),
                (OpKind::Linear { .. }, Act::A2(x)) => {
                    let w = p[0].d2()?;
                    let b = p[1].d1()?;
                    Act::A2(x.matmul(w.transpose()).add(b.unsqueeze_dim(0)))
                }
                (OpKind::Dropout { p: prob }, Act::A2(x)) => match (train, rng.as_deref_mut()) {
                    (true, Some(r)) if *prob > 0.0 => {
                        let dims = x.dims();
                        let keep = 1.0 / (1.0 - prob);
                        let mask: Vec<f32> = (0..dims[0] * dims[1])
                            .map(|_| {
                                if r.uniform() < *prob {
                                    0.0
                                } else {
                                    keep as f32
                                }
                            })
                            .collect();
                        let m = Tensor::<2>::from_data(TensorData::new(mask, dims), &self.device);
                        Act::A2(x.mul(m))
                    }
                    _ => Act::A2(x),
                },
                (k, _) => bail!(
                    "internal error: op {:?} ({k:?}) got the wrong input rank",
                    op.name
                ),
            };
        }
        match a {
            Act::A2(x) => Ok((x, bn_updates)),
            Act::A4(_) => bail!("internal error: network does not end in a linear layer"),
        }
    }

    /// One SGD step on a batch (`x`: normalised NCHW, `labels` in `0..classes`).
    pub fn train_step(
        &mut self,
        x: Vec<f32>,
        labels: &[u8],
        hp: SgdStep,
        rng: &mut Rng,
    ) -> Result<StepStats> {
        let b = labels.len();
        let x = self.input(x, b)?;
        let tracked: Vec<Pt> = self
            .specs
            .iter()
            .zip(&self.values)
            .map(|(s, v)| {
                if s.role.trainable() {
                    v.tracked()
                } else {
                    v.clone()
                }
            })
            .collect();
        let (logits, bn) = self.forward(&tracked, x, true, Some(rng), &mut |_, _| Ok(()))?;
        let y: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, [b, 1]), &self.device);
        let logp = log_softmax(logits.clone(), 1);
        let loss = logp.gather(1, y).mean().neg();
        let grads = loss.backward();
        let loss_v = to_vec(loss.inner())?.first().copied().unwrap_or(f32::NAN);
        let correct = count_correct(&to_vec(logits.inner())?, labels, self.config.num_classes);
        for (i, t) in tracked.iter().enumerate() {
            if !self.specs[i].role.trainable() {
                continue;
            }
            let g = t
                .grad(&grads)
                .with_context(|| format!("no gradient for {}", self.specs[i].name))?;
            let v = self.velocity[i].get_or_insert_with(|| self.values[i].zeros_like());
            Pt::sgd(
                &mut self.values[i],
                v,
                g,
                hp.lr,
                hp.momentum,
                hp.weight_decay,
            )?;
        }
        for (i, rm, rv) in bn {
            self.values[i] = Pt::D1(rm);
            self.values[i + 1] = Pt::D1(rv);
        }
        if !loss_v.is_finite() {
            bail!("training diverged: loss is {loss_v}");
        }
        Ok(StepStats {
            loss: loss_v,
            correct,
        })
    }

    /// Evaluation forward pass; returns the logits `[b * classes]`. `want[i]` selects which
    /// ReLU layers are passed (as row-major f32 with their batch shape) to `on_layer`.
    pub fn forward_eval(
        &self,
        x: Vec<f32>,
        b: usize,
        want: &[bool],
        on_layer: &mut LayerCallback<'_>,
    ) -> Result<Vec<f32>> {
        let x = self.input(x, b)?;
        let layers = &self.layers;
        let mut cb = |i: usize, a: &Act| -> Result<()> {
            if !want.get(i).copied().unwrap_or(false) {
                return Ok(());
            }
            let (shape, data) = match a {
                Act::A4(t) => (t.dims().to_vec(), to_vec(t.clone())?),
                Act::A2(t) => (t.dims().to_vec(), to_vec(t.clone())?),
            };
            on_layer(&layers[i], &shape, &data)
        };
        let (logits, _) = self.forward(&self.values, x, false, None, &mut cb)?;
        to_vec(logits)
    }
}

/// Number of rows of `logits` (`[b, classes]`) whose argmax equals the label.
pub fn count_correct(logits: &[f32], labels: &[u8], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best == l as usize
        })
        .count()
}
