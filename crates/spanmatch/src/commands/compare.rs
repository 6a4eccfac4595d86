//! `spanmatch compare A B`: maximum span matches of every common layer of two nets.

use crate::progress::Bars;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use spanmatch_core::{DeadPolicy, Tolerances};
use spanmatch_engine::compare as engine;
use spanmatch_engine::options::{self, parse_measures, Dead, NullKind, Options};
use spanmatch_engine::results::write_results;
use spanmatch_engine::stream::Sampling;
use spanmatch_engine::tables;
use spanmatch_engine::CompareOptions;
use spanmatch_io::Layout;
use std::path::PathBuf;

/// Which axis of a rank ≥ 3 array holds the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Channels first: [N, C, H, W] (PyTorch), also [N, C, L] and [N, C, D, H, W].
    Nchw,
    /// Channels last: [N, H, W, C] (TensorFlow, JAX).
    Nhwc,
}

/// What to do with dead neurons (all-zero activation vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeadArg {
    /// Leave them out of every match but count them in the denominator of mms (the reference
    /// code's convention, so numbers compare with published ones).
    Drop,
    /// Literal definition: a zero vector is ε-close to any span, so dead neurons are in every
    /// maximum match.
    Match,
}

/// How the basis-invariant measures see a convolutional layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// Features = channels, rows = (image, position) pairs: the same statistics as the match.
    Channels,
    /// Also linear CKA with features = the C·H·W values of an image and rows = images (what CKA
    /// libraries compute); a second pass over the files, memory 16·N² bytes for N images.
    Flatten,
}

