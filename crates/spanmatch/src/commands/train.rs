//! `spanmatch train`, `spanmatch extract`, `spanmatch bench-training`: arguments and entry points
//! over the training crate.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use spanmatch_train::data::{self, DataOptions, DatasetKind, Split};
use spanmatch_train::extract::{extract, select_layers, ActivationSink, NpzWriter, TeeSink};
use spanmatch_train::model::ModelConfig;
use spanmatch_train::train::{load_checkpoint, train, TrainConfig, TrainOptions};

/// `--dataset`: the names of [`DatasetKind`], listed in `--help`.
pub fn dataset_parser() -> impl clap::builder::TypedValueParser<Value = DatasetKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["mnist", "fashion-mnist", "cifar10"])
        .try_map(|s| s.parse::<DatasetKind>())
}

/// `--split`: train or test.
pub fn split_parser() -> impl clap::builder::TypedValueParser<Value = Split> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["train", "test"]).try_map(|s| s.parse::<Split>())
}

/// Hyper-parameter presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Small and fast: 4 epochs, lr 0.05 (/10 at epoch 3), batch 128, wd 5e-4.
    Fast,
    /// Wang et al. 2018: 160 epochs, lr 0.1 (0.05 for VGG-16) /10 at epochs 80 and 120,
    /// batch 128, momentum 0.9, wd 5e-4.
    Reference,
}

/// Arguments of `spanmatch train`.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Dataset to train on.
    #[arg(long, value_parser = crate::commands::train::dataset_parser(), default_value = "fashion-mnist")]
    pub dataset: DatasetKind,
    /// Model: vgg11|vgg13|vgg16|vgg19 (suffix _bn for batch norm), plain20|plain32|plain44|plain56, mlp, small-cnn.
    #[arg(long, default_value = "small-cnn")]
    pub model: String,
    /// Channel width multiplier for VGG / plain nets (e.g. 0.25).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Hidden widths of the classifier / MLP, comma-separated (VGG default 512,512).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Hyper-parameter preset [default: reference for cifar10, fast otherwise]; the flags below override it.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Seed: fixes initialisation, data order and augmentation (same seed -> same network).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Initial learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Epochs at which the learning rate is multiplied by --lr-gamma, comma-separated (e.g. 80,120).
    #[arg(long, value_delimiter = ',')]
    pub lr_milestones: Option<Vec<usize>>,
    /// Learning-rate factor at each milestone.
    #[arg(long)]
    pub lr_gamma: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (L2).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Train on only the first N training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Output directory (config.json, checkpoint.safetensors, history.json); an interrupted run resumes from it.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory searched first for the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Download the dataset (SHA-256 verified) into the user cache if it is not found locally.
    #[arg(long)]
    pub download: bool,
    /// Only evaluate on the test set after the last epoch (default: after every epoch).
    #[arg(long)]
    pub skip_epoch_eval: bool,
    /// Do not show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl TrainArgs {
    /// Builds the run configuration from preset + overrides.
    pub fn to_config(&self) -> Result<TrainConfig> {
        let preset = self
            .preset
            .unwrap_or(if self.dataset == DatasetKind::Cifar10 {
                Preset::Reference
            } else {
                Preset::Fast
            });
        let mut c = match preset {
            Preset::Reference => TrainConfig::reference(&self.model, self.seed)?,
            Preset::Fast => TrainConfig::fast_default(self.seed)?,
        };
        c.dataset = self.dataset;
        c.model_name = self.model.clone();
        c.model = ModelConfig::from_name(
            &self.model,
            self.dataset.image_shape(),
            10,
            self.width,
            self.hidden.clone(),
        )?;
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.lr = v;
        }
        if let Some(v) = &self.lr_milestones {
            c.lr_milestones = v.clone();
        }
        if let Some(v) = self.lr_gamma {
            c.lr_gamma = v;
        }
        if let Some(v) = self.momentum {
            c.momentum = v;
        }
        if let Some(v) = self.weight_decay {
            c.weight_decay = v;
        }
        c.train_limit = self.train_limit;
        c.test_limit = self.test_limit;
        Ok(c)
    }
}

