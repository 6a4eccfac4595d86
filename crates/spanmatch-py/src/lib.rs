//! Python bindings of spanmatch (`spanmatch._native`). Thin: array reading (in place, any
//! strides, float16/bfloat16/float32/float64), and calls into the engine's library API. The
//! Python package (`python/spanmatch/`) wraps these in documented, typed classes.
//!
//! Every computation releases the GIL (`Python::detach`). Errors become `ValueError`,
//! `TypeError` or `FileNotFoundError` with the CLI's messages; a Rust panic surfaces as PyO3's
//! `PanicException`, never as an abort.

use numpy::ndarray::ArrayViewD;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use spanmatch_core::controls::ChunkedStats;
use spanmatch_core::measures::{Measure, DEFAULT_RIDGE_ALPHA, DEFAULT_SHAPE_ALPHA};
use spanmatch_core::simple::{simple_matches, simple_matches_for, SimpleOptions};
use spanmatch_core::{GramAccumulator, JointStats, MatchOptions, MatchProblem, RowNormMoments};
use spanmatch_engine::compare as engine;
use spanmatch_engine::options::{check_eps, parse_measures, tolerances};
use spanmatch_engine::results::{self, Comparison, ComparisonKind, Front, LayerRecord, Results};
use spanmatch_engine::stream::{default_block_rows, Sampling};
use spanmatch_engine::tables;
use spanmatch_engine::{
    analyse_pair, BaselineInput, Collect, CompareOptions, LayerLabel, Options, PairInput,
};
use spanmatch_io::Layout;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

mod report;

/// Maps an engine error to the matching Python exception, with the CLI's message.
fn to_py(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<spanmatch_io::IoError>() {
            match io {
                spanmatch_io::IoError::NotFound { .. } => return PyFileNotFoundError::new_err(msg),
                spanmatch_io::IoError::UnsupportedDtype { .. } => return PyTypeError::new_err(msg),
                _ => {}
            }
        }
    }
    PyValueError::new_err(msg)
}

fn core_err(e: spanmatch_core::CoreError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn parse_layout(layout: &str) -> PyResult<Layout> {
    match layout.to_ascii_lowercase().as_str() {
        "nchw" | "channels_first" => Ok(Layout::Nchw),
        "nhwc" | "channels_last" => Ok(Layout::Nhwc),
        other => Err(PyValueError::new_err(format!(
            "layout: '{other}' is not a layout; use 'nchw' (channels first, [N, C, ...]) or 'nhwc' (channels last, [N, ..., C])"
        ))),
    }
}

fn matching(dead: &str, tol: Option<f64>) -> PyResult<MatchOptions> {
    let dead = match dead {
        "drop" => spanmatch_core::DeadPolicy::Drop,
        "match" => spanmatch_core::DeadPolicy::Match,
        other => {
            return Err(PyValueError::new_err(format!(
                "dead: '{other}' is not a policy; use 'drop' (leave dead neurons out of matches, count them in mms) or 'match' (literal definition)"
            )))
        }
    };
    Ok(MatchOptions {
        tol: tolerances(tol, "tol").map_err(to_py)?,
        dead,
    })
}

/// One array of activations, read in place.
enum View<'a> {
    F16(ArrayViewD<'a, half::f16>),
    F32(ArrayViewD<'a, f32>),
    F64(ArrayViewD<'a, f64>),
    /// bfloat16 bits, carried as uint16 (numpy has no bfloat16).
    Bf16(ArrayViewD<'a, u16>),
}

/// A borrowed array (the borrow keeps the buffer alive and unaliased while the GIL is released).
enum Held<'py> {
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    U16(PyReadonlyArrayDyn<'py, u16>),
}

impl<'py> Held<'py> {
    fn from_any(obj: &Bound<'py, PyAny>, bf16: bool, side: &str) -> PyResult<Self> {
        let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
            return Err(PyTypeError::new_err(format!(
                "{side}: expected a numpy array, got {}",
                obj.get_type().name()?
            )));
        };
        let dtype = untyped.dtype().str()?.to_string();
        let held = if bf16 {
            obj.extract::<PyReadonlyArrayDyn<'py, u16>>().map(Held::U16)
        } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            Ok(Held::F32(a))
        } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f64>>() {
            Ok(Held::F64(a))
        } else {
            obj.extract::<PyReadonlyArrayDyn<'py, half::f16>>()
                .map(Held::F16)
        };
        held.map_err(|_| {
            PyTypeError::new_err(format!(
                "{side}: unsupported element type {dtype}; activations must be float16, bfloat16, float32 or float64"
            ))
        })
    }

    fn view(&self) -> View<'_> {
        match self {
            Held::F16(a) => View::F16(a.as_array()),
            Held::F32(a) => View::F32(a.as_array()),
            Held::F64(a) => View::F64(a.as_array()),
            Held::U16(a) => View::Bf16(a.as_array()),
        }
    }
}

impl View<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            View::F16(a) => a.shape(),
            View::F32(a) => a.shape(),
            View::F64(a) => a.shape(),
            View::Bf16(a) => a.shape(),
        }
    }
}

/// Where the neurons and rows of an array are.
#[derive(Debug, Clone)]
struct Geometry {
    neurons: usize,
    positions: usize,
    rows: usize,
    channel_axis: usize,
    spatial_axes: Vec<usize>,
}

fn geometry(shape: &[usize], layout: Layout, side: &str) -> PyResult<Geometry> {
    if shape.len() < 2 {
        return Err(PyValueError::new_err(format!(
            "{side}: an array of rank {} (shape {shape:?}); activations need at least 2 axes: [N, C] or [N, C, ...]",
            shape.len()
        )));
    }
    let r = shape.len();
    let (channel_axis, spatial_axes): (usize, Vec<usize>) = match layout {
        Layout::Nchw => (1, (2..r).collect()),
        Layout::Nhwc => (r - 1, (1..r - 1).collect()),
    };
    let neurons = shape[channel_axis];
    let positions: usize = spatial_axes.iter().map(|&a| shape[a]).product();
    if neurons == 0 {
        return Err(PyValueError::new_err(format!(
            "{side}: the layer has no neurons (shape {shape:?})"
        )));
    }
    Ok(Geometry {
        neurons,
        positions,
        rows: shape[0] * positions,
        channel_axis,
        spatial_axes,
    })
}

/// Positions per tile when gathering an array whose channels are not contiguous (measured on
/// [128, 64, 16, 16] float32 batches: 32 to 64 positions keep the written rows in L1/L2).
const GATHER_TILE: usize = 32;

