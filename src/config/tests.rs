//! Start-up validation: each setting's default, units, and the error naming each bad variable.

use super::*;
use crate::audit::WebhookFormat;
use std::collections::HashMap;
use std::time::Duration;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

const URL: (&str, &str) = (vars::WEBHOOK_URL, "http://127.0.0.1:7765/k8s_audit");

fn format_of(c: &Config) -> WebhookFormat {
    c.forwarder.routes[0].destination.as_ref().unwrap().format
}

/// Only the webhook URL is required; everything else has the documented default.
#[test]
fn defaults() {
    let c = config(&[URL]).unwrap();
    assert_eq!(format_of(&c), WebhookFormat::EventList);
    assert_eq!(c.forwarder.routes.len(), 1);
    assert!(c.forwarder.policy.is_none());
    assert!(c.forwarder.cluster_annotations);
    assert_eq!(
        c.forwarder.categories.iter().collect::<Vec<_>>(),
        ["kube-audit", "kube-audit-admin"]
    );
    assert_eq!(c.forwarder.batch_max_events, 400);
    assert_eq!(c.forwarder.batch_max_bytes, 10 * 1024 * 1024);
    assert_eq!(c.forwarder.retry.attempt_timeout, Duration::from_secs(30));
    assert_eq!(c.forwarder.delivery_deadline, Duration::from_secs(120));
    assert_eq!(c.forwarder.concurrency, 4);
    assert_eq!(c.host.max_body_bytes, 256 * 1024 * 1024);
}

#[test]
fn missing_url_names_the_variable() {
    let err = config(&[]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Missing {
            var: "AUDIT_WEBHOOK_URL"
        }
    );
    assert_eq!(err.to_string(), "AUDIT_WEBHOOK_URL is required but not set");
}

#[test]
fn blank_values_count_as_unset() {
    let c = config(&[URL, (vars::WEBHOOK_FORMAT, "  ")]).unwrap();
    assert_eq!(format_of(&c), WebhookFormat::EventList);
}

