//! kube-apiserver's `RequestInfo`, derived from an Event's `requestURI` the way the request-info
//! resolver derives it from the request (k8s.io/apiserver
//! `pkg/endpoints/request/requestinfo.go`, `RequestInfoFactory.NewRequestInfo`).
//!
//! The Policy checker runs before the request does, on these attributes. Fields the Event
//! records later (`objectRef.name` of a `create`, filled in from the decoded body) are not
//! what the checker saw, so the Policy must not decide on them.
//!
//! The resolver reads the HTTP method, which an Event does not record; the recorded `verb`
//! stands in for it (`get`/`list`/`watch` were a GET, `create` a POST, `update` a PUT,
//! `patch` a PATCH, `delete`/`deletecollection` a DELETE).

use percent_encoding::percent_decode_str;

use super::list_options::ListQuery;

/// kube-apiserver's `RequestInfo` for one request: what the Policy checker matches on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the URL names an API resource (`/api/{version}/…`, `/apis/{group}/{version}/…`).
    pub is_resource_request: bool,
    /// The URL path, percent-decoded, without the query (what `nonResourceURLs` match).
    pub path: String,
    /// The verb the checker sees (`list`, `watch`, `deletecollection`, `proxy`, …).
    pub verb: String,
    /// API group; `""` is the core group.
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Namespace; `""` for cluster-scoped requests.
    pub namespace: String,
    /// Resource, e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `exec` of `pods/exec`.
    pub subresource: String,
    /// Object name; `""` when the URL names none (a `create`, a `list`).
    pub name: String,
}

/// The HTTP method behind a recorded verb, for the resolver's method switch.
fn method_of(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "get" | "list" | "watch" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => return None,
    })
}

/// Path segments of the decoded path (Go's `URL.Path`, decoded before it is split, so an
/// encoded `/` separates segments), without leading and trailing `/`.
fn split_path(path: &str) -> Vec<&str> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Vec::new();
    }
    path.split('/').collect()
}

/// Resolves `request_uri` (path and query, as `requestURI` records it) with the recorded verb
/// standing in for the HTTP method.
pub fn resolve(request_uri: &str, recorded_verb: &str) -> RequestInfo {
    let (raw_path, raw_query) = request_uri.split_once('?').unwrap_or((request_uri, ""));
    let raw_path = raw_path.split('#').next().unwrap_or("");
    let path = percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    // Start as a non-resource request until the URL proves otherwise.
    let mut info = RequestInfo {
        path,
        verb: recorded_verb.to_string(),
        ..RequestInfo::default()
    };

    let parts: Vec<String> = split_path(&info.path)
        .into_iter()
        .map(String::from)
        .collect();
    if parts.len() < 3 || !matches!(parts[0].as_str(), "api" | "apis") {
        return info;
    }
    let mut rest = &parts[1..];
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return info;
        }
        info.api_group = rest[0].clone();
        rest = &rest[1..];
    }
    info.is_resource_request = true;
    info.api_version = rest[0].clone();
    rest = &rest[1..];

    if matches!(rest[0].as_str(), "proxy" | "watch") {
        if rest.len() < 2 {
            return info;
        }
        info.verb = rest[0].clone();
        rest = &rest[1..];
    } else if let Some(method) = method_of(recorded_verb) {
        info.verb = match method {
            "GET" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            _ => "delete",
        }
        .to_string();
    }

    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = rest[1].clone();
        if rest.len() > 2 && !matches!(rest[2].as_str(), "status" | "finalize") {
            rest = &rest[2..];
        }
    }

    if rest.len() >= 3 && info.verb != "proxy" {
        info.subresource = rest[2].clone();
    }
    if rest.len() >= 2 {
        info.name = rest[1].clone();
    }
    if !rest.is_empty() {
        info.resource = rest[0].clone();
    }

    if info.name.is_empty() && info.verb == "get" {
        let query = ListQuery::parse(raw_query);
        info.verb = if query.watch { "watch" } else { "list" }.to_string();
        if let Some(name) = query.name {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_string();
    }
    info
}
