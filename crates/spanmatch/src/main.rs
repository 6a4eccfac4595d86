//! `spanmatch`: to what extent do two neural networks learn the same representation?
//!
//! Subcommands live in `commands/` (one module each), the streaming pass shared by all of them in
//! `pipeline.rs`, and tables/JSON in `output.rs`.

mod analysis;
mod commands;
mod output;
mod pairsink;
mod pipeline;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exact maximum span matches between the neurons of two networks (Wang et al., NeurIPS 2018).
#[derive(Debug, Parser)]
#[command(name = "spanmatch", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Compare(commands::compare::CompareArgs),
    Example(commands::example::ExampleArgs),
    BenchStats(commands::bench::BenchArgs),
    Bench(commands::bench_reference::BenchArgs),
    Simple(commands::simple::SimpleArgs),
    /// The paper's experiment end to end: train nets from several seeds, compare every layer of
    /// every pair (with self and chance controls) and write results.json and an HTML report.
    Reproduce(commands::reproduce::ReproduceArgs),
    /// Re-render report.html and the PNG figures from a results.json of `reproduce`.
    Report(spanmatch_report::ReportArgs),
    /// Train one network (seeded; checkpoints in --out; an interrupted run resumes).
    Train(spanmatch_train::TrainArgs),
    /// Run a trained network over a test set and write every ReLU layer's activations to .npz.
    Extract(spanmatch_train::ExtractArgs),
    /// Training throughput (images/s) of a model on synthetic data.
    BenchTraining(spanmatch_train::BenchArgs),
}

fn main() -> ExitCode {
    // Before any other thread starts: pick OpenBLAS kernels for this CPU and load the library.
    spanmatch_core::gram_kernel::init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Compare(args) => commands::compare::run(args),
        Command::Example(args) => commands::example::run(args),
        Command::BenchStats(args) => commands::bench::run(args),
        Command::Bench(args) => commands::bench_reference::run(args),
        Command::Simple(args) => commands::simple::run(args),
        Command::Reproduce(args) => commands::reproduce::run(args),
        Command::Report(args) => spanmatch_report::run_report(args.clone()),
        Command::Train(args) => spanmatch_train::run_train(args),
        Command::Extract(args) => spanmatch_train::run_extract(args),
        Command::BenchTraining(args) => spanmatch_train::run_bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
