//! Properties of the neuron-level measures: invariance to the order of the neurons, the metric
//! axioms of soft matching, recovery of a planted permutation, streaming = one pass, dead
//! neurons, very unequal widths and bad options.

use spanmatch_core::measures::{compute, compute_with, Measure, MeasureOptions, Measures};
use spanmatch_core::rng::SplitMix64;
use spanmatch_core::{CoreError, GramAccumulator, JointStats};

const NEURON: [Measure; 5] = [
    Measure::OneToOne,
    Measure::SoftMatch,
    Measure::PermProcrustes,
    Measure::Predictivity,
    Measure::Shape,
];

/// Row-major `rows x cols` matrix.
struct Layer {
    v: Vec<f64>,
    rows: usize,
    cols: usize,
}

impl Layer {
    fn col(&self, r: usize, c: usize) -> f64 {
        self.v[r * self.cols + c]
    }

    fn permuted(&self, perm: &[usize]) -> Layer {
        // Column j of the result is column perm[j] of self.
        let v = (0..self.rows)
            .flat_map(|r| perm.iter().map(move |&p| (r, p)))
            .map(|(r, p)| self.col(r, p))
            .collect();
        Layer {
            v,
            rows: self.rows,
            cols: perm.len(),
        }
    }
}

/// ReLU layer mixing `shared` common factors with private noise.
fn layer(rng: &mut SplitMix64, z: &[Vec<f64>], cols: usize, noise: f64) -> Layer {
    let shared = z[0].len();
    let w: Vec<f64> = (0..shared * cols).map(|_| rng.normal()).collect();
    let mut v = Vec::with_capacity(z.len() * cols);
    for zr in z {
        for j in 0..cols {
            let s: f64 = (0..shared).map(|k| zr[k] * w[k * cols + j]).sum();
            v.push((s + noise * rng.normal() + 0.2).max(0.0));
        }
    }
    Layer {
        v,
        rows: z.len(),
        cols,
    }
}

fn factors(rng: &mut SplitMix64, rows: usize, shared: usize) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| (0..shared).map(|_| rng.normal()).collect())
        .collect()
}

fn stats(a: &Layer, b: &Layer) -> JointStats {
    JointStats::from_matrices(&a.v, &b.v, a.cols, b.cols).unwrap()
}

fn perm(rng: &mut SplitMix64, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    p
}

fn scalars(m: &Measures) -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("one_to_one", m.one_to_one),
        ("semi_match", m.semi_match),
        ("soft_match", m.soft_match),
        ("soft_match_correlation", m.soft_match_correlation),
        ("perm_procrustes", m.perm_procrustes),
        ("perm_procrustes_angular", m.perm_procrustes_angular),
        ("predictivity_ab", m.predictivity_ab),
        ("predictivity_ba", m.predictivity_ba),
        ("shape", m.shape),
    ]
}

fn assert_close(a: &Measures, b: &Measures, tol: f64, what: &str) {
    for ((k, x), (_, y)) in scalars(a).into_iter().zip(scalars(b)) {
        let (x, y) = (
            x.unwrap_or_else(|| panic!("{what}: {k} missing")),
            y.unwrap_or_else(|| panic!("{what}: {k} missing")),
        );
        assert!((x - y).abs() <= tol, "{what}: {k} {x} vs {y}");
    }
}

#[test]
fn permuting_the_neurons_changes_nothing_but_the_indices() {
    let mut rng = SplitMix64::new(1);
    let z = factors(&mut rng, 200, 5);
    let (a, b) = (layer(&mut rng, &z, 12, 0.7), layer(&mut rng, &z, 9, 0.7));
    let before = compute(&stats(&a, &b), &NEURON).unwrap();
    let (pa, pb) = (perm(&mut rng, 12), perm(&mut rng, 9));
    let after = compute(&stats(&a.permuted(&pa), &b.permuted(&pb)), &NEURON).unwrap();
    assert_close(&before, &after, 1e-12, "permuted");
    // The one-to-one pairs are the same neurons, renamed.
    let (nb, na) = (before.neurons.unwrap(), after.neurons.unwrap());
    let mut renamed: Vec<(usize, usize)> = na
        .one_to_one
        .unwrap()
        .iter()
        .map(|p| (pa[p.a], pb[p.b]))
        .collect();
    renamed.sort_unstable();
    let orig: Vec<(usize, usize)> = nb.one_to_one.unwrap().iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(renamed, orig);
}

