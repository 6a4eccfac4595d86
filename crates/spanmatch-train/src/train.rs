//! Seeded SGD training with a step learning-rate schedule, per-epoch test accuracy, progress
//! bar, safetensors checkpoints and resume.
//!
//! The seed fixes the initialisation, the data order and the augmentation/dropout of every
//! epoch (each epoch draws from its own stream derived from `(seed, epoch)`), so a run that is
//! interrupted and resumed from its last epoch checkpoint ends with the same network as an
//! uninterrupted one.
//!
//! Output directory layout: `config.json` ([`TrainConfig`]), `checkpoint.safetensors`
//! (parameters and BN buffers under torchvision-style names plus `momentum.<name>` buffers;
//! metadata `epoch`), `history.json` (one [`EpochRecord`] per finished epoch).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data::{self, DataOptions, Dataset, DatasetKind, Split};
use crate::model::{Arch, ModelConfig};
use crate::net::{count_correct, Net, SgdStep};
use crate::rng::Rng;

/// Everything that determines a training run (saved as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Dataset trained on (and evaluated on its test split).
    pub dataset: DatasetKind,
    /// Model name as given by the user (e.g. `vgg16_bn`), informational.
    pub model_name: String,
    /// Full model configuration.
    pub model: ModelConfig,
    /// Seed for initialisation, data order and augmentation.
    pub seed: u64,
    /// Number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Epochs (0-based, the first epoch with the reduced rate) at which lr is multiplied by
    /// `lr_gamma`.
    pub lr_milestones: Vec<usize>,
    /// Learning-rate factor at each milestone.
    pub lr_gamma: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay (L2 penalty added to the gradient).
    pub weight_decay: f64,
    /// Use only the first `n` training images (None = all).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first `n` test images (None = all).
    pub test_limit: Option<usize>,
}

impl TrainConfig {
    /// The reference experiment (Wang et al. 2018): CIFAR-10, batch 128, 160 epochs, SGD
    /// momentum 0.9, wd 5e-4, lr 0.1 (0.05 for VGG-16) divided by 10 at epochs 80 and 120.
    pub fn reference(model_name: &str, seed: u64) -> Result<Self> {
        let model = ModelConfig::from_name(model_name, [3, 32, 32], 10, 1.0, None)?;
        let lr = match &model.arch {
            Arch::Vgg { depth: 16, .. } => 0.05,
            _ => 0.1,
        };
        Ok(Self {
            dataset: DatasetKind::Cifar10,
            model_name: model_name.to_string(),
            model,
            seed,
            epochs: 160,
            batch_size: 128,
            lr,
            lr_milestones: vec![80, 120],
            lr_gamma: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            train_limit: None,
            test_limit: None,
        })
    }

    /// The small fast default: `small-cnn` on Fashion-MNIST, 4 epochs, lr 0.05 (/10 at epoch 3),
    /// batch 128, momentum 0.9, wd 5e-4.
    pub fn fast_default(seed: u64) -> Result<Self> {
        let model = ModelConfig::from_name("small-cnn", [1, 28, 28], 10, 1.0, None)?;
        Ok(Self {
            dataset: DatasetKind::FashionMnist,
            model_name: "small-cnn".into(),
            model,
            seed,
            epochs: 4,
            batch_size: 128,
            lr: 0.05,
            lr_milestones: vec![3],
            lr_gamma: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            train_limit: None,
            test_limit: None,
        })
    }

    /// Learning rate used during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let k = self.lr_milestones.iter().filter(|&&m| epoch >= m).count();
        self.lr * self.lr_gamma.powi(k as i32)
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch size must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("learning rate must be positive, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("momentum must be in [0, 1), got {}", self.momentum);
        }
        if self.weight_decay < 0.0 {
            bail!("weight decay must be non-negative");
        }
        self.model.ops()?;
        Ok(())
    }

    /// Same run apart from the number of epochs (what resuming requires).
    fn same_run(&self, other: &TrainConfig) -> bool {
        let mut a = self.clone();
        a.epochs = other.epochs;
        a == *other
    }
}

