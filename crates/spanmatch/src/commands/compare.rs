//! `spanmatch compare A B`: maximum span matches of every common layer of two nets.

use crate::analysis::PROFILE_GRID_STEP;
use crate::commands::simple::run_simple;
use crate::output::{
    self, LayerMeasures, LayerReport, Report, SampledReport, SimpleMatchReport, SimpleReport,
};
use crate::pipeline::{self, Sampling, StreamOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use faer::MatRef;
use spanmatch_core::measures::{self, FlattenedKernels, Measure};
use spanmatch_core::simple::SimpleOptions;
use spanmatch_core::{DeadPolicy, MatchOptions, MatchProblem, Tolerances};
use spanmatch_io::{ActivationFile, Format, LayerReader, Layout};
use spanmatch_report::results::{
    Comparison, ComparisonKind, LayerResult, LayerSummary, ReproduceResults, SimpleSummary,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Also write the full results (matched neurons, thresholds) as JSON to this file.
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
    /// Write results.json and an HTML report into this directory.
    ///
    /// report.html has the figures mms per layer, ε-profiles and, with --simple, simple-match
    /// sizes, plus a per-layer table (PNG copies of the figures when a font is found).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// The names `--measures` accepts.
const MEASURE_NAMES: &str = "match, cka, cca, svcca, pwcca, procrustes";

/// Parses `--measures`: `match` (always computed) and the measures of [`Measure`].
fn parse_measures(names: &[String]) -> Result<Vec<Measure>> {
    let mut out = Vec::new();
    for name in names {
        let key = name.trim();
        if key.eq_ignore_ascii_case("match") {
            continue;
        }
        match key.parse::<Measure>() {
            Ok(m) if !out.contains(&m) => out.push(m),
            Ok(_) => {}
            Err(_) => bail!("--measures: unknown measure '{name}'; valid names: {MEASURE_NAMES}"),
        }
    }
    Ok(out)
}

fn check_eps(eps: &[f64]) -> Result<()> {
    if eps.is_empty() {
        bail!("--eps: give at least one value of ε in [0, 1]");
    }
    for &e in eps {
        if !(0.0..=1.0).contains(&e) {
            bail!(
                "--eps: ε = {e} is outside [0, 1]; ε is the sine of the largest angle allowed \
                 between a neuron's activation vector and the other net's span"
            );
        }
    }
    Ok(())
}

/// Two `.npy` files hold one layer each, named after their file stems: without `--layer`, they
/// are compared with each other whatever their names.
fn single_npy_pair(
    args: &CompareArgs,
    fa: &ActivationFile,
    fb: &ActivationFile,
) -> Option<(String, String)> {
    let npy = |f: &ActivationFile| f.format() == Format::Npy;
    if !args.layers.is_empty() || !npy(fa) || !npy(fb) {
        return None;
    }
    Some((
        fa.layers().first()?.name.clone(),
        fb.layers().first()?.name.clone(),
    ))
}

/// The layers to compare: the requested ones (each must be in both files), or every layer of A
/// that is also in B and readable, in A's file order.
fn select_layers(
    args: &CompareArgs,
    fa: &ActivationFile,
    fb: &ActivationFile,
    layout: Layout,
) -> Result<Vec<String>> {
    let in_b = |name: &str| fb.layer(name).is_some();
    if !args.layers.is_empty() {
        for name in &args.layers {
            match (fa.layer(name).is_some(), in_b(name)) {
                (true, true) => {}
                (false, false) => bail!(
                    "layer '{name}' is in neither {} nor {}",
                    fa.path().display(),
                    fb.path().display()
                ),
                (true, false) => bail!(
                    "layer '{name}' is in {} (net A) but not in {} (net B)",
                    fa.path().display(),
                    fb.path().display()
                ),
                (false, true) => bail!(
                    "layer '{name}' is in {} (net B) but not in {} (net A)",
                    fb.path().display(),
                    fa.path().display()
                ),
            }
        }
        return Ok(args.layers.clone());
    }
    let mut chosen = Vec::new();
    for l in fa.layers() {
        if !in_b(&l.name) {
            eprintln!(
                "warning: layer '{}' is only in {} (net A); skipped",
                l.name,
                fa.path().display()
            );
            continue;
        }
        let readable = fa
            .check(&l.name, layout)
            .and_then(|_| fb.check(&l.name, layout));
        match readable {
            Ok(_) => chosen.push(l.name.clone()),
            // Integer arrays (labels, indices) and vectors are not layers: skip them.
            Err(
                e @ (spanmatch_io::IoError::UnsupportedDtype { .. }
                | spanmatch_io::IoError::Rank { .. }),
            ) => {
                eprintln!("warning: skipped: {e}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    for l in fb.layers() {
        if fa.layer(&l.name).is_none() {
            eprintln!(
                "warning: layer '{}' is only in {} (net B); skipped",
                l.name,
                fb.path().display()
            );
        }
    }
    if chosen.is_empty() {
        bail!(
            "no layer to compare: {} and {} have no readable layer in common",
            fa.path().display(),
            fb.path().display()
        );
    }
    Ok(chosen)
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
        match d {
            DeadArg::Drop => DeadPolicy::Drop,
            DeadArg::Match => DeadPolicy::Match,
        }
    }
}

/// The tolerances of a run: the defaults, with `--tol` as the sine tolerance when given.
pub fn tolerances(tol: Option<f64>) -> Result<Tolerances> {
    let mut t = Tolerances::default();
    if let Some(sine) = tol {
        t.sine = sine;
    }
    t.validate().context("--tol")?;
    Ok(t)
}

/// Runs `spanmatch compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    check_eps(&args.eps)?;
    let tol = tolerances(args.tol)?;
    if args.sample_columns == Some(0) || (args.sample_columns.is_some() && args.repeats == 0) {
        bail!("--sample-columns and --repeats must be at least 1");
    }
    if args.block_rows == Some(0) {
        bail!("--block-rows must be at least 1");
    }
    if args.flatten_images == Some(0) {
        bail!("--flatten-images must be at least 1");
    }
    let wanted = parse_measures(&args.measures)?;
    if let Some(e) = args.simple {
        if !(0.0..=1.0).contains(&e) {
            bail!("--simple: ε = {e} is outside [0, 1] (ε is the sine of an angle)");
        }
    }
    let layout = Layout::from(args.layout);
    let dead = DeadPolicy::from(args.dead);
    let options = MatchOptions { tol, dead };
    let fa = ActivationFile::open(&args.a).context("opening net A's activations")?;
    let fb = ActivationFile::open(&args.b).context("opening net B's activations")?;
    let pairs = match single_npy_pair(args, &fa, &fb) {
        Some(pair) => vec![pair],
        None => select_layers(args, &fa, &fb, layout)?
            .into_iter()
            .map(|n| (n.clone(), n))
            .collect(),
    };
    let sampling = args.sample_columns.map(|columns| Sampling {
        columns,
        repeats: args.repeats,
        seed: args.seed,
    });

    let started = std::time::Instant::now();
    let mut layers = Vec::new();
    let mut curves = Vec::new();
    for (name_a, name_b) in &pairs {
        let (layer, curve) = compare_layer(
            &fa,
            &fb,
            (name_a, name_b),
            layout,
            options,
            args,
            sampling,
            &wanted,
        )
        .with_context(|| format!("comparing layer '{name_a}'"))?;
        layers.push(layer);
        curves.push(curve);
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = Report {
        spanmatch_version: env!("CARGO_PKG_VERSION").to_string(),
        file_a: args.a.display().to_string(),
        file_b: args.b.display().to_string(),
        dead_policy: match dead {
            DeadPolicy::Drop => "drop",
            DeadPolicy::Match => "match",
        },
        layout: match layout {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        },
        tolerances: output::Tolerances {
            sine: tol.sine,
            dead_norm: tol.dead_norm,
        },
        eps: args.eps.clone(),
        measures: std::iter::once("match")
            .chain(
                Measure::ALL
                    .into_iter()
                    .filter(|m| wanted.contains(m))
                    .map(Measure::name),
            )
            .collect(),
        view: match args.view {
            ViewArg::Channels => "channels",
            ViewArg::Flatten => "flatten",
        },
        layers,
    };
    print!("{}", output::table(&report));
    let second = output::measures_table(&report);
    if !second.is_empty() {
        println!();
        print!("{second}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &args.report {
        let html = write_report(&report, &curves, dir, seconds)?;
        println!("report: {}", html.display());
    }
    Ok(())
}

/// The ε-profile curve (fraction of neurons matched) on the report's ε grid.
fn profile_curve(profile: &spanmatch_core::Profile) -> Result<Vec<[f64; 2]>> {
    let steps = (1.0 / PROFILE_GRID_STEP).round() as usize;
    (0..=steps)
        .map(|k| {
            let e = (k as f64 * PROFILE_GRID_STEP).min(1.0);
            Ok([e, profile.mms(e)?])
        })
        .collect()
}

/// Writes `DIR/results.json` and the HTML report for one pair of activation files; returns the
/// path of report.html.
fn write_report(
    report: &Report,
    curves: &[Vec<[f64; 2]>],
    dir: &Path,
    seconds: f64,
) -> Result<PathBuf> {
    let mut layers = Vec::new();
    let mut summaries = Vec::new();
    for (index, (l, curve)) in report.layers.iter().zip(curves).enumerate() {
        let measures = match &l.measures {
            Some(m) => Some(serde_json::to_value(m).context("encoding the measures")?),
            None => None,
        };
        let simple = l.simple.as_ref().map(|s| {
            let mut hist: BTreeMap<usize, usize> = BTreeMap::new();
            for m in &s.simple_matches {
                *hist.entry(m.a.len() + m.b.len()).or_default() += 1;
            }
            SimpleSummary {
                eps: s.eps,
                count: s.simple_matches.len(),
                size_histogram: hist.into_iter().collect(),
                largest: s.largest(),
            }
        });
        layers.push(LayerResult {
            layer: l.name.clone(),
            neurons_a: l.neurons_a,
            neurons_b: l.neurons_b,
            rows: l.rows,
            dead_a: l.dead_a.clone(),
            dead_b: l.dead_b.clone(),
            max_epsilon: l.max_epsilon,
            mms: l.matches.iter().map(|m| m.mms).collect(),
            profile: curve.clone(),
            measures,
            simple,
        });
        summaries.push(LayerSummary {
            name: l.name.clone(),
            index,
            kind: if l.shape_a.len() > 2 { "conv" } else { "fc" }.to_string(),
            neurons: l.neurons_a,
            rows: l.rows,
        });
    }
    let results = ReproduceResults {
        spanmatch_version: report.spanmatch_version.clone(),
        created: format!(
            "{} s after the UNIX epoch",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
        config: serde_json::json!({
            "file_a": report.file_a,
            "file_b": report.file_b,
            "dead_policy": report.dead_policy,
            "layout": report.layout,
            "view": report.view,
            "sine_tolerance": report.tolerances.sine,
        }),
        eps: report.eps.clone(),
        nets: vec![],
        layers: summaries,
        comparisons: vec![Comparison {
            kind: ComparisonKind::Pair,
            seed_a: 0,
            seed_b: 1,
            layers,
        }],
        timings: serde_json::json!({ "compare_seconds": seconds }),
        peak_memory_mb: None,
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--report: cannot create directory {}", dir.display()))?;
    spanmatch_report::write_results(&results, &dir.join("results.json"))?;
    let written = spanmatch_report::render(&results, dir).context("--report: rendering")?;
    Ok(written
        .into_iter()
        .next()
        .unwrap_or_else(|| dir.join(spanmatch_report::REPORT_HTML)))
}

/// Memory for the images held per pass of the flattened view.
const FLATTEN_CHUNK_BYTES: usize = 1 << 30;
/// Above this many images the flattened view warns about its N x N memory.
const FLATTEN_WARN_IMAGES: usize = 20_000;

/// Reads the next `images` images (each `rows_per_image` consecutive rows) into `dst`, one
/// image's flattened vector (its rows concatenated) after the other.
fn read_images(
    r: &mut LayerReader,
    images: usize,
    rows_per_image: usize,
    dst: &mut [f64],
) -> Result<()> {
    let rows = images * rows_per_image;
    let c = r.neurons();
    let got = r.read_rows(rows, &mut dst[..rows * c], c, 0)?;
    if got != rows {
        bail!(
            "layer '{}' in {}: expected {rows} more rows, read {got}",
            r.name(),
            r.path().display()
        );
    }
    Ok(())
}

/// `k[(row0 + i) * n + col0 + j] = ⟨rows_i, cols_j⟩` for the row-major blocks `rows` (s x f) and
/// `cols` (m x f).
fn add_kernel_block(
    k: &mut [f64],
    n: usize,
    (row0, rows): (usize, &[f64]),
    (col0, cols): (usize, &[f64]),
    f: usize,
) {
    let (s, m) = (rows.len() / f, cols.len() / f);
    let p = MatRef::from_row_major_slice(rows, s, f)
        * MatRef::from_row_major_slice(cols, m, f).transpose();
    for i in 0..s {
        let line = &mut k[(row0 + i) * n + col0..][..m];
        for (j, v) in line.iter_mut().enumerate() {
            *v = p[(i, j)];
        }
    }
}

/// The image x image linear kernels of a layer pair in the flattened view (features = all values
/// of an image, rows = images), read from fresh readers: one pass when the images fit in
/// [`FLATTEN_CHUNK_BYTES`] (or `--flatten-images`), otherwise one pass per chunk of images.
fn flattened_kernels(
    fa: &ActivationFile,
    fb: &ActivationFile,
    (name, name_b): (&str, &str),
    layout: Layout,
    chunk_images: Option<usize>,
) -> Result<FlattenedKernels> {
    let open = || -> Result<(LayerReader, LayerReader)> {
        Ok((fa.reader(name, layout)?, fb.reader(name_b, layout)?))
    };
    let (ra, rb) = open()?;
    if ra.images() != rb.images() || ra.images() == 0 {
        bail!(
            "--view flatten needs the same images in both files: {} has {} images in layer '{name}', {} has {} in layer '{name_b}'",
            fa.path().display(),
            ra.images(),
            fb.path().display(),
            rb.images()
        );
    }
    let n = usize::try_from(ra.images()).context("too many images")?;
    let per_image = |r: &LayerReader| usize::try_from(r.rows() / r.images()).unwrap_or(usize::MAX);
    let (pa, pb) = (per_image(&ra), per_image(&rb));
    let (f1, f2) = (
        pa.saturating_mul(ra.neurons()),
        pb.saturating_mul(rb.neurons()),
    );
    let nn = n
        .checked_mul(n)
        .filter(|v| v.checked_mul(16).is_some())
        .with_context(|| format!("--view flatten: {n} images are too many for N x N kernels"))?;
    if n > FLATTEN_WARN_IMAGES {
        eprintln!(
            "warning: layer '{name}', --view flatten: {n} images need two {n} x {n} kernels ({:.1} GiB)",
            (16 * nn) as f64 / (1u64 << 30) as f64
        );
    }
    let image_bytes = 8usize.saturating_mul(f1.saturating_add(f2)).max(1);
    let chunk = chunk_images
        .unwrap_or(FLATTEN_CHUNK_BYTES / image_bytes)
        .clamp(1, n);
    let step = chunk
        .min((pipeline::DEFAULT_BLOCK_BYTES / image_bytes).max(1))
        .max(1);
    let passes = n.div_ceil(chunk);
    if passes > 1 && chunk_images.is_none() {
        eprintln!(
            "note: layer '{name}', --view flatten: {n} images of {f1} + {f2} values exceed {} GiB; reading the files {passes} times",
            FLATTEN_CHUNK_BYTES >> 30
        );
    }
    let mut k = vec![0.0; nn];
    let mut l = vec![0.0; nn];
    let (mut held_a, mut held_b) = (vec![0.0; chunk * f1], vec![0.0; chunk * f2]);
    let (mut buf_a, mut buf_b) = (vec![0.0; step * f1], vec![0.0; step * f2]);
    let total = ra.rows() * ra.bytes_per_row() + rb.rows() * rb.bytes_per_row();
    let bar = pipeline::progress_bar(&format!("{name} flat"), total * passes as u64);
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let (mut ra, mut rb) = open()?;
        let mut pos = 0;
        while pos < start {
            let s = step.min(start - pos);
            read_images(&mut ra, s, pa, &mut buf_a)?;
            read_images(&mut rb, s, pb, &mut buf_b)?;
            pos += s;
        }
        read_images(&mut ra, m, pa, &mut held_a)?;
        read_images(&mut rb, m, pb, &mut held_b)?;
        let (ha, hb) = (&held_a[..m * f1], &held_b[..m * f2]);
        add_kernel_block(&mut k, n, (start, ha), (start, ha), f1);
        add_kernel_block(&mut l, n, (start, hb), (start, hb), f2);
        pos = start + m;
        while pos < n {
            let s = step.min(n - pos);
            read_images(&mut ra, s, pa, &mut buf_a)?;
            read_images(&mut rb, s, pb, &mut buf_b)?;
            add_kernel_block(&mut k, n, (pos, &buf_a[..s * f1]), (start, ha), f1);
            add_kernel_block(&mut l, n, (pos, &buf_b[..s * f2]), (start, hb), f2);
            pos += s;
        }
        bar.inc(total);
    }
    bar.finish_and_clear();
    Ok(FlattenedKernels::from_full(n, &k, &l)?)
}

/// Compares one layer pair; also returns the ε-profile curve when `--report` needs it.
#[allow(clippy::too_many_arguments)]
fn compare_layer(
    fa: &ActivationFile,
    fb: &ActivationFile,
    (name, name_b): (&str, &str),
    layout: Layout,
    options: MatchOptions,
    args: &CompareArgs,
    sampling: Option<Sampling>,
    wanted: &[Measure],
) -> Result<(LayerReport, Vec<[f64; 2]>)> {
    let mut ra = fa.reader(name, layout)?;
    let mut rb = fb.reader(name_b, layout)?;
    for w in ra.warnings().iter().chain(rb.warnings()) {
        eprintln!("warning: {w}");
    }
    if ra.rows() == rb.rows() && (ra.images() != rb.images() || ra.spatial() != rb.spatial()) {
        eprintln!(
            "warning: layer '{name}': shapes {:?} and {:?} give the same number of rows but different image/position grids; row r is compared with row r",
            ra.info().shape,
            rb.info().shape
        );
    }
    if let Some(s) = sampling {
        if s.columns >= ra.rows() {
            eprintln!(
                "note: layer '{name}' has {} rows, not more than --sample-columns {}: every repeat uses all rows",
                ra.rows(),
                s.columns
            );
        }
    }
    let block_rows = args
        .block_rows
        .unwrap_or_else(|| pipeline::default_block_rows(ra.neurons(), rb.neurons()));
    let bar = pipeline::progress_bar(name, ra.rows() * (ra.bytes_per_row() + rb.bytes_per_row()));
    let stats = pipeline::stream_pair(
        &mut ra,
        &mut rb,
        &StreamOptions {
            block_rows,
            sampling,
        },
        &bar,
    )?;
    bar.finish_and_clear();

    // Keep one copy of the (n1 + n2)² statistics at a time: the accumulator goes once finished,
    // and the problem takes the finished Gram matrix over after the measures have used it.
    let pipeline::PairStats { full, sampled } = stats;
    let joint = full.finish();
    drop(full);
    let mut layer_measures = if wanted.is_empty() {
        None
    } else {
        Some(LayerMeasures {
            channels: measures::compute(&joint, wanted).context("measures")?,
            ..LayerMeasures::default()
        })
    };
    let problem = MatchProblem::from_stats(joint, options)?;
    let profile = problem.profile();
    let curve = if args.report.is_some() {
        profile_curve(&profile)?
    } else {
        Vec::new()
    };
    if args.view == ViewArg::Flatten {
        let kernels = flattened_kernels(fa, fb, (name, name_b), layout, args.flatten_images)
            .context("--view flatten")?;
        let flat = kernels.measures();
        let m = layer_measures.get_or_insert_with(LayerMeasures::default);
        m.cka_linear_flatten = flat.cka_linear;
        m.cka_linear_debiased_flatten = flat.cka_linear_debiased;
        m.channels
            .notes
            .extend(flat.notes.into_iter().map(|n| format!("flatten view: {n}")));
    }
    let simple = match args.simple {
        None => None,
        Some(eps) => {
            let r = run_simple(
                &problem,
                &SimpleOptions {
                    eps,
                    orders: args.orders,
                    seed: args.seed,
                },
            )
            .context("simple matches")?;
            if !r.complete {
                eprintln!("warning: layer '{name}': simple matches interrupted, partial result");
            }
            Some(SimpleReport {
                eps,
                exact_case: r.exact_case,
                complete: r.complete,
                orders: r.orders,
                seed: args.seed,
                simple_matches: r
                    .matches
                    .into_iter()
                    .map(|m| SimpleMatchReport {
                        a: m.a,
                        b: m.b,
                        count: m.count,
                    })
                    .collect(),
            })
        }
    };
    let matches = args
        .eps
        .iter()
        .map(|&e| profile.max_match(e))
        .collect::<Result<Vec<_>, _>>()?;
    let sampled = match sampling {
        None => None,
        Some(s) => {
            let mut per_eps = vec![Vec::with_capacity(s.repeats); args.eps.len()];
            for acc in &sampled {
                let p = MatchProblem::new(&acc.finish(), options)?.profile();
                for (vals, &e) in per_eps.iter_mut().zip(&args.eps) {
                    vals.push(p.mms(e)?);
                }
            }
            let (mms_mean, mms_std) = per_eps.iter().map(|v| output::mean_std(v)).unzip();
            Some(SampledReport {
                columns: s.columns,
                repeats: s.repeats,
                seed: s.seed,
                mms_mean,
                mms_std,
            })
        }
    };
    Ok((
        LayerReport {
            name: name.to_string(),
            name_b: (name_b != name).then(|| name_b.to_string()),
            neurons_a: ra.neurons(),
            neurons_b: rb.neurons(),
            rows: ra.rows(),
            shape_a: ra.info().shape.clone(),
            shape_b: rb.info().shape.clone(),
            dead_a: problem.dead_a().to_vec(),
            dead_b: problem.dead_b().to_vec(),
            thresholds_a: profile.thresholds_a().to_vec(),
            thresholds_b: profile.thresholds_b().to_vec(),
            max_epsilon: profile.max_epsilon(),
            matches,
            sampled,
            measures: layer_measures,
            simple,
        },
        curve,
    ))
}
