//! The request-info resolver, checked against the rows of kube-apiserver's own tables
//! (k8s.io/apiserver `pkg/endpoints/request/requestinfo_test.go`: `TestGetAPIRequestInfo`,
//! `TestGetNonAPIRequestInfo`, `TestFieldSelectorParsing`).

use super::requestinfo::{resolve, RequestInfo};

/// The verb an Event records for a request with this HTTP method, before the resolver tells
/// `get` from `list`/`watch` and `delete` from `deletecollection`.
fn method_verb(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// One row: method, URL, verb, group, version, namespace, resource, subresource, name.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// `TestGetAPIRequestInfo`'s success cases.
#[rustfmt::skip]
const API_CASES: &[Row] = &[
    // resource paths
    ("GET", "/api/v1/namespaces", "list", "", "v1", "", "namespaces", "", ""),
    ("GET", "/api/v1/namespaces/other", "get", "", "v1", "other", "namespaces", "", "other"),
    ("GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""),
    // special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "", "v1", "other", "pods", "", "foo"),
    ("GET", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=true", "watch", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/pods?watch=false", "list", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "", "v1", "other", "pods", "", ""),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "", "v1", "other", "pods", "", ""),
    // subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "", "v1", "other", "pods", "status", "foo"),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "", "v1", "other", "pods", "proxy", "foo"),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "", "v1", "other", "namespaces", "finalize", "other"),
    ("PUT", "/api/v1/namespaces/other/status", "update", "", "v1", "other", "namespaces", "status", "other"),
    // verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "", "v1", "other", "pods", "", "foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "", "v1", "other", "pods", "", "foo"),
    ("POST", "/api/v1/namespaces/other/pods", "create", "", "v1", "other", "pods", "", ""),
    // deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection", "", "v1", "", "nodes", "", ""),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "", "v1", "", "namespaces", "", ""),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "", "v1", "other", "pods", "", ""),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "extensions", "v1", "other", "pods", "", ""),
    // api group and version identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "extensions", "v1", "other", "pods", "", ""),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "extensions", "v1beta3", "other", "pods", "", ""),
    // not in the upstream table: what AKS records for `kubectl exec` (kubectl 1.30+ over
    // WebSocket), and a percent-encoded name
    ("GET", "/api/v1/namespaces/shop/pods/web/exec?command=sh&stdin=true", "get", "", "v1", "shop", "pods", "exec", "web"),
    ("GET", "/api/v1/namespaces/shop/services/https:web:443/proxy/metrics", "get", "", "v1", "shop", "services", "proxy", "https:web:443"),
    ("GET", "/api/v1/namespaces/shop/configmaps/a%2Eb", "get", "", "v1", "shop", "configmaps", "", "a.b"),
    // A namespace is inside itself, whatever the verb (server-side apply creating it too):
    // the resolver has no case for PATCH.
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "", "v1", "new-namespace", "namespaces", "", "new-namespace"),
    ("DELETE", "/api/v1/namespaces/old", "delete", "", "v1", "old", "namespaces", "", "old"),
    // Go decodes the whole path before splitting it (`URL.Path`), so an encoded `/` splits
    // segments: this reads Secret `db`, not a resource named `secrets/db`.
    ("GET", "/api/v1/namespaces/kube-system/secrets%2Fdb", "get", "", "v1", "kube-system", "secrets", "", "db"),
    ("GET", "/api/v1/namespaces%2Fkube-system%2Fsecrets", "list", "", "v1", "kube-system", "secrets", "", ""),
];

#[test]
fn resolves_resource_requests_like_get_api_request_info() {
    for &(method, url, verb, group, version, namespace, resource, subresource, name) in API_CASES {
        let got = resolve(url, method_verb(method));
        let want = RequestInfo {
            is_resource_request: true,
            path: got.path.clone(),
            verb: verb.into(),
            api_group: group.into(),
            api_version: version.into(),
            namespace: namespace.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
        };
        assert_eq!(got, want, "{method} {url}");
        // The recorded verb, already resolved, resolves to itself.
        assert_eq!(resolve(url, verb).verb, verb, "{url} recorded as {verb}");
    }
}

