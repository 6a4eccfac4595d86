//! Named numerical tolerances. Every rank or zero decision in the core uses one of these.

use crate::CoreError;

/// Sines at or below this value count as zero.
///
/// Sines are computed from an f64 Gram matrix, so the smallest sine that can be resolved is about
/// `sqrt(f64::EPSILON) ≈ 1.5e-8` times a conditioning factor. A neuron whose sine to a span is at
/// most `SINE_TOL` is treated as lying in that span: this makes the exact match (ε = 0) meaningful
/// in floating point, and it is the rank tolerance of each side's span (a neuron within this sine
/// of the span of the others adds no direction). Thresholds ε*(v) at or below it are reported as 0.
pub const SINE_TOL: f64 = 1e-6;

/// A neuron is dead (a zero activation vector) when its norm is at most `DEAD_NORM_TOL` times the
/// largest neuron norm of the two layers being compared.
///
/// Dead ReLU units have norm exactly 0; the tolerance only guards against round-off in upstream
/// computations. Any unit that fires at all is far above it.
pub const DEAD_NORM_TOL: f64 = 1e-10;

/// The tolerances of a match computation; [`Tolerances::default`] uses the named constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// See [`SINE_TOL`].
    pub sine: f64,
    /// See [`DEAD_NORM_TOL`].
    pub dead_norm: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            sine: SINE_TOL,
            dead_norm: DEAD_NORM_TOL,
        }
    }
}

impl Tolerances {
    /// Checks that both tolerances are in their documented ranges ([0, 0.1) and [0, 1)).
    pub fn validate(&self) -> Result<(), CoreError> {
        if !(0.0..0.1).contains(&self.sine) {
            return Err(CoreError::Tolerance {
                name: "sine",
                value: self.sine,
                range: "[0, 0.1)",
            });
        }
        if !(0.0..1.0).contains(&self.dead_norm) {
            return Err(CoreError::Tolerance {
                name: "dead_norm",
                value: self.dead_norm,
                range: "[0, 1)",
            });
        }
        Ok(())
    }
}

/// Checks that ε lies in [0, 1].
pub fn check_epsilon(eps: f64) -> Result<(), CoreError> {
    if (0.0..=1.0).contains(&eps) {
        Ok(())
    } else {
        Err(CoreError::EpsilonRange(eps))
    }
}
