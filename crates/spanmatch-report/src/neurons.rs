//! "What matched neurons respond to": input thumbnails (PNG, base64) and the report section
//! that shows, for selected matches, each neuron's top inputs as a strip, net A's neurons
//! beside net B's; plus the list of every simple match of the pair.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::figures::eps_label;
use crate::results::{
    Comparison, ComparisonKind, NeuronTop, NeuronViews, Results, SimpleRecord, ViewGroup, ViewKind,
};
use crate::scene::escape;

/// Encodes one image (`u8`, CHW, 1 or 3 channels) as a base64 PNG (grey or RGB).
pub fn encode_png_base64(pixels: &[u8], shape: [usize; 3]) -> Result<String> {
    let [c, h, w] = shape;
    if pixels.len() != c * h * w {
        bail!(
            "image of shape {shape:?} needs {} pixels, got {}",
            c * h * w,
            pixels.len()
        );
    }
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => bail!("images with {c} channels cannot be shown (1 or 3 expected)"),
    };
    let hw = h * w;
    let mut interleaved = vec![0u8; c * hw];
    for ch in 0..c {
        for p in 0..hw {
            interleaved[p * c + ch] = pixels[ch * hw + p];
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("encoding a PNG header")?;
        writer
            .write_image_data(&interleaved)
            .context("encoding PNG data")?;
    }
    Ok(STANDARD.encode(out))
}

/// Decodes what [`encode_png_base64`] wrote: the pixels (CHW) and the shape.
pub fn decode_png_base64(data: &str) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = STANDARD.decode(data).context("not base64")?;
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().context("not a PNG")?;
    let size = reader
        .output_buffer_size()
        .context("PNG too large to decode")?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).context("corrupt PNG")?;
    let c = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        other => bail!("unexpected PNG colour type {other:?}"),
    };
    let (h, w) = (info.height as usize, info.width as usize);
    let hw = h * w;
    let mut chw = vec![0u8; c * hw];
    for p in 0..hw {
        for ch in 0..c {
            chw[ch * hw + p] = buf[p * c + ch];
        }
    }
    Ok((chw, [c, h, w]))
}

