//! `spanmatch simple A B --layer NAME --eps E`: the simple matches of one layer pair (every
//! v-minimal match of the neurons in the maximum match), de-duplicated, with sizes.

use crate::commands::compare::{tolerances, DeadArg, LayoutArg};
use crate::progress::Bars;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use spanmatch_core::simple::{
    simple_matches_progress, verify, Neuron, SimpleMatch, SimpleMatches, SimpleOptions,
    Verification,
};
use spanmatch_core::{DeadPolicy, MatchOptions, MatchProblem, Side};
use spanmatch_engine::compare::file_layer_stats;
use spanmatch_io::Layout;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Arguments of `spanmatch simple`.
#[derive(Debug, Args)]
#[command(
    about = "Simple matches of one layer pair: the smallest groups of neurons that match",
    long_about = "Simple matches (Wang et al., NeurIPS 2018) are the finest-grained answer to \"which \
groups of neurons of the two nets learned the same thing\": ε-matches that are not unions of smaller \
matches. For every neuron v of the maximum match, spanmatch finds a v-minimal match (a match \
containing v with no smaller match containing v) with the reference algorithm, and reports the \
distinct ones with their sizes. At ε = 0 with linearly independent neurons on each side the result \
is exact and complete; otherwise it depends on the order in which neurons are tried, and --orders \
adds seeded random orders. Ctrl-C stops early and still prints and writes what was found.",
    after_help = "Examples:\n  spanmatch example --out demo\n  spanmatch simple demo/net_a.npz demo/net_b.npz --layer fc1 --eps 0.25 --verify\n  spanmatch simple demo/net_a.npz demo/net_b.npz --layer fc1 --eps 0.25 --witness a:3,b:7"
)]
pub struct SimpleArgs {
    /// Activations of net A (.npz, .npy or .safetensors).
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// Activations of net B on the same inputs, in the same order.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// The layer (array name) to analyse; optional when both files hold exactly one layer.
    #[arg(long)]
    pub layer: Option<String>,
    /// ε of the matches, in [0, 1] (sine of the largest angle allowed to the other side's span).
    #[arg(long, default_value_t = 0.25)]
    pub eps: f64,
    /// Seeded random orders tried in addition to the deterministic one; every distinct match
    /// found is reported with how often it was found.
    #[arg(long, default_value_t = 0)]
    pub orders: usize,
    /// Seed of the random orders.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the matches as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Re-check every reported match (an ε-match, and v-minimal for its witnesses) and print the
    /// checks.
    #[arg(long)]
    pub verify: bool,
    /// Dead neurons: drop (reference code) or match (literal definition).
    #[arg(long, value_enum, default_value_t = DeadArg::Drop)]
    pub dead: DeadArg,
    /// Axis order of rank ≥ 3 arrays.
    #[arg(long, value_enum, default_value_t = LayoutArg::Nchw)]
    pub layout: LayoutArg,
    /// Sine tolerance (default 1e-6).
    #[arg(long, value_name = "SINE_TOL")]
    pub tol: Option<f64>,
    /// Number of largest matches listed in the summary.
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// Only the simple matches of these neurons ("which group does channel 17 belong to?"):
    /// `a:17` is neuron 17 of net A, `b:3` neuron 3 of net B; comma-separated or repeated. The
    /// result is the full search's for these neurons, at a cost per neuron asked instead of per
    /// neuron of the layer.
    #[arg(long, value_name = "a:I,b:J", value_delimiter = ',', value_parser = parse_witness)]
    pub witness: Vec<Neuron>,
}

/// Parses `a:17` / `b:3` (side letter in either case).
fn parse_witness(s: &str) -> Result<Neuron, String> {
    let bad = || {
        format!("'{s}' is not a neuron: write a:INDEX for net A or b:INDEX for net B (e.g. a:17)")
    };
    let (side, index) = s.trim().split_once(':').ok_or_else(bad)?;
    let side = match side.trim() {
        "a" | "A" => Side::A,
        "b" | "B" => Side::B,
        _ => return Err(bad()),
    };
    let index = index.trim().parse::<usize>().map_err(|_| bad())?;
    Ok((side, index))
}

/// One match in the JSON output.
#[derive(Debug, Serialize)]
struct MatchOut<'a> {
    a: &'a [usize],
    b: &'a [usize],
    count: usize,
    size: usize,
    witnesses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
}

/// The JSON document of `spanmatch simple`.
#[derive(Debug, Serialize)]
struct SimpleOut<'a> {
    spanmatch_version: &'static str,
    layer: &'a str,
    eps: f64,
    simple_matches: Vec<MatchOut<'a>>,
    exact_case: bool,
    orders: usize,
    seed: u64,
    complete: bool,
    neurons_done: usize,
    neurons_total: usize,
    size_histogram: BTreeMap<usize, usize>,
    /// The neurons asked about with `--witness` (absent for the full search).
    #[serde(skip_serializing_if = "Option::is_none")]
    witnesses_asked: Option<Vec<String>>,
    /// Asked neurons outside the maximum match (no match contains them).
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched: Option<Vec<String>>,
}

fn neuron_label((side, i): (Side, usize)) -> String {
    match side {
        Side::A => format!("A{i}"),
        Side::B => format!("B{i}"),
    }
}

/// Simple matches of a problem with a progress bar (for the given neurons only, or every
/// neuron of the maximum match with `None`); Ctrl-C stops early (partial result).
pub fn run_simple_for(
    problem: &MatchProblem,
    options: &SimpleOptions,
    witnesses: Option<&[Neuron]>,
) -> Result<SimpleMatches> {
    let mut bars = Bars::new();
    let progress = |p| {
        if bars.simple_work(p) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    };
    let asked = witnesses.map(|w| {
        let pick =
            |side: Side| -> Vec<usize> { w.iter().filter(|v| v.0 == side).map(|v| v.1).collect() };
        (pick(Side::A), pick(Side::B))
    });
    Ok(simple_matches_progress(
        problem,
        options,
        asked.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice())),
        progress,
    )?)
}

