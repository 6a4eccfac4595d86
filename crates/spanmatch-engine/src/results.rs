//! The machine-readable results of `spanmatch reproduce` (`results.json`).
//!
//! Everything the report shows is derived from these structs; nothing else is read. All fields
//! are plain JSON; `f64` fields must be finite (JSON has no NaN: `serde_json` writes NaN as
//! `null`, which does not read back as `f64`).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything `spanmatch reproduce` measured: the nets, their layers and every comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproduceResults {
    /// Version of spanmatch that produced the file (e.g. `"0.1.0"`).
    pub spanmatch_version: String,
    /// When the results were created, free text (e.g. an RFC 3339 timestamp).
    pub created: String,
    /// The run configuration as given (dataset, arch, width, epochs, seeds, batch size, lr, ...).
    /// Shown verbatim, as a key/value table, in the report.
    pub config: serde_json::Value,
    /// The tolerances ε at which mms was computed; `LayerResult::mms[i]` is at `eps[i]`.
    pub eps: Vec<f64>,
    /// One entry per trained net (one per seed).
    pub nets: Vec<NetSummary>,
    /// The compared layers of the architecture, with their position in the network.
    pub layers: Vec<LayerSummary>,
    /// Every comparison that was run: seed pairs, self-checks, shuffled-row nulls and untrained
    /// pairs.
    pub comparisons: Vec<Comparison>,
    /// Wall-clock timings, free form (e.g. `{"train_s": .., "extract_s": .., "match_s": ..}`).
    pub timings: serde_json::Value,
    /// Peak resident memory of the run in MiB, when known.
    pub peak_memory_mb: Option<f64>,
    /// What matched neurons respond to: the top inputs of the neurons of selected matches of
    /// one trained seed pair (absent when not computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuron_views: Option<NeuronViews>,
}

/// The inputs that the neurons of selected matches respond to most, for one trained seed pair
/// (see `crate::views`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronViews {
    /// Seed of net A.
    pub seed_a: u64,
    /// Seed of net B.
    pub seed_b: u64,
    /// ε of the matches shown (the ε of the simple matches).
    pub eps: f64,
    /// Inputs kept per neuron.
    pub k: usize,
    /// Neurons shown at most per net in a group.
    pub per_side: usize,
    /// How a neuron's response to an input is measured (e.g. "activation; conv channels: maximum
    /// over positions").
    pub response: String,
    /// Shape of an input image `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Class names, by label.
    pub class_names: Vec<String>,
    /// One entry per layer, input side first.
    pub layers: Vec<LayerViews>,
    /// Every input referenced by a neuron, once, by increasing index.
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
    /// Neurons of net A in the whole group (the strips show at most a few).
    pub size_a: usize,
    /// Neurons of net B in the whole group.
    pub size_b: usize,
    /// The match's largest sine between a member and the other net's members' span (simple and
    /// one-to-one groups).
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
}

/// One input image shown in the views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewInput {
    /// Index in the test set.
    pub index: usize,
    /// Its label.
    pub label: usize,
    /// The image as a PNG (8-bit grey or RGB), base64.
    pub png: String,
}

/// One trained net.
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

/// One compared layer of the architecture (the same for every net).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Layer name, as used in `LayerResult::layer` (e.g. `"conv1"`, `"fc2"`).
    pub name: String,
    /// Position in the network, input side first; figures and tables are ordered by it.
    pub index: usize,
    /// `"conv"` or `"fc"`.
    pub kind: String,
    /// Number of neurons (channels for a conv layer).
    pub neurons: usize,
    /// Length of each activation vector: N for fc, N·H·W for conv.
    pub rows: u64,
}

/// What a comparison compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComparisonKind {
    /// Two nets trained from different seeds (`seed_a != seed_b`).
    Pair,
    /// A net against itself (`seed_a == seed_b`): mms must be 1 at every ε.
    SelfCheck,
    /// A net against itself with the rows of one side shuffled (same images, different order):
    /// what chance gives at this many rows and neurons.
    Null,
    /// The nets of two seeds at initialisation (before any training step; `seed_a != seed_b`),
    /// compared like a `Pair`: how much of a trained pair's match the architecture and the input
    /// statistics give without learning.
    #[serde(alias = "untrained")]
    Untrained,
}

/// The per-layer results of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Which kind of comparison this is.
    pub kind: ComparisonKind,
    /// Seed of net A.
    pub seed_a: u64,
    /// Seed of net B (equal to `seed_a` for `SelfCheck` and `Null`).
    pub seed_b: u64,
    /// One result per compared layer.
    pub layers: Vec<LayerResult>,
}

