//! faer against OpenBLAS's LAPACK on the measures' symmetric eigenproblems (issue 21 item 2):
//! full eigendecomposition and eigenvalues only, both threads on one problem, and two problems
//! side by side on one thread each. Alternated, medians. (Run it beside busy processes too: the
//! measurement that kept the measures on faer's eigensolver, docs/decisions.md.)
//!
//! `cargo run --release -p spanmatch-core --example eig_speed -- N [REPS]`
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use spanmatch_core::rng::SplitMix64;
use std::os::raw::{c_char, c_int};
use std::time::Instant;

type Dsyevd = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const c_int,
    *mut f64,
    *const c_int,
    *mut f64,
    *mut f64,
    *const c_int,
    *mut c_int,
    *const c_int,
    *mut c_int,
);
type SetThreads = unsafe extern "C" fn(c_int);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn syevd(f: Dsyevd, m: &Mat<f64>, vectors: bool) -> Vec<f64> {
    let n = m.nrows() as c_int;
    let mut a = m.clone();
    let lda = a.col_stride() as c_int;
    let mut w = vec![0.0; m.nrows()];
    let jobz = if vectors { b"V" } else { b"N" };
    let mut info = 0;
    // A workspace query (sizes -1), then the call with the sizes it asked for.
    let (mut work, mut iwork) = (vec![0.0; 1], vec![0 as c_int; 1]);
    for (lw, liw) in [(-1, -1), (0, 0)] {
        if lw == 0 {
            work = vec![0.0; work[0] as usize];
            iwork = vec![0; iwork[0] as usize];
        }
        let (lw, liw) = if lw == 0 {
            (work.len() as c_int, iwork.len() as c_int)
        } else {
            (lw, liw)
        };
        unsafe {
            f(
                jobz.as_ptr() as *const c_char,
                b"L".as_ptr() as *const c_char,
                &n,
                a.as_ptr_mut(),
                &lda,
                w.as_mut_ptr(),
                work.as_mut_ptr(),
                &lw,
                iwork.as_mut_ptr(),
                &liw,
                &mut info,
            )
        };
    }
    assert_eq!(info, 0);
    w
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(2048, |s| s.parse().unwrap());
    let reps: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    spanmatch_core::gram_kernel::init();
    let lib = unsafe { libloading::Library::new("libopenblas.so.0") }.expect("openblas");
    let dsyevd: Dsyevd = *unsafe { lib.get::<Dsyevd>(b"dsyevd_\0") }.unwrap();
    let set: SetThreads = *unsafe { lib.get::<SetThreads>(b"openblas_set_num_threads\0") }.unwrap();
    let mut rng = SplitMix64::new(1);
    let a = Mat::from_fn(n, n, |_, _| rng.normal());
    let mut s = Mat::<f64>::zeros(n, n);
    matmul(
        s.as_mut(),
        Accum::Replace,
        a.transpose(),
        a.as_ref(),
        1.0,
        Par::rayon(0),
    );
    let s2 = s.clone();
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); 7];
    let clock = |f: &mut dyn FnMut()| {
        let st = Instant::now();
        f();
        st.elapsed().as_secs_f64()
    };
    for _ in 0..reps {
        unsafe { set(2) };
        t[0].push(clock(&mut || {
            std::hint::black_box(s.self_adjoint_eigen(faer::Side::Lower).unwrap());
        }));
        t[1].push(clock(&mut || {
            std::hint::black_box(syevd(dsyevd, &s, true));
        }));
        t[2].push(clock(&mut || {
            std::hint::black_box(s.self_adjoint_eigenvalues(faer::Side::Lower).unwrap());
        }));
        t[3].push(clock(&mut || {
            std::hint::black_box(syevd(dsyevd, &s, false));
        }));
        // Two problems side by side, one thread each.
        t[4].push(clock(&mut || {
            // (faer's default parallelism is global: one thread per problem for both.)
            faer::set_global_parallelism(Par::Seq);
            rayon::join(
                || std::hint::black_box(s.self_adjoint_eigen(faer::Side::Lower).unwrap()),
                || std::hint::black_box(s2.self_adjoint_eigen(faer::Side::Lower).unwrap()),
            );
            faer::set_global_parallelism(Par::rayon(0));
        }));
        unsafe { set(1) };
        t[5].push(clock(&mut || {
            std::thread::scope(|sc| {
                sc.spawn(|| std::hint::black_box(syevd(dsyevd, &s, true)));
                sc.spawn(|| std::hint::black_box(syevd(dsyevd, &s2, true)));
            });
        }));
        unsafe { set(2) };
        t[6].push(clock(&mut || {
            std::hint::black_box(syevd(dsyevd, &s, true));
            std::hint::black_box(syevd(dsyevd, &s2, true));
        }));
    }
    println!("n = {n}, reps {reps}");
    let names = [
        "faer eigen (par)",
        "dsyevd V (2 thr)",
        "faer values (par)",
        "dsyevd N (2 thr)",
        "faer eigen x2 side by side",
        "dsyevd V x2 side by side 1 thr",
        "dsyevd V x2 one after other 2 thr",
    ];
    for (i, nm) in names.iter().enumerate() {
        println!("{nm:>36}: {:.3} s", median(t[i].clone()));
    }
}
