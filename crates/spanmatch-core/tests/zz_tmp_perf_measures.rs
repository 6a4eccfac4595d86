use faer::{Mat, Side};
use std::time::Instant;
use spanmatch_core::rng::SplitMix64;
#[test]
fn perf() {
    let mut rng = SplitMix64::new(1);
    let p = 1536;
    let a = Mat::from_fn(p, 2*p, |_, _| rng.normal());
    let c = &a * a.transpose();
    let t = Instant::now(); let e = c.self_adjoint_eigen(Side::Lower).unwrap(); eprintln!("eigen {:?}", t.elapsed());
    let t = Instant::now(); let _ = c.self_adjoint_eigenvalues(Side::Lower).unwrap(); eprintln!("eigenvalues {:?}", t.elapsed());
    let t = Instant::now(); let s = c.thin_svd().unwrap(); eprintln!("thin_svd {:?}", t.elapsed());
    let t = Instant::now(); let _ = c.singular_values().unwrap(); eprintln!("singular_values {:?}", t.elapsed());
    let t = Instant::now(); let _ = &c * &c; eprintln!("matmul {:?}", t.elapsed());
    eprintln!("{} {}", e.S().column_vector()[0], s.S().column_vector()[0]);
    eprintln!("par {:?}", faer::get_global_parallelism());
}