/// `TestGetAPIRequestInfo`'s error cases and `TestGetNonAPIRequestInfo`.
#[test]
fn tells_resource_from_non_resource_requests_like_get_non_api_request_info() {
    let cases = [
        ("/api/version/resource", true),
        ("/apis/group/version/resource/name/subresource", true),
        ("/api/version/resource/name/subresource", true),
        ("/apis/batch/v1/job", true),
        ("/apis/batch/v1/job/foo", true),
        ("/apis/batch/v1/job/foo/scale", true),
        ("/not-api/version/resource", false),
        ("/apis/extensions/v1beta1", false),
        ("/apis/extensions/v1beta1/", false),
        ("/api/version", false),
        ("/api", false),
        ("/", false),
        ("", false),
        ("/api/version/", false),
        ("/apis/group/version/", false),
        ("/badprefix/version/resource", false),
        ("/apis/version/resource", false),
        ("/healthz?verbose=1", false),
    ];
    for (url, resource) in cases {
        let got = resolve(url, "get");
        assert_eq!(got.is_resource_request, resource, "{url}");
        if !resource {
            assert_eq!(
                got.verb, "get",
                "non-resource requests keep their verb: {url}"
            );
            assert_eq!(got.path, url.split('?').next().unwrap(), "{url}");
        }
    }
}

/// `TestFieldSelectorParsing`: a `metadata.name` field selector names the object of a list
/// or watch; an invalid selector names nothing.
#[test]
fn field_selector_names_the_object_like_field_selector_parsing() {
    let cases = [
        ("/apis/group/version/resource", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
        ("/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch"),
        ("/apis/group/version/resource?fieldSelector=foo=bar", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list"),
        // URL-encoded, as clients send it
        ("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dapp-config&watch=true", "app-config", "watch"),
    ];
    for (url, name, verb) in cases {
        let got = resolve(url, "get");
        assert_eq!(
            (got.name.as_str(), got.verb.as_str()),
            (name, verb),
            "{url}"
        );
    }
}

/// `?watch=` as the parameter codec reads it (apimachinery `runtime.Convert_Slice_string_To_bool`:
/// only `0` and `false` in any case are false), and the query as Go's `url.ParseQuery` reads
/// it: a pair with `;` or a bad escape is skipped, `+` is a space.
#[test]
fn watch_parameter_reads_like_convert_slice_string_to_bool() {
    let cases = [
        ("?watch=f", "watch"),
        ("?watch=F", "watch"),
        ("?watch=no", "watch"),
        ("?watch=", "watch"),
        ("?watch", "watch"),
        ("?watch=FALSE", "list"),
        ("?watch=False", "list"),
        ("?watch=0", "list"),
        ("?watch=0&watch=1", "list"),
        ("?watch=1;x=y", "list"),
        ("?watch=1%zz", "list"),
        ("?wat%63h=1", "watch"),
    ];
    for (query, verb) in cases {
        let url = format!("/api/v1/namespaces/shop/pods{query}");
        assert_eq!(resolve(&url, "get").verb, verb, "{url}");
    }
}

/// The name a field selector pins, as `fields.ParseSelector` and `RequiresExactMatch` read it
/// (apimachinery `pkg/fields/selector.go`): terms split on unescaped `,` and sorted, the first
/// `metadata.name` term wins, no spaces trimmed, `\,` `\=` `\\` unescaped, an unescaped
/// `=` in a value or a bad escape makes the selector invalid. And as the resolver reads it: any
/// list option the parameter codec cannot decode (`limit=x`) leaves the request unnamed.
#[test]
fn field_selector_names_like_fields_parse_selector_and_the_parameter_codec() {
    let base = "/api/v1/namespaces/shop/configmaps?fieldSelector=";
    let cases = [
        ("metadata.name=b,metadata.name=a", "a"),
        ("metadata.name=a,metadata.name=b", "a"),
        ("spec.x=1,metadata.name=a", "a"),
        ("metadata.name%20=a", ""),
        ("metadata.name=%20a", " a"),
        ("metadata.name=a%5C,b", "a,b"),
        ("metadata.name=a=b", ""),
        ("metadata.name=a%5Cq", ""),
        ("metadata.name=a%5C", ""),
        ("metadata.name!=a", ""),
        ("metadata.name=a%2Fb", ""),
        ("metadata.name==a", "a"),
        ("metadata.name=a,,", "a"),
        ("metadata.name=a&limit=x", ""),
        ("metadata.name=a&limit=10", "a"),
        ("metadata.name=a&timeoutSeconds=1.5", ""),
        ("metadata.name=a&limit=", ""),
    ];
    for (selector, name) in cases {
        let url = format!("{base}{selector}");
        let got = resolve(&url, "get");
        assert_eq!(
            (got.name.as_str(), got.verb.as_str()),
            (name, "list"),
            "{url}"
        );
    }
    // A codec failure still reads `watch` as the fallback does.
    let got = resolve(&format!("{base}metadata.name=a&limit=x&watch=1"), "get");
    assert_eq!((got.name.as_str(), got.verb.as_str()), ("", "watch"));
}
