//! The request attributes the Policy checker reads from a recorded Event: kube-apiserver's
//! `authorizer.Attributes` (user, verb, resource, namespace, name, non-resource path) as the
//! Event records them.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The Event fields the checker reads: kube-apiserver's request attributes, as the Event
/// records them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes<'a> {
    /// Recorded level.
    #[serde(borrow, default)]
    pub level: Option<Cow<'a, str>>,
    /// Stage.
    #[serde(borrow, default)]
    pub stage: Option<Cow<'a, str>>,
    /// Verb.
    #[serde(borrow, default)]
    pub verb: Option<Cow<'a, str>>,
    /// Request URI, query included.
    #[serde(borrow, default, rename = "requestURI")]
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
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
    /// Groups.
    #[serde(borrow, default)]
    pub groups: Vec<Cow<'a, str>>,
}

/// `objectRef` of an Event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    /// Resource.
    #[serde(borrow, default)]
    pub resource: Option<Cow<'a, str>>,
    /// Subresource.
    #[serde(borrow, default)]
    pub subresource: Option<Cow<'a, str>>,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// Object name.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// API group; absent for the core group.
    #[serde(borrow, default)]
    pub api_group: Option<Cow<'a, str>>,
}
