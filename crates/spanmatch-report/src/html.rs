//! The self-contained HTML page: inline CSS and SVG, no scripts, no external resources.

use std::fmt::Write as _;

use crate::figures::eps_label;
use crate::results::Results;
use crate::scene::{escape, Scene};
use crate::stats::{Stats, Summary};

const CSS: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #f6f6f4; color: #222; font: 14px/1.45 "DejaVu Sans", Verdana, Helvetica, Arial, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin: 0 0 12px; }
.glance { background: #f3f7fb; border-left: 4px solid #0072b2; padding: 10px 16px; margin: 16px 0; }
.glance ul { margin: 4px 0; padding-left: 20px; }
.ok { color: #007a58; font-weight: bold; }
.bad { color: #b8400a; font-weight: bold; }
figure { margin: 18px 0 28px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #444; font-size: 13px; max-width: 1000px; margin-top: 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
th { background: #f0f0ee; font-weight: 600; text-align: center; }
td { text-align: right; }
td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafaf8; }
tr.mean td { font-weight: 600; border-top: 2px solid #ccc; }
.sd { color: #777; font-size: 10.5px; }
.null { color: #666; }
.kv td:first-child { text-align: left; color: #555; }
.kv td:last-child { text-align: left; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: pre-wrap; }
footer { margin-top: 36px; color: #777; font-size: 12px; }
"#;

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

/// A signed difference, mean ± s.d. when there are several.
fn diff_sd(s: Option<Summary>) -> String {
    match s {
        None => "—".to_string(),
        Some(s) if s.n > 1 => format!("{:+.3}<span class=\"sd\"> ± {}</span>", s.mean, f3(s.std)),
        Some(s) => format!("{:+.3}", s.mean),
    }
}

/// ` [lo, hi]` of an interval, or nothing.
fn interval(b: Option<(f64, f64)>) -> String {
    b.map_or(String::new(), |(lo, hi)| {
        format!("<span class=\"sd\"> [{}, {}]</span>", f3(lo), f3(hi))
    })
}

/// One layer of the "At a glance" box: mms at ε with its interval, against the untrained
/// baseline and the rotation null. None when the layer has no trained-pair mms there.
fn glance_line(l: &crate::stats::LayerStats, i: usize, eps: f64) -> Option<String> {
    let m = l.mms.get(i).copied().flatten()?;
    let mut line = format!("<b>{}</b>: mms {}", escape(&l.name), f3(m.mean));
    if let Some((lo, hi)) = l.mms_interval.get(i).copied().flatten() {
        let _ = write!(line, " [{}, {}]", f3(lo), f3(hi));
    }
    let _ = write!(line, " at ε={}", eps_label(eps));
    let interval = l.mms_interval.get(i).copied().flatten();
    // Above a baseline: the whole interval above it when there is one, else the mean.
    let cmp = |base: f64| -> &'static str {
        let lo = interval.map_or(m.mean, |b| b.0);
        let hi = interval.map_or(m.mean, |b| b.1);
        if lo > base {
            "above"
        } else if hi < base {
            "below"
        } else {
            "not clearly above"
        }
    };
    let mut parts = Vec::new();
    if let Some(u) = l.untrained.get(i).copied().flatten() {
        parts.push(format!("{} untrained ({})", cmp(u.mean), f3(u.mean)));
    }
    if let Some(r) = l.rotation_null.get(i).copied().flatten() {
        parts.push(format!(
            "{} the rotation null ({})",
            cmp(r.mean),
            f3(r.mean)
        ));
    }
    if interval.is_none() && parts.is_empty() && l.verdict.is_none() {
        return None;
    }
    if !parts.is_empty() {
        let _ = write!(line, ", {}", parts.join(" and "));
    }
    if let Some(v) = &l.verdict {
        let _ = write!(line, " — verdict: <b>{}</b>", escape(v));
    }
    Some(line)
}

fn mean_sd(s: Option<Summary>) -> String {
    match s {
        None => "—".to_string(),
        Some(s) if s.n > 1 => format!("{}<span class=\"sd\"> ± {}</span>", f3(s.mean), f3(s.std)),
        Some(s) => f3(s.mean),
    }
}

/// Accuracy as shown in the report: a percentage with two decimals.
pub fn accuracy_label(acc: f64) -> String {
    format!("{:.2}%", acc * 100.0)
}

fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "—".to_string();
    }
    let t = s.round() as u64;
    format!("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
}

fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Flattens nested objects into dotted keys; arrays and scalars become values.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((
            if prefix.is_empty() {
                "value".to_string()
            } else {
                prefix.to_string()
            },
            json_scalar(other),
        )),
    }
}

fn kv_table(s: &mut String, rows: &[(String, String)]) {
    s.push_str("<table class=\"kv\"><tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
    }
    s.push_str("</tbody></table>\n");
}

fn config_str(r: &Results, key: &str) -> Option<String> {
    r.config.as_ref()?.get(key).map(json_scalar)
}

/// The whole page. `figures` are (scene, caption) in display order.
pub fn page(results: &Results, stats: &Stats, figures: &[(Scene, String)]) -> String {
    let arch = config_str(results, "arch");
    let dataset = config_str(results, "dataset");
    let heading = match (&arch, &dataset) {
        (Some(a), Some(d)) => format!("{a} on {d}"),
        (Some(a), None) => a.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => format!("{} vs {}", results.label_a, results.label_b),
    };
    let eps_list: Vec<String> = stats.eps.iter().map(|e| eps_label(*e)).collect();
    let seeds: Vec<String> = results.nets.iter().map(|n| n.seed.to_string()).collect();

    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>spanmatch: {}</title>", escape(&heading));
    let _ = writeln!(
        s,
        "<style>{CSS}{}</style>\n</head>\n<body>\n<main>",
        crate::neurons::CSS
    );
    let _ = writeln!(
        s,
        "<h1>Do different nets learn the same representation? {}</h1>",
        escape(&heading)
    );
    let nets = if results.nets.is_empty() {
        "activations supplied by the user".to_string()
    } else {
        format!(
            "{} net{} (seeds {})",
            results.nets.len(),
            if results.nets.len() == 1 { "" } else { "s" },
            seeds.join(", ")
        )
    };
    let _ = writeln!(
        s,
        "<p class=\"meta\">spanmatch {} · {} · {} · {} pair{} compared · ε ∈ {{{}}}</p>",
        escape(&results.spanmatch_version),
        escape(&results.created),
        escape(&nets),
        stats.pairs,
        if stats.pairs == 1 { "" } else { "s" },
        escape(&eps_list.join(", ")),
    );

    // At a glance.
    s.push_str("<section class=\"glance\"><strong>At a glance</strong><ul>\n");
    match stats.selfs {
        0 => s.push_str("<li>No self-check in these results.</li>\n"),
        _ => {
            let bad: Vec<&str> = stats
                .layers
                .iter()
                .filter(|l| l.self_ok == Some(false))
                .map(|l| l.name.as_str())
                .collect();
            if bad.is_empty() {
                s.push_str("<li>Self-check <span class=\"ok\">passed</span>: each net against itself gives mms = 1 at every ε in every layer.</li>\n");
            } else {
                let _ = writeln!(
                    s,
                    "<li>Self-check <span class=\"bad\">FAILED</span> (mms ≠ 1 for a net against itself) in: {}.</li>",
                    escape(&bad.join(", "))
                );
            }
        }
    }
    if let Some(last) = stats.main {
        let at: Vec<(&str, f64)> = stats
            .layers
            .iter()
            .filter_map(|l| {
                l.mms
                    .get(last)
                    .copied()
                    .flatten()
                    .map(|m| (l.name.as_str(), m.mean))
            })
            .collect();
        let hi = at.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
        let lo = at.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(hi), Some(lo)) = (hi, lo) {
            let _ = writeln!(
                s,
                "<li>At ε = {}, mean mms over seed pairs is highest in <b>{}</b> ({}) and lowest in <b>{}</b> ({}).</li>",
                eps_label(stats.eps[last]),
                escape(hi.0),
                f3(hi.1),
                escape(lo.0),
                f3(lo.1)
            );
        }
        let null_max = stats
            .layers
            .iter()
            .filter_map(|l| l.null.get(last).copied().flatten().map(|m| m.mean))
            .fold(f64::NAN, f64::max);
        if null_max.is_finite() {
            let _ = writeln!(
                s,
                "<li>Chance level (rows shuffled) at ε = {}: at most {} in any layer.</li>",
                eps_label(stats.eps[last]),
                f3(null_max)
            );
        }
    }
    if let Some(last) = stats.main {
        let diffs: Vec<(&str, f64)> = stats
            .layers
            .iter()
            .filter_map(|l| {
                l.trained_minus_untrained
                    .get(last)
                    .copied()
                    .flatten()
                    .map(|d| (l.name.as_str(), d.mean))
            })
            .collect();
        if !diffs.is_empty() {
            let above: Vec<&str> = diffs
                .iter()
                .filter(|(_, d)| *d > 0.0)
                .map(|(n, _)| *n)
                .collect();
            let lo = diffs.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
            let hi = diffs.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
            if let (Some(lo), Some(hi)) = (lo, hi) {
                let _ = writeln!(
                    s,
                    "<li>Untrained baseline (the same seeds' nets before training) at ε = {}: trained pairs match more in {} of {} layers; trained minus untrained mms ranges from {:+.3} (<b>{}</b>) to {:+.3} (<b>{}</b>).</li>",
                    eps_label(stats.eps[last]),
                    above.len(),
                    diffs.len(),
                    lo.1,
                    escape(lo.0),
                    hi.1,
                    escape(hi.0)
                );
            }
        }
    }
    if let Some(last) = stats.main {
        let lines: Vec<String> = stats
            .layers
            .iter()
            .filter_map(|l| glance_line(l, last, stats.eps[last]))
            .collect();
        if !lines.is_empty() {
            let _ = writeln!(
                s,
                "<li>Per layer at ε = {} (trained seed pairs; [95 % interval over test images]):<ul>",
                eps_label(stats.eps[last])
            );
            for line in lines {
                let _ = writeln!(s, "<li>{line}</li>");
            }
            s.push_str("</ul></li>\n");
        }
    }
    let cka: Vec<f64> = stats
        .layers
        .iter()
        .filter_map(|l| l.cka.map(|c| c.mean))
        .collect();
    if let Some(c) = Summary::of(&cka) {
        let _ = writeln!(
            s,
            "<li>Linear CKA (basis-invariant) ranges from {} to {} across layers.</li>",
            f3(c.min),
            f3(c.max)
        );
    }
    let accs: Vec<f64> = results.nets.iter().map(|n| n.test_accuracy).collect();
    if let Some(a) = Summary::of(&accs) {
        let _ = writeln!(
            s,
            "<li>Test accuracy of the nets: {} to {}.</li>",
            accuracy_label(a.min),
            accuracy_label(a.max)
        );
    }
    s.push_str("</ul></section>\n");

    // Figures.
    s.push_str("<h2>Figures</h2>\n");
    for (scene, caption) in figures {
        s.push_str("<figure>\n");
        s.push_str(&scene.to_svg());
        let _ = writeln!(s, "\n<figcaption>{}</figcaption>\n</figure>", caption);
    }

    // Per-layer table.
    let ne = stats.eps.len();
    let has_untrained = stats
        .layers
        .iter()
        .any(|l| l.trained_minus_untrained.iter().any(|d| d.is_some()));
    let has_simple = stats.layers.iter().any(|l| l.simple.is_some());
    let main = stats.main;
    let has_verdict = stats.layers.iter().any(|l| l.verdict.is_some());
    let has_rot = main.is_some_and(|m| stats.layers.iter().any(|l| l.rotation_null[m].is_some()));
    let has_centered = main.is_some_and(|m| stats.layers.iter().any(|l| l.centered[m].is_some()));
    let has_interval = stats
        .layers
        .iter()
        .any(|l| l.mms_interval.iter().any(|b| b.is_some()));
    let main_label = main.map_or(String::new(), |m| eps_label(stats.eps[m]));
    s.push_str("<h2>Per-layer results</h2>\n<div class=\"scroll\"><table>\n<thead>\n<tr>");
    s.push_str("<th rowspan=\"2\">#</th><th rowspan=\"2\" class=\"l\">layer</th><th rowspan=\"2\">kind</th><th rowspan=\"2\">neurons</th><th rowspan=\"2\">rows</th><th rowspan=\"2\">dead<br>(mean/net)</th>");
    let _ = write!(
        s,
        "<th colspan=\"{ne}\">mms, mean ± s.d. over {} pair{}{}</th><th colspan=\"{ne}\">null (rows shuffled)</th>",
        stats.pairs,
        if stats.pairs == 1 { "" } else { "s" },
        if has_interval { " [95 % interval over test images]" } else { "" }
    );
    if has_rot {
        let _ = write!(s, "<th rowspan=\"2\">rotation null<br>ε={main_label}</th>");
    }
    if has_centered {
        let _ = write!(s, "<th rowspan=\"2\">centred mms<br>ε={main_label}</th>");
    }
    if has_untrained {
        let _ = write!(s, "<th colspan=\"{ne}\">trained minus untrained mms</th>");
    }
    if has_verdict {
        let _ = write!(s, "<th rowspan=\"2\">verdict<br>ε={main_label}</th>");
    }
    s.push_str("<th rowspan=\"2\">linear CKA</th><th rowspan=\"2\">full-match<br>ε</th>");
    if has_simple {
        s.push_str("<th rowspan=\"2\">simple<br>matches</th>");
    }
    s.push_str("<th rowspan=\"2\">self-<br>check</th></tr>\n<tr>");
    for _ in 0..(2 + usize::from(has_untrained)) {
        for e in &stats.eps {
            let _ = write!(s, "<th>ε={}</th>", eps_label(*e));
        }
    }
    s.push_str("</tr>\n</thead>\n<tbody>\n");
    for (i, l) in stats.layers.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            i + 1,
            escape(&l.name),
            escape(&l.kind),
            l.neurons,
            thousands(l.rows),
            l.dead.map_or("—".to_string(), |d| format!("{d:.1}")),
        );
        for (m, b) in l.mms.iter().zip(&l.mms_interval) {
            let _ = write!(s, "<td>{}{}</td>", mean_sd(*m), interval(*b));
        }
        for m in &l.null {
            let _ = write!(
                s,
                "<td class=\"null\">{}</td>",
                m.map_or("—".to_string(), |m| f3(m.mean))
            );
        }
        if let (true, Some(m)) = (has_rot, main) {
            let _ = write!(s, "<td class=\"null\">{}</td>", mean_sd(l.rotation_null[m]));
        }
        if let (true, Some(m)) = (has_centered, main) {
            let _ = write!(s, "<td>{}</td>", mean_sd(l.centered[m]));
        }
        if has_untrained {
            for d in &l.trained_minus_untrained {
                let _ = write!(s, "<td>{}</td>", diff_sd(*d));
            }
        }
        if has_verdict {
            let _ = write!(
                s,
                "<td class=\"l\">{}</td>",
                l.verdict.as_deref().map_or("—".to_string(), escape)
            );
        }
        let _ = write!(
            s,
            "<td>{}</td><td>{}</td>",
            mean_sd(l.cka),
            l.max_epsilon.map_or("—".to_string(), |m| f3(m.mean)),
        );
        if has_simple {
            let _ = write!(
                s,
                "<td>{}</td>",
                l.simple
                    .as_ref()
                    .map_or("—".to_string(), |a| format!("{:.1}", a.mean_count))
            );
        }
        let _ = writeln!(
            s,
            "<td>{}</td></tr>",
            match l.self_ok {
                Some(true) => "<span class=\"ok\">✓</span>",
                Some(false) => "<span class=\"bad\">✗</span>",
                None => "—",
            }
        );
    }
    s.push_str("</tbody></table></div>\n");
    s.push_str("<p class=\"meta\">mms = (|X*| + |Y*|) / (|X| + |Y|), dead neurons counted in the denominator. full-match ε: the smallest ε at which every live neuron is matched (mean over pairs). Null: two nets compared with the images of one side shuffled (same images, different order): what chance gives at this many rows and neurons. Self-check: each net against itself, dead neurons counted as matched (must be 1). Trained minus untrained: each seed pair's mms minus that of the same seeds' nets before training (mean ± s.d. over pairs); positive where training made the nets match more than the architecture and the input statistics alone. Simple matches: mean number per seed pair at the ε of the simple matches. s.d. uses n − 1. [lo, hi]: 95 % bootstrap interval over chunks of test images (envelope over the seed pairs). Rotation null: the same pairs with net B's layer in a random neuron basis (mean over rotations and pairs); a match well above it lives in the neurons themselves, not only in shared subspaces. Centred mms: the match of the mean-centred activations. Verdict (docs/controls.md): <i>none</i> when the upper end of the interval of mms is below 0.05 or below the untrained pair's mms; <i>given</i> when its lower end is at or below the untrained pair's mms (trained ≈ untrained); <i>subspace-only</i> when mms is at or below the rotation null's largest draw (the nets share a subspace, not neurons); <i>learned</i> otherwise.</p>\n");

    s.push_str(&crate::neurons::section(results));

    // Nets.
    s.push_str("<h2>Nets</h2>\n<table>\n<thead><tr><th>seed</th><th>test accuracy</th><th>epochs</th><th>training time (s)</th><th>h:mm:ss</th></tr></thead>\n<tbody>\n");
    for n in &results.nets {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            n.seed,
            accuracy_label(n.test_accuracy),
            n.epochs,
            n.train_seconds,
            duration(n.train_seconds)
        );
    }
    if results.nets.len() > 1 {
        let acc = Summary::of(&accs);
        let t = Summary::of(
            &results
                .nets
                .iter()
                .map(|n| n.train_seconds)
                .collect::<Vec<_>>(),
        );
        if let (Some(a), Some(t)) = (acc, t) {
            let _ = writeln!(
                s,
                "<tr class=\"mean\"><td>mean</td><td>{}<span class=\"sd\"> ± {:.2}</span></td><td></td><td>{:.1}</td><td>{}</td></tr>",
                accuracy_label(a.mean),
                a.std * 100.0,
                t.mean,
                duration(t.mean)
            );
        }
    }
    s.push_str("</tbody></table>\n");

    // Configuration, timings, resources.
    s.push_str("<h2>Configuration</h2>\n");
    let mut rows = Vec::new();
    if let Some(c) = &results.config {
        flatten("", c, &mut rows);
    }
    if let Ok(o) = serde_json::to_value(&results.options) {
        flatten("options", &o, &mut rows);
    }
    if results.settings.as_object().is_some_and(|m| !m.is_empty()) {
        flatten("settings", &results.settings, &mut rows);
    }
    if let Ok(p) = serde_json::to_value(&results.provenance) {
        flatten("provenance", &p, &mut rows);
    }
    kv_table(&mut s, &rows);
    s.push_str("<h2>Timings and resources</h2>\n");
    let mut rows = Vec::new();
    if let Some(t) = &results.timings {
        flatten("", t, &mut rows);
    }
    rows.push((
        "peak memory (MiB)".to_string(),
        results
            .peak_memory_mb
            .map_or("not recorded".to_string(), |m| format!("{m:.1}")),
    ));
    rows.push((
        "comparisons".to_string(),
        format!(
            "{} seed pairs, {} untrained pairs, {} self-checks, {} nulls",
            stats.pairs, stats.untrained, stats.selfs, stats.nulls
        ),
    ));
    kv_table(&mut s, &rows);

    let _ = writeln!(
        s,
        "<footer>Generated by spanmatch {} from results.json. Method: L. Wang et al., \"Towards Understanding Learning Representations: To What Extent Do Different Neural Networks Learn the Same Representation\", NeurIPS 2018 (arXiv 1810.11750).</footer>",
        escape(&results.spanmatch_version)
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_helpers() {
        assert_eq!(thousands(10_240_000), "10,240,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(duration(3725.4), "1:02:05");
        assert_eq!(accuracy_label(0.9234), "92.34%");
        let mut rows = Vec::new();
        flatten(
            "",
            &serde_json::json!({"a": {"b": 1}, "c": "x", "d": [1, 2]}),
            &mut rows,
        );
        assert_eq!(
            rows,
            vec![
                ("a.b".to_string(), "1".to_string()),
                ("c".to_string(), "x".to_string()),
                ("d".to_string(), "[1,2]".to_string())
            ]
        );
    }
}
