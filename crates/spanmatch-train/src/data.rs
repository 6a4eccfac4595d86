//! Datasets in their canonical file formats: MNIST / Fashion-MNIST (IDX, gzip or raw) and
//! CIFAR-10 (binary version, 3073-byte records), with locating, optional download + SHA-256
//! verification, per-dataset normalisation and seeded training augmentation.
//!
//! Search order for the files of a dataset (first hit wins):
//! 1. `--data-dir` ([`DataOptions::data_dir`]),
//! 2. `$SPANMATCH_DATA`,
//! 3. the Debian directory (`/usr/share/datasets/<name>`, e.g. from `dataset-fashion-mnist`),
//! 4. the user cache (`$XDG_CACHE_HOME/spanmatch` or `~/.cache/spanmatch`),
//!
//! each both directly and in a sub-directory named after the dataset (`fashion-mnist`, `mnist`,
//! `cifar-10-batches-bin` / `cifar-10`). Otherwise, if downloads are allowed, the canonical files
//! are fetched into the user cache with `curl` and checked against pinned SHA-256 sums.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rng::Rng;

/// Errors found while parsing a dataset file; always name the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not start with the expected magic number.
    #[error("{path}: bad magic number {found:#010x} (expected {expected:#010x}): not an IDX {what} file")]
    BadMagic {
        /// File concerned.
        path: PathBuf,
        /// Magic found.
        found: u32,
        /// Magic expected.
        expected: u32,
        /// "images" or "labels".
        what: &'static str,
    },
    /// The file is shorter (or longer) than its header says.
    #[error("{path}: truncated or oversized: header promises {expected} bytes, file has {found}")]
    Truncated {
        /// File concerned.
        path: PathBuf,
        /// Size implied by the header.
        expected: usize,
        /// Actual size.
        found: usize,
    },
    /// Images and labels disagree on the number of items.
    #[error("count mismatch: {images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// Image file.
        images: PathBuf,
        /// Number of images.
        n_images: usize,
        /// Label file.
        labels: PathBuf,
        /// Number of labels.
        n_labels: usize,
    },
    /// A CIFAR batch whose size is not a multiple of the record size.
    #[error("{path}: size {size} is not a multiple of the {record}-byte CIFAR-10 record")]
    BadRecordSize {
        /// File concerned.
        path: PathBuf,
        /// File size.
        size: usize,
        /// Record size.
        record: usize,
    },
    /// A label outside `0..classes`.
    #[error("{path}: label {label} at item {index} is out of range (expected < {classes})")]
    BadLabel {
        /// File concerned.
        path: PathBuf,
        /// Item index.
        index: usize,
        /// Label found.
        label: u8,
        /// Number of classes.
        classes: usize,
    },
    /// The content does not match the pinned checksum.
    #[error("{path}: SHA-256 mismatch: got {found}, expected {expected}")]
    Checksum {
        /// File concerned.
        path: PathBuf,
        /// Digest found.
        found: String,
        /// Digest expected.
        expected: String,
    },
}

/// Supported datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST handwritten digits, 28x28x1.
    Mnist,
    /// Fashion-MNIST, 28x28x1.
    FashionMnist,
    /// CIFAR-10 (binary version), 32x32x3.
    Cifar10,
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Train or test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// Training split.
    Train,
    /// Test split.
    Test,
}

/// A dataset or split name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}'; valid: {valid}")]
pub struct UnknownName {
    /// What was being named ("dataset", "split").
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The valid names, in words.
    pub valid: &'static str,
}

impl DatasetKind {
    /// Every dataset, in the order of the help texts.
    pub const ALL: [DatasetKind; 3] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
    ];
}

impl std::str::FromStr for DatasetKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownName {
                what: "dataset",
                name: s.to_string(),
                valid: "mnist, fashion-mnist, cifar10",
            })
    }
}

impl Split {
    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(UnknownName {
                what: "split",
                name: s.to_string(),
                valid: "train, test",
            }),
        }
    }
}

