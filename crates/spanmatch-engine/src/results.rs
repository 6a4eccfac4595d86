//! The one results schema of spanmatch (`"schema": "spanmatch-results"`, version
//! [`SCHEMA_VERSION`]): what `spanmatch compare --json`, `compare --report`, Python's
//! `Result.to_dict()` / `to_json` (numpy, Dask and PyTorch fronts) and `spanmatch reproduce`'s
//! results.json write, what the HTML report renders and what `Result.from_json` reads.
//! docs/results-schema.md documents every field.
//!
//! [`parse_results`] reads this version and the two unversioned formats written before it
//! (`reproduce`'s results.json and `compare --json`), converting them; any other version is an
//! error that names it. All `f64` fields must be finite: JSON has no NaN (`serde_json` writes
//! NaN as `null`, which does not read back as `f64`), so undefined values are `null` options.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use spanmatch_core::measures::Measures;
use spanmatch_core::MaxMatch;

use crate::options::Options;
use crate::verdict::Verdict;

/// The value of `"schema"`.
pub const SCHEMA: &str = "spanmatch-results";
/// The version written by this spanmatch.
pub const SCHEMA_VERSION: u32 = 3;
/// What [`parse_results`] reads, in words (for messages).
pub const SUPPORTED: &str = "schema_version 3, and the unversioned files of earlier spanmatch \
     versions (reproduce's results.json, compare --json and Python's to_json)";

/// Which front produced a results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Front {
    /// `spanmatch compare` (`--json`, `--report`).
    CliCompare,
    /// The numpy front (`spanmatch.compare`, `spanmatch.analyse`).
    Python,
    /// The PyTorch front (`spanmatch.torch.compare`).
    Torch,
    /// The Dask front (`spanmatch.dask.compare`).
    Dask,
    /// `spanmatch reproduce`.
    Reproduce,
}

impl Front {
    /// The name written in results files.
    pub fn name(self) -> &'static str {
        match self {
            Front::CliCompare => "cli-compare",
            Front::Python => "python",
            Front::Torch => "torch",
            Front::Dask => "dask",
            Front::Reproduce => "reproduce",
        }
    }

    /// Parses [`Front::name`].
    pub fn parse(name: &str) -> anyhow::Result<Front> {
        Ok(match name {
            "cli-compare" => Front::CliCompare,
            "python" => Front::Python,
            "torch" => Front::Torch,
            "dask" => Front::Dask,
            "reproduce" => Front::Reproduce,
            other => bail!(
                "front: '{other}' is not a front; use cli-compare, python, torch, dask or reproduce"
            ),
        })
    }
}

/// Everything a run measured: one results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`SCHEMA_VERSION`] when written by this spanmatch.
    pub schema_version: u32,
    /// Version of spanmatch that produced the file.
    pub spanmatch_version: String,
    /// When the results were created (`YYYY-MM-DD HH:MM UTC`, or free text in converted files).
    pub created: String,
    /// Which front produced them.
    pub front: Front,
    /// What the results call net A (a file path, a model's name, "net A").
    pub label_a: String,
    /// What the results call net B.
    pub label_b: String,
    /// The analysis options in force (for `reproduce`: those of the trained pairs).
    pub options: Options,
    /// The ε values; every per-ε list of every layer record follows this order.
    pub eps: Vec<f64>,
    /// Settings of the data rather than of the analysis (layout, view, files, rows per block,
    /// sampled protocol, ...), free form.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// What it takes to repeat the run.
    pub provenance: Provenance,
    /// The compared layers in network order (name, position, kind, neurons, rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSummary>,
    /// Every comparison; the primary one (what tables and Python's `Result["layer"]` show) is
    /// the first of kind `pair`.
    pub comparisons: Vec<Comparison>,
    /// Layer × layer results of the PyTorch front (`cross=True`), free form (Python's
    /// `CrossResult.to_dict()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<serde_json::Value>,
    /// `reproduce`: the run configuration as given (dataset, arch, width, epochs, seeds, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// `reproduce`: one entry per trained net.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<NetSummary>,
    /// Wall-clock timings, free form (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<serde_json::Value>,
    /// Peak resident memory of the run in MiB, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<f64>,
    /// `reproduce`: what matched neurons respond to (top inputs of selected matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuron_views: Option<NeuronViews>,
    /// Warnings raised while computing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when the file was converted from an older format: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<String>,
}