/// Non-determining options of a run.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Output directory for checkpoints (None = keep in memory only).
    pub out_dir: Option<PathBuf>,
    /// Show a progress bar and per-epoch summaries on stderr.
    pub progress: bool,
    /// Where to find the data.
    pub data: DataOptions,
    /// Evaluate on the test split after every epoch.
    pub eval_each_epoch: bool,
    /// The CPU the run trains on, recorded in each epoch's record (the caller describes it: the
    /// SIMD level and L1 data cache decide how the products round; see docs/decisions.md).
    pub cpu: Option<String>,
}

/// Statistics of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on augmented batches).
    pub train_accuracy: f64,
    /// Test accuracy after the epoch (None if not evaluated).
    pub test_accuracy: Option<f64>,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Wall time of the training part of the epoch.
    pub seconds: f64,
    /// The CPU the epoch was trained on ([`TrainOptions::cpu`]), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// A trained network with its configuration and history.
pub struct TrainedNet {
    /// Configuration that produced it.
    pub config: TrainConfig,
    /// The network.
    pub net: Net,
    /// Per-epoch statistics.
    pub history: Vec<EpochRecord>,
    /// [`state_digest`] of the net before its first training step, recorded when training
    /// started and carried in the checkpoint (None for checkpoints written before it was kept).
    pub init_digest: Option<String>,
}

/// The network a run starts from, before any training step: the seed fixes every initial value,
/// so this re-creates the initial weights of any trained net of `config` bitwise (checkable
/// against [`TrainedNet::init_digest`]).
pub fn initial_net(config: &TrainConfig) -> Result<Net> {
    Net::new(&config.model, config.seed)
}

/// SHA-256 (hex) of a net's parameters and BN buffers: names, shapes and the f32 bit patterns,
/// so two nets have the same digest exactly when their weights are bitwise equal.
pub fn state_digest(net: &Net) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, shape, data) in net.state(false)? {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            h.update((d as u64).to_le_bytes());
        }
        for v in data {
            h.update(v.to_bits().to_le_bytes());
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Accuracy and loss on a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Fraction correctly classified.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
}

/// Loads the train and test splits of the configured dataset (applying the limits).
pub fn load_data(config: &TrainConfig, data: &DataOptions) -> Result<(Dataset, Dataset)> {
    let mut tr = data::load(config.dataset, Split::Train, data)?;
    let mut te = data::load(config.dataset, Split::Test, data)?;
    if let Some(n) = config.train_limit {
        tr.truncate(n);
    }
    if let Some(n) = config.test_limit {
        te.truncate(n);
    }
    Ok((tr, te))
}

/// Trains a network as configured: loads the data, then [`train_on`].
pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainedNet> {
    let (tr, te) = load_data(config, &opts.data)?;
    train_on(config, &tr, Some(&te), opts)
}

fn check_data(config: &TrainConfig, d: &Dataset, what: &str) -> Result<()> {
    if d.shape != config.model.input {
        bail!(
            "{what} images have shape {:?} but the model expects {:?}",
            d.shape,
            config.model.input
        );
    }
    if d.classes > config.model.num_classes {
        bail!(
            "{what} data has {} classes but the model only {}",
            d.classes,
            config.model.num_classes
        );
    }
    if d.is_empty() {
        bail!("{what} data is empty");
    }
    Ok(())
}