#[test]
fn each_invalid_value_names_its_variable() {
    let cases: &[(&str, &str)] = &[
        (vars::WEBHOOK_FORMAT, "xml"),
        (vars::CATEGORIES, " , "),
        (vars::BATCH_MAX_EVENTS, "0"),
        (vars::BATCH_MAX_EVENTS, "many"),
        (vars::BATCH_MAX_BYTES, "12"),
        (vars::BATCH_MAX_BYTES, "ten megs"),
        (vars::WEBHOOK_TIMEOUT, "30"),
        (vars::WEBHOOK_TIMEOUT, "0s"),
        (vars::DELIVERY_DEADLINE, "soon"),
        (vars::WEBHOOK_CONCURRENCY, "65"),
        (vars::RETRY_INITIAL_BACKOFF, "-1s"),
        (vars::MAX_BODY_BYTES, "1KiB"),
        (vars::CLUSTER_ANNOTATIONS, "maybe"),
        (vars::POLICY, "kind: Policy"),
        (vars::POLICY_FILE, "/nonexistent/policy.yaml"),
        (vars::ROUTES, "/nonexistent/routes.yaml"),
    ];
    for (var, value) in cases {
        let err = config(&[URL, (var, value)]).unwrap_err();
        match &err {
            ConfigError::Invalid { var: got, .. } => assert_eq!(got, var, "{value}"),
            other => panic!("{var}={value}: unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with(var), "{err}");
    }
}

/// A policy file is found relative to the app root, and a bad one names file and line.
#[test]
fn policy_file_relative_to_app_root() {
    let dir = std::env::temp_dir().join(format!("aaf-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.yaml"),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
    )
    .unwrap();
    let root = dir.to_str().unwrap();
    let c = config(&[
        URL,
        ("FUNCTIONS_APP_ROOT_PATH", root),
        (vars::POLICY_FILE, "good.yaml"),
    ])
    .unwrap();
    assert!(c.forwarder.policy.is_some());
    let err = config(&[
        URL,
        ("FUNCTIONS_APP_ROOT_PATH", root),
        (vars::POLICY_FILE, "bad.yaml"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("AUDIT_POLICY_FILE=\"bad.yaml\" is invalid"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: ") && err.contains("line 4"),
        "{err}"
    );
    let err = config(&[URL, (vars::POLICY_FILE, "a"), (vars::POLICY, "b")]).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn routes_replace_the_single_url() {
    let dir = std::env::temp_dir().join(format!("aaf-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("routes.yaml"),
        "routes:\n- name: all\n  webhook: {url: 'http://127.0.0.1:1/'}\n",
    )
    .unwrap();
    let root = dir.to_str().unwrap();
    let c = config(&[
        ("FUNCTIONS_APP_ROOT_PATH", root),
        (vars::ROUTES, "routes.yaml"),
    ])
    .unwrap();
    assert_eq!(c.forwarder.routes[0].name, "all");
    let err = config(&[
        URL,
        ("FUNCTIONS_APP_ROOT_PATH", root),
        (vars::ROUTES, "routes.yaml"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn backoff_cap_must_not_be_below_initial() {
    let err = config(&[
        URL,
        (vars::RETRY_INITIAL_BACKOFF, "10s"),
        (vars::RETRY_MAX_BACKOFF, "1s"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("AUDIT_RETRY_MAX_BACKOFF"), "{err}");
}

#[test]
fn parses_units() {
    let c = config(&[
        URL,
        (vars::WEBHOOK_FORMAT, "Event"),
        (vars::BATCH_MAX_BYTES, "512KiB"),
        (vars::WEBHOOK_TIMEOUT, "500ms"),
        (vars::DELIVERY_DEADLINE, "2m"),
        (vars::CATEGORIES, "Kube-Audit-Admin"),
    ])
    .unwrap();
    assert_eq!(format_of(&c), WebhookFormat::Event);
    assert_eq!(c.forwarder.batch_max_bytes, 512 * 1024);
    assert_eq!(
        c.forwarder.retry.attempt_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(c.forwarder.delivery_deadline, Duration::from_secs(120));
    assert_eq!(
        c.forwarder.categories.iter().collect::<Vec<_>>(),
        ["kube-audit-admin"]
    );
}

#[test]
fn url_must_be_http_with_host() {
    for bad in ["ftp://x/y", "not a url", "http://"] {
        let err = config(&[(vars::WEBHOOK_URL, bad)]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: "AUDIT_WEBHOOK_URL",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
}

/// A password in the webhook URL must not leak through errors or `Debug`.
#[test]
fn url_credentials_never_shown() {
    let secret = "s3cr3t-pa55";
    let c = config(&[(
        vars::WEBHOOK_URL,
        "https://user:s3cr3t-pa55@audit.example:8443/k8s_audit?token=s3cr3t-pa55",
    )])
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("audit.example"), "{shown}");

    let c = config(&[URL, (vars::WEBHOOK_BEARER_TOKEN, secret)]).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(secret), "{shown}");

    let err = config(&[(vars::WEBHOOK_URL, "ftp://user:s3cr3t-pa55@h/")]).unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    let err = config(&[(vars::WEBHOOK_URL, "http://user:s3cr3t-pa55@[::1")]).unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
}

fn from_vars(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// The issue's three misspellings: each refuses start-up, naming the variable and the
/// setting it most resembles.
#[test]
fn misspelled_settings_refuse_start_up_naming_the_closest_setting() {
    let cases = [
        ("AUDIT_WEBHOOK_CA_FILE", "/path/ca.pem", vars::WEBHOOK_CA),
        ("AUDIT_WEBHOK_TIMEOUT", "banana", vars::WEBHOOK_TIMEOUT),
        ("AUDIT_BATCH_MAX_EVENT", "0", vars::BATCH_MAX_EVENTS),
    ];
    for (name, value, closest) in cases {
        let err = from_vars(&[URL, (name, value), ("PATH", "/usr/bin")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Unknown {
                name: name.into(),
                suggestion: Some(closest)
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("did you mean `{closest}`?")),
            "{text}"
        );
        assert!(!text.contains(value), "{text}");
    }
    // A misspelled URL is named, rather than "AUDIT_WEBHOOK_URL is required".
    let err = from_vars(&[("AUDIT_WEBHOOK_ULR", "http://127.0.0.1:1/")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean `AUDIT_WEBHOOK_URL`?"),
        "{err}"
    );
    // Every known setting, and variables outside AUDIT_*, are accepted.
    assert!(from_vars(&[URL, (vars::CATEGORIES, "kube-audit"), ("HOME", "/root")]).is_ok());
}

/// A variable a route names for its secret may be any name, AUDIT_* included.
#[test]
fn variables_named_by_routes_are_known() {
    let routes = "routes:\n- name: all\n  webhook:\n    url: 'http://127.0.0.1:1/'\n    bearerTokenSetting: AUDIT_PROD_TOKEN\n";
    assert!(from_vars(&[(vars::ROUTES, routes), ("AUDIT_PROD_TOKEN", "t0ken")]).is_ok());
    let err = from_vars(&[
        (vars::ROUTES, routes),
        ("AUDIT_PROD_TOKEN", "t0ken"),
        ("AUDIT_OTHER_TOKEN", "x"),
    ])
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::Unknown { ref name, .. } if name == "AUDIT_OTHER_TOKEN"),
        "{err}"
    );
}

/// A setting still holding `@Microsoft.KeyVault(…)` (App Service could not resolve it) stops
/// start-up naming the variable, never showing the value.
#[test]
fn unresolved_key_vault_references_refuse_start_up() {
    let reference = "@Microsoft.KeyVault(SecretUri=https://kv-audit.vault.azure.net/secrets/hook/)";
    let err = from_vars(&[(vars::WEBHOOK_URL, reference)]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::UnresolvedKeyVaultReference {
            var: vars::WEBHOOK_URL.into()
        }
    );
    assert!(!err.to_string().contains("kv-audit"), "{err}");
    // Also in a variable a route names.
    let routes = "routes:\n- name: all\n  webhook:\n    url: 'http://127.0.0.1:1/'\n    bearerTokenSetting: PROD_TOKEN\n";
    let err = from_vars(&[(vars::ROUTES, routes), ("PROD_TOKEN", reference)]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::UnresolvedKeyVaultReference {
            var: "PROD_TOKEN".into()
        }
    );
}

/// The delivery deadline must end before the host's `functionTimeout` (host.json in the app
/// root; the shipped 10 minutes when there is none).
#[test]
fn delivery_deadline_at_or_above_the_function_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let with = |deadline: &str| {
        config(&[
            URL,
            ("FUNCTIONS_APP_ROOT_PATH", &root),
            (vars::DELIVERY_DEADLINE, deadline),
        ])
    };
    // No host.json: 10 minutes.
    let err = with("10m").unwrap_err().to_string();
    assert!(
        err.contains("AUDIT_DELIVERY_DEADLINE") && err.contains("10m"),
        "{err}"
    );
    assert!(err.contains("no host.json"), "{err}");
    assert!(with("9m").is_ok());

    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version":"2.0","functionTimeout":"00:05:00"}"#,
    )
    .unwrap();
    let err = with("5m").unwrap_err().to_string();
    assert!(
        err.contains("functionTimeout in") && err.contains("5m"),
        "{err}"
    );
    assert!(with("4m 59s").is_ok());

    std::fs::write(dir.path().join("host.json"), r#"{"functionTimeout":"-1"}"#).unwrap();
    assert!(with("1h").is_ok());

    std::fs::write(
        dir.path().join("host.json"),
        r#"{"functionTimeout":"ten minutes"}"#,
    )
    .unwrap();
    assert!(with("1m").unwrap_err().to_string().contains("time span"));
}

/// A Policy with no rules is refused at start-up naming the setting it came from, as
/// kube-apiserver refuses it ("loaded illegal policy with 0 rules").
#[test]
fn a_policy_with_no_rules_is_refused_naming_the_setting() {
    let inline = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n";
    match config(&[URL, (vars::POLICY, inline)]).unwrap_err() {
        ConfigError::Invalid { var, reason, .. } => {
            assert_eq!(var, vars::POLICY);
            assert!(reason.contains("0 rules"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "\u{feff}apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let err = config(&[
        URL,
        ("FUNCTIONS_APP_ROOT_PATH", root),
        (vars::POLICY_FILE, "p.yaml"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("AUDIT_POLICY_FILE=") && err.contains("0 rules"),
        "{err}"
    );
}

/// Every duration has an upper bound; an absurd value stops start-up naming its variable
/// (it used to be accepted and made every invocation panic).
#[test]
fn durations_over_their_bound_are_refused() {
    for var in [
        vars::DELIVERY_DEADLINE,
        vars::WEBHOOK_TIMEOUT,
        vars::RETRY_INITIAL_BACKOFF,
        vars::RETRY_MAX_BACKOFF,
        vars::BODY_READ_TIMEOUT,
        vars::SHUTDOWN_GRACE,
    ] {
        let err = config(&[URL, (var, "400000000000y")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { var: v, reason, .. } if *v == var && reason.contains("at most")),
            "{var}: {err}"
        );
    }
    let c = config(&[URL, (vars::DELIVERY_DEADLINE, "9m")]).unwrap();
    assert_eq!(c.forwarder.delivery_deadline, Duration::from_secs(540));
    assert_eq!(c.forwarder.isolate_after_retries, 2);
    let c = config(&[URL, (vars::ISOLATE_AFTER_RETRIES, "0")]).unwrap();
    assert_eq!(c.forwarder.isolate_after_retries, 0);
}

/// A bearer token with a trailing newline is trimmed; one with a line break inside is
/// refused naming the variable, never showing the token.
#[test]
fn bearer_token_is_trimmed_or_refused_by_name() {
    let c = config(&[URL, (vars::WEBHOOK_BEARER_TOKEN, "t0k3n-abc\n")]).unwrap();
    let headers = c.forwarder.routes[0]
        .destination
        .as_ref()
        .unwrap()
        .client
        .request_headers();
    assert_eq!(headers[0].1.to_str().unwrap(), "Bearer t0k3n-abc");
    let err = config(&[URL, (vars::WEBHOOK_BEARER_TOKEN, "t0k\n3n-abc")]).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains(vars::WEBHOOK_BEARER_TOKEN), "{shown}");
    assert!(!shown.contains("3n-abc"), "{shown}");
}

/// A client key that is not a file (a bare base64 key, a quoted PEM with a BOM) is never
/// echoed, nor turned into a path.
#[test]
fn client_key_values_are_never_echoed() {
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for key in [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-k3y",
        "\u{feff}\"MIIEv-k3y\"",
    ] {
        for (var, value) in [
            (vars::WEBHOOK_CLIENT_KEY, key),
            (vars::WEBHOOK_CA, key),
            (vars::WEBHOOK_CLIENT_CERT, key),
        ] {
            let mut pairs = vec![URL, (var, value)];
            if var == vars::WEBHOOK_CLIENT_KEY {
                pairs.push((vars::WEBHOOK_CLIENT_CERT, cert));
            } else if var == vars::WEBHOOK_CLIENT_CERT {
                pairs.push((vars::WEBHOOK_CLIENT_KEY, key));
            }
            let shown = config(&pairs).unwrap_err().to_string();
            assert!(!shown.contains("k3y"), "{var}: {shown}");
        }
    }
}

/// An inline routes document with a BOM or `---` is read as a document, and its errors show
/// no secret.
#[test]
fn inline_routes_with_bom_or_marker_never_print_secrets() {
    let doc = "\u{feff}---\nroutes:\n- name: a\n  webhook: {url: 'https://u:pa55@a/?sig=s1g', format: xml, headers: {X-K: h3ader}}\n";
    let shown = config(&[(vars::ROUTES, doc)]).unwrap_err().to_string();
    assert!(shown.contains("format"), "{shown}");
    for secret in ["pa55", "s1g", "h3ader"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let ok = "\u{feff}---\nroutes:\n- name: a\n  webhook: {url: 'http://a/'}\n";
    assert_eq!(
        config(&[(vars::ROUTES, ok)])
            .unwrap()
            .forwarder
            .routes
            .len(),
        1
    );
}
