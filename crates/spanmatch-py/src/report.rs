//! The report of any results file from Python (`Result.report`, `Result.plot(kind="neurons")`,
//! `Result._repr_html_`): the one renderer, `spanmatch-report`, and the engine's choice of the
//! neurons shown (`spanmatch_engine::views`). Python reads the inputs (only it can index a user's
//! dataset) and passes their pixels or token contexts; Rust encodes the thumbnails and writes
//! the page.

use std::collections::HashMap;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use spanmatch_engine::results::{self, NeuronViews, Results, TokenContext};
use spanmatch_engine::views::{self, ViewOptions};
use spanmatch_report::RenderOptions;

fn value_err(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(format!("{e:#}"))
}

fn parse(results: &str) -> PyResult<Results> {
    results::parse_results(results).map_err(value_err)
}

/// The neurons a report shows for the primary pair of `results` (JSON of any accepted version),
/// from its records' `top_inputs`: the engine's selection (largest simple matches, closest
/// one-to-one matches, an unmatched contrast). Returns the views as JSON (schema
/// `neuron_views`, inputs listed by index and position without content), each group with an
/// added `shared` object `{a, b, both}`: the distinct inputs in each net's strips and in both.
/// `seed` (default: the results' `options.seed`) draws the unmatched neurons.
#[pyfunction]
#[pyo3(signature = (results, seed = None, largest = 5, one_to_one = 5, per_side = 4))]
pub fn neuron_view_selection(
    py: Python<'_>,
    results: &str,
    seed: Option<u64>,
    largest: usize,
    one_to_one: usize,
    per_side: usize,
) -> PyResult<String> {
    py.detach(|| {
        let r = parse(results)?;
        let pair = r.primary().ok_or_else(|| {
            PyValueError::new_err("these results have no comparison of two nets (kind 'pair')")
        })?;
        let opts = ViewOptions {
            largest,
            one_to_one,
            per_side,
            seed: seed.unwrap_or(r.options.seed),
        };
        let v = views::views_from_records(pair, &opts).map_err(value_err)?;
        let mut value =
            serde_json::to_value(&v).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let groups = v.layers.iter().flat_map(|l| &l.groups);
        let slots = value["layers"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .flat_map(|l| l["groups"].as_array_mut().into_iter().flatten());
        for (slot, g) in slots.zip(groups) {
            let shared = views::shared_inputs(g);
            slot["shared"] =
                serde_json::to_value(shared).map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        serde_json::to_string(&value).map_err(|e| PyValueError::new_err(e.to_string()))
    })
}

/// One image shown in the views: `(index, label, pixels, (channels, height, width))`, pixels
/// `u8` in CHW order (1 or 3 channels).
type ImageArg<'py> = (
    usize,
    Option<usize>,
    Bound<'py, PyBytes>,
    (usize, usize, usize),
);
/// One token shown: `(index, position, tokens before, the token, tokens after)`.
type TokenArg = (usize, usize, Vec<String>, String, Vec<String>);

/// Writes the report of `results` (JSON of any accepted version) into `out_dir`: report.html,
/// results.json and the PNG figures (`png`), through the one renderer of `spanmatch reproduce`.
/// `views` (JSON from [`neuron_view_selection`], or None to keep the results' own) is filled
/// with the `images` and `tokens` given for its inputs (every input it lists must be given) and
/// the `class_names`, and stored in the results written. Returns the paths written.
#[pyfunction]
#[pyo3(signature = (results, out_dir, views = None, images = Vec::new(), tokens = Vec::new(), class_names = Vec::new(), png = true))]
#[allow(clippy::too_many_arguments)]
pub fn render_report(
    py: Python<'_>,
    results: &str,
    out_dir: PathBuf,
    views: Option<&str>,
    images: Vec<ImageArg<'_>>,
    tokens: Vec<TokenArg>,
    class_names: Vec<String>,
    png: bool,
) -> PyResult<Vec<PathBuf>> {
    let mut r = parse(results)?;
    if let Some(text) = views {
        let mut v: NeuronViews =
            serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("views: {e}")))?;
        let mut slot: HashMap<(usize, Option<usize>), usize> = v
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| (input.key(), i))
            .collect();
        let mut shape = None;
        for (index, label, bytes, (c, h, w)) in &images {
            let Some(i) = slot.remove(&(*index, None)) else {
                return Err(PyValueError::new_err(format!(
                    "images: input {index} is not shown in the views, or given twice"
                )));
            };
            let input = &mut v.inputs[i];
            input.label = *label;
            spanmatch_report::neurons::set_image(input, bytes.as_bytes(), [*c, *h, *w])
                .map_err(value_err)?;
            shape.get_or_insert([*c, *h, *w]);
        }
        for (index, position, before, token, after) in tokens {
            let Some(i) = slot.remove(&(index, Some(position))) else {
                return Err(PyValueError::new_err(format!(
                    "tokens: input {index} at position {position} is not shown in the views, or given twice"
                )));
            };
            v.inputs[i].context = Some(TokenContext {
                before,
                token,
                after,
            });
        }
        if let Some((index, position)) = slot.keys().min() {
            return Err(PyValueError::new_err(format!(
                "views: no image or token given for input {index}{}",
                position.map_or(String::new(), |p| format!(" at position {p}"))
            )));
        }
        v.image_shape = shape.unwrap_or([0, 0, 0]);
        v.class_names = class_names;
        r.neuron_views = Some(v);
    }
    let options = RenderOptions {
        png,
        ..RenderOptions::default()
    };
    py.detach(|| spanmatch_report::write_report(&r, &out_dir, options))
        .map_err(value_err)
}

/// The mms-by-layer figure of `results` as an inline SVG element at most `max_width` pixels
/// wide (the notebook view).
#[pyfunction]
#[pyo3(signature = (results, max_width = 560.0))]
pub fn mms_figure_svg(py: Python<'_>, results: &str, max_width: f64) -> PyResult<String> {
    py.detach(|| {
        let r = parse(results)?;
        Ok(spanmatch_report::mms_figure_svg(&r, max_width))
    })
}