/// CSS of the section.
pub(crate) const CSS: &str = r#"
.views h3 { font-size: 15px; margin: 22px 0 6px; }
.vg { margin: 8px 0 14px; padding: 6px 8px; border-left: 3px solid #ccc; }
.vg.simple { border-color: #0072b2; } .vg.one_to_one { border-color: #009e73; } .vg.unmatched { border-color: #d55e00; }
.vh { font-size: 12.5px; color: #333; margin-bottom: 4px; }
.vcols { display: flex; flex-wrap: wrap; gap: 10px 28px; }
.vcol { flex: 0 0 400px; }
.vcol > b { display: block; font-size: 11.5px; color: #555; margin-bottom: 2px; }
.strip { display: flex; align-items: center; gap: 1px; margin: 2px 0; }
.strip .nl { display: inline-block; width: 64px; font-size: 11px; color: #555; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.im { display: inline-block; width: 36px; height: 36px; background-size: 100% 100%; image-rendering: pixelated; background-color: #000; }
.cls { font-size: 10.5px; color: #666; margin: 0 0 4px 66px; }
.smlist { font-size: 11.5px; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; column-width: 260px; }
.smlist div { break-inside: avoid; }
"#;

fn class_name(views: &NeuronViews, label: usize) -> String {
    views
        .class_names
        .get(label)
        .cloned()
        .unwrap_or_else(|| format!("class {label}"))
}

/// "Sneaker 6 · Sandal 2": the classes of a neuron's top inputs, most frequent first.
fn class_summary(views: &NeuronViews, labels: &HashMap<usize, usize>, n: &NeuronTop) -> String {
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for i in &n.inputs {
        let Some(&l) = labels.get(i) else { continue };
        match counts.iter_mut().find(|(c, _)| *c == l) {
            Some((_, k)) => *k += 1,
            None => counts.push((l, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(l, k)| format!("{} {k}", escape(&class_name(views, *l))))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn strip(
    s: &mut String,
    views: &NeuronViews,
    labels: &HashMap<usize, usize>,
    net: &str,
    n: &NeuronTop,
) {
    let _ = write!(
        s,
        "<div class=\"strip\"><span class=\"nl\" title=\"threshold ε* = {}\">{net} #{}</span>",
        n.threshold
            .map_or("none (dead)".to_string(), |t| format!("{t:.3}")),
        n.neuron
    );
    for (i, v) in n.inputs.iter().zip(&n.values) {
        let label = labels
            .get(i)
            .map_or(String::new(), |&l| class_name(views, l));
        let _ = write!(
            s,
            "<span class=\"im i{i}\" title=\"test image {i}: {} (response {v:.3})\"></span>",
            escape(&label)
        );
    }
    s.push_str("</div>");
    let _ = write!(
        s,
        "<div class=\"cls\">{}</div>",
        class_summary(views, labels, n)
    );
}

fn group_heading(g: &ViewGroup) -> String {
    let shown = |total: usize, shown: usize| {
        if shown < total {
            format!("{total} (showing {shown})")
        } else {
            total.to_string()
        }
    };
    let sine = g
        .sine
        .map_or(String::new(), |s| format!(" · largest sine {s:.3}"));
    // How many test images appear in both nets' strips: a quick check of "same things".
    let side = |v: &[NeuronTop]| -> std::collections::BTreeSet<usize> {
        v.iter().flat_map(|n| n.inputs.iter().copied()).collect()
    };
    let (sa, sb) = (side(&g.a), side(&g.b));
    let shared = if sa.is_empty() || sb.is_empty() {
        String::new()
    } else {
        format!(
            " · <span title=\"distinct test images in net A's strips / net B's strips, and in both\">images shown {} / {}, in both: {}</span>",
            sa.len(),
            sb.len(),
            sa.intersection(&sb).count()
        )
    };
    let details = format!("{sine}{shared}");
    match g.kind {
        ViewKind::Simple => format!(
            "<b>Simple match</b> · {} neurons of A + {} of B{details}",
            shown(g.size_a, g.a.len()),
            shown(g.size_b, g.b.len())
        ),
        ViewKind::OneToOne => format!("<b>One-to-one match</b>{details}"),
        ViewKind::Unmatched => format!(
            "<b>Unmatched</b> · a neuron of each net outside the maximum match, drawn at random (contrast){shared}"
        ),
    }
}

/// Every simple match of one layer, in a collapsed list.
fn simple_list(s: &mut String, sm: &SimpleRecord) {
    if sm.matches.is_empty() {
        return;
    }
    let _ = write!(
        s,
        "<details><summary>All {} simple matches of this layer (net A neurons | net B neurons{})</summary><div class=\"smlist\">",
        sm.matches.len(),
        if sm.matches.iter().any(|m| m.sine.is_some()) {
            "; largest sine"
        } else {
            ""
        }
    );
    let list = |v: &[usize]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for m in &sm.matches {
        let _ = write!(
            s,
            "<div>{} | {}{}</div>",
            list(&m.a),
            list(&m.b),
            m.sine.map_or(String::new(), |x| format!(
                " <span class=\"sd\">{x:.3}</span>"
            ))
        );
    }
    s.push_str("</div></details>\n");
}

fn group(s: &mut String, views: &NeuronViews, labels: &HashMap<usize, usize>, g: &ViewGroup) {
    let class = match g.kind {
        ViewKind::Simple => "simple",
        ViewKind::OneToOne => "one_to_one",
        ViewKind::Unmatched => "unmatched",
    };
    let _ = write!(
        s,
        "<div class=\"vg {class}\"><div class=\"vh\">{}</div><div class=\"vcols\">",
        group_heading(g)
    );
    for (net, list) in [("A", &g.a), ("B", &g.b)] {
        s.push_str("<div class=\"vcol\">");
        let _ = write!(s, "<b>net {net}</b>");
        if list.is_empty() {
            s.push_str("<span class=\"sd\">every live neuron is matched</span>");
        }
        for n in list {
            strip(s, views, labels, net, n);
        }
        s.push_str("</div>");
    }
    s.push_str("</div></div>\n");
}

/// "Seed 0 (net A) against seed 1 (net B)", or the two sides' labels when there are no seeds.
fn pair_title(results: &Results, pair: &Comparison) -> String {
    match (pair.seed_a, pair.seed_b) {
        (Some(a), Some(b)) => format!("Seed {a} (net A) against seed {b} (net B)"),
        _ => format!(
            "{} (net A) against {} (net B)",
            pair.label_a.as_deref().unwrap_or(&results.label_a),
            pair.label_b.as_deref().unwrap_or(&results.label_b)
        ),
    }
}

/// The section "What matched neurons respond to" for the pair of the results' neuron views
/// (strips, then every simple match of each layer), or, without views, the list of every
/// simple match of the first trained pair that has them; empty when there is neither.
pub(crate) fn section(results: &Results) -> String {
    let mut s = String::new();
    let views = results.neuron_views.as_ref();
    let pair = results.comparisons.iter().find(|c| {
        c.kind == ComparisonKind::Pair
            && match views {
                Some(v) => c.seed_a == Some(v.seed_a) && c.seed_b == Some(v.seed_b),
                None => c
                    .layers
                    .iter()
                    .any(|l| l.simple.as_ref().is_some_and(|s| !s.matches.is_empty())),
            }
    });
    let Some(views) = views else {
        let Some(pair) = pair else { return s };
        let _ = writeln!(
            s,
            "<section class=\"views\">\n<h2>Simple matches</h2>\n<p class=\"meta\">{}: every simple match of each layer, largest first.</p>",
            escape(&pair_title(results, pair))
        );
        for l in &pair.layers {
            if let Some(sm) = &l.simple {
                let _ = writeln!(
                    s,
                    "<h3>{} <span class=\"sd\">at ε = {}</span></h3>",
                    escape(&l.name),
                    eps_label(sm.eps)
                );
                simple_list(&mut s, sm);
            }
        }
        s.push_str("</section>\n");
        return s;
    };
    let labels: HashMap<usize, usize> = views.inputs.iter().map(|i| (i.index, i.label)).collect();
    s.push_str("<section class=\"views\">\n<h2>What matched neurons respond to</h2>\n");
    let _ = writeln!(
        s,
        "<p class=\"meta\">Seed {} (net A) against seed {} (net B), matches at ε = {}. Each strip is one neuron: the {} test images it responds to most ({}), strongest first, with their classes below. Net A's neurons are on the left, net B's on the right. Shown per layer: the largest simple matches (up to {} neurons a side, those with the smallest threshold ε*), the one-to-one matches with the smallest sines, and for contrast one neuron of each net outside the maximum match. Hover an image for its index, class and the response; hover a neuron for its threshold ε*.</p>",
        views.seed_a,
        views.seed_b,
        eps_label(views.eps),
        views.k,
        escape(&views.response),
        views.per_side
    );
    // Each input image once, as a CSS class.
    s.push_str("<style>\n");
    for input in &views.inputs {
        let _ = writeln!(
            s,
            ".i{}{{background-image:url(\"data:image/png;base64,{}\")}}",
            input.index, input.png
        );
    }
    s.push_str("</style>\n");
    for lv in &views.layers {
        let _ = writeln!(s, "<h3>{}</h3>", escape(&lv.layer));
        if lv.groups.is_empty() {
            s.push_str("<p class=\"meta\">No match at this ε in this layer.</p>\n");
        }
        for g in &lv.groups {
            group(&mut s, views, &labels, g);
        }
        let simple = pair
            .and_then(|c| c.layers.iter().find(|l| l.name == lv.layer))
            .and_then(|l| l.simple.as_ref());
        if let Some(sm) = simple {
            simple_list(&mut s, sm);
        }
    }
    s.push_str("</section>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_grey_and_rgb() {
        let grey: Vec<u8> = (0..28 * 28).map(|i| (i * 7 % 256) as u8).collect();
        let enc = encode_png_base64(&grey, [1, 28, 28]).unwrap();
        assert_eq!(decode_png_base64(&enc).unwrap(), (grey, [1, 28, 28]));
        let rgb: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 13 % 256) as u8).collect();
        let enc = encode_png_base64(&rgb, [3, 4, 5]).unwrap();
        assert_eq!(decode_png_base64(&enc).unwrap(), (rgb, [3, 4, 5]));
        assert!(encode_png_base64(&[0; 3], [1, 2, 2]).is_err());
        assert!(encode_png_base64(&[0; 8], [2, 2, 2]).is_err());
        assert!(decode_png_base64("not png").is_err());
    }

    #[test]
    fn section_lists_simple_matches_and_shows_strips() {
        use crate::results::{LayerViews, ViewInput};
        let mut r = crate::example_results();
        // The example has simple-match counts but no indices: no section.
        assert_eq!(section(&r), "");
        for c in r
            .comparisons
            .iter_mut()
            .filter(|c| c.kind == ComparisonKind::Pair)
        {
            for l in &mut c.layers {
                if let Some(sm) = l.simple.as_mut() {
                    sm.matches.push(crate::results::SimpleMatchRecord {
                        a: vec![1, 2],
                        b: vec![4],
                        count: 1,
                        sine: Some(0.125),
                    });
                }
            }
        }
        // Indices but no views: the list only.
        let plain = section(&r);
        assert!(plain.contains("<div>1,2 | 4 <span class=\"sd\">0.125</span></div>"));
        assert!(plain.contains("<h2>Simple matches</h2>"), "{plain}");
        assert!(plain.contains("simple matches of this layer"));
        assert!(!plain.contains("class=\"strip\""));
        let pair = r
            .comparisons
            .iter()
            .find(|c| c.kind == ComparisonKind::Pair)
            .unwrap();
        let png = encode_png_base64(&[7; 4], [1, 2, 2]).unwrap();
        let top = |neuron: usize, inputs: Vec<usize>| NeuronTop {
            neuron,
            threshold: Some(0.1),
            values: vec![1.0; inputs.len()],
            inputs,
        };
        r.neuron_views = Some(NeuronViews {
            seed_a: pair.seed_a.unwrap(),
            seed_b: pair.seed_b.unwrap(),
            eps: 0.5,
            k: 2,
            per_side: 4,
            response: "activation".into(),
            image_shape: [1, 2, 2],
            class_names: vec!["cat".into(), "dog".into()],
            layers: vec![LayerViews {
                layer: pair.layers[0].name.clone(),
                groups: vec![ViewGroup {
                    kind: ViewKind::OneToOne,
                    size_a: 1,
                    size_b: 1,
                    sine: Some(0.25),
                    a: vec![top(3, vec![10, 11])],
                    b: vec![top(5, vec![11, 10])],
                }],
            }],
            inputs: vec![
                ViewInput {
                    index: 10,
                    label: 0,
                    png: png.clone(),
                },
                ViewInput {
                    index: 11,
                    label: 1,
                    png: png.clone(),
                },
            ],
        });
        let html = section(&r);
        assert!(html.contains("What matched neurons respond to"));
        assert_eq!(html.matches("class=\"strip\"").count(), 2);
        assert_eq!(html.matches("class=\"im i10\"").count(), 2);
        assert_eq!(
            html.matches(&format!(
                ".i10{{background-image:url(\"data:image/png;base64,{png}\")}}"
            ))
            .count(),
            1
        );
        assert!(html.contains("A #3") && html.contains("B #5"));
        assert!(html.contains("cat 1 · dog 1"));
        assert!(html.contains("largest sine 0.250"));
        assert!(html.contains("images shown 2 / 2, in both: 2"));
        assert!(html.contains("simple matches of this layer"));
    }
}
