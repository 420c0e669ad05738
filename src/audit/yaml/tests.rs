//! Tests of the budgeted YAML loader: each budget refuses its attack quickly, merge keys
//! resolve as go-yaml resolves them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

type Doc = BTreeMap<String, serde_yaml_ng::Value>;

fn refused_quickly(doc: &str, want: &str) {
    let started = Instant::now();
    let err = from_str::<Doc>(doc).unwrap_err();
    assert!(err.0.contains(want), "{want:?} not in {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn alias_bombs_are_refused_by_node_count() {
    // Many alias jumps: the parser's own repetition limit refuses it.
    let mut doc = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_string();
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    assert!(doc.len() < 1000);
    refused_quickly(&doc, "repetition limit");
    // A large anchored list referenced through a few levels: few alias jumps, fifty million
    // nodes; the walk stops at the node budget.
    let mut doc = format!("a0: &a0 [{}]\n", vec!["x"; 5000].join(", "));
    for i in 1..5 {
        let prev = format!("*a{}", i - 1);
        doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    refused_quickly(&doc, "nodes");
}

#[test]
fn one_long_value_aliased_many_times_is_refused_by_bytes() {
    let mut doc = format!("a: &a {}\nb: [", "x".repeat(500_000));
    doc.push_str(&vec!["*a"; 100].join(", "));
    doc.push_str("]\n");
    refused_quickly(&doc, "bytes");
}

#[test]
fn deep_nesting_is_refused_quickly_in_every_style() {
    let n = 100_000;
    let flow = format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
    refused_quickly(&flow, "levels deep");
    let maps = format!("a: {}{}\n", "{b: ".repeat(n), "}".repeat(n));
    refused_quickly(&maps, "levels deep");
    // Block style, one level per `- `: the walk refuses it.
    let block = format!("a:\n  {}x\n", "- ".repeat(n));
    let started = Instant::now();
    assert!(from_str::<Doc>(&block).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Within the budget, nesting is fine.
    let ok = format!(
        "a: {}1{}\n",
        "[".repeat(MAX_NESTING - 1),
        "]".repeat(MAX_NESTING - 1)
    );
    assert!(from_str::<Doc>(&ok).is_ok());
}

#[test]
fn brackets_in_quotes_comments_and_words_are_not_nesting() {
    let doc = format!(
        "a: \"{0}\"\nb: '{0}'\n# {0}\nc: don't{0}\n",
        "[".repeat(200)
    );
    // The word with an apostrophe opens no quote; its brackets count, and stay unclosed.
    assert_eq!(flow_nesting(&doc), 200);
    let quoted = format!("a: \"{0}\" # {0}\nb: 'it''s {0}'\n", "[".repeat(200));
    assert_eq!(flow_nesting(&quoted), 0);
    assert!(from_str::<Doc>(&quoted).is_ok());
}

#[test]
fn the_document_size_is_bounded() {
    let doc = format!("a: {}\n", "x".repeat(MAX_DOCUMENT_BYTES));
    refused_quickly(&doc, "bytes, more than");
}

#[test]
fn merge_keys_resolve_as_go_yaml_does() {
    let doc = "\
base: &base {level: Metadata, verbs: [get], users: [a]}
other: &other {level: Request, namespaces: [x], users: [b]}
chained: &chained {<<: *base, users: [c]}
one: {<<: *base, level: None}
list: {<<: [*other, *base]}
deep: {<<: *chained}
";
    let value: Doc = from_str(doc).unwrap();
    let get = |k: &str| serde_json::to_value(&value[k]).unwrap();
    assert_eq!(
        get("one"),
        serde_json::json!({"level": "None", "verbs": ["get"], "users": ["a"]})
    );
    // An earlier mapping in the list wins over a later one.
    assert_eq!(
        get("list"),
        serde_json::json!({"level": "Request", "namespaces": ["x"], "users": ["b"], "verbs": ["get"]})
    );
    // A merged mapping's own merge key is resolved too.
    assert_eq!(
        get("deep"),
        serde_json::json!({"level": "Metadata", "verbs": ["get"], "users": ["c"]})
    );
    for k in ["one", "list", "deep", "chained"] {
        assert!(!get(k).to_string().contains("<<"), "{k}");
    }
}

#[test]
fn a_merge_of_a_scalar_is_refused() {
    let err = from_str::<Doc>("a: {<<: 3}\n").unwrap_err();
    assert!(err.0.contains("merge key"), "{err}");
    let err = from_str::<Doc>("a: {<<: [3]}\n").unwrap_err();
    assert!(err.0.contains("merge key"), "{err}");
}

#[test]
fn without_merge_keys_errors_keep_their_line() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        a: u32,
    }
    let err = from_str::<Strict>("\u{feff}a: 1\nb: 2\n").unwrap_err();
    assert!(
        err.0.contains("unknown field `b`") && err.0.contains("line 2"),
        "{err}"
    );
    // With a merge key, the typed parse runs on the merged document.
    let merged: Strict = from_str("<<: {a: 7}\n").unwrap();
    assert_eq!(merged.a, 7);
    let err = from_str::<Strict>("<<: {a: 7, c: 1}\n").unwrap_err();
    assert!(err.0.contains("unknown field `c`"), "{err}");
}
