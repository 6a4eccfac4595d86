//! Loader round trips on generated IDX / CIFAR-10 files and clear errors on malformed ones.

use std::io::Write;
use std::path::Path;

use spanmatch_train::data::{
    file_digests, load, load_cifar_dir, load_cifar_tarball, load_idx_pair, locate, sha256_hex,
    DataOptions, DatasetKind, Located, Split, CIFAR_RECORD,
};
use spanmatch_train::rng::Rng;

fn idx_images(n: usize, h: usize, w: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut r = Rng::new(seed);
    let px: Vec<u8> = (0..n * h * w).map(|_| r.below(256) as u8).collect();
    let mut f = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        f.extend_from_slice(&(d as u32).to_be_bytes());
    }
    f.extend_from_slice(&px);
    (f, px)
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 8, 1];
    f.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    f.extend_from_slice(labels);
    f
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(p: &Path, b: &[u8]) {
    std::fs::write(p, b).unwrap();
}

#[test]
fn idx_round_trip_gzip_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (img, px) = idx_images(7, 28, 28, 1);
    let labels = vec![0u8, 1, 2, 3, 4, 5, 9];
    // Train split gzipped, test split raw, in the Fashion-MNIST sub-directory.
    let sub = dir.path().join("fashion-mnist");
    std::fs::create_dir_all(&sub).unwrap();
    write(&sub.join("train-images-idx3-ubyte.gz"), &gz(&img));
    write(
        &sub.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_labels(&labels)),
    );
    write(&sub.join("t10k-images-idx3-ubyte"), &img);
    write(&sub.join("t10k-labels-idx1-ubyte"), &idx_labels(&labels));
    let opts = DataOptions {
        data_dir: Some(dir.path().to_path_buf()),
        allow_download: false,
    };
    for split in [Split::Train, Split::Test] {
        let d = load(DatasetKind::FashionMnist, split, &opts).unwrap();
        assert_eq!(d.len(), 7);
        assert_eq!(d.shape, [1, 28, 28]);
        assert_eq!(d.images, px);
        assert_eq!(d.labels, labels);
    }
    // Provenance digests: of the content, so the gzipped train split and the raw test split
    // (same bytes) give the same digests; SHA-256 itself checked on the FIPS 180-2 vector.
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let roots = [dir.path().to_path_buf()];
    let digests = |split| {
        let loc = locate(DatasetKind::FashionMnist, split, &roots).unwrap();
        file_digests(&loc, split).unwrap()
    };
    let (train, test) = (digests(Split::Train), digests(Split::Test));
    assert_eq!(
        train,
        vec![
            (
                "train-images-idx3-ubyte.gz (content)".to_string(),
                sha256_hex(&img)
            ),
            (
                "train-labels-idx1-ubyte.gz (content)".to_string(),
                sha256_hex(&idx_labels(&labels))
            ),
        ]
    );
    let digest_only = |v: &[(String, String)]| v.iter().map(|d| d.1.clone()).collect::<Vec<_>>();
    assert_eq!(digest_only(&train), digest_only(&test));
    assert_ne!(
        sha256_hex(&gz(&img)),
        train[0].1,
        "the stored gzip is not what is digested"
    );
    // --data-dir comes first in the search order.
    match locate(
        DatasetKind::FashionMnist,
        Split::Test,
        &[dir.path().to_path_buf()],
    ) {
        Some(Located::Idx { images, .. }) => assert!(images.starts_with(dir.path())),
        other => panic!("unexpected {other:?}"),
    }
    // Normalisation: pixel 0 maps to -mean/std.
    let mut x = Vec::new();
    let d = load(DatasetKind::FashionMnist, Split::Test, &opts).unwrap();
    d.batch(&[0], None, &mut x);
    let want = px[0] as f32 / 255.0;
    assert!((x[0] - (want - 0.2860) / 0.3530).abs() < 1e-5);
}

fn err_of(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn malformed_idx_files_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = idx_images(3, 4, 4, 2);
    let lab = idx_labels(&[1, 2, 3]);
    let ip = dir.path().join("images");
    let lp = dir.path().join("labels");

    // Bad magic.
    let mut bad = img.clone();
    bad[2] = 9;
    write(&ip, &bad);
    write(&lp, &lab);
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &ip, &lp));
    assert!(e.contains("images") && e.contains("bad magic"), "{e}");

    // Truncated (also through gzip).
    write(&ip, &gz(&img[..img.len() - 5]));
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &ip, &lp));
    assert!(
        e.contains(&ip.display().to_string()) && e.contains("truncated"),
        "{e}"
    );

    // Wrong counts.
    write(&ip, &img);
    write(&lp, &idx_labels(&[1, 2]));
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &ip, &lp));
    assert!(
        e.contains("count mismatch") && e.contains("3 images") && e.contains("2 labels"),
        "{e}"
    );

    // Label out of range.
    write(&lp, &idx_labels(&[1, 2, 10]));
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &ip, &lp));
    assert!(
        e.contains(&lp.display().to_string()) && e.contains("out of range"),
        "{e}"
    );

    // Labels file given as images (magic of a 1-d file).
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &lp, &lp));
    assert!(e.contains("bad magic"), "{e}");

    // Corrupt gzip.
    write(&ip, &[0x1f, 0x8b, 1, 2, 3]);
    let e = err_of(load_idx_pair(DatasetKind::Mnist, &ip, &lp));
    assert!(
        e.contains("gzip") && e.contains(&ip.display().to_string()),
        "{e}"
    );

    // Missing everything, no download: the error lists the searched places.
    let empty = tempfile::tempdir().unwrap();
    let r = load(
        DatasetKind::Mnist,
        Split::Train,
        &DataOptions {
            data_dir: Some(empty.path().to_path_buf()),
            allow_download: false,
        },
    );
    // The Debian dir has no MNIST; a developer's cache might, so only check a failure.
    if let Err(e) = r {
        let e = format!("{e:#}");
        assert!(
            e.contains("not found") && e.contains(&empty.path().display().to_string()),
            "{e}"
        );
    }
}

