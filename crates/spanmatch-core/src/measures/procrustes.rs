//! Orthogonal Procrustes distance of the centred, Frobenius-normalised data.

use super::linalg::singular_values;
use super::{Measures, Parts};

/// `ν = ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F)`, clamped to [0, 1], or a note when undefined. The singular
/// values of `Cxy` come from the smaller Gram matrix (see `linalg::GRAM_NOISE`).
pub(super) fn nuclear_ratio(parts: &Parts, out: &mut Measures) -> Option<f64> {
    let Some(sv) = singular_values(parts.cxy.as_ref(), parts.backend) else {
        out.notes
            .push("procrustes: undefined, the eigenvalue solver did not converge".to_string());
        return None;
    };
    let nuclear: f64 = sv.iter().sum();
    let nu = nuclear / (parts.trace_a().sqrt() * parts.trace_b().sqrt());
    if !nu.is_finite() {
        out.notes
            .push("procrustes: undefined, the normalisation overflowed".to_string());
        return None;
    }
    Some(nu.clamp(0.0, 1.0))
}

/// Fills `procrustes` and `procrustes_angular` (both sides known to have variance) from
/// `d = sqrt(2 − 2ν)`, `θ = arccos ν`.
pub(super) fn fill(nu: f64, out: &mut Measures) {
    out.procrustes = Some((2.0 - 2.0 * nu).max(0.0).sqrt());
    out.procrustes_angular = Some(nu.acos());
}