/// What it takes to repeat a run: versions, seeds, data digests, the CPU's instruction set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of spanmatch.
    pub spanmatch_version: String,
    /// Which front produced the results.
    pub front: Front,
    /// Every seed in force.
    pub seeds: Seeds,
    /// Digests of the data sets read, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetDigest>,
    /// How many inputs the statistics were computed on, when the front knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<u64>,
    /// The CPU that computed the results.
    pub cpu: Cpu,
    /// More provenance, free form (kept as read).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The seeds of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seeds {
    /// The options' seed.
    pub seed: u64,
    /// Seed of the null's rotations.
    pub null: u64,
    /// Seed of the bootstrap.
    pub bootstrap: u64,
    /// Seed of the simple matches' random orders.
    pub simple: u64,
    /// Seeds of the trained nets (`reproduce`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<u64>,
}

impl Seeds {
    /// The seeds of these options.
    pub fn of(options: &Options) -> Seeds {
        Seeds {
            seed: options.seed,
            null: options.null_seed(),
            bootstrap: options.bootstrap_seed(),
            simple: options.simple_seed(),
            nets: Vec::new(),
        }
    }
}

/// The digest of one data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetDigest {
    /// What the data is (e.g. `"fashion-mnist test images"`).
    pub name: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The CPU: architecture, the instruction-set extensions detected at run time and, where the
/// system says, the model and the level-1 data cache. Training on the CPU rounds the same way on
/// two machines only when the SIMD level and the L1 data cache geometry agree (the matrix
/// products' blocking depends on the latter; docs/decisions.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// `std::env::consts::ARCH` (`"x86_64"`, `"aarch64"`, ...).
    pub arch: String,
    /// Extensions detected (x86-64: sse4.2, avx, avx2, fma, avx512f, ...; aarch64: neon, sve).
    pub features: Vec<String>,
    /// The model name (Linux: `/proc/cpuinfo`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The level-1 data cache of the first core, e.g. `"48K, 12-way"` (Linux sysfs), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1d: Option<String>,
}

/// The model name of the CPU from `/proc/cpuinfo` (Linux), when there is one.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Size and associativity of the first core's level-1 data cache (Linux sysfs), when known.
fn l1d_cache() -> Option<String> {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    for entry in std::fs::read_dir(base).ok()?.flatten() {
        let dir = entry.path();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_string())
        };
        if read("level").as_deref() == Some("1") && read("type").as_deref() == Some("Data") {
            let size = read("size")?;
            return Some(match read("ways_of_associativity") {
                Some(w) => format!("{size}, {w}-way"),
                None => size,
            });
        }
    }
    None
}

impl Cpu {
    /// This machine's CPU.
    pub fn detect() -> Cpu {
        #[allow(unused_mut)]
        let mut features: Vec<String> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            macro_rules! probe {
                ($($f:tt),*) => {
                    $(if std::is_x86_feature_detected!($f) {
                        features.push($f.to_string());
                    })*
                };
            }
            probe!(
                "sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma",
                "f16c", "bmi2", "avx512f", "avx512dq", "avx512bw", "avx512vl"
            );
        }
        #[cfg(target_arch = "aarch64")]
        {
            macro_rules! probe {
                ($($f:tt),*) => {
                    $(if std::arch::is_aarch64_feature_detected!($f) {
                        features.push($f.to_string());
                    })*
                };
            }
            probe!("neon", "fp16", "sve", "sve2");
        }
        Cpu {
            arch: std::env::consts::ARCH.to_string(),
            features,
            model: cpu_model(),
            l1d: l1d_cache(),
        }
    }

    /// One line: `"x86_64, L1d 48K, 12-way, sse2 ... avx512vl (Intel(R) Xeon(R) Processor)"`.
    pub fn summary(&self) -> String {
        let mut s = self.arch.clone();
        if let Some(c) = &self.l1d {
            s.push_str(&format!(", L1d {c}"));
        }
        if !self.features.is_empty() {
            s.push_str(&format!(", {}", self.features.join(" ")));
        }
        if let Some(m) = &self.model {
            s.push_str(&format!(" ({m})"));
        }
        s
    }
}