/// Arguments of `spanmatch compare`.
#[derive(Debug, Args)]
#[command(
    about = "To what extent do two nets learn the same representation? Maximum span matches per layer",
    long_about = "To what extent do two networks learn the same representation (Wang et al., NeurIPS 2018)?\n\n\
For every layer present in both activation files, spanmatch finds the maximum ε-approximate match: \
the largest groups of neurons X* of net A and Y* of net B such that the activation vector of every \
neuron in X* is ε-close to the span of Y*'s vectors and vice versa (ε is the sine of the angle \
between a vector and a span: 0 means exactly inside it, 1 means orthogonal). It reports the \
maximum match similarity mms = (|X*| + |Y*|) / (|X| + |Y|) at each ε, the neurons in each match, \
every neuron's threshold (the smallest ε at which it joins the match) and max_epsilon (the smallest \
ε at which all live neurons match).\n\n\
A layer is an array whose first axis runs over the same input images in both files: [N, C] for a \
fully connected layer (C neurons, N samples), [N, C, H, W] for a convolutional one (a channel is a \
neuron; each of the N*H*W (image, position) pairs is a sample). The whole computation is exact and \
streams the files once, whatever their size.",
    after_help = "Example:\n  spanmatch example --out demo\n  spanmatch compare demo/net_a.npz demo/net_b.npz --json demo/result.json"
)]
pub struct CompareArgs {
    /// Activations of net A: .npz (one array per layer), .npy (one layer, named after the file)
    /// or .safetensors (one tensor per layer); float16/bfloat16/float32/float64.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// Activations of net B on the same inputs, in the same order.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Compare only this layer (repeat for several). Default: every layer present in both files,
    /// in A's file order.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Values of ε, each in [0, 1]: the largest sine of the angle allowed between a neuron's
    /// activation vector and the span of the other net's matched neurons. 0 asks for exact
    /// matches (up to --tol).
    #[arg(
        long,
        value_name = "EPS,...",
        value_delimiter = ',',
        default_value = "0.15,0.2,0.25,0.3,0.5"
    )]
    pub eps: Vec<f64>,
    /// Also write the full results (matched neurons, thresholds, controls) as JSON to this file,
    /// in the one results schema of spanmatch (docs/results-schema.md).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Dead neurons (activation identically zero): `drop` leaves them out of the matches but
    /// counts them in mms's denominator (reference code); `match` puts them in every match
    /// (literal definition).
    #[arg(long, value_enum, default_value_t = DeadArg::Drop)]
    pub dead: DeadArg,
    /// Axis order of rank ≥ 3 arrays: nchw (channels first) or nhwc (channels last). Rank-2
    /// arrays are always [N, C]; trailing axes after C (nchw) or before C (nhwc) are spatial.
    #[arg(long, value_enum, default_value_t = LayoutArg::Nchw)]
    pub layout: LayoutArg,
    /// Sine tolerance: sines at or below it count as 0 (exact match in floating point) and
    /// decide the rank of each span. Default 1e-6; range [0, 0.1).
    #[arg(long, value_name = "SINE_TOL")]
    pub tol: Option<f64>,
    /// Rows read per block from each file. Default: blocks of about 8 MiB of f64 rows of
    /// both layers together (at least 1,024 rows). Changes speed and memory, not results.
    #[arg(long, value_name = "N")]
    pub block_rows: Option<usize>,
    /// Compatibility mode with the reference code: also draw K rows (coordinates, the same for
    /// both nets) uniformly without replacement, --repeats times, and report the mean and
    /// standard deviation of mms over the draws (all rows when a layer has at most K).
    #[arg(long, value_name = "K")]
    pub sample_columns: Option<u64>,
    /// Number of draws of the sampled mode.
    #[arg(
        long,
        value_name = "R",
        default_value_t = 16,
        requires = "sample_columns"
    )]
    pub repeats: usize,
    /// Seed of the sampled mode's draws and of the --orders of --simple (SplitMix64; same seed,
    /// same result, on every machine).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Similarity measures per layer, comma-separated: match, cka, cca, svcca, pwcca, procrustes.
    ///
    /// `match` is the maximum span match (always computed). The others are basis-invariant: they
    /// compare the subspaces the two layers span, not individual neurons, so changing the basis
    /// of a layer leaves them unchanged (cka, procrustes: any rotation and a global scale; the
    /// CCA family: any invertible linear map). cka = linear centred kernel alignment (Kornblith
    /// et al. 2019), biased and debiased estimators, 1 = same up to rotation and scale; cca =
    /// mean canonical correlation and R²CCA; svcca = CCA after keeping 99% of each side's
    /// variance; pwcca = projection-weighted CCA; procrustes = orthogonal Procrustes distance
    /// (0 = same up to rotation and scale, at most √2). They come from the statistics of the
    /// match's single pass, at no extra reading cost. JSON: "measures" per layer.
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        default_value = "match,cka"
    )]
    pub measures: Vec<String>,
    /// View of convolutional layers for CKA: channels, or flatten (features = C·H·W per image).
    ///
    /// `channels`: features = channels, rows = (image, position) pairs, the match's statistics.
    /// `flatten` also computes linear CKA with features = all C·H·W values of an image and rows =
    /// images, the view of CKA libraries (JSON: cka_linear_flatten, cka_linear_debiased_flatten);
    /// the match and the other measures stay in the channel view. flatten reads the files a
    /// second time (more passes when the images do not fit in 1 GiB) and keeps two N x N kernels
    /// (16·N² bytes for N images; a warning above 20,000 images).
    #[arg(long, value_enum, default_value_t = ViewArg::Channels)]
    pub view: ViewArg,
    /// Images held in memory per pass of --view flatten (default: as many as fit in 1 GiB);
    /// fewer images, more passes over the files; results do not depend on it.
    #[arg(long, value_name = "N", requires = "view")]
    pub flatten_images: Option<usize>,
    /// Also compute the simple matches of every layer at this ε (in [0, 1]).
    ///
    /// Simple matches are the smallest groups of neurons that match: ε-matches that are not
    /// unions of smaller matches, found for every neuron of the maximum match (as `spanmatch
    /// simple`). The table gives their number and the largest size |X'| + |Y'|; JSON: "simple"
    /// per layer.
    #[arg(long, value_name = "EPS")]
    pub simple: Option<f64>,
    /// Seeded random neuron orders tried by --simple in addition to the deterministic one (the
    /// result depends on the order except at ε = 0 with independent neurons).
    #[arg(long, value_name = "K", default_value_t = 0, requires = "simple")]
    pub orders: usize,
    /// The match of the mean-centred activations beside the paper's uncentred one is computed
    /// by default (exact from the same statistics); this flag is accepted and changes nothing.
    #[arg(long, hide = true)]
    pub center: bool,
    /// Leave out the match of the mean-centred activations (computed by default beside the
    /// paper's uncentred one, exact from the same statistics).
    ///
    /// Uncentred (the paper's definition) asks whether a neuron's whole activation vector, its
    /// mean included, lies in the other net's span; centred asks the question CKA and CCA ask,
    /// ignoring a shared constant offset (common after ReLU). JSON: "centered" per layer.
    #[arg(long, conflicts_with = "center")]
    pub no_center: bool,
    /// A control: `rotate` = the neuron-basis null, net B's layer rotated by --null-draws
    /// Haar-random orthogonal matrices (seeded by --seed), computed on the statistics alone.
    ///
    /// A rotation keeps every span and destroys the neuron basis, so mms - null is the part of
    /// the match that lives in the neurons themselves. CKA and CCA are unchanged by it. JSON:
    /// "null" per layer (per ε: observed, mean, min, max, p_value).
    #[arg(long, value_name = "KIND", value_parser = ["rotate"])]
    pub null: Option<String>,
    /// Rotations of `--null rotate`.
    #[arg(long, value_name = "N", default_value_t = options::DEFAULT_NULL_DRAWS, requires = "null")]
    pub null_draws: usize,
    /// Bootstrap intervals over inputs: resample the --chunks chunks of consecutive inputs R
    /// times (with replacement, seeded by --seed) and report the 95% percentile interval of mms
    /// at every ε and of linear CKA. JSON: "intervals" per layer.
    ///
    /// The statistics of each chunk are kept apart in the same single pass: memory
    /// chunks x (n1+n2)² x 8 bytes per layer (20 chunks of 512 + 512 neurons: 160 MiB; capped at
    /// 2 GiB). Each resample costs one ε-profile, (n1+n2)³.
    #[arg(long, value_name = "R")]
    pub bootstrap: Option<usize>,
    /// Chunks of consecutive inputs for --bootstrap (the rows of one input stay in one chunk).
    #[arg(long, value_name = "K", default_value_t = options::DEFAULT_CHUNKS, requires = "bootstrap")]
    pub chunks: usize,
    /// Activations of the untrained nets (A0 and B0: the same architectures before training, on
    /// the same inputs): the untrained baseline of every layer, compared like A and B.
    ///
    /// Each layer then gets the untrained pair's mms at every ε, its CKA and centred mms (and
    /// intervals with --bootstrap), trained minus untrained, and, with --null rotate, a verdict
    /// (learned / given / subspace-only / none; docs/controls.md). The files must hold the same
    /// layers with the same neurons and rows as A and B. JSON: "untrained" per layer.
    #[arg(long, num_args = 2, value_names = ["A0", "B0"])]
    pub baseline: Option<Vec<PathBuf>>,
    /// The ε of the controls table (intervals, centred, untrained, null, verdict); one of
    /// --eps. Default: 0.5 when it is among them, else the largest.
    #[arg(long, value_name = "EPS")]
    pub main_eps: Option<f64>,
    /// Write results.json and an HTML report into this directory.
    ///
    /// report.html has the figures mms per layer, ε-profiles and, with --simple, simple-match
    /// sizes, plus a per-layer table (PNG copies of the figures when a font is found).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Nchw => Layout::Nchw,
            LayoutArg::Nhwc => Layout::Nhwc,
        }
    }
}