/// Writes rows `[row0, row0 + rows)` of an array into `dst` (rows of `stride` values, starting
/// at column `col0`).
fn gather_view<T: Copy, D: Copy>(
    a: &ArrayViewD<'_, T>,
    g: &Geometry,
    (row0, rows): (usize, usize),
    dst: &mut [D],
    (stride, col0): (usize, usize),
    conv: impl Fn(T) -> D,
) {
    let strides = a.strides();
    let shape = a.shape();
    let ptr = a.as_ptr();
    let st_c = strides[g.channel_axis];
    // Offsets (in elements) of every spatial position within an image, row-major.
    let mut offsets = Vec::with_capacity(g.positions);
    let mut idx = vec![0usize; g.spatial_axes.len()];
    for _ in 0..g.positions {
        let off: isize = g
            .spatial_axes
            .iter()
            .zip(&idx)
            .map(|(&ax, &i)| i as isize * strides[ax])
            .sum();
        offsets.push(off);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[g.spatial_axes[k]] {
                break;
            }
            idx[k] = 0;
        }
    }
    let channels_inner = st_c.unsigned_abs() == 1 || g.positions == 1;
    // Positions in order with unit stride (a C-contiguous NCHW array): the transposing copy
    // reads runs of positions and writes runs of channels.
    let positions_unit = offsets.iter().enumerate().all(|(s, &o)| o == s as isize);
    let mut r = row0;
    let end = row0 + rows;
    while r < end {
        let img = r / g.positions;
        let s0 = r % g.positions;
        let s1 = (g.positions).min(s0 + (end - r));
        let base = img as isize * strides[0];
        let out0 = (r - row0) * stride + col0;
        if st_c == 1 {
            // Channels contiguous (C-order [N, C], channels-last): convert whole runs.
            for (k, s) in (s0..s1).enumerate() {
                let row = &mut dst[out0 + k * stride..][..g.neurons];
                // SAFETY: the run of `neurons` elements from (img, 0, s) with unit stride is
                // inside the array (its channel axis has unit stride and that length).
                let src =
                    unsafe { std::slice::from_raw_parts(ptr.offset(base + offsets[s]), g.neurons) };
                for (v, &x) in row.iter_mut().zip(src) {
                    *v = conv(x);
                }
            }
        } else if channels_inner {
            for (k, s) in (s0..s1).enumerate() {
                let row = &mut dst[out0 + k * stride..][..g.neurons];
                let p = base + offsets[s];
                for (c, v) in row.iter_mut().enumerate() {
                    // SAFETY: (img, c, s) is inside the array's shape, so the offset computed
                    // from its strides points at one of its elements.
                    *v = conv(unsafe { *ptr.offset(p + c as isize * st_c) });
                }
            }
        } else if positions_unit {
            // NCHW, contiguous planes: tiles of positions x 8 channels; each output row gets 8
            // contiguous values, each of the 8 planes is read in order.
            let last = dst.len();
            for t0 in (s0..s1).step_by(GATHER_TILE) {
                let t1 = (t0 + GATHER_TILE).min(s1);
                // Bounds of everything written in this tile, checked once.
                assert!(out0 + (t1 - 1 - s0) * stride + g.neurons <= last);
                for c0 in (0..g.neurons).step_by(8) {
                    let c1 = (c0 + 8).min(g.neurons);
                    for s in t0..t1 {
                        let out = out0 + (s - s0) * stride + c0;
                        let src = base + s as isize;
                        for c in c0..c1 {
                            // SAFETY: (img, c, s) is inside the array (c < neurons, s <
                            // positions, and positions are at unit stride), and the write is
                            // inside `dst` by the assertion above.
                            unsafe {
                                *dst.get_unchecked_mut(out + (c - c0)) =
                                    conv(*ptr.offset(src + c as isize * st_c));
                            }
                        }
                    }
                }
            }
        } else {
            // Channels strided (e.g. NCHW): transpose in tiles of positions, so that the rows
            // written stay in cache while every channel plane is read in order.
            for t0 in (s0..s1).step_by(GATHER_TILE) {
                let t1 = (t0 + GATHER_TILE).min(s1);
                for c in 0..g.neurons {
                    let pc = base + c as isize * st_c;
                    for (s, &off) in offsets.iter().enumerate().take(t1).skip(t0) {
                        let k = s - s0;
                        // SAFETY: as above.
                        dst[out0 + k * stride + c] = conv(unsafe { *ptr.offset(pc + off) });
                    }
                }
            }
        }
        r += s1 - s0;
    }
}

/// The element type of the joint row blocks: f64 (float64 products, the default) or f32
/// (float32 block products, summed into the float64 statistics).
trait Element: Copy + Default + Send + std::fmt::Display {
    /// Values after the joint row in each block row (see `GramAccumulator::push_joint_f32`).
    const EXTRA: usize;
    fn finite(self) -> bool;
    /// Completes freshly gathered rows (the extra values) and checks them: false when one is
    /// not finite.
    fn complete(rows: &mut [Self], n1: usize, n2: usize) -> bool;
    fn gather(
        v: &View<'_>,
        g: &Geometry,
        span: (usize, usize),
        dst: &mut [Self],
        cols: (usize, usize),
    );
    fn push(acc: &mut GramAccumulator, block: &[Self]) -> Result<(), spanmatch_core::CoreError>;
}

impl Element for f64 {
    const EXTRA: usize = 0;

    fn finite(self) -> bool {
        self.is_finite()
    }

    fn complete(rows: &mut [f64], _n1: usize, _n2: usize) -> bool {
        // Branch-free per chunk (vectorises); the caller locates a bad value.
        rows.chunks(4096)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
    }

    fn gather(
        v: &View<'_>,
        g: &Geometry,
        span: (usize, usize),
        dst: &mut [f64],
        cols: (usize, usize),
    ) {
        match v {
            View::F16(a) => gather_view(a, g, span, dst, cols, f64::from),
            View::F32(a) => gather_view(a, g, span, dst, cols, f64::from),
            View::F64(a) => gather_view(a, g, span, dst, cols, |x| x),
            View::Bf16(a) => gather_view(a, g, span, dst, cols, |bits| {
                f64::from(half::bf16::from_bits(bits))
            }),
        }
    }

    fn push(acc: &mut GramAccumulator, block: &[f64]) -> Result<(), spanmatch_core::CoreError> {
        acc.push_joint(block)
    }
}

