//! `spanmatch compare A B`: maximum span matches of every common layer of two nets.

use crate::output::{self, LayerReport, Report, SampledReport};
use crate::pipeline::{self, Sampling, StreamOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use spanmatch_core::{DeadPolicy, MatchOptions, MatchProblem, Tolerances};
use spanmatch_io::{ActivationFile, Format, Layout};
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
    /// Rows read per block from each file. Default: blocks of about 64 MiB of f64 rows of
    /// both layers together. Changes speed and memory, not results.
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
    /// Seed of the sampled mode's draws (SplitMix64; same seed, same rows, on every machine).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0,
        requires = "sample_columns"
    )]
    pub seed: u64,
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

/// Runs `spanmatch compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    check_eps(&args.eps)?;
    let mut tol = Tolerances::default();
    if let Some(t) = args.tol {
        tol.sine = t;
    }
    tol.validate().context("--tol")?;
    if args.sample_columns == Some(0) || (args.sample_columns.is_some() && args.repeats == 0) {
        bail!("--sample-columns and --repeats must be at least 1");
    }
    if args.block_rows == Some(0) {
        bail!("--block-rows must be at least 1");
    }
    let layout = match args.layout {
        LayoutArg::Nchw => Layout::Nchw,
        LayoutArg::Nhwc => Layout::Nhwc,
    };
    let dead = match args.dead {
        DeadArg::Drop => DeadPolicy::Drop,
        DeadArg::Match => DeadPolicy::Match,
    };
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

    let mut layers = Vec::new();
    for (name_a, name_b) in &pairs {
        let layer = compare_layer(&fa, &fb, (name_a, name_b), layout, options, args, sampling)
            .with_context(|| format!("comparing layer '{name_a}'"))?;
        layers.push(layer);
    }
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
        layers,
    };
    print!("{}", output::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn compare_layer(
    fa: &ActivationFile,
    fb: &ActivationFile,
    (name, name_b): (&str, &str),
    layout: Layout,
    options: MatchOptions,
    args: &CompareArgs,
    sampling: Option<Sampling>,
) -> Result<LayerReport> {
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

    let problem = MatchProblem::new(&stats.full.finish(), options)?;
    let profile = problem.profile();
    let matches = args
        .eps
        .iter()
        .map(|&e| profile.max_match(e))
        .collect::<Result<Vec<_>, _>>()?;
    let sampled = match sampling {
        None => None,
        Some(s) => {
            let mut per_eps = vec![Vec::with_capacity(s.repeats); args.eps.len()];
            for acc in &stats.sampled {
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
    Ok(LayerReport {
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
    })
}