impl Provenance {
    /// The provenance of a run of `front` with `options` on this machine.
    pub fn current(front: Front, options: &Options) -> Provenance {
        Provenance {
            spanmatch_version: env!("CARGO_PKG_VERSION").to_string(),
            front,
            seeds: Seeds::of(options),
            datasets: Vec::new(),
            inputs: None,
            cpu: Cpu::detect(),
            extra: BTreeMap::new(),
        }
    }
}

/// The current time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

impl Results {
    /// Empty results of `front` (no comparison yet), created now on this machine.
    pub fn new(front: Front, label_a: &str, label_b: &str, options: &Options) -> Results {
        Results {
            schema: SCHEMA.to_string(),
            schema_version: SCHEMA_VERSION,
            spanmatch_version: env!("CARGO_PKG_VERSION").to_string(),
            created: utc_now(),
            front,
            label_a: label_a.to_string(),
            label_b: label_b.to_string(),
            options: options.clone(),
            eps: options.eps.clone(),
            settings: serde_json::Value::Object(Default::default()),
            provenance: Provenance::current(front, options),
            layers: Vec::new(),
            comparisons: Vec::new(),
            cross: None,
            config: None,
            nets: Vec::new(),
            timings: None,
            peak_memory_mb: None,
            neuron_views: None,
            warnings: Vec::new(),
            converted_from: None,
        }
    }

    /// The primary comparison: the first of kind `pair` (what the tables show).
    pub fn primary(&self) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.kind == ComparisonKind::Pair)
    }

    /// Fills [`Results::layers`] from the primary comparison's records when it is empty: one
    /// summary per record, in order; the kind is `conv` for arrays of rank ≥ 3, `fc` for rank
    /// 2, `layer` when the shape is unknown.
    pub fn fill_layer_summaries(&mut self) {
        if !self.layers.is_empty() {
            return;
        }
        let Some(c) = self.primary() else { return };
        self.layers = c
            .layers
            .iter()
            .enumerate()
            .map(|(index, l)| LayerSummary {
                name: l.name.clone(),
                index,
                kind: match l.shape_a.len() {
                    0 => "layer",
                    1 | 2 => "fc",
                    _ => "conv",
                }
                .to_string(),
                neurons: l.neurons_a,
                rows: l.rows,
            })
            .collect();
    }
}

/// One trained net (`reproduce`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSummary {
    /// The seed the net was initialised and trained with.
    pub seed: u64,
    /// Accuracy on the test set, a fraction in [0, 1] (not a percentage).
    pub test_accuracy: f64,
    /// Number of epochs trained.
    pub epochs: usize,
    /// Training wall-clock time in seconds.
    pub train_seconds: f64,
}

/// One compared layer (the same in every comparison).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Layer name, as in [`LayerRecord::name`].
    pub name: String,
    /// Position in the network, input side first; figures and tables are ordered by it.
    pub index: usize,
    /// `"conv"`, `"fc"` or `"layer"` (unknown).
    pub kind: String,
    /// Number of neurons (channels for a conv layer) of net A.
    pub neurons: usize,
    /// Rows: inputs, times positions for a conv layer.
    pub rows: u64,
}

/// What a comparison compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComparisonKind {
    /// Two trained nets (two seeds, or two models).
    Pair,
    /// A net against itself: mms must be 1 at every ε.
    #[serde(rename = "self")]
    SelfCheck,
    /// A net against itself with the inputs of one side shuffled: what chance gives at this
    /// many rows and neurons.
    Null,
    /// The same nets before training.
    Untrained,
}

impl ComparisonKind {
    /// The name written in results files.
    pub fn name(self) -> &'static str {
        match self {
            ComparisonKind::Pair => "pair",
            ComparisonKind::SelfCheck => "self",
            ComparisonKind::Null => "null",
            ComparisonKind::Untrained => "untrained",
        }
    }
}