impl Element for f32 {
    const EXTRA: usize = 3;

    fn finite(self) -> bool {
        self.is_finite()
    }

    fn complete(rows: &mut [f32], n1: usize, n2: usize) -> bool {
        // A non-finite value makes its row's squared norm non-finite: one check per row.
        GramAccumulator::augment_f32(rows, n1, n2)
    }

    fn gather(
        v: &View<'_>,
        g: &Geometry,
        span: (usize, usize),
        dst: &mut [f32],
        cols: (usize, usize),
    ) {
        match v {
            View::F16(a) => gather_view(a, g, span, dst, cols, f32::from),
            View::F32(a) => gather_view(a, g, span, dst, cols, |x| x),
            View::F64(a) => gather_view(a, g, span, dst, cols, |x| x as f32),
            View::Bf16(a) => gather_view(a, g, span, dst, cols, |bits| {
                f32::from(half::bf16::from_bits(bits))
            }),
        }
    }

    fn push(acc: &mut GramAccumulator, block: &[f32]) -> Result<(), spanmatch_core::CoreError> {
        acc.push_joint_f32(block)
    }
}

/// Describes row `row` of an array for error messages: input index and spatial index.
fn position(g: &Geometry, shape: &[usize], row: usize) -> String {
    let img = row / g.positions;
    if g.spatial_axes.is_empty() {
        return format!("input {img}");
    }
    let mut s = row % g.positions;
    let mut idx = vec![0; g.spatial_axes.len()];
    for k in (0..idx.len()).rev() {
        let d = shape[g.spatial_axes[k]];
        idx[k] = s % d;
        s /= d;
    }
    format!("input {img}, position {idx:?}")
}

/// Batches of fewer rows wait for the next ones until a block has this many rows (unless
/// `block_rows` is set): a product of rank 512 runs near full speed, and the rows held stay
/// small (4 MB for 1,024 float64 columns).
const DEFER_ROWS: usize = 512;

/// Values per block from which a block is gathered on two threads.
const PARALLEL_GATHER: usize = 1 << 18;

