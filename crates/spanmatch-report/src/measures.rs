//! The "Measures" section of the report: every number of the requested measures (CKA, CCA, ...,
//! the neuron-matching ones) per layer, over the trained pairs, with its controls: the bootstrap
//! interval, the untrained pair's value, trained − untrained, and the rotation null of the
//! measures that depend on the neuron basis.

use std::fmt::Write as _;

use spanmatch_engine::fields::{self, Direction, Field};

use crate::results::{ComparisonKind, LayerRecord, Results};
use crate::scene::escape;
use crate::stats::{layer_order, Summary};

fn dash() -> String {
    "—".to_string()
}

fn mean_sd(v: &[f64]) -> String {
    match Summary::of(v) {
        None => dash(),
        Some(s) if s.n > 1 => format!("{:.3} ± {:.3}", s.mean, s.std),
        Some(s) => format!("{:.3}", s.mean),
    }
}

/// The trained pairs' records of `layer`.
fn pairs<'a>(results: &'a Results, layer: &str) -> Vec<&'a LayerRecord> {
    results
        .comparisons
        .iter()
        .filter(|c| c.kind == ComparisonKind::Pair)
        .flat_map(|c| c.layers.iter().filter(move |l| l.name == layer))
        .collect()
}

/// The section, or an empty string when no measure was computed.
pub fn section(results: &Results) -> String {
    let wanted: Vec<&Field> = fields::fields_for(&results.options.measures)
        .into_iter()
        .filter(|f| f.column)
        .collect();
    let names = layer_order(results);
    let per_layer: Vec<(String, Vec<&LayerRecord>)> = names
        .into_iter()
        .map(|n| {
            let p = pairs(results, &n);
            (n.clone(), p)
        })
        .filter(|(_, p)| p.iter().any(|l| l.measures.is_some()))
        .collect();
    if wanted.is_empty() || per_layer.is_empty() {
        return String::new();
    }
    let all = || per_layer.iter().flat_map(|(_, p)| p.iter());
    let has_interval = all().any(|l| {
        l.intervals
            .as_ref()
            .is_some_and(|iv| !iv.measures.is_empty())
    });
    let has_untrained = all().any(|l| l.untrained.as_ref().is_some_and(|u| u.measures.is_some()));
    let has_null = all().any(|l| l.null.as_ref().is_some_and(|n| !n.measures.is_empty()));
    let pairs_n = per_layer.iter().map(|(_, p)| p.len()).max().unwrap_or(0);

    let mut s = String::new();
    s.push_str("<h2>Measures</h2>\n");
    let _ = writeln!(
        s,
        "<p>The other measures of the same layers, from the same statistics (docs/measures.md): \
         the basis-invariant ones compare the spaces the layers span; the neuron-matching ones \
         (one-to-one, semi-matching, soft matching, permutation Procrustes) compare individual \
         neurons, like the span match. Values are the mean ± s.d. over {pairs_n} trained \
         pair{}.</p>",
        if pairs_n == 1 { "" } else { "s" }
    );
    s.push_str("<div class=\"scroll\"><table>\n<thead><tr><th class=\"l\">layer</th><th class=\"l\">measure</th><th>value</th>");
    if has_interval {
        s.push_str("<th>95 % interval</th>");
    }
    if has_untrained {
        s.push_str("<th>untrained</th><th>trained − untrained</th>");
    }
    if has_null {
        s.push_str("<th>rotation null<br>mean / max</th><th>p (largest)</th>");
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (name, recs) in &per_layer {
        for (k, f) in wanted.iter().enumerate() {
            let values: Vec<f64> = recs.iter().filter_map(|l| l.measure(f.name)).collect();
            let _ = write!(
                s,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>",
                if k == 0 { escape(name) } else { String::new() },
                escape(f.label),
                mean_sd(&values)
            );
            if has_interval {
                let b: Vec<(f64, f64)> = recs
                    .iter()
                    .filter_map(|l| l.intervals.as_ref()?.measure(f.name))
                    .map(|b| (b.lo, b.hi))
                    .collect();
                let cell = if b.is_empty() {
                    dash()
                } else {
                    format!(
                        "[{:.3}, {:.3}]",
                        b.iter().map(|x| x.0).fold(f64::INFINITY, f64::min),
                        b.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max)
                    )
                };
                let _ = write!(s, "<td>{cell}</td>");
            }
            if has_untrained {
                let u: Vec<f64> = recs
                    .iter()
                    .filter_map(|l| {
                        let m = l.untrained.as_ref()?.measures.as_ref()?;
                        fields::value(&m.channels, f.name)
                    })
                    .collect();
                let d: Vec<f64> = recs
                    .iter()
                    .filter_map(|l| {
                        l.untrained
                            .as_ref()?
                            .trained_minus_untrained_measures
                            .get(f.name)
                            .copied()
                    })
                    .collect();
                let diff = match Summary::of(&d) {
                    None => dash(),
                    Some(x) if x.n > 1 => format!("{:+.3} ± {:.3}", x.mean, x.std),
                    Some(x) => format!("{:+.3}", x.mean),
                };
                let _ = write!(s, "<td>{}</td><td>{diff}</td>", mean_sd(&u));
            }
            if has_null {
                let n: Vec<_> = recs
                    .iter()
                    .filter_map(|l| l.null.as_ref()?.measures.get(f.name))
                    .collect();
                if n.is_empty() {
                    s.push_str("<td class=\"null\">—</td><td>—</td>");
                } else {
                    let mean = n.iter().map(|x| x.mean).sum::<f64>() / n.len() as f64;
                    let extreme = match f.direction {
                        Direction::Similarity => {
                            n.iter().map(|x| x.max).fold(f64::NEG_INFINITY, f64::max)
                        }
                        Direction::Distance => {
                            n.iter().map(|x| x.min).fold(f64::INFINITY, f64::min)
                        }
                    };
                    let p = n.iter().map(|x| x.p_value).fold(0.0, f64::max);
                    let _ = write!(
                        s,
                        "<td class=\"null\">{mean:.3} / {extreme:.3}</td><td>{p:.3}</td>"
                    );
                }
            }
            s.push_str("</tr>\n");
        }
    }
    s.push_str("</tbody></table></div>\n");
    let mut notes = vec![
        "dist.: a distance (smaller = more alike; trained − untrained below 0 when training \
         brought the layers closer); the others are similarities."
            .to_string(),
    ];
    if has_interval {
        notes.push(
            "95 % interval: bootstrap over chunks of test images (envelope over the pairs)."
                .to_string(),
        );
    }
    if has_null {
        notes.push(
            "Rotation null: the same random rotations of net B's layer as the null of the span \
             match, for the measures that depend on the neuron basis (— for the rotation-invariant \
             ones); mean over rotations and pairs, and the most alike draw (largest similarity, \
             smallest distance); p = (1 + draws at least as alike as observed) / (1 + draws), the \
             largest over the pairs."
                .to_string(),
        );
    }
    let _ = writeln!(s, "<p class=\"meta\">{}</p>", notes.join(" "));
    s
}
