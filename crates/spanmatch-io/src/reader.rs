//! Streaming one layer in row blocks, converted to f64 and written into a caller's buffer.

use crate::dtype::{Bf16Be, Bf16Le, Elem, Encoding, F16Be, F16Le, F32Be, F32Le, F64Be, F64Le};
use crate::file::{LayerInfo, Storage};
use crate::layout::{strides, Geometry};
use crate::{DType, IoError, StorageOrder};
use flate2::read::DeflateDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read from the file per system call when rows are contiguous (small enough that the
/// converted rows are still in cache for the finiteness check).
const ROW_CHUNK_BYTES: usize = 256 << 10;
/// Target size of the image slab cached for C-order layouts whose rows are not contiguous
/// (fits in L2, so that the strided gather reads from cache).
const SLAB_BYTES_C: u64 = 512 << 10;
/// Target size of the image slab for Fortran-order layouts (one read per channel and position,
/// each of `K` elements, so larger slabs mean fewer, longer reads).
const SLAB_BYTES_F: u64 = 32 << 20;
/// Output bytes converted between two finiteness checks in the gather path.
const CHECK_BYTES: usize = 256 << 10;
/// Values converted together in the strided copies: consecutive positions of one image
/// (C order) or consecutive images at one position (Fortran order).
const TILE: usize = 32;

/// Everything [`LayerReader::new`] needs to know about a layer (built by `ActivationFile`).
pub(crate) struct Placement {
    pub path: PathBuf,
    pub info: LayerInfo,
    pub storage: Storage,
    pub geom: Geometry,
    /// Overrides the slab budget (tests use it to exercise many small slabs).
    pub slab_bytes: Option<u64>,
}

/// Where the bytes come from.
enum Source {
    /// Random access (`pread`) to a file whose layer data starts at `offset`.
    File { file: File, offset: u64 },
    /// A sequential stream (a deflated npz entry) positioned `pos` bytes into the layer data.
    Stream {
        inner: Box<dyn Read + Send>,
        pos: u64,
    },
    /// Everything was read into the slab cache at construction.
    Preloaded,
}

/// The slab cache for layouts whose rows are not contiguous in the file: `count` whole images
/// starting at `first`, stored as the sub-array `[K, ...]` in the file's storage order.
struct Slabs {
    order: StorageOrder,
    k: u64,
    first: u64,
    count: u64,
    cache: Vec<u8>,
    n_stride: usize,
    c_stride: usize,
    /// Element offset of each spatial position within an image slot of the cache.
    pos_off: Vec<usize>,
    /// Whether consecutive positions are consecutive elements (C order, channels first).
    pos_contiguous: bool,
}

enum Mode {
    /// Element (row r, channel c) lies at `r * neurons + c`: rows are read as byte ranges.
    Rows { buf: Vec<u8> },
    /// Whole images are cached and gathered with strides.
    Slabs(Slabs),
}

/// Streams one layer of an activation file as rows of f64: row r is one sample (an image for a
/// fully connected layer, an (image, position) pair for a convolutional one, image-major), and
/// its `neurons()` values are the activations of the layer's neurons for that sample.
///
/// Data are read from the file in large blocks and converted directly into the caller's buffer;
/// memory use is bounded by a few tens of MiB whatever the layer size, except for a
/// Fortran-order array inside a deflated npz entry, which is decompressed whole (see
/// [`LayerReader::warnings`]), and for channels-first arrays whose single image is larger than
/// that (one image is cached at a time).
pub struct LayerReader {
    path: PathBuf,
    info: LayerInfo,
    geom: Geometry,
    encoding: Encoding,
    source: Source,
    mode: Mode,
    next_row: u64,
    warnings: Vec<String>,
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("path", &self.path)
            .field("layer", &self.info.name)
            .field("rows", &self.geom.rows)
            .field("neurons", &self.geom.neurons)
            .field("next_row", &self.next_row)
            .finish()
    }
}

