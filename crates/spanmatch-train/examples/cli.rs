//! Stand-alone driver for the library's CLI entry points (the `spanmatch` binary wires the
//! same `Args` structs as `spanmatch train|extract|bench-training`).
//!
//! `CARGO_TARGET_DIR=target-train cargo run --release -p spanmatch-train --example cli -- train --out runs/fm0`

use clap::{Parser, Subcommand};
use spanmatch_train::{run_bench, run_extract, run_train, BenchArgs, ExtractArgs, TrainArgs};

#[derive(Parser)]
#[command(about = "spanmatch-train driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train (or resume) a network.
    Train(TrainArgs),
    /// Extract post-ReLU activations to .npz.
    Extract(ExtractArgs),
    /// Training throughput on synthetic data.
    BenchTraining(BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Train(a) => run_train(&a),
        Cmd::Extract(a) => run_extract(&a),
        Cmd::BenchTraining(a) => run_bench(&a),
    }
}