/// `spanmatch train`: trains (or resumes) one network and prints its final test accuracy.
pub fn run_train(args: &TrainArgs) -> Result<()> {
    let config = args.to_config()?;
    let opts = TrainOptions {
        out_dir: Some(args.out.clone()),
        progress: !args.no_progress,
        data: DataOptions {
            data_dir: args.data_dir.clone(),
            allow_download: args.download,
        },
        eval_each_epoch: !args.skip_epoch_eval,
        cpu: Some(spanmatch_engine::results::Cpu::detect().summary()),
    };
    let tn = train(&config, &opts)?;
    match tn.history.last().and_then(|r| r.test_accuracy) {
        Some(a) => println!(
            "trained {} on {} (seed {}): test accuracy {:.2}% after {} epochs; checkpoint in {}",
            config.model_name,
            config.dataset,
            config.seed,
            100.0 * a,
            tn.history.len(),
            args.out.display()
        ),
        None => println!("nothing to do: {} already finished", args.out.display()),
    }
    Ok(())
}

/// Arguments of `spanmatch extract`.
#[derive(Args, Clone, Debug)]
pub struct ExtractArgs {
    /// Trained run directory (or its checkpoint.safetensors); repeat for several nets, which see the same images in the same order.
    #[arg(long = "checkpoint", required = true)]
    pub checkpoints: Vec<PathBuf>,
    /// Output .npz per checkpoint (same order and count as --checkpoint); one float32 array per layer, key = layer name.
    #[arg(long = "out", required = true)]
    pub outs: Vec<PathBuf>,
    /// Dataset [default: the one the first checkpoint was trained on].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Split to run over.
    #[arg(long, value_parser = crate::commands::train::split_parser(), default_value = "test")]
    pub split: Split,
    /// Only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Layers to extract, comma-separated (default: every ReLU layer), e.g. features.1,classifier.4.
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<String>>,
    /// Images per batch (peak memory is one batch of activations).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Directory searched first for the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Download the dataset (SHA-256 verified) into the user cache if it is not found locally.
    #[arg(long)]
    pub download: bool,
}

/// `spanmatch extract`: writes post-ReLU activations of each checkpoint into its `.npz`.
pub fn run_extract(args: &ExtractArgs) -> Result<()> {
    if args.checkpoints.len() != args.outs.len() {
        bail!(
            "{} --checkpoint but {} --out: give one output per checkpoint",
            args.checkpoints.len(),
            args.outs.len()
        );
    }
    let nets = args
        .checkpoints
        .iter()
        .map(|p| load_checkpoint(p).with_context(|| format!("{}: cannot load", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let kind = args.dataset.unwrap_or(nets[0].config.dataset);
    let mut data = data::load(
        kind,
        args.split,
        &DataOptions {
            data_dir: args.data_dir.clone(),
            allow_download: args.download,
        },
    )?;
    if let Some(n) = args.limit {
        data.truncate(n);
    }
    let mut writers = Vec::with_capacity(nets.len());
    for (i, (tn, out)) in nets.iter().zip(&args.outs).enumerate() {
        let layers = select_layers(&tn.net, args.layers.as_deref())
            .with_context(|| format!("{}", args.checkpoints[i].display()))?;
        writers.push(NpzWriter::create(out, i, &layers, data.len())?);
    }
    let refs: Vec<&spanmatch_train::net::Net> = nets.iter().map(|t| &t.net).collect();
    let mut tee = TeeSink(
        writers
            .iter_mut()
            .map(|w| w as &mut dyn ActivationSink)
            .collect(),
    );
    extract(
        &refs,
        &data,
        args.batch_size,
        args.layers.as_deref(),
        &mut tee,
    )?;
    for out in &args.outs {
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Arguments of `spanmatch bench-training`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Model to benchmark (see `train --model`).
    #[arg(long, default_value = "small-cnn")]
    pub model: String,
    /// Input shape as C,H,W.
    #[arg(long, value_delimiter = ',', default_value = "1,28,28")]
    pub input: Vec<usize>,
    /// Channel width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
}

/// `spanmatch bench-training`: prints the median training throughput on synthetic data.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let input: [usize; 3] = args
        .input
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--input needs three values C,H,W"))?;
    let cfg = ModelConfig::from_name(&args.model, input, 10, args.width, None)?;
    let r = spanmatch_train::bench::bench_training(&cfg, args.batch_size, args.steps, 2)?;
    println!(
        "{} {:?} width {} batch {}: median {:.0} img/s (min {:.0}, max {:.0}) over {} steps",
        args.model,
        input,
        args.width,
        args.batch_size,
        r.median_images_per_sec,
        r.min_images_per_sec,
        r.max_images_per_sec,
        args.steps
    );
    Ok(())
}
