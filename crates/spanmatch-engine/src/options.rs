//! The one options object of an analysis: what every front asks the engine to compute for a
//! layer pair once its statistics are known.
//!
//! [`Options`] is serialisable (`serde`), every field has a default, and unknown fields are
//! rejected, so the same object travels unchanged from the command line (built from its flags),
//! from Python (`spanmatch.Options`, sent to the bindings as JSON) and into every results file
//! (`"options"`). Adding a control means adding a field here, with its default and its check in
//! [`Options::validate`]; no front signature changes.
//!
//! Settings of the data rather than of the analysis (array layout, rows per block, the sampled
//! protocol, the flattened view, which layers, labels) stay with the fronts: see
//! [`crate::CompareOptions`].

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use spanmatch_core::measures::Measure;
use spanmatch_core::simple::SimpleOptions;
use spanmatch_core::{DeadPolicy, MatchOptions, Tolerances};

/// The ε values used when none are given: those of the paper's figures.
pub const DEFAULT_EPS: [f64; 5] = [0.15, 0.2, 0.25, 0.3, 0.5];
/// The ε of the table's interval, control and verdict columns when it is among the ε values
/// (otherwise the largest of them).
pub const DEFAULT_MAIN_EPS: f64 = 0.5;
/// Rotations of the neuron-basis null when none are given.
pub const DEFAULT_NULL_DRAWS: usize = 10;
/// Chunks of the bootstrap when none are given.
pub const DEFAULT_CHUNKS: usize = 20;
/// Resamples of the bootstrap in `reproduce` (the fronts have no bootstrap by default).
pub const DEFAULT_RESAMPLES: usize = 200;

/// What to do with dead (all-zero) neurons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dead {
    /// Leave them out of every match, count them in mms's denominator (the reference code).
    #[default]
    Drop,
    /// The literal definition: a zero vector is in every span, so dead neurons are in every
    /// maximum match.
    Match,
}

impl Dead {
    /// The name used in options and results (`"drop"`, `"match"`).
    pub fn name(self) -> &'static str {
        match self {
            Dead::Drop => "drop",
            Dead::Match => "match",
        }
    }
}

impl From<Dead> for DeadPolicy {
    fn from(d: Dead) -> Self {
        match d {
            Dead::Drop => DeadPolicy::Drop,
            Dead::Match => DeadPolicy::Match,
        }
    }
}

/// Reads a name among `choices` (`(name, value)`); otherwise an error in the words of `what`.
fn named<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    choices: &[(&str, T)],
    what: &str,
) -> Result<T, D::Error> {
    let name = String::deserialize(d)?;
    choices
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| serde::de::Error::custom(format!("'{name}' is not {what}")))
}

impl<'de> Deserialize<'de> for Dead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named(
            d,
            &[("drop", Dead::Drop), ("match", Dead::Match)],
            "a policy; use 'drop' (leave dead neurons out of matches, count them in mms) or \
             'match' (literal definition)",
        )
    }
}

/// Kinds of null control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NullKind {
    /// The neuron-basis null: net B's layer rotated by Haar-random orthogonal matrices (same
    /// span, no neuron basis).
    Rotate,
}

impl<'de> Deserialize<'de> for NullKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named(
            d,
            &[("rotate", NullKind::Rotate)],
            "a control; use 'rotate' (the neuron-basis null) or null/None",
        )
    }
}

/// Pooling of a layer's positions or tokens into one row per input (used by the fronts that
/// capture activations, e.g. the PyTorch front).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Mean over positions.
    Mean,
    /// Maximum over positions.
    Max,
}

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named(
            d,
            &[("mean", Pool::Mean), ("max", Pool::Max)],
            "a pooling; use 'mean', 'max' or null/None (every position a row)",
        )
    }
}

/// Neurons whose simple matches are wanted (instead of one per neuron of the maximum match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Witnesses {
    /// Neurons of net A.
    pub a: Vec<usize>,
    /// Neurons of net B.
    pub b: Vec<usize>,
}