impl LayerReader {
    pub(crate) fn new(p: Placement) -> Result<Self, IoError> {
        let Placement {
            path,
            info,
            storage,
            geom,
            slab_bytes,
        } = p;
        let Some(encoding) = Encoding::new(&info.dtype, info.big_endian) else {
            return Err(IoError::UnsupportedDtype {
                path,
                layer: info.name.clone(),
                dtype: info.dtype.to_string(),
            });
        };
        let size = info.dtype.size().unwrap_or(8) as u64;
        let expected = geom.rows * geom.neurons as u64 * size;
        let mut warnings = Vec::new();
        let open = |path: &Path| File::open(path).map_err(|e| crate::error::os(path, e));
        let mut preload = None;
        let source = match storage {
            Storage::Plain { offset, .. } => Source::File {
                file: open(&path)?,
                offset,
            },
            Storage::Deflated {
                offset,
                compressed,
                header_len,
                ..
            } => {
                let mut file = open(&path)?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| crate::error::os(&path, e))?;
                let decoder =
                    DeflateDecoder::new(BufReader::with_capacity(1 << 20, file.take(compressed)));
                let mut inner: Box<dyn Read + Send> =
                    Box::new(BufReader::with_capacity(1 << 20, decoder));
                let mut header = vec![0u8; header_len as usize];
                inner
                    .read_exact(&mut header)
                    .map_err(|e| data_error(&path, &info.name, expected, 0, e))?;
                let mut source = Source::Stream { inner, pos: 0 };
                if info.order == StorageOrder::Fortran && !geom.rows_contiguous(info.order) {
                    let total = expected;
                    warnings.push(format!(
                        "{}, layer '{}': Fortran-order array in a deflated npz entry cannot be read \
                         in blocks; decompressing it whole ({:.1} MiB in memory)",
                        path.display(),
                        info.name,
                        total as f64 / (1 << 20) as f64
                    ));
                    let mut all = Vec::new();
                    all.try_reserve_exact(total as usize)
                        .map_err(|_| IoError::BadLayer {
                            path: path.clone(),
                            layer: info.name.clone(),
                            reason: format!("cannot allocate {total} bytes to decompress it whole"),
                        })?;
                    all.resize(total as usize, 0);
                    fetch_into(&mut source, 0, &mut all)
                        .map_err(|e| data_error(&path, &info.name, expected, 0, e))?;
                    preload = Some(all);
                    source = Source::Preloaded;
                }
                source
            }
        };
        let mode = if geom.rows_contiguous(info.order) {
            Mode::Rows { buf: Vec::new() }
        } else {
            let image_bytes = geom.image_elems() * size;
            let k = match preload {
                Some(_) => geom.images,
                None => {
                    let budget = slab_bytes.unwrap_or(match info.order {
                        StorageOrder::C => SLAB_BYTES_C,
                        StorageOrder::Fortran => SLAB_BYTES_F,
                    });
                    (budget / image_bytes.max(1)).clamp(1, geom.images)
                }
            };
            let mut cache_shape = geom.shape.clone();
            cache_shape[0] = k;
            let s = strides(&cache_shape, info.order);
            let pos_off: Vec<usize> = (0..geom.positions)
                .map(|p| {
                    geom.spatial_index(p)
                        .iter()
                        .zip(&geom.spatial_axes)
                        .map(|(&i, &a)| (i * s[a]) as usize)
                        .sum()
                })
                .collect();
            let pos_contiguous = pos_off.windows(2).all(|w| w[1] == w[0] + 1);
            let (count, cache) = match preload {
                Some(all) => (geom.images, all),
                None => (0, Vec::new()),
            };
            Mode::Slabs(Slabs {
                order: info.order,
                k,
                first: 0,
                count,
                cache,
                n_stride: s[0] as usize,
                c_stride: s[geom.channel_axis] as usize,
                pos_off,
                pos_contiguous,
            })
        };
        Ok(Self {
            path,
            info,
            geom,
            encoding,
            source,
            mode,
            next_row: 0,
            warnings,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The layer's name, shape and element type.
    pub fn info(&self) -> &LayerInfo {
        &self.info
    }

    /// Element type.
    pub fn dtype(&self) -> &DType {
        &self.info.dtype
    }

    /// Neurons (columns): the channel count.
    pub fn neurons(&self) -> usize {
        self.geom.neurons
    }

    /// Rows (samples): images times spatial positions.
    pub fn rows(&self) -> u64 {
        self.geom.rows
    }

    /// Images (size of the first axis).
    pub fn images(&self) -> u64 {
        self.geom.images
    }

    /// Sizes of the spatial axes, in array order (empty for a fully connected layer).
    pub fn spatial(&self) -> &[u64] {
        &self.geom.spatial
    }

    /// Rows already read.
    pub fn rows_read(&self) -> u64 {
        self.next_row
    }

    /// Bytes of file data per row (for progress reporting).
    pub fn bytes_per_row(&self) -> u64 {
        self.geom.neurons as u64 * self.info.dtype.size().unwrap_or(8) as u64
    }

    /// Messages about slow or memory-hungry paths taken (empty in the common case).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Reads the next `min(max_rows, rows left)` rows and returns how many were read (0 at the
    /// end, or when `max_rows` is 0). Row i of the block is written to `dst[i * dst_stride + col_offset ..][..neurons()]`;
    /// other values of `dst` are left untouched, so two readers can fill the two halves of a
    /// joint row-major block `[x_row | y_row]`.
    ///
    /// Fails if `dst` is too small, if the data section ends early or is corrupt, or on the first
    /// NaN or infinite value (the error gives its image, channel and spatial index).
    pub fn read_rows(
        &mut self,
        max_rows: usize,
        dst: &mut [f64],
        dst_stride: usize,
        col_offset: usize,
    ) -> Result<usize, IoError> {
        let left = self.geom.rows - self.next_row;
        let n = (max_rows as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let c = self.geom.neurons;
        let fits = col_offset + c <= dst_stride
            && (n - 1)
                .checked_mul(dst_stride)
                .and_then(|v| v.checked_add(col_offset + c))
                .is_some_and(|need| need <= dst.len());
        if !fits {
            return Err(IoError::Destination {
                path: self.path.clone(),
                layer: self.info.name.clone(),
                len: dst.len(),
                rows: n,
                stride: dst_stride,
                offset: col_offset,
                neurons: c,
            });
        }
        let out = Out {
            dst,
            stride: dst_stride,
            offset: col_offset,
        };
        let result = match self.encoding {
            Encoding::F16Le => self.read_typed::<F16Le>(n, out),
            Encoding::F16Be => self.read_typed::<F16Be>(n, out),
            Encoding::Bf16Le => self.read_typed::<Bf16Le>(n, out),
            Encoding::Bf16Be => self.read_typed::<Bf16Be>(n, out),
            Encoding::F32Le => self.read_typed::<F32Le>(n, out),
            Encoding::F32Be => self.read_typed::<F32Be>(n, out),
            Encoding::F64Le => self.read_typed::<F64Le>(n, out),
            Encoding::F64Be => self.read_typed::<F64Be>(n, out),
        };
        match result {
            Ok(()) => {}
            Err(Fail::Io(byte, e)) => {
                let expected = self.geom.rows * self.bytes_per_row();
                return Err(data_error(&self.path, &self.info.name, expected, byte, e));
            }
            Err(Fail::NonFinite {
                row,
                channel,
                value,
            }) => {
                let r = self.next_row + row as u64;
                return Err(IoError::NonFinite {
                    path: self.path.clone(),
                    layer: self.info.name.clone(),
                    value,
                    image: r / self.geom.positions,
                    channel,
                    spatial: self.geom.spatial_index(r % self.geom.positions),
                    row: r,
                });
            }
        }
        self.next_row += n as u64;
        Ok(n)
    }

    /// Reads `n` rows, checking each chunk for non-finite values while it is still in cache.
    fn read_typed<E: Elem>(&mut self, n: usize, mut out: Out<'_>) -> Result<(), Fail> {
        let c = self.geom.neurons;
        let row_bytes = c * E::SIZE;
        match &mut self.mode {
            Mode::Rows { buf } => {
                let per_fetch = (ROW_CHUNK_BYTES / row_bytes).max(1);
                let mut done = 0;
                while done < n {
                    let take = per_fetch.min(n - done);
                    let at = (self.next_row + done as u64) * row_bytes as u64;
                    buf.resize(take * row_bytes, 0);
                    fetch_into(&mut self.source, at, buf).map_err(|e| Fail::Io(at, e))?;
                    for (i, src) in buf.chunks_exact(row_bytes).enumerate() {
                        E::convert(src, out.row(done + i, c));
                    }
                    out.check(done..done + take, c)?;
                    done += take;
                }
                Ok(())
            }
            Mode::Slabs(slabs) => {
                let p = self.geom.positions;
                let end = self.next_row + n as u64;
                let mut r = self.next_row;
                while r < end {
                    let image = r / p;
                    if image < slabs.first || image >= slabs.first + slabs.count {
                        fill_slab::<E>(slabs, &mut self.source, &self.geom, image)?;
                    }
                    let slab_end = (slabs.first + slabs.count) * p;
                    let out0 = (r - self.next_row) as usize;
                    let whole_from = r.div_ceil(p);
                    let whole_to = (end.min(slab_end) / p).min(whole_from + TILE as u64);
                    let stop = if slabs.order == StorageOrder::Fortran
                        && r == whole_from * p
                        && whole_to > whole_from
                    {
                        // Whole images: runs along the image axis are contiguous.
                        gather_images::<E>(slabs, &self.geom, whole_from, whole_to, out0, &mut out);
                        whole_to * p
                    } else {
                        let per_check = (CHECK_BYTES / (8 * c)).max(1) as u64;
                        let mut stop = end.min(slab_end).min(r + per_check);
                        if slabs.order == StorageOrder::Fortran && whole_to > whole_from {
                            // Finish the partial image, then take the fast path.
                            stop = stop.min(whole_from * p);
                        }
                        gather::<E>(slabs, &self.geom, r, stop, out0, &mut out);
                        stop
                    };
                    let first = (r - self.next_row) as usize;
                    out.check(first..first + (stop - r) as usize, c)?;
                    r = stop;
                }
                Ok(())
            }
        }
    }
}

/// Whether every value is finite. `v * 0` is NaN exactly for NaN and ±inf; eight independent
/// sums let the loop vectorise.
#[inline]
fn all_finite(values: &[f64]) -> bool {
    let mut acc = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * 0.0;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v * 0.0;
    }
    acc.iter().all(|a| *a == 0.0)
}

/// The caller's destination: row i goes to `dst[i * stride + offset..]`.
struct Out<'a> {
    dst: &'a mut [f64],
    stride: usize,
    offset: usize,
}

impl Out<'_> {
    #[inline]
    fn row(&mut self, i: usize, c: usize) -> &mut [f64] {
        &mut self.dst[i * self.stride + self.offset..][..c]
    }

