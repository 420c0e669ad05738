//! YAML (and JSON) documents read within budgets, with merge keys resolved: the one loader
//! for the audit Policy, the routes document and any other YAML the forwarder reads.
//!
//! A YAML document can ask for far more work than its size: aliases of aliases expand
//! exponentially (the "billion laughs"; CVE-2019-11253 was this attack on kube-apiserver's
//! YAML loader) and deep flow nesting makes the parser's work grow with the square of the
//! depth. Before any typed parse, the text is checked against the budgets below, in bounded
//! time and memory:
//!
//! - at most [`MAX_DOCUMENT_BYTES`] bytes;
//! - at most [`MAX_NESTING`] levels of nesting (flow brackets are counted in the text before
//!   the parser sees it, then every level while walking the document);
//! - at most [`MAX_NODES`] nodes and [`MAX_EXPANDED_BYTES`] bytes of scalars with every
//!   alias expanded.
//!
//! Merge keys (`<<: *anchor`, `<<: [*a, *b]`) are resolved as kube-apiserver's YAML loader
//! (go-yaml, through sigs.k8s.io/yaml) resolves them: keys written in the mapping win over
//! merged ones, and in a list of merged mappings an earlier one wins over a later one.

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

/// Largest document read, in bytes (a few hundred routes or Policy rules fit in a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most YAML nodes a document may expand to, aliases followed: a document of aliases to
/// aliases is refused after this much work, in bounded memory.
pub const MAX_NODES: usize = 200_000;
/// Deepest nesting of collections accepted (real Policies and routes use fewer than 10).
pub const MAX_NESTING: usize = 64;
/// Most bytes of scalars a document may expand to, aliases followed: one long string
/// aliased many times is refused before it is copied.
pub const MAX_EXPANDED_BYTES: usize = 32 * MAX_DOCUMENT_BYTES;

/// Why a document was refused: the parser's message (which may quote a value of the
/// document: callers holding secrets scrub it) or the budget that was exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(pub String);

/// Reads one YAML or JSON document into `T` within the budgets, merge keys resolved. A
/// leading byte order mark is skipped.
///
/// # Errors
/// [`YamlError`] naming the exceeded budget, or the parser's message with its line where the
/// parser gives one (a document with merge keys is typed after merging, without lines).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_budgets(text)?;
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(message)?;
    if !resolve_merges(&mut value)? {
        // No merge key: the typed parse of the text itself gives errors with their line.
        return serde_yaml_ng::from_str(text).map_err(message);
    }
    serde_yaml_ng::from_value(value).map_err(message)
}

fn message(error: serde_yaml_ng::Error) -> YamlError {
    YamlError(error.to_string())
}

/// Checks size, nesting and expanded node count of every document in `text`.
///
/// # Errors
/// [`YamlError`] naming the budget exceeded, or the parser's message.
pub fn check_budgets(text: &str) -> Result<(), YamlError> {
    use serde::de::DeserializeSeed as _;
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(YamlError(format!(
            "the document is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
            text.len()
        )));
    }
    if flow_nesting(text) > MAX_NESTING {
        return Err(too_deep());
    }
    let spent = Spent::default();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        Budget {
            spent: &spent,
            depth: 0,
        }
        .deserialize(document)
        .map_err(message)?;
    }
    Ok(())
}

fn too_deep() -> YamlError {
    YamlError(format!(
        "the document nests collections more than {MAX_NESTING} levels deep"
    ))
}

