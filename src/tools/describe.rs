//! One line per audit Event, for the receiver, the demo and `convert`'s summary: the columns an
//! operator scans (stage, verb, resource, namespace/name, user, response code).

use serde_json::Value;

/// `stage verb resource namespace/name user code`, one line, in the columns of
/// [`DESCRIBE_HEADER`].
pub fn describe(event: &Value) -> String {
    let [stage, verb, resource, target, user, code] = columns(event);
    format!("{stage:<16} {verb:<7} {resource:<20} {target:<36} {user:<58} {code}")
}

/// The six columns of [`describe`], unpadded: stage, verb, resource (with its subresource),
/// `namespace/name` (the request URI when the Event names no object), user name and response
/// code; `-` stands for a missing string.
pub fn columns(event: &Value) -> [String; 6] {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let obj = &event["objectRef"];
    let mut resource = s(&obj["resource"]);
    if let Some(sub) = obj["subresource"].as_str() {
        resource = format!("{resource}/{sub}");
    }
    let target = match (obj["namespace"].as_str(), obj["name"].as_str()) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        (Some(ns), None) => format!("{ns}/*"),
        (None, None) => s(&event["requestURI"]),
    };
    [
        s(&event["stage"]),
        s(&event["verb"]),
        resource,
        target,
        s(&event["user"]["username"]),
        event["responseStatus"]["code"].to_string(),
    ]
}

/// The column headers of [`describe`].
pub const DESCRIBE_HEADER: &str = "STAGE            VERB    RESOURCE             NAMESPACE/NAME                       USER                                                       CODE";
