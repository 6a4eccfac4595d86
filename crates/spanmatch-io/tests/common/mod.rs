//! Helpers shared by the integration tests: known values, expected rows, scratch directories.
#![allow(dead_code)]

use spanmatch_io::{ActivationFile, Layout};
use std::path::{Path, PathBuf};

/// The value at logical C-order index `i`: exact in float16, float32 and float64.
pub fn value(i: usize) -> f64 {
    ((7 * i) % 1021) as f64 * 0.25 - 100.0
}

/// Values exact in bfloat16 (8 significant bits).
pub fn value_bf16(i: usize) -> f64 {
    ((5 * i) % 64) as f64 - 20.0
}

/// The whole logical array of `shape` in C order, filled by `f`.
pub fn logical(shape: &[u64], f: fn(usize) -> f64) -> Vec<f64> {
    let n: u64 = shape.iter().product();
    (0..n as usize).map(f).collect()
}

/// The rows a reader must produce for a C-order logical array of `shape` read with `layout`,
/// computed from the definition: image-major, spatial row-major, then the channel.
pub fn expected_rows(shape: &[u64], data: &[f64], layout: Layout) -> (Vec<f64>, usize) {
    let rank = shape.len();
    let c_axis = if rank == 2 || layout == Layout::Nchw {
        1
    } else {
        rank - 1
    };
    let spatial_axes: Vec<usize> = (1..rank).filter(|&a| a != c_axis).collect();
    let c = shape[c_axis] as usize;
    let positions: u64 = spatial_axes.iter().map(|&a| shape[a]).product();
    let mut strides = vec![1u64; rank];
    for i in (0..rank - 1).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let mut rows = Vec::new();
    for n in 0..shape[0] {
        for p in 0..positions {
            let mut idx = vec![0u64; rank];
            idx[0] = n;
            let mut q = p;
            for &a in spatial_axes.iter().rev() {
                idx[a] = q % shape[a];
                q /= shape[a];
            }
            for ch in 0..c {
                idx[c_axis] = ch as u64;
                let off: u64 = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
                rows.push(data[off as usize]);
            }
        }
    }
    (rows, c)
}

/// Reads a whole layer in blocks of `block` rows into a strided buffer (2 sentinel columns on the
/// left, 1 on the right, checked untouched) and returns the packed rows.
pub fn read_all(file: &ActivationFile, layer: &str, layout: Layout, block: usize) -> Vec<f64> {
    read_all_slab(file, layer, layout, block, None)
}

/// [`read_all`] with a given slab size for non-contiguous layouts.
pub fn read_all_slab(
    file: &ActivationFile,
    layer: &str,
    layout: Layout,
    block: usize,
    slab: Option<u64>,
) -> Vec<f64> {
    let mut reader = match file.reader_with_slab(layer, layout, slab) {
        Ok(r) => r,
        Err(e) => panic!("reader for {layer}: {e}"),
    };
    let c = reader.neurons();
    let stride = c + 3;
    let mut buf = vec![-777.0; block * stride];
    let mut out = Vec::new();
    loop {
        buf.iter_mut().for_each(|v| *v = -777.0);
        let n = match reader.read_rows(block, &mut buf, stride, 2) {
            Ok(n) => n,
            Err(e) => panic!("read_rows on {layer}: {e}"),
        };
        if n == 0 {
            break;
        }
        assert!(
            n == block || reader.rows_read() == reader.rows(),
            "short block"
        );
        for row in buf.chunks_exact(stride).take(n) {
            assert_eq!(&row[..2], &[-777.0, -777.0]);
            assert_eq!(row[stride - 1], -777.0);
            out.extend_from_slice(&row[2..2 + c]);
        }
    }
    assert_eq!(out.len() as u64, reader.rows() * c as u64);
    out
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("spanmatch-io")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// Opens a file, panicking with the error message on failure.
pub fn open(path: &Path) -> ActivationFile {
    match ActivationFile::open(path) {
        Ok(f) => f,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}