#[test]
fn soft_matching_is_a_metric_on_random_layers() {
    let mut rng = SplitMix64::new(2);
    let rows = 60;
    let z = factors(&mut rng, rows, 4);
    let d = |x: &Layer, y: &Layer| {
        compute(&stats(x, y), &[Measure::SoftMatch])
            .unwrap()
            .soft_match
            .unwrap()
    };
    let mut violations = 0;
    for t in 0..200 {
        let widths: Vec<usize> = (0..3).map(|_| 3 + rng.below(10) as usize).collect();
        let noise = [0.3, 1.0, 3.0][t % 3];
        let ls: Vec<Layer> = widths
            .iter()
            .map(|&w| layer(&mut rng, &z, w, noise))
            .collect();
        let (x, y, w) = (&ls[0], &ls[1], &ls[2]);
        let (dxy, dyx, dyw, dxw) = (d(x, y), d(y, x), d(y, w), d(x, w));
        assert!((dxy - dyx).abs() < 1e-12, "symmetry {dxy} {dyx}");
        if dxw > dxy + dyw + 1e-12 {
            violations += 1;
        }
        if t % 20 == 0 {
            let p = perm(&mut rng, x.cols);
            let self_d = d(x, &x.permuted(&p));
            assert!(self_d < 1e-6, "d(X, XP) = {self_d}");
        }
    }
    assert_eq!(violations, 0, "triangle inequality");
}

#[test]
fn one_to_one_recovers_a_planted_permutation() {
    let mut rng = SplitMix64::new(3);
    let n = 40;
    let z = factors(&mut rng, 500, n);
    // X: independent neurons; Y: X's neurons in another order plus noise.
    let x = layer(&mut rng, &z, n, 0.0);
    let x = Layer {
        v: z.iter().flatten().copied().collect(),
        ..x
    };
    let p = perm(&mut rng, n);
    let mut y = x.permuted(&p);
    y.v.iter_mut().for_each(|v| *v += 0.5 * rng.normal());
    let m = compute(
        &stats(&x, &y),
        &[
            Measure::OneToOne,
            Measure::PermProcrustes,
            Measure::SoftMatch,
        ],
    )
    .unwrap();
    let nm = m.neurons.unwrap();
    // y's column j is x's column p[j]: the pair of x's neuron p[j] is j.
    for q in nm.one_to_one.unwrap() {
        assert_eq!(p[q.b], q.a, "one-to-one");
        assert!(q.correlation > 0.8);
    }
    for [a, b] in nm.permutation.unwrap() {
        assert_eq!(p[b], a, "permutation Procrustes");
    }
    for q in nm.best_in_b.unwrap() {
        assert_eq!(p[q.b], q.a, "semi-matching");
    }
    // Equal widths: the soft matching is the assignment, d² = 2 − 2·(mean matched ρ).
    let (d, one) = (m.soft_match.unwrap(), m.one_to_one.unwrap());
    assert!((d * d - (2.0 - 2.0 * one)).abs() < 1e-12);
}

#[test]
fn streamed_statistics_give_the_one_pass_values() {
    let mut rng = SplitMix64::new(4);
    let z = factors(&mut rng, 333, 6);
    let (a, b) = (layer(&mut rng, &z, 14, 1.0), layer(&mut rng, &z, 11, 1.0));
    let options = MeasureOptions {
        transport_plan: true,
        ridge_alpha: 0.05,
        ..MeasureOptions::default()
    };
    let one = compute_with(&stats(&a, &b), &Measure::ALL, &options).unwrap();
    // Blocks of uneven sizes into two accumulators, merged.
    let (mut p, mut q) = (GramAccumulator::new(14, 11), GramAccumulator::new(14, 11));
    let mut start = 0;
    for (k, size) in [50, 1, 97, 120, 65].into_iter().enumerate() {
        let acc = if k % 2 == 0 { &mut p } else { &mut q };
        acc.push_pair(
            &a.v[start * 14..(start + size) * 14],
            &b.v[start * 11..(start + size) * 11],
        )
        .unwrap();
        start += size;
    }
    assert_eq!(start, 333);
    p.merge(&q).unwrap();
    let streamed = compute_with(&p.finish(), &Measure::ALL, &options).unwrap();
    assert_close(&one, &streamed, 1e-12, "streamed");
    let (n1, n2) = (one.neurons.unwrap(), streamed.neurons.unwrap());
    assert_eq!(n1.one_to_one.unwrap().len(), 11);
    assert_eq!(
        n1.permutation, n2.permutation,
        "same permutation from merged statistics"
    );
    let (p1, p2) = (n1.soft_plan.unwrap(), n2.soft_plan.unwrap());
    assert_eq!(p1.len(), p2.len());
    for (e, f) in p1.iter().zip(&p2) {
        assert_eq!((e.a, e.b), (f.a, f.b));
        assert!((e.mass - f.mass).abs() < 1e-15);
    }
}