/// Trains on in-memory data; resumes from `opts.out_dir` if it holds a checkpoint of the same
/// run, and writes a checkpoint after every epoch.
pub fn train_on(
    config: &TrainConfig,
    train_data: &Dataset,
    test_data: Option<&Dataset>,
    opts: &TrainOptions,
) -> Result<TrainedNet> {
    config.validate()?;
    check_data(config, train_data, "training")?;
    if let Some(t) = test_data {
        check_data(config, t, "test")?;
    }
    let mut tn = match &opts.out_dir {
        Some(dir) if dir.join(CKPT).is_file() => {
            let mut tn = load_checkpoint(dir)?;
            if !tn.config.same_run(config) {
                bail!(
                    "{}: holds a checkpoint of a different run (config.json differs); \
                     use another --out directory",
                    dir.display()
                );
            }
            tn.config = config.clone();
            if opts.progress {
                eprintln!(
                    "resuming {} after epoch {}",
                    dir.display(),
                    tn.history.len()
                );
            }
            tn
        }
        _ => {
            let net = initial_net(config)?;
            TrainedNet {
                config: config.clone(),
                init_digest: Some(state_digest(&net)?),
                net,
                history: Vec::new(),
            }
        }
    };
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create output directory", dir.display()))?;
        write_json(&dir.join(CONFIG), config)?;
    }
    let n = train_data.len();
    let bs = config.batch_size;
    let steps = n.div_ceil(bs);
    let mut xbuf = Vec::new();
    for epoch in tn.history.len()..config.epochs {
        let lr = config.lr_at(epoch);
        let hp = SgdStep {
            lr,
            momentum: config.momentum,
            weight_decay: config.weight_decay,
        };
        let mut order: Vec<usize> = (0..n).collect();
        Rng::derive(config.seed, 0x0D3E, epoch as u64).shuffle(&mut order);
        let mut aug = Rng::derive(config.seed, 0xA116, epoch as u64);
        let mut drop = Rng::derive(config.seed, 0xD409, epoch as u64);
        let pb = if opts.progress {
            let pb = ProgressBar::new(steps as u64);
            pb.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_prefix(format!("epoch {}/{}", epoch + 1, config.epochs));
            pb
        } else {
            ProgressBar::hidden()
        };
        let t0 = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for idx in order.chunks(bs) {
            train_data.batch(idx, Some(&mut aug), &mut xbuf);
            let labels: Vec<u8> = idx.iter().map(|&i| train_data.labels[i]).collect();
            let st = tn
                .net
                .train_step(std::mem::take(&mut xbuf), &labels, hp, &mut drop)
                .with_context(|| format!("epoch {epoch}"))?;
            loss_sum += st.loss as f64 * idx.len() as f64;
            correct += st.correct;
            seen += idx.len();
            let el = t0.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / el
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        let test_accuracy = match test_data {
            Some(t) if opts.eval_each_epoch || epoch + 1 == config.epochs => {
                Some(evaluate(&tn.net, t, 256)?.accuracy)
            }
            _ => None,
        };
        let rec = EpochRecord {
            epoch,
            lr,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_accuracy,
            images_per_sec: seen as f64 / seconds.max(1e-9),
            seconds,
            cpu: opts.cpu.clone(),
        };
        if opts.progress {
            eprintln!(
                "epoch {}/{}: lr {:.4} loss {:.4} train acc {:.2}% test acc {} ({:.0} img/s, {:.1}s)",
                epoch + 1,
                config.epochs,
                lr,
                rec.train_loss,
                100.0 * rec.train_accuracy,
                rec.test_accuracy
                    .map(|a| format!("{:.2}%", 100.0 * a))
                    .unwrap_or_else(|| "-".into()),
                rec.images_per_sec,
                seconds
            );
        }
        tn.history.push(rec);
        if let Some(dir) = &opts.out_dir {
            save_checkpoint(dir, &tn)?;
        }
    }
    Ok(tn)
}

/// Accuracy and mean cross-entropy of `net` on `data` (no augmentation).
pub fn evaluate(net: &Net, data: &Dataset, batch_size: usize) -> Result<EvalResult> {
    let classes = net.config().num_classes;
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut xbuf = Vec::new();
    let mut acc = EvalAccumulator::default();
    for chunk in idx.chunks(batch_size.max(1)) {
        data.batch(chunk, None, &mut xbuf);
        let labels: Vec<u8> = chunk.iter().map(|&i| data.labels[i]).collect();
        let logits = net.forward_eval(
            std::mem::take(&mut xbuf),
            chunk.len(),
            &[],
            &mut |_, _, _| Ok(()),
        )?;
        acc.add(&logits, &labels, classes);
    }
    Ok(acc.finish())
}

/// Running accuracy and cross-entropy over batches of logits: what [`evaluate`] and the
/// extraction pass ([`crate::extract::extract`]) share, so both give the same numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalAccumulator {
    correct: usize,
    loss: f64,
    images: usize,
}

impl EvalAccumulator {
    /// Adds one batch: `logits` is `[labels.len() * classes]`, row-major. A label the net has
    /// no output for counts as wrong, with infinite loss.
    pub fn add(&mut self, logits: &[f32], labels: &[u8], classes: usize) {
        self.correct += count_correct(logits, labels, classes);
        for (row, &l) in logits.chunks_exact(classes).zip(labels) {
            if l as usize >= classes {
                self.loss = f64::INFINITY;
                continue;
            }
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            self.loss += lse - row[l as usize] as f64;
        }
        self.images += labels.len();
    }

