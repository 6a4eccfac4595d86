//! faer against OpenBLAS on the dense kernels of the ε-profile (issue 21): matrix product,
//! triangular solve with many right-hand sides, Cholesky. Alternated in one process, medians.
//!
//! `cargo run --release -p spanmatch-core --example blas_speed -- N [REPS]`
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, Par};
use spanmatch_core::gram_kernel::Dgemm;
use spanmatch_core::rng::SplitMix64;
use std::os::raw::c_int;
use std::time::Instant;

type Dtrsm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f64,
    *const f64,
    c_int,
    *mut f64,
    c_int,
);
type Dpotrf = unsafe extern "C" fn(*const u8, *const c_int, *mut f64, *const c_int, *mut c_int);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(2048, |s| s.parse().unwrap());
    let reps: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    spanmatch_core::gram_kernel::init();
    let lib = unsafe { libloading::Library::new("libopenblas.so.0") }.expect("openblas");
    let dgemm: Dgemm = *unsafe { lib.get::<Dgemm>(b"cblas_dgemm\0") }.unwrap();
    let dtrsm: Dtrsm = *unsafe { lib.get::<Dtrsm>(b"cblas_dtrsm\0") }.unwrap();
    let dpotrf: Dpotrf = *unsafe { lib.get::<Dpotrf>(b"dpotrf_\0") }.unwrap();
    let mut rng = SplitMix64::new(1);
    let a = Mat::from_fn(n, n, |_, _| rng.normal());
    let b = Mat::from_fn(n, n, |_, _| rng.normal());
    // SPD matrix and its lower factor.
    let mut spd = Mat::<f64>::zeros(n, n);
    matmul(
        spd.as_mut(),
        Accum::Replace,
        a.transpose(),
        a.as_ref(),
        1.0,
        Par::rayon(0),
    );
    for i in 0..n {
        spd[(i, i)] += n as f64;
    }
    let l = spd.llt(faer::Side::Lower).unwrap().L().to_owned();
    let flops_gemm = 2.0 * (n as f64).powi(3);
    let flops_trsm = (n as f64).powi(3);
    let flops_chol = (n as f64).powi(3) / 3.0;
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); 8];
    for _ in 0..reps {
        for par in [0usize, 1] {
            let p = if par == 0 { Par::Seq } else { Par::rayon(0) };
            let mut c = Mat::<f64>::zeros(n, n);
            let s = Instant::now();
            matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, p);
            t[par].push(s.elapsed().as_secs_f64());
            let mut x = b.clone();
            let s = Instant::now();
            solve_lower_triangular_in_place(l.as_ref(), x.as_mut(), p);
            t[2 + par].push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            let _ = spd.llt(faer::Side::Lower);
            t[4 + par].push(s.elapsed().as_secs_f64());
        }
        let mut c = Mat::<f64>::zeros(n, n);
        let ni = n as c_int;
        let s = Instant::now();
        unsafe {
            dgemm(
                102,
                111,
                111,
                ni,
                ni,
                ni,
                1.0,
                a.as_ptr(),
                a.col_stride() as c_int,
                b.as_ptr(),
                b.col_stride() as c_int,
                0.0,
                c.as_ptr_mut(),
                c.col_stride() as c_int,
            )
        };
        t[6].push(s.elapsed().as_secs_f64());
        let mut x = b.clone();
        let s = Instant::now();
        unsafe {
            dtrsm(
                102,
                141,
                122,
                111,
                131,
                ni,
                ni,
                1.0,
                l.as_ptr(),
                l.col_stride() as c_int,
                x.as_ptr_mut(),
                x.col_stride() as c_int,
            )
        };
        t[7].push(s.elapsed().as_secs_f64());
        let mut m = spd.clone();
        let lda = m.col_stride() as c_int;
        let mut info = 0;
        let s = Instant::now();
        unsafe { dpotrf(b"L".as_ptr(), &ni, m.as_ptr_mut(), &lda, &mut info) };
        let tp = s.elapsed().as_secs_f64();
        if t.len() < 9 {
            t.push(Vec::new());
        }
        t[8].push(tp);
    }
    let show = |name: &str, v: &[f64], flops: f64| {
        let m = median(v.to_vec());
        println!("{name:>22}: {m:.3} s  {:.1} GFlop/s", flops / m * 1e-9);
    };
    println!("n = {n}, {} rayon threads", rayon::current_num_threads());
    show("faer gemm seq", &t[0], flops_gemm);
    show("faer gemm par", &t[1], flops_gemm);
    show("openblas dgemm", &t[6], flops_gemm);
    show("faer trsm seq", &t[2], flops_trsm);
    show("faer trsm par", &t[3], flops_trsm);
    show("openblas dtrsm", &t[7], flops_trsm);
    show("faer llt seq", &t[4], flops_chol);
    show("faer llt par", &t[5], flops_chol);
    show("openblas dpotrf", &t[8], flops_chol);
    // The profile's per-side kernels (sequential), faer.
    let mut tk: Vec<Vec<f64>> = vec![Vec::new(); 6];
    for _ in 0..reps {
        let s = Instant::now();
        let mut li = Mat::<f64>::zeros(n, n);
        faer::linalg::triangular_inverse::invert_lower_triangular(
            li.as_mut(),
            l.as_ref(),
            Par::Seq,
        );
        tk[0].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let mut h = Mat::<f64>::zeros(n, n);
        faer::linalg::matmul::triangular::matmul(
            h.as_mut(),
            faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
            Accum::Replace,
            li.transpose(),
            faer::linalg::matmul::triangular::BlockStructure::TriangularUpper,
            li.as_ref(),
            faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
            1.0,
            Par::Seq,
        );
        tk[1].push(s.elapsed().as_secs_f64());
        let mut x = b.clone();
        let s = Instant::now();
        faer::linalg::triangular_solve::solve_upper_triangular_in_place(
            l.transpose(),
            x.as_mut(),
            Par::Seq,
        );
        tk[2].push(s.elapsed().as_secs_f64());
        // Right-hand sides in a transposed (row-major) view.
        let mut xt = b.transpose().to_owned();
        let s = Instant::now();
        solve_lower_triangular_in_place(l.as_ref(), xt.as_mut().transpose_mut(), Par::Seq);
        tk[3].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let _t = x.transpose().to_owned();
        tk[4].push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let mut c = spd.clone();
        blocked_chol(&mut c, 128);
        tk[5].push(s.elapsed().as_secs_f64());
    }
    // OpenBLAS on one thread.
    type SetThreads = unsafe extern "C" fn(c_int);
    let set: SetThreads = *unsafe { lib.get::<SetThreads>(b"openblas_set_num_threads\0") }.unwrap();
    unsafe { set(1) };
    let mut t1: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..reps {
        let ni = n as c_int;
        let mut c = Mat::<f64>::zeros(n, n);
        let s = Instant::now();
        unsafe {
            dgemm(
                102,
                111,
                111,
                ni,
                ni,
                ni,
                1.0,
                a.as_ptr(),
                a.col_stride() as c_int,
                b.as_ptr(),
                b.col_stride() as c_int,
                0.0,
                c.as_ptr_mut(),
                c.col_stride() as c_int,
            )
        };
        t1[0].push(s.elapsed().as_secs_f64());
        let mut x = b.clone();
        let s = Instant::now();
        unsafe {
            dtrsm(
                102,
                141,
                122,
                111,
                131,
                ni,
                ni,
                1.0,
                l.as_ptr(),
                l.col_stride() as c_int,
                x.as_ptr_mut(),
                x.col_stride() as c_int,
            )
        };
        t1[1].push(s.elapsed().as_secs_f64());
        let mut m = spd.clone();
        let lda = m.col_stride() as c_int;
        let mut info = 0;
        let s = Instant::now();
        unsafe { dpotrf(b"L".as_ptr(), &ni, m.as_ptr_mut(), &lda, &mut info) };
        t1[2].push(s.elapsed().as_secs_f64());
    }
    show("openblas dgemm 1 thr", &t1[0], flops_gemm);
    show("openblas dtrsm 1 thr", &t1[1], flops_trsm);
    show("openblas dpotrf 1 thr", &t1[2], flops_chol);
    show("faer trtri seq", &tk[0], flops_chol);
    show("faer LinvT Linv seq", &tk[1], flops_chol);
    show("faer trsm Lt seq", &tk[2], flops_trsm);
    show("faer trsm rowmaj seq", &tk[3], flops_trsm);
    show("transpose copy", &tk[4], 0.0);
    show("blocked chol 128 seq", &tk[5], flops_chol);
}