impl DatasetKind {
    /// Canonical short name (also the sub-directory searched).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// Image shape `[channels, height, width]`.
    pub fn image_shape(self) -> [usize; 3] {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => [1, 28, 28],
            DatasetKind::Cifar10 => [3, 32, 32],
        }
    }

    /// Names of the classes, by label.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::FashionMnist => &[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            DatasetKind::Cifar10 => &[
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        }
    }

    /// Per-channel normalisation `(mean, std)` on the [0, 1] pixel scale.
    pub fn normalization(self) -> (Vec<f32>, Vec<f32>) {
        match self {
            DatasetKind::Mnist => (vec![0.1307], vec![0.3081]),
            DatasetKind::FashionMnist => (vec![0.2860], vec![0.3530]),
            DatasetKind::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.247, 0.243, 0.261]),
        }
    }

    /// Training augmentation used for this dataset.
    pub fn augmentation(self) -> Augmentation {
        match self {
            DatasetKind::Cifar10 => Augmentation {
                crop_padding: 4,
                horizontal_flip: true,
            },
            _ => Augmentation::default(),
        }
    }

    fn subdirs(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &["mnist", "MNIST"],
            DatasetKind::FashionMnist => &["fashion-mnist", "fashion_mnist", "FashionMNIST"],
            DatasetKind::Cifar10 => &["cifar-10-batches-bin", "cifar-10", "cifar10"],
        }
    }
}

/// Seeded training augmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Random crop to the original size after zero-padding by this many pixels (0 = off).
    pub crop_padding: usize,
    /// Random horizontal flip with probability 1/2.
    pub horizontal_flip: bool,
}

/// An in-memory image classification dataset (`u8` pixels, CHW per image).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Which dataset (for normalisation and naming); synthetic data may use any.
    pub kind: DatasetKind,
    /// Pixels, `len * channels * height * width`, each image CHW.
    pub images: Vec<u8>,
    /// Labels in `0..classes`.
    pub labels: Vec<u8>,
    /// Image shape `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Per-channel mean (on the [0, 1] scale).
    pub mean: Vec<f32>,
    /// Per-channel std (on the [0, 1] scale).
    pub std: Vec<f32>,
    /// Augmentation applied by [`Dataset::batch`] when given an RNG.
    pub augmentation: Augmentation,
}

impl Dataset {
    /// Builds a dataset from raw parts using the normalisation/augmentation of `kind`.
    pub fn from_parts(
        kind: DatasetKind,
        images: Vec<u8>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: usize,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != per * labels.len() {
            bail!(
                "dataset parts disagree: {} pixel bytes for {} labels of shape {:?}",
                images.len(),
                labels.len(),
                shape
            );
        }
        let (mut mean, mut std) = kind.normalization();
        if mean.len() != shape[0] {
            mean = vec![mean[0]; shape[0]];
            std = vec![std[0]; shape[0]];
        }
        Ok(Self {
            kind,
            images,
            labels,
            shape,
            classes,
            mean,
            std,
            augmentation: kind.augmentation(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of values per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Keeps only the first `n` images (no-op if `n >= len`).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.image_len());
        }
    }

    /// Writes the normalised images `indices` as an NCHW f32 batch into `out` (resized).
    /// With `rng`, the dataset's augmentation is applied (seeded by that RNG).
    pub fn batch(&self, indices: &[usize], mut rng: Option<&mut Rng>, out: &mut Vec<f32>) {
        let [c, h, w] = self.shape;
        let per = c * h * w;
        out.clear();
        out.resize(indices.len() * per, 0.0);
        let scale: Vec<f32> = self.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let shift: Vec<f32> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| m / s)
            .collect();
        for (bi, &idx) in indices.iter().enumerate() {
            let img = &self.images[idx * per..(idx + 1) * per];
            let dst = &mut out[bi * per..(bi + 1) * per];
            let (dy, dx, flip) = match rng.as_deref_mut() {
                Some(r) => {
                    let p = self.augmentation.crop_padding;
                    let (dy, dx) = if p > 0 {
                        (
                            r.below(2 * p + 1) as isize - p as isize,
                            r.below(2 * p + 1) as isize - p as isize,
                        )
                    } else {
                        (0, 0)
                    };
                    let flip = self.augmentation.horizontal_flip && r.below(2) == 1;
                    (dy, dx, flip)
                }
                None => (0, 0, false),
            };
            for ch in 0..c {
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let xo = if flip { w - 1 - x } else { x };
                        let sx = xo as isize + dx;
                        let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                            img[ch * h * w + sy as usize * w + sx as usize]
                        } else {
                            0
                        };
                        dst[ch * h * w + y * w + x] = v as f32 * scale[ch] - shift[ch];
                    }
                }
            }
        }
    }
}

