//! Comparing two nets layer by layer: activation files in, a [`Report`] out (the JSON schema of
//! `spanmatch compare --json` and of Python's `Result.to_dict()`), and the analysis of one layer
//! pair's statistics that every front shares ([`analyse_layer`]).

use crate::progress::Progress;
use crate::report::{
    mean_std, CenteredReport, IntervalReport, IntervalsReport, LayerMeasures, LayerReport, Report,
    SampledReport, SimpleMatchReport, SimpleReport, Tolerances as ReportTolerances,
};
use crate::stream::{self, PairStats, Sampling, StreamOptions};
use anyhow::{bail, Context, Result};
use faer::MatRef;
use spanmatch_core::controls;
use spanmatch_core::measures::{self, FlattenedKernels, Measure};
use spanmatch_core::simple::{simple_matches, SimpleOptions};
use spanmatch_core::{DeadPolicy, JointStats, MatchOptions, MatchProblem, Profile, Tolerances};
use spanmatch_io::{ActivationFile, Format, LayerReader, Layout};
use std::ops::ControlFlow;
use std::path::Path;

/// Step of the ε grid on which the ε-profile curve is sampled (reports and figures).
pub const PROFILE_GRID_STEP: f64 = 0.01;

/// The ε values used when none are given: those of the paper's figures.
pub const DEFAULT_EPS: [f64; 5] = [0.15, 0.2, 0.25, 0.3, 0.5];

/// The names accepted for the measures, in words (for error messages).
pub const MEASURE_NAMES: &str = "match, cka, cca, svcca, pwcca, procrustes, one_to_one, \
                                 soft_match, perm_procrustes, predictivity, shape";

/// What to compute for each layer pair once its statistics are known.
#[derive(Debug, Clone)]
pub struct AnalyseOptions {
    /// The ε values (each in [0, 1]).
    pub eps: Vec<f64>,
    /// Tolerances and dead-neuron policy.
    pub matching: MatchOptions,
    /// Basis-invariant measures computed from the same statistics.
    pub measures: Vec<Measure>,
    /// Simple matches, when wanted.
    pub simple: Option<SimpleOptions>,
    /// Also sample the ε-profile curve on [`PROFILE_GRID_STEP`] (for reports).
    pub curve: bool,
    /// Also the match of the mean-centred activations (exact from the same statistics).
    pub center: bool,
    /// Also the neuron-basis null: net B's layer rotated by random orthogonal matrices.
    pub null: Option<NullOptions>,
    /// Also bootstrap intervals over chunks of the inputs (needs per-chunk statistics: see
    /// [`analyse_layer_chunked`]).
    pub bootstrap: Option<BootstrapOptions>,
}

/// Bootstrap intervals over chunks of the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Chunks of consecutive inputs (images) whose statistics are kept apart.
    pub chunks: usize,
    /// Resamples of the chunks, with replacement.
    pub resamples: usize,
    /// Seed of the resampling (ChaCha8: the same intervals on every machine).
    pub seed: u64,
}

/// Chunks of the bootstrap when none are given.
pub const DEFAULT_CHUNKS: usize = 20;
/// Resamples of the bootstrap when none are given.
pub const DEFAULT_RESAMPLES: usize = 200;

/// The neuron-basis null of [`AnalyseOptions::null`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullOptions {
    /// Number of Haar-random rotations.
    pub draws: usize,
    /// Seed of the rotations (ChaCha8: the same rotations on every machine).
    pub seed: u64,
}

/// Rotations of the neuron-basis null when none are given.
pub const DEFAULT_NULL_DRAWS: usize = 10;

impl Default for AnalyseOptions {
    fn default() -> Self {
        Self {
            eps: DEFAULT_EPS.to_vec(),
            matching: MatchOptions::default(),
            measures: vec![Measure::Cka],
            simple: None,
            curve: false,
            center: false,
            null: None,
            bootstrap: None,
        }
    }
}

/// Options of a file comparison ([`compare_files`]).
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// What to compute per layer.
    pub analyse: AnalyseOptions,
    /// Layers to compare (each must be in both files); empty: every layer of A also in B.
    pub layers: Vec<String>,
    /// Channel axis of rank ≥ 3 arrays.
    pub layout: Layout,
    /// Rows per streamed block; `None`: [`stream::default_block_rows`].
    pub block_rows: Option<usize>,
    /// The reference code's sampled protocol, accumulated in the same pass.
    pub sampling: Option<Sampling>,
    /// Also linear CKA in the per-image flattened view (a second read of the files).
    pub flatten: bool,
    /// Images held per pass of the flattened view (`None`: as many as fit in 1 GiB).
    pub flatten_images: Option<usize>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            analyse: AnalyseOptions::default(),
            layers: Vec::new(),
            layout: Layout::Nchw,
            block_rows: None,
            sampling: None,
            flatten: false,
            flatten_images: None,
        }
    }
}

