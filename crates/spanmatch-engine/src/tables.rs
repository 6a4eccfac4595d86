//! The text tables of a comparison, as `spanmatch compare` prints them and Python's
//! `Result.table()` / `repr` shows them: the primary comparison of a [`Results`].

use crate::results::{LayerMeasures, LayerRecord, Results};
use spanmatch_core::measures::Measure;
use std::fmt::Write as _;

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

/// The layer records of the primary comparison (none when there is none).
fn records(results: &Results) -> &[LayerRecord] {
    results.primary().map_or(&[], |c| &c.layers[..])
}

/// Every table of `spanmatch compare`, as printed: the match table, then the measures table
/// when there are measures or simple matches, then the controls table at the main ε.
pub fn tables(results: &Results) -> String {
    let mut s = table(results);
    for more in [measures_table(results), controls_table(results)] {
        if !more.is_empty() {
            s.push('\n');
            s.push_str(&more);
        }
    }
    s
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

/// The controls table, at the main ε of the options: per layer the paper's mms with its
/// bootstrap interval, the centred mms, the untrained pair's mms, the rotation null's mean and
/// largest draw, and the verdict; only the columns whose controls were computed. Empty when no
/// control was computed.
pub fn controls_table(results: &Results) -> String {
    let layers = records(results);
    let Some(k) = results.options.main_index() else {
        return String::new();
    };
    let any = |f: fn(&LayerRecord) -> bool| layers.iter().any(f);
    let intervals = any(|l| l.intervals.is_some());
    let center = any(|l| l.centered.is_some());
    let untrained = any(|l| l.untrained.is_some());
    let null = any(|l| l.null.is_some());
    let verdict = untrained && null;
    if !intervals && !center && !untrained && !null {
        return String::new();
    }
    let eps = results.eps.get(k).copied().unwrap_or(f64::NAN);
    let mut header = vec![format!("at ε = {eps}"), "mms".to_string()];
    if intervals {
        header.push("95% interval".to_string());
    }
    if center {
        header.push("centred".to_string());
    }
    if untrained {
        header.push("untrained".to_string());
        header.push("trained−untr.".to_string());
    }
    if null {
        header.push("rotation null mean/max".to_string());
    }
    if verdict {
        header.push("verdict".to_string());
    }
    let dash = || "—".to_string();
    let mut rows = Vec::new();
    for l in layers {
        let mut r = vec![l.label(), l.mms_at(k).map_or_else(dash, f3)];
        if intervals {
            r.push(
                l.intervals
                    .as_ref()
                    .and_then(|iv| iv.mms.get(k).copied().flatten())
                    .map_or_else(dash, |b| format!("[{}, {}]", f3(b.lo), f3(b.hi))),
            );
        }
        if center {
            r.push(
                l.centered
                    .as_ref()
                    .and_then(|c| c.matches.get(k))
                    .map_or_else(dash, |m| f3(m.mms)),
            );
        }
        if untrained {
            match &l.untrained {
                Some(u) => {
                    r.push(u.mms.get(k).map_or_else(dash, |v| f3(*v)));
                    r.push(
                        u.trained_minus_untrained
                            .get(k)
                            .map_or_else(dash, |d| format!("{d:+.3}")),
                    );
                }
                None => r.extend([dash(), dash()]),
            }
        }
        if null {
            r.push(
                l.null
                    .as_ref()
                    .and_then(|n| n.per_eps.get(k))
                    .map_or_else(dash, |n| format!("{} / {}", f3(n.mean), f3(n.max))),
            );
        }
        if verdict {
            r.push(l.verdict.map_or_else(dash, |v| v.word().to_string()));
        }
        rows.push(r);
    }
    let mut s = render(&header, &rows);
    let mut notes = Vec::new();
    if intervals {
        notes.push("95% interval: bootstrap over chunks of consecutive inputs");
    }
    if center {
        notes.push("centred: the match of the mean-centred activations");
    }
    if null {
        notes.push(
            "rotation null: net B's layer in random neuron bases (same span); mms above its max \
             lives in the neurons themselves",
        );
    }
    if verdict {
        notes.push(
            "verdict: learned / given (≈ untrained) / subspace-only (≤ rotation null) / none; \
             rule in docs/controls.md",
        );
    } else if untrained || null {
        notes.push("verdict: needs both the untrained baseline and the rotation null");
    }
    for n in notes {
        let _ = writeln!(s, "({n})");
    }
    s
}

/// The per-layer match table: layer, neurons A/B, rows, dead A/B, mms at each ε, max ε.
pub fn table(results: &Results) -> String {
    let mut header: Vec<String> = ["layer", "neurons A/B", "rows", "dead A/B"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(results.eps.iter().map(|e| format!("mms@{e}")));
    header.push("max ε".to_string());
    let layers = records(results);
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            let mut r = vec![
                l.label(),
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
    if layers.iter().any(|l| l.sampled.is_some()) {
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
pub fn measures_table(results: &Results) -> String {
    let layers = records(results);
    let mut columns: Vec<Column> = Measure::ALL
        .into_iter()
        .filter(|m| results.options.measures.contains(m))
        .flat_map(measure_columns)
        .collect();
    let flatten = layers.iter().any(|l| {
        l.measures.as_ref().is_some_and(|m| {
            m.cka_linear_flatten.is_some() || m.cka_linear_debiased_flatten.is_some()
        })
    }) || results.settings.get("view").and_then(|v| v.as_str()) == Some("flatten");
    if flatten {
        columns.push(("CKA flattened", |x| x.cka_linear_flatten));
        columns.push(("CKA flat. debiased", |x| x.cka_linear_debiased_flatten));
    }
    let simple_eps = layers.iter().find_map(|l| l.simple.as_ref().map(|s| s.eps));
    if columns.is_empty() && simple_eps.is_none() {
        return String::new();
    }
    let mut header = vec!["layer".to_string()];
    header.extend(columns.iter().map(|(h, _)| h.to_string()));
    if let Some(e) = simple_eps {
        header.push(format!("simple@{e}"));
        header.push("largest".to_string());
    }
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            let mut r = vec![l.label()];
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
                            s.count,
                            if s.complete { "" } else { " (partial)" }
                        ));
                        r.push(s.largest.to_string());
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