fn cifar_batch(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut r = Rng::new(seed);
    let mut file = Vec::new();
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let l = r.below(10) as u8;
        labels.push(l);
        file.push(l);
        let img: Vec<u8> = (0..3072).map(|_| r.below(256) as u8).collect();
        file.extend_from_slice(&img);
        px.extend_from_slice(&img);
    }
    (file, px, labels)
}

#[test]
fn cifar_round_trip_dir_and_tarball_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bins = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bins).unwrap();
    let mut all_px = Vec::new();
    let mut all_l = Vec::new();
    for i in 1..=5 {
        let (f, px, l) = cifar_batch(3, i);
        write(&bins.join(format!("data_batch_{i}.bin")), &f);
        all_px.extend(px);
        all_l.extend(l);
    }
    let (tf, tpx, tl) = cifar_batch(4, 99);
    write(&bins.join("test_batch.bin"), &tf);

    let tr = load_cifar_dir(&bins, Split::Train).unwrap();
    assert_eq!(tr.len(), 15);
    assert_eq!(tr.images, all_px);
    assert_eq!(tr.labels, all_l);
    assert_eq!(tr.shape, [3, 32, 32]);
    let opts = DataOptions {
        data_dir: Some(dir.path().to_path_buf()),
        allow_download: false,
    };
    let te = load(DatasetKind::Cifar10, Split::Test, &opts).unwrap();
    assert_eq!(
        (te.images.clone(), te.labels.clone()),
        (tpx.clone(), tl.clone())
    );

    // Tarball with the canonical layout.
    let tgz = dir.path().join("cifar-10-binary.tar.gz");
    {
        let f = std::fs::File::create(&tgz).unwrap();
        let enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut t = tar::Builder::new(enc);
        t.append_dir_all("cifar-10-batches-bin", &bins).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    let te2 = load_cifar_tarball(&tgz, Split::Test).unwrap();
    assert_eq!((te2.images, te2.labels), (tpx, tl));
    let tr2 = load_cifar_tarball(&tgz, Split::Train).unwrap();
    assert_eq!(tr2.images, all_px);

    // Normalisation uses the CIFAR-10 constants.
    let mut x = Vec::new();
    tr.batch(&[0], None, &mut x);
    let g = tr.images[1024] as f32 / 255.0;
    assert!((x[1024] - (g - 0.4822) / 0.243).abs() < 1e-5);

    // Malformed: record size.
    let (mut f, _, _) = cifar_batch(2, 5);
    f.pop();
    write(&bins.join("data_batch_3.bin"), &f);
    let e = err_of(load_cifar_dir(&bins, Split::Train).map(|d| d.len()));
    assert!(e.contains("data_batch_3.bin") && e.contains("3073"), "{e}");
    // Bad label.
    let (mut f, _, _) = cifar_batch(2, 5);
    f[CIFAR_RECORD] = 12;
    write(&bins.join("data_batch_3.bin"), &f);
    let e = err_of(load_cifar_dir(&bins, Split::Train).map(|d| d.len()));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("label 12"),
        "{e}"
    );
    // Missing batch.
    write(&bins.join("data_batch_3.bin"), &cifar_batch(2, 5).0);
    std::fs::remove_file(bins.join("data_batch_4.bin")).unwrap();
    let e = err_of(load_cifar_dir(&bins, Split::Train).map(|d| d.len()));
    assert!(e.contains("data_batch_4.bin"), "{e}");
    // Not a tarball.
    write(&tgz, b"garbage");
    let e = err_of(load_cifar_tarball(&tgz, Split::Test).map(|d| d.len()));
    assert!(e.contains("cifar-10-binary.tar.gz"), "{e}");
}

#[test]
fn augmentation_is_seeded() {
    let (f, _, _) = cifar_batch(8, 3);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    spanmatch_train::data::parse_cifar_batch(&f, Path::new("x"), &mut images, &mut labels).unwrap();
    let d = spanmatch_train::data::Dataset::from_parts(
        DatasetKind::Cifar10,
        images,
        labels,
        [3, 32, 32],
        10,
    )
    .unwrap();
    let idx: Vec<usize> = (0..8).collect();
    let (mut a, mut b, mut c, mut plain) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    d.batch(&idx, Some(&mut Rng::new(5)), &mut a);
    d.batch(&idx, Some(&mut Rng::new(5)), &mut b);
    d.batch(&idx, Some(&mut Rng::new(6)), &mut c);
    d.batch(&idx, None, &mut plain);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, plain);
}

#[test]
fn debian_fashion_mnist_if_installed() {
    // Uses the real files from `dataset-fashion-mnist` when present (skipped otherwise).
    let p = Path::new("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
    if !p.exists() {
        return;
    }
    let d = load(
        DatasetKind::FashionMnist,
        Split::Test,
        &DataOptions::default(),
    )
    .unwrap();
    assert_eq!(d.len(), 10_000);
    assert_eq!(d.shape, [1, 28, 28]);
}
