//! `spanmatch`: to what extent do two neural networks learn the same representation?
//!
//! The command line is thin: argument parsing (clap), progress bars and printing. Everything it
//! computes comes from the library API in `spanmatch-engine` (the same code the Python bindings
//! call); subcommands live in `commands/` (one module each).

mod commands;
mod progress;

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
    Report(commands::report::ReportArgs),
    /// Train one network (seeded; checkpoints in --out; an interrupted run resumes).
    Train(commands::train::TrainArgs),
    /// Run a trained network over a test set and write every ReLU layer's activations to .npz.
    Extract(commands::train::ExtractArgs),
    /// Training throughput (images/s) of a model on synthetic data.
    BenchTraining(commands::train::BenchArgs),
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
        Command::Report(args) => commands::report::run(args),
        Command::Train(args) => commands::train::run_train(args),
        Command::Extract(args) => commands::train::run_extract(args),
        Command::BenchTraining(args) => commands::train::run_bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own consistency checks, and a help text on every argument of every subcommand.
    #[test]
    fn every_argument_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut checked = 0;
        for sub in cli.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "{} has no description",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                if ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "spanmatch {} --{} has no help text",
                    sub.get_name(),
                    arg.get_id()
                );
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} arguments checked");
    }
}