/// The deepest nesting of flow brackets (`[`, `{`) outside quoted scalars and comments: an
/// upper bound of the flow depth the parser would see, found in one pass over the bytes. A
/// quote or comment counts only where YAML lets one start (after a separator).
fn flow_nesting(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    let starts_token = |i: usize| {
        i == 0
            || matches!(
                bytes[i - 1],
                b' ' | b'\t' | b'\r' | b'\n' | b'[' | b'{' | b',' | b':' | b'-' | b'?'
            )
    };
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
            }
            b'"' if starts_token(i) => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if starts_token(i) => {
                i += 1;
                // `''` inside a single-quoted scalar is an escaped quote.
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) != Some(&b'\'') {
                            break;
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Resolves every merge key in `value`, innermost anchors first; returns whether there was
/// one.
///
/// # Errors
/// When a merge key's value is not a mapping or a list of mappings.
fn resolve_merges(value: &mut Value) -> Result<bool, YamlError> {
    match value {
        Value::Mapping(mapping) => {
            let mut merged = false;
            for (_, v) in mapping.iter_mut() {
                merged |= resolve_merges(v)?;
            }
            let Some(mut merge) = mapping.remove("<<") else {
                return Ok(merged);
            };
            // The merged mappings' own merge keys first.
            resolve_merges(&mut merge)?;
            let sources = match merge {
                Value::Mapping(m) => vec![m],
                Value::Sequence(list) => list
                    .into_iter()
                    .map(|item| match item {
                        Value::Mapping(m) => Ok(m),
                        _ => Err(bad_merge()),
                    })
                    .collect::<Result<Vec<Mapping>, _>>()?,
                _ => return Err(bad_merge()),
            };
            for source in sources {
                for (k, v) in source {
                    mapping.entry(k).or_insert(v);
                }
            }
            Ok(true)
        }
        Value::Sequence(list) => {
            let mut merged = false;
            for item in list {
                merged |= resolve_merges(item)?;
            }
            Ok(merged)
        }
        Value::Tagged(tagged) => resolve_merges(&mut tagged.value),
        _ => Ok(false),
    }
}

fn bad_merge() -> YamlError {
    YamlError("a merge key (`<<`) must hold a mapping or a list of mappings".into())
}

/// Nodes and scalar bytes seen so far, aliases replayed.
#[derive(Default)]
struct Spent {
    nodes: std::cell::Cell<usize>,
    bytes: std::cell::Cell<usize>,
}

/// Counts nodes, scalar bytes (aliases replayed) and nesting while walking a document
/// without keeping it.
struct Budget<'a> {
    spent: &'a Spent,
    depth: usize,
}

impl<'a> Budget<'a> {
    fn bump<E: serde::de::Error>(&self) -> Result<(), E> {
        let nodes = self.spent.nodes.get() + 1;
        self.spent.nodes.set(nodes);
        if nodes > MAX_NODES {
            return Err(E::custom(format!(
                "the document expands to more than {MAX_NODES} nodes (YAML aliases?)"
            )));
        }
        Ok(())
    }

    fn scalar<E: serde::de::Error>(&self, len: usize) -> Result<(), E> {
        self.bump()?;
        let bytes = self.spent.bytes.get().saturating_add(len);
        self.spent.bytes.set(bytes);
        if bytes > MAX_EXPANDED_BYTES {
            return Err(E::custom(format!(
                "the document's values expand to more than {MAX_EXPANDED_BYTES} bytes (YAML aliases?)"
            )));
        }
        Ok(())
    }

    /// The budget of a collection's children, one level deeper.
    fn child<E: serde::de::Error>(&self) -> Result<Budget<'a>, E> {
        self.bump()?;
        if self.depth >= MAX_NESTING {
            return Err(E::custom(too_deep()));
        }
        Ok(Budget {
            spent: self.spent,
            depth: self.depth + 1,
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Budget<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Budget<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.bump()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.bump()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.bump()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.bump()
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v.len())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.bump()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.bump()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.bump()?;
        serde::de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.child()?;
        while seq
            .next_element_seed(Budget {
                spent: child.spent,
                depth: child.depth,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let child = self.child()?;
        let next = || Budget {
            spent: child.spent,
            depth: child.depth,
        };
        while map.next_key_seed(next())?.is_some() {
            map.next_value_seed(next())?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess as _;
        let child = self.child()?;
        let ((), variant) = data.variant_seed(Budget {
            spent: child.spent,
            depth: child.depth,
        })?;
        variant.newtype_variant_seed(child)
    }
}

#[cfg(test)]
mod tests;
