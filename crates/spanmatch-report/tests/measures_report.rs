//! The report carries the measures: the per-layer table's one-to-one columns (partners inside
//! the span match, mean correlation) and the Measures section with every requested number and
//! its controls, on a planted pair with known answers (a permuted copy: one-to-one = 1, every
//! rotation less alike).

use spanmatch_core::controls::ChunkedStats;
use spanmatch_core::measures::Measure;
use spanmatch_core::{GramAccumulator, JointStats};
use spanmatch_engine::analysis::{analyse_pair, BaselineInput, LayerLabel, PairInput};
use spanmatch_engine::options::{NullKind, Options};
use spanmatch_engine::results::{Comparison, ComparisonKind, Front, Results};
use spanmatch_engine::Quiet;
use spanmatch_report::{render_with, RenderOptions, REPORT_HTML};

/// Rows of a uniform xorshift stream in [-1, 1), ReLU'd after a shift.
fn rows(seed: u64, n: usize, cols: usize) -> Vec<Vec<f64>> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            (0..cols)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                    (2.0 * u - 0.7).max(0.0)
                })
                .collect()
        })
        .collect()
}

fn chunks(a: &[Vec<f64>], b: &[Vec<f64>], k: usize) -> Vec<JointStats> {
    let per = a.len() / k;
    (0..k)
        .map(|c| {
            let mut acc = GramAccumulator::new(a[0].len(), b[0].len());
            let block: Vec<f64> = (c * per..(c + 1) * per)
                .flat_map(|i| a[i].iter().chain(&b[i]).copied())
                .collect();
            acc.push_joint(&block).unwrap();
            acc.finish()
        })
        .collect()
}

#[test]
fn the_report_shows_the_one_to_one_columns_and_the_measures_with_their_controls() {
    let a = rows(7, 300, 5);
    let b: Vec<Vec<f64>> = a
        .iter()
        .map(|r| [4, 2, 0, 3, 1].iter().map(|&p| r[p]).collect())
        .collect();
    let (a0, b0) = (rows(8, 300, 5), rows(9, 300, 5));
    let options = Options {
        eps: vec![0.25, 0.5],
        measures: vec![Measure::Cka, Measure::OneToOne, Measure::SoftMatch],
        null: Some(NullKind::Rotate),
        null_draws: 4,
        bootstrap: Some(10),
        chunks: 5,
        ..Options::default()
    };
    let base = ChunkedStats::new(chunks(&a0, &b0, 5)).unwrap();
    let mut input = PairInput::chunked(LayerLabel::named("fc1"), chunks(&a, &b, 5)).unwrap();
    input.baseline = Some(BaselineInput {
        stats: base.merged(),
        chunks: Some(base),
    });
    let record = analyse_pair(input, &options, &mut Quiet).unwrap();
    let mut results = Results::new(Front::CliCompare, "a", "b", &options);
    results.comparisons = vec![Comparison::new(ComparisonKind::Pair, vec![record])];
    results.fill_layer_summaries();

    let dir =
        std::env::temp_dir().join(format!("spanmatch-measures-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    let _ = std::fs::remove_dir_all(&dir);
    // Per-layer table: every neuron of the match (all 10) has its partner inside; corr. 1.
    assert!(
        html.contains("1:1 partner<br>in match ε=0.5"),
        "column header"
    );
    assert!(
        html.contains("<td>10 / 10</td><td>1.000</td>"),
        "column values"
    );
    // Measures section: the numbers, their intervals, untrained values and rotation null.
    let section = &html[html.find("<h2>Measures</h2>").expect("a Measures section")..];
    for want in [
        "soft match dist.",
        "semi-match",
        "95 % interval",
        "trained − untrained",
        "rotation null<br>mean / max",
        "<td>[1.000, 1.000]</td>",
        // one_to_one: all 4 rotations less alike, p = 1/5; CKA has no null.
        "<td>0.200</td>",
        "<td class=\"null\">—</td>",
    ] {
        assert!(
            section.contains(want),
            "{want} missing in the Measures section"
        );
    }
}
