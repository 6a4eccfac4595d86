//! `spanmatch simple --witness`: the simple matches of given neurons equal the full search's
//! for those neurons; unknown neurons are clear errors.

mod common;

use common::{fail, ok};
use serde_json::Value;
use std::path::Path;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (a, b, witnesses) of each match in a `simple --json` document.
fn matches(v: &Value) -> Vec<(Value, Value, Vec<String>)> {
    v["simple_matches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let w = m["witnesses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect();
            (m["a"].clone(), m["b"].clone(), w)
        })
        .collect()
}

#[test]
fn witness_matches_are_the_full_search_restricted() {
    let dir = common::scratch("spanmatch-simple-witness", "restricted");
    let d = dir.to_string_lossy().into_owned();
    ok(&["example", "--out", &d]);
    let (a, b) = (format!("{d}/net_a.npz"), format!("{d}/net_b.npz"));
    let (full_json, w_json) = (format!("{d}/full.json"), format!("{d}/w.json"));
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["simple", &a, &b, "--layer", "fc1", "--eps", "0.5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| -> String {
        let v = args(extra);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&["--json", &full_json]);
    let full = json(Path::new(&full_json));
    let all = matches(&full);
    assert!(all.len() >= 2, "{full}");
    // Ask about the first witness of two different matches, and a neuron of B.
    let w1 = all[0].2[0].to_lowercase();
    let w2 = all[all.len() - 1].2[0].to_lowercase();
    let asked = format!("{}:{},{}:{}", &w1[..1], &w1[1..], &w2[..1], &w2[1..]);
    let text = run(&["--witness", &asked, "--json", &w_json]);
    assert!(
        text.contains("only (the full search restricted to them)"),
        "{text}"
    );
    let got = json(Path::new(&w_json));
    assert_eq!(
        got["witnesses_asked"].as_array().map(Vec::len),
        Some(2),
        "{got}"
    );
    let expect: Vec<(Value, Value, Vec<String>)> = all
        .iter()
        .filter_map(|(a, b, w)| {
            let w: Vec<String> = w
                .iter()
                .filter(|x| x.to_lowercase() == w1 || x.to_lowercase() == w2)
                .cloned()
                .collect();
            (!w.is_empty()).then(|| (a.clone(), b.clone(), w))
        })
        .collect();
    let mut found = matches(&got);
    let mut expect = expect;
    found.sort_by_key(|m| format!("{m:?}"));
    expect.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(found, expect);
}

#[test]
fn unknown_witness_neurons_are_clear_errors() {
    let dir = common::scratch("spanmatch-simple-witness", "errors");
    let d = dir.to_string_lossy().into_owned();
    ok(&["example", "--out", &d]);
    let (a, b) = (format!("{d}/net_a.npz"), format!("{d}/net_b.npz"));
    let with = |w: &str| -> String {
        fail(&[
            "simple",
            &a,
            &b,
            "--layer",
            "fc1",
            "--eps",
            "0.5",
            "--witness",
            w,
        ])
    };
    let err = with("a:100000");
    assert!(
        err.contains("neuron index 100000 is out of range for side A"),
        "{err}"
    );
    let err = with("c:1");
    assert!(err.contains("'c:1' is not a neuron"), "{err}");
    let err = with("b:x");
    assert!(err.contains("'b:x' is not a neuron"), "{err}");
}
