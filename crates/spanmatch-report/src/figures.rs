//! The report's figures as [`Scene`]s.

use crate::chart::{
    category, legend, nice_ticks, sequential, tick_label, titles, Axes, Key, SHAPES,
};
use crate::scene::{text_width, Anchor, Rgb, Scene, BLACK, DARK, GRID, MID};
use crate::stats::Stats;

/// Formats ε compactly ("0.15", "0.5").
pub fn eps_label(e: f64) -> String {
    let s = format!("{e:.3}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

fn unit_ticks() -> Vec<(f64, String)> {
    nice_ticks(0.0, 1.0, 5)
        .into_iter()
        .map(|v| (v, tick_label(v, 0.2)))
        .collect()
}

const FONT: f64 = 11.5;
/// Dash pattern of the untrained-baseline lines (dotted; the null is dashed 5-4).
const UNTRAINED_DASH: [f64; 2] = [1.5, 3.0];
/// A series: (x, y or a gap).
type Points = Vec<(f64, Option<f64>)>;
/// Dash-dot of the centred match's line.
const CENTERED_DASH: [f64; 4] = [7.0, 3.0, 1.5, 3.0];
/// Colour of the centred match (a purple outside the ε palette's first colours).
const CENTERED: Rgb = Rgb(118, 42, 131);
const LABEL: f64 = 12.5;

/// Polyline through the finite points only, split at gaps.
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (x, y) in points {
        match y {
            Some(y) if y.is_finite() => {
                if let Some(last) = out.last_mut() {
                    last.push((*x, *y));
                }
            }
            _ => {
                if out.last().is_some_and(|l| !l.is_empty()) {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Fill opacity of the bootstrap-interval band (lighter than the min–max band's 0.16).
const INTERVAL_OPACITY: f64 = 0.07;

/// A filled band between `(lo, hi)` at x = 0, 1, ...: one polygon per run of at least two
/// consecutive values present and finite.
fn band(scene: &mut Scene, ax: &Axes, values: &[Option<(f64, f64)>], color: Rgb, opacity: f64) {
    let mut run: Vec<(f64, f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64, f64)>, scene: &mut Scene| {
        if run.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = run
                .iter()
                .map(|(x, _, hi)| (ax.px(*x), ax.py(*hi)))
                .collect();
            poly.extend(run.iter().rev().map(|(x, lo, _)| (ax.px(*x), ax.py(*lo))));
            scene.polygon(poly, color, opacity);
        }
        run.clear();
    };
    for (x, v) in values.iter().enumerate() {
        match v {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() => run.push((x as f64, *lo, *hi)),
            _ => flush(&mut run, scene),
        }
    }
    flush(&mut run, scene);
}

/// mms versus layer: one line per ε (mean over pairs, band min–max, lighter band the envelope
/// of the pairs' bootstrap intervals when present), the null as dashed lines, linear CKA in
/// black.
pub fn mms_by_layer(stats: &Stats) -> Scene {
    let n = stats.layers.len();
    let has_cka = stats.layers.iter().any(|l| l.cka.is_some());
    let has_null = stats
        .layers
        .iter()
        .any(|l| l.null.iter().any(|s| s.is_some()));
    let has_band = stats.pairs > 1;
    let has_interval = stats
        .layers
        .iter()
        .any(|l| l.mms_interval.iter().any(|b| b.is_some()));
    let has_untrained = stats
        .layers
        .iter()
        .any(|l| l.untrained.iter().any(|s| s.is_some()));
    // The centred match as its own series, at the main ε.
    let centered: Option<(usize, Points)> = stats.main.and_then(|m| {
        let pts: Vec<(f64, Option<f64>)> = stats
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| {
                (
                    li as f64,
                    l.centered.get(m).copied().flatten().map(|s| s.mean),
                )
            })
            .collect();
        pts.iter().any(|p| p.1.is_some()).then_some((m, pts))
    });

    let mut entries: Vec<(Key, String)> = vec![(Key::Heading, "mms at tolerance ε".to_string())];
    for (i, e) in stats.eps.iter().enumerate() {
        entries.push((
            Key::Line {
                color: category(i),
                width: 2.2,
                dash: None,
                marker: Some((SHAPES[i % SHAPES.len()], true)),
            },
            format!("ε = {}", eps_label(*e)),
        ));
    }
    if has_band {
        entries.push((
            Key::Swatch {
                color: Rgb(120, 120, 120),
                opacity: 0.22,
            },
            format!("min–max over {} pairs", stats.pairs),
        ));
    }
    if has_interval {
        entries.push((
            Key::Swatch {
                color: Rgb(120, 120, 120),
                opacity: INTERVAL_OPACITY * 1.4,
            },
            "95 % interval over test images".to_string(),
        ));
    }
    if has_null {
        entries.push((
            Key::Line {
                color: Rgb(120, 120, 120),
                width: 1.5,
                dash: Some(vec![5.0, 4.0]),
                marker: None,
            },
            "null: rows shuffled".to_string(),
        ));
    }
    if has_untrained {
        entries.push((
            Key::Line {
                color: Rgb(120, 120, 120),
                width: 1.6,
                dash: Some(UNTRAINED_DASH.to_vec()),
                marker: Some((crate::scene::Shape::Circle, false)),
            },
            "untrained nets (same seeds)".to_string(),
        ));
    }
    if let Some((m, _)) = &centered {
        entries.push((
            Key::Line {
                color: CENTERED,
                width: 2.0,
                dash: Some(CENTERED_DASH.to_vec()),
                marker: Some((crate::scene::Shape::Diamond, true)),
            },
            format!("centred match, ε = {}", eps_label(stats.eps[*m])),
        ));
    }
    if has_cka {
        entries.push((Key::Heading, "basis-invariant".to_string()));
        entries.push((
            Key::Line {
                color: BLACK,
                width: 2.2,
                dash: None,
                marker: Some((crate::scene::Shape::Circle, false)),
            },
            "linear CKA".to_string(),
        ));
    }
    let legend_w = entries
        .iter()
        .map(|(k, l)| text_width(l, FONT) + if matches!(k, Key::Heading) { 0.0 } else { 38.0 })
        .fold(0.0, f64::max);

    let longest = stats
        .layers
        .iter()
        .map(|l| text_width(&l.name, FONT))
        .fold(0.0, f64::max);
    let plot_w = (n as f64 * 74.0).clamp(420.0, 900.0);
    let spacing = plot_w / n.max(1) as f64;
    let rotated = longest > spacing * 0.92;
    // Rotated tick labels hang to the left of their tick: leave room for the first one.
    let left = if rotated {
        (longest * 0.766 - spacing / 2.0 + 10.0).max(66.0)
    } else {
        66.0
    };
    // A second subtitle line explains the interval band, when there is one.
    let top = if has_interval { 76.0 } else { 62.0 };
    let plot_h = 330.0;
    let width = left + plot_w + 36.0 + legend_w + 20.0;
    let below = if rotated {
        longest * 0.643 + FONT * 0.77 + 12.0
    } else {
        FONT + 10.0
    };
    let height = top + plot_h + below + 32.0;
    let title = "Maximum match similarity by layer";
    let mut scene = Scene::new(width.round(), height.round(), title);
    let subtitle = format!(
        "mean over {} seed pair{}{}{}{}",
        stats.pairs,
        if stats.pairs == 1 { "" } else { "s" },
        if has_band {
            "; band: min–max over pairs"
        } else {
            ""
        },
        if has_null {
            "; dashed: two nets with the images of one shuffled (chance level)"
        } else {
            ""
        },
        if has_untrained {
            "; dotted: the same seeds' nets before training"
        } else {
            ""
        },
    );
    titles(&mut scene, 14.0, title, &subtitle);
    if has_interval {
        scene.text(
            14.0,
            56.0,
            if has_band {
                "lighter band: 95 % bootstrap interval of mms over the test images \
                 (lowest to highest end over the seed pairs)"
            } else {
                "band: 95 % bootstrap interval of mms over the test images \
                 (lowest to highest end over the seed pairs)"
            },
            11.5,
            Anchor::Start,
            MID,
        );
    }

    let ax = Axes {
        left,
        top,
        width: plot_w,
        height: plot_h,
        x: (-0.5, n as f64 - 0.5),
        y: (0.0, 1.0),
    };
    ax.y_axis(&mut scene, &unit_ticks(), FONT);
    let xt: Vec<(f64, String)> = stats
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.name.clone()))
        .collect();
    let used = ax.x_axis(&mut scene, &xt, FONT);
    ax.frame(&mut scene);
    scene.text(
        ax.left + ax.width / 2.0,
        ax.bottom() + used + 18.0,
        "layer (input → output)",
        LABEL,
        Anchor::Middle,
        DARK,
    );
    scene.text_full(
        18.0,
        ax.top + ax.height / 2.0,
        "similarity (fraction, 0–1)",
        LABEL,
        Anchor::Middle,
        -90.0,
        false,
        DARK,
    );

    // Bands first (behind every line): the bootstrap envelopes (lightest, widest) of every ε,
    // then the min–max bands on top of them.
    if has_interval {
        for (i, _) in stats.eps.iter().enumerate() {
            let v: Vec<Option<(f64, f64)>> = stats
                .layers
                .iter()
                .map(|l| l.mms_interval.get(i).copied().flatten())
                .collect();
            band(&mut scene, &ax, &v, category(i), INTERVAL_OPACITY);
        }
    }
    if has_band {
        for (i, _) in stats.eps.iter().enumerate() {
            let v: Vec<Option<(f64, f64)>> = stats
                .layers
                .iter()
                .map(|l| l.mms.get(i).copied().flatten().map(|s| (s.min, s.max)))
                .collect();
            band(&mut scene, &ax, &v, category(i), 0.16);
        }
    }
    // Null lines.
    for (i, _) in stats.eps.iter().enumerate() {
        let pts: Vec<(f64, Option<f64>)> = stats
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| (li as f64, l.null.get(i).copied().flatten().map(|s| s.mean)))
            .collect();
        for seg in segments(&pts) {
            let p = seg.iter().map(|(x, y)| (ax.px(*x), ax.py(*y))).collect();
            scene.line(p, category(i), 1.5, Some(&[5.0, 4.0]));
        }
    }
    // Untrained baseline: dotted lines with hollow markers, in the colour of their ε.
    for (i, _) in stats.eps.iter().enumerate() {
        let pts: Vec<(f64, Option<f64>)> = stats
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| {
                (
                    li as f64,
                    l.untrained.get(i).copied().flatten().map(|s| s.mean),
                )
            })
            .collect();
        for seg in segments(&pts) {
            let p = seg.iter().map(|(x, y)| (ax.px(*x), ax.py(*y))).collect();
            scene.line(p, category(i), 1.6, Some(&UNTRAINED_DASH[..]));
        }
        for (x, y) in pts {
            if let Some(y) = y.filter(|y| y.is_finite()) {
                scene.marker(
                    ax.px(x),
                    ax.py(y),
                    SHAPES[i % SHAPES.len()],
                    5.5,
                    None,
                    category(i),
                );
            }
        }
    }
    // The centred match.
    if let Some((_, pts)) = &centered {
        for seg in segments(pts) {
            let p = seg.iter().map(|(x, y)| (ax.px(*x), ax.py(*y))).collect();
            scene.line(p, CENTERED, 2.0, Some(&CENTERED_DASH[..]));
        }
        for (x, y) in pts {
            if let Some(y) = y.filter(|y| y.is_finite()) {
                scene.marker(
                    ax.px(*x),
                    ax.py(y),
                    crate::scene::Shape::Diamond,
                    6.0,
                    Some(CENTERED),
                    CENTERED,
                );
            }
        }
    }
    // CKA.
    if has_cka {
        let pts: Vec<(f64, Option<f64>)> = stats
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| (li as f64, l.cka.map(|s| s.mean)))
            .collect();
        for seg in segments(&pts) {
            let p = seg.iter().map(|(x, y)| (ax.px(*x), ax.py(*y))).collect();
            scene.line(p, BLACK, 2.2, None);
        }
    }
    // mms lines and markers on top.
    for (i, _) in stats.eps.iter().enumerate() {
        let pts: Vec<(f64, Option<f64>)> = stats
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| (li as f64, l.mms.get(i).copied().flatten().map(|s| s.mean)))
            .collect();
        for seg in segments(&pts) {
            let p = seg.iter().map(|(x, y)| (ax.px(*x), ax.py(*y))).collect();
            scene.line(p, category(i), 2.2, None);
        }
        for (x, y) in pts {
            if let Some(y) = y.filter(|y| y.is_finite()) {
                scene.marker(
                    ax.px(x),
                    ax.py(y),
                    SHAPES[i % SHAPES.len()],
                    7.0,
                    Some(category(i)),
                    category(i),
                );
            }
        }
    }
    if has_cka {
        for (li, l) in stats.layers.iter().enumerate() {
            if let Some(s) = l.cka {
                scene.marker(
                    ax.px(li as f64),
                    ax.py(s.mean),
                    crate::scene::Shape::Circle,
                    7.0,
                    None,
                    BLACK,
                );
            }
        }
    }
    if stats.pairs == 0 {
        scene.text(
            ax.left + ax.width / 2.0,
            ax.top + ax.height / 2.0,
            "no seed-pair comparisons in results",
            14.0,
            Anchor::Middle,
            MID,
        );
    }
    legend(&mut scene, ax.right() + 36.0, top - 4.0, &entries, FONT);
    scene
}