/// Everything an analysis of layer pairs is asked to compute. See the module docs; the JSON
/// form is documented in docs/results-schema.md (`options`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The ε values, each in [0, 1]: the largest sine allowed between a neuron's activation
    /// vector and the other net's span. Every per-ε list of a result follows this order.
    pub eps: Vec<f64>,
    /// The ε of the table's interval, control and verdict columns; one of `eps`. `None`:
    /// [`DEFAULT_MAIN_EPS`] when it is in `eps`, else the largest ε.
    pub main_eps: Option<f64>,
    /// Dead-neuron policy.
    pub dead: Dead,
    /// Sine tolerance: sines at or below it count as 0 (`None`: the core's default, 1e-6).
    pub tol: Option<f64>,
    /// Basis-invariant measures computed from the same statistics (`"match"` is accepted in
    /// lists and ignored: the match is always computed).
    #[serde(
        serialize_with = "serialize_measures",
        deserialize_with = "deserialize_measures"
    )]
    pub measures: Vec<Measure>,
    /// Also the match of the mean-centred activations (exact from the same statistics).
    pub center: bool,
    /// The null control, when wanted.
    pub null: Option<NullKind>,
    /// Rotations of the null.
    pub null_draws: usize,
    /// Seed of the null's rotations (`None`: `seed`).
    pub null_seed: Option<u64>,
    /// Bootstrap resamples over chunks of the inputs, when wanted.
    pub bootstrap: Option<usize>,
    /// Chunks of consecutive inputs for the bootstrap.
    pub chunks: usize,
    /// Seed of the bootstrap resampling (`None`: `seed`).
    pub bootstrap_seed: Option<u64>,
    /// ε of the simple matches of every layer pair, when wanted.
    pub simple: Option<f64>,
    /// Seeded random neuron orders tried by the simple matches besides the deterministic one.
    pub orders: usize,
    /// Seed of those orders (`None`: `seed`).
    pub simple_seed: Option<u64>,
    /// Neurons whose simple matches are wanted (targeted queries); `None`: every neuron of the
    /// maximum match.
    pub witnesses: Option<Witnesses>,
    /// Inputs kept per neuron by the fronts that track what neurons respond to (0: none).
    pub top_inputs: usize,
    /// Pooling of positions/tokens into one row per input, for the fronts that capture
    /// activations (`None`: every position is a row).
    pub pool: Option<Pool>,
    /// The seed of every random choice whose own seed is not given.
    pub seed: u64,
    /// Also sample each ε-profile on a 0.01 grid (`profile` of each layer record).
    pub curve: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            eps: DEFAULT_EPS.to_vec(),
            main_eps: None,
            dead: Dead::Drop,
            tol: None,
            measures: vec![Measure::Cka],
            center: true,
            null: None,
            null_draws: DEFAULT_NULL_DRAWS,
            null_seed: None,
            bootstrap: None,
            chunks: DEFAULT_CHUNKS,
            bootstrap_seed: None,
            simple: None,
            orders: 0,
            simple_seed: None,
            witnesses: None,
            top_inputs: 0,
            pool: None,
            seed: 0,
            curve: false,
        }
    }
}

/// The names of the option fields, in declaration order (for messages).
pub const OPTION_NAMES: [&str; 20] = [
    "eps",
    "main_eps",
    "dead",
    "tol",
    "measures",
    "center",
    "null",
    "null_draws",
    "null_seed",
    "bootstrap",
    "chunks",
    "bootstrap_seed",
    "simple",
    "orders",
    "simple_seed",
    "witnesses",
    "top_inputs",
    "pool",
    "seed",
    "curve",
];

/// The measure names accepted in lists, in words (for messages): `match` and every
/// [`Measure::NAMES`].
pub fn measure_names() -> String {
    std::iter::once("match")
        .chain(Measure::NAMES)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses measure names: `match` (always computed, skipped) and the names of [`Measure`];
/// `arg` names the argument in the message. Duplicates are dropped.
pub fn parse_measures<S: AsRef<str>>(names: &[S], arg: &str) -> Result<Vec<Measure>> {
    let mut out = Vec::new();
    for name in names {
        let key = name.as_ref().trim();
        if key.eq_ignore_ascii_case("match") || key.is_empty() {
            continue;
        }
        match key.parse::<Measure>() {
            Ok(m) if !out.contains(&m) => out.push(m),
            Ok(_) => {}
            Err(_) => bail!(
                "{arg}: unknown measure '{}'; valid names: {}",
                name.as_ref(),
                measure_names()
            ),
        }
    }
    Ok(out)
}

fn serialize_measures<S: Serializer>(m: &[Measure], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|m| m.name()))
}

fn deserialize_measures<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Measure>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    parse_measures(&names, "measures").map_err(|e| serde::de::Error::custom(format!("{e:#}")))
}