    /// Number of correctly classified images so far.
    pub fn correct(&self) -> usize {
        self.correct
    }

    /// Accuracy and mean cross-entropy of the images added so far.
    pub fn finish(&self) -> EvalResult {
        let n = self.images.max(1) as f64;
        EvalResult {
            accuracy: self.correct as f64 / n,
            loss: self.loss / n,
        }
    }
}

const CONFIG: &str = "config.json";
const CKPT: &str = "checkpoint.safetensors";
const HISTORY: &str = "history.json";
/// Checkpoint metadata key of [`TrainedNet::init_digest`].
const INIT_DIGEST: &str = "init_sha256";

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    atomic_write(path, s.as_bytes())
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename", path.display()))
}

/// Writes `config.json`, `checkpoint.safetensors` (with momentum buffers) and `history.json`.
pub fn save_checkpoint(dir: &Path, tn: &TrainedNet) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    write_json(&dir.join(CONFIG), &tn.config)?;
    let state = tn.net.state(true)?;
    let bytes: Vec<Vec<u8>> = state
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(state.len());
    for ((name, shape, _), b) in state.iter().zip(&bytes) {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .with_context(|| format!("tensor {name}: cannot build safetensors view"))?;
        views.push((name.clone(), v));
    }
    let mut meta = HashMap::new();
    meta.insert("epoch".to_string(), tn.history.len().to_string());
    // The history travels inside the (atomically replaced) checkpoint so that weights and
    // epoch count can never disagree; history.json is a human-readable copy.
    meta.insert("history".to_string(), serde_json::to_string(&tn.history)?);
    meta.insert("format".to_string(), "spanmatch-train".to_string());
    if let Some(d) = &tn.init_digest {
        meta.insert(INIT_DIGEST.to_string(), d.clone());
    }
    let buf = safetensors::serialize(views, Some(meta))
        .with_context(|| format!("{}: cannot serialise checkpoint", dir.display()))?;
    atomic_write(&dir.join(CKPT), &buf)?;
    write_json(&dir.join(HISTORY), &tn.history)
}

/// Loads a trained network from a run directory (or its `checkpoint.safetensors`, with
/// `config.json` next to it).
pub fn load_checkpoint(path: &Path) -> Result<TrainedNet> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join(CKPT))
    } else {
        (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path.to_path_buf(),
        )
    };
    let cfg_path = dir.join(CONFIG);
    let cfg_text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: cannot read run configuration", cfg_path.display()))?;
    let config: TrainConfig = serde_json::from_str(&cfg_text)
        .with_context(|| format!("{}: invalid run configuration", cfg_path.display()))?;
    let buf = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let st = safetensors::SafeTensors::deserialize(&buf)
        .with_context(|| format!("{}: not a valid safetensors file", file.display()))?;
    let mut net = Net::new(&config.model, config.seed)?;
    net.load_state(|name| match st.tensor(name) {
        Ok(t) => {
            if t.dtype() != safetensors::Dtype::F32 {
                bail!(
                    "{}: tensor {name} is {:?}, expected F32",
                    file.display(),
                    t.dtype()
                );
            }
            let data: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok(Some((t.shape().to_vec(), data)))
        }
        Err(_) => Ok(None),
    })
    .with_context(|| {
        format!(
            "{}: checkpoint does not match {}",
            file.display(),
            cfg_path.display()
        )
    })?;
    let history = st_history(&buf)
        .with_context(|| format!("{}: missing or invalid history metadata", file.display()))?;
    let init_digest = st_meta(&buf, INIT_DIGEST);
    Ok(TrainedNet {
        config,
        net,
        history,
        init_digest,
    })
}

fn st_meta(buf: &[u8], key: &str) -> Option<String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(buf).ok()?;
    meta.metadata().as_ref()?.get(key).cloned()
}

fn st_history(buf: &[u8]) -> Option<Vec<EpochRecord>> {
    serde_json::from_str(&st_meta(buf, "history")?).ok()
}
