//! Streaming a layer pair of two activation files into Gram accumulators: the one pass over the
//! data that every file-based front (`compare`, `simple`, the Python `compare` on paths) starts
//! with.

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use spanmatch_core::controls::chunk_of;
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::GramAccumulator;
use spanmatch_io::LayerReader;
use std::collections::HashSet;

/// Default size of one joint row block (`[x_row | y_row]` as f64): 8 MiB. Measured on a
/// 1,000,000 x (256 + 256) pair, blocks of 8 MiB ran the pass in 4.0 s and blocks of 64 MiB in
/// 5.0 s (the block then stays in cache between reading and the product), with a third of the
/// peak memory (docs/benchmarks.md).
pub const DEFAULT_BLOCK_BYTES: usize = 8 << 20;

/// Fewest rows per default block, so that very wide layers still give the BLAS product enough
/// rows to run at full speed.
pub const MIN_BLOCK_ROWS: usize = 1024;

/// Rows per block so that one joint block of `n1 + n2` f64 columns is about
/// [`DEFAULT_BLOCK_BYTES`].
pub fn default_block_rows(n1: usize, n2: usize) -> usize {
    (DEFAULT_BLOCK_BYTES / (8 * (n1 + n2).max(1))).max(MIN_BLOCK_ROWS)
}

/// The reference code's sampled protocol: `repeats` independent draws of `columns` rows
/// (coordinates), the same rows for both nets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    /// Rows drawn per repeat, uniformly without replacement (all rows when there are fewer).
    pub columns: u64,
    /// Number of draws.
    pub repeats: usize,
    /// Seed of the SplitMix64 generator; the repeats are drawn one after the other from it.
    pub seed: u64,
}

impl Sampling {
    /// The sorted row indices of every repeat for a layer of `rows` rows (Floyd's algorithm, so
    /// the cost is O(columns) whatever the number of rows). Deterministic in `seed`.
    pub fn draw(&self, rows: u64) -> Vec<Vec<u64>> {
        let mut rng = SplitMix64::new(self.seed);
        (0..self.repeats)
            .map(|_| {
                if self.columns >= rows {
                    return (0..rows).collect();
                }
                let mut chosen = HashSet::with_capacity(self.columns as usize);
                let mut picked = Vec::with_capacity(self.columns as usize);
                for j in rows - self.columns..rows {
                    let t = rng.below(j + 1);
                    let v = if chosen.contains(&t) { j } else { t };
                    chosen.insert(v);
                    picked.push(v);
                }
                picked.sort_unstable();
                picked
            })
            .collect()
    }
}

/// How to stream a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Rows per block (both readers read this many rows per step).
    pub block_rows: usize,
    /// Sampled protocol, accumulated in the same pass.
    pub sampling: Option<Sampling>,
    /// Keep the statistics of this many chunks of consecutive inputs apart (bootstrap
    /// intervals); the rows of one input (image) are always in the same chunk. `full` then stays
    /// empty: the full statistics are the merged chunks.
    pub chunks: Option<usize>,
}

/// What one pass over a layer pair produces.
#[derive(Debug, Clone)]
pub struct PairStats {
    /// Statistics of all rows.
    pub full: GramAccumulator,
    /// One accumulator per repeat of the sampled protocol (empty without sampling).
    pub sampled: Vec<GramAccumulator>,
    /// One accumulator per chunk of inputs (empty without chunks).
    pub chunks: Vec<GramAccumulator>,
}

/// Streams both readers block by block into one accumulator (plus one per sampled repeat),
/// reporting the bytes read to `progress`.
///
/// Both readers must have the same number of rows; row r of A and row r of B must describe the
/// same input (image, position).
pub fn stream_pair(
    a: &mut LayerReader,
    b: &mut LayerReader,
    options: &StreamOptions,
    progress: &mut dyn Progress,
) -> Result<PairStats> {
    let (n1, n2) = (a.neurons(), b.neurons());
    let n = n1 + n2;
    if a.rows() != b.rows() {
        bail!(
            "layer '{}': net A has {} rows ({}) but net B has {} rows ({}); both files must hold the same inputs",
            a.name(),
            a.rows(),
            a.path().display(),
            b.rows(),
            b.path().display()
        );
    }
    let rows = a.rows();
    let block = options.block_rows.max(1);
    let mut buf = vec![0.0; block.saturating_mul(n)];
    let mut full = GramAccumulator::new(n1, n2);
    let draws = options.sampling.map(|s| s.draw(rows)).unwrap_or_default();
    let mut sampled: Vec<GramAccumulator> =
        draws.iter().map(|_| GramAccumulator::new(n1, n2)).collect();
    let mut cursor = vec![0usize; draws.len()];
    let images = a.images().max(1);
    let rows_per_image = (rows / images).max(1);
    let mut chunk_accs: Vec<GramAccumulator> = match options.chunks {
        Some(k) if k > 0 => (0..k).map(|_| GramAccumulator::new(n1, n2)).collect(),
        _ => Vec::new(),
    };
    let mut picked = Vec::new();
    let bytes_per_row = a.bytes_per_row() + b.bytes_per_row();
    let mut row0 = 0u64;
    loop {
        let got_a = a.read_rows(block, &mut buf, n, 0)?;
        let got_b = b.read_rows(block, &mut buf, n, n1)?;
        if got_a != got_b {
            bail!("internal: readers returned {got_a} and {got_b} rows");
        }
        if got_a == 0 {
            break;
        }
        let joint = &buf[..got_a * n];
        if chunk_accs.is_empty() {
            full.push_joint(joint).context("accumulating statistics")?;
        } else {
            // Runs of rows in the same chunk of inputs.
            let k = chunk_accs.len();
            let chunk_of_row = |r: u64| chunk_of((r / rows_per_image).min(images - 1), images, k);
            let mut start = 0usize;
            while start < got_a {
                let c = chunk_of_row(row0 + start as u64);
                let mut end = start + 1;
                while end < got_a && chunk_of_row(row0 + end as u64) == c {
                    end += 1;
                }
                chunk_accs[c]
                    .push_joint(&joint[start * n..end * n])
                    .context("accumulating chunked statistics")?;
                start = end;
            }
        }
        for ((rows_r, pos), acc) in draws.iter().zip(cursor.iter_mut()).zip(sampled.iter_mut()) {
            picked.clear();
            while *pos < rows_r.len() && rows_r[*pos] < row0 + got_a as u64 {
                let i = (rows_r[*pos] - row0) as usize;
                picked.extend_from_slice(&joint[i * n..(i + 1) * n]);
                *pos += 1;
            }
            if !picked.is_empty() {
                acc.push_joint(&picked)
                    .context("accumulating sampled statistics")?;
            }
        }
        row0 += got_a as u64;
        progress.inc(got_a as u64 * bytes_per_row);
    }
    Ok(PairStats {
        full,
        sampled,
        chunks: chunk_accs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_sorted_and_without_replacement() {
        let s = Sampling {
            columns: 50,
            repeats: 3,
            seed: 7,
        };
        let d = s.draw(1000);
        assert_eq!(d, s.draw(1000));
        assert_eq!(d.len(), 3);
        for r in &d {
            assert_eq!(r.len(), 50);
            assert!(r.windows(2).all(|w| w[0] < w[1]));
            assert!(r.iter().all(|&i| i < 1000));
        }
        assert_ne!(d[0], d[1]);
        assert_eq!(s.draw(20)[0], (0..20).collect::<Vec<u64>>());
    }
}