/// Whether the machine has a second core for the gather (asked once).
fn gather_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One batch of an array pair: the two views and where their rows are.
struct Batch<'a, 'b> {
    a: (&'a View<'b>, &'a Geometry),
    b: (&'a View<'b>, &'a Geometry),
}

impl Batch<'_, '_> {
    fn n1(&self) -> usize {
        self.a.1.neurons
    }

    fn n(&self) -> usize {
        self.a.1.neurons + self.b.1.neurons
    }

    fn rows(&self) -> usize {
        self.a.1.rows
    }

    /// Values per row of a block of element `T`: the joint row and `T::EXTRA` more.
    fn width<T: Element>(&self) -> usize {
        self.n() + T::EXTRA
    }

    /// Gathers the batch's rows `[r, r + m)` into `dst` (whole block rows), and checks them.
    fn fill<T: Element>(&self, (r, m): (usize, usize), dst: &mut [T]) -> Result<(), String> {
        let (n, n1, w) = (self.n(), self.n1(), self.width::<T>());
        let (va, ga) = self.a;
        let (vb, gb) = self.b;
        let dst = &mut dst[..m * w];
        let gather = |(r, m): (usize, usize), dst: &mut [T]| -> bool {
            T::gather(va, ga, (r, m), dst, (w, 0));
            T::gather(vb, gb, (r, m), dst, (w, n1));
            T::complete(dst, n1, n - n1)
        };
        let ok = if m * w >= PARALLEL_GATHER && m >= 2 && gather_threads() > 1 {
            // Two halves of the rows on two threads (the copy is bound by memory latency of the
            // strided reads more than by bandwidth).
            let h = m / 2;
            let (lo, hi) = dst.split_at_mut(h * w);
            std::thread::scope(|s| {
                let other = s.spawn(|| gather((r + h, m - h), hi));
                let mine = gather((r, h), lo);
                match other.join() {
                    Ok(theirs) => mine & theirs,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            })
        } else {
            gather((r, m), dst)
        };
        if ok {
            return Ok(());
        }
        let found = dst
            .chunks_exact(w)
            .enumerate()
            .find_map(|(k, row)| row[..n].iter().position(|v| !v.finite()).map(|c| (k, c)));
        let Some((k, col)) = found else {
            return Err(format!(
                "values too large for float32 products: a squared row norm overflows (rows {r} to {}); use precision='float64'",
                r + m
            ));
        };
        let (side, g, shape, c) = if col < n1 {
            ("a", ga, va.shape(), col)
        } else {
            ("b", gb, vb.shape(), col - n1)
        };
        Err(format!(
            "{side}: non-finite value {} at {}, channel {c} (array shape {shape:?})",
            dst[k * w + col],
            position(g, shape, r + k)
        ))
    }
}

/// Row blocks of one precision: rows wait in `pending` until a whole block of `block` rows is
/// there (so that small batches, e.g. one row per input against a wide layer, still make
/// efficient products); `spare` is the second buffer of an update.
struct Blocks<T> {
    pending: Vec<T>,
    spare: Vec<T>,
    rows: usize,
}

impl<T: Element> Blocks<T> {
    fn new() -> Self {
        Self {
            pending: Vec::new(),
            spare: Vec::new(),
            rows: 0,
        }
    }

    /// Adds a batch; on error (a non-finite value) nothing changes. The buffers only grow (no
    /// zero-filling per batch); `rows` says how many rows of `pending` are held.
    fn update(
        &mut self,
        acc: &mut GramAccumulator,
        batch: &Batch<'_, '_>,
        block: usize,
    ) -> Result<(), String> {
        let n = batch.width::<T>();
        let rows = batch.rows();
        let held = self.rows;
        // The block may have shrunk since the rows held came (batches of other sizes).
        let block = block.max(held + 1);
        if held + rows < block {
            // The batch joins the pending rows.
            grow(&mut self.pending, (held + rows) * n);
            batch.fill((0, rows), &mut self.pending[held * n..(held + rows) * n])?;
            self.rows = held + rows;
            return Ok(());
        }
        // The pending rows and the first rows of the batch make a whole block.
        let first = block - held;
        grow(&mut self.pending, block * n);
        batch.fill((0, first), &mut self.pending[held * n..block * n])?;
        let rest = rows - first;
        if rest == 0 {
            // Exactly one block (a batch of the block's size): one buffer is enough.
            T::push(acc, &self.pending[..block * n]).map_err(|e| e.to_string())?;
            self.rows = 0;
            return Ok(());
        }
        if rest < block {
            // The rest fits in the spare buffer: check it before anything is added.
            grow(&mut self.spare, rest * n);
            batch.fill((first, rest), &mut self.spare[..rest * n])?;
            T::push(acc, &self.pending[..block * n]).map_err(|e| e.to_string())?;
            std::mem::swap(&mut self.pending, &mut self.spare);
            self.rows = rest;
            return Ok(());
        }
        // Several blocks: accumulate apart and merge only on success (an error in a later
        // block must leave the accumulator, and the pending rows, as they were).
        let mut work = GramAccumulator::new(acc.n1(), acc.n2());
        T::push(&mut work, &self.pending[..block * n]).map_err(|e| e.to_string())?;
        // With no rows held before, there is nothing to keep: the first buffer takes every
        // block (one block of memory per layer pair, not two).
        let reuse = held == 0;
        let buf = if reuse {
            &mut self.pending
        } else {
            grow(&mut self.spare, block * n);
            &mut self.spare
        };
        let mut r = first;
        let left = loop {
            let m = block.min(rows - r);
            batch.fill((r, m), &mut buf[..m * n])?;
            r += m;
            if m < block {
                break m;
            }
            T::push(&mut work, &buf[..m * n]).map_err(|e| e.to_string())?;
            if r == rows {
                break 0;
            }
        };
        acc.merge(&work).map_err(|e| e.to_string())?;
        if !reuse {
            std::mem::swap(&mut self.pending, &mut self.spare);
        }
        self.rows = left;
        Ok(())
    }

    /// The pending rows, for a layer pair of `n` neurons in all.
    fn held(&self, n: usize) -> &[T] {
        &self.pending[..self.rows * (n + T::EXTRA)]
    }

    /// Adds the pending rows to `acc`.
    fn flush(&mut self, acc: &mut GramAccumulator) -> PyResult<()> {
        if self.rows > 0 {
            T::push(acc, self.held(acc.n1() + acc.n2())).map_err(core_err)?;
            self.rows = 0;
        }
        Ok(())
    }
}

/// Makes `v` at least `len` long (new values are zeros; existing ones are kept).
fn grow<T: Element>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// Precision of the per-block Gram products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    F64,
    F32,
}

fn parse_precision(precision: &str) -> PyResult<Precision> {
    match precision {
        "float64" => Ok(Precision::F64),
        "float32" => Ok(Precision::F32),
        other => Err(PyValueError::new_err(format!(
            "precision: '{other}'; use 'float64' (exact products) or 'float32' (float32 block products summed in float64)"
        ))),
    }
}

/// Streaming statistics of a layer pair (see the Python class `spanmatch.Accumulator`).
#[pyclass(module = "spanmatch._native", name = "Accumulator")]
struct PyAccumulator {
    layout: Layout,
    precision: Precision,
    /// Rows per block product (`None`: the engine's default for the widths).
    block_rows: Option<usize>,
    acc: Option<GramAccumulator>,
    f64_blocks: Blocks<f64>,
    f32_blocks: Blocks<f32>,
}

impl PyAccumulator {
    fn pending(&self) -> usize {
        self.f64_blocks.rows + self.f32_blocks.rows
    }

    /// Adds the rows waiting for a whole block.
    fn flush(&mut self) -> PyResult<()> {
        if let Some(acc) = &mut self.acc {
            self.f64_blocks.flush(acc)?;
            self.f32_blocks.flush(acc)?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyAccumulator {
    #[new]
    #[pyo3(signature = (layout = "nchw", precision = "float64", block_rows = None))]
    fn new(layout: &str, precision: &str, block_rows: Option<usize>) -> PyResult<Self> {
        if block_rows == Some(0) {
            return Err(PyValueError::new_err("block_rows must be at least 1"));
        }
        Ok(Self {
            layout: parse_layout(layout)?,
            precision: parse_precision(precision)?,
            block_rows,
            acc: None,
            f64_blocks: Blocks::new(),
            f32_blocks: Blocks::new(),
        })
    }

    /// Adds one batch: `a` and `b` are the two nets' activations on the same inputs.
    #[pyo3(signature = (a, b, bf16_a = false, bf16_b = false))]
    fn update(
        &mut self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
        bf16_a: bool,
        bf16_b: bool,
    ) -> PyResult<()> {
        let ha = Held::from_any(a, bf16_a, "a")?;
        let hb = Held::from_any(b, bf16_b, "b")?;
        let (va, vb) = (ha.view(), hb.view());
        let ga = geometry(va.shape(), self.layout, "a")?;
        let gb = geometry(vb.shape(), self.layout, "b")?;
        if va.shape()[0] != vb.shape()[0] || ga.rows != gb.rows {
            return Err(PyValueError::new_err(format!(
                "a has {} rows (shape {:?}) but b has {} rows (shape {:?}); both must hold the same inputs in the same order",
                ga.rows,
                va.shape(),
                gb.rows,
                vb.shape()
            )));
        }
        if let Some(acc) = &self.acc {
            if (acc.n1(), acc.n2()) != (ga.neurons, gb.neurons) {
                return Err(PyValueError::new_err(format!(
                    "this accumulator holds {} + {} neurons, but the batch has {} + {} (a: shape {:?}, b: shape {:?})",
                    acc.n1(),
                    acc.n2(),
                    ga.neurons,
                    gb.neurons,
                    va.shape(),
                    vb.shape()
                )));
            }
        }
        let block = self.block_rows.unwrap_or_else(|| {
            default_block_rows(ga.neurons, gb.neurons).min(ga.rows.max(DEFER_ROWS))
        });
        let acc = self
            .acc
            .get_or_insert_with(|| GramAccumulator::new(ga.neurons, gb.neurons));
        let batch = Batch {
            a: (&va, &ga),
            b: (&vb, &gb),
        };
        let (b64, b32) = (&mut self.f64_blocks, &mut self.f32_blocks);
        let result = match self.precision {
            Precision::F64 => py.detach(|| b64.update(acc, &batch, block)),
            Precision::F32 => py.detach(|| b32.update(acc, &batch, block)),
        };
        result.map_err(PyValueError::new_err)
    }

    /// Adds another accumulator's statistics (disjoint inputs).
    fn merge(&mut self, other: &PyAccumulator) -> PyResult<()> {
        self.flush()?;
        let theirs = other.settled()?;
        match (&mut self.acc, theirs) {
            (_, None) => Ok(()),
            (None, Some(o)) => {
                self.acc = Some(o);
                Ok(())
            }
            (Some(a), Some(o)) => a.merge(&o).map_err(core_err),
        }
    }

    #[getter]
    fn rows(&self) -> u64 {
        self.acc.as_ref().map_or(0, |a| a.rows()) + self.pending() as u64
    }

    #[getter]
    fn n1(&self) -> Option<usize> {
        self.acc.as_ref().map(|a| a.n1())
    }

    #[getter]
    fn n2(&self) -> Option<usize> {
        self.acc.as_ref().map(|a| a.n2())
    }

    #[getter]
    fn layout(&self) -> &'static str {
        engine::layout_name(self.layout)
    }

    #[getter]
    fn precision(&self) -> &'static str {
        match self.precision {
            Precision::F64 => "float64",
            Precision::F32 => "float32",
        }
    }

    #[getter]
    fn block_rows(&self) -> Option<usize> {
        self.block_rows
    }

    /// The finished statistics (the pending rows are added first).
    fn finish(&mut self, py: Python<'_>) -> PyResult<PyStats> {
        py.detach(|| self.flush())?;
        match &self.acc {
            Some(a) if a.rows() > 0 => Ok(PyStats::new(a.clone())),
            _ => Err(PyValueError::new_err(
                "no rows were accumulated: call update(a, b) at least once before finish()",
            )),
        }
    }

    /// Exact state as bytes (layout and precision, then the flat statistics); the pending rows
    /// are added first.
    fn state<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        py.detach(|| self.flush())?;
        let layout = match self.layout {
            Layout::Nchw => 0u8,
            Layout::Nhwc => 1u8,
        };
        let precision = match self.precision {
            Precision::F64 => 0u8,
            Precision::F32 => 2u8,
        };
        let mut bytes = vec![layout | precision];
        if let Some(a) = &self.acc {
            bytes.extend(flat_bytes(a));
        }
        Ok(PyBytes::new(py, &bytes))
    }

    /// Adds the pending rows, returns the flat statistics (as `flat()`) and empties the
    /// accumulator, keeping its memory and widths: the end of one bootstrap chunk and the
    /// start of the next. `None` before the first update.
    fn take_flat<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        py.detach(|| self.flush())?;
        Ok(self.acc.as_mut().map(|a| {
            let flat = a.to_flat();
            a.clear();
            flat.into_pyarray(py)
        }))
    }

    /// The flat statistics (see `Stats.to_flat`) as a float64 array, `None` before the first
    /// update; the pending rows are added first. One copy (the bytes of `state()` took four).
    fn flat<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        py.detach(|| self.flush())?;
        Ok(self.acc.as_ref().map(|a| a.to_flat().into_pyarray(py)))
    }

