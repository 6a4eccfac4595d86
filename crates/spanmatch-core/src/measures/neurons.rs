//! Neuron-matching measures: one-to-one (Hungarian) and semi-matching of neuron correlations
//! (Li et al. 2016), soft matching (Khosla & Williams 2023) and permutation Procrustes
//! (Williams et al. 2021), all from the centred covariance blocks.

use super::transport::{max_uniform_transport, TransportError};
use super::{is_constant, Measures, NeuronMatching, NeuronPair, Parts, TransportEntry};
use crate::JointStats;

/// The correlation matrix of the live (non-constant) neurons, row-major `live_a x live_b`.
pub(super) struct Correlations {
    pub live_a: Vec<usize>,
    pub live_b: Vec<usize>,
    pub r: Vec<f64>,
}

impl Correlations {
    /// Neurons whose centred variance is at most `CONSTANT_TOL` times their uncentred second
    /// moment (dead or constant) are left out.
    pub fn new(stats: &JointStats, parts: &Parts) -> Self {
        let n1 = parts.n1;
        let live = |c: &faer::Mat<f64>, off: usize| -> Vec<usize> {
            (0..c.nrows())
                .filter(|&i| !is_constant(c[(i, i)], stats.gram[(off + i, off + i)]))
                .collect()
        };
        let live_a = live(&parts.cxx, 0);
        let live_b = live(&parts.cyy, n1);
        let sa: Vec<f64> = live_a
            .iter()
            .map(|&i| 1.0 / parts.cxx[(i, i)].sqrt())
            .collect();
        let sb: Vec<f64> = live_b
            .iter()
            .map(|&j| 1.0 / parts.cyy[(j, j)].sqrt())
            .collect();
        let mut r = Vec::with_capacity(live_a.len() * live_b.len());
        for (ia, &i) in live_a.iter().enumerate() {
            for (jb, &j) in live_b.iter().enumerate() {
                r.push((parts.cxy[(i, j)] * sa[ia] * sb[jb]).clamp(-1.0, 1.0));
            }
        }
        Self { live_a, live_b, r }
    }

    fn dims(&self) -> (usize, usize) {
        (self.live_a.len(), self.live_b.len())
    }

    fn at(&self, ia: usize, jb: usize) -> f64 {
        self.r[ia * self.live_b.len() + jb]
    }

    fn pair(&self, ia: usize, jb: usize) -> NeuronPair {
        NeuronPair {
            a: self.live_a[ia],
            b: self.live_b[jb],
            correlation: self.at(ia, jb),
        }
    }
}

/// The maximum-weight assignment of `w` (row-major `nr x nc`): `min(nr, nc)` (row, column) pairs
/// sorted by row.
fn assignment(w: &Vec<f64>, nr: usize, nc: usize) -> Option<Vec<(usize, usize)>> {
    let (rows, cols) = lsap::solve(nr, nc, w, true).ok()?;
    let mut pairs: Vec<(usize, usize)> = rows.into_iter().zip(cols).collect();
    pairs.sort_unstable();
    Some(pairs)
}

fn note_constant(corr: &Correlations, parts: &Parts, what: &str, out: &mut Measures) {
    let (la, lb) = corr.dims();
    let (da, db) = (parts.n1 - la, parts.n2 - lb);
    if da + db > 0 {
        out.notes.push(format!(
            "{what}: {da} neuron(s) of A and {db} of B have no variance (dead or constant) and \
             were left out (listed in neurons.constant_a / constant_b)"
        ));
    }
}

/// One-to-one and semi-matching of the correlations. Returns the assignment (indices into the
/// live lists) for reuse by soft matching.
pub(super) fn fill_one_to_one(
    corr: &Correlations,
    parts: &Parts,
    nm: &mut NeuronMatching,
    out: &mut Measures,
) -> Option<Vec<(usize, usize)>> {
    note_constant(corr, parts, "one_to_one", out);
    let (la, lb) = corr.dims();
    if la == 0 || lb == 0 {
        out.notes
            .push("one_to_one: undefined, a layer has no neuron with variance".to_string());
        return None;
    }
    let Some(pairs) = assignment(&corr.r, la, lb) else {
        out.notes
            .push("one_to_one: undefined, the assignment solver failed".to_string());
        return None;
    };
    let list: Vec<NeuronPair> = pairs.iter().map(|&(i, j)| corr.pair(i, j)).collect();
    out.one_to_one = Some(list.iter().map(|p| p.correlation).sum::<f64>() / list.len() as f64);
    nm.one_to_one = Some(list);
    // Semi-matching: each neuron's best partner (the first on ties).
    let best_b: Vec<NeuronPair> = (0..la)
        .map(|i| {
            let j = (0..lb).fold(0, |bj, j| {
                if corr.at(i, j) > corr.at(i, bj) {
                    j
                } else {
                    bj
                }
            });
            corr.pair(i, j)
        })
        .collect();
    let best_a: Vec<NeuronPair> = (0..lb)
        .map(|j| {
            let i = (0..la).fold(0, |bi, i| {
                if corr.at(i, j) > corr.at(bi, j) {
                    i
                } else {
                    bi
                }
            });
            corr.pair(i, j)
        })
        .collect();
    let mean = |v: &[NeuronPair]| v.iter().map(|p| p.correlation).sum::<f64>() / v.len() as f64;
    out.semi_match = Some(0.5 * (mean(&best_b) + mean(&best_a)));
    nm.best_in_b = Some(best_b);
    nm.best_in_a = Some(best_a);
    Some(pairs)
}