/// The result of comparing one layer of net A with the same layer of net B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerResult {
    /// Layer name (matches `LayerSummary::name`).
    pub layer: String,
    /// Number of neurons of the layer in net A.
    pub neurons_a: usize,
    /// Number of neurons of the layer in net B.
    pub neurons_b: usize,
    /// Number of rows (activation vector length) used.
    pub rows: u64,
    /// Indices of the dead (numerically zero) neurons of net A.
    pub dead_a: Vec<usize>,
    /// Indices of the dead (numerically zero) neurons of net B.
    pub dead_b: Vec<usize>,
    /// The smallest ε at which every live neuron is matched (the first peeling step's sine).
    pub max_epsilon: f64,
    /// Threshold ε*(v) of each neuron of net A, by index: the smallest ε at which it is in the
    /// maximum match (`null` for a dead neuron dropped under the reference policy). Empty when
    /// not recorded (results written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds_a: Vec<Option<f64>>,
    /// Threshold ε*(v) of each neuron of net B, as `thresholds_a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds_b: Vec<Option<f64>>,
    /// Maximum match similarity, one value per entry of `ReproduceResults::eps`.
    pub mms: Vec<f64>,
    /// The match profile: `(ε, fraction of neurons matched)` on the grid ε = 0, 0.01, ..., 1.
    pub profile: Vec<[f64; 2]>,
    /// Other similarity measures on the same data, e.g.
    /// `{"cka_linear": .., "cka_linear_debiased": .., "svcca": ..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measures: Option<serde_json::Value>,
    /// Simple matches at one ε, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleSummary>,
    /// The statistical controls of this layer pair (bootstrap intervals, rotation null, centred
    /// mms), when computed (`reproduce`, trained seed pairs only). Flattened: each control is its
    /// own optional field of the layer in results.json, absent in older files.
    #[serde(flatten)]
    pub controls: LayerControls,
}

/// The statistical controls of one layer pair (see docs/controls.md). Every field is optional:
/// results written before they existed, or runs that disabled them, leave them out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerControls {
    /// Bootstrap percentile intervals over chunks of test images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<LayerIntervals>,
    /// The neuron-basis null: net B's layer rotated by random orthogonal matrices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_null: Option<RotationNullSummary>,
    /// mms of the mean-centred activations, one per entry of `ReproduceResults::eps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered_mms: Option<Vec<f64>>,
}

/// A confidence interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// Bootstrap percentile intervals of one layer pair: the test images are split into `chunks`
/// contiguous chunks, each resample draws `chunks` of them with replacement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerIntervals {
    /// Confidence level (e.g. 0.95).
    pub level: f64,
    /// Number of bootstrap resamples.
    pub resamples: usize,
    /// Number of chunks of test images.
    pub chunks: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Interval of mms, one per entry of `ReproduceResults::eps` (`null` where no resample gave
    /// a finite value).
    pub mms: Vec<Option<Bounds>>,
    /// Interval of linear CKA, when computed and defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cka_linear: Option<Bounds>,
}

/// The rotation null of one layer pair at one ε.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NullEps {
    /// The ε.
    pub eps: f64,
    /// Mean of the rotated pairs' mms.
    pub mean: f64,
    /// Smallest rotated mms.
    pub min: f64,
    /// Largest rotated mms.
    pub max: f64,
    /// Monte Carlo p-value `(1 + #{draws >= observed}) / (1 + draws)`.
    pub p: f64,
}

/// The neuron-basis null of one layer pair (`spanmatch_core::controls::rotation_null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationNullSummary {
    /// Number of random rotations.
    pub draws: usize,
    /// Seed of the rotations.
    pub seed: u64,
    /// One entry per entry of `ReproduceResults::eps`.
    pub per_eps: Vec<NullEps>,
}

/// Summary of the simple matches of one layer comparison at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSummary {
    /// The tolerance at which the simple matches were computed.
    pub eps: f64,
    /// Number of distinct simple matches found.
    pub count: usize,
    /// `(size, number of simple matches of that size)`, size = |X'| + |Y'|, ascending by size.
    pub size_histogram: Vec<(usize, usize)>,
    /// Size of the largest simple match.
    pub largest: usize,
    /// The simple matches themselves, largest first: the neuron indices on both sides. Empty
    /// when not recorded (results written before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<SimpleMatchIndices>,
}

/// One simple match: neurons of net A and of net B (indices into the layer, increasing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleMatchIndices {
    /// Neurons of net A.
    pub a: Vec<usize>,
    /// Neurons of net B.
    pub b: Vec<usize>,
    /// The match's largest sine between a live member and the span of the other net's live
    /// members (absent in results written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sine: Option<f64>,
}

impl LayerResult {
    /// The value of a named measure in `measures` (e.g. `"cka_linear"`), when present and numeric.
    pub fn measure(&self, name: &str) -> Option<f64> {
        self.measures.as_ref()?.get(name)?.as_f64()
    }
}

/// Reads and parses a `results.json`; errors name the file.
pub fn read_results(path: &Path) -> anyhow::Result<ReproduceResults> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read results file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid spanmatch results.json", path.display()))
}

/// Writes `results` as pretty-printed JSON to `path`; errors name the file.
pub fn write_results(results: &ReproduceResults, path: &Path) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(results)
        .with_context(|| format!("cannot serialise results for {}", path.display()))?;
    text.push('\n');
    std::fs::write(path, text)
        .with_context(|| format!("cannot write results file {}", path.display()))
}