    /// Rebuilds an accumulator from `state()`.
    #[staticmethod]
    fn from_state(state: &[u8]) -> PyResult<Self> {
        let (&tag, rest) = state
            .split_first()
            .ok_or_else(|| PyValueError::new_err("empty accumulator state"))?;
        if tag > 3 {
            return Err(PyValueError::new_err("invalid accumulator state"));
        }
        let layout = if tag & 1 == 0 {
            Layout::Nchw
        } else {
            Layout::Nhwc
        };
        let precision = if tag & 2 == 0 {
            Precision::F64
        } else {
            Precision::F32
        };
        let acc = if rest.is_empty() {
            None
        } else {
            Some(GramAccumulator::from_flat(&floats(rest)?).map_err(core_err)?)
        };
        Ok(Self {
            layout,
            precision,
            block_rows: None,
            acc,
            f64_blocks: Blocks::new(),
            f32_blocks: Blocks::new(),
        })
    }

    fn __eq__(&self, other: &PyAccumulator) -> PyResult<bool> {
        let flat = |a: &PyAccumulator| -> PyResult<Option<Vec<f64>>> {
            Ok(a.settled()?.map(|a| a.to_flat()))
        };
        Ok(self.layout == other.layout
            && self.precision == other.precision
            && flat(self)? == flat(other)?)
    }
}

impl PyAccumulator {
    /// The statistics with the pending rows added, leaving `self` as it is.
    fn settled(&self) -> PyResult<Option<GramAccumulator>> {
        let Some(acc) = &self.acc else {
            return Ok(None);
        };
        let mut acc = acc.clone();
        let n = acc.n1() + acc.n2();
        if self.f64_blocks.rows > 0 {
            acc.push_joint(self.f64_blocks.held(n)).map_err(core_err)?;
        }
        if self.f32_blocks.rows > 0 {
            acc.push_joint_f32(self.f32_blocks.held(n))
                .map_err(core_err)?;
        }
        Ok(Some(acc))
    }
}

fn floats(bytes: &[u8]) -> PyResult<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(
            "invalid state: not a whole number of float64 values",
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_le_bytes(b)
        })
        .collect())
}

/// The flat statistics of an accumulator as little-endian bytes (the inverse of [`floats`]).
fn flat_bytes(acc: &GramAccumulator) -> Vec<u8> {
    acc.to_flat()
        .into_iter()
        .flat_map(f64::to_le_bytes)
        .collect()
}

/// Finished statistics of one layer pair (see the Python class `spanmatch.Stats`).
#[pyclass(module = "spanmatch._native", name = "Stats")]
#[derive(Clone)]
struct PyStats {
    acc: GramAccumulator,
    /// ε-profiles computed so far, per matching options: `profile()`, `max_match()` and the
    /// targeted simple matches reuse them (the statistics never change after `finish`).
    profiles: ProfileCache,
}

/// The ε-profiles of one `Stats`, per matching options (shared by its copies).
type ProfileCache = Arc<Mutex<Vec<(MatchOptions, Arc<CachedProfile>)>>>;

/// A layer pair's ε-profile with its dead neurons.
struct CachedProfile {
    profile: spanmatch_core::Profile,
    dead_a: Vec<usize>,
    dead_b: Vec<usize>,
}

impl PyStats {
    fn new(acc: GramAccumulator) -> Self {
        Self {
            acc,
            profiles: Arc::default(),
        }
    }

    fn joint(&self) -> JointStats {
        self.acc.finish()
    }