/// Right-looking blocked Cholesky (lower), sequential.
fn blocked_chol(a: &mut Mat<f64>, nb: usize) {
    let n = a.nrows();
    let mut k = 0;
    while k < n {
        let b = nb.min(n - k);
        {
            let mut d = a.as_mut().submatrix_mut(k, k, b, b);
            let req = faer::linalg::cholesky::llt::factor::cholesky_in_place_scratch::<f64>(
                b,
                Par::Seq,
                Default::default(),
            );
            faer::linalg::cholesky::llt::factor::cholesky_in_place(
                d.as_mut(),
                Default::default(),
                Par::Seq,
                faer::dyn_stack::MemStack::new(&mut faer::dyn_stack::MemBuffer::new(req)),
                Default::default(),
            )
            .unwrap();
        }
        let r = n - k - b;
        if r > 0 {
            let (top, bottom) = a.as_mut().submatrix_mut(k, k, n - k, b).split_at_row_mut(b);
            let diag = top.as_ref();
            let mut panel = bottom;
            // panel <- panel L^{-T}: L panelᵀ = panelᵀ_old
            solve_lower_triangular_in_place(diag, panel.as_mut().transpose_mut(), Par::Seq);
            let panel = a.as_ref().submatrix(k + b, k, r, b).to_owned();
            faer::linalg::matmul::triangular::matmul(
                a.as_mut().submatrix_mut(k + b, k + b, r, r),
                faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
                Accum::Add,
                panel.as_ref(),
                faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                panel.transpose(),
                faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                -1.0,
                Par::Seq,
            );
        }
        k += b;
    }
}
