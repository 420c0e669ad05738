//! `omitManagedFields`: `metadata.managedFields` removed from a request or response object,
//! from each item of a list, and from the object of each row of a `Table` (kube-apiserver's
//! `removeManagedFields`, k8s.io/apiserver `pkg/audit/request.go`, handles the same three
//! shapes). Every other byte is kept.

use serde_json::value::RawValue;

use crate::audit::jsonedit::{members, rewrite, Edit, Members};

/// `metadata.managedFields` removed from an object, from each item of a list, or from each
/// `rows[*].object` of a Table. `None` when there is nothing to remove (or the value is not an
/// object, e.g. AKS's size placeholder).
pub(super) fn strip_managed_fields(value: &RawValue) -> Option<String> {
    let Members(entries) = members(value.get()).ok()?;
    let mut replacements: Vec<(usize, String)> = Vec::new();
    for (i, (key, raw)) in entries.iter().enumerate() {
        let new = match key.as_ref() {
            "metadata" => drop_member(raw, "managedFields"),
            "items" => map_array(raw, strip_managed_fields),
            "rows" => map_array(raw, strip_row),
            _ => None,
        };
        if let Some(new) = new {
            replacements.push((i, new));
        }
    }
    if replacements.is_empty() {
        return None;
    }
    replace_members(value, &replacements)
}

/// A Table row: `{"cells": […], "object": {…}}`.
fn strip_row(row: &RawValue) -> Option<String> {
    let Members(entries) = members(row.get()).ok()?;
    let (index, object) = entries
        .iter()
        .enumerate()
        .find(|(_, (k, _))| k == "object")
        .map(|(i, (_, v))| (i, *v))?;
    let new = strip_managed_fields(object)?;
    replace_members(row, &[(index, new)])
}

/// Each element of a JSON array through `f`; `None` when `f` changed none.
fn map_array(raw: &RawValue, f: fn(&RawValue) -> Option<String>) -> Option<String> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
    let mut any = false;
    let texts: Vec<String> = items
        .iter()
        .map(|item| match f(item) {
            Some(new) => {
                any = true;
                new
            }
            None => item.get().to_string(),
        })
        .collect();
    any.then(|| format!("[{}]", texts.join(",")))
}

/// The object with the members at these positions given new values.
fn replace_members(object: &RawValue, replacements: &[(usize, String)]) -> Option<String> {
    let mut index = 0;
    rewrite(
        object.get(),
        |_, _| {
            let here = index;
            index += 1;
            match replacements.iter().find(|(i, _)| *i == here) {
                Some((_, new)) => Edit::Replace(new.clone()),
                None => Edit::Keep,
            }
        },
        &[],
    )
    .ok()
}

fn drop_member(object: &RawValue, name: &str) -> Option<String> {
    let Members(entries) = members(object.get()).ok()?;
    if !entries.iter().any(|(k, _)| k == name) {
        return None;
    }
    rewrite(
        object.get(),
        |k, _| if k == name { Edit::Drop } else { Edit::Keep },
        &[],
    )
    .ok()
}
