//! Settings refused at start-up for what they would do later: duplicate route names,
//! categories that match nothing, degenerate or overflowing durations and sizes, a user name
//! with a colon; no secret in any configuration error, whatever the fault; and what a
//! configuration without a webhook (a dry run) still checks.

use std::time::Duration;

use super::values::Lookup;
use super::vars::{self, def};
use super::{Config, ConfigError};

/// The marker every secret below holds.
const SECRET: &str = "S3CRET";

fn from_vars(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

const URL: (&str, &str) = (vars::WEBHOOK_URL, "http://127.0.0.1:7765/k8s_audit");

/// Issue row 1: two routes of one name would share what a failed try taught; refused naming
/// the setting, the name and both routes.
#[test]
fn duplicate_route_names_are_refused() {
    let doc = "routes:\n- name: x\n  match: {clusters: [a]}\n  webhook: {url: 'http://127.0.0.1:1/'}\n- name: y\n  drop: true\n- name: x\n  match: {clusters: [b]}\n  webhook: {url: 'http://127.0.0.1:2/'}\n";
    let err = from_vars(&[(vars::ROUTES, doc)]).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, ConfigError::Invalid { var, .. } if *var == vars::ROUTES),
        "{shown}"
    );
    assert!(
        shown.contains("routes[2] (x)") && shown.contains("routes[0]") && shown.contains("unique"),
        "{shown}"
    );
    let unique = doc.replacen(
        "- name: x\n  match: {clusters: [b]}",
        "- name: z\n  match: {clusters: [b]}",
        1,
    );
    assert_eq!(
        from_vars(&[(vars::ROUTES, &unique)])
            .unwrap()
            .forwarder
            .routes
            .len(),
        3
    );
}

/// Issue row 10: a category outside the fixed set stops start-up naming the variable, with
/// the category it resembles; the forms the parser always accepted still parse.
#[test]
fn categories_outside_the_fixed_set_are_refused() {
    for (value, hint) in [
        (
            "kube-audit;kube-audit-admin",
            "separate several with commas",
        ),
        ("kube_audit", "did you mean `kube-audit`?"),
        ("kube-audit-admn", "did you mean `kube-audit-admin`?"),
        ("kube-audit,guard", "`guard` is not one of"),
    ] {
        let err = from_vars(&[URL, (vars::CATEGORIES, value)]).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with(vars::CATEGORIES), "{value}: {shown}");
        assert!(shown.contains(hint), "{value}: {shown}");
    }
    for (value, want) in [
        ("Kube-Audit", &["kube-audit"][..]),
        (
            " kube-audit-admin , kube-audit ,",
            &["kube-audit", "kube-audit-admin"],
        ),
    ] {
        let config = from_vars(&[URL, (vars::CATEGORIES, value)]).unwrap();
        let got: Vec<&str> = config
            .forwarder
            .categories
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, want, "{value}");
    }
}

