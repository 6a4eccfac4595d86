//! Opening an activation file and listing its layers (`.npy`, `.npz`, `.safetensors`).

use crate::error::os;
use crate::layout::{Geometry, ShapeProblem};
use crate::reader::{LayerReader, Placement};
use crate::{DType, IoError, Layout, StorageOrder};
use npyz::zip::{CompressionMethod, ZipArchive};
use npyz::{NpyHeader, Order, TypeChar};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Container format of an activation file, recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A single numpy array; its layer is named after the file stem.
    Npy,
    /// A numpy archive (`np.savez` / `np.savez_compressed`): one array per layer, key = name.
    Npz,
    /// A safetensors file: one tensor per layer.
    Safetensors,
}

/// Name, shape and element type of one layer of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Layer name (npz key, safetensors tensor name, or npy file stem).
    pub name: String,
    /// Array shape as stored.
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
    /// Whether elements are stored big-endian.
    pub big_endian: bool,
    /// Storage order (safetensors is always C).
    pub order: StorageOrder,
}

/// Where a layer's data section lies in its file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Storage {
    /// Raw bytes starting at `offset`; `available` bytes of them are present in the container.
    Plain { offset: u64, available: u64 },
    /// A raw-deflate stream of `compressed` bytes at `offset` (an npz entry) whose decompressed
    /// content is an npy header of `header_len` bytes followed by `available` bytes of data.
    Deflated {
        offset: u64,
        compressed: u64,
        header_len: u64,
        available: u64,
    },
}

/// An opened activation file: its format and the list of its layers. Reading a layer goes through
/// [`ActivationFile::reader`], which streams it in row blocks.
#[derive(Debug, Clone)]
pub struct ActivationFile {
    path: PathBuf,
    format: Format,
    layers: Vec<LayerInfo>,
    storage: Vec<Storage>,
}

/// Counts the bytes read through it (to find where an npy header ends).
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The supported reading of an npy header: dtype, byte order, storage order.
fn npy_dtype(header: &NpyHeader) -> (DType, bool, StorageOrder) {
    let order = match header.order() {
        Order::C => StorageOrder::C,
        Order::Fortran => StorageOrder::Fortran,
    };
    let dtype = header.dtype();
    if let npyz::DType::Plain(ts) = &dtype {
        let big = ts.endianness() == npyz::Endianness::Big;
        if ts.type_char() == TypeChar::Float {
            match ts.num_bytes() {
                Some(2) => return (DType::F16, big, order),
                Some(4) => return (DType::F32, big, order),
                Some(8) => return (DType::F64, big, order),
                _ => {}
            }
        }
        return (DType::Unsupported(ts.to_string()), big, order);
    }
    (DType::Unsupported(dtype.descr()), false, order)
}