    /// Fails on the first NaN or infinity among output rows `rows`.
    fn check(&self, rows: std::ops::Range<usize>, c: usize) -> Result<(), Fail> {
        for i in rows {
            let row = &self.dst[i * self.stride + self.offset..][..c];
            if !all_finite(row) {
                let channel = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
                return Err(Fail::NonFinite {
                    row: i,
                    channel,
                    value: row[channel],
                });
            }
        }
        Ok(())
    }
}

/// Why reading a block stopped.
enum Fail {
    /// An IO error at this byte of the data section.
    Io(u64, io::Error),
    /// A NaN or infinity at this output row and channel.
    NonFinite {
        row: usize,
        channel: usize,
        value: f64,
    },
}

/// Loads images `first..first + count` into the slab cache.
fn fill_slab<E: Elem>(
    slabs: &mut Slabs,
    source: &mut Source,
    geom: &Geometry,
    first: u64,
) -> Result<(), Fail> {
    let count = slabs.k.min(geom.images - first);
    let img = geom.image_elems() as usize;
    let size = E::SIZE;
    slabs.cache.resize(slabs.k as usize * img * size, 0);
    slabs.count = 0;
    match slabs.order {
        StorageOrder::C => {
            let at = first * (img * size) as u64;
            let len = count as usize * img * size;
            fetch_into(source, at, &mut slabs.cache[..len]).map_err(|e| Fail::Io(at, e))?;
        }
        StorageOrder::Fortran => {
            // The first axis varies fastest: one run of `count` elements per (channel, position).
            let n = geom.images;
            let k = slabs.k as usize;
            for j in 0..img {
                let at = (j as u64 * n + first) * size as u64;
                let dst = &mut slabs.cache[j * k * size..][..count as usize * size];
                fetch_into(source, at, dst).map_err(|e| Fail::Io(at, e))?;
            }
        }
    }
    slabs.first = first;
    slabs.count = count;
    Ok(())
}

