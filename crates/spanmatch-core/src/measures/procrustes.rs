//! Orthogonal Procrustes distance of the centred, Frobenius-normalised data.

use super::{Measures, Parts};

/// Fills `procrustes` and `procrustes_angular` (both sides known to have variance).
///
/// `ν = ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F)`, clamped to [0, 1]; `d = sqrt(2 − 2ν)`, `θ = arccos ν`.
pub(super) fn fill(parts: &Parts, out: &mut Measures) {
    let Ok(sv) = parts.cxy.singular_values() else {
        out.notes
            .push("procrustes: undefined, the singular value solver did not converge".to_string());
        return;
    };
    let nuclear: f64 = sv.iter().map(|s| s.max(0.0)).sum();
    let nu = nuclear / (parts.trace_a().sqrt() * parts.trace_b().sqrt());
    if !nu.is_finite() {
        out.notes
            .push("procrustes: undefined, the normalisation overflowed".to_string());
        return;
    }
    let nu = nu.clamp(0.0, 1.0);
    out.procrustes = Some((2.0 - 2.0 * nu).max(0.0).sqrt());
    out.procrustes_angular = Some(nu.acos());
}