/// Where to look for data and whether downloading is allowed.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// Explicit directory searched first (`--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Download missing files from the canonical source (into the user cache).
    pub allow_download: bool,
}

/// Parsed IDX file content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions from the header.
    pub dims: Vec<usize>,
    /// Payload bytes (u8 data).
    pub data: Vec<u8>,
}

/// Reads a file, transparently gunzipping it if it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip stream", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes of unsigned-byte type with `ndim` dimensions (3 for images, 1 for labels).
pub fn parse_idx(bytes: &[u8], path: &Path, ndim: usize) -> Result<Idx, DataError> {
    let expected_magic = 0x0000_0800u32 | ndim as u32;
    let what = if ndim == 1 { "labels" } else { "images" };
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: 4 + 4 * ndim,
            found: bytes.len(),
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: magic,
            expected: expected_magic,
            what,
        });
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = header + dims.iter().product::<usize>();
    if bytes.len() != expected {
        return Err(DataError::Truncated {
            path: path.into(),
            expected,
            found: bytes.len(),
        });
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Loads an IDX image file and an IDX label file (gzip or raw) into a [`Dataset`].
pub fn load_idx_pair(kind: DatasetKind, images: &Path, labels: &Path) -> Result<Dataset> {
    let img = parse_idx(&read_maybe_gz(images)?, images, 3)?;
    let lab = parse_idx(&read_maybe_gz(labels)?, labels, 1)?;
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::CountMismatch {
            images: images.into(),
            n_images: img.dims[0],
            labels: labels.into(),
            n_labels: lab.dims[0],
        }
        .into());
    }
    check_labels(&lab.data, labels, 10)?;
    Dataset::from_parts(kind, img.data, lab.data, [1, img.dims[1], img.dims[2]], 10)
        .with_context(|| format!("{}", images.display()))
}

fn check_labels(labels: &[u8], path: &Path, classes: usize) -> Result<(), DataError> {
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(DataError::BadLabel {
            path: path.into(),
            index,
            label,
            classes,
        });
    }
    Ok(())
}

/// CIFAR-10 record size: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
pub const CIFAR_RECORD: usize = 3073;

/// Parses one CIFAR-10 binary batch, appending images (CHW) and labels.
pub fn parse_cifar_batch(
    bytes: &[u8],
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR_RECORD) {
        return Err(DataError::BadRecordSize {
            path: path.into(),
            size: bytes.len(),
            record: CIFAR_RECORD,
        });
    }
    let start = labels.len();
    for rec in bytes.chunks_exact(CIFAR_RECORD) {
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    check_labels(&labels[start..], path, 10)
}

fn cifar_batch_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// Loads CIFAR-10 batches from a directory holding `data_batch_{1..5}.bin` / `test_batch.bin`.
pub fn load_cifar_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in cifar_batch_names(split) {
        let p = dir.join(&name);
        let bytes = std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
        parse_cifar_batch(&bytes, &p, &mut images, &mut labels)?;
    }
    Dataset::from_parts(DatasetKind::Cifar10, images, labels, [3, 32, 32], 10)
}