/// Issue row 19: durations too short to do their job (`1ns`) or too long to add to a clock,
/// and sizes too large, stop start-up naming the variable and the bound.
#[test]
fn degenerate_and_overflowing_durations_and_sizes_are_refused() {
    let spans = [
        &def::WEBHOOK_TIMEOUT,
        &def::DELIVERY_DEADLINE,
        &def::RETRY_INITIAL_BACKOFF,
        &def::RETRY_MAX_BACKOFF,
        &def::BODY_READ_TIMEOUT,
        &def::SHUTDOWN_GRACE,
    ];
    for s in spans {
        for (value, reason) in [("1ns", "at least"), ("400000000000y", "at most")] {
            let err = from_vars(&[URL, (s.name, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { var, reason: r, .. } if *var == s.name && r.contains(reason)),
                "{}={value}: {err}",
                s.name
            );
        }
        let at_min = super::values::show_duration(s.kind.min);
        let lookup = |name: &str| (name == s.name).then(|| at_min.clone());
        let get: Lookup<'_> = &lookup;
        assert_eq!(s.read(get).unwrap(), s.kind.min, "{}", s.name);
    }
    for s in [&def::BATCH_MAX_BYTES, &def::MAX_BODY_BYTES] {
        for value in ["3GiB", "9999999999PiB", "99999999999999999999999"] {
            let err = from_vars(&[URL, (s.name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(s.name), "{value}: {err}");
        }
    }
    let err = from_vars(&[URL, (vars::RETRY_INITIAL_BACKOFF, "1ns")]).unwrap_err();
    assert!(
        err.to_string().contains("tries a second"),
        "the reason is given: {err}"
    );
    // What the tests and the shipped examples use still passes.
    let config = from_vars(&[
        URL,
        (vars::RETRY_INITIAL_BACKOFF, "50ms"),
        (vars::RETRY_MAX_BACKOFF, "200ms"),
        (vars::WEBHOOK_TIMEOUT, "400ms"),
        (vars::DELIVERY_DEADLINE, "1500ms"),
    ])
    .unwrap();
    assert_eq!(
        config.forwarder.retry.initial_backoff,
        Duration::from_millis(50)
    );
}

/// Issue row 19: a Basic auth user name with a colon (RFC 7617 §2) is refused, in the
/// setting and in a route's `basicAuthSetting`, never showing the value.
#[test]
fn a_user_name_with_a_colon_is_refused() {
    let err = from_vars(&[
        URL,
        (vars::WEBHOOK_USERNAME, "svc:S3CRET"),
        (vars::WEBHOOK_PASSWORD, "pw"),
    ])
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(vars::WEBHOOK_USERNAME) && shown.contains("RFC 7617"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");
    let ok = from_vars(&[
        URL,
        (vars::WEBHOOK_USERNAME, "svc"),
        (vars::WEBHOOK_PASSWORD, "p:w"),
    ]);
    assert!(ok.is_ok(), "a colon in the password is allowed");
}

/// Every setting whose value may be or hold a credential, with values that make it (or the
/// configuration around it) fail in each way it can.
fn secret_cases() -> Vec<Vec<(&'static str, String)>> {
    let s = |text: &str| text.replace("SECRET", SECRET);
    let url = (
        vars::WEBHOOK_URL,
        "http://127.0.0.1:7765/k8s_audit".to_string(),
    );
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string();
    let doc = s("routes:\n- name: a\n  webhook: {url: 'https://u:SECRET@a/SECRET?sig=SECRET', headers: {X-K: SECRET}}\n");
    let mut cases: Vec<Vec<(&'static str, String)>> = vec![
        // Row 11: both set; the document holds a password, a signature and a header value.
        vec![url.clone(), (vars::ROUTES, doc.clone())],
        vec![(vars::WEBHOOK_URL, s("https://u:SECRET@h/SECRET?sig=SECRET")), (vars::ROUTES, doc.clone())],
        vec![(vars::ROUTES, s("{\"routes\":[{\"name\":\"a\",\"webhook\":{\"url\":\"http://a/?k=SECRET\",\"format\":\"xml\"}}]}"))],
        vec![(vars::ROUTES, format!("{doc}- name: a\n  drop: true\n"))],
        vec![(vars::ROUTES, s("routes:\n- name: a\n  webhook: {url: 'http://a/', insecureSkipVerify: SECRET}\n"))],
        vec![(vars::ROUTES, s("https://u:SECRET@host/routes.yaml"))],
        vec![(vars::ROUTES, s("routes:\n- name: a\n  webhook: {url: 'http://a/', bearerTokenSetting: TOK}\n")), ("TOK", s("SECRET SECRET"))],
        vec![(vars::ROUTES, s("routes:\n- name: a\n  webhook: {url: 'http://a/', basicAuthSetting: B}\n")), ("B", s("SECRET"))],
        vec![(vars::ROUTES, s("routes:\n- name: a\n  webhook: {url: 'http://a/', headers: {Host: SECRET}}\n"))],
        vec![(vars::WEBHOOK_URL, s("ftp://u:SECRET@h/SECRET?sig=SECRET"))],
        vec![(vars::WEBHOOK_URL, s("mailto:SECRET@h"))],
        vec![(vars::WEBHOOK_URL, s("http://u:SECRET@[::1"))],
        vec![(vars::WEBHOOK_URL, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_BEARER_TOKEN, s("SECRET SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_BEARER_TOKEN, s("SECRET")), (vars::WEBHOOK_USERNAME, s("SECRET")), (vars::WEBHOOK_PASSWORD, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_USERNAME, s("u:SECRET")), (vars::WEBHOOK_PASSWORD, "p".into())],
        vec![url.clone(), (vars::WEBHOOK_USERNAME, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_PASSWORD, s("SECRET\u{1}SECRET")), (vars::WEBHOOK_USERNAME, "u".into())],
        vec![url.clone(), (vars::WEBHOOK_PASSWORD, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_CA, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_CA, s("-----BEGIN CERTIFICATE-----\nSECRET\n-----END CERTIFICATE-----\n"))],
        vec![url.clone(), (vars::WEBHOOK_CLIENT_CERT, s("SECRET")), (vars::WEBHOOK_CLIENT_KEY, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_CLIENT_CERT, pem.clone()), (vars::WEBHOOK_CLIENT_KEY, s("SECRET"))],
        vec![url.clone(), (vars::WEBHOOK_CLIENT_CERT, pem), (vars::WEBHOOK_CLIENT_KEY, s("-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"))],
        vec![url.clone(), (vars::WEBHOOK_CLIENT_KEY, s("SECRET"))],
    ];
    // AUDIT_ALERTS: notifier URLs carry their credential in the path or the query.
    let alerts = "notifiers:\n- {name: n, type: teams, url: 'https://h/SECRET/x?sig=SECRET'}\nrules:\n- {name: r, notify: [n], match: {verbs: [patch]}}\n".to_string();
    for broken in [
        alerts.replace("notify: [n]", "notify: [m]"),
        alerts.replace("verbs: [patch]", "verbz: [patch]"),
        alerts.replace("type: teams", "type: SECRET"),
        alerts.replace("https://h/", "http://h/"),
        alerts.replace("'https://h/SECRET/x?sig=SECRET'", "[SECRET]"),
        alerts.replace("url: ", "urlSetting: U, url: "),
        "notifiers:\n- {name: n, type: slack, urlSetting: U}\nrules: []\n".to_string(),
        "https://u:SECRET@host/alerts.yaml".to_string(),
    ] {
        cases.push(vec![
            url.clone(),
            (vars::ALERTS, s(&broken)),
            ("U", s("https://h/SECRET")),
        ]);
    }
    cases.push(vec![url.clone(), (vars::ALERTS, s("notifiers:\n- {name: n, type: teams, urlSetting: U}\nrules:\n- {name: r, notify: [n], match: {}}\n")), ("U", s("not a url SECRET"))]);
    for headers in [
        "\"SECRET\"",
        "[\"SECRET\"]",
        "{\"X-K\":\"SECRET\"",
        "{\"X-K: SECRET\":\"v\"}",
        "{\"Authorization\":\"SECRET\"}",
        "{\"Content-Length\":\"SECRET\"}",
        "{\"X-K\":\"SECRET\\u0001\"}",
        "{\"X-K\":[\"SECRET\"]}",
        "X-K: SECRET",
    ] {
        cases.push(vec![url.clone(), (vars::WEBHOOK_HEADERS, s(headers))]);
    }
    cases
}

/// Issue row 11, as a kind of fault: feeds secrets into every setting that can carry one, in
/// every way it can fail, and finds them in no error (its text, its `Debug`). A new setting
/// declared as carrying a secret without a case here fails too.
#[test]
fn no_configuration_error_shows_a_secret() {
    let cases = secret_cases();
    for setting in vars::SETTINGS.iter().filter(|s| s.carries_secret()) {
        assert!(
            cases
                .iter()
                .any(|c| c.iter().any(|(n, _)| *n == setting.name())),
            "no case feeds a secret to {}",
            setting.name()
        );
    }
    for case in &cases {
        let pairs: Vec<(&str, &str)> = case.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let err = from_vars(&pairs).expect_err(&format!("{case:?} must be refused"));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(SECRET), "{case:?}: {shown}");
        // The variable at fault, or the one it needs (a password without a user name).
        assert!(
            shown.contains("AUDIT_"),
            "{case:?}: no variable named in {shown}"
        );
    }
}

/// `backfill --dry-run` sends nothing: [`super::Purpose::Count`] needs no webhook, and its
/// catch-all route goes to a name that never resolves; the other settings are still checked.
#[test]
fn counting_needs_no_webhook_but_checks_the_rest() {
    use super::{Purpose, NO_WEBHOOK};
    let read = |pairs: &[(&str, &str)], purpose| {
        Config::read(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            purpose,
        )
    };
    let config = read(&[], Purpose::Count).unwrap();
    let routes = &config.forwarder.routes;
    assert_eq!(routes.len(), 1);
    let url = &routes[0].destination.as_ref().unwrap().url;
    assert_eq!(url.as_str(), NO_WEBHOOK);
    assert_eq!(
        read(&[], Purpose::Deliver).unwrap_err(),
        ConfigError::Missing {
            var: vars::WEBHOOK_URL
        }
    );
    let err = read(&[(vars::WEBHOOK_CA, "missing.pem")], Purpose::Count).unwrap_err();
    assert!(err.to_string().starts_with(vars::WEBHOOK_CA), "{err}");
    let config = read(&[URL], Purpose::Count).unwrap();
    let url = &config.forwarder.routes[0].destination.as_ref().unwrap().url;
    assert_eq!(url.as_str(), URL.1, "a configured webhook is kept");
}
