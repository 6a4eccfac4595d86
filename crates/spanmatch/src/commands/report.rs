//! `spanmatch report RESULTS.json`: render the HTML report and PNG figures of any results file.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Command-line arguments of `spanmatch report`: re-render the report from a `results.json`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A results file of any front: reproduce's results.json, `compare --json` / `--report`,
    /// Python's `Result.to_json`, and the files of earlier spanmatch versions (converted).
    pub results: PathBuf,
    /// Output directory for report.html and the PNG figures [default: the directory of
    /// results.json].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Do not write PNG figures (report.html only).
    #[arg(long)]
    pub no_png: bool,
}

/// Runs `spanmatch report`; prints the files written.
pub fn run(args: &ReportArgs) -> Result<()> {
    for path in spanmatch_report::rerender(&args.results, args.out.as_deref(), !args.no_png)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