/// The per-layer results of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Which kind of comparison this is.
    pub kind: ComparisonKind,
    /// Net A's label when it differs from the results' `label_a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_a: Option<String>,
    /// Net B's label when it differs from the results' `label_b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_b: Option<String>,
    /// Seed of net A (`reproduce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_a: Option<u64>,
    /// Seed of net B (`reproduce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_b: Option<u64>,
    /// One record per compared layer pair.
    pub layers: Vec<LayerRecord>,
}

impl Comparison {
    /// A comparison of `kind` without labels or seeds.
    pub fn new(kind: ComparisonKind, layers: Vec<LayerRecord>) -> Comparison {
        Comparison {
            kind,
            label_a: None,
            label_b: None,
            seed_a: None,
            seed_b: None,
            layers,
        }
    }
}

/// The maximum match at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    /// The ε.
    pub eps: f64,
    /// Neurons of A in the match, increasing.
    pub a: Vec<usize>,
    /// Neurons of B in the match, increasing.
    pub b: Vec<usize>,
    /// Maximum match similarity (|X*| + |Y*|) / (|X| + |Y|), dead neurons in the denominator.
    pub mms: f64,
}

impl From<MaxMatch> for MatchRecord {
    fn from(m: MaxMatch) -> Self {
        MatchRecord {
            eps: m.eps,
            a: m.a,
            b: m.b,
            mms: m.mms,
        }
    }
}

/// The measures of one layer pair: those of the channel view (features = channels, the match's
/// statistics), flattened (`cka_linear`, `cca_mean_rho`, ..., `notes`: every field of
/// `spanmatch_core::measures::Measures`), and linear CKA in the per-image flattened view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerMeasures {
    /// The channel-view measures.
    #[serde(flatten)]
    pub channels: Measures,
    /// Biased linear CKA of the flattened view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cka_linear_flatten: Option<f64>,
    /// Debiased linear CKA of the flattened view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cka_linear_debiased_flatten: Option<f64>,
}

impl LayerMeasures {
    /// The value of a named numeric field (e.g. `"cka_linear"`), when present.
    pub fn get(&self, name: &str) -> Option<f64> {
        serde_json::to_value(self).ok()?.get(name)?.as_f64()
    }
}

/// The simple matches of one layer pair at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleRecord {
    /// ε of the matches.
    pub eps: f64,
    /// ε = 0 and each side's live neurons are linearly independent: the list is complete and
    /// each match is the unique smallest match containing its witnesses.
    #[serde(default)]
    pub exact_case: bool,
    /// False when interrupted (Ctrl-C): the list holds what was found so far.
    #[serde(default = "yes")]
    pub complete: bool,
    /// Neuron orders tried: 1 (deterministic) + the seeded random ones.
    #[serde(default = "one")]
    pub orders: usize,
    /// Seed of the random orders.
    #[serde(default)]
    pub seed: u64,
    /// Number of distinct simple matches.
    pub count: usize,
    /// Size |X'| + |Y'| of the largest simple match (0 when there is none).
    pub largest: usize,
    /// `(size, number of simple matches of that size)`, ascending by size.
    pub size_histogram: Vec<(usize, usize)>,
    /// The simple matches, largest first.
    pub matches: Vec<SimpleMatchRecord>,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

impl SimpleRecord {
    /// A record of `matches`, with the summary fields computed from them.
    pub fn new(
        eps: f64,
        exact_case: bool,
        complete: bool,
        orders: usize,
        seed: u64,
        matches: Vec<SimpleMatchRecord>,
    ) -> SimpleRecord {
        let mut hist: BTreeMap<usize, usize> = BTreeMap::new();
        for m in &matches {
            *hist.entry(m.a.len() + m.b.len()).or_default() += 1;
        }
        SimpleRecord {
            eps,
            exact_case,
            complete,
            orders,
            seed,
            count: matches.len(),
            largest: matches
                .iter()
                .map(|m| m.a.len() + m.b.len())
                .max()
                .unwrap_or(0),
            size_histogram: hist.into_iter().collect(),
            matches,
        }
    }
}

/// One simple match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleMatchRecord {
    /// Neurons of net A, increasing.
    pub a: Vec<usize>,
    /// Neurons of net B, increasing.
    pub b: Vec<usize>,
    /// Number of (neuron, order) runs that found it.
    #[serde(default = "one")]
    pub count: usize,
    /// The largest sine between a live member and the span of the other net's live members
    /// (absent when a side has no live member, and in converted files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sine: Option<f64>,
}

