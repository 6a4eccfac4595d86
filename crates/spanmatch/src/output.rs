//! Result records of a comparison: the JSON report and the human-readable table.

use serde::Serialize;
use spanmatch_core::MaxMatch;
use std::fmt::Write as _;

/// The whole JSON report of `spanmatch compare`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of the spanmatch binary that produced the report.
    pub spanmatch_version: String,
    /// Net A's activation file.
    pub file_a: String,
    /// Net B's activation file.
    pub file_b: String,
    /// `"drop"` or `"match"`.
    pub dead_policy: &'static str,
    /// `"nchw"` or `"nhwc"`.
    pub layout: &'static str,
    /// Numerical tolerances in force.
    pub tolerances: Tolerances,
    /// The ε values, in the order of every `matches` list.
    pub eps: Vec<f64>,
    /// One record per compared layer, in net A's file order.
    pub layers: Vec<LayerReport>,
}

/// Tolerances as written in the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerances {
    /// Sines at or below this count as zero.
    pub sine: f64,
    /// Relative norm under which a neuron is dead.
    pub dead_norm: f64,
}

/// Result for one layer pair.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Layer name (net A's, when the two names differ).
    pub name: String,
    /// Net B's layer name, when it differs (two `.npy` files named after their layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_b: Option<String>,
    /// Neurons of net A's layer (dead included).
    pub neurons_a: usize,
    /// Neurons of net B's layer.
    pub neurons_b: usize,
    /// Rows (samples): images, times spatial positions for convolutional layers.
    pub rows: u64,
    /// Array shapes as stored.
    pub shape_a: Vec<u64>,
    /// Array shape of B.
    pub shape_b: Vec<u64>,
    /// Dead (all-zero) neurons of A.
    pub dead_a: Vec<usize>,
    /// Dead neurons of B.
    pub dead_b: Vec<usize>,
    /// Per neuron of A, the smallest ε at which it is in the maximum match (null for dropped dead
    /// neurons).
    pub thresholds_a: Vec<Option<f64>>,
    /// Same for B.
    pub thresholds_b: Vec<Option<f64>>,
    /// The smallest ε at which every live neuron matches.
    pub max_epsilon: f64,
    /// The maximum match at each ε.
    pub matches: Vec<MaxMatch>,
    /// The sampled (reference-code) protocol, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled: Option<SampledReport>,
}

/// Mean and standard deviation of mms over the sampled repeats.
#[derive(Debug, Clone, Serialize)]
pub struct SampledReport {
    /// Rows (coordinates) drawn per repeat.
    pub columns: u64,
    /// Number of repeats.
    pub repeats: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Mean mms per ε (same order as `eps`).
    pub mms_mean: Vec<f64>,
    /// Population standard deviation (ddof = 0, like numpy's default) of mms per ε.
    pub mms_std: Vec<f64>,
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Renders a left-aligned first column and right-aligned others.
fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width = header.iter().map(|h| h.chars().count()).collect::<Vec<_>>();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        for (i, cell) in cells.iter().enumerate().take(cols) {
            let pad = width[i] - cell.chars().count();
            if i == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(header, &mut out);
    let rule: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    line(&rule, &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// The per-layer table: layer, neurons A/B, rows, dead A/B, mms at each ε, max ε.
pub fn table(report: &Report) -> String {
    let mut header: Vec<String> = ["layer", "neurons A/B", "rows", "dead A/B"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(report.eps.iter().map(|e| format!("mms@{e}")));
    header.push("max ε".to_string());
    let rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            let mut r = vec![
                match &l.name_b {
                    Some(b) => format!("{} ~ {b}", l.name),
                    None => l.name.clone(),
                },
                format!("{}/{}", l.neurons_a, l.neurons_b),
                l.rows.to_string(),
                format!("{}/{}", l.dead_a.len(), l.dead_b.len()),
            ];
            for (i, m) in l.matches.iter().enumerate() {
                r.push(match &l.sampled {
                    Some(s) => format!("{:.3} ({:.3}±{:.3})", m.mms, s.mms_mean[i], s.mms_std[i]),
                    None => format!("{:.3}", m.mms),
                });
            }
            r.push(format!("{:.4}", l.max_epsilon));
            r
        })
        .collect();
    let mut out = render(&header, &rows);
    if report.layers.iter().any(|l| l.sampled.is_some()) {
        out.push_str("(in parentheses: sampled protocol, mean ± std over the repeats)\n");
    }
    out
}
