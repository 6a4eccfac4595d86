//! `spanmatch bench`: timings of the engine against the straightforward reference
//! implementation (`spanmatch_core::reference`) on the same generated input, with the ratio and
//! an equality check of the answers.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use faer::Mat;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::simple::{simple_matches, SimpleOptions};
use spanmatch_core::{reference, GramAccumulator, MatchProblem, Side};
use std::ops::ControlFlow;
use std::time::Instant;

/// Benchmarks of the engine against the reference implementation (medians over repeats).
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
}

#[derive(Debug, Subcommand)]
enum BenchKind {
    /// Whole `compare` computation (statistics pass, ε-profile, maximum match at every ε) versus
    /// the reference (iterated least squares on the full matrices, once per ε).
    Match {
        /// Neurons per net.
        #[arg(long, default_value_t = 256)]
        neurons: usize,
        /// Rows (samples).
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// ε values (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0.15,0.2,0.25,0.3,0.5")]
        eps: Vec<f64>,
        /// Engine repeats (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Data seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The ε-profile alone, after the statistics pass.
    Profile {
        /// Neurons per net.
        #[arg(long, default_value_t = 512)]
        neurons: usize,
        /// Repeats (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// All simple matches of a layer pair with planted blocks of dimension 1-4, optionally
    /// against the reference v-minimal algorithm.
    Simple {
        /// Neurons per net.
        #[arg(long, default_value_t = 128)]
        neurons: usize,
        /// ε of the matches.
        #[arg(long, default_value_t = 0.25)]
        eps: f64,
        /// Also run the reference (max match from scratch at every step) and compare results.
        #[arg(long)]
        reference: bool,
    },
}

/// Runs the selected benchmark and prints its result.
pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.what {
        BenchKind::Match {
            neurons,
            rows,
            eps,
            repeats,
            seed,
        } => bench_match(*neurons, *rows, eps, *repeats, *seed),
        BenchKind::Profile { neurons, repeats } => bench_profile(*neurons, *repeats),
        BenchKind::Simple {
            neurons,
            eps,
            reference,
        } => bench_simple(*neurons, *eps, *reference),
    }
}

/// ReLU activations of two nets sharing part of their representation: each net's neurons mix a
/// common latent basis (half the width) and private noise.
fn generate(rows: usize, n: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
    let mut rng = SplitMix64::new(seed);
    let k = (n / 2).max(1);
    let basis = Mat::from_fn(rows, k, |_, _| rng.normal());
    let net = |rng: &mut SplitMix64| {
        let mix = Mat::from_fn(k, n, |_, _| rng.normal());
        let mut m = &basis * &mix;
        for j in 0..n {
            for i in 0..rows {
                m[(i, j)] = (m[(i, j)] + 2.0 * rng.normal()).max(0.0);
            }
        }
        m
    };
    let x = net(&mut rng);
    let y = net(&mut rng);
    (x, y)
}

/// Planted simple matches: blocks of dimension 1, 2, 3, 4, 1, ... shared by the two nets.
fn generate_blocks(rows: usize, n: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
    let mut rng = SplitMix64::new(seed);
    let mut x = Mat::zeros(rows, n);
    let mut y = Mat::zeros(rows, n);
    let (mut c, mut d) = (0, 1);
    while c < n {
        let k = d.min(n - c);
        let basis = Mat::from_fn(rows, k, |_, _| rng.normal());
        for m in [&mut x, &mut y] {
            let mix = Mat::from_fn(k, k, |_, _| rng.normal());
            let block = &basis * &mix;
            for j in 0..k {
                for i in 0..rows {
                    m[(i, c + j)] = block[(i, j)] + 0.01 * rng.normal();
                }
            }
        }
        c += k;
        d = d % 4 + 1;
    }
    (x, y)
}

/// The engine's statistics pass in 8 MiB blocks, then the problem.
fn problem(x: &Mat<f64>, y: &Mat<f64>) -> Result<MatchProblem> {
    let (rows, n1, n2) = (x.nrows(), x.ncols(), y.ncols());
    let mut acc = GramAccumulator::new(n1, n2);
    let block_rows = ((8 << 20) / (8 * (n1 + n2)).max(1)).max(1);
    let mut buf = Vec::with_capacity(block_rows * (n1 + n2));
    let mut start = 0;
    while start < rows {
        let end = (start + block_rows).min(rows);
        buf.clear();
        for i in start..end {
            buf.extend((0..n1).map(|j| x[(i, j)]));
            buf.extend((0..n2).map(|j| y[(i, j)]));
        }
        acc.push_joint(&buf)?;
        start = end;
    }
    Ok(MatchProblem::new(&acc.finish(), Default::default())?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_match(n: usize, rows: usize, eps: &[f64], repeats: usize, seed: u64) -> Result<()> {
    if eps.iter().any(|e| !(0.0..=1.0).contains(e)) {
        bail!("every ε must lie in [0, 1], got {eps:?}");
    }
    eprintln!("generating {rows} rows x {n}+{n} neurons ...");
    let (x, y) = generate(rows, n, seed);
    let mut times = Vec::new();
    let mut engine = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let p = problem(&x, &y)?;
        let profile = p.profile();
        engine = eps
            .iter()
            .map(|&e| profile.max_match(e).map(|m| (m.a, m.b)))
            .collect::<Result<Vec<_>, _>>()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let t_engine = median(times);
    eprintln!("engine: {t_engine:.3} s; running the reference ...");
    let t = Instant::now();
    let mut same = true;
    for (k, &e) in eps.iter().enumerate() {
        if reference::max_match(&x, &y, e) != engine[k] {
            same = false;
            eprintln!("ε = {e}: reference and engine differ");
        }
    }
    let t_ref = t.elapsed().as_secs_f64();
    println!("| neurons | rows | ε values | engine (median of {repeats}) | reference | ratio | same answer |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {n}+{n} | {rows} | {} | {t_engine:.3} s | {t_ref:.2} s | {:.0}x | {same} |",
        eps.len(),
        t_ref / t_engine
    );
    if !same {
        bail!("the engine's answer differs from the reference's");
    }
    Ok(())
}

fn bench_profile(n: usize, repeats: usize) -> Result<()> {
    let (x, y) = generate(4 * n, n, 1);
    let p = problem(&x, &y)?;
    let mut times = Vec::new();
    let mut max_eps = 0.0;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        max_eps = p.profile().max_epsilon();
        times.push(t.elapsed().as_secs_f64());
    }
    println!(
        "ε-profile of {n}+{n} neurons: median {:.3} s over {repeats} runs (max_epsilon {max_eps:.4})",
        median(times)
    );
    Ok(())
}

fn bench_simple(n: usize, eps: f64, with_reference: bool) -> Result<()> {
    let (x, y) = generate_blocks(4 * n, n, 3);
    let p = problem(&x, &y)?;
    let opts = SimpleOptions {
        eps,
        orders: 0,
        seed: 0,
    };
    let t = Instant::now();
    let r =
        simple_matches(&p, &opts, |_, _| ControlFlow::Continue(())).context("simple matches")?;
    let t_engine = t.elapsed().as_secs_f64();
    println!(
        "simple matches of {n}+{n} neurons at ε = {eps}: {} distinct over {} neurons in {t_engine:.2} s",
        r.matches.len(),
        r.neurons_total
    );
    if with_reference {
        let mut full = spanmatch_core::Peeler::new(&p, p.live_a(), p.live_b());
        full.peel_until(eps);
        let order: Vec<(Side, usize)> = full.neurons();
        let engine: Vec<_> = order
            .iter()
            .map(|&v| spanmatch_core::simple::v_minimal(&full, v, eps, &order))
            .collect();
        let t = Instant::now();
        let want: Vec<_> = order
            .iter()
            .map(|&v| reference::v_minimal(&x, &y, eps, v))
            .collect();
        let t_ref = t.elapsed().as_secs_f64();
        let same = engine == want;
        println!(
            "reference (from scratch at every step): {t_ref:.1} s; ratio {:.0}x; same answer: {same}",
            t_ref / t_engine
        );
        if !same {
            bail!("the engine's simple matches differ from the reference's");
        }
    }
    Ok(())
}