/// The match of the mean-centred activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CenteredRecord {
    /// Per neuron of A, its threshold in the centred problem (empty in converted files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds_a: Vec<Option<f64>>,
    /// Same for B.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds_b: Vec<Option<f64>>,
    /// The smallest ε at which every live neuron matches, centred (absent in converted files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epsilon: Option<f64>,
    /// The maximum match at each ε, centred (in converted reproduce files: the mms only, with
    /// empty index lists).
    pub matches: Vec<MatchRecord>,
}

/// The neuron-basis null at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullEps {
    /// The ε.
    pub eps: f64,
    /// mms of the unrotated pair.
    pub observed: f64,
    /// Mean of the rotated pairs' mms.
    pub mean: f64,
    /// Smallest rotated mms.
    pub min: f64,
    /// Largest rotated mms (the upper end used by the verdict).
    pub max: f64,
    /// Monte Carlo p-value `(1 + #{draws ≥ observed}) / (1 + draws)`.
    pub p_value: f64,
    /// The rotated mms of every draw, in draw order (absent in converted reproduce files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
}

/// The neuron-basis null of one layer pair: net B's layer rotated by random orthogonal
/// matrices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullRecord {
    /// Number of random rotations.
    pub draws: usize,
    /// Seed of the rotations.
    pub seed: u64,
    /// One entry per ε.
    pub per_eps: Vec<NullEps>,
    /// The same rotations' values of every requested measure number that is not
    /// rotation-invariant (`one_to_one`, `semi_match`, `soft_match`, `soft_match_correlation`,
    /// `perm_procrustes`, `perm_procrustes_angular`, and `pwcca` when B is the narrower layer), by
    /// name; empty when none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measures: BTreeMap<String, NullMeasure>,
}

/// The rotation null of one measure number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullMeasure {
    /// Its value on the unrotated pair.
    pub observed: f64,
    /// Mean over the rotations (of the draws where it is defined).
    pub mean: f64,
    /// Smallest value over the rotations.
    pub min: f64,
    /// Largest value over the rotations.
    pub max: f64,
    /// Monte Carlo p-value `(1 + #{draws at least as similar as observed}) / (1 + draws)`: for
    /// a similarity the draws ≥ observed, for a distance the draws ≤ observed.
    pub p_value: f64,
    /// The value of every draw, in draw order (`null` where undefined).
    pub values: Vec<Option<f64>>,
}

/// A confidence interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// Percentile bootstrap intervals over chunks of consecutive inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalsRecord {
    /// Confidence level (0.95).
    pub level: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Chunks of consecutive inputs.
    pub chunks: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Interval of mms at each ε (`null` where no resample gave a finite value).
    pub mms: Vec<Option<Bounds>>,
    /// Interval of every number of the requested measures (`cka_linear`, `one_to_one`,
    /// `soft_match`, ...: the names of `crate::fields::FIELDS`), written beside `mms` (flattened
    /// into this object); a number undefined on every resample is left out.
    #[serde(flatten)]
    pub measures: BTreeMap<String, Bounds>,
}

impl IntervalsRecord {
    /// The interval of the measure number `name` (e.g. `"cka_linear"`), when computed.
    pub fn measure(&self, name: &str) -> Option<Bounds> {
        self.measures.get(name).copied()
    }
}

/// Mean and standard deviation of mms over the sampled repeats (the reference code's protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledRecord {
    /// Rows drawn per repeat.
    pub columns: u64,
    /// Number of repeats.
    pub repeats: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Mean mms per ε.
    pub mms_mean: Vec<f64>,
    /// Population standard deviation (ddof = 0) of mms per ε.
    pub mms_std: Vec<f64>,
}