    /// The ε-profile for these options, computed once.
    fn cached_profile(
        &self,
        py: Python<'_>,
        dead: &str,
        tol: Option<f64>,
    ) -> PyResult<Arc<CachedProfile>> {
        let options = matching(dead, tol)?;
        let lookup = |cache: &Self| -> Option<Arc<CachedProfile>> {
            let list = cache.profiles.lock().ok()?;
            list.iter()
                .find(|(o, _)| *o == options)
                .map(|(_, p)| Arc::clone(p))
        };
        if let Some(p) = lookup(self) {
            return Ok(p);
        }
        let p = self.problem(py, dead, tol)?;
        let cached = Arc::new(py.detach(|| CachedProfile {
            profile: p.profile(),
            dead_a: p.dead_a().to_vec(),
            dead_b: p.dead_b().to_vec(),
        }));
        if let Ok(mut list) = self.profiles.lock() {
            if list.len() >= 4 {
                list.remove(0);
            }
            list.push((options, Arc::clone(&cached)));
        }
        Ok(cached)
    }

    /// The reduced problem of these statistics. The symmetric Gram matrix is built without the
    /// GIL (0.3 s at 4096 + 4096), and checked for non-finite values once, by the problem (the
    /// profile reads nothing else).
    fn problem(&self, py: Python<'_>, dead: &str, tol: Option<f64>) -> PyResult<MatchProblem> {
        let options = matching(dead, tol)?;
        py.detach(|| MatchProblem::from_stats(self.joint(), options))
            .map_err(core_err)
    }
}

fn thresholds(py: Python<'_>, t: &[Option<f64>]) -> Py<PyArray1<f64>> {
    t.iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect::<Vec<_>>()
        .into_pyarray(py)
        .unbind()
}

#[pymethods]
impl PyStats {
    #[getter]
    fn n1(&self) -> usize {
        self.acc.n1()
    }

    #[getter]
    fn n2(&self) -> usize {
        self.acc.n2()
    }

    #[getter]
    fn rows(&self) -> u64 {
        self.acc.rows()
    }

    /// The symmetric Gram matrix of `[A | B]` (a copy).
    fn gram<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let j = self.joint();
        let n = j.n1 + j.n2;
        numpy::ndarray::Array2::from_shape_fn((n, n), |(r, c)| j.gram[(r, c)]).into_pyarray(py)
    }

    /// Column sums of `[A | B]`.
    fn sums<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.joint().sums.into_pyarray(py)
    }

    /// Thresholds of A, thresholds of B (NaN for dropped dead neurons), max ε, dead A, dead B.
    #[pyo3(signature = (dead = "drop", tol = None))]
    #[allow(clippy::type_complexity)]
    fn profile(
        &self,
        py: Python<'_>,
        dead: &str,
        tol: Option<f64>,
    ) -> PyResult<(
        Py<PyArray1<f64>>,
        Py<PyArray1<f64>>,
        f64,
        Vec<usize>,
        Vec<usize>,
    )> {
        let c = self.cached_profile(py, dead, tol)?;
        Ok((
            thresholds(py, c.profile.thresholds_a()),
            thresholds(py, c.profile.thresholds_b()),
            c.profile.max_epsilon(),
            c.dead_a.clone(),
            c.dead_b.clone(),
        ))
    }

    /// The maximum match at ε: (indices of A, indices of B, mms), from the ε-profile (computed
    /// once per dead policy and tolerance, then O(n) per ε).
    #[pyo3(signature = (eps, dead = "drop", tol = None))]
    fn max_match(
        &self,
        py: Python<'_>,
        eps: f64,
        dead: &str,
        tol: Option<f64>,
    ) -> PyResult<(Vec<usize>, Vec<usize>, f64)> {
        check_eps(&[eps], "eps").map_err(to_py)?;
        let c = self.cached_profile(py, dead, tol)?;
        let m = c.profile.max_match(eps).map_err(core_err)?;
        Ok((m.a, m.b, m.mms))
    }

    /// Simple matches at ε: a list of (indices of A, indices of B, times found), and whether the
    /// list is exact and complete. With `neurons_a` / `neurons_b`, only the matches found for
    /// those neurons (the full search restricted to them, at a cost per neuron asked).
    #[pyo3(signature = (eps, dead = "drop", tol = None, orders = 0, seed = 0, neurons_a = None, neurons_b = None))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn simple_matches(
        &self,
        py: Python<'_>,
        eps: f64,
        dead: &str,
        tol: Option<f64>,
        orders: usize,
        seed: u64,
        neurons_a: Option<Vec<usize>>,
        neurons_b: Option<Vec<usize>>,
    ) -> PyResult<(Vec<(Vec<usize>, Vec<usize>, usize)>, bool)> {
        check_eps(&[eps], "eps").map_err(to_py)?;
        let p = self.problem(py, dead, tol)?;
        let options = SimpleOptions { eps, orders, seed };
        let go = |_: usize, _: usize| ControlFlow::Continue(());
        let r = py
            .detach(|| {
                if neurons_a.is_none() && neurons_b.is_none() {
                    simple_matches(&p, &options, go)
                } else {
                    simple_matches_for(
                        &p,
                        &options,
                        neurons_a.as_deref().unwrap_or_default(),
                        neurons_b.as_deref().unwrap_or_default(),
                        go,
                    )
                }
            })
            .map_err(core_err)?;
        Ok((
            r.matches.into_iter().map(|m| (m.a, m.b, m.count)).collect(),
            r.exact_case,
        ))
    }

    /// The measures, as a JSON object (the options checked by the engine's rules).
    #[pyo3(signature = (names, shape_alpha=DEFAULT_SHAPE_ALPHA, ridge_alpha=DEFAULT_RIDGE_ALPHA, transport_plan=false))]
    fn measures(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        shape_alpha: f64,
        ridge_alpha: f64,
        transport_plan: bool,
    ) -> PyResult<String> {
        let options = Options {
            measures: parse_measures(&names, "measures").map_err(to_py)?,
            shape_alpha,
            ridge_alpha,
            transport_plan,
            ..Options::default()
        };
        options.validate().map_err(to_py)?;
        let which = options.measures.clone();
        let mopts = options.measure_options();
        let joint = self.joint();
        let m = py
            .detach(|| {
                joint.check_finite()?;
                spanmatch_core::measures::compute_with(&joint, &which, &mopts)
            })
            .map_err(core_err)?;
        serde_json::to_string(&m).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Exact state as bytes.
    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &flat_bytes(&self.acc))
    }

    /// The flat statistics as a float64 array (one copy).
    fn flat<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.acc.to_flat().into_pyarray(py)
    }

    /// Statistics from a flat float64 array (`flat()`, or a sum of such arrays with the widths
    /// restored): one copy.
    #[staticmethod]
    fn from_flat(flat: PyReadonlyArray1<'_, f64>) -> PyResult<Self> {
        let v = flat.as_slice().map_err(|_| {
            PyValueError::new_err("from_flat: the array is not contiguous (pass a contiguous copy)")
        })?;
        Ok(Self::new(GramAccumulator::from_flat(v).map_err(core_err)?))
    }

    /// Rebuilds statistics from `state()`.
    #[staticmethod]
    fn from_state(state: &[u8]) -> PyResult<Self> {
        Ok(Self::new(
            GramAccumulator::from_flat(&floats(state)?).map_err(core_err)?,
        ))
    }

    /// Statistics computed elsewhere (a GPU, another process).
    #[staticmethod]
    #[pyo3(signature = (n1, n2, rows, gram, sums, weighted_by_a, weighted_by_b, aa, ab, bb))]
    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        n1: usize,
        n2: usize,
        rows: u64,
        gram: Vec<f64>,
        sums: Vec<f64>,
        weighted_by_a: Vec<f64>,
        weighted_by_b: Vec<f64>,
        aa: f64,
        ab: f64,
        bb: f64,
    ) -> PyResult<Self> {
        if n1 == 0 || n2 == 0 {
            return Err(PyValueError::new_err(format!(
                "a layer needs at least one neuron on each side (got {n1} + {n2})"
            )));
        }
        let moments = RowNormMoments {
            weighted_by_a,
            weighted_by_b,
            aa,
            ab,
            bb,
        };
        Ok(Self::new(
            GramAccumulator::from_parts(n1, n2, rows, &gram, &sums, moments).map_err(core_err)?,
        ))
    }

    fn __eq__(&self, other: &PyStats) -> bool {
        self.acc.to_flat() == other.acc.to_flat()
    }
}

