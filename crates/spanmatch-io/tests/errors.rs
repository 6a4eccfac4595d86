//! Every error names the file, the layer and the problem.

mod common;

use common::*;
use spanmatch_io::write::{npy_bytes, write_safetensors, Encoding, NpzWriter};
use spanmatch_io::{ActivationFile, DType, IoError, Layout};
use std::path::Path;

fn open_err(path: &Path) -> String {
    match ActivationFile::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

fn reader_err(path: &Path, layer: &str) -> (IoError, String) {
    match open(path).reader(layer, Layout::Nchw) {
        Ok(_) => panic!("{layer} of {} is readable", path.display()),
        Err(e) => {
            let s = e.to_string();
            (e, s)
        }
    }
}

/// Reads the layer to the end and returns the first error.
fn read_err(path: &Path, layer: &str, block: usize) -> (IoError, String) {
    let file = open(path);
    let mut r = file
        .reader(layer, Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let c = r.neurons();
    let mut buf = vec![0.0; block * c];
    loop {
        match r.read_rows(block, &mut buf, c, 0) {
            Ok(0) => panic!("{layer} read without error"),
            Ok(_) => {}
            Err(e) => {
                let s = e.to_string();
                return (e, s);
            }
        }
    }
}

fn write_npy(path: &Path, shape: &[u64], data: &[f64]) {
    let bytes = npy_bytes(shape, data, &Encoding::of(DType::F32)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn missing_file() {
    let dir = scratch("err-missing");
    let s = open_err(&dir.join("nothere.npz"));
    assert!(s.contains("nothere.npz") && s.contains("not found"), "{s}");
}

#[test]
fn garbage_and_truncated_containers() {
    let dir = scratch("err-garbage");
    let p = dir.join("junk.npy");
    std::fs::write(&p, b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape'").unwrap_or_default();
    let s = open_err(&p);
    assert!(
        s.contains("junk.npy") && s.contains("not a valid .npy file"),
        "{s}"
    );

    let p = dir.join("cut.npz");
    let mut w = NpzWriter::create(&p).unwrap_or_else(|e| panic!("{e}"));
    w.add(
        "fc",
        &[8, 4],
        &logical(&[8, 4], value),
        &Encoding::default(),
        true,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&p).unwrap_or_default();
    std::fs::write(&p, &bytes[..bytes.len() - 30]).unwrap_or_default();
    let s = open_err(&p);
    assert!(
        s.contains("cut.npz") && s.contains("not a valid .npz file"),
        "{s}"
    );

    let p = dir.join("tiny.safetensors");
    std::fs::write(&p, b"abc").unwrap_or_default();
    let s = open_err(&p);
    assert!(
        s.contains("tiny.safetensors") && s.contains("too short"),
        "{s}"
    );

    let p = dir.join("bad.safetensors");
    std::fs::write(
        &p,
        [&16u64.to_le_bytes()[..], b"{not json at all}"].concat(),
    )
    .unwrap_or_default();
    let s = open_err(&p);
    assert!(
        s.contains("bad.safetensors") && s.contains("not a valid .safetensors file"),
        "{s}"
    );
}

#[test]
fn truncated_data_sections() {
    let dir = scratch("err-truncated");
    // npy: the last row is cut.
    let p = dir.join("short.npy");
    write_npy(&p, &[10, 4], &logical(&[10, 4], value));
    let bytes = std::fs::read(&p).unwrap_or_default();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap_or_default();
    let (e, s) = reader_err(&p, "short");
    assert!(matches!(e, IoError::Truncated { expected: 160, .. }), "{s}");
    assert!(
        s.contains("short.npy") && s.contains("layer 'short'") && s.contains("truncated"),
        "{s}"
    );
    assert!(s.contains("only 150"), "{s}");

    // safetensors: the file ends inside the second tensor.
    let p = dir.join("short.safetensors");
    let a = logical(&[4, 3], value);
    write_safetensors(
        &p,
        &[
            ("first", &[4, 3], &a, DType::F32),
            ("second", &[4, 3], &a, DType::F32),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&p).unwrap_or_default();
    std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap_or_default();
    assert_eq!(read_all(&open(&p), "first", Layout::Nchw, 5), a);
    let (_, s) = reader_err(&p, "second");
    assert!(
        s.contains("short.safetensors") && s.contains("'second'") && s.contains("truncated"),
        "{s}"
    );

    // npz (deflated): the entry's npy header announces more data than the entry holds.
    let p = dir.join("short.npz");
    let mut bytes =
        npy_bytes(&[12, 4], &logical(&[12, 4], value), &Encoding::default()).unwrap_or_default();
    bytes.truncate(bytes.len() - 16);
    {
        use npyz::zip::{write::FileOptions, CompressionMethod, ZipWriter};
        use std::io::Write;
        let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        let mut z = ZipWriter::new(f);
        let opt = FileOptions::default().compression_method(CompressionMethod::Deflated);
        z.start_file("conv.npy", opt)
            .unwrap_or_else(|e| panic!("{e}"));
        z.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
        z.finish().unwrap_or_else(|e| panic!("{e}"));
    }
    let (_, s) = reader_err(&p, "conv");
    assert!(
        s.contains("short.npz") && s.contains("'conv'") && s.contains("truncated"),
        "{s}"
    );
}

/// A one-entry zip archive built by hand, so that the entry's data can be anything.
fn handmade_zip(name: &str, method: u16, data: &[u8], uncompressed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    // Local file header.
    out.extend(le32(0x0403_4b50));
    out.extend(le16(20));
    out.extend(le16(0));
    out.extend(le16(method));
    out.extend([0u8; 4]); // time, date
    out.extend(le32(0)); // crc (not checked on partial reads)
    out.extend(le32(data.len() as u32));
    out.extend(le32(uncompressed));
    out.extend(le16(name.len() as u16));
    out.extend(le16(0));
    out.extend(name.as_bytes());
    out.extend(data);
    let cd_start = out.len() as u32;
    out.extend(le32(0x0201_4b50));
    out.extend(le16(20));
    out.extend(le16(20));
    out.extend(le16(0));
    out.extend(le16(method));
    out.extend([0u8; 4]);
    out.extend(le32(0));
    out.extend(le32(data.len() as u32));
    out.extend(le32(uncompressed));
    out.extend(le16(name.len() as u16));
    out.extend([0u8; 8]); // extra len, comment len, disk, internal attrs
    out.extend(le32(0)); // external attrs
    out.extend(le32(0)); // local header offset
    out.extend(name.as_bytes());
    let cd_len = out.len() as u32 - cd_start;
    out.extend(le32(0x0605_4b50));
    out.extend([0u8; 4]);
    out.extend(le16(1));
    out.extend(le16(1));
    out.extend(le32(cd_len));
    out.extend(le32(cd_start));
    out.extend(le16(0));
    out
}

#[test]
fn truncation_when_reached_in_a_stream() {
    // A deflated entry whose directory announces the full size but whose compressed stream stops
    // half way: the first rows read fine, then the reader fails, and never returns garbage.
    use flate2::{write::DeflateEncoder, Compression};
    use std::io::Write;
    let dir = scratch("err-stream");
    let p = dir.join("cutstream.npz");
    let data: Vec<f64> = (0..512 * 16).map(|i| ((i * 7919) % 1000) as f64).collect();
    let npy = npy_bytes(&[512, 16], &data, &Encoding::default()).unwrap_or_default();
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&npy).unwrap_or_default();
    let compressed = enc.finish().unwrap_or_default();
    let cut = &compressed[..compressed.len() / 2];
    std::fs::write(&p, handmade_zip("fc.npy", 8, cut, npy.len() as u32)).unwrap_or_default();
    let file = open(&p);
    let mut r = file
        .reader("fc", Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = vec![0.0; 16 * 16];
    assert_eq!(r.read_rows(16, &mut buf, 16, 0).ok(), Some(16));
    assert_eq!(&buf[..], &data[..256]);
    let (e, s) = read_err(&p, "fc", 16);
    assert!(
        matches!(e, IoError::Truncated { .. } | IoError::BadLayer { .. }),
        "{s}"
    );
    assert!(
        s.contains("cutstream.npz") && s.contains("layer 'fc'"),
        "{s}"
    );
    assert!(s.contains("truncated") || s.contains("corrupt"), "{s}");

    // The same entry stored (not compressed) is detected before any read.
    let p = dir.join("cutstored.npz");
    let cut = &npy[..npy.len() - 64];
    std::fs::write(&p, handmade_zip("fc.npy", 0, cut, cut.len() as u32)).unwrap_or_default();
    let (_, s) = reader_err(&p, "fc");
    assert!(
        s.contains("cutstored.npz") && s.contains("'fc'") && s.contains("truncated"),
        "{s}"
    );
}

#[test]
fn unsupported_dtypes_are_named() {
    let dir = scratch("err-dtype");
    let p = dir.join("ints.npy");
    {
        use npyz::WriterBuilder;
        let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        let mut w = npyz::WriteOptions::<i32>::new()
            .default_dtype()
            .shape(&[3, 2])
            .writer(f)
            .begin_nd()
            .unwrap_or_else(|e| panic!("{e}"));
        w.extend([1, 2, 3, 4, 5, 6])
            .unwrap_or_else(|e| panic!("{e}"));
        w.finish().unwrap_or_else(|e| panic!("{e}"));
    }
    let (e, s) = reader_err(&p, "ints");
    assert!(matches!(e, IoError::UnsupportedDtype { .. }));
    assert!(
        s.contains("ints.npy") && s.contains("'ints'") && s.contains("<i4"),
        "{s}"
    );

    let p = dir.join("ints.safetensors");
    let header = br#"{"ids":{"dtype":"I64","shape":[2,2],"data_offsets":[0,32]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 32]);
    std::fs::write(&p, bytes).unwrap_or_default();
    let (_, s) = reader_err(&p, "ids");
    assert!(
        s.contains("ints.safetensors") && s.contains("'ids'") && s.contains("I64"),
        "{s}"
    );
}

#[test]
fn nan_and_inf_positions() {
    let dir = scratch("err-nan");
    let shape = [3u64, 4, 2, 5];
    let mut data = logical(&shape, value);
    // image 2, channel 3, h 0, w 2; then a later row (h 1, w 0) that must not be reported.
    data[(((2 * 4 + 3) * 2) * 5 + 2) as usize] = f64::NAN;
    data[(((2 * 4) * 2 + 1) * 5) as usize] = f64::INFINITY;
    let p = dir.join("conv.npy");
    write_npy(&p, &shape, &data);
    for block in [1, 4, 1000] {
        let (e, s) = read_err(&p, "conv", block);
        let IoError::NonFinite {
            image,
            channel,
            spatial,
            ..
        } = &e
        else {
            panic!("{s}")
        };
        assert_eq!(
            (*image, *channel, spatial.clone()),
            (2, 3, vec![0, 2]),
            "{s}"
        );
        assert!(
            s.contains("conv.npy") && s.contains("layer 'conv'") && s.contains("NaN"),
            "{s}"
        );
        assert!(
            s.contains("image 2, channel 3, spatial index [0, 2]"),
            "{s}"
        );
    }
    let mut fc = logical(&[6, 3], value);
    fc[4 * 3 + 1] = f64::NEG_INFINITY;
    let p = dir.join("fc.npy");
    write_npy(&p, &[6, 3], &fc);
    let (_, s) = read_err(&p, "fc", 2);
    assert!(
        s.contains("-inf at image 4, channel 1, spatial index []"),
        "{s}"
    );
}

#[test]
fn rank_and_empty_layers() {
    let dir = scratch("err-shape");
    for (name, shape) in [("vector", vec![5u64]), ("scalar", vec![])] {
        let p = dir.join(format!("{name}.npy"));
        let n: u64 = shape.iter().product();
        write_npy(&p, &shape, &logical(&shape, value)[..n as usize]);
        let (e, s) = reader_err(&p, name);
        assert!(matches!(e, IoError::Rank { .. }), "{s}");
        assert!(
            s.contains(&format!("{name}.npy")) && s.contains(&format!("'{name}'")),
            "{s}"
        );
        assert!(s.contains(&format!("rank {}", shape.len())), "{s}");
    }
    for (name, shape, what) in [
        ("norows", vec![0u64, 4], "0 rows"),
        ("nochannels", vec![3, 0, 2, 2], "0 neurons"),
        ("nopositions", vec![3, 2, 0, 2], "0 rows"),
    ] {
        let p = dir.join(format!("{name}.npy"));
        write_npy(&p, &shape, &[]);
        let (e, s) = reader_err(&p, name);
        assert!(matches!(e, IoError::EmptyLayer { .. }), "{s}");
        assert!(
            s.contains(&format!("{name}.npy")) && s.contains("empty layer") && s.contains(what),
            "{s}"
        );
    }
}

#[test]
fn missing_layer_and_small_destination() {
    let dir = scratch("err-misc");
    let p = dir.join("acts.npz");
    let mut w = NpzWriter::create(&p).unwrap_or_else(|e| panic!("{e}"));
    w.add(
        "fc1",
        &[4, 3],
        &logical(&[4, 3], value),
        &Encoding::default(),
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    w.add(
        "fc2",
        &[4, 2],
        &logical(&[4, 2], value),
        &Encoding::default(),
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    let (_, s) = reader_err(&p, "fc3");
    assert!(
        s.contains("acts.npz") && s.contains("no layer named 'fc3'") && s.contains("fc1, fc2"),
        "{s}"
    );
    let file = open(&p);
    let mut r = file
        .reader("fc1", Layout::Nchw)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = vec![0.0; 5];
    let s = r
        .read_rows(2, &mut buf, 3, 0)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        s.contains("acts.npz") && s.contains("'fc1'") && s.contains("destination"),
        "{s}"
    );
}