/// The untrained baseline of a trained pair: the same nets (or layers) before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UntrainedRecord {
    /// mms of the untrained pair at each ε.
    pub mms: Vec<f64>,
    /// Its max ε.
    pub max_epsilon: f64,
    /// Its measures (linear CKA, ...), when computed; their numbers only (the neuron-level
    /// output, `measures.neurons`, is left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measures: Option<LayerMeasures>,
    /// Its centred mms at each ε, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered_mms: Option<Vec<f64>>,
    /// Its bootstrap intervals, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<IntervalsRecord>,
    /// Trained mms minus untrained mms at each ε.
    pub trained_minus_untrained: Vec<f64>,
    /// Trained minus untrained value of every measure number defined for both pairs
    /// (`cka_linear`, `one_to_one`, ...); for a distance, negative when training brought the
    /// layers closer. Empty when no measure was computed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trained_minus_untrained_measures: BTreeMap<String, f64>,
}

/// How the span match and the one-to-one matching agree at the main ε: of the neurons in the
/// maximum match, how many have their one-to-one partner (the Hungarian assignment of neuron
/// correlations) inside the match too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneToOneInMatch {
    /// The ε of the maximum match (the main ε).
    pub eps: f64,
    /// Neurons in the maximum match, both nets together (`len a + len b`).
    pub match_neurons: usize,
    /// Of those, the neurons whose one-to-one partner is in the match as well (a pair with both
    /// ends in the match counts twice, once per net).
    pub partner_inside: usize,
    /// Mean correlation of the one-to-one pairs (the measure `one_to_one`, over all pairs).
    pub mean_correlation: f64,
}

/// The top inputs of every neuron of one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopInputsSide {
    /// `[neurons][k]` input indices (in data order), best first; -1 where fewer inputs.
    pub indices: Vec<Vec<i64>>,
    /// The responses, same shape (`null` where fewer inputs).
    pub values: Vec<Vec<Option<f64>>>,
    /// Position (token) of the response within its input, same shape, when tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<Vec<i64>>>,
    /// The per-input shape that `positions` index row-major (`[H, W]` for a 2-D convolution),
    /// when it is fixed; absent for tokens (their count varies) and one row per input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions_shape: Option<Vec<usize>>,
}

/// What every neuron of a layer pair responds to most (fronts that see the inputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopInputsRecord {
    /// Inputs kept per neuron.
    pub k: usize,
    /// Net A's neurons.
    pub a: TopInputsSide,
    /// Net B's neurons.
    pub b: TopInputsSide,
    /// How a response is measured (e.g. `"max over positions"`).
    pub response: String,
}