/// Loads CIFAR-10 batches directly from `cifar-10-binary.tar.gz` (no extraction to disk).
pub fn load_cifar_tarball(tarball: &Path, split: Split) -> Result<Dataset> {
    let wanted = cifar_batch_names(split);
    let f = std::fs::File::open(tarball)
        .with_context(|| format!("{}: cannot open", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    for entry in archive
        .entries()
        .with_context(|| format!("{}: not a tar.gz archive", tarball.display()))?
    {
        let mut entry =
            entry.with_context(|| format!("{}: corrupt tar entry", tarball.display()))?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()));
        if let Some(i) = name.and_then(|n| wanted.iter().position(|w| *w == n)) {
            let mut buf = Vec::new();
            entry
                .read_to_end(&mut buf)
                .with_context(|| format!("{}: cannot read {}", tarball.display(), wanted[i]))?;
            found[i] = Some(buf);
        }
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (name, bytes) in wanted.iter().zip(found) {
        let p = tarball.join(name);
        let bytes =
            bytes.with_context(|| format!("{}: missing member {name}", tarball.display()))?;
        parse_cifar_batch(&bytes, &p, &mut images, &mut labels)?;
    }
    Dataset::from_parts(DatasetKind::Cifar10, images, labels, [3, 32, 32], 10)
}

/// One canonical downloadable file.
struct Remote {
    name: &'static str,
    url: &'static str,
    /// SHA-256 of the file as downloaded, if pinned.
    sha256_file: Option<&'static str>,
    /// SHA-256 of the gunzipped content, if pinned (robust to recompression, e.g. by Debian).
    sha256_content: Option<&'static str>,
}

fn remotes(kind: DatasetKind) -> Vec<Remote> {
    match kind {
        DatasetKind::FashionMnist => {
            let base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
            let c = [
                (
                    "train-images-idx3-ubyte.gz",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ];
            c.iter()
                .map(|(n, s)| Remote {
                    name: n,
                    url: leak(format!("{base}{n}")),
                    sha256_file: None,
                    sha256_content: Some(s),
                })
                .collect()
        }
        DatasetKind::Mnist => {
            let base = "https://storage.googleapis.com/cvdf-datasets/mnist/";
            let c = [
                (
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            ];
            c.iter()
                .map(|(n, s)| Remote {
                    name: n,
                    url: leak(format!("{base}{n}")),
                    sha256_file: Some(s),
                    sha256_content: None,
                })
                .collect()
        }
        DatasetKind::Cifar10 => vec![Remote {
            name: "cifar-10-binary.tar.gz",
            url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            sha256_file: Some("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
            sha256_content: None,
        }],
    }
}

fn leak(s: String) -> &'static str {
    // Only a handful of short URLs per process; keeps `Remote` simple.
    Box::leak(s.into_boxed_str())
}

/// SHA-256 of a byte slice, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Candidate root directories in search order.
pub fn search_roots(opts: &DataOptions) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(d) = &opts.data_dir {
        roots.push(d.clone());
    }
    if let Some(d) = std::env::var_os("SPANMATCH_DATA").filter(|s| !s.is_empty()) {
        roots.push(PathBuf::from(d));
    }
    roots.push(PathBuf::from("/usr/share/datasets"));
    if let Some(c) = cache_dir() {
        roots.push(c);
    }
    roots
}

/// The user cache directory: `$XDG_CACHE_HOME/spanmatch` or `~/.cache/spanmatch`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(x).join("spanmatch"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("spanmatch"))
}

fn idx_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn candidate_dirs(kind: DatasetKind, roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for r in roots {
        dirs.push(r.clone());
        for s in kind.subdirs() {
            dirs.push(r.join(s));
        }
    }
    dirs
}

/// Where a dataset split was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// IDX image + label files.
    Idx {
        /// Image file.
        images: PathBuf,
        /// Label file.
        labels: PathBuf,
    },
    /// Directory with CIFAR-10 `.bin` batches.
    CifarDir(PathBuf),
    /// `cifar-10-binary.tar.gz`.
    CifarTarball(PathBuf),
}

/// Finds a dataset split in the search roots (see module docs). Does not download.
pub fn locate(kind: DatasetKind, split: Split, roots: &[PathBuf]) -> Option<Located> {
    for dir in candidate_dirs(kind, roots) {
        match kind {
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                let (i, l) = idx_names(split);
                if let (Some(images), Some(labels)) = (find_file(&dir, i), find_file(&dir, l)) {
                    return Some(Located::Idx { images, labels });
                }
            }
            DatasetKind::Cifar10 => {
                let names = cifar_batch_names(split);
                if names.iter().all(|n| dir.join(n).is_file()) {
                    return Some(Located::CifarDir(dir));
                }
                let t = dir.join("cifar-10-binary.tar.gz");
                if t.is_file() {
                    return Some(Located::CifarTarball(t));
                }
            }
        }
    }
    None
}

