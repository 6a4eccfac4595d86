//! Framework-free model descriptions: architectures, the flat operation list they expand to,
//! parameter names/shapes and the named ReLU layers whose activations are extracted.
//!
//! Naming follows torchvision: a VGG's `features` sequence holds `Conv2d`, (`BatchNorm2d`),
//! `ReLU` and `MaxPool2d` modules, its `classifier` holds `Linear`, `ReLU`, `Dropout` triples and
//! a final `Linear`; a layer's name is its sequence name plus the index of its module in that
//! sequence (`features.1`, `features.4`, ..., `classifier.1`, `classifier.4`). Plain nets use
//! `features.<i>` for their conv-BN-ReLU stack and `fc` for the last linear layer; MLPs use the
//! VGG classifier layout.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A network architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Arch {
    /// VGG of depth 11, 13, 16 or 19 (torchvision configurations A, B, D, E).
    Vgg {
        /// 11, 13, 16 or 19.
        depth: u32,
        /// Channel width multiplier (1.0 = 64..512 channels).
        width: f64,
        /// Batch norm after every conv.
        batch_norm: bool,
        /// Hidden widths of the classifier (reference: `[512, 512]`).
        hidden: Vec<usize>,
        /// Dropout probability in the classifier (0 = none; the index slot is kept).
        dropout: f64,
    },
    /// A VGG-style CNN with an explicit feature list (`Some(c)` = 3x3 conv with `c` channels,
    /// `None` = 2x2 max pool).
    Cnn {
        /// Feature configuration.
        features: Vec<Option<usize>>,
        /// Batch norm after every conv.
        batch_norm: bool,
        /// Hidden widths of the classifier.
        hidden: Vec<usize>,
        /// Dropout probability in the classifier.
        dropout: f64,
    },
    /// "Plain" ResNet-style net without skip connections: depth = 6k+2 (20, 32, 44, 56, ...).
    Plain {
        /// Depth (6k+2).
        depth: u32,
        /// Channel width multiplier (1.0 = stages of 16/32/64 channels).
        width: f64,
    },
    /// Multi-layer perceptron on the flattened input.
    Mlp {
        /// Hidden widths.
        hidden: Vec<usize>,
        /// Dropout probability.
        dropout: f64,
    },
}

/// A full model configuration: architecture, input shape and number of classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Number of output classes.
    pub num_classes: usize,
}

impl ModelConfig {
    /// Parses a model name: `vgg11`, `vgg16_bn` (or `vgg16-bn`), `plain20`, `mlp`, `small-cnn`.
    ///
    /// `width` scales channels (VGG/plain); `hidden` overrides classifier/MLP hidden widths.
    pub fn from_name(
        name: &str,
        input: [usize; 3],
        num_classes: usize,
        width: f64,
        hidden: Option<Vec<usize>>,
    ) -> Result<Self> {
        let n = name.to_ascii_lowercase().replace('-', "_");
        if !(width > 0.0 && width.is_finite()) {
            bail!("width multiplier must be positive, got {width}");
        }
        let arch = if let Some(rest) = n.strip_prefix("vgg") {
            let (d, bn) = match rest.strip_suffix("_bn") {
                Some(d) => (d, true),
                None => (rest, false),
            };
            let depth: u32 = d
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown model {name:?}: bad VGG depth {d:?}"))?;
            if !matches!(depth, 11 | 13 | 16 | 19) {
                bail!("unknown model {name:?}: VGG depth must be 11, 13, 16 or 19");
            }
            Arch::Vgg {
                depth,
                width,
                batch_norm: bn,
                hidden: hidden.unwrap_or_else(|| vec![512, 512]),
                dropout: 0.0,
            }
        } else if let Some(d) = n.strip_prefix("plain") {
            let depth: u32 = d
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown model {name:?}: bad plain depth {d:?}"))?;
            if depth < 8 || !(depth - 2).is_multiple_of(6) {
                bail!("unknown model {name:?}: plain depth must be 6k+2 (20, 32, 44, 56)");
            }
            Arch::Plain { depth, width }
        } else if n == "mlp" {
            Arch::Mlp {
                hidden: hidden.unwrap_or_else(|| vec![256, 128]),
                dropout: 0.0,
            }
        } else if n == "small_cnn" {
            Arch::Cnn {
                features: vec![Some(16), None, Some(32), None],
                batch_norm: false,
                hidden: hidden.unwrap_or_else(|| vec![128]),
                dropout: 0.0,
            }
        } else {
            bail!("unknown model {name:?}: expected vgg11|vgg13|vgg16|vgg19[_bn], plain20|32|44|56, mlp or small-cnn");
        };
        let cfg = Self {
            arch,
            input,
            num_classes,
        };
        cfg.ops()?;
        Ok(cfg)
    }