/// ε-profiles: fraction of neurons in the maximum match versus ε, one line per layer.
pub fn profiles(stats: &Stats) -> Scene {
    let n = stats.layers.len();
    let entries: Vec<(Key, String)> = std::iter::once((Key::Heading, "layer (depth)".to_string()))
        .chain(stats.layers.iter().enumerate().map(|(i, l)| {
            (
                Key::Line {
                    color: sequential(i, n),
                    width: 2.0,
                    dash: None,
                    marker: None,
                },
                l.name.clone(),
            )
        }))
        .collect();
    let legend_w = entries
        .iter()
        .map(|(_, l)| text_width(l, FONT) + 38.0)
        .fold(0.0, f64::max);
    let left = 66.0;
    let top = 62.0;
    let plot_w = 620.0;
    let plot_h = (330.0f64).max(entries.len() as f64 * FONT * 1.55 - 10.0);
    let width = left + plot_w + 36.0 + legend_w + 20.0;
    let height = top + plot_h + 64.0;
    let title = "Match profile by layer";
    let mut scene = Scene::new(width.round(), height.round(), title);
    titles(
        &mut scene,
        14.0,
        title,
        &format!(
            "fraction of neurons in the maximum match as ε grows, mean over {} seed pair{}; dotted: the ε of the table",
            stats.pairs,
            if stats.pairs == 1 { "" } else { "s" }
        ),
    );
    let ax = Axes {
        left,
        top,
        width: plot_w,
        height: plot_h,
        x: (0.0, 1.0),
        y: (0.0, 1.0),
    };
    ax.y_axis(&mut scene, &unit_ticks(), FONT);
    let xt: Vec<(f64, String)> = nice_ticks(0.0, 1.0, 10)
        .into_iter()
        .map(|v| (v, tick_label(v, 0.1)))
        .collect();
    for (v, _) in &xt {
        let x = ax.px(*v);
        scene.line(vec![(x, ax.top), (x, ax.bottom())], GRID, 1.0, None);
    }
    for e in &stats.eps {
        if (0.0..=1.0).contains(e) {
            let x = ax.px(*e);
            scene.line(
                vec![(x, ax.top), (x, ax.bottom())],
                Rgb(150, 150, 150),
                1.0,
                Some(&[2.0, 3.0]),
            );
        }
    }
    ax.x_axis(&mut scene, &xt, FONT);
    ax.frame(&mut scene);
    scene.text(
        ax.left + ax.width / 2.0,
        ax.bottom() + 44.0,
        "tolerance ε (sine of the angle to the other net's span)",
        LABEL,
        Anchor::Middle,
        DARK,
    );
    scene.text_full(
        18.0,
        ax.top + ax.height / 2.0,
        "fraction of neurons matched",
        LABEL,
        Anchor::Middle,
        -90.0,
        false,
        DARK,
    );
    for (i, l) in stats.layers.iter().enumerate() {
        let pts: Vec<(f64, Option<f64>)> = l.profile.iter().map(|(e, f)| (*e, Some(*f))).collect();
        for seg in segments(&pts) {
            let p = seg
                .iter()
                .map(|(x, y)| (ax.px(*x), ax.py(y.clamp(0.0, 1.0))))
                .collect();
            scene.line(p, sequential(i, n), 2.0, None);
        }
    }
    if stats.layers.iter().all(|l| l.profile.is_empty()) {
        scene.text(
            ax.left + ax.width / 2.0,
            ax.top + ax.height / 2.0,
            "no profiles in results",
            14.0,
            Anchor::Middle,
            MID,
        );
    }
    legend(&mut scene, ax.right() + 36.0, top - 4.0, &entries, FONT);
    scene
}