#[test]
fn dead_and_constant_neurons_are_left_out_and_counted() {
    let mut rng = SplitMix64::new(5);
    let z = factors(&mut rng, 150, 4);
    let (mut a, mut b) = (layer(&mut rng, &z, 10, 0.5), layer(&mut rng, &z, 8, 0.5));
    for r in 0..150 {
        a.v[r * 10 + 3] = 0.0; // dead
        a.v[r * 10 + 7] = 2.5; // constant
        b.v[r * 8] = 0.0;
    }
    let m = compute_with(
        &stats(&a, &b),
        &Measure::ALL,
        &MeasureOptions {
            transport_plan: true,
            ..MeasureOptions::default()
        },
    )
    .unwrap();
    for (k, v) in scalars(&m) {
        let v = v.unwrap_or_else(|| panic!("{k} missing"));
        assert!(v.is_finite(), "{k}");
    }
    let nm = m.neurons.as_ref().unwrap();
    assert_eq!(nm.constant_a, vec![3, 7]);
    assert_eq!(nm.constant_b, vec![0]);
    // 8 live neurons of A, 7 of B: 7 pairs, none with a constant neuron.
    let pairs = nm.one_to_one.as_ref().unwrap();
    assert_eq!(pairs.len(), 7);
    assert!(pairs.iter().all(|p| p.a != 3 && p.a != 7 && p.b != 0));
    // The plan's marginals are uniform over the live neurons.
    let plan = nm.soft_plan.as_ref().unwrap();
    let mut row = [0.0; 10];
    let mut col = [0.0; 8];
    for e in plan {
        row[e.a] += e.mass;
        col[e.b] += e.mass;
    }
    for (i, r) in row.iter().enumerate() {
        let want = if i == 3 || i == 7 { 0.0 } else { 1.0 / 8.0 };
        assert!((r - want).abs() < 1e-15, "row {i}: {r}");
    }
    for (j, c) in col.iter().enumerate() {
        let want = if j == 0 { 0.0 } else { 1.0 / 7.0 };
        assert!((c - want).abs() < 1e-15, "col {j}: {c}");
    }
    assert!(m
        .notes
        .iter()
        .any(|n| n.contains("2 neuron(s) of A and 1 of B")));
    // A whole layer without variance: the correlation measures are undefined, with a note.
    let mut flat = b;
    flat.v.iter_mut().for_each(|v| *v = 1.0);
    let m = compute(&stats(&a, &flat), &Measure::ALL).unwrap();
    assert!(m.one_to_one.is_none() && m.soft_match.is_none() && m.shape.is_none());
    assert!(m.notes.iter().any(|n| n.contains("no variance")));
    assert!(serde_json::to_string(&m).unwrap().find("NaN").is_none());
}

#[test]
fn widths_differing_tenfold_work() {
    let mut rng = SplitMix64::new(6);
    let z = factors(&mut rng, 400, 5);
    for (n1, n2) in [(6, 60), (70, 7)] {
        let (a, b) = (layer(&mut rng, &z, n1, 0.5), layer(&mut rng, &z, n2, 0.5));
        let m = compute_with(
            &stats(&a, &b),
            &Measure::ALL,
            &MeasureOptions {
                transport_plan: true,
                ..MeasureOptions::default()
            },
        )
        .unwrap();
        for (k, v) in scalars(&m) {
            assert!(v.is_some_and(f64::is_finite), "{n1}x{n2}: {k}");
        }
        let nm = m.neurons.unwrap();
        assert_eq!(nm.one_to_one.unwrap().len(), n1.min(n2));
        assert_eq!(nm.permutation.unwrap().len(), n1.min(n2));
        let plan = nm.soft_plan.unwrap();
        let total: f64 = plan.iter().map(|e| e.mass).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(plan.len() < n1 + n2);
        // A plan transports no more correlation than each neuron's best partner gives.
        let c = m.soft_match_correlation.unwrap();
        assert!(c <= m.semi_match.unwrap() + 1e-12, "{c} > semi-matching");
    }
}

