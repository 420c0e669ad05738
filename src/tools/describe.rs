//! One line per audit Event, for the receiver, the demo and `convert`'s summary: the columns an
//! operator scans (stage, verb, resource, namespace/name, user, response code).

use serde_json::Value;

/// `stage verb resource namespace/name user code`, one line, in the columns of
/// [`DESCRIBE_HEADER`].
pub fn describe(event: &Value) -> String {
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
    format!(
        "{:<16} {:<7} {:<20} {:<36} {:<58} {}",
        s(&event["stage"]),
        s(&event["verb"]),
        resource,
        target,
        s(&event["user"]["username"]),
        event["responseStatus"]["code"]
    )
}

/// The column headers of [`describe`].
pub const DESCRIBE_HEADER: &str = "STAGE            VERB    RESOURCE             NAMESPACE/NAME                       USER                                                       CODE";