/// Checks a list of ε values; `arg` names the argument in the message (`--eps`, `eps`).
pub fn check_eps(eps: &[f64], arg: &str) -> Result<()> {
    if eps.is_empty() {
        bail!("{arg}: give at least one value of ε in [0, 1]");
    }
    for &e in eps {
        if !(0.0..=1.0).contains(&e) {
            bail!(
                "{arg}: ε = {e} is outside [0, 1]; ε is the sine of the largest angle allowed \
                 between a neuron's activation vector and the other net's span"
            );
        }
    }
    Ok(())
}

/// Parses measure names: `match` (always computed) and the names of [`Measure`]; `arg` names
/// the argument in the message.
pub fn parse_measures<S: AsRef<str>>(names: &[S], arg: &str) -> Result<Vec<Measure>> {
    let mut out = Vec::new();
    for name in names {
        let key = name.as_ref().trim();
        if key.eq_ignore_ascii_case("match") {
            continue;
        }
        match key.parse::<Measure>() {
            Ok(m) if !out.contains(&m) => out.push(m),
            Ok(_) => {}
            Err(_) => bail!(
                "{arg}: unknown measure '{}'; valid names: {MEASURE_NAMES}",
                name.as_ref()
            ),
        }
    }
    Ok(out)
}

/// The tolerances of a run: the defaults, with `sine` as the sine tolerance when given; `arg`
/// names the argument in the message.
pub fn tolerances(sine: Option<f64>, arg: &str) -> Result<Tolerances> {
    let mut t = Tolerances::default();
    if let Some(s) = sine {
        t.sine = s;
    }
    t.validate().with_context(|| arg.to_string())?;
    Ok(t)
}

/// `"drop"` or `"match"`.
pub fn dead_name(dead: DeadPolicy) -> &'static str {
    match dead {
        DeadPolicy::Drop => "drop",
        DeadPolicy::Match => "match",
    }
}

/// `"nchw"` or `"nhwc"`.
pub fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

/// The report's header fields for these options, with no layer yet. `file_a` / `file_b` name
/// the two sides (file paths, or labels of in-memory data).
pub fn empty_report(
    file_a: &str,
    file_b: &str,
    options: &AnalyseOptions,
    layout: Layout,
    flatten: bool,
) -> Report {
    let tol = options.matching.tol;
    Report {
        spanmatch_version: env!("CARGO_PKG_VERSION").to_string(),
        file_a: file_a.to_string(),
        file_b: file_b.to_string(),
        dead_policy: dead_name(options.matching.dead),
        layout: layout_name(layout),
        tolerances: ReportTolerances {
            sine: tol.sine,
            dead_norm: tol.dead_norm,
        },
        eps: options.eps.clone(),
        measures: std::iter::once("match")
            .chain(
                Measure::ALL
                    .into_iter()
                    .filter(|m| options.measures.contains(m))
                    .map(Measure::name),
            )
            .collect(),
        view: if flatten { "flatten" } else { "channels" },
        layers: Vec::new(),
    }
}

/// The ε-profile curve (fraction of neurons matched) on the [`PROFILE_GRID_STEP`] grid.
pub fn profile_curve(profile: &Profile) -> Result<Vec<[f64; 2]>> {
    let steps = (1.0 / PROFILE_GRID_STEP).round() as usize;
    (0..=steps)
        .map(|k| {
            let e = (k as f64 * PROFILE_GRID_STEP).min(1.0);
            Ok([e, profile.mms(e)?])
        })
        .collect()
}

/// One analysed layer pair: the report record, and the profile curve when asked for.
#[derive(Debug, Clone)]
pub struct AnalysedLayer {
    /// The record of `compare --json`.
    pub report: LayerReport,
    /// The ε-profile curve (empty unless [`AnalyseOptions::curve`]).
    pub curve: Vec<[f64; 2]>,
}

