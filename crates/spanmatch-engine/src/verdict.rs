//! The one-word verdict of a layer pair at the main ε: did training make the two nets' neurons
//! match? The rule (docs/controls.md), with m the trained pair's mms, `[lo, hi]` its bootstrap
//! interval (`lo = hi = m` without a bootstrap), u the untrained pair's mms and r the rotation
//! null's largest draw:
//!
//! 1. `none` if `hi < NONE_MMS` (no match to speak of) or `hi < u` (the untrained nets match
//!    more: training did not create the match);
//! 2. `given` if `lo <= u` (trained ≈ untrained within the interval: the architecture and the
//!    input statistics give the match without learning);
//! 3. `subspace-only` if `m <= r` (above the untrained nets, but a random rotation of net B's
//!    neurons, same span, matches as much: the nets share a subspace, not neurons);
//! 4. `learned` otherwise.

use serde::{Deserialize, Serialize};

/// Below this upper end of the interval of mms, a layer has no match to speak of.
pub const NONE_MMS: f64 = 0.05;

/// The verdict of a layer pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Above the untrained pair (whole interval) and above the rotation null: training made
    /// individual neurons match.
    Learned,
    /// Trained ≈ untrained within the interval: the match is there without learning.
    Given,
    /// Above the untrained pair but no more than a rotated basis gives: a shared subspace, not
    /// shared neurons.
    SubspaceOnly,
    /// No match (below [`NONE_MMS`]), or less than the untrained pair.
    None,
}

impl Verdict {
    /// The word written in tables and results.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Learned => "learned",
            Verdict::Given => "given",
            Verdict::SubspaceOnly => "subspace-only",
            Verdict::None => "none",
        }
    }
}

/// The verdict from its inputs (see the module docs): `m` the trained mms, `[lo, hi]` its
/// interval, `u` the untrained mms, `r` the rotation null's largest draw.
pub fn verdict(m: f64, lo: f64, hi: f64, u: f64, r: f64) -> Verdict {
    if hi < NONE_MMS || hi < u {
        Verdict::None
    } else if lo <= u {
        Verdict::Given
    } else if m <= r {
        Verdict::SubspaceOnly
    } else {
        Verdict::Learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule, and that moving each input across its threshold flips the word.
    #[test]
    fn each_word_and_each_input_flips_it() {
        // learned: interval well above the untrained pair, mms above the null.
        assert_eq!(verdict(0.8, 0.7, 0.9, 0.3, 0.5), Verdict::Learned);
        // m at or below the null's largest draw: subspace-only.
        assert_eq!(verdict(0.8, 0.7, 0.9, 0.3, 0.8), Verdict::SubspaceOnly);
        assert_eq!(verdict(0.8, 0.7, 0.9, 0.3, 0.79), Verdict::Learned);
        // lo down to u: given.
        assert_eq!(verdict(0.8, 0.3, 0.9, 0.3, 0.5), Verdict::Given);
        assert_eq!(verdict(0.8, 0.31, 0.9, 0.3, 0.5), Verdict::Learned);
        // u above hi: none.
        assert_eq!(verdict(0.8, 0.7, 0.9, 0.91, 0.5), Verdict::None);
        assert_eq!(verdict(0.8, 0.7, 0.9, 0.9, 0.5), Verdict::Given);
        // hi below NONE_MMS: none, whatever the controls.
        assert_eq!(verdict(0.04, 0.03, 0.049, 0.0, 0.0), Verdict::None);
        assert_eq!(verdict(0.05, 0.05, 0.05, 0.0, 0.0), Verdict::Learned);
        // Without a bootstrap (lo = hi = m).
        assert_eq!(verdict(0.5, 0.5, 0.5, 0.5, 0.0), Verdict::Given);
        assert_eq!(
            serde_json::to_string(&Verdict::SubspaceOnly).unwrap(),
            "\"subspace-only\""
        );
        assert_eq!(Verdict::SubspaceOnly.word(), "subspace-only");
    }
}
