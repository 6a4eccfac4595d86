//! Writers for `.npy`, `.npz` and `.safetensors` files (example data, tests, benchmarks).
//!
//! Values are always given in logical C order (last axis fastest) as f64 and converted to the
//! requested element type and storage order.

use crate::dtype::encode;
use crate::layout::{strides, StorageOrder};
use crate::{DType, IoError};
use npyz::zip::{write::FileOptions, CompressionMethod, ZipWriter};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

/// How an array is encoded in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Element type (F16, F32 or F64 for npy/npz; also BF16 for safetensors).
    pub dtype: DType,
    /// Store big-endian (npy/npz only).
    pub big_endian: bool,
    /// Storage order (npy/npz only; safetensors is always C).
    pub order: StorageOrder,
}

impl Default for Encoding {
    /// Little-endian float32 in C order (what PyTorch and numpy write by default).
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            big_endian: false,
            order: StorageOrder::C,
        }
    }
}

impl Encoding {
    /// Little-endian C-order array of `dtype`.
    pub fn of(dtype: DType) -> Self {
        Self {
            dtype,
            ..Self::default()
        }
    }
}

fn write_err(path: &Path, reason: impl Into<String>) -> IoError {
    IoError::Write {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn npy_descr(enc: &Encoding) -> Option<String> {
    let code = match enc.dtype {
        DType::F16 => "f2",
        DType::F32 => "f4",
        DType::F64 => "f8",
        DType::BF16 | DType::Unsupported(_) => return None,
    };
    Some(format!("{}{code}", if enc.big_endian { '>' } else { '<' }))
}

/// The npy header (magic, version 1.0 or 2.0, padded dict) for an array of `shape`.
fn npy_header(shape: &[u64], enc: &Encoding, path: &Path) -> Result<Vec<u8>, IoError> {
    let descr = npy_descr(enc).ok_or_else(|| {
        write_err(
            path,
            format!("dtype {} cannot be stored in .npy", enc.dtype),
        )
    })?;
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if enc.order == StorageOrder::Fortran {
        "True"
    } else {
        "False"
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}");
    let v1 = 10 + dict.len() < 65_000;
    let prefix = if v1 { 10 } else { 12 };
    while (prefix + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    Ok(out)
}

/// Encodes `data` (logical C order) in `enc`'s type, byte order and storage order.
fn encode_data(
    shape: &[u64],
    data: &[f64],
    enc: &Encoding,
    path: &Path,
) -> Result<Vec<u8>, IoError> {
    let count: u64 = shape.iter().product();
    if count != data.len() as u64 {
        return Err(write_err(
            path,
            format!("shape {shape:?} needs {count} values, got {}", data.len()),
        ));
    }
    let size = enc.dtype.size().unwrap_or(8);
    let mut out = Vec::with_capacity(data.len() * size);
    match enc.order {
        StorageOrder::C => data
            .iter()
            .for_each(|&v| encode(v, &enc.dtype, enc.big_endian, &mut out)),
        StorageOrder::Fortran => {
            // Walk the Fortran linear order and pick each element's C position.
            let c_strides = strides(shape, StorageOrder::C);
            let mut idx = vec![0u64; shape.len()];
            for _ in 0..count {
                let c: u64 = idx.iter().zip(&c_strides).map(|(i, s)| i * s).sum();
                encode(data[c as usize], &enc.dtype, enc.big_endian, &mut out);
                for (i, &d) in idx.iter_mut().zip(shape) {
                    *i += 1;
                    if *i < d {
                        break;
                    }
                    *i = 0;
                }
            }
        }
    }
    Ok(out)
}

/// The complete bytes of an `.npy` file holding `data` (logical C order) of `shape`.
pub fn npy_bytes(shape: &[u64], data: &[f64], enc: &Encoding) -> Result<Vec<u8>, IoError> {
    let path = Path::new("<memory>");
    let mut out = npy_header(shape, enc, path)?;
    out.extend(encode_data(shape, data, enc, path)?);
    Ok(out)
}

/// Writes an `.npy` file holding `data` (logical C order) of `shape`.
pub fn write_npy(
    path: impl AsRef<Path>,
    shape: &[u64],
    data: &[f64],
    enc: &Encoding,
) -> Result<(), IoError> {
    let path = path.as_ref();
    let bytes = npy_bytes(shape, data, enc).map_err(|e| write_err(path, e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| write_err(path, e.to_string()))
}

/// Writes an `.npz` archive, one array per layer (like `np.savez` / `np.savez_compressed`).
pub struct NpzWriter {
    path: PathBuf,
    zip: ZipWriter<BufWriter<File>>,
}

impl NpzWriter {
    /// Creates (or truncates) the archive at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, IoError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| write_err(&path, e.to_string()))?;
        Ok(Self {
            zip: ZipWriter::new(BufWriter::new(file)),
            path,
        })
    }

    /// Adds the array `name` (stored as `name.npy`), deflate-compressed if `compress`.
    pub fn add(
        &mut self,
        name: &str,
        shape: &[u64],
        data: &[f64],
        enc: &Encoding,
        compress: bool,
    ) -> Result<(), IoError> {
        let bytes = npy_header(shape, enc, &self.path)
            .and_then(|mut h| {
                h.extend(encode_data(shape, data, enc, &self.path)?);
                Ok(h)
            })
            .map_err(|e| write_err(&self.path, e.to_string()))?;
        let method = if compress {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let options = FileOptions::default()
            .compression_method(method)
            .large_file(bytes.len() >= u32::MAX as usize);
        self.zip
            .start_file(format!("{name}.npy"), options)
            .map_err(|e| write_err(&self.path, e.to_string()))?;
        self.zip
            .write_all(&bytes)
            .map_err(|e| write_err(&self.path, e.to_string()))
    }

    /// Writes the central directory and closes the file.
    pub fn finish(mut self) -> Result<(), IoError> {
        let mut inner = self
            .zip
            .finish()
            .map_err(|e| write_err(&self.path, e.to_string()))?;
        inner
            .flush()
            .map_err(|e| write_err(&self.path, e.to_string()))
    }
}

/// One tensor for [`write_safetensors`]: name, shape, values (logical C order), element type.
pub type Tensor<'a> = (&'a str, &'a [u64], &'a [f64], DType);

/// Writes a `.safetensors` file (little-endian, C order), tensors stored in the given order.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[Tensor<'_>]) -> Result<(), IoError> {
    let path = path.as_ref();
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, shape, values, dtype) in tensors {
        let code = match dtype {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::Unsupported(s) => {
                return Err(write_err(path, format!("dtype {s} cannot be written")))
            }
        };
        let begin = data.len();
        data.extend(encode_data(
            shape,
            values,
            &Encoding::of(dtype.clone()),
            path,
        )?);
        entries.push(format!(
            "{}:{{\"dtype\":\"{code}\",\"shape\":{},\"data_offsets\":[{begin},{}]}}",
            serde_json::Value::String(name.to_string()),
            serde_json::Value::from(shape.to_vec()),
            data.len()
        ));
    }
    let mut header = format!("{{{}}}", entries.join(","));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).map_err(|e| write_err(path, e.to_string()))
}