/// The options of a call, from their JSON form (`spanmatch.Options.to_dict()`), checked.
fn parse_options(json: &str) -> PyResult<Options> {
    let options = Options::from_json(json).map_err(to_py)?;
    options.validate().map_err(to_py)?;
    Ok(options)
}

/// What `analyse`, `compare_files` and `read_results` return: the results as JSON (the one
/// schema), the text tables of the CLI and the warnings.
type Outcome = (String, String, Vec<String>);

fn outcome(results: &Results, warnings: Vec<String>) -> PyResult<Outcome> {
    let json = serde_json::to_string(results).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((json, tables::tables(results), warnings))
}

/// The statistics of one layer pair, with its chunks when there are any.
fn pair_stats(
    name: &str,
    stats: &PyStats,
    chunks: Option<&Vec<PyRef<'_, PyStats>>>,
) -> PyResult<(JointStats, Option<ChunkedStats>)> {
    match chunks {
        Some(c) if !c.is_empty() => {
            let parts = c.iter().map(|s| s.joint()).collect();
            let chunked = ChunkedStats::new(parts)
                .map_err(|e| PyValueError::new_err(format!("layer '{name}': chunks: {e}")))?;
            Ok((chunked.merged(), Some(chunked)))
        }
        _ => Ok((stats.joint(), None)),
    }
}

/// Analyses layer pairs from their statistics with the options given as JSON (the one analysis
/// of every front); returns the results as JSON, the tables and the warnings.
///
/// Per layer (lists in the order of `stats`, or empty): `chunks` its per-chunk statistics (for
/// the bootstrap), `baseline` the untrained pair's statistics, `baseline_chunks` theirs per
/// chunk. `extras` is a JSON object `{layer: {field: value}}` of fields added to the records
/// (e.g. `top_inputs`), checked against the schema.
#[pyfunction]
#[pyo3(signature = (stats, names, names_b, shapes_a, shapes_b, options, front = "python", file_a = "a", file_b = "b", layout = "nchw", chunks = Vec::new(), baseline = Vec::new(), baseline_chunks = Vec::new(), extras = None, progress = None))]
#[allow(clippy::too_many_arguments)]
fn analyse(
    py: Python<'_>,
    stats: Vec<PyRef<'_, PyStats>>,
    names: Vec<String>,
    names_b: Vec<Option<String>>,
    shapes_a: Vec<Vec<u64>>,
    shapes_b: Vec<Vec<u64>>,
    options: &str,
    front: &str,
    file_a: &str,
    file_b: &str,
    layout: &str,
    chunks: Vec<Vec<PyRef<'_, PyStats>>>,
    baseline: Vec<PyRef<'_, PyStats>>,
    baseline_chunks: Vec<Vec<PyRef<'_, PyStats>>>,
    extras: Option<&str>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Outcome> {
    let options = parse_options(options)?;
    let front = Front::parse(front).map_err(to_py)?;
    let layout = parse_layout(layout)?;
    let n = stats.len();
    for (what, len) in [
        ("names", names.len()),
        ("names_b", names_b.len()),
        ("shapes_a", shapes_a.len()),
        ("shapes_b", shapes_b.len()),
    ] {
        if len != n {
            return Err(PyValueError::new_err(format!(
                "analyse: {what} has {len} entries for {n} layers"
            )));
        }
    }
    for (what, len) in [
        ("chunks", chunks.len()),
        ("baseline", baseline.len()),
        ("baseline_chunks", baseline_chunks.len()),
    ] {
        if len != 0 && len != n {
            return Err(PyValueError::new_err(format!(
                "analyse: {what} must be empty or hold one entry per layer ({len} for {n} layers)"
            )));
        }
    }
    let extras: serde_json::Map<String, serde_json::Value> = match extras {
        None => Default::default(),
        Some(text) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(PyValueError::new_err(
                    "extras: expected an object {layer name: {field: value}}",
                ))
            }
        },
    };
    for key in extras.keys() {
        if !names.contains(key) {
            return Err(PyValueError::new_err(format!(
                "extras: no layer named '{key}'; layers: {}",
                names.join(", ")
            )));
        }
    }
    // One layer at a time: its statistics are copied into the engine's form right before its
    // analysis and freed after it, so that at most one layer's copy is alive (a GPT-2-small
    // pair holds 12 statistics of 300 MB each; all copies at once doubled the peak memory).
    let build = |i: usize| -> PyResult<PairInput> {
        let name = names[i].clone();
        let (joint, chunked) = pair_stats(&name, &stats[i], chunks.get(i))?;
        let base = match baseline.get(i) {
            None => None,
            Some(b) => {
                let (stats, chunks) = pair_stats(&name, b, baseline_chunks.get(i))?;
                Some(BaselineInput { stats, chunks })
            }
        };
        Ok(PairInput {
            label: LayerLabel {
                name,
                name_b: names_b[i].clone(),
                shape_a: shapes_a[i].clone(),
                shape_b: shapes_b[i].clone(),
            },
            stats: joint,
            chunks: chunked,
            baseline: base,
        })
    };
    let mut results = Results::new(front, file_a, file_b, &options);
    results.settings = serde_json::json!({ "layout": engine::layout_name(layout) });
    let mut progress = PyProgress::new(progress);
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let input = build(i)?;
        progress.start_layer(&input.label.name);
        let record = py
            .detach(|| analyse_pair(input, &options, &mut progress))
            .map_err(to_py)?;
        records.push(record);
    }
    if let Some(err) = progress.error.take() {
        // Ctrl-C keeps what was found (the records say `complete: false`); any other error of
        // the callback is raised.
        if !err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
            return Err(err);
        }
    }
    let mut layers = Vec::with_capacity(records.len());
    for record in records {
        let record = match extras.get(&record.name) {
            None => record,
            Some(more) => with_extras(record, more)?,
        };
        layers.push(record);
    }
    results.comparisons = vec![Comparison::new(ComparisonKind::Pair, layers)];
    results.fill_layer_summaries();
    results.warnings = progress.warnings.clone();
    outcome(&results, progress.warnings)
}

