//! Renders the synthetic example report: `cargo run -p spanmatch-report --example render_example -- OUT_DIR`.

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/spanmatch-report-example"));
    let results = spanmatch_report::example_results();
    spanmatch_report::write_results(&results, &out.join("results.json")).or_else(|_| {
        std::fs::create_dir_all(&out)?;
        spanmatch_report::write_results(&results, &out.join("results.json"))
    })?;
    for p in spanmatch_report::render(&results, &out)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}