impl From<DeadArg> for DeadPolicy {
    fn from(d: DeadArg) -> Self {
        Dead::from(d).into()
    }
}

impl From<DeadArg> for Dead {
    fn from(d: DeadArg) -> Self {
        match d {
            DeadArg::Drop => Dead::Drop,
            DeadArg::Match => Dead::Match,
        }
    }
}

/// The flag of an option field in messages (`null_draws` -> `--null-draws`).
pub fn flag(field: &str) -> String {
    match field {
        "curve" => "--report".to_string(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// The tolerances of a run: the defaults, with `--tol` as the sine tolerance when given.
pub fn tolerances(tol: Option<f64>) -> Result<Tolerances> {
    options::tolerances(tol, "--tol")
}

/// The engine's options for these arguments (every check that names a flag happens here).
fn options(args: &CompareArgs) -> Result<CompareOptions> {
    if args.sample_columns == Some(0) || (args.sample_columns.is_some() && args.repeats == 0) {
        anyhow::bail!("--sample-columns and --repeats must be at least 1");
    }
    if args.block_rows == Some(0) {
        anyhow::bail!("--block-rows must be at least 1");
    }
    if args.flatten_images == Some(0) {
        anyhow::bail!("--flatten-images must be at least 1");
    }
    let options = Options {
        eps: args.eps.clone(),
        main_eps: args.main_eps,
        dead: args.dead.into(),
        tol: args.tol,
        measures: parse_measures(&args.measures, "--measures")?,
        center: !args.no_center,
        null: args.null.as_ref().map(|_| NullKind::Rotate),
        null_draws: args.null_draws,
        bootstrap: args.bootstrap,
        chunks: args.chunks,
        simple: args.simple,
        orders: args.orders,
        seed: args.seed,
        curve: args.report.is_some(),
        ..Options::default()
    };
    options.validate_named(&flag)?;
    Ok(CompareOptions {
        options,
        layers: args.layers.clone(),
        layout: args.layout.into(),
        block_rows: args.block_rows,
        sampling: args.sample_columns.map(|columns| Sampling {
            columns,
            repeats: args.repeats,
            seed: args.seed,
        }),
        flatten: args.view == ViewArg::Flatten,
        flatten_images: args.flatten_images,
        baseline: args
            .baseline
            .as_ref()
            .and_then(|v| Some((v.first()?.clone(), v.get(1)?.clone()))),
    })
}

/// Runs `spanmatch compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let options = options(args)?;
    let started = std::time::Instant::now();
    let mut results = engine::compare_files(&args.a, &args.b, &options, &mut Bars::new())?;
    results.timings = Some(serde_json::json!({
        "compare_seconds": started.elapsed().as_secs_f64()
    }));
    print!("{}", tables::tables(&results));
    if let Some(path) = &args.json {
        write_results(&results, path)?;
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--report: cannot create directory {}", dir.display()))?;
        write_results(&results, &dir.join("results.json"))?;
        let written = spanmatch_report::render(&results, dir).context("--report: rendering")?;
        let html = written
            .into_iter()
            .next()
            .unwrap_or_else(|| dir.join(spanmatch_report::REPORT_HTML));
        println!("report: {}", html.display());
    }
    Ok(())
}
