//! Result records of a comparison: the JSON report and the human-readable table.

use serde::Serialize;
use spanmatch_core::measures::{Measure, Measures};
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
    /// The measures requested with `--measures` (`"match"` always first).
    pub measures: Vec<&'static str>,
    /// `"channels"` or `"flatten"` (`--view`).
    pub view: &'static str,
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
    /// Basis-invariant measures (`--measures`, `--view flatten`), when any was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measures: Option<LayerMeasures>,
    /// Simple matches (`--simple EPS`), when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleReport>,
    /// The match of the mean-centred activations (`--center`), when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centered: Option<CenteredReport>,
    /// The neuron-basis null (`--null rotate`): mms of net A against net B's layer rotated by
    /// random orthogonal matrices, at each ε, when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null: Option<spanmatch_core::controls::RotationNull>,
    /// Bootstrap intervals over chunks of the inputs (`--bootstrap`), when requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<IntervalsReport>,
}

/// Percentile bootstrap intervals of a layer pair over chunks of the inputs.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalsReport {
    /// Confidence level (0.95).
    pub level: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Chunks of consecutive inputs.
    pub chunks: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Interval of mms at each ε (same order as `eps`).
    pub mms: Vec<IntervalReport>,
    /// Interval of linear CKA, when CKA is defined on the resamples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear: Option<IntervalReport>,
}

/// One interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IntervalReport {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// The match of the mean-centred activations (each neuron's mean over the rows removed).
#[derive(Debug, Clone, Serialize)]
pub struct CenteredReport {
    /// Per neuron of A, its threshold in the centred problem.
    pub thresholds_a: Vec<Option<f64>>,
    /// Same for B.
    pub thresholds_b: Vec<Option<f64>>,
    /// The smallest ε at which every live neuron matches, centred.
    pub max_epsilon: f64,
    /// The maximum match at each ε, centred.
    pub matches: Vec<MaxMatch>,
}

/// The measures of one layer pair: those of the channel view (features = channels, rows =
/// (image, position) pairs, the same statistics as the match) and, with `--view flatten`, linear
/// CKA in the per-image flattened view (features = C·H·W values of an image, rows = images).
/// `None` fields (not requested or undefined, see `notes`) are left out of the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerMeasures {
    /// The channel-view measures (`cka_linear`, `cca_mean_rho`, `procrustes`, ..., `notes`).
    #[serde(flatten)]
    pub channels: Measures,
    /// Biased linear CKA of the flattened view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear_flatten: Option<f64>,
    /// Debiased linear CKA of the flattened view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear_debiased_flatten: Option<f64>,
}

/// The simple matches of one layer pair at one ε.
#[derive(Debug, Clone, Serialize)]
pub struct SimpleReport {
    /// ε of the matches.
    pub eps: f64,
    /// ε = 0 and each side's live neurons are linearly independent: the list is complete and
    /// each match is the unique smallest match containing its witnesses.
    pub exact_case: bool,
    /// False when interrupted (Ctrl-C): the list holds what was found so far.
    pub complete: bool,
    /// Orders tried: 1 (deterministic) + `--orders`.
    pub orders: usize,
    /// Seed of the random orders.
    pub seed: u64,
    /// Distinct simple matches, largest first.
    pub simple_matches: Vec<SimpleMatchReport>,
}

impl SimpleReport {
    /// Size |X'| + |Y'| of the largest simple match (0 when there is none).
    pub fn largest(&self) -> usize {
        self.simple_matches
            .iter()
            .map(|m| m.a.len() + m.b.len())
            .max()
            .unwrap_or(0)
    }
}

