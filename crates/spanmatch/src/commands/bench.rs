//! `spanmatch bench-stats`: times the streaming pass and the matching of a large `.npy` pair.

use anyhow::{Context, Result};
use clap::Args;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{MatchOptions, MatchProblem};
use spanmatch_engine::stream::{self as pipeline, StreamOptions};
use spanmatch_io::write::{Encoding, NpyStreamWriter};
use spanmatch_io::{ActivationFile, DType, Layout};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `spanmatch bench-stats`.
#[derive(Debug, Args)]
#[command(
    about = "Time reading + statistics + profile on a large .npy pair (generated unless given)",
    long_about = "Time the whole `compare` computation on one large layer pair: a read-only pass \
(file reading and conversion to f64), then the statistics pass (Gram accumulation) and the ε-profile. \
Without --a/--b, writes DIR/bench_a.npy and DIR/bench_b.npy ([ROWS, NEURONS] float32, ReLU features \
with a shared part) first, or reuses them if they already have that shape."
)]
pub struct BenchArgs {
    /// Folder for the generated pair.
    #[arg(long, value_name = "DIR", default_value = "out/bench")]
    pub dir: PathBuf,
    /// Rows of the generated pair.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Neurons per net of the generated pair.
    #[arg(long, default_value_t = 128)]
    pub neurons: u64,
    /// Use this file as net A instead of generating one (one-layer .npy, or give --layer).
    #[arg(long, requires = "b")]
    pub a: Option<PathBuf>,
    /// Net B's file.
    #[arg(long, requires = "a")]
    pub b: Option<PathBuf>,
    /// Layer to time (default: the first layer of A).
    #[arg(long)]
    pub layer: Option<String>,
    /// Rows per block (default: about 8 MiB per joint block, at least 1,024 rows).
    #[arg(long)]
    pub block_rows: Option<usize>,
}

fn generate(path: &Path, rows: u64, neurons: u64, seed: u64) -> Result<()> {
    if let Ok(f) = ActivationFile::open(path) {
        if f.layers().first().map(|l| l.shape.clone()) == Some(vec![rows, neurons]) {
            return Ok(());
        }
    }
    eprintln!(
        "writing {} ({} x {} float32)",
        path.display(),
        rows,
        neurons
    );
    let mut w = NpyStreamWriter::create(path, &[rows, neurons], Encoding::of(DType::F32))?;
    let mut shared = SplitMix64::new(1);
    let mut own = SplitMix64::new(seed);
    let block = 65_536u64;
    let mut buf = Vec::new();
    let mut done = 0;
    while done < rows {
        let take = block.min(rows - done);
        buf.clear();
        for _ in 0..take {
            for j in 0..neurons {
                let s = shared.normal();
                let o = own.normal();
                let v = if j % 2 == 0 { s } else { 0.6 * s + 0.8 * o };
                buf.push(v.max(0.0));
            }
        }
        w.write(&buf)?;
        done += take;
    }
    w.finish()?;
    Ok(())
}

/// Runs `spanmatch bench-stats`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let (a, b) = match (&args.a, &args.b) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => {
            std::fs::create_dir_all(&args.dir)
                .with_context(|| format!("creating {}", args.dir.display()))?;
            let (a, b) = (args.dir.join("bench_a.npy"), args.dir.join("bench_b.npy"));
            generate(&a, args.rows, args.neurons, 2)?;
            generate(&b, args.rows, args.neurons, 3)?;
            (a, b)
        }
    };
    let fa = ActivationFile::open(&a)?;
    let fb = ActivationFile::open(&b)?;
    let name = match &args.layer {
        Some(n) => n.clone(),
        None => fa
            .layers()
            .first()
            .map(|l| l.name.clone())
            .context("net A has no layer")?,
    };
    let name_b = if args.layer.is_none() && fb.layers().len() == 1 {
        fb.layers()[0].name.clone()
    } else {
        name.clone()
    };
    let readers = || -> Result<_> {
        Ok((
            fa.reader(&name, Layout::Nchw)?,
            fb.reader(&name_b, Layout::Nchw)?,
        ))
    };
    let (mut ra, mut rb) = readers()?;
    let (n1, n2) = (ra.neurons(), rb.neurons());
    let block = args
        .block_rows
        .unwrap_or_else(|| pipeline::default_block_rows(n1, n2));
    let bytes = ra.rows() * (ra.bytes_per_row() + rb.bytes_per_row());
    let gb = bytes as f64 / 1e9;

    let t = Instant::now();
    let mut buf = vec![0.0; block * (n1 + n2)];
    while ra.read_rows(block, &mut buf, n1 + n2, 0)? > 0 {
        rb.read_rows(block, &mut buf, n1 + n2, n1)?;
    }
    let read_s = t.elapsed().as_secs_f64();

    let (mut ra, mut rb) = readers()?;
    let t = Instant::now();
    let stats = pipeline::stream_pair(
        &mut ra,
        &mut rb,
        &StreamOptions {
            block_rows: block,
            sampling: None,
            chunks: None,
        },
        &mut spanmatch_engine::Quiet,
    )?;
    let stats_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let problem = MatchProblem::new(&stats.full.finish(), MatchOptions::default())?;
    let profile = problem.profile();
    let profile_s = t.elapsed().as_secs_f64();
    println!(
        "layer {name}: {} rows, {n1} + {n2} neurons, {:.3} GB of file data",
        ra.rows(),
        gb
    );
    println!(
        "read + convert only:      {read_s:8.3} s  {:8.2} GB/s",
        gb / read_s
    );
    println!(
        "read + Gram accumulation: {stats_s:8.3} s  {:8.2} GB/s",
        gb / stats_s
    );
    println!(
        "ε-profile:                {profile_s:8.3} s  (max_epsilon {:.4})",
        profile.max_epsilon()
    );
    println!("total compare:            {:8.3} s", stats_s + profile_s);
    Ok(())
}