impl ActivationFile {
    /// Opens `path` and reads the list of its layers (headers only; no data is read).
    ///
    /// The format is recognised from the first bytes, not from the extension.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IoError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| os(&path, e))?;
        let file_len = file.metadata().map_err(|e| os(&path, e))?.len();
        let mut magic = [0u8; 8];
        let got = read_up_to(&mut file, &mut magic).map_err(|e| os(&path, e))?;
        drop(file);
        let magic = &magic[..got];
        if magic.starts_with(b"\x93NUMPY") {
            Self::open_npy(path, file_len)
        } else if magic.starts_with(b"PK") {
            Self::open_npz(path)
        } else if got == 8 {
            Self::open_safetensors(
                path,
                file_len,
                u64::from_le_bytes(magic.try_into().unwrap_or([0; 8])),
            )
        } else {
            Err(IoError::Format {
                path,
                format: "activation",
                reason: format!(
                    "{file_len} bytes is too short to be an .npy, .npz or .safetensors file"
                ),
            })
        }
    }

    fn open_npy(path: PathBuf, file_len: u64) -> Result<Self, IoError> {
        let file = File::open(&path).map_err(|e| os(&path, e))?;
        let mut counting = Counting {
            inner: BufReader::new(file),
            count: 0,
        };
        let header = NpyHeader::from_reader(&mut counting).map_err(|e| IoError::Format {
            path: path.clone(),
            format: ".npy",
            reason: format!("bad header: {e}"),
        })?;
        let (dtype, big_endian, order) = npy_dtype(&header);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "array".to_string());
        let offset = counting.count;
        Ok(Self {
            layers: vec![LayerInfo {
                name,
                shape: header.shape().to_vec(),
                dtype,
                big_endian,
                order,
            }],
            storage: vec![Storage::Plain {
                offset,
                available: file_len.saturating_sub(offset),
            }],
            path,
            format: Format::Npy,
        })
    }

    fn open_npz(path: PathBuf) -> Result<Self, IoError> {
        let file = File::open(&path).map_err(|e| os(&path, e))?;
        let bad = |reason: String| IoError::Format {
            path: path.clone(),
            format: ".npz",
            reason,
        };
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
        let mut layers = Vec::new();
        let mut storage = Vec::new();
        for i in 0..zip.len() {
            let entry = zip
                .by_index(i)
                .map_err(|e| bad(format!("entry {i}: {e}")))?;
            let Some(name) = npyz::npz::array_name_from_file_name(entry.name()) else {
                continue;
            };
            let name = name.to_string();
            let bad_layer = |reason: String| IoError::BadLayer {
                path: path.clone(),
                layer: name.clone(),
                reason,
            };
            let method = entry.compression();
            let (data_start, compressed, size) =
                (entry.data_start(), entry.compressed_size(), entry.size());
            if !matches!(
                method,
                CompressionMethod::Stored | CompressionMethod::Deflated
            ) {
                return Err(bad_layer(format!(
                    "unsupported zip compression {method} (only stored and deflated entries are read)"
                )));
            }
            let mut counting = Counting {
                inner: entry,
                count: 0,
            };
            let header = NpyHeader::from_reader(&mut counting)
                .map_err(|e| bad_layer(format!("bad .npy header in the archive: {e}")))?;
            let header_len = counting.count;
            let (dtype, big_endian, order) = npy_dtype(&header);
            layers.push(LayerInfo {
                name,
                shape: header.shape().to_vec(),
                dtype,
                big_endian,
                order,
            });
            let available = size.saturating_sub(header_len);
            storage.push(if method == CompressionMethod::Stored {
                Storage::Plain {
                    offset: data_start + header_len,
                    available,
                }
            } else {
                Storage::Deflated {
                    offset: data_start,
                    compressed,
                    header_len,
                    available,
                }
            });
        }
        Ok(Self {
            path,
            format: Format::Npz,
            layers,
            storage,
        })
    }

    fn open_safetensors(path: PathBuf, file_len: u64, header_len: u64) -> Result<Self, IoError> {
        let bad = |reason: String| IoError::Format {
            path: path.clone(),
            format: ".safetensors",
            reason,
        };
        const MAX_HEADER: u64 = 100 * 1024 * 1024;
        if header_len > MAX_HEADER || 8 + header_len > file_len {
            return Err(bad(format!(
                "header length {header_len} is impossible for a file of {file_len} bytes"
            )));
        }
        let mut file = File::open(&path).map_err(|e| os(&path, e))?;
        let mut header = vec![0u8; 8 + header_len as usize];
        file.read_exact(&mut header).map_err(|e| os(&path, e))?;
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header[8..])
            .map_err(|e| bad(format!("bad JSON header: {e}")))?;
        let data_start = 8 + header_len;
        let mut layers = Vec::new();
        let mut storage = Vec::new();
        for name in meta.offset_keys() {
            let Some(info) = meta.info(&name) else {
                continue;
            };
            let dtype = match info.dtype {
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F64 => DType::F64,
                other => DType::Unsupported(format!("{other:?}")),
            };
            let (begin, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
            let offset = data_start + begin;
            layers.push(LayerInfo {
                name,
                shape: info.shape.iter().map(|&d| d as u64).collect(),
                dtype,
                big_endian: false,
                order: StorageOrder::C,
            });
            storage.push(Storage::Plain {
                offset,
                available: (end - begin).min(file_len.saturating_sub(offset)),
            });
        }
        Ok(Self {
            path,
            format: Format::Safetensors,
            layers,
            storage,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The layers, in file order (npz: archive order; safetensors: data order).
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// The layer called `name`, if any.
    pub fn layer(&self, name: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Checks that layer `name` can be read with `layout` (dtype, rank, non-empty, data present)
    /// and returns its number of rows and neurons, without reading data.
    pub fn check(&self, name: &str, layout: Layout) -> Result<(u64, usize), IoError> {
        let (_, _, geom) = self.locate(name, layout)?;
        Ok((geom.rows, geom.neurons))
    }

    fn locate(
        &self,
        name: &str,
        layout: Layout,
    ) -> Result<(&LayerInfo, Storage, Geometry), IoError> {
        let Some(index) = self.layers.iter().position(|l| l.name == name) else {
            return Err(IoError::NoSuchLayer {
                path: self.path.clone(),
                layer: name.to_string(),
                available: self
                    .layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let info = &self.layers[index];
        let Some(size) = info.dtype.size() else {
            return Err(IoError::UnsupportedDtype {
                path: self.path.clone(),
                layer: name.to_string(),
                dtype: info.dtype.to_string(),
            });
        };
        let geom = Geometry::new(&info.shape, layout).map_err(|p| match p {
            ShapeProblem::Rank => IoError::Rank {
                path: self.path.clone(),
                layer: name.to_string(),
                shape: info.shape.clone(),
            },
            ShapeProblem::Empty { rows, neurons } => IoError::EmptyLayer {
                path: self.path.clone(),
                layer: name.to_string(),
                shape: info.shape.clone(),
                rows,
                neurons,
            },
            ShapeProblem::TooLarge => IoError::BadLayer {
                path: self.path.clone(),
                layer: name.to_string(),
                reason: format!("shape {:?} is too large to address", info.shape),
            },
        })?;
        let storage = self.storage[index];
        let expected = geom.rows * geom.neurons as u64 * size as u64;
        let available = match storage {
            Storage::Plain { available, .. } | Storage::Deflated { available, .. } => available,
        };
        if available < expected {
            return Err(IoError::Truncated {
                path: self.path.clone(),
                layer: name.to_string(),
                expected,
                available: format!("only {available} are present"),
            });
        }
        Ok((info, storage, geom))
    }

    /// A reader that streams layer `name` in row blocks, with `layout` deciding which axis holds
    /// the neurons (see [`Layout`]).
    ///
    /// Fails if the layer does not exist, has an unsupported dtype, a rank below 2, no rows or no
    /// neurons, or if its data section is shorter than its header announces.
    pub fn reader(&self, name: &str, layout: Layout) -> Result<LayerReader, IoError> {
        self.reader_with_slab(name, layout, None)
    }

    /// Like [`reader`](Self::reader), with the size in bytes of the image slabs cached for
    /// layouts whose rows are not contiguous (for tests of the slab logic).
    #[doc(hidden)]
    pub fn reader_with_slab(
        &self,
        name: &str,
        layout: Layout,
        slab_bytes: Option<u64>,
    ) -> Result<LayerReader, IoError> {
        let (info, storage, geom) = self.locate(name, layout)?;
        LayerReader::new(Placement {
            path: self.path.clone(),
            info: info.clone(),
            storage,
            geom,
            slab_bytes,
        })
    }
}

/// Reads as many bytes as available up to `buf.len()`.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
