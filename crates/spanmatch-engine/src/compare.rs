//! Comparing two nets layer by layer from activation files: one streamed pass per layer pair
//! (and per layer pair of the untrained baseline files, when given), then the one analysis of
//! [`crate::analysis`]; the result is a [`Results`] of front `cli-compare` (`spanmatch compare
//! --json`, `--report`, and Python's `compare` on paths).

use crate::analysis::{analyse_pair, BaselineInput, LayerLabel, PairInput};
use crate::options::Options;
use crate::progress::Progress;
use crate::results::{
    Comparison, ComparisonKind, Front, LayerMeasures, LayerRecord, Results, SampledRecord,
};
use crate::stream::{self, PairStats, Sampling, StreamOptions};
use crate::tables::mean_std;
use anyhow::{bail, Context, Result};
use faer::MatRef;
use spanmatch_core::controls::{self, ChunkedStats};
use spanmatch_core::measures::FlattenedKernels;
use spanmatch_core::{GramAccumulator, JointStats, MatchProblem};
use spanmatch_io::{ActivationFile, Format, LayerReader, Layout};
use std::path::{Path, PathBuf};

/// Options of a file comparison ([`compare_files`]).
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// What to compute per layer: the one options object.
    pub options: Options,
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
    /// Activation files of the untrained baseline nets (A0, B0): the same layers on the same
    /// inputs, compared like A and B; each layer record then carries `untrained`.
    pub baseline: Option<(PathBuf, PathBuf)>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            options: Options::default(),
            layers: Vec::new(),
            layout: Layout::Nchw,
            block_rows: None,
            sampling: None,
            flatten: false,
            flatten_images: None,
            baseline: None,
        }
    }
}

/// `"nchw"` or `"nhwc"`.
pub fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

/// The settings of a file comparison, for the results' `settings`.
fn settings(a: &Path, b: &Path, options: &CompareOptions) -> serde_json::Value {
    serde_json::json!({
        "file_a": a.display().to_string(),
        "file_b": b.display().to_string(),
        "layout": layout_name(options.layout),
        "view": if options.flatten { "flatten" } else { "channels" },
        "layers": options.layers,
        "block_rows": options.block_rows,
        "sample_columns": options.sampling.map(|s| s.columns),
        "repeats": options.sampling.map(|s| s.repeats),
        "baseline": options.baseline.as_ref().map(|(a0, b0)| {
            [a0.display().to_string(), b0.display().to_string()]
        }),
    })
}

