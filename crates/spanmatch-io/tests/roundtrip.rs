//! Round trips: arrays with known values written in every supported encoding, read back in row
//! blocks of many sizes, compared exactly with the rows expected by definition.

mod common;

use common::*;
use spanmatch_io::write::{npy_bytes, write_safetensors, Encoding, NpzWriter};
use spanmatch_io::{DType, Format, Layout, StorageOrder};

const SHAPES: &[&[u64]] = &[
    &[7, 5],
    &[3, 4, 5, 6],
    &[2, 3, 7],
    &[2, 3, 2, 2, 3],
    &[1, 2, 1, 1],
];

fn block_sizes(rows: usize) -> Vec<usize> {
    vec![1, 2, 7, 13, rows.max(2) - 1, rows, rows + 5]
}

fn check_all_blocks(file: &spanmatch_io::ActivationFile, layer: &str, shape: &[u64], data: &[f64]) {
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let (expected, _) = expected_rows(shape, data, layout);
        let rows = expected.len()
            / shape[if shape.len() == 2 || layout == Layout::Nchw {
                1
            } else {
                shape.len() - 1
            }] as usize;
        for block in block_sizes(rows) {
            // Default slabs, and slabs of a single image or less (many refills).
            for slab in [None, Some(1)] {
                let got = read_all_slab(file, layer, layout, block, slab);
                assert_eq!(
                    got, expected,
                    "layer {layer} shape {shape:?} {layout:?} block {block} slab {slab:?}"
                );
            }
        }
    }
}

fn encodings() -> Vec<Encoding> {
    let mut v = Vec::new();
    for dtype in [DType::F16, DType::F32, DType::F64] {
        for big_endian in [false, true] {
            for order in [StorageOrder::C, StorageOrder::Fortran] {
                v.push(Encoding {
                    dtype: dtype.clone(),
                    big_endian,
                    order,
                });
            }
        }
    }
    v
}

#[test]
fn npy_every_dtype_order_and_shape() {
    let dir = scratch("npy");
    for enc in encodings() {
        for shape in SHAPES {
            let data = logical(shape, value);
            let path = dir.join("layer1.npy");
            let bytes = npy_bytes(shape, &data, &enc).unwrap_or_default();
            std::fs::write(&path, bytes).unwrap_or_default();
            let file = open(&path);
            assert_eq!(file.format(), Format::Npy);
            let info = &file.layers()[0];
            assert_eq!(info.name, "layer1");
            assert_eq!(info.shape, shape.to_vec());
            assert_eq!(
                (&info.dtype, info.big_endian, info.order),
                (&enc.dtype, enc.big_endian, enc.order)
            );
            check_all_blocks(&file, "layer1", shape, &data);
        }
    }
}