    /// Expands the configuration into the flat operation list.
    pub fn ops(&self) -> Result<Vec<Op>> {
        build_ops(self)
    }

    /// The named ReLU layers, in forward order.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        for op in self.ops()? {
            if op.kind == OpKind::Relu {
                let kind = if op.out_shape.len() == 3 {
                    LayerKind::Conv
                } else {
                    LayerKind::Fc
                };
                out.push(LayerInfo {
                    name: op.name,
                    index: out.len(),
                    kind,
                    shape: op.out_shape,
                });
            }
        }
        Ok(out)
    }

    /// All parameter/buffer names with shapes, in checkpoint order.
    pub fn param_specs(&self) -> Result<Vec<ParamSpec>> {
        Ok(self.ops()?.into_iter().flat_map(|op| op.params()).collect())
    }
}

/// Names of the ReLU layers of a model (what `spanmatch reproduce` compares).
pub fn layer_names(config: &ModelConfig) -> Result<Vec<String>> {
    Ok(config.layers()?.into_iter().map(|l| l.name).collect())
}

/// Conv or fully connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// Output `[c, h, w]` per image.
    Conv,
    /// Output `[c]` per image.
    Fc,
}

/// A named, addressable ReLU layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Name, e.g. `features.1` or `classifier.4`.
    pub name: String,
    /// Position among the model's ReLU layers (0-based).
    pub index: usize,
    /// Conv or fc.
    pub kind: LayerKind,
    /// Per-image output shape: `[c, h, w]` (conv) or `[c]` (fc).
    pub shape: Vec<usize>,
}

impl LayerInfo {
    /// Number of channels / neurons.
    pub fn channels(&self) -> usize {
        self.shape[0]
    }
    /// Values per image.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What a parameter is (decides its initialisation and whether SGD updates it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// Conv weight `[out, in, k, k]`: Kaiming normal, fan-in, ReLU gain.
    ConvWeight,
    /// Linear weight `[out, in]`: N(0, 0.01).
    LinearWeight,
    /// Bias: zeros.
    Bias,
    /// BN weight: ones.
    BnWeight,
    /// BN bias: zeros.
    BnBias,
    /// BN running mean (buffer): zeros.
    RunningMean,
    /// BN running variance (buffer): ones.
    RunningVar,
}

impl ParamRole {
    /// Whether SGD updates it (false for BN running statistics).
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// A parameter or buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Full name, e.g. `features.0.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role.
    pub role: ParamRole,
}

/// One operation of the flat network description.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// 3x3 (or kxk) convolution.
    Conv {
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        pad: usize,
        /// Has a bias.
        bias: bool,
    },
    /// Batch norm over channels.
    BatchNorm {
        /// Channels.
        ch: usize,
    },
    /// ReLU (a named, extractable layer).
    Relu,
    /// 2x2 max pool, stride 2.
    MaxPool,
    /// Global average pool to `[b, c]`.
    GlobalAvgPool,
    /// Flatten to `[b, c*h*w]`.
    Flatten,
    /// Fully connected layer.
    Linear {
        /// Input features.
        fin: usize,
        /// Output features.
        fout: usize,
    },
    /// Dropout (identity at evaluation).
    Dropout {
        /// Drop probability.
        p: f64,
    },
}

/// An operation with its module name and per-image output shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Module name (`features.3`, `classifier.0`, `fc`; empty for unnamed reshapes).
    pub name: String,
    /// Operation.
    pub kind: OpKind,
    /// Per-image output shape.
    pub out_shape: Vec<usize>,
}

impl Op {
    /// Parameters/buffers of this op in checkpoint order.
    pub fn params(&self) -> Vec<ParamSpec> {
        let p = |suffix: &str, shape: Vec<usize>, role| ParamSpec {
            name: format!("{}.{suffix}", self.name),
            shape,
            role,
        };
        match self.kind {
            OpKind::Conv {
                cin, cout, k, bias, ..
            } => {
                let mut v = vec![p("weight", vec![cout, cin, k, k], ParamRole::ConvWeight)];
                if bias {
                    v.push(p("bias", vec![cout], ParamRole::Bias));
                }
                v
            }
            OpKind::BatchNorm { ch } => vec![
                p("weight", vec![ch], ParamRole::BnWeight),
                p("bias", vec![ch], ParamRole::BnBias),
                p("running_mean", vec![ch], ParamRole::RunningMean),
                p("running_var", vec![ch], ParamRole::RunningVar),
            ],
            OpKind::Linear { fin, fout } => vec![
                p("weight", vec![fout, fin], ParamRole::LinearWeight),
                p("bias", vec![fout], ParamRole::Bias),
            ],
            _ => vec![],
        }
    }
}