/// The simple matches' progress, forwarded to a Python callable `progress(layer, done, total)`
/// (at most every [`PROGRESS_INTERVAL`], and when a layer's last neuron is done), with Python's
/// pending signals checked at each call. When the callable raises (`KeyboardInterrupt` on
/// Ctrl-C), the simple matches of this layer and of every later one stop, keeping what was found
/// (`complete: false`, with a warning); the other analyses go on. Without a callable nothing is
/// called and nothing stops (as [`Collect`]).
struct PyProgress {
    callback: Option<Py<PyAny>>,
    layer: String,
    last: Option<std::time::Instant>,
    error: Option<PyErr>,
    warnings: Vec<String>,
}

/// Least time between two calls of the Python progress callable.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

impl PyProgress {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        Self {
            callback,
            layer: String::new(),
            last: None,
            error: None,
            warnings: Vec::new(),
        }
    }

    fn start_layer(&mut self, name: &str) {
        self.layer = name.to_string();
        self.last = None;
    }
}

impl spanmatch_engine::Progress for PyProgress {
    fn simple(&mut self, done: usize, total: usize) -> bool {
        if self.error.is_some() {
            return false;
        }
        let Some(callback) = &self.callback else {
            return true;
        };
        let now = std::time::Instant::now();
        if done < total
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return true;
        }
        self.last = Some(now);
        let called = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            callback.call1(py, (self.layer.as_str(), done, total))?;
            Ok(())
        });
        match called {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}

/// A record with the fields of `more` (a JSON object) added, read back through the schema.
fn with_extras(record: LayerRecord, more: &serde_json::Value) -> PyResult<LayerRecord> {
    let name = record.name.clone();
    let serde_json::Value::Object(more) = more else {
        return Err(PyValueError::new_err(format!(
            "extras['{name}']: expected an object of fields"
        )));
    };
    let mut value =
        serde_json::to_value(record).map_err(|e| PyValueError::new_err(e.to_string()))?;
    if let serde_json::Value::Object(m) = &mut value {
        for (k, v) in more {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value)
        .map_err(|e| PyValueError::new_err(format!("extras['{name}']: {e}")))
}

/// Reads results JSON of any accepted schema version (older files are converted); returns the
/// current schema as JSON, the tables and the warnings recorded in the file.
#[pyfunction]
fn read_results(py: Python<'_>, text: &str) -> PyResult<Outcome> {
    let results = py.detach(|| results::parse_results(text)).map_err(to_py)?;
    let warnings = results.warnings.clone();
    outcome(&results, warnings)
}

/// Compares two activation files (as `spanmatch compare`) with the options given as JSON;
/// returns the report as JSON, the tables, the warnings and the profile curves.
#[pyfunction]
#[pyo3(signature = (path_a, path_b, options, layout = "nchw", layers = Vec::new(), block_rows = None, sample_columns = None, repeats = 16, flatten = false, baseline = None))]
#[allow(clippy::too_many_arguments)]
fn compare_files(
    py: Python<'_>,
    path_a: std::path::PathBuf,
    path_b: std::path::PathBuf,
    options: &str,
    layout: &str,
    layers: Vec<String>,
    block_rows: Option<usize>,
    sample_columns: Option<u64>,
    repeats: usize,
    flatten: bool,
    baseline: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> PyResult<Outcome> {
    let options = parse_options(options)?;
    let seed = options.seed;
    let options = CompareOptions {
        options,
        layers,
        layout: parse_layout(layout)?,
        block_rows,
        sampling: sample_columns.map(|columns| Sampling {
            columns,
            repeats,
            seed,
        }),
        flatten,
        flatten_images: None,
        baseline,
    };
    let mut progress = Collect::default();
    let mut results = py
        .detach(|| engine::compare_files(&path_a, &path_b, &options, &mut progress))
        .map_err(to_py)?;
    results.front = Front::Python;
    results.provenance.front = Front::Python;
    results.warnings = progress.warnings.clone();
    outcome(&results, progress.warnings)
}

/// Panics on purpose, inside a GIL-released section: the test that a Rust panic surfaces as a
/// Python exception and leaves the interpreter alive.
#[pyfunction]
fn _test_panic(py: Python<'_>) {
    py.detach(|| panic!("deliberate panic (spanmatch test hook)"));
}

/// The names of the measures, in report order.
#[pyfunction]
fn measure_names() -> Vec<&'static str> {
    Measure::ALL.into_iter().map(Measure::name).collect()
}

/// The compiled part of spanmatch.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    spanmatch_core::gram_kernel::init();
    m.add_class::<PyAccumulator>()?;
    m.add_class::<PyStats>()?;
    m.add_function(wrap_pyfunction!(analyse, m)?)?;
    m.add_function(wrap_pyfunction!(compare_files, m)?)?;
    m.add_function(wrap_pyfunction!(read_results, m)?)?;
    m.add_function(wrap_pyfunction!(measure_names, m)?)?;
    m.add_function(wrap_pyfunction!(report::neuron_view_selection, m)?)?;
    m.add_function(wrap_pyfunction!(report::render_report, m)?)?;
    m.add_function(wrap_pyfunction!(report::mms_figure_svg, m)?)?;
    m.add_function(wrap_pyfunction!(_test_panic, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