/// Everything found for one layer pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Layer name (net A's).
    pub name: String,
    /// Net B's layer name, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_b: Option<String>,
    /// Neurons of net A's layer (dead included).
    pub neurons_a: usize,
    /// Neurons of net B's layer.
    pub neurons_b: usize,
    /// Rows: inputs, times positions for a conv layer, tokens for a token layer.
    pub rows: u64,
    /// Array shape of A as stored, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape_a: Vec<u64>,
    /// Array shape of B.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape_b: Vec<u64>,
    /// Dead (numerically zero) neurons of A.
    pub dead_a: Vec<usize>,
    /// Dead neurons of B.
    pub dead_b: Vec<usize>,
    /// Per neuron of A, the smallest ε at which it is in the maximum match (null for dropped
    /// dead neurons; empty in very old converted files).
    #[serde(default)]
    pub thresholds_a: Vec<Option<f64>>,
    /// Same for B.
    #[serde(default)]
    pub thresholds_b: Vec<Option<f64>>,
    /// The smallest ε at which every live neuron matches.
    pub max_epsilon: f64,
    /// The maximum match at each ε.
    pub matches: Vec<MatchRecord>,
    /// The ε-profile `(ε, mms)` on the grid 0, 0.01, ..., 1, when computed (`curve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<[f64; 2]>,
    /// The measures, when any was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measures: Option<LayerMeasures>,
    /// Simple matches, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleRecord>,
    /// The match of the mean-centred activations, when requested (`center`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered: Option<CenteredRecord>,
    /// The neuron-basis null, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null: Option<NullRecord>,
    /// Bootstrap intervals, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<IntervalsRecord>,
    /// The sampled (reference-code) protocol, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<SampledRecord>,
    /// The untrained baseline, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrained: Option<UntrainedRecord>,
    /// The one-to-one matching against the span match at the main ε, when `one_to_one` was
    /// computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_to_one_in_match: Option<OneToOneInMatch>,
    /// The one-word verdict at the main ε (docs/controls.md), when its controls were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The controls the verdict lacks (`"baseline"`, `"null"`), when it is absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdict_missing: Vec<String>,
    /// Top inputs per neuron, when tracked by the front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_inputs: Option<TopInputsRecord>,
    /// Fields added by fronts and not known to this version, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LayerRecord {
    /// mms at each ε.
    pub fn mms(&self) -> Vec<f64> {
        self.matches.iter().map(|m| m.mms).collect()
    }

    /// mms at the `i`-th ε.
    pub fn mms_at(&self, i: usize) -> Option<f64> {
        self.matches.get(i).map(|m| m.mms)
    }

    /// The value of a named measure (e.g. `"cka_linear"`), when present and numeric.
    pub fn measure(&self, name: &str) -> Option<f64> {
        self.measures.as_ref()?.get(name)
    }

    /// `name`, or `name ~ name_b` when B's layer is named otherwise.
    pub fn label(&self) -> String {
        match &self.name_b {
            Some(b) => format!("{} ~ {b}", self.name),
            None => self.name.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Neuron views of `reproduce`

/// The inputs that the neurons of selected matches respond to most, for one pair of nets (see
/// `crate::views`): written by `reproduce` (test images) and by the report of any results file
/// whose records carry `top_inputs` (images, or tokens in their context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronViews {
    /// Seed of net A (`reproduce`; absent for nets that are not identified by a seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_a: Option<u64>,
    /// Seed of net B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_b: Option<u64>,
    /// ε of the matches shown (the ε of the simple matches).
    pub eps: f64,
    /// Inputs kept per neuron.
    pub k: usize,
    /// Neurons shown at most per net in a group.
    pub per_side: usize,
    /// How a neuron's response to an input is measured.
    pub response: String,
    /// Shape of an input image `[channels, height, width]` (of the first input shown; `[0, 0,
    /// 0]` when the inputs are token sequences).
    #[serde(default)]
    pub image_shape: [usize; 3],
    /// Class names, by label (empty when unknown).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// One entry per layer, input side first.
    pub layers: Vec<LayerViews>,
    /// Every input referenced by a neuron, once, by increasing index (and position, for
    /// tokens).
    pub inputs: Vec<ViewInput>,
}

/// The groups shown for one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerViews {
    /// Layer name.
    pub layer: String,
    /// Largest simple matches first, then the closest one-to-one matches, then one unmatched
    /// neuron per net.
    pub groups: Vec<ViewGroup>,
}

/// Why a group is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    /// One of the largest simple matches.
    Simple,
    /// A simple match of one neuron per net, among those with the smallest sine.
    OneToOne,
    /// A neuron outside the maximum match at ε, drawn at random (contrast).
    Unmatched,
}

/// One group of neurons shown side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewGroup {
    /// Why it is shown.
    pub kind: ViewKind,
    /// Neurons of net A in the whole group.
    pub size_a: usize,
    /// Neurons of net B in the whole group.
    pub size_b: usize,
    /// The match's sine (simple and one-to-one groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sine: Option<f64>,
    /// Net A's neurons shown.
    pub a: Vec<NeuronTop>,
    /// Net B's neurons shown.
    pub b: Vec<NeuronTop>,
}

/// One neuron's top inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronTop {
    /// Index of the neuron in its layer.
    pub neuron: usize,
    /// Its threshold ε*(v) (`null` for a dead neuron).
    pub threshold: Option<f64>,
    /// Input indices, largest response first.
    pub inputs: Vec<usize>,
    /// The responses, in the same order.
    pub values: Vec<f64>,
    /// For token inputs: the position (token) of each response within its input, in the same
    /// order; empty for images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<usize>,
}

impl NeuronTop {
    /// The inputs shown as `(index, position)` keys (position `None` for images).
    pub fn keys(&self) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
        self.inputs
            .iter()
            .enumerate()
            .map(|(j, &i)| (i, self.positions.get(j).copied()))
    }
}

