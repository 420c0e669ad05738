//! Start-up with bad settings, as a user meets it: the real binary exits non-zero and says
//! which variable and why, with no backtrace.

use crate::helpers::*;

fn start(settings: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("RUST_BACKTRACE", "1");
    for (key, value) in settings {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `AUDIT_WEBHOOK_CA_FILE` (the setting is `AUDIT_WEBHOOK_CA`) stops start-up with the name
/// and the closest setting; the error is a chain of causes, not a backtrace.
#[test]
fn misspelled_setting_stops_start_up_without_a_backtrace() {
    let (ok, stderr) = start(&[
        ("AUDIT_WEBHOOK_URL", "https://127.0.0.1:9/k8s_audit"),
        ("AUDIT_WEBHOOK_CA_FILE", "/path/ca.pem"),
    ]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("AUDIT_WEBHOOK_CA_FILE")
            && stderr.contains("did you mean `AUDIT_WEBHOOK_CA`?"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid configuration: "), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

/// An unresolved Key Vault reference stops start-up naming the variable, not the value.
#[test]
fn unresolved_key_vault_reference_stops_start_up() {
    let (ok, stderr) = start(&[(
        "AUDIT_WEBHOOK_URL",
        "@Microsoft.KeyVault(SecretUri=https://kv-secret-name.vault.azure.net/secrets/x/)",
    )]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("AUDIT_WEBHOOK_URL") && stderr.contains("Key Vault"),
        "{stderr}"
    );
    assert!(!stderr.contains("kv-secret-name"), "{stderr}");
}

/// Runs `check-config` with only `settings` in the environment: (success, exit code, output).
fn check_config(args: &[&str], settings: &[(&str, &str)]) -> (bool, Option<i32>, String) {
    let mut command = std::process::Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .arg("check-config")
        .args(args)
        .env("RUST_BACKTRACE", "1");
    for (key, value) in settings {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), out.status.code(), text)
}

/// Start-up and `check-config` both refuse `settings`, naming each of `named`, showing none
/// of `hidden`, with a clean exit code (1, not a panic's 101).
fn refused_everywhere(settings: &[(&str, &str)], named: &[&str], hidden: &[&str]) {
    let (ok, stderr) = start(settings);
    let (checked, code, output) = check_config(&[], settings);
    for (what, ok, text) in [
        ("start-up", ok, &stderr),
        ("check-config", checked, &output),
    ] {
        assert!(!ok, "{what} accepted {settings:?}: {text}");
        for name in named {
            assert!(text.contains(name), "{what}: {name} not named: {text}");
        }
        for secret in hidden {
            assert!(!text.contains(secret), "{what}: {secret} shown: {text}");
        }
        assert!(!text.contains("panicked"), "{what}: {text}");
    }
    assert_eq!(code, Some(1), "{output}");
}

/// Issue 18 row 1: two routes named `x` (they would share what a failed try taught) stop
/// start-up and check-config, naming AUDIT_ROUTES and the name.
#[test]
fn duplicate_route_names_stop_start_up_and_check_config() {
    let routes = "routes:\n- name: x\n  match: {clusters: [aks-a]}\n  webhook: {url: 'http://127.0.0.1:9/a'}\n- name: x\n  match: {clusters: [aks-b]}\n  webhook: {url: 'http://127.0.0.1:9/b'}\n";
    refused_everywhere(
        &[("AUDIT_ROUTES", routes)],
        &["AUDIT_ROUTES", "routes[1] (x)", "unique"],
        &[],
    );
}

/// Credentials in the URL's user-info and a bearer token or basic auth setting would send two
/// `Authorization` fields (RFC 9110 allows one): start-up and check-config refuse, naming
/// the URL's variable and neither credential.
#[test]
fn url_user_info_with_a_credential_setting_is_refused() {
    let url = "http://svc:u5er-pa55@127.0.0.1:9/k8s_audit";
    for credential in [
        [("AUDIT_WEBHOOK_BEARER_TOKEN", "t0ken-s3cret"), ("", "")],
        [
            ("AUDIT_WEBHOOK_USERNAME", "other"),
            ("AUDIT_WEBHOOK_PASSWORD", "t0ken-s3cret"),
        ],
    ] {
        let mut settings = vec![("AUDIT_WEBHOOK_URL", url)];
        settings.extend(credential.iter().filter(|(k, _)| !k.is_empty()));
        refused_everywhere(
            &settings,
            &["AUDIT_WEBHOOK_URL", "two Authorization headers"],
            &["u5er-pa55", "t0ken-s3cret"],
        );
    }
}

/// Issue 18 row 10: a typo in AUDIT_CATEGORIES used to drop every Event in silence; it now
/// stops start-up and check-config naming the variable, with the category it resembles.
#[test]
fn misspelled_categories_stop_start_up_and_check_config() {
    for (value, hint) in [
        (
            "kube-audit;kube-audit-admin",
            "separate several with commas",
        ),
        ("kube_audit", "did you mean `kube-audit`?"),
        ("kube-audit-admn", "did you mean `kube-audit-admin`?"),
    ] {
        refused_everywhere(
            &[
                ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
                ("AUDIT_CATEGORIES", value),
            ],
            &["AUDIT_CATEGORIES", hint],
            &[],
        );
    }
}

/// Issue 18 row 11: AUDIT_ROUTES and AUDIT_WEBHOOK_URL both set used to print the routes
/// document (URL passwords, SAS signatures, header values); now neither shows a secret.
#[test]
fn routes_and_webhook_url_both_set_show_no_secret() {
    let routes = "routes:\n- name: all\n  webhook:\n    url: 'https://svc:pa55-S3CRET@audit.example/k8s?sig=sig-S3CRET'\n    headers: {X-Api-Key: key-S3CRET}\n";
    refused_everywhere(
        &[
            (
                "AUDIT_WEBHOOK_URL",
                "https://u:url-S3CRET@audit.example/k8s?sig=url-S3CRET",
            ),
            ("AUDIT_ROUTES", routes),
        ],
        &["AUDIT_ROUTES", "AUDIT_WEBHOOK_URL", "not both"],
        &["S3CRET"],
    );
}

/// Issue 18 row 19: degenerate durations (a `1ns` backoff would send thousands of POSTs a
/// second to a failing receiver), durations and sizes too large to use, and a user name with
/// a colon stop start-up and check-config, naming the variable.
#[test]
fn degenerate_settings_stop_start_up_and_check_config() {
    let url = ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit");
    for (name, value, reason) in [
        ("AUDIT_RETRY_INITIAL_BACKOFF", "1ns", "at least 50ms"),
        ("AUDIT_RETRY_MAX_BACKOFF", "1ns", "at least 50ms"),
        ("AUDIT_WEBHOOK_TIMEOUT", "1ns", "at least 100ms"),
        ("AUDIT_DELIVERY_DEADLINE", "1ns", "at least 1s"),
        ("AUDIT_BODY_READ_TIMEOUT", "1ns", "at least 1s"),
        ("AUDIT_SHUTDOWN_GRACE", "1ns", "at least 1s"),
        ("AUDIT_WEBHOOK_TIMEOUT", "400000000000y", "at most"),
        ("AUDIT_MAX_BODY_BYTES", "3GiB", "at most 2GiB"),
        ("AUDIT_BATCH_MAX_BYTES", "9999999999PiB", "at most 1GiB"),
    ] {
        refused_everywhere(&[url, (name, value)], &[name, reason], &[]);
    }
    refused_everywhere(
        &[
            url,
            ("AUDIT_WEBHOOK_USERNAME", "svc:pw-S3CRET"),
            ("AUDIT_WEBHOOK_PASSWORD", "pw"),
        ],
        &["AUDIT_WEBHOOK_USERNAME", "colon"],
        &["S3CRET"],
    );
}

/// Issue 18 row 19: `check-config --probe --probe-timeout 400000000000y` panicked (exit 101);
/// every duration option of the command line is now bounded and refused with a usage error.
#[test]
fn duration_options_out_of_bounds_are_usage_errors_not_panics() {
    let url = [("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")];
    for timeout in ["400000000000y", "1ns"] {
        let (ok, code, out) = check_config(&["--probe", "--probe-timeout", timeout], &url);
        assert!(!ok && code == Some(2), "{code:?}: {out}");
        assert!(out.contains("--probe-timeout"), "{out}");
    }
    let out = std::process::Command::new(BIN)
        .args([
            "replay",
            "--handler",
            "http://127.0.0.1:9",
            "--retry-delay",
            "400000000000y",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--retry-delay"), "{text}");
}

/// Issue 18 row 11, as a kind of fault, through the binary: a secret in each setting that can
/// carry one, in a value that stops start-up, is in neither the start-up error nor
/// check-config's. (`config::refusals_tests` covers every way each setting can fail.)
#[test]
fn no_start_up_or_check_config_error_shows_a_secret() {
    let url = ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit");
    let routes = "routes:\n- name: a\n  webhook: {url: 'https://u:S3CRET@a/?sig=S3CRET', headers: {X-K: S3CRET}, format: xml}\n";
    let cases: &[&[(&str, &str)]] = &[
        &[("AUDIT_WEBHOOK_URL", "ftp://u:S3CRET@h/S3CRET?sig=S3CRET")],
        &[("AUDIT_WEBHOOK_URL", "http://u:S3CRET@[::1")],
        &[url, ("AUDIT_WEBHOOK_BEARER_TOKEN", "S3CRET S3CRET")],
        &[url, ("AUDIT_WEBHOOK_USERNAME", "S3CRET")],
        &[
            url,
            ("AUDIT_WEBHOOK_USERNAME", "u"),
            ("AUDIT_WEBHOOK_PASSWORD", "S3CRET\u{1}"),
        ],
        &[url, ("AUDIT_WEBHOOK_CA", "S3CRET")],
        &[
            url,
            ("AUDIT_WEBHOOK_CLIENT_CERT", "S3CRET"),
            ("AUDIT_WEBHOOK_CLIENT_KEY", "S3CRET"),
        ],
        &[url, ("AUDIT_WEBHOOK_HEADERS", "\"S3CRET\"")],
        &[url, ("AUDIT_WEBHOOK_HEADERS", "{\"X-K: S3CRET\":\"v\"}")],
        &[("AUDIT_ROUTES", routes)],
    ];
    for settings in cases {
        refused_everywhere(settings, &["AUDIT_"], &["S3CRET"]);
    }
}
