//! End-to-end tests of the results schema and the report renderer.

use std::path::{Path, PathBuf};

use spanmatch_report::{
    accuracy_label, example_results, raster::Fonts, read_results, render, render_with, rerender,
    write_results, ComparisonKind, RenderOptions, MMS_PNG, PROFILES_PNG, REPORT_HTML, SIMPLE_PNG,
};

/// A fresh, empty directory under the system temp dir, unique to this test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spanmatch-report-test-{}-{}",
        std::process::id(),
        name
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_png(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 100 && bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A])
}

#[test]
fn example_renders_a_complete_report() {
    let results = example_results();
    let dir = temp_dir("complete");
    let written = render(&results, &dir).unwrap();
    let html_path = dir.join(REPORT_HTML);
    assert_eq!(written[0], html_path);
    let html = std::fs::read_to_string(&html_path).unwrap();

    // One <svg per figure: mms by layer, profiles, simple sizes (the example has simple data).
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("</svg>").count(), 3);
    assert_eq!(html.matches("<figure>").count(), 3);

    // Every layer name and every net's accuracy is shown.
    for layer in &results.layers {
        assert!(
            html.contains(&format!(">{}<", layer.name)),
            "layer {} missing",
            layer.name
        );
    }
    for net in &results.nets {
        let acc = accuracy_label(net.test_accuracy);
        assert!(
            html.contains(&acc),
            "accuracy {acc} of seed {} missing",
            net.seed
        );
    }
    // Every ε appears as a legend entry and a table column.
    for e in ["0.15", "0.2", "0.25", "0.3", "0.5"] {
        assert!(html.contains(&format!("ε = {e}<")), "legend ε = {e}");
        assert!(html.contains(&format!("<th>ε={e}</th>")), "column ε={e}");
    }
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"));
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(!html.contains("https://"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("<img"));
    // The self-check passed and is reported.
    assert!(html.contains("Self-check <span class=\"ok\">passed</span>"));

    if Fonts::discover().is_some() {
        for name in [MMS_PNG, PROFILES_PNG, SIMPLE_PNG] {
            let p = dir.join(name);
            assert!(written.contains(&p), "{name} not reported as written");
            assert!(is_png(&p), "{name} is not a PNG");
        }
        assert_eq!(written.len(), 4);
    } else {
        eprintln!("no font on this machine: PNG checks skipped");
        assert_eq!(written.len(), 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_simple_data_means_two_figures_and_no_simple_png() {
    let mut results = example_results();
    for c in &mut results.comparisons {
        for l in &mut c.layers {
            l.simple = None;
        }
    }
    let dir = temp_dir("nosimple");
    let written = render(&results, &dir).unwrap();
    let html = std::fs::read_to_string(dir.join(REPORT_HTML)).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(!dir.join(SIMPLE_PNG).exists());
    assert!(written.iter().all(|p| !p.ends_with(SIMPLE_PNG)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn results_json_round_trip() {
    let results = example_results();
    let dir = temp_dir("roundtrip");
    let path = dir.join("results.json");
    write_results(&results, &path).unwrap();
    let back = read_results(&path).unwrap();
    assert_eq!(back, results);
    // The kinds are spelled as in the schema, which is named and versioned.
    let text = std::fs::read_to_string(&path).unwrap();
    for kind in ["pair", "self", "null", "untrained"] {
        assert!(text.contains(&format!("\"kind\": \"{kind}\"")), "{kind}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], "spanmatch-results");
    assert_eq!(v["schema_version"], 3);
    assert_eq!(v["front"], "reproduce");
    // 3 seed pairs, a self-check, a null and the 3 untrained pairs.
    assert_eq!(v["comparisons"].as_array().unwrap().len(), 8);
    assert_eq!(
        v["comparisons"][0]["layers"][0]["profile"]
            .as_array()
            .unwrap()
            .len(),
        101
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_has_the_promised_shape() {
    let r = example_results();
    assert_eq!(r.layers.len(), 8);
    assert_eq!(r.nets.len(), 3);
    assert_eq!(r.eps.len(), 5);
    let count = |k| r.comparisons.iter().filter(|c| c.kind == k).count();
    assert_eq!(count(ComparisonKind::Pair), 3);
    assert_eq!(count(ComparisonKind::SelfCheck), 1);
    assert_eq!(count(ComparisonKind::Null), 1);
    for c in &r.comparisons {
        for l in &c.layers {
            assert_eq!(l.mms().len(), r.eps.len());
            assert!(l.mms().iter().all(|m| (0.0..=1.0).contains(m)));
            if c.kind == ComparisonKind::SelfCheck {
                assert!(l.mms().iter().all(|m| *m == 1.0));
            }
        }
    }
    // High at the ends, low in the middle (mean over pairs at the largest ε).
    let mean_last = |li: usize| {
        let v: Vec<f64> = r
            .comparisons
            .iter()
            .filter(|c| c.kind == ComparisonKind::Pair)
            .map(|c| *c.layers[li].mms().last().unwrap())
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean_last(0) > 2.0 * mean_last(4));
    assert!(mean_last(7) > 2.0 * mean_last(4));
}

#[test]
fn missing_file_error_names_the_file() {
    let dir = temp_dir("missing");
    let path = dir.join("nope").join("results.json");
    let err = read_results(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains(&path.display().to_string()),
        "{err:#}"
    );
    let err = rerender(&path, Some(&dir), false).unwrap_err();
    assert!(
        format!("{err:#}").contains(&path.display().to_string()),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_json_error_names_the_file() {
    let dir = temp_dir("invalid");
    for (i, text) in ["{ not json", "{\"spanmatch_version\": \"0.1\"}", "[]"]
        .iter()
        .enumerate()
    {
        let path = dir.join(format!("bad{i}.json"));
        std::fs::write(&path, text).unwrap();
        let err = rerender(&path, Some(&dir.join("out")), false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not a valid"), "{msg}");
    }
    assert!(!dir.join("out").join(REPORT_HTML).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rerender_writes_next_to_results_json() {
    let dir = temp_dir("rerender");
    let path = dir.join("results.json");
    write_results(&example_results(), &path).unwrap();
    rerender(&path, None, false).unwrap();
    assert!(dir.join(REPORT_HTML).is_file());
    assert!(!dir.join(MMS_PNG).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rendering_is_deterministic() {
    let results = example_results();
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    let opts = RenderOptions {
        png: false,
        ..RenderOptions::default()
    };
    render_with(&results, &a, opts).unwrap();
    render_with(&results, &b, opts).unwrap();
    let ha = std::fs::read(a.join(REPORT_HTML)).unwrap();
    let hb = std::fs::read(b.join(REPORT_HTML)).unwrap();
    assert!(ha == hb, "two renders differ");
    // Round-tripped results render identically too.
    let p = a.join("results.json");
    write_results(&results, &p).unwrap();
    render_with(&read_results(&p).unwrap(), &b, opts).unwrap();
    assert!(ha == std::fs::read(b.join(REPORT_HTML)).unwrap());
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn degenerate_results_render_without_panicking() {
    let mut r = example_results();
    // No pairs, a missing mms value, a layer only present in comparisons, NaN-free but empty lists.
    r.comparisons.retain(|c| c.kind != ComparisonKind::Pair);
    r.comparisons[0].layers[0].matches.truncate(2);
    r.comparisons[0].layers[1].name = "extra".to_string();
    for m in &mut r.comparisons[0].layers[1].matches {
        m.mms = 0.5;
    }
    r.layers.truncate(3);
    r.comparisons[0].layers[2].profile.clear();
    let dir = temp_dir("degenerate");
    render(&r, &dir).unwrap();
    let html = std::fs::read_to_string(dir.join(REPORT_HTML)).unwrap();
    assert!(html.contains(">extra<"));
    assert!(html.contains("Self-check <span class=\"bad\">FAILED</span>"));

    let empty = spanmatch_report::Results::new(
        spanmatch_engine::results::Front::Python,
        "",
        "",
        &spanmatch_engine::Options {
            eps: vec![],
            ..Default::default()
        },
    );
    render(&empty, &dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untrained_baseline_is_a_series_and_a_table_column() {
    let opts = RenderOptions {
        png: false,
        ..RenderOptions::default()
    };
    let results = example_results();
    let dir = temp_dir("untrained");
    render_with(&results, &dir, opts).unwrap();
    let html = std::fs::read_to_string(dir.join(REPORT_HTML)).unwrap();
    assert!(html.contains("untrained nets (same seeds)"), "legend entry");
    assert!(html.contains("trained minus untrained mms"), "table column");
    assert!(
        html.contains("Untrained baseline (the same seeds"),
        "at a glance"
    );
    // The example's trained pairs match more than the untrained ones: positive differences.
    assert!(html.contains("<td>+0."));
    // Results without untrained comparisons nor summaries render without the column.
    let mut old = results.clone();
    old.comparisons
        .retain(|c| c.kind != ComparisonKind::Untrained);
    for c in &mut old.comparisons {
        for l in &mut c.layers {
            l.untrained = None;
        }
    }
    let d2 = temp_dir("untrained-old");
    render_with(&old, &d2, opts).unwrap();
    let html = std::fs::read_to_string(d2.join(REPORT_HTML)).unwrap();
    assert!(!html.contains("trained minus untrained"));
    assert!(!html.contains("untrained nets (same seeds)"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&d2);
}

/// The results files written before schema version 3, by the code of that time.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spanmatch-engine/tests/fixtures")
        .join(name)
}

#[test]
fn legacy_files_render_and_very_old_ones_without_per_neuron_fields_too() {
    let opts = RenderOptions {
        png: false,
        ..RenderOptions::default()
    };
    for name in [
        "legacy_reproduce.json",
        "legacy_compare.json",
        "legacy_python.json",
        "legacy_torch_cross.json",
    ] {
        let dir = temp_dir(&format!("legacy-{name}"));
        let written = rerender(&fixture(name), Some(&dir), false).unwrap();
        let html = std::fs::read_to_string(&written[0]).unwrap();
        assert!(html.contains("<svg"), "{name}");
        let r = read_results(&fixture(name)).unwrap();
        for l in &r.layers {
            assert!(
                html.contains(&format!(">{}<", l.name)),
                "{name}: {}",
                l.name
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A reproduce results.json written before thresholds and simple-match indices were kept.
    let text = std::fs::read_to_string(fixture("legacy_reproduce.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for c in v["comparisons"].as_array_mut().unwrap() {
        for l in c["layers"].as_array_mut().unwrap() {
            let l = l.as_object_mut().unwrap();
            assert!(l.remove("thresholds_a").is_some() && l.remove("thresholds_b").is_some());
            if let Some(s) = l.get_mut("simple").and_then(|s| s.as_object_mut()) {
                assert!(s.remove("matches").is_some());
            }
        }
    }
    let dir = temp_dir("very-old");
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let back = read_results(&path).unwrap();
    let layers: Vec<_> = back.comparisons.iter().flat_map(|c| &c.layers).collect();
    assert!(layers
        .iter()
        .all(|l| l.thresholds_a.is_empty() && l.matches.iter().all(|m| m.a.is_empty())));
    // The simple matches' summaries survive without their indices.
    let s = layers.iter().find_map(|l| l.simple.as_ref()).unwrap();
    assert!(s.matches.is_empty() && s.count > 0 && s.largest > 0 && !s.size_histogram.is_empty());
    write_results(&back, &path).unwrap();
    render_with(&read_results(&path).unwrap(), &dir, opts).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verdicts_show_in_the_table_and_at_a_glance() {
    let results = example_results();
    let words: Vec<_> = results
        .primary()
        .unwrap()
        .layers
        .iter()
        .map(|l| l.verdict.expect("the example has both controls").word())
        .collect();
    let dir = temp_dir("verdict");
    render_with(
        &results,
        &dir,
        RenderOptions {
            png: false,
            ..RenderOptions::default()
        },
    )
    .unwrap();
    let html = std::fs::read_to_string(dir.join(REPORT_HTML)).unwrap();
    assert!(html.contains("verdict<br>ε=0.5"), "table column");
    for w in &words {
        assert!(html.contains(&format!("verdict: <b>{w}</b>")), "{w}");
    }
    // The centred match is its own series in the mms figure.
    assert!(html.contains("centred match, ε = 0.5"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn results_without_controls_still_render_and_controls_show() {
    // With controls (the example's trained pairs carry intervals, rotation null, centred mms).
    let results = example_results();
    let dir = temp_dir("controls");
    let path = dir.join("results.json");
    write_results(&results, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"intervals\"") && text.contains("\"null\": {"));
    assert!(text.contains("\"centered\"") && text.contains("\"verdict\""));
    assert_eq!(read_results(&path).unwrap(), results);
    rerender(&path, None, false).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("rotation null<br>"), "rotation null column");
    assert!(html.contains("centred mms<br>"), "centred column");
    assert!(html.contains("[95 % interval over test images]"));
    assert!(html.contains("above untrained") || html.contains("below untrained"));
    assert!(html.contains("the rotation null ("));

    // results.json written before the controls existed: no such fields, no such columns.
    let mut v = serde_json::to_value(&results).unwrap();
    let mut stripped = 0;
    for c in v["comparisons"].as_array_mut().unwrap() {
        for l in c["layers"].as_array_mut().unwrap() {
            let l = l.as_object_mut().unwrap();
            for k in ["intervals", "null", "centered", "untrained", "verdict"] {
                stripped += usize::from(l.remove(k).is_some());
            }
        }
    }
    assert!(stripped > 0);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let back = read_results(&path).unwrap();
    assert!(back
        .comparisons
        .iter()
        .flat_map(|c| &c.layers)
        .all(|l| l.intervals.is_none() && l.null.is_none() && l.centered.is_none()));
    rerender(&path, None, false).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains("rotation null<br>") && !html.contains("centred mms<br>"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `points` of every `<polygon>` of `svg` with the given fill opacity.
fn polygons_with_opacity(svg: &str, opacity: &str) -> Vec<Vec<(f64, f64)>> {
    svg.lines()
        .filter(|l| {
            l.starts_with("<polygon ") && l.contains(&format!("fill-opacity=\"{opacity}\""))
        })
        .map(|l| {
            let p = l
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            p.split(' ')
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn bootstrap_intervals_are_a_band_in_the_mms_figure() {
    use spanmatch_report::{figures::mms_by_layer, stats::compute};
    const LABEL: &str = "95 % interval over test images";
    // The example's trained pairs carry intervals at every ε and layer.
    let results = example_results();
    let stats = compute(&results);
    let svg = mms_by_layer(&stats).to_svg();
    assert!(svg.contains(LABEL), "legend entry");
    assert!(
        svg.contains("bootstrap interval of mms over the test images"),
        "subtitle"
    );
    let bands = polygons_with_opacity(&svg, "0.07");
    // One band per ε (every layer has an interval), each through every layer and back.
    let n = stats.layers.len();
    assert!(n >= 2);
    assert_eq!(bands.len(), stats.eps.len());
    // The upper edge of ε 0's band sits at the highest end over the pairs: y = top + h (1 - hi)
    // with the plot 330 px high starting at 76 px (below the two subtitle lines).
    for (li, l) in stats.layers.iter().enumerate() {
        let (lo, hi) = l.mms_interval[0].expect("example interval");
        assert!(lo <= hi);
        let b = &bands[0];
        assert_eq!(b.len(), 2 * n);
        assert!(
            (b[li].1 - (76.0 + 330.0 * (1.0 - hi))).abs() < 0.011,
            "hi at layer {li}"
        );
        assert!(
            (b[2 * n - 1 - li].1 - (76.0 + 330.0 * (1.0 - lo))).abs() < 0.011,
            "lo at layer {li}"
        );
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
    }
    // The min–max band is still there, one per ε.
    assert_eq!(polygons_with_opacity(&svg, "0.16").len(), stats.eps.len());

    // Without intervals (older results.json): no interval band, legend entry or second
    // subtitle line, and the plot starts at 62 px as before.
    let mut old = results.clone();
    for c in &mut old.comparisons {
        for l in &mut c.layers {
            l.intervals = None;
        }
    }
    let svg_old = mms_by_layer(&compute(&old)).to_svg();
    assert!(!svg_old.contains(LABEL) && !svg_old.contains("bootstrap interval"));
    assert!(polygons_with_opacity(&svg_old, "0.07").is_empty());
    assert_eq!(
        polygons_with_opacity(&svg_old, "0.16").len(),
        stats.eps.len()
    );
    let mm = compute(&old).layers[0].mms[0].expect("example mms");
    let (lo, hi) = (mm.min, mm.max);
    let band = &polygons_with_opacity(&svg_old, "0.16")[0];
    assert!((band[0].1 - (62.0 + 330.0 * (1.0 - hi))).abs() < 0.011);
    assert!((band[band.len() - 1].1 - (62.0 + 330.0 * (1.0 - lo))).abs() < 0.011);
}