/// One simple match: its neurons in each net and how many (neuron, order) runs found it.
#[derive(Debug, Clone, Serialize)]
pub struct SimpleMatchReport {
    /// Neurons of net A, increasing.
    pub a: Vec<usize>,
    /// Neurons of net B, increasing.
    pub b: Vec<usize>,
    /// Number of (neuron, order) runs that produced this match.
    pub count: usize,
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

/// Both tables of `spanmatch compare` (the match table, then the measures table when there are
/// measures), as printed.
pub fn tables(report: &Report) -> String {
    let mut s = table(report);
    for more in [measures_table(report), controls_table(report)] {
        if !more.is_empty() {
            s.push('\n');
            s.push_str(&more);
        }
    }
    s
}

/// The controls table, when `--bootstrap`, `--center` or `--null` was asked: per layer and ε,
/// the paper's mms, its bootstrap interval, the centred mms and the rotation null's mean
/// [min, max]. Empty otherwise.
pub fn controls_table(report: &Report) -> String {
    let center = report.layers.iter().any(|l| l.centered.is_some());
    let null = report.layers.iter().any(|l| l.null.is_some());
    let intervals = report.layers.iter().any(|l| l.intervals.is_some());
    if !center && !null && !intervals {
        return String::new();
    }
    let mut header = vec!["layer".to_string(), "ε".to_string(), "mms".to_string()];
    if intervals {
        header.push("95% interval".to_string());
    }
    if center {
        header.push("centred".to_string());
    }
    if null {
        header.push("rotation null mean [min, max]".to_string());
        header.push("p".to_string());
    }
    let mut rows = Vec::new();
    for l in &report.layers {
        for (k, m) in l.matches.iter().enumerate() {
            let mut r = vec![
                l.name.clone(),
                format!("{}", m.eps),
                format!("{:.3}", m.mms),
            ];
            if center {
                r.push(match &l.centered {
                    Some(c) => format!("{:.3}", c.matches[k].mms),
                    None => "—".to_string(),
                });
            }
            if null {
                match l.null.as_ref().and_then(|n| n.per_eps.get(k)) {
                    Some(n) => {
                        r.push(format!("{:.3} [{:.3}, {:.3}]", n.mean, n.min, n.max));
                        r.push(format!("{:.3}", n.p_value));
                    }
                    None => {
                        r.push("—".to_string());
                        r.push("—".to_string());
                    }
                }
            }
            rows.push(r);
        }
    }
    let mut s = render(&header, &rows);
    if null {
        s.push_str(
            "(rotation null: net B's layer rotated by Haar-random orthogonal matrices, which keeps its span \
             and destroys its neuron basis; mms - null mean is the part of the match carried by the neurons themselves)\n",
        );
    }
    s
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

/// One column of the measures table: header and value of a layer.
type Column = (&'static str, fn(&LayerMeasures) -> Option<f64>);

/// The columns shown for each measure.
fn measure_columns(m: Measure) -> Vec<Column> {
    match m {
        Measure::Cka => vec![
            ("CKA", |x| x.channels.cka_linear),
            ("CKA debiased", |x| x.channels.cka_linear_debiased),
        ],
        Measure::Cca => vec![
            ("CCA mean ρ", |x| x.channels.cca_mean_rho),
            ("R²CCA", |x| x.channels.cca_r2),
        ],
        Measure::Svcca => vec![("SVCCA", |x| x.channels.svcca)],
        Measure::Pwcca => vec![("PWCCA", |x| x.channels.pwcca)],
        Measure::Procrustes => vec![("Procrustes dist.", |x| x.channels.procrustes)],
        Measure::OneToOne => vec![("1:1 corr.", |x| x.channels.one_to_one)],
        Measure::SoftMatch => vec![("soft match dist.", |x| x.channels.soft_match)],
        Measure::PermProcrustes => vec![("perm. Procrustes", |x| x.channels.perm_procrustes)],
        Measure::Predictivity => vec![
            ("R² A→B", |x| x.channels.predictivity_ab),
            ("R² B→A", |x| x.channels.predictivity_ba),
        ],
        Measure::Shape => vec![("shape dist.", |x| x.channels.shape)],
    }
}

/// The second table, when measures or simple matches were computed: one row per layer, one
/// column per measure, then the simple matches (count and largest size). Empty otherwise.
pub fn measures_table(report: &Report) -> String {
    let mut columns: Vec<Column> = Measure::ALL
        .into_iter()
        .filter(|m| report.measures.contains(&m.name()))
        .flat_map(measure_columns)
        .collect();
    if report.view == "flatten" {
        columns.push(("CKA flattened", |x| x.cka_linear_flatten));
        columns.push(("CKA flat. debiased", |x| x.cka_linear_debiased_flatten));
    }
    let simple_eps = report
        .layers
        .iter()
        .find_map(|l| l.simple.as_ref().map(|s| s.eps));
    if columns.is_empty() && simple_eps.is_none() {
        return String::new();
    }
    let mut header = vec!["layer".to_string()];
    header.extend(columns.iter().map(|(h, _)| h.to_string()));
    if let Some(e) = simple_eps {
        header.push(format!("simple@{e}"));
        header.push("largest".to_string());
    }
    let rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            let mut r = vec![match &l.name_b {
                Some(b) => format!("{} ~ {b}", l.name),
                None => l.name.clone(),
            }];
            for (_, get) in &columns {
                r.push(match l.measures.as_ref().and_then(get) {
                    Some(v) => format!("{v:.3}"),
                    None => "—".to_string(),
                });
            }
            if simple_eps.is_some() {
                match &l.simple {
                    Some(s) => {
                        r.push(format!(
                            "{}{}",
                            s.simple_matches.len(),
                            if s.complete { "" } else { " (partial)" }
                        ));
                        r.push(s.largest().to_string());
                    }
                    None => r.extend(["—".to_string(), "—".to_string()]),
                }
            }
            r
        })
        .collect();
    let mut out = render(&header, &rows);
    if !columns.is_empty() {
        let has = |h: &str| columns.iter().any(|(c, _)| c.starts_with(h));
        let mut similar: Vec<&str> = ["CKA", "CCA", "SVCCA", "PWCCA"]
            .into_iter()
            .filter(|h| has(h))
            .collect();
        if has("R²CCA") && !similar.contains(&"CCA") {
            similar.push("CCA");
        }
        let mut parts = Vec::new();
        if !similar.is_empty() {
            parts.push(format!(
                "{}: {} in [0, 1], 1 = same representation up to the measure's invariances",
                similar.join(", "),
                if similar.len() == 1 {
                    "similarity"
                } else {
                    "similarities"
                }
            ));
        }
        if has("Procrustes") {
            parts.push("Procrustes: distance in [0, √2], 0 = same up to rotation and scale".into());
        }
        if has("CKA flat") {
            parts.push("flattened: features = all values of an image, rows = images".into());
        }
        parts.push("—: undefined, see \"notes\" in the JSON".into());
        let _ = writeln!(out, "({})", parts.join("; "));
    }
    if simple_eps.is_some() {
        out.push_str(
            "(simple: number of distinct simple matches; largest: |X'| + |Y'| of the largest)\n",
        );
    }
    out
}