/// Compares every requested layer of two activation files: one streamed pass per layer pair,
/// then [`analyse_pair`]. The work of `spanmatch compare` and of Python's `compare` on paths.
pub fn compare_files(
    a: &Path,
    b: &Path,
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<Results> {
    options.options.validate()?;
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
    let fa = ActivationFile::open(a).context("opening net A's activations")?;
    let fb = ActivationFile::open(b).context("opening net B's activations")?;
    let base = match &options.baseline {
        None => None,
        Some((a0, b0)) => Some((
            ActivationFile::open(a0)
                .context("opening the untrained net A's activations (--baseline)")?,
            ActivationFile::open(b0)
                .context("opening the untrained net B's activations (--baseline)")?,
        )),
    };
    let pairs = match single_npy_pair(&options.layers, &fa, &fb) {
        Some(pair) => vec![pair],
        None => select_layers(&options.layers, &fa, &fb, options.layout, progress)?
            .into_iter()
            .map(|n| (n.clone(), n))
            .collect(),
    };
    if let Some((fa0, fb0)) = &base {
        for (name_a, name_b) in &pairs {
            for (f, name, which) in [(fa0, name_a, "A"), (fb0, name_b, "B")] {
                let name = match (f.format(), f.layers()) {
                    (Format::Npy, [only]) => &only.name,
                    _ => name,
                };
                if f.layer(name).is_none() {
                    bail!(
                        "layer '{name}' is not in {} (the untrained net {which}'s activations, --baseline)",
                        f.path().display()
                    );
                }
            }
        }
    }
    let mut results = Results::new(
        Front::CliCompare,
        &a.display().to_string(),
        &b.display().to_string(),
        &options.options,
    );
    results.settings = settings(a, b, options);
    let mut records = Vec::new();
    for (name_a, name_b) in &pairs {
        let record = compare_layer(&fa, &fb, base.as_ref(), (name_a, name_b), options, progress)
            .with_context(|| format!("comparing layer '{name_a}'"))?;
        records.push(record);
    }
    results.comparisons = vec![Comparison::new(ComparisonKind::Pair, records)];
    results.fill_layer_summaries();
    Ok(results)
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

/// The statistics of one streamed layer pair: all inputs, and per chunk when chunked.
fn finished(
    full: GramAccumulator,
    chunks: Vec<GramAccumulator>,
    label: &str,
) -> Result<(JointStats, Option<ChunkedStats>)> {
    // Keep one copy of the (n1 + n2)² statistics at a time: the accumulator goes once finished.
    if chunks.is_empty() {
        let joint = full.finish();
        drop(full);
        return Ok((joint, None));
    }
    drop(full);
    let parts = chunks.iter().map(|c| c.finish()).collect();
    drop(chunks);
    let chunked = ChunkedStats::new(parts).map_err(|e| anyhow::anyhow!("layer '{label}': {e}"))?;
    Ok((chunked.merged(), Some(chunked)))
}

/// Compares one layer pair of two files (and of the baseline files, when given).
fn compare_layer(
    fa: &ActivationFile,
    fb: &ActivationFile,
    base: Option<&(ActivationFile, ActivationFile)>,
    names: (&str, &str),
    options: &CompareOptions,
    progress: &mut dyn Progress,
) -> Result<LayerRecord> {
    let chunks = options.options.bootstrap.map(|_| options.options.chunks);
    let (stats, label) = stream_layer(
        fa,
        fb,
        names,
        options.layout,
        options.block_rows,
        options.sampling,
        chunks,
        progress,
    )?;
    let PairStats {
        full,
        sampled,
        chunks: parts,
    } = stats;
    let (joint, chunked) = finished(full, parts, names.0)?;
    let baseline = match base {
        None => None,
        Some((fa0, fb0)) => {
            let only = |f: &ActivationFile, name: &str| -> String {
                match (f.format(), f.layers()) {
                    (Format::Npy, [l]) => l.name.clone(),
                    _ => name.to_string(),
                }
            };
            let (n0a, n0b) = (only(fa0, names.0), only(fb0, names.1));
            let (s0, l0) = stream_layer(
                fa0,
                fb0,
                (&n0a, &n0b),
                options.layout,
                options.block_rows,
                None,
                chunks,
                progress,
            )
            .context("the untrained baseline (--baseline)")?;
            let (stats, chunks) = finished(s0.full, s0.chunks, names.0)?;
            if stats.n1 != joint.n1 || stats.n2 != joint.n2 || stats.rows != joint.rows {
                bail!(
                    "the baseline files hold shapes {:?} ({}) and {:?} ({}), the compared files \
                     {:?} and {:?}; the baseline must be the same layers on the same inputs",
                    l0.shape_a,
                    fa0.path().display(),
                    l0.shape_b,
                    fb0.path().display(),
                    label.shape_a,
                    label.shape_b
                );
            }
            Some(BaselineInput { stats, chunks })
        }
    };
    let mut record = analyse_pair(
        PairInput {
            label,
            stats: joint,
            chunks: chunked,
            baseline,
        },
        &options.options,
        progress,
    )?;
    if options.flatten {
        let kernels =
            flattened_kernels(fa, fb, names, options, progress).context("flattened view")?;
        let flat = kernels.measures();
        let m = record.measures.get_or_insert_with(LayerMeasures::default);
        m.cka_linear_flatten = flat.cka_linear;
        m.cka_linear_debiased_flatten = flat.cka_linear_debiased;
        m.channels
            .notes
            .extend(flat.notes.into_iter().map(|n| format!("flatten view: {n}")));
    }
    if let Some(s) = options.sampling {
        let eps = &options.options.eps;
        let mut per_eps = vec![Vec::with_capacity(s.repeats); eps.len()];
        for acc in &sampled {
            let p = MatchProblem::new(&acc.finish(), options.options.matching()?)?.profile();
            for (vals, &e) in per_eps.iter_mut().zip(eps) {
                vals.push(p.mms(e)?);
            }
        }
        let (mms_mean, mms_std) = per_eps.iter().map(|v| mean_std(v)).unzip();
        record.sampled = Some(SampledRecord {
            columns: s.columns,
            repeats: s.repeats,
            seed: s.seed,
            mms_mean,
            mms_std,
        });
    }
    Ok(record)
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