/// Runs `spanmatch simple`.
pub fn run(args: &SimpleArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.eps) {
        bail!(
            "--eps: ε = {} is outside [0, 1] (ε is the sine of an angle)",
            args.eps
        );
    }
    let tol = tolerances(args.tol)?;
    let layout = Layout::from(args.layout);
    let dead = DeadPolicy::from(args.dead);
    let (name, stats) = file_layer_stats(
        &args.a,
        &args.b,
        args.layer.as_deref(),
        layout,
        &mut Bars::new(),
    )?;
    let problem = MatchProblem::new(&stats, MatchOptions { tol, dead })
        .with_context(|| format!("layer '{name}'"))?;
    let options = SimpleOptions {
        eps: args.eps,
        orders: args.orders,
        seed: args.seed,
    };
    let witnesses = (!args.witness.is_empty()).then_some(args.witness.as_slice());
    let result = run_simple_for(&problem, &options, witnesses).context("--witness")?;
    let checks: Option<Vec<Verification>> = if args.verify {
        Some(
            result
                .matches
                .iter()
                .map(|m| verify(&problem, args.eps, m))
                .collect::<Result<_, _>>()?,
        )
    } else {
        None
    };
    print!(
        "{}",
        summary(&name, &result, checks.as_deref(), args.show, witnesses)
    );
    if let Some(path) = &args.json {
        let mut doc = to_json(&name, &result, checks.as_deref(), args.seed);
        if let Some(w) = witnesses {
            doc.witnesses_asked = Some(w.iter().map(|&v| neuron_label(v)).collect());
            doc.unmatched = Some(result.unmatched.iter().map(|&v| neuron_label(v)).collect());
        }
        let text = serde_json::to_string_pretty(&doc).context("encoding JSON")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(c) = &checks {
        if c.iter().any(|v| !v.passed()) {
            bail!("verification failed for at least one reported match (see above)");
        }
    }
    Ok(())
}

fn histogram(result: &SimpleMatches) -> BTreeMap<usize, usize> {
    let mut h = BTreeMap::new();
    for m in &result.matches {
        *h.entry(m.size()).or_insert(0) += 1;
    }
    h
}

fn to_json<'a>(
    layer: &'a str,
    r: &'a SimpleMatches,
    checks: Option<&[Verification]>,
    seed: u64,
) -> SimpleOut<'a> {
    SimpleOut {
        spanmatch_version: env!("CARGO_PKG_VERSION"),
        layer,
        eps: r.eps,
        simple_matches: r
            .matches
            .iter()
            .enumerate()
            .map(|(k, m): (usize, &SimpleMatch)| MatchOut {
                a: &m.a,
                b: &m.b,
                count: m.count,
                size: m.size(),
                witnesses: m.witnesses.iter().map(|&v| neuron_label(v)).collect(),
                verified: checks.map(|c| c[k].passed()),
            })
            .collect(),
        exact_case: r.exact_case,
        orders: r.orders,
        seed,
        complete: r.complete,
        neurons_done: r.neurons_done,
        neurons_total: r.neurons_total,
        size_histogram: histogram(r),
        witnesses_asked: None,
        unmatched: None,
    }
}

fn summary(
    layer: &str,
    r: &SimpleMatches,
    checks: Option<&[Verification]>,
    show: usize,
    witnesses: Option<&[Neuron]>,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(w) = witnesses {
        let label = |v: &[Neuron]| -> String {
            v.iter()
                .map(|&n| neuron_label(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "simple matches of the neurons {} only (the full search restricted to them)",
            label(w)
        );
        if !r.unmatched.is_empty() {
            let _ = writeln!(
                s,
                "outside the maximum match at ε = {} (in no match): {}",
                r.eps,
                label(&r.unmatched)
            );
        }
    }
    let _ = writeln!(
        s,
        "layer {layer}, ε = {}: {} distinct simple matches from {} neurons of the maximum match ({} order{}){}",
        r.eps,
        r.matches.len(),
        r.neurons_total,
        r.orders,
        if r.orders == 1 { "" } else { "s" },
        if r.complete { "" } else { " — INTERRUPTED, partial result" }
    );
    let _ = writeln!(
        s,
        "exact case (ε = 0, independent neurons on each side): {}",
        if r.exact_case {
            "yes: each match is the v-minimum match and the list is complete"
        } else {
            "no: v-minimal matches found by the reference algorithm (order-dependent)"
        }
    );
    let _ = writeln!(s, "size |X'|+|Y'|  matches");
    for (size, count) in histogram(r) {
        let _ = writeln!(s, "{size:>14}  {count}");
    }
    if !r.matches.is_empty() {
        let _ = writeln!(s, "largest matches (A neurons | B neurons, times found):");
        for m in r.matches.iter().take(show) {
            let _ = writeln!(s, "  {:?} | {:?}  x{}", m.a, m.b, m.count);
        }
    }
    if let Some(c) = checks {
        let failed = c.iter().filter(|v| !v.passed()).count();
        let _ = writeln!(
            s,
            "verification: {} of {} matches re-checked as ε-matches and v-minimal for their witnesses{}",
            c.len() - failed,
            c.len(),
            if failed == 0 { String::new() } else { format!("; {failed} FAILED") }
        );
        for (m, v) in r.matches.iter().zip(c) {
            if !v.passed() {
                let _ = writeln!(s, "  failed: {:?} | {:?}: {v:?}", m.a, m.b);
            }
        }
    }
    s
}