fn vgg_cfg(depth: u32) -> Vec<Option<usize>> {
    let m = None;
    let s = Some;
    match depth {
        11 => vec![
            s(64),
            m,
            s(128),
            m,
            s(256),
            s(256),
            m,
            s(512),
            s(512),
            m,
            s(512),
            s(512),
            m,
        ],
        13 => vec![
            s(64),
            s(64),
            m,
            s(128),
            s(128),
            m,
            s(256),
            s(256),
            m,
            s(512),
            s(512),
            m,
            s(512),
            s(512),
            m,
        ],
        16 => vec![
            s(64),
            s(64),
            m,
            s(128),
            s(128),
            m,
            s(256),
            s(256),
            s(256),
            m,
            s(512),
            s(512),
            s(512),
            m,
            s(512),
            s(512),
            s(512),
            m,
        ],
        _ => vec![
            s(64),
            s(64),
            m,
            s(128),
            s(128),
            m,
            s(256),
            s(256),
            s(256),
            s(256),
            m,
            s(512),
            s(512),
            s(512),
            s(512),
            m,
            s(512),
            s(512),
            s(512),
            s(512),
            m,
        ],
    }
}

fn scale(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

struct Builder {
    ops: Vec<Op>,
    shape: Vec<usize>,
}

impl Builder {
    fn push(&mut self, name: String, kind: OpKind) -> Result<()> {
        let s = &self.shape;
        let out = match &kind {
            OpKind::Conv {
                cin,
                cout,
                k,
                stride,
                pad,
                ..
            } => {
                if s.len() != 3 || s[0] != *cin {
                    bail!("{name}: conv expects [{cin}, h, w] input, got {s:?}");
                }
                let o = |x: usize| (x + 2 * pad).checked_sub(*k).map(|v| v / stride + 1);
                match (o(s[1]), o(s[2])) {
                    (Some(h), Some(w)) if h > 0 && w > 0 => vec![*cout, h, w],
                    _ => bail!("{name}: input {s:?} too small for a {k}x{k} conv"),
                }
            }
            OpKind::MaxPool => {
                if s.len() != 3 || s[1] < 2 || s[2] < 2 {
                    bail!("{name}: max pool needs a [c, h>=2, w>=2] input, got {s:?}");
                }
                vec![s[0], s[1] / 2, s[2] / 2]
            }
            OpKind::GlobalAvgPool => vec![s[0]],
            OpKind::Flatten => vec![s.iter().product()],
            OpKind::Linear { fin, fout } => {
                if s.len() != 1 || s[0] != *fin {
                    bail!("{name}: linear expects [{fin}] input, got {s:?}");
                }
                vec![*fout]
            }
            OpKind::BatchNorm { .. } | OpKind::Relu | OpKind::Dropout { .. } => s.clone(),
        };
        self.shape = out.clone();
        self.ops.push(Op {
            name,
            kind,
            out_shape: out,
        });
        Ok(())
    }

    fn features(&mut self, cfg: &[Option<usize>], bn: bool) -> Result<()> {
        let mut i = 0;
        for item in cfg {
            match item {
                Some(c) => {
                    let cin = self.shape[0];
                    self.push(
                        format!("features.{i}"),
                        OpKind::Conv {
                            cin,
                            cout: *c,
                            k: 3,
                            stride: 1,
                            pad: 1,
                            bias: true,
                        },
                    )?;
                    i += 1;
                    if bn {
                        self.push(format!("features.{i}"), OpKind::BatchNorm { ch: *c })?;
                        i += 1;
                    }
                    self.push(format!("features.{i}"), OpKind::Relu)?;
                    i += 1;
                }
                None => {
                    // A pool on a 1x1 map (the last VGG pool on 28x28 inputs) is omitted; it is
                    // always the final entry, so no ReLU index changes.
                    if self.shape[1] >= 2 && self.shape[2] >= 2 {
                        self.push(format!("features.{i}"), OpKind::MaxPool)?;
                    }
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn classifier(&mut self, hidden: &[usize], dropout: f64, classes: usize) -> Result<()> {
        self.push(String::new(), OpKind::Flatten)?;
        let mut i = 0;
        for &h in hidden {
            let fin = self.shape[0];
            self.push(format!("classifier.{i}"), OpKind::Linear { fin, fout: h })?;
            self.push(format!("classifier.{}", i + 1), OpKind::Relu)?;
            if dropout > 0.0 {
                self.push(
                    format!("classifier.{}", i + 2),
                    OpKind::Dropout { p: dropout },
                )?;
            }
            i += 3;
        }
        let fin = self.shape[0];
        self.push(
            format!("classifier.{i}"),
            OpKind::Linear { fin, fout: classes },
        )
    }
}

fn build_ops(cfg: &ModelConfig) -> Result<Vec<Op>> {
    let mut b = Builder {
        ops: Vec::new(),
        shape: cfg.input.to_vec(),
    };
    if cfg.num_classes == 0 {
        bail!("num_classes must be positive");
    }
    match &cfg.arch {
        Arch::Vgg {
            depth,
            width,
            batch_norm,
            hidden,
            dropout,
        } => {
            if !matches!(depth, 11 | 13 | 16 | 19) {
                bail!("VGG depth must be 11, 13, 16 or 19, got {depth}");
            }
            let f: Vec<Option<usize>> = vgg_cfg(*depth)
                .into_iter()
                .map(|c| c.map(|c| scale(c, *width)))
                .collect();
            b.features(&f, *batch_norm)?;
            b.classifier(hidden, *dropout, cfg.num_classes)?;
        }
        Arch::Cnn {
            features,
            batch_norm,
            hidden,
            dropout,
        } => {
            b.features(features, *batch_norm)?;
            b.classifier(hidden, *dropout, cfg.num_classes)?;
        }
        Arch::Plain { depth, width } => {
            if *depth < 8 || !(depth - 2).is_multiple_of(6) {
                bail!("plain depth must be 6k+2, got {depth}");
            }
            let k = ((depth - 2) / 6) as usize;
            let mut i = 0;
            let mut conv_bn_relu = |b: &mut Builder, cout: usize, stride: usize| -> Result<()> {
                let cin = b.shape[0];
                b.push(
                    format!("features.{i}"),
                    OpKind::Conv {
                        cin,
                        cout,
                        k: 3,
                        stride,
                        pad: 1,
                        bias: false,
                    },
                )?;
                b.push(
                    format!("features.{}", i + 1),
                    OpKind::BatchNorm { ch: cout },
                )?;
                b.push(format!("features.{}", i + 2), OpKind::Relu)?;
                i += 3;
                Ok(())
            };
            conv_bn_relu(&mut b, scale(16, *width), 1)?;
            for (stage, c) in [16, 32, 64].into_iter().enumerate() {
                for j in 0..2 * k {
                    let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                    conv_bn_relu(&mut b, scale(c, *width), stride)?;
                }
            }
            b.push("pool".into(), OpKind::GlobalAvgPool)?;
            let fin = b.shape[0];
            b.push(
                "fc".into(),
                OpKind::Linear {
                    fin,
                    fout: cfg.num_classes,
                },
            )?;
        }
        Arch::Mlp { hidden, dropout } => {
            b.classifier(hidden, *dropout, cfg.num_classes)?;
        }
    }
    Ok(b.ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgg16_names_match_torchvision() {
        let c = ModelConfig::from_name("vgg16", [3, 32, 32], 10, 1.0, None).unwrap();
        let names = layer_names(&c).unwrap();
        assert_eq!(names.len(), 15);
        assert_eq!(
            &names[..4],
            ["features.1", "features.3", "features.6", "features.8"]
        );
        assert_eq!(names[12], "features.29");
        assert_eq!(&names[13..], ["classifier.1", "classifier.4"]);
        let bn = ModelConfig::from_name("vgg11_bn", [3, 32, 32], 10, 1.0, None).unwrap();
        let names = layer_names(&bn).unwrap();
        assert_eq!(&names[..3], ["features.2", "features.6", "features.10"]);
        let l = bn.layers().unwrap();
        assert_eq!(l[0].shape, vec![64, 32, 32]);
        assert_eq!(l[7].shape, vec![512, 2, 2]);
        assert_eq!(l[8].shape, vec![512]);
    }

    #[test]
    fn vgg_on_mnist_and_plain() {
        let c = ModelConfig::from_name("vgg11", [1, 28, 28], 10, 0.25, None).unwrap();
        let l = c.layers().unwrap();
        assert_eq!(l[0].shape, vec![16, 28, 28]);
        assert_eq!(l[7].shape, vec![128, 1, 1]);
        let p = ModelConfig::from_name("plain20", [3, 32, 32], 10, 1.0, None).unwrap();
        let l = p.layers().unwrap();
        assert_eq!(l.len(), 19);
        assert_eq!(l[0].name, "features.2");
        assert_eq!(l[18].shape, vec![64, 8, 8]);
        assert!(ModelConfig::from_name("plain21", [3, 32, 32], 10, 1.0, None).is_err());
        assert!(ModelConfig::from_name("vgg12", [3, 32, 32], 10, 1.0, None).is_err());
    }
}