/// Copies rows `r0..r1` (all within the cached images) to output rows starting at `out0`.
fn gather<E: Elem>(
    slabs: &Slabs,
    geom: &Geometry,
    r0: u64,
    r1: u64,
    out0: usize,
    out: &mut Out<'_>,
) {
    let p = geom.positions;
    let c = geom.neurons;
    let mut bases = [0usize; TILE];
    let mut r = r0;
    let mut o = out0;
    while r < r1 {
        let image = r / p;
        let pos = (r % p) as usize;
        let t = (TILE as u64).min(r1 - r).min(p - pos as u64) as usize;
        let slot = (image - slabs.first) as usize * slabs.n_stride;
        for (k, b) in bases.iter_mut().enumerate().take(t) {
            *b = slot + slabs.pos_off[pos + k];
        }
        if slabs.pos_contiguous {
            // Each channel's values for the t positions are consecutive: convert them at once.
            let mut tmp = [0.0f64; TILE];
            for ch in 0..c {
                let start = (bases[0] + ch * slabs.c_stride) * E::SIZE;
                E::convert(&slabs.cache[start..start + t * E::SIZE], &mut tmp[..t]);
                for (k, &v) in tmp.iter().enumerate().take(t) {
                    out.dst[(o + k) * out.stride + out.offset + ch] = v;
                }
            }
        } else {
            for ch in 0..c {
                let co = ch * slabs.c_stride;
                for (k, &b) in bases.iter().enumerate().take(t) {
                    out.dst[(o + k) * out.stride + out.offset + ch] = E::at(&slabs.cache, b + co);
                }
            }
        }
        r += t as u64;
        o += t;
    }
}