#[test]
fn options_out_of_range_are_clear_errors() {
    let mut rng = SplitMix64::new(7);
    let z = factors(&mut rng, 50, 2);
    let st = stats(&layer(&mut rng, &z, 4, 0.5), &layer(&mut rng, &z, 4, 0.5));
    for bad in [-0.1, 1.5, f64::NAN] {
        let err = compute_with(
            &st,
            &[Measure::Shape],
            &MeasureOptions {
                shape_alpha: bad,
                ..MeasureOptions::default()
            },
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CoreError::MeasureOption {
                name: "shape_alpha",
                ..
            }
        ));
        assert!(err.to_string().contains("[0, 1]"), "{err}");
    }
    let err = compute_with(
        &st,
        &[Measure::Predictivity],
        &MeasureOptions {
            ridge_alpha: -1.0,
            ..MeasureOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("ridge_alpha"), "{err}");
    assert!("match_1to1".parse::<Measure>().unwrap() == Measure::OneToOne);
    assert!("Soft_Match".parse::<Measure>().unwrap() == Measure::SoftMatch);
}

#[test]
fn shape_interpolates_between_cca_and_procrustes() {
    let mut rng = SplitMix64::new(8);
    let z = factors(&mut rng, 300, 4);
    let st = stats(&layer(&mut rng, &z, 9, 1.0), &layer(&mut rng, &z, 6, 1.0));
    let at = |alpha: f64| {
        compute_with(
            &st,
            &[Measure::Shape],
            &MeasureOptions {
                shape_alpha: alpha,
                ..MeasureOptions::default()
            },
        )
        .unwrap()
        .shape
        .unwrap()
    };
    let base = compute(&st, &[Measure::Cca, Measure::Procrustes]).unwrap();
    let rho = base.cca_rho.unwrap();
    let [kx, ky] = base.cca_rank.unwrap();
    let cca_like = (rho.iter().sum::<f64>() / ((kx * ky) as f64).sqrt()).acos();
    assert!((at(0.0) - cca_like).abs() < 1e-10);
    assert!((at(1.0) - base.procrustes_angular.unwrap()).abs() < 1e-10);
    // Near the ends the general path agrees with the shortcuts.
    assert!((at(1e-9) - at(0.0)).abs() < 1e-6);
    assert!((at(1.0 - 1e-9) - at(1.0)).abs() < 1e-6);
    // Monotone in between on this data is not guaranteed; the values stay in [0, π/2].
    for a in [0.1, 0.5, 0.9] {
        assert!((0.0..=std::f64::consts::FRAC_PI_2).contains(&at(a)));
    }
}

#[test]
fn predictivity_of_a_linear_copy_is_one() {
    let mut rng = SplitMix64::new(9);
    let z = factors(&mut rng, 200, 6);
    let a = Layer {
        v: z.iter().flatten().copied().collect(),
        rows: 200,
        cols: 6,
    };
    // B = A W (+ offset): exactly predictable from A; A is predictable from B as W has full rank.
    let w: Vec<f64> = (0..6 * 8).map(|_| rng.normal()).collect();
    let bv: Vec<f64> = (0..200)
        .flat_map(|r| {
            let w = &w;
            let a = &a;
            (0..8).map(move |j| 1.0 + (0..6).map(|k| a.col(r, k) * w[k * 8 + j]).sum::<f64>())
        })
        .collect();
    let b = Layer {
        v: bv,
        rows: 200,
        cols: 8,
    };
    let m = compute(&stats(&a, &b), &[Measure::Predictivity]).unwrap();
    assert!((m.predictivity_ab.unwrap() - 1.0).abs() < 1e-10);
    assert!((m.predictivity_ba.unwrap() - 1.0).abs() < 1e-10);
    let r = compute_with(
        &stats(&a, &b),
        &[Measure::Predictivity],
        &MeasureOptions {
            ridge_alpha: 1.0,
            ..MeasureOptions::default()
        },
    )
    .unwrap();
    assert!(r.predictivity_ab.unwrap() < 0.999);
    assert_eq!(r.predictivity_alpha, Some(1.0));
    // The plan is only returned on request.
    let m = compute(&stats(&a, &b), &[Measure::SoftMatch]).unwrap();
    assert!(m.neurons.unwrap().soft_plan.is_none());
}