/// Names and shapes of a layer pair, for its report record.
#[derive(Debug, Clone, Default)]
pub struct LayerLabel {
    /// Layer name (net A's).
    pub name: String,
    /// Net B's layer name when it differs.
    pub name_b: Option<String>,
    /// Array shape of A as stored (empty when unknown).
    pub shape_a: Vec<u64>,
    /// Array shape of B.
    pub shape_b: Vec<u64>,
}

/// Analyses one layer pair from its statistics alone: ε-profile, maximum match at each ε,
/// thresholds, dead neurons, measures and (optionally) simple matches. The statistics are
/// consumed (the problem takes the Gram matrix over, so only one copy is alive).
pub fn analyse_layer(
    label: LayerLabel,
    joint: JointStats,
    options: &AnalyseOptions,
    progress: &mut dyn Progress,
) -> Result<AnalysedLayer> {
    let name = label.name.clone();
    joint
        .check_finite()
        .with_context(|| format!("layer '{name}'"))?;
    let measures = if options.measures.is_empty() {
        None
    } else {
        Some(LayerMeasures {
            channels: measures::compute(&joint, &options.measures)
                .with_context(|| format!("layer '{name}': measures"))?,
            ..LayerMeasures::default()
        })
    };
    let (n1, n2, rows) = (joint.n1, joint.n2, joint.rows);
    let null = match options.null {
        None => None,
        Some(o) => Some(
            controls::rotation_null(&joint, o.draws, o.seed, &options.eps, options.matching)
                .map_err(|e| anyhow::anyhow!("layer '{name}': rotation null: {e}"))?,
        ),
    };
    let centered = if options.center {
        let c = controls::centered(&joint);
        let p = MatchProblem::from_stats(c, options.matching)
            .with_context(|| format!("layer '{name}': centred"))?
            .profile();
        Some(CenteredReport {
            thresholds_a: p.thresholds_a().to_vec(),
            thresholds_b: p.thresholds_b().to_vec(),
            max_epsilon: p.max_epsilon(),
            matches: options
                .eps
                .iter()
                .map(|&e| p.max_match(e))
                .collect::<Result<Vec<_>, _>>()?,
        })
    } else {
        None
    };
    let problem = MatchProblem::from_stats(joint, options.matching)
        .with_context(|| format!("layer '{name}'"))?;
    let profile = problem.profile();
    let curve = if options.curve {
        profile_curve(&profile)?
    } else {
        Vec::new()
    };
    let simple = match options.simple {
        None => None,
        Some(s) => {
            let r = simple_matches(&problem, &s, |done, total| {
                if progress.simple(done, total) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })
            .with_context(|| format!("layer '{name}': simple matches"))?;
            if !r.complete {
                progress.warn(&format!(
                    "layer '{name}': simple matches interrupted, partial result"
                ));
            }
            Some(SimpleReport {
                eps: s.eps,
                exact_case: r.exact_case,
                complete: r.complete,
                orders: r.orders,
                seed: s.seed,
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
    let matches = options
        .eps
        .iter()
        .map(|&e| profile.max_match(e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AnalysedLayer {
        report: LayerReport {
            name: label.name,
            name_b: label.name_b,
            neurons_a: n1,
            neurons_b: n2,
            rows,
            shape_a: label.shape_a,
            shape_b: label.shape_b,
            dead_a: problem.dead_a().to_vec(),
            dead_b: problem.dead_b().to_vec(),
            thresholds_a: profile.thresholds_a().to_vec(),
            thresholds_b: profile.thresholds_b().to_vec(),
            max_epsilon: profile.max_epsilon(),
            matches,
            sampled: None,
            measures,
            simple,
            centered,
            null,
            intervals: None,
        },
        curve,
    })
}

/// [`analyse_layer`] from per-chunk statistics (consecutive chunks of the inputs): the analysis
/// of the merged statistics, plus bootstrap intervals over the chunks for mms at every ε and for
/// linear CKA when [`AnalyseOptions::bootstrap`] is set.
pub fn analyse_layer_chunked(
    label: LayerLabel,
    chunks: Vec<JointStats>,
    options: &AnalyseOptions,
    progress: &mut dyn Progress,
) -> Result<AnalysedLayer> {
    let name = label.name.clone();
    let chunked =
        controls::ChunkedStats::new(chunks).map_err(|e| anyhow::anyhow!("layer '{name}': {e}"))?;
    let joint = chunked.merged();
    let mut layer = analyse_layer(label, joint, options, progress)?;
    if let Some(b) = options.bootstrap {
        let eps = options.eps.clone();
        let matching = options.matching;
        let intervals = chunked
            .bootstrap(b.resamples, b.seed, |s| {
                let mut out = controls::mms_at(s, &eps, matching)?;
                let cka = measures::compute(s, &[Measure::Cka])?
                    .cka_linear
                    .unwrap_or(f64::NAN);
                out.push(cka);
                Ok(out)
            })
            .map_err(|e| anyhow::anyhow!("layer '{name}': bootstrap: {e}"))?;
        let k = options.eps.len();
        let pair = |i: usize| {
            let o = &intervals.outputs[i];
            IntervalReport { lo: o.lo, hi: o.hi }
        };
        layer.report.intervals = Some(IntervalsReport {
            level: intervals.level,
            resamples: intervals.resamples,
            chunks: intervals.chunks,
            seed: intervals.seed,
            mms: (0..k).map(pair).collect(),
            cka_linear: (intervals.outputs[k].finite > 0).then(|| pair(k)),
        });
    }
    Ok(layer)
}

/// A whole comparison: the report and, per layer, the profile curve (empty unless asked).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The JSON report.
    pub report: Report,
    /// Per layer, the ε-profile curve.
    pub curves: Vec<Vec<[f64; 2]>>,
}

/// Compares every requested layer of two activation files: one streamed pass per layer pair,
/// then [`analyse_layer`]. The work of `spanmatch compare` and of Python's `compare` on paths.
pub fn compare_files(
    a: &Path,
    b: &Path,
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<Comparison> {
    check_eps(&options.analyse.eps, "eps")?;
    if options.block_rows == Some(0) {
        bail!("block_rows must be at least 1");
    }
    if options.flatten_images == Some(0) {
        bail!("flatten_images must be at least 1");
    }
    if let Some(s) = options.sampling {
        if s.columns == 0 || s.repeats == 0 {
            bail!("sample_columns and repeats must be at least 1");
        }
    }
    if let Some(s) = options.analyse.simple {
        if !(0.0..=1.0).contains(&s.eps) {
            bail!(
                "simple: ε = {} is outside [0, 1] (ε is the sine of an angle)",
                s.eps
            );
        }
    }
    if let Some(bo) = options.analyse.bootstrap {
        if bo.chunks == 0 || bo.resamples == 0 {
            bail!("bootstrap: chunks and resamples must be at least 1");
        }
    }
    let fa = ActivationFile::open(a).context("opening net A's activations")?;
    let fb = ActivationFile::open(b).context("opening net B's activations")?;
    let pairs = match single_npy_pair(&options.layers, &fa, &fb) {
        Some(pair) => vec![pair],
        None => select_layers(&options.layers, &fa, &fb, options.layout, progress)?
            .into_iter()
            .map(|n| (n.clone(), n))
            .collect(),
    };
    let mut report = empty_report(
        &a.display().to_string(),
        &b.display().to_string(),
        &options.analyse,
        options.layout,
        options.flatten,
    );
    let mut curves = Vec::new();
    for (name_a, name_b) in &pairs {
        let layer = compare_layer(&fa, &fb, (name_a, name_b), options, progress)
            .with_context(|| format!("comparing layer '{name_a}'"))?;
        report.layers.push(layer.report);
        curves.push(layer.curve);
    }
    Ok(Comparison { report, curves })
}

/// Two `.npy` files hold one layer each, named after their file stems: without explicit layers
/// they are compared with each other whatever their names.
fn single_npy_pair(
    layers: &[String],
    fa: &ActivationFile,
    fb: &ActivationFile,
) -> Option<(String, String)> {
    let npy = |f: &ActivationFile| f.format() == Format::Npy;
    if !layers.is_empty() || !npy(fa) || !npy(fb) {
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
    requested: &[String],
    fa: &ActivationFile,
    fb: &ActivationFile,
    layout: Layout,
    progress: &mut dyn Progress,
) -> Result<Vec<String>> {
    let in_b = |name: &str| fb.layer(name).is_some();
    if !requested.is_empty() {
        for name in requested {
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
        return Ok(requested.to_vec());
    }
    let mut chosen = Vec::new();
    for l in fa.layers() {
        if !in_b(&l.name) {
            progress.warn(&format!(
                "layer '{}' is only in {} (net A); skipped",
                l.name,
                fa.path().display()
            ));
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
            ) => progress.warn(&format!("skipped: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    for l in fb.layers() {
        if fa.layer(&l.name).is_none() {
            progress.warn(&format!(
                "layer '{}' is only in {} (net B); skipped",
                l.name,
                fb.path().display()
            ));
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

/// Streams one layer pair of two files into its statistics (with progress), per chunk of
/// inputs when `chunks` is given.
#[allow(clippy::too_many_arguments)]
pub fn stream_layer(
    fa: &ActivationFile,
    fb: &ActivationFile,
    (name, name_b): (&str, &str),
    layout: Layout,
    block_rows: Option<usize>,
    sampling: Option<Sampling>,
    chunks: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<(PairStats, LayerLabel)> {
    let mut ra = fa.reader(name, layout)?;
    let mut rb = fb.reader(name_b, layout)?;
    for w in ra.warnings().iter().chain(rb.warnings()) {
        progress.warn(w);
    }
    if ra.rows() == rb.rows() && (ra.images() != rb.images() || ra.spatial() != rb.spatial()) {
        progress.warn(&format!(
            "layer '{name}': shapes {:?} and {:?} give the same number of rows but different image/position grids; row r is compared with row r",
            ra.info().shape,
            rb.info().shape
        ));
    }
    if let Some(s) = sampling {
        if s.columns >= ra.rows() {
            progress.warn(&format!(
                "layer '{name}' has {} rows, not more than sample_columns {}: every repeat uses all rows",
                ra.rows(),
                s.columns
            ));
        }
    }
    if let Some(k) = chunks {
        if k as u64 > ra.images() {
            bail!(
                "layer '{name}': {k} chunks for the bootstrap, but the files hold only {} inputs; use at most that many chunks",
                ra.images()
            );
        }
        let bytes = controls::chunk_memory_bytes(ra.neurons(), rb.neurons(), k);
        if bytes > controls::MAX_CHUNK_BYTES {
            bail!(
                "layer '{name}': {k} chunks of {} + {} neurons need {} MiB of statistics (chunks x (n1+n2)^2 x 8 bytes), above the cap of {} MiB; use fewer chunks",
                ra.neurons(),
                rb.neurons(),
                bytes >> 20,
                controls::MAX_CHUNK_BYTES >> 20
            );
        }
    }
    let block_rows =
        block_rows.unwrap_or_else(|| stream::default_block_rows(ra.neurons(), rb.neurons()));
    progress.start(name, ra.rows() * (ra.bytes_per_row() + rb.bytes_per_row()));
    let stats = stream::stream_pair(
        &mut ra,
        &mut rb,
        &StreamOptions {
            block_rows,
            sampling,
            chunks,
        },
        progress,
    )?;
    progress.finish();
    let label = LayerLabel {
        name: name.to_string(),
        name_b: (name_b != name).then(|| name_b.to_string()),
        shape_a: ra.info().shape.clone(),
        shape_b: rb.info().shape.clone(),
    };
    Ok((stats, label))
}

/// Compares one layer pair of two files.
fn compare_layer(
    fa: &ActivationFile,
    fb: &ActivationFile,
    names: (&str, &str),
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<AnalysedLayer> {
    let (stats, label) = stream_layer(
        fa,
        fb,
        names,
        options.layout,
        options.block_rows,
        options.sampling,
        options.analyse.bootstrap.map(|b| b.chunks),
        progress,
    )?;
    // Keep one copy of the (n1 + n2)² statistics at a time: the accumulator goes once finished.
    let PairStats {
        full,
        sampled,
        chunks,
    } = stats;
    let mut layer = if chunks.is_empty() {
        let joint = full.finish();
        drop(full);
        analyse_layer(label, joint, &options.analyse, progress)?
    } else {
        drop(full);
        let parts = chunks.iter().map(|c| c.finish()).collect();
        drop(chunks);
        analyse_layer_chunked(label, parts, &options.analyse, progress)?
    };
    if options.flatten {
        let kernels =
            flattened_kernels(fa, fb, names, options, progress).context("flattened view")?;
        let flat = kernels.measures();
        let m = layer
            .report
            .measures
            .get_or_insert_with(LayerMeasures::default);
        m.cka_linear_flatten = flat.cka_linear;
        m.cka_linear_debiased_flatten = flat.cka_linear_debiased;
        m.channels
            .notes
            .extend(flat.notes.into_iter().map(|n| format!("flatten view: {n}")));
    }
    if let Some(s) = options.sampling {
        let eps = &options.analyse.eps;
        let mut per_eps = vec![Vec::with_capacity(s.repeats); eps.len()];
        for acc in &sampled {
            let p = MatchProblem::new(&acc.finish(), options.analyse.matching)?.profile();
            for (vals, &e) in per_eps.iter_mut().zip(eps) {
                vals.push(p.mms(e)?);
            }
        }
        let (mms_mean, mms_std) = per_eps.iter().map(|v| mean_std(v)).unzip();
        layer.report.sampled = Some(SampledReport {
            columns: s.columns,
            repeats: s.repeats,
            seed: s.seed,
            mms_mean,
            mms_std,
        });
    }
    Ok(layer)
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
/// [`FLATTEN_CHUNK_BYTES`] (or `flatten_images`), otherwise one pass per chunk of images.
fn flattened_kernels(
    fa: &ActivationFile,
    fb: &ActivationFile,
    (name, name_b): (&str, &str),
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<FlattenedKernels> {
    let layout = options.layout;
    let open = || -> Result<(LayerReader, LayerReader)> {
        Ok((fa.reader(name, layout)?, fb.reader(name_b, layout)?))
    };
    let (ra, rb) = open()?;
    if ra.images() != rb.images() || ra.images() == 0 {
        bail!(
            "the flattened view needs the same images in both files: {} has {} images in layer '{name}', {} has {} in layer '{name_b}'",
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
        .with_context(|| format!("flattened view: {n} images are too many for N x N kernels"))?;
    if n > FLATTEN_WARN_IMAGES {
        progress.warn(&format!(
            "layer '{name}', flattened view: {n} images need two {n} x {n} kernels ({:.1} GiB)",
            (16 * nn) as f64 / (1u64 << 30) as f64
        ));
    }
    let image_bytes = 8usize.saturating_mul(f1.saturating_add(f2)).max(1);
    let chunk = options
        .flatten_images
        .unwrap_or(FLATTEN_CHUNK_BYTES / image_bytes)
        .clamp(1, n);
    let step = chunk
        .min((stream::DEFAULT_BLOCK_BYTES / image_bytes).max(1))
        .max(1);
    let passes = n.div_ceil(chunk);
    if passes > 1 && options.flatten_images.is_none() {
        progress.warn(&format!(
            "layer '{name}', flattened view: {n} images of {f1} + {f2} values exceed {} GiB; reading the files {passes} times",
            FLATTEN_CHUNK_BYTES >> 30
        ));
    }
    let mut k = vec![0.0; nn];
    let mut l = vec![0.0; nn];
    let (mut held_a, mut held_b) = (vec![0.0; chunk * f1], vec![0.0; chunk * f2]);
    let (mut buf_a, mut buf_b) = (vec![0.0; step * f1], vec![0.0; step * f2]);
    let total = ra.rows() * ra.bytes_per_row() + rb.rows() * rb.bytes_per_row();
    progress.start(&format!("{name} flat"), total * passes as u64);
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
        progress.inc(total);
    }
    progress.finish();
    Ok(FlattenedKernels::from_full(n, &k, &l)?)
}

/// Opens two activation files and streams one layer pair into its statistics: the first step
/// of `spanmatch simple`. `layer` may be omitted when both files hold exactly one layer.
pub fn file_layer_stats(
    a: &Path,
    b: &Path,
    layer: Option<&str>,
    layout: Layout,
    progress: &mut dyn Progress,
) -> Result<(String, JointStats)> {
    let fa = ActivationFile::open(a).context("opening net A's activations")?;
    let fb = ActivationFile::open(b).context("opening net B's activations")?;
    let name = match layer {
        Some(n) => n.to_string(),
        None => {
            if fa.layers().len() == 1 && fb.layers().len() == 1 {
                fa.layers()[0].name.clone()
            } else {
                bail!(
                    "a layer name is required: {} holds {} layers ({})",
                    a.display(),
                    fa.layers().len(),
                    fa.layers()
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    };
    for (f, which) in [(&fa, "A"), (&fb, "B")] {
        if f.layer(&name).is_none() {
            bail!(
                "layer '{name}' is not in {} (net {which})",
                f.path().display()
            );
        }
    }
    let (stats, _) = stream_layer(&fa, &fb, (&name, &name), layout, None, None, None, progress)
        .with_context(|| format!("reading layer '{name}'"))?;
    Ok((name, stats.full.finish()))
}
