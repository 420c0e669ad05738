//! The request attributes the Policy checker reads from a recorded Event: kube-apiserver's
//! `authorizer.Attributes` (user, verb, resource, namespace, name, non-resource path), taken
//! from `requestURI` as the request-info resolver takes them and from the recorded `user`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::requestinfo::{resolve, RequestInfo};
use crate::audit::text::{list_or_null, optional};

/// The Event fields the checker reads: kube-apiserver's request attributes, as the Event
/// records them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes<'a> {
    /// Recorded level.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub level: Option<Cow<'a, str>>,
    /// Stage.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub stage: Option<Cow<'a, str>>,
    /// Verb.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub verb: Option<Cow<'a, str>>,
    /// Request URI, query included.
    #[serde(borrow, default, rename = "requestURI", deserialize_with = "optional")]
    pub request_uri: Option<Cow<'a, str>>,
    /// The authenticated user (the checker runs before impersonation).
    #[serde(borrow, default)]
    pub user: Option<User<'a>>,
    /// Present for resource requests.
    #[serde(borrow, default)]
    pub object_ref: Option<ObjectRef<'a>>,
    /// The request body, when recorded.
    #[serde(borrow, default)]
    pub request_object: Option<&'a RawValue>,
    /// The response body, when recorded.
    #[serde(borrow, default)]
    pub response_object: Option<&'a RawValue>,
}

/// `user` of an Event.
#[derive(Debug, Default, Deserialize)]
pub struct User<'a> {
    /// User name.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub username: Option<Cow<'a, str>>,
    /// Groups; `null` reads as none, as Go's `encoding/json` reads it (kube-apiserver decodes
    /// with it).
    #[serde(borrow, default, deserialize_with = "list_or_null")]
    pub groups: Vec<Cow<'a, str>>,
}

/// `objectRef` of an Event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    /// Resource.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub resource: Option<Cow<'a, str>>,
    /// Subresource.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub subresource: Option<Cow<'a, str>>,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub namespace: Option<Cow<'a, str>>,
    /// Object name.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub name: Option<Cow<'a, str>>,
    /// API group; absent for the core group.
    #[serde(borrow, default, deserialize_with = "optional")]
    pub api_group: Option<Cow<'a, str>>,
}

impl Attributes<'_> {
    /// What the checker matches on: the `RequestInfo` kube-apiserver derived from the URL
    /// before the request ran. The recorded `objectRef` is used only when the Event has no
    /// `requestURI` (the URL then says nothing); the recorded `verb` stands in for the HTTP
    /// method, which Events do not record.
    pub fn request_info(&self) -> RequestInfo {
        request_info_of(
            self.verb.as_deref(),
            self.request_uri.as_deref(),
            self.object_ref.as_ref(),
        )
    }
}

/// The `RequestInfo` of a recorded request from its `verb`, `requestURI` and `objectRef`, as
/// [`Attributes::request_info`] derives it: from the URL, or from the recorded `objectRef`
/// only when the Event has no `requestURI`. Alert rules decide on the same value.
pub fn request_info_of(
    verb: Option<&str>,
    request_uri: Option<&str>,
    object_ref: Option<&ObjectRef<'_>>,
) -> RequestInfo {
    let verb = verb.unwrap_or("");
    match request_uri {
        Some(uri) if !uri.trim().is_empty() => resolve(uri.trim(), verb),
        _ => {
            let text = |v: &Option<Cow<'_, str>>| v.as_deref().unwrap_or("").to_string();
            match object_ref {
                Some(o) => RequestInfo {
                    is_resource_request: true,
                    verb: verb.to_string(),
                    api_group: text(&o.api_group),
                    namespace: text(&o.namespace),
                    resource: text(&o.resource),
                    subresource: text(&o.subresource),
                    name: text(&o.name),
                    ..RequestInfo::default()
                },
                None => RequestInfo {
                    verb: verb.to_string(),
                    ..RequestInfo::default()
                },
            }
        }
    }
}
