//! Deterministic layer pairs on which the measures that existed before the shared-factorisation
//! refactor (CKA, CCA family, Procrustes) were recorded (`fixtures/measures_before_refactor.json`,
//! written by the pre-refactor code); `tests/measures_regression.rs` checks the current code
//! against them.

use spanmatch_core::rng::SplitMix64;

/// One case: name, X (rows x n1) and Y (rows x n2), row-major.
pub struct Case {
    pub name: &'static str,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub n1: usize,
    pub n2: usize,
}

fn gauss(rng: &mut SplitMix64, rows: usize, cols: usize) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| (0..cols).map(|_| rng.normal()).collect())
        .collect()
}

fn flat(m: &[Vec<f64>]) -> Vec<f64> {
    m.iter().flatten().copied().collect()
}

/// Planted pair: `shared` common Gaussian factors mixed into both layers, plus noise, through a
/// ReLU with an offset.
fn planted(seed: u64, rows: usize, n1: usize, n2: usize, shared: usize, offset: f64) -> Case {
    let mut rng = SplitMix64::new(seed);
    let z = gauss(&mut rng, rows, shared);
    let wa = gauss(&mut rng, shared, n1);
    let wb = gauss(&mut rng, shared, n2);
    let mix = |w: &[Vec<f64>], n: usize, rng: &mut SplitMix64| -> Vec<Vec<f64>> {
        z.iter()
            .map(|zr| {
                (0..n)
                    .map(|j| {
                        let v: f64 = zr.iter().zip(w).map(|(a, wr)| a * wr[j]).sum();
                        (v + 0.5 * rng.normal() + offset).max(0.0)
                    })
                    .collect()
            })
            .collect()
    };
    let x = mix(&wa, n1, &mut rng);
    let y = mix(&wb, n2, &mut rng);
    Case {
        name: "",
        x: flat(&x),
        y: flat(&y),
        n1,
        n2,
    }
}

/// The cases (the CKA demo is read from its fixture by the callers).
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut c = planted(1, 300, 12, 9, 4, 0.3);
    c.name = "planted_relu_12x9";
    out.push(c);
    let mut c = planted(2, 400, 10, 10, 6, 50.0);
    c.name = "large_means_10x10";
    out.push(c);
    // Rank deficiency: a dead neuron, a duplicated neuron and a constant nonzero neuron.
    let mut c = planted(3, 200, 8, 10, 3, 0.2);
    c.name = "dead_duplicate_constant_8x10";
    for r in 0..200 {
        c.x[r * 8 + 2] = 0.0;
        c.x[r * 8 + 5] = c.x[r * 8 + 1];
        c.y[r * 10 + 7] = 3.5;
    }
    out.push(c);
    let mut c = planted(4, 15, 12, 10, 3, 0.1);
    c.name = "more_neurons_than_rows_12x10";
    out.push(c);
    let mut c = planted(5, 120, 6, 14, 2, 0.0);
    c.name = "unequal_widths_6x14";
    out.push(c);
    out
}