/// Copies whole images `i0..i1` (cached, Fortran order) to output rows starting at `out0`: for
/// each (position, channel) the values of consecutive images are consecutive in the cache.
fn gather_images<E: Elem>(
    slabs: &Slabs,
    geom: &Geometry,
    i0: u64,
    i1: u64,
    out0: usize,
    out: &mut Out<'_>,
) {
    let p = geom.positions as usize;
    let t = (i1 - i0) as usize;
    let slot = (i0 - slabs.first) as usize;
    let mut tmp = [0.0f64; TILE];
    for pos in 0..p {
        for ch in 0..geom.neurons {
            let start = (slabs.pos_off[pos] + ch * slabs.c_stride + slot) * E::SIZE;
            E::convert(&slabs.cache[start..start + t * E::SIZE], &mut tmp[..t]);
            for (k, &v) in tmp.iter().enumerate().take(t) {
                out.dst[(out0 + k * p + pos) * out.stride + out.offset + ch] = v;
            }
        }
    }
}

/// Fills `dst` with the layer data starting at byte `at` (relative to the data section).
fn fetch_into(source: &mut Source, at: u64, dst: &mut [u8]) -> io::Result<()> {
    match source {
        Source::File { file, offset } => file.read_exact_at(dst, *offset + at),
        Source::Stream { inner, pos } => {
            if at < *pos {
                return Err(io::Error::other(
                    "internal: backwards read on a compressed stream",
                ));
            }
            if at > *pos {
                let skip = at - *pos;
                let skipped = io::copy(&mut inner.by_ref().take(skip), &mut io::sink())?;
                *pos += skipped;
                if skipped < skip {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            inner.read_exact(dst)?;
            *pos += dst.len() as u64;
            Ok(())
        }
        Source::Preloaded => Err(io::Error::other("internal: read from a preloaded layer")),
    }
}

fn data_error(path: &Path, layer: &str, expected: u64, at: u64, e: io::Error) -> IoError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => IoError::Truncated {
            path: path.to_path_buf(),
            layer: layer.to_string(),
            expected,
            available: format!("but the data ends before byte {at} of the data section"),
        },
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => IoError::BadLayer {
            path: path.to_path_buf(),
            layer: layer.to_string(),
            reason: format!("corrupt compressed data near byte {at} of the data section: {e}"),
        },
        _ => IoError::Os {
            path: path.to_path_buf(),
            source: e,
        },
    }
}