/// Loads a located dataset split.
pub fn load_located(kind: DatasetKind, split: Split, loc: &Located) -> Result<Dataset> {
    match loc {
        Located::Idx { images, labels } => load_idx_pair(kind, images, labels),
        Located::CifarDir(d) => load_cifar_dir(d, split),
        Located::CifarTarball(t) => load_cifar_tarball(t, split),
    }
}

/// SHA-256 digests of the files of a located dataset split, for the provenance of a run:
/// `(file name, hex digest)`. IDX files are digested after decompression (so a recompressed copy,
/// such as Debian's Fashion-MNIST, gives the published content digest); CIFAR-10 batches and
/// tarballs as stored.
pub fn file_digests(loc: &Located, split: Split) -> Result<Vec<(String, String)>> {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let raw = |p: &Path| -> Result<(String, String)> {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
        Ok((name(p), sha256_hex(&bytes)))
    };
    Ok(match loc {
        Located::Idx { images, labels } => [images, labels]
            .into_iter()
            .map(|p| {
                let content = read_maybe_gz(p)?;
                Ok((format!("{} (content)", name(p)), sha256_hex(&content)))
            })
            .collect::<Result<Vec<_>>>()?,
        Located::CifarDir(d) => cifar_batch_names(split)
            .iter()
            .map(|n| raw(&d.join(n)))
            .collect::<Result<Vec<_>>>()?,
        Located::CifarTarball(t) => vec![raw(t)?],
    })
}

/// Finds (or, if allowed, downloads) and loads a dataset split.
pub fn load(kind: DatasetKind, split: Split, opts: &DataOptions) -> Result<Dataset> {
    let roots = search_roots(opts);
    if let Some(loc) = locate(kind, split, &roots) {
        return load_located(kind, split, &loc);
    }
    let tried: Vec<String> = candidate_dirs(kind, &roots)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !opts.allow_download {
        bail!(
            "{kind} ({split:?}) not found; searched: {}. Pass --data-dir, set $SPANMATCH_DATA, \
             install the Debian package (Fashion-MNIST: apt-get install dataset-fashion-mnist) or \
             pass --download to fetch it from its canonical source",
            tried.join(", ")
        );
    }
    let cache = cache_dir().context("cannot determine the user cache directory (no $HOME)")?;
    let dest = cache.join(kind.subdirs()[0]);
    download(kind, &dest)?;
    let loc = locate(kind, split, std::slice::from_ref(&dest))
        .with_context(|| format!("{kind}: downloaded files not usable in {}", dest.display()))?;
    load_located(kind, split, &loc)
}

/// Downloads the canonical files of `kind` into `dest` with `curl`, verifying SHA-256.
/// Never called by tests.
pub fn download(kind: DatasetKind, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    for r in remotes(kind) {
        let target = dest.join(r.name);
        if target.is_file() && verify(&target, &r).is_ok() {
            continue;
        }
        let part = dest.join(format!("{}.part", r.name));
        eprintln!("downloading {} -> {}", r.url, target.display());
        let status = std::process::Command::new("curl")
            .args(["-fL", "--retry", "3", "-o"])
            .arg(&part)
            .arg(r.url)
            .status()
            .context("cannot run curl (is it installed?)")?;
        if !status.success() {
            bail!("curl failed ({status}) downloading {}", r.url);
        }
        verify(&part, &r)?;
        std::fs::rename(&part, &target)
            .with_context(|| format!("{}: cannot rename", part.display()))?;
    }
    Ok(())
}

fn verify(path: &Path, r: &Remote) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if let Some(want) = r.sha256_file {
        let got = sha256_hex(&bytes);
        if got != want {
            return Err(DataError::Checksum {
                path: path.into(),
                found: got,
                expected: want.into(),
            }
            .into());
        }
    }
    if let Some(want) = r.sha256_content {
        let content = read_maybe_gz(path)?;
        let got = sha256_hex(&content);
        if got != want {
            return Err(DataError::Checksum {
                path: path.into(),
                found: got,
                expected: want.into(),
            }
            .into());
        }
    }
    Ok(())
}
