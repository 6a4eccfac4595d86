//! How an array's axes map to rows (samples) and columns (neurons).

/// Which axis of a rank ≥ 3 array holds the channels (the neurons).
///
/// * Rank 2, `[N, C]`: a fully connected layer; N rows (one per image), C neurons. The layout is
///   ignored.
/// * [`Layout::Nchw`] (channels first, PyTorch): `[N, C, S1, ..., Sk]`, for example `[N, C, H, W]`
///   or `[N, C, L]`. C neurons; every (image, spatial position) pair is a row, so there are
///   `N * S1 * ... * Sk` rows.
/// * [`Layout::Nhwc`] (channels last, TensorFlow/JAX): `[N, S1, ..., Sk, C]`.
///
/// Rows are always emitted image-major, and within an image in row-major order of the spatial
/// multi-index (for `[N, C, H, W]`: row `(n * H + h) * W + w`), so that row r means the same
/// (image, position) for both layouts and both storage orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Channels first: `[N, C, spatial...]`.
    #[default]
    Nchw,
    /// Channels last: `[N, spatial..., C]`.
    Nhwc,
}

/// Storage order of an array in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOrder {
    /// Row-major (the last axis varies fastest).
    C,
    /// Column-major (the first axis varies fastest).
    Fortran,
}

/// Element strides of each axis for an array of `shape` stored in `order`.
pub(crate) fn strides(shape: &[u64], order: StorageOrder) -> Vec<u64> {
    let mut s = vec![0u64; shape.len()];
    let mut acc = 1u64;
    match order {
        StorageOrder::C => {
            for i in (0..shape.len()).rev() {
                s[i] = acc;
                acc = acc.saturating_mul(shape[i]);
            }
        }
        StorageOrder::Fortran => {
            for i in 0..shape.len() {
                s[i] = acc;
                acc = acc.saturating_mul(shape[i]);
            }
        }
    }
    s
}

/// The row/neuron view of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub shape: Vec<u64>,
    pub images: u64,
    pub neurons: usize,
    /// Sizes of the spatial axes, in array order.
    pub spatial: Vec<u64>,
    /// Product of `spatial` (1 for a fully connected layer).
    pub positions: u64,
    pub rows: u64,
    /// Axis holding the neurons.
    pub channel_axis: usize,
    /// Axes holding the spatial positions, in array order.
    pub spatial_axes: Vec<usize>,
}

/// Why a shape cannot be read as a layer.
pub(crate) enum ShapeProblem {
    Rank,
    Empty { rows: u64, neurons: u64 },
    TooLarge,
}

impl Geometry {
    pub(crate) fn new(shape: &[u64], layout: Layout) -> Result<Self, ShapeProblem> {
        let rank = shape.len();
        if rank < 2 {
            return Err(ShapeProblem::Rank);
        }
        let channel_axis = match (rank, layout) {
            (2, _) | (_, Layout::Nchw) => 1,
            (_, Layout::Nhwc) => rank - 1,
        };
        let spatial_axes: Vec<usize> = (1..rank).filter(|&a| a != channel_axis).collect();
        let spatial: Vec<u64> = spatial_axes.iter().map(|&a| shape[a]).collect();
        let positions = spatial
            .iter()
            .try_fold(1u64, |a, &b| a.checked_mul(b))
            .ok_or(ShapeProblem::TooLarge)?;
        let images = shape[0];
        let rows = images
            .checked_mul(positions)
            .ok_or(ShapeProblem::TooLarge)?;
        let neurons64 = shape[channel_axis];
        if rows == 0 || neurons64 == 0 {
            return Err(ShapeProblem::Empty {
                rows,
                neurons: neurons64,
            });
        }
        let neurons = usize::try_from(neurons64).map_err(|_| ShapeProblem::TooLarge)?;
        rows.checked_mul(neurons64)
            .and_then(|e| e.checked_mul(8))
            .ok_or(ShapeProblem::TooLarge)?;
        Ok(Self {
            shape: shape.to_vec(),
            images,
            neurons,
            spatial,
            positions,
            rows,
            channel_axis,
            spatial_axes,
        })
    }

    /// Elements per image.
    pub(crate) fn image_elems(&self) -> u64 {
        self.positions * self.neurons as u64
    }

    /// The spatial multi-index of position `p` (row-major over the spatial axes).
    pub(crate) fn spatial_index(&self, mut p: u64) -> Vec<u64> {
        let mut idx = vec![0u64; self.spatial.len()];
        for (i, &d) in self.spatial.iter().enumerate().rev() {
            idx[i] = p % d;
            p /= d;
        }
        idx
    }

    /// Whether element (row r, channel c) is at offset `r * neurons + c` in storage order.
    pub(crate) fn rows_contiguous(&self, order: StorageOrder) -> bool {
        order == StorageOrder::C
            && (self.channel_axis == self.shape.len() - 1 || self.positions == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_common_shapes() {
        let Ok(g) = Geometry::new(&[4, 3, 5, 6], Layout::Nchw) else {
            panic!("valid shape")
        };
        assert_eq!((g.images, g.neurons, g.positions, g.rows), (4, 3, 30, 120));
        assert_eq!(g.spatial_index(13), vec![2, 1]);
        let Ok(g) = Geometry::new(&[4, 5, 6, 3], Layout::Nhwc) else {
            panic!("valid shape")
        };
        assert_eq!((g.neurons, g.rows, g.channel_axis), (3, 120, 3));
        assert!(g.rows_contiguous(StorageOrder::C));
        assert!(!g.rows_contiguous(StorageOrder::Fortran));
        assert_eq!(strides(&[2, 3, 4], StorageOrder::C), vec![12, 4, 1]);
        assert_eq!(strides(&[2, 3, 4], StorageOrder::Fortran), vec![1, 2, 6]);
    }
}
