//! The numbers each measure reports, by name: which field of
//! [`Measures`](spanmatch_core::measures::Measures) belongs to which [`Measure`], whether a larger
//! value means more similar, whether it changes when a layer's neurons are rotated, and how the
//! tables head it. The controls of the measures (bootstrap intervals, rotation null, untrained
//! baseline) and the tables are driven by this one list.

use spanmatch_core::measures::{Measure, Measures};

/// What a larger value of a number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A similarity: larger = more alike.
    Similarity,
    /// A distance: smaller = more alike (0 = the same up to the measure's invariances).
    Distance,
}

/// One number reported by a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its key in a layer record's `measures` (and in `intervals`, `null.measures`, ...).
    pub name: &'static str,
    /// The measure that computes it.
    pub measure: Measure,
    /// Similarity or distance.
    pub direction: Direction,
    /// Its label in the text tables.
    pub label: &'static str,
    /// Whether the measures table has a column for it (the others are in the JSON only).
    pub column: bool,
}

const fn field(
    name: &'static str,
    measure: Measure,
    direction: Direction,
    label: &'static str,
    column: bool,
) -> Field {
    Field {
        name,
        measure,
        direction,
        label,
        column,
    }
}

use Direction::{Distance, Similarity};

/// Every scalar number of every measure, in the order of [`Measure::ALL`]. Parameters
/// (`predictivity_alpha`, `shape_alpha`), lists (`cca_rho`, ranks, dimensions) and the
/// neuron-level output are not in it, nor the flattened view's CKA (`compare --view flatten`),
/// which has no controls.
pub const FIELDS: [Field; 18] = [
    field("cka_linear", Measure::Cka, Similarity, "CKA", true),
    field(
        "cka_linear_debiased",
        Measure::Cka,
        Similarity,
        "CKA debiased",
        true,
    ),
    field("cca_mean_rho", Measure::Cca, Similarity, "CCA mean ρ", true),
    field("cca_r2", Measure::Cca, Similarity, "R²CCA", true),
    field(
        "cca_r2_uncentred",
        Measure::Cca,
        Similarity,
        "R²CCA uncentred",
        false,
    ),
    field("svcca", Measure::Svcca, Similarity, "SVCCA", true),
    field("pwcca", Measure::Pwcca, Similarity, "PWCCA", true),
    field(
        "procrustes",
        Measure::Procrustes,
        Distance,
        "Procrustes dist.",
        true,
    ),
    field(
        "procrustes_angular",
        Measure::Procrustes,
        Distance,
        "Procrustes angle",
        false,
    ),
    field(
        "one_to_one",
        Measure::OneToOne,
        Similarity,
        "1:1 corr.",
        true,
    ),
    field(
        "semi_match",
        Measure::OneToOne,
        Similarity,
        "semi-match",
        true,
    ),
    field(
        "soft_match",
        Measure::SoftMatch,
        Distance,
        "soft match dist.",
        true,
    ),
    field(
        "soft_match_correlation",
        Measure::SoftMatch,
        Similarity,
        "soft match corr.",
        false,
    ),
    field(
        "perm_procrustes",
        Measure::PermProcrustes,
        Distance,
        "perm. Procrustes",
        true,
    ),
    field(
        "perm_procrustes_angular",
        Measure::PermProcrustes,
        Distance,
        "perm. Procrustes angle",
        false,
    ),
    field(
        "predictivity_ab",
        Measure::Predictivity,
        Similarity,
        "R² A→B",
        true,
    ),
    field(
        "predictivity_ba",
        Measure::Predictivity,
        Similarity,
        "R² B→A",
        true,
    ),
    field("shape", Measure::Shape, Distance, "shape dist.", true),
];

fn channel_fields() -> std::slice::Iter<'static, Field> {
    FIELDS.iter()
}

/// The scalar fields of `measure`, in order.
pub fn fields_of(measure: Measure) -> impl Iterator<Item = &'static Field> {
    channel_fields().filter(move |f| f.measure == measure)
}

/// The scalar fields of the measures in `which`, in the order of [`FIELDS`].
pub fn fields_for(which: &[Measure]) -> Vec<&'static Field> {
    channel_fields()
        .filter(|f| which.contains(&f.measure))
        .collect()
}

/// The field called `name`, when there is one.
pub fn field_named(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Whether `measure` is unchanged when either layer's neurons are rotated (an orthogonal
/// change of basis). The neuron-matching measures (one-to-one and semi-matching, soft matching,
/// permutation Procrustes) are not: they compare individual neurons. Neither is PWCCA, whose
/// weights are sums over the individual neurons of its narrower side. Every other measure
/// depends on the layers only through their spans and inner products (docs/controls.md), so a
/// rotation null of it would return the observed value at every draw.
pub fn rotation_invariant(measure: Measure) -> bool {
    !matches!(
        measure,
        Measure::OneToOne | Measure::SoftMatch | Measure::PermProcrustes | Measure::Pwcca
    )
}

/// Whether `measure` changes when net B's layer (of `n2` neurons, net A's of `n1`) is rotated,
/// as the rotation null does: the measures that are not [`rotation_invariant`], PWCCA only when
/// B is its weighted side (`n2 < n1`; on a tie PWCCA weights A's neurons, and a rotation of B
/// leaves A's canonical variates unchanged).
pub fn depends_on_b_basis(measure: Measure, n1: usize, n2: usize) -> bool {
    match measure {
        Measure::Pwcca => n2 < n1,
        m => !rotation_invariant(m),
    }
}

/// The value of the field `name` of `m`, when it is one of [`FIELDS`] and defined.
pub fn value(m: &Measures, name: &str) -> Option<f64> {
    match name {
        "cka_linear" => m.cka_linear,
        "cka_linear_debiased" => m.cka_linear_debiased,
        "cca_mean_rho" => m.cca_mean_rho,
        "cca_r2" => m.cca_r2,
        "cca_r2_uncentred" => m.cca_r2_uncentred,
        "svcca" => m.svcca,
        "pwcca" => m.pwcca,
        "procrustes" => m.procrustes,
        "procrustes_angular" => m.procrustes_angular,
        "one_to_one" => m.one_to_one,
        "semi_match" => m.semi_match,
        "soft_match" => m.soft_match,
        "soft_match_correlation" => m.soft_match_correlation,
        "perm_procrustes" => m.perm_procrustes,
        "perm_procrustes_angular" => m.perm_procrustes_angular,
        "predictivity_ab" => m.predictivity_ab,
        "predictivity_ba" => m.predictivity_ba,
        "shape" => m.shape,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_has_fields_and_every_field_reads_its_value() {
        for m in Measure::ALL {
            assert!(fields_of(m).next().is_some(), "{m}");
        }
        // Each channel field reads the value serde writes under its name.
        let mut x = Measures::default();
        let all: Vec<&Field> = channel_fields().collect();
        for (i, f) in all.iter().enumerate() {
            let json = serde_json::json!({ f.name: i as f64 + 0.5 });
            x = serde_json::from_value(json).unwrap();
            assert_eq!(value(&x, f.name), Some(i as f64 + 0.5), "{}", f.name);
        }
        assert_eq!(value(&x, "notes"), None);
        assert_eq!(fields_for(&[Measure::Shape, Measure::Cka]).len(), 3);
        assert!(rotation_invariant(Measure::Cka) && !rotation_invariant(Measure::OneToOne));
        assert_eq!(
            field_named("soft_match").map(|f| f.direction),
            Some(Distance)
        );
    }
}