/// Checks a list of ε values; `arg` names the argument in the message (`--eps`, `eps`).
pub fn check_eps(eps: &[f64], arg: &str) -> Result<()> {
    if eps.is_empty() {
        bail!("{arg}: give at least one value of ε in [0, 1]");
    }
    for &e in eps {
        if !(0.0..=1.0).contains(&e) {
            bail!(
                "{arg}: ε = {e} is outside [0, 1]; ε is the sine of the largest angle allowed \
                 between a neuron's activation vector and the other net's span"
            );
        }
    }
    Ok(())
}

/// The tolerances of a run: the defaults, with `sine` as the sine tolerance when given; `arg`
/// names the argument in the message.
pub fn tolerances(sine: Option<f64>, arg: &str) -> Result<Tolerances> {
    let mut t = Tolerances::default();
    if let Some(s) = sine {
        t.sine = s;
    }
    t.validate().with_context(|| arg.to_string())?;
    Ok(t)
}

impl Options {
    /// Reads options from JSON (an object whose fields are those of [`Options`], any subset);
    /// an unknown field is an error that names it and lists the valid ones.
    pub fn from_json(text: &str) -> Result<Options> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("options: not JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            bail!("options: expected a JSON object of option fields, got {value}");
        };
        // Field by field first, so that a message names the option at fault.
        for (key, v) in &map {
            if !OPTION_NAMES.contains(&key.as_str()) {
                bail!(
                    "unknown option '{key}'; valid options: {}",
                    OPTION_NAMES.join(", ")
                );
            }
            let one = serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<Options>(one) {
                let msg = e.to_string();
                // Our own messages already name the option.
                if msg.starts_with(&format!("{key}:")) {
                    bail!("{msg}");
                }
                bail!("{key}: {msg}");
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).context("options")
    }

    /// Checks every option; messages name the option as the fronts call it: field names
    /// (`eps`, `null_draws`, as in Python and JSON).
    pub fn validate(&self) -> Result<()> {
        self.validate_named(&|f| f.to_string())
    }

    /// [`Options::validate`], with the option named by `name(field)` in messages (the command
    /// line passes `--eps`, `--null-draws`, ...).
    pub fn validate_named(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        check_eps(&self.eps, &name("eps"))?;
        if let Some(m) = self.main_eps {
            if !self.eps.contains(&m) {
                bail!(
                    "{}: ε = {m} is not one of the ε values {:?}; the main ε must be one of them",
                    name("main_eps"),
                    self.eps
                );
            }
        }
        tolerances(self.tol, &name("tol"))?;
        if self.null.is_some() && self.null_draws == 0 {
            bail!("{} must be at least 1", name("null_draws"));
        }
        if self.bootstrap == Some(0) {
            bail!("{} must be at least 1 resample", name("bootstrap"));
        }
        if self.bootstrap.is_some() && self.chunks == 0 {
            bail!("{} must be at least 1", name("chunks"));
        }
        if let Some(e) = self.simple {
            if !(0.0..=1.0).contains(&e) {
                bail!(
                    "{}: ε = {e} is outside [0, 1] (ε is the sine of an angle)",
                    name("simple")
                );
            }
        }
        if self.witnesses.is_some() && self.simple.is_none() {
            bail!(
                "{} needs {} (the ε of the simple matches)",
                name("witnesses"),
                name("simple")
            );
        }
        Ok(())
    }

    /// The matching options (tolerances and dead policy).
    pub fn matching(&self) -> Result<MatchOptions> {
        Ok(MatchOptions {
            tol: tolerances(self.tol, "tol")?,
            dead: self.dead.into(),
        })
    }

    /// The main ε: `main_eps`, else [`DEFAULT_MAIN_EPS`] when it is in `eps`, else the largest
    /// ε (`None` when `eps` is empty).
    pub fn main_eps(&self) -> Option<f64> {
        if let Some(m) = self.main_eps {
            return Some(m);
        }
        if self.eps.contains(&DEFAULT_MAIN_EPS) {
            return Some(DEFAULT_MAIN_EPS);
        }
        self.eps.iter().copied().reduce(f64::max)
    }

    /// Position of the main ε in `eps`.
    pub fn main_index(&self) -> Option<usize> {
        let m = self.main_eps()?;
        self.eps.iter().position(|&e| e == m)
    }

    /// Seed of the null's rotations.
    pub fn null_seed(&self) -> u64 {
        self.null_seed.unwrap_or(self.seed)
    }

    /// Seed of the bootstrap.
    pub fn bootstrap_seed(&self) -> u64 {
        self.bootstrap_seed.unwrap_or(self.seed)
    }

    /// Seed of the simple matches' random orders.
    pub fn simple_seed(&self) -> u64 {
        self.simple_seed.unwrap_or(self.seed)
    }

