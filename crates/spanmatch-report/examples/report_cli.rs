//! `spanmatch report` as a standalone program, for trying the report on any results.json:
//! `cargo run -p spanmatch-report --example report_cli -- results.json --out DIR`.

use clap::Parser;

/// Re-render report.html and the PNG figures from a results.json.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: spanmatch_report::ReportArgs,
}

fn main() -> anyhow::Result<()> {
    spanmatch_report::run_report(Cli::parse().args)
}