#[test]
fn npz_stored_and_deflated() {
    let dir = scratch("npz");
    for compress in [false, true] {
        for enc in encodings() {
            let path = dir.join("acts.npz");
            let mut w = NpzWriter::create(&path).unwrap_or_else(|e| panic!("{e}"));
            for (i, shape) in SHAPES.iter().enumerate() {
                w.add(
                    &format!("l{i}"),
                    shape,
                    &logical(shape, value),
                    &enc,
                    compress,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
            w.finish().unwrap_or_else(|e| panic!("{e}"));
            let file = open(&path);
            assert_eq!(file.format(), Format::Npz);
            let names: Vec<&str> = file.layers().iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["l0", "l1", "l2", "l3", "l4"]);
            for (i, shape) in SHAPES.iter().enumerate() {
                check_all_blocks(&file, &format!("l{i}"), shape, &logical(shape, value));
            }
            // Only Fortran order in a deflated entry (with non-contiguous rows) reads whole.
            let r = file
                .reader("l1", Layout::Nchw)
                .unwrap_or_else(|e| panic!("{e}"));
            let whole = compress && enc.order == StorageOrder::Fortran;
            assert_eq!(
                !r.warnings().is_empty(),
                whole,
                "{enc:?} compress {compress}"
            );
            if whole {
                assert!(r.warnings()[0].contains("decompressing it whole"));
                assert!(r.warnings()[0].contains("'l1'"));
            }
        }
    }
}

#[test]
fn safetensors_all_float_types() {
    let dir = scratch("safetensors");
    let path = dir.join("acts.safetensors");
    let shapes: Vec<&[u64]> = SHAPES.to_vec();
    let data: Vec<Vec<f64>> = shapes.iter().map(|s| logical(s, value)).collect();
    let bf: Vec<f64> = logical(&[3, 4, 5, 6], value_bf16);
    let mut tensors: Vec<spanmatch_io::write::Tensor<'_>> = Vec::new();
    let names: Vec<String> = (0..shapes.len() * 3).map(|i| format!("t{i}")).collect();
    for (i, (shape, d)) in shapes.iter().zip(&data).enumerate() {
        for (j, dt) in [DType::F16, DType::F32, DType::F64].into_iter().enumerate() {
            tensors.push((names[i * 3 + j].as_str(), shape, d, dt));
        }
    }
    tensors.push(("bf", &[3, 4, 5, 6], &bf, DType::BF16));
    write_safetensors(&path, &tensors).unwrap_or_else(|e| panic!("{e}"));
    let file = open(&path);
    assert_eq!(file.format(), Format::Safetensors);
    // File (data) order is kept.
    let listed: Vec<&str> = file.layers().iter().map(|l| l.name.as_str()).collect();
    let written: Vec<&str> = tensors.iter().map(|t| t.0).collect();
    assert_eq!(listed, written);
    for (name, shape, d, dt) in &tensors {
        assert_eq!(
            &file.layer(name).map(|l| l.dtype.clone()),
            &Some(dt.clone())
        );
        check_all_blocks(&file, name, shape, d);
    }
}

#[test]
fn nchw_and_nhwc_give_the_same_rows() {
    let dir = scratch("layouts");
    let (n, c, h, w) = (3u64, 4u64, 5u64, 2u64);
    let nchw = logical(&[n, c, h, w], value);
    // The same logical data transposed to [N, H, W, C].
    let mut nhwc = vec![0.0; nchw.len()];
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    nhwc[(((i * h + y) * w + x) * c + ch) as usize] =
                        nchw[(((i * c + ch) * h + y) * w + x) as usize];
                }
            }
        }
    }
    for order in [StorageOrder::C, StorageOrder::Fortran] {
        let enc = Encoding {
            order,
            ..Encoding::of(DType::F64)
        };
        let a = dir.join("a.npy");
        let b = dir.join("b.npy");
        std::fs::write(
            &a,
            npy_bytes(&[n, c, h, w], &nchw, &enc).unwrap_or_default(),
        )
        .unwrap_or_default();
        std::fs::write(
            &b,
            npy_bytes(&[n, h, w, c], &nhwc, &enc).unwrap_or_default(),
        )
        .unwrap_or_default();
        let ra = read_all(&open(&a), "a", Layout::Nchw, 7);
        let rb = read_all(&open(&b), "b", Layout::Nhwc, 5);
        assert_eq!(ra, rb);
        // Row (image 1, h 2, w 1) holds channel values nchw[1, :, 2, 1].
        let image = 1;
        let row = ((image * h + 2) * w + 1) as usize;
        let want: Vec<f64> = (0..c)
            .map(|ch| nchw[(((image * c + ch) * h + 2) * w + 1) as usize])
            .collect();
        assert_eq!(&ra[row * c as usize..][..c as usize], &want[..]);
    }
}

#[test]
fn npyz_written_file_reads_back() {
    let dir = scratch("npyz");
    let path = dir.join("fc.npy");
    let data: Vec<f32> = (0..35).map(|i| value(i) as f32).collect();
    let mut out = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[7, 5])
            .writer(&mut out)
            .begin_nd()
            .unwrap_or_else(|e| panic!("{e}"));
        w.extend(data.iter().copied())
            .unwrap_or_else(|e| panic!("{e}"));
        w.finish().unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&path, out).unwrap_or_default();
    let got = read_all(&open(&path), "fc", Layout::Nchw, 3);
    assert_eq!(got, logical(&[7, 5], value));
}