/// Writes a large C-order `.npy` file row block by row block, without holding it in memory.
pub struct NpyStreamWriter {
    path: PathBuf,
    out: BufWriter<File>,
    enc: Encoding,
    left: u64,
    buf: Vec<u8>,
}

impl NpyStreamWriter {
    /// Creates `path` for an array of `shape`, encoded as `enc` (its order must be C).
    pub fn create(path: impl AsRef<Path>, shape: &[u64], enc: Encoding) -> Result<Self, IoError> {
        let path = path.as_ref().to_path_buf();
        if enc.order != StorageOrder::C {
            return Err(write_err(
                &path,
                "streamed .npy files are written in C order",
            ));
        }
        let header = npy_header(shape, &enc, &path)?;
        let file = File::create(&path).map_err(|e| write_err(&path, e.to_string()))?;
        let mut out = BufWriter::with_capacity(8 << 20, file);
        out.write_all(&header)
            .map_err(|e| write_err(&path, e.to_string()))?;
        Ok(Self {
            path,
            out,
            enc,
            left: shape.iter().product(),
            buf: Vec::new(),
        })
    }

    /// Appends values (in C order).
    pub fn write(&mut self, values: &[f64]) -> Result<(), IoError> {
        if values.len() as u64 > self.left {
            return Err(write_err(&self.path, "more values than the shape holds"));
        }
        self.buf.clear();
        for &v in values {
            encode(v, &self.enc.dtype, self.enc.big_endian, &mut self.buf);
        }
        self.out
            .write_all(&self.buf)
            .map_err(|e| write_err(&self.path, e.to_string()))?;
        self.left -= values.len() as u64;
        Ok(())
    }

    /// Flushes the file; fails if fewer values than the shape holds were written.
    pub fn finish(mut self) -> Result<(), IoError> {
        if self.left != 0 {
            return Err(write_err(
                &self.path,
                format!("{} values missing for the announced shape", self.left),
            ));
        }
        self.out
            .flush()
            .and_then(|_| self.out.get_mut().stream_position().map(|_| ()))
            .map_err(|e| write_err(&self.path, e.to_string()))
    }
}