/// Small multiples of the simple-match size histogram, one panel per layer that has them;
/// `None` when no layer has simple-match data.
pub fn simple_sizes(stats: &Stats) -> Option<Scene> {
    let with: Vec<_> = stats
        .layers
        .iter()
        .filter_map(|l| l.simple.as_ref().map(|s| (l, s)))
        .collect();
    if with.is_empty() {
        return None;
    }
    let cols = with.len().min(4);
    let rows = with.len().div_ceil(cols);
    let (pw, ph) = (210.0, 150.0);
    let (gap_x, gap_y) = (62.0, 74.0);
    let left = 74.0;
    let top = 66.0;
    let width = left + cols as f64 * pw + (cols - 1) as f64 * gap_x + 24.0;
    let height = top + rows as f64 * ph + (rows - 1) as f64 * gap_y + 76.0;
    let title = "Simple matches by size";
    let mut scene = Scene::new(width.round(), height.round(), title);
    let eps: Vec<String> = {
        let mut v: Vec<String> = with.iter().map(|(_, s)| eps_label(s.eps)).collect();
        v.dedup();
        v
    };
    let n_pairs = with.iter().map(|(_, s)| s.n).max().unwrap_or(0);
    titles(
        &mut scene,
        14.0,
        title,
        &format!(
            "at ε = {}; mean number of simple matches of each size over {} seed pair{}",
            eps.join(", "),
            n_pairs,
            if n_pairs == 1 { "" } else { "s" }
        ),
    );
    let bar = Rgb(0, 114, 178);
    // One x range for every panel, so that the panels compare at a glance.
    let max_size = with
        .iter()
        .flat_map(|(_, s)| s.hist.iter().map(|(z, _)| *z))
        .max()
        .unwrap_or(2)
        .max(4);
    let min_size = with
        .iter()
        .flat_map(|(_, s)| s.hist.iter().map(|(z, _)| *z))
        .min()
        .unwrap_or(2)
        .min(2);
    for (k, (layer, s)) in with.iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        let max_count = s.hist.iter().map(|(_, c)| *c).fold(0.0, f64::max);
        // Counts: integer steps, at least 0..2.
        let t = nice_ticks(0.0, max_count.max(2.0), 4);
        let ystep = if t.len() > 1 {
            (t[1] - t[0]).max(1.0)
        } else {
            1.0
        };
        let ytop = (max_count.max(2.0) / ystep).ceil() * ystep;
        let ax = Axes {
            left: left + c as f64 * (pw + gap_x),
            top: top + 18.0 + r as f64 * (ph + gap_y),
            width: pw,
            height: ph - 18.0,
            x: (min_size as f64 - 0.6, max_size as f64 + 0.6),
            y: (0.0, ytop),
        };
        scene.text_full(
            ax.left,
            ax.top - 8.0,
            &layer.name,
            12.0,
            Anchor::Start,
            0.0,
            true,
            DARK,
        );
        scene.text(
            ax.right(),
            ax.top - 8.0,
            &format!("{:.1} matches, largest {}", s.mean_count, s.largest),
            10.5,
            Anchor::End,
            MID,
        );
        let yt: Vec<(f64, String)> = (0..=(ytop / ystep).round() as usize)
            .map(|k| k as f64 * ystep)
            .map(|v| (v, tick_label(v, ystep)))
            .collect();
        ax.y_axis(&mut scene, &yt, 10.5);
        let span = (max_size - min_size) as f64;
        let xstep = nice_ticks(0.0, span.max(1.0), 6);
        let xstep = if xstep.len() > 1 {
            (xstep[1] - xstep[0]).max(1.0)
        } else {
            1.0
        };
        let xt: Vec<(f64, String)> = nice_ticks(
            min_size as f64,
            max_size as f64,
            ((span / xstep) as usize).max(1),
        )
        .into_iter()
        .filter(|v| v.fract() == 0.0)
        .map(|v| (v, format!("{v:.0}")))
        .collect();
        ax.x_axis(&mut scene, &xt, 10.5);
        let bw = (ax.px(1.0) - ax.px(0.0)) * 0.8;
        for (size, count) in &s.hist {
            let x = ax.px(*size as f64);
            let y = ax.py(*count);
            scene.rect(x - bw / 2.0, y, bw, ax.bottom() - y, Some(bar), None);
        }
        ax.frame(&mut scene);
    }
    scene.text(
        width / 2.0,
        height - 16.0,
        "simple-match size |X′| + |Y′| (neurons)",
        LABEL,
        Anchor::Middle,
        DARK,
    );
    scene.text_full(
        20.0,
        top + (height - top - 60.0) / 2.0,
        "number of simple matches",
        LABEL,
        Anchor::Middle,
        -90.0,
        false,
        DARK,
    );
    Some(scene)
}