/// Soft matching: the optimal transport plan with uniform marginals over the live neurons
/// maximising the transported correlation (equivalently minimising the squared distance
/// `2 − 2ρ` of the standardised neurons). With equal live widths the optimum is an assignment
/// (a vertex of the Birkhoff polytope), reused from one-to-one when available.
pub(super) fn fill_soft_match(
    corr: &Correlations,
    parts: &Parts,
    assigned: Option<&[(usize, usize)]>,
    plan: bool,
    nm: &mut NeuronMatching,
    out: &mut Measures,
) {
    note_constant(corr, parts, "soft_match", out);
    let (la, lb) = corr.dims();
    if la == 0 || lb == 0 {
        out.notes
            .push("soft_match: undefined, a layer has no neuron with variance".to_string());
        return;
    }
    let solved: Result<(f64, Vec<TransportEntry>), String> = if la == lb {
        let pairs = match assigned {
            Some(p) => Some(p.to_vec()),
            None => assignment(&corr.r, la, lb),
        };
        match pairs {
            Some(p) => {
                let mass = 1.0 / la as f64;
                let value = p.iter().map(|&(i, j)| corr.at(i, j)).sum::<f64>() * mass;
                let entries = p
                    .iter()
                    .map(|&(i, j)| TransportEntry {
                        a: corr.live_a[i],
                        b: corr.live_b[j],
                        mass,
                    })
                    .collect();
                Ok((value, entries))
            }
            None => Err("the assignment solver failed".to_string()),
        }
    } else {
        match max_uniform_transport(&corr.r, la, lb) {
            Ok(sol) => {
                let entries = sol
                    .plan
                    .iter()
                    .map(|e| TransportEntry {
                        a: corr.live_a[e.a],
                        b: corr.live_b[e.b],
                        mass: e.mass,
                    })
                    .collect();
                Ok((sol.value, entries))
            }
            Err(TransportError::PivotLimit) => {
                Err("the transport solver reached its pivot limit".to_string())
            }
            Err(e) => Err(format!("the transport solver failed ({e:?})")),
        }
    };
    match solved {
        Ok((value, entries)) => {
            let value = value.clamp(-1.0, 1.0);
            out.soft_match_correlation = Some(value);
            out.soft_match = Some((2.0 - 2.0 * value).max(0.0).sqrt());
            if plan {
                nm.soft_plan = Some(entries);
            }
        }
        Err(why) => out.notes.push(format!("soft_match: undefined, {why}")),
    }
}

/// Permutation Procrustes: the assignment maximising `Σ (X̃ᵀỸ)_{i π(i)}` over all neurons (the
/// narrower layer zero-padded), `ν = Σ (X̃ᵀỸ)_{i π(i)} / (‖X̃‖_F ‖Ỹ‖_F)`, the distance
/// `sqrt(2 − 2ν)` and the angle `arccos ν`.
pub(super) fn fill_perm_procrustes(parts: &Parts, nm: &mut NeuronMatching, out: &mut Measures) {
    let (n1, n2) = (parts.n1, parts.n2);
    let scale = 1.0 / (parts.trace_a().sqrt() * parts.trace_b().sqrt());
    let w: Vec<f64> = (0..n1 * n2)
        .map(|k| parts.cxy[(k / n2, k % n2)] * scale)
        .collect();
    let Some(pairs) = assignment(&w, n1, n2) else {
        out.notes
            .push("perm_procrustes: undefined, the assignment solver failed".to_string());
        return;
    };
    let nu: f64 = pairs.iter().map(|&(i, j)| w[i * n2 + j]).sum();
    if !nu.is_finite() {
        out.notes
            .push("perm_procrustes: undefined, the normalisation overflowed".to_string());
        return;
    }
    let nu = nu.clamp(-1.0, 1.0);
    out.perm_procrustes = Some((2.0 - 2.0 * nu).max(0.0).sqrt());
    out.perm_procrustes_angular = Some(nu.acos());
    nm.permutation = Some(pairs.into_iter().map(|(i, j)| [i, j]).collect());
}