/// One input shown in the views: an image (`png`) or a token in its context (`context`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewInput {
    /// Index of the input in data order (the test set for `reproduce`).
    pub index: usize,
    /// Its label (class), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<usize>,
    /// The image as a PNG (8-bit grey or RGB), base64; empty for token inputs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub png: String,
    /// For token inputs: the position of the token shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// For token inputs: the token and its neighbours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TokenContext>,
}

impl ViewInput {
    /// The key strips refer to it by: `(index, position)`.
    pub fn key(&self) -> (usize, Option<usize>) {
        (self.index, self.position)
    }
}

/// A token in its context, as text: the tokens before it, the token, the tokens after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenContext {
    /// Tokens before (up to 8), in order.
    pub before: Vec<String>,
    /// The token the neuron responds to.
    pub token: String,
    /// Tokens after (up to 8), in order.
    pub after: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

/// Parses a results file of any accepted version ([`SUPPORTED`]) into the current schema.
pub fn parse_results(text: &str) -> anyhow::Result<Results> {
    let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
    let Some(obj) = value.as_object() else {
        bail!("not a spanmatch results file: expected a JSON object");
    };
    match obj.get("schema_version") {
        Some(v) => {
            let schema = obj.get("schema").and_then(|s| s.as_str()).unwrap_or("");
            if schema != SCHEMA {
                bail!(
                    "not a spanmatch results file: \"schema\" is {:?}, expected \"{SCHEMA}\"",
                    obj.get("schema")
                );
            }
            match v.as_u64() {
                Some(n) if n == u64::from(SCHEMA_VERSION) => {
                    serde_json::from_value(value).context("invalid schema_version 3 results")
                }
                _ => bail!(
                    "results schema_version {v} is not supported by spanmatch {}; it reads {SUPPORTED}",
                    env!("CARGO_PKG_VERSION")
                ),
            }
        }
        None => crate::legacy::convert(value),
    }
}

/// Reads a results file of any accepted version; errors name the file.
pub fn read_results(path: &Path) -> anyhow::Result<Results> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read results file {}", path.display()))?;
    parse_results(&text)
        .with_context(|| format!("{} is not a valid spanmatch results file", path.display()))
}

/// Writes `results` as pretty-printed JSON to `path`; errors name the file.
pub fn write_results(results: &Results, path: &Path) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(results)
        .with_context(|| format!("cannot serialise results for {}", path.display()))?;
    text.push('\n');
    std::fs::write(path, text)
        .with_context(|| format!("cannot write results file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_now_is_the_system_clock_in_the_report_format() {
        let s = utc_now();
        let b = s.as_bytes();
        assert_eq!(s.len(), "2026-11-29 15:04 UTC".len(), "{s}");
        for (i, c) in b.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(*c, b'-', "{s}"),
                10 | 16 => assert_eq!(*c, b' ', "{s}"),
                13 => assert_eq!(*c, b':', "{s}"),
                17..=19 => {}
                _ => assert!(c.is_ascii_digit(), "{s}"),
            }
        }
        // The same day as the system clock (seconds since the epoch, divided by 86,400).
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400;
        let date = time::Date::from_julian_day(2_440_588 + days as i32).unwrap();
        let next = date.next_day().unwrap();
        let fmt =
            |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
        // (A run at midnight may see the next day.)
        assert!(
            s.starts_with(&fmt(date)) || s.starts_with(&fmt(next)),
            "{s} vs {}",
            fmt(date)
        );
    }

    #[test]
    fn unknown_versions_and_files_are_named() {
        let e =
            parse_results(r#"{"schema": "spanmatch-results", "schema_version": 7}"#).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("schema_version 7 is not supported") && m.contains("3"),
            "{m}"
        );
        let e = parse_results(r#"{"schema": "other", "schema_version": 3}"#).unwrap_err();
        assert!(format!("{e:#}").contains("\"schema\""), "{e:#}");
        let e = parse_results(r#"{"hello": 1}"#).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a spanmatch results file"),
            "{e:#}"
        );
        assert!(parse_results("[1]").is_err());
    }

    #[test]
    fn cpu_is_detected() {
        let c = Cpu::detect();
        assert_eq!(c.arch, std::env::consts::ARCH);
        #[cfg(target_arch = "x86_64")]
        assert!(c.features.iter().any(|f| f == "sse2"), "{:?}", c.features);
    }
}
