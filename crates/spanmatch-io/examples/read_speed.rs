//! Reading throughput of one layer: `cargo run --release -p spanmatch-io --example read_speed --
//! FILE [LAYER] [BLOCK_ROWS]`. Prints GB/s of file data read and converted to f64.

use spanmatch_io::{ActivationFile, Layout};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: read_speed FILE [LAYER] [BLOCK_ROWS]")?;
    let file = ActivationFile::open(path)?;
    let layer = match args.get(2) {
        Some(l) => l.clone(),
        None => file.layers().first().ok_or("no layer")?.name.clone(),
    };
    let block: usize = args
        .get(3)
        .map(|b| b.parse())
        .transpose()?
        .unwrap_or(65_536);
    for round in 0..3 {
        let mut r = file.reader(&layer, Layout::Nchw)?;
        let c = r.neurons();
        let mut buf = vec![0.0; block * c];
        let t = Instant::now();
        while r.read_rows(block, &mut buf, c, 0)? > 0 {}
        let s = t.elapsed().as_secs_f64();
        let gb = (r.rows() * r.bytes_per_row()) as f64 / 1e9;
        println!("round {round}: {gb:.3} GB in {s:.3} s = {:.2} GB/s", gb / s);
    }
    Ok(())
}
