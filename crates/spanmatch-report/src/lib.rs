//! The report of a results file (the engine's one schema, `spanmatch_engine::results`, of any
//! front: `reproduce`, `compare`, Python): a self-contained `report.html` (inline SVG figures
//! and CSS, no scripts, no external resources) plus PNG exports of the figures.
//!
//! ```no_run
//! let results = spanmatch_report::example_results();
//! let written = spanmatch_report::render(&results, std::path::Path::new("out"))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;

pub mod chart;
mod example;
pub mod figures;
mod html;
pub mod neurons;
pub mod raster;
/// The results schema, defined by the engine (the one library API) and re-exported here.
pub use spanmatch_engine::results;
pub mod scene;
pub mod stats;

pub use example::example_results;
pub use html::accuracy_label;
pub use results::{
    read_results, write_results, Comparison, ComparisonKind, LayerRecord, LayerSummary, NetSummary,
    Results, SimpleRecord,
};

/// File name of the HTML report inside the output directory.
pub const REPORT_HTML: &str = "report.html";
/// File name of the mms-versus-layer figure.
pub const MMS_PNG: &str = "mms_by_layer.png";
/// File name of the ε-profile figure.
pub const PROFILES_PNG: &str = "profiles.png";
/// File name of the simple-match size figure (only when simple matches were computed).
pub const SIMPLE_PNG: &str = "simple_sizes.png";

/// Options of [`render_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Write PNG exports of the figures (skipped with a warning when no font is found).
    pub png: bool,
    /// Device pixels per CSS pixel in the PNGs.
    pub png_scale: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            png: true,
            png_scale: 2,
        }
    }
}

/// The figures in display order: (scene, HTML caption, PNG file name).
fn figures(stats: &stats::Stats) -> Vec<(scene::Scene, String, &'static str)> {
    let mut v = vec![
        (
            figures::mms_by_layer(stats),
            "<b>Figure 1.</b> Maximum match similarity (mms) of each layer for two nets trained from \
             different seeds, one line per tolerance ε (mean over seed pairs; shaded band: \
             min–max over pairs; lighter band, when computed: the 95% bootstrap interval of mms over chunks of the test images, from the lowest to the highest end over the seed pairs). Dashed lines of the same colour: the null, two nets \
             compared with the images of one side shuffled, i.e. what chance gives at this \
             many rows and neurons. Dotted lines with hollow markers (when computed): the \
             untrained baseline, the same seeds' nets at initialisation compared the same way. \
             Black: linear CKA, a basis-invariant similarity, on the same activations."
                .to_string(),
            MMS_PNG,
        ),
        (
            figures::profiles(stats),
            "<b>Figure 2.</b> Match profile: the fraction of neurons in the maximum match as a \
             function of ε, for each layer (colour by depth, dark = input side). A curve that \
             rises early means the two nets span nearly the same subspace in that layer."
                .to_string(),
            PROFILES_PNG,
        ),
    ];
    if let Some(s) = figures::simple_sizes(stats) {
        v.push((
            s,
            "<b>Figure 3.</b> Sizes of the simple matches (matches that are not unions of smaller \
             ones) per layer. Size 2 is a single neuron of one net matched with a single neuron of \
             the other."
                .to_string(),
            SIMPLE_PNG,
        ));
    }
    v
}

/// Writes `report.html` and (when a font is found) the PNG figures into `out_dir`, creating it;
/// returns the paths written, report.html first.
pub fn render(results: &Results, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    render_with(results, out_dir, RenderOptions::default())
}

/// [`render`] with options.
pub fn render_with(
    results: &Results,
    out_dir: &Path,
    options: RenderOptions,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create output directory {}", out_dir.display()))?;
    let stats = stats::compute(results);
    let figs = figures(&stats);
    let html_figs: Vec<(scene::Scene, String)> = figs
        .iter()
        .map(|(s, c, _)| (s.clone(), c.clone()))
        .collect();
    let page = html::page(results, &stats, &html_figs);
    let html_path = out_dir.join(REPORT_HTML);
    std::fs::write(&html_path, page)
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let mut written = vec![html_path];
    if options.png {
        match raster::Fonts::discover() {
            Some(fonts) => {
                for (scene, _, name) in &figs {
                    let path = out_dir.join(name);
                    let png = raster::to_png(scene, &fonts, options.png_scale.max(1) as f32)
                        .with_context(|| format!("cannot render {}", path.display()))?;
                    std::fs::write(&path, png)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    written.push(path);
                }
            }
            None => eprintln!(
                "warning: no TrueType font found (set SPANMATCH_FONT=/path/to/font.ttf); \
                 skipping PNG figures, report.html is complete"
            ),
        }
    }
    Ok(written)
}

/// `spanmatch report`: reads `results` (any accepted schema version, see
/// `spanmatch_engine::results::parse_results`) and renders the report into `out` (default: the
/// directory of `results`); returns the files written.
pub fn rerender(results: &Path, out: Option<&Path>, png: bool) -> anyhow::Result<Vec<PathBuf>> {
    let parsed = read_results(results)?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => match results.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let options = RenderOptions {
        png,
        ..RenderOptions::default()
    };
    render_with(&parsed, &out, options)
}