    /// The core's options of the simple matches, when wanted.
    pub fn simple_options(&self) -> Option<SimpleOptions> {
        self.simple.map(|eps| SimpleOptions {
            eps,
            orders: self.orders,
            seed: self.simple_seed(),
        })
    }

    /// The options of the untrained baseline pair analysed beside a trained pair: the same
    /// match, measures, centring and bootstrap, without simple matches, null or curve.
    pub fn for_baseline(&self) -> Options {
        Options {
            simple: None,
            witnesses: None,
            null: None,
            curve: false,
            ..self.clone()
        }
    }

    /// The measure names as written in results (`"match"` first).
    pub fn measure_list(&self) -> Vec<&'static str> {
        std::iter::once("match")
            .chain(
                Measure::ALL
                    .into_iter()
                    .filter(|m| self.measures.contains(m))
                    .map(Measure::name),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_centre_by_default() {
        let o = Options::default();
        assert!(o.center);
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(Options::from_json(&text).unwrap(), o);
        assert_eq!(Options::from_json("{}").unwrap(), o);
        // Every field name is listed for messages, in order.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = OPTION_NAMES.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_options_and_bad_values_name_the_option() {
        let e = Options::from_json(r#"{"eps": [0.5], "null_drawz": 3}"#).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("unknown option 'null_drawz'") && m.contains("null_draws"),
            "{m}"
        );
        let e = Options::from_json(r#"{"dead": "keep"}"#).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("dead: 'keep' is not a policy"),
            "{e:#}"
        );
        let e = Options::from_json(r#"{"null_draws": -1}"#).unwrap_err();
        assert!(format!("{e:#}").starts_with("null_draws: "), "{e:#}");
        let e = Options::from_json(r#"{"measures": ["cka", "foo"]}"#).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("unknown measure 'foo'"), "{m}");
        let o = Options::from_json(r#"{"measures": ["match", "cca", "cka", "cca"]}"#).unwrap();
        assert_eq!(o.measures, vec![Measure::Cca, Measure::Cka]);
        assert_eq!(o.measure_list(), vec!["match", "cka", "cca"]);
        for (bad, want) in [
            (r#"{"eps": []}"#, "eps: give at least one"),
            (r#"{"eps": [0.2, 1.5]}"#, "eps: ε = 1.5 is outside"),
            (r#"{"main_eps": 0.7}"#, "main_eps: ε = 0.7 is not one of"),
            (r#"{"tol": 0.5}"#, "tol"),
            (
                r#"{"null": "rotate", "null_draws": 0}"#,
                "null_draws must be",
            ),
            (r#"{"bootstrap": 0}"#, "bootstrap must be at least 1"),
            (r#"{"bootstrap": 5, "chunks": 0}"#, "chunks must be"),
            (r#"{"simple": 1.5}"#, "simple: ε = 1.5"),
            (r#"{"simple": -0.1}"#, "simple: ε = -0.1"),
            (r#"{"witnesses": {"a": [1]}}"#, "witnesses needs simple"),
        ] {
            let o = Options::from_json(bad).unwrap();
            let m = format!("{:#}", o.validate().unwrap_err());
            assert!(m.contains(want), "{bad}: {m}");
        }
        let o = Options::from_json(r#"{"bootstrap": 0}"#).unwrap();
        let m = format!(
            "{:#}",
            o.validate_named(&|f| format!("--{}", f.replace('_', "-")))
                .unwrap_err()
        );
        assert!(m.starts_with("--bootstrap must be"), "{m}");
        assert!(Options::from_json(r#"{"null": "shuffle"}"#).is_err());
        assert!(Options::from_json(r#"{"pool": "median"}"#).is_err());
    }

    #[test]
    fn main_eps_and_seeds() {
        let mut o = Options::default();
        assert_eq!(o.main_eps(), Some(0.5));
        assert_eq!(o.main_index(), Some(4));
        o.eps = vec![0.1, 0.3, 0.2];
        assert_eq!(o.main_eps(), Some(0.3));
        assert_eq!(o.main_index(), Some(1));
        o.main_eps = Some(0.2);
        assert_eq!(o.main_index(), Some(2));
        o.seed = 7;
        o.null_seed = Some(3);
        assert_eq!(
            (o.null_seed(), o.bootstrap_seed(), o.simple_seed()),
            (3, 7, 7)
        );
        let b = o.for_baseline();
        assert!(b.simple.is_none() && b.null.is_none() && b.center);
    }
}
